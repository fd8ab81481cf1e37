//! The cycle itself: the core's [`Scheduler`] fed with the listener's status
//! updates, draining its work into *check triggers* and *check outgoing*,
//! sleeping in [`Listener::wait`] until the next deadline.
//!
//! It is [`flagpost_std::Service`]'s loop with three additions that
//! `Service`'s callbacks cannot express: a reconnect raise is told from a
//! notification (counted as [`Cause::Reconnect`]); messages queued by *check
//! triggers* make *check outgoing* run at once ([`Cause::OwnWrite`]); and a
//! failed run is retried after a back-off ([`Cause::Retry`]) even with both
//! intervals at zero.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use flagpost_core::listener::Backoff;
use flagpost_core::schedule::{Reason, Scheduler, Task, Work};
use flagpost_core::time::Instant;
use flagpost_core::{FlagSet, Kind};
use flagpost_std::clock::Clock;
use flagpost_std::{Listener, ListenerState};

use crate::channel::{Channel, SendError};
use crate::counters::{Cause, Counters};
use crate::store::{Store, StoreError, STATUS_FAILED, STATUS_SENT};
use crate::trigger::{Trigger, TriggerOutput};
use crate::{ServiceConfig, ServiceError};

/// The action recorded when a message is sent.
pub const ACTION_SENT: &str = "sent";

/// Stops a running service from another thread (a signal handler, a test):
/// the batch in progress commits, then [`run`](crate::run) returns.
#[derive(Clone, Debug, Default)]
pub struct Stop(Arc<StopInner>);

#[derive(Debug, Default)]
struct StopInner {
    stopped: AtomicBool,
    listener: Mutex<Option<Arc<Listener>>>,
    cond: Condvar,
}

impl Stop {
    /// A stop not yet given.
    pub fn new() -> Stop {
        Stop::default()
    }

    /// Stops the service (idempotent).
    pub fn stop(&self) {
        self.0.stopped.store(true, Ordering::SeqCst);
        let listener = {
            let guard = self.0.listener.lock().unwrap_or_else(|p| p.into_inner());
            self.0.cond.notify_all();
            guard.clone()
        };
        // Closing the listener ends its `wait` (the service is ending).
        if let Some(l) = listener {
            l.stop();
        }
    }

    /// Whether [`stop`](Self::stop) was called.
    pub fn is_stopped(&self) -> bool {
        self.0.stopped.load(Ordering::SeqCst)
    }

    fn attach(&self, listener: Arc<Listener>) {
        *self.0.listener.lock().unwrap_or_else(|p| p.into_inner()) = Some(listener);
    }

    /// Sleeps up to `timeout` or until stopped (no listener to wait on).
    fn sleep(&self, timeout: Duration) {
        let guard = self.0.listener.lock().unwrap_or_else(|p| p.into_inner());
        if !self.is_stopped() {
            let _ = self.0.cond.wait_timeout(guard, timeout);
        }
    }
}

/// Why a run failed.
#[derive(Debug)]
enum RunError {
    Store(StoreError),
    Send(SendError),
}

impl From<StoreError> for RunError {
    fn from(e: StoreError) -> Self {
        RunError::Store(e)
    }
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Store(e) => write!(f, "{e}"),
            RunError::Send(e) => write!(f, "send: {e}"),
        }
    }
}

/// The work of the two tasks against one store.
struct Worker {
    store: Box<dyn Store>,
    trigger: Box<dyn Trigger>,
    channel: Box<dyn Channel>,
    only_channel: Option<String>,
    batch: u32,
    counters: Arc<Counters>,
    on_check_triggers: Option<Box<dyn FnMut(Cause) + Send>>,
    stop: Stop,
}

