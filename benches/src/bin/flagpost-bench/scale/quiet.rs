//! A quiet channel under flood: 10,000 idle listeners, ten per channel
//! over 1,000 channels; one of those channels flooded with raw status
//! datagrams at full speed from one thread, then from two; and, from a
//! socket and sender id of its own, a channel update to another channel
//! (`quiet`) every 100 ms, which one Flagpost `Listener` (its own process,
//! interest *channel update*, channel `quiet`) stamps when it wakes.
//!
//! A send's latency is to the first wake stamped at or after it (a wake
//! whose flags coalesced two updates answers both); a send with no such
//! wake within [`LOSS`] is lost. The same is measured with no flood (the
//! same listeners connected) in the same run, and through the bare relay
//! (`_flood_relay_b`: UDP → TCP → a blocked reader) whose socket takes the
//! same flood. During each flood the broker's counters give the datagrams
//! it processed, the kernel's drops and the possible-loss raises (each one
//! status for every listener).

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use flagpost_benches::clock::now_ns;
use flagpost_benches::farm::{per_ten_channel, Channels, FarmSpec};
use flagpost_benches::report::{fmt_num, Figure, Report, Rule, Section, Table, Unit};
use flagpost_benches::{latency_histogram, Latency, Measured};
use flagpost_core::{ChannelId, FlagSet, Notification};

use super::farm::ScaleFarm;
use super::send::{fresh_sender, Background, Mix};
use super::{int, settle, Counters};
use crate::{add_quantiles, Participant, Relay};

/// A send with no wake within this is lost.
const LOSS: Duration = Duration::from_secs(1);
/// The flood runs this long before the first sample.
const SPIN_UP: Duration = Duration::from_millis(200);

/// Sizes of the scenario.
pub(crate) struct Sizes {
    /// Idle listeners, ten per channel.
    pub(crate) listeners: usize,
    /// Quiet updates per path and load.
    pub(crate) samples: u32,
    /// Between two quiet updates.
    pub(crate) interval: Duration,
    /// Longest wait for the broker to drain after a flood.
    pub(crate) settle: Duration,
}

impl Sizes {
    pub(crate) fn full() -> Sizes {
        Sizes {
            listeners: 10_000,
            samples: 100,
            interval: Duration::from_millis(100),
            settle: Duration::from_secs(3),
        }
    }

    pub(crate) fn quick() -> Sizes {
        Sizes {
            listeners: 1_000,
            samples: 4,
            interval: Duration::from_millis(100),
            settle: Duration::from_millis(200),
        }
    }
}

/// One path under one load.
struct Run {
    measured: Measured,
    /// The broker's counters over the samples (Flagpost only).
    counters: Option<(Counters, f64)>,
    /// Flood datagrams sent per second.
    flood_rate: f64,
}

pub(crate) fn run(sizes: &Sizes, report: &mut Report) {
    let n = sizes.listeners;
    println!(
        "\nquiet channel under flood: {} idle listeners (ten per channel), a channel update to `quiet` every {} ms, {} per path and load",
        int(n as u64),
        sizes.interval.as_millis(),
        sizes.samples
    );
    let mut broker = Participant::spawn("_broker", &[]);
    let mut farm = ScaleFarm::spawn(
        broker.addr,
        n,
        &FarmSpec::flagpost(FlagSet::ALL, Channels::PerTen),
    );
    farm.idle();
    let (report_sock, report_addr) = crate::report_socket();
    let _listener = Participant::spawn(
        "_listener",
        &[
            broker.addr.to_string(),
            report_addr,
            "quiet".into(),
            FlagSet::CHANNEL_UPDATE.bits().to_string(),
        ],
    );
    let relay = Relay::spawn("_flood_relay_b");
    let flood: Mix = [Notification::status(Some(per_ten_channel(0)))].into();
    let quiet = ChannelId::new("quiet").expect("channel");
    let trigger = UdpSocket::bind(crate::loopback()).expect("bind");
    let (sender, mut seq) = (fresh_sender(), 0u32);
    let broker_addr = broker.addr;
    let mut runs: Vec<(usize, Run, Run)> = Vec::new();
    for threads in [0usize, 1, 2] {
        // Flagpost
        let senders = (threads > 0).then(|| Background::start(broker_addr, &flood, threads, None));
        if senders.is_some() {
            std::thread::sleep(SPIN_UP);
        }
        let before = Counters::query(&mut broker);
        let started = Instant::now();
        let measured = cadence(sizes, &report_sock, || {
            seq += 1;
            crate::send_notify(
                &trigger,
                broker_addr,
                Notification::channel_update(quiet),
                sender,
                seq,
            );
        });
        let during = Counters::query(&mut broker).since(before);
        let secs = started.elapsed().as_secs_f64();
        let flood_rate = senders.map_or(0.0, |s| s.stop().rate());
        // drops are seen with the next datagram read: count them drained
        let drained = settle(&mut broker, sizes.settle).since(before);
        let flagpost = Run {
            measured,
            counters: Some((
                Counters {
                    datagrams: during.datagrams,
                    ..drained
                },
                secs,
            )),
            flood_rate,
        };
        // the bare relay under the same flood
        let senders = (threads > 0).then(|| Background::start(relay.b.addr, &flood, threads, None));
        if senders.is_some() {
            std::thread::sleep(SPIN_UP);
        }
        let measured = cadence(sizes, &relay.sock, || relay.send(&[1u8; 8]));
        let floor = Run {
            measured,
            counters: None,
            flood_rate: senders.map_or(0.0, |s| s.stop().rate()),
        };
        print_run("Flagpost", threads, &flagpost);
        print_run("bare relay", threads, &floor);
        runs.push((threads, flagpost, floor));
    }
    drop(relay);
    record(sizes, &runs, report);
}

