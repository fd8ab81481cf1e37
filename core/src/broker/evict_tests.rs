//! Eviction on a table of 4, on a hand-driven clock: a full table of silent
//! connections makes room for a newcomer once the oldest has waited
//! `evict_after`, never by evicting a listener, and the evicted connection's
//! close is reported in order, whatever its slot's new tenant does.

use super::tests::{broker, listen};
use super::*;
use crate::wire::MAX_FRAME_LEN;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn at(millis: u64) -> Instant {
    Instant::ZERO + ms(millis)
}

fn closed(listener: ListenerId, reason: CloseReason) -> Option<Event> {
    Some(Event::Closed {
        listener,
        reason,
        send_close: true,
        version: crate::wire::VERSION,
    })
}

fn evicted(b: &BrokerState<[ListenerSlot; 4], [SenderSlot; 4]>) -> u64 {
    b.stats().connections_evicted
}

#[test]
fn a_newcomer_evicts_the_oldest_silent_connection_after_the_minimum() {
    let mut b = broker();
    assert_eq!(b.config().evict_after, Duration::from_secs(1));
    // four silent connections, 100 ms apart
    let silent: std::vec::Vec<ListenerId> = (0..4).map(|i| b.open(at(100 * i)).unwrap()).collect();

    // before the oldest has waited 1 s, the newcomer is refused as before
    assert_eq!(b.open(at(999)), Err(OpenError::Full));
    assert_eq!(b.stats().refused_full, 1);
    assert_eq!(evicted(&b), 0);

    // at 1 s the oldest goes, and the newcomer has its slot
    let newcomer = b.open(at(1000)).unwrap();
    assert_eq!(newcomer.index(), silent[0].index());
    assert_eq!(b.state(silent[0]), None, "the evicted handle is dead");
    assert_eq!(b.state(newcomer), Some(SlotState::AwaitingHello));
    assert_eq!(b.connections(), 4);
    let s = b.stats();
    assert_eq!((s.connections_evicted, s.refused_full, s.opened), (1, 1, 5));
    assert_eq!(s.closes[CloseReason::TooManyListeners as usize], 1);
    assert_eq!(s.awaiting_hello, 4);
    // its close comes out like any other, once
    assert_eq!(
        b.poll_event(),
        closed(silent[0], CloseReason::TooManyListeners)
    );
    assert_eq!(b.poll_event(), None);

    // the next newcomers take the next oldest, in the order they opened,
    // then the table is all younger than 1 s again
    assert_eq!(b.open(at(1100)).unwrap().index(), silent[1].index());
    assert_eq!(b.open(at(1200)).unwrap().index(), silent[2].index());
    assert_eq!(b.open(at(1250)), Err(OpenError::Full));
    assert_eq!(
        b.poll_event(),
        closed(silent[1], CloseReason::TooManyListeners)
    );
    assert_eq!(
        b.poll_event(),
        closed(silent[2], CloseReason::TooManyListeners)
    );
    assert_eq!(b.poll_event(), None);
    assert_eq!(evicted(&b), 3);
}

#[test]
fn listeners_are_never_evicted_and_a_table_of_listeners_refuses() {
    let mut b = broker();
    let t = Instant::ZERO;
    let a = listen(&mut b, t, None, FlagSet::ALL);
    let silent = b.open(t).unwrap();
    let c = listen(&mut b, t, None, FlagSet::STATUS);
    // opened first, listening second: a slow hello that completed
    let late = b.open(t).unwrap();

    // the listeners ahead of it in the list are skipped, not evicted
    let n1 = b.open(at(5000)).unwrap();
    assert_eq!(n1.index(), silent.index());
    assert_eq!(
        b.poll_event(),
        closed(silent, CloseReason::TooManyListeners)
    );
    let (buf, len) = hello_frame();
    b.handle_frame(at(5000), late, &buf[..len]).unwrap();
    // n1 has not waited 1 s, and nothing else may go
    assert_eq!(b.open(at(5500)), Err(OpenError::Full));
    b.handle_frame(at(5600), n1, &buf[..len]).unwrap();

    // all four listening: refused, however long they have been there
    assert_eq!(b.open(at(3_600_000)), Err(OpenError::Full));
    assert_eq!(b.open(at(3_600_001)), Err(OpenError::Full));
    for id in [a, c, late, n1] {
        assert_eq!(b.state(id), Some(SlotState::Listening));
    }
    assert_eq!(b.poll_event(), None);
    let s = b.stats();
    assert_eq!(
        (s.connections_evicted, s.refused_full, s.listening),
        (1, 3, 4)
    );
}

fn hello_frame() -> ([u8; MAX_FRAME_LEN], usize) {
    let mut buf = [0; MAX_FRAME_LEN];
    let hello = FrameRepr::Hello(crate::wire::HelloRepr {
        interest: FlagSet::ALL,
        channel: None,
        keepalive_secs: 0,
    });
    let n = hello.emit(&mut buf).unwrap();
    (buf, n)
}