impl Worker {
    /// *Check triggers*: batches until one is not full. Returns how many
    /// messages the triggers queued.
    fn check_triggers(&mut self, cause: Cause) -> Result<usize, RunError> {
        let task = Task::CheckTriggers;
        self.counters.run(task, cause);
        if let Some(hook) = self.on_check_triggers.as_mut() {
            hook(cause);
        }
        let mut queued = 0;
        while !self.stop.is_stopped() {
            self.store.begin()?;
            let (rows, q) = match self.trigger_batch(cause) {
                Ok(r) => r,
                Err(e) => {
                    self.store.rollback();
                    return Err(e.into());
                }
            };
            queued += q;
            if rows < self.batch as usize {
                break;
            }
        }
        Ok(queued)
    }

    /// One batch inside the open transaction: select, run the trigger,
    /// write its output and the marks, commit.
    fn trigger_batch(&mut self, cause: Cause) -> Result<(usize, usize), StoreError> {
        let task = Task::CheckTriggers;
        let rows = self
            .store
            .select_pending_triggers(self.only_channel.as_deref(), self.batch)?;
        self.counters.query(task, cause, rows.len());
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
            self.store.commit()?;
            return Ok((0, 0));
        };
        tracing::debug!(
            "check-triggers ({cause}): batch selected, {} messages, ids {}..={}",
            rows.len(),
            first.id,
            last.id
        );
        let mut actions = Vec::with_capacity(rows.len());
        let mut queued = Vec::new();
        let mut ids = Vec::with_capacity(rows.len());
        for m in &rows {
            let mut out = TriggerOutput::default();
            if let Err(e) = self.trigger.run(m, &mut out) {
                // What it asked for before failing is dropped.
                self.counters.trigger_error();
                tracing::warn!("trigger failed on message {}: {e}", m.id);
                out = TriggerOutput::default();
                out.action(format!("trigger-error: {e}"));
            }
            actions.extend(out.actions.into_iter().map(|a| (m.id, a)));
            queued.extend(out.queued);
            ids.push(m.id);
        }
        self.store.record_actions(&actions)?;
        self.store.queue_messages(&queued)?;
        self.store.mark_processed(&ids)?;
        self.store.commit()?;
        self.counters.processed(task, cause, rows.len());
        tracing::debug!(
            "check-triggers ({cause}): batch committed, {} messages processed, {} queued, ids {}..={}",
            rows.len(),
            queued.len(),
            first.id,
            last.id
        );
        Ok((rows.len(), queued.len()))
    }

    /// *Check outgoing*: sends batches until one is not full; each send is
    /// followed by the commit that marks it.
    fn check_outgoing(&mut self, cause: Cause) -> Result<(), RunError> {
        let task = Task::CheckOutgoing;
        self.counters.run(task, cause);
        while !self.stop.is_stopped() {
            let rows = self
                .store
                .select_queued(self.only_channel.as_deref(), self.batch)?;
            self.counters.query(task, cause, rows.len());
            if let (Some(first), Some(last)) = (rows.first(), rows.last()) {
                tracing::debug!(
                    "check-outgoing ({cause}): batch selected, {} messages, ids {}..={}",
                    rows.len(),
                    first.id,
                    last.id
                );
            }
            for m in &rows {
                if self.stop.is_stopped() {
                    return Ok(());
                }
                let (status, action) = match self.channel.send(m) {
                    Ok(()) => (STATUS_SENT, ACTION_SENT.to_owned()),
                    Err(SendError::Permanent(why)) => {
                        self.counters.send_failed(true);
                        tracing::warn!("message {} failed for good: {why}", m.id);
                        (STATUS_FAILED, format!("send-failed: {why}"))
                    }
                    Err(e @ SendError::Transient(_)) => {
                        self.counters.send_failed(false);
                        return Err(RunError::Send(e));
                    }
                };
                self.finish(m.id, status, action)?;
                self.counters.processed(task, cause, 1);
            }
            if rows.len() < self.batch as usize {
                break;
            }
        }
        Ok(())
    }

    /// Marks a sent (or failed) message, with its action, in one commit.
    fn finish(&mut self, id: i64, status: i16, action: String) -> Result<(), StoreError> {
        self.store.begin()?;
        let r = (|| {
            if self.store.finish_queued(id, status)? {
                self.store.record_actions(&[(id, action)])?;
            } else {
                self.counters.duplicate();
            }
            self.store.commit()
        })();
        if r.is_err() {
            self.store.rollback();
        }
        r
    }
}

