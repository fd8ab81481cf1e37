//! Brokers joined over NATS, as real processes on loopback with a real
//! `nats-server` (Debian's package; `test.sh` installs it): a notification
//! accepted by one broker wakes listeners on the others, within their
//! channel; nothing loops; a datagram sent to two brokers reaches a
//! listener once; keyed brokers federate and a broker with another key
//! rejects; a NATS outage raises a re-check on every broker; a broker stops
//! cleanly while NATS is down.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flagpost_std::core::auth::Key;
use flagpost_std::core::wire::{NotifyRepr, SenderId, Seq, MAX_DATAGRAM_LEN, TAG_LEN};
use flagpost_std::core::{ChannelId, FlagSet, Notification};
use flagpost_std::keyfile::{generate_key_file, read_key_file};
use flagpost_std::{Listener, ListenerState, Notifier};
use flagpost_tests::nats::NatsServer;
use flagpost_tests::process::{flagpost_bin, run, BrokerProcess};

mod common;

/// Bounds a failure only.
const LONG: Duration = Duration::from_secs(20);

fn channel(name: &str) -> ChannelId {
    ChannelId::new(name).unwrap()
}

/// `flagpost serve --federation URL ARGS…` on a free loopback port.
fn broker(nats: &str, args: &[&str]) -> BrokerProcess {
    let mut all = vec!["--federation", nats];
    all.extend_from_slice(args);
    BrokerProcess::start("127.0.0.1:0", &all)
}

/// The sum of the stats entries named `name` (all labels).
fn stat(addr: &str, key: Option<&Path>, name: &str) -> u64 {
    common::stat(addr, key, name, None)
}

/// The `loop` rejects of a (keyless) broker.
fn loops(addr: &str) -> u64 {
    common::stat(
        addr,
        None,
        "flagpost_federated_rejects_total",
        Some(("reason", "loop")),
    )
}

/// Waits until `cond` holds, or fails naming `what`.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + LONG;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the broker's federation link is up (its subscription in
/// place).
fn wait_linked(addr: &str, key: Option<&Path>) {
    wait_until("the federation link is up", || {
        stat(addr, key, "flagpost_federation_connected") == 1
    });
}

/// A listener on `addr`, listening, its first welcome's raise taken.
fn listener(addr: &str, channel: Option<ChannelId>, key: Option<&Key>) -> Listener {
    let mut b = Listener::builder();
    if let Some(c) = channel {
        b = b.channel(c);
    }
    if let Some(k) = key {
        b = b.key(k.clone());
    }
    let l = b.connect(addr).unwrap();
    assert!(l.wait_listening(LONG));
    assert!(l.wait(LONG) && l.take_raise().reconnect);
    l
}

/// Takes raises until one holds `marker`; fails if any holds `never` (or a
/// reconnect mark) on the way. The marker is a later notification: once it
/// is seen, an earlier one would have been seen too.
fn until_marker(l: &Listener, marker: FlagSet, never: FlagSet) {
    let deadline = Instant::now() + LONG;
    loop {
        assert!(Instant::now() < deadline, "the marker never came");
        if !l.wait(Duration::from_millis(50)) {
            continue;
        }
        let raise = l.take_raise();
        assert!(!raise.reconnect, "{raise:?}");
        assert!(
            !raise.flags.intersects(never),
            "raised {:?}, expected none of {never:?}",
            raise.flags
        );
        if raise.flags.intersects(marker) {
            return;
        }
    }
}

/// Waits for the next raise and returns its flags.
fn next_raise(l: &Listener) -> FlagSet {
    assert!(l.wait(LONG), "no raise");
    let raise = l.take_raise();
    assert!(!raise.reconnect, "{raise:?}");
    raise.flags
}

/// A fresh key file, removed when dropped.
fn key_file() -> tempfile::TempPath {
    let path = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    std::fs::remove_file(&path).unwrap();
    generate_key_file(&path).unwrap();
    path
}

/// A notifier without the tail-loss probe: each notification is then one
/// federation message, so the counts the tests assert are exact (a probe
/// whose original arrived crosses too: core's federate_tests).
fn unprobed(addr: &str) -> Notifier {
    Notifier::builder()
        .probe_delay(Duration::ZERO)
        .build(addr)
        .unwrap()
}

