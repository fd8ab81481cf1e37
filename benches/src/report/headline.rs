//! The one-screen summary that leads `BENCHMARKS.md`: one row per headline
//! figure — Flagpost's value, its floor, the best peer, the target and
//! whether it is met — taken from the same run's figures, peers and
//! criterion medians, and put between [`SUMMARY_BEGIN_MARKER`] and
//! [`SUMMARY_END_MARKER`](super::SUMMARY_END_MARKER) at the top of the file.
//! A figure the run did not measure is a "—".
//!
//! [`SUMMARY_BEGIN_MARKER`]: super::SUMMARY_BEGIN_MARKER

use std::fmt::Write as _;

use super::fmt::{cell, verdict};
use super::micro::{fmt_ns, micro_target};
use super::peer_run::below_every_peer;
use super::{Figure, Micro, PeerRun, Report, Section, SystemFigures, Unit};
use crate::Latency;

/// What the best peer is for a row, if the peers measure it.
#[derive(Clone, Copy)]
enum Peer {
    /// The lowest wake latency at this quantile; also a target (below
    /// every peer).
    Wake(fn(&Latency) -> f64),
    /// The least idle memory per subscriber; also a target.
    IdleBytes,
}

/// A row taken from a figure of the run.
struct Row {
    label: &'static str,
    section: Section,
    /// The figure's `what`, or the start of it (round counts vary).
    what: &'static str,
    peer: Option<Peer>,
}

const ROWS: &[Row] = &[
    Row {
        label: "wake latency p50 (`Notifier`)",
        section: Section::Wake,
        what: "Flagpost, `Notifier`: p50",
        peer: Some(Peer::Wake(|l| l.p50_us)),
    },
    Row {
        label: "wake latency p99 (`Notifier`)",
        section: Section::Wake,
        what: "Flagpost, `Notifier`: p99",
        peer: Some(Peer::Wake(|l| l.p99_us)),
    },
    Row {
        label: "ingest, 1 sender",
        section: Section::Ingest,
        what: "broker, 1 sender: datagrams per second",
        peer: None,
    },
    Row {
        label: "ingest CPU, 1 sender",
        section: Section::Ingest,
        what: "broker, 1 sender: CPU s per million datagrams",
        peer: None,
    },
    Row {
        label: "fan-out to 10,000 p99",
        section: Section::FanOut,
        what: "N = 10,000: p99",
        peer: None,
    },
    Row {
        label: "fan-out to 19,000 p99",
        section: Section::FanOut,
        what: "N = 19,000: p99",
        peer: None,
    },
    Row {
        label: "broker RSS per idle listener (10,000)",
        section: Section::Memory,
        what: "broker RSS per idle listener, N = 10,000",
        peer: Some(Peer::IdleBytes),
    },
    Row {
        label: "idle broker wake-ups per second",
        section: Section::Idle,
        what: "broker wake-ups per second",
        peer: None,
    },
    Row {
        label: "`notify_*` calls per second (median round)",
        section: Section::HotLoop,
        what: "calls per second, median",
        peer: None,
    },
    Row {
        label: "hot loop: last wake after the last call p50",
        section: Section::HotLoop,
        what: "listener's last wake after the last call: p50",
        peer: None,
    },
    Row {
        label: "hot loop: last wake after the last call p99",
        section: Section::HotLoop,
        what: "listener's last wake after the last call: p99",
        peer: None,
    },
    Row {
        label: "flood: frames per datagram per listener",
        section: Section::Flood,
        what: "frames per flood datagram, per flooded listener",
        peer: None,
    },
    Row {
        label: "flood: quiet listener p99",
        section: Section::Flood,
        what: "quiet listener under the flood: p99",
        peer: None,
    },
];

/// The criterion rows: the benchmark, its floor benchmark.
const MICRO_ROWS: &[(&str, &str, &str)] = &[
    (
        "check when clear",
        "flags/check_clear",
        "flags/floor_relaxed_load",
    ),
    ("raise", "flags/raise_already_raised", "flags/floor_swap"),
];

/// The summary table (without the marker lines).
pub(super) fn render_headline(report: &Report, micro: &Micro) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| figure | Flagpost | floor | best peer | target | met |\n|---|---:|---:|---:|---|---|"
    );
    for row in ROWS {
        let figure = report
            .figures()
            .iter()
            .find(|f| f.section == row.section && f.what.starts_with(row.what));
        let peers = row
            .peer
            .and_then(|p| report.peers.as_ref().map(|run| (p, run)));
        render_row(&mut md, row.label, figure, peers);
    }
    for &(label, id, floor_id) in MICRO_ROWS {
        let median = |id: &str| {
            micro
                .figures
                .iter()
                .find(|f| f.id == id)
                .map(|f| f.median_ns)
        };
        let value = median(id);
        let (target, met) = match (micro_target(id), value) {
            (Some((bound, text)), Some(v)) => (text.to_owned(), verdict(Some(v <= bound))),
            (Some((_, text)), None) => (text.to_owned(), "—"),
            (None, _) => ("—".to_owned(), "—"),
        };
        let _ = writeln!(
            md,
            "| {label} (criterion median) | {} | {} | — | {} | {met} |",
            value.map_or("—".into(), fmt_ns),
            median(floor_id).map_or("—".into(), fmt_ns),
            cell(&target)
        );
    }
    if report.smoke {
        let _ = writeln!(
            md,
            "\n**Smoke run (`--quick`):** tiny counts; these figures only show that the benchmarks run."
        );
    }
    md
}

