//! The text payload: a notification written as a short line of text, as a
//! database trigger sends it (`pg_notify('flagpost', 'status:gsm1;batch=20')`,
//! see `DATABASE.md`), parsed into a [`Notification`] and a batch count.
//!
//! ```text
//! payload = kind [ ":" channel ] [ ";batch=" count ]      surrounding whitespace ignored
//! kind    = "status" | "non-status" | "channel-update" | "channel-shutdown"
//! channel = a ChannelId (1–32 bytes of UTF-8, no control characters)
//!           without ";" and without surrounding whitespace
//! count   = ASCII digits, 1 ..= 4294967295 (default 1)
//! ```
//!
//! `channel-update` and `channel-shutdown` need a channel; `status` and
//! `non-status` take one or not. (`non-status:<channel>` is an extension of
//! the vendor's API, which has no targeted non-status update; the wire
//! carries it and the broker routes it like a targeted status update.)
//! Anything else is rejected with a [`PayloadError`] naming the reason, whose
//! [`label`](PayloadError::label) is stable for metrics. Parsing never
//! panics and never allocates.
//!
//! ```
//! use flagpost_core::payload::{Payload, PayloadError};
//! use flagpost_core::{ChannelId, Notification};
//!
//! let p = Payload::parse(" status:gsm1;batch=20\n").unwrap();
//! let gsm1 = ChannelId::new("gsm1").unwrap();
//! assert_eq!(p, Payload { notification: Notification::status(Some(gsm1)), batch: 20 });
//! assert_eq!(Payload::parse("channel-update"), Err(PayloadError::MissingChannel));
//! assert_eq!(PayloadError::MissingChannel.label(), "missing_channel");
//! ```

use core::fmt;

use crate::channel::ChannelId;
use crate::notify::{Kind, Notification};

/// The longest payload accepted, in bytes, surrounding whitespace included
/// (the longest valid one without whitespace is 66 bytes).
pub const MAX_PAYLOAD_LEN: usize = 256;

/// A parsed text payload: what to notify and how many changes it stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Payload {
    /// The notification.
    pub notification: Notification,
    /// How many changes it stands for (at least 1).
    pub batch: u32,
}

/// Why a text payload was rejected. Each variant is one reason, with a
/// stable [`label`](Self::label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum PayloadError {
    /// Nothing but whitespace.
    Empty,
    /// Longer than [`MAX_PAYLOAD_LEN`] bytes.
    TooLong,
    /// The text before `:` or `;` is not one of the four kinds.
    UnknownKind,
    /// A channel update or shutdown without a channel, or a `:` with
    /// nothing after it.
    MissingChannel,
    /// The channel is not a valid channel id, or has surrounding
    /// whitespace.
    BadChannel,
    /// What follows `;batch=` is not a decimal number.
    BadBatch,
    /// `;batch=0`.
    BatchZero,
    /// The batch count is larger than 4,294,967,295.
    BatchOverflow,
    /// Something after the kind, channel or batch count that the grammar
    /// does not allow (`;` not followed by `batch=`, text after the count).
    TrailingGarbage,
}

impl PayloadError {
    /// Every reason, in [`index`](Self::index) order.
    pub const ALL: [PayloadError; 9] = [
        PayloadError::Empty,
        PayloadError::TooLong,
        PayloadError::UnknownKind,
        PayloadError::MissingChannel,
        PayloadError::BadChannel,
        PayloadError::BadBatch,
        PayloadError::BatchZero,
        PayloadError::BatchOverflow,
        PayloadError::TrailingGarbage,
    ];

    /// The reason's position in [`ALL`](Self::ALL), for a table of counters.
    pub const fn index(self) -> usize {
        match self {
            PayloadError::Empty => 0,
            PayloadError::TooLong => 1,
            PayloadError::UnknownKind => 2,
            PayloadError::MissingChannel => 3,
            PayloadError::BadChannel => 4,
            PayloadError::BadBatch => 5,
            PayloadError::BatchZero => 6,
            PayloadError::BatchOverflow => 7,
            PayloadError::TrailingGarbage => 8,
        }
    }

