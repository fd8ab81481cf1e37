//! Verdicts of the sender table: the window, wrap-around, far jumps and
//! rewinds; the hash index and clock eviction; zero capacity.

use super::*;

const A: SenderId = SenderId(1);

fn table() -> SenderTable<[SenderSlot; 2]> {
    SenderTable::new([SenderSlot::EMPTY; 2], 7)
}

/// A table that has seen `1..=n` from sender `A`.
fn sent(n: u32) -> SenderTable<[SenderSlot; 2]> {
    let mut t = table();
    for s in 1..=n {
        assert_eq!(t.observe(A, Seq(s)), Verdict::InOrder);
    }
    t
}

fn see(t: &mut SenderTable<[SenderSlot; 2]>, seq: u32) -> Verdict {
    t.observe(A, Seq(seq))
}

#[test]
fn in_order_then_gap() {
    let mut t = sent(2);
    assert_eq!(see(&mut t, 10), Verdict::Gap { missing: 7 });
    assert!(Verdict::Gap { missing: 7 }.possible_loss());
}

#[test]
fn wraps_through_zero() {
    let mut t = table();
    assert_eq!(see(&mut t, u32::MAX - 1), Verdict::FirstSeenLate);
    assert_eq!(see(&mut t, u32::MAX), Verdict::InOrder);
    assert_eq!(see(&mut t, 0), Verdict::InOrder);
    assert_eq!(see(&mut t, 1), Verdict::InOrder);
}

#[test]
fn window_edges() {
    let mut t = sent(1);
    // jumps shorter than the window keep the newest inside it: no anchor
    assert_eq!(see(&mut t, 60), Verdict::Gap { missing: 58 });
    assert_eq!(see(&mut t, 120), Verdict::Gap { missing: 59 });
    assert_eq!(see(&mut t, 57), Verdict::Reordered); // 63 back
    assert_eq!(see(&mut t, 57), Verdict::Duplicate);
    assert_eq!(see(&mut t, 56), Verdict::Stale); // 64 back
    assert_eq!(see(&mut t, 120), Verdict::Duplicate);
    assert_eq!(see(&mut t, 1), Verdict::Restart);
    assert_eq!(see(&mut t, 2), Verdict::InOrder);
}

#[test]
fn a_forged_far_jump_is_rewound_by_the_senders_next_number() {
    let mut t = sent(10);
    // a forged number far ahead is delivered (it cannot be told from a
    // real loss) ...
    assert_eq!(see(&mut t, 1_000_000), Verdict::Gap { missing: 999_989 });
    // ... but the real sender's next one moves the window back to it
    assert_eq!(see(&mut t, 11), Verdict::Rewound);
    assert!(Verdict::Rewound.deliver() && Verdict::Rewound.possible_loss());
    assert_eq!(see(&mut t, 12), Verdict::InOrder);
    // replays are duplicates, before the jump and of the rewinding datagram
    assert_eq!(see(&mut t, 11), Verdict::Duplicate);
    assert_eq!(see(&mut t, 5), Verdict::Duplicate);
    // the window is the one it had: number 9 was seen, not 13
    assert_eq!(see(&mut t, 13), Verdict::InOrder);
}

#[test]
fn the_anchor_window_judges_late_and_repeated_numbers_from_before_the_jump() {
    let mut t = table();
    for s in [1, 2, 3, 5, 6] {
        see(&mut t, s);
    }
    assert_eq!(see(&mut t, 5000), Verdict::Gap { missing: 4993 });
    assert_eq!(see(&mut t, 6), Verdict::Duplicate); // a tail-loss probe
    assert_eq!(see(&mut t, 4), Verdict::Reordered);
    assert_eq!(see(&mut t, 4), Verdict::Duplicate);
    assert_eq!(see(&mut t, 7), Verdict::Rewound);
    assert_eq!(see(&mut t, 4), Verdict::Duplicate);
    assert_eq!(see(&mut t, 8), Verdict::InOrder);
}

#[test]
fn a_second_forged_jump_keeps_the_first_anchor() {
    let mut t = sent(10);
    assert!(matches!(see(&mut t, 1_000_000), Verdict::Gap { .. }));
    assert!(matches!(see(&mut t, 2_000_000_000), Verdict::Gap { .. }));
    assert_eq!(see(&mut t, 2_000_000_001), Verdict::InOrder);
    // a forged number far behind the forged ones, not after the anchor
    assert_eq!(see(&mut t, u32::MAX - 100), Verdict::Stale);
    assert_eq!(see(&mut t, 11), Verdict::Rewound);
    assert_eq!(see(&mut t, 12), Verdict::InOrder);
}

