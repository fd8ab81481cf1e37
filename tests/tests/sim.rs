//! End-to-end scenarios on the simulated clock: the core broker state and
//! real listener sessions exchanging real frames through in-memory pipes,
//! with loss, restarts, dead peers and stuck readers — and no sleeps.

use flagpost_core::broker::Config;
use flagpost_core::schedule::{Reason, Scheduler};
use flagpost_core::wire::CloseReason;
use flagpost_core::{ChannelId, Duration, FlagSet, Kind, Notification};
use flagpost_tests::sim::{Sim, SimSender, PIPE_LIMIT};

fn ch(s: &str) -> ChannelId {
    ChannelId::new(s).unwrap()
}

fn sim() -> Sim {
    let mut s = Sim::new(
        Config {
            broker_id: 1,
            ..Config::default()
        },
        64,
    );
    s.step();
    s
}

#[test]
fn listeners_connect_and_first_recheck() {
    let mut s = sim();
    let a = s.add_listener(Some("gsm1"), FlagSet::ALL);
    s.step();
    let l = s.listener(a);
    assert!(l.is_listening());
    // a new listener re-checks once (it may have missed anything), marked
    // as a reconnect raise; a shutdown is a command, never a re-check
    assert!(l.flags.check_status() && l.flags.check_non_status());
    assert!(l.flags.check_channel_update() && !l.flags.check_channel_shutdown());
    assert!(!l.flags.check_status());
    assert!(l.raised.iter().all(|(_, r)| r.reconnect));
}

#[test]
fn routing_through_real_frames() {
    let mut s = sim();
    let all = s.add_listener(None, FlagSet::ALL);
    let gsm1 = s.add_listener(Some("gsm1"), FlagSet::ALL);
    let gsm2 = s.add_listener(Some("gsm2"), FlagSet::ALL);
    let views = s.add_listener(None, FlagSet::NON_STATUS);
    s.step();
    for l in &mut s.listeners {
        l.flags.take();
    }
    let mut sender = SimSender::new(0xabc);
    let d = sender.datagram(Notification::status(Some(ch("gsm1"))), 3);
    s.datagram(&d);
    assert_eq!(
        s.listener(all).flags.take(),
        FlagSet::STATUS | FlagSet::NON_STATUS
    );
    assert_eq!(
        s.listener(gsm1).flags.take(),
        FlagSet::STATUS | FlagSet::NON_STATUS
    );
    assert_eq!(s.listener(gsm2).flags.take(), FlagSet::EMPTY);
    assert_eq!(s.listener(views).flags.take(), FlagSet::NON_STATUS);

    let d = sender.datagram(Notification::channel_update(ch("gsm2")), 1);
    s.datagram(&d);
    assert_eq!(s.listener(gsm2).flags.take(), FlagSet::CHANNEL_UPDATE);
    assert_eq!(s.listener(all).flags.take(), FlagSet::CHANNEL_UPDATE);
    assert_eq!(s.listener(gsm1).flags.take(), FlagSet::EMPTY);
    assert_eq!(s.listener(views).flags.take(), FlagSet::EMPTY);
}

#[test]
fn a_lost_datagram_raises_the_loss_flags_for_everyone() {
    let mut s = sim();
    let gsm2 = s.add_listener(Some("gsm2"), FlagSet::ALL);
    s.step();
    s.listener(gsm2).flags.take();
    let mut sender = SimSender::new(1);
    let first = sender.datagram(Notification::non_status(None), 1);
    s.datagram(&first);
    assert_eq!(s.listener(gsm2).flags.take(), FlagSet::NON_STATUS);
    // a status update for gsm1 is lost on the way ...
    let _lost = sender.datagram(Notification::status(Some(ch("gsm1"))), 1);
    // ... the next datagram reveals the gap: gsm2 re-checks its messages and
    // reloads its configuration too (cheap), nobody misses a thing; a lost
    // channel update would have been covered the same way, a shutdown is
    // never guessed
    let next = sender.datagram(Notification::non_status(None), 1);
    s.datagram(&next);
    assert_eq!(
        s.listener(gsm2).flags.take(),
        FlagSet::STATUS | FlagSet::NON_STATUS | FlagSet::CHANNEL_UPDATE
    );
    let stats = s.broker.as_ref().unwrap().stats();
    assert_eq!(
        (stats.gaps, stats.missing, stats.possible_losses),
        (1, 1, 1)
    );
}

