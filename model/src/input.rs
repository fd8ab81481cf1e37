//! The operation language: what can happen to a broker, as plain data that
//! `arbitrary` decodes from fuzz bytes and proptest strategies build
//! directly. This module owns the choice tables (timeouts, table sizes,
//! channels, sender ids, repeat counts) and turns each choice into the
//! broker-level value it stands for; it knows nothing of the model.
//!
//! Choices are small integers taken modulo their table, so any byte decodes
//! to a meaningful operation, and choice 0 is always the plain default (a
//! 16-slot table, 4 sender slots, the default [`Config`]).

use arbitrary::Arbitrary;
use flagpost_core::broker::Config;
use flagpost_core::channel::ChannelId;
use flagpost_core::flags::FlagSet;
use flagpost_core::notify::{Kind, Notification};
use flagpost_core::time::Duration;
use flagpost_core::wire::{
    CloseReason, CloseRepr, FlagsRepr, FrameRepr, Framed, HelloRepr, ProofRepr, StatRepr,
    WelcomeRepr, AUTH_VERSION,
};

/// Listener-table sizes [`Setup::listeners`] picks from (the first is the
/// default; the small ones fill up and refuse connections often).
pub const LISTENER_CAPACITIES: [usize; 6] = [16, 1, 2, 3, 4, 6];
/// Sender-table sizes [`Setup::senders`] picks from. All are below the
/// number of [`SENDER_IDS`], so the loss detector evicts; zero slots make
/// every sender unknown every time.
pub const SENDER_CAPACITIES: [usize; 4] = [4, 0, 1, 2];
/// The channel names listeners and notifications choose from (index 1..=4 of
/// a channel choice; 0 is "no channel"). Comparison is byte-exact, so `gsm1`
/// and `GSM1` are different channels.
pub const CHANNELS: [&str; 4] = ["gsm1", "gsm2", "GSM1", "smpp-ü"];
/// The sender ids structured notifications choose from.
pub const SENDER_IDS: [u64; 6] = [0x5eed, 1, 2, 0xdead_beef, u64::MAX, 0];
/// How many times [`Op::InProcess`] repeats its notification, by choice.
pub const REPEATS: [u32; 8] = [1, 1, 1, 1, 2, 3, 50, 1000];

/// A whole input: broker settings, then operations until the data ends.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct Input {
    /// BrokerState settings.
    pub setup: Setup,
    /// What happens, in order.
    pub ops: Vec<Op>,
}

/// BrokerState settings, each chosen from a small table.
#[derive(Arbitrary, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Setup {
    /// Index into `[10 s, 0, 1 s, 250 ms, 20 s, 3 s, 700 ms, 50 ms]`.
    pub hello_timeout: u8,
    /// Index into `[60 s, 0 (never), 2 s, 1 ms, 500 ms, 20 s, 4 s,
    /// 100 ms]`.
    pub stuck_timeout: u8,
    /// Index into `[1 s, 0, 10 ms, 5 s, 50 ms, 3 s, 300 ms, 1 ms]`.
    pub housekeeping: u8,
    /// Drain `poll_event` only on [`Op::PollEvents`] (and at the end), so
    /// operations reach connections that are closing.
    pub lazy_events: bool,
    /// Sent in every welcome.
    pub broker_id: u64,
    /// Index into [`LISTENER_CAPACITIES`].
    pub listeners: u8,
    /// Index into [`SENDER_CAPACITIES`].
    pub senders: u8,
    /// Keep-alive default, minimum and maximum: index into
    /// `[(30 s, 1 s, 1 h), (3000 s, 2000 s, 4000 s), (5 s, 2 s, 20 s),
    /// (1 s, 1 s, 1 s), (12 s, 1 s, 20 s), (2 s, 1 s, 60 s)]`.
    pub keepalive: u8,
    /// Sweep `poll_ready` only on [`Op::PollReady`] (and at the end), so
    /// listeners stay queued across operations: raised again, drained by a
    /// lone `poll_frame`, closed and their slot reused while queued.
    pub lazy_ready: bool,
    /// Index into `[1 s, 0, 300 ms, 5 s, 50 ms]`: how long a connection
    /// awaiting its hello must have waited before a newcomer to a full
    /// table evicts it.
    pub evict_after: u8,
}

