//! The broker's state: the listener table with per-listener outboxes, routing
//! of notifications, loss detection, keep-alive and the listener lifecycle —
//! everything a transport needs except sockets and a clock.
//!
//! # Call order (for transports)
//!
//! * A TCP connection is accepted → [`BrokerState::open`] gives its [`ListenerId`].
//! * Bytes arrive → read them into the connection's [`FrameReader`] and call
//!   [`BrokerState::handle_frames`], which hands each whole frame to
//!   [`BrokerState::handle_frame`] and gives the transport the frames a
//!   hello or a proof made owed (challenge; accept and welcome) before the
//!   next frame (queue them first for writing). A datagram arrives →
//!   [`BrokerState::handle_datagram`]; send the returned ack, if any, back to its
//!   source. The kernel reports dropped datagrams → [`BrokerState::handle_lost`].
//!   The peer disconnects → [`BrokerState::disconnect`].
//! * Then drain the outputs: [`BrokerState::poll_event`] until `None` (a
//!   listener's connection must end: write a close frame if asked, without
//!   waiting, then close it); [`BrokerState::poll_ready`] until `None` (listeners
//!   with frames to write); for each ready listener whose socket is writable,
//!   [`BrokerState::poll_framed`] until `None`, emitting and writing each
//!   frame in the session's version. A
//!   ready listener whose socket is not writable is simply retried when it
//!   becomes writable: its outbox keeps coalescing meanwhile.
//! * Sleep until [`BrokerState::poll_timeout`], then call [`BrokerState::handle_timeout`].
//!
//! # Routing
//!
//! A notification costs the listeners whose flags it changes, never the
//! number of connections: listeners are indexed by channel (a hash table
//! stored in the listener slots, keyed by [`Config::hash_key`]) and by
//! interest, and a raise of flags every reached listener already has pending
//! walks nobody (see the `route` module and [`Stats::route_visits`]). A
//! possible loss raises [`LOSS_FLAGS`] on everyone, at O(1) when everyone
//! already has them.
//!
//! # Listener authentication
//!
//! With keys set ([`BrokerState::set_keys`]) the broker serves only
//! version-2 sessions whose proof checks out, and refuses version-1 hellos
//! and stats requests with [`CloseReason::Unauthorized`]; without keys it
//! refuses version-2 ones the same way (`PROTOCOL.md`, *Listener
//! authentication*). A challenged connection is [`SlotState::AwaitingProof`]
//! until its proof arrives, within the same hello timeout; its challenge
//! nonces come from [`Config::broker_id`] and [`Config::hash_key`], which must
//! be random per run.
//!
//! # Memory
//!
//! Every listener's pending output is an *outbox*: a welcome bit, a pending
//! pong nonce and a [`FlagSet`] with a raise counter. Raises coalesce into it
//! until the transport writes, so a listener that never reads costs the same
//! fixed [`ListenerSlot::SIZE`] bytes however many notifications arrive; after
//! [`Config::stuck_timeout`] with undelivered flags it is closed with
//! [`CloseReason::Stuck`]. The slots and the sender table live in
//! caller-supplied storage (an array on a board, a boxed slice on a server).
//!
//! ```
//! use flagpost_core::broker::{BrokerState, Config, ListenerSlot};
//! use flagpost_core::flags::FlagSet;
//! use flagpost_core::loss::SenderSlot;
//! use flagpost_core::notify::Notification;
//! use flagpost_core::time::Instant;
//! use flagpost_core::wire::{FrameRepr, HelloRepr, FlagsRepr, MAX_FRAME_LEN};
//!
//! let mut broker = BrokerState::new(
//!     Config::default(),
//!     [ListenerSlot::EMPTY; 8],
//!     [SenderSlot::EMPTY; 8],
//! );
//! let now = Instant::ZERO;
//! let id = broker.open(now).unwrap();
//! let hello = FrameRepr::Hello(HelloRepr { interest: FlagSet::ALL, channel: None, keepalive_secs: 0 });
//! let mut buf = [0u8; MAX_FRAME_LEN];
//! let n = hello.emit(&mut buf).unwrap();
//! broker.handle_frame(now, id, &buf[..n]).unwrap();
//!
//! // a thousand status updates before the listener's socket is writable ...
//! for _ in 0..1000 {
//!     broker.notify(now, &Notification::status(None), 1);
//! }
//! // ... become one welcome and one flags frame
//! assert_eq!(broker.poll_ready(), Some(id));
//! assert!(matches!(broker.poll_frame(id), Some(FrameRepr::Welcome(_))));
//! assert_eq!(
//!     broker.poll_frame(id),
//!     Some(FrameRepr::Flags(FlagsRepr { flags: FlagSet::STATUS | FlagSet::NON_STATUS, raises: 1000 }))
//! );
//! assert_eq!(broker.poll_frame(id), None);
//! ```

