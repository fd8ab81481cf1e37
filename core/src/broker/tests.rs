//! BrokerState state tests: lifecycle, routing, coalescing, loss handling and
//! timeouts, all on a hand-driven clock.

use super::*;
use crate::loss::Verdict;
use crate::wire::{
    AckResult, CloseRepr, FlagsRepr, HelloRepr, NotifyRepr, SenderId, Seq, WelcomeRepr,
    MAX_DATAGRAM_LEN, MAX_FRAME_LEN,
};

pub(super) type TestBroker = BrokerState<[ListenerSlot; 4], [SenderSlot; 4]>;

pub(super) fn broker() -> TestBroker {
    BrokerState::new(
        Config {
            broker_id: 0xb0,
            ..Config::default()
        },
        [ListenerSlot::EMPTY; 4],
        [SenderSlot::EMPTY; 4],
    )
}

fn ch(name: &str) -> ChannelId {
    ChannelId::new(name).unwrap()
}

fn frame(repr: FrameRepr) -> ([u8; MAX_FRAME_LEN], usize) {
    let mut buf = [0; MAX_FRAME_LEN];
    let n = repr.emit(&mut buf).unwrap();
    (buf, n)
}

fn send(
    b: &mut TestBroker,
    now: Instant,
    id: ListenerId,
    repr: FrameRepr,
) -> Result<(), FrameError> {
    let (buf, n) = frame(repr);
    b.handle_frame(now, id, &buf[..n])
}

pub(super) fn listen(
    b: &mut TestBroker,
    now: Instant,
    channel: Option<ChannelId>,
    interest: FlagSet,
) -> ListenerId {
    let id = b.open(now).unwrap();
    send(
        b,
        now,
        id,
        FrameRepr::Hello(HelloRepr {
            interest,
            channel,
            keepalive_secs: 0,
        }),
    )
    .unwrap();
    assert!(matches!(b.poll_frame(id), Some(FrameRepr::Welcome(_))));
    assert_eq!(b.poll_frame(id), None);
    id
}

pub(super) fn drain_ready(b: &mut TestBroker) -> std::vec::Vec<ListenerId> {
    core::iter::from_fn(|| b.poll_ready()).collect()
}

pub(super) fn flags_of(b: &mut TestBroker, id: ListenerId) -> FlagSet {
    let mut got = FlagSet::EMPTY;
    while let Some(f) = b.poll_frame(id) {
        if let FrameRepr::Flags(f) = f {
            assert!(got.is_empty(), "two flags frames in one drain");
            got = f.flags;
        }
    }
    got
}

pub(super) fn datagram(
    n: Notification,
    sender: u64,
    seq: u32,
    ack: bool,
) -> ([u8; MAX_DATAGRAM_LEN], usize) {
    let repr = NotifyRepr {
        notification: n,
        sender: SenderId(sender),
        seq: Seq(seq),
        batch: 1,
        ack_requested: ack,
        probe: false,
        tag: None,
    };
    let mut buf = [0; MAX_DATAGRAM_LEN];
    let len = repr.emit(&mut buf).unwrap();
    (buf, len)
}

#[test]
fn welcome_carries_interest_keepalive_and_broker_id() {
    let mut b = broker();
    let id = b.open(Instant::ZERO).unwrap();
    assert_eq!(b.state(id), Some(SlotState::AwaitingHello));
    send(
        &mut b,
        Instant::ZERO,
        id,
        FrameRepr::Hello(HelloRepr {
            interest: FlagSet::STATUS,
            channel: Some(ch("gsm1")),
            keepalive_secs: 5000, // clamped to max_keepalive
        }),
    )
    .unwrap();
    assert_eq!(b.state(id), Some(SlotState::Listening));
    assert_eq!(b.channel(id), Some(ch("gsm1")));
    assert_eq!(b.poll_ready(), Some(id));
    assert_eq!(
        b.poll_frame(id),
        Some(FrameRepr::Welcome(WelcomeRepr {
            interest: FlagSet::STATUS,
            keepalive_secs: 3600,
            broker_id: 0xb0,
        }))
    );
}

