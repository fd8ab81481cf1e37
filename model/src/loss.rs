//! The loss detector's model: an independent re-statement of
//! `flagpost_core::gap` (its verdict table and its bounded sender table)
//! that the driver and the gap properties check the real
//! [`SenderTable`](flagpost_core::loss::SenderTable) against.
//!
//! Where the real table keeps a 64-bit window per sender, the model keeps
//! the set of numbers seen within [`WINDOW`] behind the newest; where the
//! real one shifts bits, the model compares serial numbers (RFC 1982: `b` is
//! newer than `a` when `0 < b - a < 2^31`, wrapping). The verdict table of
//! the `loss` docs is spelled out here once more ([`delivers`],
//! [`possible_loss`], [`ack_result`]) rather than taken from `Verdict`'s own
//! methods, so the broker's use of them is checked too.

use std::collections::BTreeSet;

use flagpost_core::loss::{Verdict, WINDOW};
use flagpost_core::time::Instant;
use flagpost_core::wire::{AckResult, SenderId, Seq};

/// Whether a datagram with this verdict reaches listeners: all but
/// duplicates and stale ones.
pub fn delivers(verdict: Verdict) -> bool {
    match verdict {
        Verdict::InOrder
        | Verdict::Gap { .. }
        | Verdict::FirstSeenLate
        | Verdict::Restart
        | Verdict::Reordered => true,
        Verdict::Duplicate | Verdict::Stale => false,
    }
}

/// Whether datagrams may have been lost before one with this verdict: a
/// gap, an unknown sender past its first number, a restart.
pub fn possible_loss(verdict: Verdict) -> bool {
    match verdict {
        Verdict::Gap { .. } | Verdict::FirstSeenLate | Verdict::Restart => true,
        Verdict::InOrder | Verdict::Reordered | Verdict::Duplicate | Verdict::Stale => false,
    }
}

/// What the ack of a datagram with this verdict says.
pub fn ack_result(verdict: Verdict) -> AckResult {
    match verdict {
        Verdict::Duplicate => AckResult::Duplicate,
        Verdict::Stale => AckResult::Stale,
        _ => AckResult::Delivered,
    }
}

/// Serial-number distance from `earlier` to `later` (RFC 1982, 32 bits):
/// positive when `later` is newer, negative when it is older (a distance of
/// exactly 2^31 counts as older).
pub fn serial_distance(later: Seq, earlier: Seq) -> i64 {
    let forward = later.0.wrapping_sub(earlier.0);
    if forward < 1 << 31 {
        i64::from(forward)
    } else {
        -i64::from(earlier.0.wrapping_sub(later.0))
    }
}

/// One tracked sender.
#[derive(Clone, Debug)]
struct Tracked {
    sender: SenderId,
    last: Seq,
    /// Numbers seen, all within `WINDOW` behind `last` (which is in it).
    seen: BTreeSet<u32>,
    seen_at: Instant,
}

/// The sender table as the `loss` docs describe it: per sender the newest
/// number and the set of numbers seen in the window behind it, in
/// `capacity` slots, evicting the least recently seen sender (the first such
/// slot on a tie) when full; with no slots every sender is unknown every
/// time.
#[derive(Clone, Debug)]
pub struct GapModel {
    slots: Vec<Option<Tracked>>,
    evictions: u64,
}

impl GapModel {
    /// An empty table of `capacity` slots.
    pub fn new(capacity: usize) -> Self {
        GapModel {
            slots: vec![None; capacity],
            evictions: 0,
        }
    }

    /// How many senders the table can track.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// How many senders are tracked.
    pub fn len(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    /// Whether no sender is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many senders were evicted to make room.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// The verdict on datagram `seq` from `sender` at `now`, recorded.
    pub fn observe(&mut self, now: Instant, sender: SenderId, seq: Seq) -> Verdict {
        let Some(t) = self.slots.iter_mut().flatten().find(|t| t.sender == sender) else {
            self.insert(now, sender, seq);
            return if seq == Seq::FIRST {
                Verdict::InOrder
            } else {
                Verdict::FirstSeenLate
            };
        };
        t.seen_at = now;
        let d = serial_distance(seq, t.last);
        if d > 0 {
            t.last = seq;
            t.seen.insert(seq.0);
            t.seen.retain(|s| seq.0.wrapping_sub(*s) < WINDOW);
            return match d {
                1 => Verdict::InOrder,
                _ => Verdict::Gap {
                    missing: u32::try_from(d - 1).expect("below 2^31"),
                },
            };
        }
        if d.unsigned_abs() < u64::from(WINDOW) {
            return if t.seen.insert(seq.0) {
                Verdict::Reordered
            } else {
                Verdict::Duplicate
            };
        }
        if seq == Seq::FIRST {
            t.last = seq;
            t.seen = BTreeSet::from([seq.0]);
            return Verdict::Restart;
        }
        Verdict::Stale
    }

    fn insert(&mut self, now: Instant, sender: SenderId, seq: Seq) {
        let i = match self.slots.iter().position(Option::is_none) {
            Some(free) => free,
            None => {
                let oldest = self.slots.iter().flatten().map(|t| t.seen_at).min();
                let Some(oldest) = oldest else {
                    return; // no slots at all
                };
                self.evictions += 1;
                self.slots
                    .iter()
                    .position(|t| t.as_ref().is_some_and(|t| t.seen_at == oldest))
                    .expect("the oldest entry is in the table")
            }
        };
        self.slots[i] = Some(Tracked {
            sender,
            last: seq,
            seen: BTreeSet::from([seq.0]),
            seen_at: now,
        });
    }
}
