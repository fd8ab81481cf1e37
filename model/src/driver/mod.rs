//! The driver: a real [`BrokerState`] and the models side by side. [`Harness`]
//! applies each [`Op`] to both, drains the broker's outputs as a transport
//! would, and asserts after every operation that the two agree. This file
//! owns the harness, the operation dispatch, the connection lifecycle
//! (open, frames, close, disconnect) and the whole-state check; the
//! submodules own notifications (`notify.rs`), output draining (`output.rs`)
//! and time (`timeouts.rs`).

mod notify;
mod output;
mod timeouts;

use std::collections::BTreeSet;

use flagpost_core::broker::{
    BrokerState, Config, FrameError, ListenerId, ListenerSlot, OpenError, Stats,
};
use flagpost_core::channel::ChannelId;
use flagpost_core::flags::FlagSet;
use flagpost_core::loss::SenderSlot;
use flagpost_core::time::{Duration, Instant};
use flagpost_core::wire::{CloseReason, Error as WireError, FrameRepr, Framed, MAX_FRAME_LEN};

use crate::input::{channel_choice, notification, reason_choice, Op, Setup, REPEATS};
use crate::loss::GapModel;
use crate::stats::Expected;
use crate::table::{Conn, St, Table};

/// The storage of the broker under test.
pub type TestBroker = BrokerState<Vec<ListenerSlot>, Vec<SenderSlot>>;

/// Handles kept for operations to pick from (live ones plus recent dead
/// ones).
const MAX_HANDLES: usize = 40;

/// What a finished run saw, for tests that check what their inputs reach.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// The broker's counters at the end (equal to the model's), after the
    /// final shutdown.
    pub stats: Stats,
    /// Timeout closes checked against "at most one housekeeping period after
    /// the deadline" (deadlines that fell inside an [`Op::Sleep`] or the
    /// final sleep).
    pub timely_closes: u64,
    /// Drains that yielded a flags frame standing for more than one raise.
    pub coalesced_frames: u64,
}

/// The broker under test, the models, and the driver.
pub struct Harness {
    broker: TestBroker,
    config: Config,
    capacity: usize,
    lazy_events: bool,
    lazy_ready: bool,
    now: Instant,
    /// Handles to pick from (all live ones, and the most recent dead ones).
    handles: Vec<ListenerId>,
    /// Every handle ever issued.
    issued: BTreeSet<ListenerId>,
    /// The listener table's model.
    table: Table,
    shutting_down: bool,
    /// The last sequence number each of [`SENDER_IDS`] sent.
    ///
    /// [`SENDER_IDS`]: crate::input::SENDER_IDS
    seqs: [u32; crate::input::SENDER_IDS.len()],
    /// The loss detector's model.
    gap: GapModel,
    /// The counters the broker must report.
    expect: Expected,
    report: Report,
}

impl Harness {
    /// A fresh broker with the settings of `setup`, and empty models.
    pub fn new(setup: Setup) -> Self {
        let config = setup.config();
        let capacity = setup.listener_capacity();
        let senders = setup.sender_capacity();
        Harness {
            broker: BrokerState::new(
                config,
                vec![ListenerSlot::EMPTY; capacity],
                vec![SenderSlot::EMPTY; senders],
            ),
            config,
            capacity,
            lazy_events: setup.lazy_events,
            lazy_ready: setup.lazy_ready,
            now: Instant::ZERO,
            handles: Vec::new(),
            issued: BTreeSet::new(),
            table: Table::default(),
            shutting_down: false,
            seqs: [0; crate::input::SENDER_IDS.len()],
            gap: GapModel::new(senders),
            expect: Expected::default(),
            report: Report::default(),
        }
    }

    /// The broker under test.
    pub fn broker(&self) -> &TestBroker {
        &self.broker
    }

    fn pick(&self, listener: u8) -> Option<ListenerId> {
        match self.handles.len() {
            0 => None,
            n => Some(self.handles[usize::from(listener) % n]),
        }
    }

