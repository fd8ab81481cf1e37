//! The benchmark report: what `flagpost-bench` measured in one run, as
//! figures with their floor, ratio and target, rendered into the generated
//! section of `BENCHMARKS.md` with a description of the machine, the
//! criterion micro-benchmark medians and PNG charts.
//!
//! The measuring functions fill a [`Report`] ([`Report::add`] one
//! [`Figure`] at a time, [`Report::add_latency`] for the raw wake-latency
//! histograms, [`Report::set_peers`] for the peers' run) while they print
//! to the console as before. With `--write <file>` the bench then draws the
//! charts ([`draw_charts`]), renders the section ([`Report::render_markdown`])
//! and puts it between the lines [`BEGIN_MARKER`] and [`END_MARKER`] of the
//! file ([`write_generated`], built on [`splice`](fn@splice)): everything
//! outside the markers is hand-written analysis and is kept byte for byte.
//! The summary table at the top of the file ([`Report::render_headline`])
//! goes between its own pair, [`SUMMARY_BEGIN_MARKER`] and
//! [`SUMMARY_END_MARKER`] ([`splice_summary`]).
//!
//! This module owns [`Report`], with what it keeps for the charts
//! ([`LatencySeries`], [`FanoutPoint`]), and the order of the generated
//! section. Its parts live in private submodules, re-exported here:
//! `splice` (the markers and the file), `headline` (the summary table),
//! `figures` (one figure and its target), `table` (a section's free-form
//! detail table), `peer_run` (the peers' run and its tables), `machine`
//! (the machine and command line),
//! `micro` (the criterion medians), `charts` (the PNG files) with `plots`
//! (what each chart draws), and `fmt` (numbers and table cells).

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use crate::{Latency, Measured};

mod charts;
mod figures;
#[cfg(test)]
mod fixtures;
mod fmt;
mod headline;
mod machine;
mod micro;
mod peer_run;
mod plots;
mod splice;
mod table;

pub use charts::{draw_charts, Chart, ChartError, Charts, CHART_FILES, FONT_PACKAGE, FONT_PATH};
pub use figures::{Figure, Reference, Rule, Section, Target, Unit};
pub use fmt::{fmt_int, fmt_num, fmt_ratio, ratio_or_dash, utc_minutes};
pub use machine::{command_line, Machine};
pub use micro::{Micro, MicroFigure, MICRO_COMMAND};
pub use peer_run::{below_every_peer, PeerRun, SystemFigures, Throughput};
pub use splice::{
    check_markers, splice, splice_summary, write_generated, MarkerError, WriteError, BEGIN_MARKER,
    END_MARKER, SUMMARY_BEGIN_MARKER, SUMMARY_END_MARKER,
};
pub use table::Table;

use fmt::{cell, verdict};
use peer_run::{peer_targets, render_peers};

/// A latency distribution the CDF chart draws.
#[derive(Clone, Debug)]
pub struct LatencySeries {
    /// The legend's name for it.
    pub name: String,
    /// Samples in nanoseconds.
    pub histogram: Histogram<u64>,
}

/// The fan-out figures at one N, for the fan-out chart.
#[derive(Clone, Debug)]
pub struct FanoutPoint {
    /// Listeners.
    pub n: usize,
    /// Flagpost's delivery latency to all N.
    pub flagpost: Latency,
    /// The bare fan-out floor's.
    pub floor: Latency,
}

/// Everything one `flagpost-bench` run measured.
#[derive(Clone, Debug, Default)]
pub struct Report {
    figures: Vec<Figure>,
    notes: Vec<(Section, String)>,
    latency: Vec<LatencySeries>,
    fanout: Vec<FanoutPoint>,
    memory: Vec<(String, f64)>,
    tables: Vec<(Section, Table)>,
    peers: Option<PeerRun>,
    peers_skipped: Option<String>,
    smoke: bool,
}

impl Report {
    /// An empty report.
    pub fn new() -> Report {
        Report::default()
    }

    /// Records a figure.
    pub fn add(&mut self, figure: Figure) {
        self.figures.push(figure);
    }

    /// Adds a line of explanation under `section`'s table (sizes, lost
    /// samples, …).
    pub fn note(&mut self, section: Section, text: impl Into<String>) {
        self.notes.push((section, text.into()));
    }

