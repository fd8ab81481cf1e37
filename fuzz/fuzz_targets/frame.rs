//! TCP frame decoding on arbitrary bytes: `frame_len` on the whole buffer and
//! as a stream splitter (take `frame_len` of what remains, parse each complete
//! frame, repeat), `Frame` and its accessors, `Framed::parse` (either
//! version) and `FrameRepr::parse_bytes`, and the canonical round trip of
//! whatever parses: emit in its version reproduces the frame byte for byte
//! and parses back to the same repr. A proof or accept also goes through the
//! handshake's tag checks, which must refuse it (the fuzzer does not hold
//! the key).
#![no_main]

use flagpost_core::auth::{Key, Keyring, Transcript};
use flagpost_core::wire::frame::HEADER_LEN;
use flagpost_core::wire::{
    frame_len, BufferTooSmall, Error, Frame, FrameRepr, Framed, MAX_FRAME_LEN,
};
use libfuzzer_sys::fuzz_target;

/// A transcript no input can hold a valid tag for: the stats request of
/// version 2 and fixed nonces, keyed with a key the fuzzer does not see.
fn check_tags(frame: &FrameRepr) {
    let key = Key::new(&[0x6b; 32]).expect("a 32-byte key");
    let first = [0x46, 0x50, 0x02, 0x16, 0x00, 0x00];
    let broker_nonce = [0xb0; 16];
    match frame {
        FrameRepr::Proof(p) => {
            let t = Transcript {
                first: &first,
                broker_nonce: &broker_nonce,
                listener_nonce: &p.nonce,
            };
            assert_eq!(t.verify_proof(&Keyring::new(key), &p.tag), None);
        }
        FrameRepr::Accept(tag) => {
            let t = Transcript {
                first: &first,
                broker_nonce: &broker_nonce,
                listener_nonce: &[0xc0; 16],
            };
            assert!(!t.verify_accept(&key, tag));
        }
        _ => {}
    }
}

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
    let framed = match Framed::parse(frame) {
        Ok(framed) => framed,
        Err(e) => {
            check_error(e);
            assert_eq!(FrameRepr::parse_bytes(frame), Err(e));
            return;
        }
    };
    let repr = framed.frame;
    assert_eq!(framed.version, view.version());
    assert_eq!(FrameRepr::parse(&view), Ok(repr));
    assert_eq!(FrameRepr::parse_bytes(frame), Ok(repr));
    assert!(repr.min_version() <= framed.version);
    assert_eq!(framed.buffer_len(), frame.len(), "{repr:?}");
    let mut out = [0u8; MAX_FRAME_LEN];
    let n = framed.emit(&mut out).expect("fits MAX_FRAME_LEN");
    assert_eq!(
        &out[..n],
        frame,
        "frame re-emit differs from input: {framed:?}"
    );
    assert_eq!(Framed::parse(&out[..n]), Ok(framed));
    assert_eq!(
        framed.emit(&mut out[..n - 1]),
        Err(BufferTooSmall { needed: n })
    );
    check_tags(&repr);
}

fuzz_target!(|data: &[u8]| {
    // The whole input as one frame (exercises LengthMismatch and friends).
    match Framed::parse(data) {
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
