//! Proptest strategies for the operation language: [`input`] builds an
//! [`Input`] directly, with weights that make the interesting cases common
//! (many notifications and hellos, few shutdowns, time steps around the
//! timeouts, few senders so their numbers relate), and shrinks to fewer and
//! simpler operations.
//!
//! [`_every_op_has_a_strategy`] fails to compile when an [`Op`] variant is
//! added without a strategy here.

use flagpost_model::input::{
    CHANNELS, LISTENER_CAPACITIES, REPEATS, SENDER_CAPACITIES, SENDER_IDS,
};
use flagpost_model::{Corrupt, FrameSpec, Input, NotifySpec, Op, SeqSpec, Setup};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::{select, Index};

/// A choice among `n` table entries.
fn choice(n: usize) -> impl Strategy<Value = u8> {
    0..u8::try_from(n).expect("small table")
}

fn channel() -> impl Strategy<Value = u8> {
    choice(CHANNELS.len() + 1)
}

fn kind() -> impl Strategy<Value = u8> {
    0u8..4
}

/// BrokerState settings: every table entry, the default most often.
fn setup() -> impl Strategy<Value = Setup> {
    (
        (choice(8), choice(8), choice(8), any::<bool>()),
        (
            any::<u64>(),
            choice(LISTENER_CAPACITIES.len()),
            choice(SENDER_CAPACITIES.len()),
            choice(6),
            any::<bool>(),
            choice(5),
        ),
    )
        .prop_map(
            |(
                (hello_timeout, stuck_timeout, housekeeping, lazy_events),
                (broker_id, listeners, senders, keepalive, lazy_ready, evict_after),
            )| Setup {
                hello_timeout,
                stuck_timeout,
                housekeeping,
                lazy_events,
                broker_id,
                listeners,
                senders,
                keepalive,
                lazy_ready,
                evict_after,
            },
        )
}

fn hello() -> impl Strategy<Value = FrameSpec> {
    (
        prop_oneof![9 => 1u8..16, 1 => any::<u8>()],
        channel(),
        select(vec![0u16, 0, 1, 2, 5, 30, 2500, 3999, 65535]),
    )
        .prop_map(|(interest, channel, keepalive_secs)| FrameSpec::Hello {
            interest,
            channel,
            keepalive_secs,
        })
}

/// Any frame a listener might send, valid ones most often.
fn frame_spec() -> impl Strategy<Value = FrameSpec> {
    prop_oneof![
        4 => hello(),
        3 => any::<u32>().prop_map(|nonce| FrameSpec::Ping { nonce }),
        1 => any::<u8>().prop_map(|reason| FrameSpec::Close { reason }),
        1 => any::<u32>().prop_map(|nonce| FrameSpec::Pong { nonce }),
        1 => (any::<u8>(), any::<u32>()).prop_map(|(flags, raises)| FrameSpec::Flags { flags, raises }),
        1 => any::<u8>().prop_map(|interest| FrameSpec::Welcome { interest }),
        1 => Just(FrameSpec::StatsRequest),
        1 => (any::<u16>(), any::<u64>()).prop_map(|(index, value)| FrameSpec::Stat { index, value }),
        // listener authentication (version 2): a keyless broker refuses it
        1 => (1u8..16, channel()).prop_map(|(interest, channel)| FrameSpec::HelloV2 { interest, channel }),
        1 => Just(FrameSpec::StatsRequestV2),
        1 => any::<u8>().prop_map(|fill| FrameSpec::Proof { fill }),
    ]
}

/// A corruption: mostly in the header (magic, version, type, length).
fn corrupt() -> impl Strategy<Value = Corrupt> {
    (
        prop_oneof![3 => 0u8..6, 1 => any::<u8>()],
        any::<u8>(),
        select(vec![0u8, 0, 0, 1, 2, 255]),
    )
        .prop_map(|(at, xor, cut)| Corrupt { at, xor, cut })
}

/// A sequence number relative to the sender's last: mostly the next one,
/// often a retransmission, a small gap or a late one, sometimes a restart,
/// a number far behind (stale) or anywhere (wrap-around).
fn seq_spec() -> impl Strategy<Value = SeqSpec> {
    prop_oneof![
        8 => Just(SeqSpec::Next),
        2 => Just(SeqSpec::Same),
        2 => prop_oneof![0u8..4, any::<u8>()].prop_map(SeqSpec::Skip),
        3 => prop_oneof![0u8..4, 0u8..80, any::<u8>()].prop_map(SeqSpec::Back),
        1 => Just(SeqSpec::First),
        1 => prop_oneof![
            any::<u32>(),
            (0u32..4).prop_map(|k| u32::MAX - k),
            (0u32..4).prop_map(|k| (1 << 31) - 2 + k),
        ]
        .prop_map(SeqSpec::Raw),
    ]
}

/// A structured datagram, mostly from the first two senders.
fn notify_spec() -> impl Strategy<Value = NotifySpec> {
    (
        (
            kind(),
            channel(),
            prop_oneof![3 => 0u8..2, 1 => choice(SENDER_IDS.len())],
        ),
        (
            seq_spec(),
            any::<bool>(),
            any::<bool>(),
            prop_oneof![0u8..3, any::<u8>()],
        ),
    )
        .prop_map(
            |((kind, channel, sender), (seq, ack, tagged, batch))| NotifySpec {
                kind,
                channel,
                sender,
                seq,
                ack,
                tagged,
                batch,
            },
        )
}

