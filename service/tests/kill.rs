//! Never loses a message: the real `flagpost-service` process on a SQLite
//! file with many pending rows, killed with SIGKILL in the middle of a batch
//! (seen in its debug log and confirmed in the database), then restarted,
//! again and again, until everything is done. Every received message ends
//! processed with exactly one `processed` action and one reply, every reply
//! sent with exactly one `sent` action, and the outbox (the channel) has
//! every reply at least once, with at most one duplicate per kill made
//! while sending.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;

const MESSAGES: usize = 40_000;
const BATCH: usize = 4_000;
const LONG: Duration = Duration::from_secs(60);

struct Service {
    child: Child,
    lines: mpsc::Receiver<String>,
}

fn spawn(db: &Path, outbox: &Path, broker: &str) -> Service {
    let mut child = Command::new(env!("CARGO_BIN_EXE_flagpost-service"))
        .arg("--db")
        .arg(db)
        .arg("--outbox")
        .arg(outbox)
        .args(["--broker", broker, "--trigger", "echo"])
        .args([
            "--check-triggers-interval",
            "0",
            "--check-outgoing-interval",
            "0",
        ])
        .args(["--batch-size", &BATCH.to_string()])
        .env("RUST_LOG", "flagpost_service=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start flagpost-service");
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Service { child, lines }
}

