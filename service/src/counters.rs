//! Polling made visible: every database query of the cycle counted by task
//! and by cause, the rows each moved, and the HTTP endpoint that serves
//! them in the Prometheus text format (`prometheus-client` + `tiny_http`,
//! like the broker's `/metrics`).

use flagpost_std::MetricsServer;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use flagpost_core::schedule::Task;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Why the cycle ran a task (and so queried the database).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cause {
    /// Once at start-up: work queued while the service was down.
    Startup,
    /// A status update from the broker.
    Notification,
    /// The listener (re)connected to the broker: notifications may have
    /// been missed while it was away, so both tasks re-check.
    Reconnect,
    /// A polling interval expired.
    Interval,
    /// *Check triggers* queued messages itself: *check outgoing* runs at
    /// once (in-process, no notification needed).
    OwnWrite,
    /// The previous run failed (database error, transient send error) and
    /// is retried after a back-off.
    Retry,
}

impl Cause {
    /// Every cause, in label order.
    pub const ALL: [Cause; 6] = [
        Cause::Startup,
        Cause::Notification,
        Cause::Reconnect,
        Cause::Interval,
        Cause::OwnWrite,
        Cause::Retry,
    ];

    /// Its label value (`startup`, `notification`, `reconnect`,
    /// `interval`, `own_write`, `retry`).
    pub const fn name(self) -> &'static str {
        match self {
            Cause::Startup => "startup",
            Cause::Notification => "notification",
            Cause::Reconnect => "reconnect",
            Cause::Interval => "interval",
            Cause::OwnWrite => "own_write",
            Cause::Retry => "retry",
        }
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

const CAUSES: usize = Cause::ALL.len();
type Table = [[AtomicU64; CAUSES]; 2];

fn task_label(task: Task) -> &'static str {
    match task {
        Task::CheckTriggers => "check_triggers",
        Task::CheckOutgoing => "check_outgoing",
    }
}

/// The service's counters; shared (`Arc`) between the cycle, the metrics
/// endpoint and whoever reads them (tests, a benchmark).
#[derive(Debug, Default)]
pub struct Counters {
    runs: Table,
    queries: Table,
    empty: Table,
    rows: Table,
    errors: [AtomicU64; 2],
    trigger_errors: AtomicU64,
    send_transient: AtomicU64,
    send_permanent: AtomicU64,
    duplicates: AtomicU64,
    broker_connected: AtomicBool,
}

fn get(table: &Table, task: Task, cause: Cause) -> u64 {
    table[task as usize][cause as usize].load(Ordering::Relaxed)
}

fn add(table: &Table, task: Task, cause: Cause, n: u64) {
    table[task as usize][cause as usize].fetch_add(n, Ordering::Relaxed);
}

fn sum(table: &Table, task: Task) -> u64 {
    Cause::ALL.iter().map(|c| get(table, task, *c)).sum()
}

impl Counters {
    /// Runs of `task` for `cause` (each makes one query or more).
    pub fn runs(&self, task: Task, cause: Cause) -> u64 {
        get(&self.runs, task, cause)
    }

    /// Batch queries (`SELECT … LIMIT batch`) of `task` for `cause`: one per
    /// run, and one more for each full batch.
    pub fn queries(&self, task: Task, cause: Cause) -> u64 {
        get(&self.queries, task, cause)
    }

    /// Those of [`queries`](Self::queries) that found nothing: the cost of
    /// polling.
    pub fn empty_queries(&self, task: Task, cause: Cause) -> u64 {
        get(&self.empty, task, cause)
    }

    /// Messages `task` processed (triggers run, messages sent or failed)
    /// in runs for `cause`.
    pub fn rows(&self, task: Task, cause: Cause) -> u64 {
        get(&self.rows, task, cause)
    }

    /// Every batch query of `task`, whatever the cause.
    pub fn total_queries(&self, task: Task) -> u64 {
        sum(&self.queries, task)
    }

    /// Every message `task` processed.
    pub fn total_rows(&self, task: Task) -> u64 {
        sum(&self.rows, task)
    }

    /// Runs of `task` that failed on a database error.
    pub fn errors(&self, task: Task) -> u64 {
        self.errors[task as usize].load(Ordering::Relaxed)
    }

    /// Messages whose trigger failed.
    pub fn trigger_errors(&self) -> u64 {
        self.trigger_errors.load(Ordering::Relaxed)
    }

    /// Channel sends that failed, transient (`false`) or permanent.
    pub fn send_failures(&self, permanent: bool) -> u64 {
        let c = if permanent {
            &self.send_permanent
        } else {
            &self.send_transient
        };
        c.load(Ordering::Relaxed)
    }

    /// Whether the listener is connected to the broker now.
    pub fn broker_connected(&self) -> bool {
        self.broker_connected.load(Ordering::Relaxed)
    }

    pub(crate) fn run(&self, task: Task, cause: Cause) {
        add(&self.runs, task, cause, 1);
    }

    pub(crate) fn query(&self, task: Task, cause: Cause, rows: usize) {
        add(&self.queries, task, cause, 1);
        if rows == 0 {
            add(&self.empty, task, cause, 1);
        }
    }

    pub(crate) fn processed(&self, task: Task, cause: Cause, rows: usize) {
        add(&self.rows, task, cause, rows as u64);
    }

