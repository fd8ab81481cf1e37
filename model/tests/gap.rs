//! The loss detector (`loss::SenderTable`) against the model's
//! [`GapModel`], directly (the broker runs check it through datagrams too):
//!
//! * interleaved senders whose numbering starts at 1, mid-range or near a
//!   wrap (2^32 and 2^31), stepping forward, skipping, repeating, arriving
//!   late, replaying and restarting, in tables of 0 to 16 slots (so
//!   eviction, colliding hash buckets and zero capacity are reached): every
//!   verdict, the verdict table
//!   (`deliver`, `possible_loss`), the number of senders and evictions are
//!   the model's;
//! * one sender kept far from wrap-around, numbers near the newest and far
//!   from it: the verdict is the one the `loss` docs' table gives for the
//!   numbers seen, the anchor and the farthest jump, written out here
//!   without serial arithmetic (so the model is checked too).
//!
//! `PROPTEST_CASES` overrides the number of cases.

use std::collections::BTreeSet;

use flagpost_core::loss::{SenderSlot, SenderTable, Verdict};
use flagpost_core::wire::{SenderId, Seq};
use flagpost_model::loss::{delivers, possible_loss, GapModel};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config;

fn config() -> Config {
    Config {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(512),
        failure_persistence: None,
        ..Config::default()
    }
}

/// What a sender sends next, relative to its own counter.
#[derive(Clone, Debug)]
enum SenderStep {
    /// The next number.
    Next,
    /// Skips `k - 1` numbers (they are lost).
    Jump(u32),
    /// A late or duplicated datagram `k` behind the counter (0: the last).
    Late(u32),
    /// Some earlier datagram again.
    Replay(Index),
    /// The sender restarts at 1.
    Restart,
}

fn sender_step() -> impl Strategy<Value = SenderStep> {
    prop_oneof![
        6 => Just(SenderStep::Next),
        2 => prop_oneof![2u32..=5, 2u32..=80, 60u32..=300].prop_map(SenderStep::Jump),
        3 => prop_oneof![0u32..=3, 0u32..=80, 60u32..=400].prop_map(SenderStep::Late),
        2 => any::<Index>().prop_map(SenderStep::Replay),
        1 => Just(SenderStep::Restart),
    ]
}

