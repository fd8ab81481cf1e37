//! `sql/postgres/flagpost.sql` against a real PostgreSQL server: what each
//! trigger sends (one notification per statement and channel, with its batch
//! count), that nothing is sent for a rolled-back transaction and nothing
//! before COMMIT, that the rows are visible to the listener when the
//! notification reaches it, that installing twice is harmless, that a
//! channel name the payload cannot carry falls back to an untargeted status,
//! and that a writer with another search_path still reaches the functions.
//!
//! Synchronisation is by markers, never by sleeps: PostgreSQL delivers the
//! notifications of committed transactions in commit order, so a marker
//! notified after a statement's commit arrives after everything that
//! statement sent, and what has not arrived by then was not sent.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use flagpost_std::core::payload::Payload;
use flagpost_tests::postgres::PgCluster;
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls};

/// The file under test, as applications install it.
const SQL: &str = include_str!("../../sql/postgres/flagpost.sql");

/// Bounds a failure only: a marker that has not arrived after this is lost.
const LONG: Duration = Duration::from_secs(30);

/// The 10,000-row insert used by several tests: 5,000 rows on `gsm1`, 3,000
/// on `gsm2`, 1,000 on `smpp.eu-1` and 1,000 with no channel.
const INSERT_10K: &str = "INSERT INTO messages (channel, status_id)
     SELECT CASE WHEN i % 10 < 5 THEN 'gsm1'
                 WHEN i % 10 < 8 THEN 'gsm2'
                 WHEN i % 10 = 8 THEN 'smpp.eu-1' END, 2
     FROM generate_series(1, 10000) AS i";

/// A cluster with the SQL installed, a writing connection and a connection
/// that LISTENs on `flagpost`.
struct Db {
    cluster: PgCluster,
    writer: Client,
    listener: Client,
    markers: u32,
}

impl Db {
    fn start() -> Db {
        Db::start_in("public")
    }

    /// Installs the SQL with `schema` first on the search_path, then resets
    /// the writer's search_path to the default.
    fn start_in(schema: &str) -> Db {
        let cluster = PgCluster::start();
        let mut writer = connect(&cluster);
        writer
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {schema}; SET search_path = {schema}"
            ))
            .unwrap();
        writer.batch_execute(SQL).expect("install flagpost.sql");
        writer.batch_execute("RESET search_path").unwrap();
        let mut listener = connect(&cluster);
        listener.batch_execute("LISTEN flagpost").unwrap();
        Db {
            cluster,
            writer,
            listener,
            markers: 0,
        }
    }

    /// A new marker payload, unique in this test.
    fn marker(&mut self) -> String {
        self.markers += 1;
        format!("marker-{}", self.markers)
    }

    /// Notifies a marker from the writer (so after everything it committed)
    /// and returns the payloads the listener got before it, sorted, after
    /// checking they all came on the `flagpost` channel and that the
    /// broker's parser takes each of them.
    fn received(&mut self) -> Vec<String> {
        let marker = self.marker();
        notify(&mut self.writer, "flagpost", &marker);
        let got = self.until(&marker);
        assert!(
            got.iter().all(|(channel, _)| channel == "flagpost"),
            "notifications on another channel: {got:?}"
        );
        for (_, payload) in &got {
            assert!(
                Payload::parse(payload).is_ok(),
                "the broker rejects {payload:?}: {:?}",
                Payload::parse(payload)
            );
        }
        sorted(got.into_iter().map(|(_, payload)| payload))
    }

    fn until(&mut self, marker: &str) -> Vec<(String, String)> {
        until(&mut self.listener, marker)
    }

    /// The next notification's payload (one that must come).
    fn next_payload(&mut self) -> String {
        let mut notifications = self.listener.notifications();
        let next = notifications.timeout_iter(LONG).next();
        next.expect("listening connection")
            .unwrap_or_else(|| panic!("no notification within {LONG:?}"))
            .payload()
            .to_owned()
    }

    /// Runs one statement on the writer (autocommit) and returns its row
    /// count.
    fn run(&mut self, sql: &str) -> u64 {
        self.writer
            .execute(sql, &[])
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Runs one statement and returns what it sent.
    fn sent_by(&mut self, sql: &str) -> Vec<String> {
        self.run(sql);
        self.received()
    }

    fn count(&mut self, sql: &str) -> i64 {
        self.writer.query_one(sql, &[]).unwrap().get(0)
    }
}

