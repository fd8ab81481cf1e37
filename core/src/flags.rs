//! The four flags a listener checks, with test-and-clear semantics.
//!
//! [`FlagSet`] is the bit set (its bits are the wire encoding). [`Flags`] is
//! the single-owner value a board or the broker's per-listener state keeps.
//! [`AtomicFlags`] is the lock-free shared version for targets with atomic
//! read-modify-write (every host, Cortex-M3 and up; not `thumbv6m`, which
//! keeps [`Flags`] behind its own critical section); its check is loads and
//! a plain store, no locked instruction.
//!
//! A *check* is test-and-clear: any number of raises between two checks read
//! as one `true`, and the next check reads `false` unless something was
//! raised in between.

use core::fmt;
use core::ops::{BitAnd, BitOr, BitOrAssign, Not};

/// A set of flags. The bit values are the wire encoding.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FlagSet(u8);

impl FlagSet {
    /// No flag.
    pub const EMPTY: FlagSet = FlagSet(0);
    /// A status update: there is work to do.
    pub const STATUS: FlagSet = FlagSet(0b0001);
    /// A non-status update: views should refresh.
    pub const NON_STATUS: FlagSet = FlagSet(0b0010);
    /// The channel's configuration changed.
    pub const CHANNEL_UPDATE: FlagSet = FlagSet(0b0100);
    /// The channel must stop.
    pub const CHANNEL_SHUTDOWN: FlagSet = FlagSet(0b1000);
    /// All four flags.
    pub const ALL: FlagSet = FlagSet(0b1111);
    /// What a listener re-checks when it may have missed notifications (a
    /// possible loss, a reconnect): status, non-status and channel update.
    /// Never channel shutdown, which is a command, not a re-check.
    pub const RECHECK: FlagSet = FlagSet(0b0111);

    /// The set with exactly these bits, or `None` if an unknown bit is set.
    pub const fn from_bits(bits: u8) -> Option<FlagSet> {
        if bits & !Self::ALL.0 == 0 {
            Some(FlagSet(bits))
        } else {
            None
        }
    }

    /// The set with these bits, unknown bits dropped.
    pub const fn from_bits_truncate(bits: u8) -> FlagSet {
        FlagSet(bits & Self::ALL.0)
    }

    /// The raw bits.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// `self ∪ other`.
    pub const fn union(self, other: FlagSet) -> FlagSet {
        FlagSet(self.0 | other.0)
    }

    /// `self ∩ other`.
    pub const fn intersection(self, other: FlagSet) -> FlagSet {
        FlagSet(self.0 & other.0)
    }

    /// `self \ other`.
    pub const fn difference(self, other: FlagSet) -> FlagSet {
        FlagSet(self.0 & !other.0)
    }

    /// Whether every flag of `other` is in `self`.
    pub const fn contains(self, other: FlagSet) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any flag of `other` is in `self`.
    pub const fn intersects(self, other: FlagSet) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether no flag is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The single flags in this set, in bit order.
    pub fn iter(self) -> impl Iterator<Item = FlagSet> {
        [
            FlagSet::STATUS,
            FlagSet::NON_STATUS,
            FlagSet::CHANNEL_UPDATE,
            FlagSet::CHANNEL_SHUTDOWN,
        ]
        .into_iter()
        .filter(move |f| self.contains(*f))
    }

    /// The name of a single flag (`status`, `non-status`, `channel-update`,
    /// `channel-shutdown`), or `None` for a set of zero or several flags.
    pub const fn name(self) -> Option<&'static str> {
        match self {
            FlagSet::STATUS => Some("status"),
            FlagSet::NON_STATUS => Some("non-status"),
            FlagSet::CHANNEL_UPDATE => Some("channel-update"),
            FlagSet::CHANNEL_SHUTDOWN => Some("channel-shutdown"),
            _ => None,
        }
    }
}

impl BitOr for FlagSet {
    type Output = FlagSet;
    fn bitor(self, rhs: FlagSet) -> FlagSet {
        self.union(rhs)
    }
}

impl BitOrAssign for FlagSet {
    fn bitor_assign(&mut self, rhs: FlagSet) {
        *self = self.union(rhs);
    }
}

impl BitAnd for FlagSet {
    type Output = FlagSet;
    fn bitand(self, rhs: FlagSet) -> FlagSet {
        self.intersection(rhs)
    }
}

impl Not for FlagSet {
    type Output = FlagSet;
    fn not(self) -> FlagSet {
        FlagSet::ALL.difference(self)
    }
}

impl fmt::Debug for FlagSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FlagSet(")?;
        fmt::Display::fmt(self, f)?;
        write!(f, ")")
    }
}

