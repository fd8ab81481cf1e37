//! The processing service's cycle on top of the core's [`Scheduler`]: run
//! *check triggers* and *check outgoing* when a status update arrives, and
//! otherwise when their polling interval expires (0 disables it). The loop
//! sleeps in [`Listener::wait`] until the next deadline, so it wakes the
//! moment a status update is raised and never spins.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flagpost_core::schedule::{Reason, Scheduler, Task, Work};
use flagpost_core::{FlagSet, Kind};

use crate::clock::Clock;
use crate::listener::Listener;

type Callback = Box<dyn FnMut(Reason) + Send>;

/// The processing cycle: a listener, two intervals, two callbacks.
pub struct Service {
    listener: Arc<Listener>,
    check_triggers: Callback,
    check_outgoing: Callback,
    triggers_interval: Duration,
    outgoing_interval: Duration,
    stop: Arc<AtomicBool>,
}

/// Stops a running [`Service`] from another thread.
#[derive(Clone, Debug)]
pub struct ServiceStopper {
    stop: Arc<AtomicBool>,
    listener: Arc<Listener>,
}

impl ServiceStopper {
    /// Makes [`Service::run`] return after the work in progress.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.listener.interrupt();
    }
}

impl Service {
    /// A service woken by `listener`, which should listen for status updates
    /// only (the service clears any other flag it wakes on).
    /// Both intervals default to zero: no polling, wake-ups only.
    pub fn new(listener: Arc<Listener>) -> Self {
        Service {
            listener,
            check_triggers: Box::new(|_| {}),
            check_outgoing: Box::new(|_| {}),
            triggers_interval: Duration::ZERO,
            outgoing_interval: Duration::ZERO,
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The *check triggers* callback and its polling interval (0: none).
    pub fn check_triggers(
        mut self,
        interval: Duration,
        f: impl FnMut(Reason) + Send + 'static,
    ) -> Self {
        self.triggers_interval = interval;
        self.check_triggers = Box::new(f);
        self
    }

    /// The *check outgoing* callback and its polling interval (0: none).
    pub fn check_outgoing(
        mut self,
        interval: Duration,
        f: impl FnMut(Reason) + Send + 'static,
    ) -> Self {
        self.outgoing_interval = interval;
        self.check_outgoing = Box::new(f);
        self
    }

    /// A handle that stops [`run`](Self::run).
    pub fn stopper(&self) -> ServiceStopper {
        ServiceStopper {
            stop: self.stop.clone(),
            listener: self.listener.clone(),
        }
    }

    /// Runs the cycle until stopped: both callbacks once at start-up, then on
    /// every status update and on every expired interval.
    pub fn run(mut self) {
        let clock = Clock::new();
        let mut cycle = Scheduler::new(
            clock.now(),
            self.triggers_interval.into(),
            self.outgoing_interval.into(),
        );
        loop {
            // The interrupt count is taken before the stop flag is read, so
            // that a stop between the two ends the wait below at once
            // (taken inside the wait, such a stop was lost: the cycle then
            // slept out its whole timeout, an hour with no interval set).
            let epoch = self.listener.shared().interrupts();
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            if self.listener.check_status_update() {
                cycle.handle_notification(clock.now(), Kind::Status);
            }
            while let Some(Work { task, reason }) = cycle.poll(clock.now()) {
                match task {
                    Task::CheckTriggers => (self.check_triggers)(reason),
                    Task::CheckOutgoing => (self.check_outgoing)(reason),
                }
            }
            let timeout = cycle
                .poll_timeout()
                .map_or(Duration::from_secs(3600), |at| clock.until(at));
            // Wakes on any raised flag; non-status flags are cleared here so
            // they do not keep waking a loop that has nothing to do for them.
            if self.listener.wait_since(epoch, timeout) {
                self.listener.shared().flags().check(!FlagSet::STATUS);
            }
        }
    }
}
