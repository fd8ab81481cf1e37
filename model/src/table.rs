//! The listener table's model: every live connection's state, outbox and
//! clocks, and the rules that change them — routing raises into outboxes
//! (with [`crate::routing`]), outboxes drain frame by frame, connections
//! close, and each connection's next deadline (hello, keep-alive, stuck).
//!
//! It predicts; it never calls the broker. [`crate::driver`] calls both and
//! compares.

use std::collections::{BTreeMap, VecDeque};

use flagpost_core::broker::{Config, ListenerId, SlotState};
use flagpost_core::channel::ChannelId;
use flagpost_core::flags::FlagSet;
use flagpost_core::time::{Duration, Instant};
use flagpost_core::wire::{CloseReason, FlagsRepr, FrameRepr, WelcomeRepr};

use crate::routing::{reaches, RouteOutcome};

/// The model's view of one connection's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum St {
    /// Open, no hello yet.
    AwaitingHello,
    /// Hello received (or opened in-process): flags are routed to it.
    Listening {
        /// What it listens for.
        interest: FlagSet,
        /// Its channel (`None`: all).
        channel: Option<ChannelId>,
        /// Its keep-alive (zero: an in-process listener).
        keepalive: Duration,
    },
    /// Closed by the broker or the peer: ends with `Event::Closed`.
    Closing {
        /// Why.
        reason: CloseReason,
        /// Whether the transport is asked to send a close frame.
        send: bool,
    },
    /// Sent a stats request: ends with `Event::StatsRequested`.
    Stats,
}

/// One connection: state, outbox and clocks.
#[derive(Clone, Debug)]
pub struct Conn {
    /// Its state.
    pub st: St,
    /// The version its frames carry: its hello's or stats request's (1
    /// before one).
    pub version: u8,
    /// When it opened, or when its last frame arrived.
    pub last_rx: Instant,
    /// A welcome is pending.
    pub welcome: bool,
    /// Pending flags.
    pub flags: FlagSet,
    /// Raises coalesced into `flags`.
    pub raises: u32,
    /// A pending pong.
    pub pong: Option<u32>,
    /// When the outbox became non-empty.
    pub pending_since: Option<Instant>,
    /// `poll_ready` yielded it and its outbox has not been drained since.
    pub yielded: bool,
    /// Its socket takes writes: the driver drains it when ready.
    pub writable: bool,
    /// The order it opened in (set by [`Table::insert`]).
    pub opened: u64,
    /// Evicted to make room: its handle is dead at once, though its close
    /// event is still due (see [`Table::eviction_candidate`]).
    pub evicted: bool,
}

impl Conn {
    /// A connection opened at `now`, awaiting its hello.
    pub fn new(now: Instant) -> Self {
        Conn {
            st: St::AwaitingHello,
            version: 1,
            last_rx: now,
            welcome: false,
            flags: FlagSet::EMPTY,
            raises: 0,
            pong: None,
            pending_since: None,
            yielded: false,
            writable: true,
            opened: 0,
            evicted: false,
        }
    }

    /// Whether its outbox has something to write.
    pub fn has_output(&self) -> bool {
        self.welcome || !self.flags.is_empty() || self.pong.is_some()
    }

    /// Something entered the outbox at `now`: the stuck clock starts if it
    /// was empty.
    pub fn mark_pending(&mut self, now: Instant) {
        if self.pending_since.is_none() {
            self.pending_since = Some(now);
        }
    }

    /// Closing, or answered a stats request: waiting for its event.
    pub fn is_closing(&self) -> bool {
        matches!(self.st, St::Closing { .. } | St::Stats)
    }

    /// Whether it is an in-process listener (keep-alive zero).
    pub fn is_local(&self) -> bool {
        matches!(self.st, St::Listening { keepalive, .. } if keepalive.is_zero())
    }

    /// What `BrokerState::state` must say about it.
    pub fn state(&self) -> SlotState {
        match self.st {
            St::AwaitingHello => SlotState::AwaitingHello,
            St::Listening { .. } => SlotState::Listening,
            St::Closing { .. } | St::Stats => SlotState::Closing,
        }
    }

    /// The next frame `poll_frame` must return — welcome, then the
    /// coalesced flags, then the pong — taken out of the outbox.
    pub fn pop_frame(&mut self, broker_id: u64) -> Option<FrameRepr> {
        let St::Listening {
            interest,
            keepalive,
            ..
        } = self.st
        else {
            return None;
        };
        let frame = if self.welcome {
            self.welcome = false;
            FrameRepr::Welcome(WelcomeRepr {
                interest,
                keepalive_secs: u16::try_from(keepalive.as_secs()).unwrap_or(u16::MAX),
                broker_id,
            })
        } else if !self.flags.is_empty() {
            let frame = FrameRepr::Flags(FlagsRepr {
                flags: self.flags,
                raises: self.raises,
            });
            self.flags = FlagSet::EMPTY;
            self.raises = 0;
            frame
        } else if let Some(nonce) = self.pong.take() {
            FrameRepr::Pong(nonce)
        } else {
            None?
        };
        if !self.has_output() {
            self.pending_since = None;
        }
        Some(frame)
    }

