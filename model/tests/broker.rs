//! The broker against its model, through the same `flagpost_model::run` the
//! fuzz target calls (every invariant is listed in the crate docs).
//!
//! * `broker_matches_the_model`: inputs built by weighted strategies
//!   (`strategy::input`), which make the interesting cases common and
//!   shrink to fewer, simpler operations; across all cases the runs must
//!   reach every outcome the model predicts (each close reason, each
//!   verdict, eviction, coalescing, timely timeout closes...), so a
//!   generator that stops reaching one fails.
//! * `arbitrary_bytes_match_the_model`: random bytes decoded as the fuzz
//!   target decodes them (`arbitrary`), so that path runs on stable too.
//! * `committed_fuzz_seeds_pass`: the fuzz target's committed corpus.
//! * Targeted properties and minimal reproductions, as inputs.
//!
//! `PROPTEST_CASES` overrides the number of cases of each property.

mod strategy;

use std::cell::{Cell, RefCell};
use std::sync::Once;

use arbitrary::{Arbitrary, Unstructured};
use flagpost_core::broker::Stats;
use flagpost_core::wire::CloseReason;
use flagpost_model::{run, FrameSpec, Input, Op, Report, Setup};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestError, TestRunner};

/// `PROPTEST_CASES`, or `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        // Keep the tree clean: a failure prints its minimal input instead.
        failure_persistence: None,
        ..Config::default()
    })
}

thread_local! {
    /// Set while `check` runs a case: its panic is the case's failure.
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Keeps the panics of failing cases out of the output (proptest reports
/// the minimal case with its message); any other panic prints as usual.
fn quiet_panics_in_cases() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                default(info);
            }
        }));
    });
}

/// Runs `input` through the model; a disagreement (a panic) becomes a test
/// failure carrying the decoded input, so the shrunk case reads as
/// operations.
fn check(input: &Input) -> Result<Report, TestCaseError> {
    quiet_panics_in_cases();
    QUIET.with(|q| q.set(true));
    let result = std::panic::catch_unwind(|| run(input));
    QUIET.with(|q| q.set(false));
    result.map_err(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("(no message)");
        TestCaseError::fail(format!("{why}\ninput: {input:#?}"))
    })
}

fn unwrap_run<T: std::fmt::Debug>(result: Result<(), TestError<T>>) {
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// What all the runs reached together.
#[derive(Default)]
struct Reached {
    runs: u64,
    stats: Stats,
    timely_closes: u64,
    coalesced_frames: u64,
}

impl Reached {
    fn add(&mut self, report: &Report) {
        self.runs += 1;
        self.timely_closes += report.timely_closes;
        self.coalesced_frames += report.coalesced_frames;
        let mut sum = self.stats;
        let mut i = 0;
        report.stats.visit(|_, _, v| {
            let mut j = 0;
            sum.visit_mut(|_, _, s| {
                if j == i {
                    *s += v;
                }
                j += 1;
            });
            i += 1;
        });
        self.stats = sum;
    }
}

#[test]
fn broker_matches_the_model() {
    let cases = cases(1024);
    let reached = RefCell::new(Reached::default());
    unwrap_run(runner(cases).run(&strategy::input(150), |input| {
        let report = check(&input)?;
        reached.borrow_mut().add(&report);
        Ok(())
    }));
    let r = reached.into_inner();
    assert!(r.runs >= u64::from(cases));
    if cases < 100 {
        return; // too few cases to expect every outcome
    }
    let s = r.stats;
    let closes = |reason: CloseReason| s.closes[reason as usize];
    let outcomes = [
        ("connections refused: table full", s.refused_full),
        ("connections evicted for a newcomer", s.connections_evicted),
        ("hello timeouts", closes(CloseReason::HelloTimeout)),
        ("keep-alive timeouts", closes(CloseReason::KeepaliveTimeout)),
        ("stuck listeners", closes(CloseReason::Stuck)),
        ("protocol errors", closes(CloseReason::ProtocolError)),
        (
            "unsupported versions",
            closes(CloseReason::UnsupportedVersion),
        ),
        ("shutdowns", closes(CloseReason::Shutdown)),
        ("disconnects", s.disconnects),
        ("stats requests", s.stats_requests),
        ("unexpected frames", s.frames_unexpected),
        ("rejected frames", s.frame_rejects.iter().sum()),
        ("rejected datagrams", s.datagram_rejects.iter().sum()),
        ("gaps", s.gaps),
        ("first seen late", s.first_seen_late),
        ("restarts", s.restarts),
        ("reordered", s.reordered),
        ("duplicates", s.duplicates),
        ("stale", s.stale),
        ("kernel drops", s.kernel_drops),
        ("sender evictions", s.senders_evicted),
        ("acks", s.acks),
        ("coalesced raises", s.raises_coalesced),
        ("flags frames of several raises", r.coalesced_frames),
        ("timeouts met by a sleeping driver", r.timely_closes),
    ];
    let missing: Vec<&str> = outcomes
        .iter()
        .filter(|(_, n)| *n == 0)
        .map(|(what, _)| *what)
        .collect();
    assert!(
        missing.is_empty(),
        "{cases} cases never reached: {missing:?}"
    );
}

/// Silent listeners are closed for the first of their hello, stuck and
/// keep-alive deadlines: never before it, and within one housekeeping
/// period after it (the timeout profile: see `strategy::timeout_input`).
#[test]
fn silent_listeners_time_out_on_time() {
    let timely = RefCell::new(0);
    unwrap_run(
        runner(cases(512)).run(&strategy::timeout_input(120), |input| {
            *timely.borrow_mut() += check(&input)?.timely_closes;
            Ok(())
        }),
    );
    assert!(timely.into_inner() > 0, "no timeout was checked");
}

#[test]
fn arbitrary_bytes_match_the_model() {
    unwrap_run(runner(cases(64)).run(&vec(any::<u8>(), 0..1500), |bytes| {
        let input = Input::arbitrary_take_rest(Unstructured::new(&bytes))
            .expect("arbitrary decodes any bytes");
        check(&input)?;
        Ok(())
    }));
}

#[test]
fn committed_fuzz_seeds_pass() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/broker");
    let mut seeds = 0;
    for entry in std::fs::read_dir(&dir).expect("the fuzz target's corpus") {
        let path = entry.expect("a corpus entry").path();
        let bytes = std::fs::read(&path).expect("a seed");
        let input = Input::arbitrary_take_rest(Unstructured::new(&bytes))
            .unwrap_or_else(|e| panic!("{} does not decode: {e}", path.display()));
        assert!(
            !input.ops.is_empty(),
            "{} decodes to nothing",
            path.display()
        );
        run(&input);
        seeds += 1;
    }
    assert!(seeds >= 10, "only {seeds} seeds under {}", dir.display());
}

