//! The bounded sender table: a keyed hash index over caller-supplied slots,
//! so that finding a sender costs O(1) whatever the table's size, and a
//! second-chance (CLOCK) eviction that spares active senders.

use core::hash::Hasher;

use siphasher::sip::SipHasher13;

use super::{SenderSlot, Verdict, NIL};
use crate::wire::{SenderId, Seq};

/// The most second chances a sender can save up (one per datagram).
const MAX_CREDIT: u8 = 3;

/// Per-sender sequence tracking in caller-supplied slots.
///
/// **Finding a sender** is a hash lookup: slot *i* holds bucket *i* of a
/// chained hash index (SipHash-1-3 keyed with a secret, so that nobody can
/// pick ids that collide), expected O(1) per datagram whatever the
/// capacity.
///
/// **When full**, a new sender evicts one found by a *clock* hand sweeping
/// the slots: a sender earns one second chance (up to three) per datagram
/// it sends, and the hand takes one away from each sender it passes, evicting
/// the first that has none left. A one-off id (a forged or a short-lived
/// sender) starts with none, so a churn of new ids evicts one-off ids and
/// senders idle for a few sweeps, never a sender seen since the hand last
/// passed it; each eviction costs O(1) amortised (every chance taken was
/// earned by a datagram). Not exact least-recently-seen order: a sender
/// that sent much and went quiet outlives up to three sweeps.
///
/// ```
/// use flagpost_core::loss::{SenderSlot, SenderTable, Verdict};
/// use flagpost_core::wire::{SenderId, Seq};
///
/// let mut table = SenderTable::new([SenderSlot::EMPTY; 4], 0x5eed);
/// let a = SenderId(0xa);
/// assert_eq!(table.observe(a, Seq(1)), Verdict::InOrder);
/// assert_eq!(table.observe(a, Seq(4)), Verdict::Gap { missing: 2 });
/// assert_eq!(table.observe(a, Seq(2)), Verdict::Reordered);
/// assert_eq!(table.observe(a, Seq(2)), Verdict::Duplicate);
/// ```
#[derive(Clone, Debug)]
pub struct SenderTable<S> {
    slots: S,
    keys: (u64, u64),
    /// Slots below this index hold a sender (slots fill in order and are
    /// only ever reused).
    len: u32,
    /// The clock hand: the next slot to look at for eviction.
    hand: u32,
    evictions: u64,
    rewind: bool,
}

impl<S: AsRef<[SenderSlot]> + AsMut<[SenderSlot]>> SenderTable<S> {
    /// A table over `slots` (cleared), its index keyed by `hash_key`
    /// (random per run, and secret). With zero slots every sender is
    /// unknown every time.
    pub fn new(mut slots: S, hash_key: u64) -> Self {
        slots.as_mut().fill(SenderSlot::EMPTY);
        SenderTable {
            slots,
            keys: (
                hash_key ^ 0x5bd1_e995_7a3f_c2b1,
                hash_key.rotate_left(29) ^ 0x2545_f491_4f6c_dd1d,
            ),
            len: 0,
            hand: 0,
            evictions: 0,
            rewind: true,
        }
    }

    /// Whether a far jump keeps an anchor to rewind to (the default: on).
    /// Turn it off when every sender's datagrams are authenticated: numbers
    /// cannot be forged then, and a replayed datagram must stay stale.
    pub fn set_rewind(&mut self, on: bool) {
        self.rewind = on;
    }

    /// How many senders the table can track.
    pub fn capacity(&self) -> usize {
        self.slots.as_ref().len().min(NIL as usize)
    }

    /// How many senders it tracks now.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether it tracks no sender.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many senders were evicted to make room.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Classifies datagram `seq` from `sender` and records it.
    pub fn observe(&mut self, sender: SenderId, seq: Seq) -> Verdict {
        let rewind = self.rewind;
        if let Some(slot) = self.find(sender).and_then(|i| self.slot_mut(i)) {
            slot.credit = slot.credit.saturating_add(1).min(MAX_CREDIT);
            return slot.judge(seq, rewind);
        }
        self.insert(sender, seq);
        if seq == Seq::FIRST {
            Verdict::InOrder
        } else {
            Verdict::FirstSeenLate
        }
    }

    fn slot(&self, i: u32) -> Option<&SenderSlot> {
        self.slots.as_ref().get(i as usize)
    }

    fn slot_mut(&mut self, i: u32) -> Option<&mut SenderSlot> {
        self.slots.as_mut().get_mut(i as usize)
    }

    /// The bucket of `sender` (`None`: no slots).
    fn bucket(&self, sender: SenderId) -> Option<u32> {
        let capacity = u64::try_from(self.capacity()).ok().filter(|&c| c > 0)?;
        let mut h = SipHasher13::new_with_keys(self.keys.0, self.keys.1);
        h.write_u64(sender.0);
        // the high half of the hash, scaled to the capacity (no division)
        u32::try_from(((h.finish() >> 32) * capacity) >> 32).ok()
    }

    /// The slot tracking `sender`.
    fn find(&self, sender: SenderId) -> Option<u32> {
        let mut i = self.slot(self.bucket(sender)?)?.head;
        // a chain is never longer than the table
        for _ in 0..self.len {
            let slot = self.slot(i)?;
            if slot.sender == sender {
                return Some(i);
            }
            i = slot.next;
        }
        None
    }

    /// Starts tracking `sender` at `seq`, in a free slot or an evicted one.
    fn insert(&mut self, sender: SenderId, seq: Seq) {
        let Some(bucket) = self.bucket(sender) else {
            return; // zero capacity
        };
        let i = if (self.len as usize) < self.capacity() {
            self.len += 1;
            self.len - 1
        } else {
            let Some(victim) = self.victim() else { return };
            self.unlink(victim);
            self.evictions += 1;
            victim
        };
        let Some(slot) = self.slot_mut(i) else { return };
        *slot = slot.occupied(sender, seq);
        let Some(head) = self
            .slot_mut(bucket)
            .map(|b| core::mem::replace(&mut b.head, i))
        else {
            return;
        };
        if let Some(slot) = self.slot_mut(i) {
            slot.next = head;
        }
    }

    /// The slot to evict: the first the hand finds with no second chance
    /// left, taking one from each it passes.
    fn victim(&mut self) -> Option<u32> {
        let len = self.len;
        // every slot runs out of chances within MAX_CREDIT + 1 sweeps
        for _ in 0..=u64::from(len) * (u64::from(MAX_CREDIT) + 1) {
            let i = self.hand;
            self.hand = if i + 1 >= len { 0 } else { i + 1 };
            let slot = self.slot_mut(i)?;
            if slot.credit == 0 {
                return Some(i);
            }
            slot.credit -= 1;
        }
        None
    }

    /// Takes slot `i`'s entry out of its bucket's chain.
    fn unlink(&mut self, i: u32) {
        let Some(&SenderSlot { sender, next, .. }) = self.slot(i) else {
            return;
        };
        let Some(bucket) = self.bucket(sender) else {
            return;
        };
        let Some(b) = self.slot_mut(bucket) else {
            return;
        };
        if b.head == i {
            b.head = next;
            return;
        }
        let mut at = b.head;
        for _ in 0..self.len {
            let Some(slot) = self.slot_mut(at) else {
                return;
            };
            if slot.next == i {
                slot.next = next;
                return;
            }
            at = slot.next;
        }
    }
}
