//! UDP datagrams: the notification a sender fires at the broker and the
//! acknowledgement the broker returns when asked for one.
//!
//! ```text
//! notify (type 0x01), 24 + n (+ 16) bytes       ack (type 0x02), 20 (+ 16) bytes
//!  0  magic "FP"          2                      0  magic "FP"      2
//!  2  version = 1         1                      2  version = 1     1
//!  3  type = 0x01         1                      3  type = 0x02     1
//!  4  flags               1  b0 ack, b1 tagged,  4  flags           1  b1 tagged
//!                            b2 probe
//!  5  kind                1  1..=4               5  result          1  0..=2
//!  6  channel length n    1  0..=32              6  reserved = 0    2
//!  7  reserved = 0        1                      8  sender id       8
//!  8  sender id           8                     16  sequence        4
//! 16  sequence            4                     20  tag            16  if tagged
//! 20  batch count         4  >= 1
//! 24  channel             n  UTF-8
//! 24+n tag               16  if tagged
//! ```
//!
//! All integers are big-endian. A datagram must be exactly as long as its
//! header says. The tag, when present, is a MAC over every byte before it
//! (see `PROTOCOL.md`); this module carries it and never interprets it.

use core::fmt;

use super::{get_u32, get_u64, get_u8, put, put_u8, BufferTooSmall, Error, Field, Tag};
use super::{MAGIC, TAG_LEN, VERSION};
use crate::channel::ChannelId;
use crate::notify::{Kind, Notification};

/// Byte ranges of the datagram header.
pub mod field {
    use super::Field;

    /// Magic `"FP"`.
    pub const MAGIC: Field = 0..2;
    /// Protocol version.
    pub const VERSION: usize = 2;
    /// Message type.
    pub const TYPE: usize = 3;
    /// Flag bits.
    pub const FLAGS: usize = 4;
    /// Notify: kind code. Ack: result code.
    pub const KIND: usize = 5;
    /// Notify: channel length. Ack: reserved.
    pub const CHANNEL_LEN: usize = 6;
    /// Notify: reserved. Ack: reserved.
    pub const RESERVED: usize = 7;
    /// Sender id.
    pub const SENDER: Field = 8..16;
    /// Sequence number.
    pub const SEQ: Field = 16..20;
    /// Notify: batch count.
    pub const BATCH: Field = 20..24;
    /// Notify: start of the channel bytes.
    pub const CHANNEL: usize = 24;
}

/// Message type code of a notification.
pub const TYPE_NOTIFY: u8 = 0x01;
/// Message type code of an acknowledgement.
pub const TYPE_ACK: u8 = 0x02;
/// Flag bit: the sender asks for an acknowledgement.
pub const FLAG_ACK_REQUESTED: u8 = 0b01;
/// Flag bit: a [`TAG_LEN`]-byte authentication tag ends the datagram.
pub const FLAG_TAGGED: u8 = 0b10;
/// Flag bit (notify only): a tail-loss probe, the sender's last datagram
/// sent once more with the same sequence number.
pub const FLAG_PROBE: u8 = 0b100;

/// Length of a notification without channel or tag.
pub const NOTIFY_HEADER_LEN: usize = 24;
/// Length of an ack without tag.
pub const ACK_HEADER_LEN: usize = 20;
/// The longest valid datagram of either type (a tagged notification naming a
/// 32-byte channel); a receive buffer of this size never truncates a valid one.
pub const MAX_DATAGRAM_LEN: usize = NOTIFY_HEADER_LEN + ChannelId::MAX_LEN + TAG_LEN;

/// A sender's identity: random per process or boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SenderId(pub u64);

impl fmt::Display for SenderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A per-sender sequence number. Starts at 1, increments by one per new
/// datagram (a retransmission repeats its number) and wraps; compared with
/// serial-number arithmetic (RFC 1982).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Seq(pub u32);

impl Seq {
    /// The first sequence number of a sender.
    pub const FIRST: Seq = Seq(1);

    /// The next sequence number (wrapping).
    pub const fn next(self) -> Seq {
        Seq(self.0.wrapping_add(1))
    }