impl Service {
    /// Reads its log until a line containing `needle`; `None` if it ends.
    fn until(&self, needle: &str) -> Option<String> {
        loop {
            let line = self.lines.recv_timeout(LONG).ok()?;
            if line.contains(needle) {
                return Some(line);
            }
        }
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// The ids `A..=B` of a "batch selected" line.
fn batch_ids(line: &str) -> (i64, i64) {
    let ids = line.rsplit("ids ").next().unwrap();
    let (a, b) = ids.split_once("..=").unwrap();
    (a.trim().parse().unwrap(), b.trim().parse().unwrap())
}

/// What must hold after any kill: each message's trigger output is there
/// exactly once or not at all, and each send's mark with its action.
fn check_invariants(c: &rusqlite::Connection) {
    assert_eq!(
        count(
            c,
            "SELECT count(*) FROM messages m WHERE status_id = 1 AND trigger_status_id = 1
               AND (SELECT count(*) FROM message_actions a
                    WHERE a.message_id = m.message_id AND action = 'processed') <> 1"
        ),
        0,
        "a processed message without exactly one action"
    );
    assert_eq!(
        count(
            c,
            "SELECT count(*) FROM message_actions a JOIN messages m USING (message_id)
             WHERE a.action = 'processed' AND m.trigger_status_id = 0"
        ),
        0,
        "an action for a pending message"
    );
    assert_eq!(
        count(
            c,
            "SELECT count(*) FROM messages WHERE status_id = 1 AND trigger_status_id = 1"
        ),
        count(
            c,
            "SELECT count(*) FROM messages WHERE status_id IN (2, 3) AND body LIKE 're: %'"
        ),
        "one reply per processed message"
    );
    assert_eq!(
        count(c, "SELECT count(*) FROM messages WHERE status_id = 3"),
        count(
            c,
            "SELECT count(*) FROM message_actions WHERE action = 'sent'"
        ),
        "one `sent` action per sent message"
    );
}

fn processed(c: &rusqlite::Connection, id: i64) -> bool {
    c.query_row(
        "SELECT trigger_status_id FROM messages WHERE message_id = ?1",
        [id],
        |r| r.get::<_, i64>(0),
    )
    .unwrap()
        == 1
}

#[test]
fn killed_mid_batch_and_restarted_it_loses_nothing() {
    let broker = broker();
    let addr = broker.local_addr().to_string();
    let dir = temp_dir("kill");
    let db = dir.join("messages.db");
    let outbox = dir.join("outbox.txt");
    let mut conn = sqlite(&db);
    insert_received(&mut conn, MESSAGES, Some("gsm1"));

    // Check triggers: kill as the second batch of a run is selected, until
    // one kill lands before that batch's commit (its first message still
    // pending afterwards: killed mid-batch).
    let mut mid_batch_kills = 0;
    for _ in 0..10 {
        let svc = spawn(&db, &outbox, &addr);
        svc.until("check-triggers (startup): batch selected")
            .expect("a first batch");
        let Some(line) = svc.until("check-triggers (startup): batch selected") else {
            break; // fewer than two batches left
        };
        svc.kill();
        let (first, last) = batch_ids(&line);
        check_invariants(&conn);
        if !processed(&conn, first) {
            assert!(!processed(&conn, last), "half a batch committed");
            mid_batch_kills += 1;
            if mid_batch_kills == 3 {
                break;
            }
        }
    }
    assert!(mid_batch_kills > 0, "no kill landed inside a batch");

    // Check outgoing: kill once a batch to send is selected and the outbox
    // (the channel) has taken a message of it: mid-batch, part of it sent
    // and part still queued.
    let outbox_len = || std::fs::metadata(&outbox).map_or(0, |m| m.len());
    let mut sending_kills = 0;
    let mut mid_send_kills = 0;
    for _ in 0..2 {
        let before = outbox_len();
        let svc = spawn(&db, &outbox, &addr);
        let line = svc
            .until("check-outgoing (startup): batch selected")
            .expect("an outgoing batch");
        wait_until(LONG, "a send", || outbox_len() > before);
        svc.kill();
        sending_kills += 1;
        check_invariants(&conn);
        let (first, last) = batch_ids(&line);
        let in_batch = count(
            &conn,
            &format!(
                "SELECT count(*) FROM messages WHERE status_id = 3 \
                 AND message_id BETWEEN {first} AND {last}"
            ),
        );
        eprintln!("killed while sending ids {first}..={last}: {in_batch} of them marked sent");
        if in_batch <= last - first {
            mid_send_kills += 1;
        }
    }
    assert!(mid_send_kills > 0, "no kill landed inside a send batch");
    eprintln!(
        "{mid_batch_kills} kills inside a trigger batch, {sending_kills} while sending \
         ({mid_send_kills} inside a send batch)"
    );

    // The last run finishes everything; a status update wakes it for two
    // more messages, then it stops on SIGTERM with its summary.
    let svc = spawn(&db, &outbox, &addr);
    svc.until("listening to broker").expect("connected");
    wait_until(LONG, "everything processed and sent", || {
        count(
            &conn,
            "SELECT count(*) FROM messages WHERE trigger_status_id = 0 OR status_id = 2",
        ) == 0
    });
    insert_received(&mut conn, 2, None);
    flagpost_std::Notifier::new(broker.local_addr())
        .unwrap()
        .notify_status_update(None);
    wait_until(LONG, "the notified messages", || {
        count(&conn, "SELECT count(*) FROM messages WHERE status_id = 3") == MESSAGES as i64 + 2
    });
    let status = Command::new("kill")
        .args(["-TERM", &svc.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let summary = svc.until("stopped;").expect("a summary on exit");
    assert!(summary.contains("check-triggers"), "{summary}");
    let Service { mut child, .. } = svc;
    assert!(child.wait().unwrap().success());

    // Exactly once in the database.
    let total = MESSAGES as i64 + 2;
    check_invariants(&conn);
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM messages WHERE status_id = 1 AND trigger_status_id = 1"
        ),
        total
    );
    assert_eq!(
        count(
            &conn,
            "SELECT count(DISTINCT message_id) FROM message_actions WHERE action = 'processed'"
        ),
        total
    );
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM message_actions WHERE action = 'processed'"
        ),
        total
    );
    assert_eq!(
        count(&conn, "SELECT count(*) FROM messages WHERE status_id = 3"),
        total,
        "one reply per message"
    );
    // At least once through the channel, at most one duplicate per kill.
    let text = std::fs::read_to_string(&outbox).unwrap();
    let mut seen: HashMap<i64, usize> = HashMap::new();
    for line in text.lines() {
        let id: i64 = line.split('\t').next().unwrap().parse().unwrap();
        *seen.entry(id).or_default() += 1;
    }
    let mut stmt = conn
        .prepare("SELECT message_id FROM messages WHERE status_id = 3")
        .unwrap();
    let sent: Vec<i64> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for id in &sent {
        assert!(seen.contains_key(id), "reply {id} never went out");
    }
    assert_eq!(seen.len(), sent.len(), "the outbox has only sent messages");
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    eprintln!("{duplicates} duplicate sends");
    assert!(
        duplicates <= sending_kills,
        "{duplicates} duplicates for {sending_kills} kills while sending"
    );
    broker.shutdown();
}