    /// When it must be closed, and why, if nothing changes: its hello
    /// deadline while awaiting one; while listening, its keep-alive
    /// deadline, or its stuck deadline if output waits and that comes
    /// first. An in-process listener has neither (it can neither go silent
    /// nor stop reading); a closing connection has none.
    pub fn deadline(&self, config: &Config) -> Option<(Instant, CloseReason)> {
        let stuck = config.stuck_timeout;
        match self.st {
            St::AwaitingHello => Some((
                self.last_rx + config.hello_timeout,
                CloseReason::HelloTimeout,
            )),
            St::Listening { keepalive, .. } => {
                let dead = (!keepalive.is_zero()).then(|| self.last_rx + keepalive);
                match (self.pending_since, dead) {
                    (Some(since), Some(dead)) if !stuck.is_zero() && since + stuck < dead => {
                        Some((since + stuck, CloseReason::Stuck))
                    }
                    (_, Some(dead)) => Some((dead, CloseReason::KeepaliveTimeout)),
                    (_, None) => None,
                }
            }
            St::Closing { .. } | St::Stats => None,
        }
    }
}

/// A routing group: listening connections with one channel (`None`: all)
/// and one interest set.
type GroupKey = (Option<Vec<u8>>, u8);

fn group_key(channel: Option<&ChannelId>, interest: FlagSet) -> GroupKey {
    (channel.map(|c| c.as_bytes().to_vec()), interest.bits())
}

/// The live connections (awaiting hello, listening, or closing with their
/// event not yet polled), by handle, and the order their events come in.
#[derive(Clone, Debug, Default)]
pub struct Table {
    conns: BTreeMap<ListenerId, Conn>,
    /// Per group, a lower bound of the flags its members with flags pending
    /// all have: the flags of the last raise that found a member with none
    /// pending, and of every raise since. Starts empty when the group does.
    covered: BTreeMap<GroupKey, FlagSet>,
    /// Connections whose event is due, in the order they started closing
    /// (or asked for the stats), except that a connection whose slot's
    /// evicted predecessor is still due comes right after it.
    events: VecDeque<ListenerId>,
    /// Connections opened so far.
    opens: u64,
}

impl Table {
    /// The connection `id`, if live.
    pub fn get(&self, id: ListenerId) -> Option<&Conn> {
        self.conns.get(&id)
    }

    /// The connection `id`, if live, to change.
    pub fn get_mut(&mut self, id: ListenerId) -> Option<&mut Conn> {
        self.conns.get_mut(&id)
    }

    /// Adds a connection, the latest opened.
    pub fn insert(&mut self, id: ListenerId, mut conn: Conn) {
        self.opens += 1;
        conn.opened = self.opens;
        self.conns.insert(id, conn);
    }

    /// Slots taken: by a connection, or by an evicted one whose event is
    /// still due (its slot's new tenant may be gone already).
    pub fn slots_taken(&self) -> usize {
        let mut indexes: Vec<usize> = self.conns.keys().map(|id| id.index()).collect();
        indexes.dedup(); // ordered by index first
        indexes.len()
    }

    /// Whether another connection than `id` holds `id`'s slot: its evicted
    /// predecessor, whose event is due.
    fn shares_slot(&self, id: ListenerId) -> bool {
        self.conns
            .keys()
            .any(|other| *other != id && other.index() == id.index())
    }

    /// The connection a newcomer to a full table evicts at `now`: the
    /// earliest opened of those awaiting their hello, if it has waited
    /// `evict_after` since its last frame and its slot's own evicted
    /// predecessor is not still due; `None`: the newcomer is refused.
    pub fn eviction_candidate(&self, now: Instant, evict_after: Duration) -> Option<ListenerId> {
        let (id, conn) = self
            .conns
            .iter()
            .filter(|(_, c)| c.st == St::AwaitingHello)
            .min_by_key(|(_, c)| c.opened)?;
        (!self.shares_slot(*id) && conn.last_rx + evict_after <= now).then_some(*id)
    }

    /// Queues `id`'s event: last, or right after its slot's evicted
    /// predecessor's if that is still due.
    fn queue_event(&mut self, id: ListenerId) {
        match self
            .events
            .iter()
            .position(|e| *e != id && e.index() == id.index())
        {
            Some(at) => self.events.insert(at + 1, id),
            None => self.events.push_back(id),
        }
    }

    /// Removes a connection that is not closing (its slot is free again).
    pub fn remove(&mut self, id: ListenerId) -> Option<Conn> {
        assert!(
            !self.events.contains(&id),
            "{id} has an event due: it leaves through pop_event"
        );
        self.conns.remove(&id)
    }

