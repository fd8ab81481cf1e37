//! Where the sender thread runs while it watches a burst. Between rounds it
//! yields its CPU between looks at the call counter; a yield that lasts
//! long means another runnable thread — typically the hot loop making the
//! calls — shares that CPU. Linux's scheduler then gives the other thread
//! a whole slice (~3 ms) per yield while another CPU idles, and does not
//! move the yielding thread (it counts as cache-hot). So the thread moves
//! itself: it leaves the crowded CPU out of its affinity mask, until it
//! finds itself crowded on another one. Linux only; elsewhere nothing.

use std::time::Duration;

/// A yield this long means a busy thread shares this CPU.
const CROWDED: Duration = Duration::from_micros(250);

/// The sender thread's own CPU placement (owned by that thread).
#[derive(Debug)]
pub(super) struct Placement {
    /// The CPUs the thread may use, as it started (its caller's or the
    /// process's affinity), or `None` where that cannot be read.
    #[cfg(target_os = "linux")]
    allowed: Option<nix::sched::CpuSet>,
}

impl Placement {
    /// The placement of the calling thread.
    pub(super) fn of_this_thread() -> Placement {
        Placement {
            #[cfg(target_os = "linux")]
            allowed: nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).ok(),
        }
    }

    /// After a yield that took `took`: moves off this CPU if it is crowded.
    /// Returns whether the thread moved.
    pub(super) fn after_yield(&mut self, took: Duration) -> bool {
        took >= CROWDED && self.leave_this_cpu()
    }

    #[cfg(target_os = "linux")]
    fn leave_this_cpu(&mut self) -> bool {
        use nix::sched::{sched_getcpu, sched_setaffinity, CpuSet};
        let (Some(allowed), Ok(cpu)) = (self.allowed.as_ref(), sched_getcpu()) else {
            return false;
        };
        let mut elsewhere = *allowed;
        if elsewhere.unset(cpu).is_err()
            || !(0..CpuSet::count()).any(|c| elsewhere.is_set(c).unwrap_or(false))
        {
            return false; // one CPU: nowhere to go
        }
        sched_setaffinity(nix::unistd::Pid::from_raw(0), &elsewhere).is_ok()
    }

    #[cfg(not(target_os = "linux"))]
    fn leave_this_cpu(&mut self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_yield_leaves_the_thread_where_it_is() {
        let mut p = Placement::of_this_thread();
        assert!(!p.after_yield(Duration::from_micros(10)));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_crowded_cpu_is_left_for_another_allowed_one() {
        use nix::sched::{sched_getaffinity, sched_getcpu, CpuSet};
        use nix::unistd::Pid;
        // in a thread of its own: the test changes its affinity
        std::thread::spawn(|| {
            let mut p = Placement::of_this_thread();
            let allowed = sched_getaffinity(Pid::from_raw(0)).expect("affinity");
            let cpus = (0..CpuSet::count())
                .filter(|&c| allowed.is_set(c).unwrap_or(false))
                .count();
            let here = sched_getcpu().expect("cpu");
            let moved = p.after_yield(CROWDED);
            assert_eq!(moved, cpus > 1, "moves only where another CPU is allowed");
            let now = sched_getaffinity(Pid::from_raw(0)).expect("affinity");
            if moved {
                assert!(
                    !now.is_set(here).expect("in range"),
                    "the crowded CPU is left out"
                );
                let allowed_elsewhere = (0..CpuSet::count())
                    .filter(|&c| c != here)
                    .all(|c| now.is_set(c).ok() == allowed.is_set(c).ok());
                assert!(allowed_elsewhere, "every other allowed CPU stays allowed");
                // crowded again elsewhere: the first CPU is allowed again
                let there = sched_getcpu().expect("cpu");
                assert_ne!(there, here);
                assert!(p.after_yield(CROWDED));
                let after = sched_getaffinity(Pid::from_raw(0)).expect("affinity");
                assert!(after.is_set(here).expect("in range"));
                assert!(!after.is_set(there).expect("in range"));
            }
        })
        .join()
        .expect("test thread");
    }
}