    /// Runs one operation, drains the outputs a transport would, and checks
    /// every invariant.
    pub fn step(&mut self, op: &Op) {
        match op {
            Op::Open => self.open(),
            Op::Frame { listener, frame } => {
                if let Some(id) = self.pick(*listener) {
                    self.frame(id, &emit_frame(&frame.framed()));
                }
            }
            Op::CorruptFrame {
                listener,
                frame,
                corrupt,
            } => {
                if let Some(id) = self.pick(*listener) {
                    let mut bytes = emit_frame(&frame.framed());
                    corrupt.apply(&mut bytes);
                    self.frame(id, &bytes);
                }
            }
            Op::RawFrame { listener, bytes } => {
                if let Some(id) = self.pick(*listener) {
                    self.frame(id, bytes);
                }
            }
            Op::Notify(spec) => {
                let bytes = self.emit_notify(spec);
                self.datagram(&bytes);
            }
            Op::CorruptNotify { notify, corrupt } => {
                let mut bytes = self.emit_notify(notify);
                corrupt.apply(&mut bytes);
                self.datagram(&bytes);
            }
            Op::RawDatagram { bytes } => self.datagram(bytes),
            Op::InProcess {
                kind,
                channel,
                batch,
                repeat,
            } => {
                let n = notification(*kind, *channel);
                let times = REPEATS[usize::from(*repeat) % REPEATS.len()];
                for _ in 0..times {
                    self.in_process(&n, u32::from(*batch));
                }
            }
            Op::Lost { count } => self.lost(u64::from(*count)),
            Op::Disconnect { listener } => {
                if let Some(id) = self.pick(*listener) {
                    self.disconnect(id);
                }
            }
            Op::Writable { listener, writable } => {
                if let Some(conn) = self.pick(*listener).and_then(|id| self.table.get_mut(id)) {
                    conn.writable = *writable;
                }
            }
            Op::PollFrame { listener } => {
                if let Some(id) = self.pick(*listener) {
                    self.poll_frame_once(id);
                }
            }
            Op::PollEvents => self.drain_events(),
            Op::PollReady => self.sweep_ready(),
            Op::Advance { micros } => self.now += Duration::from_micros(u64::from(*micros)),
            Op::HandleTimeout => self.handle_timeout(None),
            Op::SleepUntilTimeout => {
                if let Some(at) = self.broker.poll_timeout() {
                    self.now = self.now.max(at);
                }
                self.handle_timeout(None);
            }
            Op::Sleep { micros } => {
                let until = self.now + Duration::from_micros(u64::from(*micros));
                self.sleep(Some(until));
            }
            Op::OpenLocal { interest, channel } => self.open_local(
                FlagSet::from_bits_truncate(*interest),
                channel_choice(*channel),
            ),
            Op::Close { listener, reason } => {
                if let Some(id) = self.pick(*listener) {
                    let reason = reason_choice(*reason);
                    self.broker.close(id, reason);
                    self.close(id, reason, true);
                }
            }
            Op::Shutdown => {
                self.broker.shutdown();
                self.shutting_down = true;
                let live: Vec<ListenerId> = self.table.iter().map(|(id, _)| id).collect();
                for id in live {
                    self.close(id, CloseReason::Shutdown, true);
                }
            }
        }
        self.settle();
    }

    /// What a transport does after every event: drain `poll_event` and
    /// sweep `poll_ready` (each unless lazy), write to the ready listeners
    /// that are writable; then check.
    fn settle(&mut self) {
        if !self.lazy_events {
            self.drain_events();
        }
        if !self.lazy_ready {
            self.sweep_ready();
        }
        self.write_ready();
        self.check();
    }

    /// Ends the run: first nobody reads, writes or sends any more and the
    /// transport sleeps until each `poll_timeout` (every connection that can
    /// time out must be closed, in time); then everything is written out,
    /// the events drained, the broker shut down, and nothing may be left.
    pub fn finish(mut self) -> Report {
        self.sleep(None);
        self.settle();
        let left = self.table.deadlines(&self.config);
        assert!(left.is_empty(), "deadlines left after sleeping: {left:?}");
        assert_eq!(
            self.broker.poll_timeout(),
            None,
            "a timeout with no deadline"
        );
        assert!(
            self.table
                .iter()
                .all(|(_, c)| c.is_closing() || c.is_local()),
            "a connection that can time out is still open"
        );

        for (_, conn) in self.table.iter_mut() {
            conn.writable = true;
        }
        self.drain_events();
        self.sweep_ready();
        self.write_ready();
        self.check();
        assert!(
            self.table.iter().all(|(_, c)| !c.has_output()),
            "output left after a full drain"
        );
        self.step(&Op::Shutdown);
        self.drain_events();
        self.check();
        assert!(self.table.is_empty(), "connections left after shutdown");
        assert_eq!(self.broker.connections(), 0);
        assert_eq!(self.broker.poll_ready(), None);
        assert_eq!(self.broker.poll_timeout(), None);
        assert_eq!(self.broker.open(self.now), Err(OpenError::ShuttingDown));
        for id in &self.issued {
            assert_eq!(self.broker.state(*id), None, "{id} alive after shutdown");
        }
        self.report.stats = self.broker.stats();
        self.report
    }

