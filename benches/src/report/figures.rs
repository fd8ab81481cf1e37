//! One measured figure: [`Figure`], with the [`Section`] it belongs to, its
//! [`Unit`], the floor it is compared with ([`Reference`]) and the
//! benchmarks issue's [`Target`] ([`Rule`]); how its ratio and verdict are
//! decided, and what each section measures.

use super::fmt::{fmt_int, fmt_num};

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
    /// Raw notification datagrams into a broker with thousands of
    /// listeners connected, beside the broker with none and a bare floor.
    ScaleIngest,
    /// A quiet channel's wake latency while another channel of thousands
    /// of idle listeners is flooded.
    QuietFlood,
    /// Listeners that stop reading: the kernel memory queued for them and
    /// how soon the broker closes them.
    Stuck,
}

impl Section {
    /// Every section, in render order.
    pub const ALL: [Section; 10] = [
        Section::Wake,
        Section::Ingest,
        Section::FanOut,
        Section::Memory,
        Section::Idle,
        Section::HotLoop,
        Section::Flood,
        Section::ScaleIngest,
        Section::QuietFlood,
        Section::Stuck,
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
            Section::ScaleIngest => "Ingest with listeners connected",
            Section::QuietFlood => "Quiet channel under flood",
            Section::Stuck => "Stuck listeners",
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
            Section::ScaleIngest => {
                "Raw status datagrams blasted from one thread for a fixed time at a broker with N raw listeners connected (one farm process), counted by the broker (`datagrams`, `kernel_drops`, `flags_frames`, `route_visits`). Cases: (a) the listeners on one channel the notifications never target, (a′) all channels but interested only in channel shutdown, which status updates do not raise, (b) ten listeners per channel, notifications to random ones of those channels, (c) all channels, untargeted notifications; each with idle listeners (welcomed, then never read) and with listeners that read promptly. Floors, interleaved turn by turn: the same broker with no listener, and for (b) and (c) read promptly a bare process that receives the datagrams in `recvmmsg` batches of 32, decodes the channel and writes one 14-byte frame per batch to each reached connection that can take it (the targets' floor; the table also has it writing once per drain of its socket, as the broker does). A paced run at 90 % of the no-listener rate counts the kernel's drops at a rate the broker should sustain."
            }
            Section::QuietFlood => {
                "Thousands of idle listeners (ten per channel), a full-speed flood of raw status datagrams to one of their channels from one thread and then two, and a channel update to another channel every 100 ms from a sender of its own; a Flagpost `Listener` in its own process, listening for that channel's updates, stamps each wake. Latency is from each send to the next wake; a send with no wake within 1 s is lost. Unloaded: the same listeners, no flood, in the same run. Floor: the bare relay (UDP → TCP → blocked reader) whose socket takes the same flood."
            }
            Section::Stuck => {
                "A broker with a short `stuck_timeout` and K raw listeners that read, then stop reading at a recorded instant while status notifications keep reaching them (at a steady 1,000/s, and at full speed). Sampled every 100 ms from the broker's side of each connection (`/proc/<broker>/net/tcp`, and `ss -tmn` for the socket memory): the bytes queued for it (Send-Q), and the moment the broker closes it (its socket leaves ESTABLISHED), minus `stuck_timeout`. Two clients: default socket buffers, and a 4 KiB `SO_RCVBUF`."
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
    /// Seconds.
    Seconds,
    /// A count of events (an integer).
    Count,
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
            Unit::Seconds => format!("{} s", fmt_num(value)),
            Unit::Count => fmt_int(value.round().max(0.0) as u64),
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
    /// The value is at most the reference itself (which may be zero, where
    /// no ratio exists).
    AtMostReference,
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

    /// Whether `value` (with `ratio` to its reference, and the reference
    /// itself) meets the target; `None` when it cannot be told (no finite
    /// value, or a ratio target without a ratio, or a reference target
    /// without a reference).
    pub fn met(&self, value: f64, ratio: Option<f64>, reference: Option<f64>) -> Option<bool> {
        if !value.is_finite() {
            return None;
        }
        match self.rule {
            Rule::AtMost(bound) => Some(value <= bound),
            Rule::AtLeast(bound) => Some(value >= bound),
            Rule::RatioAtMost(bound) => ratio.map(|r| r <= bound),
            Rule::RatioAtLeast(bound) => ratio.map(|r| r >= bound),
            Rule::AtMostReference => reference.filter(|r| r.is_finite()).map(|r| value <= r),
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
        let reference = self.reference.as_ref().map(|r| r.value);
        self.target
            .as_ref()?
            .met(self.value, self.ratio(), reference)
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
        // at most the floor, where the floor may be zero (no ratio)
        let drops = Figure::new(Section::ScaleIngest, "drops", 0.0, Unit::Plain)
            .floor("bare floor", 0.0)
            .target(Rule::AtMostReference, "≤ the floor's");
        assert_eq!((drops.ratio(), drops.met()), (None, Some(true)));
        let more = Figure {
            value: 0.01,
            ..drops.clone()
        };
        assert_eq!(more.met(), Some(false));
        let unfloored = Figure {
            reference: None,
            ..drops
        };
        assert_eq!(unfloored.met(), None);
        assert_eq!(Unit::Seconds.format(1.5), "1.50 s");
        assert_eq!(Unit::Count.format(17.0), "17");
        assert_eq!(Unit::Count.format(12345.0), "12,345");

        assert_eq!(below_every_peer(Some(30.0), &[40.0, 31.0]), Some(true));
        assert_eq!(below_every_peer(Some(30.0), &[40.0, 30.0]), Some(false));
        assert_eq!(below_every_peer(Some(30.0), &[]), None);
        assert_eq!(below_every_peer(None, &[1.0]), None);
    }
}