proptest! {
    #![proptest_config(Config { cases: cases(64), failure_persistence: None, ..Config::default() })]

    /// However many notifications arrive while a listener's socket is not
    /// writable, it is written one flags frame when it becomes writable
    /// (the model checks that frame: the union of the flags raised for it,
    /// with the number of raises).
    #[test]
    fn undrained_flags_coalesce_into_one_frame(
        interest in 1u8..16,
        listening in 0u8..5,
        notes in vec((0u8..4, 0u8..5), 1..300),
    ) {
        let mut ops = vec![
            Op::Open,
            Op::Frame {
                listener: 0,
                frame: FrameSpec::Hello { interest, channel: listening, keepalive_secs: 0 },
            },
            Op::Writable { listener: 0, writable: false },
        ];
        ops.extend(notes.iter().map(|&(kind, channel)| Op::InProcess {
            kind,
            channel,
            batch: 1,
            repeat: 0,
        }));
        ops.push(Op::Writable { listener: 0, writable: true });
        let report = check(&Input { setup: Setup::default(), ops })?;
        // the welcome, then at most one flags frame
        let s = report.stats;
        prop_assert_eq!(s.flags_frames, u64::from(s.raises > 0));
        prop_assert_eq!(s.frames_written, 1 + s.flags_frames);
    }
}

/// A broker whose stuck timeout (2 s) is far shorter than its keep-alive
/// (30 s) and hello timeout (10 s); housekeeping every second; one slot;
/// `poll_ready` swept only when asked.
const STUCK: Setup = Setup {
    hello_timeout: 0,
    stuck_timeout: 2,
    housekeeping: 0,
    lazy_events: false,
    broker_id: 0,
    listeners: 1,
    senders: 0,
    keepalive: 0,
    lazy_ready: true,
    evict_after: 0,
};

fn hello(listener: u8) -> Op {
    Op::Frame {
        listener,
        frame: FrameSpec::Hello {
            interest: 0x0f,
            channel: 0,
            keepalive_secs: 0,
        },
    }
}

/// The minimal case the old timeout proptest shrank to: a slot freed while
/// still in the ready queue is reused, and its new tenant's first output
/// must arm the stuck deadline (`poll_timeout` must not oversleep it).
#[test]
fn stuck_deadline_is_armed_for_a_reused_slot() {
    let report = run(&Input {
        setup: STUCK,
        ops: vec![
            Op::Open,
            hello(0),                        // welcome queued, never swept
            Op::Sleep { micros: 2_000_000 }, // stuck at 2 s
            Op::Open,                        // the same slot, still queued
            hello(1),                        // pending from 2 s: stuck at 4 s
            Op::Sleep { micros: 2_500_000 },
        ],
    });
    assert_eq!(report.stats.closes[CloseReason::Stuck as usize], 2);
    assert_eq!(report.timely_closes, 2);
}

/// A ready listener whose socket was not writable is drained later, before
/// `poll_ready` pops it again; its next output must arm the stuck deadline.
#[test]
fn stuck_deadline_is_armed_after_a_drain_of_a_queued_listener() {
    let status = Op::InProcess {
        kind: 0,
        channel: 0,
        batch: 1,
        repeat: 0,
    };
    let report = run(&Input {
        setup: STUCK,
        ops: vec![
            Op::Open,
            hello(0),
            Op::Writable {
                listener: 0,
                writable: false,
            },
            Op::PollReady, // yielded, not writable
            Op::Advance { micros: 100_000 },
            status.clone(),
            // writable now: the transport drains what it remembered
            Op::PollFrame { listener: 0 },
            Op::PollFrame { listener: 0 },
            Op::PollFrame { listener: 0 },
            Op::Sleep { micros: 1_400_000 },
            status, // pending from 1.5 s: stuck at 3.5 s
            Op::Sleep { micros: 3_000_000 },
        ],
    });
    assert_eq!(report.stats.closes[CloseReason::Stuck as usize], 1);
    assert_eq!(report.timely_closes, 1);
}
