//! One sender's sequence state and the verdict on each number: the newest
//! number and its window, and — after a jump of [`FAR_JUMP`] or more — the
//! *anchor*, where the sender was before, so that a forged far-ahead number
//! cannot make the real sender's next datagrams stale.

use super::{SenderSlot, Verdict, ANCHOR_WEAK, FAR_JUMP, FIRST_SEEN_LATE, WINDOW};
use crate::wire::Seq;

/// Half the sequence space: a number this far or farther ahead is behind.
const HALF: u32 = 1 << 31;

/// A newest number and which of the [`WINDOW`] numbers up to it were seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Track {
    pub(super) last: Seq,
    /// Bit `k` set: number `last - k` was seen.
    pub(super) window: u64,
}

impl Track {
    /// A track that has seen `seq` only.
    pub(super) const fn new(seq: Seq) -> Track {
        Track {
            last: seq,
            window: 1,
        }
    }

    /// Moves the newest `d` > 0 numbers forward, to `seq`.
    fn advance(&mut self, seq: Seq, d: u64) {
        let kept = if d >= u64::from(WINDOW) {
            0
        } else {
            self.window << d
        };
        self.window = kept | 1;
        self.last = seq;
    }

    /// How far `seq` is behind the newest, if inside the window (0: the
    /// newest itself).
    fn behind(&self, seq: Seq) -> Option<u32> {
        let d = seq.distance_from(self.last);
        let back = u32::try_from(d.unsigned_abs()).ok()?;
        (d <= 0 && back < WINDOW).then_some(back)
    }

    /// Records the number `back` behind the newest (inside the window).
    fn mark(&mut self, back: u32) -> Verdict {
        let bit = 1u64.checked_shl(back).unwrap_or(0);
        if self.window & bit != 0 {
            return Verdict::Duplicate;
        }
        self.window |= bit;
        Verdict::Reordered
    }
}

impl SenderSlot {
    /// The verdict on `seq` from this slot's sender, recorded. With
    /// `rewind` off, no anchor is set or followed (a broker with a key: its
    /// senders' numbers cannot be forged).
    pub(super) fn judge(&mut self, seq: Seq, rewind: bool) -> Verdict {
        let mut main = self.main();
        let d = seq.distance_from(main.last);
        if d > 0 {
            let d = d.unsigned_abs();
            if rewind && d >= u64::from(FAR_JUMP) {
                self.jumped(main, seq);
            }
            main.advance(seq, d);
            self.set_main(main);
            return match d {
                1 => Verdict::InOrder,
                _ => Verdict::Gap {
                    missing: u32::try_from(d - 1).unwrap_or(u32::MAX),
                },
            };
        }
        let in_window = main.behind(seq);
        if rewind {
            if let Some(verdict) = self.follow_anchor(seq, in_window.is_some()) {
                return verdict;
            }
        }
        if let Some(back) = in_window {
            let verdict = main.mark(back);
            self.set_main(main);
            return verdict;
        }
        if rewind && self.has(FIRST_SEEN_LATE) {
            // nothing was ever seen behind the sender's first number: no
            // telling which track is its own. Follow this one, and keep the
            // other as a weak anchor, which the next far jump replaces. An
            // anchor a far jump left stays strong: it may be the sender's
            // own track, and this number forged less than half the space
            // ahead of the sender yet half the space or more after the
            // anchor (the sender jumped far since); weak, the next forged
            // far jump would replace it and silence the sender.
            self.set(FIRST_SEEN_LATE, false);
            if self.anchor().is_none() {
                self.set_anchor(Some(main));
                self.set(ANCHOR_WEAK, true);
                self.jump_to = seq;
            }
            self.set_main(Track::new(seq));
            return match seq {
                Seq::FIRST => Verdict::Restart,
                _ => Verdict::Rewound,
            };
        }
        if seq == Seq::FIRST {
            if rewind {
                self.jumped(main, seq);
            }
            self.set_main(Track::new(seq));
            return Verdict::Restart;
        }
        Verdict::Stale
    }

    /// A number at or behind the newest, judged against the anchor. Within
    /// [`WINDOW`] after the anchor's newest (and before the farthest jump
    /// since): the sender's own next numbers, so a rewind that settles the
    /// anchor, even inside the newest's window (a forged number less than
    /// two windows ahead must not turn the sender's into duplicates).
    /// Otherwise only outside the newest's window (`in_window` false):
    /// inside the anchor's window, judged there; farther after the anchor
    /// and before that jump, a rewind that keeps the anchor. `None`: no
    /// anchor, or the newest's window or nothing judges the number.
    fn follow_anchor(&mut self, seq: Seq, in_window: bool) -> Option<Verdict> {
        let mut anchor = self.anchor()?;
        let ahead = seq.0.wrapping_sub(anchor.last.0);
        let reach = self.jump_to.0.wrapping_sub(anchor.last.0).min(HALF);
        let fits = ahead != 0 && ahead < reach;
        if fits && ahead < WINDOW {
            anchor.advance(seq, u64::from(ahead));
            self.set_main(anchor);
            self.set_anchor(None);
            return Some(Verdict::Rewound);
        }
        if in_window {
            return None;
        }
        if let Some(back) = anchor.behind(seq) {
            let verdict = anchor.mark(back);
            self.set_anchor(Some(anchor));
            return Some(verdict);
        }
        if !fits {
            return None;
        }
        anchor.advance(seq, u64::from(ahead));
        self.set_main(anchor);
        Some(Verdict::Rewound)
    }

    /// The window moves far from `main` (a jump of [`FAR_JUMP`] or more to
    /// `seq`, or a restart): `main` becomes the anchor unless one is held
    /// (then a second jump cannot push the real sender's track out) and not
    /// weak, and the farthest jump since the anchor is remembered.
    fn jumped(&mut self, main: Track, seq: Seq) {
        match self.anchor() {
            Some(anchor) if !self.has(ANCHOR_WEAK) => {
                let from = anchor.last.0;
                if seq.0.wrapping_sub(from) > self.jump_to.0.wrapping_sub(from) {
                    self.jump_to = seq;
                }
            }
            _ => {
                self.set_anchor(Some(main));
                self.set(ANCHOR_WEAK, false);
                self.jump_to = seq;
            }
        }
    }
}
