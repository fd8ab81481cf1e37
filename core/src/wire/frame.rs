//! TCP frames of the listener stream: hello, welcome, flags, ping, pong,
//! close, the stats request and stat, and (version 2) the handshake's
//! challenge, proof and accept (laid out in [`handshake`]).
//!
//! Every frame is a 6-byte header and a body of at most
//! [`MAX_BODY_LEN`] bytes. The header layout is the same in every protocol
//! version, so a receiver can always split the stream ([`frame_len`]) even
//! when it cannot understand a frame.
//!
//! ```text
//! header                      bodies (big-endian)
//!  0 magic "FP"   2           hello   0x10  interest 1, channel len n 1, keep-alive s 2, channel n
//!  2 version 1|2  1           welcome 0x11  interest 1, reserved 1, keep-alive s 2, broker id 8
//!  3 type         1           flags   0x12  flags 1, reserved 3, raises 4
//!  4 body length  2           ping    0x13  nonce 4
//!  6 body         n           pong    0x14  nonce 4
//!                             close   0x15  reason 1, version 1, reserved 2
//!                             stats?  0x16  (empty)
//!                             stat    0x17  index 2, reserved 2, value 8
//! ```

use core::fmt;

use super::handshake::{self, Nonce, ProofRepr};
use super::{get_u16, get_u32, get_u64, get_u8, put, put_u8, BufferTooSmall, Error, Field};
use super::{Tag, AUTH_VERSION, MAGIC, VERSION};
use crate::channel::ChannelId;
use crate::flags::FlagSet;
use crate::time::Duration;

/// Byte ranges of the frame header.
pub mod field {
    use super::Field;

    /// Magic `"FP"`.
    pub const MAGIC: Field = 0..2;
    /// Protocol version.
    pub const VERSION: usize = 2;
    /// Frame type.
    pub const TYPE: usize = 3;
    /// Body length.
    pub const BODY_LEN: Field = 4..6;
    /// Start of the body.
    pub const BODY: usize = 6;
}

/// Length of the frame header.
pub const HEADER_LEN: usize = 6;
/// The hard bound on a frame body.
pub const MAX_BODY_LEN: usize = 64;
/// The longest frame; a buffer of this size holds any frame.
pub const MAX_FRAME_LEN: usize = HEADER_LEN + MAX_BODY_LEN;

/// Frame type codes.
pub mod kind {
    /// Listener → broker: start listening.
    pub const HELLO: u8 = 0x10;
    /// Broker → listener: listening started.
    pub const WELCOME: u8 = 0x11;
    /// Broker → listener: flags raised.
    pub const FLAGS: u8 = 0x12;
    /// Listener → broker: keep-alive probe.
    pub const PING: u8 = 0x13;
    /// Broker → listener: keep-alive answer.
    pub const PONG: u8 = 0x14;
    /// Either way: the connection ends, with a reason.
    pub const CLOSE: u8 = 0x15;
    /// Client → broker, instead of hello: send me your counters.
    pub const STATS_REQUEST: u8 = 0x16;
    /// Broker → client: one counter (then a close ends the list).
    pub const STAT: u8 = 0x17;
    /// Broker → listener, version 2: the broker's nonce.
    pub const CHALLENGE: u8 = 0x18;
    /// Listener → broker, version 2: the listener's nonce and proof tag.
    pub const PROOF: u8 = 0x19;
    /// Broker → listener, version 2: the broker's tag.
    pub const ACCEPT: u8 = 0x1a;
}

/// How long a complete frame at the front of a stream buffer is.
///
/// `Ok(None)` means more bytes are needed; an error means the stream is not
/// a Flagpost stream (bad magic) or announces a body beyond the bound, and
/// must be closed.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, Error> {
    let magic_seen = buf.len().min(2);
    if buf.get(..magic_seen) != MAGIC.get(..magic_seen) {
        return Err(Error::BadMagic);
    }
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let body = usize::from(get_u16(buf, field::BODY_LEN));
    if body > MAX_BODY_LEN {
        return Err(Error::TooLong);
    }
    let total = HEADER_LEN + body;
    Ok((buf.len() >= total).then_some(total))
}