fn render_row(
    md: &mut String,
    label: &str,
    figure: Option<&Figure>,
    peers: Option<(Peer, &PeerRun)>,
) {
    let dash = || "—".to_owned();
    let value = figure.map_or_else(dash, |f| f.unit.format(f.value));
    let floor = figure
        .and_then(|f| f.reference.as_ref().map(|r| (f, r)))
        .map_or_else(dash, |(f, r)| {
            format!("{} ({})", f.unit.format(r.value), r.label)
        });
    let mut target: Vec<String> = figure
        .and_then(|f| f.target.as_ref())
        .map(|t| t.text.clone())
        .into_iter()
        .collect();
    let mut met: Vec<Option<bool>> = figure
        .filter(|f| f.target.is_some())
        .map(Figure::met)
        .into_iter()
        .collect();
    let mut best = dash();
    if let Some((peer, run)) = peers {
        let of = |s: &SystemFigures| match peer {
            Peer::Wake(q) => s.wake.as_ref().ok().map(|m| q(&m.latency)),
            Peer::IdleBytes => s.idle_bytes.as_ref().ok().copied(),
        };
        let unit = match peer {
            Peer::Wake(_) => Unit::Micros,
            Peer::IdleBytes => Unit::Bytes,
        };
        let measured: Vec<(&SystemFigures, f64)> = run
            .systems
            .iter()
            .filter(|s| !s.flagpost)
            .filter_map(|s| of(s).filter(|v| v.is_finite()).map(|v| (s, v)))
            .collect();
        if let Some((s, v)) = measured.iter().min_by(|a, b| a.1.total_cmp(&b.1)) {
            best = format!("{} ({})", unit.format(*v), s.system);
        }
        let flagpost = run.systems.iter().find(|s| s.flagpost).and_then(of);
        let values: Vec<f64> = measured.iter().map(|(_, v)| *v).collect();
        target.push("below every peer".into());
        met.push(below_every_peer(flagpost, &values));
    }
    let target = if target.is_empty() {
        dash()
    } else {
        target.join("; ")
    };
    let met = if met.is_empty() {
        dash()
    } else {
        met.into_iter().map(verdict).collect::<Vec<_>>().join(" ")
    };
    let _ = writeln!(
        md,
        "| {label} | {value} | {} | {} | {} | {met} |",
        cell(&floor),
        cell(&best),
        cell(&target)
    );
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::peer_run;
    use super::super::{MicroFigure, Rule};
    use super::*;

    #[test]
    fn rows_come_from_the_run_and_dashes_fill_the_rest() {
        let mut r = Report::new();
        r.add(
            Figure::new(
                Section::Wake,
                "Flagpost, `Notifier`: p50",
                36.0,
                Unit::Micros,
            )
            .floor("relay floor", 32.0)
            .target(Rule::RatioAtMost(1.2), "≤ 1.2× the relay floor"),
        );
        r.add(
            Figure::new(
                Section::HotLoop,
                "calls per second, median of 3 rounds",
                4.0e7,
                Unit::PerSecond,
            )
            .target(Rule::AtLeast(1e7), "≥ 10 M calls/s"),
        );
        r.set_peers(peer_run());
        let micro = Micro {
            figures: vec![MicroFigure {
                id: "flags/check_clear".into(),
                median_ns: 0.5,
                elements: None,
                measured: None,
            }],
            ..Micro::default()
        };
        let md = r.render_headline(&micro);
        assert!(
            md.starts_with("| figure | Flagpost | floor | best peer | target | met |\n"),
            "{md}"
        );
        assert!(
            md.contains("| wake latency p50 (`Notifier`) | 36.0 µs | 32.0 µs (relay floor) | 70.0 µs (Redis pub/sub) | ≤ 1.2× the relay floor; below every peer | ✓ ✓ |"),
            "{md}"
        );
        assert!(
            md.contains("| `notify_*` calls per second (median round) | 40.0 M/s | — | — | ≥ 10 M calls/s | ✓ |"),
            "{md}"
        );
        // not measured in this run
        assert!(
            md.contains("| fan-out to 10,000 p99 | — | — | — | — | — |"),
            "{md}"
        );
        assert!(
            md.contains("| broker RSS per idle listener (10,000) | — | — | 10,240 B (Redis pub/sub) | below every peer | ✓ |"),
            "{md}"
        );
        assert!(
            md.contains("| check when clear (criterion median) | 0.500 ns | — | — | check when clear ≤ 1 ns | ✓ |"),
            "{md}"
        );
        assert_eq!(md.lines().count(), 2 + ROWS.len() + MICRO_ROWS.len());
    }
}