#[test]
fn a_notification_on_one_broker_wakes_the_others_within_their_channel_and_never_loops() {
    let nats = NatsServer::start();
    let brokers: Vec<BrokerProcess> = (0..3).map(|_| broker(&nats.url(), &[])).collect();
    for b in &brokers {
        wait_linked(&b.addr, None);
    }
    let (a, b, c) = (&brokers[0].addr, &brokers[1].addr, &brokers[2].addr);
    let on_a = listener(a, None, None);
    let on_b = listener(b, None, None);
    let b_gsm1 = listener(b, Some(channel("gsm1")), None);
    let c_gsm2 = listener(c, Some(channel("gsm2")), None);
    let on_c = listener(c, None, None);

    unprobed(a).notify_channel_update(channel("gsm1"));
    for l in [&on_a, &on_b, &b_gsm1, &on_c] {
        assert_eq!(next_raise(l), FlagSet::CHANNEL_UPDATE);
    }
    // then a status update from C: A's listener sees it and nothing else
    // (an echo of the first would raise channel update again), and C's
    // gsm2 listener sees only that (never gsm1's channel update)
    unprobed(c).notify_status_update(None);
    until_marker(&on_a, FlagSet::STATUS, FlagSet::CHANNEL_UPDATE);
    until_marker(&b_gsm1, FlagSet::STATUS, FlagSet::CHANNEL_UPDATE);
    until_marker(&c_gsm2, FlagSet::STATUS, FlagSet::CHANNEL_UPDATE);
    until_marker(&on_b, FlagSet::STATUS, FlagSet::CHANNEL_UPDATE);
    for (i, broker) in brokers.iter().enumerate() {
        assert_eq!(loops(&broker.addr), 0, "broker {i} heard itself");
        let federated = stat(&broker.addr, None, "flagpost_federated_total");
        assert!(federated >= 1, "broker {i} federated {federated}");
    }
    // A and C published one each, B nothing
    for (broker, published) in [(a, 1), (b, 0), (c, 1)] {
        assert_eq!(
            stat(broker, None, "flagpost_federation_published_total"),
            published
        );
    }
    // B heard exactly A's notification and C's
    assert_eq!(stat(b, None, "flagpost_federated_total"), 2);
}

/// A notify datagram from `sender` with sequence `seq`.
fn datagram(n: Notification, sender: u64, seq: u32) -> Vec<u8> {
    let mut buf = [0u8; MAX_DATAGRAM_LEN];
    let len = NotifyRepr {
        notification: n,
        sender: SenderId(sender),
        seq: Seq(seq),
        batch: 1,
        ack_requested: false,
        probe: false,
        tag: None::<[u8; TAG_LEN]>,
    }
    .emit(&mut buf)
    .unwrap();
    buf[..len].to_vec()
}

#[test]
fn the_same_datagram_sent_to_two_brokers_reaches_a_listener_once() {
    let nats = NatsServer::start();
    let a = broker(&nats.url(), &[]);
    let b = broker(&nats.url(), &[]);
    wait_linked(&a.addr, None);
    wait_linked(&b.addr, None);
    let on_b = listener(&b.addr, None, None);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (a_addr, b_addr): (SocketAddr, SocketAddr) =
        (a.addr.parse().unwrap(), b.addr.parse().unwrap());
    let sender = 0x00fe_d0fe_d0fe_d001;
    let first = datagram(Notification::status(None), sender, 1);
    // through A and the federation first, then straight to B
    udp.send_to(&first, a_addr).unwrap();
    // (a status update raises non-status too)
    assert!(next_raise(&on_b).contains(FlagSet::STATUS));
    let duplicates = stat(&b.addr, None, "flagpost_duplicates_total");
    udp.send_to(&first, b_addr).unwrap();
    // the next sequence number, another kind: the marker
    let marker = datagram(Notification::non_status(None), sender, 2);
    udp.send_to(&marker, b_addr).unwrap();
    until_marker(&on_b, FlagSet::NON_STATUS, FlagSet::STATUS);
    assert_eq!(
        stat(&b.addr, None, "flagpost_duplicates_total"),
        duplicates + 1
    );
    // the marker reached A through the federation too, and A's table has
    // seen sequence 2 already: sent to A, it is a duplicate there
    wait_until("A heard the marker", || {
        stat(&a.addr, None, "flagpost_federated_total") >= 1
    });
    let on_a = listener(&a.addr, None, None);
    udp.send_to(&marker, a_addr).unwrap();
    let third = datagram(Notification::channel_update(channel("x")), sender, 3);
    udp.send_to(&third, a_addr).unwrap();
    until_marker(&on_a, FlagSet::CHANNEL_UPDATE, FlagSet::NON_STATUS);
}

