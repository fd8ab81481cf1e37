//! The `broker` target: an operation language decoded with `arbitrary`, a
//! shadow model of the listener table, and a driver that runs both side by
//! side and asserts they agree after every operation.
//!
//! The model is exact, not approximate: it predicts every frame each
//! listener's outbox yields (welcome, the coalesced flags with their raise
//! count, pong), every close with its reason, every counter and gauge in
//! [`Stats`](flagpost_core::broker::Stats), the timeout deadlines, and every
//! verdict of the loss detector (an independent set-based model of
//! `gap::SenderTable`, with least-recently-seen eviction).
//!
//! Invariants checked after every operation:
//!
//! * no panic anywhere (overflow checks are on in fuzz builds);
//! * `stats().awaiting_hello + stats().listening == connections() <= 16`, and
//!   both gauges equal the model's counts;
//! * every handle's [`Broker::state`] is the model's;
//! * draining a listener (`poll_frame` until `None`) yields exactly the frames
//!   the model predicts, so after a delivered notification every listening
//!   listener whose interest intersects `kind.flags()` and which
//!   `notification.reaches` gets those flags in its next flags frame, and one
//!   drain yields at most one flags frame (coalescing, bounded output);
//! * every frame `poll_frame` returns, and every close frame an event asks
//!   for, emits into a `MAX_FRAME_LEN` buffer and parses back to itself;
//! * `poll_ready` yields only listening listeners with output, and every
//!   listener with output has been yielded (no lost wake-up);
//! * `poll_event` reports exactly the connections the model is closing, with
//!   the predicted reason and `send_close`;
//! * `handle_timeout(now)` never closes a connection before its deadline, and
//!   leaves none more than `Config::housekeeping` past it; `poll_timeout` is
//!   `None` only when no connection has a deadline (local listeners have
//!   none until their output waits), and never later than
//!   `max(deadline, now + housekeeping)` for any connection;
//! * a stats request ends in `Event::StatsRequested`; every stat frame the
//!   transport then writes emits into a `MAX_FRAME_LEN` buffer, and a client
//!   rebuilding `Stats` from those frames (`Stats::set`) gets them all back.
//!
//! `poll_ready` yields each listener at most once until its outbox has been
//! drained (edge-triggered); the harness asserts it.

use std::collections::{BTreeMap, BTreeSet};

use arbitrary::Arbitrary;
use flagpost_core::broker::{
    Broker, Config, Event, FrameError, ListenerId, ListenerSlot, ListenerState, OpenError, Stats,
};
use flagpost_core::channel::ChannelId;
use flagpost_core::flags::FlagSet;
use flagpost_core::gap::{SenderSlot, Verdict, WINDOW};
use flagpost_core::notify::{Kind, Notification};
use flagpost_core::time::{Duration, Instant};
use flagpost_core::wire::{
    AckRepr, AckResult, CloseReason, CloseRepr, FlagsRepr, FrameRepr, HelloRepr, NotifyRepr,
    SenderId, Seq, StatRepr, WelcomeRepr, MAX_DATAGRAM_LEN, MAX_FRAME_LEN, TAG_LEN,
};

/// Listener slots of the broker under test.
pub const LISTENERS: usize = 16;
/// Sender slots of the broker under test (fewer than [`SENDER_IDS`], so the
/// loss detector evicts).
pub const SENDERS: usize = 4;
/// The channel names listeners and notifications choose from (index 1..=3 of
/// a channel choice; 0 is "no channel").
pub const CHANNELS: [&str; 3] = ["gsm1", "gsm2", "smpp-ü"];
/// The sender ids structured notifications choose from.
pub const SENDER_IDS: [u64; 6] = [0x5eed, 1, 2, 0xdead_beef, u64::MAX, 0];
/// Handles kept for operations to pick from (live ones plus recent dead ones).
const MAX_HANDLES: usize = 40;

/// A whole fuzz input: broker settings, then operations until the data ends.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct Input {
    /// Broker settings.
    pub setup: Setup,
    /// What happens, in order.
    pub ops: Vec<Op>,
}

/// Broker settings, each chosen from a small table.
#[derive(Arbitrary, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Setup {
    /// Index into `[10 s, 0, 1 s, 250 ms]`.
    pub hello_timeout: u8,
    /// Index into `[60 s, 0 (never), 2 s, 1 ms]`.
    pub stuck_timeout: u8,
    /// Index into `[1 s, 0, 10 ms, 5 s]`.
    pub housekeeping: u8,
    /// Drain `poll_event` only on [`Op::PollEvents`] (and at the end), so
    /// operations reach connections that are closing.
    pub lazy_events: bool,
    /// Sent in every welcome.
    pub broker_id: u64,
}

impl Setup {
    /// The broker configuration these choices stand for.
    pub fn config(&self) -> Config {
        let pick = |table: [Duration; 4], i: u8| table[usize::from(i) % 4];
        Config {
            hello_timeout: pick(
                [
                    Duration::from_secs(10),
                    Duration::ZERO,
                    Duration::from_secs(1),
                    Duration::from_millis(250),
                ],
                self.hello_timeout,
            ),
            stuck_timeout: pick(
                [
                    Duration::from_secs(60),
                    Duration::ZERO,
                    Duration::from_secs(2),
                    Duration::from_millis(1),
                ],
                self.stuck_timeout,
            ),
            housekeeping: pick(
                [
                    Duration::from_secs(1),
                    Duration::ZERO,
                    Duration::from_millis(10),
                    Duration::from_secs(5),
                ],
                self.housekeeping,
            ),
            broker_id: self.broker_id,
            ..Config::default()
        }
    }
}