    fn open(&mut self) {
        let result = self.broker.open(self.now);
        if let Some(id) = self.opened(result) {
            self.table.insert(id, Conn::new(self.now));
        }
    }

    fn open_local(&mut self, interest: FlagSet, channel: Option<ChannelId>) {
        let result = self.broker.open_local(self.now, interest, channel);
        if let Some(id) = self.opened(result) {
            let mut conn = Conn::new(self.now);
            conn.st = St::Listening {
                interest: if interest.is_empty() {
                    FlagSet::ALL
                } else {
                    interest
                },
                channel,
                keepalive: Duration::ZERO,
            };
            self.table.insert(id, conn);
            let interest = if interest.is_empty() {
                FlagSet::ALL
            } else {
                interest
            };
            self.table.joined(channel.as_ref(), interest);
        }
    }

    /// Checks what `open` or `open_local` returned; `Some` for a new handle
    /// (recorded, but not yet in the table). With every slot taken, the
    /// newcomer must have evicted the model's candidate and taken its slot,
    /// or have been refused if there is none.
    fn opened(&mut self, result: Result<ListenerId, OpenError>) -> Option<ListenerId> {
        if self.shutting_down {
            assert_eq!(result, Err(OpenError::ShuttingDown));
            return None;
        }
        let mut evicted = None;
        if self.table.slots_taken() == self.capacity {
            evicted = self
                .table
                .eviction_candidate(self.now, self.config.evict_after);
            if evicted.is_none() {
                assert_eq!(
                    result,
                    Err(OpenError::Full),
                    "open with every slot taken and none to evict"
                );
                self.expect.refused_full();
                return None;
            }
        }
        let id = result.unwrap_or_else(|e| {
            panic!(
                "open refused ({e:?}) with {} of {} slots taken, evicting {evicted:?}",
                self.table.slots_taken(),
                self.capacity
            )
        });
        assert!(id.index() < self.capacity, "{id} beyond the table");
        assert!(
            self.issued.insert(id),
            "open returned {id}, a handle it gave before"
        );
        if let Some(victim) = evicted {
            assert_eq!(id.index(), victim.index(), "open evicted {victim} for {id}");
            self.close(victim, CloseReason::TooManyListeners, true);
            if let Some(conn) = self.table.get_mut(victim) {
                conn.evicted = true;
            }
            self.expect.evicted();
        }
        assert!(
            self.table
                .iter()
                .all(|(other, _)| other.index() != id.index() || Some(other) == evicted),
            "open returned {id}, whose slot is taken"
        );
        self.expect.opened();
        self.handles.push(id);
        if self.handles.len() > MAX_HANDLES {
            if let Some(dead) = self
                .handles
                .iter()
                .position(|h| self.table.get(*h).is_none())
            {
                self.handles.remove(dead);
            }
        }
        Some(id)
    }

    fn close(&mut self, id: ListenerId, reason: CloseReason, send: bool) {
        if self.table.close(id, reason, send) {
            self.expect.closed(reason);
        }
    }

    fn disconnect(&mut self, id: ListenerId) {
        self.broker.disconnect(id);
        match self.table.get(id) {
            None => {}                            // a dead handle: nothing happens
            Some(conn) if conn.is_closing() => {} // its event still comes
            Some(_) => {
                self.table.remove(id);
                self.expect.disconnected();
            }
        }
    }

