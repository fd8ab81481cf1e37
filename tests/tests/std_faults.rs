//! Faults against the std broker on loopback: a listener that never reads,
//! every class of malformed input, a lossy path for confirmed sends, limits,
//! silent and slow peers. Each test is bounded; waits are blocking reads or
//! `Listener::wait` with timeouts that only bound a failure.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flagpost_std::core::wire::*;
use flagpost_std::core::{FlagSet, Notification};
use flagpost_std::{Broker, BrokerConfig, Listener, Notifier};

const LONG: Duration = Duration::from_secs(10);

fn config() -> BrokerConfig {
    BrokerConfig {
        bind: vec!["127.0.0.1:0".parse().unwrap()],
        max_listeners: 1000,
        ..BrokerConfig::default()
    }
}

fn ready(listener: Listener) -> Listener {
    assert!(listener.wait_listening(LONG));
    assert!(listener.wait(LONG));
    listener.take();
    listener
}

fn frame(repr: FrameRepr) -> Vec<u8> {
    let mut buf = [0u8; MAX_FRAME_LEN];
    let n = repr.emit(&mut buf).unwrap();
    buf[..n].to_vec()
}

fn hello(keepalive_secs: u16) -> Vec<u8> {
    frame(FrameRepr::Hello(HelloRepr {
        interest: FlagSet::ALL,
        channel: None,
        keepalive_secs,
    }))
}

/// Reads frames until the broker closes the connection; returns them.
fn read_until_eof(stream: &mut TcpStream) -> Vec<FrameRepr> {
    stream.set_read_timeout(Some(LONG)).unwrap();
    let mut bytes = Vec::new();
    stream
        .read_to_end(&mut bytes)
        .expect("broker closed the connection in time");
    let mut reader = FrameReader::<MAX_FRAME_LEN>::new();
    let mut frames = Vec::new();
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        rest = &rest[reader.push(rest)..];
        while let Some(frame) = reader.next_frame() {
            frames.push(FrameRepr::parse_bytes(frame.unwrap()).unwrap());
        }
    }
    assert_eq!(reader.buffered(), 0, "the broker sent a partial frame");
    frames
}

/// A hello in protocol version 3, which nobody speaks yet.
fn future_hello_frame() -> Vec<u8> {
    let mut bytes = hello(0);
    bytes[2] = 3;
    bytes
}

/// `frame` in protocol version 2 (a session with a key).
fn v2(mut frame: Vec<u8>) -> Vec<u8> {
    frame[2] = 2;
    frame
}

fn close(reason: CloseReason) -> FrameRepr {
    FrameRepr::Close(CloseRepr::new(reason))
}

/// A UDP socket standing in for the broker, with a receive buffer large
/// enough for a test's whole burst (the kernel caps it at twice
/// `net.core.rmem_max`: 416 KiB, some 500 small datagrams, on a default
/// kernel). A reader starved by a loaded machine otherwise let the kernel
/// drop datagrams: under CI load 87 of 200,000 calls went missing, with
/// `RcvbufErrors` counting the drops.
fn fake_broker() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket2::SockRef::from(&socket)
        .set_recv_buffer_size(8 << 20)
        .unwrap();
    socket.set_read_timeout(Some(LONG)).unwrap();
    socket
}

/// A notifier to `fake_broker` whose tail-loss probe never comes within a
/// test, watching for the end of a burst (`spin`) or sleeping out the pace:
/// whatever arrives was sent by the calls and the pacing alone.
fn probeless_notifier(fake_broker: &UdpSocket, spin: bool) -> Notifier {
    Notifier::builder()
        .probe_delay(Duration::from_secs(3600))
        .spin_in_bursts(spin)
        .build(fake_broker.local_addr().unwrap())
        .unwrap()
}

/// Connects, says hello, reads the welcome — and then never reads again.
fn stuck_listener(addr: SocketAddr) -> TcpStream {
    let mut stuck = TcpStream::connect(addr).unwrap();
    socket2::SockRef::from(&stuck)
        .set_recv_buffer_size(2048)
        .unwrap();
    stuck.write_all(&hello(0)).unwrap();
    stuck.set_read_timeout(Some(LONG)).unwrap();
    let mut welcome = [0u8; 18];
    stuck.read_exact(&mut welcome).unwrap();
    assert!(matches!(
        FrameRepr::parse_bytes(&welcome),
        Ok(FrameRepr::Welcome(_))
    ));
    stuck
}