/// One step. `listener` fields pick a handle (live or dead) modulo the
/// number of handles opened so far; `channel` fields pick "none" (0) or one
/// of [`CHANNELS`] modulo 4; `kind` fields pick a [`Kind`] modulo 4.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Accept a connection.
    Open,
    /// A well-formed frame arrives from a listener.
    Frame {
        /// Which handle.
        listener: u8,
        /// What frame.
        frame: FrameSpec,
    },
    /// A well-formed frame, corrupted, arrives from a listener.
    CorruptFrame {
        /// Which handle.
        listener: u8,
        /// What frame.
        frame: FrameSpec,
        /// How it is corrupted.
        corrupt: Corrupt,
    },
    /// Arbitrary bytes arrive as one frame from a listener.
    RawFrame {
        /// Which handle.
        listener: u8,
        /// The frame bytes.
        bytes: Vec<u8>,
    },
    /// A valid notification datagram arrives.
    Notify(NotifySpec),
    /// A valid notification datagram, corrupted, arrives.
    CorruptNotify {
        /// The datagram.
        notify: NotifySpec,
        /// How it is corrupted.
        corrupt: Corrupt,
    },
    /// Arbitrary bytes arrive as a datagram.
    RawDatagram {
        /// The datagram bytes.
        bytes: Vec<u8>,
    },
    /// An in-process notification ([`Broker::notify`]).
    InProcess {
        /// The kind.
        kind: u8,
        /// The channel (channel kinds without one take the first).
        channel: u8,
        /// The batch count.
        batch: u8,
    },
    /// The kernel reports dropped datagrams ([`Broker::handle_lost`]).
    Lost {
        /// How many.
        count: u8,
    },
    /// The transport sees a connection go away.
    Disconnect {
        /// Which handle.
        listener: u8,
    },
    /// A listener's socket becomes (un)writable; writable listeners are
    /// drained after every operation.
    Writable {
        /// Which handle.
        listener: u8,
        /// Whether the socket takes writes.
        writable: bool,
    },
    /// One `poll_frame` on a handle, writable or not, ready or not.
    PollFrame {
        /// Which handle.
        listener: u8,
    },
    /// Drain `poll_event` (it is drained after every operation unless
    /// [`Setup::lazy_events`]).
    PollEvents,
    /// Time passes.
    Advance {
        /// By this many microseconds.
        micros: u32,
    },
    /// `handle_timeout(now)`.
    HandleTimeout,
    /// Time passes until `poll_timeout` (if any), then `handle_timeout`.
    SleepUntilTimeout,
    /// [`Broker::shutdown`].
    Shutdown,
    /// [`Broker::open_local`]: an in-process listener, listening at once.
    OpenLocal {
        /// Interest bits (truncated; empty means all).
        interest: u8,
        /// Channel choice.
        channel: u8,
    },
    /// [`Broker::close`]: the transport closes a connection for a reason.
    Close {
        /// Which handle.
        listener: u8,
        /// Reason choice.
        reason: u8,
    },
}

/// A frame a listener might send (including ones it must not).
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameSpec {
    /// Hello; `interest` bits are truncated to the four flags (0 is invalid).
    Hello {
        /// Interest bits.
        interest: u8,
        /// Channel choice.
        channel: u8,
        /// Keep-alive asked for.
        keepalive_secs: u16,
    },
    /// Ping.
    Ping {
        /// Nonce.
        nonce: u32,
    },
    /// Close; `reason` modulo the number of reasons.
    Close {
        /// Reason choice.
        reason: u8,
    },
    /// Pong (broker → listener only: unexpected).
    Pong {
        /// Nonce.
        nonce: u32,
    },
    /// Flags (broker → listener only: unexpected).
    Flags {
        /// Flag bits (truncated).
        flags: u8,
        /// Raise count.
        raises: u32,
    },
    /// Welcome (broker → listener only: unexpected).
    Welcome {
        /// Interest bits (truncated).
        interest: u8,
    },
    /// Stats request (valid instead of a hello only).
    StatsRequest,
    /// Stat (broker → client only: unexpected).
    Stat {
        /// Table index.
        index: u16,
        /// Value.
        value: u64,
    },
}

impl FrameSpec {
    /// The frame.
    pub fn repr(&self) -> FrameRepr {
        match *self {
            FrameSpec::Hello {
                interest,
                channel,
                keepalive_secs,
            } => FrameRepr::Hello(HelloRepr {
                interest: FlagSet::from_bits_truncate(interest),
                channel: channel_choice(channel),
                keepalive_secs,
            }),
            FrameSpec::Ping { nonce } => FrameRepr::Ping(nonce),
            FrameSpec::Close { reason } => FrameRepr::Close(CloseRepr::new(
                CloseReason::ALL[usize::from(reason) % CloseReason::COUNT],
            )),
            FrameSpec::Pong { nonce } => FrameRepr::Pong(nonce),
            FrameSpec::Flags { flags, raises } => FrameRepr::Flags(FlagsRepr {
                flags: FlagSet::from_bits_truncate(flags),
                raises,
            }),
            FrameSpec::Welcome { interest } => FrameRepr::Welcome(WelcomeRepr {
                interest: FlagSet::from_bits_truncate(interest),
                keepalive_secs: 30,
                broker_id: 7,
            }),
            FrameSpec::StatsRequest => FrameRepr::StatsRequest,
            FrameSpec::Stat { index, value } => FrameRepr::Stat(StatRepr { index, value }),
        }
    }
}