impl fmt::Display for FlagSet {
    /// `status|non-status`, or `-` for the empty set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("-");
        }
        for (i, flag) in self.iter().enumerate() {
            if i > 0 {
                f.write_str("|")?;
            }
            f.write_str(flag.name().unwrap_or("?"))?;
        }
        Ok(())
    }
}

/// Single-owner flags: raise and test-and-clear without synchronisation.
///
/// ```
/// use flagpost_core::flags::{FlagSet, Flags};
///
/// let mut flags = Flags::new();
/// for _ in 0..1000 {
///     flags.raise(FlagSet::STATUS);
/// }
/// assert!(flags.check_status()); // a thousand raises read as one
/// assert!(!flags.check_status()); // and the check cleared it
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Flags {
    raised: FlagSet,
}

impl Flags {
    /// All flags clear.
    pub const fn new() -> Self {
        Flags {
            raised: FlagSet::EMPTY,
        }
    }

    /// Raises every flag in `set`.
    pub fn raise(&mut self, set: FlagSet) {
        self.raised |= set;
    }

    /// Test-and-clear: whether any flag of `set` was raised; clears them.
    pub fn check(&mut self, set: FlagSet) -> bool {
        let hit = self.raised.intersects(set);
        self.raised = self.raised.difference(set);
        hit
    }

    /// Test-and-clear the status flag.
    pub fn check_status(&mut self) -> bool {
        self.check(FlagSet::STATUS)
    }

    /// Test-and-clear the non-status flag.
    pub fn check_non_status(&mut self) -> bool {
        self.check(FlagSet::NON_STATUS)
    }

    /// Test-and-clear the channel-update flag.
    pub fn check_channel_update(&mut self) -> bool {
        self.check(FlagSet::CHANNEL_UPDATE)
    }

    /// Test-and-clear the channel-shutdown flag.
    pub fn check_channel_shutdown(&mut self) -> bool {
        self.check(FlagSet::CHANNEL_SHUTDOWN)
    }

    /// Takes every raised flag, leaving all clear.
    pub fn take(&mut self) -> FlagSet {
        core::mem::take(&mut self.raised)
    }

    /// The raised flags, without clearing.
    pub const fn peek(&self) -> FlagSet {
        self.raised
    }
}

#[cfg(target_has_atomic = "32")]
mod atomic {
    use core::sync::atomic::{AtomicU32, Ordering};

    use super::FlagSet;

    /// Lock-free shared flags: raised by any thread, checked by others.
    ///
    /// Each flag is a pair of counters: how many times it went from clear
    /// to raised (`raised`, advanced by raisers), and the last `raised`
    /// value a check consumed (`seen`, written by checkers). The flag is
    /// raised while they differ. So a check is two loads when the flag is
    /// clear, and two loads and one plain store when it is raised: no
    /// read-modify-write (a locked instruction costs more than the whole
    /// check on x86). A raise of a flag that is already raised is two loads
    /// and no write; raising a clear flag is one `fetch_add`, so raises may
    /// come from any number of threads.
    ///
    /// With one checking thread (the usual case: the thread that does the
    /// work) a check is an exact test-and-clear. Checkers racing on the same
    /// flag can both read one raise as `true` — a spare wake-up, never a
    /// lost one: `seen` only ever takes a value some check returned `true`
    /// for, so once every checker has stored, a raise after the value it
    /// stored reads as raised.
    ///
    /// Raises store with release ordering and checks load with acquire, so
    /// whatever the raiser wrote before raising is visible to the checker
    /// that sees the flag.
    ///
    /// ```
    /// use flagpost_core::flags::{AtomicFlags, FlagSet};
    ///
    /// let flags = AtomicFlags::new();
    /// flags.raise(FlagSet::STATUS | FlagSet::NON_STATUS);
    /// assert!(flags.check_status());
    /// assert!(!flags.check_status());
    /// assert_eq!(flags.take(), FlagSet::NON_STATUS);
    /// ```
    #[derive(Debug, Default)]
    pub struct AtomicFlags {
        raised: [AtomicU32; 4],
        seen: [AtomicU32; 4],
    }

    impl AtomicFlags {
        /// All flags clear.
        pub const fn new() -> Self {
            AtomicFlags {
                raised: [const { AtomicU32::new(0) }; 4],
                seen: [const { AtomicU32::new(0) }; 4],
            }
        }