use core::fmt;

use crate::auth::{Keyring, NonceSource};
use crate::channel::ChannelId;
use crate::flags::FlagSet;
use crate::loss::{SenderSlot, SenderTable};
use crate::notify::Notification;
use crate::time::{Duration, Instant};
use crate::wire::{CloseReason, Error as WireError, FrameReader, FrameRepr, Framed, Tag};
use route::Index;
use slot::{Outbox, State, NIL};

/// BrokerState settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Config {
    /// Keep-alive timeout for listeners that ask for none (default 30 s).
    pub keepalive: Duration,
    /// The shortest keep-alive a listener may ask for (default 1 s).
    pub min_keepalive: Duration,
    /// The longest keep-alive a listener may ask for (default 1 h).
    pub max_keepalive: Duration,
    /// How long a new connection may take to say hello (default 10 s).
    pub hello_timeout: Duration,
    /// When the table is full, a new connection takes the slot of the
    /// oldest one that has not completed its hello, if that one has waited
    /// at least this long (default 1 s; see [`BrokerState::open`]). A real
    /// listener says hello within a round trip of connecting, so it is
    /// never evicted mid-hello; a silent connection holds a slot for this
    /// long instead of the whole hello timeout.
    pub evict_after: Duration,
    /// How long undelivered flags may wait before the listener is closed as
    /// stuck (default 60 s; zero: never).
    pub stuck_timeout: Duration,
    /// Granularity of timeout checks: housekeeping runs at most this often
    /// (default 250 ms; a pass visits every slot, ≈ 3 ns each, and runs only
    /// when a deadline is due, so idle listeners that ping cost none).
    pub housekeeping: Duration,
    /// The shortest time between two raises of everyone for a possible loss
    /// (default 100 ms): a possible loss within it after one is folded into
    /// a single raise at its end, so that forged or replayed datagrams
    /// cannot wake every listener at the rate they are sent, and a real loss
    /// is delayed by at most this much, never dropped. The deferred raise is
    /// due at [`BrokerState::poll_timeout`]. Zero: every possible loss
    /// raises everyone at once.
    pub loss_interval: Duration,
    /// Random per broker run; sent in every welcome, and seeds the
    /// challenge nonces of listener authentication.
    pub broker_id: u64,
    /// Random per broker run, and secret: keys the hash of channel names in
    /// the routing index and of sender ids in the loss detector's table, so
    /// that clients cannot pick names or ids that collide, and seeds the
    /// challenge nonces (with a key set, a fixed value makes a restarted
    /// broker repeat its challenges).
    pub hash_key: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            keepalive: Duration::from_secs(30),
            min_keepalive: Duration::from_secs(1),
            max_keepalive: Duration::from_secs(3600),
            hello_timeout: Duration::from_secs(10),
            evict_after: Duration::from_secs(1),
            stuck_timeout: Duration::from_secs(60),
            housekeeping: Duration::from_millis(250),
            loss_interval: Duration::from_millis(100),
            broker_id: 0,
            hash_key: 0,
        }
    }
}

/// A handle to one listener connection: its slot and the slot's generation,
/// so a handle to a closed connection never reaches its slot's next tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ListenerId {
    index: u32,
    generation: u32,
}

impl ListenerId {
    /// The slot index (dense, below the table's capacity): handy as a
    /// transport's token.
    pub const fn index(self) -> usize {
        self.index as usize
    }
}

impl fmt::Display for ListenerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "L{}.{}", self.index, self.generation)
    }
}

