//! The child modes: every participant but the bench process itself is this
//! binary re-executed with a leading `_mode` argument — the broker
//! (`_broker`), a `Listener` (`_listener`), the bare relay's hops
//! (`_relay_b`, `_relay_c`, `_flood_relay_b`), the bare floors
//! (`_udp_sink`, `_fanout_server`, `_idle_server`) and the listener farm
//! (`_farm`). Each binds loopback, announces its address and exits when its
//! parent goes away.

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use flagpost_benches::clock::now_ns;
use flagpost_benches::farm::{Farm, FarmMode};
use flagpost_std::{Broker, BrokerConfig, Listener};

use crate::{announce, exit_with_parent, loopback, raise_fds, serve_queries, Participant};

/// The broker on a loopback port. `--stuck-ms N` sets its
/// `stuck_timeout`, `--key-file F` its key, `--federation URL` its NATS
/// federation. The query `counters` answers with
/// [`scale::Counters`](crate::scale::Counters)' line; `federation` with
/// `connected federated published send_drops receive_drops datagrams
/// missing link_losses`; any
/// other with `datagrams listening`.
pub(crate) fn child_broker(args: &[String]) {
    raise_fds("broker");
    // the defaults, and any FLAGPOST_* override from the environment (for
    // comparing settings: FLAGPOST_UDP_SOCKETS=1 flagpost-bench ...)
    let base = BrokerConfig::load(None, std::env::vars()).expect("FLAGPOST_* settings");
    let mut config = BrokerConfig {
        bind: vec![loopback()],
        max_per_address: 0,
        ..base
    };
    if let Some(ms) = args
        .iter()
        .position(|a| a == "--stuck-ms")
        .and_then(|i| args.get(i + 1)?.parse().ok())
    {
        config.stuck_timeout = Duration::from_millis(ms);
    }
    if let Some(path) = args
        .iter()
        .position(|a| a == "--key-file")
        .and_then(|i| args.get(i + 1))
    {
        config.key_file = Some(path.into());
    }
    if let Some(url) = args
        .iter()
        .position(|a| a == "--federation")
        .and_then(|i| args.get(i + 1))
    {
        config.federation = Some(flagpost_std::config::FederationConfig::new(url.clone()));
    }
    let broker = Broker::bind(config).expect("bind broker");
    let handle = broker.handle();
    announce(handle.local_addr());
    serve_queries(move |q| match (handle.stats(), q) {
        (Ok(s), "counters") => crate::scale::Counters::of(&s).line(),
        (Ok(s), "federation") => {
            let t = &s.transport;
            format!(
                "{} {} {} {} {} {} {} {}",
                t.federation_connected,
                s.federated,
                t.federation_published,
                t.federation_send_drops,
                t.federation_receive_drops,
                s.datagrams,
                s.missing,
                t.federation_link_losses
            )
        }
        (Ok(s), _) => format!("{} {}", s.datagrams, s.listening),
        (Err(e), _) => format!("error {e}"),
    });
    broker.run().expect("broker runs");
}

