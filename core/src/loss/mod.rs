//! Loss detection: per-sender sequence tracking in a bounded table.
//!
//! Each sender numbers its datagrams 1, 2, 3, … under an id that is random
//! per process or boot. The [`SenderTable`] keeps, per sender, the newest
//! sequence number and a 64-bit window of the ones before it, in
//! caller-supplied slots; when full it evicts the least recently seen sender.
//! [`SenderTable::observe`] classifies each datagram:
//!
//! | verdict | when (tried in this order) | deliver? | possible loss? |
//! |---|---|---|---|
//! | [`Verdict::InOrder`] | the next number, or a new sender's first | yes | no |
//! | [`Verdict::Gap`] | numbers were skipped | yes | yes |
//! | [`Verdict::FirstSeenLate`] | an unknown sender whose number is not 1 (evicted, broker restarted, or its first datagrams lost) | yes | yes |
//! | [`Verdict::Rewound`] | at or behind the newest, less than [`WINDOW`] after the anchor and before the farthest jump since | yes | yes |
//! | [`Verdict::Reordered`] | an older number inside the window (or the anchor's), not seen yet | yes | no (its gap was already counted) |
//! | [`Verdict::Duplicate`] | a number already seen (in the window or the anchor's) | no | no |
//! | [`Verdict::Rewound`] | older than the window, after the anchor and before the farthest jump since; or the first such from a sender first seen late | yes | yes |
//! | [`Verdict::Restart`] | a known sender back at number 1, far behind its last | yes | yes |
//! | [`Verdict::Stale`] | older than the window, fitting no anchor | no | no |
//!
//! The broker answers a possible loss by raising status, non-status and
//! channel update for everyone (`broker::LOSS_FLAGS`): an extra poll or
//! reload is cheap, a missed one is not. A late datagram inside the window is
//! still delivered, so a reordered channel update is not lost.
//!
//! # Far jumps and the anchor
//!
//! Without a key anyone can send a datagram under a real sender's id. One
//! far ahead of its numbers would move the window past them, and the real
//! sender's next datagrams would all be stale — silenced, and a confirmed
//! send's retries ended by a stale ack. So a jump of [`FAR_JUMP`] or more
//! (or a restart) keeps the track it left as the slot's *anchor*: its
//! newest number and window. A datagram stale for the newest but inside the
//! anchor's window is judged there (a replay of what the sender sent before
//! the jump is still a duplicate); one after the anchor's newest and before
//! the farthest jump made since the anchor was set continues the old track:
//! the window is *rewound* to it (delivered, and a possible loss, since the
//! numbers in between may be lost). A rewind that leaves the anchor's newest
//! inside the window settles it (and is preferred even inside the newest's
//! window: a forged number just past the window must not turn the sender's
//! next numbers into duplicates); the anchor is otherwise kept through
//! further jumps, so a second forged number cannot push the real track out.
//! A sender first seen late has no known track: it follows, once, a number
//! far behind its first one, keeping the other track as a *weak* anchor
//! that the next far jump replaces. An anchor a far jump has already left
//! stays strong, though: the first number may have been the sender's own,
//! and after a real far jump (a long loss) a number forged less than half
//! the space ahead of the sender can be half the space or more after the
//! anchor — behind it, out of any rewind's reach. Made weak, the anchor
//! would go at the next forged far jump, and the sender's track with it.
//! A sender's own numbers, once the table
//! has seen one (and while it keeps the sender), are thus never stale
//! whatever numbers are forged [`FAR_JUMP`] or more ahead of them (and less
//! than half the number space: farther is behind, by serial arithmetic).
//! Not covered: a neighbour who forges both the first number the table
//! sees and a far jump from it before the sender's own arrive, then forges
//! far ahead of the one followed, has the sender's numbers stale for as
//! long as they are behind the forged ones (the table has seen none of
//! the sender's own).
//! What a key-less broker cannot stop is a neighbour who sees the sender's
//! traffic and forges its very next numbers (they become the sender's
//! duplicates): only a key does. A broker with a
//! key turns rewinding off ([`SenderTable::set_rewind`]): its senders'
//! numbers cannot be forged, and a replayed datagram must stay stale.

use crate::wire::{SenderId, Seq};
use track::Track;

pub use table::SenderTable;

mod table;
mod track;

/// How many sequence numbers behind the newest are remembered.
pub const WINDOW: u32 = 64;

/// A forward jump of this many numbers or more leaves the sender's track
/// as the anchor (see the [module docs](self)).
///
/// It is the window: a smaller jump keeps the old newest inside the window,
/// so the sender's next numbers are still delivered (as reordered) and the
/// jump cannot silence it; any larger bound would leave jumps between the
/// window and the bound free to silence a sender. A real sender jumps this
/// far only after losing 63 datagrams in a row — its notifier merges bursts
/// into batch counts and paces them, so that takes the broker's receive
/// queue overflowing (which the kernel reports as drops) or a long outage —
/// and treating such a real jump as suspect costs little: a late datagram
/// from the numbers it skipped (a confirmed send's retry) is delivered as a
/// rewind rather than dropped as stale.
pub const FAR_JUMP: u32 = WINDOW;

