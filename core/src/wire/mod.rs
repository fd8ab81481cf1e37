//! The Flagpost wire protocol, versions 1 and 2: byte layouts, checked
//! parsing and emitting, kept apart from every state machine.
//!
//! Two transports carry it, both on port 16725 ([`PORT`]):
//!
//! * **UDP datagrams** ([`datagram`]): a sender's [`NotifyRepr`] to the
//!   broker and, only when asked for, the broker's [`AckRepr`] back. An ack is
//!   never larger than the notification it answers.
//! * **TCP frames** ([`frame`]): the listener's stream — hello, welcome,
//!   flags, ping/pong and close, each a 6-byte header plus a bounded body;
//!   in a session with a key (version 2) also the [`handshake`]'s
//!   challenge, proof and accept.
//!
//! Every datagram and frame starts with the magic `"FP"` and the version:
//! [`VERSION`] for datagrams and keyless sessions, [`AUTH_VERSION`] for
//! sessions with a key.
//! Each type has a `Packet`-style view over a byte buffer (`Datagram<T>`,
//! `Frame<T>`, with named `field` ranges) and a `Repr` that is parsed from it
//! or emitted into it. **No-panic contract:** the accessors read through
//! bounds-checked helpers that yield 0 past the end of the buffer, so no byte
//! sequence can make any function in this module panic; `new_checked` and
//! `parse` return a typed [`Error`] for anything short, unknown or malformed.
//! Decoding borrows the input and never allocates. `PROTOCOL.md` at the
//! repository root documents the same layouts byte by byte, with test vectors
//! that `tests/protocol_vectors.rs` asserts.

pub mod datagram;
pub mod federation;
pub mod frame;
pub mod handshake;
pub mod reader;

use core::fmt;

use crate::channel::ChannelIdError;

pub use datagram::{AckRepr, AckResult, Datagram, NotifyRepr, SenderId, Seq, MAX_DATAGRAM_LEN};
pub use federation::{Federated, FederatedRepr, MAX_FEDERATED_LEN};
pub use frame::{
    frame_len, CloseReason, CloseRepr, FlagsRepr, Frame, FrameRepr, HelloRepr, StatRepr,
    WelcomeRepr, MAX_FRAME_LEN,
};
pub use handshake::{Framed, Nonce, ProofRepr, NONCE_LEN};
pub use reader::FrameReader;

/// The port both transports use: UDP for notifications, TCP for listeners.
pub const PORT: u16 = 16725;

/// The two magic bytes that open every datagram and frame: `"FP"`.
pub const MAGIC: [u8; 2] = *b"FP";

/// The base protocol version: every datagram carries it, and so do the
/// frames of a listener session without a key.
pub const VERSION: u8 = 1;

/// The version of a listener session with a key (`PROTOCOL.md`, *Listener
/// authentication*): version 1 plus the handshake's frames. The highest
/// version this crate speaks.
pub const AUTH_VERSION: u8 = 2;

/// Length of the optional authentication tag (a truncated MAC, see
/// `PROTOCOL.md`).
pub const TAG_LEN: usize = 16;

/// An authentication tag.
pub type Tag = [u8; TAG_LEN];

/// Why bytes are not a valid datagram or frame.
///
/// Every variant has a stable [`label`](Error::label) and
/// [`index`](Error::index) so receivers can count rejects by reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error {
    /// Shorter than its header, or than the lengths its header declares.
    Truncated,
    /// Does not start with `"FP"`.
    BadMagic,
    /// A protocol version this crate does not speak.
    UnsupportedVersion(u8),
    /// A message type this receiver does not accept here.
    UnknownType(u8),
    /// A notification kind code outside 1..=4.
    UnknownKind(u8),
    /// A flag bit this version does not define is set.
    UnknownFlags(u8),
    /// A reserved byte is not zero.
    ReservedNonZero,
    /// Longer than its header declares, or a body of the wrong size for its type.
    LengthMismatch,
    /// A declared length exceeds the protocol's hard bound.
    TooLong,
    /// The channel id is empty, too long, not UTF-8 or has control characters.
    BadChannel(ChannelIdError),
    /// A channel update or shutdown without a channel.
    MissingChannel,
    /// A batch count of zero (a notification stands for at least one change).
    ZeroBatch,
    /// A hello with an empty interest set.
    EmptyInterest,
    /// A flags frame with no flag set.
    EmptyFlags,
    /// An unknown close reason or ack result code.
    UnknownCode(u8),
}