    /// A short, stable label for metrics (`reason="unknown_kind"`).
    pub const fn label(self) -> &'static str {
        match self {
            PayloadError::Empty => "empty",
            PayloadError::TooLong => "too_long",
            PayloadError::UnknownKind => "unknown_kind",
            PayloadError::MissingChannel => "missing_channel",
            PayloadError::BadChannel => "bad_channel",
            PayloadError::BadBatch => "bad_batch",
            PayloadError::BatchZero => "batch_zero",
            PayloadError::BatchOverflow => "batch_overflow",
            PayloadError::TrailingGarbage => "trailing_garbage",
        }
    }
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PayloadError::Empty => "the payload is empty",
            PayloadError::TooLong => "the payload is longer than 256 bytes",
            PayloadError::UnknownKind => {
                "unknown kind (expected status, non-status, channel-update or channel-shutdown)"
            }
            PayloadError::MissingChannel => {
                "no channel (channel-update and channel-shutdown need `:<channel>`)"
            }
            PayloadError::BadChannel => {
                "bad channel (1-32 bytes, no control characters, no `;`, no surrounding spaces)"
            }
            PayloadError::BadBatch => "`;batch=` is not followed by a decimal number",
            PayloadError::BatchZero => "the batch count is 0 (it must be at least 1)",
            PayloadError::BatchOverflow => "the batch count is larger than 4294967295",
            PayloadError::TrailingGarbage => "unexpected text after the notification",
        })
    }
}

impl core::error::Error for PayloadError {}

impl Payload {
    /// Parses `text` (see the [module](self) for the grammar).
    pub fn parse(text: &str) -> Result<Payload, PayloadError> {
        if text.len() > MAX_PAYLOAD_LEN {
            return Err(PayloadError::TooLong);
        }
        let text = text.trim();
        if text.is_empty() {
            return Err(PayloadError::Empty);
        }
        let (head, tail) = match text.split_once(';') {
            Some((head, tail)) => (head, Some(tail)),
            None => (text, None),
        };
        let (kind, channel) = match head.split_once(':') {
            Some((kind, channel)) => (kind, Some(channel)),
            None => (head, None),
        };
        let kind = Kind::ALL
            .into_iter()
            .find(|k| k.name() == kind)
            .ok_or(PayloadError::UnknownKind)?;
        let channel = match channel {
            None | Some("") => None,
            Some(name) if name.trim() != name => return Err(PayloadError::BadChannel),
            Some(name) => Some(ChannelId::new(name).map_err(|_| PayloadError::BadChannel)?),
        };
        let notification =
            Notification::new(kind, channel).map_err(|_| PayloadError::MissingChannel)?;
        if notification.channel().is_none() && head.contains(':') {
            return Err(PayloadError::MissingChannel);
        }
        let batch = match tail {
            None => 1,
            Some(tail) => parse_batch(tail)?,
        };
        Ok(Payload {
            notification,
            batch,
        })
    }
}

/// The count of `batch=<digits>`, the text after the first `;`.
fn parse_batch(tail: &str) -> Result<u32, PayloadError> {
    let digits = tail
        .strip_prefix("batch=")
        .ok_or(PayloadError::TrailingGarbage)?;
    let end = digits
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    if end == 0 {
        return Err(PayloadError::BadBatch);
    }
    if end < digits.len() {
        return Err(PayloadError::TrailingGarbage);
    }
    let mut n: u32 = 0;
    for b in digits.bytes() {
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u32::from(b - b'0')))
            .ok_or(PayloadError::BatchOverflow)?;
    }
    if n == 0 {
        return Err(PayloadError::BatchZero);
    }
    Ok(n)
}

