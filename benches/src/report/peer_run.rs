//! The peers' run: Flagpost and every installed peer, measured the same way
//! ([`PeerRun`], a [`SystemFigures`] per system, a [`Throughput`] per
//! publish-throughput run), the targets it decides ([`below_every_peer`])
//! and its tables in the generated section.

use std::fmt::Write as _;

use super::fmt::{cell, fmt_int, fmt_num, ratio_or_dash, verdict};
use crate::{Latency, Measured};

/// One publish-throughput run of a system (see `flagpost_benches::peers`).
#[derive(Clone, Debug, PartialEq)]
pub struct Throughput {
    /// Subscribers the server fanned each publish out to.
    pub subscribers: usize,
    /// Publishes per second delivered to every subscriber (Flagpost:
    /// handled by the broker).
    pub publishes_per_s: f64,
    /// Deliveries counted at the subscribers per second (Flagpost: wakes).
    pub deliveries_per_s: f64,
    /// Server CPU seconds per million publishes.
    pub cpu_s_per_million: f64,
    /// The subscriber process's CPU seconds per million publishes.
    pub sub_cpu_s_per_million: f64,
    /// Deliveries that never arrived (peers only).
    pub lost: u64,
    /// The run stopped early: the subscribers stopped reporting.
    pub stalled: bool,
}

/// Every figure of one system in the peers' run; a figure that failed
/// holds why.
#[derive(Clone, Debug)]
pub struct SystemFigures {
    /// What the tables call it, e.g. `Redis pub/sub`.
    pub system: String,
    /// Whether this is Flagpost (the numerator of every ratio).
    pub flagpost: bool,
    /// The server's version line.
    pub version: String,
    /// Wake latency, one publish at a time.
    pub wake: Result<Measured, String>,
    /// Publish throughput with 1 and with 100 subscribers.
    pub throughput: Vec<Result<Throughput, String>>,
    /// Server memory per idle subscriber, bytes.
    pub idle_bytes: Result<f64, String>,
}

/// The peers' run: Flagpost and every installed peer, measured the same
/// way one after the other.
#[derive(Clone, Debug)]
pub struct PeerRun {
    /// Wake-latency samples per system.
    pub samples: u32,
    /// Seconds per throughput run.
    pub secs: f64,
    /// Idle subscribers for the memory figure.
    pub idle: usize,
    /// Flagpost first, then each installed peer.
    pub systems: Vec<SystemFigures>,
    /// Peers that are not installed, skipped.
    pub missing: Vec<String>,
}

impl PeerRun {
    fn flagpost(&self) -> Option<&SystemFigures> {
        self.systems.iter().find(|s| s.flagpost)
    }

    fn peers(&self) -> impl Iterator<Item = &SystemFigures> {
        self.systems.iter().filter(|s| !s.flagpost)
    }
}

/// Whether `flagpost` is below every value in `peers`; `None` when there
/// is no finite value on either side.
pub fn below_every_peer(flagpost: Option<f64>, peers: &[f64]) -> Option<bool> {
    let flagpost = flagpost.filter(|v| v.is_finite())?;
    let peers: Vec<f64> = peers.iter().copied().filter(|v| v.is_finite()).collect();
    (!peers.is_empty()).then(|| peers.iter().all(|&p| flagpost < p))
}

/// The targets the peers' run decides: Flagpost's wake latency and idle
/// memory below every peer's.
pub(super) fn peer_targets(run: &PeerRun) -> Vec<(&'static str, Option<bool>)> {
    let fp = run.flagpost();
    let wake = |q: fn(&Latency) -> f64| {
        let flagpost = fp.and_then(|f| f.wake.as_ref().ok()).map(|m| q(&m.latency));
        let peers: Vec<f64> = run
            .peers()
            .filter_map(|p| p.wake.as_ref().ok())
            .map(|m| q(&m.latency))
            .collect();
        below_every_peer(flagpost, &peers)
    };
    let memory = below_every_peer(
        fp.and_then(|f| f.idle_bytes.as_ref().ok().copied()),
        &run.peers()
            .filter_map(|p| p.idle_bytes.as_ref().ok().copied())
            .collect::<Vec<_>>(),
    );
    vec![
        ("wake latency p50 below every peer", wake(|l| l.p50_us)),
        ("wake latency p99 below every peer", wake(|l| l.p99_us)),
        ("idle memory per subscriber below every peer", memory),
    ]
}