        /// The (raised, seen) counter pairs with the flag each stands for.
        #[inline(always)]
        fn cells(&self) -> impl Iterator<Item = (FlagSet, &AtomicU32, &AtomicU32)> {
            (0..4)
                .map(|i| FlagSet(1 << i))
                .zip(self.raised.iter().zip(self.seen.iter()))
                .map(|(flag, (raised, seen))| (flag, raised, seen))
        }

        /// Raises every flag in `set`; returns every flag that was raised before.
        ///
        /// A flag that is already raised is left alone (no write, so a flood
        /// of raises does not bounce the cache line); such a raise carries no
        /// release ordering of its own — the check that clears the flag
        /// synchronises with the raise that set it.
        #[inline]
        pub fn raise(&self, set: FlagSet) -> FlagSet {
            let mut already = FlagSet::EMPTY;
            for (flag, raised, seen) in self.cells() {
                if pending(raised, seen, Ordering::Relaxed).0 {
                    already |= flag;
                } else if set.contains(flag) {
                    // Concurrent raisers both add: the flag reads raised
                    // until a check stores the larger count. Wrapping needs
                    // 2^32 raises while one check is between its load and
                    // its store.
                    raised.fetch_add(1, Ordering::Release);
                }
            }
            already
        }

        /// [`raise`](Self::raise) for a single raiser: when every raise of
        /// these flags comes from one thread at a time (one thread, or under
        /// one lock) — checks may still run anywhere. Raising a clear flag
        /// is then a plain store, no locked instruction. Two raises running
        /// at once could lose one, so [`raise`](Self::raise) is the default.
        #[inline]
        pub fn raise_exclusive(&self, set: FlagSet) -> FlagSet {
            let mut already = FlagSet::EMPTY;
            for (flag, raised, seen) in self.cells() {
                let (is_raised, count) = pending(raised, seen, Ordering::Relaxed);
                if is_raised {
                    already |= flag;
                } else if set.contains(flag) {
                    // The only writer of `raised`: its count is exact.
                    raised.store(count.wrapping_add(1), Ordering::Release);
                }
            }
            already
        }

        /// Test-and-clear: whether any flag of `set` was raised; clears them.
        #[inline]
        pub fn check(&self, set: FlagSet) -> bool {
            !self.take_set(set).is_empty()
        }

        #[inline(always)]
        fn take_set(&self, set: FlagSet) -> FlagSet {
            let mut taken = FlagSet::EMPTY;
            for (flag, raised, seen) in self.cells() {
                if set.contains(flag) && check_cell(raised, seen) {
                    taken |= flag;
                }
            }
            taken
        }

        /// Test-and-clear the status flag.
        #[inline]
        pub fn check_status(&self) -> bool {
            check_cell(&self.raised[0], &self.seen[0])
        }

        /// Test-and-clear the non-status flag.
        #[inline]
        pub fn check_non_status(&self) -> bool {
            check_cell(&self.raised[1], &self.seen[1])
        }

        /// Test-and-clear the channel-update flag.
        #[inline]
        pub fn check_channel_update(&self) -> bool {
            check_cell(&self.raised[2], &self.seen[2])
        }

        /// Test-and-clear the channel-shutdown flag.
        #[inline]
        pub fn check_channel_shutdown(&self) -> bool {
            check_cell(&self.raised[3], &self.seen[3])
        }

        /// Takes every raised flag, leaving all clear.
        #[inline]
        pub fn take(&self) -> FlagSet {
            self.take_set(FlagSet::ALL)
        }

        /// The raised flags, without clearing.
        #[inline]
        pub fn peek(&self) -> FlagSet {
            let mut pending_set = FlagSet::EMPTY;
            for (flag, raised, seen) in self.cells() {
                if pending(raised, seen, Ordering::Acquire).0 {
                    pending_set |= flag;
                }
            }
            pending_set
        }
    }

    /// Whether a flag is raised, and the `raised` count read.
    #[inline(always)]
    fn pending(raised: &AtomicU32, seen: &AtomicU32, order: Ordering) -> (bool, u32) {
        let count = raised.load(order);
        (count != seen.load(Ordering::Relaxed), count)
    }

    /// Test-and-clear of one flag: loads, and a plain store if raised.
    #[inline(always)]
    fn check_cell(raised: &AtomicU32, seen: &AtomicU32) -> bool {
        let (is_raised, count) = pending(raised, seen, Ordering::Acquire);
        if is_raised {
            seen.store(count, Ordering::Relaxed);
        }
        is_raised
    }
}