    /// Signed serial distance from `earlier` to `self`: positive when `self`
    /// is newer.
    pub const fn distance_from(self, earlier: Seq) -> i64 {
        // Reinterpreting the wrapped difference as i32 is serial arithmetic.
        self.0.wrapping_sub(earlier.0) as i32 as i64
    }
}

/// A read-only or read-write view of a datagram in a byte buffer.
#[derive(Clone, Copy, Debug)]
pub struct Datagram<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Datagram<T> {
    /// Wraps a buffer without checking it. Accessors never panic, but read 0
    /// past the end: call [`check_len`](Self::check_len) before trusting them.
    pub const fn new_unchecked(buffer: T) -> Self {
        Datagram { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let d = Self::new_unchecked(buffer);
        d.check_len()?;
        Ok(d)
    }

    /// Checks magic, version, type and length, in the order `PROTOCOL.md`
    /// documents (the first check that fails names the error):
    ///
    /// 1. fewer than 4 bytes (an empty datagram too): [`Error::Truncated`];
    /// 2. not `"FP"`: [`Error::BadMagic`];
    /// 3. not version 1: [`Error::UnsupportedVersion`];
    /// 4. neither notify nor ack: [`Error::UnknownType`];
    /// 5. more than [`MAX_DATAGRAM_LEN`] bytes: [`Error::TooLong`];
    /// 6. shorter than the type's fixed header: [`Error::Truncated`];
    /// 7. a notify's channel length above 32: [`Error::TooLong`];
    /// 8. not exactly the length the header declares: shorter is
    ///    [`Error::Truncated`], longer [`Error::LengthMismatch`].
    ///
    /// After this every accessor reads real bytes.
    pub fn check_len(&self) -> Result<(), Error> {
        let buf = self.buffer.as_ref();
        if buf.len() < 4 {
            return Err(Error::Truncated);
        }
        if buf.get(field::MAGIC) != Some(&MAGIC[..]) {
            return Err(Error::BadMagic);
        }
        if self.version() != VERSION {
            return Err(Error::UnsupportedVersion(self.version()));
        }
        let header = match self.msg_type() {
            TYPE_NOTIFY => NOTIFY_HEADER_LEN,
            TYPE_ACK => ACK_HEADER_LEN,
            other => return Err(Error::UnknownType(other)),
        };
        if buf.len() > MAX_DATAGRAM_LEN {
            return Err(Error::TooLong);
        }
        if buf.len() < header {
            return Err(Error::Truncated);
        }
        if self.msg_type() == TYPE_NOTIFY && usize::from(self.channel_len()) > ChannelId::MAX_LEN {
            return Err(Error::TooLong);
        }
        match buf.len().cmp(&self.expected_len()) {
            core::cmp::Ordering::Less => Err(Error::Truncated),
            core::cmp::Ordering::Greater => Err(Error::LengthMismatch),
            core::cmp::Ordering::Equal => Ok(()),
        }
    }

    fn expected_len(&self) -> usize {
        let channel = if self.msg_type() == TYPE_NOTIFY {
            usize::from(self.channel_len())
        } else {
            0
        };
        let header = if self.msg_type() == TYPE_NOTIFY {
            NOTIFY_HEADER_LEN
        } else {
            ACK_HEADER_LEN
        };
        header + channel + if self.is_tagged() { TAG_LEN } else { 0 }
    }

    /// Consumes the view, returning the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The version byte.
    pub fn version(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::VERSION)
    }