/// A view of one frame in a byte buffer.
#[derive(Clone, Copy, Debug)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps a buffer without checking it. Accessors never panic, but read 0
    /// past the end: call [`check_len`](Self::check_len) before trusting them.
    pub const fn new_unchecked(buffer: T) -> Self {
        Frame { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let f = Self::new_unchecked(buffer);
        f.check_len()?;
        Ok(f)
    }

    /// Checks, in this order: magic ([`Error::BadMagic`], as soon as a byte
    /// of it is wrong), a whole header ([`Error::Truncated`]), the body bound
    /// ([`Error::TooLong`]), a whole body ([`Error::Truncated`]), nothing
    /// after it ([`Error::LengthMismatch`]), then the version, 1 or 2
    /// ([`Error::UnsupportedVersion`]): the header layout is the same in
    /// every version, so a stream splits before its version is looked at.
    pub fn check_len(&self) -> Result<(), Error> {
        let buf = self.buffer.as_ref();
        match frame_len(buf)? {
            None => Err(Error::Truncated),
            Some(n) if n != buf.len() => Err(Error::LengthMismatch),
            Some(_) if !(VERSION..=AUTH_VERSION).contains(&self.version()) => {
                Err(Error::UnsupportedVersion(self.version()))
            }
            Some(_) => Ok(()),
        }
    }

    /// The version byte.
    pub fn version(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::VERSION)
    }

    /// The frame type code.
    pub fn frame_type(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::TYPE)
    }

    /// The body bytes.
    pub fn body(&self) -> &[u8] {
        self.buffer.as_ref().get(field::BODY..).unwrap_or(&[])
    }
}

/// Listener → broker: start listening.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct HelloRepr {
    /// The flags this listener wants (never empty).
    pub interest: FlagSet,
    /// The channel listened for, or `None` for all channels.
    pub channel: Option<ChannelId>,
    /// The keep-alive timeout asked for, in seconds; 0 takes the broker's.
    pub keepalive_secs: u16,
}

/// Broker → listener: listening started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct WelcomeRepr {
    /// The interest the broker will serve.
    pub interest: FlagSet,
    /// The keep-alive timeout in force: each side declares the other dead
    /// after this long without a frame, and the listener pings after a third
    /// of it without sending.
    pub keepalive_secs: u16,
    /// Random per broker run: a change tells a reconnecting listener the
    /// broker restarted.
    pub broker_id: u64,
}

impl WelcomeRepr {
    /// The keep-alive timeout as a duration.
    pub fn keepalive(&self) -> Duration {
        Duration::from_secs(u64::from(self.keepalive_secs))
    }
}

/// Broker → listener: these flags were raised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FlagsRepr {
    /// The raised flags (never empty).
    pub flags: FlagSet,
    /// How many raises coalesced into this frame (saturating).
    pub raises: u32,
}

/// Why a connection ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum CloseReason {
    /// The listener stopped listening (`StopChangeListening`).
    Normal = 0,
    /// The broker is shutting down.
    Shutdown = 1,
    /// The peer speaks a protocol version this end does not.
    UnsupportedVersion = 2,
    /// The peer sent a malformed or unexpected frame.
    ProtocolError = 3,
    /// Nothing arrived within the keep-alive timeout.
    KeepaliveTimeout = 4,
    /// No hello arrived within the hello timeout.
    HelloTimeout = 5,
    /// The broker holds its maximum number of listeners.
    TooManyListeners = 6,
    /// The peer's address holds its maximum number of listeners.
    TooManyFromAddress = 7,
    /// The listener stopped reading: its flags waited too long to be written.
    Stuck = 8,
    /// Authentication failed.
    Unauthorized = 9,
}

impl CloseReason {
    /// Number of reasons, for per-reason counters.
    pub const COUNT: usize = 10;

    /// Every reason, in code order.
    pub const ALL: [CloseReason; CloseReason::COUNT] = [
        CloseReason::Normal,
        CloseReason::Shutdown,
        CloseReason::UnsupportedVersion,
        CloseReason::ProtocolError,
        CloseReason::KeepaliveTimeout,
        CloseReason::HelloTimeout,
        CloseReason::TooManyListeners,
        CloseReason::TooManyFromAddress,
        CloseReason::Stuck,
        CloseReason::Unauthorized,
    ];

    /// The reason with wire code `code`.
    pub fn from_code(code: u8) -> Result<Self, Error> {
        match Self::ALL.get(code as usize) {
            Some(reason) => Ok(*reason),
            None => Err(Error::UnknownCode(code)),
        }
    }