impl fmt::Display for Payload {
    /// The canonical text: `kind[:channel][;batch=n]`, the batch only when
    /// it is not 1. Parsing it gives the same payload back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.notification.kind().name())?;
        if let Some(channel) = self.notification.channel() {
            write!(f, ":{channel}")?;
        }
        if self.batch != 1 {
            write!(f, ";batch={}", self.batch)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::string::{String, ToString};

    fn ch(name: &str) -> ChannelId {
        ChannelId::new(name).unwrap()
    }

    fn ok(text: &str) -> (Notification, u32) {
        let p = Payload::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        (p.notification, p.batch)
    }

    #[test]
    fn every_kind_with_and_without_channel_and_batch() {
        let gsm1 = ch("gsm1");
        assert_eq!(ok("status"), (Notification::status(None), 1));
        assert_eq!(ok("status:gsm1"), (Notification::status(Some(gsm1)), 1));
        assert_eq!(ok("non-status"), (Notification::non_status(None), 1));
        assert_eq!(
            ok("non-status:gsm1;batch=3"),
            (Notification::non_status(Some(gsm1)), 3)
        );
        assert_eq!(
            ok("channel-update:gsm1"),
            (Notification::channel_update(gsm1), 1)
        );
        assert_eq!(
            ok("channel-shutdown:gsm1;batch=4294967295"),
            (Notification::channel_shutdown(gsm1), u32::MAX)
        );
        assert_eq!(
            ok(" \tstatus;batch=007\r\n"),
            (Notification::status(None), 7)
        );
        assert_eq!(
            ok("status:GSM modem 1"),
            (Notification::status(Some(ch("GSM modem 1"))), 1)
        );
        assert_eq!(ok("status:a:b"), (Notification::status(Some(ch("a:b"))), 1));
    }

    #[test]
    fn each_reason() {
        use PayloadError::*;
        let long = "x".repeat(MAX_PAYLOAD_LEN + 1);
        let cases: &[(&str, PayloadError)] = &[
            ("", Empty),
            (" \n\t", Empty),
            (&long, TooLong),
            ("Status", UnknownKind),
            ("wake", UnknownKind),
            (":gsm1", UnknownKind),
            ("status :gsm1", UnknownKind),
            ("channel-update", MissingChannel),
            ("channel-shutdown;batch=2", MissingChannel),
            ("status:", MissingChannel),
            ("channel-update:", MissingChannel),
            ("status: gsm1", BadChannel),
            ("status:gsm1 ;batch=2", BadChannel),
            ("status:a\u{1}b", BadChannel),
            ("status:123456789012345678901234567890123", BadChannel),
            ("status;batch=", BadBatch),
            ("status;batch=x", BadBatch),
            ("status;batch=-1", BadBatch),
            ("status;batch=+1", BadBatch),
            ("status;batch=0", BatchZero),
            ("status;batch=000", BatchZero),
            ("status;batch=4294967296", BatchOverflow),
            ("status;batch=99999999999999999999", BatchOverflow),
            ("status;", TrailingGarbage),
            ("status;count=2", TrailingGarbage),
            ("status;batch=2;batch=3", TrailingGarbage),
            ("status;batch=2 x", TrailingGarbage),
            ("status:gsm1;batch=2x", TrailingGarbage),
        ];
        for (text, reason) in cases {
            assert_eq!(Payload::parse(text), Err(*reason), "{text:?}");
        }
        assert!(Payload::parse("status ").is_ok());
    }

    #[test]
    fn labels_are_distinct_and_indexed() {
        for (i, reason) in PayloadError::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i);
            assert!(reason
                .label()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_'));
            for other in &PayloadError::ALL[..i] {
                assert_ne!(reason.label(), other.label());
            }
        }
    }

    #[test]
    fn display_is_canonical() {
        let p = Payload {
            notification: Notification::channel_update(ch("gsm1")),
            batch: 1,
        };
        assert_eq!(p.to_string(), "channel-update:gsm1");
        let p = Payload {
            notification: Notification::status(None),
            batch: 20,
        };
        assert_eq!(p.to_string(), "status;batch=20");
    }

    fn payload_text() -> impl Strategy<Value = String> {
        let kind = prop_oneof![
            Just("status"),
            Just("non-status"),
            Just("channel-update"),
            Just("channel-shutdown"),
            Just("Status"),
            Just(""),
        ];
        let channel = proptest::option::of("[a-z0-9 ;:\\x00é]{0,34}");
        let batch = proptest::option::of(prop_oneof![
            any::<u64>().prop_map(|n| n.to_string()),
            "[0-9x+; -]{0,12}",
        ]);
        let pad = "[ \\t\\n]{0,2}";
        (pad, kind, channel, batch, pad).prop_map(|(a, kind, channel, batch, b)| {
            let mut s = a;
            s.push_str(kind);
            if let Some(c) = channel {
                s.push(':');
                s.push_str(&c);
            }
            if let Some(n) = batch {
                s.push_str(";batch=");
                s.push_str(&n);
            }
            s.push_str(&b);
            s
        })
    }

    proptest! {
        #[test]
        fn never_panics_and_round_trips(text in prop_oneof![payload_text(), any::<String>()]) {
            if let Ok(p) = Payload::parse(&text) {
                prop_assert!(p.batch >= 1);
                prop_assert_eq!(Payload::parse(&p.to_string()), Ok(p));
            }
        }
    }
}
