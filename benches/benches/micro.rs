//! Micro-benchmarks of the hot paths (criterion): a check when clear and
//! when raised, a raise, a scheduler step, datagram decode, broker fan-out
//! per listener, routing with 10,000 listeners the datagram does not reach
//! or has already raised, the sender table (a steady set of senders, and a
//! churn of one-off ids through a full table), frame encode, and a
//! `notify_*` call on the std notifier.
//!
//! `cargo bench -p flagpost-benches --bench micro` (full);
//! `cargo bench -p flagpost-benches --bench micro -- --quick` is what CI runs.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration as StdDuration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use flagpost_core::broker::{BrokerState, Config, Event, ListenerSlot};
use flagpost_core::flags::AtomicFlags;
use flagpost_core::loss::SenderSlot;
use flagpost_core::schedule::Scheduler;
use flagpost_core::wire::*;
use flagpost_core::{ChannelId, Duration, FlagSet, Instant, Kind, Notification};

fn flags(c: &mut Criterion) {
    let mut g = c.benchmark_group("flags");
    let clear = AtomicFlags::new();
    g.bench_function("check_clear", |b| {
        b.iter(|| black_box(&clear).check_status())
    });
    let raised = AtomicFlags::new();
    g.bench_function("raise_then_check", |b| {
        b.iter(|| {
            let f = black_box(&raised);
            f.raise(FlagSet::STATUS);
            f.check_status()
        })
    });
    let target = AtomicFlags::new();
    target.raise(FlagSet::STATUS);
    g.bench_function("raise_already_raised", |b| {
        b.iter(|| black_box(&target).raise(FlagSet::STATUS))
    });
    let fresh = AtomicFlags::new();
    g.bench_function("raise_clear", |b| {
        b.iter(|| {
            let f = black_box(&fresh);
            let was = f.raise(FlagSet::STATUS);
            f.take();
            was
        })
    });
    // the raise the std listener makes: one raiser per listener, a plain store
    let single = AtomicFlags::new();
    g.bench_function("raise_exclusive_clear", |b| {
        b.iter(|| {
            let f = black_box(&single);
            let was = f.raise_exclusive(FlagSet::STATUS);
            f.take();
            was
        })
    });
    // the check of a raised flag alone: raise outside the timed region
    g.bench_function("check_raised", |b| {
        b.iter_batched_ref(
            || {
                let f = AtomicFlags::new();
                f.raise(FlagSet::STATUS);
                f
            },
            |f| f.check_status(),
            BatchSize::SmallInput,
        )
    });
    // floors in the same run: what the hardware charges for the same work
    let bare = std::sync::atomic::AtomicU8::new(0);
    g.bench_function("floor_relaxed_load", |b| {
        b.iter(|| black_box(&bare).load(std::sync::atomic::Ordering::Relaxed))
    });
    g.bench_function("floor_swap", |b| {
        b.iter(|| black_box(&bare).swap(1, std::sync::atomic::Ordering::AcqRel))
    });
    g.finish();
}

fn scheduler(c: &mut Criterion) {
    let mut s = Scheduler::new(
        Instant::ZERO,
        Duration::from_secs(30),
        Duration::from_secs(60),
    );
    let mut now = Instant::ZERO;
    c.bench_function("scheduler/notify_and_poll", |b| {
        b.iter(|| {
            now += Duration::from_micros(1);
            s.handle_notification(now, Kind::Status);
            while let Some(w) = s.poll(now) {
                black_box(w);
            }
            s.poll_timeout()
        })
    });
}

fn datagram() -> ([u8; MAX_DATAGRAM_LEN], usize) {
    let repr = NotifyRepr {
        notification: Notification::status(Some(ChannelId::new("gsm1").unwrap())),
        sender: SenderId(7),
        seq: Seq(1),
        batch: 20,
        ack_requested: false,
        probe: false,
        tag: None,
    };
    let mut buf = [0u8; MAX_DATAGRAM_LEN];
    let n = repr.emit(&mut buf).unwrap();
    (buf, n)
}

