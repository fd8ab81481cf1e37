//! Property tests of loss detection (`gap`) and the broker state machine
//! (`broker`) against trivial reference models.
//!
//! * `SenderTable` matches a model that keeps, per sender, the newest
//!   sequence number and the full set of numbers seen since (re)start, with
//!   serial arithmetic and least-recently-seen eviction: newer is in order
//!   or a gap, within 64 behind is duplicate or reordered, further behind is
//!   stale unless it is number 1 (restart); unknown senders are in order at
//!   number 1, first seen late otherwise.
//! * `Broker` matches a model of its listener table over random sequences of
//!   open, hello, ping, close/garbage frames, in-process and datagram
//!   notifications (in order, retransmitted, after a gap), drains of all or
//!   some ready listeners (the others model sockets that are not
//!   writable), single-frame polls, disconnects, time passing and
//!   shutdown: each drain yields exactly the model's welcome / one coalesced
//!   flags frame (the union of the flags raised since the last drain, with
//!   the count of raises) / pong, so at most three frames however many
//!   notifications came; no flags outside a listener's interest or for
//!   another channel; `poll_ready` never loses a listener with output;
//!   `connections()`, `state()` and close events match the model.
//! * Timeouts: listeners that never ping, and whose output is at some point
//!   no longer drained, are closed with `HelloTimeout`, `Stuck` or
//!   `KeepaliveTimeout` (whichever deadline comes first), never before the
//!   deadline and at most one housekeeping period after it, by a driver that
//!   sleeps until `poll_timeout()`.