#[test]
fn routing_by_channel_and_interest() {
    let mut b = broker();
    let t = Instant::ZERO;
    let all = listen(&mut b, t, None, FlagSet::ALL);
    let gsm1 = listen(&mut b, t, Some(ch("gsm1")), FlagSet::ALL);
    let gsm2 = listen(&mut b, t, Some(ch("gsm2")), FlagSet::ALL);
    let views = listen(&mut b, t, None, FlagSet::NON_STATUS);

    // targeted status: the channel's listener and all-channel listeners
    assert_eq!(b.notify(t, &Notification::status(Some(ch("gsm1"))), 1), 3);
    assert_eq!(drain_ready(&mut b), [all, gsm1, views]);
    assert_eq!(flags_of(&mut b, all), FlagSet::STATUS | FlagSet::NON_STATUS);
    assert_eq!(
        flags_of(&mut b, gsm1),
        FlagSet::STATUS | FlagSet::NON_STATUS
    );
    assert_eq!(flags_of(&mut b, views), FlagSet::NON_STATUS);
    assert_eq!(flags_of(&mut b, gsm2), FlagSet::EMPTY);

    // untargeted status reaches everyone
    assert_eq!(b.notify(t, &Notification::status(None), 1), 4);
    // channel shutdown for gsm2: gsm2 and the all-channel listener with interest
    b.notify(t, &Notification::channel_shutdown(ch("gsm2")), 1);
    assert_eq!(drain_ready(&mut b).len(), 4);
    assert_eq!(
        flags_of(&mut b, gsm2),
        FlagSet::STATUS | FlagSet::NON_STATUS | FlagSet::CHANNEL_SHUTDOWN
    );
    assert_eq!(
        flags_of(&mut b, gsm1),
        FlagSet::STATUS | FlagSet::NON_STATUS
    );
    assert_eq!(
        flags_of(&mut b, all),
        FlagSet::STATUS | FlagSet::NON_STATUS | FlagSet::CHANNEL_SHUTDOWN
    );
}

#[test]
fn raises_coalesce_until_written() {
    let mut b = broker();
    let t = Instant::ZERO;
    let id = listen(&mut b, t, None, FlagSet::ALL);
    for _ in 0..1000 {
        b.notify(t, &Notification::non_status(None), 1);
    }
    b.notify(t, &Notification::status(None), 1);
    assert_eq!(drain_ready(&mut b), [id]);
    assert_eq!(
        b.poll_frame(id),
        Some(FrameRepr::Flags(FlagsRepr {
            flags: FlagSet::STATUS | FlagSet::NON_STATUS,
            raises: 1001,
        }))
    );
    assert_eq!(b.poll_frame(id), None);
    let s = b.stats();
    assert_eq!(s.raises, 1001);
    assert_eq!(s.raises_coalesced, 999);
    assert_eq!(s.flags_frames, 1);
}

#[test]
fn ping_is_answered_after_flags() {
    let mut b = broker();
    let t = Instant::ZERO;
    let id = listen(&mut b, t, None, FlagSet::ALL);
    b.notify(t, &Notification::status(None), 1);
    send(&mut b, t, id, FrameRepr::Ping(9)).unwrap();
    send(&mut b, t, id, FrameRepr::Ping(10)).unwrap();
    assert_eq!(drain_ready(&mut b), [id]);
    assert!(matches!(b.poll_frame(id), Some(FrameRepr::Flags(_))));
    assert_eq!(b.poll_frame(id), Some(FrameRepr::Pong(10)));
    assert_eq!(b.poll_frame(id), None);
}

