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
//! file ([`write_generated`], built on [`splice`]): everything outside the
//! markers is hand-written analysis and is kept byte for byte.

use std::fmt::{self, Write as _};
use std::io;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use plotters::prelude::{
    ChartBuilder, Color, IntoDrawingArea, IntoFont, IntoLogRange, LineSeries, PathElement,
    RGBColor, Rectangle, SeriesLabelPosition, Text, BLACK, WHITE,
};
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::{Latency, Measured};

/// The line that opens the generated section.
pub const BEGIN_MARKER: &str = "<!-- BEGIN GENERATED: flagpost-bench -->";
/// The line that closes the generated section.
pub const END_MARKER: &str = "<!-- END GENERATED: flagpost-bench -->";

/// Where the charts' font is expected (Debian: `fonts-dejavu-core`).
pub const FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
/// The Debian package that installs [`FONT_PATH`].
pub const FONT_PACKAGE: &str = "fonts-dejavu-core";

/// The command whose results the micro-benchmark table shows.
pub const MICRO_COMMAND: &str = "cargo bench -p flagpost-benches --bench micro";

// ---- the generated section in a file ------------------------------------------

/// Why the generated section could not be placed in a file's text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MarkerError {
    /// A [`BEGIN_MARKER`] line (1-based line number) with no
    /// [`END_MARKER`] line after it.
    MissingEnd {
        /// The line of the begin marker.
        begin_line: usize,
    },
    /// An [`END_MARKER`] line with no [`BEGIN_MARKER`] line before it.
    MissingBegin {
        /// The line of the end marker.
        end_line: usize,
    },
    /// A marker line that appears twice.
    Duplicate {
        /// The line of the second occurrence.
        line: usize,
    },
}

impl fmt::Display for MarkerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MarkerError::MissingEnd { begin_line } => write!(
                f,
                "line {begin_line} opens the generated section but no `{END_MARKER}` line follows"
            ),
            MarkerError::MissingBegin { end_line } => write!(
                f,
                "line {end_line} closes a generated section that no `{BEGIN_MARKER}` line opens"
            ),
            MarkerError::Duplicate { line } => {
                write!(f, "line {line} repeats a generated-section marker")
            }
        }
    }
}

impl std::error::Error for MarkerError {}

/// Why [`write_generated`] failed; the file is unchanged.
#[derive(Debug)]
#[non_exhaustive]
pub enum WriteError {
    /// The file's markers are unusable.
    Markers {
        /// The file.
        path: PathBuf,
        /// What is wrong with its markers.
        error: MarkerError,
    },
    /// Reading the file, or writing and renaming its replacement, failed.
    Io {
        /// The file being read or written.
        path: PathBuf,
        /// The operating system's error.
        error: io::Error,
    },
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::Markers { path, error } => write!(f, "{}: {error}", path.display()),
            WriteError::Io { path, error } => write!(f, "{}: {error}", path.display()),
        }
    }
}

impl std::error::Error for WriteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WriteError::Markers { error, .. } => Some(error),
            WriteError::Io { error, .. } => Some(error),
        }
    }
}

/// `existing` with the text between its [`BEGIN_MARKER`] and [`END_MARKER`]
/// lines replaced by `generated` (a newline is added if it lacks one).
/// Everything up to and including the begin line, and from the end line on,
/// is kept byte for byte. Without markers, the markers and `generated` are
/// appended after a blank line.
pub fn splice(existing: &str, generated: &str) -> Result<String, MarkerError> {
    let mut begin = None; // (line number, byte offset after the line)
    let mut end = None; // (line number, byte offset of the line)
    let mut offset = 0;
    for (i, line) in existing.split_inclusive('\n').enumerate() {
        let number = i + 1;
        let text = line.trim();
        if text == BEGIN_MARKER {
            if begin.is_some() {
                return Err(MarkerError::Duplicate { line: number });
            }
            begin = Some((number, offset + line.len()));
        } else if text == END_MARKER {
            if end.is_some() {
                return Err(MarkerError::Duplicate { line: number });
            }
            if begin.is_none() {
                // also an end line before the begin line
                return Err(MarkerError::MissingBegin { end_line: number });
            }
            end = Some((number, offset));
        }
        offset += line.len();
    }
    let body = if generated.ends_with('\n') || generated.is_empty() {
        generated.to_owned()
    } else {
        format!("{generated}\n")
    };
    match (begin, end) {
        (Some((_, after_begin)), Some((_, end_at))) => {
            // the begin line ends with its newline: the end line follows it
            let mut out = String::with_capacity(existing.len() + body.len());
            out.push_str(&existing[..after_begin]);
            out.push_str(&body);
            out.push_str(&existing[end_at..]);
            Ok(out)
        }
        (Some((begin_line, _)), None) => Err(MarkerError::MissingEnd { begin_line }),
        (None, Some((end_line, _))) => Err(MarkerError::MissingBegin { end_line }),
        (None, None) => {
            let mut out = existing.to_owned();
            if !out.is_empty() {
                if !out.ends_with('\n') {
                    out.push('\n');
                }
                out.push('\n');
            }
            out.push_str(BEGIN_MARKER);
            out.push('\n');
            out.push_str(&body);
            out.push_str(END_MARKER);
            out.push('\n');
            Ok(out)
        }
    }
}

/// Checks, before a long run, that [`write_generated`] will be able to use
/// the file at `path`: it is readable (or absent) and its markers are
/// usable. Nothing is written.
pub fn check_markers(path: &Path) -> Result<(), WriteError> {
    match std::fs::read_to_string(path) {
        Ok(text) => splice(&text, "")
            .map(|_| ())
            .map_err(|error| WriteError::Markers {
                path: path.to_owned(),
                error,
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(WriteError::Io {
            path: path.to_owned(),
            error,
        }),
    }
}

/// Puts `generated` between the markers of the file at `path` (see
/// [`splice`]); a missing file is created. The new text is written to a
/// temporary file beside it and renamed over it, so a failure leaves the
/// file as it was.
pub fn write_generated(path: &Path, generated: &str) -> Result<(), WriteError> {
    let io_error = |error| WriteError::Io {
        path: path.to_owned(),
        error,
    };
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io_error(e)),
    };
    let text = splice(&existing, generated).map_err(|error| WriteError::Markers {
        path: path.to_owned(),
        error,
    })?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report.md".into());
    let temp = path.with_file_name(format!(".{name}.flagpost-bench.tmp"));
    std::fs::write(&temp, text).map_err(|error| WriteError::Io {
        path: temp.clone(),
        error,
    })?;
    std::fs::rename(&temp, path).map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        io_error(e)
    })
}

// ---- figures --------------------------------------------------------------------

/// The report's sections, in the order they are rendered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    /// One notification at a time, publisher to a listener in another
    /// process, beside the relay floor.
    Wake,
    /// Raw notification datagrams into the broker, beside a bare receiver.
    Ingest,
    /// One notification until N listeners have it, beside a bare fan-out.
    FanOut,
    /// Broker memory per idle listener, beside a bare accepted connection.
    Memory,
    /// Wake-ups and CPU of a broker with idle listeners.
    Idle,
    /// `notify_*` called from a hot loop.
    HotLoop,
    /// A flooded channel beside a quiet one.
    Flood,
}

impl Section {
    /// Every section, in render order.
    pub const ALL: [Section; 7] = [
        Section::Wake,
        Section::Ingest,
        Section::FanOut,
        Section::Memory,
        Section::Idle,
        Section::HotLoop,
        Section::Flood,
    ];