use flagpost_core::broker::{
    Broker, Config, Event, FrameError, ListenerId, ListenerSlot, ListenerState, OpenError,
    Received, LOSS_FLAGS,
};
use flagpost_core::channel::ChannelId;
use flagpost_core::flags::FlagSet;
use flagpost_core::gap::{SenderSlot, SenderTable, Verdict};
use flagpost_core::notify::{Kind, Notification};
use flagpost_core::time::{Duration, Instant};
use flagpost_core::wire::{
    AckRepr, AckResult, CloseReason, CloseRepr, FlagsRepr, FrameRepr, HelloRepr, NotifyRepr,
    SenderId, Seq, WelcomeRepr, MAX_DATAGRAM_LEN, MAX_FRAME_LEN,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::Config as ProptestConfig;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        // Keep the tree clean: a failure prints its minimal case instead.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ====================================================================== gap

/// One sender as the model sees it.
#[derive(Clone, Debug)]
struct ModelSender {
    id: u64,
    newest: u32,
    /// Position of `newest` on an unwrapped number line (so a number seen
    /// 2^32 numbers ago is not mistaken for this lap's).
    position: i64,
    /// The positions of every number seen since the sender was inserted or
    /// restarted.
    seen: Vec<i64>,
    last_seen: u64,
}

/// The sender table as its docs describe it.
#[derive(Clone, Debug)]
struct GapModel {
    capacity: usize,
    senders: Vec<ModelSender>,
    evictions: u64,
}

/// Serial-number distance from `earlier` to `later` (RFC 1982, 32 bits).
fn serial_distance(later: u32, earlier: u32) -> i64 {
    let forward = later.wrapping_sub(earlier);
    if forward < 1 << 31 {
        i64::from(forward)
    } else {
        -i64::from(earlier.wrapping_sub(later))
    }
}

impl GapModel {
    fn observe(&mut self, now: u64, id: u64, seq: u32) -> Verdict {
        let Some(s) = self.senders.iter_mut().find(|s| s.id == id) else {
            if self.capacity > 0 {
                if self.senders.len() == self.capacity {
                    let lru = (0..self.senders.len())
                        .min_by_key(|&i| self.senders[i].last_seen)
                        .expect("capacity > 0");
                    self.senders.remove(lru);
                    self.evictions += 1;
                }
                self.senders.push(ModelSender {
                    id,
                    newest: seq,
                    position: 0,
                    seen: vec![0],
                    last_seen: now,
                });
            }
            return if seq == 1 {
                Verdict::InOrder
            } else {
                Verdict::FirstSeenLate
            };
        };
        s.last_seen = now;
        let d = serial_distance(seq, s.newest);
        let position = s.position + d;
        if d > 0 {
            s.newest = seq;
            s.position = position;
            s.seen.push(position);
            return if d == 1 {
                Verdict::InOrder
            } else {
                Verdict::Gap {
                    missing: u32::try_from(d - 1).expect("small gaps"),
                }
            };
        }
        if -d < 64 {
            if s.seen.contains(&position) {
                return Verdict::Duplicate;
            }
            s.seen.push(position);
            return Verdict::Reordered;
        }
        if seq == 1 {
            s.newest = 1;
            s.position = 0;
            s.seen = vec![0];
            return Verdict::Restart;
        }
        Verdict::Stale
    }
}

/// What a sender sends next, relative to its own counter.
#[derive(Clone, Debug)]
enum SenderStep {
    /// The next number.
    Next,
    /// Skips `k - 1` numbers (they are lost).
    Jump(u32),
    /// A late or duplicated datagram `k` behind the counter (0: the last).
    Late(u32),
    /// Some earlier datagram again.
    Replay(Index),
    /// The sender restarts at 1.
    Restart,
}

fn sender_step() -> impl Strategy<Value = SenderStep> {
    prop_oneof![
        6 => Just(SenderStep::Next),
        2 => prop_oneof![2u32..=5, 2u32..=80].prop_map(SenderStep::Jump),
        3 => prop_oneof![0u32..=3, 0u32..=80].prop_map(SenderStep::Late),
        2 => any::<Index>().prop_map(SenderStep::Replay),
        1 => Just(SenderStep::Restart),
    ]
}

/// Where a sender's numbering starts: at 1, mid-range, or near a wrap.
fn base() -> impl Strategy<Value = u32> {
    prop_oneof![
        3 => Just(1u32),
        1 => 0u32..200,
        1 => (0u32..100).prop_map(|k| u32::MAX - k),
        1 => (0u32..100).prop_map(|k| (1u32 << 31) - 50 + k),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// Verdicts match the full-set model for interleaved senders, through
    /// sequence wrap-around and least-recently-seen eviction.
    #[test]
    fn sender_table_matches_model(
        capacity in 0usize..=4,
        bases in vec(base(), 1..=5),
        sends in vec((any::<Index>(), sender_step()), 0..200),
    ) {
        let mut table = SenderTable::new(vec![SenderSlot::EMPTY; capacity]);
        let mut model = GapModel { capacity, senders: Vec::new(), evictions: 0 };
        // Each sender's own counter (last new number) and history.
        let mut counters: Vec<u32> = bases.iter().map(|b| b.wrapping_sub(1)).collect();
        let mut history: Vec<Vec<u32>> = vec![Vec::new(); bases.len()];
        for (now, (who, what)) in (1u64..).zip(sends) {
            let s = who.index(bases.len());
            let seq = match what {
                SenderStep::Next => {
                    counters[s] = counters[s].wrapping_add(1);
                    counters[s]
                }
                SenderStep::Jump(k) => {
                    counters[s] = counters[s].wrapping_add(k);
                    counters[s]
                }
                SenderStep::Late(k) => counters[s].wrapping_sub(k),
                SenderStep::Replay(i) if !history[s].is_empty() => history[s][i.index(history[s].len())],
                SenderStep::Replay(_) => counters[s],
                SenderStep::Restart => {
                    counters[s] = 1;
                    1
                }
            };
            history[s].push(seq);
            let id = 0x1000 + s as u64;
            let want = model.observe(now, id, seq);
            let got = table.observe(Instant::from_micros(now), SenderId(id), Seq(seq));
            prop_assert_eq!(got, want, "sender {} seq {}", s, seq);
            prop_assert_eq!(got.deliver(), !matches!(want, Verdict::Duplicate | Verdict::Stale));
            prop_assert_eq!(
                got.possible_loss(),
                matches!(want, Verdict::Gap { .. } | Verdict::FirstSeenLate | Verdict::Restart)
            );
            prop_assert_eq!(table.len(), model.senders.len());
            prop_assert_eq!(table.evictions(), model.evictions);
        }
    }

    /// One sender, numbers near the newest (forward, backward, exact
    /// duplicates) kept far from wrap-around: the verdict is decided by the
    /// set of numbers seen.
    #[test]
    fn single_sender_verdicts_follow_the_seen_set(
        start in prop_oneof![Just(1u32), 1u32..1000],
        deltas in vec(prop_oneof![4 => -3i64..=3, 2 => -70i64..=70, 1 => Just(0i64)], 1..300),
    ) {
        let mut table = SenderTable::new([SenderSlot::EMPTY; 1]);
        let sender = SenderId(0xabc);
        let now = Instant::ZERO;
        let mut newest: Option<u64> = None;
        let mut seen = std::collections::BTreeSet::new();
        for delta in deltas {
            // Stay well inside 1..2^31: no wrap-around in this model.
            let seq = match newest {
                None => u64::from(start),
                Some(n) => n.saturating_add_signed(delta).max(1),
            };
            let want = match newest {
                None if seq == 1 => Verdict::InOrder,
                None => Verdict::FirstSeenLate,
                Some(n) if seq == n + 1 => Verdict::InOrder,
                Some(n) if seq > n => Verdict::Gap { missing: u32::try_from(seq - n - 1).expect("small") },
                Some(n) if n - seq < 64 && seen.contains(&seq) => Verdict::Duplicate,
                Some(n) if n - seq < 64 => Verdict::Reordered,
                Some(_) if seq == 1 => Verdict::Restart,
                Some(_) => Verdict::Stale,
            };
            match want {
                Verdict::Restart => {
                    seen.clear();
                    seen.insert(1);
                    newest = Some(1);
                }
                Verdict::Stale | Verdict::Duplicate => {}
                _ => {
                    seen.insert(seq);
                    newest = Some(newest.map_or(seq, |n| n.max(seq)));
                }
            }
            let got = table.observe(now, sender, Seq(u32::try_from(seq).expect("small")));
            prop_assert_eq!(got, want, "seq {}", seq);
        }
    }
}

// =================================================================== broker

type TestBroker = Broker<Box<[ListenerSlot]>, [SenderSlot; 4]>;

fn new_broker(config: Config, capacity: usize) -> TestBroker {
    Broker::new(
        config,
        vec![ListenerSlot::EMPTY; capacity].into_boxed_slice(),
        [SenderSlot::EMPTY; 4],
    )
}

/// Channels listeners and notifications pick from (byte-exact: `gsm1` is
/// not `GSM1`).
const CHANNELS: [&str; 3] = ["gsm1", "GSM1", "smpp-ü"];

fn channel(i: Option<usize>) -> Option<ChannelId> {
    i.map(|i| ChannelId::new(CHANNELS[i]).expect("valid channel"))
}

/// The flags a kind raises (the table in `notify`'s docs).
fn kind_bits(kind: Kind) -> u8 {
    match kind {
        Kind::Status => 0b0011,
        Kind::NonStatus => 0b0010,
        Kind::ChannelUpdate => 0b0100,
        Kind::ChannelShutdown => 0b1000,
    }
}

/// A notification of `kind` for `target`; channel kinds always name one.
fn notification(kind: Kind, target: Option<usize>) -> Notification {
    let target = if kind.requires_channel() {
        target.or(Some(0))
    } else {
        target
    };
    Notification::new(kind, channel(target)).expect("channel kinds name a channel")
}

fn flags(bits: u8) -> FlagSet {
    FlagSet::from_bits(bits).expect("within ALL")
}

fn frame_bytes(repr: &FrameRepr) -> Vec<u8> {
    let mut buf = [0u8; MAX_FRAME_LEN];
    let n = repr.emit(&mut buf).expect("fits");
    buf[..n].to_vec()
}

fn kind() -> impl Strategy<Value = Kind> {
    select(Kind::ALL.to_vec())
}

// ------------------------------------------------------------ routing model

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MState {
    AwaitingHello,
    Listening,
    Closing { reason: CloseReason, send: bool },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct MOutbox {
    welcome: bool,
    flags: u8,
    raises: u32,
    pong: Option<u32>,
}

#[derive(Clone, Debug)]
struct MListener {
    id: ListenerId,
    state: MState,
    channel: Option<ChannelId>,
    interest: u8,
    keepalive_secs: u16,
    outbox: MOutbox,
}

/// Routing config: every timeout far beyond the few seconds a run lasts.
const DEFAULT_KEEPALIVE: u64 = 3000;
const MIN_KEEPALIVE: u64 = 2000;
const MAX_KEEPALIVE: u64 = 4000;

fn routing_config(broker_id: u64) -> Config {
    Config {
        keepalive: Duration::from_secs(DEFAULT_KEEPALIVE),
        min_keepalive: Duration::from_secs(MIN_KEEPALIVE),
        max_keepalive: Duration::from_secs(MAX_KEEPALIVE),
        hello_timeout: Duration::from_secs(1000),
        stuck_timeout: Duration::from_secs(1000),
        broker_id,
        // Housekeeping granularity does not matter here.
        ..Config::default()
    }
}

/// The broker's listener table as its docs describe it.
#[derive(Debug)]
struct RoutingModel {
    capacity: usize,
    broker_id: u64,
    /// Open and closing connections.
    listeners: Vec<MListener>,
    /// Closing connections, in the order they were closed.
    closing: Vec<ListenerId>,
    shutting_down: bool,
    /// The datagram sender's last new sequence number.
    last_seq: Option<u32>,
}

impl RoutingModel {
    fn get(&self, id: ListenerId) -> Option<&MListener> {
        self.listeners.iter().find(|l| l.id == id)
    }

    fn get_mut(&mut self, id: ListenerId) -> Option<&mut MListener> {
        self.listeners.iter_mut().find(|l| l.id == id)
    }

    fn remove(&mut self, id: ListenerId) -> Option<MListener> {
        let i = self.listeners.iter().position(|l| l.id == id)?;
        Some(self.listeners.remove(i))
    }

    fn connections(&self) -> usize {
        self.listeners
            .iter()
            .filter(|l| !matches!(l.state, MState::Closing { .. }))
            .count()
    }

    fn close(&mut self, id: ListenerId, reason: CloseReason, send: bool) {
        if let Some(l) = self.get_mut(id) {
            if !matches!(l.state, MState::Closing { .. }) {
                l.state = MState::Closing { reason, send };
                l.outbox = MOutbox::default();
                self.closing.push(id);
            }
        }
    }

    /// Raises `kind`'s flags on every listener it reaches; how many.
    fn route(&mut self, kind: Kind, target: Option<ChannelId>) -> u32 {
        self.route_bits(kind_bits(kind), target)
    }

    /// Raises `raise` on every listener `target` reaches; how many.
    fn route_bits(&mut self, raise: u8, target: Option<ChannelId>) -> u32 {
        let mut reached = 0;
        for l in &mut self.listeners {
            let reaches = match (&target, &l.channel) {
                (Some(t), Some(mine)) => t == mine,
                _ => true,
            };
            let bits = raise & l.interest;
            if l.state == MState::Listening && reaches && bits != 0 {
                l.outbox.flags |= bits;
                l.outbox.raises = l.outbox.raises.saturating_add(1);
                reached += 1;
            }
        }
        reached
    }

    /// The next frame `poll_frame` gives, taken from the outbox.
    fn take_frame(&mut self, id: ListenerId) -> Option<FrameRepr> {
        let broker_id = self.broker_id;
        let l = self.get_mut(id).filter(|l| l.state == MState::Listening)?;
        let out = &mut l.outbox;
        if out.welcome {
            out.welcome = false;
            Some(FrameRepr::Welcome(WelcomeRepr {
                interest: flags(l.interest),
                keepalive_secs: l.keepalive_secs,
                broker_id,
            }))
        } else if out.flags != 0 {
            let frame = FrameRepr::Flags(FlagsRepr {
                flags: flags(out.flags),
                raises: out.raises,
            });
            out.flags = 0;
            out.raises = 0;
            Some(frame)
        } else {
            out.pong.take().map(FrameRepr::Pong)
        }
    }

    fn has_output(&self, id: ListenerId) -> bool {
        self.get(id)
            .is_some_and(|l| l.state == MState::Listening && l.outbox != MOutbox::default())
    }
}

#[derive(Clone, Copy, Debug)]
enum DatagramSend {
    Fresh,
    Retransmit,
    Skip(u32),
}

#[derive(Clone, Debug)]
enum Op {
    Open,
    Hello {
        who: Index,
        channel: Option<usize>,
        interest: u8,
        keepalive_secs: u16,
    },
    Ping {
        who: Index,
        nonce: u32,
    },
    /// The listener closes with a close frame.
    Bye {
        who: Index,
        reason: CloseReason,
    },
    /// A well-formed frame header of an unknown type.
    Garbage {
        who: Index,
    },
    Notify {
        kind: Kind,
        target: Option<usize>,
        batch: u32,
        times: usize,
    },
    Datagram {
        kind: Kind,
        target: Option<usize>,
        send: DatagramSend,
        ack: bool,
        tagged: bool,
    },
    /// `poll_ready` until `None`, then drain the listeners whose bit is set
    /// in `writable`; the others stay remembered as not writable.
    Drain {
        writable: u64,
    },
    /// One `poll_frame` on any listener, ready or not.
    PollOne {
        who: Index,
    },
    Disconnect {
        who: Index,
    },
    Advance {
        millis: u64,
    },
    Events,
}

fn routing_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Open),
        4 => (
            any::<Index>(),
            option::of(0..CHANNELS.len()),
            1u8..16,
            select(vec![0u16, 0, 1, 2500, 3999, 65535]),
        )
            .prop_map(|(who, channel, interest, keepalive_secs)| Op::Hello {
                who,
                channel,
                interest,
                keepalive_secs,
            }),
        2 => (any::<Index>(), any::<u32>()).prop_map(|(who, nonce)| Op::Ping { who, nonce }),
        1 => (any::<Index>(), select(CloseReason::ALL.to_vec()))
            .prop_map(|(who, reason)| Op::Bye { who, reason }),
        1 => any::<Index>().prop_map(|who| Op::Garbage { who }),
        6 => (
            kind(),
            option::of(0..CHANNELS.len()),
            1u32..=100,
            select(vec![1usize, 1, 1, 2, 3, 50, 1000]),
        )
            .prop_map(|(kind, target, batch, times)| Op::Notify {
                kind,
                target,
                batch,
                times,
            }),
        4 => (
            kind(),
            option::of(0..CHANNELS.len()),
            prop_oneof![
                4 => Just(DatagramSend::Fresh),
                2 => Just(DatagramSend::Retransmit),
                1 => (1u32..=5).prop_map(DatagramSend::Skip),
            ],
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(kind, target, send, ack, tagged)| Op::Datagram {
                kind,
                target,
                send,
                ack,
                tagged,
            }),
        5 => any::<u64>().prop_map(|writable| Op::Drain { writable }),
        2 => any::<Index>().prop_map(|who| Op::PollOne { who }),
        2 => any::<Index>().prop_map(|who| Op::Disconnect { who }),
        2 => (0u64..=200).prop_map(|millis| Op::Advance { millis }),
        3 => Just(Op::Events),
    ]
}