#[test]
fn datagrams_are_sequence_checked_and_acked() {
    let mut b = broker();
    let t = Instant::ZERO;
    let id = listen(&mut b, t, Some(ch("gsm1")), FlagSet::ALL);
    let to_gsm2 = Notification::channel_update(ch("gsm2"));

    let (d, n) = datagram(to_gsm2, 7, 1, true);
    let r = b.handle_datagram(t, &d[..n]).unwrap();
    assert_eq!((r.verdict, r.reached), (Verdict::InOrder, 0));
    assert_eq!(
        r.ack.map(|a| (a.seq, a.result)),
        Some((Seq(1), AckResult::Delivered))
    );
    // a retransmission is acked as duplicate and not delivered again
    let r = b.handle_datagram(t, &d[..n]).unwrap();
    assert_eq!(r.ack.map(|a| a.result), Some(AckResult::Duplicate));
    assert_eq!(drain_ready(&mut b), []);

    // seq 3 after 1: a gap, so everyone gets the loss raise: status,
    // non-status and channel update (seq 2 may have been any of them), never
    // a shutdown
    let (d, n) = datagram(to_gsm2, 7, 3, false);
    let r = b.handle_datagram(t, &d[..n]).unwrap();
    assert_eq!(r.verdict, Verdict::Gap { missing: 1 });
    assert_eq!(r.ack, None);
    assert_eq!(drain_ready(&mut b), [id]);
    assert_eq!(
        flags_of(&mut b, id),
        FlagSet::STATUS | FlagSet::NON_STATUS | FlagSet::CHANNEL_UPDATE
    );
    // the late seq 2 is still delivered: a reordered channel update is not lost
    let (d, n) = datagram(Notification::channel_update(ch("gsm1")), 7, 2, false);
    assert_eq!(
        b.handle_datagram(t, &d[..n]).unwrap().verdict,
        Verdict::Reordered
    );
    assert_eq!(flags_of(&mut b, id), FlagSet::CHANNEL_UPDATE);

    let s = b.stats();
    assert_eq!(
        (s.datagrams, s.duplicates, s.gaps, s.missing, s.reordered),
        (4, 1, 1, 1, 1)
    );
    assert_eq!(s.possible_losses, 1);
    assert_eq!(s.senders, 1);
}

#[test]
fn probes_are_counted_apart_from_duplicates() {
    let mut b = broker();
    let t = Instant::ZERO;
    let id = listen(&mut b, t, None, FlagSet::ALL);
    let probe = |seq| {
        let (mut d, _) = datagram(Notification::status(None), 9, seq, false);
        let mut repr = NotifyRepr::parse_bytes(&d[..24]).unwrap();
        repr.probe = true;
        let n = repr.emit(&mut d).unwrap();
        (d, n)
    };
    // seq 1, then its probe: the probe finds its original, not a duplicate
    let (d, n) = datagram(Notification::status(None), 9, 1, false);
    b.handle_datagram(t, &d[..n]).unwrap();
    assert_eq!(drain_ready(&mut b), [id]);
    flags_of(&mut b, id);
    let (d, n) = probe(1);
    assert_eq!(
        b.handle_datagram(t, &d[..n]).unwrap().verdict,
        Verdict::Duplicate
    );
    assert_eq!(drain_ready(&mut b), []);
    // seq 2 lost, its probe delivers it
    let (d, n) = probe(2);
    let r = b.handle_datagram(t, &d[..n]).unwrap();
    assert_eq!((r.verdict, r.reached), (Verdict::InOrder, 1));
    // a genuine duplicate (the same datagram unmarked) is still one
    let (d, n) = datagram(Notification::status(None), 9, 2, false);
    b.handle_datagram(t, &d[..n]).unwrap();
    let s = b.stats();
    assert_eq!(
        (s.datagrams, s.duplicates, s.probes, s.probes_delivered),
        (4, 1, 2, 1)
    );
}

#[test]
fn malformed_datagrams_are_counted_by_reason_and_change_nothing() {
    let mut b = broker();
    let t = Instant::ZERO;
    let id = listen(&mut b, t, None, FlagSet::ALL);
    assert_eq!(
        b.handle_datagram(t, b"hello"),
        Err(DatagramError::Malformed(WireError::BadMagic))
    );
    assert_eq!(
        b.handle_datagram(t, b"FP"),
        Err(DatagramError::Malformed(WireError::Truncated))
    );
    let (mut d, n) = datagram(Notification::status(None), 1, 1, false);
    d[2] = 2;
    assert_eq!(
        b.handle_datagram(t, &d[..n]),
        Err(DatagramError::Malformed(WireError::UnsupportedVersion(2)))
    );
    let s = b.stats();
    assert_eq!(s.datagrams, 0);
    assert_eq!(s.datagram_rejects[WireError::BadMagic.index()], 1);
    assert_eq!(s.datagram_rejects[WireError::Truncated.index()], 1);
    assert_eq!(
        s.datagram_rejects[WireError::UnsupportedVersion(0).index()],
        1
    );
    assert_eq!(drain_ready(&mut b), []);
    assert_eq!(b.state(id), Some(SlotState::Listening));
}