    /// The section's heading.
    pub fn title(self) -> &'static str {
        match self {
            Section::Wake => "Wake latency",
            Section::Ingest => "Ingest",
            Section::FanOut => "Fan-out",
            Section::Memory => "Memory per idle listener",
            Section::Idle => "Idle cost",
            Section::HotLoop => "`notify_*` from a hot loop",
            Section::Flood => "Flood",
        }
    }

    /// What the section measures, the same in every run.
    fn method(self) -> &'static str {
        match self {
            Section::Wake => {
                "One notification at a time from the bench process, through the broker (a second process), to a listener blocked in `wait` (a third), which stamps `CLOCK_MONOTONIC` when it wakes. Floor: UDP → relay process → TCP → blocked reader."
            }
            Section::Ingest => {
                "Raw notification datagrams blasted at the receiver for a fixed time, counted by the receiver; CPU from `/proc/<pid>/stat`. Floor: a blocking `recvmmsg` loop."
            }
            Section::FanOut => {
                "One notification until all N listeners (raw connections in one epoll process) have it. Floor: a process that writes 8 bytes to each of N TCP connections."
            }
            Section::Memory => {
                "RSS growth of the broker once N idle listeners are connected (page-granular). Floor: a process that accepts and holds N bare connections."
            }
            Section::Idle => "Broker context switches and CPU while idle listeners stay connected.",
            Section::HotLoop => {
                "`Notifier::notify_status_update` called in a tight loop from one thread, then the time from the last call to the listener's (another process) last wake, beside the relay floor of the same run."
            }
            Section::Flood => {
                "Two senders at full rate on one channel with 10 listeners on it, and a quiet listener on another channel whose wake latency is measured unloaded and under the flood."
            }
        }
    }
}

/// The unit of a [`Figure`]'s value, which decides how it is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Microseconds.
    Micros,
    /// Events per second (from a million on printed as `M/s`).
    PerSecond,
    /// CPU seconds per million events.
    CpuSecondsPerMillion,
    /// Bytes.
    Bytes,
    /// Percent of one CPU core.
    PercentOfCore,
    /// A plain number (a ratio of counts).
    Plain,
}

impl Unit {
    /// `value` with its unit, or `—` when it is not a finite number.
    pub fn format(self, value: f64) -> String {
        if !value.is_finite() {
            return "—".into();
        }
        match self {
            Unit::Micros => format!("{} µs", fmt_num(value)),
            Unit::PerSecond if value >= 1e6 => format!("{} M/s", fmt_num(value / 1e6)),
            Unit::PerSecond => format!("{} /s", fmt_num(value)),
            Unit::CpuSecondsPerMillion => format!("{} s/M", fmt_num(value)),
            Unit::Bytes => format!("{} B", fmt_num(value)),
            Unit::PercentOfCore => format!("{} %", fmt_num(value)),
            Unit::Plain => fmt_num(value),
        }
    }
}

/// What a target compares.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rule {
    /// The value is at most this.
    AtMost(f64),
    /// The value is at least this.
    AtLeast(f64),
    /// The value divided by the reference (the floor) is at most this.
    RatioAtMost(f64),
    /// The value divided by the reference is at least this.
    RatioAtLeast(f64),
}

/// A target the benchmarks issue states for a figure.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// How the issue states it, e.g. `≤ 1.2× the relay floor`.
    pub text: String,
    /// How it is checked.
    pub rule: Rule,
}

impl Target {
    /// A target checked by `rule`, described by `text`.
    pub fn new(rule: Rule, text: impl Into<String>) -> Target {
        Target {
            text: text.into(),
            rule,
        }
    }

    /// Whether `value` (with `ratio` to its reference) meets the target;
    /// `None` when it cannot be told (no finite value, or a ratio target
    /// without a ratio).
    pub fn met(&self, value: f64, ratio: Option<f64>) -> Option<bool> {
        if !value.is_finite() {
            return None;
        }
        match self.rule {
            Rule::AtMost(bound) => Some(value <= bound),
            Rule::AtLeast(bound) => Some(value >= bound),
            Rule::RatioAtMost(bound) => ratio.map(|r| r <= bound),
            Rule::RatioAtLeast(bound) => ratio.map(|r| r >= bound),
        }
    }
}

/// The value a figure is compared with: its floor in the same run (or, for
/// the flood, the unloaded figure).
#[derive(Clone, Debug, PartialEq)]
pub struct Reference {
    /// What it is, e.g. `relay floor`.
    pub label: String,
    /// Its value, in the figure's unit.
    pub value: f64,
}

/// One measured figure.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    /// The section it belongs to.
    pub section: Section,
    /// What was measured, e.g. `Flagpost, raw datagram: p99`.
    pub what: String,
    /// The absolute value (NaN when nothing was measured).
    pub value: f64,
    /// The value's unit.
    pub unit: Unit,
    /// The floor of the same run, where one exists.
    pub reference: Option<Reference>,
    /// The issue's target, where it states one.
    pub target: Option<Target>,
}

impl Figure {
    /// A figure without reference or target.
    pub fn new(section: Section, what: impl Into<String>, value: f64, unit: Unit) -> Figure {
        Figure {
            section,
            what: what.into(),
            value,
            unit,
            reference: None,
            target: None,
        }
    }

    /// With the reference (floor) `label` = `value`, in the same unit.
    pub fn floor(mut self, label: impl Into<String>, value: f64) -> Figure {
        self.reference = Some(Reference {
            label: label.into(),
            value,
        });
        self
    }

    /// With a target.
    pub fn target(mut self, rule: Rule, text: impl Into<String>) -> Figure {
        self.target = Some(Target::new(rule, text));
        self
    }

    /// The value divided by its reference, when both are finite and the
    /// reference is positive.
    pub fn ratio(&self) -> Option<f64> {
        let reference = self.reference.as_ref()?.value;
        (self.value.is_finite() && reference.is_finite() && reference > 0.0)
            .then(|| self.value / reference)
    }

    /// Whether the target is met; `None` without a target or when it
    /// cannot be told.
    pub fn met(&self) -> Option<bool> {
        self.target.as_ref()?.met(self.value, self.ratio())
    }
}

// ---- the peers ------------------------------------------------------------------

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

// ---- the report -----------------------------------------------------------------

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
        if figures.is_empty() && notes.is_empty() {
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
        for n in notes {
            let _ = writeln!(md, "- {}", n.replace('\n', " "));
        }
        if !md.ends_with("\n\n") {
            md.push('\n');
        }
    }
}

/// ✓, ✗ or `?` (could not be told).
fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "✓",
        Some(false) => "✗",
        None => "?",
    }
}

