//! The service on SQLite, in this process, against a real broker over TCP:
//! woken by notifications with both intervals at zero, woken by its own
//! writes, polling on an interval without notifications, and polling while
//! the broker is away until its listener reconnects.

mod common;

use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use common::*;
use flagpost_service::{
    run, Cause, Counters, Database, Echo, Message, MetricsEndpoint, SendError, ServiceConfig,
    ServiceError, Stop, Task,
};
use flagpost_std::Notifier;

const LONG: Duration = Duration::from_secs(20);
const T: Task = Task::CheckTriggers;
const O: Task = Task::CheckOutgoing;

struct Running {
    stop: Stop,
    thread: JoinHandle<Result<(), ServiceError>>,
    counters: Arc<Counters>,
}

impl Running {
    fn finish(self) {
        self.stop.stop();
        self.thread.join().unwrap().unwrap();
    }
}

fn start(config: ServiceConfig) -> Running {
    let stop = Stop::new();
    let counters = config.counters.clone();
    let s = stop.clone();
    let thread = std::thread::spawn(move || run(config, &s));
    Running {
        stop,
        thread,
        counters,
    }
}

fn config(db: &std::path::Path, broker: Option<String>) -> ServiceConfig {
    let mut c = ServiceConfig::new(Database::Sqlite(db.to_owned()));
    c.broker = broker;
    c.check_triggers_interval = Duration::ZERO;
    c.check_outgoing_interval = Duration::ZERO;
    c.broker_wait = LONG;
    c
}

/// Every cause but `allowed` has no query, for both tasks.
fn assert_only_causes(counters: &Counters, allowed: &[Cause]) {
    for task in Task::ALL {
        for cause in Cause::ALL {
            if !allowed.contains(&cause) {
                assert_eq!(
                    counters.queries(task, cause),
                    0,
                    "{task:?} queried for {cause}: {}",
                    counters.summary()
                );
            }
        }
    }
}

#[test]
fn notifications_wake_it_and_zero_intervals_never_poll() {
    let broker = broker();
    let dir = temp_dir("notify");
    let db = dir.join("messages.db");
    let mut conn = sqlite(&db);
    let mut config = config(&db, Some(broker.local_addr().to_string()));
    let (started, starts) = mpsc::channel();
    config.on_check_triggers = Some(Box::new(move |cause| {
        let _ = started.send(cause);
    }));
    let svc = start(config);
    assert_eq!(starts.recv_timeout(LONG), Ok(Cause::Startup));
    wait_until(LONG, "start-up checks", || {
        svc.counters.runs(O, Cause::Startup) == 1
    });
    assert!(svc.counters.broker_connected());

    let notifier = Notifier::new(broker.local_addr()).unwrap();
    // 1,200 messages: three batches of at most 500, one notification
    insert_received(&mut conn, 1200, None);
    notifier.notify_status_update(None);
    assert_eq!(starts.recv_timeout(LONG), Ok(Cause::Notification));
    wait_until(LONG, "1,200 messages processed", || {
        svc.counters.total_rows(T) == 1200
    });
    // and again, a small batch
    insert_received(&mut conn, 7, Some("gsm1"));
    notifier.notify_status_update(None);
    wait_until(LONG, "7 more processed", || {
        svc.counters.total_rows(T) == 1207
    });

    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM messages WHERE trigger_status_id = 0"
        ),
        0
    );
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM message_actions WHERE action = 'processed'"
        ),
        1207
    );
    assert_eq!(
        count(
            &conn,
            "SELECT count(DISTINCT message_id) FROM message_actions WHERE action = 'processed'"
        ),
        1207
    );
    let c = &svc.counters;
    assert_only_causes(c, &[Cause::Startup, Cause::Notification]);
    assert_eq!(c.queries(T, Cause::Startup), 1);
    assert_eq!(c.empty_queries(T, Cause::Startup), 1);
    // 500 + 500 + 200, then 7
    assert_eq!(c.queries(T, Cause::Notification), 4, "{}", c.summary());
    assert_eq!(c.rows(T, Cause::Notification), 1207);

    // the same numbers over HTTP
    let endpoint = MetricsEndpoint::start("127.0.0.1:0".parse().unwrap(), c.clone()).unwrap();
    let body = get_metrics(endpoint.local_addr());
    let s = |series: &str| sample(&body, series);
    assert_eq!(
        s(r#"flagpost_service_queries_total{task="check_triggers",cause="notification"}"#),
        Some(4),
        "{body}"
    );
    assert_eq!(
        s(r#"flagpost_service_rows_total{task="check_triggers",cause="notification"}"#),
        Some(1207)
    );
    assert_eq!(
        s(r#"flagpost_service_queries_total{task="check_triggers",cause="interval"}"#),
        Some(0)
    );
    assert_eq!(s("flagpost_service_broker_connected"), Some(1));
    svc.finish();
}

#[test]
fn replies_queued_by_triggers_are_sent_without_waiting() {
    let broker = broker();
    let dir = temp_dir("own-write");
    let db = dir.join("messages.db");
    let mut conn = sqlite(&db);
    let mut config = config(&db, Some(broker.local_addr().to_string()));
    config.trigger = Box::new(Echo);
    let (sent, sends) = mpsc::channel::<Message>();
    config.channel = Box::new(move |m: &Message| -> Result<(), SendError> {
        let _ = sent.send(m.clone());
        Ok(())
    });
    let svc = start(config);
    wait_until(LONG, "start-up checks", || {
        svc.counters.runs(O, Cause::Startup) == 1
    });
    insert_received(&mut conn, 3, Some("gsm1"));
    Notifier::new(broker.local_addr())
        .unwrap()
        .notify_status_update(None);
    let mut bodies: Vec<String> = (0..3)
        .map(|_| sends.recv_timeout(LONG).unwrap().body)
        .collect();
    bodies.sort();
    assert_eq!(bodies, ["re: message 0", "re: message 1", "re: message 2"]);
    wait_until(LONG, "sends committed", || svc.counters.total_rows(O) == 3);
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM messages WHERE status_id = 3 AND channel = 'gsm1'"
        ),
        3
    );
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM message_actions WHERE action = 'sent'"
        ),
        3
    );
    let c = &svc.counters;
    // The notification ran check outgoing before the replies existed (it
    // runs right after check triggers, in the same round, on the same
    // wake-up), or the own write did: either way, no polling.
    assert_only_causes(c, &[Cause::Startup, Cause::Notification, Cause::OwnWrite]);
    assert_eq!(
        c.rows(O, Cause::Notification) + c.rows(O, Cause::OwnWrite),
        3
    );
    svc.finish();
}

