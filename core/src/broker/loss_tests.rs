//! Possible-loss raises on the simulated clock: the first raises everyone at
//! once, the rest within [`Config::loss_interval`] fold into one raise at
//! its end (driven by `poll_timeout`/`handle_timeout`), a zero interval
//! raises every one, and kernel drops fold the same way.

use std::vec::Vec;

use super::tests::{broker, datagram, drain_ready, flags_of, listen};
use super::*;
use crate::loss::Verdict;
use crate::wire::{AckResult, FlagsRepr};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn ch(name: &str) -> ChannelId {
    ChannelId::new(name).unwrap()
}

/// A forged datagram from a sender never seen, past its first number: a
/// channel shutdown for a channel nobody listens to, so the only flags it
/// raises are the loss raise's.
fn first_seen_late(b: &mut tests::TestBroker, now: Instant, sender: u64) {
    let (d, n) = datagram(Notification::channel_shutdown(ch("zz")), sender, 5, false);
    let r = b.handle_datagram(now, &d[..n]).unwrap();
    assert_eq!((r.verdict, r.reached), (Verdict::FirstSeenLate, 0));
}

/// Every ready listener's flags frame, by listener.
fn frames(b: &mut tests::TestBroker) -> Vec<(ListenerId, FlagsRepr)> {
    let mut got = Vec::new();
    for id in drain_ready(b) {
        while let Some(f) = b.poll_frame(id) {
            if let FrameRepr::Flags(f) = f {
                got.push((id, f));
            }
        }
    }
    got.sort_by_key(|g| g.0);
    got
}

/// Three listeners: all channels for the loss flags (not shutdowns), status
/// only, and shutdown only (which a possible loss never raises).
fn three(b: &mut tests::TestBroker, t: Instant) -> [ListenerId; 3] {
    [
        listen(b, t, None, LOSS_FLAGS),
        listen(b, t, Some(ch("gsm1")), FlagSet::STATUS),
        listen(b, t, Some(ch("gsm1")), FlagSet::CHANNEL_SHUTDOWN),
    ]
}

#[test]
fn a_burst_of_possible_losses_raises_everyone_twice() {
    let mut b = broker();
    assert_eq!(b.config().loss_interval, ms(100));
    let t = Instant::from_secs(1);
    let [all, status, _shutdown] = three(&mut b, t);
    let housekeeping = b.poll_timeout();

    // 100 forged datagrams over 99 ms: the first raises everyone at once ...
    first_seen_late(&mut b, t, 1000);
    let raised = |raises| FlagsRepr {
        flags: LOSS_FLAGS,
        raises,
    };
    let only_status = FlagsRepr {
        flags: FlagSet::STATUS,
        raises: 1,
    };
    assert_eq!(frames(&mut b), [(all, raised(1)), (status, only_status)]);
    for i in 1..100u64 {
        first_seen_late(&mut b, t + ms(i), 1000 + i);
    }
    // ... the other 99 wait for the end of the interval
    assert_eq!(frames(&mut b), []);
    let s = b.stats();
    assert_eq!((s.first_seen_late, s.possible_losses), (100, 1));
    assert_eq!(s.possible_losses_coalesced, 99);
    let end = t + ms(100);
    assert_eq!(b.poll_timeout(), Some(end));
    b.handle_timeout(Instant::from_micros(end.as_micros() - 1));
    assert_eq!(frames(&mut b), []);

    // one more raise of everyone at the interval's end: one frame each
    b.handle_timeout(end);
    assert_eq!(frames(&mut b), [(all, raised(1)), (status, only_status)]);
    let s = b.stats();
    assert_eq!((s.possible_losses, s.possible_losses_coalesced), (2, 99));
    // nothing is pending any more: back to the housekeeping deadline
    assert_eq!(b.poll_timeout(), housekeeping);
    b.handle_timeout(end + ms(100));
    assert_eq!(frames(&mut b), []);
    assert_eq!(b.stats().possible_losses, 2);
}

#[test]
fn a_flood_raises_everyone_once_per_interval() {
    let mut b = broker();
    let t = Instant::ZERO;
    let [all, _, _] = three(&mut b, t);
    // one forged datagram per millisecond for a second, on a transport
    // that calls handle_timeout whenever poll_timeout says
    let mut frames_to_all = 0;
    for i in 0..1000u64 {
        let now = t + ms(i);
        if b.poll_timeout().is_some_and(|at| at <= now) {
            b.handle_timeout(now);
        }
        first_seen_late(&mut b, now, 1 + i);
        frames_to_all += frames(&mut b).iter().filter(|f| f.0 == all).count();
    }
    b.handle_timeout(t + ms(1099));
    frames_to_all += frames(&mut b).iter().filter(|f| f.0 == all).count();
    let s = b.stats();
    // t = 0 at once, then at the end of each 100 ms interval: 0.1 s … 1.0 s
    assert_eq!(s.possible_losses, 11);
    assert_eq!(frames_to_all, 11);
    assert_eq!(s.possible_losses + s.possible_losses_coalesced, 1000 + 10);
}