    /// Every live connection, by handle.
    pub fn iter(&self) -> impl Iterator<Item = (ListenerId, &Conn)> {
        self.conns.iter().map(|(id, c)| (*id, c))
    }

    /// Every live connection, to change.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (ListenerId, &mut Conn)> {
        self.conns.iter_mut().map(|(id, c)| (*id, c))
    }

    /// Slots taken (closing connections hold theirs until their event).
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether every slot is free.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Connections awaiting hello.
    pub fn awaiting_hello(&self) -> usize {
        self.conns
            .values()
            .filter(|c| c.st == St::AwaitingHello)
            .count()
    }

    /// Listening connections.
    pub fn listening(&self) -> usize {
        self.conns
            .values()
            .filter(|c| matches!(c.st, St::Listening { .. }))
            .count()
    }

    /// A connection started listening for `interest` on `channel`: a
    /// group that had no member starts with nothing covered.
    pub fn joined(&mut self, channel: Option<&ChannelId>, interest: FlagSet) {
        let key = group_key(channel, interest);
        let others = self.conns.values().filter(|c| match c.st {
            St::Listening {
                interest: i,
                channel: ref ch,
                ..
            } => group_key(ch.as_ref(), i) == key,
            _ => false,
        });
        if others.count() <= 1 {
            self.covered.insert(key, FlagSet::EMPTY);
        }
    }

    /// Raises `raise` at `now` on every listening connection a notification
    /// for `target` reaches, keeping only the flags in its interest.
    pub fn route(
        &mut self,
        now: Instant,
        raise: FlagSet,
        target: Option<&ChannelId>,
    ) -> RouteOutcome {
        // per reached group: its flags, members with none pending, others
        let mut groups: BTreeMap<GroupKey, (FlagSet, u32, u32)> = BTreeMap::new();
        for conn in self.conns.values() {
            let St::Listening {
                interest, channel, ..
            } = conn.st
            else {
                continue;
            };
            let flags = interest & raise;
            if reaches(target, channel.as_ref()) && !flags.is_empty() {
                let g = groups
                    .entry(group_key(channel.as_ref(), interest))
                    .or_insert((flags, 0, 0));
                if conn.flags.is_empty() {
                    g.1 += 1;
                } else {
                    g.2 += 1;
                }
            }
        }
        let mut outcome = RouteOutcome::default();
        for (key, (flags, fresh, raised)) in groups {
            let covered = self.covered.entry(key).or_default();
            // fresh members are always visited, the others only for flags
            // beyond what they are known to have
            outcome.visits += fresh;
            if !covered.contains(flags) {
                outcome.visits += raised;
            }
            *covered = if fresh > 0 { flags } else { *covered | flags };
        }
        for conn in self.conns.values_mut() {
            let St::Listening {
                interest, channel, ..
            } = conn.st
            else {
                continue;
            };
            if !reaches(target, channel.as_ref()) {
                continue;
            }
            let flags = interest & raise;
            if flags.is_empty() {
                continue;
            }
            outcome.reached += 1;
            if conn.flags.contains(flags) {
                outcome.coalesced += 1;
            }
            conn.flags |= flags;
            conn.raises = conn.raises.saturating_add(1);
            conn.mark_pending(now);
        }
        outcome
    }

    /// Starts closing `id` (no-op if dead or already closing): its outbox
    /// is dropped and its event is due. Returns whether it was open.
    pub fn close(&mut self, id: ListenerId, reason: CloseReason, send: bool) -> bool {
        let Some(conn) = self.conns.get_mut(&id) else {
            return false;
        };
        if conn.is_closing() {
            return false;
        }
        conn.st = St::Closing { reason, send };
        conn.welcome = false;
        conn.flags = FlagSet::EMPTY;
        conn.raises = 0;
        conn.pong = None;
        conn.pending_since = None;
        conn.yielded = false;
        self.queue_event(id);
        true
    }

    /// `id`, awaiting its hello, asked for the stats instead: its event is
    /// due.
    pub fn stats_request(&mut self, id: ListenerId) {
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.st = St::Stats;
            self.queue_event(id);
        }
    }

    /// The connection whose event `poll_event` must report next (first
    /// closed, first reported), taken out of the table; `None` when no
    /// event is due.
    pub fn pop_event(&mut self) -> Option<(ListenerId, Conn)> {
        let id = self.events.pop_front()?;
        let conn = self
            .conns
            .remove(&id)
            .expect("a due event's connection is live");
        Some((id, conn))
    }

    /// Every connection's deadline (see [`Conn::deadline`]).
    pub fn deadlines(&self, config: &Config) -> Vec<(ListenerId, Instant, CloseReason)> {
        self.iter()
            .filter_map(|(id, c)| c.deadline(config).map(|(at, why)| (id, at, why)))
            .collect()
    }
}
