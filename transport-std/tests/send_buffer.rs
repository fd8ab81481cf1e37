//! The kernel memory a listener can pin in the broker: a listener that says
//! hello with a small receive buffer and never reads again, under a steady
//! stream of raises, never has more than a kilobyte queued in the broker's
//! socket, and is closed as stuck within the stuck timeout (plus the core's
//! housekeeping granularity) of its window closing. The stats
//! exchange, one larger write, still arrives whole through the small
//! buffers.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use flagpost_std::core::broker::Stats;
use flagpost_std::core::wire::{CloseReason, CloseRepr, FrameReader, FrameRepr, MAX_FRAME_LEN};
use flagpost_std::{Broker, BrokerConfig};

const LONG: Duration = Duration::from_secs(10);

fn config() -> BrokerConfig {
    BrokerConfig {
        bind: vec!["127.0.0.1:0".parse().unwrap()],
        max_listeners: 64,
        ..BrokerConfig::default()
    }
}

/// A TCP connection to `addr` whose receive buffer is `recv_buffer` bytes,
/// set before the handshake (so the advertised window is small from the
/// first segment).
fn connect_small(addr: SocketAddr, recv_buffer: usize) -> TcpStream {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).unwrap();
    socket.set_recv_buffer_size(recv_buffer).unwrap();
    socket.connect_timeout(&addr.into(), LONG).unwrap();
    socket.into()
}

fn emit(frame: FrameRepr) -> Vec<u8> {
    let mut buf = [0u8; MAX_FRAME_LEN];
    let n = frame.emit(&mut buf).unwrap();
    buf[..n].to_vec()
}

/// Reading the broker's socket from `/proc/net/tcp`: Linux only.
#[cfg(target_os = "linux")]
mod window {
    use std::io::{Read, Write};
    use std::net::UdpSocket;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use flagpost_std::core::wire::{CloseReason, FrameRepr, HelloRepr};
    use flagpost_std::core::{FlagSet, Notification};
    use flagpost_std::{Broker, BrokerConfig};

    use super::{config, connect_small, emit, LONG};

