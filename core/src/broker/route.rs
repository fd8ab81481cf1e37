//! The routing index: a notification costs the listeners whose flags it
//! changes, never the number of connections.
//!
//! Listening slots are grouped by (channel, interest); all members of a group
//! receive the same flags from any notification. Groups of one channel are
//! found through a hash table keyed by the channel (SipHash-1-3 with a key
//! random per broker, so that clients cannot choose colliding names); the
//! groups of all-channels listeners are one short list (at most 15: one per
//! interest set). A group keeps its members in two lists: *fresh* ones,
//! with no flags pending (just joined, or drained since the last raise),
//! and *raised* ones, which all have at least `covered` pending. A raise
//! within `covered` walks the fresh members only (they get the flags and
//! become raised), so it costs the listeners whose flags change, and O(1)
//! when there are none: a flood or a burst raising what everyone already
//! has walks nobody. A raise beyond `covered` walks the raised members too.
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
use super::{BrokerState, Slots};
use crate::channel::ChannelId;
use crate::flags::FlagSet;
use crate::loss::SenderSlot;
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
    /// In the group's fresh list (no flags pending) rather than its raised
    /// list.
    fresh: bool,
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
        fresh: false,
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
    /// Members with flags pending, each at least `covered`.
    head: u32,
    /// Members with no flags pending.
    fresh: u32,
    fresh_members: u32,
    /// The channel's hash (0 for all channels).
    hash: u32,
    all_channels: bool,
    interest: FlagSet,
    /// Flags every raised member has pending.
    covered: FlagSet,
    /// Which broadcasts the group has pending everywhere (`TOP`: all; in no
    /// level list): none while a member is fresh.
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
        fresh: NIL,
        fresh_members: 0,
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

