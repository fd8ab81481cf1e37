//! Federation messages: what one broker publishes for the others (over NATS,
//! outside core) — an accepted notification with the broker it came through,
//! or a request to re-check.
//!
//! ```text
//! header, 16 bytes                         body
//!  0  magic "FP"          2                notify (type 0x10): the notify
//!  2  version = 1         1                  datagram as the origin accepted
//!  3  type                1                  it, verbatim (its own tag, if any)
//!  4  flags               1  b1 tagged     recheck (type 0x11): nothing, or
//!  5  reserved = 0        3                  the 16-byte tag when tagged
//!  8  origin broker id    8
//! ```
//!
//! All integers are big-endian. A notify message's flags are zero: the
//! datagram inside carries its own tag. A recheck's tag is a MAC over
//! [`RECHECK_CONTEXT`] and the 16 header bytes (see `PROTOCOL.md`,
//! *Federation*). Like every module here, no byte sequence makes these
//! functions panic.

use super::datagram::{FLAG_TAGGED, TYPE_NOTIFY};
use super::{get_u64, get_u8, put, put_u8, BufferTooSmall, Error, Field, Tag};
use super::{NotifyRepr, MAGIC, MAX_DATAGRAM_LEN, TAG_LEN, VERSION};

/// Byte ranges of the federation header.
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
    /// Reserved, zero.
    pub const RESERVED: Field = 5..8;
    /// The broker the message comes from.
    pub const ORIGIN: Field = 8..16;
    /// Start of the body.
    pub const BODY: usize = 16;
}

/// Message type code of a federated notification.
pub const TYPE_FEDERATED_NOTIFY: u8 = 0x10;
/// Message type code of a federated re-check request.
pub const TYPE_FEDERATED_RECHECK: u8 = 0x11;
/// Length of the header.
pub const HEADER_LEN: usize = 16;
/// The longest valid message; a buffer of this size holds any of them.
pub const MAX_FEDERATED_LEN: usize = HEADER_LEN + MAX_DATAGRAM_LEN;
/// What a recheck's tag covers before its header.
pub const RECHECK_CONTEXT: &[u8] = b"flagpost federation recheck";

/// A parsed federation message, borrowing its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FederatedRepr<'a> {
    /// The broker that accepted the notification (or asks for the re-check).
    pub origin: u64,
    /// What it says.
    pub message: Federated<'a>,
}

/// The body of a [`FederatedRepr`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Federated<'a> {
    /// A notification: the datagram's bytes (a valid notify) and its parse.
    Notify {
        /// The notify datagram as the origin accepted it.
        datagram: &'a [u8],
        /// Its parse.
        notify: NotifyRepr,
    },
    /// The origin may have failed to publish notifications: re-check.
    Recheck {
        /// The tag, when the origin has a key.
        tag: Option<Tag>,
    },
}

impl<'a> FederatedRepr<'a> {
    /// Parses a message (header, then body).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        if bytes.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if bytes.get(field::MAGIC) != Some(&MAGIC[..]) {
            return Err(Error::BadMagic);
        }
        let version = get_u8(bytes, field::VERSION);
        if version != VERSION {
            return Err(Error::UnsupportedVersion(version));
        }
        let msg_type = get_u8(bytes, field::TYPE);
        let flags = get_u8(bytes, field::FLAGS);
        let allowed = match msg_type {
            TYPE_FEDERATED_NOTIFY => 0,
            TYPE_FEDERATED_RECHECK => FLAG_TAGGED,
            t => return Err(Error::UnknownType(t)),
        };
        if flags & !allowed != 0 {
            return Err(Error::UnknownFlags(flags & !allowed));
        }
        if bytes
            .get(field::RESERVED)
            .is_none_or(|r| r.iter().any(|&b| b != 0))
        {
            return Err(Error::ReservedNonZero);
        }
        let origin = get_u64(bytes, field::ORIGIN);
        let body = bytes.get(field::BODY..).unwrap_or(&[]);
        let message = if msg_type == TYPE_FEDERATED_NOTIFY {
            // only a notify travels (an ack is shorter: name it first)
            if body.len() > 3 && get_u8(body, 3) != TYPE_NOTIFY {
                return Err(Error::UnknownType(get_u8(body, 3)));
            }
            Federated::Notify {
                datagram: body,
                notify: NotifyRepr::parse_bytes(body)?,
            }
        } else {
            let want = if flags & FLAG_TAGGED != 0 { TAG_LEN } else { 0 };
            if body.len() < want {
                return Err(Error::Truncated);
            }
            if body.len() > want {
                return Err(Error::LengthMismatch);
            }
            Federated::Recheck {
                tag: Tag::try_from(body).ok(),
            }
        };
        Ok(FederatedRepr { origin, message })
    }

    /// The length [`emit`](Self::emit) writes.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN
            + match &self.message {
                Federated::Notify { datagram, .. } => datagram.len(),
                Federated::Recheck { tag } => tag.map_or(0, |_| TAG_LEN),
            }
    }

    /// Writes the message into the front of `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let len = self.buffer_len();
        let out = buf.get_mut(..len).ok_or(BufferTooSmall { needed: len })?;
        let (msg_type, flags) = match &self.message {
            Federated::Notify { datagram, .. } => return emit_notify(self.origin, datagram, buf),
            Federated::Recheck { tag: Some(tag) } => {
                put(out, field::BODY..len, tag);
                (TYPE_FEDERATED_RECHECK, FLAG_TAGGED)
            }
            Federated::Recheck { tag: None } => (TYPE_FEDERATED_RECHECK, 0),
        };
        emit_header(out, msg_type, flags, self.origin);
        Ok(len)
    }
}

