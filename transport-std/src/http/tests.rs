//! The server's own timers, with settings the public API keeps fixed: the
//! SSE keep-alive comment after a short silence.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use super::{HttpKeys, Options, Server};
use crate::{Broker, BrokerConfig};

#[test]
fn a_silent_stream_gets_keep_alive_comments() {
    let broker = Broker::spawn(BrokerConfig {
        bind: vec!["127.0.0.1:0".parse().unwrap()],
        ..BrokerConfig::default()
    })
    .unwrap();
    let options = Options {
        render: Box::new(|| Ok(String::new())),
        broker: Some(broker.clone()),
        keys: HttpKeys::default(),
        stuck_timeout: Duration::from_secs(60),
        send_buffer: 0,
        started: Instant::now(),
        keep_alive: Duration::from_millis(50),
    };
    let server = Server::start("127.0.0.1:0".parse().unwrap(), "test-http", options).unwrap();
    let mut s = std::net::TcpStream::connect(server.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /events HTTP/1.1\r\n\r\n").unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 1024];
    // the head, the reconnect raise, then two comments (no other event)
    while seen.matches(": keep-alive\n\n").count() < 2 {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed: {seen}");
        seen.push_str(std::str::from_utf8(&buf[..n]).unwrap());
    }
    assert_eq!(seen.matches("event: raise").count(), 1, "{seen}");
    broker.shutdown();
}
