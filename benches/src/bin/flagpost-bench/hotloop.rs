//! `flagpost-bench hotloop`: `notify_status_update` from a tight loop — the
//! call rate, and the listener's last wake after the last call, beside the
//! relay floor and the coalescing floors (whose sender is
//! `coalescer::BareCoalescer`), with the CPU each pipeline spends.

use std::net::UdpSocket;
use std::time::Duration;

use flagpost_benches::clock::now_ns;
use flagpost_benches::report::{self, Figure, Report, Rule, Section, Unit};
use flagpost_benches::Latency;
use flagpost_core::Notification;
use flagpost_std::Notifier;

use crate::coalescer::{BareCoalescer, Pacing};
use crate::ingest::send_notify;
use crate::measure::{add_quantiles, report_socket, warm_measure, BOTH, RELAY_TARGET};
use crate::{last_report, loopback, quiet, schedstat_ns, Participant, Relay, HOST};

/// A hot loop of `notify_status_update` calls from one thread: the call
/// rate, and how long after the last call the listener (another process)
/// wakes for the last time, beside the relay floor of this run and beside the
/// coalescing floors: the bare relay behind the simplest merging sender,
/// paced like the notifier, sleeping out the pace, and unpaced — and beside
/// that paced sender in front of Flagpost's broker and listener. The five
/// take turns round by round (the order rotating), with 50 relay-floor
/// samples after each turn, so that a noisy stretch of the machine hits all.
pub(crate) fn hotloop(rounds: u32, calls: u64, report: &mut Report) {
    println!(
        "\nhot loop: {calls} notify_status_update calls per round from one thread, {rounds} rounds"
    );
    let bare = Relay::spawn("_relay_b");
    let relay_sock = &bare.sock;
    let mut relay = |_| bare.send(&[0u8; 24]);
    let mut floor_samples = warm_measure(50, relay_sock, &mut relay);
    let broker = Participant::spawn("_broker", &[]);
    let (report_sock, report_addr) = report_socket();
    let _listener = Participant::spawn("_listener", &[broker.addr.to_string(), report_addr]);
    let notifier = Notifier::new(broker.addr).expect("notifier");
    let paced = BareCoalescer::new(bare.b.addr, Pacing::Watch, false);
    let sleeping = BareCoalescer::new(bare.b.addr, Pacing::Sleep, false);
    let unpaced = BareCoalescer::new(bare.b.addr, Pacing::None, false);
    let bare_to_broker = BareCoalescer::new(broker.addr, Pacing::Watch, true);
    let mut flagpost = HotRounds::default();
    let mut bare_paced = HotRounds::default();
    let mut bare_sleeping = HotRounds::default();
    let mut bare_unpaced = HotRounds::default();
    let mut bare_front = HotRounds::default();
    // (duration, datagrams sent) of each Flagpost round, replayed by the
    // stream floors
    let mut streams = Vec::new();
    // CPU of each pipeline: sender thread, first hop, second hop
    let me = std::process::id();
    let (mut cpu_flagpost, mut cpu_bare) = (CpuTally::default(), CpuTally::default());
    let snap_flagpost = || {
        [
            schedstat_ns(me, Some("flagpost-notifi")),
            broker.cpu_ns(),
            _listener.cpu_ns(),
        ]
    };
    let snap_bare = || {
        [
            schedstat_ns(me, Some("bare-paced")),
            bare.b.cpu_ns(),
            bare.c.cpu_ns(),
        ]
    };
    for r in 0..rounds {
        for turn in 0..5 {
            match (r + turn) % 5 {
                0 => {
                    let sent_before = notifier.stats().datagrams;
                    let cpu_before = snap_flagpost();
                    let duration = flagpost.round(calls, &report_sock, || {
                        notifier.notify_status_update(None);
                    });
                    let sent = notifier.stats().datagrams - sent_before;
                    cpu_flagpost.add(cpu_before, snap_flagpost(), sent);
                    streams.push((duration, sent));
                }
                1 => {
                    let sent_before = paced.sent();
                    let cpu_before = snap_bare();
                    bare_paced.round(calls, relay_sock, || paced.call());
                    cpu_bare.add(cpu_before, snap_bare(), paced.sent() - sent_before);
                }
                2 => {
                    bare_unpaced.round(calls, relay_sock, || unpaced.call());
                }
                3 => {
                    bare_sleeping.round(calls, relay_sock, || sleeping.call());
                }
                _ => {
                    bare_front.round(calls, &report_sock, || bare_to_broker.call());
                }
            }
            floor_samples.merge(warm_measure(50, relay_sock, &mut relay));
        }
    }
    let floor = floor_samples.latency;
    drop((paced, sleeping, unpaced, bare_to_broker, notifier));
    let (fp, bp) = (cpu_flagpost.per_datagram_us(), cpu_bare.per_datagram_us());
    println!(
        "  CPU per datagram (schedstat, µs): notifier thread {:.1}, broker {:.1}, listener {:.1} (sum {:.1}); bare paced sender {:.1}, relay B {:.1}, relay C {:.1} (sum {:.1})",
        fp[0], fp[1], fp[2], fp.iter().sum::<f64>(), bp[0], bp[1], bp[2], bp.iter().sum::<f64>()
    );
    // The same streams of datagrams, sent raw from a spinning thread with the
    // last one at the measured instant (no merging sender in front): into the
    // broker and listener, and into the bare relay.
    let fed = {
        let udp = UdpSocket::bind(loopback()).expect("bind");
        let mut seq = 0u32;
        paced_stream(&streams, &report_sock, || {
            seq += 1;
            send_notify(&udp, broker.addr, Notification::status(None), 0x7777, seq);
        })
    };
    let stream_floor = paced_stream(&streams, relay_sock, || relay(0));
    drop((_listener, broker, bare));
    let after = flagpost.latency();
    let coalescing = bare_paced.latency();
    let per_round = streams.iter().map(|s| s.1).sum::<u64>() / u64::from(rounds.max(1));
    println!(
        "  calls per second: median {:.1} M, slowest round {:.1} M (target ≥ 10 M); bare merging sender {:.1} M",
        flagpost.median_rate() / 1e6,
        flagpost.slowest_rate() / 1e6,
        bare_paced.median_rate() / 1e6,
    );
    for (name, l, f) in [
        ("listener's last wake after the last call", &after, &floor),
        (
            "  coalescing floor: bare sender paced like the notifier",
            &coalescing,
            &floor,
        ),
        (
            "  the same sleeping out the pace",
            &bare_sleeping.latency(),
            &floor,
        ),
        ("  the same unpaced", &bare_unpaced.latency(), &floor),
    ] {
        println!(
            "  {name}: p50 {:.1} µs, p99 {:.1} µs (relay floor {:.1} / {:.1}, ratio {:.2} / {:.2})",
            l.p50_us,
            l.p99_us,
            f.p50_us,
            f.p99_us,
            l.p50_us / f.p50_us,
            l.p99_us / f.p99_us
        );
    }
    let front = bare_front.latency();
    println!(
        "  the bare paced sender in front of the broker and listener: p50 {:.1} µs, p99 {:.1} µs (beside the coalescing floor {:.2} / {:.2})",
        front.p50_us,
        front.p99_us,
        front.p50_us / coalescing.p50_us,
        front.p99_us / coalescing.p99_us
    );
    println!(
        "  Flagpost beside the paced coalescing floor: ratio {:.2} / {:.2}; absorbed {}, lost {}",
        after.p50_us / coalescing.p50_us,
        after.p99_us / coalescing.p99_us,
        flagpost.absorbed,
        flagpost.lost
    );
    println!(
        "  the same streams sent raw, last send to last wake: broker and listener p50 {:.1} µs, p99 {:.1} µs; bare relay p50 {:.1} µs, p99 {:.1} µs; {per_round} datagrams per round",
        fed.p50_us, fed.p99_us, stream_floor.p50_us, stream_floor.p99_us,
    );
    report.add(
        Figure::new(
            Section::HotLoop,
            format!("calls per second, median of {rounds} rounds"),
            flagpost.median_rate(),
            Unit::PerSecond,
        )
        .target(Rule::AtLeast(10e6), "≥ 10 M calls/s"),
    );
    report.add(Figure::new(
        Section::HotLoop,
        "calls per second, slowest round",
        flagpost.slowest_rate(),
        Unit::PerSecond,
    ));
    add_quantiles(
        report,
        Section::HotLoop,
        "listener's last wake after the last call",
        (&after, "relay floor", &floor),
        Some((Rule::RatioAtMost(1.2), RELAY_TARGET, BOTH)),
    );
    add_quantiles(
        report,
        Section::HotLoop,
        "coalescing floor: last read after the last call",
        (&coalescing, "relay floor", &floor),
        None,
    );
    add_quantiles(
        report,
        Section::HotLoop,
        "listener's last wake after the last call, beside the coalescing floor",
        (&after, "coalescing floor", &coalescing),
        None,
    );
    add_quantiles(
        report,
        Section::HotLoop,
        "the bare paced sender in front of the broker and listener",
        (&front, "coalescing floor", &coalescing),
        None,
    );
    report.add(
        Figure::new(
            Section::HotLoop,
            "CPU per datagram: notifier thread + broker + listener",
            fp.iter().sum::<f64>(),
            Unit::Micros,
        )
        .floor("bare merging sender + relay", bp.iter().sum::<f64>()),
    );
    add_quantiles(
        report,
        Section::HotLoop,
        "coalescing floor sleeping out the pace: last read after the last call",
        (&bare_sleeping.latency(), "relay floor", &floor),
        None,
    );
    add_quantiles(
        report,
        Section::HotLoop,
        "coalescing floor unpaced: last read after the last call",
        (&bare_unpaced.latency(), "relay floor", &floor),
        None,
    );
    add_quantiles(
        report,
        Section::HotLoop,
        "broker and listener fed the same stream raw: last wake after the last send",
        (&fed, "bare relay fed it", &stream_floor),
        None,
    );
    report.note(
        Section::HotLoop,
        format!(
            "{} calls per round, {rounds} rounds, {per_round} datagrams sent per round; rounds whose last notification was absorbed by the wake before it: {}, with no wake reported: {}. The coalescing floor is the bare relay behind the simplest sender that merges calls, as the issue allows: a call is two atomic adds (a call counter and the count; and an unpark if the sender thread sleeps); the thread sends one datagram while the count is non-zero, paced like the notifier (at least {} µs apart, the gap doubling up to {} µs while calls keep coming, watching the call counter in between and sending early once no call has come for {} µs, at most every other datagram), or sleeping out the pace, or back to back (unpaced). Flagpost, the three floors and the bare paced sender in front of Flagpost's broker and listener (valid notifications) take turns round by round; after each turn come 50 relay-floor samples, the first two untimed (a warm-up: after the idle time between turns the first round trip pays for waking idle vCPUs). Each round's reports are read 50 ms after its last call, so that reading them does not take a CPU from the path being measured. The last row replays each Flagpost round with raw datagrams from a spinning thread, evenly spread and the last one sent at the measured instant, into the broker and into the bare relay. CPU per datagram is the kernel's accounting (`/proc/*/task/*/schedstat`) over the rounds: notifier thread {:.1} µs, broker {:.1}, listener {:.1}; bare sender {:.1}, relay B {:.1}, relay C {:.1}.",
            report::fmt_int(calls),
            flagpost.absorbed,
            flagpost.lost,
            Duration::from(HOST.pace).as_micros(),
            Duration::from(HOST.max_pace).as_micros(),
            Duration::from(HOST.quiet).as_micros(),
            fp[0],
            fp[1],
            fp[2],
            bp[0],
            bp[1],
            bp[2],
        ),
    );
}

