//! Ingest with listeners connected: how many datagrams per second the
//! broker processes, and how many the kernel drops, while N listeners are
//! connected, in four routing cases ([`Case`]), the listeners idle or
//! reading promptly.
//!
//! Every configuration is measured in turns interleaved with its floors,
//! so that all see the same state of a shared machine: a broker with no
//! listener (alive for the whole scenario, fed the same mix of
//! notifications) and, for cases (b) and (c) with reading listeners, the
//! bare floor ([`super::floor`]) with the same listeners on its own farm —
//! on the broker's schedule (reading its socket between writes: the
//! targets' floor), and writing everything after each drain without reading
//! in between (beside it, in the table).
//! A turn blasts raw datagrams from this thread for a fixed time; the
//! receiver's `datagrams` counter over the turn gives the rate, and its
//! counters once it has drained what queued (drops are only reported with
//! the next datagram read) give the kernel's drops, the frames written and
//! the slots routing visited. Then a paced run at 90 % of the no-listener
//! rate of the same configuration's turns: a rate the broker should
//! sustain, so any kernel drop there is the listeners' doing.
//!
//! The farm reads first; then it stops reading and the same connections
//! are the idle listeners (welcomed, never read again).

use std::time::{Duration, Instant};

use flagpost_benches::farm::{per_ten_channel, Channels, FarmSpec, Hello};
use flagpost_benches::report::{fmt_num, fmt_ratio, Figure, Report, Rule, Section, Table, Unit};
use flagpost_core::{ChannelId, FlagSet, Notification};

use super::farm::ScaleFarm;
use super::send::{send_for, Mix, Sent};
use super::{int, settle, Counters};
use crate::Participant;

/// Sizes of the scenario.
pub(crate) struct Sizes {
    /// Listener counts (0 is the no-listener broker's own row).
    pub(crate) sizes: Vec<usize>,
    /// Seconds per turn.
    pub(crate) turn_secs: f64,
    /// Turns per receiver and phase.
    pub(crate) turns: u32,
    /// Seconds of each paced run.
    pub(crate) paced_secs: f64,
    /// Longest wait for a receiver to drain after a turn.
    pub(crate) settle: Duration,
}

impl Sizes {
    pub(crate) fn full() -> Sizes {
        Sizes {
            sizes: vec![0, 1_000, 10_000, 19_000],
            turn_secs: 1.0,
            turns: 2,
            paced_secs: 1.0,
            settle: Duration::from_secs(3),
        }
    }

    pub(crate) fn quick() -> Sizes {
        Sizes {
            sizes: vec![0, 100, 1_000],
            turn_secs: 0.1,
            turns: 1,
            paced_secs: 0.1,
            settle: Duration::from_millis(50),
        }
    }
}

/// Who the listeners are and what the notifications say.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Case {
    /// All listeners on one channel; status updates to random channels of
    /// a set that excludes it.
    Unreached,
    /// All channels, interested only in channel shutdown; untargeted status
    /// updates (which do not raise it).
    Uninterested,
    /// Ten listeners per channel over N/10 channels; status updates to
    /// random channels of those.
    PerTen,
    /// All channels, every flag; untargeted status updates.
    Everyone,
}

const CASES: [Case; 4] = [
    Case::Unreached,
    Case::Uninterested,
    Case::PerTen,
    Case::Everyone,
];

