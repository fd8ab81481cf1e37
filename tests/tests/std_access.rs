//! Who may reach the std broker, on loopback: the allow-lists, and a table
//! held by an attacker's silent and slow-hello connections from many
//! addresses (Linux routes all of 127.0.0.0/8 to loopback, so a client
//! socket bound to 127.0.0.N before connecting is a distinct peer). Each
//! test is bounded and ends by itself; every wait polls a condition with a
//! deadline that only bounds a failure.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use flagpost_std::core::broker::Stats;
use flagpost_std::core::wire::*;
use flagpost_std::core::{FlagSet, Notification};
use flagpost_std::{Broker, BrokerConfig, BrokerHandle, Listener, ListenerState, Notifier};

const LONG: Duration = Duration::from_secs(10);

fn config() -> BrokerConfig {
    BrokerConfig {
        bind: vec!["127.0.0.1:0".parse().unwrap()],
        max_listeners: 1000,
        ..BrokerConfig::default()
    }
}

fn loopback(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

/// Polls the broker's stats until `done` holds; panics after `LONG`.
fn wait_stats(broker: &BrokerHandle, what: &str, done: impl Fn(&Stats) -> bool) -> Stats {
    let deadline = Instant::now() + LONG;
    loop {
        let stats = broker.stats().unwrap();
        if done(&stats) {
            return stats;
        }
        assert!(Instant::now() < deadline, "{what}: not within {LONG:?}");
        // the polling interval: each look is a round trip to the broker
        thread::sleep(Duration::from_millis(5));
    }
}

/// A TCP connection to `to` from address `from`.
fn connect_from(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(from, 0).into())?;
    socket.connect_timeout(&to.into(), Duration::from_secs(1))?;
    Ok(socket.into())
}

fn frame(repr: FrameRepr) -> Vec<u8> {
    let mut buf = [0u8; MAX_FRAME_LEN];
    let n = repr.emit(&mut buf).unwrap();
    buf[..n].to_vec()
}

fn hello() -> Vec<u8> {
    frame(FrameRepr::Hello(HelloRepr {
        interest: FlagSet::ALL,
        channel: None,
        keepalive_secs: 0,
    }))
}

/// Reads frames until the broker closes the connection.
fn read_until_eof(stream: &mut TcpStream) -> Vec<FrameRepr> {
    stream.set_read_timeout(Some(LONG)).unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).expect("closed in time");
    let mut reader = FrameReader::<MAX_FRAME_LEN>::new();
    let mut frames = Vec::new();
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        rest = &rest[reader.push(rest)..];
        while let Some(f) = reader.next_frame() {
            frames.push(FrameRepr::parse_bytes(f.unwrap()).unwrap());
        }
    }
    frames
}

/// A notification datagram asking for an ack.
fn notify_datagram(notification: Notification, seq: u32) -> Vec<u8> {
    let mut buf = [0u8; MAX_DATAGRAM_LEN];
    let n = NotifyRepr {
        notification,
        sender: SenderId(0xacce55),
        seq: Seq(seq),
        batch: 1,
        ack_requested: true,
        probe: false,
        tag: None,
    }
    .emit(&mut buf)
    .unwrap();
    buf[..n].to_vec()
}