#[test]
fn a_zero_interval_raises_every_possible_loss() {
    let mut b = BrokerState::new(
        Config {
            loss_interval: Duration::ZERO,
            ..Config::default()
        },
        [ListenerSlot::EMPTY; 4],
        [SenderSlot::EMPTY; 4],
    );
    let t = Instant::ZERO;
    let id = b.open(t).unwrap();
    let hello = FrameRepr::Hello(crate::wire::HelloRepr {
        interest: LOSS_FLAGS,
        channel: None,
        keepalive_secs: 0,
    });
    let mut buf = [0u8; crate::wire::MAX_FRAME_LEN];
    let n = hello.emit(&mut buf).unwrap();
    b.handle_frame(t, id, &buf[..n]).unwrap();
    let housekeeping = b.poll_timeout();
    for i in 0..3u64 {
        let (d, n) = datagram(Notification::channel_shutdown(ch("zz")), 50 + i, 9, false);
        b.handle_datagram(t, &d[..n]).unwrap();
        assert_eq!(b.stats().possible_losses, i + 1);
    }
    b.handle_lost(t, 4);
    let s = b.stats();
    assert_eq!((s.possible_losses, s.possible_losses_coalesced), (4, 0));
    assert_eq!(b.poll_timeout(), housekeeping);
    // the welcome, then one flags frame standing for the four raises
    assert!(matches!(b.poll_frame(id), Some(FrameRepr::Welcome(_))));
    assert_eq!(
        b.poll_frame(id),
        Some(FrameRepr::Flags(FlagsRepr {
            flags: LOSS_FLAGS,
            raises: 4
        }))
    );
}

#[test]
fn kernel_drops_fold_like_sequence_gaps() {
    let mut b = broker();
    let t = Instant::ZERO;
    let [all, _, _] = three(&mut b, t);
    b.handle_lost(t, 3);
    assert_eq!(flags_of(&mut b, all), LOSS_FLAGS);
    b.handle_lost(t + ms(10), 1);
    b.handle_lost(t + ms(50), 7);
    // a sequence gap in the same interval folds into the same raise
    let (d, n) = datagram(Notification::channel_shutdown(ch("zz")), 9, 1, false);
    b.handle_datagram(t + ms(60), &d[..n]).unwrap();
    let (d, n) = datagram(Notification::channel_shutdown(ch("zz")), 9, 3, false);
    let r = b.handle_datagram(t + ms(60), &d[..n]).unwrap();
    assert_eq!(r.verdict, Verdict::Gap { missing: 1 });
    assert_eq!(flags_of(&mut b, all), FlagSet::EMPTY);
    assert_eq!(b.poll_timeout(), Some(t + ms(100)));
    b.handle_timeout(t + ms(100));
    assert_eq!(flags_of(&mut b, all), LOSS_FLAGS);
    // that raise starts an interval of its own
    b.handle_lost(t + ms(150), 1);
    assert_eq!(flags_of(&mut b, all), FlagSet::EMPTY);
    assert_eq!(b.poll_timeout(), Some(t + ms(200)));
    b.handle_timeout(t + ms(200));
    assert_eq!(flags_of(&mut b, all), LOSS_FLAGS);
    let s = b.stats();
    assert_eq!(s.kernel_drops, 12);
    assert_eq!((s.possible_losses, s.possible_losses_coalesced), (3, 4));
}

#[test]
fn a_quiet_interval_lets_the_next_possible_loss_raise_at_once() {
    let mut b = broker();
    let t = Instant::ZERO;
    let [all, _, _] = three(&mut b, t);
    b.handle_lost(t, 1);
    assert_eq!(flags_of(&mut b, all), LOSS_FLAGS);
    // nothing folded: no deferred raise, and 100 ms later a loss raises at once
    assert!(b.poll_timeout() > Some(t + ms(100)));
    b.handle_lost(t + ms(100), 1);
    assert_eq!(flags_of(&mut b, all), LOSS_FLAGS);
    assert_eq!(b.stats().possible_losses, 2);
    assert_eq!(b.stats().possible_losses_coalesced, 0);
}

