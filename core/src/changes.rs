//! Notifications from a database's committed row changes, without a
//! trigger: the WAL source's decisions. [`PgOutput`] reads the messages of
//! PostgreSQL's `pgoutput` logical decoding plugin (protocol version 1) into
//! [`RowChange`]s of the messages table, and [`Changes`] folds one committed
//! transaction's row changes into notifications the way
//! `sql/postgres/flagpost.sql`'s triggers do:
//!
//! | row change | notification |
//! |---|---|
//! | INSERT | status for its channel (NULL or not a [`ChannelId`]: untargeted) |
//! | UPDATE of `status_id`, `trigger_status_id` or `ack_status_id` | status for its (new) channel |
//! | UPDATE whose old values are not known (no `REPLICA IDENTITY FULL`) | status for its channel: a superset |
//! | UPDATE of other columns only | non-status, untargeted |
//! | UPDATE that left the row as it was | nothing |
//! | DELETE, TRUNCATE | non-status, untargeted |
//!
//! At commit, [`Changes::poll_notification`] hands out one notification per
//! (kind, channel) with the number of rows as its batch. The table is fixed
//! (`N` entries, no allocation); a change that does not fit folds into an
//! untargeted status (which raises what every other notification raises, on
//! every listener: a superset, nothing lost), as the notifier's pending table
//! does.
//!
//! Call order, per transaction: [`Changes::clear`] at its begin,
//! [`PgOutput::decode`] for each message and [`Changes::add`] for each row
//! change, then at its commit [`Changes::poll_notification`] until `None`.
//! A transport that has several commits at hand moves each one's
//! notifications into a second table ([`Changes::add_notification`]) and
//! delivers that one once: the same notifications, merged.
//! A message that does not decode must not be dropped silently: the
//! transport adds [`RowChange::Unknown`] (an untargeted status).
//!
//! ```
//! use flagpost_core::changes::{Changes, RowChange};
//! use flagpost_core::channel::ChannelId;
//! use flagpost_core::notify::Notification;
//!
//! let gsm1 = ChannelId::new("gsm1").unwrap();
//! let mut changes = Changes::<8>::new();
//! for _ in 0..3 {
//!     changes.add(RowChange::Insert { channel: Some(gsm1) });
//! }
//! changes.add(RowChange::Delete);
//! assert_eq!(changes.poll_notification(), Some((Notification::status(Some(gsm1)), 3)));
//! assert_eq!(changes.poll_notification(), Some((Notification::non_status(None), 1)));
//! assert_eq!(changes.poll_notification(), None);
//! ```

use core::fmt;

use crate::channel::ChannelId;
use crate::notify::{Kind, Notification};

/// What an UPDATE did to the status columns, as far as the stream says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum OldRow {
    /// The old values are not in the stream (the table's replica identity
    /// is not `FULL`, and the key did not change): counted as a status
    /// change, a superset.
    Unknown,
    /// `status_id`, `trigger_status_id` or `ack_status_id` changed.
    StatusChanged,
    /// The status columns are as they were; other columns changed.
    StatusSame,
    /// Every column is as it was.
    Identical,
}

/// One row change of the messages table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RowChange {
    /// A row inserted; `channel` is `None` when the column is NULL or not a
    /// [`ChannelId`].
    Insert {
        /// The row's channel.
        channel: Option<ChannelId>,
    },
    /// A row updated; `channel` is the new row's.
    Update {
        /// The (new) row's channel.
        channel: Option<ChannelId>,
        /// What the stream says of the old row.
        old: OldRow,
    },
    /// A row deleted.
    Delete,
    /// The table truncated (the number of rows is not known).
    Truncate,
    /// A change that could not be read: an untargeted status (a superset).
    Unknown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
struct Entry {
    kind: Kind,
    channel: Option<ChannelId>,
    batch: u32,
}

/// One transaction's notifications, up to `N` distinct (kind, channel)
/// pairs (see the [module](self)).
#[derive(Clone, Debug)]
pub struct Changes<const N: usize> {
    entries: heapless::Vec<Entry, N>,
    rows: u64,
    overflows: u64,
}