#[test]
fn allow_senders_drops_datagrams_from_elsewhere_unanswered() {
    let broker = Broker::spawn(BrokerConfig {
        allow_senders: vec!["127.0.0.2/32".parse().unwrap()],
        ..config()
    })
    .unwrap();
    let addr = broker.local_addr();
    let listener = Listener::connect(addr).unwrap();
    assert!(listener.wait_listening(LONG) && listener.wait(LONG));
    listener.take();

    // a status update from 127.0.0.1, not allowed
    let outsider = UdpSocket::bind((loopback(1), 0)).unwrap();
    outsider
        .send_to(&notify_datagram(Notification::status(None), 1), addr)
        .unwrap();
    let s = wait_stats(&broker, "the datagram denied", |s| {
        s.transport.datagrams_denied == 1
    });
    assert_eq!((s.datagrams, s.acks), (0, 0), "denied before it is parsed");

    // a non-status update from 127.0.0.2, allowed: acked, raised
    let insider = UdpSocket::bind((loopback(2), 0)).unwrap();
    insider.set_read_timeout(Some(LONG)).unwrap();
    insider
        .send_to(&notify_datagram(Notification::non_status(None), 1), addr)
        .unwrap();
    let mut ack = [0u8; MAX_DATAGRAM_LEN];
    let (n, from) = insider
        .recv_from(&mut ack)
        .expect("an ack for the allowed sender");
    assert_eq!(from, addr);
    let ack = AckRepr::parse_bytes(&ack[..n]).unwrap();
    assert_eq!((ack.seq, ack.result), (Seq(1), AckResult::Delivered));
    assert!(listener.wait(LONG));
    assert!(listener.check_non_status_update());
    assert!(
        !listener.check_status_update(),
        "the denied status update woke the listener"
    );
    // the outsider's ack would have been sent before the denial was
    // counted: nothing came
    outsider.set_nonblocking(true).unwrap();
    let mut buf = [0u8; MAX_DATAGRAM_LEN];
    assert_eq!(
        outsider.recv_from(&mut buf).unwrap_err().kind(),
        ErrorKind::WouldBlock,
        "the denied sender got an answer"
    );
    let s = broker.stats().unwrap();
    assert_eq!(
        (s.datagrams, s.acks, s.transport.datagrams_denied),
        (1, 1, 1)
    );
    broker.shutdown();
    broker.join().unwrap();
}

#[test]
fn allow_listeners_refuses_connections_from_elsewhere_with_a_reason() {
    let broker = Broker::spawn(BrokerConfig {
        allow_listeners: vec!["127.0.0.3/32".parse().unwrap()],
        ..config()
    })
    .unwrap();
    let addr = broker.local_addr();

    let mut outsider = connect_from(loopback(1), addr).unwrap();
    assert_eq!(
        read_until_eof(&mut outsider),
        [FrameRepr::Close(CloseRepr::new(CloseReason::Unauthorized))]
    );
    let s = broker.stats().unwrap();
    assert_eq!(s.transport.connections_denied, 1);
    assert_eq!((s.opened, s.awaiting_hello), (0, 0), "it never took a slot");

    let mut insider = connect_from(loopback(3), addr).unwrap();
    insider.write_all(&hello()).unwrap();
    insider.set_read_timeout(Some(LONG)).unwrap();
    let mut welcome = [0u8; 18];
    insider.read_exact(&mut welcome).unwrap();
    assert!(matches!(
        FrameRepr::parse_bytes(&welcome),
        Ok(FrameRepr::Welcome(_))
    ));
    let s = broker.stats().unwrap();
    assert_eq!((s.listening, s.transport.connections_denied), (1, 1));
    broker.shutdown();
    broker.join().unwrap();
}

/// The attack: [`SLOTS`] connections (the whole table) from [`ADDRESSES`]
/// loopback addresses, half silent, half sending a hello one byte per
/// [`TICK`] but never its last byte; every tick it replaces each
/// connection the broker closed. Once real listeners hold slots, the
/// attacker's connections left without one churn at one per tick each: 8
/// listeners make 32 evictions a second, below the 64 a second (the table
/// over the eviction minimum of 1 s) that would keep every slot younger
/// than the minimum, the attack's limit a faster one would reach.
const SLOTS: usize = 64;
const ADDRESSES: u8 = 16;
const TICK: Duration = Duration::from_millis(250);

struct Attacker {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<u64>,
}

impl Attacker {
    fn start(broker: SocketAddr) -> Attacker {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || attack(broker, &flag));
        Attacker { stop, thread }
    }

    /// Stops the attack; returns how many connections it opened.
    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