fn connect(cluster: &PgCluster) -> Client {
    Client::connect(&cluster.url_with_password(), NoTls).expect("connect to the test cluster")
}

/// The (channel, payload) of every notification `listener` gets before
/// `marker`, in arrival order.
fn until(listener: &mut Client, marker: &str) -> Vec<(String, String)> {
    let mut got = Vec::new();
    let mut notifications = listener.notifications();
    let mut iter = notifications.timeout_iter(LONG);
    loop {
        match iter.next().expect("listening connection") {
            Some(n) if n.payload() == marker => return got,
            Some(n) => got.push((n.channel().to_owned(), n.payload().to_owned())),
            None => panic!("marker {marker} not received within {LONG:?}; got {got:?}"),
        }
    }
}

fn notify(client: &mut Client, channel: &str, payload: &str) {
    client
        .execute("SELECT pg_notify($1, $2)", &[&channel, &payload])
        .unwrap();
}

fn sorted(items: impl IntoIterator<Item = impl Into<String>>) -> Vec<String> {
    let mut v: Vec<String> = items.into_iter().map(Into::into).collect();
    v.sort();
    v
}

#[test]
fn an_insert_sends_one_status_per_channel_with_its_row_count() {
    let mut db = Db::start();
    assert_eq!(db.run(INSERT_10K), 10_000);
    assert_eq!(
        db.received(),
        sorted([
            "status:gsm1;batch=5000",
            "status:gsm2;batch=3000",
            "status:smpp.eu-1;batch=1000",
            "status;batch=1000",
        ]),
        "10,000 rows on 3 channels and NULL: one notification each"
    );
    assert_eq!(
        db.sent_by("INSERT INTO messages (channel, status_id) VALUES ('gsm2', 1)"),
        ["status:gsm2;batch=1"]
    );
    // A statement-level trigger runs for an INSERT of no rows, too: it sends nothing.
    assert_eq!(
        db.sent_by("INSERT INTO messages (channel, status_id) SELECT 'gsm1', 2 WHERE false"),
        Vec::<String>::new()
    );

    // PostgreSQL folds identical payloads within one transaction (the
    // README says so): two one-row inserts on gsm1 arrive as one batch=1,
    // while a different payload (batch=2) is delivered beside it.
    let mut tx = db.writer.transaction().unwrap();
    for rows in [1, 1, 2] {
        tx.execute(
            "INSERT INTO messages (channel, status_id)
             SELECT 'gsm1', 2 FROM generate_series(1, $1::int)",
            &[&rows],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    assert_eq!(
        db.received(),
        ["status:gsm1;batch=1", "status:gsm1;batch=2"]
    );
}

#[test]
fn updates_send_status_per_channel_for_status_changes_and_non_status_for_the_rest() {
    let mut db = Db::start();
    db.run(INSERT_10K);
    db.received();

    assert_eq!(
        db.sent_by("UPDATE messages SET status_id = 3 WHERE channel = 'gsm2'"),
        ["status:gsm2;batch=3000"]
    );
    // The gsm2 rows are already 3: only the rows that changed are counted,
    // and gsm2 is not woken again.
    assert_eq!(
        db.sent_by("UPDATE messages SET status_id = 3 WHERE channel IN ('gsm2', 'smpp.eu-1')"),
        ["status:smpp.eu-1;batch=1000"]
    );
    assert_eq!(
        db.sent_by("UPDATE messages SET trigger_status_id = 1 WHERE channel IS NULL"),
        ["status;batch=1000"]
    );
    assert_eq!(
        db.sent_by("UPDATE messages SET ack_status_id = 1 WHERE channel = 'smpp.eu-1'"),
        ["status:smpp.eu-1;batch=1000"]
    );

    // The body only: one untargeted non-status for all 5,000 rows.
    assert_eq!(
        db.sent_by("UPDATE messages SET body = 'seen' WHERE channel = 'gsm1'"),
        ["non-status;batch=5000"]
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM messages WHERE channel = 'gsm1' AND updated_at > created_at"
        ),
        5000,
        "the BEFORE UPDATE trigger stamps updated_at on changed rows"
    );
    // The same again changes nothing, so sends nothing.
    assert_eq!(
        db.sent_by("UPDATE messages SET body = 'seen' WHERE channel = 'gsm1'"),
        Vec::<String>::new()
    );

    // One statement, both: the status changes per channel, the rest as one
    // non-status.
    assert_eq!(
        db.sent_by(
            "UPDATE messages SET body = 'mixed',
                 status_id = CASE WHEN channel = 'gsm1' THEN 4 ELSE status_id END
             WHERE channel IN ('gsm1', 'gsm2')"
        ),
        sorted(["status:gsm1;batch=5000", "non-status;batch=3000"])
    );
    // A move to another channel without a status change is a non-status.
    assert_eq!(
        db.sent_by("UPDATE messages SET channel = 'gsm3' WHERE channel = 'smpp.eu-1'"),
        ["non-status;batch=1000"]
    );
    assert_eq!(
        db.sent_by("DELETE FROM messages WHERE channel = 'gsm2'"),
        ["non-status;batch=3000"]
    );
    assert_eq!(
        db.sent_by("DELETE FROM messages WHERE channel = 'nowhere'"),
        Vec::<String>::new()
    );
    assert_eq!(db.sent_by("TRUNCATE messages"), ["non-status"]);
}

#[test]
fn a_rolled_back_transaction_sends_nothing() {
    let mut db = Db::start();
    let mut tx = db.writer.transaction().unwrap();
    tx.execute(INSERT_10K, &[]).unwrap();
    tx.execute("UPDATE messages SET status_id = 3", &[])
        .unwrap();
    tx.execute("SELECT flagpost_notify('channel-update', 'gsm1')", &[])
        .unwrap();
    tx.rollback().unwrap();
    assert_eq!(db.received(), Vec::<String>::new());
    assert_eq!(db.count("SELECT count(*) FROM messages"), 0);

    // A savepoint rolled back takes its notifications with it; the rest of
    // the transaction still sends at commit.
    let mut tx = db.writer.transaction().unwrap();
    tx.execute(
        "INSERT INTO messages (channel, status_id) VALUES ('gsm1', 2)",
        &[],
    )
    .unwrap();
    let mut sp = tx.savepoint("undone").unwrap();
    sp.execute(
        "INSERT INTO messages (channel, status_id) SELECT 'gsm2', 2 FROM generate_series(1, 5)",
        &[],
    )
    .unwrap();
    sp.rollback().unwrap();
    tx.commit().unwrap();
    assert_eq!(db.received(), ["status:gsm1;batch=1"]);
}

#[test]
fn the_notification_comes_at_commit_with_the_rows_visible() {
    let mut db = Db::start();
    let mut other = connect(&db.cluster);
    let marker = db.marker();
    let mut tx = db.writer.transaction().unwrap();
    tx.execute(
        "INSERT INTO messages (channel, status_id, body)
         SELECT 'gsm1', 2, 'hello ' || i FROM generate_series(1, 250) AS i",
        &[],
    )
    .unwrap();
    // The insert is done but not committed: a marker from another
    // connection overtakes it.
    notify(&mut other, "flagpost", &marker);
    assert_eq!(
        until(&mut db.listener, &marker),
        Vec::<(String, String)>::new(),
        "sent before COMMIT"
    );
    tx.commit().unwrap();

    // On receipt, the listening connection reads the rows it was woken for.
    assert_eq!(db.next_payload(), "status:gsm1;batch=250");
    let visible: i64 = db
        .listener
        .query_one(
            "SELECT count(*) FROM messages WHERE channel = 'gsm1' AND body LIKE 'hello %'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(visible, 250, "rows not visible when the notification came");
    assert_eq!(db.received(), Vec::<String>::new(), "sent twice");

    // The same with a writer that commits on its own connection while the
    // listener waits: each wake-up finds its channel's rows.
    for (channel, rows) in [("gsm2", 3_i64), ("gsm3", 7)] {
        other
            .execute(
                "INSERT INTO messages (channel, status_id)
                 SELECT $1, 2 FROM generate_series(1, $2::int)",
                &[&channel, &(rows as i32)],
            )
            .unwrap();
        assert_eq!(db.next_payload(), format!("status:{channel};batch={rows}"));
        let visible: i64 = db
            .listener
            .query_one(
                "SELECT count(*) FROM messages WHERE channel = $1",
                &[&channel],
            )
            .unwrap()
            .get(0);
        assert_eq!(visible, rows);
    }
}

#[test]
fn installing_twice_is_harmless() {
    let mut db = Db::start();
    db.run("INSERT INTO messages (channel, status_id, body) VALUES ('gsm1', 2, 'kept')");
    assert_eq!(db.received(), ["status:gsm1;batch=1"]);

    // Again through the client, and again as documented: psql -f.
    db.writer.batch_execute(SQL).expect("second install");
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sql/postgres/flagpost.sql");
    let out = Command::new(db.cluster.program("psql"))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(db.cluster.url_with_password())
        .arg("-f")
        .arg(&file)
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql -f failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "a re-install should be quiet"
    );

    assert_eq!(
        db.count("SELECT count(*) FROM messages WHERE body = 'kept'"),
        1,
        "the table and its rows survive"
    );
    // Each trigger once, the notifying ones per statement (a row-level one
    // would send the same, folded by PostgreSQL, at a cost per row).
    let triggers: Vec<(String, bool)> = db
        .writer
        .query(
            "SELECT tgname::text, (tgtype & 1) = 1 FROM pg_trigger
             WHERE tgrelid = 'messages'::regclass AND NOT tgisinternal ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let expected = [
        ("flagpost_delete", false),
        ("flagpost_insert", false),
        ("flagpost_touch", true),
        ("flagpost_truncate", false),
        ("flagpost_update", false),
    ];
    assert_eq!(
        triggers,
        expected.map(|(name, row_level)| (name.to_owned(), row_level)),
        "(name, row-level)"
    );
    // Still exactly one notification per statement and channel.
    assert_eq!(
        db.sent_by("INSERT INTO messages (channel, status_id) VALUES ('gsm1', 2), ('gsm1', 2)"),
        ["status:gsm1;batch=2"]
    );
    assert_eq!(
        db.sent_by("UPDATE messages SET body = 'again'"),
        ["non-status;batch=3"]
    );
}

#[test]
fn a_channel_the_payload_cannot_carry_falls_back_to_untargeted_status() {
    let mut db = Db::start();
    let longest = "x".repeat(32);
    let too_long = "x".repeat(33);
    let non_ascii = "é".repeat(16); // 32 bytes, not ASCII
                                    // Targeted: the broker's parser gives back exactly these names.
    let fit = [
        longest.as_str(),
        "gsm1",
        "GSM modem 1",
        "a:b",
        ":x",
        "batch=2",
    ];
    let unfit = [
        too_long.as_str(),
        too_long.as_str(),
        "",
        " gsm1",
        "gsm1 ",
        "a;batch=9",
        "tab\there",
        non_ascii.as_str(),
    ];
    let mut channels: Vec<Option<&str>> = fit.iter().chain(&unfit).copied().map(Some).collect();
    channels.push(None);
    db.writer
        .execute(
            "INSERT INTO messages (channel, status_id) SELECT unnest($1::text[]), 2",
            &[&channels],
        )
        .unwrap();
    let got = db.received();
    let mut expected: Vec<String> = fit.iter().map(|c| format!("status:{c};batch=1")).collect();
    // the 8 unfit names and the NULL, together
    expected.push("status;batch=9".to_owned());
    assert_eq!(got, sorted(expected));
    let mut targeted: Vec<String> = got
        .iter()
        .filter_map(|p| {
            let parsed = Payload::parse(p).unwrap();
            parsed.notification.channel().map(|c| c.as_str().to_owned())
        })
        .collect();
    targeted.sort();
    assert_eq!(targeted, sorted(fit), "the parser reads other names");

    assert_eq!(
        db.sent_by("UPDATE messages SET status_id = 3 WHERE octet_length(channel) = 33"),
        ["status;batch=2"]
    );
    db.writer
        .execute("SELECT flagpost_notify('non-status', $1, 3)", &[&too_long])
        .unwrap();
    assert_eq!(db.received(), ["non-status;batch=3"]);
}

#[test]
fn flagpost_notify_sends_every_kind_and_rejects_what_the_broker_would() {
    let mut db = Db::start();
    for call in [
        "SELECT flagpost_notify('status')",
        "SELECT flagpost_notify('status', 'gsm1', 500)",
        "SELECT flagpost_notify('non-status', 'gsm2')",
        "SELECT flagpost_notify('channel-update', 'gsm1')",
        "SELECT flagpost_notify('channel-shutdown', 'smpp.eu-1', 2)",
    ] {
        db.run(call);
    }
    assert_eq!(
        db.received(),
        sorted([
            "status;batch=1",
            "status:gsm1;batch=500",
            "non-status:gsm2;batch=1",
            "channel-update:gsm1;batch=1",
            "channel-shutdown:smpp.eu-1;batch=2",
        ])
    );

    for bad in [
        "SELECT flagpost_notify('statuses')",
        "SELECT flagpost_notify(NULL)",
        "SELECT flagpost_notify('status', 'gsm1', 0)",
        "SELECT flagpost_notify('channel-update')",
        "SELECT flagpost_notify('channel-shutdown', 'gsm1;x')",
    ] {
        let err = db.writer.execute(bad, &[]).expect_err(bad);
        let message = err.as_db_error().map(|e| e.message().to_owned());
        assert!(
            message
                .as_deref()
                .is_some_and(|m| m.starts_with("flagpost_notify: ")),
            "{bad}: {err}"
        );
    }
    assert_eq!(db.received(), Vec::<String>::new(), "a rejected call sent");

    // The README's channel configuration table.
    db.writer
        .batch_execute(
            "CREATE TABLE channels (name text PRIMARY KEY);
             CREATE OR REPLACE FUNCTION channels_notify() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF TG_OP = 'DELETE' THEN
                     PERFORM flagpost_notify('channel-shutdown', OLD.name);
                 ELSE
                     PERFORM flagpost_notify('channel-update', NEW.name);
                 END IF;
                 RETURN NULL;
             END $$;
             CREATE TRIGGER channels_notify AFTER INSERT OR UPDATE OR DELETE ON channels
                 FOR EACH ROW EXECUTE FUNCTION channels_notify();",
        )
        .unwrap();
    assert_eq!(
        db.sent_by("INSERT INTO channels VALUES ('gsm1'), ('gsm2')"),
        ["channel-update:gsm1;batch=1", "channel-update:gsm2;batch=1"]
    );
    assert_eq!(
        db.sent_by("DELETE FROM channels WHERE name = 'gsm2'"),
        ["channel-shutdown:gsm2;batch=1"]
    );
    let err = db
        .writer
        .execute("INSERT INTO channels VALUES ('gsm3'), ('no;way')", &[])
        .expect_err("a channel name that does not fit");
    let message = err.as_db_error().map(|e| e.message().to_owned());
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("needs a channel that fits")),
        "{err:?}"
    );
    assert_eq!(
        db.received(),
        Vec::<String>::new(),
        "sent for a failed insert"
    );

    // The NOTIFY channel is the setting flagpost.channel.
    db.listener.batch_execute("LISTEN flagpost_b").unwrap();
    db.run("SET flagpost.channel = 'flagpost_b'");
    db.run("INSERT INTO messages (channel, status_id) VALUES ('gsm1', 2)");
    db.run("SELECT flagpost_notify('channel-update', 'gsm1')");
    let marker = db.marker();
    notify(&mut db.writer, "flagpost", &marker);
    assert_eq!(
        db.until(&marker),
        [
            ("flagpost_b".to_owned(), "status:gsm1;batch=1".to_owned()),
            (
                "flagpost_b".to_owned(),
                "channel-update:gsm1;batch=1".to_owned()
            ),
        ]
    );
    db.run("RESET flagpost.channel");
    assert_eq!(
        db.sent_by("INSERT INTO messages (channel, status_id) VALUES ('gsm1', 2)"),
        ["status:gsm1;batch=1"]
    );
}

#[test]
fn a_writer_with_another_search_path_still_notifies() {
    // Installed in schema sms; the writer's search_path ("$user", public)
    // does not name it, and the trigger functions still find theirs.
    let mut db = Db::start_in("sms");
    assert_eq!(
        db.count("SELECT count(*) FROM pg_proc WHERE proname = 'flagpost_target' AND pronamespace = 'public'::regnamespace"),
        0
    );
    assert_eq!(
        db.sent_by("INSERT INTO sms.messages (channel, status_id) VALUES ('gsm1', 2)"),
        ["status:gsm1;batch=1"]
    );
    assert_eq!(
        db.sent_by("UPDATE sms.messages SET body = 'x'"),
        ["non-status;batch=1"]
    );
    assert_eq!(
        db.sent_by("SELECT sms.flagpost_notify('channel-update', 'gsm1')"),
        ["channel-update:gsm1;batch=1"]
    );
}
