//! The processing service's cycle from the vendor's description: two polling
//! intervals (*check triggers*, *check outgoing*) combined with wake-ups from
//! the broker.
//!
//! * A status update makes both kinds of work due at once and restarts both
//!   intervals, so with steady traffic and wide intervals the database is
//!   never polled.
//! * A non-status, channel-update or channel-shutdown notification causes no
//!   work here (they refresh views or reconfigure channels).
//! * An expired interval makes its work due with [`Reason::Interval`], and the
//!   interval restarts from the moment it is polled (no burst of catch-up
//!   polls after a stall).
//! * An interval of [`Duration::ZERO`] disables that polling entirely.
//! * At start-up both kinds of work are due once ([`Reason::Startup`]): work
//!   queued while the service was down must not wait for a notification.
//!
//! Sans-IO: feed [`Scheduler::handle_notification`], drain
//! [`Scheduler::poll`], sleep until [`Scheduler::poll_timeout`].

use core::fmt;

use crate::notify::Kind;
use crate::time::{Duration, Instant};
use crate::timer::TimerTable;

/// A kind of work the service does against its database.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Task {
    /// Run the trigger scripts on changed messages.
    CheckTriggers = 0,
    /// Pick up outgoing messages and send them.
    CheckOutgoing = 1,
}

impl Task {
    /// Both tasks, in the order the cycle runs them.
    pub const ALL: [Task; 2] = [Task::CheckTriggers, Task::CheckOutgoing];

    /// A stable name (`check-triggers`, `check-outgoing`).
    pub const fn name(self) -> &'static str {
        match self {
            Task::CheckTriggers => "check-triggers",
            Task::CheckOutgoing => "check-outgoing",
        }
    }
}

/// Why a task is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Reason {
    /// The service just started.
    Startup,
    /// A status update arrived (or a possible loss was detected).
    Notification,
    /// The polling interval expired.
    Interval,
}

/// A task that is due, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Work {
    /// What to do.
    pub task: Task,
    /// Why now.
    pub reason: Reason,
}

impl fmt::Display for Work {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.reason {
            Reason::Startup => "startup",
            Reason::Notification => "notification",
            Reason::Interval => "interval",
        };
        write!(f, "{} ({why})", self.task.name())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
struct Pending {
    reason: Reason,
    since: Instant,
}

/// The polling scheduler: one interval timer and one pending slot per task.
///
/// ```
/// use flagpost_core::notify::Kind;
/// use flagpost_core::schedule::{Reason, Scheduler, Task, Work};
/// use flagpost_core::time::{Duration, Instant};
///
/// let t0 = Instant::ZERO;
/// let mut s = Scheduler::new(t0, Duration::from_secs(10), Duration::ZERO);
/// // start-up: both tasks once
/// assert_eq!(s.poll(t0).map(|w| w.reason), Some(Reason::Startup));
/// assert_eq!(s.poll(t0).map(|w| w.reason), Some(Reason::Startup));
/// assert_eq!(s.poll(t0), None);
/// // only check-triggers polls (outgoing's interval is 0)
/// assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(10)));
/// // a status update makes both due now and restarts the interval
/// let t1 = t0 + Duration::from_secs(4);
/// s.handle_notification(t1, Kind::Status);
/// assert_eq!(s.poll(t1), Some(Work { task: Task::CheckTriggers, reason: Reason::Notification }));
/// assert_eq!(s.poll(t1), Some(Work { task: Task::CheckOutgoing, reason: Reason::Notification }));
/// assert_eq!(s.poll_timeout(), Some(t1 + Duration::from_secs(10)));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Scheduler {
    intervals: [Duration; 2],
    timers: TimerTable<2>,
    pending: [Option<Pending>; 2],
}

impl Scheduler {
    /// A scheduler started at `now`. An interval of zero disables that
    /// task's polling. Both tasks are due once at start-up.
    pub fn new(now: Instant, check_triggers: Duration, check_outgoing: Duration) -> Self {
        let mut s = Scheduler {
            intervals: [check_triggers, check_outgoing],
            timers: TimerTable::new(),
            pending: [None; 2],
        };
        for task in Task::ALL {
            s.mark(task, Reason::Startup, now);
        }
        s
    }

    /// The polling interval of `task` (zero: disabled).
    pub fn interval(&self, task: Task) -> Duration {
        let [triggers, outgoing] = self.intervals;
        match task {
            Task::CheckTriggers => triggers,
            Task::CheckOutgoing => outgoing,
        }
    }

    fn pending_mut(&mut self, task: Task) -> &mut Option<Pending> {
        let [triggers, outgoing] = &mut self.pending;
        match task {
            Task::CheckTriggers => triggers,
            Task::CheckOutgoing => outgoing,
        }
    }

    /// Changes the polling interval of `task`, restarting it from `now`.
    pub fn set_interval(&mut self, now: Instant, task: Task, interval: Duration) {
        let [triggers, outgoing] = &mut self.intervals;
        match task {
            Task::CheckTriggers => *triggers = interval,
            Task::CheckOutgoing => *outgoing = interval,
        }
        self.restart(task, now);
    }