pub(super) fn render_peers(md: &mut String, run: &PeerRun) {
    let _ = writeln!(md, "### Peers\n");
    let _ = writeln!(
        md,
        "Flagpost beside the systems it is compared with, measured the same way in the same run (one after the other), every server its own instance on 127.0.0.1. Ratios are Flagpost / peer: below 1 Flagpost is faster or smaller; for publishes/s above 1 it takes more.\n"
    );
    let _ = writeln!(md, "| system | server version |");
    let _ = writeln!(md, "|---|---|");
    for s in &run.systems {
        let _ = writeln!(md, "| {} | {} |", cell(&s.system), cell(&s.version));
    }
    if !run.missing.is_empty() {
        let _ = writeln!(
            md,
            "\nNot installed, skipped: {} (`benches/peers.sh` installs them).",
            run.missing.join(", ")
        );
    }
    let targets = peer_targets(run);
    let fp = run.flagpost();

    // wake latency
    let _ = writeln!(
        md,
        "\n#### Wake latency ({} samples each, one at a time, µs)\n",
        fmt_int(u64::from(run.samples))
    );
    let _ = writeln!(
        md,
        "| system | p50 | p99 | p99.9 | max | lost | Flagpost / peer, p50 / p99 |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---|");
    let fp_wake = fp.and_then(|f| f.wake.as_ref().ok()).map(|m| &m.latency);
    for s in &run.systems {
        match &s.wake {
            Ok(m) => {
                let l = &m.latency;
                let ratio = match fp_wake {
                    Some(f) if !s.flagpost => format!(
                        "{} / {}",
                        ratio_or_dash(f.p50_us, l.p50_us),
                        ratio_or_dash(f.p99_us, l.p99_us)
                    ),
                    _ => String::new(),
                };
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {ratio} |",
                    cell(&s.system),
                    fmt_num(l.p50_us),
                    fmt_num(l.p99_us),
                    fmt_num(l.p999_us),
                    fmt_num(l.max_us),
                    m.lost
                );
            }
            Err(e) => {
                let _ = writeln!(
                    md,
                    "| {} | failed: {} | | | | | |",
                    cell(&s.system),
                    cell(e)
                );
            }
        }
    }
    let _ = writeln!(
        md,
        "\nTarget: Flagpost's p50 and p99 lower than every peer's: p50 {}, p99 {}.",
        verdict(targets[0].1),
        verdict(targets[1].1)
    );

    // throughput
    let _ = writeln!(md, "\n#### Publish throughput ({} s per run)\n", run.secs);
    let _ = writeln!(
        md,
        "Publishes per second delivered to every subscriber (Flagpost: raw datagrams handled by the broker; its deliveries are listener wake-ups, which coalesce), CPU seconds per million publishes of the server and of the subscriber process.\n"
    );
    let _ = writeln!(
        md,
        "| system | subscribers | publishes/s | deliveries/s | server CPU s / M | subscriber CPU s / M | lost | Flagpost / peer, rate / CPU |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---|");
    for s in &run.systems {
        for (i, t) in s.throughput.iter().enumerate() {
            match t {
                Ok(t) => {
                    let fp_t = fp
                        .and_then(|f| f.throughput.get(i))
                        .and_then(|r| r.as_ref().ok());
                    let ratio = match fp_t {
                        Some(f) if !s.flagpost => format!(
                            "{} / {}",
                            ratio_or_dash(f.publishes_per_s, t.publishes_per_s),
                            ratio_or_dash(f.cpu_s_per_million, t.cpu_s_per_million)
                        ),
                        _ => String::new(),
                    };
                    let _ = writeln!(
                        md,
                        "| {}{} | {} | {} | {} | {} | {} | {} | {ratio} |",
                        cell(&s.system),
                        if t.stalled { " (stalled)" } else { "" },
                        t.subscribers,
                        fmt_num(t.publishes_per_s),
                        fmt_num(t.deliveries_per_s),
                        fmt_num(t.cpu_s_per_million),
                        fmt_num(t.sub_cpu_s_per_million),
                        t.lost
                    );
                }
                Err(e) => {
                    let _ = writeln!(
                        md,
                        "| {} | | failed: {} | | | | | |",
                        cell(&s.system),
                        cell(e)
                    );
                }
            }
        }
    }

    // idle memory
    let _ = writeln!(
        md,
        "\n#### Idle memory per subscriber ({} idle subscribers)\n",
        fmt_int(run.idle as u64)
    );
    let _ = writeln!(
        md,
        "The server's RSS growth once the subscribers are subscribed (PostgreSQL: plus the PSS of the backend processes it forked for them).\n"
    );
    let _ = writeln!(md, "| system | bytes per subscriber | Flagpost / peer |");
    let _ = writeln!(md, "|---|---:|---:|");
    let fp_idle = fp.and_then(|f| f.idle_bytes.as_ref().ok().copied());
    for s in &run.systems {
        match &s.idle_bytes {
            Ok(b) => {
                let ratio = match fp_idle {
                    Some(f) if !s.flagpost => ratio_or_dash(f, *b),
                    _ => String::new(),
                };
                let _ = writeln!(md, "| {} | {} | {ratio} |", cell(&s.system), fmt_num(*b));
            }
            Err(e) => {
                let _ = writeln!(md, "| {} | failed: {} | |", cell(&s.system), cell(e));
            }
        }
    }
    let _ = writeln!(
        md,
        "\nTarget: Flagpost's memory per subscriber lower than every peer's: {}.\n",
        verdict(targets[2].1)
    );
}

#[cfg(test)]
mod tests {
    use crate::report::fixtures::{machine, peer_run};
    use crate::report::{Charts, Micro, Report};

    #[test]
    fn renders_peers_with_flagpost_over_peer_ratios() {
        let mut r = Report::new();
        r.set_peers(peer_run());
        let md = r.render_markdown(&machine(), &Micro::default(), &Charts::NotRequested);
        assert!(
            md.contains("| Redis pub/sub | Redis server v=7.0.15 |"),
            "{md}"
        );
        assert!(md.contains("Not installed, skipped: nats"));
        // 35 / 70 at p50
        assert!(
            md.contains("| Redis pub/sub | 70.0 | 80.1 | 80.1 | 80.1 | 0 | 0.50 / 0.50 |"),
            "{md}"
        );
        assert!(md.contains("p50 ✓, p99 ✓"));
        assert!(
            md.contains(
                "| Redis pub/sub | 1 | 1,000,000 | 1,000,000 | 1.00 | 2.00 | 0 | 0.30 / 1.00 |"
            ),
            "{md}"
        );
        // an error's pipe does not break the table
        assert!(
            md.contains("| Redis pub/sub | | failed: a \\| b | | | | | |"),
            "{md}"
        );
        assert!(md.contains("| Redis pub/sub | 10,240 | 0.031 |"), "{md}");
        assert!(md.contains("**Targets:** 3 met ✓, 0 missed ✗."), "{md}");
    }
}