/// A failed task's retry: when, and the core's back-off (1 s doubling to
/// 30 s, jittered) for the next failure.
#[derive(Clone, Copy, Debug)]
struct Retry {
    at: Option<Instant>,
    backoff: Backoff,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            at: None,
            backoff: Backoff::new(
                flagpost_core::Duration::from_secs(1),
                flagpost_core::Duration::from_secs(30),
            ),
        }
    }
}
/// The longest sleep with a broker configured, so that a lost or regained
/// connection is logged (and its gauge set) within this time.
const STATE_CHECK: Duration = Duration::from_secs(2);

/// The listener and what the cycle knows of it.
struct Broker {
    addr: String,
    listener: Arc<Listener>,
}

/// Connects the listener (in the background) and waits up to
/// `config.broker_wait` for its first connection, whose raise the start-up
/// checks cover.
fn connect(
    config: &ServiceConfig,
    stop: &Stop,
    intervals: &str,
) -> Result<Option<Broker>, ServiceError> {
    let Some(addr) = config.broker.clone() else {
        tracing::info!("no broker: polling only ({intervals})");
        return Ok(None);
    };
    let mut b = Listener::builder().interest(FlagSet::STATUS);
    if let Some(c) = &config.only_channel {
        b = b.channel(*c);
    }
    if let Some(k) = &config.key {
        b = b.key(k.clone());
    }
    let listener = Arc::new(b.connect(addr.as_str())?);
    stop.attach(listener.clone());
    if listener.wait_listening(config.broker_wait) {
        config.counters.set_broker_connected(true);
        // The first connection's raise follows the state by a moment.
        listener.wait(config.broker_wait);
        let _ = listener.take_raise();
        tracing::info!("listening to broker {addr}; polling: {intervals}");
    } else {
        let why = listener
            .auth_error()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        tracing::warn!(
            "broker {addr} unreachable{why}: polling on the intervals only ({intervals}) \
             until it answers; the listener reconnects by itself"
        );
    }
    Ok(Some(Broker { addr, listener }))
}

/// The polling intervals, for logs.
fn describe_intervals(config: &ServiceConfig) -> String {
    let every = |d: Duration| {
        if d.is_zero() {
            "never".to_owned()
        } else {
            format!("every {} s", d.as_secs_f64())
        }
    };
    format!(
        "check triggers {}, check outgoing {}",
        every(config.check_triggers_interval),
        every(config.check_outgoing_interval)
    )
}

/// The running cycle.
struct Cycle {
    worker: Worker,
    scheduler: Scheduler,
    clock: Clock,
    broker: Option<Broker>,
    retry: [Retry; 2],
    /// The cause of the latest status raise (notification or reconnect).
    notified: Cause,
    intervals: String,
    counters: Arc<Counters>,
}

impl Cycle {
    /// Feeds the listener's status raise to the scheduler and logs a lost
    /// or regained broker.
    fn take_wakeups(&mut self) {
        let Some(b) = &self.broker else {
            return;
        };
        let raise = b.listener.take_raise();
        if raise.flags.contains(FlagSet::STATUS) {
            self.notified = if raise.reconnect {
                Cause::Reconnect
            } else {
                Cause::Notification
            };
            self.scheduler
                .handle_notification(self.clock.now(), Kind::Status);
        }
        let up = b.listener.state() == ListenerState::Listening;
        if up != self.counters.broker_connected() {
            self.counters.set_broker_connected(up);
            if up {
                tracing::info!("broker {} reachable again: woken by notifications", b.addr);
            } else {
                tracing::warn!(
                    "broker {} unreachable: polling on the intervals only ({}); \
                     the listener reconnects by itself",
                    b.addr,
                    self.intervals
                );
            }
        }
    }

