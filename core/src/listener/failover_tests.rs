//! The session's fail-over policy on a simulated clock: which broker it
//! connects to, in what order, when, and that every move is a reconnect
//! raise.

use super::*;
use crate::wire::{WelcomeRepr, MAX_FRAME_LEN};
use proptest::prelude::*;
use std::vec::Vec;

const INITIAL: Duration = ListenerConfig::BACKOFF_INITIAL;
const MAX: Duration = ListenerConfig::BACKOFF_MAX;

fn session(brokers: u8) -> ListenerSession {
    ListenerSession::new(ListenerConfig {
        keepalive_secs: 30,
        brokers,
        ..ListenerConfig::new(None)
    })
}

fn welcome(broker_id: u64) -> ([u8; MAX_FRAME_LEN], usize) {
    let mut b = [0u8; MAX_FRAME_LEN];
    let n = FrameRepr::Welcome(WelcomeRepr {
        interest: FlagSet::ALL,
        keepalive_secs: 30,
        broker_id,
    })
    .emit(&mut b)
    .unwrap();
    (b, n)
}

/// Connects at `now`, sends the hello and takes a welcome from broker
/// `broker_id`; returns the raise.
fn welcomed(s: &mut ListenerSession, now: Instant, broker_id: u64) -> Raise {
    assert_eq!(s.state(), ListenerState::Connecting);
    s.connected(now);
    let mut out = [0u8; MAX_FRAME_LEN];
    assert!(s.poll_transmit(now, &mut out).is_some(), "a hello");
    let (b, n) = welcome(broker_id);
    let raise = s.handle_frame(now, &b[..n]).unwrap();
    assert_eq!(s.state(), ListenerState::Listening);
    raise
}

/// A lost connection or failed attempt at `now`; runs the backoff out and
/// returns when the next attempt starts.
fn lose(s: &mut ListenerSession, now: Instant, random: u32) -> Instant {
    s.disconnected(now, random);
    assert_eq!(s.state(), ListenerState::BackingOff);
    let at = s.poll_timeout().unwrap();
    s.handle_timeout(at).unwrap();
    assert_eq!(s.state(), ListenerState::Connecting);
    at
}

#[test]
fn starts_at_the_first_and_tries_them_in_order_wrapping() {
    let mut s = session(3);
    let mut now = Instant::ZERO;
    let mut order = Vec::new();
    for _ in 0..7 {
        order.push(s.broker());
        now = lose(&mut s, now, 0);
    }
    assert_eq!(order, [0, 1, 2, 0, 1, 2, 0]);
}

#[test]
fn a_count_of_zero_or_one_is_always_the_first() {
    for brokers in [0, 1] {
        let mut s = session(brokers);
        let mut now = Instant::ZERO;
        for i in 0..5 {
            assert_eq!(s.broker(), 0);
            if i % 2 == 0 {
                welcomed(&mut s, now, 1);
            }
            now = lose(&mut s, now, u32::MAX);
        }
    }
}

#[test]
fn stays_on_a_working_broker() {
    let mut s = session(3);
    let now = lose(&mut s, Instant::ZERO, 0); // the first is down
    welcomed(&mut s, now, 2);
    assert_eq!(s.broker(), 1);
    // an hour of keep-alive: pings answered, never a move back to the first
    let mut out = [0u8; MAX_FRAME_LEN];
    let mut t = now;
    let mut pings = 0;
    while t < now + Duration::from_secs(3600) {
        t = s.poll_timeout().unwrap();
        s.handle_timeout(t).unwrap();
        if s.poll_transmit(t, &mut out).is_some() {
            pings += 1;
            let mut b = [0u8; MAX_FRAME_LEN];
            let n = FrameRepr::Pong(pings).emit(&mut b).unwrap();
            s.handle_frame(t, &b[..n]).unwrap();
        }
        assert_eq!(s.state(), ListenerState::Listening);
        assert_eq!(s.broker(), 1);
    }
    assert!(pings > 300, "{pings} pings");
}

#[test]
fn backoff_steps_across_brokers_and_resets_on_a_welcome() {
    let mut s = session(2);
    let mut now = Instant::ZERO;
    // random 0 draws the lower end, c / 2: 50, 100, 200, … ms, capped
    let mut expected = Vec::new();
    let mut waited = Vec::new();
    for n in 0..8u32 {
        let ceiling = INITIAL.saturating_mul(1 << n).min(MAX);
        expected.push(Duration::from_micros(ceiling.as_micros() / 2));
        let at = lose(&mut s, now, 0);
        waited.push(at - now);
        now = at;
        assert_eq!(s.failed_attempts(), n + 1);
    }
    assert_eq!(waited, expected);
    // welcomed on the one it reached; the next loss waits the initial delay
    welcomed(&mut s, now, 7);
    assert_eq!(s.failed_attempts(), 0);
    let was = s.broker();
    let at = lose(&mut s, now, 0);
    assert_eq!(at - now, Duration::from_micros(INITIAL.as_micros() / 2));
    assert_ne!(s.broker(), was, "moved on");
}