/// The channels case (a)'s notifications go to (never the listeners').
const UNREACHED_CHANNELS: usize = 1000;

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::Unreached => "(a) one channel, never targeted",
            Case::Uninterested => "(a′) shutdown interest only",
            Case::PerTen => "(b) ten per channel",
            Case::Everyone => "(c) all channels, untargeted",
        }
    }

    /// The farm's listeners.
    fn spec(self) -> FarmSpec {
        match self {
            Case::Unreached => FarmSpec::flagpost(
                FlagSet::ALL,
                Channels::One(ChannelId::new("parked").expect("channel")),
            ),
            Case::Uninterested => FarmSpec::flagpost(FlagSet::CHANNEL_SHUTDOWN, Channels::All),
            Case::PerTen => FarmSpec::flagpost(FlagSet::ALL, Channels::PerTen),
            Case::Everyone => FarmSpec::flagpost(FlagSet::ALL, Channels::All),
        }
    }

    /// The same listeners on the bare floor (whose hello is a line).
    fn floor_spec(self) -> Option<FarmSpec> {
        matches!(self, Case::PerTen | Case::Everyone).then(|| FarmSpec {
            hello: Hello::Line,
            ..self.spec()
        })
    }

    /// The notifications sent to `n` listeners of this case.
    fn mix(self, n: usize) -> Mix {
        match self {
            Case::Unreached => (0..UNREACHED_CHANNELS)
                .map(|i| {
                    let c = ChannelId::new(&format!("n{i}")).expect("channel");
                    Notification::status(Some(c))
                })
                .collect(),
            Case::PerTen => (0..n.div_ceil(10).max(1))
                .map(|i| Notification::status(Some(per_ten_channel(i * 10))))
                .collect(),
            Case::Uninterested | Case::Everyone => [Notification::status(None)].into(),
        }
    }
}

/// Idle or reading listeners.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Reading,
    Idle,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Reading => "reading",
            Mode::Idle => "idle",
        }
    }
}

/// One turn at a receiver.
struct Turn {
    sent: Sent,
    /// Datagrams processed between the counters read before and after.
    processed: u64,
    /// Seconds between those two readings.
    secs: f64,
    /// The counters' growth once the receiver drained.
    drained: Counters,
}

/// Sends `mix` to `p` for `secs` (at `rate` per second if given).
fn turn(p: &mut Participant, mix: &Mix, secs: f64, rate: Option<f64>, sizes: &Sizes) -> Turn {
    let before = Counters::query(p);
    let started = Instant::now();
    let sent = send_for(p.addr, mix, secs, rate);
    let during = Counters::query(p).since(before);
    let elapsed = started.elapsed().as_secs_f64();
    let drained = settle(p, sizes.settle).since(before);
    Turn {
        sent,
        processed: during.datagrams,
        secs: elapsed,
        drained,
    }
}

/// Turns added up.
#[derive(Clone, Copy, Default)]
struct Tally {
    sent: u64,
    processed: u64,
    secs: f64,
    drained: Counters,
}

impl Tally {
    fn add(&mut self, t: &Turn) {
        self.sent += t.sent.datagrams;
        self.processed += t.processed;
        self.secs += t.secs;
        let d = &mut self.drained;
        d.datagrams += t.drained.datagrams;
        d.kernel_drops += t.drained.kernel_drops;
        d.flags_frames += t.drained.flags_frames;
        d.possible_losses += t.drained.possible_losses;
        d.route_visits += t.drained.route_visits;
    }

    fn of(t: &Turn) -> Tally {
        let mut tally = Tally::default();
        tally.add(t);
        tally
    }

    /// Datagrams processed per second.
    fn rate(&self) -> f64 {
        self.processed as f64 / self.secs.max(1e-9)
    }

    /// Kernel drops per datagram sent.
    fn drop_share(&self) -> f64 {
        self.drained.kernel_drops as f64 / self.sent.max(1) as f64
    }

    fn per_datagram(&self, v: u64) -> f64 {
        v as f64 / self.drained.datagrams.max(1) as f64
    }
}

/// The bare floor's turns (full speed) and paced run.
#[derive(Clone, Copy)]
struct FloorRun {
    blast: Tally,
    paced: Tally,
}

/// What one configuration (N, case, mode) measured.
struct Measured {
    blast: Tally,
    paced: Tally,
    /// The no-listener broker's turns beside it.
    base: Tally,
    /// The bare floor's, for (b) and (c) reading: interleaved (the targets'
    /// floor), then writing whole drains.
    floor: Option<[FloorRun; 2]>,
}

