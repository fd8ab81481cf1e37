//! Loss detection: per-sender sequence tracking in a bounded table.
//!
//! Each sender numbers its datagrams 1, 2, 3, … under an id that is random
//! per process or boot. The [`SenderTable`] keeps, per sender, the newest
//! sequence number and a 64-bit window of the ones before it, in
//! caller-supplied slots; when full it evicts the least recently seen sender.
//! [`SenderTable::observe`] classifies each datagram:
//!
//! | verdict | when | deliver? | possible loss? |
//! |---|---|---|---|
//! | [`Verdict::InOrder`] | the next number, or a new sender's first | yes | no |
//! | [`Verdict::Gap`] | numbers were skipped | yes | yes |
//! | [`Verdict::FirstSeenLate`] | an unknown sender whose number is not 1 (evicted, broker restarted, or its first datagrams lost) | yes | yes |
//! | [`Verdict::Restart`] | a known sender back at number 1, far behind its last | yes | yes |
//! | [`Verdict::Reordered`] | an older number inside the window, not seen yet | yes | no (its gap was already counted) |
//! | [`Verdict::Duplicate`] | a number already seen | no | no |
//! | [`Verdict::Stale`] | older than the window | no | no |
//!
//! The broker answers a possible loss by raising status, non-status and
//! channel update for everyone (`broker::LOSS_FLAGS`): an extra poll or
//! reload is cheap, a missed one is not. A late datagram inside the window is
//! still delivered, so a reordered channel update is not lost.

use crate::time::Instant;
use crate::wire::{SenderId, Seq};

/// How many sequence numbers behind the newest are remembered.
pub const WINDOW: u32 = 64;

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
            Verdict::Gap { .. } | Verdict::FirstSeenLate | Verdict::Restart
        )
    }
}

/// One sender's entry; allocate them with [`SenderSlot::EMPTY`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SenderSlot {
    sender: Option<SenderId>,
    last: Seq,
    /// Bit `k` set: number `last - k` was seen.
    window: u64,
    seen_at: Instant,
}

impl SenderSlot {
    /// An unused slot.
    pub const EMPTY: SenderSlot = SenderSlot {
        sender: None,
        last: Seq(0),
        window: 0,
        seen_at: Instant::ZERO,
    };

    /// Size in bytes of one slot, for sizing caller storage.
    pub const SIZE: usize = core::mem::size_of::<SenderSlot>();
}

impl Default for SenderSlot {
    fn default() -> Self {
        Self::EMPTY
    }
}

/// Per-sender sequence tracking in caller-supplied slots.
///
/// ```
/// use flagpost_core::loss::{SenderSlot, SenderTable, Verdict};
/// use flagpost_core::time::Instant;
/// use flagpost_core::wire::{SenderId, Seq};
///
/// let mut table = SenderTable::new([SenderSlot::EMPTY; 4]);
/// let (a, now) = (SenderId(0xa), Instant::ZERO);
/// assert_eq!(table.observe(now, a, Seq(1)), Verdict::InOrder);
/// assert_eq!(table.observe(now, a, Seq(4)), Verdict::Gap { missing: 2 });
/// assert_eq!(table.observe(now, a, Seq(2)), Verdict::Reordered);
/// assert_eq!(table.observe(now, a, Seq(2)), Verdict::Duplicate);
/// ```
#[derive(Clone, Debug)]
pub struct SenderTable<S> {
    slots: S,
    hint: usize,
    evictions: u64,
}

impl<S: AsRef<[SenderSlot]> + AsMut<[SenderSlot]>> SenderTable<S> {
    /// A table over `slots` (all should be [`SenderSlot::EMPTY`]). With zero
    /// slots every sender is unknown every time.
    pub fn new(slots: S) -> Self {
        SenderTable {
            slots,
            hint: 0,
            evictions: 0,
        }
    }

    /// How many senders the table can track.
    pub fn capacity(&self) -> usize {
        self.slots.as_ref().len()
    }

    /// How many senders it tracks now.
    pub fn len(&self) -> usize {
        self.slots
            .as_ref()
            .iter()
            .filter(|s| s.sender.is_some())
            .count()
    }

