//! The broker's WAL source against a real server: the `flagpost` binary
//! (`serve --postgres-mode wal`) streaming logical replication of the
//! messages table from a throwaway cluster (`wal_level=logical`), with every
//! trigger on the table disabled, real listeners on loopback.
//!
//! No sleeps stand in for synchronisation: `/metrics` is polled until the
//! source has read a transaction (`flagpost_postgres_wal_transactions`) and
//! delivered its notifications to the broker (they are queued in the broker
//! before the counter moves); what must *not* arrive is then fenced by a UDP
//! notification sent after that (the broker runs its queued commands before
//! the datagrams of the same turn, and each listener's frames arrive in
//! order), as `postgres_source.rs` does with `pg_notify`.

use std::time::{Duration, Instant};

use flagpost_std::core::FlagSet;
use flagpost_std::{Listener, Notifier};
use flagpost_tests::postgres::PgCluster;

mod common;
use common::*;
use flagpost_tests::process::BrokerProcess;

const SCHEMA: &str = include_str!("../../sql/postgres/flagpost.sql");
const WAL: &str = include_str!("../../sql/postgres/flagpost-wal.sql");

struct Broker {
    process: BrokerProcess,
    metrics: u16,
    /// All channels; gsm1; gsm2 (every flag each).
    listeners: [Listener; 3],
    notifier: Notifier,
}

impl Broker {
    fn start(cluster: &PgCluster) -> Broker {
        let metrics = free_port();
        let url = cluster.url();
        let password_file = cluster.password_file();
        let metrics_addr = format!("127.0.0.1:{metrics}");
        let process = BrokerProcess::start(
            "127.0.0.1:0",
            &[
                "--metrics",
                &metrics_addr,
                "--postgres",
                &url,
                "--postgres-password-file",
                password_file.to_str().unwrap(),
                "--postgres-mode",
                "wal",
            ],
        );
        let b = Broker::attach(process, metrics);
        wait_metric(metrics, "flagpost_postgres_connected", |v| v == 1);
        b
    }

    fn attach(process: BrokerProcess, metrics: u16) -> Broker {
        let addr = process.addr.as_str();
        let listeners = [
            ready(Listener::builder().connect(addr).unwrap()),
            ready(
                Listener::builder()
                    .channel(ch("gsm1"))
                    .connect(addr)
                    .unwrap(),
            ),
            ready(
                Listener::builder()
                    .channel(ch("gsm2"))
                    .connect(addr)
                    .unwrap(),
            ),
        ];
        let notifier = Notifier::new(addr).unwrap();
        Broker {
            process,
            metrics,
            listeners,
            notifier,
        }
    }

    fn metric(&self, name: &str) -> u64 {
        let text = scrape(self.metrics);
        sample(&text, name).unwrap_or_else(|| panic!("no {name}:\n{text}"))
    }

    /// Runs `sql`, waits until the source has read `transactions` more
    /// transactions, fences, and checks that listener `i` got exactly
    /// `expect[i]` (plus its fence).
    fn check(
        &self,
        client: &mut postgres::Client,
        sql: &str,
        transactions: u64,
        expect: [FlagSet; 3],
    ) {
        let before = self.metric("flagpost_postgres_wal_transactions_total");
        client.batch_execute(sql).expect(sql);
        wait_metric(
            self.metrics,
            "flagpost_postgres_wal_transactions_total",
            |v| v >= before + transactions,
        );
        let mut want = expect;
        for (i, name) in [(1, "gsm1"), (2, "gsm2")] {
            if expect[i].is_empty() {
                self.notifier.notify_channel_update(ch(name));
                want[i] = CU;
                want[0] |= CU;
            }
        }
        self.notifier.notify_channel_shutdown(ch("zz"));
        want[0] |= CS;
        assert!(self.notifier.flush(LONG), "the fences were not sent");
        for (i, l) in self.listeners.iter().enumerate() {
            let (got, reconnect) = collect(l, want[i], sql);
            assert_eq!(got, want[i], "{sql:?}: listener {i}");
            assert!(!reconnect, "{sql:?}: listener {i} reconnected");
        }
        assert_eq!(
            self.metric("flagpost_postgres_wal_transactions_total"),
            before + transactions,
            "{sql}"
        );
    }
}