fn pick<T: Copy, const N: usize>(table: [T; N], choice: u8) -> T {
    table[usize::from(choice) % N]
}

impl Setup {
    /// The broker configuration these choices stand for.
    pub fn config(&self) -> Config {
        let secs = Duration::from_secs;
        let (keepalive, min_keepalive, max_keepalive) = pick(
            [
                (secs(30), secs(1), secs(3600)),
                (secs(3000), secs(2000), secs(4000)),
                (secs(5), secs(2), secs(20)),
                (secs(1), secs(1), secs(1)),
                (secs(12), secs(1), secs(20)),
                (secs(2), secs(1), secs(60)),
            ],
            self.keepalive,
        );
        let ms = Duration::from_millis;
        Config {
            keepalive,
            min_keepalive,
            max_keepalive,
            hello_timeout: pick(
                [
                    secs(10),
                    Duration::ZERO,
                    secs(1),
                    ms(250),
                    secs(20),
                    secs(3),
                    ms(700),
                    ms(50),
                ],
                self.hello_timeout,
            ),
            evict_after: pick(
                [secs(1), Duration::ZERO, ms(300), secs(5), ms(50)],
                self.evict_after,
            ),
            stuck_timeout: pick(
                [
                    secs(60),
                    Duration::ZERO,
                    secs(2),
                    ms(1),
                    ms(500),
                    secs(20),
                    secs(4),
                    ms(100),
                ],
                self.stuck_timeout,
            ),
            // the model raises every possible loss at once (no coalescing)
            loss_interval: Duration::ZERO,
            housekeeping: pick(
                [
                    secs(1),
                    Duration::ZERO,
                    ms(10),
                    secs(5),
                    ms(50),
                    secs(3),
                    ms(300),
                    ms(1),
                ],
                self.housekeeping,
            ),
            broker_id: self.broker_id,
            // the routing index's hash key: any value routes the same; tables
            // of 1-16 slots make its buckets collide whatever the key
            hash_key: self.broker_id.rotate_left(17),
        }
    }

    /// Listener slots of the broker under test.
    pub fn listener_capacity(&self) -> usize {
        pick(LISTENER_CAPACITIES, self.listeners)
    }

    /// Sender slots of the broker under test.
    pub fn sender_capacity(&self) -> usize {
        pick(SENDER_CAPACITIES, self.senders)
    }
}