/// What a datagram's sequence number says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Verdict {
    /// The expected next number, or number 1 from a sender not seen before.
    InOrder,
    /// `missing` numbers were skipped before this one.
    Gap {
        /// How many datagrams are missing (saturating).
        missing: u32,
    },
    /// A sender not in the table, whose number is not 1.
    FirstSeenLate,
    /// A known sender started again from number 1.
    Restart,
    /// An older number inside the window, not seen before.
    Reordered,
    /// A number already seen.
    Duplicate,
    /// A number far behind the newest that continues the sender's track
    /// from before a far jump: the window moved back to it.
    Rewound,
    /// A number older than the window.
    Stale,
}

impl Verdict {
    /// Whether the datagram should be delivered to listeners.
    pub const fn deliver(self) -> bool {
        !matches!(self, Verdict::Duplicate | Verdict::Stale)
    }

    /// Whether datagrams may have been lost before this one.
    pub const fn possible_loss(self) -> bool {
        matches!(
            self,
            Verdict::Gap { .. } | Verdict::FirstSeenLate | Verdict::Restart | Verdict::Rewound
        )
    }
}

/// One sender's entry; allocate them with [`SenderSlot::EMPTY`].
///
/// Slot *i* also holds bucket *i* of the table's hash index (the head of
/// its chain), whoever its sender is, so the index needs no storage of its
/// own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SenderSlot {
    sender: SenderId,
    /// The window of `last`: bit `k` set, number `last - k` was seen.
    window: u64,
    /// The anchor's window (when anchored).
    anchor_window: u64,
    last: Seq,
    /// The anchor's newest number (when anchored).
    anchor_last: Seq,
    /// The first number of the farthest jump since the anchor was set.
    jump_to: Seq,
    /// Hash bucket *i*: the first entry of its chain ([`NIL`]: none).
    head: u32,
    /// The next entry in this entry's chain.
    next: u32,
    /// Second chances left before eviction (see [`SenderTable`]).
    credit: u8,
    /// [`ANCHORED`], [`ANCHOR_WEAK`], [`FIRST_SEEN_LATE`].
    flags: u8,
}

/// No entry (an index past any table).
const NIL: u32 = u32::MAX;
/// The slot's sender has an anchor.
const ANCHORED: u8 = 1 << 1;
/// The anchor is not known to be the sender's track: the next far jump
/// replaces it. Only a sender first seen late following a number far
/// behind sets it, and only on an anchor it makes (not on a far jump's).
const ANCHOR_WEAK: u8 = 1 << 2;
/// First seen at a number other than 1, and nothing far behind it judged
/// since.
const FIRST_SEEN_LATE: u8 = 1 << 3;

impl SenderSlot {
    /// An unused slot.
    pub const EMPTY: SenderSlot = SenderSlot {
        sender: SenderId(0),
        window: 0,
        anchor_window: 0,
        last: Seq(0),
        anchor_last: Seq(0),
        jump_to: Seq(0),
        head: NIL,
        next: NIL,
        credit: 0,
        flags: 0,
    };

    /// Size in bytes of one slot, for sizing caller storage (48).
    pub const SIZE: usize = core::mem::size_of::<SenderSlot>();

    /// This slot's entry for `sender`, whose first number seen is `seq`,
    /// keeping the slot's hash bucket.
    fn occupied(&self, sender: SenderId, seq: Seq) -> SenderSlot {
        let late = if seq == Seq::FIRST {
            0
        } else {
            FIRST_SEEN_LATE
        };
        SenderSlot {
            sender,
            window: 1,
            last: seq,
            head: self.head,
            flags: late,
            ..SenderSlot::EMPTY
        }
    }

    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    fn set(&mut self, flag: u8, on: bool) {
        if on {
            self.flags |= flag;
        } else {
            self.flags &= !flag;
        }
    }

    fn main(&self) -> Track {
        Track {
            last: self.last,
            window: self.window,
        }
    }

    fn set_main(&mut self, track: Track) {
        self.last = track.last;
        self.window = track.window;
    }

    fn anchor(&self) -> Option<Track> {
        self.has(ANCHORED).then_some(Track {
            last: self.anchor_last,
            window: self.anchor_window,
        })
    }

    /// Sets or drops the anchor (dropping it drops its weakness too).
    fn set_anchor(&mut self, anchor: Option<Track>) {
        self.set(ANCHORED, anchor.is_some());
        if anchor.is_none() {
            self.set(ANCHOR_WEAK, false);
        }
        let track = anchor.unwrap_or(Track {
            last: Seq(0),
            window: 0,
        });
        self.anchor_last = track.last;
        self.anchor_window = track.window;
    }
}

impl Default for SenderSlot {
    fn default() -> Self {
        Self::EMPTY
    }
}

#[cfg(test)]
mod tests;
