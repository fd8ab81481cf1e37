//! Kernel memory per stuck listener: a broker with a short
//! `stuck_timeout`, two farms of K raw listeners (default socket buffers;
//! the receive buffer Flagpost's own `Listener` asks for) that read while
//! status notifications reach them,
//! then stop reading at a recorded instant while the notifications keep
//! coming — at a steady 1,000 per second, and (with a fresh broker and
//! farms) at full speed from one thread.
//!
//! Every 100 ms the broker's side of each connection is sampled
//! ([`super::sockets`]): the bytes queued for it (Send-Q) and the memory
//! its write queue holds (`ss`'s `w`), and whether it is still
//! ESTABLISHED. The first sample that finds it closed (or gone) is when
//! the broker closed it; minus the instant its farm stopped reading and
//! minus `stuck_timeout`, that is how late the close was. A connection
//! still open when the observation ends (`stuck_timeout` plus a margin
//! after the stop) makes the figure a lower bound. Sockets the broker has
//! closed with bytes queued stay sampled (orphans hold their memory).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use flagpost_benches::clock::now_ns;
use flagpost_benches::farm::{Channels, FarmSpec};
use flagpost_benches::report::{fmt_num, Figure, Report, Rule, Section, Table, Unit};
use flagpost_core::{FlagSet, Notification};

use super::farm::ScaleFarm;
use super::send::{Background, Mix};
use super::sockets::sample;
use super::{int, Counters};
use crate::Participant;

/// Between two samples of the broker's sockets.
const SAMPLE: Duration = Duration::from_millis(100);
/// The small receive buffer of the second client.
const SMALL_RCVBUF: usize = flagpost_std::listener::RECV_BUFFER;

/// Sizes of the scenario.
pub(crate) struct Sizes {
    /// Listeners per client variant.
    pub(crate) listeners: usize,
    /// The broker's `stuck_timeout`.
    pub(crate) stuck_timeout: Duration,
    /// How long after `stuck_timeout` the observation goes on.
    pub(crate) margin: Duration,
    /// How long the listeners read before they stop.
    pub(crate) reading: Duration,
    /// The steady rate, notifications per second.
    pub(crate) steady_rate: f64,
}

impl Sizes {
    pub(crate) fn full() -> Sizes {
        Sizes {
            listeners: 100,
            stuck_timeout: Duration::from_secs(5),
            margin: Duration::from_secs(5),
            reading: Duration::from_millis(500),
            steady_rate: 1000.0,
        }
    }

    pub(crate) fn quick() -> Sizes {
        Sizes {
            listeners: 10,
            stuck_timeout: Duration::from_secs(2),
            margin: Duration::from_millis(1100),
            reading: Duration::from_millis(300),
            steady_rate: 1000.0,
        }
    }
}

/// What one connection showed.
#[derive(Clone, Copy, Default)]
struct Seen {
    max_send_q: u64,
    max_wmem: Option<u64>,
    closed_at: Option<u64>,
    last_send_q: u64,
    /// The listener's own receive queue (its side of the connection).
    max_recv_q: u64,
}

/// One client variant under one traffic.
struct Variant {
    client: &'static str,
    stopped_at: u64,
    conns: HashMap<u16, Seen>,
    /// The largest sum of Send-Q over its connections in one sample.
    peak_total: u64,
    read_before: u64,
    /// The last sample (ns).
    until: u64,
}