#[test]
fn listeners_reconnect_after_a_broker_restart_and_recheck() {
    let mut s = sim();
    let a = s.add_listener(None, FlagSet::STATUS);
    let b = s.add_listener(Some("gsm1"), FlagSet::ALL);
    s.step();
    s.listener(a).flags.take();
    s.listener(b).flags.take();
    s.kill_broker();
    s.advance(Duration::from_secs(2)); // retries fail while it is down
    assert!(!s.listener(a).is_listening());
    assert!(s.listener(a).session.failed_attempts() >= 2);
    s.start_broker();
    s.advance(Duration::from_secs(10));
    for r in [a, b] {
        let l = s.listener(r);
        assert!(l.is_listening());
        assert_eq!(l.session.welcomes(), 2);
        assert_eq!(
            l.session.failed_attempts(),
            0,
            "the welcome reset the backoff"
        );
        assert!(l.flags.check_status(), "reconnect must raise status");
        let last = l.raised.last().unwrap().1;
        assert!(last.reconnect);
    }
    // a re-check, never a command: no channel shutdown on a reconnect
    assert_eq!(
        s.listener(b).flags.take(),
        FlagSet::NON_STATUS | FlagSet::CHANNEL_UPDATE
    );
}

#[test]
fn a_silent_broker_is_detected_within_the_keepalive() {
    let mut s = sim();
    let a = s.add_listener(None, FlagSet::ALL);
    s.step();
    let t0 = s.now;
    // the broker host vanishes without closing anything: no bytes ever again
    let broker = s.broker.take();
    s.advance(Duration::from_secs(29));
    assert!(s.listener(a).session.state() == flagpost_core::listener::ListenerState::Listening);
    s.advance(Duration::from_secs(1));
    assert!(
        !s.listener(a).is_listening(),
        "dead broker not detected by t0+30s"
    );
    assert!(s.now - t0 <= Duration::from_secs(30));
    drop(broker);
}

#[test]
fn pings_keep_an_idle_listener_alive_for_hours() {
    let mut s = sim();
    let a = s.add_listener(None, FlagSet::ALL);
    s.step();
    s.advance(Duration::from_secs(3 * 3600));
    let l = s.listener(a);
    assert!(l.is_listening());
    assert_eq!(
        l.session.welcomes(),
        1,
        "no reconnect on an idle but healthy link"
    );
    assert!(s.closes.is_empty());
}

#[test]
fn a_stuck_listener_delays_nobody_and_is_closed() {
    // A frozen process: its socket buffer (PIPE_LIMIT) absorbs ~29 s of
    // frames, then flags wait in its outbox; with a keep-alive longer than
    // that plus the stuck timeout, it is closed as stuck (not as silent).
    let mut s = Sim::new(
        Config {
            stuck_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(120),
            ..Config::default()
        },
        64,
    );
    let stuck = s.add_listener(None, FlagSet::ALL);
    let fine = s.add_listener(None, FlagSet::ALL);
    s.step();
    s.listener(stuck).reading = false;
    let mut sender = SimSender::new(7);
    let mut fine_wakes = 0;
    for _ in 0..700 {
        s.listener(fine).flags.take();
        let d = sender.datagram(Notification::status(None), 1);
        s.datagram(&d);
        // the healthy listener sees every status update at once
        if s.listener(fine).flags.check_status() {
            fine_wakes += 1;
        }
        s.advance(Duration::from_millis(100));
    }
    assert_eq!(fine_wakes, 700);
    assert!(s.max_pipe_bytes <= PIPE_LIMIT);
    assert!(
        s.closes.iter().any(|(_, r)| *r == CloseReason::Stuck),
        "stuck listener was not closed: {:?}",
        s.closes
    );
    assert_eq!(
        s.closes.len(),
        1,
        "only the stuck listener is closed: {:?}",
        s.closes
    );
    assert!(s.listener(fine).is_listening());
}