#[test]
fn every_move_is_a_reconnect_raise() {
    let mut s = session(2);
    let mut now = Instant::ZERO;
    for (i, id) in [10u64, 20, 10, 20].into_iter().enumerate() {
        assert_eq!(s.broker(), i % 2);
        let raise = welcomed(&mut s, now, id);
        assert_eq!(
            raise,
            Raise {
                flags: FlagSet::RECHECK,
                reconnect: true
            }
        );
        assert_eq!(s.broker_id(), Some(id));
        assert_eq!(s.welcomes(), i as u32 + 1);
        now = lose(&mut s, now + Duration::from_secs(5), u32::MAX / 2);
    }
}

#[test]
fn a_closed_session_does_not_move() {
    let mut s = session(3);
    welcomed(&mut s, Instant::ZERO, 1);
    s.close();
    s.disconnected(Instant::ZERO, 0);
    assert_eq!(s.state(), ListenerState::Closed);
    assert_eq!(s.broker(), 0);
}

/// One step of a trace: a connection that gets its welcome (and later
/// breaks), or an attempt that fails; with the jitter drawn after it.
#[derive(Clone, Copy, Debug)]
enum Step {
    Welcomed(u32),
    Failed(u32),
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    proptest::collection::vec(
        prop_oneof![
            any::<u32>().prop_map(Step::Welcomed),
            any::<u32>().prop_map(Step::Failed),
        ],
        0..40,
    )
}

/// What a session does along `trace`: the raises, the attempt times, the
/// brokers chosen.
fn run(brokers: u8, trace: &[Step]) -> (Vec<Raise>, Vec<Instant>, Vec<usize>) {
    let mut s = session(brokers);
    let mut now = Instant::ZERO;
    let (mut raises, mut times, mut chosen) = (Vec::new(), Vec::new(), Vec::new());
    for step in trace {
        chosen.push(s.broker());
        let random = match *step {
            Step::Welcomed(r) => {
                raises.push(welcomed(&mut s, now, 1));
                now += Duration::from_secs(1);
                r
            }
            Step::Failed(r) => r,
        };
        now = lose(&mut s, now, random);
        times.push(now);
    }
    (raises, times, chosen)
}

proptest! {
    /// The broker count changes which broker, nothing else: raises and
    /// attempt times are those of a one-broker session, byte for byte; the
    /// brokers follow in turn.
    #[test]
    fn the_count_changes_only_which_broker(brokers in 1u8..=255, trace in steps()) {
        let (raises1, times1, chosen1) = run(1, &trace);
        let (raises, times, chosen) = run(brokers, &trace);
        prop_assert_eq!(raises, raises1);
        prop_assert_eq!(times, times1);
        prop_assert!(chosen1.iter().all(|&b| b == 0));
        for (i, &b) in chosen.iter().enumerate() {
            prop_assert_eq!(b, i % usize::from(brokers));
        }
    }

    /// With one broker of `n` alive, a listener that loses the one it was
    /// on reaches it within n - 1 attempts, each after at most the backoff
    /// cap; with two brokers, after the initial delay at most.
    #[test]
    fn failover_is_bounded_by_the_backoff_cap(
        n in 2u8..=8,
        on in 0u8..8,
        alive in 0u8..8,
        jitter in proptest::collection::vec(any::<u32>(), 8),
    ) {
        let (on, alive) = (on % n, alive % n);
        prop_assume!(on != alive);
        let mut s = session(n);
        let mut now = Instant::ZERO;
        while s.broker() != usize::from(on) {
            now = lose(&mut s, now, 0);
        }
        welcomed(&mut s, now, 1);
        let lost = now + Duration::from_secs(60);
        now = lose(&mut s, lost, jitter[0]);
        let mut attempts = 1;
        while s.broker() != usize::from(alive) {
            prop_assert!(now - lost <= MAX.saturating_mul(u64::from(attempts)));
            now = lose(&mut s, now, jitter[attempts as usize]);
            attempts += 1;
        }
        prop_assert!(attempts < u32::from(n));
        prop_assert!(now - lost <= MAX.saturating_mul(u64::from(n - 1)));
        if n == 2 {
            prop_assert!(now - lost < INITIAL);
        }
        let raise = welcomed(&mut s, now, 2);
        prop_assert!(raise.reconnect);
        prop_assert_eq!(s.broker_id(), Some(2));
    }
}

/// The documented delay: `[c / 2, c)` with `c = min(max, initial · 2ⁿ)`,
/// computed wide.
fn reference_delay(initial: u64, max: u64, n: u32, random: u32) -> u64 {
    let ceiling = (u128::from(initial) << n.min(32)).min(u128::from(max));
    let half = ceiling / 2;
    let span = ceiling - half;
    let jitter = if span <= u128::from(u32::MAX) {
        (span * u128::from(random)) >> 32
    } else {
        (span >> 32) * u128::from(random)
    };
    u64::try_from(half + jitter).unwrap_or(u64::MAX)
}

proptest! {
    /// The backoff by doubling (small code on a Cortex-M0+) draws exactly
    /// the documented delays, whatever the settings.
    #[test]
    fn backoff_draws_the_documented_delays(
        initial in prop_oneof![0u64..1_000_000, any::<u64>()],
        max in prop_oneof![0u64..100_000_000, any::<u64>()],
        randoms in proptest::collection::vec(any::<u32>(), 0..70),
    ) {
        let mut b = Backoff::new(Duration::from_micros(initial), Duration::from_micros(max));
        for (n, &random) in randoms.iter().enumerate() {
            let want = reference_delay(initial, max, n as u32, random);
            prop_assert_eq!(b.next_delay(random).as_micros(), want, "step {}", n);
        }
    }
}