/// The floor's two ways to coalesce: its query, and its name in the table.
const COALESCE: [(&str, &str); 2] = [
    ("coalesce interleave", "bare floor"),
    ("coalesce drain", "bare floor, no reads between writes"),
];

pub(crate) fn run(sizes: &Sizes, report: &mut Report) {
    println!(
        "\ningest with listeners connected: raw status datagrams from one thread, {} s turns, {} per receiver, interleaved with the no-listener broker (and the bare floor); paced runs at 90 % of the no-listener rate",
        sizes.turn_secs, sizes.turns
    );
    println!(
        "{:<34} {:>7} {:>8} {:>11} {:>7} {:>7} {:>10} {:>8} {:>9} {:>10}",
        "case",
        "N",
        "mode",
        "dgrams/s",
        "×none",
        "×floor",
        "drops/sent",
        "frames/d",
        "visits/d",
        "paced drop"
    );
    let mut table = Table::new(
        "Every configuration (per datagram: of the datagrams the receiver processed; drops per sent: at full speed).",
        &[
            ("case", false),
            ("N", true),
            ("listeners", false),
            ("datagrams/s", true),
            ("× no listener", true),
            ("× floor", true),
            ("× floor, no reads between writes", true),
            ("kernel drops per sent", true),
            ("flags frames per datagram", true),
            ("route visits per datagram", true),
            ("paced: sent/s", true),
            ("paced: kernel drops", true),
        ],
    );
    let mut base = Participant::spawn("_broker", &[]);
    for &n in &sizes.sizes {
        if n == 0 {
            no_listeners(&mut base, sizes, report, &mut table);
            continue;
        }
        for case in CASES {
            for (mode, m) in configuration(&mut base, n, case, sizes) {
                record(n, case, mode, &m, report, &mut table);
            }
        }
    }
    report.add_table(Section::ScaleIngest, table);
    report.note(
        Section::ScaleIngest,
        format!(
            "Turns of {} s, {} per receiver and phase, interleaved (no-listener broker, broker with N listeners, bare floor); a fresh sender id per turn. The listeners read in the first phase; in the second the same connections are no longer read (idle). Case (a) sends to {} channels the listeners never listen for. The rate is the receiver's count over the turn; drops, frames and route visits are counted once it has drained. Paced runs: {} s at 90 % of the no-listener broker's rate in the same configuration's turns. Targets: ≥ 0.9× the no-listener rate and no kernel drop when paced, for idle listeners and in case (a); for (b) and (c) read promptly, ≥ 0.9× the bare floor, and no more kernel drops than the floor at full speed and when paced (coalescing, not dropping, under overload). The targets' floor keeps the broker's schedule (it reads up to 256 datagrams, a socket's turn in the broker, before writing, and reads it again after every 64 connections written, ≤ 4,096 per turn); the table also has it writing everything pending after each drain without reading in between, which under overload makes the kernel drop what arrives meanwhile.",
            sizes.turn_secs,
            sizes.turns,
            int(UNREACHED_CHANNELS as u64),
            sizes.paced_secs
        ),
    );
}

/// The N = 0 row: the no-listener broker alone, then paced at 90 %.
fn no_listeners(base: &mut Participant, sizes: &Sizes, report: &mut Report, table: &mut Table) {
    let mix = Case::Everyone.mix(0);
    let mut tally = Tally::default();
    for _ in 0..sizes.turns {
        tally.add(&turn(base, &mix, sizes.turn_secs, None, sizes));
    }
    let paced = Tally::of(&turn(
        base,
        &mix,
        sizes.paced_secs,
        Some(0.9 * tally.rate()),
        sizes,
    ));
    record(
        0,
        Case::Everyone,
        Mode::Idle,
        &Measured {
            blast: tally,
            paced,
            base: tally,
            floor: None,
        },
        report,
        table,
    );
}