fn attack(broker: SocketAddr, stop: &AtomicBool) -> u64 {
    let partial = {
        let mut h = hello();
        h.pop();
        h
    };
    // (connection, bytes of the hello sent) per slot
    let mut conns: Vec<Option<(TcpStream, usize)>> = (0..SLOTS).map(|_| None).collect();
    let mut opened = 0u64;
    while !stop.load(Ordering::Relaxed) {
        // first see which connections the broker closed (a close frame, EOF
        // or a reset), then replace them: what a replacement evicts is seen
        // at the next tick, so the attack churns at most one connection per
        // missing slot and tick
        let closed: Vec<bool> = conns
            .iter_mut()
            .map(|slot| match slot {
                Some((stream, _)) => {
                    let mut buf = [0u8; 64];
                    !matches!(stream.read(&mut buf), Err(e) if e.kind() == ErrorKind::WouldBlock)
                }
                None => true,
            })
            .collect();
        for (i, (slot, closed)) in conns.iter_mut().zip(closed).enumerate() {
            if closed {
                *slot = None;
                let from = loopback(2 + (i % usize::from(ADDRESSES)) as u8);
                if let Ok(stream) = connect_from(from, broker) {
                    stream.set_nonblocking(true).unwrap();
                    opened += 1;
                    *slot = Some((stream, 0));
                }
            } else if let Some((stream, sent)) = slot {
                if i % 2 == 1
                    && *sent < partial.len()
                    && stream.write(&partial[*sent..=*sent]).is_ok()
                {
                    *sent += 1;
                }
            }
        }
        // the attack's own pace (a tick after the pass, never catching up),
        // not a wait for the broker
        let next_tick = Instant::now() + TICK;
        while !stop.load(Ordering::Relaxed) && Instant::now() < next_tick {
            thread::sleep(Duration::from_millis(10));
        }
    }
    opened
}

/// Real listeners (default `Listener`s: reconnect backoff from 100 ms
/// doubling to 5 s) started while the table is held by silent and trickling
/// connections from 16 addresses (8 each allowed: the per-address limit
/// alone does not stop them) get in once those have waited the eviction
/// minimum (1 s), at the first reconnect after it (at most 1.6 s later):
/// each within 5 s of starting (2.6 s expected at worst), and none of them
/// is evicted afterwards while the attack goes on.
#[test]
fn silent_and_slow_hello_connections_cannot_keep_real_listeners_out() {
    const REAL: usize = 8;
    const BOUND: Duration = Duration::from_secs(5);
    let broker = Broker::spawn(BrokerConfig {
        max_listeners: SLOTS,
        max_per_address: 8,
        ..config()
    })
    .unwrap();
    let addr = broker.local_addr();
    let attacker = Attacker::start(addr);
    wait_stats(&broker, "the attacker fills the table", |s| {
        s.awaiting_hello == SLOTS as u64
    });

    let started = Instant::now();
    let real: Vec<Listener> = (0..REAL)
        .map(|_| Listener::connect(addr).unwrap())
        .collect();
    let mut took = Vec::new();
    for listener in &real {
        assert!(
            listener.wait_listening(BOUND.saturating_sub(started.elapsed())),
            "a real listener was kept out for {BOUND:?}: {:?}",
            broker.stats().unwrap()
        );
        took.push(started.elapsed());
    }
    eprintln!("real listeners in after {took:?}");
    for listener in &real {
        assert!(listener.wait(LONG));
        listener.take();
        assert!(listener.check_reconnect(), "the first welcome");
    }
    let s = broker.stats().unwrap();
    assert!(s.connections_evicted >= REAL as u64, "{s:?}");
    assert_eq!(s.listening, REAL as u64);
    let evicted = s.connections_evicted;

    // the attack goes on replacing what was evicted, which evicts more of
    // its own; the real listeners stay, and hear a notification
    wait_stats(&broker, "more evictions", |s| {
        s.connections_evicted >= evicted + REAL as u64
    });
    Notifier::new(addr).unwrap().notify_status_update(None);
    for listener in &real {
        assert!(listener.wait(LONG));
        assert!(listener.check_status_update());
        assert!(!listener.check_reconnect(), "a real listener reconnected");
        assert_eq!(listener.state(), ListenerState::Listening);
    }
    let s = broker.stats().unwrap();
    assert_eq!(s.listening, REAL as u64);
    assert!(s.closes[CloseReason::TooManyListeners as usize] >= s.connections_evicted);
    let opened = attacker.stop();
    eprintln!(
        "attacker opened {opened} connections; {} evicted, {} refused (table full)",
        s.connections_evicted, s.refused_full
    );
    broker.shutdown();
    broker.join().unwrap();
}