/// A structured notification datagram.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotifySpec {
    /// Kind choice.
    pub kind: u8,
    /// Channel choice (channel kinds without one take the first channel).
    pub channel: u8,
    /// Index into [`SENDER_IDS`] (modulo).
    pub sender: u8,
    /// Sequence number, relative to what this sender sent last.
    pub seq: SeqSpec,
    /// Ask for an ack.
    pub ack: bool,
    /// Carry a tag.
    pub tagged: bool,
    /// Batch count (0 is sent as 1).
    pub batch: u8,
}

/// A sequence number relative to the sender's last one (`last`, 0 before the
/// first datagram).
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqSpec {
    /// `last + 1`, and it becomes `last`.
    Next,
    /// `last` again (a retransmission).
    Same,
    /// `last + 2 + n`, and it becomes `last` (a gap).
    Skip(u8),
    /// `last - 1 - n` (late or stale), `last` unchanged.
    Back(u8),
    /// 1, and it becomes `last` (a restart).
    First,
    /// Any number, and it becomes `last`.
    Raw(u32),
}

/// A corruption of an emitted message: `bytes[at % len] ^= xor`, then
/// `cut` in `1..=len` drops that many trailing bytes and a larger `cut`
/// appends one byte.
#[derive(Arbitrary, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Corrupt {
    /// Which byte.
    pub at: u8,
    /// What to flip in it.
    pub xor: u8,
    /// Truncate or extend.
    pub cut: u8,
}

impl Corrupt {
    fn apply(&self, bytes: &mut Vec<u8>) {
        let len = bytes.len();
        if len == 0 {
            return;
        }
        bytes[usize::from(self.at) % len] ^= self.xor;
        let cut = usize::from(self.cut);
        if cut == 0 {
        } else if cut <= len {
            bytes.truncate(len - cut);
        } else {
            bytes.push(self.xor);
        }
    }
}

fn channel_choice(choice: u8) -> Option<ChannelId> {
    match usize::from(choice) % (CHANNELS.len() + 1) {
        0 => None,
        i => Some(ChannelId::new(CHANNELS[i - 1]).expect("valid channel name")),
    }
}

fn notification(kind: u8, channel: u8) -> Notification {
    let kind = Kind::ALL[usize::from(kind) % Kind::ALL.len()];
    let channel = channel_choice(channel).or_else(|| {
        kind.requires_channel()
            .then(|| ChannelId::new(CHANNELS[0]).expect("valid channel name"))
    });
    Notification::new(kind, channel).expect("channel kinds have a channel")
}

/// Emits `frame` into a `MAX_FRAME_LEN` buffer and parses it back.
fn check_emit(frame: &FrameRepr) {
    let mut buf = [0u8; MAX_FRAME_LEN];
    let n = frame
        .emit(&mut buf)
        .unwrap_or_else(|e| panic!("{frame:?} does not emit into MAX_FRAME_LEN: {e:?}"));
    assert_eq!(n, frame.buffer_len());
    assert_eq!(
        FrameRepr::parse_bytes(&buf[..n]),
        Ok(*frame),
        "{frame:?} does not parse back"
    );
}

/// What a transport writes for a stats request (every stat, then a close),
/// and what the asking client rebuilds from it: the same [`Stats`].
fn check_stats_exchange(stats: &Stats) {
    let mut rebuilt = Stats::default();
    let mut entries = 0usize;
    stats.visit(|index, metric, value| {
        assert_eq!(usize::from(index), entries, "stats table indexes are dense");
        entries += 1;
        assert_eq!(Stats::metric(index), Some(metric));
        assert!(metric.name.starts_with("flagpost_"), "{metric:?}");
        assert_eq!(metric.name.ends_with("_total"), !metric.gauge, "{metric:?}");
        let frame = FrameRepr::Stat(StatRepr { index, value });
        check_emit(&frame);
        let mut buf = [0u8; MAX_FRAME_LEN];
        let n = frame.emit(&mut buf).expect("fits");
        match FrameRepr::parse_bytes(&buf[..n]) {
            Ok(FrameRepr::Stat(stat)) => assert!(rebuilt.set(stat.index, stat.value)),
            other => panic!("stat frame parsed as {other:?}"),
        }
    });
    assert_eq!(entries, Stats::len());
    assert!(!rebuilt.set(u16::try_from(entries).unwrap_or(u16::MAX), 1));
    assert_eq!(&rebuilt, stats, "stats rebuilt from stat frames");
    check_emit(&FrameRepr::Close(CloseRepr::new(CloseReason::Normal)));
}

fn emit_frame(frame: &FrameRepr) -> Vec<u8> {
    let mut buf = [0u8; MAX_FRAME_LEN];
    let n = frame.emit(&mut buf).expect("frames fit MAX_FRAME_LEN");
    buf[..n].to_vec()
}

/// An independent model of the loss detector (`gap::SenderTable`): per
/// sender the newest number and the set of numbers seen in the window behind
/// it, in [`SENDERS`] slots, evicting the least recently seen sender (the
/// first such slot on a tie) when full.
#[derive(Default)]
struct LossModel {
    slots: [Option<Tracked>; SENDERS],
    evictions: u64,
}

struct Tracked {
    sender: SenderId,
    last: Seq,
    /// Numbers seen, all within `WINDOW` behind `last` (which is in it).
    seen: BTreeSet<u32>,
    seen_at: Instant,
}