#[test]
fn the_service_cycle_never_polls_with_steady_traffic() {
    // The processing service: a listener's status flag feeds its scheduler.
    let mut s = sim();
    let service = s.add_listener(None, FlagSet::STATUS);
    s.step();
    let mut cycle = Scheduler::new(s.now, Duration::from_secs(30), Duration::from_secs(60));
    let mut sender = SimSender::new(42);
    let (mut interval_polls, mut woken) = (0, 0);
    for _ in 0..2000 {
        let d = sender.datagram(Notification::status(None), 10);
        s.datagram(&d);
        if s.listener(service).flags.check_status() {
            cycle.handle_notification(s.now, Kind::Status);
        }
        while let Some(work) = cycle.poll(s.now) {
            match work.reason {
                Reason::Interval => interval_polls += 1,
                _ => woken += 1,
            }
        }
        s.advance(Duration::from_secs(5));
        while let Some(work) = cycle.poll(s.now) {
            assert_ne!(work.reason, Reason::Notification);
            interval_polls += 1;
        }
    }
    assert_eq!(interval_polls, 0);
    assert_eq!(woken, 2 * 2000);
}

#[test]
fn with_a_key_only_keyed_listeners_listen_and_the_others_back_off() {
    use flagpost_core::auth::{Key, Keyring};
    use flagpost_core::listener::AuthError;
    let key = |b: u8| Key::new(&[b; 32]).unwrap();
    let mut s = sim();
    s.set_keys(Some(Keyring::new(key(1))));
    let keyed = s.add_keyed_listener(Some("gsm1"), FlagSet::ALL, key(1));
    let keyless = s.add_listener(Some("gsm1"), FlagSet::ALL);
    let wrong = s.add_keyed_listener(Some("gsm1"), FlagSet::ALL, key(2));
    s.step();
    assert!(s.listener(keyed).is_listening());
    assert_eq!(
        s.listener(keyless).session.auth_failure(),
        Some(AuthError::KeyRequired)
    );
    assert_eq!(
        s.listener(wrong).session.auth_failure(),
        Some(AuthError::Refused)
    );
    for l in &mut s.listeners {
        l.flags.take();
    }

    // a notification (in-process: a keyed broker drops unsigned datagrams)
    // reaches the keyed listener only
    let now = s.now;
    let shutdown = Notification::channel_shutdown(ch("gsm1"));
    s.broker.as_mut().unwrap().notify(now, &shutdown, 1);
    s.step();
    assert_eq!(s.listener(keyed).flags.take(), FlagSet::CHANNEL_SHUTDOWN);
    assert_eq!(s.listener(keyless).flags.take(), FlagSet::EMPTY);
    assert_eq!(s.listener(wrong).flags.take(), FlagSet::EMPTY);

    // a minute later the refused ones still back off rather than spin: the
    // backoff grows to its 2 s cap (jittered: 1–2 s), so at most about 70
    // attempts each
    s.advance(Duration::from_secs(60));
    let refused = s
        .closes
        .iter()
        .filter(|(_, r)| *r == CloseReason::Unauthorized)
        .count();
    assert!((4..=2 * 70).contains(&refused), "{refused} refusals");
    assert!(!s.listener(keyless).is_listening() && !s.listener(wrong).is_listening());

    // a broker restart: the keyed listener authenticates again and re-checks
    s.kill_broker();
    s.start_broker();
    s.advance(Duration::from_secs(10));
    let l = s.listener(keyed);
    assert!(l.is_listening());
    assert_eq!(l.session.welcomes(), 2);
    assert_eq!(l.flags.take(), FlagSet::RECHECK);
    let stats = s.broker.as_ref().unwrap().stats();
    assert_eq!(stats.listening, 1);
    assert!(stats.listeners_unauthorized > 0);
}
