//! The broker's HTTP address as a browser and curl use it: `/events`
//! (Server-Sent Events of flag raises, with the reconnect raise, the
//! channel and interest filters and coalescing for a client that does not
//! read), `/stats.json`, the token when the broker has a key, and the
//! server's answers to bad input (400, 405, 431, 503, a slow head closed),
//! and `flagpost serve` taking a key rotated by `SIGHUP` for its token.
//! Every client is raw TCP on loopback; every wait has a deadline.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use flagpost_std::core::{ChannelId, FlagSet, Notification};
use flagpost_std::{Broker, BrokerConfig, BrokerHandle, MetricsServer};

mod common;

const LONG: Duration = Duration::from_secs(10);

fn broker_with(config: BrokerConfig) -> (BrokerHandle, MetricsServer) {
    let config = BrokerConfig {
        bind: vec!["127.0.0.1:0".parse().unwrap()],
        ..config
    };
    let broker = Broker::spawn(config.clone()).unwrap();
    let http = MetricsServer::start_config("127.0.0.1:0".parse().unwrap(), broker.clone(), &config)
        .unwrap();
    (broker, http)
}

fn broker() -> (BrokerHandle, MetricsServer) {
    broker_with(BrokerConfig::default())
}

/// A whole response to `GET path` (with `headers`): (status code, head, body).
fn get(addr: SocketAddr, path: &str, headers: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(LONG)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n").unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    split(&response)
}

fn split(response: &str) -> (u16, String, String) {
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((response, ""));
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, head.to_owned(), body.to_owned())
}

/// An open event stream.
struct Events {
    s: TcpStream,
    buf: Vec<u8>,
    /// Bytes read in all.
    read: usize,
}

/// One `raise` event: its id and its data.
#[derive(Debug)]
struct Raise {
    id: u64,
    data: serde_json::Value,
}

impl Raise {
    fn has(&self, flag: &str) -> bool {
        self.data[flag].as_bool().unwrap()
    }
}

impl Events {
    fn open(addr: SocketAddr, query: &str, headers: &str) -> Events {
        let s = TcpStream::connect(addr).unwrap();
        Events::on(s, query, headers)
    }