impl LossModel {
    fn len(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    fn observe(&mut self, now: Instant, sender: SenderId, seq: Seq) -> Verdict {
        let Some(t) = self.slots.iter_mut().flatten().find(|t| t.sender == sender) else {
            let i = match self.slots.iter().position(Option::is_none) {
                Some(free) => free,
                None => {
                    self.evictions += 1;
                    let oldest = self.slots.iter().flatten().map(|t| t.seen_at).min();
                    self.slots
                        .iter()
                        .position(|t| t.as_ref().map(|t| t.seen_at) == oldest)
                        .expect("a full table has an oldest entry")
                }
            };
            self.slots[i] = Some(Tracked {
                sender,
                last: seq,
                seen: BTreeSet::from([seq.0]),
                seen_at: now,
            });
            return if seq == Seq::FIRST {
                Verdict::InOrder
            } else {
                Verdict::FirstSeenLate
            };
        };
        t.seen_at = now;
        // Serial number arithmetic (RFC 1982): newer when 0 < d < 2^31.
        let d = seq.0.wrapping_sub(t.last.0) as i32;
        if d > 0 {
            let last = seq.0;
            t.last = seq;
            t.seen.insert(last);
            t.seen.retain(|s| last.wrapping_sub(*s) < WINDOW);
            return match d {
                1 => Verdict::InOrder,
                _ => Verdict::Gap {
                    missing: (d - 1) as u32,
                },
            };
        }
        if d.unsigned_abs() < WINDOW {
            return if t.seen.insert(seq.0) {
                Verdict::Reordered
            } else {
                Verdict::Duplicate
            };
        }
        if seq == Seq::FIRST {
            t.last = seq;
            t.seen = BTreeSet::from([seq.0]);
            return Verdict::Restart;
        }
        Verdict::Stale
    }
}

/// The model's view of one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    AwaitingHello,
    Listening {
        interest: FlagSet,
        channel: Option<ChannelId>,
        keepalive: Duration,
    },
    Closing {
        reason: CloseReason,
        send: bool,
    },
    /// Sent a stats request: ends with `Event::StatsRequested`.
    Stats,
}

#[derive(Clone, Debug)]
struct Shadow {
    st: St,
    last_rx: Instant,
    // the outbox
    welcome: bool,
    flags: FlagSet,
    raises: u32,
    pong: Option<u32>,
    /// When the outbox became non-empty.
    pending_since: Option<Instant>,
    /// `poll_ready` yielded it and its outbox has not been drained since.
    yielded: bool,
    /// Its socket takes writes: drain it when ready.
    writable: bool,
}

impl Shadow {
    fn new(now: Instant) -> Self {
        Shadow {
            st: St::AwaitingHello,
            last_rx: now,
            welcome: false,
            flags: FlagSet::EMPTY,
            raises: 0,
            pong: None,
            pending_since: None,
            yielded: false,
            writable: true,
        }
    }

    fn has_output(&self) -> bool {
        self.welcome || !self.flags.is_empty() || self.pong.is_some()
    }

    fn mark_pending(&mut self, now: Instant) {
        if self.pending_since.is_none() {
            self.pending_since = Some(now);
        }
    }

    fn clear_outbox(&mut self) {
        self.welcome = false;
        self.flags = FlagSet::EMPTY;
        self.raises = 0;
        self.pong = None;
        self.pending_since = None;
    }

    /// Closing, or answered a stats request: waiting for its event.
    fn is_closing(&self) -> bool {
        matches!(self.st, St::Closing { .. } | St::Stats)
    }

    /// The next frame `poll_frame` must return, taken out of the outbox.
    fn pop_frame(&mut self, broker_id: u64) -> Option<FrameRepr> {
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
}

/// The broker under test, the model, and the driver.
pub struct Harness {
    broker: Broker<[ListenerSlot; LISTENERS], [SenderSlot; SENDERS]>,
    config: Config,
    lazy_events: bool,
    now: Instant,
    /// Handles ever opened (all live ones, and the most recent dead ones).
    handles: Vec<ListenerId>,
    /// Live connections (awaiting hello, listening, or closing with their
    /// event not yet polled).
    shadow: BTreeMap<ListenerId, Shadow>,
    shutting_down: bool,
    /// The last sequence number each of [`SENDER_IDS`] sent.
    seqs: [u32; SENDER_IDS.len()],
    /// The loss detector's expected verdicts.
    loss: LossModel,
    /// The counters the broker must report (gauges are counted from the
    /// model, the sender-table gauges copied from the broker).
    expect: Stats,
}

impl Harness {
    /// A fresh broker with the settings of `setup`.
    pub fn new(setup: Setup) -> Self {
        let config = setup.config();
        Harness {
            broker: Broker::new(
                config,
                [ListenerSlot::EMPTY; LISTENERS],
                [SenderSlot::EMPTY; SENDERS],
            ),
            config,
            lazy_events: setup.lazy_events,
            now: Instant::ZERO,
            handles: Vec::new(),
            shadow: BTreeMap::new(),
            shutting_down: false,
            seqs: [0; SENDER_IDS.len()],
            loss: LossModel::default(),
            expect: Stats::default(),
        }
    }