/// Where a sender's numbering starts: at 1, mid-range, or near a wrap.
fn base() -> impl Strategy<Value = u32> {
    prop_oneof![
        3 => Just(1u32),
        1 => 0u32..200,
        1 => (0u32..100).prop_map(|k| u32::MAX - k),
        1 => (0u32..100).prop_map(|k| (1u32 << 31) - 50 + k),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// Verdicts match the model for interleaved senders, through sequence
    /// wrap-around and clock eviction, at every capacity (the small ones
    /// put every sender in one hash bucket, whatever the key).
    #[test]
    fn sender_table_matches_model(
        capacity in prop_oneof![0usize..=4, Just(8usize), Just(16usize)],
        key in any::<u64>(),
        bases in vec(base(), 1..=24),
        sends in vec((any::<Index>(), sender_step()), 0..300),
    ) {
        let mut table = SenderTable::new(vec![SenderSlot::EMPTY; capacity], key);
        let mut model = GapModel::new(capacity);
        // Each sender's own counter (last new number) and history.
        let mut counters: Vec<u32> = bases.iter().map(|b| b.wrapping_sub(1)).collect();
        let mut history: Vec<Vec<u32>> = vec![Vec::new(); bases.len()];
        for (who, what) in sends {
            let s = who.index(bases.len());
            let seq = match what {
                SenderStep::Next => {
                    counters[s] = counters[s].wrapping_add(1);
                    counters[s]
                }
                SenderStep::Jump(k) => {
                    counters[s] = counters[s].wrapping_add(k);
                    counters[s]
                }
                SenderStep::Late(k) => counters[s].wrapping_sub(k),
                SenderStep::Replay(i) if !history[s].is_empty() => {
                    history[s][i.index(history[s].len())]
                }
                SenderStep::Replay(_) => counters[s],
                SenderStep::Restart => {
                    counters[s] = 1;
                    1
                }
            };
            history[s].push(seq);
            let id = SenderId(0x1000 + s as u64);
            let want = model.observe(id, Seq(seq));
            let got = table.observe(id, Seq(seq));
            prop_assert_eq!(got, want, "sender {} seq {}", s, seq);
            prop_assert_eq!(got.deliver(), delivers(want));
            prop_assert_eq!(got.possible_loss(), possible_loss(want));
            prop_assert_eq!(table.len(), model.len());
            prop_assert_eq!(table.evictions(), model.evictions());
            prop_assert!(table.len() <= capacity);
        }
    }

    /// One sender, numbers near the newest (forward, backward, exact
    /// duplicates, far jumps and far back) kept far from wrap-around: the
    /// verdict is the one the `loss` docs' table gives for the numbers
    /// seen, the anchor and the farthest jump, written out here with plain
    /// integers (so the model is checked too).
    #[test]
    fn single_sender_verdicts_follow_the_seen_set(
        start in prop_oneof![Just(1u32), 1u32..1000],
        deltas in vec(prop_oneof![
            4 => -3i64..=3,
            2 => -70i64..=70,
            1 => Just(0i64),
            1 => -300i64..=300,
        ], 1..300),
    ) {
        let mut table = SenderTable::new([SenderSlot::EMPTY; 1], 0);
        let mut model = GapModel::new(1);
        let sender = SenderId(0xabc);
        let mut plain: Option<Plain> = None;
        for delta in deltas {
            // Stay well inside 1..2^31: no wrap-around here.
            let seq = match &plain {
                None => u64::from(start),
                Some(p) => p.newest.saturating_add_signed(delta).max(1),
            };
            let want = match &mut plain {
                None => {
                    plain = Some(Plain::new(seq));
                    if seq == 1 { Verdict::InOrder } else { Verdict::FirstSeenLate }
                }
                Some(p) => p.observe(seq),
            };
            let seq = Seq(u32::try_from(seq).expect("small"));
            prop_assert_eq!(model.observe(sender, seq), want, "model, seq {:?}", seq);
            prop_assert_eq!(table.observe(sender, seq), want, "table, seq {:?}", seq);
        }
    }
}

/// One sender's state in plain integers, far from wrap-around: the
/// numbers seen within the window behind the newest, the anchor (its
/// newest, its seen numbers, whether weak), the farthest jump since.
struct Plain {
    newest: u64,
    seen: BTreeSet<u64>,
    anchor: Option<(u64, BTreeSet<u64>, bool)>,
    jump_to: u64,
    first_seen_late: bool,
}

const W: u64 = 64;

impl Plain {
    fn new(seq: u64) -> Self {
        Plain {
            newest: seq,
            seen: BTreeSet::from([seq]),
            anchor: None,
            jump_to: 0,
            first_seen_late: seq != 1,
        }
    }

    /// Moves the newest to `seq` over the numbers seen in `seen`.
    fn settle(&mut self, seq: u64, mut seen: BTreeSet<u64>) {
        seen.insert(seq);
        seen.retain(|s| *s <= seq && seq - s < W);
        self.newest = seq;
        self.seen = seen;
    }

    /// A jump of 64 or more, or a restart, to `seq`.
    fn far(&mut self, seq: u64) {
        match &self.anchor {
            Some((a, _, false)) => {
                // the farthest ahead of the anchor, going round: a number
                // behind it (a restart's 1) is farther than any after it
                let dist = |j: u64| if j > *a { j - a } else { (1 << 32) - (a - j) };
                if dist(seq) > dist(self.jump_to) {
                    self.jump_to = seq;
                }
            }
            _ => {
                self.anchor = Some((self.newest, self.seen.clone(), false));
                self.jump_to = seq;
            }
        }
    }

    fn observe(&mut self, seq: u64) -> Verdict {
        let n = self.newest;
        if seq > n {
            if seq - n >= W {
                self.far(seq);
            }
            let seen = self.seen.clone();
            self.settle(seq, seen);
            return match seq - n {
                1 => Verdict::InOrder,
                k => Verdict::Gap {
                    missing: u32::try_from(k - 1).expect("small"),
                },
            };
        }
        let in_window = n - seq < W;
        if let Some((a, a_seen, _)) = self.anchor.clone() {
            // after the anchor, and before the farthest jump (a restart's 1
            // being behind it, anything after the anchor is before it)
            let fits = seq > a && (self.jump_to <= a || seq < self.jump_to);
            if fits && seq - a < W {
                self.anchor = None;
                self.settle(seq, a_seen);
                return Verdict::Rewound;
            }
            if !in_window {
                if seq <= a && a - seq < W {
                    let a_seen = &mut self.anchor.as_mut().expect("anchored").1;
                    return if a_seen.insert(seq) {
                        Verdict::Reordered
                    } else {
                        Verdict::Duplicate
                    };
                }
                if fits {
                    self.settle(seq, a_seen);
                    return Verdict::Rewound;
                }
            }
        }
        if in_window {
            return if self.seen.insert(seq) {
                Verdict::Reordered
            } else {
                Verdict::Duplicate
            };
        }
        if self.first_seen_late {
            self.first_seen_late = false;
            // an anchor a far jump left stays strong
            if self.anchor.is_none() {
                self.anchor = Some((n, self.seen.clone(), true));
                self.jump_to = seq;
            }
            self.settle(seq, BTreeSet::new());
            return if seq == 1 {
                Verdict::Restart
            } else {
                Verdict::Rewound
            };
        }
        if seq == 1 {
            self.far(1);
            self.settle(1, BTreeSet::new());
            return Verdict::Restart;
        }
        Verdict::Stale
    }
}

/// The verdict table of the `loss` docs, row by row.
#[test]
fn verdict_table() {
    let rows = [
        (Verdict::InOrder, true, false),
        (Verdict::Gap { missing: 1 }, true, true),
        (Verdict::FirstSeenLate, true, true),
        (Verdict::Restart, true, true),
        (Verdict::Reordered, true, false),
        (Verdict::Duplicate, false, false),
        (Verdict::Rewound, true, true),
        (Verdict::Stale, false, false),
    ];
    for (verdict, deliver, loss) in rows {
        assert_eq!(delivers(verdict), deliver, "{verdict:?}");
        assert_eq!(verdict.deliver(), deliver, "{verdict:?}");
        assert_eq!(possible_loss(verdict), loss, "{verdict:?}");
        assert_eq!(verdict.possible_loss(), loss, "{verdict:?}");
    }
}