#[test]
fn a_stuck_listener_is_closed_after_the_stuck_timeout() {
    let broker = Broker::spawn(BrokerConfig {
        stuck_timeout: Duration::from_secs(1),
        ..config()
    })
    .unwrap();
    let stuck = stuck_listener(broker.local_addr());
    let stop = Arc::new(AtomicBool::new(false));
    // keep raising flags until the broker gives up on it
    let flood = {
        let broker = broker.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            for i in 0..10_000_000u32 {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let n = if i % 2 == 0 {
                    Notification::status(None)
                } else {
                    Notification::non_status(None)
                };
                if broker.notify(n, 1).is_err() || (i % 64 == 0 && broker.stats().is_err()) {
                    return;
                }
            }
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let s = broker.stats().unwrap();
        if s.closes[CloseReason::Stuck as usize] == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "stuck listener never closed"
        );
        assert!(
            s.listening == 1,
            "closed for another reason: {:?}",
            s.closes
        );
        std::thread::yield_now();
    }
    stop.store(true, Ordering::Relaxed);
    flood.join().unwrap();
    drop(stuck);
}

#[test]
fn every_malformed_datagram_class_is_counted_and_ignored() {
    let broker = Broker::spawn(config()).unwrap();
    let listener = ready(Listener::connect(broker.local_addr()).unwrap());
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let valid = {
        let mut buf = [0u8; MAX_DATAGRAM_LEN];
        let n = NotifyRepr {
            notification: Notification::status(None),
            sender: SenderId(1),
            seq: Seq(1),
            batch: 1,
            ack_requested: false,
            probe: false,
            tag: None,
        }
        .emit(&mut buf)
        .unwrap();
        buf[..n].to_vec()
    };
    let mutate = |i: usize, v: u8| {
        let mut d = valid.clone();
        d[i] = v;
        d
    };
    let cases: Vec<(Vec<u8>, Error)> = vec![
        (b"GET / HTTP/1.0\r\n\r\n".to_vec(), Error::BadMagic),
        (valid[..10].to_vec(), Error::Truncated),
        (mutate(2, 9), Error::UnsupportedVersion(9)),
        (mutate(3, 0x42), Error::UnknownType(0x42)),
        (mutate(5, 9), Error::UnknownKind(9)),
        (mutate(4, 0x40), Error::UnknownFlags(0x40)),
        (mutate(7, 1), Error::ReservedNonZero),
        ([valid.clone(), vec![0]].concat(), Error::LengthMismatch),
        (mutate(6, 200), Error::TooLong),
        (mutate(5, 3), Error::MissingChannel),
        (mutate(23, 0), Error::ZeroBatch),
        (
            [mutate(6, 1), vec![0x07]].concat(),
            Error::BadChannel(flagpost_std::core::channel::ChannelIdError::ControlCharacter),
        ),
        (vec![0u8; 2000], Error::BadMagic),
        // the classes PROTOCOL.md names explicitly: an empty datagram, one
        // over 72 bytes, a channel length of 33-255
        (Vec::new(), Error::Truncated),
        ([valid.clone(), vec![0; 49]].concat(), Error::TooLong),
        ([mutate(6, 33), vec![b'a'; 33]].concat(), Error::TooLong),
    ];
    for (bytes, _) in &cases {
        udp.send_to(bytes, broker.local_addr()).unwrap();
    }
    // a valid datagram after them: once it is delivered, all were processed
    udp.send_to(&valid, broker.local_addr()).unwrap();
    assert!(listener.wait(LONG));
    assert!(listener.check_status_update());
    let s = broker.stats().unwrap();
    for (_, e) in &cases {
        let expected = cases.iter().filter(|(_, x)| x.index() == e.index()).count() as u64;
        assert_eq!(s.datagram_rejects[e.index()], expected, "{}", e.label());
    }
    assert_eq!(s.datagrams, 1);
}