#[test]
fn a_forged_number_between_the_anchor_and_the_jump_keeps_the_anchor() {
    let mut t = sent(10);
    assert!(matches!(see(&mut t, 1_000_000), Verdict::Gap { .. }));
    // far from the anchor: the window moves to it, the anchor stays
    assert_eq!(see(&mut t, 500), Verdict::Rewound);
    assert_eq!(see(&mut t, 11), Verdict::Rewound);
    assert_eq!(see(&mut t, 12), Verdict::InOrder);
    // settled: the next far jump anchors at 12, whose window has 11 and 12
    assert!(matches!(see(&mut t, 2_000_000), Verdict::Gap { .. }));
    assert_eq!(see(&mut t, 13), Verdict::Rewound);
    assert_eq!(see(&mut t, 12), Verdict::Duplicate);
}

#[test]
fn the_bound_is_the_window() {
    // a jump of 63 keeps the old newest in the window: the next is reordered
    let mut t = sent(10);
    assert_eq!(see(&mut t, 73), Verdict::Gap { missing: 62 });
    assert_eq!(see(&mut t, 11), Verdict::Reordered);
    // a jump of 64 leaves an anchor: 11 continues it
    let mut t = sent(10);
    assert_eq!(see(&mut t, 74), Verdict::Gap { missing: 63 });
    assert_eq!(see(&mut t, 11), Verdict::Rewound);
}

#[test]
fn a_forged_restart_cannot_silence_the_sender() {
    let mut t = sent(100);
    assert_eq!(see(&mut t, 1), Verdict::Restart);
    assert_eq!(see(&mut t, 101), Verdict::Gap { missing: 99 });
    assert_eq!(see(&mut t, 102), Verdict::InOrder);
    // half-way through the number space, the sender's next number is
    // behind 1: the anchor takes it
    let mut t = table();
    let top = 1 << 31;
    assert_eq!(see(&mut t, top), Verdict::FirstSeenLate);
    assert_eq!(see(&mut t, 1), Verdict::Restart);
    assert_eq!(see(&mut t, top + 1), Verdict::Rewound);
    assert_eq!(see(&mut t, top + 2), Verdict::InOrder);
}

#[test]
fn a_real_far_jump_then_a_late_retry_is_rewound_not_stale() {
    let mut t = sent(10);
    assert_eq!(see(&mut t, 200), Verdict::Gap { missing: 189 });
    assert_eq!(see(&mut t, 201), Verdict::InOrder);
    // a confirmed send's retry from the numbers the jump skipped
    assert_eq!(see(&mut t, 50), Verdict::Rewound);
    // the sender goes on where it was: a gap again, delivered
    assert_eq!(see(&mut t, 202), Verdict::Gap { missing: 151 });
    // a late one from before the gap, not seen: still judged by the anchor
    assert_eq!(see(&mut t, 49), Verdict::Reordered);
    // and a forged jump ahead of the sender now cannot silence it either
    assert!(matches!(see(&mut t, 90_000), Verdict::Gap { .. }));
    assert_eq!(see(&mut t, 203), Verdict::Rewound);
    assert_eq!(see(&mut t, 204), Verdict::InOrder);
}

#[test]
fn with_rewind_off_a_far_jump_leaves_the_old_numbers_stale() {
    let mut t = sent(10);
    t.set_rewind(false);
    assert_eq!(see(&mut t, 1_000_000), Verdict::Gap { missing: 999_989 });
    assert_eq!(see(&mut t, 11), Verdict::Stale);
    assert_eq!(see(&mut t, 1), Verdict::Restart);
    assert_eq!(see(&mut t, 2), Verdict::InOrder);
}