/// One (N, case): the broker and its farm (and the floor and its farm),
/// reading and then idle.
fn configuration(
    base: &mut Participant,
    n: usize,
    case: Case,
    sizes: &Sizes,
) -> Vec<(Mode, Measured)> {
    let mix = case.mix(n);
    let mut broker = Participant::spawn("_broker", &[]);
    let mut farm = ScaleFarm::spawn(broker.addr, n, &case.spec());
    let mut floor = case.floor_spec().map(|spec| {
        let floor = Participant::spawn("_ingest_floor", &[]);
        let farm = ScaleFarm::spawn(floor.addr, n, &spec);
        (floor, farm)
    });
    let listening = Counters::query(&mut broker).listening;
    if listening != n as u64 {
        println!("  note: the broker lists {listening} listening of {n}");
    }
    let mut out = Vec::new();
    for mode in [Mode::Reading, Mode::Idle] {
        if mode == Mode::Idle {
            farm.idle();
        }
        let (mut b, mut t) = (Tally::default(), Tally::default());
        let mut f = [Tally::default(); 2];
        let floor_here = floor.as_mut().filter(|_| mode == Mode::Reading);
        let mut floor_p = floor_here.map(|(p, _)| p);
        for _ in 0..sizes.turns {
            b.add(&turn(base, &mix, sizes.turn_secs, None, sizes));
            t.add(&turn(&mut broker, &mix, sizes.turn_secs, None, sizes));
            if let Some(p) = floor_p.as_deref_mut() {
                for ((query, _), f) in COALESCE.iter().zip(&mut f) {
                    p.query(query);
                    f.add(&turn(p, &mix, sizes.turn_secs, None, sizes));
                }
            }
        }
        let pace = Some(0.9 * b.rate());
        let paced = Tally::of(&turn(&mut broker, &mix, sizes.paced_secs, pace, sizes));
        let floor_m = floor_p.map(|p| {
            [0, 1].map(|i| {
                p.query(COALESCE[i].0);
                FloorRun {
                    blast: f[i],
                    paced: Tally::of(&turn(p, &mix, sizes.paced_secs, pace, sizes)),
                }
            })
        });
        out.push((
            mode,
            Measured {
                blast: t,
                paced,
                base: b,
                floor: floor_m,
            },
        ));
    }
    drop(floor);
    drop(farm);
    out
}