    fn on(mut s: TcpStream, query: &str, headers: &str) -> Events {
        write!(
            s,
            "GET /events{query} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n{headers}\r\n"
        )
        .unwrap();
        let mut events = Events {
            s,
            buf: Vec::new(),
            read: 0,
        };
        let head = events.block("\r\n\r\n").expect("a response head");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.contains("Content-Type: text/event-stream"), "{head}");
        assert_eq!(events.block("\n\n").as_deref(), Some("retry: 1000"));
        events
    }

    /// The text up to the next `end` (consumed), or `None` at the stream's
    /// end; panics after [`LONG`].
    fn block(&mut self, end: &str) -> Option<String> {
        let deadline = Instant::now() + LONG;
        loop {
            if let Some(at) = find(&self.buf, end.as_bytes()) {
                let text = String::from_utf8(self.buf[..at].to_vec()).unwrap();
                self.buf.drain(..at + end.len());
                return Some(text);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "nothing more within {LONG:?}");
            self.s.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 4096];
            match self.s.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => {
                    self.read += n;
                    self.buf.extend_from_slice(&chunk[..n]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("reading events: {e}"),
            }
        }
    }

    /// The next `raise` event (comments skipped).
    fn next(&mut self) -> Option<Raise> {
        loop {
            let block = self.block("\n\n")?;
            if block.starts_with(':') {
                continue;
            }
            let mut id = None;
            let mut data = None;
            for line in block.lines() {
                match line.split_once(": ") {
                    Some(("id", v)) => id = v.parse().ok(),
                    Some(("event", v)) => assert_eq!(v, "raise"),
                    Some(("data", v)) => data = serde_json::from_str(v).ok(),
                    _ => panic!("unexpected line {line:?}"),
                }
            }
            return Some(Raise {
                id: id.expect("an id"),
                data: data.expect("JSON data"),
            });
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn channel(name: &str) -> ChannelId {
    ChannelId::new(name).unwrap()
}

#[test]
fn each_kind_is_an_event_after_the_reconnect_raise() {
    let (broker, http) = broker();
    let mut events = Events::open(http.local_addr(), "", "");
    let welcome = events.next().unwrap();
    assert_eq!(welcome.id, 1);
    assert!(welcome.has("reconnect"), "{welcome:?}");
    for flag in ["status", "non_status", "channel_update"] {
        assert!(welcome.has(flag), "{welcome:?}");
    }
    assert!(!welcome.has("channel_shutdown"), "{welcome:?}");

    let kinds = [
        Notification::status(None),
        Notification::non_status(Some(channel("gsm1"))),
        Notification::channel_update(channel("gsm1")),
        Notification::channel_shutdown(channel("gsm1")),
    ];
    for (i, notification) in kinds.into_iter().enumerate() {
        broker.notify(notification, 1).unwrap();
        let raise = events.next().unwrap();
        assert_eq!(raise.id, 2 + i as u64);
        // a status update raises non-status too (`Kind::flags`)
        let flags = notification.kind().flags();
        for (name, flag) in [
            ("status", FlagSet::STATUS),
            ("non_status", FlagSet::NON_STATUS),
            ("channel_update", FlagSet::CHANNEL_UPDATE),
            ("channel_shutdown", FlagSet::CHANNEL_SHUTDOWN),
        ] {
            assert_eq!(
                raise.has(name),
                flags.contains(flag),
                "{notification:?}: {raise:?}"
            );
        }
        assert!(!raise.has("reconnect"), "{raise:?}");
    }
    // the broker's stop closes the stream
    broker.shutdown();
    assert!(events.next().is_none());
}

#[test]
fn a_reconnect_with_last_event_id_starts_with_a_reconnect_raise() {
    let (_broker, http) = broker();
    let mut events = Events::open(
        http.local_addr(),
        "?interest=status",
        "Last-Event-ID: 41\r\n",
    );
    let welcome = events.next().unwrap();
    assert_eq!(welcome.id, 42, "ids go on from the browser's last one");
    assert!(welcome.has("reconnect") && welcome.has("status"));
    assert!(
        !welcome.has("non_status"),
        "outside the interest: {welcome:?}"
    );
}

#[test]
fn the_channel_and_interest_filter() {
    let (broker, http) = broker();
    let mut events = Events::open(
        http.local_addr(),
        "?channel=gsm%201&interest=status,channel_update",
        "",
    );
    assert!(events.next().unwrap().has("reconnect"));
    // another channel's, one outside the interest, then ours: only ours comes
    broker
        .notify(Notification::channel_update(channel("gsm 2")), 1)
        .unwrap();
    broker
        .notify(Notification::non_status(Some(channel("gsm 1"))), 1)
        .unwrap();
    broker
        .notify(Notification::status(Some(channel("gsm 1"))), 1)
        .unwrap();
    let raise = events.next().unwrap();
    assert!(raise.has("status"), "{raise:?}");
    assert!(!raise.has("non_status") && !raise.has("channel_update"));
}

#[test]
fn a_client_that_does_not_read_gets_its_raises_or_ed_in_bounded_bytes() {
    let (broker, http) = broker();
    // a small receive window, as a stalled browser's fills
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&http.local_addr().into()).unwrap();
    let mut events = Events::on(socket.into(), "", "");
    // R rounds of alternating kinds, each of which the server could write
    // as an event of its own (two requests in turn: the HTTP loop has
    // served the raise), so the socket fills; then a channel shutdown
    const R: usize = 2_000;
    for i in 0..R {
        let n = if i % 2 == 0 {
            Notification::non_status(None)
        } else {
            Notification::channel_update(channel("gsm1"))
        };
        broker.notify(n, 1).unwrap();
        broker.stats().unwrap();
        for _ in 0..2 {
            assert_eq!(get(http.local_addr(), "/healthz", "").0, 200);
        }
    }
    broker
        .notify(Notification::channel_shutdown(channel("gsm1")), 1)
        .unwrap();
    broker.stats().unwrap();
    // now read up to the channel shutdown: nothing is lost, and raises
    // made while the socket was full came OR-ed into one event
    let (mut seen, mut or_ed) = (0, 0);
    loop {
        let raise = events.next().expect("the stream stays open");
        seen += 1;
        if raise.has("reconnect") {
            continue;
        }
        if raise.has("non_status") && raise.has("channel_update") {
            or_ed += 1;
        }
        if raise.has("channel_shutdown") {
            break;
        }
    }
    assert!(or_ed > 0, "no event carried two raises ({seen} events)");
    eprintln!(
        "coalescing: {seen} events, {or_ed} OR-ed, {} bytes",
        events.read
    );
    // an event per round would be R events of ~150 bytes
    assert!(seen < R / 2, "{seen} events for {R} rounds");
    assert!(events.read < 64 * 1024, "{} bytes", events.read);
}

#[test]
fn a_client_that_stops_reading_is_closed_after_the_stuck_timeout() {
    let (broker, http) = broker_with(BrokerConfig {
        stuck_timeout: Duration::from_millis(200),
        ..BrokerConfig::default()
    });
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(2048).unwrap();
    socket.connect(&http.local_addr().into()).unwrap();
    // never read past the first event
    let mut events = Events::on(socket.into(), "", "");
    assert!(events.next().unwrap().has("reconnect"));
    assert_eq!(broker.stats().unwrap().listening, 1);
    // alternate kinds, so that each event has something to carry, until
    // the buffers are full, the client is stuck and the server closes it
    // (it then stops listening)
    let deadline = Instant::now() + LONG;
    while broker.stats().unwrap().listening != 0 {
        broker.notify(Notification::status(None), 1).unwrap();
        broker.notify(Notification::non_status(None), 1).unwrap();
        assert!(Instant::now() < deadline, "a stuck SSE client stayed open");
        std::thread::yield_now();
    }
    // the loop was never held up: other requests are served
    assert_eq!(get(http.local_addr(), "/healthz", "").0, 200);
}

#[test]
fn bad_values_get_400_with_a_reason() {
    let (_broker, http) = broker();
    for (query, why) in [
        ("?interest=status,bogus", "bogus"),
        ("?interest=", "interest"),
        ("?channel=", "channel"),
        ("?channel=a&channel=b", "twice"),
        (
            "?channel=0123456789012345678901234567890123456789",
            "channel",
        ),
    ] {
        let (code, _, body) = get(http.local_addr(), &format!("/events{query}"), "");
        assert_eq!(code, 400, "{query}: {body}");
        assert!(body.contains(why), "{query}: {body}");
    }
}

#[test]
fn reads_from_outside_allow_listeners_are_403() {
    let (_broker, http) = broker_with(BrokerConfig {
        allow_listeners: vec!["10.0.0.0/8".parse().unwrap()],
        ..BrokerConfig::default()
    });
    for path in ["/events", "/stats.json"] {
        let (code, _, body) = get(http.local_addr(), path, "");
        assert_eq!(code, 403, "{path}: {body}");
        assert!(body.contains("allow_listeners"), "{body}");
    }
    // the page, the metrics and the health check stay open, as /metrics was
    for path in ["/", "/metrics", "/healthz"] {
        assert_eq!(get(http.local_addr(), path, "").0, 200, "{path}");
    }
    let (_broker, http) = broker_with(BrokerConfig {
        allow_listeners: vec!["127.0.0.0/8".parse().unwrap()],
        ..BrokerConfig::default()
    });
    assert_eq!(get(http.local_addr(), "/stats.json", "").0, 200);
}

#[test]
fn a_full_listener_table_is_503_with_the_reason() {
    let (_broker, http) = broker_with(BrokerConfig {
        max_listeners: 1,
        ..BrokerConfig::default()
    });
    let mut first = Events::open(http.local_addr(), "", "");
    assert!(first.next().unwrap().has("reconnect"));
    let (code, _, body) = get(http.local_addr(), "/events", "");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("refused"), "{body}");
    // the first one's place frees when it leaves
    drop(first);
    let deadline = Instant::now() + LONG;
    loop {
        let (code, _, _) = get(http.local_addr(), "/stats.json", "");
        assert_eq!(code, 200);
        let s = TcpStream::connect(http.local_addr()).unwrap();
        let mut s2 = s.try_clone().unwrap();
        write!(s2, "GET /events HTTP/1.1\r\n\r\n").unwrap();
        let mut head = [0u8; 12];
        s2.set_read_timeout(Some(LONG)).unwrap();
        s2.read_exact(&mut head).unwrap();
        if &head == b"HTTP/1.1 200" {
            break;
        }
        assert!(Instant::now() < deadline, "the slot was not freed");
        std::thread::yield_now();
    }
}