#[test]
fn kernel_drops_raise_the_loss_flags_for_everyone() {
    let mut b = broker();
    let t = Instant::ZERO;
    let a = listen(&mut b, t, Some(ch("a")), FlagSet::STATUS);
    let v = listen(&mut b, t, None, FlagSet::NON_STATUS);
    let all = listen(&mut b, t, Some(ch("b")), FlagSet::ALL);
    let shutdown = listen(&mut b, t, Some(ch("a")), FlagSet::CHANNEL_SHUTDOWN);
    b.handle_lost(t, 0);
    assert_eq!(drain_ready(&mut b), []);
    b.handle_lost(t, 3);
    let mut ready = drain_ready(&mut b);
    ready.sort();
    assert_eq!(ready, [a, v, all]);
    assert_eq!(flags_of(&mut b, a), FlagSet::STATUS);
    assert_eq!(flags_of(&mut b, v), FlagSet::NON_STATUS);
    assert_eq!(flags_of(&mut b, all), LOSS_FLAGS);
    assert_eq!(flags_of(&mut b, shutdown), FlagSet::EMPTY);
    assert_eq!(b.stats().kernel_drops, 3);
}

#[test]
fn bad_frames_close_with_a_reason() {
    let mut b = broker();
    let t = Instant::ZERO;
    let id = b.open(t).unwrap();
    // ping before hello
    assert_eq!(
        send(&mut b, t, id, FrameRepr::Ping(1)),
        Err(FrameError::Unexpected(crate::wire::frame::kind::PING))
    );
    assert_eq!(b.state(id), Some(SlotState::Closing));
    assert_eq!(
        b.poll_event(),
        Some(Event::Closed {
            listener: id,
            reason: CloseReason::ProtocolError,
            send_close: true,
            version: 1
        })
    );
    assert_eq!(b.state(id), None);
    assert_eq!(
        b.handle_frame(t, id, b"x"),
        Err(FrameError::UnknownListener)
    );

    // a hello from a future version
    let id = b.open(t).unwrap();
    let (mut f, n) = frame(FrameRepr::Hello(HelloRepr {
        interest: FlagSet::ALL,
        channel: None,
        keepalive_secs: 0,
    }));
    f[2] = 3;
    assert_eq!(
        b.handle_frame(t, id, &f[..n]),
        Err(FrameError::Wire(WireError::UnsupportedVersion(3)))
    );
    assert!(matches!(
        b.poll_event(),
        Some(Event::Closed {
            reason: CloseReason::UnsupportedVersion,
            ..
        })
    ));
    assert_eq!(
        b.stats().closes[CloseReason::UnsupportedVersion as usize],
        1
    );
    assert_eq!(b.connections(), 0);
}

#[test]
fn listener_close_frees_without_reply() {
    let mut b = broker();
    let t = Instant::ZERO;
    let id = listen(&mut b, t, None, FlagSet::ALL);
    send(
        &mut b,
        t,
        id,
        FrameRepr::Close(CloseRepr::new(CloseReason::Normal)),
    )
    .unwrap();
    assert_eq!(
        b.poll_event(),
        Some(Event::Closed {
            listener: id,
            reason: CloseReason::Normal,
            send_close: false,
            version: 1
        })
    );
    assert_eq!(b.notify(t, &Notification::status(None), 1), 0);
}

#[test]
fn full_table_refuses_and_freed_slots_are_reused_with_a_new_generation() {
    let mut b = broker();
    let t = Instant::ZERO;
    let ids: std::vec::Vec<_> = (0..4).map(|_| b.open(t).unwrap()).collect();
    assert_eq!(b.open(t), Err(OpenError::Full));
    assert_eq!(b.stats().refused_full, 1);
    b.disconnect(ids[2]);
    let again = b.open(t).unwrap();
    assert_eq!(again.index(), ids[2].index());
    assert_ne!(again, ids[2]);
    assert_eq!(b.state(ids[2]), None);
    assert_eq!(b.stats().disconnects, 1);
}

#[test]
fn hello_timeout() {
    let mut b = broker();
    let id = b.open(Instant::ZERO).unwrap();
    assert_eq!(b.poll_timeout(), Some(Instant::from_secs(10)));
    b.handle_timeout(Instant::from_secs(9));
    assert_eq!(b.poll_event(), None);
    b.handle_timeout(Instant::from_secs(10));
    assert_eq!(
        b.poll_event(),
        Some(Event::Closed {
            listener: id,
            reason: CloseReason::HelloTimeout,
            send_close: true,
            version: 1
        })
    );
    assert_eq!(b.poll_timeout(), None);
}