/// One step. `listener` fields pick a handle (live or dead) modulo the
/// number of handles kept; `channel` fields pick "none" (0) or one of
/// [`CHANNELS`] modulo 5; `kind` fields pick a [`Kind`] modulo 4.
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
    /// In-process notifications ([`BrokerState::notify`]), the same one
    /// repeated.
    ///
    /// [`BrokerState::notify`]: flagpost_core::broker::BrokerState::notify
    InProcess {
        /// The kind.
        kind: u8,
        /// The channel (channel kinds without one take the first).
        channel: u8,
        /// The batch count.
        batch: u8,
        /// How many times: index into [`REPEATS`].
        repeat: u8,
    },
    /// The kernel reports dropped datagrams ([`BrokerState::handle_lost`]).
    ///
    /// [`BrokerState::handle_lost`]: flagpost_core::broker::BrokerState::handle_lost
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
    /// Time passes, nobody looks.
    Advance {
        /// By this many microseconds.
        micros: u32,
    },
    /// `handle_timeout(now)`.
    HandleTimeout,
    /// Time passes until `poll_timeout` (if any), then `handle_timeout`.
    SleepUntilTimeout,
    /// [`BrokerState::shutdown`].
    ///
    /// [`BrokerState::shutdown`]: flagpost_core::broker::BrokerState::shutdown
    Shutdown,
    /// [`BrokerState::open_local`]: an in-process listener, listening at once.
    ///
    /// [`BrokerState::open_local`]: flagpost_core::broker::BrokerState::open_local
    OpenLocal {
        /// Interest bits (truncated; empty means all).
        interest: u8,
        /// Channel choice.
        channel: u8,
    },
    /// [`BrokerState::close`]: the transport closes a connection for a reason.
    ///
    /// [`BrokerState::close`]: flagpost_core::broker::BrokerState::close
    Close {
        /// Which handle.
        listener: u8,
        /// Reason choice.
        reason: u8,
    },
    /// Time passes as for a transport that sleeps until every
    /// `poll_timeout` on the way and runs `handle_timeout` then: every
    /// deadline that falls in the sleep is met within one housekeeping
    /// period.
    Sleep {
        /// For this many microseconds.
        micros: u32,
    },
    /// Sweep `poll_ready` (it is swept after every operation unless
    /// [`Setup::lazy_ready`]).
    PollReady,
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
    /// A version-2 hello (listener authentication; the broker under test
    /// has no key, so it refuses it).
    HelloV2 {
        /// Interest bits.
        interest: u8,
        /// Channel choice.
        channel: u8,
    },
    /// A version-2 stats request (refused likewise).
    StatsRequestV2,
    /// A proof (version 2; never expected by a keyless broker).
    Proof {
        /// Fills the nonce and the tag.
        fill: u8,
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
            FrameSpec::Close { reason } => FrameRepr::Close(CloseRepr::new(reason_choice(reason))),
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
            FrameSpec::StatsRequest | FrameSpec::StatsRequestV2 => FrameRepr::StatsRequest,
            FrameSpec::Stat { index, value } => FrameRepr::Stat(StatRepr { index, value }),
            FrameSpec::HelloV2 { interest, channel } => FrameRepr::Hello(HelloRepr {
                interest: FlagSet::from_bits_truncate(interest),
                channel: channel_choice(channel),
                keepalive_secs: 0,
            }),
            FrameSpec::Proof { fill } => FrameRepr::Proof(ProofRepr {
                nonce: [fill; 16],
                tag: [fill; 16],
            }),
        }
    }

    /// The frame with the version its header carries.
    pub fn framed(&self) -> Framed {
        match self {
            FrameSpec::HelloV2 { .. } | FrameSpec::StatsRequestV2 => {
                Framed::new(AUTH_VERSION, self.repr())
            }
            _ => Framed::v1(self.repr()),
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

impl SeqSpec {
    /// The number to send after `last`, and the sender's `last` afterwards.
    pub fn apply(self, last: u32) -> (u32, u32) {
        match self {
            SeqSpec::Next => (last.wrapping_add(1), last.wrapping_add(1)),
            SeqSpec::Same => (last, last),
            SeqSpec::Skip(n) => {
                let s = last.wrapping_add(2).wrapping_add(u32::from(n));
                (s, s)
            }
            SeqSpec::Back(n) => (last.wrapping_sub(1).wrapping_sub(u32::from(n)), last),
            SeqSpec::First => (1, 1),
            SeqSpec::Raw(s) => (s, s),
        }
    }
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
    /// Corrupts `bytes` in place.
    pub fn apply(&self, bytes: &mut Vec<u8>) {
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

/// The channel a channel choice stands for.
pub fn channel_choice(choice: u8) -> Option<ChannelId> {
    match usize::from(choice) % (CHANNELS.len() + 1) {
        0 => None,
        i => Some(ChannelId::new(CHANNELS[i - 1]).expect("valid channel name")),
    }
}

/// The close reason a reason choice stands for.
pub fn reason_choice(choice: u8) -> CloseReason {
    CloseReason::ALL[usize::from(choice) % CloseReason::COUNT]
}

/// The notification a kind and channel choice stand for (a channel kind
/// without a channel takes the first of [`CHANNELS`]).
pub fn notification(kind: u8, channel: u8) -> Notification {
    let kind = Kind::ALL[usize::from(kind) % Kind::ALL.len()];
    let channel = channel_choice(channel).or_else(|| {
        kind.requires_channel()
            .then(|| ChannelId::new(CHANNELS[0]).expect("valid channel name"))
    });
    Notification::new(kind, channel).expect("channel kinds have a channel")
}