#[test]
fn keyed_brokers_federate_and_a_broker_with_another_key_rejects() {
    let nats = NatsServer::start();
    let (k1, k2) = (key_file(), key_file());
    let (key1, key2) = (read_key_file(&k1).unwrap(), read_key_file(&k2).unwrap());
    let arg = |p: &tempfile::TempPath| p.to_str().unwrap().to_owned();
    let (k1s, k2s) = (arg(&k1), arg(&k2));
    let a = broker(&nats.url(), &["--key-file", &k1s]);
    let b = broker(&nats.url(), &["--key-file", &k1s]);
    let c = broker(&nats.url(), &["--key-file", &k2s]);
    wait_linked(&a.addr, Some(&k1));
    wait_linked(&b.addr, Some(&k1));
    wait_linked(&c.addr, Some(&k2));
    let on_b = listener(&b.addr, None, Some(&key1));
    let on_c = listener(&c.addr, None, Some(&key2));
    let notifier = Notifier::builder()
        .key(key1.clone())
        .probe_delay(Duration::ZERO) // one message per notification: exact counts
        .build(a.addr.as_str())
        .unwrap();
    notifier.notify_status_update(None);
    assert!(next_raise(&on_b).contains(FlagSet::STATUS));
    wait_until("C rejected A's notification", || {
        stat(&c.addr, Some(&k2), "flagpost_federated_rejects_total") >= 1
    });
    assert_eq!(stat(&c.addr, Some(&k2), "flagpost_federated_total"), 0);
    // a later notification straight to C: its listener sees only that
    let to_c = Notifier::builder()
        .key(key2.clone())
        .probe_delay(Duration::ZERO)
        .build(c.addr.as_str())
        .unwrap();
    to_c.notify_non_status_update();
    until_marker(&on_c, FlagSet::NON_STATUS, FlagSet::STATUS);
    // and B rejects C's
    wait_until("B rejected C's notification", || {
        stat(&b.addr, Some(&k1), "flagpost_federated_rejects_total") >= 1
    });
    assert_eq!(stat(&b.addr, Some(&k1), "flagpost_federated_total"), 1);
}

#[test]
fn a_nats_outage_raises_a_recheck_on_every_broker() {
    let mut nats = NatsServer::start();
    let brokers: Vec<BrokerProcess> = (0..2).map(|_| broker(&nats.url(), &[])).collect();
    for b in &brokers {
        wait_linked(&b.addr, None);
    }
    let listeners: Vec<Listener> = brokers
        .iter()
        .map(|b| listener(&b.addr, None, None))
        .collect();
    nats.stop();
    for b in &brokers {
        wait_until("the broker saw the link go", || {
            stat(&b.addr, None, "flagpost_federation_connected") == 0
        });
        assert_eq!(
            stat(&b.addr, None, "flagpost_federation_link_losses_total"),
            1
        );
    }
    nats.restart();
    for (i, l) in listeners.iter().enumerate() {
        assert!(l.wait(LONG), "listener {i} got no re-check");
        let raise = l.take_raise();
        assert!(
            !raise.reconnect,
            "the listener's own connection stayed up: {raise:?}"
        );
        assert!(raise.flags.contains(FlagSet::RECHECK), "{raise:?}");
        assert!(!raise.flags.contains(FlagSet::CHANNEL_SHUTDOWN));
        assert_eq!(l.state(), ListenerState::Listening);
    }
    for b in &brokers {
        wait_linked(&b.addr, None);
        assert!(stat(&b.addr, None, "flagpost_federation_rechecks_total") >= 1);
    }
    // and the federation works again
    Notifier::new(brokers[0].addr.as_str())
        .unwrap()
        .notify_channel_shutdown(channel("gone"));
    until_marker(&listeners[1], FlagSet::CHANNEL_SHUTDOWN, FlagSet::EMPTY);
}