#[test]
fn keepalive_timeout_is_pushed_back_by_pings() {
    let mut b = broker();
    let id = listen(&mut b, Instant::ZERO, None, FlagSet::ALL);
    for s in [10, 20, 30, 40] {
        let now = Instant::from_secs(s);
        send(&mut b, now, id, FrameRepr::Ping(0)).unwrap();
        while let Some(ready) = b.poll_ready() {
            while b.poll_frame(ready).is_some() {}
        }
        b.handle_timeout(now);
        assert_eq!(b.poll_event(), None);
    }
    let at = b.poll_timeout().unwrap();
    assert!(at <= Instant::from_secs(70));
    b.handle_timeout(Instant::from_secs(69));
    assert_eq!(b.poll_event(), None);
    b.handle_timeout(Instant::from_secs(70));
    assert!(matches!(
        b.poll_event(),
        Some(Event::Closed {
            reason: CloseReason::KeepaliveTimeout,
            ..
        })
    ));
}

#[test]
fn stuck_listener_costs_a_constant_and_is_closed() {
    let mut b = broker();
    let stuck = listen(&mut b, Instant::ZERO, None, FlagSet::ALL);
    let fine = listen(&mut b, Instant::ZERO, None, FlagSet::ALL);
    let mut now = Instant::ZERO;
    for i in 0..70_000u32 {
        now = Instant::from_millis(u64::from(i));
        b.notify(now, &Notification::status(None), 1);
        // the healthy listener drains; the stuck one never does
        while let Some(id) = b.poll_ready() {
            if id == fine {
                assert!(matches!(b.poll_frame(fine), Some(FrameRepr::Flags(_))));
                assert_eq!(b.poll_frame(fine), None);
            }
        }
        // both ping, so only "stuck" can close the first
        if i % 5_000 == 0 {
            send(&mut b, now, stuck, FrameRepr::Ping(i)).unwrap();
            send(&mut b, now, fine, FrameRepr::Ping(i)).unwrap();
            assert!(matches!(b.poll_frame(fine), Some(FrameRepr::Pong(_))));
        }
        b.handle_timeout(now);
        if let Some(ev) = b.poll_event() {
            assert_eq!(
                ev,
                Event::Closed {
                    listener: stuck,
                    reason: CloseReason::Stuck,
                    send_close: true,
                    version: 1
                }
            );
            // the first pending raise was at t=0; stuck_timeout is 60 s,
            // checked at housekeeping granularity
            assert!(now >= Instant::from_secs(60) && now <= Instant::from_secs(61));
            assert_eq!(b.state(fine), Some(SlotState::Listening));
            return;
        }
    }
    panic!("stuck listener never closed (now {now})");
}

#[test]
fn shutdown_closes_everyone_and_refuses_new() {
    let mut b = broker();
    let t = Instant::ZERO;
    listen(&mut b, t, None, FlagSet::ALL);
    b.open(t).unwrap();
    b.shutdown();
    assert!(b.is_shutting_down());
    let events: std::vec::Vec<_> = core::iter::from_fn(|| b.poll_event()).collect();
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| matches!(
        e,
        Event::Closed {
            reason: CloseReason::Shutdown,
            send_close: true,
            ..
        }
    )));
    assert_eq!(b.open(t), Err(OpenError::ShuttingDown));
    assert_eq!(b.connections(), 0);
}

#[test]
fn zero_capacity_broker_never_panics() {
    let mut b: BrokerState<[ListenerSlot; 0], [SenderSlot; 0]> =
        BrokerState::new(Config::default(), [], []);
    assert_eq!(b.open(Instant::ZERO), Err(OpenError::Full));
    let (d, n) = datagram(Notification::status(None), 1, 5, true);
    let r = b.handle_datagram(Instant::ZERO, &d[..n]).unwrap();
    assert_eq!(r.verdict, Verdict::FirstSeenLate);
    assert_eq!(b.poll_ready(), None);
    assert_eq!(b.poll_event(), None);
}

