//! The std notifier's timing on a simulated clock: the shell sends what the
//! core says when the core says it, inline when it can; the test moves time.

use std::net::UdpSocket;
use std::sync::atomic::AtomicU64;

use flagpost_core::wire::NotifyRepr;

use super::*;

const LONG: Duration = Duration::from_secs(10);

fn fake_broker() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(LONG)).unwrap();
    socket
}

/// A notifier on the simulated clock `now` (µs), with the default pace
/// (`NotifierConfig::HOST`) and probe delay.
fn notifier(broker: &UdpSocket, now: &'static AtomicU64) -> Notifier {
    NotifierBuilder {
        clock: Clock::manual(now),
        ..NotifierBuilder::default()
    }
    .build(broker.local_addr().unwrap())
    .unwrap()
}

fn advance(now: &AtomicU64, by: flagpost_core::Duration) {
    now.fetch_add(by.as_micros(), Ordering::SeqCst);
}

fn recv(broker: &UdpSocket) -> NotifyRepr {
    let mut buf = [0u8; MAX_DATAGRAM_LEN];
    let n = broker.recv(&mut buf).unwrap();
    NotifyRepr::parse_bytes(&buf[..n]).unwrap()
}

fn nothing_more(broker: &UdpSocket) -> bool {
    broker.set_nonblocking(true).unwrap();
    let none = broker.recv(&mut [0u8; MAX_DATAGRAM_LEN]).is_err();
    broker.set_nonblocking(false).unwrap();
    none
}

#[test]
fn spaced_calls_go_out_inline_and_close_ones_wait_for_the_pace() {
    static NOW: AtomicU64 = AtomicU64::new(1_000_000);
    let broker = fake_broker();
    let n = notifier(&broker, &NOW);
    let pace = NotifierConfig::HOST.pace;
    assert!(n.flush(LONG), "the sender thread settles");
    // calls further apart than the pace: each is sent by the caller
    for _ in 0..10 {
        advance(&NOW, pace + pace);
        n.notify_status_update(None);
        assert_eq!(recv(&broker).batch, 1);
    }
    assert_eq!(n.stats().inline, 10);
    // five calls within the pace of the last send: nothing goes out until
    // the pace has passed, then one datagram standing for all five
    for _ in 0..5 {
        n.notify_status_update(None);
    }
    advance(&NOW, pace);
    let merged = recv(&broker);
    assert_eq!(merged.batch, 5);
    assert!(n.flush(LONG));
    assert!(nothing_more(&broker), "one datagram for the five calls");
    let stats = n.stats();
    assert_eq!((stats.calls, stats.datagrams, stats.inline), (15, 11, 10));
}

#[test]
fn the_probe_repeats_the_last_datagram_once_the_probe_delay_passes() {
    static NOW: AtomicU64 = AtomicU64::new(1_000_000);
    let broker = fake_broker();
    let n = notifier(&broker, &NOW);
    assert!(n.flush(LONG));
    n.notify_non_status_update();
    let sent = recv(&broker);
    // the thread parks until the probe is due on the simulated clock: it
    // does not come while time stands still, and comes once time moves
    assert!(n.flush(LONG));
    assert!(nothing_more(&broker));
    assert_eq!(n.stats().probes, 0);
    advance(&NOW, NotifierConfig::HOST.probe_delay);
    let probe = recv(&broker);
    assert_eq!(probe.seq, sent.seq, "the probe repeats the last datagram");
    drop(n); // a probe already sent is not repeated at the stop
    assert!(nothing_more(&broker));
}