#[test]
fn bad_heads_are_refused_and_a_slow_head_is_closed() {
    let (_broker, http) = broker();
    let addr = http.local_addr();
    let raw = |bytes: &[u8]| {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(LONG)).unwrap();
        s.write_all(bytes).unwrap();
        let mut response = String::new();
        let _ = s.read_to_string(&mut response);
        split(&response)
    };
    let (code, head, _) = raw(b"POST /events HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(code, 405);
    assert!(head.contains("Allow: GET, HEAD"), "{head}");
    let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "y".repeat(20_000));
    assert_eq!(raw(huge.as_bytes()).0, 431);
    assert_eq!(raw(b"NOT HTTP AT ALL\x00\r\n\r\n").0, 400);
    let (code, head, body) = raw(b"HEAD /healthz HTTP/1.1\r\n\r\n");
    assert_eq!((code, body.as_str()), (200, ""), "{head}");
    let (code, head, body) = get(addr, "/", "");
    assert_eq!(code, 200);
    assert!(head.contains("text/html; charset=utf-8"), "{head}");
    assert!(body.contains("<html"), "{body}");

    // a head that never ends is closed after the head timeout, while
    // other requests are served meanwhile
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
        .unwrap();
    assert_eq!(get(addr, "/healthz", "").0, 200);
    slow.set_read_timeout(Some(LONG + LONG)).unwrap();
    let mut b = [0u8; 1];
    let end = slow.read(&mut b);
    assert!(
        matches!(end, Ok(0)),
        "not closed without a response: {end:?}"
    );
}

