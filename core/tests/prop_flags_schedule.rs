//! Property tests of `flags` and `schedule` against trivial reference models.
//!
//! * [`FlagSet`] algebra matches plain `u8` bit operations.
//! * [`Flags`] and [`AtomicFlags`] match a `u8` bitmask over random sequences
//!   of raise / check / named checks / take / peek, and any number of raises
//!   between two checks read as one `true`.
//! * [`Scheduler`] matches a model (one deadline = last restart + interval
//!   and one pending reason per task) over random sequences of
//!   notifications, polls, time advances and interval changes with random
//!   intervals including zero; its stated guarantees are asserted on their
//!   own as well: interval work is never early, and never late when the
//!   driver sleeps exactly until `poll_timeout()`; a zero interval never
//!   yields interval work; a status update makes both tasks due at once; other
//!   kinds change nothing; no wake-up when both intervals are zero and
//!   nothing is pending.

use flagpost_core::flags::{AtomicFlags, FlagSet, Flags};
use flagpost_core::notify::Kind;
use flagpost_core::schedule::{Reason, Scheduler, Task, Work};
use flagpost_core::time::{Duration, Instant};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::Config as ProptestConfig;

fn config() -> ProptestConfig {
    // 256 cases, or PROPTEST_CASES: the default reads it, an explicit
    // count would override it
    ProptestConfig {
        // Keep the tree clean: a failure prints its minimal case instead.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------- flags

/// The four single flags, in the order of the named checks.
const SINGLE: [u8; 4] = [0b0001, 0b0010, 0b0100, 0b1000];

#[derive(Clone, Debug)]
enum FlagOp {
    Raise(u8),
    Check(u8),
    /// `check_status`, `check_non_status`, `check_channel_update`,
    /// `check_channel_shutdown` by index.
    CheckNamed(usize),
    Take,
    Peek,
}

fn flag_op() -> impl Strategy<Value = FlagOp> {
    prop_oneof![
        4 => (0u8..16).prop_map(FlagOp::Raise),
        2 => (0u8..16).prop_map(FlagOp::Check),
        2 => (0usize..4).prop_map(FlagOp::CheckNamed),
        1 => Just(FlagOp::Take),
        1 => Just(FlagOp::Peek),
    ]
}

fn set(bits: u8) -> FlagSet {
    FlagSet::from_bits(bits).expect("generated bits are within ALL")
}

fn check_named(flags: &mut Flags, i: usize) -> bool {
    match i {
        0 => flags.check_status(),
        1 => flags.check_non_status(),
        2 => flags.check_channel_update(),
        _ => flags.check_channel_shutdown(),
    }
}

fn check_named_atomic(flags: &AtomicFlags, i: usize) -> bool {
    match i {
        0 => flags.check_status(),
        1 => flags.check_non_status(),
        2 => flags.check_channel_update(),
        _ => flags.check_channel_shutdown(),
    }
}

proptest! {
    #![proptest_config(config())]

    /// Every `FlagSet` operation is the obvious `u8` bit operation.
    #[test]
    fn flag_set_algebra_is_bit_algebra(a in any::<u8>(), b in 0u8..16) {
        let all = FlagSet::ALL.bits();
        prop_assert_eq!(FlagSet::from_bits(a).map(FlagSet::bits), (a & !all == 0).then_some(a));
        let x = FlagSet::from_bits_truncate(a);
        prop_assert_eq!(x.bits(), a & all);
        let y = set(b);
        let (xa, yb) = (x.bits(), y.bits());
        prop_assert_eq!((x | y).bits(), xa | yb);
        prop_assert_eq!(x.union(y).bits(), xa | yb);
        prop_assert_eq!((x & y).bits(), xa & yb);
        prop_assert_eq!(x.difference(y).bits(), xa & !yb);
        prop_assert_eq!((!x).bits(), !xa & all);
        prop_assert_eq!(x.contains(y), xa & yb == yb);
        prop_assert_eq!(x.intersects(y), xa & yb != 0);
        prop_assert_eq!(x.is_empty(), xa == 0);
        let mut z = x;
        z |= y;
        prop_assert_eq!(z.bits(), xa | yb);
        let singles: Vec<u8> = x.iter().map(FlagSet::bits).collect();
        let expected: Vec<u8> = SINGLE.iter().copied().filter(|s| xa & s != 0).collect();
        prop_assert_eq!(singles, expected);
        prop_assert_eq!(x.name().is_some(), xa.count_ones() == 1);
    }

    /// `Flags` and `AtomicFlags` behave exactly like a `u8` bitmask.
    #[test]
    fn flags_match_a_bitmask(ops in vec(flag_op(), 0..80)) {
        let mut flags = Flags::new();
        let atomic = AtomicFlags::new();
        let mut model: u8 = 0;
        for op in ops {
            match op {
                FlagOp::Raise(bits) => {
                    // The atomic raise reports what was raised before it;
                    // the single-raiser form behaves the same, one thread.
                    let before = if bits % 2 == 0 {
                        atomic.raise(set(bits))
                    } else {
                        atomic.raise_exclusive(set(bits))
                    };
                    prop_assert_eq!(before.bits(), model);
                    flags.raise(set(bits));
                    model |= bits;
                }
                FlagOp::Check(bits) => {
                    let hit = model & bits != 0;
                    prop_assert_eq!(flags.check(set(bits)), hit);
                    prop_assert_eq!(atomic.check(set(bits)), hit);
                    model &= !bits;
                }
                FlagOp::CheckNamed(i) => {
                    let hit = model & SINGLE[i] != 0;
                    prop_assert_eq!(check_named(&mut flags, i), hit);
                    prop_assert_eq!(check_named_atomic(&atomic, i), hit);
                    model &= !SINGLE[i];
                }
                FlagOp::Take => {
                    prop_assert_eq!(flags.take().bits(), model);
                    prop_assert_eq!(atomic.take().bits(), model);
                    model = 0;
                }
                FlagOp::Peek => {}
            }
            prop_assert_eq!(flags.peek().bits(), model);
            prop_assert_eq!(atomic.peek().bits(), model);
        }
    }

    /// Any number of raises between two checks read as one `true`; the next
    /// check reads `false`. Raises of other flags in between do not matter.
    #[test]
    fn many_raises_read_as_one_check(
        target in 1u8..16,
        raises in vec(0u8..16, 0..40),
        repeat in 1usize..200,
    ) {
        let mut flags = Flags::new();
        let atomic = AtomicFlags::new();
        let mut any_hit = false;
        for &bits in &raises {
            for _ in 0..repeat {
                flags.raise(set(bits));
                atomic.raise(set(bits));
            }
            any_hit |= bits & target != 0;
        }
        prop_assert_eq!(flags.check(set(target)), any_hit);
        prop_assert_eq!(atomic.check(set(target)), any_hit);
        prop_assert!(!flags.check(set(target)));
        prop_assert!(!atomic.check(set(target)));
        // The flags outside the target are untouched by its checks.
        let rest = raises.iter().fold(0, |acc, b| acc | b) & !target;
        prop_assert_eq!(flags.peek().bits(), rest);
        prop_assert_eq!(atomic.peek().bits(), rest);
    }
}

// ---------------------------------------------------------------- schedule

fn task_index(task: Task) -> usize {
    match task {
        Task::CheckTriggers => 0,
        Task::CheckOutgoing => 1,
    }
}

/// One task of the reference model, times in microseconds.
#[derive(Clone, Copy, Debug)]
struct ModelTask {
    interval: u64,
    /// Last restart + interval; `None` when the interval is zero.
    deadline: Option<u64>,
    /// Why and since when work is pending.
    pending: Option<(Reason, u64)>,
}

/// The scheduler as the module docs describe it.
#[derive(Clone, Debug)]
struct Model {
    tasks: [ModelTask; 2],
}

impl Model {
    fn new(now: u64, intervals: [u64; 2]) -> Self {
        let task = |interval| ModelTask {
            interval,
            deadline: None,
            pending: None,
        };
        let mut m = Model {
            tasks: [task(intervals[0]), task(intervals[1])],
        };
        for i in 0..2 {
            m.mark(i, Reason::Startup, now);
        }
        m
    }

    fn restart(&mut self, i: usize, now: u64) {
        let t = &mut self.tasks[i];
        t.deadline = (t.interval != 0).then(|| now + t.interval);
    }

    fn mark(&mut self, i: usize, reason: Reason, now: u64) {
        // Work already pending keeps its reason; the interval restarts anyway.
        if self.tasks[i].pending.is_none() {
            self.tasks[i].pending = Some((reason, now));
        }
        self.restart(i, now);
    }

    fn notify(&mut self, now: u64, kind: Kind) {
        if kind == Kind::Status {
            for i in 0..2 {
                self.mark(i, Reason::Notification, now);
            }
        }
    }

    fn set_interval(&mut self, now: u64, i: usize, interval: u64) {
        self.tasks[i].interval = interval;
        self.restart(i, now);
    }

    fn poll(&mut self, now: u64) -> Option<Work> {
        for (i, task) in Task::ALL.into_iter().enumerate() {
            if let Some((reason, _)) = self.tasks[i].pending.take() {
                return Some(Work { task, reason });
            }
        }
        for (i, task) in Task::ALL.into_iter().enumerate() {
            if self.tasks[i].deadline.is_some_and(|d| d <= now) {
                self.restart(i, now);
                return Some(Work {
                    task,
                    reason: Reason::Interval,
                });
            }
        }
        None
    }

    fn timeout(&self) -> Option<u64> {
        self.tasks
            .iter()
            .flat_map(|t| [t.pending.map(|(_, since)| since), t.deadline])
            .flatten()
            .min()
    }
}

fn interval() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => Just(0u64),
        1 => 1u64..=20,
        4 => 1_000u64..=5_000_000,
        1 => select(vec![1_000_000u64, 2_000_000, 3_000_000]),
    ]
}

