//! The database text payload grammar on arbitrary bytes: `Payload::parse`
//! never panics; a rejection has a reason with a stable label and message;
//! whatever parses prints canonically and parses back to itself.
#![no_main]

use flagpost_core::payload::{Payload, PayloadError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    match Payload::parse(text) {
        Ok(p) => {
            assert!(p.batch >= 1);
            let canonical = p.to_string();
            assert_eq!(Payload::parse(&canonical), Ok(p), "{canonical:?}");
        }
        Err(e) => {
            assert_eq!(PayloadError::ALL[e.index()], e);
            assert!(!e.label().is_empty());
            assert!(!e.to_string().is_empty());
        }
    }
});
