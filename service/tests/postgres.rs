//! The service on PostgreSQL (a throwaway cluster, `sql/postgres/flagpost.sql`
//! loaded): woken by a real broker with both intervals at zero, each
//! message processed exactly once; and the binary's password rules: never
//! in the URL, a password file readable by its owner only.

mod common;

use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use flagpost_service::{run, Cause, Database, Echo, Message, SendError, ServiceConfig, Stop, Task};
use flagpost_tests::postgres::PgCluster;
use postgres::{Client, NoTls};

const LONG: Duration = Duration::from_secs(30);
const SCHEMA: &str = include_str!("../../sql/postgres/flagpost.sql");

fn client(cluster: &PgCluster) -> Client {
    let mut c = Client::connect(&cluster.url_with_password(), NoTls).unwrap();
    c.batch_execute(SCHEMA).unwrap();
    c
}

fn insert_received(c: &mut Client, n: i64, channel: Option<&str>) {
    c.execute(
        "INSERT INTO messages (channel, status_id, body)
         SELECT $1, 1, 'message ' || i FROM generate_series(1, $2::bigint) AS i",
        &[&channel, &n],
    )
    .unwrap();
}

fn count(c: &mut Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).unwrap().get(0)
}

/// How many messages have a `processed` action (0 while the service has
/// not yet made its `message_actions` table).
fn processed(c: &mut Client) -> i64 {
    c.query_one(
        "SELECT count(*) FROM message_actions WHERE action = 'processed'",
        &[],
    )
    .map_or(0, |r| r.get(0))
}

#[test]
fn woken_by_the_broker_on_postgres_each_message_once() {
    let cluster = PgCluster::start();
    let mut pg = client(&cluster);
    let broker = broker();
    let password = std::fs::read_to_string(cluster.password_file()).unwrap();
    let mut config = ServiceConfig::new(Database::Postgres {
        url: cluster.url(),
        password: Some(password),
    });
    config.broker = Some(broker.local_addr().to_string());
    config.check_triggers_interval = Duration::ZERO;
    config.check_outgoing_interval = Duration::ZERO;
    config.broker_wait = LONG;
    config.trigger = Box::new(Echo);
    let (sent, sends) = mpsc::channel::<Message>();
    config.channel = Box::new(move |m: &Message| -> Result<(), SendError> {
        let _ = sent.send(m.clone());
        Ok(())
    });
    let counters = config.counters.clone();
    let stop = Stop::new();
    let s = stop.clone();
    let thread = std::thread::spawn(move || run(config, &s));
    wait_until(LONG, "start-up checks", || {
        counters.runs(Task::CheckOutgoing, Cause::Startup) == 1
    });

    insert_received(&mut pg, 1200, Some("gsm1"));
    flagpost_std::Notifier::new(broker.local_addr())
        .unwrap()
        .notify_status_update(None);
    for _ in 0..1200 {
        let m = sends.recv_timeout(LONG).expect("a reply sent");
        assert!(m.body.starts_with("re: message "), "{m:?}");
        assert_eq!(m.channel.as_deref(), Some("gsm1"));
    }
    wait_until(LONG, "sends committed", || {
        counters.total_rows(Task::CheckOutgoing) == 1200
    });

    for task in Task::ALL {
        for cause in [Cause::Interval, Cause::Reconnect, Cause::Retry] {
            assert_eq!(counters.queries(task, cause), 0, "{}", counters.summary());
        }
    }
    // 500 + 500 + 200 rows: three batch queries on the one notification,
    // and no polling
    assert_eq!(
        counters.queries(Task::CheckTriggers, Cause::Notification),
        3,
        "{}",
        counters.summary()
    );

    // The server restarts under it: the next run fails, is retried, and
    // reconnects.
    drop(pg);
    let mut cluster = cluster;
    cluster.restart();
    let mut pg = Client::connect(&cluster.url_with_password(), NoTls).unwrap();
    insert_received(&mut pg, 10, Some("gsm1"));
    flagpost_std::Notifier::new(broker.local_addr())
        .unwrap()
        .notify_status_update(None);
    for _ in 0..10 {
        sends.recv_timeout(LONG).expect("a reply after the restart");
    }
    wait_until(LONG, "sends committed", || {
        counters.total_rows(Task::CheckOutgoing) == 1210
    });
    stop.stop();
    thread.join().unwrap().unwrap();
    eprintln!("{}", counters.summary());

    assert_eq!(
        count(
            &mut pg,
            "SELECT count(*) FROM messages WHERE status_id = 1 AND trigger_status_id = 1"
        ),
        1210
    );
    assert_eq!(
        count(
            &mut pg,
            "SELECT count(*) FROM message_actions WHERE action = 'processed'"
        ),
        1210
    );
    assert_eq!(
        count(
            &mut pg,
            "SELECT count(DISTINCT message_id) FROM message_actions WHERE action = 'processed'"
        ),
        1210
    );
    assert_eq!(
        count(&mut pg, "SELECT count(*) FROM messages WHERE status_id = 3"),
        1210
    );
    assert_eq!(
        count(
            &mut pg,
            "SELECT count(*) FROM message_actions WHERE action = 'sent'"
        ),
        1210
    );
}

fn service_bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_flagpost-service"));
    c.stdin(Stdio::null()).env_remove("PGPASSWORD");
    c
}

#[test]
fn the_binary_on_postgres_keeps_the_password_off_its_command_line() {
    let cluster = PgCluster::start();
    let mut pg = client(&cluster);

    // a URL with a password: refused before anything is tried
    let out = service_bin()
        .args(["--db", &cluster.url_with_password(), "--no-broker"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("holds a password"), "{err}");
    assert!(
        !err.contains(&cluster.password),
        "the password is echoed: {err}"
    );

    // a password file others may read: refused
    let dir = temp_dir("pg-password");
    let loose = dir.join("password");
    std::fs::write(&loose, &cluster.password).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = service_bin()
        .args(["--db", &cluster.url(), "--no-broker", "--db-password-file"])
        .arg(&loose)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("chmod 600"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // no messages table: a clear error
    pg.batch_execute("CREATE DATABASE empty").unwrap();
    let empty = cluster.url().replace("/postgres", "/empty");
    let out = service_bin()
        .args(["--db", &empty, "--no-broker", "--db-password-file"])
        .arg(cluster.password_file())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("sql/postgres/flagpost.sql"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // the owner-only file: runs, polling (no broker), and stops on SIGTERM
    insert_received(&mut pg, 50, None);
    let mut child = service_bin()
        .args(["--db", &cluster.url(), "--no-broker", "--db-password-file"])
        .arg(cluster.password_file())
        .args([
            "--check-triggers-interval",
            "0.05",
            "--check-outgoing-interval",
            "0",
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(LONG, "50 processed", || processed(&mut pg) == 50);
    insert_received(&mut pg, 5, None);
    wait_until(LONG, "5 more, by polling", || processed(&mut pg) == 55);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success());
}