/// CPU time of a three-stage pipeline (sender thread, first hop, second
/// hop) over some rounds, and the datagrams it carried.
#[derive(Default)]
struct CpuTally {
    ns: [u64; 3],
    datagrams: u64,
}

impl CpuTally {
    /// Adds a round: CPU ns of each stage before and after, and datagrams.
    fn add(&mut self, before: [u64; 3], after: [u64; 3], datagrams: u64) {
        for ((total, b), a) in self.ns.iter_mut().zip(before).zip(after) {
            *total += a.saturating_sub(b);
        }
        self.datagrams += datagrams;
    }

    /// µs of CPU per datagram, per stage.
    fn per_datagram_us(&self) -> [f64; 3] {
        self.ns
            .map(|ns| ns as f64 / self.datagrams.max(1) as f64 / 1e3)
    }
}

/// The rounds of one sender in the hot-loop bench.
#[derive(Default)]
struct HotRounds {
    after: Vec<u64>,
    rates: Vec<f64>,
    absorbed: u32,
    lost: u32,
}

impl HotRounds {
    /// One round: `calls` calls of `call` from this thread, then the reports
    /// on `sock` until 50 ms of quiet; records the last call to the last
    /// report. Returns the round's duration in ns.
    fn round(&mut self, calls: u64, sock: &UdpSocket, mut call: impl FnMut()) -> u64 {
        quiet(sock);
        let start = now_ns();
        for _ in 1..calls {
            call();
        }
        let last = now_ns();
        call();
        let end = now_ns();
        self.rates
            .push(calls as f64 / ((end - start).max(1) as f64 / 1e9));
        match last_report(sock) {
            Some(w) if w >= last => self.after.push((w - last).max(1)),
            // the last datagram landed while the reader was still taking the
            // previous one: one wake covered both
            Some(_) => self.absorbed += 1,
            None => self.lost += 1,
        }
        end - start
    }