/// Prints one configuration and adds its figures and table rows.
fn record(n: usize, case: Case, mode: Mode, m: &Measured, report: &mut Report, table: &mut Table) {
    let base_rate = m.base.rate();
    let rate = m.blast.rate();
    let floor_rate = m.floor.map(|f| f[0].blast.rate());
    let drain_rate = m.floor.map(|f| f[1].blast.rate());
    let case_name = if n == 0 { "no listeners" } else { case.name() };
    let mode_name = if n == 0 { "—" } else { mode.name() };
    println!(
        "{case_name:<34} {n:>7} {mode_name:>8} {rate:>11.0} {:>7.2} {:>7} {:>10.4} {:>8.3} {:>9.1} {:>10}",
        rate / base_rate.max(1.0),
        floor_rate.map_or("—".into(), |f| format!("{:.2}", rate / f.max(1.0))),
        m.blast.drop_share(),
        m.blast.per_datagram(m.blast.drained.flags_frames),
        m.blast.per_datagram(m.blast.drained.route_visits),
        m.paced.drained.kernel_drops,
    );
    table.row(vec![
        case_name.into(),
        int(n as u64),
        "Flagpost".to_owned()
            + if n == 0 { "" } else { ", " }
            + if n == 0 { "" } else { mode.name() },
        fmt_num(rate),
        fmt_ratio(rate / base_rate.max(1.0)),
        floor_rate.map_or(String::new(), |f| fmt_ratio(rate / f.max(1.0))),
        drain_rate.map_or(String::new(), |f| fmt_ratio(rate / f.max(1.0))),
        fmt_num(m.blast.drop_share()),
        fmt_num(m.blast.per_datagram(m.blast.drained.flags_frames)),
        fmt_num(m.blast.per_datagram(m.blast.drained.route_visits)),
        fmt_num(m.paced.sent as f64 / m.paced.secs.max(1e-9)),
        int(m.paced.drained.kernel_drops),
    ]);
    for (run, (_, name)) in m.floor.iter().flatten().zip(COALESCE) {
        let (f, fp) = (&run.blast, &run.paced);
        println!(
            "  {:<32} {n:>7} {:>8} {:>11.0} {:>7.2} {:>7} {:>10.4} {:>8.3} {:>9} {:>10}",
            name,
            mode.name(),
            f.rate(),
            f.rate() / base_rate.max(1.0),
            "",
            f.drop_share(),
            f.per_datagram(f.drained.flags_frames),
            "",
            fp.drained.kernel_drops,
        );
        table.row(vec![
            case_name.into(),
            int(n as u64),
            format!("{name}, {}", mode.name()),
            fmt_num(f.rate()),
            fmt_ratio(f.rate() / base_rate.max(1.0)),
            String::new(),
            String::new(),
            fmt_num(f.drop_share()),
            fmt_num(f.per_datagram(f.drained.flags_frames)),
            String::new(),
            fmt_num(fp.sent as f64 / fp.secs.max(1e-9)),
            int(fp.drained.kernel_drops),
        ]);
    }
    let what = if n == 0 {
        "no listeners".to_owned()
    } else {
        format!("{}, {} {}", case.name(), int(n as u64), mode.name())
    };
    let paced_drops = m.paced.drained.kernel_drops as f64;
    let section = Section::ScaleIngest;
    if n == 0 {
        report.add(Figure::new(
            section,
            format!("{what}: datagrams per second"),
            rate,
            Unit::PerSecond,
        ));
        report.add(
            Figure::new(
                section,
                format!("{what}: kernel drops at 90 % of its rate"),
                paced_drops,
                Unit::Count,
            )
            .target(Rule::AtMost(0.0), "none"),
        );
        return;
    }
    match m.floor.map(|f| f[0]) {
        None => {
            report.add(
                Figure::new(
                    section,
                    format!("{what}: datagrams per second"),
                    rate,
                    Unit::PerSecond,
                )
                .floor("no listeners", base_rate)
                .target(Rule::RatioAtLeast(0.9), "≥ 0.9× the no-listener ingest"),
            );
            report.add(
                Figure::new(
                    section,
                    format!("{what}: kernel drops at 90 % of the no-listener rate"),
                    paced_drops,
                    Unit::Count,
                )
                .target(Rule::AtMost(0.0), "none at the no-listener rate"),
            );
        }
        Some(FloorRun {
            blast: f,
            paced: fp,
        }) => {
            report.add(
                Figure::new(
                    section,
                    format!("{what}: datagrams per second"),
                    rate,
                    Unit::PerSecond,
                )
                .floor("bare floor", f.rate())
                .target(Rule::RatioAtLeast(0.9), "≥ 0.9× the bare floor"),
            );
            report.add(
                Figure::new(
                    section,
                    format!("{what}: kernel drops per datagram sent, full speed"),
                    m.blast.drop_share(),
                    Unit::Plain,
                )
                .floor("bare floor", f.drop_share())
                .target(Rule::AtMostReference, "≤ the bare floor's"),
            );
            report.add(
                Figure::new(
                    section,
                    format!("{what}: kernel drops at 90 % of the no-listener rate"),
                    paced_drops,
                    Unit::Count,
                )
                .floor("bare floor", fp.drained.kernel_drops as f64)
                .target(Rule::AtMostReference, "≤ the bare floor's"),
            );
        }
    }
}