/// The state of a listener connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SlotState {
    /// Connected, hello not yet received.
    AwaitingHello,
    /// A version-2 hello or stats request was challenged; the proof has not
    /// arrived yet.
    AwaitingProof,
    /// Hello received (and, with a key, the proof): flags are routed to it.
    Listening,
    /// Being closed: its [`Event::Closed`] is pending.
    Closing,
}

impl SlotState {
    /// Whether the connection completed its hello (and, with a key, the
    /// handshake) and listens: true for [`Listening`](Self::Listening)
    /// only. A connection awaiting its hello or its proof has proven
    /// nothing yet.
    pub const fn is_established(self) -> bool {
        matches!(self, SlotState::Listening)
    }
}

/// Something the transport must act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Event {
    /// The connection asked for the broker's counters instead of listening:
    /// write `FrameRepr::Accept(accept)` if there is one, then one
    /// `FrameRepr::Stat` per entry of [`Stats::visit`], then
    /// `FrameRepr::Close(CloseRepr::new(CloseReason::Normal))`, all in
    /// `version` ([`Framed`]), then close it. The handle is dead.
    StatsRequested {
        /// Which connection.
        listener: ListenerId,
        /// The version the reply's frames carry.
        version: u8,
        /// The accept that proves the broker's key, owed first (version 2).
        accept: Option<Tag>,
    },
    /// The listener's connection must end. If `send_close`, write
    /// `FrameRepr::Close(CloseRepr::new(reason))` in `version` if the socket
    /// takes it without waiting; then close the connection. The handle is
    /// dead.
    Closed {
        /// Which connection.
        listener: ListenerId,
        /// Why.
        reason: CloseReason,
        /// Whether to try to tell the peer.
        send_close: bool,
        /// The version of the session (the close frame's header).
        version: u8,
    },
}

/// The broker's state over caller-supplied listener and sender storage.
///
/// `L` is any `[ListenerSlot]` storage (`[ListenerSlot; N]`,
/// `Box<[ListenerSlot]>`, `&mut [ListenerSlot]`), likewise `S` for
/// [`SenderSlot`]. See the [module docs](self) for the call order.
#[derive(Debug)]
pub struct BrokerState<L, S> {
    config: Config,
    slots: L,
    senders: SenderTable<S>,
    index: Index,
    /// Slots at or above this index were never used.
    high_water: u32,
    free_head: u32,
    ready_head: u32,
    ready_tail: u32,
    close_head: u32,
    close_tail: u32,
    /// The waiting list: connections in the order they opened, those
    /// established since dropped as they reach the head (see the `evict`
    /// module).
    wait_head: u32,
    wait_tail: u32,
    next_housekeeping: Option<Instant>,
    last_housekeeping: Instant,
    /// Until when a possible loss is folded rather than raised: the end of
    /// the [`Config::loss_interval`] after the last raise of everyone.
    loss_quiet_until: Option<Instant>,
    /// A possible loss was folded: raise everyone at `loss_quiet_until`.
    loss_pending: bool,
    shutting_down: bool,
    stats: Stats,
    keys: Option<Keyring>,
    nonces: NonceSource,
    /// Most connections at once, at most the table's size (see
    /// [`BrokerState::set_limit`]).
    limit: usize,
    /// The sequence number of the next in-process notification federated
    /// ([`BrokerState::federate_local`]).
    federation_seq: crate::wire::Seq,
}

type Slots = [ListenerSlot];

/// Adds one to `counters[index]` (an out-of-range index is ignored).
fn bump(counters: &mut [u64], index: usize) {
    if let Some(c) = counters.get_mut(index) {
        *c = c.wrapping_add(1);
    }
}