/// A cluster with the table, the publication, and no trigger enabled.
fn database() -> (PgCluster, postgres::Client) {
    let cluster = PgCluster::start();
    let mut client = postgres::Client::connect(&cluster.url_with_password(), postgres::NoTls)
        .expect("the test's own client");
    client.batch_execute(SCHEMA).expect("flagpost.sql");
    client.batch_execute(WAL).expect("flagpost-wal.sql");
    client
        .batch_execute(WAL)
        .expect("flagpost-wal.sql is idempotent");
    client
        .batch_execute("ALTER TABLE messages DISABLE TRIGGER USER")
        .unwrap();
    (cluster, client)
}

#[test]
fn row_changes_notify_without_triggers() {
    let (cluster, mut client) = database();
    let b = Broker::start(&cluster);
    // no trigger can notify: the source LISTENs to nothing anyway
    let enabled: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'messages'::regclass \
             AND NOT tgisinternal AND tgenabled <> 'D'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(enabled, 0);

    // an insert: a targeted status for its channel
    b.check(
        &mut client,
        "INSERT INTO messages (channel, status_id) VALUES ('gsm1', 2)",
        1,
        [S | N, S | N, NONE],
    );
    let changes0 = b.metric("flagpost_changes_total");
    let delivered0 = b.metric("flagpost_postgres_delivered_total");

    // 10,000 rows in one statement over four channels and NULL: five
    // notifications, whose batches add up to the rows
    b.check(
        &mut client,
        "INSERT INTO messages (channel, status_id) \
         SELECT CASE WHEN i % 5 = 0 THEN NULL ELSE 'gsm' || (i % 5) END, 2 \
         FROM generate_series(1, 10000) AS i",
        1,
        [S | N, S | N, S | N],
    );
    assert_eq!(
        b.metric("flagpost_postgres_delivered_total") - delivered0,
        5
    );
    // plus the one fence (channel-shutdown:zz), batch 1
    assert_eq!(b.metric("flagpost_changes_total") - changes0, 10_000 + 1);
    assert_eq!(b.metric("flagpost_postgres_wal_changes_total"), 10_001);

    // an update of the body only: non-status (REPLICA IDENTITY FULL)
    b.check(
        &mut client,
        "UPDATE messages SET body = 'edited' WHERE message_id = 1",
        1,
        [N, N, N],
    );
    // an update of the status: status for the row's channel
    b.check(
        &mut client,
        "UPDATE messages SET status_id = 3 WHERE message_id = 1",
        1,
        [S | N, S | N, NONE],
    );
    // an update that changes nothing: no notification (a transaction read)
    b.check(
        &mut client,
        "UPDATE messages SET body = body WHERE message_id = 1",
        1,
        [NONE, NONE, NONE],
    );
    // a delete: non-status
    b.check(
        &mut client,
        "DELETE FROM messages WHERE message_id = 2",
        1,
        [N, N, N],
    );
    // a rolled-back transaction wakes nobody: only the insert after it
    b.check(
        &mut client,
        "BEGIN; INSERT INTO messages (channel, status_id) VALUES ('gsm2', 2); ROLLBACK; \
         INSERT INTO messages (channel, status_id) VALUES ('gsm1', 2)",
        1,
        [S | N, S | N, NONE],
    );
    // nor a rolled-back savepoint inside a committed one
    let before = wal_lsn(&mut client);
    b.check(
        &mut client,
        "BEGIN; SAVEPOINT a; INSERT INTO messages (channel, status_id) VALUES ('gsm2', 2); \
         ROLLBACK TO SAVEPOINT a; INSERT INTO messages (channel, status_id) VALUES ('gsm1', 2); \
         COMMIT",
        1,
        [S | N, S | N, NONE],
    );
    assert_eq!(b.metric("flagpost_postgres_wal_undecodable_total"), 0);

    // the slot is confirmed as transactions are delivered: it moves past
    // the last one
    wait_confirmed_past(&mut client, &before);
}

/// The server's WAL position now.
fn wal_lsn(client: &mut postgres::Client) -> String {
    client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .unwrap()
        .get(0)
}