    /// Whether it tracks no sender.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many senders were evicted to make room.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    fn find(&mut self, sender: SenderId) -> Option<usize> {
        let slots = self.slots.as_ref();
        if slots
            .get(self.hint)
            .is_some_and(|s| s.sender == Some(sender))
        {
            return Some(self.hint);
        }
        let i = slots.iter().position(|s| s.sender == Some(sender))?;
        self.hint = i;
        Some(i)
    }

    /// Classifies datagram `seq` from `sender`, received at `now`, and
    /// records it.
    pub fn observe(&mut self, now: Instant, sender: SenderId, seq: Seq) -> Verdict {
        let Some(i) = self.find(sender) else {
            self.insert(now, sender, seq);
            return if seq == Seq::FIRST {
                Verdict::InOrder
            } else {
                Verdict::FirstSeenLate
            };
        };
        let Some(slot) = self.slots.as_mut().get_mut(i) else {
            return Verdict::FirstSeenLate;
        };
        slot.seen_at = now;
        let d = seq.distance_from(slot.last);
        if d > 0 {
            slot.window = if d >= 64 { 0 } else { slot.window << d };
            slot.window |= 1;
            slot.last = seq;
            return match d {
                1 => Verdict::InOrder,
                _ => Verdict::Gap {
                    missing: u32::try_from(d - 1).unwrap_or(u32::MAX),
                },
            };
        }
        let back = d.unsigned_abs();
        if back < u64::from(WINDOW) {
            let bit = 1u64 << back;
            if slot.window & bit != 0 {
                return Verdict::Duplicate;
            }
            slot.window |= bit;
            return Verdict::Reordered;
        }
        if seq == Seq::FIRST {
            slot.last = seq;
            slot.window = 1;
            return Verdict::Restart;
        }
        Verdict::Stale
    }

    fn insert(&mut self, now: Instant, sender: SenderId, seq: Seq) {
        let slots = self.slots.as_mut();
        let free = slots.iter().position(|s| s.sender.is_none());
        let i = match free {
            Some(i) => i,
            None => {
                let Some((i, _)) = slots.iter().enumerate().min_by_key(|(_, s)| s.seen_at) else {
                    return; // zero capacity
                };
                self.evictions += 1;
                i
            }
        };
        if let Some(slot) = slots.get_mut(i) {
            *slot = SenderSlot {
                sender: Some(sender),
                last: seq,
                window: 1,
                seen_at: now,
            };
            self.hint = i;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: SenderId = SenderId(1);

    fn table() -> SenderTable<[SenderSlot; 2]> {
        SenderTable::new([SenderSlot::EMPTY; 2])
    }

    #[test]
    fn in_order_then_gap() {
        let mut t = table();
        let now = Instant::ZERO;
        assert_eq!(t.observe(now, A, Seq(1)), Verdict::InOrder);
        assert_eq!(t.observe(now, A, Seq(2)), Verdict::InOrder);
        assert_eq!(t.observe(now, A, Seq(10)), Verdict::Gap { missing: 7 });
        assert!(Verdict::Gap { missing: 7 }.possible_loss());
    }

    #[test]
    fn wraps_through_zero() {
        let mut t = table();
        let now = Instant::ZERO;
        assert_eq!(t.observe(now, A, Seq(u32::MAX - 1)), Verdict::FirstSeenLate);
        assert_eq!(t.observe(now, A, Seq(u32::MAX)), Verdict::InOrder);
        assert_eq!(t.observe(now, A, Seq(0)), Verdict::InOrder);
        assert_eq!(t.observe(now, A, Seq(1)), Verdict::InOrder);
    }

    #[test]
    fn window_edges() {
        let mut t = table();
        let now = Instant::ZERO;
        t.observe(now, A, Seq(1));
        assert_eq!(t.observe(now, A, Seq(100)), Verdict::Gap { missing: 98 });
        assert_eq!(t.observe(now, A, Seq(37)), Verdict::Reordered); // 63 back
        assert_eq!(t.observe(now, A, Seq(37)), Verdict::Duplicate);
        assert_eq!(t.observe(now, A, Seq(36)), Verdict::Stale); // 64 back
        assert_eq!(t.observe(now, A, Seq(100)), Verdict::Duplicate);
        assert_eq!(t.observe(now, A, Seq(1)), Verdict::Restart);
        assert_eq!(t.observe(now, A, Seq(2)), Verdict::InOrder);
    }

    #[test]
    fn evicts_least_recently_seen() {
        let mut t = table();
        t.observe(Instant::from_secs(1), SenderId(1), Seq(1));
        t.observe(Instant::from_secs(2), SenderId(2), Seq(1));
        t.observe(Instant::from_secs(3), SenderId(1), Seq(2));
        // sender 2 is the least recently seen
        assert_eq!(
            t.observe(Instant::from_secs(4), SenderId(3), Seq(1)),
            Verdict::InOrder
        );
        assert_eq!(t.evictions(), 1);
        assert_eq!(
            t.observe(Instant::from_secs(5), SenderId(1), Seq(3)),
            Verdict::InOrder
        );
        assert_eq!(
            t.observe(Instant::from_secs(6), SenderId(2), Seq(2)),
            Verdict::FirstSeenLate
        );
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn zero_capacity_never_panics() {
        let mut t = SenderTable::new([SenderSlot::EMPTY; 0]);
        assert_eq!(t.observe(Instant::ZERO, A, Seq(1)), Verdict::InOrder);
        assert_eq!(t.observe(Instant::ZERO, A, Seq(2)), Verdict::FirstSeenLate);
    }
}
