//! One listener slot of the broker's table: the connection's state, its
//! outbox, its links in the broker's lists, its place in the routing index,
//! and the routing group the slot hosts (groups are stored in the slots,
//! one per index, whichever listener occupies the slot).

use super::route::{Group, Member};
use crate::channel::ChannelId;
use crate::flags::FlagSet;
use crate::time::{Duration, Instant};
use crate::wire::{CloseReason, VERSION};

/// "No slot": the end of every intrusive list.
pub(super) const NIL: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub(super) enum State {
    Free,
    AwaitingHello,
    /// Challenged: the hello (or, with `stats`, a stats request) is held
    /// until the proof arrives (`handshake`).
    AwaitingProof {
        stats: bool,
    },
    Listening,
    Closing {
        reason: CloseReason,
        send: bool,
    },
    /// Asked for stats: answered and closed by the transport.
    Stats,
}

impl State {
    /// Its handshake is complete: flags are routed to it, and it is never
    /// evicted to make room. Every other open state (awaiting the hello, or
    /// anything else a handshake may add) is *not established*.
    pub(super) fn is_established(self) -> bool {
        matches!(self, State::Listening)
    }

    /// A connection holds the slot and is not on its way out.
    pub(super) fn is_open(self) -> bool {
        !matches!(self, State::Free | State::Closing { .. } | State::Stats)
    }
}

/// What a listener has to be told. The number of raises its flags stand
/// for is kept by the routing index (see `Member`), so that a raise that
/// changes no flag need not touch the slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub(super) struct Outbox {
    /// The challenge, its nonce in the slot's `auth`.
    pub(super) challenge: bool,
    /// The accept, its tag in the slot's `auth`.
    pub(super) accept: bool,
    pub(super) welcome: bool,
    pub(super) flags: FlagSet,
    pub(super) pong: Option<u32>,
}

impl Outbox {
    pub(super) const EMPTY: Outbox = Outbox {
        challenge: false,
        accept: false,
        welcome: false,
        flags: FlagSet::EMPTY,
        pong: None,
    };

    pub(super) fn is_empty(&self) -> bool {
        !self.challenge
            && !self.accept
            && !self.welcome
            && self.flags.is_empty()
            && self.pong.is_none()
    }
}

/// One listener's state; allocate the table with [`ListenerSlot::EMPTY`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ListenerSlot {
    pub(super) state: State,
    pub(super) generation: u32,
    /// The version the session's frames carry: its first frame's (1 until
    /// one is read).
    pub(super) version: u8,
    pub(super) channel: Option<ChannelId>,
    pub(super) interest: FlagSet,
    /// The keep-alive in force; while awaiting the proof, the one the
    /// hello asked for (its bytes are part of the transcript).
    pub(super) keepalive: Duration,
    /// The handshake's 16 bytes: the broker nonce until the proof, then the
    /// accept tag until it is written.
    pub(super) auth: [u8; 16],
    /// When the connection opened, or when its last frame arrived.
    pub(super) last_rx: Instant,
    pub(super) outbox: Outbox,
    /// When the outbox became non-empty.
    pub(super) pending_since: Option<Instant>,
    pub(super) in_ready: bool,
    pub(super) ready_next: u32,
    /// Next in the closing list or the free list (a slot is in at most one).
    pub(super) link: u32,
    /// Neighbours in the waiting list (connections in the order they
    /// opened, see the `evict` module), while `waiting`.
    pub(super) wait_prev: u32,
    pub(super) wait_next: u32,
    /// In the waiting list.
    pub(super) waiting: bool,
    /// The previous tenant was evicted to make room for this one and its
    /// close is still to be reported: the slot is in the closing list for
    /// it (see the `evict` module).
    pub(super) evicted: bool,
    /// This slot's listener in the routing index.
    pub(super) member: Member,
    /// The routing group stored at this index (not this listener's).
    pub(super) group: Group,
}

impl ListenerSlot {
    /// An unused slot.
    pub const EMPTY: ListenerSlot = ListenerSlot {
        state: State::Free,
        generation: 0,
        version: VERSION,
        channel: None,
        interest: FlagSet::EMPTY,
        keepalive: Duration::ZERO,
        auth: [0; 16],
        last_rx: Instant::ZERO,
        outbox: Outbox::EMPTY,
        pending_since: None,
        in_ready: false,
        ready_next: NIL,
        link: NIL,
        wait_prev: NIL,
        wait_next: NIL,
        waiting: false,
        evicted: false,
        member: Member::NONE,
        group: Group::FREE,
    };

    /// Size in bytes of one slot, for sizing caller storage.
    pub const SIZE: usize = core::mem::size_of::<ListenerSlot>();

    /// Whether the connection completed its hello (and, with a key, the
    /// handshake) and listens. A connection still awaiting its hello or
    /// proof is not established: it has proven nothing yet.
    pub(super) fn is_established(&self) -> bool {
        self.state.is_established()
    }

    /// Whether the connection has frames to write: a listener with
    /// something in its outbox, or a challenge waiting.
    pub(super) fn has_output(&self) -> bool {
        matches!(self.state, State::Listening | State::AwaitingProof { .. })
            && !self.outbox.is_empty()
    }

    /// The slot a new connection takes: everything but what outlives a
    /// connection (the generation, a stale place in the ready queue, and
    /// the routing group stored here) starts afresh.
    pub(super) fn reopened(&self, now: Instant, keepalive: Duration) -> ListenerSlot {
        ListenerSlot {
            state: State::AwaitingHello,
            generation: self.generation,
            last_rx: now,
            keepalive,
            in_ready: self.in_ready,
            ready_next: self.ready_next,
            group: self.group,
            ..ListenerSlot::EMPTY
        }
    }
}

impl Default for ListenerSlot {
    fn default() -> Self {
        Self::EMPTY
    }
}