#[test]
fn stats_request_instead_of_hello() {
    let mut b = broker();
    let t = Instant::ZERO;
    let id = b.open(t).unwrap();
    send(&mut b, t, id, FrameRepr::StatsRequest).unwrap();
    assert_eq!(
        b.poll_event(),
        Some(Event::StatsRequested {
            listener: id,
            version: 1,
            accept: None
        })
    );
    assert_eq!(b.state(id), None);
    let s = b.stats();
    assert_eq!((s.stats_requests, s.awaiting_hello, s.listening), (1, 0, 0));
    // a stats request from a listening connection is a protocol error
    let l = listen(&mut b, t, None, FlagSet::ALL);
    assert!(send(&mut b, t, l, FrameRepr::StatsRequest).is_err());
    assert!(matches!(
        b.poll_event(),
        Some(Event::Closed {
            reason: CloseReason::ProtocolError,
            ..
        })
    ));
}

#[test]
fn local_listeners_listen_at_once_and_never_time_out() {
    let mut b = broker();
    let id = b
        .open_local(Instant::ZERO, FlagSet::STATUS, Some(ch("gsm1")))
        .unwrap();
    assert_eq!(b.state(id), Some(SlotState::Listening));
    assert_eq!(b.notify(Instant::ZERO, &Notification::status(None), 1), 1);
    assert_eq!(drain_ready(&mut b), [id]);
    assert_eq!(flags_of(&mut b, id), FlagSet::STATUS);
    let day = Instant::from_secs(86_400);
    b.handle_timeout(day);
    assert_eq!(b.poll_event(), None);
    assert_eq!(b.state(id), Some(SlotState::Listening));
    b.disconnect(id);
    assert_eq!(b.connections(), 0);
}

#[test]
fn transport_close_sends_a_reason() {
    let mut b = broker();
    let id = listen(&mut b, Instant::ZERO, None, FlagSet::ALL);
    b.close(id, CloseReason::TooManyFromAddress);
    b.close(id, CloseReason::Normal); // already closing: no-op
    assert_eq!(
        b.poll_event(),
        Some(Event::Closed {
            listener: id,
            reason: CloseReason::TooManyFromAddress,
            send_close: true,
            version: 1
        })
    );
    assert_eq!(b.poll_event(), None);
    b.close(id, CloseReason::Normal); // dead handle: no-op
    assert_eq!(b.poll_event(), None);
}

#[test]
fn poll_ready_is_edge_triggered() {
    let mut b = broker();
    let t = Instant::ZERO;
    let id = listen(&mut b, t, None, FlagSet::ALL);
    b.notify(t, &Notification::status(None), 1);
    assert_eq!(b.poll_ready(), Some(id));
    // not drained (socket not writable): more raises coalesce, no re-yield
    b.notify(t, &Notification::non_status(None), 1);
    assert_eq!(b.poll_ready(), None);
    // drained once writable; the next raise queues it again
    assert!(matches!(b.poll_frame(id), Some(FrameRepr::Flags(f)) if f.raises == 2));
    assert_eq!(b.poll_frame(id), None);
    b.notify(t, &Notification::status(None), 1);
    assert_eq!(b.poll_ready(), Some(id));
}

#[test]
fn local_listeners_are_never_stuck() {
    let mut b = broker();
    let id = b.open_local(Instant::ZERO, FlagSet::ALL, None).unwrap();
    b.notify(Instant::ZERO, &Notification::status(None), 1);
    b.handle_timeout(Instant::from_secs(3600));
    assert_eq!(b.poll_event(), None);
    assert_eq!(b.state(id), Some(SlotState::Listening));
}

/// Hello, then `tail`, in one read: what `handle_frames` hands out and how
/// the connection ends.
fn hello_then(tail: &[u8]) -> (Vec<FrameRepr>, Result<(), FrameError>, Option<Event>, Stats) {
    let mut b = broker();
    let id = b.open(Instant::ZERO).unwrap();
    let mut reader = crate::wire::FrameReader::<MAX_FRAME_LEN>::new();
    let (hello, n) = frame(FrameRepr::Hello(HelloRepr {
        interest: FlagSet::ALL,
        channel: None,
        keepalive_secs: 0,
    }));
    assert_eq!(reader.push(&hello[..n]), n);
    assert_eq!(reader.push(tail), tail.len());
    let mut written = Vec::new();
    let result = b.handle_frames(Instant::ZERO, id, &mut reader, |f| {
        assert_eq!(f.version, 1);
        written.push(f.frame)
    });
    (written, result, b.poll_event(), b.stats())
}