#[test]
fn every_malformed_stream_class_closes_only_its_connection() {
    let broker = Broker::spawn(config()).unwrap();
    let addr = broker.local_addr();
    let healthy = ready(Listener::connect(addr).unwrap());
    let future_hello = future_hello_frame();
    let cases: Vec<(Vec<u8>, CloseReason)> = vec![
        (
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            CloseReason::ProtocolError,
        ),
        (
            vec![b'F', b'P', 1, 0x10, 0xff, 0xff],
            CloseReason::ProtocolError,
        ),
        (future_hello, CloseReason::UnsupportedVersion),
        // a keyed listener's hello: this broker has no key
        (v2(hello(0)), CloseReason::Unauthorized),
        (frame(FrameRepr::Ping(1)), CloseReason::ProtocolError),
        (frame(FrameRepr::Pong(1)), CloseReason::ProtocolError),
        (
            vec![b'F', b'P', 1, 0x10, 0, 1, 0],
            CloseReason::ProtocolError,
        ),
    ];
    // A valid hello, then a bad frame in the same write (so, nearly always,
    // the same read): the welcome still comes before the close.
    let mut unknown_type = frame(FrameRepr::Ping(1));
    unknown_type[3] = 0x42;
    let after_hello: Vec<(Vec<u8>, CloseReason)> = vec![
        ([hello(0), hello(0)].concat(), CloseReason::ProtocolError),
        (
            [hello(0), unknown_type].concat(),
            CloseReason::ProtocolError,
        ),
        (
            [hello(0), b"GET / HTTP/1.1\r\n\r\n".to_vec()].concat(),
            CloseReason::ProtocolError,
        ),
        (
            [hello(0), vec![b'F', b'P', 1, 0x13, 0xff, 0xff]].concat(),
            CloseReason::ProtocolError,
        ),
        (
            [hello(0), future_hello_frame()].concat(),
            CloseReason::UnsupportedVersion,
        ),
        // a version-2 frame in a version-1 session
        (
            [hello(0), v2(frame(FrameRepr::Ping(1)))].concat(),
            CloseReason::ProtocolError,
        ),
    ];
    for (bytes, reason) in cases.iter().chain(&after_hello) {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(bytes).unwrap();
        let frames = read_until_eof(&mut s);
        assert_eq!(frames.last(), Some(&close(*reason)), "{bytes:?}");
        let welcomed = bytes.starts_with(&hello(0));
        assert_eq!(frames.len(), 1 + usize::from(welcomed), "{frames:?}");
        if welcomed {
            assert!(matches!(frames[0], FrameRepr::Welcome(_)), "{frames:?}");
        }
    }
    let s = broker.stats().unwrap();
    assert_eq!(s.frame_rejects.iter().sum::<u64>(), 4 + 4);
    assert_eq!(s.frames_unexpected, 4);
    assert_eq!(s.listeners_unauthorized, 1);
    assert_eq!(s.frame_rejects[Error::UnknownType(0).index()], 1);
    assert_eq!(s.frame_rejects[Error::BadMagic.index()], 2);
    assert_eq!(s.frame_rejects[Error::TooLong.index()], 2);
    // the broker still serves the healthy listener
    Notifier::new(addr).unwrap().notify_status_update(None);
    assert!(healthy.wait(LONG));
    assert!(healthy.check_status_update());
}

#[test]
fn silent_connections_are_closed_by_hello_and_keepalive_timeouts() {
    let broker = Broker::spawn(BrokerConfig {
        hello_timeout: Duration::from_millis(300),
        ..config()
    })
    .unwrap();
    let mut mute = TcpStream::connect(broker.local_addr()).unwrap();
    assert_eq!(
        read_until_eof(&mut mute),
        [close(CloseReason::HelloTimeout)]
    );
    // hello asking for a 1 s keep-alive, then silence: a dead peer
    let mut dead = TcpStream::connect(broker.local_addr()).unwrap();
    dead.write_all(&hello(1)).unwrap();
    let frames = read_until_eof(&mut dead);
    assert!(matches!(
        frames[0],
        FrameRepr::Welcome(WelcomeRepr {
            keepalive_secs: 1,
            ..
        })
    ));
    assert_eq!(frames.last(), Some(&close(CloseReason::KeepaliveTimeout)));
}

/// Two listeners fit under `limits`; the third is refused with `reason`.
fn third_is_refused(limits: BrokerConfig, reason: CloseReason) -> flagpost_std::BrokerHandle {
    let broker = Broker::spawn(limits).unwrap();
    let addr = broker.local_addr();
    let _a = ready(Listener::connect(addr).unwrap());
    let _b = ready(Listener::connect(addr).unwrap());
    let mut third = TcpStream::connect(addr).unwrap();
    assert_eq!(read_until_eof(&mut third), [close(reason)]);
    broker
}

#[test]
fn limits_refuse_with_a_reason() {
    let limits = BrokerConfig {
        max_listeners: 3,
        max_per_address: 2,
        ..config()
    };
    let broker = third_is_refused(limits, CloseReason::TooManyFromAddress);
    assert_eq!(broker.stats().unwrap().transport.refused_per_address, 1);
}

#[test]
fn the_table_limit_refuses_with_a_reason() {
    let limits = BrokerConfig {
        max_listeners: 2,
        max_per_address: 0,
        ..config()
    };
    let broker = third_is_refused(limits, CloseReason::TooManyListeners);
    assert_eq!(broker.stats().unwrap().refused_full, 1);
}

