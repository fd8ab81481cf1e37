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

use flagpost_core::loss::{Verdict, FAR_JUMP, WINDOW};
use flagpost_core::wire::{AckResult, SenderId, Seq};

/// Whether a datagram with this verdict reaches listeners: all but
/// duplicates and stale ones.
pub fn delivers(verdict: Verdict) -> bool {
    match verdict {
        Verdict::InOrder
        | Verdict::Gap { .. }
        | Verdict::FirstSeenLate
        | Verdict::Restart
        | Verdict::Reordered
        | Verdict::Rewound => true,
        Verdict::Duplicate | Verdict::Stale => false,
    }
}

/// Whether datagrams may have been lost before one with this verdict: a
/// gap, an unknown sender past its first number, a restart, a rewind.
pub fn possible_loss(verdict: Verdict) -> bool {
    match verdict {
        Verdict::Gap { .. } | Verdict::FirstSeenLate | Verdict::Restart | Verdict::Rewound => true,
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

/// A newest number and the numbers seen up to [`WINDOW`] behind it (the
/// newest among them).
#[derive(Clone, Debug)]
struct Seen {
    newest: u32,
    seen: BTreeSet<u32>,
}

impl Seen {
    fn only(seq: u32) -> Self {
        Seen {
            newest: seq,
            seen: BTreeSet::from([seq]),
        }
    }

    /// Whether `seq` is the newest or less than [`WINDOW`] behind it.
    fn covers(&self, seq: u32) -> bool {
        let d = serial_distance(Seq(seq), Seq(self.newest));
        d <= 0 && -d < i64::from(WINDOW)
    }

    /// Records `seq`, which it covers: a duplicate if seen.
    fn record(&mut self, seq: u32) -> Verdict {
        if self.seen.insert(seq) {
            Verdict::Reordered
        } else {
            Verdict::Duplicate
        }
    }

    /// Makes `seq`, newer, the newest: what falls out of the window goes.
    fn move_to(&mut self, seq: u32) {
        self.newest = seq;
        self.seen.insert(seq);
        self.seen.retain(|s| seq.wrapping_sub(*s) < WINDOW);
    }
}

/// One tracked sender.
#[derive(Clone, Debug)]
struct Tracked {
    sender: SenderId,
    track: Seen,
    /// The track left by a far jump, and whether it is weak.
    anchor: Option<(Seen, bool)>,
    /// The first number of the farthest jump since the anchor was set.
    jump_to: u32,
    first_seen_late: bool,
    /// Second chances left before eviction.
    credit: u8,
}

impl Tracked {
    fn new(sender: SenderId, seq: Seq) -> Self {
        Tracked {
            sender,
            track: Seen::only(seq.0),
            anchor: None,
            jump_to: 0,
            first_seen_late: seq != Seq::FIRST,
            credit: 0,
        }
    }

    fn observe(&mut self, seq: u32) -> Verdict {
        let d = serial_distance(Seq(seq), Seq(self.track.newest));
        if d > 0 {
            if d >= i64::from(FAR_JUMP) {
                self.far_jump(seq);
            }
            self.track.move_to(seq);
            return match d {
                1 => Verdict::InOrder,
                _ => Verdict::Gap {
                    missing: u32::try_from(d - 1).expect("below 2^31"),
                },
            };
        }
        let in_window = self.track.covers(seq);
        if let Some(verdict) = self.by_anchor(seq, in_window) {
            return verdict;
        }
        if in_window {
            return self.track.record(seq);
        }
        if self.first_seen_late {
            self.first_seen_late = false;
            // a strong anchor (a far jump's) stays strong: it may be the
            // sender's own track, and this number a forged one
            let old = std::mem::replace(&mut self.track, Seen::only(seq));
            if self.anchor.is_none() {
                self.anchor = Some((old, true));
                self.jump_to = seq;
            }
            return if seq == 1 {
                Verdict::Restart
            } else {
                Verdict::Rewound
            };
        }
        if seq == 1 {
            self.far_jump(seq);
            self.track = Seen::only(1);
            return Verdict::Restart;
        }
        Verdict::Stale
    }

    /// A number at or behind the newest, against the anchor.
    fn by_anchor(&mut self, seq: u32, in_window: bool) -> Option<Verdict> {
        let (anchor, _) = self.anchor.as_mut()?;
        let ahead = seq.wrapping_sub(anchor.newest);
        let reach = self.jump_to.wrapping_sub(anchor.newest).min(1 << 31);
        let fits = 0 < ahead && ahead < reach;
        if fits && ahead < WINDOW {
            let (mut anchor, _) = self.anchor.take().expect("anchored");
            anchor.move_to(seq);
            self.track = anchor;
            return Some(Verdict::Rewound);
        }
        if in_window {
            return None;
        }
        if anchor.covers(seq) {
            return Some(anchor.record(seq));
        }
        if !fits {
            return None;
        }
        let mut track = anchor.clone();
        track.move_to(seq);
        self.track = track;
        Some(Verdict::Rewound)
    }

    /// The newest moves far (a jump of `FAR_JUMP` or more, or a restart)
    /// to `seq`: the track left becomes the anchor, unless a strong one is
    /// held, which only learns how far the jumps went.
    fn far_jump(&mut self, seq: u32) {
        match &self.anchor {
            Some((anchor, false)) => {
                let from = anchor.newest;
                if seq.wrapping_sub(from) > self.jump_to.wrapping_sub(from) {
                    self.jump_to = seq;
                }
            }
            _ => {
                self.anchor = Some((self.track.clone(), false));
                self.jump_to = seq;
            }
        }
    }
}

/// The sender table as the `loss` docs describe it: per sender the newest
/// number and the set of numbers seen in the window behind it (and an
/// anchor), in `capacity` slots filled in order; when full, a clock hand
/// goes round the slots from the first, taking a second chance from each
/// sender that has one (a sender earns one per datagram after its first,
/// at most three) and evicting the first that has none, the hand stopping
/// just past it. With no slots every sender is unknown every time.
#[derive(Clone, Debug)]
pub struct GapModel {
    slots: Vec<Option<Tracked>>,
    hand: usize,
    evictions: u64,
}

/// The most second chances a sender saves up.
const MAX_CREDIT: u8 = 3;

impl GapModel {
    /// An empty table of `capacity` slots.
    pub fn new(capacity: usize) -> Self {
        GapModel {
            slots: vec![None; capacity],
            hand: 0,
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

    /// The verdict on datagram `seq` from `sender`, recorded.
    pub fn observe(&mut self, sender: SenderId, seq: Seq) -> Verdict {
        let Some(t) = self.slots.iter_mut().flatten().find(|t| t.sender == sender) else {
            self.insert(sender, seq);
            return if seq == Seq::FIRST {
                Verdict::InOrder
            } else {
                Verdict::FirstSeenLate
            };
        };
        t.credit = (t.credit + 1).min(MAX_CREDIT);
        t.observe(seq.0)
    }

    fn insert(&mut self, sender: SenderId, seq: Seq) {
        if self.slots.is_empty() {
            return;
        }
        let i = match self.slots.iter().position(Option::is_none) {
            Some(free) => free,
            None => loop {
                let i = self.hand;
                self.hand = (i + 1) % self.slots.len();
                let t = self.slots[i].as_mut().expect("a full table");
                if t.credit == 0 {
                    self.evictions += 1;
                    break i;
                }
                t.credit -= 1;
            },
        };
        self.slots[i] = Some(Tracked::new(sender, seq));
    }
}
