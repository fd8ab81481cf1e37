//! The std broker on real loopback sockets: notifications in over UDP,
//! flags out over TCP to real listeners. No sleeps: every wait is a
//! `Listener::wait` with a generous timeout that only bounds a failure.

use std::time::Duration;

use flagpost_std::core::ChannelId;
use flagpost_std::{Broker, BrokerConfig, Listener, ListenerState, Notifier};

const LONG: Duration = Duration::from_secs(10);

fn config() -> BrokerConfig {
    BrokerConfig {
        bind: vec!["127.0.0.1:0".parse().unwrap()],
        max_listeners: 2000,
        ..BrokerConfig::default()
    }
}

fn ch(s: &str) -> ChannelId {
    ChannelId::new(s).unwrap()
}

/// A listener that is listening and has consumed its initial raise.
fn ready(listener: Listener) -> Listener {
    assert!(
        listener.wait_listening(LONG),
        "listener never got its welcome"
    );
    assert!(listener.wait(LONG));
    listener.take();
    listener
}

#[test]
fn notify_reaches_listener_and_status_raises_non_status() {
    let broker = Broker::spawn(config()).unwrap();
    let listener = ready(Listener::connect(broker.local_addr()).unwrap());
    let notifier = Notifier::new(broker.local_addr()).unwrap();

    notifier.notify_status_update(None);
    assert!(listener.wait(LONG));
    // both flags arrive in one frame
    assert!(listener.check_status_update());
    assert!(listener.check_non_status_update());
    assert!(!listener.check_status_update());

    notifier.notify_non_status_update();
    assert!(listener.wait(LONG));
    assert!(listener.check_non_status_update());
    assert!(!listener.check_status_update());
    assert_eq!(listener.state(), ListenerState::Listening);
    broker.shutdown();
    broker.join().unwrap();
}

#[test]
fn channel_updates_reach_the_right_listeners_only() {
    let broker = Broker::spawn(config()).unwrap();
    let addr = broker.local_addr();
    let gsm1 = ready(
        Listener::builder()
            .channel(ch("gsm1"))
            .connect(addr)
            .unwrap(),
    );
    let gsm2 = ready(
        Listener::builder()
            .channel(ch("gsm2"))
            .connect(addr)
            .unwrap(),
    );
    let all = ready(Listener::connect(addr).unwrap());
    let notifier = Notifier::new(addr).unwrap();

    notifier.notify_channel_update(ch("gsm1"));
    notifier.notify_status_update(Some(ch("gsm2")));
    // A marker everyone gets, sent strictly after (flush: the first two are
    // on the wire). Loopback UDP and each TCP stream keep order, so a
    // listener that has the marker has seen everything before it.
    assert!(notifier.flush(LONG));
    notifier.notify_non_status_update();
    for l in [&gsm1, &gsm2, &all] {
        while !l.check_non_status_update() {
            assert!(l.wait(LONG));
        }
    }
    assert!(gsm1.check_channel_update());
    assert!(!gsm1.check_status_update());
    assert!(gsm2.check_status_update());
    assert!(!gsm2.check_channel_update());
    assert!(all.check_channel_update());
    assert!(all.check_status_update());
}

#[test]
fn a_thousand_notifications_between_two_checks_read_as_one() {
    let broker = Broker::spawn(config()).unwrap();
    let listener = ready(Listener::connect(broker.local_addr()).unwrap());
    let notifier = Notifier::new(broker.local_addr()).unwrap();
    for _ in 0..1000 {
        notifier.notify_status_update(None);
    }
    assert!(notifier.flush(LONG));
    // wait until the broker has taken in all 1000 (its own counter)
    let deadline = std::time::Instant::now() + LONG;
    while broker.stats().unwrap().changes < 1000 {
        assert!(
            std::time::Instant::now() < deadline,
            "broker never counted 1000 changes"
        );
        listener.wait(Duration::from_millis(10));
    }
    assert!(listener.wait(LONG));
    assert!(listener.check_status_update());
    assert!(
        !listener.check_status_update(),
        "a thousand raises read as one"
    );
    let s = broker.stats().unwrap();
    assert!(
        s.datagrams < 1000,
        "the notifier coalesced: {} datagrams",
        s.datagrams
    );
}

#[test]
fn a_hundred_listeners_all_see_one_notification() {
    let broker = Broker::spawn(config()).unwrap();
    let listeners: Vec<Listener> = (0..100)
        .map(|_| Listener::connect(broker.local_addr()).unwrap())
        .collect();
    let listeners: Vec<Listener> = listeners.into_iter().map(ready).collect();
    let notifier = Notifier::new(broker.local_addr()).unwrap();
    notifier.notify_status_update(None);
    for (i, l) in listeners.iter().enumerate() {
        assert!(l.wait(LONG), "listener {i} never woke");
        assert!(l.check_status_update(), "listener {i}");
    }
    assert_eq!(broker.stats().unwrap().listening, 100);
}

#[test]
fn listeners_reconnect_after_a_broker_restart_and_raise_their_flags() {
    let broker = Broker::spawn(config()).unwrap();
    let addr = broker.local_addr();
    let listener = ready(
        Listener::builder()
            .backoff(Duration::from_millis(10), Duration::from_millis(200))
            .connect(addr)
            .unwrap(),
    );
    broker.shutdown();
    broker.join().unwrap();
    // the close frame (reason shutdown) ends the session; the listener retries
    let restarted = Broker::spawn(BrokerConfig {
        bind: vec![addr],
        ..config()
    })
    .unwrap();
    assert!(listener.wait(LONG));
    assert!(listener.wait_listening(LONG));
    // a re-check of what it may have missed, marked; never a shutdown
    let raise = listener.take_raise();
    assert_eq!(raise.flags, flagpost_std::core::FlagSet::RECHECK);
    assert!(raise.reconnect);
    let stats = restarted.stats().unwrap();
    assert_eq!(stats.listening, 1);
}