/// A time step: within a housekeeping period, around the hello and stuck
/// timeouts, or anything up to 71 minutes.
fn micros() -> impl Strategy<Value = u32> {
    prop_oneof![
        4 => 0u32..=100_000,
        4 => 0u32..=4_000_000,
        1 => any::<u32>(),
    ]
}

/// One operation (never a shutdown: [`input`] places that).
fn op() -> impl Strategy<Value = Op> {
    let listener = any::<u8>;
    prop_oneof![
        4 => Just(Op::Open),
        1 => (any::<u8>(), channel()).prop_map(|(interest, channel)| Op::OpenLocal { interest, channel }),
        10 => (listener(), frame_spec()).prop_map(|(listener, frame)| Op::Frame { listener, frame }),
        1 => (listener(), frame_spec(), corrupt())
            .prop_map(|(listener, frame, corrupt)| Op::CorruptFrame { listener, frame, corrupt }),
        1 => (listener(), vec(any::<u8>(), 0..24)).prop_map(|(listener, bytes)| Op::RawFrame { listener, bytes }),
        8 => notify_spec().prop_map(Op::Notify),
        1 => (notify_spec(), corrupt()).prop_map(|(notify, corrupt)| Op::CorruptNotify { notify, corrupt }),
        1 => vec(any::<u8>(), 0..48).prop_map(|bytes| Op::RawDatagram { bytes }),
        5 => (kind(), channel(), any::<u8>(), choice(REPEATS.len()))
            .prop_map(|(kind, channel, batch, repeat)| Op::InProcess { kind, channel, batch, repeat }),
        1 => prop_oneof![Just(0u8), 1u8..4, any::<u8>()].prop_map(|count| Op::Lost { count }),
        2 => listener().prop_map(|listener| Op::Disconnect { listener }),
        3 => (listener(), any::<bool>()).prop_map(|(listener, writable)| Op::Writable { listener, writable }),
        2 => listener().prop_map(|listener| Op::PollFrame { listener }),
        2 => Just(Op::PollEvents),
        2 => Just(Op::PollReady),
        2 => micros().prop_map(|micros| Op::Advance { micros }),
        1 => Just(Op::HandleTimeout),
        1 => Just(Op::SleepUntilTimeout),
        3 => micros().prop_map(|micros| Op::Sleep { micros }),
        1 => (listener(), any::<u8>()).prop_map(|(listener, reason)| Op::Close { listener, reason }),
    ]
}

/// A whole input: settings, up to `max_ops` operations, and in one case of
/// five a shutdown somewhere among them.
pub(crate) fn input(max_ops: usize) -> impl Strategy<Value = Input> {
    (
        setup(),
        vec(op(), 0..max_ops),
        option::weighted(0.2, any::<Index>()),
    )
        .prop_map(|(setup, mut ops, shutdown)| {
            if let Some(at) = shutdown {
                let at = at.index(ops.len() + 1);
                ops.insert(at, Op::Shutdown);
            }
            Input { setup, ops }
        })
}

/// The timeout profile: listeners that say hello and are notified, whose
/// output is drained now and then or not at all, that never ping, and a
/// transport that only ever sleeps until `poll_timeout` (so every deadline
/// must be met within one housekeeping period); one to four slots.
pub(crate) fn timeout_input(max_ops: usize) -> impl Strategy<Value = Input> {
    let op = prop_oneof![
        3 => Just(Op::Open),
        3 => (any::<u8>(), 1u8..16, prop_oneof![Just(0u16), 1u16..=20]).prop_map(
            |(listener, interest, keepalive_secs)| Op::Frame {
                listener,
                frame: FrameSpec::Hello { interest, channel: 0, keepalive_secs },
            }
        ),
        5 => kind().prop_map(|kind| Op::InProcess { kind, channel: 0, batch: 1, repeat: 0 }),
        3 => Just(Op::PollReady),
        3 => (any::<u8>(), any::<bool>()).prop_map(|(listener, writable)| Op::Writable { listener, writable }),
        1 => any::<u8>().prop_map(|listener| Op::PollFrame { listener }),
        1 => any::<u8>().prop_map(|listener| Op::Disconnect { listener }),
        6 => prop_oneof![0u32..=100_000, 0u32..=4_000_000].prop_map(|micros| Op::Sleep { micros }),
    ];
    (setup(), 1u8..5, vec(op, 0..max_ops)).prop_map(|(setup, listeners, ops)| Input {
        setup: Setup {
            listeners,
            lazy_ready: true,
            ..setup
        },
        ops,
    })
}

/// Names every [`Op`] variant: adding one fails to compile here until
/// [`op`] (or [`input`]) generates it.
fn _every_op_has_a_strategy(op: &Op) {
    match op {
        Op::Open
        | Op::OpenLocal { .. }
        | Op::Frame { .. }
        | Op::CorruptFrame { .. }
        | Op::RawFrame { .. }
        | Op::Notify(_)
        | Op::CorruptNotify { .. }
        | Op::RawDatagram { .. }
        | Op::InProcess { .. }
        | Op::Lost { .. }
        | Op::Disconnect { .. }
        | Op::Writable { .. }
        | Op::PollFrame { .. }
        | Op::PollEvents
        | Op::PollReady
        | Op::Advance { .. }
        | Op::HandleTimeout
        | Op::SleepUntilTimeout
        | Op::Sleep { .. }
        | Op::Close { .. }
        | Op::Shutdown => {}
    }
}