    /// A stable snake_case label (for metrics and logs).
    pub const fn label(self) -> &'static str {
        match self {
            CloseReason::Normal => "normal",
            CloseReason::Shutdown => "shutdown",
            CloseReason::UnsupportedVersion => "unsupported_version",
            CloseReason::ProtocolError => "protocol_error",
            CloseReason::KeepaliveTimeout => "keepalive_timeout",
            CloseReason::HelloTimeout => "hello_timeout",
            CloseReason::TooManyListeners => "too_many_listeners",
            CloseReason::TooManyFromAddress => "too_many_from_address",
            CloseReason::Stuck => "stuck",
            CloseReason::Unauthorized => "unauthorized",
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CloseReason::Normal => "listener stopped listening",
            CloseReason::Shutdown => "broker is shutting down",
            CloseReason::UnsupportedVersion => "unsupported protocol version",
            CloseReason::ProtocolError => "protocol error",
            CloseReason::KeepaliveTimeout => "keep-alive timeout: peer silent",
            CloseReason::HelloTimeout => "no hello in time",
            CloseReason::TooManyListeners => "broker has its maximum number of listeners",
            CloseReason::TooManyFromAddress => "too many listeners from this address",
            CloseReason::Stuck => "listener stopped reading",
            CloseReason::Unauthorized => "authentication failed",
        })
    }
}

/// Either way: the connection ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CloseRepr {
    /// Why.
    pub reason: CloseReason,
    /// The highest protocol version the closing end speaks (so a peer closed
    /// for [`CloseReason::UnsupportedVersion`] learns what to speak).
    pub version: u8,
}

impl CloseRepr {
    /// A close for `reason` from this end, which speaks up to
    /// [`AUTH_VERSION`] (the body's version, whatever the header's).
    pub const fn new(reason: CloseReason) -> Self {
        CloseRepr {
            reason,
            version: AUTH_VERSION,
        }
    }
}

/// Any frame of the listener stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FrameRepr {
    /// Listener → broker: start listening.
    Hello(HelloRepr),
    /// Broker → listener: listening started.
    Welcome(WelcomeRepr),
    /// Broker → listener: flags raised.
    Flags(FlagsRepr),
    /// Listener → broker: keep-alive probe with a nonce.
    Ping(u32),
    /// Broker → listener: keep-alive answer echoing the nonce.
    Pong(u32),
    /// Either way: the connection ends.
    Close(CloseRepr),
    /// Client → broker, as its first frame: asks for the broker's counters.
    StatsRequest,
    /// Broker → client: one counter, by its index in the broker's stats
    /// table (`broker::Stats::visit`).
    Stat(StatRepr),
    /// Broker → listener, version 2: the broker's nonce (`Nb`).
    Challenge(Nonce),
    /// Listener → broker, version 2: the listener's nonce and proof.
    Proof(ProofRepr),
    /// Broker → listener, version 2: the broker's tag (`T_B`).
    Accept(Tag),
}

/// One counter or gauge of the broker's stats table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct StatRepr {
    /// The entry's index in the table (stable: entries are only appended).
    pub index: u16,
    /// Its value.
    pub value: u64,
}

fn interest(bits: u8) -> Result<FlagSet, Error> {
    match FlagSet::from_bits(bits) {
        None => Err(Error::UnknownFlags(bits & !FlagSet::ALL.bits())),
        Some(set) if set.is_empty() => Err(Error::EmptyInterest),
        Some(set) => Ok(set),
    }
}

fn exact(body: &[u8], len: usize) -> Result<(), Error> {
    if body.len() == len {
        Ok(())
    } else {
        Err(Error::LengthMismatch)
    }
}

