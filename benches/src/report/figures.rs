//! One measured figure: [`Figure`], with the [`Section`] it belongs to, its
//! [`Unit`], the floor it is compared with ([`Reference`]) and the
//! benchmarks issue's [`Target`] ([`Rule`]); how its ratio and verdict are
//! decided, and what each section measures.

use super::fmt::fmt_num;

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
    pub(super) fn method(self) -> &'static str {
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
    /// The target, where it states one.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::below_every_peer;

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
}
