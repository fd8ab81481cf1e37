//! Helpers shared by the service's tests: an in-process broker, bounded
//! waits on a condition, rows inserted into a SQLite file, `/metrics`.
#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flagpost_std::{Broker, BrokerConfig, BrokerHandle};

/// A broker on a free loopback port, in this process.
pub fn broker() -> BrokerHandle {
    broker_on("127.0.0.1:0".parse().unwrap())
}

/// A broker on `addr`.
pub fn broker_on(addr: SocketAddr) -> BrokerHandle {
    Broker::spawn(BrokerConfig {
        bind: vec![addr],
        ..BrokerConfig::default()
    })
    .expect("broker")
}

/// Waits until `f` holds, checking every few milliseconds; panics with
/// `what` after `timeout`. A bounded wait on a condition, not a sleep
/// standing in for one.
pub fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A fresh temporary directory for one test, removed when dropped.
pub struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh temporary directory for one test.
pub fn temp_dir(name: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!(
        "flagpost-service-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

/// Opens `path` the way a writer of the messages table would (the table
/// made if missing).
pub fn sqlite(path: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(path).unwrap();
    c.busy_timeout(Duration::from_secs(30)).unwrap();
    c.execute_batch(flagpost_service::store::SQLITE_SCHEMA)
        .unwrap();
    c
}

/// Inserts `n` received messages in one transaction.
pub fn insert_received(c: &mut rusqlite::Connection, n: usize, channel: Option<&str>) {
    let tx = c.transaction().unwrap();
    {
        let mut stmt = tx
            .prepare("INSERT INTO messages (channel, status_id, body) VALUES (?1, 1, ?2)")
            .unwrap();
        for i in 0..n {
            stmt.execute(rusqlite::params![channel, format!("message {i}")])
                .unwrap();
        }
    }
    tx.commit().unwrap();
}

/// A count query's answer.
pub fn count(c: &rusqlite::Connection, sql: &str) -> i64 {
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// `GET /metrics` from `addr`: the body.
pub fn get_metrics(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

/// The value of the sample `name{labels}` in a Prometheus text body.
pub fn sample(body: &str, series: &str) -> Option<u64> {
    body.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}