    /// The message type byte.
    pub fn msg_type(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::TYPE)
    }

    /// The raw flag bits.
    pub fn flags(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::FLAGS)
    }

    /// Whether an authentication tag ends the datagram.
    pub fn is_tagged(&self) -> bool {
        self.flags() & FLAG_TAGGED != 0
    }

    /// Notify: the kind code. Ack: the result code.
    pub fn kind_code(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::KIND)
    }

    /// Notify: the channel length.
    pub fn channel_len(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::CHANNEL_LEN)
    }

    /// The sender id.
    pub fn sender(&self) -> SenderId {
        SenderId(get_u64(self.buffer.as_ref(), field::SENDER))
    }

    /// The sequence number.
    pub fn seq(&self) -> Seq {
        Seq(get_u32(self.buffer.as_ref(), field::SEQ))
    }

    /// Notify: the batch count.
    pub fn batch(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::BATCH)
    }

    /// Notify: the channel bytes (empty when untargeted or out of range).
    pub fn channel_bytes(&self) -> &[u8] {
        let start = field::CHANNEL;
        let end = start + usize::from(self.channel_len());
        self.buffer.as_ref().get(start..end).unwrap_or(&[])
    }

    /// The bytes the tag authenticates: everything before the tag.
    pub fn signed_bytes(&self) -> &[u8] {
        let buf = self.buffer.as_ref();
        let end = if self.is_tagged() {
            buf.len().saturating_sub(TAG_LEN)
        } else {
            buf.len()
        };
        buf.get(..end).unwrap_or(&[])
    }

    /// The tag, when the datagram is tagged and long enough to hold one.
    pub fn tag(&self) -> Option<&[u8]> {
        let buf = self.buffer.as_ref();
        if self.is_tagged() && buf.len() >= TAG_LEN {
            buf.get(buf.len() - TAG_LEN..)
        } else {
            None
        }
    }

    fn reserved_zero(&self) -> bool {
        let buf = self.buffer.as_ref();
        match self.msg_type() {
            TYPE_NOTIFY => get_u8(buf, field::RESERVED) == 0,
            _ => get_u8(buf, field::CHANNEL_LEN) == 0 && get_u8(buf, field::RESERVED) == 0,
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Datagram<T> {
    fn set_header(&mut self, msg_type: u8, flags: u8) {
        let buf = self.buffer.as_mut();
        put(buf, field::MAGIC, &MAGIC);
        put_u8(buf, field::VERSION, VERSION);
        put_u8(buf, field::TYPE, msg_type);
        put_u8(buf, field::FLAGS, flags);
    }

    /// Mutable access to the tag bytes (empty unless tagged), for signing
    /// after [`NotifyRepr::emit`].
    pub fn tag_mut(&mut self) -> &mut [u8] {
        let tagged = self.is_tagged();
        let buf = self.buffer.as_mut();
        let start = buf.len().saturating_sub(TAG_LEN);
        match buf.get_mut(start..) {
            Some(tag) if tagged && tag.len() == TAG_LEN => tag,
            _ => &mut [],
        }
    }
}

/// A parsed notification datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct NotifyRepr {
    /// What is notified.
    pub notification: Notification,
    /// Who sends it.
    pub sender: SenderId,
    /// Its sequence number.
    pub seq: Seq,
    /// How many changes it stands for (>= 1).
    pub batch: u32,
    /// Whether the sender asks for an [`AckRepr`].
    pub ack_requested: bool,
    /// Whether this is a tail-loss probe (a repeat of the sender's last
    /// datagram): the broker counts a probe that finds its original apart
    /// from a genuine duplicate.
    pub probe: bool,
    /// The authentication tag, if the datagram carries one.
    pub tag: Option<Tag>,
}

impl NotifyRepr {
    /// Parses a checked notification datagram.
    pub fn parse<T: AsRef<[u8]>>(d: &Datagram<T>) -> Result<Self, Error> {
        d.check_len()?;
        if d.msg_type() != TYPE_NOTIFY {
            return Err(Error::UnknownType(d.msg_type()));
        }
        // Then the fields in byte order, then what combines them.
        let unknown = d.flags() & !(FLAG_ACK_REQUESTED | FLAG_TAGGED | FLAG_PROBE);
        if unknown != 0 {
            return Err(Error::UnknownFlags(unknown));
        }
        let kind = Kind::from_code(d.kind_code()).ok_or(Error::UnknownKind(d.kind_code()))?;
        if !d.reserved_zero() {
            return Err(Error::ReservedNonZero);
        }
        if d.batch() == 0 {
            return Err(Error::ZeroBatch);
        }
        let channel = match d.channel_len() {
            0 => None,
            _ => Some(ChannelId::from_bytes(d.channel_bytes())?),
        };
        let notification = Notification::new(kind, channel).map_err(|_| Error::MissingChannel)?;
        let tag = match d.tag() {
            Some(bytes) => Some(Tag::try_from(bytes).map_err(|_| Error::Truncated)?),
            None => None,
        };
        Ok(NotifyRepr {
            notification,
            sender: d.sender(),
            seq: d.seq(),
            batch: d.batch(),
            ack_requested: d.flags() & FLAG_ACK_REQUESTED != 0,
            probe: d.flags() & FLAG_PROBE != 0,
            tag,
        })
    }

    /// Parses a notification from raw bytes.
    pub fn parse_bytes(bytes: &[u8]) -> Result<Self, Error> {
        Self::parse(&Datagram::new_unchecked(bytes))
    }

    /// The length [`emit`](Self::emit) writes.
    pub fn buffer_len(&self) -> usize {
        NOTIFY_HEADER_LEN
            + self.notification.channel().map_or(0, ChannelId::len)
            + if self.tag.is_some() { TAG_LEN } else { 0 }
    }

    /// Writes the datagram into the front of `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let len = self.buffer_len();
        let out = buf.get_mut(..len).ok_or(BufferTooSmall { needed: len })?;
        let mut flags = 0;
        if self.ack_requested {
            flags |= FLAG_ACK_REQUESTED;
        }
        if self.tag.is_some() {
            flags |= FLAG_TAGGED;
        }
        if self.probe {
            flags |= FLAG_PROBE;
        }
        let channel = self
            .notification
            .channel()
            .map_or(&[][..], ChannelId::as_bytes);
        let mut d = Datagram::new_unchecked(&mut *out);
        d.set_header(TYPE_NOTIFY, flags);
        let buf = d.buffer;
        put_u8(buf, field::KIND, self.notification.kind().code());
        put_u8(
            buf,
            field::CHANNEL_LEN,
            u8::try_from(channel.len()).unwrap_or(u8::MAX),
        );
        put_u8(buf, field::RESERVED, 0);
        put(buf, field::SENDER, &self.sender.0.to_be_bytes());
        put(buf, field::SEQ, &self.seq.0.to_be_bytes());
        put(buf, field::BATCH, &self.batch.to_be_bytes());
        put(buf, field::CHANNEL..field::CHANNEL + channel.len(), channel);
        if let Some(tag) = &self.tag {
            put(buf, len - TAG_LEN..len, tag);
        }
        Ok(len)
    }
}