/// The targets the peers' run decides: Flagpost's wake latency and idle
/// memory below every peer's.
fn peer_targets(run: &PeerRun) -> Vec<(&'static str, Option<bool>)> {
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

fn render_peers(md: &mut String, run: &PeerRun) {
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

// ---- the machine ----------------------------------------------------------------

/// The description of the machine and build a run was made on, as rows of
/// (what, value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    /// (what, value) rows, in order.
    pub rows: Vec<(String, String)>,
}

impl Machine {
    /// Describes this machine: CPU model and count (`/proc/cpuinfo`),
    /// memory (`MemTotal`), kernel, OS (`PRETTY_NAME`), `rustc -V`, the
    /// build profile, the git commit of the source tree this binary was
    /// built from (and whether it has uncommitted changes), the date in UTC
    /// and `command`, the command line that produced the report. What
    /// cannot be found reads `unknown`.
    pub fn describe(command: &str) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let model = cpuinfo
            .lines()
            .find_map(|l| {
                let (key, value) = l.split_once(':')?;
                (key.trim() == "model name").then(|| value.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let count = cpuinfo
            .lines()
            .filter(|l| l.split(':').next().map(str::trim) == Some("processor"))
            .count();
        let count = if count > 0 {
            count
        } else {
            std::thread::available_parallelism().map_or(0, usize::from)
        };
        let memory = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines().find_map(|l| {
                    let kib: f64 = l
                        .strip_prefix("MemTotal:")?
                        .trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse()
                        .ok()?;
                    Some(format!("{:.1} GiB", kib / 1024.0 / 1024.0))
                })
            })
            .unwrap_or_else(|| "unknown".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .or_else(|| run_line("uname", &["-r"], None))
            .map_or_else(
                || "unknown".into(),
                |release| {
                    let os = std::fs::read_to_string("/proc/sys/kernel/ostype")
                        .map(|s| s.trim().to_owned())
                        .unwrap_or_else(|_| std::env::consts::OS.to_owned());
                    format!("{os} {release}")
                },
            );
        let os = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|text| {
                text.lines().find_map(|l| {
                    let v = l.strip_prefix("PRETTY_NAME=")?;
                    Some(v.trim().trim_matches('"').to_owned())
                })
            })
            .unwrap_or_else(|| "unknown".into());
        let rustc = run_line("rustc", &["-V"], None).unwrap_or_else(|| "unknown".into());
        let profile = if cfg!(debug_assertions) {
            "debug (unoptimised: figures not comparable with a release run)"
        } else {
            "release"
        };
        let source = Path::new(env!("CARGO_MANIFEST_DIR"));
        let commit = match run_line("git", &["rev-parse", "--short", "HEAD"], Some(source)) {
            Some(hash) => {
                let dirty = Command::new("git")
                    .arg("-C")
                    .arg(source)
                    .args(["status", "--porcelain", "--untracked-files=no"])
                    .stdin(Stdio::null())
                    .stderr(Stdio::null())
                    .output()
                    .ok()
                    .filter(|o| o.status.success())
                    .map(|o| !o.stdout.is_empty());
                match dirty {
                    Some(true) => format!("{hash}, working tree with uncommitted changes"),
                    Some(false) => format!("{hash}, clean working tree"),
                    None => hash,
                }
            }
            None => "unknown".into(),
        };
        Machine {
            rows: vec![
                ("CPU".into(), format!("{model}, {count} logical CPUs")),
                ("memory".into(), memory),
                ("kernel".into(), kernel),
                ("OS".into(), os),
                ("rustc".into(), rustc),
                ("build".into(), profile.into()),
                ("commit".into(), commit),
                ("date".into(), utc_minutes(SystemTime::now())),
                ("command".into(), format!("`{command}`")),
            ],
        }
    }

    fn render(&self, md: &mut String) {
        let _ = writeln!(md, "### Machine\n");
        let _ = writeln!(md, "| | |");
        let _ = writeln!(md, "|---|---|");
        for (what, value) in &self.rows {
            let _ = writeln!(md, "| {} | {} |", cell(what), cell(value));
        }
        md.push('\n');
    }
}

/// The first line of a command's standard output, if it runs and succeeds.
fn run_line(program: &str, args: &[&str], dir: Option<&Path>) -> Option<String> {
    let mut cmd = Command::new(program);
    if let Some(dir) = dir {
        cmd.arg("-C").arg(dir);
    }
    let out = cmd
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let line = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()?
        .trim()
        .to_owned();
    (!line.is_empty()).then_some(line)
}

/// A command line as one string, each argument quoted for a POSIX shell
/// where it needs it; the program is named by its file name only.
pub fn command_line(args: &[String]) -> String {
    args.iter()
        .enumerate()
        .map(|(i, a)| {
            let a = if i == 0 {
                Path::new(a)
                    .file_name()
                    .map_or_else(|| a.clone(), |n| n.to_string_lossy().into_owned())
            } else {
                a.clone()
            };
            let plain = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
            if plain {
                a
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

// ---- the criterion micro-benchmarks ---------------------------------------------

/// One criterion benchmark's last result.
#[derive(Clone, Debug, PartialEq)]
pub struct MicroFigure {
    /// Its id, e.g. `flags/check_clear`.
    pub id: String,
    /// The median's point estimate, nanoseconds per iteration.
    pub median_ns: f64,
    /// Elements per iteration, when the benchmark declares a throughput.
    pub elements: Option<u64>,
    /// When criterion wrote the estimate.
    pub measured: Option<SystemTime>,
}

/// The criterion results found under a directory.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Micro {
    /// The directory read (`target/criterion`).
    pub dir: PathBuf,
    /// Every benchmark found, sorted by id.
    pub figures: Vec<MicroFigure>,
    /// Files that could not be read or parsed, and why.
    pub problems: Vec<String>,
}

impl Micro {
    /// Reads `<dir>/<group>/<function>/new/estimates.json` (and the
    /// benchmark's id and throughput from `new/benchmark.json` beside it)
    /// for every benchmark under `dir`, at any depth up to 4. A missing
    /// directory yields no figures.
    pub fn read(dir: &Path) -> Micro {
        let mut micro = Micro {
            dir: dir.to_owned(),
            ..Micro::default()
        };
        micro.walk(dir, 0);
        micro.figures.sort_by(|a, b| a.id.cmp(&b.id));
        micro
    }

    fn walk(&mut self, dir: &Path, depth: usize) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut subdirs: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect();
        subdirs.sort();
        for sub in subdirs {
            let name = sub.file_name().map(|n| n.to_string_lossy().into_owned());
            match name.as_deref() {
                Some("new") if sub.join("estimates.json").is_file() => self.read_one(dir, &sub),
                Some("new") => {}
                Some("report" | "base" | "change") => {}
                _ if depth < 4 => self.walk(&sub, depth + 1),
                _ => {}
            }
        }
    }

    fn read_one(&mut self, bench_dir: &Path, new: &Path) {
        let estimates = new.join("estimates.json");
        let parsed = std::fs::read_to_string(&estimates)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).map_err(|e| e.to_string()));
        let median_ns = match parsed.map(|v| v["median"]["point_estimate"].as_f64()) {
            Ok(Some(m)) => m,
            Ok(None) => {
                self.problems
                    .push(format!("{}: no median point estimate", estimates.display()));
                return;
            }
            Err(e) => {
                self.problems.push(format!("{}: {e}", estimates.display()));
                return;
            }
        };
        let meta = std::fs::read_to_string(new.join("benchmark.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
        let id = meta
            .as_ref()
            .and_then(|m| m["full_id"].as_str().map(str::to_owned))
            .unwrap_or_else(|| {
                bench_dir
                    .strip_prefix(&self.dir)
                    .unwrap_or(bench_dir)
                    .to_string_lossy()
                    .into_owned()
            });
        let elements = meta
            .as_ref()
            .and_then(|m| m["throughput"]["Elements"].as_u64());
        let measured = std::fs::metadata(&estimates)
            .and_then(|m| m.modified())
            .ok();
        self.figures.push(MicroFigure {
            id,
            median_ns,
            elements,
            measured,
        });
    }

    fn render(&self, md: &mut String) {
        let _ = writeln!(md, "### Micro-benchmarks (criterion, medians)\n");
        let _ = writeln!(
            md,
            "From the last criterion run (`{MICRO_COMMAND}`) found in `target/criterion`, not measured by this command; the date says when each benchmark last ran (an older date is a benchmark that was not part of the last run, e.g. one since renamed).\n"
        );
        if self.figures.is_empty() {
            let _ = writeln!(
                md,
                "No criterion results were found in `{}`.\n",
                self.dir.display()
            );
        } else {
            let _ = writeln!(md, "| benchmark | median | per element | measured |");
            let _ = writeln!(md, "|---|---:|---:|---|");
            for f in &self.figures {
                let per = match f.elements {
                    Some(n) if n > 1 && names_count(&f.id, n) => {
                        format!("{} ({})", fmt_ns(f.median_ns / n as f64), fmt_int(n))
                    }
                    _ => String::new(),
                };
                let when = f.measured.map_or_else(String::new, utc_minutes);
                let _ = writeln!(
                    md,
                    "| `{}` | {} | {per} | {when} |",
                    f.id.replace('`', "'"),
                    fmt_ns(f.median_ns)
                );
            }
            md.push('\n');
        }
        for p in &self.problems {
            let _ = writeln!(md, "- not read: {}", cell(p));
        }
        if !self.problems.is_empty() {
            md.push('\n');
        }
    }
}

/// Whether the benchmark's id names its element count (`fan_out_100_…`):
/// criterion keeps a group's throughput for the group's later benchmarks,
/// so a declared count alone does not say that the benchmark has elements.
fn names_count(id: &str, n: u64) -> bool {
    id.split(|c: char| !c.is_ascii_digit())
        .any(|part| part == n.to_string())
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{} ms", fmt_num(ns / 1e6))
    } else if ns >= 1e3 {
        format!("{} µs", fmt_num(ns / 1e3))
    } else {
        format!("{} ns", fmt_num(ns))
    }
}

// ---- charts -----------------------------------------------------------------------

/// What happened to the charts of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Charts {
    /// Charts were not asked for.
    NotRequested,
    /// No chart was drawn, for this reason (e.g. the font is missing).
    Skipped(String),
    /// The charts drawn, and the ones that failed.
    Drawn {
        /// The charts written.
        charts: Vec<Chart>,
        /// Charts that could not be drawn, and why.
        failed: Vec<String>,
    },
}

/// One chart written as a PNG file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chart {
    /// Its title (the image's alt text).
    pub title: String,
    /// The file written.
    pub file: PathBuf,
    /// Its path relative to the markdown file's directory, with `/`.
    pub link: String,
    /// Its size in bytes.
    pub bytes: u64,
}