pub(crate) fn run(sizes: &Sizes, report: &mut Report) {
    println!(
        "\nstuck listeners: stuck_timeout {} s, {} listeners per client, sampled every {} ms",
        sizes.stuck_timeout.as_secs_f64(),
        sizes.listeners,
        SAMPLE.as_millis()
    );
    let mut table = Table::new(
        "Each traffic and client (bytes per listener; close times after `stuck_timeout`, from the instant its farm stopped reading).",
        &[
            ("traffic", false),
            ("client", false),
            ("notifications/s", true),
            ("Send-Q max", true),
            ("Send-Q mean at peak", true),
            ("skmem w max", true),
            ("Send-Q at the end", true),
            ("listener's Recv-Q max", true),
            ("closed", true),
            ("first close", true),
            ("last close", true),
        ],
    );
    let mut closes_stuck = Vec::new();
    for steady in [true, false] {
        let traffic = if steady {
            format!("{} /s", fmt_num(sizes.steady_rate))
        } else {
            "full speed".to_owned()
        };
        let (variants, sent, closes) = observe(sizes, steady.then_some(sizes.steady_rate));
        closes_stuck.push(format!("{traffic}: {closes}"));
        for v in &variants {
            record(sizes, &traffic, v, sent, report, &mut table);
        }
    }
    report.add_table(Section::Stuck, table);
    report.note(
        Section::Stuck,
        format!(
            "{} raw listeners per client (all channels, every flag), read for {} ms, then not at all; untargeted status notifications from one thread; `stuck_timeout` {} s; observed until {} s after it. The broker's own count of stuck closes (both clients): {}. A close not seen by the end counts as the end (a lower bound: ≥).",
            sizes.listeners,
            sizes.reading.as_millis(),
            fmt_num(sizes.stuck_timeout.as_secs_f64()),
            fmt_num(sizes.margin.as_secs_f64()),
            closes_stuck.join(", ")
        ),
    );
}