#[test]
fn polls_on_its_interval_without_notifications() {
    let dir = temp_dir("interval");
    let db = dir.join("messages.db");
    let mut conn = sqlite(&db);
    let mut config = config(&db, None);
    config.check_triggers_interval = Duration::from_millis(100);
    let (started, starts) = mpsc::channel();
    config.on_check_triggers = Some(Box::new(move |cause| {
        let _ = started.send(cause);
    }));
    let svc = start(config);
    assert_eq!(starts.recv_timeout(LONG), Ok(Cause::Startup));
    // a few empty polls, each on the interval
    for _ in 0..3 {
        assert_eq!(starts.recv_timeout(LONG), Ok(Cause::Interval));
    }
    wait_until(LONG, "3 empty polls", || {
        svc.counters.empty_queries(T, Cause::Interval) >= 3
    });
    insert_received(&mut conn, 10, None);
    wait_until(LONG, "10 processed by polling", || {
        svc.counters.rows(T, Cause::Interval) == 10
    });
    let c = &svc.counters;
    assert!(c.empty_queries(T, Cause::Interval) >= 3, "{}", c.summary());
    // check outgoing's interval is zero: it never polled
    assert_eq!(c.queries(O, Cause::Interval), 0);
    assert_only_causes(c, &[Cause::Startup, Cause::Interval]);
    svc.finish();
}

#[test]
fn without_its_broker_it_polls_and_reconnects_by_itself() {
    // a free port with nothing on it
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = temp_dir("no-broker");
    let db = dir.join("messages.db");
    let mut conn = sqlite(&db);
    let mut config = config(&db, Some(addr.to_string()));
    config.broker_wait = Duration::from_millis(200);
    config.check_triggers_interval = Duration::from_millis(100);
    let svc = start(config);
    wait_until(LONG, "start-up", || {
        svc.counters.runs(O, Cause::Startup) == 1
    });
    assert!(!svc.counters.broker_connected());
    insert_received(&mut conn, 5, None);
    wait_until(LONG, "5 processed by polling", || {
        svc.counters.rows(T, Cause::Interval) == 5
    });

    // the broker comes up: the listener connects by itself and re-checks
    let broker = broker_on(addr);
    wait_until(LONG, "listener connected", || {
        svc.counters.broker_connected()
    });
    wait_until(LONG, "reconnect re-check", || {
        svc.counters.runs(T, Cause::Reconnect) >= 1
    });
    insert_received(&mut conn, 5, None);
    Notifier::new(addr).unwrap().notify_status_update(None);
    wait_until(LONG, "5 processed by notification", || {
        svc.counters.total_rows(T) == 10
    });
    assert_eq!(
        count(&conn, "SELECT count(*) FROM message_actions"),
        10,
        "exactly once"
    );
    svc.finish();
    broker.shutdown();
}