impl FrameRepr {
    /// Parses one frame of either version, checking in the order
    /// `PROTOCOL.md` documents (the first check that fails names the
    /// error): the header as [`Frame::check_len`] checks it (magic, length
    /// bounds, version), then the type in that version
    /// ([`Error::UnknownType`]: the handshake's types exist in version 2
    /// only), then the body: a hello's channel length above 32
    /// ([`Error::TooLong`]), the body's exact length for its type
    /// ([`Error::LengthMismatch`]), then its fields in byte order.
    ///
    /// The version is not returned: a session that must check it parses
    /// with [`Framed::parse`](super::Framed::parse).
    pub fn parse<T: AsRef<[u8]>>(frame: &Frame<T>) -> Result<Self, Error> {
        frame.check_len()?;
        let b = frame.body();
        if let Some(len) = handshake::body_len(frame.frame_type()) {
            if frame.version() < AUTH_VERSION {
                return Err(Error::UnknownType(frame.frame_type()));
            }
            exact(b, len)?;
            return handshake::parse_body(frame.frame_type(), b)
                .ok_or(Error::UnknownType(frame.frame_type()));
        }
        match frame.frame_type() {
            kind::HELLO => {
                let n = usize::from(get_u8(b, 1));
                if n > ChannelId::MAX_LEN {
                    return Err(Error::TooLong);
                }
                exact(b, 4 + n)?;
                let interest = interest(get_u8(b, 0))?;
                let channel = match n {
                    0 => None,
                    _ => Some(ChannelId::from_bytes(b.get(4..4 + n).unwrap_or(&[]))?),
                };
                Ok(FrameRepr::Hello(HelloRepr {
                    interest,
                    channel,
                    keepalive_secs: get_u16(b, 2..4),
                }))
            }
            kind::WELCOME => {
                exact(b, 12)?;
                let interest = interest(get_u8(b, 0))?;
                if get_u8(b, 1) != 0 {
                    return Err(Error::ReservedNonZero);
                }
                Ok(FrameRepr::Welcome(WelcomeRepr {
                    interest,
                    keepalive_secs: get_u16(b, 2..4),
                    broker_id: get_u64(b, 4..12),
                }))
            }
            kind::FLAGS => {
                exact(b, 8)?;
                let flags = match FlagSet::from_bits(get_u8(b, 0)) {
                    None => return Err(Error::UnknownFlags(get_u8(b, 0) & !FlagSet::ALL.bits())),
                    Some(f) if f.is_empty() => return Err(Error::EmptyFlags),
                    Some(f) => f,
                };
                if b.get(1..4) != Some(&[0, 0, 0][..]) {
                    return Err(Error::ReservedNonZero);
                }
                Ok(FrameRepr::Flags(FlagsRepr {
                    flags,
                    raises: get_u32(b, 4..8),
                }))
            }
            kind::PING => {
                exact(b, 4)?;
                Ok(FrameRepr::Ping(get_u32(b, 0..4)))
            }
            kind::PONG => {
                exact(b, 4)?;
                Ok(FrameRepr::Pong(get_u32(b, 0..4)))
            }
            kind::CLOSE => {
                exact(b, 4)?;
                let reason = CloseReason::from_code(get_u8(b, 0))?;
                if get_u16(b, 2..4) != 0 {
                    return Err(Error::ReservedNonZero);
                }
                Ok(FrameRepr::Close(CloseRepr {
                    reason,
                    version: get_u8(b, 1),
                }))
            }
            kind::STATS_REQUEST => {
                exact(b, 0)?;
                Ok(FrameRepr::StatsRequest)
            }
            kind::STAT => {
                exact(b, 12)?;
                if get_u16(b, 2..4) != 0 {
                    return Err(Error::ReservedNonZero);
                }
                Ok(FrameRepr::Stat(StatRepr {
                    index: get_u16(b, 0..2),
                    value: get_u64(b, 4..12),
                }))
            }
            other => Err(Error::UnknownType(other)),
        }
    }

    /// Parses exactly one frame from raw bytes.
    pub fn parse_bytes(bytes: &[u8]) -> Result<Self, Error> {
        Self::parse(&Frame::new_unchecked(bytes))
    }

    /// The frame type code.
    pub const fn frame_type(&self) -> u8 {
        match self {
            FrameRepr::Hello(_) => kind::HELLO,
            FrameRepr::Welcome(_) => kind::WELCOME,
            FrameRepr::Flags(_) => kind::FLAGS,
            FrameRepr::Ping(_) => kind::PING,
            FrameRepr::Pong(_) => kind::PONG,
            FrameRepr::Close(_) => kind::CLOSE,
            FrameRepr::StatsRequest => kind::STATS_REQUEST,
            FrameRepr::Stat(_) => kind::STAT,
            FrameRepr::Challenge(_) => kind::CHALLENGE,
            FrameRepr::Proof(_) => kind::PROOF,
            FrameRepr::Accept(_) => kind::ACCEPT,
        }
    }

    /// The first version that has this frame's type: 2 for the
    /// handshake's, 1 for the others.
    pub const fn min_version(&self) -> u8 {
        match self {
            FrameRepr::Challenge(_) | FrameRepr::Proof(_) | FrameRepr::Accept(_) => AUTH_VERSION,
            _ => VERSION,
        }
    }

