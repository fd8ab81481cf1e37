//! The frames of listener authentication, version 2 only: challenge, proof
//! and accept (`PROTOCOL.md`, *Listener authentication*), and [`Framed`], a
//! frame with the version its header carries — what a session reads and
//! writes once versions 1 and 2 share the stream.
//!
//! ```text
//! bodies (version 2)
//!  challenge 0x18  broker nonce 16
//!  proof     0x19  listener nonce 16, tag 16
//!  accept    0x1a  tag 16
//! ```
//!
//! The tags themselves (what they cover, which key) are
//! [`auth`](crate::auth)'s; this module only lays out bytes.

use super::frame::{kind, Frame, FrameRepr};
use super::{BufferTooSmall, Error, Tag, AUTH_VERSION, TAG_LEN, VERSION};

/// Length of a handshake nonce.
pub const NONCE_LEN: usize = 16;

/// A handshake nonce: fresh for every challenge (broker) and proof
/// (listener).
pub type Nonce = [u8; NONCE_LEN];

/// Listener → broker: its nonce and the tag that proves it holds the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ProofRepr {
    /// The listener's nonce (`Nl`).
    pub nonce: Nonce,
    /// The proof tag (`T_L`).
    pub tag: Tag,
}

/// The 16 bytes of `b` from `at`, or zeros (the caller checked the length).
fn bytes16(b: &[u8], at: usize) -> [u8; 16] {
    b.get(at..at + 16)
        .and_then(|s| <[u8; 16]>::try_from(s).ok())
        .unwrap_or([0; 16])
}

/// Parses the body of a handshake frame of type `frame_type` (its length
/// already checked against [`body_len`]).
pub(super) fn parse_body(frame_type: u8, b: &[u8]) -> Option<FrameRepr> {
    match frame_type {
        kind::CHALLENGE => Some(FrameRepr::Challenge(bytes16(b, 0))),
        kind::PROOF => Some(FrameRepr::Proof(ProofRepr {
            nonce: bytes16(b, 0),
            tag: bytes16(b, NONCE_LEN),
        })),
        kind::ACCEPT => Some(FrameRepr::Accept(bytes16(b, 0))),
        _ => None,
    }
}

/// The body length of a handshake frame type (`None`: not one).
pub(super) const fn body_len(frame_type: u8) -> Option<usize> {
    match frame_type {
        kind::CHALLENGE => Some(NONCE_LEN),
        kind::PROOF => Some(NONCE_LEN + TAG_LEN),
        kind::ACCEPT => Some(TAG_LEN),
        _ => None,
    }
}

/// Writes a handshake frame's body into `body` (sized by the caller).
pub(super) fn emit_body(frame: &FrameRepr, body: &mut [u8]) {
    let parts: [&[u8]; 2] = match frame {
        FrameRepr::Challenge(nonce) => [nonce, &[]],
        FrameRepr::Proof(p) => [&p.nonce, &p.tag],
        FrameRepr::Accept(tag) => [tag, &[]],
        _ => return,
    };
    let mut at = 0;
    for part in parts {
        if let Some(dst) = body.get_mut(at..at + part.len()) {
            dst.copy_from_slice(part);
        }
        at += part.len();
    }
}

/// A frame and the version its header carries: `1`, or `2` in a session
/// with a key. Sessions read and write frames as `Framed` so that every
/// frame carries the session's version.
///
/// ```
/// use flagpost_core::wire::{Framed, FrameRepr, AUTH_VERSION, MAX_FRAME_LEN};
///
/// let mut buf = [0u8; MAX_FRAME_LEN];
/// let n = Framed::new(AUTH_VERSION, FrameRepr::Ping(7)).emit(&mut buf).unwrap();
/// assert_eq!(&buf[..n], &[0x46, 0x50, 0x02, 0x13, 0, 4, 0, 0, 0, 7]);
/// assert_eq!(Framed::parse(&buf[..n]), Ok(Framed::new(2, FrameRepr::Ping(7))));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Framed {
    /// The version byte.
    pub version: u8,
    /// The frame.
    pub frame: FrameRepr,
}

impl Framed {
    /// `frame` in `version`, clamped to the versions that have its type:
    /// at least its [`min_version`](FrameRepr::min_version), at most
    /// [`AUTH_VERSION`].
    pub const fn new(version: u8, frame: FrameRepr) -> Self {
        let min = frame.min_version();
        let version = if version < min {
            min
        } else if version > AUTH_VERSION {
            AUTH_VERSION
        } else {
            version
        };
        Framed { version, frame }
    }

    /// `frame` in version 1 (or 2 for the handshake's types).
    pub const fn v1(frame: FrameRepr) -> Self {
        Self::new(VERSION, frame)
    }

    /// Parses exactly one frame of either version, as
    /// [`FrameRepr::parse`] does, keeping its version.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let frame = Frame::new_unchecked(bytes);
        let repr = FrameRepr::parse(&frame)?;
        Ok(Framed {
            version: frame.version(),
            frame: repr,
        })
    }

    /// The length [`emit`](Self::emit) writes.
    pub fn buffer_len(&self) -> usize {
        self.frame.buffer_len()
    }

    /// Writes the frame into the front of `buf` with its version; returns
    /// its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        self.frame.emit_version(self.version, buf)
    }
}

impl From<FrameRepr> for Framed {
    fn from(frame: FrameRepr) -> Self {
        Framed::v1(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::MAX_FRAME_LEN;

    #[test]
    fn handshake_frames_round_trip_in_version_2_only() {
        let nonce: Nonce = core::array::from_fn(|i| 0xb0 + i as u8);
        let tag: Tag = core::array::from_fn(|i| 0xc0 + i as u8);
        for frame in [
            FrameRepr::Challenge(nonce),
            FrameRepr::Proof(ProofRepr { nonce, tag }),
            FrameRepr::Accept(tag),
        ] {
            let mut buf = [0u8; MAX_FRAME_LEN];
            let n = frame.emit(&mut buf).unwrap();
            assert_eq!(buf[2], AUTH_VERSION, "{frame:?} exists in version 2 only");
            assert_eq!(Framed::parse(&buf[..n]), Ok(Framed::new(2, frame)));
            buf[2] = VERSION;
            assert_eq!(
                FrameRepr::parse_bytes(&buf[..n]),
                Err(Error::UnknownType(frame.frame_type()))
            );
            // asking for version 1 still writes version 2
            assert_eq!(Framed::v1(frame).version, AUTH_VERSION);
        }
    }

    #[test]
    fn versions_are_clamped_to_what_exists() {
        assert_eq!(Framed::new(9, FrameRepr::Ping(1)).version, AUTH_VERSION);
        assert_eq!(Framed::new(0, FrameRepr::Ping(1)).version, VERSION);
        assert_eq!(Framed::from(FrameRepr::Ping(1)).version, VERSION);
    }
}