impl Error {
    /// Number of distinct variants, for per-reason counter arrays.
    pub const COUNT: usize = 15;

    /// A dense index in `0..Error::COUNT`.
    pub const fn index(self) -> usize {
        match self {
            Error::Truncated => 0,
            Error::BadMagic => 1,
            Error::UnsupportedVersion(_) => 2,
            Error::UnknownType(_) => 3,
            Error::UnknownKind(_) => 4,
            Error::UnknownFlags(_) => 5,
            Error::ReservedNonZero => 6,
            Error::LengthMismatch => 7,
            Error::TooLong => 8,
            Error::BadChannel(_) => 9,
            Error::MissingChannel => 10,
            Error::ZeroBatch => 11,
            Error::EmptyInterest => 12,
            Error::EmptyFlags => 13,
            Error::UnknownCode(_) => 14,
        }
    }

    /// A stable snake_case label per variant (for metrics).
    pub fn label(self) -> &'static str {
        match Self::LABELS.get(self.index()) {
            Some(label) => label,
            None => "unknown",
        }
    }

    /// The labels, indexed by [`Error::index`].
    pub const LABELS: [&'static str; Error::COUNT] = [
        "truncated",
        "bad_magic",
        "unsupported_version",
        "unknown_type",
        "unknown_kind",
        "unknown_flags",
        "reserved_non_zero",
        "length_mismatch",
        "too_long",
        "bad_channel",
        "missing_channel",
        "zero_batch",
        "empty_interest",
        "empty_flags",
        "unknown_code",
    ];
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated => f.write_str("truncated: shorter than its declared length"),
            Error::BadMagic => f.write_str("not a Flagpost message (bad magic)"),
            Error::UnsupportedVersion(v) => write!(f, "unsupported protocol version {v}"),
            Error::UnknownType(t) => write!(f, "unknown or unexpected message type {t:#04x}"),
            Error::UnknownKind(k) => write!(f, "unknown notification kind {k}"),
            Error::UnknownFlags(b) => write!(f, "undefined flag bits {b:#04x}"),
            Error::ReservedNonZero => f.write_str("reserved field is not zero"),
            Error::LengthMismatch => f.write_str("length does not match the header"),
            Error::TooLong => f.write_str("declared length exceeds the protocol bound"),
            Error::BadChannel(e) => write!(f, "bad channel id: {e}"),
            Error::MissingChannel => f.write_str("channel update/shutdown without a channel"),
            Error::ZeroBatch => f.write_str("batch count is zero"),
            Error::EmptyInterest => f.write_str("hello with an empty interest set"),
            Error::EmptyFlags => f.write_str("flags frame with no flag set"),
            Error::UnknownCode(c) => write!(f, "unknown reason or result code {c}"),
        }
    }
}

impl core::error::Error for Error {}

impl From<ChannelIdError> for Error {
    fn from(e: ChannelIdError) -> Self {
        Error::BadChannel(e)
    }
}

/// The output buffer is smaller than the message to emit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BufferTooSmall {
    /// Bytes the message needs.
    pub needed: usize,
}

impl fmt::Display for BufferTooSmall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "output buffer too small: {} bytes needed", self.needed)
    }
}

impl core::error::Error for BufferTooSmall {}

/// A byte range within a message.
pub(crate) type Field = core::ops::Range<usize>;

// Bounds-checked big-endian readers and writers: out-of-range reads yield 0
// and out-of-range writes are dropped, so no accessor can panic.

pub(crate) fn get_u8(buf: &[u8], at: usize) -> u8 {
    buf.get(at).copied().unwrap_or(0)
}

pub(crate) fn get_u16(buf: &[u8], at: Field) -> u16 {
    buf.get(at)
        .and_then(|s| <[u8; 2]>::try_from(s).ok())
        .map_or(0, u16::from_be_bytes)
}

pub(crate) fn get_u32(buf: &[u8], at: Field) -> u32 {
    buf.get(at)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map_or(0, u32::from_be_bytes)
}

pub(crate) fn get_u64(buf: &[u8], at: Field) -> u64 {
    buf.get(at)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map_or(0, u64::from_be_bytes)
}

pub(crate) fn put(buf: &mut [u8], at: Field, bytes: &[u8]) {
    if let Some(dst) = buf.get_mut(at) {
        if dst.len() == bytes.len() {
            dst.copy_from_slice(bytes);
        }
    }
}

pub(crate) fn put_u8(buf: &mut [u8], at: usize, v: u8) {
    if let Some(b) = buf.get_mut(at) {
        *b = v;
    }
}
