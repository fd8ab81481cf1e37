//! The routing index: a notification costs the listeners whose flags it
//! changes, never the number of connections.
//!
//! Listening slots are grouped by (channel, interest); all members of a group
//! receive the same flags from any notification. Groups of one channel are
//! found through a hash table keyed by the channel (SipHash-1-3 with a key
//! random per broker, so that clients cannot choose colliding names); the
//! groups of all-channels listeners are one short list (at most 15: one per
//! interest set). Each group keeps `covered`, the flags every member has
//! pending: a raise within `covered` costs O(1) and walks nobody. A drain of
//! any member empties `covered`.
//!
//! Untargeted raises ([`Broadcast`]) raise one of three nested flag sets
//! (non-status ⊂ status ⊂ the possible-loss set), so each group's coverage is
//! a *level* 0..=3: how many of those sets it already covers. Groups below
//! level 3 sit in one list per level; a broadcast of level *k* walks only the
//! groups in the lists below *k*, each of which then moves to level ≥ *k*:
//! a raise of everyone who is already raised is O(1).
//!
//! The raise count a flags frame carries stays exact without touching
//! covered members: groups count their targeted raises and the index counts
//! broadcasts per interest set; a member remembers both counters when it is
//! drained, and its next frame carries the differences.
//!
//! Storage is the listener table itself: slot *i* holds its listener's place
//! in a group (`Member`) and, independently, group *i* and hash bucket *i*
//! (`Group`). There are never more groups than listening slots, so the
//! index can never be full.

use core::hash::Hasher;

use siphasher::sip::SipHasher13;

use super::slot::NIL;
use super::{Broker, Slots};
use crate::channel::ChannelId;
use crate::flags::FlagSet;
use crate::gap::SenderSlot;
use crate::notify::{Kind, Notification};
use crate::time::Instant;

/// The flags a possible loss raises on every listener: status and
/// non-status (re-check the messages) and channel update (reload the
/// configuration, which also reveals a shutdown). Never channel shutdown: a
/// command is not raised on a guess.
pub const LOSS_FLAGS: FlagSet = FlagSet::STATUS
    .union(FlagSet::NON_STATUS)
    .union(FlagSet::CHANNEL_UPDATE);

/// The nested flag sets of the three broadcasts, by level.
const LEVEL_FLAGS: [FlagSet; 3] = [
    FlagSet::NON_STATUS,
    FlagSet::STATUS.union(FlagSet::NON_STATUS),
    LOSS_FLAGS,
];
/// The level of a group that covers every broadcast (in no list).
const TOP: u8 = 3;

/// A raise for every listener: the only flag sets an untargeted raise can
/// have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Broadcast {
    /// An untargeted non-status update.
    NonStatus,
    /// An untargeted status update.
    Status,
    /// A possible loss: [`LOSS_FLAGS`].
    Loss,
}

impl Broadcast {
    fn level(self) -> usize {
        match self {
            Broadcast::NonStatus => 1,
            Broadcast::Status => 2,
            Broadcast::Loss => 3,
        }
    }

    fn flags(self) -> FlagSet {
        LEVEL_FLAGS
            .get(self.level() - 1)
            .copied()
            .unwrap_or(LOSS_FLAGS)
    }
}

/// A listening slot's place in its group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub(super) struct Member {
    /// The group (`NIL`: not listening).
    group: u32,
    prev: u32,
    next: u32,
    /// The group's raise counter when this member was last drained.
    group_mark: u32,
    /// The broadcast counter of its interest set when it was last drained.
    broadcast_mark: u32,
}

impl Member {
    pub(super) const NONE: Member = Member {
        group: NIL,
        prev: NIL,
        next: NIL,
        group_mark: 0,
        broadcast_mark: 0,
    };
}

/// A routing group, and the head of one hash bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub(super) struct Group {
    /// Members (0: the group is free).
    members: u32,
    head: u32,
    /// The channel's hash (0 for all channels).
    hash: u32,
    all_channels: bool,
    interest: FlagSet,
    /// Flags every member has pending.
    covered: FlagSet,
    /// Which broadcasts `covered` covers (`TOP`: all; in no level list).
    level: u8,
    /// Targeted raises of this group (wrapping).
    raises: u32,
    /// Next group in the same bucket, the all-channels list or the free list.
    chain: u32,
    level_prev: u32,
    level_next: u32,
    /// The first group of the hash bucket numbered like this slot.
    bucket: u32,
}

impl Group {
    pub(super) const FREE: Group = Group {
        members: 0,
        head: NIL,
        hash: 0,
        all_channels: false,
        interest: FlagSet::EMPTY,
        covered: FlagSet::EMPTY,
        level: TOP,
        raises: 0,
        chain: NIL,
        level_prev: NIL,
        level_next: NIL,
        bucket: NIL,
    };
}