impl<const N: usize> Default for Changes<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Changes<N> {
    /// An empty table.
    pub const fn new() -> Self {
        Changes {
            entries: heapless::Vec::new(),
            rows: 0,
            overflows: 0,
        }
    }

    /// Forgets the current transaction's changes (at its begin, or when the
    /// connection is lost before its commit).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Counts one row change into the current transaction.
    pub fn add(&mut self, change: RowChange) {
        self.rows += 1;
        let (kind, channel) = match change {
            RowChange::Insert { channel }
            | RowChange::Update {
                channel,
                old: OldRow::Unknown | OldRow::StatusChanged,
            } => (Kind::Status, channel),
            RowChange::Update {
                old: OldRow::StatusSame,
                ..
            }
            | RowChange::Delete
            | RowChange::Truncate => (Kind::NonStatus, None),
            RowChange::Update {
                old: OldRow::Identical,
                ..
            } => return,
            RowChange::Unknown => (Kind::Status, None),
        };
        self.record(kind, channel, 1);
    }

    /// Counts a notification standing for `batch` rows (one a committed
    /// transaction made, say, into a table of several committed
    /// transactions that go out together): merged with an entry of the same
    /// kind and channel, folded into an untargeted status when full.
    pub fn add_notification(&mut self, notification: Notification, batch: u32) {
        self.record(
            notification.kind(),
            notification.channel().copied(),
            batch.max(1),
        );
    }

    /// How many distinct notifications are waiting.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    fn record(&mut self, kind: Kind, channel: Option<ChannelId>, batch: u32) {
        if let Some(e) = self
            .entries
            .iter_mut()
            .find(|e| e.kind == kind && e.channel == channel)
        {
            e.batch = e.batch.saturating_add(batch);
            return;
        }
        if self
            .entries
            .push(Entry {
                kind,
                channel,
                batch,
            })
            .is_ok()
        {
            return;
        }
        // Full: fold into an untargeted status (a superset of every entry).
        self.overflows += 1;
        let status = self
            .entries
            .iter_mut()
            .find(|e| e.kind == Kind::Status && e.channel.is_none());
        match status {
            Some(e) => e.batch = e.batch.saturating_add(batch),
            None => {
                if let Some(last) = self.entries.last_mut() {
                    *last = Entry {
                        kind: Kind::Status,
                        channel: None,
                        batch: last.batch.saturating_add(batch),
                    };
                }
            }
        }
    }

    /// The next notification of the committed transaction and the number
    /// of rows it stands for (at least 1), in the order first seen; `None`
    /// when all went out.
    #[must_use]
    pub fn poll_notification(&mut self) -> Option<(Notification, u32)> {
        if self.entries.is_empty() {
            return None;
        }
        let e = self.entries.remove(0);
        // Status and non-status may be untargeted: `new` cannot fail.
        let n = Notification::new(e.kind, e.channel).unwrap_or(Notification::status(None));
        Some((n, e.batch.max(1)))
    }

    /// Whether the current transaction has nothing to notify.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Row changes counted since this table was made.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Changes folded into an untargeted status because the table was full.
    pub fn overflows(&self) -> u64 {
        self.overflows
    }
}

/// Why a `pgoutput` message could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum DecodeError {
    /// The message ends before one of its fields.
    Truncated,
    /// A row of a relation no Relation message described.
    UnknownRelation,
    /// A tuple part that is not `K`, `O` or `N`, or a column that is not
    /// `n`, `u`, `t` or `b`.
    Malformed,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DecodeError::Truncated => "pgoutput message truncated",
            DecodeError::UnknownRelation => "pgoutput row of an undescribed relation",
            DecodeError::Malformed => "pgoutput message malformed",
        })
    }
}

impl core::error::Error for DecodeError {}