#[test]
fn a_churn_of_new_ids_evicts_them_and_idle_senders_never_active_ones() {
    let mut t = SenderTable::new([SenderSlot::EMPTY; 8], 7);
    let active = [101, 102, 103, 104].map(SenderId);
    let idle = [201, 202, 203, 204].map(SenderId);
    for id in idle {
        assert_eq!(t.observe(id, Seq(1)), Verdict::InOrder);
    }
    for id in active {
        assert_eq!(t.observe(id, Seq(1)), Verdict::InOrder);
        assert_eq!(t.observe(id, Seq(2)), Verdict::InOrder);
    }
    assert_eq!((t.len(), t.evictions()), (8, 0));
    // a thousand one-off ids; the active senders send after every four
    let mut next = [3u32; 4];
    for k in 0..1000u64 {
        assert_eq!(
            t.observe(SenderId(0x1_0000 + k), Seq(9)),
            Verdict::FirstSeenLate
        );
        if k % 4 == 3 {
            for (id, seq) in active.iter().zip(&mut next) {
                assert_eq!(t.observe(*id, Seq(*seq)), Verdict::InOrder, "{id}");
                *seq += 1;
            }
        }
    }
    assert_eq!((t.len(), t.evictions()), (8, 1000));
    // the idle ones were evicted: they come back unknown
    for id in idle {
        assert_eq!(t.observe(id, Seq(2)), Verdict::FirstSeenLate);
    }
}

#[test]
fn a_new_sender_is_found_at_once_whatever_it_evicts() {
    let mut t = SenderTable::new([SenderSlot::EMPTY; 64], 0);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for n in 0..10_000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let id = SenderId(x % 512); // repeats: some are known
        let first = t.observe(id, Seq(1));
        assert!(matches!(
            first,
            Verdict::InOrder | Verdict::Restart | Verdict::Duplicate
        ));
        assert_eq!(t.observe(id, Seq(1)), Verdict::Duplicate, "{n}: {id}");
        assert!(t.len() <= 64);
    }
    assert_eq!(t.len(), 64);
    assert!(t.evictions() > 5000);
}

#[test]
fn zero_capacity_never_panics() {
    let mut t = SenderTable::new([SenderSlot::EMPTY; 0], 7);
    assert_eq!(t.observe(A, Seq(1)), Verdict::InOrder);
    assert_eq!(t.observe(A, Seq(2)), Verdict::FirstSeenLate);
    assert_eq!((t.len(), t.capacity(), t.evictions()), (0, 0, 0));
}

#[test]
fn a_slot_is_small() {
    assert_eq!(SenderSlot::SIZE, 48);
}

#[test]
fn a_forged_number_just_past_the_window_cannot_take_the_senders_numbers() {
    let mut t = sent(10);
    // 64 ahead: the sender's next numbers fall inside its window ...
    assert_eq!(see(&mut t, 74), Verdict::Gap { missing: 63 });
    // ... yet they continue the anchor: rewound, the forged track dropped
    assert_eq!(see(&mut t, 11), Verdict::Rewound);
    for s in 12..=80 {
        assert_eq!(see(&mut t, s), Verdict::InOrder, "{s}");
    }
}

#[test]
fn a_number_forged_behind_the_anchor_keeps_a_far_jumps_anchor_strong() {
    // first seen late at 2, then a real far jump: 2 is the anchor
    let mut t = table();
    assert_eq!(see(&mut t, 2), Verdict::FirstSeenLate);
    assert_eq!(see(&mut t, 207), Verdict::Gap { missing: 204 });
    // forged, less than half the space ahead of 207
    assert!(matches!(see(&mut t, 2_147_483_713), Verdict::Gap { .. }));
    assert_eq!(see(&mut t, 2_147_483_714), Verdict::InOrder);
    // half the space after the anchor (behind it): followed once, as a
    // first-seen-late sender's own, but the anchor stays strong ...
    assert_eq!(see(&mut t, 2_147_483_650), Verdict::Rewound);
    assert_eq!(see(&mut t, 271), Verdict::Rewound);
    assert_eq!(see(&mut t, 272), Verdict::InOrder);
    // ... so a further forged far jump cannot replace it
    assert_eq!(see(&mut t, 336), Verdict::Gap { missing: 63 });
    assert_eq!(see(&mut t, 208), Verdict::Rewound);
    assert_eq!(see(&mut t, 209), Verdict::InOrder);
}

#[test]
fn a_sender_first_seen_late_is_followed_behind_its_first_number() {
    // no far jump yet: the first track becomes a weak anchor, which the
    // next far jump replaces with the followed track
    let mut t = table();
    assert_eq!(see(&mut t, 1_000_000), Verdict::FirstSeenLate);
    assert_eq!(see(&mut t, 10), Verdict::Rewound);
    assert_eq!(see(&mut t, 11), Verdict::InOrder);
    assert!(matches!(see(&mut t, 5_000_000), Verdict::Gap { .. }));
    assert_eq!(see(&mut t, 12), Verdict::Rewound);
    assert_eq!(see(&mut t, 13), Verdict::InOrder);
}
