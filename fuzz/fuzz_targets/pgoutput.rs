//! The WAL source's decisions on arbitrary input: a stream of `pgoutput`
//! messages (length-prefixed pieces of the input) through `PgOutput::decode`
//! into `Changes`; nothing panics, a commit hands out at most the table's
//! size of notifications, each standing for at least one row, and leaves
//! the table empty.
#![no_main]

use flagpost_core::changes::{Changes, Decoded, PgOutput};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut decoder = PgOutput::<4>::default();
    let mut changes = Changes::<4>::new();
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let n = usize::from(len).min(tail.len());
        let (msg, next) = tail.split_at(n);
        rest = next;
        match decoder.decode(msg) {
            Ok(Decoded::Begin) => changes.clear(),
            Ok(Decoded::Row(change)) => changes.add(change),
            Ok(Decoded::Commit { .. }) => {
                let mut notifications = 0;
                while let Some((_, batch)) = changes.poll_notification() {
                    assert!(batch >= 1);
                    notifications += 1;
                }
                assert!(notifications <= 4);
                assert!(changes.is_empty());
            }
            Ok(Decoded::Other) | Err(_) => {}
        }
    }
});
