//! `Listener::take_link_events`: what happened to the connection, typed —
//! nothing listening, a peer that is not a broker, a full broker, and a
//! broker that welcomes.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use flagpost_std::core::wire::CloseReason;
use flagpost_std::listener::{LinkError, LinkEvent};
use flagpost_std::Listener;

mod common;

/// Collects events until `done` says so, or panics after 20 s.
fn events_until(listener: &Listener, done: impl Fn(&LinkEvent) -> bool) -> Vec<LinkEvent> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    loop {
        let batch = listener.take_link_events();
        let hit = batch.iter().any(&done);
        seen.extend(batch);
        if hit {
            return seen;
        }
        assert!(Instant::now() < deadline, "no such event in {seen:?}");
        listener.wait_listening(Duration::from_millis(20));
    }
}

#[test]
fn nothing_listening_is_a_refused_connect() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let listener = Listener::connect(port).unwrap();
    let seen = events_until(&listener, |e| matches!(e, LinkEvent::Lost(_)));
    assert_eq!(seen.first(), Some(&LinkEvent::Connecting(port)), "{seen:?}");
    assert!(
        seen.iter().any(|e| matches!(
            e,
            LinkEvent::Lost(LinkError::Connect {
                kind: std::io::ErrorKind::ConnectionRefused,
                ..
            })
        )),
        "{seen:?}"
    );
}

#[test]
fn a_peer_answering_http_is_not_a_broker() {
    let http = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = http.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = http.accept().unwrap();
        let mut buf = [0u8; 64];
        let _ = s.read(&mut buf);
        s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        // keep the connection open until the listener gives up on it
        let _ = s.read(&mut buf);
    });
    let listener = Listener::connect(addr).unwrap();
    let seen = events_until(&listener, |e| matches!(e, LinkEvent::Lost(_)));
    assert!(seen.contains(&LinkEvent::Connected), "{seen:?}");
    assert!(
        matches!(seen.last(), Some(LinkEvent::Lost(LinkError::NotABroker(_)))),
        "{seen:?}"
    );
    drop(listener);
    server.join().unwrap();
}

#[test]
fn a_full_broker_refuses_with_its_reason_and_a_free_one_welcomes() {
    let server = common::Server::start(&["--max-listeners", "1"]);
    let first = Listener::connect(server.addr.as_str()).unwrap();
    let seen = events_until(&first, |e| *e == LinkEvent::Listening);
    let addr = first.broker().unwrap();
    assert_eq!(addr.to_string(), server.addr);
    assert_eq!(
        seen,
        [
            LinkEvent::Connecting(addr),
            LinkEvent::Connected,
            LinkEvent::Listening
        ]
    );
    let second = Listener::connect(server.addr.as_str()).unwrap();
    let seen = events_until(&second, |e| matches!(e, LinkEvent::Lost(_)));
    assert_eq!(
        seen.last(),
        Some(&LinkEvent::Lost(LinkError::Refused(
            CloseReason::TooManyListeners
        ))),
        "{seen:?}"
    );
}