fn wire(c: &mut Criterion) {
    let (buf, n) = datagram();
    c.bench_function("wire/datagram_decode", |b| {
        b.iter(|| NotifyRepr::parse_bytes(black_box(&buf[..n])))
    });
    let frame = FrameRepr::Flags(FlagsRepr {
        flags: FlagSet::STATUS | FlagSet::NON_STATUS,
        raises: 3,
    });
    let mut out = [0u8; MAX_FRAME_LEN];
    c.bench_function("wire/frame_encode", |b| {
        b.iter(|| black_box(&frame).emit(&mut out))
    });
}

fn fan_out(c: &mut Criterion) {
    let mut g = c.benchmark_group("broker");
    for n in [1usize, 100, 10_000] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("fan_out_{n}_listeners"), |b| {
            b.iter_batched_ref(
                || {
                    let mut broker = BrokerState::new(
                        Config::default(),
                        vec![ListenerSlot::EMPTY; n].into_boxed_slice(),
                        vec![SenderSlot::EMPTY; 4].into_boxed_slice(),
                    );
                    for _ in 0..n {
                        broker
                            .open_local(Instant::ZERO, FlagSet::ALL, None)
                            .unwrap();
                    }
                    broker
                },
                |broker| {
                    // route, then take every listener's frame (what the transport does)
                    broker.notify(Instant::ZERO, &Notification::status(None), 1);
                    while let Some(id) = broker.poll_ready() {
                        while let Some(f) = broker.poll_frame(id) {
                            black_box(f);
                        }
                    }
                },
                BatchSize::LargeInput,
            )
        });
    }
    let (buf, n) = datagram();
    let mut broker = BrokerState::new(
        Config::default(),
        [ListenerSlot::EMPTY; 1],
        [SenderSlot::EMPTY; 4],
    );
    bench_datagram(&mut g, "handle_datagram_no_listener", &mut broker, buf, n);
    g.finish();
}

/// Benches `handle_datagram` on datagram `d[..n]`, each time with the next
/// sequence number (so none is a duplicate).
fn bench_datagram<L, S>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    broker: &mut BrokerState<L, S>,
    mut d: [u8; MAX_DATAGRAM_LEN],
    n: usize,
) where
    L: AsRef<[ListenerSlot]> + AsMut<[ListenerSlot]>,
    S: AsRef<[SenderSlot]> + AsMut<[SenderSlot]>,
{
    let mut seq = 0u32;
    g.bench_function(name, |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            d[16..20].copy_from_slice(&seq.to_be_bytes());
            broker
                .handle_datagram(Instant::ZERO, black_box(&d[..n]))
                .map(|r| r.reached)
        })
    });
}

/// A broker over heap storage, as on a server.
type HeapBroker = BrokerState<Box<[ListenerSlot]>, Box<[SenderSlot]>>;

/// A broker with 10,000 listeners that said hello (their welcomes taken),
/// 10 on each of channels `c0`..`c999`, none on `gsm1`.
fn ten_thousand() -> HeapBroker {
    let mut broker = BrokerState::new(
        Config {
            hash_key: 7,
            // the housekeeping bench's clock runs a second per iteration
            keepalive: Duration::from_secs(10 * 365 * 86_400),
            // the possible-loss bench measures the raise itself, not its
            // folding into the next one
            loss_interval: Duration::ZERO,
            ..Config::default()
        },
        vec![ListenerSlot::EMPTY; 10_001].into_boxed_slice(),
        vec![SenderSlot::EMPTY; 4].into_boxed_slice(),
    );
    let mut buf = [0u8; MAX_FRAME_LEN];
    for i in 0..10_000 {
        let id = broker.open(Instant::ZERO).unwrap();
        let hello = FrameRepr::Hello(HelloRepr {
            interest: FlagSet::ALL,
            channel: Some(ChannelId::new(&format!("c{}", i / 10)).unwrap()),
            keepalive_secs: 0,
        });
        let n = hello.emit(&mut buf).unwrap();
        broker.handle_frame(Instant::ZERO, id, &buf[..n]).unwrap();
    }
    while let Some(id) = broker.poll_ready() {
        while broker.poll_frame(id).is_some() {}
    }
    broker
}