/// The index's own state; its per-slot parts live in the slots.
#[derive(Clone, Debug)]
pub(super) struct Index {
    keys: (u64, u64),
    /// Free groups (chained through `Group::chain`).
    free: u32,
    /// Groups at or above this index were never used.
    fresh: u32,
    /// Groups of all-channels listeners.
    all_channels: u32,
    /// Groups by broadcast level below `TOP`.
    levels: [u32; 3],
    /// Broadcasts that reached each interest set (index: its bits).
    broadcasts: [u32; 16],
    /// Listening slots with each interest set.
    listening: [u32; 16],
}

impl Index {
    pub(super) fn new(seed: u64) -> Self {
        Index {
            keys: (seed, seed.rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15),
            free: NIL,
            fresh: 0,
            all_channels: NIL,
            levels: [NIL; 3],
            broadcasts: [0; 16],
            listening: [0; 16],
        }
    }

    #[allow(clippy::cast_possible_truncation)] // the low half, folded: the intent
    fn hash(&self, channel: &ChannelId) -> u32 {
        let mut h = SipHasher13::new_with_keys(self.keys.0, self.keys.1);
        h.write(channel.as_bytes());
        let h = h.finish();
        (h ^ (h >> 32)) as u32
    }
}

fn group(slots: &Slots, g: u32) -> Option<&Group> {
    slots.get(g as usize).map(|s| &s.group)
}

fn group_mut(slots: &mut Slots, g: u32) -> Option<&mut Group> {
    slots.get_mut(g as usize).map(|s| &mut s.group)
}

fn member_mut(slots: &mut Slots, m: u32) -> Option<&mut Member> {
    slots.get_mut(m as usize).map(|s| &mut s.member)
}

/// How many of the nested broadcast sets `covered` covers for `interest`.
fn level_of(interest: FlagSet, covered: FlagSet) -> u8 {
    let mut level = 0;
    for flags in LEVEL_FLAGS {
        if !covered.contains(interest & flags) {
            return level;
        }
        level += 1;
    }
    level
}

fn interest_index(interest: FlagSet) -> usize {
    usize::from(interest.bits() & 0x0f)
}