fn expected_keepalive(asked: u16) -> u16 {
    let secs = match u64::from(asked) {
        0 => DEFAULT_KEEPALIVE,
        s => s.clamp(MIN_KEEPALIVE, MAX_KEEPALIVE),
    };
    u16::try_from(secs).expect("config keep-alives fit")
}

/// Drains one listener completely, checking every frame against the model.
fn drain_listener(
    b: &mut TestBroker,
    m: &mut RoutingModel,
    id: ListenerId,
) -> Result<(), TestCaseError> {
    let interest = m.get(id).map(|l| l.interest);
    let mut got = Vec::new();
    while let Some(frame) = b.poll_frame(id) {
        got.push(frame);
        prop_assert!(got.len() <= 3, "more than 3 frames in one drain: {:?}", got);
    }
    let want: Vec<FrameRepr> = core::iter::from_fn(|| m.take_frame(id)).collect();
    let flag_frames: Vec<&FlagsRepr> = got
        .iter()
        .filter_map(|f| match f {
            FrameRepr::Flags(f) => Some(f),
            _ => None,
        })
        .collect();
    prop_assert!(
        flag_frames.len() <= 1,
        "two flags frames in one drain: {:?}",
        got
    );
    for f in flag_frames {
        let interest = interest.map_or(FlagSet::EMPTY, flags);
        prop_assert!(
            !f.flags.is_empty() && interest.contains(f.flags),
            "{:?} outside {:?}",
            f,
            interest
        );
        prop_assert!(f.raises >= 1);
    }
    prop_assert_eq!(got, want, "drain of {}", id);
    Ok(())
}