/// One traffic (`rate` per second, or full speed): a fresh broker and the
/// two farms, observed until every connection closed or the margin ran
/// out. Returns the variants, the notifications sent per second and the
/// broker's stuck closes.
fn observe(sizes: &Sizes, rate: Option<f64>) -> (Vec<Variant>, f64, u64) {
    let stuck_ms = sizes.stuck_timeout.as_millis().to_string();
    let mut broker = Participant::spawn("_broker", &["--stuck-ms".into(), stuck_ms]);
    let (pid, port) = (broker.child.id(), broker.addr.port());
    let mut farms: Vec<(&'static str, ScaleFarm)> = [
        ("default buffers", None),
        ("Flagpost's SO_RCVBUF", Some(SMALL_RCVBUF)),
    ]
    .into_iter()
    .map(|(name, rcvbuf)| {
        let spec = FarmSpec {
            recv_buffer: rcvbuf,
            ..FarmSpec::flagpost(FlagSet::ALL, Channels::All)
        };
        (name, ScaleFarm::spawn(broker.addr, sizes.listeners, &spec))
    })
    .collect();
    let mix: Mix = [Notification::status(None)].into();
    let senders = Background::start(broker.addr, &mix, 1, rate);
    std::thread::sleep(sizes.reading);
    let mut variants: Vec<Variant> = farms
        .iter_mut()
        .map(|(client, farm)| {
            let read_before = farm.count();
            let ports = farm.ports();
            Variant {
                client,
                stopped_at: farm.idle(),
                conns: ports.into_iter().map(|p| (p, Seen::default())).collect(),
                peak_total: 0,
                read_before,
                until: 0,
            }
        })
        .collect();
    let last_stop = variants.iter().map(|v| v.stopped_at).max().unwrap_or(0);
    let end = last_stop + (sizes.stuck_timeout + sizes.margin).as_nanos() as u64;
    let mut next = Instant::now();
    loop {
        let now = now_ns();
        let now_sample = sample(pid, port);
        let socks = &now_sample.broker;
        for v in &mut variants {
            for (p, seen) in v.conns.iter_mut() {
                let rq = now_sample.client_recv_q.get(p).copied().unwrap_or(0);
                seen.max_recv_q = seen.max_recv_q.max(rq);
            }
            let mut total = 0;
            let mut present = 0;
            for s in socks {
                let Some(seen) = v.conns.get_mut(&s.peer_port) else {
                    continue;
                };
                present += 1;
                total += s.send_q;
                seen.max_send_q = seen.max_send_q.max(s.send_q);
                seen.last_send_q = s.send_q;
                if let Some(w) = s.wmem {
                    seen.max_wmem = Some(seen.max_wmem.map_or(w, |m| m.max(w)));
                }
                if !s.established && seen.closed_at.is_none() {
                    seen.closed_at = Some(now);
                }
            }
            v.peak_total = v.peak_total.max(total);
            if present < v.conns.len() {
                // gone from the table: closed (and its bytes freed)
                let here: Vec<u16> = socks.iter().map(|s| s.peer_port).collect();
                for (p, seen) in v.conns.iter_mut() {
                    if !here.contains(p) {
                        seen.closed_at.get_or_insert(now);
                        seen.last_send_q = 0;
                    }
                }
            }
        }
        for v in &mut variants {
            v.until = now;
        }
        let all_closed = variants
            .iter()
            .all(|v| v.conns.values().all(|s| s.closed_at.is_some()));
        if all_closed || now >= end {
            break;
        }
        next += SAMPLE;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let sent = senders.stop();
    let closes = Counters::query(&mut broker).closes_stuck;
    drop(farms);
    (variants, sent.rate(), closes)
}

/// Prints one variant and adds its figures and row.
fn record(
    sizes: &Sizes,
    traffic: &str,
    v: &Variant,
    sent_rate: f64,
    report: &mut Report,
    table: &mut Table,
) {
    let k = v.conns.len().max(1) as u64;
    let max_send_q = v.conns.values().map(|s| s.max_send_q).max().unwrap_or(0);
    let max_wmem = v.conns.values().filter_map(|s| s.max_wmem).max();
    let end_send_q = v.conns.values().map(|s| s.last_send_q).sum::<u64>() / k;
    let max_recv_q = v.conns.values().map(|s| s.max_recv_q).max().unwrap_or(0);
    let stuck_ns = sizes.stuck_timeout.as_nanos() as u64;
    let late = |at: u64| (at as f64 - v.stopped_at as f64 - stuck_ns as f64) / 1e9;
    let closed: Vec<f64> = v
        .conns
        .values()
        .filter_map(|s| s.closed_at)
        .map(late)
        .collect();
    let open = v.conns.len() - closed.len();
    let first = closed.iter().copied().fold(f64::INFINITY, f64::min);
    // a connection never seen closed: the end of the observation, at least
    let last = if open > 0 {
        late(v.until)
    } else {
        closed.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    };
    let bound = if open > 0 { "≥ " } else { "" };
    println!(
        "  {traffic:<11} {:<16} read {} frames first; Send-Q max {} B/listener (mean at peak {}), skmem w max {}, at the end {} B; the listener's Recv-Q max {} B; closed {} of {}, last {bound}{:.2} s after stuck_timeout",
        v.client,
        v.read_before,
        int(max_send_q),
        int(v.peak_total / k),
        max_wmem.map_or("—".into(), int),
        int(end_send_q),
        int(max_recv_q),
        closed.len(),
        v.conns.len(),
        last,
    );
    let secs = |s: f64| {
        if s.is_finite() {
            format!("{} s", fmt_num(s))
        } else {
            "—".into()
        }
    };
    table.row(vec![
        traffic.into(),
        v.client.into(),
        fmt_num(sent_rate),
        int(max_send_q),
        int(v.peak_total / k),
        max_wmem.map_or("—".into(), int),
        int(end_send_q),
        int(max_recv_q),
        format!("{} of {}", closed.len(), v.conns.len()),
        secs(first),
        format!("{bound}{}", secs(last)),
    ]);
    let what = format!("{traffic}, {}", v.client);
    let section = Section::Stuck;
    report.add(
        Figure::new(
            section,
            format!("{what}: broker Send-Q per stuck listener, max"),
            max_send_q as f64,
            Unit::Bytes,
        )
        .target(Rule::AtMost(1024.0), "≤ 1 KiB queued per listener"),
    );
    if let Some(w) = max_wmem {
        report.add(Figure::new(
            section,
            format!("{what}: broker socket write memory (skmem w) per stuck listener, max"),
            w as f64,
            Unit::Bytes,
        ));
    }
    report.add(
        Figure::new(
            section,
            format!(
                "{what}: stuck close after stuck_timeout, slowest{}",
                if open > 0 {
                    " (not closed: a lower bound)"
                } else {
                    ""
                }
            ),
            last,
            Unit::Seconds,
        )
        .target(Rule::AtMost(1.0), "within stuck_timeout + 1 s"),
    );
}