    /// Runs what is due: the scheduler's work, then the retries, then
    /// *check outgoing* if *check triggers* queued messages and it did not
    /// run after them.
    fn round(&mut self) {
        let now = self.clock.now();
        let mut due: Vec<(Task, Cause)> = Vec::new();
        while let Some(Work { task, reason }) = self.scheduler.poll(now) {
            let cause = match reason {
                Reason::Startup => Cause::Startup,
                Reason::Notification => self.notified,
                Reason::Interval => Cause::Interval,
            };
            due.push((task, cause));
        }
        for (task, r) in Task::ALL.iter().zip(self.retry.iter()) {
            let ran = due.iter().any(|(t, _)| t == task);
            if !ran && r.at.is_some_and(|at| at <= now) {
                due.push((*task, Cause::Retry));
            }
        }
        due.sort_by_key(|(t, _)| *t as u8);
        let mut own_write = false;
        for (task, cause) in due {
            let result = match task {
                Task::CheckTriggers => self.worker.check_triggers(cause).map(|queued| {
                    own_write |= queued > 0;
                }),
                Task::CheckOutgoing => {
                    own_write = false;
                    self.worker.check_outgoing(cause)
                }
            };
            self.settle(task, result);
        }
        if own_write && !self.worker.stop.is_stopped() {
            let result = self.worker.check_outgoing(Cause::OwnWrite);
            self.settle(Task::CheckOutgoing, result);
        }
    }

    /// Records a run's outcome: a failure schedules a retry with back-off.
    fn settle(&mut self, task: Task, result: Result<(), RunError>) {
        let retry = &mut self.retry[task as usize];
        match result {
            Ok(()) => *retry = Retry::default(),
            Err(e) => {
                if matches!(e, RunError::Store(_)) {
                    self.counters.error(task);
                }
                let backoff = retry.backoff.next_delay(getrandom::u32().unwrap_or(0));
                tracing::warn!(
                    "{} failed: {e}; retrying in {:?}",
                    task.name(),
                    Duration::from(backoff)
                );
                retry.at = Some(self.clock.now() + backoff);
            }
        }
    }

    /// Sleeps until the next deadline, a status raise or the stop.
    fn sleep(&self, stop: &Stop) {
        let next = [
            self.scheduler.poll_timeout(),
            self.retry[0].at,
            self.retry[1].at,
        ]
        .into_iter()
        .flatten()
        .min();
        let timeout = next.map_or(Duration::from_secs(3600), |at| self.clock.until(at));
        if stop.is_stopped() {
            return;
        }
        match &self.broker {
            Some(b) => {
                b.listener.wait(timeout.min(STATE_CHECK));
            }
            None => stop.sleep(timeout),
        }
    }
}

/// Runs the cycle until `stop`; see [`crate::run`].
pub(crate) fn run(config: ServiceConfig, stop: &Stop) -> Result<(), ServiceError> {
    let store = config.database.open()?;
    tracing::info!("database {}", store.describe());
    let intervals = describe_intervals(&config);
    let broker = connect(&config, stop, &intervals)?;
    let counters = config.counters.clone();
    let clock = Clock::new();
    let scheduler = Scheduler::new(
        clock.now(),
        config.check_triggers_interval.into(),
        config.check_outgoing_interval.into(),
    );
    let mut cycle = Cycle {
        worker: Worker {
            store,
            trigger: config.trigger,
            channel: config.channel,
            only_channel: config.only_channel.as_ref().map(|c| c.as_str().to_owned()),
            batch: config.batch_size.max(1),
            counters: counters.clone(),
            on_check_triggers: config.on_check_triggers,
            stop: stop.clone(),
        },
        scheduler,
        clock,
        broker,
        retry: [Retry::default(); 2],
        notified: Cause::Notification,
        intervals,
        counters: counters.clone(),
    };
    while !stop.is_stopped() {
        cycle.take_wakeups();
        cycle.round();
        cycle.sleep(stop);
    }
    tracing::info!("stopped; {}", counters.summary());
    Ok(())
}