impl<L, S> Broker<L, S>
where
    L: AsRef<Slots> + AsMut<Slots>,
    S: AsRef<[SenderSlot]> + AsMut<[SenderSlot]>,
{
    /// The bucket of `hash`: a number below the table's capacity.
    fn bucket(&self, hash: u32) -> u32 {
        let capacity = self.capacity() as u64;
        ((u64::from(hash) * capacity) >> 32) as u32
    }

    /// The first group of the list that holds groups of `channel`.
    fn first_group(&self, channel: Option<&ChannelId>) -> (u32, u32) {
        match channel {
            None => (self.index.all_channels, 0),
            Some(c) => {
                let hash = self.index.hash(c);
                let first = group(self.slots.as_ref(), self.bucket(hash)).map_or(NIL, |g| g.bucket);
                (first, hash)
            }
        }
    }

    /// The channel of group `g`'s listeners.
    fn group_channel(&self, g: &Group) -> Option<&ChannelId> {
        self.slots
            .as_ref()
            .get(g.head as usize)
            .and_then(|s| s.channel.as_ref())
    }

    fn find_group(&self, channel: Option<&ChannelId>, interest: FlagSet) -> Option<u32> {
        let (mut g, hash) = self.first_group(channel);
        while let Some(node) = group(self.slots.as_ref(), g) {
            if node.interest == interest && node.hash == hash && self.group_channel(node) == channel
            {
                return Some(g);
            }
            g = node.chain;
        }
        None
    }

    fn new_group(&mut self, channel: Option<&ChannelId>, interest: FlagSet) -> Option<u32> {
        let (first, hash) = self.first_group(channel);
        let g = if self.index.free != NIL {
            self.index.free
        } else if (self.index.fresh as usize) < self.capacity() {
            self.index.fresh
        } else {
            return None;
        };
        let slots = self.slots.as_mut();
        let node = group_mut(slots, g)?;
        if g == self.index.free {
            self.index.free = node.chain;
        } else {
            self.index.fresh += 1;
        }
        *node = Group {
            hash,
            all_channels: channel.is_none(),
            interest,
            chain: first,
            bucket: node.bucket,
            ..Group::FREE
        };
        if channel.is_none() {
            self.index.all_channels = g;
        } else {
            let b = self.bucket(hash);
            if let Some(bucket) = group_mut(self.slots.as_mut(), b) {
                bucket.bucket = g;
            }
        }
        Some(g)
    }

    /// Unlinks a group with no member left from its chain and frees it.
    fn free_group(&mut self, g: u32) {
        self.set_covered(g, None);
        let Some(node) = group(self.slots.as_ref(), g).copied() else {
            return;
        };
        // the head of its chain lives in the index or in a bucket
        let bucket = (!node.all_channels).then(|| self.bucket(node.hash));
        let head = match bucket {
            None => self.index.all_channels,
            Some(b) => group(self.slots.as_ref(), b).map_or(NIL, |n| n.bucket),
        };
        if head == g {
            match bucket {
                None => self.index.all_channels = node.chain,
                Some(b) => {
                    if let Some(n) = group_mut(self.slots.as_mut(), b) {
                        n.bucket = node.chain;
                    }
                }
            }
        } else {
            let mut at = head;
            while let Some(n) = group_mut(self.slots.as_mut(), at) {
                if n.chain == g {
                    n.chain = node.chain;
                    break;
                }
                at = n.chain;
            }
        }
        let free = self.index.free;
        if let Some(n) = group_mut(self.slots.as_mut(), g) {
            *n = Group {
                chain: free,
                bucket: n.bucket,
                ..Group::FREE
            };
        }
        self.index.free = g;
    }

    /// Sets group `g`'s covered flags (`None`: the group is being freed) and
    /// moves it to the level list they put it in.
    fn set_covered(&mut self, g: u32, covered: Option<FlagSet>) {
        let Some(node) = group(self.slots.as_ref(), g).copied() else {
            return;
        };
        let level = covered.map_or(TOP, |c| level_of(node.interest, c));
        if level != node.level {
            // unlink from its list, then push onto the new one
            if let Some(head) = self.index.levels.get_mut(usize::from(node.level)) {
                if *head == g {
                    *head = node.level_next;
                }
            }
            let slots = self.slots.as_mut();
            if let Some(p) = group_mut(slots, node.level_prev) {
                p.level_next = node.level_next;
            }
            if let Some(n) = group_mut(slots, node.level_next) {
                n.level_prev = node.level_prev;
            }
            let mut next = NIL;
            if let Some(head) = self.index.levels.get_mut(usize::from(level)) {
                next = *head;
                *head = g;
            }
            if let Some(n) = group_mut(slots, next) {
                n.level_prev = g;
            }
            if let Some(n) = group_mut(slots, g) {
                n.level = level;
                n.level_prev = NIL;
                n.level_next = next;
            }
        }
        if let Some(n) = group_mut(self.slots.as_mut(), g) {
            n.covered = covered.unwrap_or(FlagSet::EMPTY);
        }
    }

    /// Puts listening slot `index` into the group of its channel and
    /// interest; `false` if the table has no room (never, with the table's
    /// one group per slot).
    pub(super) fn join(&mut self, index: u32) -> bool {
        let Some(slot) = self.slots.as_ref().get(index as usize) else {
            return false;
        };
        let (channel, interest) = (slot.channel, slot.interest);
        let found = self.find_group(channel.as_ref(), interest);
        let Some(g) = found.or_else(|| self.new_group(channel.as_ref(), interest)) else {
            return false;
        };
        let i = interest_index(interest);
        let broadcasts = self.index.broadcasts.get(i).copied().unwrap_or(0);
        if let Some(n) = self.index.listening.get_mut(i) {
            *n += 1;
        }
        let slots = self.slots.as_mut();
        let Some(node) = group_mut(slots, g) else {
            return false;
        };
        let (head, raises) = (node.head, node.raises);
        node.head = index;
        node.members += 1;
        if let Some(m) = member_mut(slots, head) {
            m.prev = index;
        }
        if let Some(m) = member_mut(slots, index) {
            *m = Member {
                group: g,
                prev: NIL,
                next: head,
                group_mark: raises,
                broadcast_mark: broadcasts,
            };
        }
        // the newcomer has nothing pending
        self.set_covered(g, Some(FlagSet::EMPTY));
        true
    }

    /// Takes slot `index` out of its group (no-op if it is in none).
    pub(super) fn leave(&mut self, index: u32) {
        let slots = self.slots.as_mut();
        let Some(slot) = slots.get_mut(index as usize) else {
            return;
        };
        let (m, interest) = (slot.member, slot.interest);
        if m.group == NIL {
            return;
        }
        slot.member = Member::NONE;
        if let Some(p) = member_mut(slots, m.prev) {
            p.next = m.next;
        }
        if let Some(n) = member_mut(slots, m.next) {
            n.prev = m.prev;
        }
        let mut empty = false;
        if let Some(node) = group_mut(slots, m.group) {
            if node.head == index {
                node.head = m.next;
            }
            node.members = node.members.saturating_sub(1);
            empty = node.members == 0;
        }
        if let Some(n) = self.index.listening.get_mut(interest_index(interest)) {
            *n = n.saturating_sub(1);
        }
        if empty {
            self.free_group(m.group);
        }
    }

    /// Routes `notification` at `now`; returns how many listeners it
    /// reached.
    pub(super) fn route(&mut self, now: Instant, notification: &Notification) -> u32 {
        let raise = notification.kind().flags();
        let Some(channel) = notification.channel() else {
            return match notification.kind() {
                Kind::Status => self.broadcast(now, Broadcast::Status),
                Kind::NonStatus => self.broadcast(now, Broadcast::NonStatus),
                // a channel kind always names its channel
                Kind::ChannelUpdate | Kind::ChannelShutdown => 0,
            };
        };
        let mut reached = 0u32;
        for first in [self.first_group(Some(channel)).0, self.index.all_channels] {
            let mut g = first;
            while let Some(node) = group(self.slots.as_ref(), g).copied() {
                let mine = node.all_channels || self.group_channel(&node) == Some(channel);
                if mine {
                    reached = reached.saturating_add(self.raise_group(now, g, raise));
                }
                g = node.chain;
            }
        }
        reached
    }

    /// Raises `raise` on every member of group `g` whose interest has it.
    fn raise_group(&mut self, now: Instant, g: u32, raise: FlagSet) -> u32 {
        let Some(node) = group_mut(self.slots.as_mut(), g) else {
            return 0;
        };
        let flags = node.interest & raise;
        if flags.is_empty() {
            return 0;
        }
        node.raises = node.raises.wrapping_add(1);
        let (members, covered) = (node.members, node.covered);
        self.stats.raises += u64::from(members);
        if covered.contains(flags) {
            self.stats.raises_coalesced += u64::from(members);
            return members;
        }
        let changed = self.walk(now, g, flags);
        self.stats.raises_coalesced += u64::from(members) - changed;
        self.set_covered(g, Some(covered | flags));
        members
    }

    /// Raises `what` on every listener; walks only the groups that do not
    /// have it pending already.
    pub(super) fn broadcast(&mut self, now: Instant, what: Broadcast) -> u32 {
        let raise = what.flags();
        let mut reached = 0u64;
        for ((count, listening), bits) in self
            .index
            .broadcasts
            .iter_mut()
            .zip(self.index.listening)
            .zip(0u8..)
        {
            if FlagSet::from_bits_truncate(bits).intersects(raise) {
                *count = count.wrapping_add(1);
                reached += u64::from(listening);
            }
        }
        self.stats.raises += reached;
        let mut changed = 0;
        for level in 0..what.level() {
            while let Some(&g) = self.index.levels.get(level).filter(|g| **g != NIL) {
                let Some(node) = group(self.slots.as_ref(), g).copied() else {
                    break;
                };
                let flags = node.interest & raise;
                changed += self.walk(now, g, flags);
                self.set_covered(g, Some(node.covered | flags));
                if self.index.levels.get(level) == Some(&g) {
                    break; // unreachable: covering `raise` lifts it to `level()`
                }
            }
        }
        self.stats.raises_coalesced += reached - changed;
        u32::try_from(reached).unwrap_or(u32::MAX)
    }

    /// Raises `flags` on each member of group `g`; returns how many did not
    /// have them all pending yet.
    fn walk(&mut self, now: Instant, g: u32, flags: FlagSet) -> u64 {
        let mut changed = 0;
        let mut m = group(self.slots.as_ref(), g).map_or(NIL, |n| n.head);
        while let Some(slot) = self.slots.as_mut().get_mut(m as usize) {
            let at = m;
            m = slot.member.next;
            self.stats.route_visits += 1;
            if !slot.outbox.flags.contains(flags) {
                slot.outbox.flags |= flags;
                changed += 1;
                self.mark_ready(now, at);
            }
        }
        changed
    }

    /// The number of raises the flags being drained from slot `index`
    /// stand for; its group no longer has them all pending.
    pub(super) fn drain_raises(&mut self, index: u32) -> u32 {
        let slots = self.slots.as_mut();
        let Some(slot) = slots.get(index as usize) else {
            return 0;
        };
        let (m, interest) = (slot.member, slot.interest);
        let Some(node) = group(slots, m.group).copied() else {
            return 0;
        };
        let broadcasts = self
            .index
            .broadcasts
            .get(interest_index(interest))
            .copied()
            .unwrap_or(0);
        let raises = u64::from(node.raises.wrapping_sub(m.group_mark))
            + u64::from(broadcasts.wrapping_sub(m.broadcast_mark));
        if let Some(m) = member_mut(slots, index) {
            m.group_mark = node.raises;
            m.broadcast_mark = broadcasts;
        }
        self.set_covered(m.group, Some(FlagSet::EMPTY));
        u32::try_from(raises).unwrap_or(u32::MAX)
    }
}