/// What the broker did with an acknowledged notification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum AckResult {
    /// Delivered to the listeners it reaches.
    Delivered = 0,
    /// Already received (a retransmission): not delivered again.
    Duplicate = 1,
    /// Older than the broker's reorder window: ignored.
    Stale = 2,
}

impl AckResult {
    /// The result with wire code `code`.
    pub const fn from_code(code: u8) -> Result<Self, Error> {
        match code {
            0 => Ok(AckResult::Delivered),
            1 => Ok(AckResult::Duplicate),
            2 => Ok(AckResult::Stale),
            other => Err(Error::UnknownCode(other)),
        }
    }
}

/// A parsed acknowledgement datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AckRepr {
    /// The sender id of the acknowledged notification.
    pub sender: SenderId,
    /// Its sequence number.
    pub seq: Seq,
    /// What the broker did with it.
    pub result: AckResult,
    /// The authentication tag, present exactly when the notification had one.
    pub tag: Option<Tag>,
}

impl AckRepr {
    /// Parses a checked ack datagram.
    pub fn parse<T: AsRef<[u8]>>(d: &Datagram<T>) -> Result<Self, Error> {
        d.check_len()?;
        if d.msg_type() != TYPE_ACK {
            return Err(Error::UnknownType(d.msg_type()));
        }
        // Then the fields in byte order.
        let unknown = d.flags() & !FLAG_TAGGED;
        if unknown != 0 {
            return Err(Error::UnknownFlags(unknown));
        }
        let result = AckResult::from_code(d.kind_code())?;
        if !d.reserved_zero() {
            return Err(Error::ReservedNonZero);
        }
        let tag = match d.tag() {
            Some(bytes) => Some(Tag::try_from(bytes).map_err(|_| Error::Truncated)?),
            None => None,
        };
        Ok(AckRepr {
            sender: d.sender(),
            seq: d.seq(),
            result,
            tag,
        })
    }

    /// Parses an ack from raw bytes.
    pub fn parse_bytes(bytes: &[u8]) -> Result<Self, Error> {
        Self::parse(&Datagram::new_unchecked(bytes))
    }