impl<L, S> BrokerState<L, S>
where
    L: AsRef<Slots> + AsMut<Slots>,
    S: AsRef<[SenderSlot]> + AsMut<[SenderSlot]>,
{
    /// A broker over `listeners` and `senders` (all slots should be EMPTY).
    pub fn new(config: Config, listeners: L, senders: S) -> Self {
        BrokerState {
            config,
            slots: listeners,
            senders: SenderTable::new(senders, config.hash_key),
            index: Index::new(config.hash_key),
            high_water: 0,
            free_head: NIL,
            ready_head: NIL,
            ready_tail: NIL,
            close_head: NIL,
            close_tail: NIL,
            wait_head: NIL,
            wait_tail: NIL,
            next_housekeeping: None,
            last_housekeeping: Instant::ZERO,
            loss_quiet_until: None,
            loss_pending: false,
            shutting_down: false,
            stats: Stats::default(),
            keys: None,
            nonces: NonceSource::broker(config.broker_id, config.hash_key),
            limit: usize::MAX,
            federation_seq: crate::wire::Seq::FIRST,
        }
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Changes the timeouts at run time (a configuration reload): the
    /// keep-alive applies to connections opened from now on, the hello and
    /// stuck timeouts at the next housekeeping pass.
    pub fn set_timeouts(&mut self, keepalive: Duration, hello: Duration, stuck: Duration) {
        self.config.keepalive = keepalive;
        self.config.hello_timeout = hello;
        self.config.stuck_timeout = stuck;
    }

    /// Admits at most `limit` connections at once (never more than the
    /// table holds); lowering it closes nobody, it refuses newcomers
    /// (evicting as [`open`](Self::open) does) until enough have left.
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// The transport's own counters, to update in place.
    pub fn transport_stats(&mut self) -> &mut TransportStats {
        &mut self.stats.transport
    }

    /// Counters and gauges.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats;
        s.senders = self.senders.len() as u64;
        s.senders_evicted = self.senders.evictions();
        s
    }

    /// How many connections the table can hold.
    pub fn capacity(&self) -> usize {
        self.slots.as_ref().len().min(NIL as usize)
    }

    /// How many connections are open (awaiting hello or proof, or
    /// listening).
    pub fn connections(&self) -> usize {
        usize::try_from(self.stats.awaiting_hello + self.stats.listening).unwrap_or(usize::MAX)
    }

    fn slot(&self, id: ListenerId) -> Option<&ListenerSlot> {
        self.slots
            .as_ref()
            .get(id.index())
            .filter(|s| s.generation == id.generation && s.state != State::Free)
    }

    fn slot_mut(&mut self, id: ListenerId) -> Option<&mut ListenerSlot> {
        self.slots
            .as_mut()
            .get_mut(id.index())
            .filter(|s| s.generation == id.generation && s.state != State::Free)
    }

    /// The state of a connection, or `None` for a dead handle.
    pub fn state(&self, id: ListenerId) -> Option<SlotState> {
        self.slot(id).and_then(|s| match s.state {
            State::Free => None,
            State::AwaitingHello => Some(SlotState::AwaitingHello),
            State::AwaitingProof { .. } => Some(SlotState::AwaitingProof),
            State::Listening => Some(SlotState::Listening),
            State::Closing { .. } | State::Stats => Some(SlotState::Closing),
        })
    }

    /// The channel a listening connection listens for (`None`: all channels,
    /// or not listening).
    pub fn channel(&self, id: ListenerId) -> Option<ChannelId> {
        self.slot(id)
            .filter(|s| s.is_established())
            .and_then(|s| s.channel)
    }

    fn arm(&mut self, at: Instant) {
        let floor = self.last_housekeeping + self.config.housekeeping;
        let at = at.max(floor);
        self.next_housekeeping = Some(self.next_housekeeping.map_or(at, |n| n.min(at)));
    }

    /// A new connection was accepted at `now`; it has until
    /// [`Config::hello_timeout`] to say hello.
    ///
    /// When the table is full, the oldest connection that has not completed
    /// its hello is closed to make room ([`CloseReason::TooManyListeners`],
    /// counted in [`Stats::connections_evicted`]) if it has waited at least
    /// [`Config::evict_after`]; only when there is none is the newcomer
    /// refused with [`OpenError::Full`]. Listeners are never evicted. The
    /// evicted connection's handle is dead at once (the newcomer has its
    /// slot); its [`Event::Closed`] comes from
    /// [`poll_event`](Self::poll_event) before any event of the newcomer, so
    /// a transport that keys connections by slot index drains `poll_event`
    /// before it stores the newcomer in a slot still taken.
    pub fn open(&mut self, now: Instant) -> Result<ListenerId, OpenError> {
        let id = self.take_slot(now)?;
        self.push_waiting(id.index);
        Ok(id)
    }

    /// A slot for a new connection opened at `now`, evicting if need be.
    fn take_slot(&mut self, now: Instant) -> Result<ListenerId, OpenError> {
        if self.shutting_down {
            return Err(OpenError::ShuttingDown);
        }
        let mut evicted = false;
        let room = self.connections() < self.limit;
        let index = if room && self.free_head != NIL {
            let i = self.free_head;
            self.free_head = self.slots.as_ref().get(i as usize).map_or(NIL, |s| s.link);
            i
        } else if room && (self.high_water as usize) < self.capacity() {
            self.high_water += 1;
            self.high_water - 1
        } else if let Some(i) = self.evict(now) {
            evicted = true;
            i
        } else {
            self.stats.refused_full += 1;
            return Err(OpenError::Full);
        };
        let Some(slot) = self.slots.as_mut().get_mut(index as usize) else {
            self.stats.refused_full += 1;
            return Err(OpenError::Full);
        };
        *slot = slot.reopened(now, self.config.keepalive);
        let generation = slot.generation;
        if evicted {
            self.record_eviction(index);
        }
        self.stats.opened += 1;
        self.stats.awaiting_hello += 1;
        self.arm(now + self.config.hello_timeout);
        Ok(ListenerId { index, generation })
    }

    /// Opens an in-process listener: listening at once for `interest` on
    /// `channel`, with no welcome and no keep-alive (it cannot go silent).
    /// Its flags frames come out of [`poll_frame`](Self::poll_frame) like
    /// any other's (never closed as stuck, however long they wait); end it
    /// with [`disconnect`](Self::disconnect).
    pub fn open_local(
        &mut self,
        now: Instant,
        interest: FlagSet,
        channel: Option<ChannelId>,
    ) -> Result<ListenerId, OpenError> {
        let id = self.take_slot(now)?;
        if let Some(slot) = self.slot_mut(id) {
            slot.state = State::Listening;
            slot.interest = if interest.is_empty() {
                FlagSet::ALL
            } else {
                interest
            };
            slot.channel = channel;
            slot.keepalive = Duration::ZERO;
        }
        self.stats.awaiting_hello -= 1;
        self.stats.listening += 1;
        if !self.join(id.index) {
            self.stats.listening -= 1;
            self.free(id.index);
            return Err(OpenError::Full);
        }
        Ok(id)
    }

    /// Slot `index` leaves `state`: the gauges and, for a listener, the
    /// routing index.
    fn gauge_down(&mut self, index: u32, state: State) {
        match state {
            State::AwaitingHello | State::AwaitingProof { .. } => self.stats.awaiting_hello -= 1,
            State::Listening => {
                self.stats.listening -= 1;
                self.leave(index);
            }
            State::Free | State::Closing { .. } | State::Stats => {}
        }
    }

    /// Starts closing connection `index` (no-op if free or already closing).
    fn close_slot(&mut self, index: u32, reason: CloseReason, send: bool) {
        let Some(slot) = self.slots.as_mut().get_mut(index as usize) else {
            return;
        };
        let old = slot.state;
        if matches!(old, State::Free | State::Closing { .. } | State::Stats) {
            return;
        }
        slot.state = State::Closing { reason, send };
        slot.outbox = Outbox::EMPTY;
        slot.pending_since = None;
        self.gauge_down(index, old);
        bump(&mut self.stats.closes, reason as usize);
        self.push_close(index);
    }

    /// Appends `index` to the list [`poll_event`](Self::poll_event) drains
    /// (a slot listed for its evicted predecessor already is: its own event
    /// follows that one).
    fn push_close(&mut self, index: u32) {
        if let Some(slot) = self.slots.as_mut().get_mut(index as usize) {
            if slot.evicted {
                return;
            }
            slot.link = NIL;
        }
        if self.close_tail == NIL {
            self.close_head = index;
        } else if let Some(tail) = self.slots.as_mut().get_mut(self.close_tail as usize) {
            tail.link = index;
        }
        self.close_tail = index;
    }

    /// Closes connection `id` for `reason` (the transport's own decision,
    /// such as a write error or a per-address limit); its [`Event::Closed`]
    /// follows. No-op for a dead handle.
    pub fn close(&mut self, id: ListenerId, reason: CloseReason) {
        if self.slot(id).is_some() {
            self.close_slot(id.index, reason, true);
        }
    }

    fn free(&mut self, index: u32) {
        self.unlist_waiting(index);
        let free_head = self.free_head;
        if let Some(slot) = self.slots.as_mut().get_mut(index as usize) {
            slot.state = State::Free;
            slot.channel = None;
            slot.outbox = Outbox::EMPTY;
            slot.pending_since = None;
            if slot.evicted {
                // still listed for its evicted predecessor's close: it is
                // renumbered and freed when that is reported
                return;
            }
            slot.generation = slot.generation.wrapping_add(1);
            slot.link = free_head;
            self.free_head = index;
        }
    }

    /// The transport saw the connection go away (EOF, reset, write error).
    /// Frees it at once; a connection already closing gets its
    /// [`Event::Closed`] as usual.
    pub fn disconnect(&mut self, id: ListenerId) {
        let Some(slot) = self.slot(id) else { return };
        let state = slot.state;
        if matches!(state, State::Closing { .. } | State::Stats) {
            return;
        }
        self.gauge_down(id.index, state);
        self.stats.disconnects += 1;
        self.free(id.index);
    }

    /// Closes every connection with [`CloseReason::Shutdown`] and refuses new
    /// ones (a possible-loss raise still pending is dropped: nobody is left
    /// to raise). Drain [`poll_event`](Self::poll_event) afterwards.
    pub fn shutdown(&mut self) {
        self.shutting_down = true;
        self.loss_pending = false;
        for i in 0..self.high_water {
            self.close_slot(i, CloseReason::Shutdown, true);
        }
    }

    /// Feeds one complete frame received on connection `id` at `now`.
    ///
    /// A malformed frame, or a frame invalid in the connection's state, is
    /// counted, closes the connection (see [`Event::Closed`]) and is returned
    /// as an error for the transport to log; so is a failed handshake
    /// ([`FrameError::Unauthorized`]).
    pub fn handle_frame(
        &mut self,
        now: Instant,
        id: ListenerId,
        bytes: &[u8],
    ) -> Result<(), FrameError> {
        let Some(slot) = self.slot_mut(id) else {
            return Err(FrameError::UnknownListener);
        };
        if matches!(slot.state, State::Closing { .. } | State::Stats) {
            return Ok(());
        }
        // Awaiting its hello, a connection's last frame is its opening.
        let opened = slot.last_rx;
        slot.last_rx = now;
        let (state, session) = (slot.state, slot.version);
        let Framed { version, frame } = match Framed::parse(bytes) {
            Ok(framed) => framed,
            Err(e) => return Err(self.reject(id.index, e)),
        };
        self.stats.frames += 1;
        if let FrameRepr::Close(close) = frame {
            // The peer is leaving, in whichever version: count its reason,
            // tell it nothing.
            self.close_slot(id.index, close.reason, false);
            return Ok(());
        }
        match (state, frame) {
            (State::AwaitingHello, FrameRepr::Hello(_) | FrameRepr::StatsRequest) => {
                self.handle_first(now, id.index, version, frame, opened)
            }
            _ if version != session => Err(self.unexpected(id.index, frame)),
            (State::AwaitingProof { stats }, FrameRepr::Proof(proof)) => {
                self.handle_proof(now, id.index, stats, &proof)
            }
            (State::Listening, FrameRepr::Ping(nonce)) => {
                if let Some(slot) = self.slot_mut(id) {
                    slot.outbox.pong = Some(nonce);
                }
                self.mark_ready(now, id.index);
                Ok(())
            }
            (_, other) => Err(self.unexpected(id.index, other)),
        }
    }

    /// A well-formed frame slot `index` may not send now: counted, and the
    /// connection closes.
    fn unexpected(&mut self, index: u32, frame: FrameRepr) -> FrameError {
        self.stats.frames_unexpected += 1;
        self.close_slot(index, CloseReason::ProtocolError, true);
        FrameError::Unexpected(frame.frame_type())
    }

    /// A malformed frame (or a stream that cannot be split) on connection
    /// `index`: counted by reason, and the connection closes.
    fn reject(&mut self, index: u32, e: WireError) -> FrameError {
        bump(&mut self.stats.frame_rejects, e.index());
        let reason = match e {
            WireError::UnsupportedVersion(_) => CloseReason::UnsupportedVersion,
            _ => CloseReason::ProtocolError,
        };
        self.close_slot(index, reason, true);
        FrameError::Wire(e)
    }

    /// Feeds every whole frame buffered in `reader` — the bytes received on
    /// connection `id` — in order, until the reader needs more bytes or the
    /// connection is closing; what follows a frame that closed it is left
    /// unread. The transport's read path is then: read into
    /// [`FrameReader::unfilled`], [`FrameReader::filled`], `handle_frames`.
    ///
    /// As soon as a hello is accepted its welcome is handed to `owed`, in
    /// the session's version, before the next frame is looked at; so is a
    /// version-2 hello's challenge, and a proof's accept and welcome. The
    /// transport must queue them for writing ahead of anything else
    /// (nothing else is written to the connection before the welcome:
    /// challenge, accept and welcome take 62 bytes, so a write buffer of
    /// `MAX_FRAME_LEN` bytes has room for the welcome alone, and 62 bytes
    /// for all three). A later frame of the same read that closes the
    /// connection — which drops whatever its outbox holds — thus still
    /// finds them sent before the close, as `PROTOCOL.md` promises.
    ///
    /// A stream the reader cannot split (bad magic, a body past the bound)
    /// is counted and closes the connection like a malformed frame. Returns
    /// the error that closed the connection, if any, for the transport to
    /// log.
    pub fn handle_frames<const N: usize>(
        &mut self,
        now: Instant,
        id: ListenerId,
        reader: &mut FrameReader<N>,
        mut owed: impl FnMut(Framed),
    ) -> Result<(), FrameError> {
        loop {
            let before = match self.state(id) {
                None => return Err(FrameError::UnknownListener),
                Some(SlotState::Closing) => return Ok(()),
                Some(state) => state,
            };
            match reader.next_frame() {
                None => return Ok(()),
                Some(Ok(frame)) => self.handle_frame(now, id, frame)?,
                Some(Err(e)) => {
                    if let Some(slot) = self.slot_mut(id) {
                        slot.last_rx = now;
                    }
                    return Err(self.reject(id.index, e));
                }
            }
            // A hello or a proof was taken: hand over what it made owed.
            let after = self.state(id);
            if after != Some(before)
                && matches!(after, Some(SlotState::AwaitingProof | SlotState::Listening))
            {
                while let Some(frame) = self.poll_framed(id) {
                    owed(frame);
                }
            }
        }
    }

    /// Delivers a notification standing for `batch` changes at `now`, as a
    /// datagram would (the in-process path: no sequence check). Returns how
    /// many listeners had flags raised.
    pub fn notify(&mut self, now: Instant, notification: &Notification, batch: u32) -> u32 {
        self.stats.delivered += 1;
        self.stats.changes += u64::from(batch);
        self.route(now, notification)
    }

    /// Raises [`FlagSet::RECHECK`] (status, non-status, channel update;
    /// never channel shutdown) on every listener, within its interest, at
    /// `now`: what each listener's own reconnect raise does, for when the
    /// broker itself may have missed notifications (a database source that
    /// reconnected: PostgreSQL drops notifications while nobody listens).
    /// Routed like a possible-loss raise, but neither counted as one nor
    /// folded with one. Returns how many listeners it reached.
    pub fn raise_recheck(&mut self, now: Instant) -> u32 {
        self.broadcast(now, route::Broadcast::Loss)
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }
}

mod error;
mod evict;
mod federate;
mod handshake;
mod ingest;
mod output;
mod route;
mod slot;
mod stats;

pub use error::{FrameError, OpenError};
pub use federate::FederationError;
pub use ingest::{DatagramError, Received};
pub use route::LOSS_FLAGS;
pub use slot::ListenerSlot;
pub use stats::{Metric, Stats, TransportStats};

#[cfg(test)]
mod auth_tests;
#[cfg(test)]
mod evict_tests;
#[cfg(test)]
mod federate_tests;
#[cfg(test)]
mod handshake_tests;
#[cfg(test)]
mod loss_tests;
#[cfg(test)]
mod route_tests;
#[cfg(test)]
mod tests;