#[test]
fn in_process_listeners_use_the_same_api() {
    let broker = Broker::spawn(config()).unwrap();
    let local = ready(
        Listener::builder()
            .channel(ch("gsm1"))
            .local(&broker)
            .unwrap(),
    );
    let notifier = Notifier::new(broker.local_addr()).unwrap();
    notifier.notify_status_update(Some(ch("gsm1")));
    assert!(local.wait(LONG));
    assert!(local.check_status_update());
    assert!(local.check_non_status_update());
    broker
        .notify(
            flagpost_std::core::Notification::channel_shutdown(ch("gsm1")),
            1,
        )
        .unwrap();
    assert!(local.wait(LONG));
    assert!(local.check_channel_shutdown());
    drop(local);
    // dropping it frees its slot
    assert_eq!(broker.stats().unwrap().listening, 0);
}

#[test]
fn shutdown_closes_listeners_with_a_reason() {
    use flagpost_std::core::wire::*;
    use std::io::{Read, Write};
    let broker = Broker::spawn(config()).unwrap();
    let mut raw = std::net::TcpStream::connect(broker.local_addr()).unwrap();
    raw.set_read_timeout(Some(LONG)).unwrap();
    let mut buf = [0u8; MAX_FRAME_LEN];
    let hello = FrameRepr::Hello(HelloRepr {
        interest: flagpost_std::core::FlagSet::ALL,
        channel: None,
        keepalive_secs: 0,
    });
    let n = hello.emit(&mut buf).unwrap();
    raw.write_all(&buf[..n]).unwrap();
    let mut reader = FrameReader::<MAX_FRAME_LEN>::new();
    let mut next_frame = |raw: &mut std::net::TcpStream| loop {
        if let Some(frame) = reader.next_frame() {
            break FrameRepr::parse_bytes(frame.unwrap()).unwrap();
        }
        let n = raw.read(reader.unfilled()).unwrap();
        assert!(n > 0, "the broker closed without a frame");
        reader.filled(n);
    };
    // read the welcome, then shut down and read the close
    assert!(matches!(next_frame(&mut raw), FrameRepr::Welcome(_)));
    broker.shutdown();
    assert_eq!(
        next_frame(&mut raw),
        FrameRepr::Close(CloseRepr::new(CloseReason::Shutdown))
    );
    let mut rest = Vec::new();
    raw.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "bytes after the close: {rest:?}");
    broker.join().unwrap();
}

#[test]
fn ipv6_loopback_works_when_available() {
    let v6: std::net::SocketAddr = "[::1]:0".parse().unwrap();
    if std::net::UdpSocket::bind(v6).is_err() {
        eprintln!("skipped: this host has no IPv6 loopback");
        return;
    }
    let broker = Broker::spawn(BrokerConfig {
        bind: vec![v6],
        ..config()
    })
    .unwrap();
    assert!(broker.local_addr().is_ipv6());
    let listener = ready(Listener::connect(broker.local_addr()).unwrap());
    Notifier::new(broker.local_addr())
        .unwrap()
        .notify_status_update(None);
    assert!(listener.wait(LONG));
    assert!(listener.check_status_update());
}

#[test]
fn metrics_endpoint_serves_prometheus_text_and_health() {
    use std::io::{Read, Write};
    let broker = Broker::spawn(config()).unwrap();
    let metrics =
        flagpost_std::MetricsServer::start("127.0.0.1:0".parse().unwrap(), broker.clone()).unwrap();
    let get = |path: &str| {
        let mut s = std::net::TcpStream::connect(metrics.local_addr()).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body
    };
    Notifier::new(broker.local_addr())
        .unwrap()
        .notify_status_update(None);
    let deadline = std::time::Instant::now() + LONG;
    while broker.stats().unwrap().datagrams == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "datagram never counted"
        );
        std::thread::yield_now();
    }
    let text = get("/metrics");
    assert!(
        text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"),
        "{text}"
    );
    assert!(
        text.contains("flagpost_datagrams_total{kind=\"status\"} 1")
            || text.contains("flagpost_datagrams_total{kind=\"status\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("flagpost_datagram_rejects_total{reason=\"bad_magic\"} 0"),
        "{text}"
    );
    assert!(text.contains("# TYPE flagpost_listeners gauge"), "{text}");
    assert!(get("/healthz").contains("ok"));
    assert!(get("/nope").contains("404"));
    broker.shutdown();
    broker.join().unwrap();
    assert!(get("/healthz").contains("503"));
}

#[test]
fn client_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Listener>();
    send_sync::<Notifier>();
    send_sync::<flagpost_std::BrokerHandle>();
    // and a notifier is usable from many threads at once
    let broker = Broker::spawn(config()).unwrap();
    let listener = ready(Listener::connect(broker.local_addr()).unwrap());
    let notifier = Notifier::new(broker.local_addr()).unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            let n = notifier.clone();
            s.spawn(move || {
                for _ in 0..10_000 {
                    n.notify_non_status_update();
                }
            });
        }
    });
    assert!(notifier.flush(LONG));
    assert!(listener.wait(LONG));
    assert!(listener.check_non_status_update());
    assert_eq!(notifier.stats().calls, 40_000);
}