    /// The ack answering `notify`: same sender and sequence, tagged when it
    /// was (the tag itself is left zero for the signer), so never longer.
    pub fn answering(notify: &NotifyRepr, result: AckResult) -> Self {
        AckRepr {
            sender: notify.sender,
            seq: notify.seq,
            result,
            tag: notify.tag.map(|_| [0; TAG_LEN]),
        }
    }

    /// The length [`emit`](Self::emit) writes.
    pub fn buffer_len(&self) -> usize {
        ACK_HEADER_LEN + if self.tag.is_some() { TAG_LEN } else { 0 }
    }

    /// Writes the ack into the front of `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let len = self.buffer_len();
        let out = buf.get_mut(..len).ok_or(BufferTooSmall { needed: len })?;
        let flags = if self.tag.is_some() { FLAG_TAGGED } else { 0 };
        let mut d = Datagram::new_unchecked(&mut *out);
        d.set_header(TYPE_ACK, flags);
        let buf = d.buffer;
        put_u8(buf, field::KIND, self.result as u8);
        put_u8(buf, field::CHANNEL_LEN, 0);
        put_u8(buf, field::RESERVED, 0);
        put(buf, field::SENDER, &self.sender.0.to_be_bytes());
        put(buf, field::SEQ, &self.seq.0.to_be_bytes());
        if let Some(tag) = &self.tag {
            put(buf, ACK_HEADER_LEN..len, tag);
        }
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(s: &str) -> ChannelId {
        ChannelId::new(s).unwrap()
    }

    // Byte fixtures: the same vectors appear in PROTOCOL.md.
    const STATUS_ALL: [u8; 24] = [
        0x46, 0x50, 0x01, 0x01, 0x00, 0x01, 0x00,
        0x00, // magic, v1, notify, flags, status, no channel
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // sender id
        0x00, 0x00, 0x00, 0x2a, // seq 42
        0x00, 0x00, 0x00, 0x01, // batch 1
    ];

    #[test]
    fn status_fixture() {
        let repr = NotifyRepr::parse_bytes(&STATUS_ALL).unwrap();
        assert_eq!(repr.notification, Notification::status(None));
        assert_eq!(repr.sender, SenderId(0x0102_0304_0506_0708));
        assert_eq!(repr.seq, Seq(42));
        assert_eq!(repr.batch, 1);
        assert!(!repr.ack_requested);
        let mut out = [0u8; MAX_DATAGRAM_LEN];
        let n = repr.emit(&mut out).unwrap();
        assert_eq!(&out[..n], &STATUS_ALL[..]);
    }

    #[test]
    fn channel_update_with_ack_and_tag_round_trips() {
        let repr = NotifyRepr {
            notification: Notification::channel_update(ch("gsm1")),
            sender: SenderId(7),
            seq: Seq(u32::MAX),
            batch: 20,
            ack_requested: true,
            probe: false,
            tag: Some([0xaa; TAG_LEN]),
        };
        let mut out = [0u8; MAX_DATAGRAM_LEN];
        let n = repr.emit(&mut out).unwrap();
        assert_eq!(n, 24 + 4 + 16);
        assert_eq!(&out[4..8], &[0x03, 0x03, 0x04, 0x00]);
        assert_eq!(&out[24..28], b"gsm1");
        let parsed = NotifyRepr::parse_bytes(&out[..n]).unwrap();
        assert_eq!(parsed, repr);
        let d = Datagram::new_checked(&out[..n]).unwrap();
        assert_eq!(d.signed_bytes().len(), 28);
        assert_eq!(d.tag(), Some(&[0xaa; TAG_LEN][..]));
    }

