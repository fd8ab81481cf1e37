//! Routing index tests: a notification visits the listeners it reaches and no
//! other, a raise of flags already pending visits nobody, and the raise
//! counts in flags frames stay exact (observed through `route_visits`).

use std::vec::Vec;

use super::*;
use crate::wire::{HelloRepr, MAX_FRAME_LEN};

type Big = BrokerState<Vec<ListenerSlot>, [SenderSlot; 4]>;

fn broker(capacity: usize) -> Big {
    BrokerState::new(
        Config {
            hash_key: 0x5eed,
            // every possible loss routes at once: what routing costs is
            // measured here, not how raises are spaced (`loss_tests`)
            loss_interval: Duration::ZERO,
            ..Config::default()
        },
        std::vec![ListenerSlot::EMPTY; capacity],
        [SenderSlot::EMPTY; 4],
    )
}

fn ch(name: &str) -> ChannelId {
    ChannelId::new(name).unwrap()
}

fn listen(b: &mut Big, channel: Option<&str>, interest: FlagSet) -> ListenerId {
    let id = b.open(Instant::ZERO).unwrap();
    let mut buf = [0u8; MAX_FRAME_LEN];
    let hello = FrameRepr::Hello(HelloRepr {
        interest,
        channel: channel.map(ch),
        keepalive_secs: 0,
    });
    let n = hello.emit(&mut buf).unwrap();
    b.handle_frame(Instant::ZERO, id, &buf[..n]).unwrap();
    assert!(matches!(b.poll_frame(id), Some(FrameRepr::Welcome(_))));
    assert_eq!(b.poll_frame(id), None);
    id
}

/// Everything ready, drained: (listener, flags, raises) sorted.
fn drain(b: &mut Big) -> Vec<(ListenerId, FlagSet, u32)> {
    let mut out = Vec::new();
    while let Some(id) = b.poll_ready() {
        while let Some(frame) = b.poll_frame(id) {
            if let FrameRepr::Flags(f) = frame {
                out.push((id, f.flags, f.raises));
            }
        }
    }
    out.sort_by_key(|g| g.0);
    out
}

fn status(channel: Option<&str>) -> Notification {
    Notification::status(channel.map(ch))
}

fn visits(b: &Big) -> u64 {
    b.stats().route_visits
}

const SN: FlagSet = FlagSet::STATUS.union(FlagSet::NON_STATUS);

#[test]
fn a_targeted_notification_visits_its_channel_and_the_all_channels_listeners_only() {
    let mut b = broker(1100);
    for i in 0..1000 {
        listen(&mut b, Some(&std::format!("c{}", i / 10)), FlagSet::ALL);
    }
    let all = listen(&mut b, None, FlagSet::ALL);
    let t = Instant::ZERO;
    assert_eq!(b.notify(t, &status(Some("c7")), 1), 11);
    assert_eq!(visits(&b), 11);
    let got = drain(&mut b);
    assert_eq!(got.len(), 11);
    assert!(got.iter().any(|g| g.0 == all));
    assert!(got
        .iter()
        .all(|g| g.0 == all || b.channel(g.0) == Some(ch("c7"))));
    // a channel nobody listens to reaches only the all-channels listener
    assert_eq!(b.notify(t, &status(Some("nobody")), 1), 1);
    assert_eq!(visits(&b), 12);
}

#[test]
fn a_raise_of_flags_already_pending_visits_nobody() {
    let mut b = broker(64);
    let ids: Vec<_> = (0..10).map(|_| listen(&mut b, Some("gsm1"), SN)).collect();
    let t = Instant::ZERO;
    for _ in 0..1000 {
        assert_eq!(b.notify(t, &status(Some("gsm1")), 1), 10);
    }
    // one walk for the first raise, none for the 999 others
    assert_eq!(visits(&b), 10);
    let s = b.stats();
    assert_eq!((s.raises, s.raises_coalesced), (10_000, 9_990));
    // each frame still says how many raises it stands for
    let got = drain(&mut b);
    assert_eq!(
        got,
        ids.iter().map(|&id| (id, SN, 1000)).collect::<Vec<_>>()
    );

    // every member drained: the next raise visits each once; then one
    // member drains and the next raise visits it alone, and nobody after
    assert_eq!(b.notify(t, &status(Some("gsm1")), 1), 10);
    assert_eq!(visits(&b), 20);
    let first = drain(&mut b);
    assert_eq!(first.len(), 10);
    b.notify(t, &status(Some("gsm1")), 1);
    let one = b.poll_ready().unwrap();
    assert!(matches!(b.poll_frame(one), Some(FrameRepr::Flags(_))));
    let before = visits(&b);
    b.notify(t, &status(Some("gsm1")), 1);
    assert_eq!(visits(&b) - before, 1);
    b.notify(t, &status(Some("gsm1")), 1);
    assert_eq!(visits(&b) - before, 1);
    // a raise of a flag nobody has pending visits the raised members too
    let update = Notification::channel_update(ch("gsm1"));
    let all = listen(&mut b, Some("gsm1"), FlagSet::ALL);
    b.notify(t, &update, 1);
    assert_eq!(
        visits(&b) - before,
        2,
        "only the ALL group has the interest"
    );
    // everyone drained: all eleven are fresh, the first raise visits them
    // and the second nobody
    let _ = drain(&mut b);
    let before = visits(&b);
    for _ in 0..2 {
        b.notify(t, &status(Some("gsm1")), 1);
    }
    assert_eq!(visits(&b) - before, 11);
    let rest: Vec<_> = drain(&mut b).into_iter().filter(|g| g.0 != all).collect();
    assert_eq!(rest.len(), 10);
    for (_, flags, raises) in rest {
        assert_eq!((flags, raises), (SN, 2));
    }
}