/// The evicted connection's close comes before anything about its slot's
/// new tenant: one that closes follows it at once, one that goes away frees
/// the slot only once the close is reported.
#[test]
fn the_evicted_close_comes_first_whatever_the_new_tenant_does() {
    let mut b = broker();
    let old: std::vec::Vec<ListenerId> = [0, 0, 0, 500]
        .iter()
        .map(|&t| b.open(at(t)).unwrap())
        .collect();
    let t = at(1000);
    let tenant0 = b.open(t).unwrap();
    let tenant1 = b.open(t).unwrap();
    // a listener closed after the first eviction, before the tenant
    b.close(old[2], CloseReason::Normal);
    // tenant 0 sends garbage: closed, its event after its predecessor's
    b.handle_frame(t, tenant0, b"garbage").unwrap_err();
    // tenant 1 goes away: its slot stays taken until its predecessor's close
    b.disconnect(tenant1);
    assert_eq!(b.state(tenant1), None);
    assert_eq!(b.connections(), 1);
    // old[3] has waited 500 ms only; tenant 1's slot is not free yet
    assert_eq!(b.open(t), Err(OpenError::Full));
    let events: std::vec::Vec<Event> = core::iter::from_fn(|| b.poll_event()).collect();
    assert_eq!(
        events,
        [
            closed(old[0], CloseReason::TooManyListeners).unwrap(),
            closed(tenant0, CloseReason::ProtocolError).unwrap(),
            closed(old[1], CloseReason::TooManyListeners).unwrap(),
            closed(old[2], CloseReason::Normal).unwrap(),
        ]
    );
    // three slots free again, each reused once, with fresh handles
    let again: std::vec::Vec<ListenerId> = (0..3).map(|_| b.open(t).unwrap()).collect();
    for id in &again {
        assert!(![tenant0, tenant1, old[0], old[1], old[2]].contains(id));
        assert_eq!(b.state(*id), Some(SlotState::AwaitingHello));
    }
    assert_eq!(b.connections(), 4);
    assert_eq!(b.stats().connections_evicted, 2);
}

/// A transport that does not drain `poll_event` cannot make a slot hold two
/// evicted connections: its new tenant waits, and the next oldest goes.
#[test]
fn a_slot_with_an_unreported_eviction_is_not_evicted_again() {
    let mut b = broker();
    let old: std::vec::Vec<ListenerId> = (0..4).map(|i| b.open(at(i)).unwrap()).collect();
    let first = b.open(at(1000)).unwrap();
    assert_eq!(first.index(), old[0].index());
    // every old one goes; then the first newcomer is the oldest, waited
    // long enough, but its predecessor's close is not reported yet
    for _ in 1..4 {
        b.open(at(1003)).unwrap();
    }
    assert_eq!(b.open(at(9000)), Err(OpenError::Full));
    assert_eq!(evicted(&b), 4);
    assert_eq!(
        b.poll_event(),
        closed(old[0], CloseReason::TooManyListeners)
    );
    let second = b.open(at(9000)).unwrap();
    assert_eq!(second.index(), first.index());
    assert_eq!(b.state(first), None);
}

/// Housekeeping and shutdown meet slots carrying an eviction record: the
/// hello timeout still closes the new tenant, and shutdown reports both.
#[test]
fn timeouts_and_shutdown_see_the_new_tenant() {
    let mut b = broker();
    let old: std::vec::Vec<ListenerId> = (0..4).map(|_| b.open(Instant::ZERO).unwrap()).collect();
    let tenant = b.open(at(1000)).unwrap();
    // the old ones time out at 10 s; the tenant, opened at 1 s, at 11 s
    b.handle_timeout(at(10_000));
    b.shutdown();
    let events: std::vec::Vec<Event> = core::iter::from_fn(|| b.poll_event()).collect();
    assert_eq!(events.len(), 5);
    assert_eq!(
        events[0],
        closed(old[0], CloseReason::TooManyListeners).unwrap()
    );
    assert_eq!(events[1], closed(tenant, CloseReason::Shutdown).unwrap());
    for (e, id) in events[2..].iter().zip(&old[1..]) {
        assert_eq!(*e, closed(*id, CloseReason::HelloTimeout).unwrap());
    }
    assert_eq!(b.connections(), 0);
    assert_eq!(b.poll_timeout(), None);
}

/// Thousands of opens, hellos, disconnects and evictions against a full
/// table keep the lists and the gauges consistent.
#[test]
fn a_long_run_of_opens_against_listeners_and_churn_stays_consistent() {
    let mut b = broker();
    let (buf, len) = hello_frame();
    let mut live: std::vec::Vec<ListenerId> = std::vec::Vec::new();
    let mut t = Instant::ZERO;
    for round in 0..5000u64 {
        t += ms(300);
        match b.open(t) {
            Ok(id) => {
                if round % 3 == 0 {
                    b.handle_frame(t, id, &buf[..len]).unwrap();
                }
                live.push(id);
            }
            Err(e) => assert_eq!(e, OpenError::Full),
        }
        if round % 7 == 0 {
            if let Some(id) = live.first().copied() {
                live.remove(0);
                b.disconnect(id);
            }
        }
        while let Some(event) = b.poll_event() {
            let Event::Closed { listener, .. } = event else {
                panic!("{event:?}");
            };
            live.retain(|id| *id != listener);
        }
        live.retain(|id| b.state(*id).is_some());
        assert!(b.connections() <= 4);
        let s = b.stats();
        assert_eq!(s.awaiting_hello + s.listening, b.connections() as u64);
    }
    assert!(b.stats().connections_evicted > 100);
}