impl Charts {
    fn render(&self, md: &mut String) {
        let _ = writeln!(md, "### Charts\n");
        match self {
            Charts::NotRequested => {
                let _ = writeln!(md, "Not drawn in this run.\n");
            }
            Charts::Skipped(why) => {
                let _ = writeln!(md, "Charts skipped: {}.\n", cell(why));
            }
            Charts::Drawn { charts, failed } => {
                if charts.is_empty() && failed.is_empty() {
                    let _ = writeln!(md, "Nothing in this run to chart.\n");
                }
                for c in charts {
                    let _ = writeln!(md, "![{}]({})\n", c.title, c.link);
                }
                for f in failed {
                    let _ = writeln!(md, "- chart not drawn: {}", cell(f));
                }
                if !failed.is_empty() {
                    md.push('\n');
                }
            }
        }
    }
}

/// Why a chart could not be drawn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChartError {
    /// The chart's file name.
    pub chart: &'static str,
    /// What failed.
    pub message: String,
}

impl fmt::Display for ChartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.chart, self.message)
    }
}

impl std::error::Error for ChartError {}

/// The file names of the charts [`draw_charts`] may write.
pub const CHART_FILES: [&str; 4] = [
    "wake-latency-cdf.png",
    "publish-throughput.png",
    "idle-memory.png",
    "fanout-p99.png",
];

/// Chart size in pixels.
const CHART_SIZE: (u32, u32) = (900, 500);

/// Draws the report's charts as PNG files into `dir` (created if needed),
/// linked relative to `link_base` (the markdown file's directory): the
/// wake-latency CDF of every system, the peers' publish throughput, the
/// idle memory per subscriber and the fan-out p99 by N, each when the run
/// has its data. Chart files of [`CHART_FILES`] this run did not draw are
/// removed from `dir`, so the directory holds this run's charts only.
/// Without the font at [`FONT_PATH`] nothing is drawn. Never panics.
pub fn draw_charts(report: &Report, dir: &Path, link_base: &Path) -> Charts {
    if let Err(why) = load_font(Path::new(FONT_PATH)) {
        return Charts::Skipped(why);
    }
    if let Err(e) = std::fs::create_dir_all(dir) {
        return Charts::Skipped(format!("{}: {e}", dir.display()));
    }
    let mut charts = Vec::new();
    let mut failed = Vec::new();
    type Draw = fn(&Report, &Path) -> Result<Option<String>, ChartError>;
    let all: [(&str, Draw); 4] = [
        (CHART_FILES[0], chart_cdf),
        (CHART_FILES[1], chart_throughput),
        (CHART_FILES[2], chart_memory),
        (CHART_FILES[3], chart_fanout),
    ];
    for (name, draw) in all {
        let file = dir.join(name);
        match draw(report, &file) {
            Ok(Some(title)) => charts.push(Chart {
                title,
                link: relative_link(link_base, &file),
                bytes: std::fs::metadata(&file).map_or(0, |m| m.len()),
                file,
            }),
            Ok(None) => {
                // not in this run: do not leave an older run's chart behind
                let _ = std::fs::remove_file(&file);
            }
            Err(e) => {
                let _ = std::fs::remove_file(&file);
                failed.push(e.to_string());
            }
        }
    }
    Charts::Drawn { charts, failed }
}

/// Registers the TTF at `path` as plotters' `sans-serif` (once per
/// process).
fn load_font(path: &Path) -> Result<(), String> {
    static LOADED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    LOADED
        .get_or_init(|| {
            let bytes = read_font(path)?;
            // plotters keeps the font for the life of the process
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", plotters::style::FontStyle::Normal, bytes)
                .map_err(|_| format!("{} is not a usable TrueType font", path.display()))
        })
        .clone()
}

/// The bytes of the font file at `path`, or why not, naming the package
/// that installs it.
fn read_font(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| {
        format!(
            "the font {} cannot be read ({e}); install the Debian package {FONT_PACKAGE}",
            path.display()
        )
    })
}

/// `file` relative to `base` (both made absolute), with `/` separators; the
/// absolute path when there is no relative one.
fn relative_link(base: &Path, file: &Path) -> String {
    let absolute = |p: &Path| {
        std::fs::canonicalize(p).unwrap_or_else(|_| {
            std::env::current_dir()
                .map(|d| d.join(p))
                .unwrap_or_else(|_| p.to_owned())
        })
    };
    let base = absolute(base);
    let file = absolute(file);
    let b: Vec<Component<'_>> = base.components().collect();
    let f: Vec<Component<'_>> = file.components().collect();
    let common = b.iter().zip(&f).take_while(|(x, y)| x == y).count();
    if common == 0 {
        return file.to_string_lossy().into_owned();
    }
    let mut parts: Vec<String> = vec!["..".into(); b.len() - common];
    parts.extend(
        f[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    parts.join("/")
}

type Area<'a> =
    plotters::drawing::DrawingArea<plotters::backend::BitMapBackend<'a>, plotters::coord::Shift>;

/// Draws into an RGB buffer with `draw` and writes it to `path` as PNG. A
/// panic inside plotters becomes an error.
fn render_png(
    chart: &'static str,
    path: &Path,
    draw: impl FnOnce(&Area<'_>) -> Result<(), String>,
) -> Result<(), ChartError> {
    let err = |message: String| ChartError { chart, message };
    let (w, h) = CHART_SIZE;
    let mut buf = vec![0u8; w as usize * h as usize * 3];
    let drawn = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let root =
            plotters::backend::BitMapBackend::with_buffer(&mut buf, CHART_SIZE).into_drawing_area();
        root.fill(&plotters::style::WHITE)
            .map_err(|e| e.to_string())?;
        draw(&root)?;
        root.present().map_err(|e| e.to_string())
    }));
    match drawn {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(err(e)),
        Err(_) => return Err(err("plotters panicked".into())),
    }
    let file = std::fs::File::create(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
    let mut encoder = png::Encoder::new(io::BufWriter::new(file), w, h);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::High);
    let mut writer = encoder.write_header().map_err(|e| err(e.to_string()))?;
    writer
        .write_image_data(&buf)
        .map_err(|e| err(e.to_string()))?;
    writer.finish().map_err(|e| err(e.to_string()))
}

fn text_style(size: f64) -> plotters::style::TextStyle<'static> {
    plotters::style::TextStyle::from(("sans-serif", size).into_font())
}