fn kind() -> impl Strategy<Value = Kind> {
    select(Kind::ALL.to_vec())
}

/// Intervals, notification gaps and a tail, all on one time scale (a
/// microsecond, a millisecond or 100 ms) so the number of wake-ups stays
/// bounded whatever the scale.
fn driven_case() -> impl Strategy<Value = ([u64; 2], Vec<(u64, Kind)>, u64)> {
    select(vec![1u64, 1_000, 100_000]).prop_flat_map(|unit| {
        let interval = prop_oneof![1 => Just(0u64), 3 => 1u64..=40].prop_map(move |k| k * unit);
        (
            [interval.clone(), interval],
            vec((0..=100 * unit, kind()), 0..30),
            0..=200 * unit,
        )
    })
}

#[derive(Clone, Debug)]
enum SchedOp {
    /// Time passes (microseconds) without polling.
    Advance(u64),
    Notify(Kind),
    PollOne,
    Drain,
    /// Sleep until `poll_timeout()` (if any), then drain.
    JumpToTimeout,
    SetInterval(usize, u64),
}

fn sched_op() -> impl Strategy<Value = SchedOp> {
    prop_oneof![
        4 => prop_oneof![0u64..=50, 0u64..=6_000_000].prop_map(SchedOp::Advance),
        4 => kind().prop_map(SchedOp::Notify),
        2 => Just(SchedOp::PollOne),
        3 => Just(SchedOp::Drain),
        4 => Just(SchedOp::JumpToTimeout),
        1 => (0usize..2, interval()).prop_map(|(i, d)| SchedOp::SetInterval(i, d)),
    ]
}