/// A UDP proxy that drops the first `drop_first` datagrams towards the
/// broker and relays everything else (acks included).
fn lossy_proxy(
    broker: SocketAddr,
    drop_first: u32,
) -> (SocketAddr, Arc<AtomicU32>, Arc<AtomicBool>) {
    let front = UdpSocket::bind("127.0.0.1:0").unwrap();
    let back = UdpSocket::bind("127.0.0.1:0").unwrap();
    back.connect(broker).unwrap();
    front
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    back.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let addr = front.local_addr().unwrap();
    let dropped = Arc::new(AtomicU32::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (d, s) = (dropped.clone(), stop.clone());
    std::thread::spawn(move || {
        let mut client = None;
        let mut buf = [0u8; 256];
        while !s.load(Ordering::Relaxed) {
            if let Ok((n, from)) = front.recv_from(&mut buf) {
                client = Some(from);
                if d.load(Ordering::Relaxed) < drop_first {
                    d.fetch_add(1, Ordering::Relaxed);
                } else {
                    let _ = back.send(&buf[..n]);
                }
            }
            if let (Ok(n), Some(c)) = (back.recv(&mut buf), client) {
                let _ = front.send_to(&buf[..n], c);
            }
        }
    });
    (addr, dropped, stop)
}

#[test]
fn confirmed_notifications_retransmit_until_acknowledged() {
    let broker = Broker::spawn(config()).unwrap();
    let listener = ready(Listener::connect(broker.local_addr()).unwrap());
    let (proxy, dropped, stop) = lossy_proxy(broker.local_addr(), 2);
    let notifier = Notifier::new(proxy).unwrap();
    let result = notifier.notify_status_update_confirmed(None, LONG).unwrap();
    assert_eq!(result, AckResult::Delivered);
    assert_eq!(dropped.load(Ordering::Relaxed), 2);
    assert_eq!(notifier.stats().retransmissions, 2);
    assert!(listener.wait(LONG));
    assert!(listener.check_status_update());
    assert_eq!(broker.stats().unwrap().acks, 1);
    stop.store(true, Ordering::Relaxed);
}

#[test]
fn a_lost_tail_is_recovered_by_the_probe() {
    let broker = Broker::spawn(config()).unwrap();
    let listener = ready(Listener::connect(broker.local_addr()).unwrap());
    // the only datagram of the burst is lost; nothing follows it
    let (proxy, dropped, stop) = lossy_proxy(broker.local_addr(), 1);
    let notifier = Notifier::new(proxy).unwrap();
    notifier.notify_status_update(None);
    assert!(
        listener.wait(LONG),
        "the tail-loss probe never delivered it"
    );
    assert!(listener.check_status_update());
    assert_eq!(dropped.load(Ordering::Relaxed), 1);
    assert_eq!(notifier.stats().probes, 1);
    stop.store(true, Ordering::Relaxed);
}

/// A trickle of sends: the probe follows the last one (same sequence
/// number, at least the probe delay later) and never repeats an earlier
/// one, whether or not the parked sender thread was woken for each send.
/// The delay is long beside a step of the trickle, so that a test thread
/// descheduled on a loaded machine does not let an earlier datagram's probe
/// go out (as it should) and put the count off by one.
#[test]
fn the_probe_follows_the_last_send_of_a_trickle() {
    let fake_broker = fake_broker();
    let delay = Duration::from_millis(250);
    let notifier = Notifier::builder()
        .probe_delay(delay)
        .build(fake_broker.local_addr().unwrap())
        .unwrap();
    let mut buf = [0u8; 128];
    let mut recv_seq = || {
        let n = fake_broker.recv(&mut buf).unwrap();
        NotifyRepr::parse_bytes(&buf[..n]).unwrap().seq
    };
    notifier.notify_status_update(None);
    let first = recv_seq();
    // before the last call, so not after its send (from which the probe is
    // timed): a receive stamp could be late on a loaded machine
    let mut last_call = std::time::Instant::now();
    for _ in 0..3 {
        // the thread has armed the previous probe and parks until it
        assert!(notifier.flush(LONG));
        last_call = std::time::Instant::now();
        notifier.notify_status_update(None);
        assert_ne!(recv_seq(), first);
    }
    let probed = recv_seq();
    assert!(last_call.elapsed() >= delay);
    assert_eq!(
        probed,
        Seq(first.0 + 3),
        "the probe repeats the last datagram"
    );
    assert_eq!(notifier.stats().datagrams, 4);
    // the counter is bumped just after the probe's send returns
    let counted = std::time::Instant::now() + LONG;
    while notifier.stats().probes == 0 && std::time::Instant::now() < counted {
        std::thread::yield_now();
    }
    assert_eq!(notifier.stats().probes, 1);
}

/// Sums the batch counts of the datagrams `fake_broker` receives until they
/// reach `calls`; returns the sum (less if a receive times out first) and
/// the last sequence number.
fn receive_counts(fake_broker: &UdpSocket, calls: u64) -> (u64, Seq) {
    let mut buf = [0u8; 128];
    let mut counted = 0u64;
    let mut last = Seq(0);
    while counted < calls {
        let Ok(n) = fake_broker.recv(&mut buf) else {
            break;
        };
        let repr = NotifyRepr::parse_bytes(&buf[..n]).unwrap();
        counted += u64::from(repr.batch);
        last = repr.seq;
    }
    (counted, last)
}

/// A hot loop's calls are merged into a few datagrams whose batch counts add
/// up to every call, the last ones included, and the end of the burst is
/// sent by the notifier's thread — not left to the tail-loss probe (set far
/// beyond the test here) — whether it watches for the end of the burst or
/// sleeps out the pace. Dropping the notifier then repeats the last
/// datagram at once instead of waiting out the probe delay.
#[test]
fn a_burst_is_sent_whole_without_the_probe() {
    for spin in [true, false] {
        let fake_broker = fake_broker();
        let notifier = probeless_notifier(&fake_broker, spin);
        const CALLS: u64 = 200_000;
        // read while the calls go on: the socket buffer holds a few hundred
        let (counted, last) = std::thread::scope(|s| {
            let reader = s.spawn(|| receive_counts(&fake_broker, CALLS));
            for _ in 0..CALLS {
                notifier.notify_status_update(None);
            }
            reader.join().unwrap()
        });
        assert_eq!(counted, CALLS, "spin {spin}");
        let stats = notifier.stats();
        assert_eq!(stats.calls, CALLS);
        assert_eq!(stats.probes, 0, "spin {spin}: the probe was needed");
        assert!(
            stats.datagrams < CALLS / 10,
            "spin {spin}: {} datagrams for {CALLS} calls",
            stats.datagrams
        );
        drop(notifier);
        let mut buf = [0u8; 128];
        let n = fake_broker.recv(&mut buf).unwrap();
        let probe = NotifyRepr::parse_bytes(&buf[..n]).unwrap();
        assert_eq!(
            probe.seq, last,
            "spin {spin}: the drop repeats the last datagram"
        );
    }
}

/// Datagrams the kernel drops because the broker's socket buffer is full are
/// read from `SO_RXQ_OVFL`, counted, and raise the loss flags like a
/// sequence gap: status, and channel update (a dropped datagram may have been
/// one).
#[cfg(target_os = "linux")]
#[test]
fn kernel_drops_are_counted_and_raise_the_loss_flags() {
    let broker = Broker::spawn(BrokerConfig {
        udp_recv_buffer: 1, // the kernel's minimum: a few datagrams
        ..config()
    })
    .unwrap();
    let listener = ready(
        Listener::builder()
            .interest(FlagSet::STATUS | FlagSet::CHANNEL_UPDATE | FlagSet::CHANNEL_SHUTDOWN)
            .connect(broker.local_addr())
            .unwrap(),
    );
    // non-status floods from two threads (so the status and channel-update
    // flags can only come from the loss handling), bounded in count
    let target = broker.local_addr();
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..2)
        .map(|t| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
                let mut buf = [0u8; MAX_DATAGRAM_LEN];
                for seq in 1..=500_000u32 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let n = NotifyRepr {
                        notification: Notification::non_status(None),
                        sender: SenderId(100 + t),
                        seq: Seq(seq),
                        batch: 1,
                        ack_requested: false,
                        probe: false,
                        tag: None,
                    }
                    .emit(&mut buf)
                    .unwrap();
                    let _ = udp.send_to(&buf[..n], target);
                }
            })
        })
        .collect();
    assert!(listener.wait(Duration::from_secs(60)), "no drop reported");
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.join().unwrap();
    }
    assert!(listener.check_status_update());
    assert!(listener.check_channel_update());
    assert!(
        !listener.check_channel_shutdown(),
        "a shutdown is never guessed"
    );
    let s = broker.stats().unwrap();
    assert!(s.kernel_drops > 0, "kernel drops not counted: {s:?}");
    assert!(s.possible_losses > 0);
}