    pub(crate) fn error(&self, task: Task) {
        self.errors[task as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn trigger_error(&self) {
        self.trigger_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn send_failed(&self, permanent: bool) {
        let c = if permanent {
            &self.send_permanent
        } else {
            &self.send_transient
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn duplicate(&self) {
        self.duplicates.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn set_broker_connected(&self, up: bool) {
        self.broker_connected.store(up, Ordering::Relaxed);
    }

    /// The counters in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut registry = Registry::default();
        let tables: [(&str, &str, &Table); 4] = [
            (
                "flagpost_service_runs",
                "Runs of a task, by cause",
                &self.runs,
            ),
            (
                "flagpost_service_queries",
                "Batch queries of the messages table, by task and cause",
                &self.queries,
            ),
            (
                "flagpost_service_empty_queries",
                "Batch queries that found nothing to do (the cost of polling)",
                &self.empty,
            ),
            (
                "flagpost_service_rows",
                "Messages processed (check_triggers) or sent/failed (check_outgoing), by cause",
                &self.rows,
            ),
        ];
        for (name, help, table) in tables {
            let family = Family::<Vec<(&str, &str)>, Counter<u64, AtomicU64>>::default();
            for task in Task::ALL {
                for cause in Cause::ALL {
                    family
                        .get_or_create(&vec![("task", task_label(task)), ("cause", cause.name())])
                        .inc_by(get(table, task, cause));
                }
            }
            registry.register(name, help, family);
        }
        let errors = Family::<Vec<(&str, &str)>, Counter<u64, AtomicU64>>::default();
        for task in Task::ALL {
            errors
                .get_or_create(&vec![("task", task_label(task))])
                .inc_by(self.errors(task));
        }
        registry.register(
            "flagpost_service_errors",
            "Runs that failed on a database error (retried)",
            errors,
        );
        let sends = Family::<Vec<(&str, &str)>, Counter<u64, AtomicU64>>::default();
        for (kind, c) in [
            ("transient", &self.send_transient),
            ("permanent", &self.send_permanent),
        ] {
            sends
                .get_or_create(&vec![("kind", kind)])
                .inc_by(c.load(Ordering::Relaxed));
        }
        registry.register(
            "flagpost_service_send_failures",
            "Channel sends that failed",
            sends,
        );
        for (name, help, c) in [
            (
                "flagpost_service_trigger_errors",
                "Messages whose trigger failed (marked processed, action trigger-error)",
                &self.trigger_errors,
            ),
            (
                "flagpost_service_already_finished",
                "Sent messages another process had already marked (a second service on the queue)",
                &self.duplicates,
            ),
        ] {
            let counter = Counter::<u64, AtomicU64>::default();
            counter.inc_by(c.load(Ordering::Relaxed));
            registry.register(name, help, counter);
        }
        let up = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        up.set(i64::from(self.broker_connected()));
        registry.register(
            "flagpost_service_broker_connected",
            "1 while the listener is connected to the broker",
            up,
        );
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &registry);
        out
    }

    /// One line: queries and rows by task and cause (only the non-zero).
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        for task in Task::ALL {
            let causes: Vec<String> = Cause::ALL
                .iter()
                .filter(|c| self.queries(task, **c) > 0)
                .map(|c| {
                    format!(
                        "{c}={} ({} empty)",
                        self.queries(task, *c),
                        self.empty_queries(task, *c)
                    )
                })
                .collect();
            parts.push(format!(
                "{}: {} rows, {} queries [{}]",
                task.name(),
                self.total_rows(task),
                self.total_queries(task),
                causes.join(", ")
            ));
        }
        parts.join("; ")
    }
}

/// The HTTP endpoint: `/metrics` (Prometheus text) and `/healthz` (the
/// broker's [`MetricsServer`] serving these counters); stops when dropped.
#[derive(Debug)]
pub struct MetricsEndpoint(MetricsServer);

impl MetricsEndpoint {
    /// Serves `counters` on `addr` (port 0: any free port, see
    /// [`local_addr`](Self::local_addr)).
    pub fn start(addr: SocketAddr, counters: Arc<Counters>) -> std::io::Result<MetricsEndpoint> {
        let render = Box::new(move || Ok(counters.render()));
        MetricsServer::serve(addr, "flagpost-service-metrics", render).map(MetricsEndpoint)
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.0.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_rendered_by_task_and_cause() {
        let c = Counters::default();
        c.query(Task::CheckTriggers, Cause::Notification, 3);
        c.query(Task::CheckTriggers, Cause::Interval, 0);
        c.processed(Task::CheckTriggers, Cause::Notification, 3);
        let text = c.render();
        for line in [
            r#"flagpost_service_queries_total{task="check_triggers",cause="notification"} 1"#,
            r#"flagpost_service_queries_total{task="check_triggers",cause="interval"} 1"#,
            r#"flagpost_service_empty_queries_total{task="check_triggers",cause="interval"} 1"#,
            r#"flagpost_service_empty_queries_total{task="check_triggers",cause="notification"} 0"#,
            r#"flagpost_service_rows_total{task="check_triggers",cause="notification"} 3"#,
            r#"flagpost_service_queries_total{task="check_outgoing",cause="startup"} 0"#,
            "flagpost_service_broker_connected 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        assert_eq!(
            c.summary(),
            "check-triggers: 3 rows, 2 queries [notification=1 (0 empty), interval=1 (1 empty)]; \
             check-outgoing: 0 rows, 0 queries []"
        );
    }
}