    fn restart(&mut self, task: Task, now: Instant) {
        let interval = self.interval(task);
        if interval.is_zero() {
            self.timers.stop(task as usize);
        } else {
            self.timers.set(task as usize, now + interval);
        }
    }

    fn mark(&mut self, task: Task, reason: Reason, now: Instant) {
        let slot = self.pending_mut(task);
        if slot.is_none() {
            *slot = Some(Pending { reason, since: now });
        }
        self.restart(task, now);
    }

    /// Feeds a notification of `kind` received at `now`. Only a status update
    /// causes work: both tasks become due and both intervals restart.
    pub fn handle_notification(&mut self, now: Instant, kind: Kind) {
        if kind == Kind::Status {
            for task in Task::ALL {
                self.mark(task, Reason::Notification, now);
            }
        }
    }

    /// The next due work at `now`, if any: notifications first, then expired
    /// intervals. Call until `None`.
    #[must_use]
    pub fn poll(&mut self, now: Instant) -> Option<Work> {
        for task in Task::ALL {
            if let Some(p) = self.pending_mut(task).take() {
                return Some(Work {
                    task,
                    reason: p.reason,
                });
            }
        }
        for task in Task::ALL {
            if self.timers.is_expired(task as usize, now) {
                self.restart(task, now);
                return Some(Work {
                    task,
                    reason: Reason::Interval,
                });
            }
        }
        None
    }

    /// When [`poll`](Self::poll) next has work: the moment pending work
    /// arrived (already past), or the earliest interval deadline; `None` when
    /// nothing is pending and both intervals are zero.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let pending = self.pending.iter().flatten().map(|p| p.since).min();
        match (pending, self.timers.next()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(s: &mut Scheduler, now: Instant) -> usize {
        core::iter::from_fn(|| s.poll(now)).count()
    }

    #[test]
    fn zero_intervals_never_poll_and_never_wake() {
        let t0 = Instant::ZERO;
        let mut s = Scheduler::new(t0, Duration::ZERO, Duration::ZERO);
        assert_eq!(drain(&mut s, t0), 2);
        assert_eq!(s.poll_timeout(), None);
        assert_eq!(s.poll(Instant::from_secs(1_000_000)), None);
        s.handle_notification(Instant::from_secs(5), Kind::Status);
        assert_eq!(s.poll_timeout(), Some(Instant::from_secs(5)));
        assert_eq!(drain(&mut s, Instant::from_secs(5)), 2);
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn only_status_causes_work() {
        let mut s = Scheduler::new(Instant::ZERO, Duration::ZERO, Duration::ZERO);
        drain(&mut s, Instant::ZERO);
        for kind in [Kind::NonStatus, Kind::ChannelUpdate, Kind::ChannelShutdown] {
            s.handle_notification(Instant::from_secs(1), kind);
            assert_eq!(s.poll(Instant::from_secs(1)), None);
        }
    }

    #[test]
    fn interval_fires_on_time_and_restarts_from_poll() {
        let ten = Duration::from_secs(10);
        let mut s = Scheduler::new(Instant::ZERO, ten, Duration::from_secs(15));
        drain(&mut s, Instant::ZERO);
        assert_eq!(s.poll(Instant::from_micros(9_999_999)), None);
        assert_eq!(
            s.poll(Instant::from_secs(10)),
            Some(Work {
                task: Task::CheckTriggers,
                reason: Reason::Interval
            })
        );
        assert_eq!(s.poll_timeout(), Some(Instant::from_secs(15)));
        // polled late: the next interval counts from the late poll
        assert_eq!(drain(&mut s, Instant::from_secs(40)), 2);
        assert_eq!(s.poll_timeout(), Some(Instant::from_secs(50)));
    }

    #[test]
    fn steady_notifications_with_wide_intervals_never_poll_the_database() {
        let mut s = Scheduler::new(
            Instant::ZERO,
            Duration::from_secs(30),
            Duration::from_secs(60),
        );
        let mut now = Instant::ZERO;
        let mut interval_polls = 0;
        let mut notified_work = 0;
        // a status update every 5 s for a day, polling whenever the scheduler asks
        for _ in 0..(24 * 3600 / 5) {
            let next = now + Duration::from_secs(5);
            while let Some(at) = s.poll_timeout().filter(|at| *at < next) {
                now = at.max(now);
                while let Some(w) = s.poll(now) {
                    match w.reason {
                        Reason::Interval => interval_polls += 1,
                        _ => notified_work += 1,
                    }
                }
            }
            now = next;
            s.handle_notification(now, Kind::Status);
        }
        assert_eq!(interval_polls, 0);
        assert!(notified_work >= 2 * (24 * 3600 / 5 - 1));
    }

    #[test]
    fn set_interval_restarts_from_now() {
        let mut s = Scheduler::new(Instant::ZERO, Duration::ZERO, Duration::ZERO);
        drain(&mut s, Instant::ZERO);
        s.set_interval(
            Instant::from_secs(3),
            Task::CheckOutgoing,
            Duration::from_secs(2),
        );
        assert_eq!(s.interval(Task::CheckOutgoing), Duration::from_secs(2));
        assert_eq!(s.poll_timeout(), Some(Instant::from_secs(5)));
    }
}