/// Line and bar colours: Flagpost's blues and reds first, then the peers'.
const COLOURS: [RGBColor; 9] = [
    RGBColor(90, 90, 90),   // floor
    RGBColor(31, 119, 180), // Flagpost raw
    RGBColor(214, 39, 40),  // Flagpost Notifier
    RGBColor(255, 127, 14), // peers …
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

/// The CDF points of a histogram (µs, cumulative fraction), up to `cap` µs.
fn cdf_points(h: &Histogram<u64>, cap: f64) -> Vec<(f64, f64)> {
    let mut points = vec![(h.min().max(1) as f64 / 1000.0, 0.0)];
    let mut last = 0.0;
    for v in h.iter_recorded() {
        let x = h.highest_equivalent(v.value_iterated_to()) as f64 / 1000.0;
        let y = v.percentile() / 100.0;
        if x > cap {
            points.push((cap, last));
            return points;
        }
        points.push((x, y));
        last = y;
    }
    points
}

fn chart_cdf(report: &Report, path: &Path) -> Result<Option<String>, ChartError> {
    let mut series: Vec<(String, &Histogram<u64>)> = report
        .latency
        .iter()
        .map(|s| (s.name.clone(), &s.histogram))
        .collect();
    if let Some(run) = &report.peers {
        for s in &run.systems {
            if let Ok(m) = &s.wake {
                let name = if s.flagpost {
                    "Flagpost, Notifier (peers run)".to_owned()
                } else {
                    s.system.clone()
                };
                series.push((name, &m.histogram));
            }
        }
    }
    series.retain(|(_, h)| !h.is_empty());
    if series.is_empty() {
        return Ok(None);
    }
    let cap = series
        .iter()
        .map(|(_, h)| h.value_at_quantile(0.999) as f64 / 1000.0)
        .fold(0.0, f64::max)
        * 1.1;
    // from the power of ten below the fastest sample: log axes label powers
    // of ten and their multiples from the first one in range
    let low = series
        .iter()
        .map(|(_, h)| h.min().max(1) as f64 / 1000.0)
        .fold(f64::INFINITY, f64::min);
    let low = 10f64.powf(low.log10().floor());
    let title = "Wake latency, cumulative distribution (to p99.9, log scale)";
    render_png(CHART_FILES[0], path, |root| {
        let e = |e: &dyn fmt::Display| e.to_string();
        let mut chart = ChartBuilder::on(root)
            .caption(title, text_style(20.0))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d((low..cap.max(low * 10.0)).log_scale(), 0.0..1.0)
            .map_err(|x| e(&x))?;
        chart
            .configure_mesh()
            .x_desc("latency (µs, log scale)")
            .y_desc("fraction of wake-ups")
            .label_style(text_style(13.0))
            .axis_desc_style(text_style(14.0))
            .x_labels(40)
            .max_light_lines(0)
            .x_label_formatter(&|v| log_label(*v))
            .draw()
            .map_err(|x| e(&x))?;
        let mut next = 0;
        for (name, h) in &series {
            let colour = if name.starts_with("floor") {
                COLOURS[0]
            } else {
                next += 1;
                COLOURS[1 + (next - 1) % (COLOURS.len() - 1)]
            };
            chart
                .draw_series(LineSeries::new(cdf_points(h, cap), colour.stroke_width(2)))
                .map_err(|x| e(&x))?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(text_style(13.0))
            .draw()
            .map_err(|x| e(&x))
    })?;
    Ok(Some(title.into()))
}

/// A short name for a peer on a bar chart's axis: its first word
/// (`PostgreSQL`, `mosquitto`).
fn short_name(system: &str) -> String {
    system
        .split_whitespace()
        .next()
        .unwrap_or(system)
        .trim_end_matches(',')
        .to_owned()
}

/// A log axis label for 1, 2 and 5 times a power of ten; no label for the
/// other ticks.
fn log_label(v: f64) -> String {
    if !(v.is_finite() && v > 0.0) {
        return String::new();
    }
    let mantissa = v / 10f64.powf(v.log10().floor());
    if [1.0, 2.0, 5.0, 10.0]
        .iter()
        .any(|m| (mantissa - m).abs() < 1e-6)
    {
        fmt_axis(v)
    } else {
        String::new()
    }
}

/// A value for a bar's label: 3 significant digits with k/M.
fn short_value(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", fmt_axis(v / 1e6))
    } else if v >= 1e4 {
        format!("{}k", fmt_axis(v / 1e3))
    } else {
        fmt_axis(v)
    }
}

/// An axis label: [`fmt_num`] without trailing zeros (`1`, `2.5`, `1,000`).
fn fmt_axis(v: f64) -> String {
    let s = fmt_num(v);
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// Bars on a log y axis: groups of bars (one per entry of `legend`) at
/// x = 1, 2, …, labelled by the group's name.
fn bar_chart(
    root: &Area<'_>,
    title: &str,
    y_desc: &str,
    legend: &[(&str, RGBColor)],
    groups: &[(String, Vec<Option<f64>>)],
) -> Result<(), String> {
    let e = |e: &dyn fmt::Display| e.to_string();
    let values = groups
        .iter()
        .flat_map(|(_, v)| v.iter().flatten().copied())
        .filter(|v| *v > 0.0);
    let (lo, hi) = values.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if hi <= 0.0 {
        return Err("no positive value".into());
    }
    // a factor above 10, so that a power of ten (a labelled line) is in range
    let (lo, hi) = (lo / 4.0, hi * 4.0);
    let n = groups.len();
    let names: Vec<String> = groups.iter().map(|(name, _)| name.clone()).collect();
    let mut chart = ChartBuilder::on(root)
        .caption(title, text_style(20.0))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(65)
        .build_cartesian_2d(0.0..(n as f64 + 1.0), (lo..hi).log_scale())
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n + 2)
        .x_label_formatter(&|x| {
            let k = x.round();
            if (x - k).abs() < 1e-6 && k >= 1.0 {
                names.get(k as usize - 1).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc(y_desc)
        .y_labels(8)
        .y_label_formatter(&|v| short_value(*v))
        .label_style(text_style(13.0))
        .axis_desc_style(text_style(14.0))
        .draw()
        .map_err(|x| e(&x))?;
    let per = legend.len().max(1) as f64;
    let width = 0.7 / per;
    let single = legend.len() == 1;
    for (j, (label, colour)) in legend.iter().enumerate() {
        let colour = *colour;
        // (left edge, value, the group's name)
        let bars: Vec<(f64, f64, &str)> = groups
            .iter()
            .enumerate()
            .filter_map(|(i, (name, v))| {
                let v = v.get(j).copied().flatten()?;
                Some((i as f64 + 0.65 + j as f64 * width, v, name.as_str()))
            })
            .collect();
        // one series: Flagpost, the floor and the peers in their own colours
        let colour_of = |name: &str| {
            if !single {
                colour
            } else if name.starts_with("Flagpost") {
                COLOURS[1]
            } else if name.starts_with("bare") || name.starts_with("floor") {
                COLOURS[0]
            } else {
                COLOURS[3]
            }
        };
        let bar_width = width * 0.92;
        chart
            .draw_series(bars.iter().map(|&(left, v, name)| {
                Rectangle::new(
                    [(left, lo), (left + bar_width, v.max(lo * 1.01))],
                    colour_of(name).filled(),
                )
            }))
            .map_err(|x| e(&x))?
            .label(*label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], colour.filled()));
        let above = text_style(12.0).pos(Pos::new(HPos::Center, VPos::Bottom));
        chart
            .draw_series(bars.iter().map(|&(left, v, _)| {
                Text::new(
                    short_value(v),
                    (left + bar_width / 2.0, v.max(lo * 1.01) * 1.05),
                    above.clone(),
                )
            }))
            .map_err(|x| e(&x))?;
    }
    if legend.len() > 1 {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(text_style(13.0))
            .draw()
            .map_err(|x| e(&x))?;
    }
    Ok(())
}

fn chart_throughput(report: &Report, path: &Path) -> Result<Option<String>, ChartError> {
    let Some(run) = &report.peers else {
        return Ok(None);
    };
    let groups: Vec<(String, Vec<Option<f64>>)> = run
        .systems
        .iter()
        .map(|s| {
            let rate = |subs: usize| {
                s.throughput
                    .iter()
                    .flatten()
                    .find(|t| t.subscribers == subs)
                    .map(|t| t.publishes_per_s)
            };
            (short_name(&s.system), vec![rate(1), rate(100)])
        })
        .filter(|(_, v)| v.iter().any(|x| x.is_some_and(|x| x > 0.0)))
        .collect();
    if groups.is_empty() {
        return Ok(None);
    }
    let title = "Publish throughput (publishes/s delivered to every subscriber, log scale)";
    render_png(CHART_FILES[1], path, |root| {
        bar_chart(
            root,
            title,
            "publishes per second",
            &[
                ("1 subscriber", COLOURS[1]),
                ("100 subscribers", COLOURS[3]),
            ],
            &groups,
        )
    })?;
    Ok(Some(title.into()))
}

fn chart_memory(report: &Report, path: &Path) -> Result<Option<String>, ChartError> {
    let mut groups: Vec<(String, Vec<Option<f64>>)> = Vec::new();
    if let Some(run) = &report.peers {
        for s in &run.systems {
            if let Ok(b) = &s.idle_bytes {
                let name = if s.flagpost {
                    "Flagpost (peers)".to_owned()
                } else {
                    short_name(&s.system)
                };
                groups.push((name, vec![Some(*b)]));
            }
        }
    }
    for (name, b) in &report.memory {
        groups.push((name.clone(), vec![Some(*b)]));
    }
    if groups.is_empty() {
        return Ok(None);
    }
    let title = "Server memory per idle subscriber (bytes, log scale)";
    render_png(CHART_FILES[2], path, |root| {
        bar_chart(
            root,
            title,
            "bytes per subscriber",
            &[("bytes", COLOURS[1])],
            &groups,
        )
    })?;
    Ok(Some(title.into()))
}

fn chart_fanout(report: &Report, path: &Path) -> Result<Option<String>, ChartError> {
    let points: Vec<&FanoutPoint> = report
        .fanout
        .iter()
        .filter(|p| p.flagpost.samples > 0 && p.floor.samples > 0)
        .collect();
    if points.len() < 2 {
        return Ok(None);
    }
    let n_max = points.iter().map(|p| p.n).max().unwrap_or(1) as f64;
    let n_min = points.iter().map(|p| p.n).min().unwrap_or(1).max(1) as f64;
    let all = points.iter().flat_map(|p| {
        [
            p.flagpost.p50_us,
            p.flagpost.p99_us,
            p.floor.p50_us,
            p.floor.p99_us,
        ]
    });
    let (lo, hi) = all.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let title = "Fan-out: one notification until all N listeners have it";
    render_png(CHART_FILES[3], path, |root| {
        let e = |e: &dyn fmt::Display| e.to_string();
        let mut chart = ChartBuilder::on(root)
            .caption(title, text_style(20.0))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(65)
            .build_cartesian_2d(
                (n_min * 0.8..n_max * 1.25).log_scale(),
                // from a power of ten: the log axis labels from the first one
                (10f64.powf(lo.max(0.1).log10().floor())..hi * 2.0).log_scale(),
            )
            .map_err(|x| e(&x))?;
        chart
            .configure_mesh()
            .x_desc("listeners N (log scale)")
            .y_desc("µs (log scale)")
            .x_labels(40)
            .max_light_lines(0)
            .y_labels(40)
            .x_label_formatter(&|v| log_label(*v))
            .y_label_formatter(&|v| log_label(*v))
            .label_style(text_style(13.0))
            .axis_desc_style(text_style(14.0))
            .draw()
            .map_err(|x| e(&x))?;
        type Line = (&'static str, RGBColor, u32, fn(&FanoutPoint) -> f64);
        let lines: [Line; 4] = [
            ("Flagpost p99", COLOURS[2], 3, |p| p.flagpost.p99_us),
            ("floor p99", COLOURS[0], 3, |p| p.floor.p99_us),
            ("Flagpost p50", COLOURS[1], 1, |p| p.flagpost.p50_us),
            ("floor p50", RGBColor(160, 160, 160), 1, |p| p.floor.p50_us),
        ];
        for (label, colour, width, value) in lines {
            chart
                .draw_series(LineSeries::new(
                    points.iter().map(|p| (p.n as f64, value(p))),
                    colour.stroke_width(width),
                ))
                .map_err(|x| e(&x))?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(width))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(text_style(13.0))
            .draw()
            .map_err(|x| e(&x))
    })?;
    Ok(Some(title.into()))
}

// ---- formatting ---------------------------------------------------------------------

/// A number as the tables print it: integers with thousands separators
/// from 1,000 on, otherwise three significant digits; `—` if not finite.
pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "—".into();
    }
    if v.abs() >= 999.5 {
        let out = fmt_int(v.abs().round() as u64);
        return if v < 0.0 { format!("-{out}") } else { out };
    }
    if v == 0.0 {
        return "0".into();
    }
    let magnitude = v.abs().log10().floor() as i32;
    let decimals = (2 - magnitude).clamp(0, 8) as usize;
    format!("{v:.decimals$}")
}

/// An integer with thousands separators: 1,000,000.
pub fn fmt_int(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A ratio with at least two significant digits (0.00028, 0.031, 1.27) and
/// no more than it needs from 10 on (43.5, 192).
pub fn fmt_ratio(r: f64) -> String {
    if !r.is_finite() {
        return "—".into();
    }
    let decimals = if r >= 100.0 {
        0
    } else if r >= 10.0 {
        1
    } else if r > 0.0 {
        (1 - r.log10().floor() as i32).max(2) as usize
    } else {
        2
    };
    format!("{r:.decimals$}")
}

/// `a / b` formatted with [`fmt_ratio`], `—` when either is not positive.
pub fn ratio_or_dash(a: f64, b: f64) -> String {
    if a > 0.0 && b > 0.0 && a.is_finite() && b.is_finite() {
        fmt_ratio(a / b)
    } else {
        "—".into()
    }
}

/// Text safe in a markdown table cell: no `|`, no line break.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// `t` as `YYYY-MM-DD HH:MM UTC`.
pub fn utc_minutes(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn generated() -> &'static str {
        "## Generated\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
    }

    #[test]
    fn splice_keeps_outside_text_byte_for_byte() {
        let before = "# Benchmarks\r\n\nHand-written  analysis, trailing spaces   \n\n";
        let after = "\n## After\n\nno final newline";
        let existing =
            format!("{before}{BEGIN_MARKER}\nold generated text\nmore\n{END_MARKER}{after}");
        let out = splice(&existing, generated()).expect("markers are fine");
        assert_eq!(
            out,
            format!("{before}{BEGIN_MARKER}\n{}{END_MARKER}{after}", generated())
        );
        // idempotent: a second run with the same text changes nothing
        assert_eq!(splice(&out, generated()).expect("again"), out);
        // and a different text only changes what is between the markers
        let other = splice(&out, "x\n").expect("other");
        assert!(other.starts_with(&format!("{before}{BEGIN_MARKER}\nx\n{END_MARKER}")));
        assert!(other.ends_with(after));
    }

    #[test]
    fn splice_accepts_indented_marker_lines_and_adds_a_final_newline() {
        let existing = format!("a\n  {BEGIN_MARKER}  \n{END_MARKER}\nz\n");
        let out = splice(&existing, "body").expect("markers");
        assert_eq!(
            out,
            format!("a\n  {BEGIN_MARKER}  \nbody\n{END_MARKER}\nz\n")
        );
    }

    #[test]
    fn splice_appends_when_markers_are_missing() {
        let out = splice("# Title\n\ntext", generated()).expect("append");
        assert_eq!(
            out,
            format!(
                "# Title\n\ntext\n\n{BEGIN_MARKER}\n{}{END_MARKER}\n",
                generated()
            )
        );
        let empty = splice("", "g\n").expect("empty file");
        assert_eq!(empty, format!("{BEGIN_MARKER}\ng\n{END_MARKER}\n"));
    }

    #[test]
    fn splice_rejects_broken_markers() {
        let no_end = format!("a\nb\n{BEGIN_MARKER}\nold\n");
        assert_eq!(
            splice(&no_end, "g"),
            Err(MarkerError::MissingEnd { begin_line: 3 })
        );
        let no_begin = format!("a\n{END_MARKER}\n");
        assert_eq!(
            splice(&no_begin, "g"),
            Err(MarkerError::MissingBegin { end_line: 2 })
        );
        let reversed = format!("{END_MARKER}\n{BEGIN_MARKER}\n");
        assert_eq!(
            splice(&reversed, "g"),
            Err(MarkerError::MissingBegin { end_line: 1 })
        );
        let twice = format!("{BEGIN_MARKER}\n{END_MARKER}\n{BEGIN_MARKER}\n{END_MARKER}\n");
        assert_eq!(splice(&twice, "g"), Err(MarkerError::Duplicate { line: 3 }));
        assert!(MarkerError::MissingEnd { begin_line: 3 }
            .to_string()
            .contains("line 3"));
    }

    #[test]
    fn write_generated_leaves_a_broken_file_untouched() {
        let dir = std::env::temp_dir().join(format!("flagpost-report-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("BENCHMARKS.md");
        let broken = format!("# B\n{BEGIN_MARKER}\nhalf\n");
        std::fs::write(&path, &broken).expect("write");
        match write_generated(&path, "new\n") {
            Err(WriteError::Markers {
                error: MarkerError::MissingEnd { begin_line: 2 },
                ..
            }) => {}
            other => panic!("expected a marker error, got {other:?}"),
        }
        assert_eq!(std::fs::read_to_string(&path).expect("read"), broken);

        // a missing file is created with the section
        let fresh = dir.join("new.md");
        let _ = std::fs::remove_file(&fresh);
        write_generated(&fresh, "g\n").expect("create");
        assert_eq!(
            std::fs::read_to_string(&fresh).expect("read"),
            format!("{BEGIN_MARKER}\ng\n{END_MARKER}\n")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn ratio_and_targets() {
        let f = Figure::new(Section::Wake, "p99", 60.0, Unit::Micros)
            .floor("relay floor", 50.0)
            .target(Rule::RatioAtMost(1.2), "≤ 1.2× the relay floor");
        assert_eq!(f.ratio(), Some(1.2));
        assert_eq!(f.met(), Some(true)); // the bound itself meets it
        let worse = Figure {
            value: 61.0,
            ..f.clone()
        };
        assert_eq!(worse.met(), Some(false));

        // no reference, or a zero one: no ratio, and a ratio target is unknown
        let no_floor = Figure {
            reference: None,
            ..f.clone()
        };
        assert_eq!((no_floor.ratio(), no_floor.met()), (None, None));
        let zero_floor = f.clone().floor("bare", 0.0);
        assert_eq!((zero_floor.ratio(), zero_floor.met()), (None, None));
        // nothing measured: never "met"
        let nan = Figure {
            value: f64::NAN,
            ..f.clone()
        };
        assert_eq!(nan.met(), None);

        let rate = Figure::new(Section::HotLoop, "calls", 47e6, Unit::PerSecond)
            .target(Rule::AtLeast(10e6), "≥ 10 M calls/s");
        assert_eq!(rate.met(), Some(true));
        let ingest = Figure::new(Section::Ingest, "rate", 85.0, Unit::PerSecond)
            .floor("recvmmsg", 100.0)
            .target(Rule::RatioAtLeast(0.9), "≥ 0.9× floor");
        assert_eq!(ingest.met(), Some(false));
        let mem = Figure::new(Section::Memory, "B", 512.0, Unit::Bytes)
            .target(Rule::AtMost(512.0), "≤ 0.5 KiB");
        assert_eq!(mem.met(), Some(true));
        // no floor for an absolute target: still decided
        assert_eq!(mem.ratio(), None);

        assert_eq!(below_every_peer(Some(30.0), &[40.0, 31.0]), Some(true));
        assert_eq!(below_every_peer(Some(30.0), &[40.0, 30.0]), Some(false));
        assert_eq!(below_every_peer(Some(30.0), &[]), None);
        assert_eq!(below_every_peer(None, &[1.0]), None);
    }

    #[test]
    fn numbers() {
        assert_eq!(fmt_num(48.44), "48.4");
        assert_eq!(fmt_num(175.3), "175");
        assert_eq!(fmt_num(5.123), "5.12");
        assert_eq!(fmt_num(1197.4), "1,197");
        assert_eq!(fmt_num(3_807_288.0), "3,807,288");
        assert_eq!(fmt_num(0.0), "0");
        assert_eq!(fmt_int(50), "50");
        assert_eq!(fmt_int(20_000), "20,000");
        assert_eq!(fmt_num(f64::NAN), "—");
        assert_eq!(fmt_ratio(1.6), "1.60");
        assert_eq!(fmt_ratio(0.000_28), "0.00028");
        assert_eq!(fmt_ratio(43.46), "43.5");
        assert_eq!(fmt_ratio(192.4), "192");
        assert_eq!(Unit::PerSecond.format(47.04e6), "47.0 M/s");
        assert_eq!(Unit::PerSecond.format(8_676_013.0), "8.68 M/s");
        assert_eq!(Unit::PerSecond.format(339_985.2), "339,985 /s");
        assert_eq!(ratio_or_dash(1.0, 0.0), "—");
        assert_eq!(utc_minutes(UNIX_EPOCH), "1970-01-01 00:00 UTC");
        // 2026-11-26 05:12:17 UTC
        let t = UNIX_EPOCH + Duration::from_secs(1_795_669_937);
        assert_eq!(utc_minutes(t), "2026-11-26 05:12 UTC");
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn command_lines_are_quoted_for_a_shell() {
        let args = [
            "/work/main/target/release/flagpost-bench",
            "all",
            "--write",
            "/tmp/a b/BENCHMARKS.md",
            "it's",
        ]
        .map(String::from);
        assert_eq!(
            command_line(&args),
            r"flagpost-bench all --write '/tmp/a b/BENCHMARKS.md' 'it'\''s'"
        );
    }

    fn machine() -> Machine {
        Machine {
            rows: vec![
                ("CPU".into(), "Test CPU, 2 logical CPUs".into()),
                ("command".into(), "`flagpost-bench all --quick`".into()),
            ],
        }
    }

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

    fn measured(values_us: &[u64]) -> Measured {
        let mut h = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).expect("histogram");
        for v in values_us {
            h.record(v * 1000).expect("in range");
        }
        Measured::new(h, 0)
    }

    fn throughput(subscribers: usize, rate: f64) -> Result<Throughput, String> {
        Ok(Throughput {
            subscribers,
            publishes_per_s: rate,
            deliveries_per_s: rate * subscribers as f64,
            cpu_s_per_million: 1.0,
            sub_cpu_s_per_million: 2.0,
            lost: 0,
            stalled: false,
        })
    }

    fn peer_run() -> PeerRun {
        PeerRun {
            samples: 200,
            secs: 0.5,
            idle: 50,
            systems: vec![
                SystemFigures {
                    system: "Flagpost".into(),
                    flagpost: true,
                    version: "this workspace".into(),
                    wake: Ok(measured(&[30, 35, 40])),
                    throughput: vec![throughput(1, 300_000.0), throughput(100, 100_000.0)],
                    idle_bytes: Ok(320.0),
                },
                SystemFigures {
                    system: "Redis pub/sub".into(),
                    flagpost: false,
                    version: "Redis server v=7.0.15".into(),
                    wake: Ok(measured(&[60, 70, 80])),
                    throughput: vec![throughput(1, 1_000_000.0), Err("a | b".into())],
                    idle_bytes: Ok(10_240.0),
                },
            ],
            missing: vec!["nats".into()],
        }
    }

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

    #[test]
    fn reads_criterion_estimates() {
        let dir =
            std::env::temp_dir().join(format!("flagpost-criterion-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let grouped = dir.join("broker/fan_out_100_listeners/new");
        let flat = dir.join("wire_frame_encode/new");
        let broken = dir.join("flags/broken/new");
        for d in [&grouped, &flat, &broken, &dir.join("report")] {
            std::fs::create_dir_all(d).expect("dirs");
        }
        let estimates = |median: f64| {
            format!(r#"{{"mean":{{"point_estimate":1.0}},"median":{{"point_estimate":{median}}}}}"#)
        };
        std::fs::write(grouped.join("estimates.json"), estimates(710.0)).expect("write");
        std::fs::write(
            grouped.join("benchmark.json"),
            r#"{"full_id":"broker/fan_out_100_listeners","throughput":{"Elements":100}}"#,
        )
        .expect("write");
        std::fs::write(flat.join("estimates.json"), estimates(2.8)).expect("write");
        // the group's throughput leaks into a later benchmark of the group
        let leaked = dir.join("broker/handle_datagram_no_listener/new");
        std::fs::create_dir_all(&leaked).expect("dirs");
        std::fs::write(leaked.join("estimates.json"), estimates(30.5)).expect("write");
        std::fs::write(
            leaked.join("benchmark.json"),
            r#"{"full_id":"broker/handle_datagram_no_listener","throughput":{"Elements":10000}}"#,
        )
        .expect("write");
        std::fs::write(broken.join("estimates.json"), "{not json").expect("write");

        let micro = Micro::read(&dir);
        let ids: Vec<&str> = micro.figures.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "broker/fan_out_100_listeners",
                "broker/handle_datagram_no_listener",
                "wire_frame_encode"
            ]
        );
        assert_eq!(micro.figures[0].median_ns, 710.0);
        assert_eq!(micro.figures[0].elements, Some(100));
        assert_eq!(micro.problems.len(), 1, "{:?}", micro.problems);
        let mut md = String::new();
        micro.render(&mut md);
        assert!(
            md.contains("| `broker/fan_out_100_listeners` | 710 ns | 7.10 ns (100) |"),
            "{md}"
        );
        assert!(md.contains("| `wire_frame_encode` | 2.80 ns |  |"), "{md}");
        assert!(
            md.contains("| `broker/handle_datagram_no_listener` | 30.5 ns |  |"),
            "{md}"
        );
        assert!(md.contains(MICRO_COMMAND));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn links_are_relative_to_the_markdown_file() {
        let base = std::env::temp_dir().join(format!("flagpost-link-test-{}", std::process::id()));
        let charts = base.join("benches/charts");
        std::fs::create_dir_all(&charts).expect("dirs");
        assert_eq!(
            relative_link(&base, &charts.join("wake-latency-cdf.png")),
            "benches/charts/wake-latency-cdf.png"
        );
        assert_eq!(relative_link(&charts, &base.join("x.png")), "../../x.png");
        let _ = std::fs::remove_dir_all(&base);
    }

    /// A report with every kind of chart data, shaped like a full run.
    fn chart_report() -> Report {
        let mut r = Report::new();
        r.add_latency(
            "floor: UDP → relay → TCP",
            &measured(&[40, 45, 48, 50, 74, 113]),
        );
        r.add_latency(
            "Flagpost, raw datagram",
            &measured(&[44, 48, 52, 60, 83, 175]),
        );
        r.add_latency("Flagpost, Notifier", &measured(&[45, 50, 57, 66, 82, 163]));
        let mut run = peer_run();
        run.systems[1].throughput[1] = throughput(100, 20_324.0);
        r.set_peers(run);
        let latency = |p50_us: f64, p99_us: f64| Latency {
            samples: 50,
            p50_us,
            p99_us,
            p999_us: p99_us,
            max_us: p99_us,
        };
        for (n, fp, floor) in [
            (1, 57.0, 55.0),
            (100, 500.0, 486.0),
            (10_000, 47_776.0, 53_936.0),
        ] {
            r.add_fanout(FanoutPoint {
                n,
                flagpost: latency(fp, fp * 2.0),
                floor: latency(floor, floor * 2.0),
            });
        }
        r.add_memory_bar("Flagpost N=10k", 322.0);
        r.add_memory_bar("bare TCP N=10k", 0.0);
        r
    }

    #[test]
    fn draws_charts_or_says_which_package_is_missing() {
        let base =
            std::env::temp_dir().join(format!("flagpost-charts-test-{}", std::process::id()));
        let dir = base.join("benches/charts");
        let _ = std::fs::remove_dir_all(&base);
        let stale = dir.join("fanout-p99.png");
        std::fs::create_dir_all(&dir).expect("dirs");
        std::fs::write(&stale, b"an older run's chart").expect("write");

        let mut report = chart_report();
        let charts = draw_charts(&report, &dir, &base);
        if !Path::new(FONT_PATH).is_file() {
            match charts {
                Charts::Skipped(why) => assert!(why.contains(FONT_PACKAGE), "{why}"),
                other => panic!("expected the charts to be skipped: {other:?}"),
            }
            let _ = std::fs::remove_dir_all(&base);
            return;
        }
        let Charts::Drawn { charts, failed } = charts else {
            panic!("charts not drawn: {charts:?}");
        };
        assert!(failed.is_empty(), "{failed:?}");
        let links: Vec<&str> = charts.iter().map(|c| c.link.as_str()).collect();
        assert_eq!(
            links,
            [
                "benches/charts/wake-latency-cdf.png",
                "benches/charts/publish-throughput.png",
                "benches/charts/idle-memory.png",
                "benches/charts/fanout-p99.png",
            ]
        );
        for c in &charts {
            let bytes = std::fs::read(&c.file).expect("chart written");
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", c.file.display());
            assert_eq!(bytes.len() as u64, c.bytes);
            // small enough for the repository, big enough to hold a chart
            assert!(
                (5_000..150_000).contains(&c.bytes),
                "{}: {} B",
                c.link,
                c.bytes
            );
        }
        let mut md = String::new();
        Charts::Drawn {
            charts: charts.clone(),
            failed: Vec::new(),
        }
        .render(&mut md);
        assert!(
            md.contains("](benches/charts/wake-latency-cdf.png)"),
            "{md}"
        );

        // a run without fan-out figures removes the older fan-out chart
        report.fanout.clear();
        let Charts::Drawn { charts, .. } = draw_charts(&report, &dir, &base) else {
            panic!("charts not drawn");
        };
        assert_eq!(charts.len(), 3);
        assert!(!stale.exists());
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn a_missing_font_names_its_package() {
        let why = read_font(Path::new("/nonexistent/DejaVuSans.ttf")).expect_err("no such file");
        assert!(why.contains("/nonexistent/DejaVuSans.ttf"), "{why}");
        assert!(why.contains(FONT_PACKAGE), "{why}");
        let mut md = String::new();
        Charts::Skipped(why).render(&mut md);
        assert!(
            md.starts_with("### Charts\n\nCharts skipped: the font"),
            "{md}"
        );
        assert!(!md.contains("!["));
    }

    #[test]
    fn cdf_points_rise_to_one_and_stop_at_the_cap() {
        let m = measured(&[10, 20, 30, 40, 1000]);
        let all = cdf_points(&m.histogram, f64::INFINITY);
        assert_eq!(all.first().map(|p| p.1), Some(0.0));
        assert!((all.last().map_or(0.0, |p| p.1) - 1.0).abs() < 1e-9);
        assert!(all.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
        let capped = cdf_points(&m.histogram, 100.0);
        assert_eq!(capped.last().map(|p| p.0), Some(100.0));
        assert!((capped.last().map_or(0.0, |p| p.1) - 0.8).abs() < 1e-9);
    }
}