/// The bare receivers' loop: blocks in `recvmmsg` for the first datagram
/// and takes up to 32 (the broker's batch), then hands `each` how many
/// datagrams the batch held and how many of them were `marked_len` bytes
/// long; returns when `each` says stop.
fn recv_batches(socket: &UdpSocket, marked_len: usize, mut each: impl FnMut(usize, usize) -> bool) {
    use nix::sys::socket::{recvmmsg, MsgFlags, MultiHeaders, SockaddrStorage};
    use std::os::fd::AsRawFd;
    let mut bufs = [[0u8; 128]; 32];
    loop {
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(32, None);
        let mut iovs: [[std::io::IoSliceMut<'_>; 1]; 32] = bufs
            .each_mut()
            .map(|b| [std::io::IoSliceMut::new(&mut b[..])]);
        let Ok(r) = recvmmsg(
            socket.as_raw_fd(),
            &mut headers,
            iovs.iter_mut(),
            MsgFlags::MSG_WAITFORONE,
            None,
        ) else {
            continue;
        };
        let (mut all, mut marked) = (0, 0);
        for m in r {
            all += 1;
            marked += usize::from(m.bytes == marked_len);
        }
        if !each(all, marked) {
            return;
        }
    }
}

/// A bare receiver's socket, with the broker's 8 MiB receive buffer.
fn bare_receiver() -> UdpSocket {
    let socket = UdpSocket::bind(loopback()).expect("bind");
    let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(8 << 20);
    socket
}

/// The floor receiver: recvmmsg (as the broker does) and count.
pub(crate) fn child_udp_sink() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let socket = bare_receiver();
    announce(socket.local_addr().expect("addr"));
    let count = Arc::new(AtomicU64::new(0));
    let shown = count.clone();
    serve_queries(move |_| shown.load(Ordering::Relaxed).to_string());
    recv_batches(&socket, 0, |n, _| {
        count.fetch_add(n as u64, Ordering::Relaxed);
        true
    });
}

/// The bare fan-out floor: TCP connections on a port; a datagram on the
/// same port makes it write 8 bytes to every connection. A query answers
/// how many connections it has accepted.
pub(crate) fn child_fanout_server() {
    raise_fds("fan-out server");
    let server = TcpListener::bind(loopback()).expect("bind");
    let addr = server.local_addr().expect("addr");
    let trigger = UdpSocket::bind(addr).expect("udp on the same port");
    announce(addr);
    let conns = std::sync::Arc::new(std::sync::Mutex::new(Vec::<TcpStream>::new()));
    let counted = conns.clone();
    serve_queries(move |_| counted.lock().map_or(0, |c| c.len()).to_string());
    let accepted = conns.clone();
    std::thread::spawn(move || {
        for s in server.incoming().flatten() {
            let _ = s.set_nodelay(true);
            accepted.lock().expect("lock").push(s);
        }
    });
    let mut buf = [0u8; 64];
    while trigger.recv(&mut buf).is_ok() {
        for mut c in conns.lock().expect("lock").iter() {
            let _ = c.write_all(&[1u8; 8]);
        }
    }
}

/// The bare idle-connection floor: accept and hold. A query answers how
/// many connections it holds.
pub(crate) fn child_idle_server() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    raise_fds("idle server");
    let server = TcpListener::bind(loopback()).expect("bind");
    announce(server.local_addr().expect("addr"));
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let shown = count.clone();
    serve_queries(move |_| shown.load(Ordering::Relaxed).to_string());
    let mut held = Vec::new();
    for s in server.incoming().flatten() {
        held.push(s);
        count.store(held.len(), Ordering::Relaxed);
    }
}