    /// Adds a table of detail under `section`'s figures (before its
    /// notes).
    pub fn add_table(&mut self, section: Section, table: Table) {
        self.tables.push((section, table));
    }

    /// Keeps the raw wake-latency samples of `name` for the CDF chart.
    pub fn add_latency(&mut self, name: impl Into<String>, measured: &Measured) {
        self.latency.push(LatencySeries {
            name: name.into(),
            histogram: measured.histogram.clone(),
        });
    }

    /// Keeps one N of the fan-out figures for the fan-out chart.
    pub fn add_fanout(&mut self, point: FanoutPoint) {
        self.fanout.push(point);
    }

    /// Keeps a memory-per-listener bar (bytes) for the memory chart, beside
    /// the peers' figures.
    pub fn add_memory_bar(&mut self, name: impl Into<String>, bytes: f64) {
        self.memory.push((name.into(), bytes));
    }

    /// Records the peers' run.
    pub fn set_peers(&mut self, run: PeerRun) {
        self.peers = Some(run);
    }

    /// Records why the peers were not measured in this run.
    pub fn skip_peers(&mut self, why: impl Into<String>) {
        self.peers_skipped = Some(why.into());
    }

    /// Marks the report as a smoke run (`--quick`): tiny counts whose
    /// figures only show that the benchmarks run.
    pub fn set_smoke(&mut self) {
        self.smoke = true;
    }

    /// The figures recorded so far.
    pub fn figures(&self) -> &[Figure] {
        &self.figures
    }

    /// The peers' run, if one was recorded.
    pub fn peers(&self) -> Option<&PeerRun> {
        self.peers.as_ref()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.figures.is_empty() && self.peers.is_none() && self.latency.is_empty()
    }