/// `flagpost serve --federation URL` run by hand: its announcements, and
/// its exit after SIGTERM, both with NATS never reachable and with NATS
/// gone after the link was up.
#[test]
fn a_broker_stops_cleanly_while_nats_is_down() {
    let mut nats = NatsServer::start();
    // first a broker whose NATS server is not there at all
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("nats://{}", l.local_addr().unwrap())
    };
    for url in [dead, nats.url()] {
        let mut child = Command::new(flagpost_bin())
            .args(["serve", "--bind", "127.0.0.1:0", "--federation", &url])
            .args(["--federation-subject", "fp.test"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap()
            .to_owned();
        line.clear();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), format!("federation on {url} subject fp.test"));
        // it serves whether or not NATS is there
        let l = listener(&addr, None, None);
        if nats.is_running() && url == nats.url() {
            wait_linked(&addr, None);
            nats.stop();
            wait_until("the broker saw the link go", || {
                stat(&addr, None, "flagpost_federation_connected") == 0
            });
        } else {
            assert_eq!(stat(&addr, None, "flagpost_federation_connected"), 0);
        }
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + LONG;
        let exit = loop {
            if let Some(exit) = child.try_wait().unwrap() {
                break exit;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the broker did not stop within {LONG:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(exit.success(), "{exit:?}");
        // its listener was told: shut down, not left hanging
        wait_until("the listener saw the close", || {
            l.state() != ListenerState::Listening
        });
    }
}

#[test]
fn the_federation_flags_are_checked() {
    let out = run(&["serve", "--check-config", "--federation-subject", "x"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = run(&[
        "serve",
        "--check-config",
        "--federation",
        "nats://127.0.0.1:4222",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("[federation]")
            && text.contains("nats = \"nats://127.0.0.1:4222\"")
            && text.contains("subject = \"flagpost\""),
        "{text}"
    );
    for (flag, value, key) in [
        ("--federation", "http://h:4222", "federation.nats"),
        ("--federation", "nats://u:pw@h:4222", "federation.nats"),
    ] {
        let out = run(&["serve", "--check-config", flag, value]);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key) && !err.contains("pw@"), "{err}");
    }
    let out = run(&[
        "serve",
        "--check-config",
        "--federation",
        "nats://h:4222",
        "--federation-subject",
        "fp.*",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("federation.subject"));
}

/// The in-process path (`BrokerHandle::notify`, as the PostgreSQL source
/// delivers): published as the broker's own sender, routed on the others;
/// and the broker's thread stops with it.
#[test]
fn an_in_process_notification_is_federated_and_the_broker_stops() {
    use flagpost_std::config::FederationConfig;
    use flagpost_std::{Broker, BrokerConfig};
    let nats = NatsServer::start();
    let other = broker(&nats.url(), &[]);
    let config = BrokerConfig {
        bind: vec!["127.0.0.1:0".parse().unwrap()],
        federation: Some(FederationConfig::new(nats.url())),
        ..BrokerConfig::default()
    };
    let handle = Broker::spawn(config.clone()).unwrap();
    let here = handle.local_addr().to_string();
    wait_linked(&here, None);
    wait_linked(&other.addr, None);
    let there = listener(&other.addr, Some(channel("gsm7")), None);
    for batch in [1, 2] {
        handle
            .notify(Notification::channel_update(channel("gsm7")), batch)
            .unwrap();
        assert_eq!(next_raise(&there), FlagSet::CHANNEL_UPDATE);
    }
    // two in sequence from one sender: no loss, no duplicate
    assert_eq!(stat(&other.addr, None, "flagpost_federated_total"), 2);
    assert_eq!(stat(&other.addr, None, "flagpost_duplicates_total"), 0);
    // another subject needs a restart: the reload says so and keeps it
    let moved = BrokerConfig {
        federation: Some(FederationConfig {
            subject: "elsewhere".into(),
            ..FederationConfig::new(nats.url())
        }),
        ..config
    };
    let reloaded = handle.reload(moved).unwrap();
    assert_eq!(reloaded.needs_restart, ["federation"]);
    handle
        .notify(Notification::channel_update(channel("gsm7")), 1)
        .unwrap();
    assert_eq!(next_raise(&there), FlagSet::CHANNEL_UPDATE);
    handle.shutdown();
    handle.join().unwrap();
}

/// NATS down and more notifications than the queues hold: the loop goes on
/// (it answers at once), the excess is dropped and counted, and once NATS
/// is back the other broker raises a re-check and hears this one again.
#[test]
fn a_full_outgoing_queue_drops_counts_and_never_stalls_the_loop() {
    use flagpost_std::config::FederationConfig;
    use flagpost_std::{Broker, BrokerConfig};
    let mut nats = NatsServer::start();
    let other = broker(&nats.url(), &[]);
    let handle = Broker::spawn(BrokerConfig {
        bind: vec!["127.0.0.1:0".parse().unwrap()],
        federation: Some(FederationConfig::new(nats.url())),
        ..BrokerConfig::default()
    })
    .unwrap();
    let here = handle.local_addr().to_string();
    wait_linked(&here, None);
    wait_linked(&other.addr, None);
    let there = listener(&other.addr, None, None);
    nats.stop();
    wait_until("the link went", || {
        handle.stats().unwrap().transport.federation_connected == 0
    });
    for _ in 0..30_000 {
        handle.notify(Notification::non_status(None), 1).unwrap();
    }
    // the loop took all 30,000 (a stats answer comes after them)
    let stats = handle
        .stats_within(LONG)
        .unwrap()
        .expect("the loop answers");
    assert!(
        stats.transport.federation_send_drops > 0,
        "published {}, dropped none",
        stats.transport.federation_published
    );
    nats.restart();
    wait_linked(&here, None);
    until_marker(&there, FlagSet::CHANNEL_UPDATE, FlagSet::CHANNEL_SHUTDOWN);
    handle
        .notify(Notification::channel_shutdown(channel("late")), 1)
        .unwrap();
    until_marker(&there, FlagSet::CHANNEL_SHUTDOWN, FlagSet::EMPTY);
    handle.shutdown();
    handle.join().unwrap();
}

/// A broker started before its NATS server: it serves meanwhile, links up
/// when the server comes, and federates.
#[test]
fn a_broker_started_before_nats_links_up_when_it_comes() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("nats://{addr}");
    let early = broker(&url, &[]);
    let on_early = listener(&early.addr, None, None);
    assert_eq!(stat(&early.addr, None, "flagpost_federation_connected"), 0);
    let _nats = NatsServer::start_at(addr);
    let late = broker(&url, &[]);
    wait_linked(&early.addr, None);
    wait_linked(&late.addr, None);
    Notifier::new(late.addr.as_str())
        .unwrap()
        .notify_channel_update(channel("c1"));
    // (no outage after a first link: no re-check first)
    assert_eq!(next_raise(&on_early), FlagSet::CHANNEL_UPDATE);
    assert_eq!(
        stat(&early.addr, None, "flagpost_federation_link_losses_total"),
        0
    );
}

/// A `flagpost serve` child with extra environment; killed on drop.
struct Served(std::process::Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `flagpost serve --bind 127.0.0.1:0 ARGS…` with `env`: the child and
/// its address.
fn serve_with_env(args: &[&str], env: &[(&str, &Path)]) -> (Served, String) {
    let mut command = Command::new(flagpost_bin());
    command.args(["serve", "--bind", "127.0.0.1:0"]).args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    (Served(child), addr)
}

/// A tls:// link: nats-server with a certificate from a throwaway CA, the
/// brokers trusting that CA through `SSL_CERT_FILE` (the system's roots as
/// rustls-native-certs reads them).
#[test]
fn brokers_federate_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    flagpost_tests::tls::make_certificates(d);
    let (cert, key) = (d.join("server.pem"), d.join("server.key"));
    let nats = NatsServer::start_with_args(&[
        "--tls",
        "--tlscert",
        cert.to_str().unwrap(),
        "--tlskey",
        key.to_str().unwrap(),
    ]);
    let url = format!("tls://{}", nats.addr);
    let ca = d.join("ca.pem");
    let env = [("SSL_CERT_FILE", ca.as_path())];
    let (_a, a) = serve_with_env(&["--federation", &url], &env);
    let (_b, b) = serve_with_env(&["--federation", &url], &env);
    wait_linked(&a, None);
    wait_linked(&b, None);
    let on_b = listener(&b, None, None);
    Notifier::new(a.as_str())
        .unwrap()
        .notify_channel_update(channel("tls"));
    assert_eq!(next_raise(&on_b), FlagSet::CHANNEL_UPDATE);
}