/// Writes a notify message from `origin` carrying `datagram` (the bytes of
/// an accepted notify, copied verbatim) into the front of `buf`; returns its
/// length.
pub fn emit_notify(origin: u64, datagram: &[u8], buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
    let len = HEADER_LEN + datagram.len();
    let out = buf.get_mut(..len).ok_or(BufferTooSmall { needed: len })?;
    emit_header(out, TYPE_FEDERATED_NOTIFY, 0, origin);
    put(out, field::BODY..len, datagram);
    Ok(len)
}

/// The 16 header bytes of a recheck from `origin` (what its tag covers,
/// after [`RECHECK_CONTEXT`]).
pub fn recheck_header(origin: u64, tagged: bool) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    let flags = if tagged { FLAG_TAGGED } else { 0 };
    emit_header(&mut out, TYPE_FEDERATED_RECHECK, flags, origin);
    out
}

fn emit_header(out: &mut [u8], msg_type: u8, flags: u8, origin: u64) {
    put(out, field::MAGIC, &MAGIC);
    put_u8(out, field::VERSION, VERSION);
    put_u8(out, field::TYPE, msg_type);
    put_u8(out, field::FLAGS, flags);
    put(out, field::RESERVED, &[0; 3]);
    put(out, field::ORIGIN, &origin.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::{Kind, Notification};
    use crate::wire::{SenderId, Seq};

    fn datagram(buf: &mut [u8]) -> usize {
        NotifyRepr {
            notification: Notification::new(Kind::Status, None).unwrap(),
            sender: SenderId(7),
            seq: Seq(3),
            batch: 2,
            ack_requested: true,
            probe: false,
            tag: None,
        }
        .emit(buf)
        .unwrap()
    }

    #[test]
    fn notify_round_trips_verbatim() {
        let mut d = [0u8; MAX_DATAGRAM_LEN];
        let n = datagram(&mut d);
        let notify = NotifyRepr::parse_bytes(&d[..n]).unwrap();
        let repr = FederatedRepr {
            origin: 0xb0,
            message: Federated::Notify {
                datagram: &d[..n],
                notify,
            },
        };
        let mut out = [0u8; MAX_FEDERATED_LEN];
        let len = repr.emit(&mut out).unwrap();
        assert_eq!(len, HEADER_LEN + n);
        assert_eq!(&out[HEADER_LEN..len], &d[..n]);
        assert_eq!(FederatedRepr::parse(&out[..len]), Ok(repr));
    }

    #[test]
    fn recheck_round_trips_with_and_without_tag() {
        for tag in [None, Some([9u8; TAG_LEN])] {
            let repr = FederatedRepr {
                origin: 1,
                message: Federated::Recheck { tag },
            };
            let mut out = [0u8; MAX_FEDERATED_LEN];
            let len = repr.emit(&mut out).unwrap();
            assert_eq!(&out[..HEADER_LEN], &recheck_header(1, tag.is_some()));
            assert_eq!(FederatedRepr::parse(&out[..len]), Ok(repr));
        }
    }

    #[test]
    fn rejects_what_is_not_a_message() {
        let mut d = [0u8; MAX_DATAGRAM_LEN];
        let n = datagram(&mut d);
        let mut out = [0u8; MAX_FEDERATED_LEN];
        let notify = NotifyRepr::parse_bytes(&d[..n]).unwrap();
        let len = FederatedRepr {
            origin: 2,
            message: Federated::Notify {
                datagram: &d[..n],
                notify,
            },
        }
        .emit(&mut out)
        .unwrap();
        let msg = &out[..len];
        assert_eq!(FederatedRepr::parse(&msg[..15]), Err(Error::Truncated));
        assert_eq!(FederatedRepr::parse(&msg[..len - 1]), Err(Error::Truncated));
        let mut bad = msg.to_vec();
        bad[field::FLAGS] = FLAG_TAGGED;
        assert_eq!(FederatedRepr::parse(&bad), Err(Error::UnknownFlags(2)));
        let mut bad = msg.to_vec();
        bad[6] = 1;
        assert_eq!(FederatedRepr::parse(&bad), Err(Error::ReservedNonZero));
        let mut bad = msg.to_vec();
        bad[field::TYPE] = 0x12;
        assert_eq!(FederatedRepr::parse(&bad), Err(Error::UnknownType(0x12)));
        let mut bad = msg.to_vec();
        bad[HEADER_LEN + 3] = 0x02; // an ack inside
        assert_eq!(FederatedRepr::parse(&bad), Err(Error::UnknownType(2)));
        let mut long = recheck_header(3, false).to_vec();
        long.push(0);
        assert_eq!(FederatedRepr::parse(&long), Err(Error::LengthMismatch));
        let short = recheck_header(3, true);
        assert_eq!(FederatedRepr::parse(&short), Err(Error::Truncated));
    }
}