    /// The generated section of `BENCHMARKS.md` (without the marker
    /// lines): the machine, a summary of the targets, one table per section,
    /// the peers, the criterion medians and the charts.
    pub fn render_markdown(&self, machine: &Machine, micro: &Micro, charts: &Charts) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "## Last `flagpost-bench` run (generated)\n");
        let _ = writeln!(
            md,
            "Written by `flagpost-bench --write`: the run replaces everything between this file's generated-section markers and keeps the rest byte for byte. Every ratio is to the floor measured in the same run; a ✓ or ✗ says whether the benchmarks issue's target is met in this run.\n"
        );
        if self.smoke {
            let _ = writeln!(
                md,
                "**Smoke run (`--quick`):** tiny counts; the figures only show that the benchmarks run, they are not measurements.\n"
            );
        }
        machine.render(&mut md);
        self.render_summary(&mut md);
        for section in Section::ALL {
            self.render_section(&mut md, section);
        }
        if let Some(run) = &self.peers {
            render_peers(&mut md, run);
        } else if let Some(why) = &self.peers_skipped {
            let _ = writeln!(
                md,
                "### Peers\n\nNot measured in this run: {}.\n",
                cell(why)
            );
        }
        micro.render(&mut md);
        charts.render(&mut md);
        md
    }

    /// The one-screen summary table that leads `BENCHMARKS.md` (between
    /// [`SUMMARY_BEGIN_MARKER`] and [`SUMMARY_END_MARKER`]): one row per
    /// headline figure with its floor, the best peer, the target and
    /// whether it is met, from this run's figures and `micro`; "—" where
    /// the run has no figure.
    pub fn render_headline(&self, micro: &Micro) -> String {
        headline::render_headline(self, micro)
    }

    fn render_summary(&self, md: &mut String) {
        let mut met = 0;
        let mut missed = Vec::new();
        for f in &self.figures {
            match f.met() {
                Some(true) => met += 1,
                Some(false) => missed.push(format!("{} ({})", f.what, f.section.title())),
                None => {}
            }
        }
        if let Some(run) = &self.peers {
            for (what, verdict) in peer_targets(run) {
                match verdict {
                    Some(true) => met += 1,
                    Some(false) => missed.push(format!("{what} (Peers)")),
                    None => {}
                }
            }
        }
        if met + missed.len() == 0 {
            return;
        }
        let _ = write!(md, "**Targets:** {met} met ✓, {} missed ✗", missed.len());
        if missed.is_empty() {
            let _ = writeln!(md, ".\n");
        } else {
            let _ = writeln!(md, ": {}.\n", cell(&missed.join("; ")));
        }
    }

    fn render_section(&self, md: &mut String, section: Section) {
        let figures: Vec<&Figure> = self
            .figures
            .iter()
            .filter(|f| f.section == section)
            .collect();
        let notes: Vec<&str> = self
            .notes
            .iter()
            .filter(|(s, _)| *s == section)
            .map(|(_, n)| n.as_str())
            .collect();
        let tables: Vec<&Table> = self
            .tables
            .iter()
            .filter(|(s, _)| *s == section)
            .map(|(_, t)| t)
            .collect();
        if figures.is_empty() && notes.is_empty() && tables.is_empty() {
            return;
        }
        let _ = writeln!(md, "### {}\n", section.title());
        let _ = writeln!(md, "{}\n", section.method());
        if !figures.is_empty() {
            let _ = writeln!(
                md,
                "| figure | value | floor (same run) | ratio to floor | target |"
            );
            let _ = writeln!(md, "|---|---:|---:|---:|---|");
            for f in figures {
                let reference = f.reference.as_ref().map_or(String::new(), |r| {
                    format!("{} {}", r.label, f.unit.format(r.value))
                });
                let ratio = f.ratio().map_or(String::new(), fmt_ratio);
                let target = f.target.as_ref().map_or(String::new(), |t| {
                    format!("{} {}", t.text, verdict(f.met()))
                });
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} |",
                    cell(&f.what),
                    f.unit.format(f.value),
                    cell(&reference),
                    ratio,
                    cell(&target)
                );
            }
            md.push('\n');
        }
        for t in tables {
            t.render(md);
        }
        for n in notes {
            let _ = writeln!(md, "- {}", n.replace('\n', " "));
        }
        if !md.ends_with("\n\n") {
            md.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::machine;
    use super::*;

    fn small_report() -> Report {
        let mut r = Report::new();
        r.add(
            Figure::new(
                Section::Wake,
                "Flagpost, raw datagram: p50",
                52.2,
                Unit::Micros,
            )
            .floor("relay floor", 42.5)
            .target(Rule::RatioAtMost(1.2), "≤ 1.2× the relay floor"),
        );
        r.add(
            Figure::new(
                Section::Wake,
                "Flagpost, raw datagram: p99",
                83.3,
                Unit::Micros,
            )
            .floor("relay floor", 81.9)
            .target(Rule::RatioAtMost(1.2), "≤ 1.2× the relay floor"),
        );
        r.add(
            Figure::new(Section::Idle, "wake-ups per second", 0.1, Unit::Plain)
                .target(Rule::AtMost(1.0), "≤ 1 per second"),
        );
        r.note(Section::Wake, "200 samples per path; lost reports: 0");
        r
    }

    #[test]
    fn renders_tables_and_summary() {
        let md =
            small_report().render_markdown(&machine(), &Micro::default(), &Charts::NotRequested);
        assert!(md.contains("| CPU | Test CPU, 2 logical CPUs |"), "{md}");
        assert!(
            md.contains(
                "**Targets:** 2 met ✓, 1 missed ✗: Flagpost, raw datagram: p50 (Wake latency)."
            ),
            "{md}"
        );
        assert!(md.contains("### Wake latency\n"), "{md}");
        assert!(md.contains(
            "| figure | value | floor (same run) | ratio to floor | target |\n|---|---:|---:|---:|---|\n"
        ));
        assert!(md.contains(
            "| Flagpost, raw datagram: p50 | 52.2 µs | relay floor 42.5 µs | 1.23 | ≤ 1.2× the relay floor ✗ |"
        ), "{md}");
        assert!(md.contains(
            "| Flagpost, raw datagram: p99 | 83.3 µs | relay floor 81.9 µs | 1.02 | ≤ 1.2× the relay floor ✓ |"
        ));
        assert!(
            md.contains("| wake-ups per second | 0.100 |  |  | ≤ 1 per second ✓ |"),
            "{md}"
        );
        assert!(md.contains("- 200 samples per path; lost reports: 0"));
        // sections without figures are left out; the markers are never in the body
        assert!(!md.contains("### Ingest"));
        assert!(!md.contains(BEGIN_MARKER) && !md.contains(END_MARKER));
        assert!(md.contains("No criterion results were found"));
        assert!(md.contains("Not drawn in this run."));
    }
}
