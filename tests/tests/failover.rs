//! Listener fail-over between two `flagpost serve` processes on loopback:
//! the library listener and `flagpost listen --broker a,b` move to the
//! other broker when theirs is killed, within the backoff cap, with their
//! reconnect raise, and then take notifications from it; with both down
//! they try the brokers in turn until one comes back.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use flagpost_std::core::listener::ListenerConfig;
use flagpost_std::core::FlagSet;
use flagpost_std::listener::LinkEvent;
use flagpost_std::{ListenError, Listener, ListenerState, Notifier};
use flagpost_tests::process::{flagpost_bin, run, BrokerProcess};

/// Bounds a failure only.
const LONG: Duration = Duration::from_secs(20);
/// A move must be done within the backoff cap; this much more is allowed
/// for a loaded CI machine (a generous deadline, not a measurement).
const SLACK: Duration = Duration::from_secs(3);

fn addr(b: &BrokerProcess) -> SocketAddr {
    b.addr.parse().unwrap()
}

/// Waits for the next raise and checks it is the reconnect raise (a
/// re-check, never a shutdown).
fn reconnect_raise(l: &Listener) {
    assert!(l.wait(LONG), "no reconnect raise");
    let raise = l.take_raise();
    assert!(raise.reconnect, "{raise:?}");
    assert_eq!(raise.flags, FlagSet::RECHECK);
}

/// A status update sent to `broker` reaches `l`, as a notification.
fn notified_through(l: &Listener, broker: &BrokerProcess) {
    let notifier = Notifier::new(broker.addr.as_str()).unwrap();
    notifier
        .notify_status_update_confirmed(None, LONG)
        .expect("the broker acknowledges");
    assert!(l.wait(LONG), "the notification did not arrive");
    let raise = l.take_raise();
    assert!(!raise.reconnect, "{raise:?}");
    assert!(raise.flags.contains(FlagSet::STATUS), "{raise:?}");
}

/// Waits until `l` listens on `broker`; returns how long that took.
fn moved_to(l: &Listener, broker: SocketAddr, since: Instant) -> Duration {
    let deadline = since + LONG;
    while !(l.state() == ListenerState::Listening && l.broker() == Some(broker)) {
        assert!(Instant::now() < deadline, "never listened on {broker}");
        l.wait_listening(Duration::from_millis(50));
    }
    since.elapsed()
}

#[test]
fn a_listener_fails_over_to_the_second_broker_and_back() {
    let mut a = BrokerProcess::start("127.0.0.1:0", &[]);
    let mut b = BrokerProcess::start("127.0.0.1:0", &[]);
    let l = Listener::builder()
        .connect_any(&[a.addr.as_str(), b.addr.as_str()])
        .unwrap();
    assert!(l.wait_listening(LONG));
    assert_eq!(l.broker(), Some(addr(&a)), "starts with the first");
    reconnect_raise(&l);
    notified_through(&l, &a);

    a.kill();
    let lost = Instant::now();
    reconnect_raise(&l);
    let took = moved_to(&l, addr(&b), lost);
    eprintln!("moved to the second broker in {took:?}");
    assert!(took < Duration::from(ListenerConfig::BACKOFF_MAX) + SLACK);
    notified_through(&l, &b);

    // the first back: the listener stays on the second, which works
    a.restart();
    notified_through(&l, &b);
    assert_eq!(l.broker(), Some(addr(&b)));

    b.kill();
    let lost = Instant::now();
    reconnect_raise(&l);
    let took = moved_to(&l, addr(&a), lost);
    eprintln!("moved back to the first broker in {took:?}");
    assert!(took < Duration::from(ListenerConfig::BACKOFF_MAX) + SLACK);
    notified_through(&l, &a);
}

#[test]
fn with_every_broker_down_it_tries_them_in_turn() {
    let mut a = BrokerProcess::start("127.0.0.1:0", &[]);
    let mut b = BrokerProcess::start("127.0.0.1:0", &[]);
    let (a_addr, b_addr) = (addr(&a), addr(&b));
    a.kill();
    b.kill();
    let l = Listener::builder()
        .backoff(Duration::from_millis(10), Duration::from_millis(50))
        .connect_any(&[a_addr, b_addr])
        .unwrap();
    let deadline = Instant::now() + LONG;
    let mut tried = Vec::new();
    while tried.len() < 5 {
        assert!(Instant::now() < deadline, "{tried:?}");
        l.wait_listening(Duration::from_millis(20));
        tried.extend(l.take_link_events().into_iter().filter_map(|e| match e {
            LinkEvent::Connecting(to) => Some(to),
            _ => None,
        }));
    }
    assert_eq!(tried[..5], [a_addr, b_addr, a_addr, b_addr, a_addr]);
    b.restart();
    moved_to(&l, b_addr, Instant::now());
    reconnect_raise(&l);
    notified_through(&l, &b);
}