/// Polls `s` and `m` once at `now` and checks they agree, and that interval
/// work is never early and never comes from a zero interval.
fn poll_both(s: &mut Scheduler, m: &mut Model, now: u64) -> Result<Option<Work>, TestCaseError> {
    let before = m.clone();
    let got = s.poll(Instant::from_micros(now));
    let want = m.poll(now);
    prop_assert_eq!(got, want, "poll at {}us, model before: {:?}", now, before);
    if let Some(Work {
        task,
        reason: Reason::Interval,
    }) = got
    {
        let t = &before.tasks[task_index(task)];
        prop_assert!(t.interval != 0, "interval work from a zero interval");
        prop_assert!(
            t.deadline.is_some_and(|d| d <= now),
            "interval work before its deadline"
        );
    }
    Ok(got)
}

fn drain_both(s: &mut Scheduler, m: &mut Model, now: u64) -> Result<Vec<Work>, TestCaseError> {
    let mut works = Vec::new();
    while let Some(w) = poll_both(s, m, now)? {
        works.push(w);
        prop_assert!(works.len() <= 4, "poll never returns None: {:?}", works);
    }
    Ok(works)
}

fn check_timeout(s: &Scheduler, m: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(s.poll_timeout(), m.timeout().map(Instant::from_micros));
    let idle = m.tasks.iter().all(|t| t.pending.is_none());
    if idle
        && s.interval(Task::CheckTriggers).is_zero()
        && s.interval(Task::CheckOutgoing).is_zero()
    {
        prop_assert_eq!(s.poll_timeout(), None);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// The scheduler matches the model over random operation sequences.
    #[test]
    fn scheduler_matches_model(
        start in 0u64..1_000_000,
        intervals in [interval(), interval()],
        ops in vec(sched_op(), 0..80),
    ) {
        let mut now = start;
        let mut s = Scheduler::new(
            Instant::from_micros(now),
            Duration::from_micros(intervals[0]),
            Duration::from_micros(intervals[1]),
        );
        let mut m = Model::new(now, intervals);
        check_timeout(&s, &m)?;
        for op in ops {
            match op {
                SchedOp::Advance(dt) => now += dt,
                SchedOp::Notify(Kind::Status) => {
                    let expect: Vec<Work> = Task::ALL
                        .into_iter()
                        .enumerate()
                        .map(|(i, task)| Work {
                            task,
                            reason: m.tasks[i].pending.map_or(Reason::Notification, |p| p.0),
                        })
                        .collect();
                    s.handle_notification(Instant::from_micros(now), Kind::Status);
                    m.notify(now, Kind::Status);
                    // Both tasks are due at once, in order, with their reason.
                    let mut probe = s.clone();
                    let t = Instant::from_micros(now);
                    let first_two: Vec<Work> = [probe.poll(t), probe.poll(t)].into_iter().flatten().collect();
                    prop_assert_eq!(first_two, expect);
                    // ... and both intervals restarted from now.
                    prop_assert_eq!(probe.poll(t), None);
                    let restarted = Task::ALL
                        .into_iter()
                        .map(|task| s.interval(task))
                        .filter(|iv| !iv.is_zero())
                        .map(|iv| t + iv)
                        .min();
                    prop_assert_eq!(probe.poll_timeout(), restarted);
                }
                SchedOp::Notify(other) => {
                    let before = s.clone();
                    s.handle_notification(Instant::from_micros(now), other);
                    m.notify(now, other);
                    prop_assert_eq!(&s, &before, "{} changed the scheduler", other);
                }
                SchedOp::PollOne => {
                    poll_both(&mut s, &mut m, now)?;
                }
                SchedOp::Drain => {
                    drain_both(&mut s, &mut m, now)?;
                }
                SchedOp::JumpToTimeout => {
                    if let Some(at) = s.poll_timeout() {
                        now = now.max(at.as_micros());
                        let works = drain_both(&mut s, &mut m, now)?;
                        prop_assert!(!works.is_empty(), "woke at poll_timeout for nothing");
                    }
                }
                SchedOp::SetInterval(i, d) => {
                    s.set_interval(Instant::from_micros(now), Task::ALL[i], Duration::from_micros(d));
                    m.set_interval(now, i, d);
                    prop_assert_eq!(s.interval(Task::ALL[i]), Duration::from_micros(d));
                }
            }
            check_timeout(&s, &m)?;
        }
    }

    /// A driver that sleeps exactly until `poll_timeout()` (or until the next
    /// notification) gets interval work exactly at its deadline: never
    /// early, never late, and never a wake-up for nothing.
    #[test]
    fn interval_work_is_exact_when_driven_by_poll_timeout(
        (intervals, notes, tail) in driven_case(),
    ) {
        let mut now = 0u64;
        let mut s = Scheduler::new(
            Instant::ZERO,
            Duration::from_micros(intervals[0]),
            Duration::from_micros(intervals[1]),
        );
        let mut m = Model::new(now, intervals);
        let mut note_at = 0u64;
        let mut interval_works = [0usize; 2];
        let mut horizon: Vec<(u64, Option<Kind>)> = notes
            .iter()
            .map(|&(gap, kind)| {
                note_at += gap;
                (note_at, Some(kind))
            })
            .collect();
        horizon.push((note_at + tail, None));
        for (at, kind) in horizon {
            // Wake at every poll_timeout up to the next notification.
            while let Some(wake) = s.poll_timeout().map(Instant::as_micros).filter(|w| *w <= at) {
                if wake > now {
                    // Nothing is due a microsecond before the announced time.
                    let mut probe = s.clone();
                    prop_assert_eq!(probe.poll(Instant::from_micros(wake - 1)), None);
                }
                now = now.max(wake);
                let deadlines = m.tasks.map(|t| t.deadline);
                let works = drain_both(&mut s, &mut m, now)?;
                prop_assert!(!works.is_empty(), "woke at {}us for nothing", now);
                for w in works {
                    if w.reason == Reason::Interval {
                        let i = task_index(w.task);
                        // Exactly at the deadline, not a microsecond later.
                        prop_assert_eq!(deadlines[i], Some(now));
                        interval_works[i] += 1;
                    }
                }
            }
            now = at;
            if let Some(kind) = kind {
                s.handle_notification(Instant::from_micros(now), kind);
                m.notify(now, kind);
            }
            check_timeout(&s, &m)?;
        }
        for i in 0..2 {
            if intervals[i] == 0 {
                prop_assert_eq!(interval_works[i], 0);
            }
        }
        if intervals == [0, 0] {
            // Nothing pending after the last wake-up: no reason to wake again.
            let _ = drain_both(&mut s, &mut m, now)?;
            prop_assert_eq!(s.poll_timeout(), None);
        }
    }
}