#[cfg(target_has_atomic = "32")]
pub use atomic::AtomicFlags;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_are_the_wire_encoding() {
        assert_eq!(FlagSet::STATUS.bits(), 1);
        assert_eq!(FlagSet::NON_STATUS.bits(), 2);
        assert_eq!(FlagSet::CHANNEL_UPDATE.bits(), 4);
        assert_eq!(FlagSet::CHANNEL_SHUTDOWN.bits(), 8);
        assert_eq!(FlagSet::from_bits(0x10), None);
        assert_eq!(FlagSet::from_bits_truncate(0xff), FlagSet::ALL);
    }

    #[test]
    fn check_clears_only_what_it_checks() {
        let mut f = Flags::new();
        f.raise(FlagSet::STATUS | FlagSet::CHANNEL_UPDATE);
        assert!(!f.check_non_status());
        assert!(f.check_status());
        assert_eq!(f.peek(), FlagSet::CHANNEL_UPDATE);
        assert!(f.check_channel_update());
        assert!(!f.check_channel_shutdown());
        assert_eq!(f.take(), FlagSet::EMPTY);
    }

    #[test]
    fn display() {
        use std::string::ToString;
        assert_eq!(
            (FlagSet::STATUS | FlagSet::NON_STATUS).to_string(),
            "status|non-status"
        );
        assert_eq!(FlagSet::EMPTY.to_string(), "-");
        assert_eq!(
            (!FlagSet::STATUS).to_string(),
            "non-status|channel-update|channel-shutdown"
        );
    }

    /// Raisers and checkers on threads: every raise is read as `true` by a
    /// check that follows it, or is still raised at the end — none is lost.
    fn no_lost_raise(raisers: usize, checkers: usize, exclusive: bool) {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
        use std::vec::Vec;
        const RAISES: u64 = 20_000;
        let flags = AtomicFlags::new();
        let written: Vec<AtomicU64> = (0..raisers).map(|_| AtomicU64::new(0)).collect();
        let done = AtomicBool::new(false);
        let started = std::sync::atomic::AtomicUsize::new(0);
        let seen = std::thread::scope(|s| {
            let checking: Vec<_> = (0..checkers)
                .map(|_| {
                    s.spawn(|| {
                        let mut seen = std::vec![0u64; raisers];
                        started.fetch_add(1, SeqCst);
                        while !done.load(SeqCst) {
                            if flags.check_status() {
                                for (v, w) in seen.iter_mut().zip(&written) {
                                    *v = (*v).max(w.load(SeqCst));
                                }
                            }
                        }
                        seen
                    })
                })
                .collect();
            let raising: Vec<_> = written
                .iter()
                .map(|w| {
                    let (flags, started) = (&flags, &started);
                    s.spawn(move || {
                        // overlap with the checkers
                        while started.load(SeqCst) < checkers {
                            std::hint::spin_loop();
                        }
                        for k in 1..=RAISES {
                            w.store(k, SeqCst);
                            if exclusive {
                                flags.raise_exclusive(FlagSet::STATUS);
                            } else {
                                flags.raise(FlagSet::STATUS);
                            }
                        }
                    })
                })
                .collect();
            for r in raising {
                r.join().expect("raiser");
            }
            done.store(true, SeqCst);
            let mut seen = std::vec![0u64; raisers];
            for c in checking {
                let v = c.join().expect("checker");
                for (a, b) in seen.iter_mut().zip(v) {
                    *a = (*a).max(b);
                }
            }
            seen
        });
        let still_raised = flags.check_status();
        for (r, last) in seen.iter().enumerate() {
            assert!(
                *last == RAISES || still_raised,
                "raiser {r}: last raise neither checked (saw {last}) nor still raised"
            );
        }
        assert!(!flags.check_status(), "a check clears");
    }

    #[test]
    fn one_raiser_one_checker_lose_nothing() {
        no_lost_raise(1, 1, false);
    }

    #[test]
    fn racing_raisers_and_checkers_lose_nothing() {
        no_lost_raise(2, 2, false);
    }

    #[test]
    fn an_exclusive_raiser_with_racing_checkers_loses_nothing() {
        no_lost_raise(1, 2, true);
    }

    #[test]
    fn atomic_flags_match_single_owner() {
        let a = AtomicFlags::new();
        let mut s = Flags::new();
        for (i, bits) in [1u8, 3, 4, 8, 15, 2].into_iter().enumerate() {
            let set = FlagSet::from_bits_truncate(bits);
            let before = if i % 2 == 0 {
                a.raise(set)
            } else {
                a.raise_exclusive(set)
            };
            assert_eq!(before, s.peek());
            s.raise(set);
            assert_eq!(a.check(FlagSet::NON_STATUS), s.check(FlagSet::NON_STATUS));
            assert_eq!(a.peek(), s.peek());
        }
        assert_eq!(a.take(), s.take());
    }
}
