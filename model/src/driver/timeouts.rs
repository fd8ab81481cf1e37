//! Time through the driver: `handle_timeout` closes exactly the connections
//! whose deadline (see [`Conn::deadline`](crate::table::Conn::deadline))
//! has passed, never one early; `poll_timeout` never sleeps past a
//! deadline by more than one housekeeping period; and a transport that
//! sleeps until each `poll_timeout` meets every deadline within one
//! housekeeping period.

use flagpost_core::broker::SlotState;
use flagpost_core::time::Instant;

use super::Harness;

impl Harness {
    /// `handle_timeout(now)`. A connection it closes must be past its
    /// deadline, with the model's reason; one it leaves open must not be
    /// more than one housekeeping period past it, nor past it at all when
    /// the driver woke at or after `poll_timeout` (a full check is due
    /// then). With `punctual_since`, the driver has slept until every
    /// `poll_timeout` since that instant, so a connection whose deadline is
    /// not before it must be closed within one housekeeping period of it.
    pub(super) fn handle_timeout(&mut self, punctual_since: Option<Instant>) {
        let now = self.now;
        let slack = self.config.housekeeping;
        let due = self.table.deadlines(&self.config);
        let full_check = self.broker.poll_timeout().is_some_and(|t| now >= t);
        self.broker.handle_timeout(now);
        for (id, at, reason) in due {
            match self.broker.state(id) {
                Some(SlotState::Closing) => {
                    assert!(
                        at <= now,
                        "{id} closed at {now:?}, before its {reason:?} deadline {at:?}"
                    );
                    if punctual_since.is_some_and(|since| at >= since) {
                        assert!(
                            now <= at + slack,
                            "{id} closed at {now:?}, more than {slack:?} after its {reason:?} deadline {at:?}, by a driver sleeping until each poll_timeout"
                        );
                        self.report.timely_closes += 1;
                    }
                    self.close(id, reason, true);
                }
                Some(_) => {
                    assert!(
                        at + slack > now,
                        "{id} still open at {now:?}, past its {reason:?} deadline {at:?} by more than {slack:?}"
                    );
                    assert!(
                        !full_check || at > now,
                        "{id} still open at {now:?} after a due check, past its {reason:?} deadline {at:?}"
                    );
                }
                None => panic!("{id} vanished in handle_timeout"),
            }
        }
    }

    /// Sleeps until each `poll_timeout` not after `until` (`None`: until
    /// there is none), running `handle_timeout` at each; then until
    /// `until`. Each wake after the first closes at least one connection, so
    /// the wakes are bounded by the table's size.
    pub(super) fn sleep(&mut self, until: Option<Instant>) {
        let start = self.now;
        let mut wakes = 0;
        while let Some(wake) = self.broker.poll_timeout() {
            if until.is_some_and(|until| wake > until) {
                break;
            }
            wakes += 1;
            assert!(
                wakes <= self.capacity + 1,
                "poll_timeout does not advance: {wakes} wakes since {start:?}, now {wake:?}"
            );
            self.now = self.now.max(wake);
            self.handle_timeout(Some(start));
        }
        if let Some(until) = until {
            self.now = self.now.max(until);
        }
    }

    /// `poll_timeout` is `None` only when no connection has a deadline (an
    /// in-process listener has none until its output waits... and not even
    /// then), `Some` only while a connection is open, and never later than
    /// `max(deadline, now + housekeeping)` for any connection.
    pub(super) fn check_poll_timeout(&self) {
        let floor = self.now + self.config.housekeeping;
        let deadlines = self.table.deadlines(&self.config);
        match self.broker.poll_timeout() {
            None => assert!(
                deadlines.is_empty(),
                "no timeout, but deadlines {deadlines:?} at {:?}",
                self.now
            ),
            Some(t) => {
                assert!(
                    self.broker.connections() > 0,
                    "a timeout with no connection"
                );
                for (id, at, reason) in deadlines {
                    assert!(
                        t <= at.max(floor),
                        "poll_timeout {t:?} oversleeps the {reason:?} deadline {at:?} of {id} (now {:?})",
                        self.now
                    );
                }
            }
        }
    }
}