/// What one `pgoutput` message was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Decoded {
    /// A transaction begins.
    Begin,
    /// The transaction commits; `end_lsn` is what to confirm to the server
    /// once its notifications are delivered.
    Commit {
        /// The LSN after the commit record.
        end_lsn: u64,
    },
    /// Row changes of the messages table (a TRUNCATE of it is one).
    Row(RowChange),
    /// Anything else: a relation described, a row of another table, a type,
    /// an origin, a logical message.
    Other,
}

/// The columns of the messages table the decisions read, by position.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
struct Columns {
    channel: Option<u16>,
    status: [Option<u16>; 3],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
struct Relation {
    oid: u32,
    /// `None`: another table than messages.
    messages: Option<Columns>,
}

/// The table whose rows are messages.
pub const MESSAGES_TABLE: &[u8] = b"messages";
const STATUS_COLUMNS: [&[u8]; 3] = [b"status_id", b"trigger_status_id", b"ack_status_id"];

/// A `pgoutput` (protocol version 1) reader that remembers up to `R`
/// relations (see the [module](self)). Never panics, never allocates.
#[derive(Clone, Debug)]
pub struct PgOutput<const R: usize> {
    relations: heapless::Vec<Relation, R>,
    /// The next slot to replace when the relation table is full.
    evict: usize,
}

impl<const R: usize> Default for PgOutput<R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const R: usize> PgOutput<R> {
    /// A reader that knows no relation (as at the start of a stream).
    pub const fn new() -> Self {
        PgOutput {
            relations: heapless::Vec::new(),
            evict: 0,
        }
    }

    /// Forgets every relation (a new connection describes them again).
    pub fn reset(&mut self) {
        self.relations.clear();
        self.evict = 0;
    }

    /// Reads one message (the payload of one XLogData).
    pub fn decode(&mut self, msg: &[u8]) -> Result<Decoded, DecodeError> {
        let mut r = Reader(msg);
        match r.u8()? {
            b'B' => Ok(Decoded::Begin),
            b'C' => {
                r.u8()?; // flags
                r.u64()?; // the commit's LSN
                Ok(Decoded::Commit { end_lsn: r.u64()? })
            }
            b'R' => {
                self.relation(&mut r)?;
                Ok(Decoded::Other)
            }
            b'I' => {
                let Some(cols) = self.columns(r.u32()?)? else {
                    return Ok(Decoded::Other);
                };
                if r.u8()? != b'N' {
                    return Err(DecodeError::Malformed);
                }
                let new = Tuple::read(&mut r, &cols)?;
                Ok(Decoded::Row(RowChange::Insert {
                    channel: new.channel(),
                }))
            }
            b'U' => {
                let Some(cols) = self.columns(r.u32()?)? else {
                    return Ok(Decoded::Other);
                };
                let (old, tag) = match r.u8()? {
                    b'O' => (Some(Tuple::read(&mut r, &cols)?), r.u8()?),
                    b'K' => {
                        Tuple::read(&mut r, &cols)?; // the key only
                        (None, r.u8()?)
                    }
                    tag => (None, tag),
                };
                if tag != b'N' {
                    return Err(DecodeError::Malformed);
                }
                let new = Tuple::read(&mut r, &cols)?;
                let old = match old {
                    None => OldRow::Unknown,
                    Some(o) if o.raw == new.raw => OldRow::Identical,
                    Some(o) if o.status == new.status && !new.status_unknown() => {
                        OldRow::StatusSame
                    }
                    Some(_) => OldRow::StatusChanged,
                };
                Ok(Decoded::Row(RowChange::Update {
                    channel: new.channel(),
                    old,
                }))
            }
            b'D' => match self.columns(r.u32()?)? {
                Some(_) => Ok(Decoded::Row(RowChange::Delete)),
                None => Ok(Decoded::Other),
            },
            b'T' => {
                let n = r.u32()?;
                r.u8()?; // options
                for _ in 0..n {
                    let oid = r.u32()?;
                    if matches!(
                        self.find(oid),
                        Some(Relation {
                            messages: Some(_),
                            ..
                        })
                    ) {
                        return Ok(Decoded::Row(RowChange::Truncate));
                    }
                }
                Ok(Decoded::Other)
            }
            _ => Ok(Decoded::Other),
        }
    }