    /// One loopback connection as `/proc/net/tcp` shows it.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct TcpLine {
        /// `tx_queue`, what `ss` shows as Send-Q: unacknowledged plus unsent.
        tx_queue: u64,
        /// `rx_queue`: received, not yet read.
        rx_queue: u64,
        /// The active timer: 4 is the zero-window probe timer, armed while the
        /// peer's window is closed and data waits.
        timer: u8,
    }

    /// The line of the connection from `local_port` to `remote_port`.
    fn tcp_line(table: &str, local_port: u16, remote_port: u16) -> Option<TcpLine> {
        let local = format!(":{local_port:04X}");
        let remote = format!(":{remote_port:04X}");
        table.lines().skip(1).find_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 6 || !f[1].ends_with(&local) || !f[2].ends_with(&remote) {
                return None;
            }
            let (tx, rx) = f[4].split_once(':')?;
            Some(TcpLine {
                tx_queue: u64::from_str_radix(tx, 16).ok()?,
                rx_queue: u64::from_str_radix(rx, 16).ok()?,
                timer: u8::from_str_radix(f[5].split(':').next()?, 16).ok()?,
            })
        })
    }

    #[test]
    fn a_listener_that_stops_reading_pins_under_a_kilobyte_and_is_closed_as_stuck() {
        const STUCK: Duration = Duration::from_secs(2);
        // the core checks deadlines at most once a second
        const HOUSEKEEPING: Duration = Duration::from_secs(1);
        // how late this test may notice the close: it polls every 2 ms, less
        // often when the machine is loaded
        const OBSERVATION: Duration = Duration::from_millis(200);
        const MAX_QUEUED: u64 = 1024;

        let broker = Broker::spawn(BrokerConfig {
            stuck_timeout: STUCK,
            ..config()
        })
        .unwrap();
        let addr = broker.local_addr();
        // what flagpost's own Listener asks for (the kernel's minimum)
        let mut stuck = connect_small(addr, flagpost_std::listener::RECV_BUFFER);
        stuck
            .write_all(&emit(FrameRepr::Hello(HelloRepr {
                interest: FlagSet::ALL,
                channel: None,
                keepalive_secs: 0,
            })))
            .unwrap();
        stuck.set_read_timeout(Some(LONG)).unwrap();
        let mut welcome = [0u8; 18];
        stuck.read_exact(&mut welcome).unwrap();
        let stuck_port = stuck.local_addr().unwrap().port();
        // ... and from here on it never reads.

        // A notification every millisecond, each a chance to write a frame.
        let stop = Arc::new(AtomicBool::new(false));
        let sender = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
                let mut seq = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    seq += 1;
                    let notification = if seq.is_multiple_of(2) {
                        Notification::status(None)
                    } else {
                        Notification::non_status(None)
                    };
                    let _ = crate::common::send_notify(&udp, addr, notification, 0x5e9d, seq);
                    // pacing, not synchronisation
                    std::thread::sleep(Duration::from_millis(1));
                }
                seq
            })
        };

        // The window has closed when the broker can no longer write: its last
        // successful write (the last growth of frames_written: this test's only
        // listener) is that moment, and the stuck clock starts at the next
        // raise. (The broker's zero-window probe timer usually shows it too, but
        // not always, when the retransmission timer is the one armed; and the
        // peer's kernel may still take in a few unsent bytes after it.)
        let start = Instant::now();
        let deadline = start + Duration::from_secs(20);
        let mut max_queued = 0;
        let mut first_probe: Option<Instant> = None;
        let mut last_write = start;
        let mut written = 0;
        let closed = loop {
            let now = Instant::now();
            assert!(
                now < deadline,
                "not closed as stuck in time ({written} frames written, at most {max_queued} B queued)"
            );
            let stats = broker.stats().unwrap();
            if stats.closes[CloseReason::Stuck as usize] == 1 {
                break now;
            }
            assert_eq!(stats.listening, 1, "closed otherwise: {:?}", stats.closes);
            if stats.frames_written > written {
                written = stats.frames_written;
                last_write = now;
            }
            let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
            let broker_side = tcp_line(&table, addr.port(), stuck_port).expect("broker's socket");
            max_queued = max_queued.max(broker_side.tx_queue);
            assert!(
                broker_side.tx_queue <= MAX_QUEUED,
                "{} bytes queued for a listener that stopped reading",
                broker_side.tx_queue
            );
            if broker_side.timer == 4 && first_probe.is_none() {
                first_probe = Some(now);
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        stop.store(true, Ordering::Relaxed);
        let sent = sender.join().unwrap();
        let listener_side = tcp_line(
            &std::fs::read_to_string("/proc/net/tcp").unwrap(),
            stuck_port,
            addr.port(),
        );
        let window_closed = last_write;
        let after = closed - last_write;
        eprintln!(
            "{sent} notifications, {written} frames written; last write at {:?}; zero-window \
             probes from {:?}; closed as stuck {after:?} after the last write; at most \
             {max_queued} B queued in the broker; the listener absorbed {:?} B",
            last_write - start,
            first_probe.map(|p| p - start),
            listener_side.map(|l| l.rx_queue)
        );
        assert!(
            after <= STUCK + HOUSEKEEPING + OBSERVATION,
            "closed {after:?} after the last write"
        );
        assert!(
            window_closed - start < Duration::from_secs(1),
            "the small receive buffer took {:?} to fill",
            window_closed - start
        );
        drop(stuck);
        broker.shutdown();
        broker.join().unwrap();
    }
}

/// Sends a stats request and reads the reply to the end.
fn stats_exchange(stream: &mut TcpStream) -> (usize, Option<FrameRepr>) {
    stream.write_all(&emit(FrameRepr::StatsRequest)).unwrap();
    stream.set_read_timeout(Some(LONG)).unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).unwrap();
    let mut stats = 0;
    let mut last = None;
    let mut reader = FrameReader::<MAX_FRAME_LEN>::new();
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        rest = &rest[reader.push(rest)..];
        while let Some(frame) = reader.next_frame() {
            let frame = FrameRepr::parse_bytes(frame.unwrap()).unwrap();
            if matches!(frame, FrameRepr::Stat(_)) {
                stats += 1;
            }
            last = Some(frame);
        }
    }
    assert_eq!(reader.buffered(), 0, "stray bytes");
    (stats, last)
}

#[test]
fn the_stats_exchange_arrives_whole_through_small_buffers() {
    // the smallest send buffer the broker can be given
    let broker = Broker::spawn(BrokerConfig {
        listener_send_buffer: 1,
        ..config()
    })
    .unwrap();
    let addr = broker.local_addr();
    let normal = Some(FrameRepr::Close(CloseRepr::new(CloseReason::Normal)));
    for recv_buffer in [None, Some(1024)] {
        let mut client = match recv_buffer {
            None => TcpStream::connect(addr).unwrap(),
            Some(size) => connect_small(addr, size),
        };
        let (stats, last) = stats_exchange(&mut client);
        assert_eq!(stats, Stats::len(), "receive buffer {recv_buffer:?}");
        assert_eq!(last, normal, "receive buffer {recv_buffer:?}");
    }
    // and through the command
    assert_eq!(common::stats_json(&addr.to_string()).len(), Stats::len());
    broker.shutdown();
    broker.join().unwrap();
}