    fn latency(&self) -> Latency {
        Latency::from_ns(self.after.iter().copied())
    }

    fn sorted_rates(&self) -> Vec<f64> {
        let mut r = self.rates.clone();
        r.sort_by(f64::total_cmp);
        r
    }

    fn median_rate(&self) -> f64 {
        let r = self.sorted_rates();
        r.get(r.len() / 2).copied().unwrap_or(0.0)
    }

    fn slowest_rate(&self) -> f64 {
        self.sorted_rates().first().copied().unwrap_or(0.0)
    }
}

/// For each `(duration ns, datagrams)` round, a spinning thread (holding a
/// CPU, as the hot loop does) calls `send` that many times evenly spread over
/// that duration; returns the time from the last call to the last report on
/// `report_sock`.
fn paced_stream(rounds: &[(u64, u64)], report_sock: &UdpSocket, mut send: impl FnMut()) -> Latency {
    let mut after = Vec::with_capacity(rounds.len());
    for &(duration, datagrams) in rounds {
        quiet(report_sock);
        let n = datagrams.max(1);
        let pace = duration / n;
        let start = now_ns();
        let mut last = start;
        for i in 0..n {
            let due = start + i * pace;
            while now_ns() < due {
                std::hint::spin_loop();
            }
            last = now_ns();
            send();
        }
        if let Some(r) = last_report(report_sock) {
            after.push(r.saturating_sub(last));
        }
    }
    Latency::from_ns(after)
}