/// Waits until the slot is in use and confirmed past `lsn`.
fn wait_confirmed_past(client: &mut postgres::Client, lsn: &str) {
    let deadline = Instant::now() + LONG;
    loop {
        let row = client
            .query_one(
                "SELECT confirmed_flush_lsn > $1::text::pg_lsn, active \
                 FROM pg_replication_slots WHERE slot_name = 'flagpost'",
                &[&lsn],
            )
            .unwrap();
        let (moved, active): (bool, bool) = (row.get(0), row.get(1));
        assert!(active, "the slot is not in use");
        if moved {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the slot was never confirmed past {lsn}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_slot_keeps_what_was_committed_while_the_broker_was_away() {
    let (cluster, mut client) = database();
    let mut b = Broker::start(&cluster);
    let before = wal_lsn(&mut client);
    b.check(
        &mut client,
        "INSERT INTO messages (channel, status_id) VALUES ('gsm1', 2)",
        1,
        [S | N, S | N, NONE],
    );
    // delivered and confirmed (else the slot would send it again after the
    // restart: at least once)
    wait_confirmed_past(&mut client, &before);
    // the broker stops; rows are committed meanwhile
    let Broker {
        mut process,
        metrics,
        listeners,
        notifier,
    } = b;
    drop(listeners);
    drop(notifier);
    process.kill();
    client
        .batch_execute(
            "INSERT INTO messages (channel, status_id) VALUES ('gsm2', 2), ('gsm2', 2), ('gsm2', 2)",
        )
        .unwrap();
    // back on the same address: a first connect (no re-check raise), and
    // the slot delivers the transaction it kept: one status:gsm2, batch 3
    // (to the broker: the listeners, new too, re-check on their welcome)
    process.restart();
    b = Broker::attach(process, metrics);
    wait_metric(metrics, "flagpost_postgres_wal_transactions_total", |v| {
        v == 1
    });
    wait_metric(metrics, "flagpost_postgres_delivered_total", |v| v == 1);
    wait_metric(metrics, "flagpost_changes_total", |v| v == 3);
    assert_eq!(b.metric("flagpost_postgres_reconnects_total"), 0);
    assert_eq!(b.metric("flagpost_postgres_wal_changes_total"), 3);
    // and the stream goes on
    let before = wal_lsn(&mut client);
    b.check(
        &mut client,
        "INSERT INTO messages (channel, status_id) VALUES ('gsm2', 2)",
        1,
        [S | N, NONE, S | N],
    );

    // the walsender is terminated (once what was delivered is confirmed,
    // else it comes again: at least once): the source reconnects, raises a
    // re-check on every listener and nothing committed meanwhile is lost
    wait_confirmed_past(&mut client, &before);
    let killed: bool = client
        .query_one(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots \
             WHERE slot_name = 'flagpost'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(killed);
    client
        .batch_execute("INSERT INTO messages (channel, status_id) VALUES ('gsm2', 2)")
        .unwrap();
    for (i, l) in b.listeners.iter().enumerate() {
        let (got, reconnect) = collect(l, FlagSet::RECHECK, "the reconnect raise");
        assert!(got.contains(FlagSet::RECHECK), "listener {i}");
        assert!(!reconnect, "listener {i}: its own connection dropped");
    }
    wait_metric(metrics, "flagpost_postgres_reconnects_total", |v| v == 1);
    wait_metric(metrics, "flagpost_postgres_wal_changes_total", |v| v == 5);
    wait_metric(metrics, "flagpost_postgres_connected", |v| v == 1);
}

#[test]
fn wal_mode_refuses_what_it_cannot_honour() {
    // no TLS in WAL mode: refused, not silently plain text
    let out = flagpost_tests::process::run(&[
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--postgres",
        "postgres://flagpost@127.0.0.1:1/postgres?sslmode=require",
        "--postgres-mode",
        "wal",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("sslmode=require"), "{stderr}");
    // a slot name that is not a plain identifier
    let out = flagpost_tests::process::run(&[
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--postgres",
        "postgres://flagpost@127.0.0.1:1/postgres",
        "--postgres-mode",
        "wal",
        "--postgres-slot",
        "x'; DROP",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("postgres_slot"), "{stderr}");
    assert!(out.stdout.is_empty(), "it must not start serving");
}