#[test]
fn stats_json_counts_a_notification() {
    let (broker, http) = broker();
    flagpost_std::Notifier::new(broker.local_addr())
        .unwrap()
        .notify_status_update(None);
    let deadline = Instant::now() + LONG;
    loop {
        let (code, head, body) = get(http.local_addr(), "/stats.json", "");
        assert_eq!(code, 200, "{body}");
        assert!(head.contains("application/json"), "{head}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(v["time_ms"].as_u64().unwrap() > 0);
        assert!(v["uptime_ms"].as_u64().is_some(), "{body}");
        let metrics = v["metrics"].as_array().unwrap();
        let value = |name: &str, label: serde_json::Value| {
            metrics
                .iter()
                .find(|m| m["name"] == name && m["labels"] == label)
                .and_then(|m| m["value"].as_u64())
        };
        // the datagram (its tail-loss probe counts as a status datagram too)
        let status = value(
            "flagpost_datagrams_total",
            serde_json::json!({"kind": "status"}),
        );
        let delivered = value("flagpost_delivered_total", serde_json::Value::Null);
        if delivered == Some(1) {
            assert!(status.is_some_and(|n| n >= 1), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "not counted: {body}");
        std::thread::yield_now();
    }
}

/// A key file in a fresh directory of its own, removed with the
/// directory when it is dropped.
fn key_file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key");
    flagpost_std::keyfile::generate_key_file(&path).unwrap();
    (dir, path)
}

#[test]
fn with_a_key_events_and_stats_need_the_token() {
    let (_dir, path) = key_file();
    let (_broker, http) = broker_with(BrokerConfig {
        key_file: Some(path.clone()),
        ..BrokerConfig::default()
    });
    let addr = http.local_addr();
    let out = std::process::Command::new(common::BIN)
        .args(["http-token", "--key-file", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let key = flagpost_std::keyfile::read_key_file(&path).unwrap();
    assert_eq!(token, flagpost_std::http::token(&key));

    for path in ["/stats.json", "/events", "/events?token=00112233"] {
        let (code, head, _) = get(addr, path, "");
        assert_eq!(code, 401, "{path}");
        assert!(head.contains("WWW-Authenticate: Bearer"), "{head}");
    }
    let (code, _, _) = get(addr, "/stats.json", "Authorization: Bearer nottoken\r\n");
    assert_eq!(code, 401);
    let (code, _, _) = get(
        addr,
        "/stats.json",
        &format!("Authorization: Bearer {token}\r\n"),
    );
    assert_eq!(code, 200);
    let (code, _, _) = get(addr, &format!("/stats.json?token={token}"), "");
    assert_eq!(code, 200);
    // the browser's way: the token in the query
    let mut events = Events::open(addr, &format!("?interest=status&token={token}"), "");
    assert!(events.next().unwrap().has("reconnect"));
    let mut events = Events::open(addr, "", &format!("Authorization: Bearer {token}\r\n"));
    assert!(events.next().unwrap().has("reconnect"));
    // the rest stays open, as /metrics was
    for path in ["/", "/metrics", "/healthz"] {
        assert_eq!(get(addr, path, "").0, 200, "{path}");
    }
    // a rotated key takes effect for the next requests
    let other = flagpost_std::core::auth::Key::new(&[9u8; 32]).unwrap();
    http.keys()
        .set(Some(flagpost_std::core::auth::Keyring::new(other.clone())));
    let bearer = |t: &str| format!("Authorization: Bearer {t}\r\n");
    assert_eq!(get(addr, "/stats.json", &bearer(&token)).0, 401);
    let new = flagpost_std::http::token(&other);
    assert_eq!(get(addr, "/stats.json", &bearer(&new)).0, 200);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn dropping_the_server_closes_its_streams() {
    let (_broker, http) = broker();
    let mut events = Events::open(http.local_addr(), "", "");
    assert!(events.next().unwrap().has("reconnect"));
    drop(http);
    assert!(events.next().is_none());
}

#[cfg(unix)]
#[test]
fn flagpost_serve_takes_the_token_of_a_key_rotated_by_sighup() {
    let (_dir, path) = key_file();
    // a free port for --metrics (serve announces only the broker's)
    let http = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let server = common::Server::start(&[
        "--metrics",
        &http.to_string(),
        "--key-file",
        path.to_str().unwrap(),
    ]);
    let token = |path: &PathBuf| {
        flagpost_std::http::token(&flagpost_std::keyfile::read_key_file(path).unwrap())
    };
    let bearer = |t: &str| format!("Authorization: Bearer {t}\r\n");
    let old = token(&path);
    // serve announces its address once the HTTP server is up
    assert_eq!(get(http, "/stats.json", &bearer(&old)).0, 200);
    assert_eq!(get(http, "/stats.json", "").0, 401);

    let fresh = path.with_extension("new");
    flagpost_std::keyfile::generate_key_file(&fresh).unwrap();
    std::fs::rename(&fresh, &path).unwrap();
    let new = token(&path);
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let deadline = Instant::now() + LONG;
    while get(http, "/stats.json", &bearer(&new)).0 != 200 {
        assert!(Instant::now() < deadline, "the new key's token is refused");
        std::thread::yield_now();
    }
    assert_eq!(get(http, "/stats.json", &bearer(&old)).0, 401);
    assert!(server.stop().success());
}