#[test]
fn a_welcome_goes_out_before_a_close_caused_by_the_same_read() {
    let welcome = FrameRepr::Welcome(WelcomeRepr {
        interest: FlagSet::ALL,
        keepalive_secs: 30,
        broker_id: 0xb0,
    });
    // a malformed frame (unknown type), an unexpected one (a second hello),
    // a foreign stream (bad magic) and a body past the bound
    let (bad_type, n) = {
        let (mut buf, n) = frame(FrameRepr::Ping(1));
        buf[3] = 0x42;
        (buf, n)
    };
    let (hello, hn) = frame(FrameRepr::Hello(HelloRepr {
        interest: FlagSet::ALL,
        channel: None,
        keepalive_secs: 0,
    }));
    let cases: [(&[u8], FrameError, usize); 4] = [
        (
            &bad_type[..n],
            FrameError::Wire(WireError::UnknownType(0x42)),
            1,
        ),
        (&hello[..hn], FrameError::Unexpected(0x10), 0),
        (
            b"GET / HTTP/1.1\r\n",
            FrameError::Wire(WireError::BadMagic),
            1,
        ),
        (
            &[0x46, 0x50, 1, 0x13, 0, 65],
            FrameError::Wire(WireError::TooLong),
            1,
        ),
    ];
    for (tail, error, rejects) in cases {
        let (written, result, event, stats) = hello_then(tail);
        assert_eq!(written, [welcome], "{error:?}");
        assert_eq!(result, Err(error));
        assert!(matches!(
            event,
            Some(Event::Closed {
                reason: CloseReason::ProtocolError,
                send_close: true,
                ..
            })
        ));
        assert_eq!(stats.frame_rejects.iter().sum::<u64>(), rejects as u64);
        assert_eq!(stats.frames_written, 1);
    }
}

#[test]
fn handle_frames_stops_at_the_close_and_waits_for_whole_frames() {
    // a ping, a close from the peer, then another ping nobody reads
    let mut tail = Vec::new();
    for f in [
        FrameRepr::Ping(7),
        FrameRepr::Close(CloseRepr::new(CloseReason::Normal)),
        FrameRepr::Ping(8),
    ] {
        let (buf, n) = frame(f);
        tail.extend_from_slice(&buf[..n]);
    }
    let (written, result, event, stats) = hello_then(&tail);
    assert_eq!(written.len(), 1);
    assert_eq!(result, Ok(()));
    assert!(matches!(
        event,
        Some(Event::Closed {
            reason: CloseReason::Normal,
            send_close: false,
            ..
        })
    ));
    assert_eq!(stats.frames, 3);

    // half a frame: nothing happens until the rest arrives
    let mut b = broker();
    let id = b.open(Instant::ZERO).unwrap();
    let mut reader = crate::wire::FrameReader::<MAX_FRAME_LEN>::new();
    let (hello, n) = frame(FrameRepr::Hello(HelloRepr {
        interest: FlagSet::ALL,
        channel: None,
        keepalive_secs: 0,
    }));
    reader.push(&hello[..3]);
    let mut written = Vec::new();
    assert_eq!(
        b.handle_frames(Instant::ZERO, id, &mut reader, |f| written.push(f)),
        Ok(())
    );
    assert_eq!(b.state(id), Some(SlotState::AwaitingHello));
    reader.push(&hello[3..n]);
    assert_eq!(
        b.handle_frames(Instant::ZERO, id, &mut reader, |f| written.push(f)),
        Ok(())
    );
    assert_eq!(b.state(id), Some(SlotState::Listening));
    assert!(matches!(
        written[..],
        [Framed {
            version: 1,
            frame: FrameRepr::Welcome(_)
        }]
    ));
    assert_eq!(b.poll_ready(), None, "the welcome was handed over already");
}

#[test]
fn a_lowered_limit_refuses_newcomers_and_keeps_the_connected() {
    let mut b = broker();
    let t = Instant::ZERO;
    let a = listen(&mut b, t, None, FlagSet::ALL);
    let c = listen(&mut b, t, None, FlagSet::ALL);
    b.set_limit(2);
    assert_eq!(b.open(t), Err(OpenError::Full));
    assert_eq!(b.stats().refused_full, 1);
    assert_eq!(b.connections(), 2);
    assert!(b.state(a).is_some() && b.state(c).is_some());
    b.disconnect(a);
    assert!(b.open(t).is_ok());
    b.set_limit(usize::MAX);
    assert!(b.open(t).is_ok());
}
