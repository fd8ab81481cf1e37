//! The wake-latency measurement every latency figure shares (`measure`, and
//! its warmed and interleaved forms) and the helpers that turn a latency
//! into report rows: quantiles, their targets, the report socket.

use std::net::UdpSocket;

use flagpost_benches::clock::now_ns;
use flagpost_benches::report::{Figure, Report, Rule, Section, Unit};
use flagpost_benches::{Latency, Measured};

use crate::REPORT_TIMEOUT;

/// Sends `samples` triggers one at a time; each reported wake stamp minus
/// the send stamp is a sample. Lost reports are counted, not recorded.
pub(crate) fn measure(samples: u32, report: &UdpSocket, mut trigger: impl FnMut(u32)) -> Measured {
    let mut h = flagpost_benches::latency_histogram();
    report
        .set_read_timeout(Some(REPORT_TIMEOUT))
        .expect("timeout");
    let mut lost = 0;
    let mut buf = [0u8; 16];
    for i in 0..samples {
        let sent = now_ns();
        trigger(i);
        match report.recv(&mut buf) {
            Ok(8) => {
                let woke = u64::from_be_bytes(buf[..8].try_into().expect("8 bytes"));
                let _ = h.record(woke.saturating_sub(sent).max(1));
            }
            _ => lost += 1,
        }
    }
    Measured::new(h, lost)
}

/// [`measure`] after two untimed samples. After the idle time between two
/// hot-loop turns, the first round trip pays for waking idle vCPUs (a block
/// of 50 relay-floor samples then had p99 144–184 µs, against 61–68 µs
/// warm); a hot loop's last wake comes amid its traffic, with vCPUs idle
/// for microseconds at most.
pub(crate) fn warm_measure(
    samples: u32,
    report: &UdpSocket,
    trigger: &mut impl FnMut(u32),
) -> Measured {
    let _ = measure(2, report, &mut *trigger);
    measure(samples, report, trigger)
}

/// Measures two paths through the same listener alternately, `BLOCK`
/// samples at a time, so both see the same conditions of a shared machine.
pub(crate) fn interleaved(
    samples: u32,
    report: &UdpSocket,
    a: &mut impl FnMut(u32),
    b: &mut impl FnMut(u32),
) -> (Measured, Measured) {
    const BLOCK: u32 = 100;
    let merge = |into: &mut Option<Measured>, m: Measured| match into {
        Some(t) => t.merge(m),
        None => *into = Some(m),
    };
    let (mut ma, mut mb) = (None, None);
    let mut done = 0;
    while done < samples {
        let n = BLOCK.min(samples - done);
        merge(&mut ma, measure(n, report, &mut *a));
        merge(&mut mb, measure(n, report, &mut *b));
        done += n;
    }
    let empty = || measure(0, report, |_| {});
    (ma.unwrap_or_else(empty), mb.unwrap_or_else(empty))
}

/// Which quantiles of [`add_quantiles`] carry its target.
pub(crate) const P99: &[&str] = &["p99"];
pub(crate) const BOTH: &[&str] = &["p50", "p99"];

/// The p50 and p99 rows ("{what}: p50", "{what}: p99") of a latency beside
/// its floor: `(value, floor label, floor)`; the target, if any, on the
/// quantiles it names.
pub(crate) fn add_quantiles(
    report: &mut Report,
    section: Section,
    what: &str,
    (value, floor_label, floor): (&Latency, &str, &Latency),
    target: Option<(Rule, &'static str, &[&str])>,
) {
    for (q, quantile) in [("p50", p50 as fn(&Latency) -> f64), ("p99", p99)] {
        let figure = Figure::new(
            section,
            format!("{what}: {q}"),
            us(value, quantile),
            Unit::Micros,
        )
        .floor(floor_label, us(floor, quantile));
        report.add(match target {
            Some((rule, text, on)) if on.contains(&q) => figure.target(rule, text),
            _ => figure,
        });
    }
}

/// A latency quantile in µs, or NaN when nothing was measured (so that no
/// target counts as met on an empty histogram).
pub(crate) fn us(l: &Latency, quantile: fn(&Latency) -> f64) -> f64 {
    if l.samples == 0 {
        f64::NAN
    } else {
        quantile(l)
    }
}

pub(crate) fn p50(l: &Latency) -> f64 {
    l.p50_us
}

pub(crate) fn p99(l: &Latency) -> f64 {
    l.p99_us
}

pub(crate) fn p999(l: &Latency) -> f64 {
    l.p999_us
}

pub(crate) const RELAY_TARGET: &str = "≤ 1.2× the relay floor";

/// [`flagpost_benches::report_socket`], for this binary: its address as the
/// string a child takes as an argument.
pub(crate) fn report_socket() -> (UdpSocket, String) {
    let (s, a) = flagpost_benches::report_socket().expect("report socket");
    (s, a.to_string())
}

/// Prints the header of a latency table whose first column is `width` wide.
pub(crate) fn latency_header(width: usize) {
    println!(
        "{:<width$} {:>8} {:>8} {:>8} {:>9} {:>6}",
        "path", "p50", "p99", "p99.9", "max", "lost"
    );
}

/// Prints one row of such a table: `name`'s quantiles (µs) and lost samples.
pub(crate) fn latency_row(width: usize, name: &str, m: &Measured) {
    let l = &m.latency;
    println!(
        "{name:<width$} {:>8.1} {:>8.1} {:>8.1} {:>9.1} {:>6}",
        l.p50_us, l.p99_us, l.p999_us, l.max_us, m.lost
    );
}