    /// The broker under test.
    pub fn broker(&self) -> &Broker<[ListenerSlot; LISTENERS], [SenderSlot; SENDERS]> {
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
                    self.frame(id, &emit_frame(&frame.repr()));
                }
            }
            Op::CorruptFrame {
                listener,
                frame,
                corrupt,
            } => {
                if let Some(id) = self.pick(*listener) {
                    let mut bytes = emit_frame(&frame.repr());
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
            } => {
                let n = notification(*kind, *channel);
                let batch = u32::from(*batch);
                let reached = self.broker.notify(self.now, &n, batch);
                self.expect.delivered += 1;
                self.expect.changes += u64::from(batch);
                assert_eq!(reached, self.route(&n), "notify({n:?}) reached");
            }
            Op::Lost { count } => {
                self.broker.handle_lost(self.now, u64::from(*count));
                if *count > 0 {
                    self.expect.kernel_drops += u64::from(*count);
                    self.possible_loss();
                }
            }
            Op::Disconnect { listener } => {
                if let Some(id) = self.pick(*listener) {
                    self.disconnect(id);
                }
            }
            Op::Writable { listener, writable } => {
                if let Some(sh) = self.pick(*listener).and_then(|id| self.shadow.get_mut(&id)) {
                    sh.writable = *writable;
                }
            }
            Op::PollFrame { listener } => {
                if let Some(id) = self.pick(*listener) {
                    self.poll_frame_once(id);
                }
            }
            Op::PollEvents => self.drain_events(),
            Op::Advance { micros } => self.now += Duration::from_micros(u64::from(*micros)),
            Op::HandleTimeout => self.handle_timeout(),
            Op::SleepUntilTimeout => {
                if let Some(at) = self.broker.poll_timeout() {
                    self.now = self.now.max(at);
                }
                self.handle_timeout();
            }
            Op::OpenLocal { interest, channel } => self.open_local(
                FlagSet::from_bits_truncate(*interest),
                channel_choice(*channel),
            ),
            Op::Close { listener, reason } => {
                if let Some(id) = self.pick(*listener) {
                    let reason = CloseReason::ALL[usize::from(*reason) % CloseReason::COUNT];
                    self.broker.close(id, reason);
                    self.close(id, reason, true);
                }
            }
            Op::Shutdown => {
                self.broker.shutdown();
                self.shutting_down = true;
                let live: Vec<ListenerId> = self.shadow.keys().copied().collect();
                for id in live {
                    self.close(id, CloseReason::Shutdown, true);
                }
            }
        }
        if !self.lazy_events {
            self.drain_events();
        }
        self.drain_ready();
        self.check();
    }

    /// Writes out everything, drains the events, shuts down and checks that
    /// nothing is left.
    pub fn finish(&mut self) {
        for sh in self.shadow.values_mut() {
            sh.writable = true;
        }
        self.drain_events();
        self.drain_ready();
        self.check();
        assert!(
            self.shadow.values().all(|s| !s.has_output()),
            "output left after a full drain"
        );
        self.step(&Op::Shutdown);
        self.drain_events();
        self.check();
        assert!(self.shadow.is_empty(), "connections left after shutdown");
        assert_eq!(self.broker.connections(), 0);
        assert_eq!(self.broker.poll_ready(), None);
        assert_eq!(self.broker.poll_timeout(), None);
        assert_eq!(self.broker.open(self.now), Err(OpenError::ShuttingDown));
    }

    fn open(&mut self) {
        let result = self.broker.open(self.now);
        if let Some(id) = self.opened(result) {
            self.shadow.insert(id, Shadow::new(self.now));
        }
    }

    fn open_local(&mut self, interest: FlagSet, channel: Option<ChannelId>) {
        let result = self.broker.open_local(self.now, interest, channel);
        if let Some(id) = self.opened(result) {
            let mut sh = Shadow::new(self.now);
            sh.st = St::Listening {
                interest: if interest.is_empty() {
                    FlagSet::ALL
                } else {
                    interest
                },
                channel,
                keepalive: Duration::ZERO,
            };
            self.shadow.insert(id, sh);
        }
    }

    /// Checks what `open` or `open_local` returned; `Some` for a new handle
    /// (recorded, but not yet in the model).
    fn opened(&mut self, result: Result<ListenerId, OpenError>) -> Option<ListenerId> {
        if self.shutting_down {
            assert_eq!(result, Err(OpenError::ShuttingDown));
            return None;
        }
        if self.shadow.len() == LISTENERS {
            assert_eq!(result, Err(OpenError::Full), "open with every slot taken");
            self.expect.refused_full += 1;
            return None;
        }
        let id = result.unwrap_or_else(|e| {
            panic!(
                "open refused ({e:?}) with {} of {LISTENERS} slots taken",
                self.shadow.len()
            )
        });
        assert!(id.index() < LISTENERS, "{id} beyond the table");
        assert!(
            !self.handles.contains(&id),
            "open returned {id}, a handle it gave before"
        );
        assert!(
            self.shadow.keys().all(|other| other.index() != id.index()),
            "open returned {id}, whose slot is taken"
        );
        self.expect.opened += 1;
        self.handles.push(id);
        if self.handles.len() > MAX_HANDLES {
            if let Some(dead) = self
                .handles
                .iter()
                .position(|h| !self.shadow.contains_key(h))
            {
                self.handles.remove(dead);
            }
        }
        Some(id)
    }

    fn close(&mut self, id: ListenerId, reason: CloseReason, send: bool) {
        let Some(sh) = self.shadow.get_mut(&id) else {
            return;
        };
        if sh.is_closing() {
            return;
        }
        sh.st = St::Closing { reason, send };
        sh.clear_outbox();
        sh.yielded = false;
        self.expect.closes[reason as usize] += 1;
    }

    fn disconnect(&mut self, id: ListenerId) {
        self.broker.disconnect(id);
        match self.shadow.get(&id) {
            None => {}                        // a dead handle: nothing happens
            Some(sh) if sh.is_closing() => {} // its event still comes
            Some(_) => {
                self.shadow.remove(&id);
                self.expect.disconnects += 1;
            }
        }
    }

    /// One frame from listener `id`.
    fn frame(&mut self, id: ListenerId, bytes: &[u8]) {
        let result = self.broker.handle_frame(self.now, id, bytes);
        let now = self.now;
        let st = match self.shadow.get_mut(&id) {
            None => {
                assert_eq!(
                    result,
                    Err(FrameError::UnknownListener),
                    "frame to dead {id}"
                );
                return;
            }
            Some(sh) if sh.is_closing() => {
                assert_eq!(result, Ok(()), "frame to closing {id}");
                return;
            }
            Some(sh) => {
                sh.last_rx = now;
                sh.st
            }
        };
        let repr = match FrameRepr::parse_bytes(bytes) {
            Ok(repr) => repr,
            Err(e) => {
                assert_eq!(result, Err(FrameError::Wire(e)), "malformed frame to {id}");
                self.expect.frame_rejects[e.index()] += 1;
                let reason = match e {
                    flagpost_core::wire::Error::UnsupportedVersion(_) => {
                        CloseReason::UnsupportedVersion
                    }
                    _ => CloseReason::ProtocolError,
                };
                self.close(id, reason, true);
                return;
            }
        };
        self.expect.frames += 1;
        match (st, repr) {
            (St::AwaitingHello, FrameRepr::Hello(hello)) => {
                assert_eq!(result, Ok(()), "hello from {id}");
                let keepalive = match hello.keepalive_secs {
                    0 => self.config.keepalive,
                    s => Duration::from_secs(u64::from(s))
                        .max(self.config.min_keepalive)
                        .min(self.config.max_keepalive),
                };
                let sh = self.shadow.get_mut(&id).expect("live");
                sh.st = St::Listening {
                    interest: hello.interest,
                    channel: hello.channel,
                    keepalive,
                };
                sh.welcome = true;
                sh.mark_pending(now);
            }
            (St::AwaitingHello, FrameRepr::StatsRequest) => {
                assert_eq!(result, Ok(()), "stats request from {id}");
                self.expect.stats_requests += 1;
                self.shadow.get_mut(&id).expect("live").st = St::Stats;
            }
            (St::Listening { .. }, FrameRepr::Ping(nonce)) => {
                assert_eq!(result, Ok(()), "ping from {id}");
                let sh = self.shadow.get_mut(&id).expect("live");
                sh.pong = Some(nonce);
                sh.mark_pending(now);
            }
            (_, FrameRepr::Close(close)) => {
                assert_eq!(result, Ok(()), "close from {id}");
                self.close(id, close.reason, false);
            }
            (_, other) => {
                assert_eq!(
                    result,
                    Err(FrameError::Unexpected(other.frame_type())),
                    "{other:?} from {id} in {st:?}"
                );
                self.expect.frames_unexpected += 1;
                self.close(id, CloseReason::ProtocolError, true);
            }
        }
    }

    fn emit_notify(&mut self, spec: &NotifySpec) -> Vec<u8> {
        let i = usize::from(spec.sender) % SENDER_IDS.len();
        let last = self.seqs[i];
        let (seq, next_last) = match spec.seq {
            SeqSpec::Next => (last.wrapping_add(1), last.wrapping_add(1)),
            SeqSpec::Same => (last, last),
            SeqSpec::Skip(n) => {
                let s = last.wrapping_add(2).wrapping_add(u32::from(n));
                (s, s)
            }
            SeqSpec::Back(n) => (last.wrapping_sub(1).wrapping_sub(u32::from(n)), last),
            SeqSpec::First => (1, 1),
            SeqSpec::Raw(s) => (s, s),
        };
        self.seqs[i] = next_last;
        let repr = NotifyRepr {
            notification: notification(spec.kind, spec.channel),
            sender: SenderId(SENDER_IDS[i]),
            seq: Seq(seq),
            batch: u32::from(spec.batch).max(1),
            ack_requested: spec.ack,
            tag: spec.tagged.then_some([0xa5; TAG_LEN]),
        };
        let mut buf = [0u8; MAX_DATAGRAM_LEN];
        let n = repr.emit(&mut buf).expect("fits MAX_DATAGRAM_LEN");
        buf[..n].to_vec()
    }

    /// One datagram.
    fn datagram(&mut self, bytes: &[u8]) {
        let parsed = NotifyRepr::parse_bytes(bytes);
        let result = self.broker.handle_datagram(self.now, bytes);
        let notify = match parsed {
            Ok(notify) => notify,
            Err(e) => {
                assert_eq!(result, Err(e), "handle_datagram of an invalid datagram");
                self.expect.datagram_rejects[e.index()] += 1;
                return;
            }
        };
        let received =
            result.unwrap_or_else(|e| panic!("valid datagram {notify:?} rejected: {e:?}"));
        assert_eq!(received.notify, notify);
        let verdict = received.verdict;

        assert_eq!(
            verdict,
            self.loss.observe(self.now, notify.sender, notify.seq),
            "verdict on {} {:?}",
            notify.sender,
            notify.seq
        );

        let e = &mut self.expect;
        e.datagrams += 1;
        e.datagrams_by_kind[usize::from(notify.notification.kind().code()) - 1] += 1;
        match verdict {
            Verdict::InOrder => {}
            Verdict::Gap { missing } => {
                assert!(missing >= 1, "a gap of nothing");
                e.gaps += 1;
                e.missing += u64::from(missing);
            }
            Verdict::FirstSeenLate => e.first_seen_late += 1,
            Verdict::Restart => e.restarts += 1,
            Verdict::Reordered => e.reordered += 1,
            Verdict::Duplicate => e.duplicates += 1,
            Verdict::Stale => e.stale += 1,
        }
        if verdict.possible_loss() {
            self.possible_loss();
        }
        let reached = if verdict.deliver() {
            self.expect.delivered += 1;
            self.expect.changes += u64::from(notify.batch);
            self.route(&notify.notification)
        } else {
            0
        };
        assert_eq!(received.reached, reached, "listeners reached by {notify:?}");

        match (notify.ack_requested, received.ack) {
            (false, None) => {}
            (true, Some(ack)) => {
                self.expect.acks += 1;
                let result = match verdict {
                    Verdict::Duplicate => AckResult::Duplicate,
                    Verdict::Stale => AckResult::Stale,
                    _ => AckResult::Delivered,
                };
                assert_eq!(ack, AckRepr::answering(&notify, result));
                let mut buf = [0u8; MAX_DATAGRAM_LEN];
                let n = ack.emit(&mut buf).expect("an ack fits MAX_DATAGRAM_LEN");
                assert!(n <= bytes.len(), "ack longer than its notification");
                assert_eq!(AckRepr::parse_bytes(&buf[..n]), Ok(ack));
            }
            (asked, ack) => panic!("ack requested: {asked}, ack: {ack:?}"),
        }
    }

    fn possible_loss(&mut self) {
        self.expect.possible_losses += 1;
        self.route(&Notification::status(None));
    }

    /// Raises flags in the model as the broker must; returns how many
    /// listeners were reached.
    fn route(&mut self, notification: &Notification) -> u32 {
        let raise = notification.kind().flags();
        let mut reached = 0;
        for sh in self.shadow.values_mut() {
            let St::Listening {
                interest, channel, ..
            } = sh.st
            else {
                continue;
            };
            if !notification.reaches(channel.as_ref()) {
                continue;
            }
            let flags = interest & raise;
            if flags.is_empty() {
                continue;
            }
            reached += 1;
            self.expect.raises += 1;
            if sh.flags.contains(flags) {
                self.expect.raises_coalesced += 1;
            }
            sh.flags |= flags;
            sh.raises = sh.raises.saturating_add(1);
            sh.mark_pending(self.now);
        }
        reached
    }

    fn poll_frame_once(&mut self, id: ListenerId) {
        let got = self.broker.poll_frame(id);
        let broker_id = self.config.broker_id;
        let expected = self
            .shadow
            .get_mut(&id)
            .and_then(|sh| sh.pop_frame(broker_id));
        assert_eq!(got, expected, "poll_frame({id})");
        if let Some(frame) = got {
            check_emit(&frame);
            self.expect.frames_written += 1;
            if matches!(frame, FrameRepr::Flags(_)) {
                self.expect.flags_frames += 1;
            }
        }
        if let Some(sh) = self.shadow.get_mut(&id) {
            if !sh.has_output() {
                sh.yielded = false;
            }
        }
    }

    /// `poll_frame` until `None`, as a transport does for a writable
    /// listener.
    fn drain_listener(&mut self, id: ListenerId) {
        let broker_id = self.config.broker_id;
        let sh = self.shadow.get_mut(&id).expect("draining a live listener");
        let mut expected = Vec::new();
        while let Some(frame) = sh.pop_frame(broker_id) {
            expected.push(frame);
        }
        sh.yielded = false;
        let mut got = Vec::new();
        while let Some(frame) = self.broker.poll_frame(id) {
            got.push(frame);
            assert!(got.len() <= 3, "poll_frame({id}) does not run dry: {got:?}");
        }
        assert_eq!(got, expected, "frames drained from {id}");
        let flags_frames = got
            .iter()
            .filter(|f| matches!(f, FrameRepr::Flags(_)))
            .count();
        assert!(
            flags_frames <= 1,
            "{flags_frames} flags frames in one drain"
        );
        for frame in &got {
            check_emit(frame);
        }
        self.expect.frames_written += got.len() as u64;
        self.expect.flags_frames += flags_frames as u64;
    }

    fn drain_ready(&mut self) {
        let mut yields = 0;
        while let Some(id) = self.broker.poll_ready() {
            yields += 1;
            assert!(yields <= LISTENERS, "poll_ready does not run dry");
            let sh = self
                .shadow
                .get_mut(&id)
                .unwrap_or_else(|| panic!("poll_ready yielded {id}, which is not open"));
            assert!(
                matches!(sh.st, St::Listening { .. }),
                "poll_ready yielded {id} in {:?}",
                sh.st
            );
            assert!(
                sh.has_output(),
                "poll_ready yielded {id} with nothing to write"
            );
            assert!(
                !sh.yielded,
                "poll_ready yielded {id} again before its outbox was drained"
            );
            sh.yielded = true;
        }
        let writable: Vec<ListenerId> = self
            .shadow
            .iter()
            .filter(|(_, s)| s.yielded && s.writable)
            .map(|(id, _)| *id)
            .collect();
        for id in writable {
            self.drain_listener(id);
        }
        for (id, sh) in &self.shadow {
            if sh.has_output() {
                assert!(
                    sh.yielded,
                    "{id} has output but poll_ready never yielded it"
                );
            }
        }
    }

    fn drain_events(&mut self) {
        let mut events = 0;
        while let Some(event) = self.broker.poll_event() {
            events += 1;
            assert!(events <= LISTENERS, "poll_event does not run dry");
            let (listener, st) = match event {
                Event::Closed {
                    listener,
                    reason,
                    send_close,
                } => {
                    if send_close {
                        check_emit(&FrameRepr::Close(CloseRepr::new(reason)));
                    }
                    let st = St::Closing {
                        reason,
                        send: send_close,
                    };
                    (listener, st)
                }
                Event::StatsRequested { listener } => {
                    check_stats_exchange(&self.broker.stats());
                    (listener, St::Stats)
                }
                other => panic!("unknown event {other:?}"),
            };
            let sh = self
                .shadow
                .remove(&listener)
                .unwrap_or_else(|| panic!("poll_event ended {listener}, which is not open"));
            assert_eq!(sh.st, st, "event of {listener}");
        }
        for (id, sh) in &self.shadow {
            assert!(
                !sh.is_closing(),
                "{id} is closing but poll_event never said"
            );
        }
    }

    /// When the model says connection `sh` must be closed, and why.
    fn deadline(&self, sh: &Shadow) -> Option<(Instant, CloseReason)> {
        let stuck = self.config.stuck_timeout;
        match sh.st {
            St::AwaitingHello => Some((
                sh.last_rx + self.config.hello_timeout,
                CloseReason::HelloTimeout,
            )),
            St::Listening { keepalive, .. } => {
                // A local listener (keep-alive zero) can neither go silent
                // nor be stuck.
                let dead = (!keepalive.is_zero()).then(|| sh.last_rx + keepalive);
                match (sh.pending_since, dead) {
                    (Some(since), _)
                        if !stuck.is_zero() && dead.is_some_and(|dead| since + stuck < dead) =>
                    {
                        Some((since + stuck, CloseReason::Stuck))
                    }
                    (_, Some(dead)) => Some((dead, CloseReason::KeepaliveTimeout)),
                    (_, None) => None,
                }
            }
            St::Closing { .. } | St::Stats => None,
        }
    }

    fn deadlines(&self) -> Vec<(ListenerId, Instant, CloseReason)> {
        self.shadow
            .iter()
            .filter_map(|(id, sh)| self.deadline(sh).map(|(at, why)| (*id, at, why)))
            .collect()
    }

    fn handle_timeout(&mut self) {
        let now = self.now;
        let slack = self.config.housekeeping;
        let due = self.deadlines();
        self.broker.handle_timeout(now);
        for (id, at, reason) in due {
            match self.broker.state(id) {
                Some(ListenerState::Closing) => {
                    assert!(
                        at <= now,
                        "{id} closed at {now:?}, before its {reason:?} deadline {at:?}"
                    );
                    self.close(id, reason, true);
                }
                Some(_) => assert!(
                    at + slack > now,
                    "{id} still open at {now:?}, past its {reason:?} deadline {at:?} by more than {slack:?}"
                ),
                None => panic!("{id} vanished in handle_timeout"),
            }
        }
    }

    fn check(&self) {
        let stats = self.broker.stats();
        let awaiting = self
            .shadow
            .values()
            .filter(|s| s.st == St::AwaitingHello)
            .count();
        let listening = self
            .shadow
            .values()
            .filter(|s| matches!(s.st, St::Listening { .. }))
            .count();
        assert_eq!(
            stats.awaiting_hello, awaiting as u64,
            "awaiting_hello gauge"
        );
        assert_eq!(stats.listening, listening as u64, "listening gauge");
        assert_eq!(
            stats.awaiting_hello + stats.listening,
            self.broker.connections() as u64
        );
        assert!(self.broker.connections() <= LISTENERS);
        assert_eq!(self.broker.capacity(), LISTENERS);
        assert!(stats.senders <= SENDERS as u64);
        let expect = Stats {
            awaiting_hello: awaiting as u64,
            listening: listening as u64,
            senders: self.loss.len() as u64,
            senders_evicted: self.loss.evictions,
            ..self.expect
        };
        assert_eq!(stats, expect, "stats");
        assert_eq!(self.broker.is_shutting_down(), self.shutting_down);

        for id in &self.handles {
            let sh = self.shadow.get(id);
            let state = sh.map(|s| match s.st {
                St::AwaitingHello => ListenerState::AwaitingHello,
                St::Listening { .. } => ListenerState::Listening,
                St::Closing { .. } | St::Stats => ListenerState::Closing,
            });
            assert_eq!(self.broker.state(*id), state, "state of {id}");
            match sh.map(|s| s.st) {
                Some(St::Listening { channel, .. }) => {
                    assert_eq!(self.broker.channel(*id), channel, "channel of {id}");
                }
                Some(St::AwaitingHello) | None => assert_eq!(self.broker.channel(*id), None),
                Some(St::Closing { .. } | St::Stats) => {}
            }
        }

        let floor = self.now + self.config.housekeeping;
        let deadlines = self.deadlines();
        match self.broker.poll_timeout() {
            None => assert!(
                deadlines.is_empty(),
                "no timeout, but deadlines {deadlines:?} at {:?}",
                self.now
            ),
            Some(t) => {
                assert!(
                    self.broker.connections() > 0,
                    "a timeout with no connection"
                );
                for (id, at, reason) in deadlines {
                    assert!(
                        t <= at.max(floor),
                        "poll_timeout {t:?} oversleeps the {reason:?} deadline {at:?} of {id} (now {:?})",
                        self.now
                    );
                }
            }
        }
    }
}

/// Runs a whole input.
pub fn run(input: &Input) {
    let mut harness = Harness::new(input.setup);
    for op in &input.ops {
        harness.step(op);
    }
    harness.finish();
}
