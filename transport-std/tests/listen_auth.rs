//! Listener authentication across processes and in-process: a real
//! `flagpost serve --key-file`, `flagpost listen` and `flagpost stats` with
//! the right key, none, another one, and against a keyless broker; and the
//! library `Listener` reporting a refusal without spinning. Notifications to
//! a keyed broker are signed by hand here (the tag over every byte before
//! it), since a keyed broker drops unsigned datagrams.

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use flagpost_std::core::auth::Key;
use flagpost_std::core::listener::AuthError;
use flagpost_std::core::wire::{NotifyRepr, SenderId, Seq, MAX_DATAGRAM_LEN, TAG_LEN};
use flagpost_std::core::Notification;
use flagpost_std::{Broker, BrokerConfig, BrokerHandle, ListenError, Listener, ListenerState};

mod common;

use common::{Server, BIN};

const LONG: Duration = Duration::from_secs(10);

/// A key file holding `secret` (owner-only, as the broker requires), in a
/// fresh temporary file removed when dropped.
fn key_file(secret: [u8; 32]) -> tempfile::TempPath {
    let path = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    std::fs::remove_file(&path).unwrap();
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(&path).unwrap(), hex.as_bytes()).unwrap();
    path
}

const SECRET: [u8; 32] = [0x5a; 32];
const OTHER: [u8; 32] = [0xa5; 32];

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A status update for all channels, signed with `secret`.
fn send_signed(to: &str, secret: [u8; 32], seq: u32) {
    let mut d = [0u8; MAX_DATAGRAM_LEN];
    let n = NotifyRepr {
        notification: Notification::status(None),
        sender: SenderId(0x7e57),
        seq: Seq(seq),
        batch: 1,
        ack_requested: false,
        probe: false,
        tag: None,
    }
    .emit(&mut d)
    .unwrap();
    d[4] |= 0b10; // tagged
    let tag = Key::new(&secret).unwrap().tag(&[&d[..n]]);
    d[n..n + TAG_LEN].copy_from_slice(&tag);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(&d[..n + TAG_LEN], to).unwrap();
}

/// The value of `name` in `flagpost stats` text output.
fn stat(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in {text}"))
}

#[test]
fn a_keyed_listener_gets_a_signed_notification_from_a_keyed_broker() {
    let key = key_file(SECRET);
    let key = key.to_str().unwrap();
    let server = Server::start(&["--key-file", key]);
    let listen = common::listen(
        &server.addr,
        &["--once", "--timeout", "20s", "--key-file", key],
    );
    send_signed(&server.addr, SECRET, 1);
    let out = listen.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "status\nnon-status\n");
    assert!(server.stop().success());
}

#[test]
fn listen_without_the_key_or_with_another_exits_with_why() {
    let key = key_file(SECRET);
    let other = key_file(OTHER);
    let server = Server::start(&["--key-file", key.to_str().unwrap()]);
    let addr = server.addr.as_str();
    let (code, _, stderr) = run(&["listen", "--broker", addr, "--timeout", "20s"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("refused: unauthorized (the broker has a key; pass --key-file)"),
        "{stderr}"
    );
    let (code, _, stderr) = run(&[
        "listen",
        "--broker",
        addr,
        "--timeout",
        "20s",
        "--key-file",
        other.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("refused: unauthorized (the broker's key is not the one in --key-file)"),
        "{stderr}"
    );

    // stats: refused the same ways, served with the key, and the refusals
    // are counted
    let (code, _, stderr) = run(&["stats", "--broker", addr]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("pass --key-file"), "{stderr}");
    let (code, _, stderr) = run(&[
        "stats",
        "--broker",
        addr,
        "--key-file",
        other.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("not the one in --key-file"), "{stderr}");
    let (code, stdout, stderr) = run(&[
        "stats",
        "--broker",
        addr,
        "--key-file",
        key.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    // two listens (each exits at its first refusal, but its listener may
    // have tried once more meanwhile) and two stats requests
    let refused = stat(&stdout, "flagpost_listeners_unauthorized_total");
    assert!((4..=6).contains(&refused), "{refused}");
    assert_eq!(stat(&stdout, "flagpost_stats_requests_total"), 1);
    let closed = "flagpost_connections_closed_total{reason=\"unauthorized\"}";
    assert_eq!(stat(&stdout, closed), refused);
    assert!(server.stop().success());
}

#[test]
fn a_keyed_listen_or_stats_against_a_keyless_broker_says_the_broker_has_no_key() {
    let key = key_file(SECRET);
    let key = key.to_str().unwrap();
    let server = Server::start(&[]);
    let addr = server.addr.as_str();
    let (code, _, stderr) = run(&[
        "listen",
        "--broker",
        addr,
        "--timeout",
        "20s",
        "--key-file",
        key,
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("the broker has no key"), "{stderr}");
    let (code, _, stderr) = run(&["stats", "--broker", addr, "--key-file", key]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("the broker has no key"), "{stderr}");
    // keyless both ways: version 1, as before
    let (code, stdout, stderr) = run(&["stats", "--broker", addr]);
    assert_eq!(code, 0, "{stderr}");
    let refused = stat(&stdout, "flagpost_listeners_unauthorized_total");
    assert!((2..=3).contains(&refused), "{refused}");
    assert!(server.stop().success());
}

fn keyed_broker(key: &std::path::Path) -> BrokerHandle {
    Broker::spawn(BrokerConfig {
        bind: vec!["127.0.0.1:0".parse().unwrap()],
        key_file: Some(key.to_owned()),
        ..BrokerConfig::default()
    })
    .unwrap()
}

#[test]
fn the_library_listener_reports_a_refusal_and_keeps_backing_off() {
    let path = key_file(SECRET);
    let broker = keyed_broker(&path);
    let addr = broker.local_addr();

    let keyed = Listener::builder()
        .key(Key::new(&SECRET).unwrap())
        .connect(addr)
        .unwrap();
    assert!(keyed.wait_listening(LONG));
    assert!(keyed.auth_error().is_none());

    // without a key: wait_listening returns at the refusal, not at its
    // timeout, and says why
    let keyless = Listener::builder()
        .backoff(Duration::from_millis(50), Duration::from_secs(5))
        .connect(addr)
        .unwrap();
    let started = std::time::Instant::now();
    assert!(!keyless.wait_listening(Duration::from_secs(60)));
    assert!(started.elapsed() < Duration::from_secs(30));
    let error = keyless.auth_error().expect("a refusal");
    assert!(
        matches!(error, ListenError::Auth(AuthError::KeyRequired)),
        "{error:?}"
    );
    assert!(error.to_string().contains("unauthorized"), "{error}");
    assert_ne!(keyless.state(), ListenerState::Listening);
    // it retries with its backoff, not in a loop: the next wait ends at the
    // next refusal
    assert!(!keyless.wait_listening(LONG));
    let refused = broker.stats().unwrap().listeners_unauthorized;
    assert!((2..100).contains(&refused), "{refused} refusals");

    // the keyed listener is served all along
    send_signed(&addr.to_string(), SECRET, 1);
    assert!(keyed.wait(LONG));
    keyed.take_raise();
    send_signed(&addr.to_string(), SECRET, 2);
    assert!(keyed.wait(LONG));
    assert!(keyed.check_status_update());
    drop((keyed, keyless));
    broker.shutdown();
    broker.join().unwrap();
}