    /// One frame from listener `id`.
    fn frame(&mut self, id: ListenerId, bytes: &[u8]) {
        let result = self.broker.handle_frame(self.now, id, bytes);
        let now = self.now;
        let st = match self.table.get_mut(id).filter(|c| !c.evicted) {
            None => {
                assert_eq!(
                    result,
                    Err(FrameError::UnknownListener),
                    "frame to dead {id}"
                );
                return;
            }
            Some(conn) if conn.is_closing() => {
                assert_eq!(result, Ok(()), "frame to closing {id}");
                return;
            }
            Some(conn) => {
                conn.last_rx = now;
                conn.st
            }
        };
        let Framed { version, frame } = match Framed::parse(bytes) {
            Ok(framed) => framed,
            Err(e) => {
                assert_eq!(result, Err(FrameError::Wire(e)), "malformed frame to {id}");
                self.expect.frame_rejected(e);
                let reason = match e {
                    WireError::UnsupportedVersion(_) => CloseReason::UnsupportedVersion,
                    _ => CloseReason::ProtocolError,
                };
                self.close(id, reason, true);
                return;
            }
        };
        self.expect.frame();
        let conn = self.table.get_mut(id).expect("live");
        if let FrameRepr::Close(close) = frame {
            // The peer is leaving, in either version: its reason is
            // counted, it is told nothing.
            assert_eq!(result, Ok(()), "close from {id}");
            self.close(id, close.reason, false);
            return;
        }
        let first = matches!(frame, FrameRepr::Hello(_) | FrameRepr::StatsRequest);
        if st == St::AwaitingHello && first {
            // a hello or stats request sets the session's version; without
            // a key the broker serves version 1 only
            conn.version = version;
            if version != 1 {
                assert_eq!(
                    result,
                    Err(FrameError::Unauthorized),
                    "v{version} from {id}"
                );
                self.expect.unauthorized();
                self.close(id, CloseReason::Unauthorized, true);
                return;
            }
        } else if version != conn.version {
            assert_eq!(
                result,
                Err(FrameError::Unexpected(frame.frame_type())),
                "v{version} {frame:?} from {id} in a v{} session",
                conn.version
            );
            self.expect.frame_unexpected();
            self.close(id, CloseReason::ProtocolError, true);
            return;
        }
        match (st, frame) {
            (St::AwaitingHello, FrameRepr::Hello(hello)) => {
                assert_eq!(result, Ok(()), "hello from {id}");
                let keepalive = match hello.keepalive_secs {
                    0 => self.config.keepalive,
                    s => Duration::from_secs(u64::from(s))
                        .max(self.config.min_keepalive)
                        .min(self.config.max_keepalive),
                };
                conn.st = St::Listening {
                    interest: hello.interest,
                    channel: hello.channel,
                    keepalive,
                };
                conn.welcome = true;
                conn.mark_pending(now);
                self.table.joined(hello.channel.as_ref(), hello.interest);
            }
            (St::AwaitingHello, FrameRepr::StatsRequest) => {
                assert_eq!(result, Ok(()), "stats request from {id}");
                self.expect.stats_request();
                self.table.stats_request(id);
            }
            (St::Listening { .. }, FrameRepr::Ping(nonce)) => {
                assert_eq!(result, Ok(()), "ping from {id}");
                conn.pong = Some(nonce);
                conn.mark_pending(now);
            }
            (_, other) => {
                assert_eq!(
                    result,
                    Err(FrameError::Unexpected(other.frame_type())),
                    "{other:?} from {id} in {st:?}"
                );
                self.expect.frame_unexpected();
                self.close(id, CloseReason::ProtocolError, true);
            }
        }
    }

    /// Everything that must hold between operations.
    fn check(&self) {
        let stats = self.broker.stats();
        assert_eq!(
            stats.awaiting_hello + stats.listening,
            self.broker.connections() as u64,
            "gauges against connections()"
        );
        assert!(self.broker.connections() <= self.capacity);
        assert!(self.table.slots_taken() <= self.capacity);
        assert_eq!(self.broker.capacity(), self.capacity);
        assert!(stats.senders <= self.gap.capacity() as u64);
        assert_eq!(stats, self.expect.stats(&self.table, &self.gap), "stats");
        assert_eq!(self.broker.is_shutting_down(), self.shutting_down);

        for &id in &self.issued {
            let conn = self.table.get(id).filter(|c| !c.evicted);
            assert_eq!(
                self.broker.state(id),
                conn.map(Conn::state),
                "state of {id}"
            );
            match conn.map(|c| c.st) {
                Some(St::Listening { channel, .. }) => {
                    assert_eq!(self.broker.channel(id), channel, "channel of {id}");
                }
                Some(St::AwaitingHello) | None => assert_eq!(self.broker.channel(id), None),
                Some(St::Closing { .. } | St::Stats) => {}
            }
        }
        self.check_poll_timeout();
    }
}

/// Runs a whole input: a fresh broker and models, every operation, then
/// [`Harness::finish`]. Panics at the first disagreement.
pub fn run(input: &crate::input::Input) -> Report {
    let mut harness = Harness::new(input.setup);
    for op in &input.ops {
        harness.step(op);
    }
    harness.finish()
}

/// The bytes of a well-formed frame.
fn emit_frame(frame: &Framed) -> Vec<u8> {
    let mut buf = [0u8; MAX_FRAME_LEN];
    let n = frame.emit(&mut buf).expect("frames fit MAX_FRAME_LEN");
    buf[..n].to_vec()
}