    fn find(&self, oid: u32) -> Option<&Relation> {
        self.relations.iter().find(|r| r.oid == oid)
    }

    /// The messages table's columns for a row of `oid` (`None`: another
    /// table).
    fn columns(&self, oid: u32) -> Result<Option<Columns>, DecodeError> {
        self.find(oid)
            .map(|r| r.messages)
            .ok_or(DecodeError::UnknownRelation)
    }

    fn relation(&mut self, r: &mut Reader<'_>) -> Result<(), DecodeError> {
        let oid = r.u32()?;
        r.cstr()?; // namespace
        let name = r.cstr()?;
        r.u8()?; // replica identity
        let ncols = r.u16()?;
        let mut cols = Columns::default();
        for i in 0..ncols {
            r.u8()?; // flags
            let col = r.cstr()?;
            r.u32()?; // type
            r.u32()?; // type modifier
            if col == b"channel" {
                cols.channel = Some(i);
            }
            for (slot, wanted) in cols.status.iter_mut().zip(STATUS_COLUMNS) {
                if col == wanted {
                    *slot = Some(i);
                }
            }
        }
        let relation = Relation {
            oid,
            messages: (name == MESSAGES_TABLE).then_some(cols),
        };
        if let Some(known) = self.relations.iter_mut().find(|k| k.oid == oid) {
            *known = relation;
        } else if let Err(relation) = self.relations.push(relation) {
            // Full: replace the slots in turn (a row of a forgotten relation
            // is an UnknownRelation, which the transport notifies as
            // untargeted status).
            if let Some(slot) = self.relations.get_mut(self.evict) {
                *slot = relation;
            }
            self.evict = (self.evict + 1) % R.max(1);
        }
        Ok(())
    }
}

/// The column values of one tuple the decisions need.
#[derive(Clone, Copy, Debug)]
struct Tuple<'a> {
    /// The whole tuple, to tell an unchanged row.
    raw: &'a [u8],
    channel: Option<&'a [u8]>,
    /// The status columns' text (`None`: NULL, absent, or unchanged TOAST).
    status: [Option<&'a [u8]>; 3],
}

impl<'a> Tuple<'a> {
    fn read(r: &mut Reader<'a>, cols: &Columns) -> Result<Self, DecodeError> {
        let start = r.0;
        let n = r.u16()?;
        let mut t = Tuple {
            raw: &[],
            channel: None,
            status: [None; 3],
        };
        for i in 0..n {
            let value = match r.u8()? {
                b'n' | b'u' => None,
                b't' | b'b' => {
                    let len = usize::try_from(r.u32()?).map_err(|_| DecodeError::Truncated)?;
                    Some(r.take(len)?)
                }
                _ => return Err(DecodeError::Malformed),
            };
            if cols.channel == Some(i) {
                t.channel = value;
            }
            for (slot, at) in t.status.iter_mut().zip(cols.status) {
                if at == Some(i) {
                    *slot = value;
                }
            }
        }
        t.raw = start.get(..start.len() - r.0.len()).unwrap_or(&[]);
        Ok(t)
    }

    fn channel(&self) -> Option<ChannelId> {
        self.channel.and_then(|c| ChannelId::from_bytes(c).ok())
    }

    /// Whether a status column has no value to compare.
    fn status_unknown(&self) -> bool {
        self.status.iter().any(Option::is_none)
    }
}

/// Big-endian fields off the front of a message; every read is checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn array<const K: usize>(&mut self) -> Result<[u8; K], DecodeError> {
        self.take(K)?.try_into().map_err(|_| DecodeError::Truncated)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// A NUL-terminated string, without its NUL.
    fn cstr(&mut self) -> Result<&'a [u8], DecodeError> {
        let end = self
            .0
            .iter()
            .position(|b| *b == 0)
            .ok_or(DecodeError::Truncated)?;
        let s = self.take(end)?;
        self.take(1)?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests;
