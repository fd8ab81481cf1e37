//! The broker's `/metrics` page as an operator scrapes it: a plain
//! `flagpost notify` session shows its tail-loss probe as a probe and no
//! duplicate; the page is the classic text format unless the scrape asks
//! for OpenMetrics, passes `promtool check metrics` (the Debian package
//! `prometheus`, installed by test.sh), and ignores query strings.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flagpost_std::{Broker, BrokerConfig, BrokerHandle, MetricsServer};

mod common;

const LONG: Duration = Duration::from_secs(10);

fn broker() -> (BrokerHandle, MetricsServer) {
    let broker = Broker::spawn(BrokerConfig {
        bind: vec!["127.0.0.1:0".parse().unwrap()],
        ..BrokerConfig::default()
    })
    .unwrap();
    let metrics = MetricsServer::start("127.0.0.1:0".parse().unwrap(), broker.clone()).unwrap();
    (broker, metrics)
}

/// `GET path` with `accept` (if any): (status line, content type, body).
fn get(addr: SocketAddr, path: &str, accept: Option<&str>) -> (String, String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n{accept}\r\n").unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.lines().next().unwrap().to_owned();
    let content_type = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        })
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}

/// The sample `name` (with its labels, if any) on a page.
fn sample(page: &str, name: &str) -> Option<u64> {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

#[test]
fn a_plain_notify_session_shows_its_probe_and_no_duplicate() {
    let (broker, metrics) = broker();
    let out = Command::new(common::BIN)
        .args([
            "notify",
            "status",
            "--broker",
            &broker.local_addr().to_string(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // the datagram, then its tail-loss probe (sent as the command exits)
    let deadline = Instant::now() + LONG;
    let stats = loop {
        let stats = broker.stats().unwrap();
        if stats.probes >= 1 {
            break stats;
        }
        assert!(Instant::now() < deadline, "no probe counted: {stats:?}");
        std::thread::yield_now();
    };
    assert_eq!((stats.datagrams, stats.delivered), (2, 1), "{stats:?}");
    assert_eq!((stats.duplicates, stats.probes_delivered), (0, 0));
    let (_, _, page) = get(metrics.local_addr(), "/metrics", None);
    assert_eq!(
        sample(&page, "flagpost_duplicates_total"),
        Some(0),
        "{page}"
    );
    assert_eq!(sample(&page, "flagpost_probes_total"), Some(1), "{page}");
}

#[test]
fn the_page_is_negotiated_and_passes_promtool() {
    let (broker, metrics) = broker();
    flagpost_std::Notifier::new(broker.local_addr())
        .unwrap()
        .notify_status_update(None);
    let addr = metrics.local_addr();

    // no Accept (curl, promtool): the classic text format
    let (status, content_type, classic) = get(addr, "/metrics", None);
    assert!(status.contains(" 200"), "{status}");
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert!(!classic.contains("# EOF"), "{classic}");
    assert!(
        classic.contains("# TYPE flagpost_received_bytes_total counter"),
        "{classic}"
    );
    assert!(
        classic.contains("flagpost_build_info{version=\""),
        "{classic}"
    );
    #[cfg(target_os = "linux")]
    for name in ["process_open_fds", "process_resident_memory_bytes"] {
        assert!(sample(&classic, name).is_some_and(|v| v > 0), "{name}");
    }

    // Prometheus's own Accept header: OpenMetrics
    let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                      version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let (_, content_type, open) = get(addr, "/metrics", Some(prometheus));
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(open.ends_with("# EOF\n"), "{open}");
    assert!(
        open.contains("# UNIT flagpost_received_bytes bytes"),
        "{open}"
    );

    // a query string is ignored
    let (status, _, with_query) = get(addr, "/metrics?x=1", None);
    assert!(status.contains(" 200"), "{status}");
    assert!(with_query.contains("flagpost_build_info"), "{with_query}");
    let (status, _, _) = get(addr, "/healthz?verbose", None);
    assert!(status.contains(" 200"), "{status}");
    let (status, _, _) = get(addr, "/nothing?x=1", None);
    assert!(status.contains(" 404"), "{status}");

    // promtool lints the real page (names, units, types, help)
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package `prometheus`; test.sh installs it)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(classic.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{classic}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A broker loop that does not answer (here: bound, never run) makes the
/// health check a 503 after `BROKER_ANSWER`, not a hung HTTP server; the
/// page that needs no broker is served meanwhile.
#[test]
fn a_loop_that_does_not_answer_is_a_503_not_a_hang() {
    let broker = Broker::bind(BrokerConfig {
        bind: vec!["127.0.0.1:0".parse().unwrap()],
        ..BrokerConfig::default()
    })
    .unwrap();
    let metrics = MetricsServer::start("127.0.0.1:0".parse().unwrap(), broker.handle()).unwrap();
    for path in ["/healthz", "/metrics"] {
        let (status, _, body) = get(metrics.local_addr(), path, None);
        assert!(status.contains(" 503 "), "{path}: {status}");
        assert!(body.contains("did not answer"), "{path}: {body}");
    }
    let (status, _, _) = get(metrics.local_addr(), "/", None);
    assert!(status.contains(" 200 "), "{status}");
    drop(metrics);
    drop(broker);
}