    fn body_len(&self) -> usize {
        match self {
            FrameRepr::Hello(h) => 4 + h.channel.map_or(0, |c| c.len()),
            FrameRepr::Welcome(_) => 12,
            FrameRepr::Flags(_) => 8,
            FrameRepr::Ping(_) | FrameRepr::Pong(_) | FrameRepr::Close(_) => 4,
            FrameRepr::StatsRequest => 0,
            FrameRepr::Stat(_) => 12,
            FrameRepr::Challenge(_) | FrameRepr::Proof(_) | FrameRepr::Accept(_) => {
                handshake::body_len(self.frame_type()).unwrap_or(0)
            }
        }
    }

    /// The length [`emit`](Self::emit) writes.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.body_len()
    }

    /// Writes the frame into the front of `buf` in the first version that
    /// has its type ([`min_version`](Self::min_version)); returns its
    /// length. A session writes its frames in its own version with
    /// [`Framed::emit`](super::Framed::emit).
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        self.emit_version(self.min_version(), buf)
    }

    /// Writes the frame with version byte `version` (see
    /// [`Framed::new`](super::Framed::new) for the versions that make sense).
    pub(super) fn emit_version(
        &self,
        version: u8,
        buf: &mut [u8],
    ) -> Result<usize, BufferTooSmall> {
        let len = self.buffer_len();
        let out = buf.get_mut(..len).ok_or(BufferTooSmall { needed: len })?;
        out.fill(0);
        put(out, field::MAGIC, &MAGIC);
        put_u8(out, field::VERSION, version);
        put_u8(out, field::TYPE, self.frame_type());
        let body_len = u16::try_from(self.body_len()).unwrap_or(u16::MAX);
        put(out, field::BODY_LEN, &body_len.to_be_bytes());
        let body = out.get_mut(field::BODY..).unwrap_or(&mut []);
        match self {
            FrameRepr::Hello(h) => {
                let channel = h.channel.as_ref().map_or(&[][..], ChannelId::as_bytes);
                put_u8(body, 0, h.interest.bits());
                put_u8(body, 1, u8::try_from(channel.len()).unwrap_or(u8::MAX));
                put(body, 2..4, &h.keepalive_secs.to_be_bytes());
                put(body, 4..4 + channel.len(), channel);
            }
            FrameRepr::Welcome(w) => {
                put_u8(body, 0, w.interest.bits());
                put(body, 2..4, &w.keepalive_secs.to_be_bytes());
                put(body, 4..12, &w.broker_id.to_be_bytes());
            }
            FrameRepr::Flags(f) => {
                put_u8(body, 0, f.flags.bits());
                put(body, 4..8, &f.raises.to_be_bytes());
            }
            FrameRepr::Ping(n) | FrameRepr::Pong(n) => put(body, 0..4, &n.to_be_bytes()),
            FrameRepr::Close(c) => {
                put_u8(body, 0, c.reason as u8);
                put_u8(body, 1, c.version);
            }
            FrameRepr::StatsRequest => {}
            FrameRepr::Stat(s) => {
                put(body, 0..2, &s.index.to_be_bytes());
                put(body, 4..12, &s.value.to_be_bytes());
            }
            FrameRepr::Challenge(_) | FrameRepr::Proof(_) | FrameRepr::Accept(_) => {
                handshake::emit_body(self, body);
            }
        }
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(repr: FrameRepr, expected: &[u8]) {
        let mut out = [0u8; MAX_FRAME_LEN];
        let n = repr.emit(&mut out).unwrap();
        assert_eq!(&out[..n], expected, "emit {repr:?}");
        assert_eq!(FrameRepr::parse_bytes(expected), Ok(repr));
        assert_eq!(frame_len(expected), Ok(Some(expected.len())));
    }

    #[test]
    fn fixtures() {
        round_trip(
            FrameRepr::Hello(HelloRepr {
                interest: FlagSet::ALL,
                channel: Some(ChannelId::new("gsm1").unwrap()),
                keepalive_secs: 30,
            }),
            &[
                0x46, 0x50, 0x01, 0x10, 0x00, 0x08, 0x0f, 0x04, 0x00, 0x1e, b'g', b's', b'm', b'1',
            ],
        );
        round_trip(
            FrameRepr::Welcome(WelcomeRepr {
                interest: FlagSet::STATUS | FlagSet::NON_STATUS,
                keepalive_secs: 30,
                broker_id: 0x1122_3344_5566_7788,
            }),
            &[
                0x46, 0x50, 0x01, 0x11, 0x00, 0x0c, 0x03, 0x00, 0x00, 0x1e, 0x11, 0x22, 0x33, 0x44,
                0x55, 0x66, 0x77, 0x88,
            ],
        );
        round_trip(
            FrameRepr::Flags(FlagsRepr {
                flags: FlagSet::STATUS | FlagSet::NON_STATUS,
                raises: 1000,
            }),
            &[
                0x46, 0x50, 0x01, 0x12, 0x00, 0x08, 0x03, 0, 0, 0, 0x00, 0x00, 0x03, 0xe8,
            ],
        );
        round_trip(
            FrameRepr::Ping(7),
            &[0x46, 0x50, 0x01, 0x13, 0x00, 0x04, 0, 0, 0, 7],
        );
        round_trip(
            FrameRepr::Pong(7),
            &[0x46, 0x50, 0x01, 0x14, 0x00, 0x04, 0, 0, 0, 7],
        );
        round_trip(
            FrameRepr::StatsRequest,
            &[0x46, 0x50, 0x01, 0x16, 0x00, 0x00],
        );
        round_trip(
            FrameRepr::Stat(StatRepr {
                index: 2,
                value: 0x0102,
            }),
            &[
                0x46, 0x50, 0x01, 0x17, 0x00, 0x0c, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2,
            ],
        );
        round_trip(
            FrameRepr::Close(CloseRepr::new(CloseReason::Stuck)),
            &[0x46, 0x50, 0x01, 0x15, 0x00, 0x04, 0x08, 0x02, 0, 0],
        );
    }

    #[test]
    fn stream_splitting() {
        let ping = [0x46, 0x50, 0x01, 0x13, 0x00, 0x04, 0, 0, 0, 7];
        assert_eq!(frame_len(&[]), Ok(None));
        assert_eq!(frame_len(&ping[..1]), Ok(None));
        assert_eq!(frame_len(&ping[..9]), Ok(None));
        assert_eq!(frame_len(b"G"), Err(Error::BadMagic));
        assert_eq!(
            frame_len(&[0x46, 0x50, 9, 0x13, 0xff, 0xff]),
            Err(Error::TooLong)
        );
        let mut two = [0u8; 20];
        two[..10].copy_from_slice(&ping);
        two[10..].copy_from_slice(&ping);
        assert_eq!(frame_len(&two), Ok(Some(10)));
    }

    #[test]
    fn typed_errors() {
        let ping = [0x46, 0x50, 0x01, 0x13, 0x00, 0x04, 0, 0, 0, 7];
        let mut b = ping;
        b[2] = 3;
        assert_eq!(
            FrameRepr::parse_bytes(&b),
            Err(Error::UnsupportedVersion(3))
        );
        b[2] = 0;
        assert_eq!(
            FrameRepr::parse_bytes(&b),
            Err(Error::UnsupportedVersion(0))
        );
        b = ping;
        b[3] = 0x42;
        assert_eq!(FrameRepr::parse_bytes(&b), Err(Error::UnknownType(0x42)));
        assert_eq!(FrameRepr::parse_bytes(&ping[..8]), Err(Error::Truncated));
        let mut long = [0u8; 11];
        long[..10].copy_from_slice(&ping);
        assert_eq!(FrameRepr::parse_bytes(&long), Err(Error::LengthMismatch));
        // hello with empty interest / unknown bit / oversized channel length
        let hello = |interest: u8, n: u8| [0x46, 0x50, 1, 0x10, 0, 4, interest, n, 0, 0];
        assert_eq!(
            FrameRepr::parse_bytes(&hello(0, 0)),
            Err(Error::EmptyInterest)
        );
        assert_eq!(
            FrameRepr::parse_bytes(&hello(0x31, 0)),
            Err(Error::UnknownFlags(0x30))
        );
        assert_eq!(
            FrameRepr::parse_bytes(&hello(1, 1)),
            Err(Error::LengthMismatch)
        );
        assert_eq!(FrameRepr::parse_bytes(&hello(1, 40)), Err(Error::TooLong));
        // flags frame with nothing raised, close with unknown reason
        let flags = [0x46, 0x50, 1, 0x12, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(FrameRepr::parse_bytes(&flags), Err(Error::EmptyFlags));
        let close = [0x46, 0x50, 1, 0x15, 0, 4, 99, 1, 0, 0];
        assert_eq!(FrameRepr::parse_bytes(&close), Err(Error::UnknownCode(99)));
    }
}