#[test]
fn a_raise_for_everyone_already_raised_is_free() {
    let mut b = broker(1100);
    for i in 0..1000 {
        listen(&mut b, Some(&std::format!("c{}", i / 10)), FlagSet::ALL);
    }
    let t = Instant::ZERO;
    b.handle_lost(t, 1);
    assert_eq!(visits(&b), 1000);
    for _ in 0..100 {
        b.handle_lost(t, 1);
        // a status or non-status update for everyone is covered by the loss set
        assert_eq!(b.notify(t, &status(None), 1), 1000);
        assert_eq!(b.notify(t, &Notification::non_status(None), 1), 1000);
    }
    assert_eq!(visits(&b), 1000);
    assert_eq!(b.stats().possible_losses, 101);
    let got = drain(&mut b);
    assert_eq!(got.len(), 1000);
    assert!(got.iter().all(|g| g.1 == LOSS_FLAGS && g.2 == 301));

    // after one listener drains, a loss raise visits that listener only
    b.handle_lost(t, 1);
    let id = b.poll_ready().unwrap();
    while b.poll_frame(id).is_some() {}
    let before = visits(&b);
    b.handle_lost(t, 1);
    assert_eq!(visits(&b) - before, 1);
}

#[test]
fn listeners_whose_interest_a_notification_lacks_are_never_visited() {
    let mut b = broker(1100);
    for i in 0..1000 {
        listen(
            &mut b,
            Some(&std::format!("c{}", i % 100)),
            FlagSet::CHANNEL_SHUTDOWN,
        );
    }
    let t = Instant::ZERO;
    for i in 0..100 {
        assert_eq!(b.notify(t, &status(None), 1), 0);
        assert_eq!(b.notify(t, &status(Some(&std::format!("c{i}"))), 1), 0);
        b.handle_lost(t, 1);
    }
    assert_eq!(visits(&b), 0);
    assert!(drain(&mut b).is_empty());
    // ...and a shutdown reaches exactly its channel's ten
    let shut = Notification::channel_shutdown(ch("c5"));
    assert_eq!(b.notify(t, &shut, 1), 10);
    assert_eq!(visits(&b), 10);
}

#[test]
fn raise_counts_add_targeted_and_broadcast_raises() {
    let mut b = broker(8);
    let a = listen(&mut b, Some("a"), FlagSet::ALL);
    let v = listen(&mut b, None, FlagSet::NON_STATUS);
    let t = Instant::ZERO;
    b.notify(t, &status(Some("a")), 1); // a, v
    b.notify(t, &status(None), 1); // a, v
    b.notify(t, &Notification::channel_update(ch("a")), 1); // a
    b.notify(t, &status(Some("b")), 1); // v
    b.handle_lost(t, 1); // a, v
    let upd = FlagSet::CHANNEL_UPDATE;
    assert_eq!(
        drain(&mut b),
        [(a, SN | upd, 4), (v, FlagSet::NON_STATUS, 4)]
    );
}

#[test]
fn groups_are_freed_and_reused_under_churn_with_colliding_buckets() {
    // 16 slots, up to 16 channels: buckets collide, chains form and unlink
    let mut b = broker(16);
    let t = Instant::ZERO;
    let mut live: Vec<(ListenerId, usize)> = Vec::new();
    let mut seed = 0x1234_5678u32;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    };
    for round in 0..2000 {
        let r = next();
        if live.len() < 16 && (r % 3 != 0 || live.is_empty()) {
            let c = (r >> 8) as usize % 12;
            live.push((listen(&mut b, Some(&std::format!("ch{c}")), SN), c));
        } else {
            let (id, _) = live.swap_remove((r >> 8) as usize % live.len());
            b.disconnect(id);
        }
        let target = (next() >> 4) as usize % 12;
        let want: Vec<_> = live.iter().filter(|l| l.1 == target).map(|l| l.0).collect();
        let name = std::format!("ch{target}");
        assert_eq!(
            b.notify(t, &status(Some(&name)), 1) as usize,
            want.len(),
            "round {round}"
        );
        let mut got: Vec<_> = drain(&mut b).into_iter().map(|g| g.0).collect();
        let mut want = want;
        got.sort();
        want.sort();
        assert_eq!(got, want, "round {round}");
    }
}