impl<L, S> BrokerState<L, S>
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
        let member = if g.head != NIL { g.head } else { g.fresh };
        self.slots
            .as_ref()
            .get(member as usize)
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
        self.relist(g, true);
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

    /// Moves group `g` to the level list its state puts it in (`free`: the
    /// group is being freed, into none).
    fn relist(&mut self, g: u32, free: bool) {
        let Some(node) = group(self.slots.as_ref(), g).copied() else {
            return;
        };
        let level = match (free, node.fresh_members) {
            (true, _) => TOP,
            (false, 0) => level_of(node.interest, node.covered),
            (false, _) => level_of(node.interest, FlagSet::EMPTY),
        };
        if level == node.level {
            return;
        }
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

    /// Links member `m` at the head of group `g`'s fresh or raised list.
    fn link(&mut self, g: u32, m: u32, fresh: bool) {
        let slots = self.slots.as_mut();
        let Some(node) = group_mut(slots, g) else {
            return;
        };
        let head = if fresh {
            &mut node.fresh
        } else {
            &mut node.head
        };
        let next = core::mem::replace(head, m);
        if fresh {
            node.fresh_members += 1;
        }
        if let Some(n) = member_mut(slots, next) {
            n.prev = m;
        }
        if let Some(member) = member_mut(slots, m) {
            member.group = g;
            member.fresh = fresh;
            member.prev = NIL;
            member.next = next;
        }
    }

    /// Unlinks member `m` from its list in its group.
    fn unlink(&mut self, m: u32) {
        let slots = self.slots.as_mut();
        let Some(member) = member_mut(slots, m).copied() else {
            return;
        };
        if let Some(p) = member_mut(slots, member.prev) {
            p.next = member.next;
        }
        if let Some(n) = member_mut(slots, member.next) {
            n.prev = member.prev;
        }
        if let Some(node) = group_mut(slots, member.group) {
            let head = if member.fresh {
                node.fresh_members = node.fresh_members.saturating_sub(1);
                &mut node.fresh
            } else {
                &mut node.head
            };
            if *head == m {
                *head = member.next;
            }
        }
    }

    /// Puts listening slot `index` into the group of its channel and
    /// interest, as a fresh member; `false` if the table has no room (never,
    /// with the table's one group per slot).
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
        node.members += 1;
        let raises = node.raises;
        if let Some(m) = member_mut(slots, index) {
            m.group_mark = raises;
            m.broadcast_mark = broadcasts;
        }
        self.link(g, index, true);
        self.relist(g, false);
        true
    }

    /// Takes slot `index` out of its group (no-op if it is in none).
    pub(super) fn leave(&mut self, index: u32) {
        let Some(slot) = self.slots.as_ref().get(index as usize) else {
            return;
        };
        let (g, interest) = (slot.member.group, slot.interest);
        if g == NIL {
            return;
        }
        self.unlink(index);
        if let Some(m) = member_mut(self.slots.as_mut(), index) {
            *m = Member::NONE;
        }
        if let Some(n) = self.index.listening.get_mut(interest_index(interest)) {
            *n = n.saturating_sub(1);
        }
        let Some(node) = group_mut(self.slots.as_mut(), g) else {
            return;
        };
        node.members = node.members.saturating_sub(1);
        if node.members == 0 {
            self.free_group(g);
        } else {
            self.relist(g, false);
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
        let (first, hash) = self.first_group(Some(channel));
        let mut reached = 0u32;
        for first in [first, self.index.all_channels] {
            let mut g = first;
            while let Some(node) = group(self.slots.as_ref(), g).copied() {
                let mine = node.all_channels
                    || (node.hash == hash && self.group_channel(&node) == Some(channel));
                if mine {
                    reached = reached.saturating_add(self.raise_group(now, g, raise));
                }
                g = node.chain;
            }
        }
        reached
    }

    /// Raises `raise` on every member of group `g` whose interest has it;
    /// returns how many that is.
    fn raise_group(&mut self, now: Instant, g: u32, raise: FlagSet) -> u32 {
        let Some(node) = group_mut(self.slots.as_mut(), g) else {
            return 0;
        };
        let flags = node.interest & raise;
        if flags.is_empty() {
            return 0;
        }
        node.raises = node.raises.wrapping_add(1);
        let members = node.members;
        self.stats.raises += u64::from(members);
        let changed = self.raise_members(now, g, flags);
        self.stats.raises_coalesced += u64::from(members) - changed;
        members
    }

    /// Raises `what` on every listener; walks only the groups that have
    /// fresh members or lack some of its flags.
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
                let flags = group(self.slots.as_ref(), g).map_or(raise, |n| n.interest & raise);
                changed += self.raise_members(now, g, flags);
                if self.index.levels.get(level) == Some(&g) {
                    break; // unreachable: raising `raise` lifts it to `level()`
                }
            }
        }
        self.stats.raises_coalesced += reached - changed;
        u32::try_from(reached).unwrap_or(u32::MAX)
    }

    /// Raises `flags` on group `g`'s members: every fresh member (which
    /// becomes raised) and, unless `covered` has them, every raised member.
    /// Returns how many members' flags changed.
    fn raise_members(&mut self, now: Instant, g: u32, flags: FlagSet) -> u64 {
        let Some(node) = group(self.slots.as_ref(), g).copied() else {
            return 0;
        };
        if node.fresh_members == 0 && node.covered.contains(flags) {
            return 0;
        }
        let mut changed = 0;
        if !node.covered.contains(flags) {
            let mut m = node.head;
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
        }
        // the fresh members get the flags; then their whole list goes in
        // front of the raised one
        let (mut m, mut last) = (node.fresh, NIL);
        while let Some(slot) = self.slots.as_mut().get_mut(m as usize) {
            let at = m;
            m = slot.member.next;
            slot.member.fresh = false;
            slot.outbox.flags |= flags;
            self.stats.route_visits += 1;
            changed += 1;
            self.mark_ready(now, at);
            last = at;
        }
        if last != NIL {
            let slots = self.slots.as_mut();
            if let Some(member) = member_mut(slots, last) {
                member.next = node.head;
            }
            if let Some(member) = member_mut(slots, node.head) {
                member.prev = last;
            }
            if let Some(n) = group_mut(slots, g) {
                n.head = node.fresh;
                n.fresh = NIL;
                n.fresh_members = 0;
            }
        }
        // fresh members have exactly `flags` now, raised ones at least both
        let covered = if node.fresh_members > 0 {
            flags
        } else {
            node.covered | flags
        };
        if let Some(n) = group_mut(self.slots.as_mut(), g) {
            n.covered = covered;
        }
        self.relist(g, false);
        changed
    }

    /// The number of raises the flags being drained from slot `index`
    /// stand for; it becomes a fresh member of its group.
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
        if !m.fresh {
            self.unlink(index);
            self.link(m.group, index, true);
            self.relist(m.group, false);
        }
        u32::try_from(raises).unwrap_or(u32::MAX)
    }
}