    #[test]
    fn typed_errors() {
        let mut b = STATUS_ALL;
        assert_eq!(NotifyRepr::parse_bytes(&b[..3]), Err(Error::Truncated));
        assert_eq!(NotifyRepr::parse_bytes(&b[..23]), Err(Error::Truncated));
        b[0] = b'X';
        assert_eq!(NotifyRepr::parse_bytes(&b), Err(Error::BadMagic));
        b = STATUS_ALL;
        b[2] = 9;
        assert_eq!(
            NotifyRepr::parse_bytes(&b),
            Err(Error::UnsupportedVersion(9))
        );
        b = STATUS_ALL;
        b[3] = 0x7f;
        assert_eq!(NotifyRepr::parse_bytes(&b), Err(Error::UnknownType(0x7f)));
        b = STATUS_ALL;
        b[3] = TYPE_ACK;
        assert_eq!(NotifyRepr::parse_bytes(&b), Err(Error::LengthMismatch));
        b = STATUS_ALL;
        b[4] = 0x80;
        assert_eq!(NotifyRepr::parse_bytes(&b), Err(Error::UnknownFlags(0x80)));
        b = STATUS_ALL;
        b[5] = 5;
        assert_eq!(NotifyRepr::parse_bytes(&b), Err(Error::UnknownKind(5)));
        b = STATUS_ALL;
        b[5] = 3;
        assert_eq!(NotifyRepr::parse_bytes(&b), Err(Error::MissingChannel));
        b = STATUS_ALL;
        b[7] = 1;
        assert_eq!(NotifyRepr::parse_bytes(&b), Err(Error::ReservedNonZero));
        b = STATUS_ALL;
        b[23] = 0;
        assert_eq!(NotifyRepr::parse_bytes(&b), Err(Error::ZeroBatch));
        b = STATUS_ALL;
        b[6] = 2;
        assert_eq!(NotifyRepr::parse_bytes(&b), Err(Error::Truncated));
        b[6] = 200;
        assert_eq!(NotifyRepr::parse_bytes(&b), Err(Error::TooLong));
        assert_eq!(NotifyRepr::parse_bytes(&[]), Err(Error::Truncated));
        // channel length 33..=255: too long, whatever the datagram's length
        b = STATUS_ALL;
        b[6] = 33;
        assert_eq!(NotifyRepr::parse_bytes(&b), Err(Error::TooLong));
        let mut c33 = [b'a'; 57];
        c33[..24].copy_from_slice(&b);
        assert_eq!(NotifyRepr::parse_bytes(&c33), Err(Error::TooLong));
        // over MAX_DATAGRAM_LEN: too long, whatever the header declares
        let mut over = [0u8; MAX_DATAGRAM_LEN + 1];
        over[..24].copy_from_slice(&STATUS_ALL);
        assert_eq!(NotifyRepr::parse_bytes(&over), Err(Error::TooLong));
        over[2] = 2;
        assert_eq!(
            NotifyRepr::parse_bytes(&over),
            Err(Error::UnsupportedVersion(2))
        );
        let mut long = [0u8; 26];
        long[..24].copy_from_slice(&STATUS_ALL);
        assert_eq!(NotifyRepr::parse_bytes(&long), Err(Error::LengthMismatch));
        long[6] = 2;
        long[24] = 0;
        long[25] = b'a';
        assert!(matches!(
            NotifyRepr::parse_bytes(&long),
            Err(Error::BadChannel(_))
        ));
    }

    #[test]
    fn ack_is_never_longer_than_its_notification() {
        for tag in [None, Some([1; TAG_LEN])] {
            let notify = NotifyRepr {
                notification: Notification::status(None),
                sender: SenderId(1),
                seq: Seq(1),
                batch: 1,
                ack_requested: true,
                probe: false,
                tag,
            };
            let ack = AckRepr::answering(&notify, AckResult::Delivered);
            assert!(ack.buffer_len() <= notify.buffer_len());
            let mut out = [0u8; MAX_DATAGRAM_LEN];
            let n = ack.emit(&mut out).unwrap();
            assert_eq!(AckRepr::parse_bytes(&out[..n]), Ok(ack));
            assert_eq!(
                NotifyRepr::parse_bytes(&out[..n]),
                Err(Error::UnknownType(TYPE_ACK))
            );
        }
    }

    #[test]
    fn emit_into_short_buffer_is_an_error() {
        let repr = NotifyRepr::parse_bytes(&STATUS_ALL).unwrap();
        assert_eq!(
            repr.emit(&mut [0u8; 10]),
            Err(BufferTooSmall { needed: 24 })
        );
    }

    #[test]
    fn serial_arithmetic() {
        assert_eq!(Seq(1).distance_from(Seq(u32::MAX)), 2);
        assert_eq!(Seq(u32::MAX).distance_from(Seq(1)), -2);
        assert_eq!(Seq(5).distance_from(Seq(5)), 0);
        assert_eq!(Seq(u32::MAX).next(), Seq(0));
    }
}