fn check_routing_invariants(
    b: &TestBroker,
    m: &RoutingModel,
    ids: &[ListenerId],
) -> Result<(), TestCaseError> {
    prop_assert_eq!(b.connections(), m.connections());
    // Live connections always have a housekeeping deadline to sleep until.
    prop_assert_eq!(b.poll_timeout().is_some(), m.connections() > 0);
    for &id in ids {
        let want = m.get(id).map(|l| match l.state {
            MState::AwaitingHello => ListenerState::AwaitingHello,
            MState::Listening => ListenerState::Listening,
            MState::Closing { .. } => ListenerState::Closing,
        });
        prop_assert_eq!(b.state(id), want, "state of {}", id);
        if let Some(l) = m
            .get(id)
            .filter(|l| !matches!(l.state, MState::Closing { .. }))
        {
            prop_assert_eq!(b.channel(id), l.channel, "channel of {}", id);
        }
    }
    Ok(())
}

const SENDER: SenderId = SenderId(0x5eed);

fn run_routing(
    capacity: usize,
    broker_id: u64,
    ops: Vec<Op>,
    shutdown_at: Option<usize>,
) -> Result<(), TestCaseError> {
    let mut b = new_broker(routing_config(broker_id), capacity);
    let mut m = RoutingModel {
        capacity,
        broker_id,
        listeners: Vec::new(),
        closing: Vec::new(),
        shutting_down: false,
        last_seq: None,
    };
    let mut now = Instant::ZERO;
    // Every handle ever issued (dead ones too: they must stay dead).
    let mut ids: Vec<ListenerId> = Vec::new();
    // Ready listeners whose socket was not writable: the transport retries them.
    let mut remembered: Vec<ListenerId> = Vec::new();
    for (step, op) in ops.into_iter().enumerate() {
        if shutdown_at == Some(step) {
            b.shutdown();
            m.shutting_down = true;
            let mut open: Vec<ListenerId> = m
                .listeners
                .iter()
                .filter(|l| !matches!(l.state, MState::Closing { .. }))
                .map(|l| l.id)
                .collect();
            open.sort_by_key(|id| id.index());
            for id in open {
                m.close(id, CloseReason::Shutdown, true);
            }
            prop_assert!(b.is_shutting_down());
        }
        let pick = |who: &Index| (!ids.is_empty()).then(|| ids[who.index(ids.len())]);
        match op {
            Op::Open => {
                let got = b.open(now);
                if m.shutting_down {
                    prop_assert_eq!(got, Err(OpenError::ShuttingDown));
                } else if m.listeners.len() < m.capacity {
                    prop_assert!(
                        got.is_ok(),
                        "open refused with {} of {} slots taken: {:?}",
                        m.listeners.len(),
                        m.capacity,
                        got
                    );
                    let id = got.expect("checked");
                    prop_assert!(id.index() < capacity);
                    prop_assert!(!ids.contains(&id), "handle {} issued twice", id);
                    ids.push(id);
                    m.listeners.push(MListener {
                        id,
                        state: MState::AwaitingHello,
                        channel: None,
                        interest: 0,
                        keepalive_secs: 0,
                        outbox: MOutbox::default(),
                    });
                } else {
                    prop_assert_eq!(got, Err(OpenError::Full));
                }
            }
            Op::Hello {
                who,
                channel: ch,
                interest,
                keepalive_secs,
            } => {
                let Some(id) = pick(&who) else { continue };
                let hello = FrameRepr::Hello(HelloRepr {
                    interest: flags(interest),
                    channel: channel(ch),
                    keepalive_secs,
                });
                let got = b.handle_frame(now, id, &frame_bytes(&hello));
                let state = m.get(id).map(|l| l.state);
                match state {
                    None => prop_assert_eq!(got, Err(FrameError::UnknownListener)),
                    Some(MState::Closing { .. }) => prop_assert_eq!(got, Ok(())),
                    Some(MState::Listening) => {
                        prop_assert_eq!(got, Err(FrameError::Unexpected(hello.frame_type())));
                        m.close(id, CloseReason::ProtocolError, true);
                    }
                    Some(MState::AwaitingHello) => {
                        prop_assert_eq!(got, Ok(()));
                        let l = m.get_mut(id).expect("present");
                        l.state = MState::Listening;
                        l.channel = channel(ch);
                        l.interest = interest;
                        l.keepalive_secs = expected_keepalive(keepalive_secs);
                        l.outbox.welcome = true;
                    }
                }
            }
            Op::Ping { who, nonce } => {
                let Some(id) = pick(&who) else { continue };
                let ping = FrameRepr::Ping(nonce);
                let got = b.handle_frame(now, id, &frame_bytes(&ping));
                match m.get(id).map(|l| l.state) {
                    None => prop_assert_eq!(got, Err(FrameError::UnknownListener)),
                    Some(MState::Closing { .. }) => prop_assert_eq!(got, Ok(())),
                    Some(MState::AwaitingHello) => {
                        prop_assert_eq!(got, Err(FrameError::Unexpected(ping.frame_type())));
                        m.close(id, CloseReason::ProtocolError, true);
                    }
                    Some(MState::Listening) => {
                        prop_assert_eq!(got, Ok(()));
                        m.get_mut(id).expect("present").outbox.pong = Some(nonce);
                    }
                }
            }
            Op::Bye { who, reason } => {
                let Some(id) = pick(&who) else { continue };
                let bye = FrameRepr::Close(CloseRepr::new(reason));
                let got = b.handle_frame(now, id, &frame_bytes(&bye));
                match m.get(id).map(|l| l.state) {
                    None => prop_assert_eq!(got, Err(FrameError::UnknownListener)),
                    Some(_) => {
                        prop_assert_eq!(got, Ok(()));
                        m.close(id, reason, false);
                    }
                }
            }
            Op::Garbage { who } => {
                let Some(id) = pick(&who) else { continue };
                let got = b.handle_frame(now, id, b"FP\x01\x42\x00\x00");
                match m.get(id).map(|l| l.state) {
                    None => prop_assert_eq!(got, Err(FrameError::UnknownListener)),
                    Some(MState::Closing { .. }) => prop_assert_eq!(got, Ok(())),
                    Some(_) => {
                        prop_assert!(matches!(got, Err(FrameError::Wire(_))), "{:?}", got);
                        m.close(id, CloseReason::ProtocolError, true);
                    }
                }
            }
            Op::Notify {
                kind,
                target,
                batch,
                times,
            } => {
                let n = notification(kind, target);
                for _ in 0..times {
                    let got = b.notify(now, &n, batch);
                    let want = m.route(kind, n.channel().copied());
                    prop_assert_eq!(got, want, "listeners reached by {:?}", n);
                }
            }
            Op::Datagram {
                kind,
                target,
                send,
                ack,
                tagged,
            } => {
                let n = notification(kind, target);
                let (seq, verdict) = match (send, m.last_seq) {
                    (DatagramSend::Retransmit, Some(last)) => (last, Verdict::Duplicate),
                    (DatagramSend::Skip(k), None) => (1 + k, Verdict::FirstSeenLate),
                    (DatagramSend::Skip(k), Some(last)) => {
                        (last + 1 + k, Verdict::Gap { missing: k })
                    }
                    (_, None) => (1, Verdict::InOrder),
                    (_, Some(last)) => (last + 1, Verdict::InOrder),
                };
                if verdict != Verdict::Duplicate {
                    m.last_seq = Some(seq);
                }
                let notify = NotifyRepr {
                    notification: n,
                    sender: SENDER,
                    seq: Seq(seq),
                    batch: 1,
                    ack_requested: ack,
                    tag: tagged.then_some([0x7a; 16]),
                };
                let mut buf = [0u8; MAX_DATAGRAM_LEN];
                let len = notify.emit(&mut buf).expect("fits");
                let got = b.handle_datagram(now, &buf[..len]);
                if verdict.possible_loss() {
                    // A possible loss raises the loss flags for everyone first.
                    m.route_bits(LOSS_FLAGS.bits(), None);
                }
                let reached = if verdict.deliver() {
                    m.route(kind, n.channel().copied())
                } else {
                    0
                };
                let result = match verdict {
                    Verdict::Duplicate => AckResult::Duplicate,
                    _ => AckResult::Delivered,
                };
                let want = Received {
                    notify,
                    verdict,
                    reached,
                    ack: ack.then(|| AckRepr::answering(&notify, result)),
                };
                prop_assert_eq!(got, Ok(want));
            }
            Op::Drain { writable } => {
                let mut ready = Vec::new();
                while let Some(id) = b.poll_ready() {
                    prop_assert!(!ready.contains(&id), "{} ready twice in one sweep", id);
                    prop_assert!(m.has_output(id), "{} ready without output", id);
                    ready.push(id);
                    prop_assert!(ready.len() <= capacity);
                }
                for id in ready {
                    if !remembered.contains(&id) {
                        remembered.push(id);
                    }
                }
                // No listener with output is forgotten.
                for l in &m.listeners {
                    prop_assert!(
                        !m.has_output(l.id) || remembered.contains(&l.id),
                        "{} has output but was never reported ready",
                        l.id
                    );
                }
                let candidates = std::mem::take(&mut remembered);
                for (i, id) in candidates.into_iter().enumerate() {
                    if writable & (1 << (i % 64)) != 0 {
                        drain_listener(&mut b, &mut m, id)?;
                    } else {
                        remembered.push(id);
                    }
                }
            }
            Op::PollOne { who } => {
                let Some(id) = pick(&who) else { continue };
                let got = b.poll_frame(id);
                let want = m.take_frame(id);
                prop_assert_eq!(got, want, "one frame of {}", id);
            }
            Op::Disconnect { who } => {
                let Some(id) = pick(&who) else { continue };
                b.disconnect(id);
                if m.get(id)
                    .is_some_and(|l| !matches!(l.state, MState::Closing { .. }))
                {
                    m.remove(id);
                }
            }
            Op::Advance { millis } => {
                now += Duration::from_millis(millis);
                b.handle_timeout(now);
            }
            Op::Events => {
                let mut got = Vec::new();
                while let Some(event) = b.poll_event() {
                    got.push(event);
                    prop_assert!(got.len() <= capacity);
                }
                let mut want = Vec::new();
                for id in std::mem::take(&mut m.closing) {
                    let l = m.remove(id).expect("closing listeners are in the table");
                    if let MState::Closing { reason, send } = l.state {
                        want.push(Event::Closed {
                            listener: id,
                            reason,
                            send_close: send,
                        });
                    }
                }
                prop_assert_eq!(got, want);
            }
        }
        check_routing_invariants(&b, &m, &ids)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// Routing, coalescing and the listener lifecycle match the model.
    #[test]
    fn broker_routes_and_coalesces_like_the_model(
        capacity in 1usize..=6,
        broker_id in any::<u64>(),
        ops in vec(routing_op(), 1..150),
        shutdown_at in option::weighted(0.2, any::<Index>()),
    ) {
        let shutdown_at = shutdown_at.map(|i| i.index(ops.len()));
        run_routing(capacity, broker_id, ops, shutdown_at)?;
    }

    /// However many notifications arrive while a listener's socket is not
    /// writable, its outbox holds one flags frame: the union of what was
    /// raised for it, with the number of raises.
    #[test]
    fn undrained_flags_coalesce_into_one_frame(
        interest in 1u8..16,
        listening in option::of(0..CHANNELS.len()),
        notes in vec((kind(), option::of(0..CHANNELS.len())), 1..300),
    ) {
        let mut b = new_broker(routing_config(1), 2);
        let now = Instant::ZERO;
        let id = b.open(now).expect("room");
        let hello = FrameRepr::Hello(HelloRepr {
            interest: flags(interest),
            channel: channel(listening),
            keepalive_secs: 0,
        });
        prop_assert_eq!(b.handle_frame(now, id, &frame_bytes(&hello)), Ok(()));
        let (mut union, mut raises) = (0u8, 0u32);
        for (kind, target) in notes {
            let n = notification(kind, target);
            let reached = match (n.channel(), channel(listening)) {
                (Some(t), Some(mine)) => *t == mine,
                _ => true,
            };
            let bits = if reached { kind_bits(kind) & interest } else { 0 };
            prop_assert_eq!(b.notify(now, &n, 1), u32::from(bits != 0));
            union |= bits;
            raises += u32::from(bits != 0);
        }
        prop_assert_eq!(b.poll_ready(), Some(id));
        prop_assert!(matches!(b.poll_frame(id), Some(FrameRepr::Welcome(_))));
        if union != 0 {
            prop_assert_eq!(
                b.poll_frame(id),
                Some(FrameRepr::Flags(FlagsRepr { flags: flags(union), raises }))
            );
        }
        prop_assert_eq!(b.poll_frame(id), None);
        prop_assert_eq!(b.poll_ready(), None);
    }
}

// ------------------------------------------------------------ timeout model

/// One connection as the timeout model sees it (times in microseconds).
#[derive(Clone, Debug)]
struct TListener {
    id: ListenerId,
    opened: u64,
    /// When the hello arrived and the keep-alive it got.
    hello: Option<(u64, u64)>,
    interest: u8,
    /// When its output became non-empty and stayed undrained since.
    pending_since: Option<u64>,
}

#[derive(Clone, Copy, Debug)]
struct Timeouts {
    hello: u64,
    keepalive: u64,
    stuck: u64,
    housekeeping: u64,
}

impl Timeouts {
    fn config(&self) -> Config {
        Config {
            keepalive: Duration::from_micros(self.keepalive),
            min_keepalive: Duration::from_secs(1),
            max_keepalive: Duration::from_secs(3600),
            hello_timeout: Duration::from_micros(self.hello),
            stuck_timeout: Duration::from_micros(self.stuck),
            housekeeping: Duration::from_micros(self.housekeeping),
            // The broker id does not matter here.
            ..Config::default()
        }
    }

    /// When and why `l` must be closed, if nothing changes.
    fn deadline(&self, l: &TListener) -> (u64, CloseReason) {
        match l.hello {
            None => (l.opened + self.hello, CloseReason::HelloTimeout),
            Some((at, keepalive)) => {
                let dead = at + keepalive;
                match l.pending_since {
                    Some(since) if self.stuck != 0 && since + self.stuck < dead => {
                        (since + self.stuck, CloseReason::Stuck)
                    }
                    _ => (dead, CloseReason::KeepaliveTimeout),
                }
            }
        }
    }
}

fn timeouts() -> impl Strategy<Value = Timeouts> {
    (
        500u64..=20_000,
        1u64..=20,
        prop_oneof![1 => Just(0u64), 3 => 500u64..=20_000],
        prop_oneof![50u64..=500, 50u64..=3_000],
    )
        .prop_map(|(hello, keepalive, stuck, housekeeping)| Timeouts {
            hello: hello * 1_000,
            keepalive: keepalive * 1_000_000,
            stuck: stuck * 1_000,
            housekeeping: housekeeping * 1_000,
        })
}

#[derive(Clone, Debug)]
enum TOp {
    Open,
    Hello {
        who: Index,
        interest: u8,
        keepalive_secs: u16,
    },
    Notify {
        kind: Kind,
    },
    /// `poll_ready` until `None`, then drain those whose bit is set.
    Drain {
        writable: u64,
    },
    /// A remembered (ready but not writable) listener becomes writable and
    /// is drained without asking `poll_ready` again.
    Writable {
        which: Index,
    },
    Disconnect {
        who: Index,
    },
}

fn timeout_op() -> impl Strategy<Value = TOp> {
    prop_oneof![
        3 => Just(TOp::Open),
        3 => (any::<Index>(), 1u8..16, prop_oneof![Just(0u16), 1u16..=20])
            .prop_map(|(who, interest, keepalive_secs)| TOp::Hello { who, interest, keepalive_secs }),
        5 => kind().prop_map(|kind| TOp::Notify { kind }),
        3 => any::<u64>().prop_map(|writable| TOp::Drain { writable }),
        2 => any::<Index>().prop_map(|which| TOp::Writable { which }),
        1 => any::<Index>().prop_map(|who| TOp::Disconnect { who }),
    ]
}

struct TimeoutRun {
    t: Timeouts,
    b: TestBroker,
    listeners: Vec<TListener>,
    remembered: Vec<ListenerId>,
    closed: usize,
}

impl TimeoutRun {
    /// Runs housekeeping at `now` (the driver woke at `poll_timeout()`) and
    /// checks what it closed, and what it left open, against the deadlines.
    fn housekeep(&mut self, now: u64) -> Result<(), TestCaseError> {
        self.b.handle_timeout(Instant::from_micros(now));
        while let Some(event) = self.b.poll_event() {
            let Event::Closed {
                listener,
                reason,
                send_close,
            } = event
            else {
                prop_assert!(false, "unexpected event {:?}", event);
                continue;
            };
            let i = self.listeners.iter().position(|l| l.id == listener);
            prop_assert!(i.is_some(), "closed unknown {}", listener);
            let l = self.listeners.remove(i.expect("checked"));
            let (deadline, why) = self.t.deadline(&l);
            prop_assert!(
                deadline <= now,
                "{:?} closed at {}us, before its deadline {}us",
                l,
                now,
                deadline
            );
            prop_assert!(
                now <= deadline + self.t.housekeeping,
                "{:?} closed at {}us, more than one housekeeping period ({}us) after its deadline {}us ({:?})",
                l,
                now,
                self.t.housekeeping,
                deadline,
                why
            );
            prop_assert_eq!(reason, why, "close reason of {:?}", l);
            prop_assert!(send_close);
            self.closed += 1;
        }
        for l in &self.listeners {
            let (deadline, why) = self.t.deadline(l);
            prop_assert!(
                deadline > now,
                "{:?} past its deadline {}us ({:?}) at housekeeping {}us but not closed",
                l,
                deadline,
                why,
                now
            );
        }
        Ok(())
    }

    /// Sleeps until each `poll_timeout()` not after `until`; returns the time.
    fn sleep(&mut self, mut now: u64, until: u64) -> Result<u64, TestCaseError> {
        let mut rounds = 0;
        while let Some(wake) = self
            .b
            .poll_timeout()
            .map(Instant::as_micros)
            .filter(|w| *w <= until)
        {
            now = now.max(wake);
            self.housekeep(now)?;
            rounds += 1;
            prop_assert!(rounds < 100_000, "poll_timeout does not advance");
        }
        Ok(now)
    }

    fn drain(&mut self, id: ListenerId) {
        while self.b.poll_frame(id).is_some() {}
        if let Some(l) = self.listeners.iter_mut().find(|l| l.id == id) {
            if l.hello.is_some() {
                l.pending_since = None;
            }
        }
    }

    fn apply(&mut self, now: u64, op: TOp) -> Result<(), TestCaseError> {
        let at = Instant::from_micros(now);
        match op {
            TOp::Open => {
                if let Ok(id) = self.b.open(at) {
                    self.listeners.push(TListener {
                        id,
                        opened: now,
                        hello: None,
                        interest: 0,
                        pending_since: None,
                    });
                }
            }
            TOp::Hello {
                who,
                interest,
                keepalive_secs,
            } => {
                let waiting: Vec<usize> = (0..self.listeners.len())
                    .filter(|&i| self.listeners[i].hello.is_none())
                    .collect();
                if waiting.is_empty() {
                    return Ok(());
                }
                let l = &mut self.listeners[waiting[who.index(waiting.len())]];
                let hello = FrameRepr::Hello(HelloRepr {
                    interest: flags(interest),
                    channel: None,
                    keepalive_secs,
                });
                prop_assert_eq!(self.b.handle_frame(at, l.id, &frame_bytes(&hello)), Ok(()));
                let keepalive = match keepalive_secs {
                    0 => self.t.keepalive,
                    s => u64::from(s) * 1_000_000,
                };
                l.hello = Some((now, keepalive));
                l.interest = interest;
                // The welcome is output: pending from now.
                l.pending_since.get_or_insert(now);
            }
            TOp::Notify { kind } => {
                let n = notification(kind, None);
                let mut reached = 0;
                for l in &mut self.listeners {
                    if l.hello.is_some() && l.interest & kind_bits(kind) != 0 {
                        l.pending_since.get_or_insert(now);
                        reached += 1;
                    }
                }
                prop_assert_eq!(self.b.notify(at, &n, 1), reached);
            }
            TOp::Drain { writable } => {
                while let Some(id) = self.b.poll_ready() {
                    if !self.remembered.contains(&id) {
                        self.remembered.push(id);
                    }
                }
                for (i, id) in std::mem::take(&mut self.remembered).into_iter().enumerate() {
                    if writable & (1 << (i % 64)) != 0 {
                        self.drain(id);
                    } else {
                        self.remembered.push(id);
                    }
                }
            }
            TOp::Writable { which } => {
                if !self.remembered.is_empty() {
                    let id = self.remembered.remove(which.index(self.remembered.len()));
                    self.drain(id);
                }
            }
            TOp::Disconnect { who } => {
                if !self.listeners.is_empty() {
                    let l = self.listeners.remove(who.index(self.listeners.len()));
                    self.b.disconnect(l.id);
                }
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(config())]

    /// Silent listeners are closed for the first of their hello, stuck and
    /// keep-alive deadlines: never before it, and within one housekeeping
    /// period after it.
    #[test]
    fn silent_listeners_time_out_on_time(
        t in timeouts(),
        capacity in 1usize..=4,
        ops in vec(
            (prop_oneof![0u64..=100_000, 0u64..=4_000_000], timeout_op()),
            1..120,
        ),
    ) {
        let mut run = TimeoutRun {
            t,
            b: new_broker(t.config(), capacity),
            listeners: Vec::new(),
            remembered: Vec::new(),
            closed: 0,
        };
        let mut now = 0;
        for (dt, op) in ops {
            let at = now + dt;
            run.sleep(now, at)?;
            now = at;
            run.apply(now, op)?;
        }
        // Nobody pings or drains any more: every connection must time out.
        run.sleep(now, u64::MAX)?;
        prop_assert!(run.listeners.is_empty(), "never closed: {:?}", run.listeners);
        prop_assert_eq!(run.b.connections(), 0);
    }
}

// ------------------------------------------------ minimal reproductions

/// A broker whose stuck timeout (1 s) is far shorter than its keep-alive
/// (30 s) and hello timeout (10 s); housekeeping every second.
fn stuck_broker() -> TestBroker {
    let config = Config {
        stuck_timeout: Duration::from_secs(1),
        keepalive: Duration::from_secs(30),
        hello_timeout: Duration::from_secs(10),
        housekeeping: Duration::from_secs(1),
        ..Config::default()
    };
    new_broker(config, 1)
}

fn say_hello(b: &mut TestBroker, now: Instant, id: ListenerId) {
    let hello = FrameRepr::Hello(HelloRepr {
        interest: FlagSet::ALL,
        channel: None,
        keepalive_secs: 0,
    });
    assert_eq!(b.handle_frame(now, id, &frame_bytes(&hello)), Ok(()));
}

/// The minimal case `silent_listeners_time_out_on_time` shrinks to: a slot
/// freed while still in the ready queue is reused; its new tenant's first
/// output does not arm the stuck deadline.
#[test]
fn stuck_deadline_is_armed_for_a_reused_slot() {
    let mut b = stuck_broker();
    let t0 = Instant::ZERO;
    let a = b.open(t0).unwrap();
    say_hello(&mut b, t0, a); // welcome queued, never written
    let t1 = Instant::from_secs(1);
    assert_eq!(b.poll_timeout(), Some(t1));
    b.handle_timeout(t1);
    assert!(matches!(
        b.poll_event(),
        Some(Event::Closed {
            reason: CloseReason::Stuck,
            ..
        })
    ));
    // The same slot, still linked in the ready queue, gets a new tenant.
    let c = b.open(t1).unwrap();
    say_hello(&mut b, t1, c); // its welcome is pending from t1: stuck at t1 + 1 s
    let t2 = Instant::from_secs(2);
    assert_eq!(
        b.poll_timeout(),
        Some(t2),
        "the stuck deadline of the reused slot is not armed"
    );
}

/// The same without slot reuse: a ready listener whose socket was not
/// writable is drained later (as the module docs say to) before
/// `poll_ready` pops it again; its next output does not arm the stuck
/// deadline.
#[test]
fn stuck_deadline_is_armed_after_a_drain_of_a_queued_listener() {
    let mut b = stuck_broker();
    let t0 = Instant::ZERO;
    let a = b.open(t0).unwrap();
    say_hello(&mut b, t0, a);
    assert_eq!(b.poll_ready(), Some(a)); // not writable: remembered
    let status = Notification::status(None);
    b.notify(Instant::from_millis(100), &status, 1); // queued again
                                                     // Writable now: the transport drains what it remembered.
    assert!(matches!(b.poll_frame(a), Some(FrameRepr::Welcome(_))));
    assert!(matches!(b.poll_frame(a), Some(FrameRepr::Flags(_))));
    assert_eq!(b.poll_frame(a), None);
    let t1 = Instant::from_secs(1);
    assert_eq!(b.poll_timeout(), Some(t1));
    b.handle_timeout(t1); // nothing due; next: the keep-alive at 30 s
    assert_eq!(b.poll_event(), None);
    let t15 = Instant::from_millis(1500);
    b.notify(t15, &status, 1); // output pending from 1.5 s: stuck at 2.5 s
    assert_eq!(
        b.poll_timeout(),
        Some(Instant::from_millis(2500)),
        "the stuck deadline is not armed"
    );
}
