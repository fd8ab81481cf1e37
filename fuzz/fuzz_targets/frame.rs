//! TCP frame decoding on arbitrary bytes: `frame_len` on the whole buffer and
//! as a stream splitter (take `frame_len` of what remains, parse each complete
//! frame, repeat), `Frame` and its accessors, `FrameRepr::parse_bytes`, and
//! the canonical round trip of whatever parses: emit reproduces the frame byte
//! for byte and parses back to the same repr.
#![no_main]

use flagpost_core::wire::frame::HEADER_LEN;
use flagpost_core::wire::{frame_len, BufferTooSmall, Error, Frame, FrameRepr, MAX_FRAME_LEN};
use libfuzzer_sys::fuzz_target;

fn check_error(e: Error) {
    assert!(e.index() < Error::COUNT);
    assert_eq!(e.label(), Error::LABELS[e.index()]);
    assert!(!e.to_string().is_empty());
}

fn touch<T: AsRef<[u8]>>(f: &Frame<T>) -> usize {
    usize::from(f.version()) + usize::from(f.frame_type()) + f.body().len()
}

/// Parses one complete frame (as split by `frame_len`) and round-trips it.
fn check_frame(frame: &[u8]) {
    assert!((HEADER_LEN..=MAX_FRAME_LEN).contains(&frame.len()));
    // Every proper prefix of a frame is "need more bytes".
    for k in 0..frame.len() {
        assert_eq!(frame_len(&frame[..k]), Ok(None), "prefix {k} of {frame:?}");
    }
    let view = Frame::new_unchecked(frame);
    touch(&view);
    match Frame::new_checked(frame) {
        Ok(f) => {
            touch(&f);
            assert_eq!(f.body().len() + HEADER_LEN, frame.len());
        }
        Err(e) => assert!(matches!(e, Error::UnsupportedVersion(_)), "{e:?}"),
    }
    let repr = match FrameRepr::parse_bytes(frame) {
        Ok(repr) => repr,
        Err(e) => {
            check_error(e);
            return;
        }
    };
    assert_eq!(FrameRepr::parse(&view), Ok(repr));
    assert_eq!(repr.buffer_len(), frame.len(), "{repr:?}");
    let mut out = [0u8; MAX_FRAME_LEN];
    let n = repr.emit(&mut out).expect("fits MAX_FRAME_LEN");
    assert_eq!(
        &out[..n],
        frame,
        "frame re-emit differs from input: {repr:?}"
    );
    assert_eq!(FrameRepr::parse_bytes(&out[..n]), Ok(repr));
    assert_eq!(
        repr.emit(&mut out[..n - 1]),
        Err(BufferTooSmall { needed: n })
    );
}

fuzz_target!(|data: &[u8]| {
    // The whole input as one frame (exercises LengthMismatch and friends).
    match FrameRepr::parse_bytes(data) {
        Ok(_) => check_frame(data),
        Err(e) => check_error(e),
    }
    if let Ok(f) = Frame::new_checked(data) {
        touch(&f);
    }

    // The input as a stream.
    let mut rest = data;
    let mut frames = 0;
    loop {
        match frame_len(rest) {
            Ok(Some(n)) => {
                assert!((HEADER_LEN..=MAX_FRAME_LEN).contains(&n) && n <= rest.len());
                let (frame, tail) = rest.split_at(n);
                check_frame(frame);
                rest = tail;
                frames += 1;
            }
            Ok(None) => {
                // Only an incomplete frame (possibly nothing) is left.
                assert!(rest.len() < MAX_FRAME_LEN, "{} bytes left", rest.len());
                assert!(rest.len() < 2 || rest[..2] == *b"FP");
                break;
            }
            Err(e) => {
                assert!(matches!(e, Error::BadMagic | Error::TooLong), "{e:?}");
                check_error(e);
                break;
            }
        }
    }
    assert!(frames <= data.len() / HEADER_LEN);
});