/// Waits until a bare server (`_fanout_server`, `_idle_server`) has accepted
/// `n` connections: a client's `connect` returns once the kernel has queued
/// the connection, before the server's `accept`, so a farm can be ready
/// while the server does not know all of it yet.
pub(crate) fn wait_accepted(server: &mut Participant, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let accepted: usize = server.query("accepted").parse().unwrap_or(0);
        if accepted >= n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the bare server accepted {accepted} of {n} connections in 60 s"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// N listener connections in one epoll loop; the query `r` waits for every
/// connection's r-th message and answers with the moment it completed.
pub(crate) fn child_farm(mode: &str, addr: &str, n: &str, channel: Option<&str>) {
    raise_fds("farm");
    let mode = if mode == "flagpost" {
        FarmMode::Flagpost
    } else {
        FarmMode::Bare
    };
    let addr: SocketAddr = addr.parse().expect("addr");
    let n: usize = n.parse().expect("n");
    let channel = channel.map(|c| flagpost_core::ChannelId::new(c).expect("channel"));
    let mut farm = Farm::connect_to_channel(addr, n, mode, channel).expect("farm connects");
    announce(addr);
    for line in std::io::stdin().lock().lines() {
        let Ok(q) = line else { break };
        if q.trim() == "count" {
            println!("{}", farm.messages().expect("farm runs"));
            let _ = std::io::stdout().flush();
            continue;
        }
        let round: u64 = q.trim().parse().unwrap_or(0);
        let done = farm
            .wait_round(round, Duration::from_secs(30))
            .expect("farm runs");
        println!("{}", if done { now_ns() } else { 0 });
        let _ = std::io::stdout().flush();
    }
}

/// A Flagpost `Listener` (for `channel` if given, with the interest whose
/// bits `interest` gives, else every flag) that reports each wake's stamp.
pub(crate) fn child_listener(
    broker: &str,
    report: &str,
    channel: Option<&str>,
    interest: Option<&str>,
) {
    let report: SocketAddr = report.parse().expect("report addr");
    let mut builder = Listener::builder();
    if let Some(c) = channel {
        builder = builder.channel(flagpost_core::ChannelId::new(c).expect("channel"));
    }
    if let Some(bits) = interest {
        let bits = bits
            .parse()
            .ok()
            .and_then(flagpost_core::FlagSet::from_bits);
        builder = builder.interest(bits.expect("interest bits"));
    }
    let listener = builder.connect(broker).expect("listener");
    assert!(
        listener.wait_listening(Duration::from_secs(10)),
        "listener never welcomed"
    );
    listener.wait(Duration::from_secs(1));
    listener.take();
    let out = UdpSocket::bind(loopback()).expect("report socket");
    announce(out.local_addr().expect("addr"));
    exit_with_parent();
    loop {
        if listener.wait(Duration::from_secs(3600)) {
            let woke = now_ns();
            listener.take();
            let _ = out.send_to(&woke.to_be_bytes(), report);
        }
    }
}

pub(crate) fn child_relay_c(report: &str) {
    let report: SocketAddr = report.parse().expect("report addr");
    let server = TcpListener::bind(loopback()).expect("bind");
    announce(server.local_addr().expect("addr"));
    exit_with_parent();
    let (mut conn, _) = server.accept().expect("accept B");
    let out = UdpSocket::bind(loopback()).expect("report socket");
    // One report per wake that completes a message, as the listener reports
    // once per wake: a report per 8-byte message made C's backlog after a
    // hot-loop round cost 5 µs a message (ftrace: 300 µs in one round).
    let mut buf = [0u8; 4096];
    let mut partial = 0;
    while let Ok(n @ 1..) = conn.read(&mut buf) {
        let woke = now_ns();
        let completed = (partial + n) / 8;
        partial = (partial + n) % 8;
        if completed > 0 {
            let _ = out.send_to(&woke.to_be_bytes(), report);
        }
    }
}

pub(crate) fn child_relay_b(c: &str) {
    let mut to_c = TcpStream::connect(c).expect("connect C");
    to_c.set_nodelay(true).expect("nodelay");
    let udp = UdpSocket::bind(loopback()).expect("bind");
    announce(udp.local_addr().expect("addr"));
    exit_with_parent();
    let mut buf = [0u8; 128];
    while udp.recv(&mut buf).is_ok() {
        if to_c.write_all(&[1u8; 8]).is_err() {
            return;
        }
    }
}

/// The flood floor's relay B: one UDP socket read in `recvmmsg` batches of
/// 32 (the broker's batching); every flood datagram is read and dropped,
/// and an 8-byte datagram (the quiet trigger) is relayed as 8 bytes over
/// TCP to C — what bare code does on the quiet path while it receives the
/// same flood.
pub(crate) fn child_flood_relay_b(c: &str) {
    let mut to_c = TcpStream::connect(c).expect("connect C");
    to_c.set_nodelay(true).expect("nodelay");
    let socket = bare_receiver();
    announce(socket.local_addr().expect("addr"));
    exit_with_parent();
    recv_batches(&socket, 8, |_, quiet| {
        (0..quiet).all(|_| to_c.write_all(&[1u8; 8]).is_ok())
    });
}
