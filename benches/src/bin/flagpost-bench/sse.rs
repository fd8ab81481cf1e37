//! `flagpost-bench sse`: N Server-Sent Events clients of the broker's HTTP
//! address (`/events`) beside one TCP listener, in the same run: the
//! broker's resident memory per SSE client, and the wake latency from a
//! notification datagram to the event on the first and the last SSE client,
//! beside the TCP listener's wake in the same rounds.
//!
//! The broker is this binary re-executed as `_sse_broker`: an in-process
//! `Broker` with its `MetricsServer` (the HTTP server of `flagpost serve
//! --metrics`), so its RSS is the broker's and the HTTP server's. The SSE
//! clients are raw TCP connections read on one `mio` loop in this process;
//! the TCP listener is a `_listener` child reporting its wake time. All
//! times are `CLOCK_MONOTONIC`, comparable across the processes.

use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use flagpost_benches::clock::now_ns;
use flagpost_core::Notification;
use flagpost_std::{Broker, BrokerConfig, MetricsServer};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::ingest::send_notify;
use crate::measure::report_socket;
use crate::{announce, loopback, raise_fds, serve_queries, Participant};

/// Rounds measured and discarded first.
const WARM_UP: usize = 20;
/// How long a round may take before the bench gives up on it.
const ROUND_TIMEOUT: Duration = Duration::from_secs(10);

/// The broker with its HTTP server; the query answers the HTTP address.
pub(crate) fn child_sse_broker() {
    raise_fds("broker");
    let config = BrokerConfig {
        bind: vec![loopback()],
        max_per_address: 0,
        ..BrokerConfig::default()
    };
    let broker = Broker::bind(config.clone()).expect("bind broker");
    let handle = broker.handle();
    let http =
        MetricsServer::start_config(loopback(), handle.clone(), &config).expect("HTTP server");
    let http_addr = http.local_addr();
    announce(handle.local_addr());
    serve_queries(move |_| http_addr.to_string());
    broker.run().expect("broker runs");
    drop(http);
}

/// One SSE client: its socket, the bytes of an unfinished event, and the
/// events seen.
struct Client {
    stream: TcpStream,
    partial: Vec<u8>,
    events: u64,
}

impl Client {
    /// Reads what is there; true if the connection is still open.
    fn read(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return false,
                Ok(n) => {
                    self.partial.extend_from_slice(&buf[..n]);
                    while let Some(at) = self.partial.windows(2).position(|w| w == b"\n\n") {
                        if self.partial[..at].windows(12).any(|w| w == b"event: raise") {
                            self.events += 1;
                        }
                        self.partial.drain(..at + 2);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }
}

/// The SSE clients on one poll.
struct Clients {
    poll: Poll,
    events: Events,
    clients: Vec<Client>,
}

impl Clients {
    fn connect(http: SocketAddr, n: usize) -> Clients {
        let poll = Poll::new().expect("poll");
        let mut clients = Vec::with_capacity(n);
        for i in 0..n {
            let mut s = std::net::TcpStream::connect(http).expect("connect /events");
            s.write_all(b"GET /events?interest=status HTTP/1.1\r\nHost: bench\r\n\r\n")
                .expect("request");
            s.set_nonblocking(true).expect("nonblocking");
            let mut stream = TcpStream::from_std(s);
            poll.registry()
                .register(&mut stream, Token(i), Interest::READABLE)
                .expect("register");
            clients.push(Client {
                stream,
                partial: Vec::new(),
                events: 0,
            });
        }
        Clients {
            poll,
            events: Events::with_capacity(1024),
            clients,
        }
    }

    /// Polls until every client has seen `count` events: the first and
    /// the last time (ns) a client reached it, or `None` on a timeout.
    fn until(&mut self, count: u64) -> Option<(u64, u64)> {
        let deadline = std::time::Instant::now() + ROUND_TIMEOUT;
        let mut behind = self.clients.iter().filter(|c| c.events < count).count();
        let (mut first, mut last) = (None, 0);
        while behind > 0 {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return None;
            }
            self.poll.poll(&mut self.events, Some(left)).ok()?;
            for event in self.events.iter() {
                let c = &mut self.clients[event.token().0];
                let before = c.events;
                let open = c.read();
                if before < count && c.events >= count {
                    let at = now_ns();
                    first.get_or_insert(at);
                    last = at;
                    behind -= 1;
                }
                assert!(open, "an SSE client was closed");
            }
        }
        Some((first.unwrap_or(last), last))
    }
}

fn quantile(sorted: &[u64], q: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted.get(i).copied().unwrap_or(0) as f64 / 1000.0
}

pub(crate) fn sse(n: usize, rounds: usize) {
    raise_fds("bench");
    let mut broker = Participant::spawn("_sse_broker", &[]);
    let http: SocketAddr = broker.query("http").parse().expect("HTTP address");
    let (report_sock, report_addr) = report_socket();
    let _tcp = Participant::spawn("_listener", &[broker.addr.to_string(), report_addr]);

    // memory: the broker's RSS before and after N clients are listening
    let before = broker.sample().rss_kib;
    let mut clients = Clients::connect(http, n);
    clients
        .until(1)
        .expect("every SSE client gets its reconnect raise");
    let after = broker.sample().rss_kib;
    let per_client = (after.saturating_sub(before) * 1024) as f64 / n as f64;
    println!(
        "sse: {n} clients connected: broker RSS {before} KiB → {after} KiB, {per_client:.0} bytes per SSE client"
    );

    // wake latency: one status datagram per round
    let raw = UdpSocket::bind(loopback()).expect("bind");
    report_sock
        .set_read_timeout(Some(ROUND_TIMEOUT))
        .expect("timeout");
    let (mut tcp, mut first, mut last) = (Vec::new(), Vec::new(), Vec::new());
    let mut lost = 0;
    for round in 0..WARM_UP + rounds {
        let sent = now_ns();
        send_notify(
            &raw,
            broker.addr,
            Notification::status(None),
            0x55e0,
            round as u32 + 1,
        );
        let sse = clients.until(round as u64 + 2);
        let mut buf = [0u8; 16];
        let woke = match report_sock.recv(&mut buf) {
            Ok(8) => Some(u64::from_be_bytes(buf[..8].try_into().expect("8 bytes"))),
            _ => None,
        };
        let (Some((f, l)), Some(w)) = (sse, woke) else {
            lost += 1;
            continue;
        };
        if round >= WARM_UP {
            tcp.push(w.saturating_sub(sent));
            first.push(f.saturating_sub(sent));
            last.push(l.saturating_sub(sent));
        }
        // let every process go idle between rounds: one at a time
        std::thread::sleep(Duration::from_millis(2));
    }
    for v in [&mut tcp, &mut first, &mut last] {
        v.sort_unstable();
    }
    let q = |v: &[u64]| (quantile(v, 0.5), quantile(v, 0.99));
    let (t50, t99) = q(&tcp);
    let (f50, f99) = q(&first);
    let (l50, l99) = q(&last);
    println!(
        "sse wake p50/p99 over {} rounds (µs): TCP listener {t50:.1}/{t99:.1}, first SSE client {f50:.1}/{f99:.1}, last of {n} SSE clients {l50:.1}/{l99:.1}; rounds lost {lost}",
        tcp.len()
    );
    println!(
        "sse ratio to the TCP listener (p50/p99): first SSE client {:.2}/{:.2}, last SSE client {:.2}/{:.2}",
        f50 / t50,
        f99 / t99,
        l50 / t50,
        l99 / t99
    );
}