/// `samples` quiet sends, `interval` apart, while reading the wake stamps
/// `sock` receives; then each send's latency to the first wake at or after
/// it.
fn cadence(sizes: &Sizes, sock: &UdpSocket, mut send: impl FnMut()) -> Measured {
    crate::quiet(sock); // a previous run's stragglers
    let mut sends = Vec::with_capacity(sizes.samples as usize);
    let mut wakes = Vec::new();
    let start = Instant::now();
    for i in 0..sizes.samples {
        collect(sock, start + sizes.interval * i, &mut wakes);
        sends.push(now_ns());
        send();
    }
    // the last send's wake, or its loss
    let last = sends.last().copied().unwrap_or(0);
    let deadline = Instant::now() + LOSS;
    while !wakes.iter().any(|&w| w >= last) && Instant::now() < deadline {
        collect(
            sock,
            (Instant::now() + Duration::from_millis(10)).min(deadline),
            &mut wakes,
        );
    }
    matched(&sends, &mut wakes)
}

/// Reads wake stamps from `sock` until `until`.
fn collect(sock: &UdpSocket, until: Instant, wakes: &mut Vec<u64>) {
    let mut buf = [0u8; 16];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let _ = sock.set_read_timeout(Some(left.max(Duration::from_micros(1))));
        match sock.recv(&mut buf) {
            Ok(8) => wakes.push(u64::from_be_bytes(buf[..8].try_into().expect("8 bytes"))),
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

/// Each send's latency to the first wake at or after it; lost when there
/// is none within [`LOSS`].
fn matched(sends: &[u64], wakes: &mut [u64]) -> Measured {
    wakes.sort_unstable();
    let mut h = latency_histogram();
    let mut lost = 0;
    for &s in sends {
        let i = wakes.partition_point(|&w| w < s);
        match wakes.get(i) {
            Some(&w) if w - s <= LOSS.as_nanos() as u64 => {
                let _ = h.record((w - s).max(1));
            }
            _ => lost += 1,
        }
    }
    Measured::new(h, lost)
}

fn load_name(threads: usize) -> String {
    match threads {
        0 => "unloaded".into(),
        1 => "flood from 1 thread".into(),
        t => format!("flood from {t} threads"),
    }
}

fn print_run(path: &str, threads: usize, r: &Run) {
    let l = &r.measured.latency;
    let us = |v: f64| {
        if l.samples == 0 {
            "—".to_owned()
        } else {
            format!("{v:.1}")
        }
    };
    print!(
        "  {path:<11} {:<22} p50 {:>8} µs  p99 {:>9} µs  max {:>9} µs  lost {}",
        load_name(threads),
        us(l.p50_us),
        us(l.p99_us),
        us(l.max_us),
        r.measured.lost
    );
    if let Some((c, secs)) = &r.counters {
        print!(
            "  | broker {:.0} datagrams/s, kernel drops {}, possible-loss raises {}",
            c.datagrams as f64 / secs.max(1e-9),
            c.kernel_drops,
            c.possible_losses
        );
    }
    println!();
}

fn record(sizes: &Sizes, runs: &[(usize, Run, Run)], report: &mut Report) {
    let section = Section::QuietFlood;
    let mut table = Table::new(
        "Each path and load (latency in µs; the broker's counters over the samples).",
        &[
            ("path", false),
            ("load", false),
            ("p50", true),
            ("p99", true),
            ("max", true),
            ("lost", true),
            ("flood sent/s", true),
            ("broker datagrams/s", true),
            ("kernel drops", true),
            ("possible-loss raises", true),
        ],
    );
    let empty = || Measured::new(latency_histogram(), 0);
    let unloaded = runs.iter().find(|r| r.0 == 0);
    let (base, floor_base) = unloaded.map_or((empty(), empty()), |(_, f, b)| {
        (f.measured.clone(), b.measured.clone())
    });
    for (threads, flagpost, floor) in runs {
        for (path, r) in [("Flagpost", flagpost), ("bare relay", floor)] {
            let l = &r.measured.latency;
            let (datagrams, drops, losses) = r.counters.map_or(
                (String::new(), String::new(), String::new()),
                |(c, secs)| {
                    (
                        fmt_num(c.datagrams as f64 / secs.max(1e-9)),
                        int(c.kernel_drops),
                        int(c.possible_losses),
                    )
                },
            );
            table.row(vec![
                path.into(),
                load_name(*threads),
                fmt_num(l.p50_us),
                fmt_num(l.p99_us),
                fmt_num(l.max_us),
                int(u64::from(r.measured.lost)),
                if *threads == 0 {
                    String::new()
                } else {
                    fmt_num(r.flood_rate)
                },
                datagrams,
                drops,
                losses,
            ]);
        }
        if *threads == 0 {
            continue;
        }
        let load = load_name(*threads);
        let m = &flagpost.measured;
        add_quantiles(
            report,
            section,
            &format!("quiet listener, {load}"),
            (&m.latency, "unloaded", &base.latency),
            Some((Rule::RatioAtMost(2.0), "≤ 2× unloaded", crate::P99)),
        );
        report.add(
            Figure::new(
                section,
                format!("quiet listener, {load}: max"),
                max(&m.latency),
                Unit::Micros,
            )
            .floor("unloaded", max(&base.latency)),
        );
        report.add(
            Figure::new(
                section,
                format!("quiet listener, {load}: updates lost (no wake within 1 s)"),
                f64::from(m.lost),
                Unit::Count,
            )
            .target(Rule::AtMost(0.0), "none lost"),
        );
        if let Some((c, secs)) = flagpost.counters {
            report.add(Figure::new(
                section,
                format!("broker, {load}: datagrams processed per second"),
                c.datagrams as f64 / secs.max(1e-9),
                Unit::PerSecond,
            ));
            report.add(Figure::new(
                section,
                format!("broker, {load}: kernel drops"),
                c.kernel_drops as f64,
                Unit::Count,
            ));
            report.add(Figure::new(
                section,
                format!("broker, {load}: possible-loss raises"),
                c.possible_losses as f64,
                Unit::Count,
            ));
        }
        add_quantiles(
            report,
            section,
            &format!("bare relay, {load}"),
            (
                &floor.measured.latency,
                "bare relay unloaded",
                &floor_base.latency,
            ),
            None,
        );
    }
    report.add_table(section, table);
    report.note(
        section,
        format!(
            "{} idle listeners (ten per channel over {} channels, welcomed, never read); the flood is raw status datagrams to one of those channels, from this process; {} quiet updates per path and load, {} ms apart, the flood running {} ms before the first. Unloaded: the quiet listener p50 {} µs, p99 {} µs, lost {}.",
            int(sizes.listeners as u64),
            int(sizes.listeners.div_ceil(10) as u64),
            sizes.samples,
            sizes.interval.as_millis(),
            SPIN_UP.as_millis(),
            fmt_num(base.latency.p50_us),
            fmt_num(base.latency.p99_us),
            base.lost
        ),
    );
}

/// The largest sample, or NaN when there was none.
fn max(l: &Latency) -> f64 {
    if l.samples == 0 {
        f64::NAN
    } else {
        l.max_us
    }
}