#[test]
fn a_loss_after_an_overdue_deferred_raise_raises_once() {
    let mut b = broker();
    let t = Instant::ZERO;
    let [all, _, _] = three(&mut b, t);
    b.handle_lost(t, 1);
    b.handle_lost(t + ms(1), 1);
    assert_eq!(flags_of(&mut b, all), LOSS_FLAGS);
    // the transport is late: the next loss comes before handle_timeout and
    // carries the folded one with it
    b.handle_lost(t + ms(130), 1);
    assert_eq!(flags_of(&mut b, all), LOSS_FLAGS);
    b.handle_timeout(t + ms(130));
    assert_eq!(flags_of(&mut b, all), FlagSet::EMPTY);
    let s = b.stats();
    assert_eq!((s.possible_losses, s.possible_losses_coalesced), (2, 1));
    assert!(b.poll_timeout() > Some(t + ms(200)));
}

#[test]
fn a_deferred_raise_is_due_with_no_connection_open_and_dropped_on_shutdown() {
    let mut b = broker();
    let t = Instant::ZERO;
    b.handle_lost(t, 1);
    b.handle_lost(t + ms(1), 1);
    assert_eq!(b.poll_timeout(), Some(t + ms(100)));
    b.handle_timeout(t + ms(100));
    assert_eq!(b.poll_timeout(), None);
    assert_eq!(b.stats().possible_losses, 2);

    b.handle_lost(t + ms(150), 1);
    assert_eq!(b.poll_timeout(), Some(t + ms(200)));
    b.shutdown();
    assert_eq!(b.poll_timeout(), None);
    b.handle_timeout(t + ms(200));
    assert_eq!(b.stats().possible_losses, 2);
}

#[test]
fn a_forged_far_jump_cannot_silence_a_senders_confirmed_sends() {
    let mut b = broker();
    let t = Instant::ZERO;
    let [all, status, _] = three(&mut b, t);
    let send = |b: &mut tests::TestBroker, n: Notification, seq: u32| {
        let (d, len) = datagram(n, 7, seq, true);
        let r = b.handle_datagram(t, &d[..len]).unwrap();
        (r.verdict, r.ack.map(|a| a.result))
    };
    let update = Notification::status(Some(ch("gsm1")));
    for seq in 1..=3 {
        assert_eq!(send(&mut b, update, seq).0, Verdict::InOrder);
    }
    let _ = frames(&mut b);
    // a neighbour forges the sender's id far ahead: delivered, a possible loss
    let forged = send(&mut b, Notification::channel_shutdown(ch("zz")), 1_000_000);
    assert_eq!(forged.0, Verdict::Gap { missing: 999_996 });
    assert_eq!(frames(&mut b).len(), 2);
    // the sender's next confirmed send is delivered and acked as such, not
    // stale: its retries are not cut short
    assert_eq!(
        send(&mut b, update, 4),
        (Verdict::Rewound, Some(AckResult::Delivered))
    );
    let raised = |flags| FlagsRepr { flags, raises: 1 };
    assert_eq!(
        frames(&mut b),
        [
            (all, raised(FlagSet::STATUS | FlagSet::NON_STATUS)),
            (status, raised(FlagSet::STATUS))
        ]
    );
    // its retry is a duplicate, its next in order
    assert_eq!(
        send(&mut b, update, 4),
        (Verdict::Duplicate, Some(AckResult::Duplicate))
    );
    assert_eq!(send(&mut b, update, 5).0, Verdict::InOrder);
    let s = b.stats();
    assert_eq!((s.senders_rewound, s.stale), (1, 0));
    // the jump raised everyone at once; the rewind, also a possible loss,
    // waits for the end of the interval
    assert_eq!((s.possible_losses, s.possible_losses_coalesced), (1, 1));
    b.handle_timeout(t + ms(100));
    assert_eq!(frames(&mut b).iter().filter(|f| f.0 == all).count(), 1);
}

#[test]
fn a_recheck_raise_reaches_everyone_but_never_raises_shutdown() {
    let mut b = broker();
    let t = Instant::from_secs(1);
    let [all, status, shutdown] = three(&mut b, t);
    assert_eq!(
        b.raise_recheck(t),
        2,
        "the shutdown-only listener is not reached"
    );
    let got = frames(&mut b);
    let flags: Vec<_> = got.iter().map(|(id, f)| (*id, f.flags)).collect();
    assert_eq!(flags, [(all, LOSS_FLAGS), (status, FlagSet::STATUS)]);
    assert!(!got.iter().any(|(id, _)| *id == shutdown));
    assert_eq!(
        b.stats().possible_losses,
        0,
        "not counted as a possible loss"
    );
    // a second one right away is not folded: it raises again
    assert_eq!(b.raise_recheck(t), 2);
    assert_eq!(frames(&mut b).len(), 2);
}