/// The routing index: what a datagram costs with 10,000 listeners connected
/// that it does not reach, or whose flags are all pending already, and what
/// one housekeeping pass over them costs.
fn routing(c: &mut Criterion) {
    let mut g = c.benchmark_group("broker");
    for (name, target) in [
        ("handle_datagram_10000_listeners_elsewhere", "gsm1"),
        ("handle_datagram_10000_listeners_raised", "c5"),
    ] {
        let mut broker = ten_thousand();
        let (mut d, n) = datagram();
        let channel = ChannelId::new(target).unwrap();
        let repr = NotifyRepr::parse_bytes(&d[..n]).unwrap();
        let n = NotifyRepr {
            notification: Notification::status(Some(channel)),
            ..repr
        }
        .emit(&mut d)
        .unwrap();
        bench_datagram(&mut g, name, &mut broker, d, n);
    }
    let mut broker = ten_thousand();
    broker.handle_lost(Instant::ZERO, 1);
    g.bench_function("possible_loss_10000_listeners_raised", |b| {
        b.iter(|| broker.handle_lost(Instant::ZERO, black_box(1)))
    });
    let mut broker = ten_thousand();
    let mut now = Instant::ZERO;
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("housekeeping_10000_listeners", |b| {
        b.iter(|| {
            // a connection that never says hello makes the next pass due:
            // the pass visits the 10,000 listeners and closes only it
            broker.open(now).unwrap();
            now += broker.config().hello_timeout;
            broker.handle_timeout(black_box(now));
            assert!(matches!(broker.poll_event(), Some(Event::Closed { .. })));
            assert_eq!(broker.connections(), 10_000);
        })
    });
    g.finish();
}

/// A broker with a 4,096-slot sender table (the std broker's default) and no
/// listener, and a datagram to send through it.
fn sender_broker() -> (HeapBroker, [u8; MAX_DATAGRAM_LEN], usize) {
    let broker = BrokerState::new(
        Config {
            hash_key: 11,
            ..Config::default()
        },
        vec![ListenerSlot::EMPTY; 1].into_boxed_slice(),
        vec![SenderSlot::EMPTY; 4096].into_boxed_slice(),
    );
    let (d, n) = datagram();
    (broker, d, n)
}

/// Writes sender `id` and sequence `seq` into datagram `d`.
fn stamp(d: &mut [u8; MAX_DATAGRAM_LEN], id: u64, seq: u32) {
    d[8..16].copy_from_slice(&id.to_be_bytes());
    d[16..20].copy_from_slice(&seq.to_be_bytes());
}

/// The loss detector's table: what a datagram costs when 1,000 known senders
/// take turns (each in order), and when every datagram comes from an id
/// never seen before into a full table (a churn of one-off ids, as forged
/// datagrams would be: each one evicts an entry).
fn senders(c: &mut Criterion) {
    let mut g = c.benchmark_group("senders");
    let (mut broker, mut d, n) = sender_broker();
    let steady = 1_000u64;
    let mut turn = 0u64;
    g.bench_function("steady_1000_of_4096", |b| {
        b.iter(|| {
            let id = turn % steady;
            let seq = u32::try_from(turn / steady + 1).unwrap_or(u32::MAX);
            turn += 1;
            stamp(&mut d, 0x5000 + id, seq);
            broker
                .handle_datagram(Instant::ZERO, black_box(&d[..n]))
                .map(|r| r.verdict)
        })
    });
    let (mut broker, mut d, n) = sender_broker();
    // a full table first, then one-off ids (xorshift: no pattern to exploit)
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..4096 {
        stamp(&mut d, next(), 1);
        broker.handle_datagram(Instant::ZERO, &d[..n]).unwrap();
    }
    g.bench_function("churn_new_ids_4096_full", |b| {
        b.iter(|| {
            stamp(&mut d, next(), 1);
            broker
                .handle_datagram(Instant::ZERO, black_box(&d[..n]))
                .map(|r| r.verdict)
        })
    });
    g.finish();
}

fn notifier(c: &mut Criterion) {
    // a sink nobody reads: the call cost is what is measured, not the send
    let sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let notifier = flagpost_std::Notifier::builder()
        .probe_delay(StdDuration::ZERO)
        .build(sink.local_addr().unwrap())
        .unwrap();
    c.bench_function("notifier/notify_status_update", |b| {
        b.iter(|| notifier.notify_status_update(None))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(StdDuration::from_millis(500)).measurement_time(StdDuration::from_secs(2));
    targets = flags, scheduler, wire, fan_out, routing, senders, notifier
}
criterion_main!(benches);