#[test]
fn a_bad_list_is_a_typed_error_at_build_time() {
    let none: [&str; 0] = [];
    assert!(matches!(
        Listener::builder().connect_any(&none),
        Err(ListenError::Brokers(0))
    ));
    let many = vec!["127.0.0.1:1"; 256];
    assert!(matches!(
        Listener::builder().connect_any(&many),
        Err(ListenError::Brokers(256))
    ));
    assert!(matches!(
        Listener::builder().connect_any(&["127.0.0.1:1", "no-such-host.invalid:1"]),
        Err(ListenError::Resolve(_))
    ));
}

/// A `flagpost listen` child, killed on drop; stdout and stderr lines go
/// to channels.
struct Cli {
    child: Child,
    out: mpsc::Receiver<String>,
    err: mpsc::Receiver<String>,
}

fn lines(from: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Cli {
    fn listen(args: &[&str]) -> Cli {
        let mut child = Command::new(flagpost_bin())
            .arg("listen")
            .args(args)
            .env_remove("FLAGPOST_BROKER")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = lines(child.stdout.take().unwrap());
        let err = lines(child.stderr.take().unwrap());
        Cli { child, out, err }
    }

    /// Waits for a stderr line containing `text`; returns it.
    fn said(&self, text: &str) -> String {
        let deadline = Instant::now() + LONG;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.err.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(line) => seen.push(line),
                Err(_) => panic!("no {text:?} on stderr; saw {seen:?}"),
            }
        }
    }

    /// Waits for the process to exit (its stdout to close); its status and
    /// the lines it printed.
    fn exit(&mut self) -> (std::process::ExitStatus, Vec<String>) {
        let deadline = Instant::now() + LONG;
        let mut printed = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.out.recv_timeout(left) {
                Ok(line) => printed.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("flagpost listen did not exit; printed {printed:?}")
                }
            }
        }
        (self.child.wait().unwrap(), printed)
    }
}

impl Drop for Cli {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn cli_listen_prints_the_reconnect_raise_from_the_second_when_the_first_dies() {
    let mut a = BrokerProcess::start("127.0.0.1:0", &[]);
    let b = BrokerProcess::start("127.0.0.1:0", &[]);
    let list = format!("{},{}", a.addr, b.addr);
    let mut cli = Cli::listen(&["--broker", &list, "--once", "--json"]);
    cli.said(&format!("listening on {}", a.addr));
    a.kill();
    cli.said(&format!("reconnected to {}", b.addr));
    let (status, lines) = cli.exit();
    assert!(status.success(), "{status:?}");
    let printed: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let flags: Vec<&str> = printed
        .iter()
        .map(|v| v["flag"].as_str().unwrap())
        .collect();
    assert_eq!(
        flags,
        ["status", "non-status", "channel-update"],
        "{printed:?}"
    );
    assert!(
        printed.iter().all(|v| v["reconnect"] == true),
        "{printed:?}"
    );
}

#[test]
fn cli_listen_starts_on_the_second_when_the_first_is_down() {
    let mut a = BrokerProcess::start("127.0.0.1:0", &[]);
    let b = BrokerProcess::start("127.0.0.1:0", &[]);
    a.kill();
    let list = format!("{},{}", a.addr, b.addr);
    let mut cli = Cli::listen(&["--broker", &list, "--once", "--json"]);
    cli.said(&format!("listening on {}", b.addr));
    Notifier::new(b.addr.as_str())
        .unwrap()
        .notify_status_update_confirmed(None, LONG)
        .expect("the broker acknowledges");
    let (status, lines) = cli.exit();
    assert!(status.success(), "{status:?}");
    let line = lines.first().expect("a line");
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["flag"], "status", "{line}");
    assert_eq!(v["reconnect"], false, "{line}");
}

#[test]
fn cli_listen_passes_over_a_peer_that_is_not_a_broker_in_a_list() {
    let http = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let wrong = http.local_addr().unwrap().to_string();
    // answers every connection as a web server would, until the test ends
    std::thread::spawn(move || {
        for mut s in http.incoming().map_while(Result::ok) {
            use std::io::Write;
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let b = BrokerProcess::start("127.0.0.1:0", &[]);
    let list = format!("{wrong},{}", b.addr);
    let cli = Cli::listen(&["--broker", &list, "--once", "--json"]);
    cli.said("not a Flagpost broker");
    cli.said(&format!("listening on {}", b.addr));
    // alone, the same peer ends listen: a wrong address will not heal
    let out = run(&["listen", "--broker", &wrong, "--once", "--timeout", "15s"]);
    assert_eq!(out.status.code(), Some(9), "{out:?}");
}

#[test]
fn cli_broker_lists_are_checked() {
    let out = run(&[
        "listen",
        "--broker",
        "127.0.0.1:1,,127.0.0.1:2",
        "--timeout",
        "15s",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty address"));
    // a list is for listen only
    let out = run(&["notify", "status", "--broker", "127.0.0.1:1,127.0.0.1:2"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("flagpost listen"));
}