#[test]
fn with_a_channel_it_hears_and_processes_that_channel_only() {
    let broker = broker();
    let dir = temp_dir("channel");
    let db = dir.join("messages.db");
    let mut conn = sqlite(&db);
    let mut config = config(&db, Some(broker.local_addr().to_string()));
    config.only_channel = Some(flagpost_core::ChannelId::new("gsm1").unwrap());
    let svc = start(config);
    wait_until(LONG, "start-up checks", || {
        svc.counters.runs(O, Cause::Startup) == 1
    });
    let notifier = Notifier::new(broker.local_addr()).unwrap();
    let gsm1 = Some(flagpost_core::ChannelId::new("gsm1").unwrap());
    let gsm2 = Some(flagpost_core::ChannelId::new("gsm2").unwrap());
    insert_received(&mut conn, 4, Some("gsm2"));
    insert_received(&mut conn, 3, Some("gsm1"));
    // gsm2's notification does not reach it; gsm1's does
    notifier.notify_status_update(gsm2);
    notifier.notify_status_update(gsm1);
    wait_until(LONG, "gsm1's messages", || svc.counters.total_rows(T) == 3);
    svc.finish();
    assert_eq!(gsm1_actions(&conn), 3);
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM messages WHERE channel = 'gsm2' AND trigger_status_id = 0"
        ),
        4
    );
}

fn gsm1_actions(conn: &rusqlite::Connection) -> i64 {
    count(
        conn,
        "SELECT count(*) FROM message_actions a JOIN messages m USING (message_id)
         WHERE m.channel = 'gsm1'",
    )
}

#[test]
fn with_a_keyed_broker_it_listens_with_the_key() {
    let dir = temp_dir("key");
    let key_file = dir.join("key");
    flagpost_std::keyfile::generate_key_file(&key_file).unwrap();
    let key = flagpost_std::keyfile::read_key_file(&key_file).unwrap();
    let broker = flagpost_std::Broker::spawn(flagpost_std::BrokerConfig {
        bind: vec!["127.0.0.1:0".parse().unwrap()],
        key_file: Some(key_file),
        ..flagpost_std::BrokerConfig::default()
    })
    .unwrap();
    let db = dir.join("messages.db");
    let mut conn = sqlite(&db);
    let mut config = config(&db, Some(broker.local_addr().to_string()));
    config.key = Some(key.clone());
    let svc = start(config);
    wait_until(LONG, "start-up checks", || {
        svc.counters.runs(O, Cause::Startup) == 1
    });
    assert!(svc.counters.broker_connected());
    insert_received(&mut conn, 3, None);
    Notifier::builder()
        .key(key)
        .build(broker.local_addr())
        .unwrap()
        .notify_status_update(None);
    wait_until(LONG, "3 processed", || svc.counters.total_rows(T) == 3);
    assert_only_causes(&svc.counters, &[Cause::Startup, Cause::Notification]);
    svc.finish();
}

#[test]
fn failures_are_recorded_or_retried() {
    let dir = temp_dir("failures");
    let db = dir.join("messages.db");
    let mut conn = sqlite(&db);
    insert_received(&mut conn, 4, None);
    let mut config = config(&db, None);
    // message 1's trigger fails (after asking for a reply: dropped)
    config.trigger = Box::new(|m: &Message, out: &mut flagpost_service::TriggerOutput| {
        out.queue(None, format!("re: {}", m.body));
        if m.body == "message 1" {
            return Err(flagpost_service::TriggerError("no such command".into()));
        }
        out.action(flagpost_service::ACTION_PROCESSED);
        Ok(())
    });
    // the first send fails for now, "re: message 2" for good
    let mut calls = 0;
    config.channel = Box::new(move |m: &Message| {
        calls += 1;
        match (calls, m.body.as_str()) {
            (1, _) => Err(SendError::Transient("modem busy".into())),
            (_, "re: message 2") => Err(SendError::Permanent("bad number".into())),
            _ => Ok(()),
        }
    });
    let svc = start(config);
    wait_until(LONG, "the retry", || {
        svc.counters.rows(O, Cause::Retry) == 3
    });
    let c = &svc.counters;
    assert_eq!(c.trigger_errors(), 1);
    assert_eq!(c.send_failures(false), 1);
    assert_eq!(c.send_failures(true), 1);
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM message_actions WHERE action = 'trigger-error: no such command'"
        ),
        1
    );
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM messages WHERE trigger_status_id = 0"
        ),
        0
    );
    assert_eq!(
        count(&conn, "SELECT count(*) FROM messages WHERE status_id = 3"),
        2
    );
    assert_eq!(
        count(&conn, "SELECT count(*) FROM messages WHERE status_id = 4"),
        1
    );
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM message_actions WHERE action = 'send-failed: bad number'"
        ),
        1
    );
    svc.finish();
}
