//! The listener session's tests: frames, keep-alive, backoff and the
//! reconnect raise, on a simulated clock.

use super::*;
use crate::wire::{FlagsRepr, WelcomeRepr, MAX_FRAME_LEN};

struct Bytes([u8; MAX_FRAME_LEN], usize);

impl core::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0[..self.1]
    }
}

fn bytes(frame: FrameRepr) -> Bytes {
    let mut b = [0u8; MAX_FRAME_LEN];
    let n = frame.emit(&mut b).unwrap();
    Bytes(b, n)
}

fn welcome(secs: u16) -> Bytes {
    bytes(FrameRepr::Welcome(WelcomeRepr {
        interest: FlagSet::ALL,
        keepalive_secs: secs,
        broker_id: 9,
    }))
}

fn sent(s: &mut ListenerSession, now: Instant) -> Option<FrameRepr> {
    let mut b = [0u8; MAX_FRAME_LEN];
    let n = s.poll_transmit(now, &mut b)?;
    Some(FrameRepr::parse_bytes(&b[..n]).unwrap())
}

fn session(interest: FlagSet, keepalive_secs: u16) -> ListenerSession {
    ListenerSession::new(ListenerConfig {
        interest,
        keepalive_secs,
        ..ListenerConfig::new(None)
    })
}

fn listening(interest: FlagSet) -> ListenerSession {
    let mut s = session(interest, 30);
    s.connected(Instant::ZERO);
    assert!(matches!(
        sent(&mut s, Instant::ZERO),
        Some(FrameRepr::Hello(_))
    ));
    s.handle_frame(Instant::ZERO, &welcome(30)).unwrap();
    s
}

#[test]
fn flags_are_filtered_by_interest() {
    let mut s = listening(FlagSet::STATUS);
    let f = bytes(FrameRepr::Flags(FlagsRepr {
        flags: FlagSet::ALL,
        raises: 1,
    }));
    let raise = s.handle_frame(Instant::ZERO, &f).unwrap();
    assert_eq!(
        raise,
        Raise {
            flags: FlagSet::STATUS,
            reconnect: false
        }
    );
}

#[test]
fn a_welcome_raises_a_recheck_never_a_shutdown() {
    assert_eq!(FlagSet::RECHECK, crate::broker::LOSS_FLAGS);
    for interest in [
        FlagSet::ALL,
        FlagSet::CHANNEL_SHUTDOWN,
        FlagSet::STATUS | FlagSet::CHANNEL_SHUTDOWN,
    ] {
        let mut s = session(interest, 30);
        for round in 1..=3u32 {
            s.connected(Instant::ZERO);
            let _ = sent(&mut s, Instant::ZERO);
            let raise = s.handle_frame(Instant::ZERO, &welcome(30)).unwrap();
            assert_eq!(raise.flags, interest & FlagSet::RECHECK);
            assert!(!raise.flags.contains(FlagSet::CHANNEL_SHUTDOWN));
            assert!(raise.reconnect);
            assert_eq!(s.welcomes(), round);
            s.disconnected(Instant::ZERO, 0);
        }
    }
}

#[test]
fn a_shutdown_from_the_broker_still_reaches_a_shutdown_listener() {
    let mut s = listening(FlagSet::CHANNEL_SHUTDOWN);
    let f = bytes(FrameRepr::Flags(FlagsRepr {
        flags: FlagSet::CHANNEL_SHUTDOWN,
        raises: 1,
    }));
    assert_eq!(
        s.handle_frame(Instant::ZERO, &f).unwrap().flags,
        FlagSet::CHANNEL_SHUTDOWN
    );
}

#[test]
fn pings_at_a_third_and_detects_a_dead_broker() {
    let mut s = listening(FlagSet::ALL);
    assert_eq!(s.poll_timeout(), Some(Instant::from_secs(10)));
    s.handle_timeout(Instant::from_secs(10)).unwrap();
    assert_eq!(
        sent(&mut s, Instant::from_secs(10)),
        Some(FrameRepr::Ping(1))
    );
    assert_eq!(s.poll_timeout(), Some(Instant::from_secs(20)));
    s.handle_timeout(Instant::from_secs(20)).unwrap();
    assert_eq!(
        sent(&mut s, Instant::from_secs(20)),
        Some(FrameRepr::Ping(2))
    );
    // no pong, nothing at all since t=0: dead at 30 s
    assert_eq!(s.poll_timeout(), Some(Instant::from_secs(30)));
    assert_eq!(
        s.handle_timeout(Instant::from_secs(30)),
        Err(SessionError::Timeout)
    );
    s.disconnected(Instant::from_secs(30), 0);
    assert_eq!(s.state(), ListenerState::BackingOff);
}

#[test]
fn the_session_backs_off_and_a_welcome_resets_the_backoff() {
    let mut s = session(FlagSet::ALL, 30);
    let mut now = Instant::ZERO;
    let mut delays = [0u64; 4];
    for d in &mut delays {
        assert_eq!(s.state(), ListenerState::Connecting);
        assert_eq!(s.poll_timeout(), None, "connect now");
        s.disconnected(now, u32::MAX); // refused
        assert_eq!(s.state(), ListenerState::BackingOff);
        let at = s.poll_timeout().unwrap();
        *d = (at - now).as_micros();
        s.handle_timeout(now + Duration::from_micros(*d - 1))
            .unwrap();
        assert_eq!(s.state(), ListenerState::BackingOff);
        now = at;
        s.handle_timeout(now).unwrap();
    }
    assert_eq!(delays, [99_999, 199_999, 399_999, 799_999]);
    s.connected(now);
    let _ = sent(&mut s, now);
    s.handle_frame(now, &welcome(30)).unwrap();
    s.disconnected(now, u32::MAX);
    assert_eq!(
        s.poll_timeout(),
        Some(now + Duration::from_micros(99_999)),
        "the welcome reset the backoff"
    );
}

#[test]
fn a_welcome_that_does_not_come_is_a_timeout() {
    let mut s = session(FlagSet::ALL, 5);
    s.connected(Instant::ZERO);
    let _ = sent(&mut s, Instant::ZERO);
    assert_eq!(s.poll_timeout(), Some(Instant::from_secs(5)));
    assert_eq!(
        s.handle_timeout(Instant::from_secs(5)),
        Err(SessionError::Timeout)
    );
}

#[test]
fn close_sends_close_and_stays_closed() {
    let mut s = session(FlagSet::ALL, 0);
    s.connected(Instant::ZERO);
    let _ = sent(&mut s, Instant::ZERO);
    s.close();
    assert_eq!(
        sent(&mut s, Instant::ZERO),
        Some(FrameRepr::Close(CloseRepr::new(CloseReason::Normal)))
    );
    s.disconnected(Instant::ZERO, 0);
    s.connected(Instant::ZERO);
    assert_eq!(s.state(), ListenerState::Closed);
    assert_eq!(s.poll_timeout(), None);
    assert_eq!(sent(&mut s, Instant::ZERO), None);
}

#[test]
fn unexpected_and_malformed_frames_are_errors() {
    let mut s = session(FlagSet::ALL, 0);
    s.connected(Instant::ZERO);
    assert_eq!(
        s.handle_frame(Instant::ZERO, &bytes(FrameRepr::Ping(1))),
        Err(SessionError::Unexpected(0x13))
    );
    let close = bytes(FrameRepr::Close(CloseRepr::new(CloseReason::Shutdown)));
    assert_eq!(
        s.handle_frame(Instant::ZERO, &close),
        Err(SessionError::Closed(CloseReason::Shutdown))
    );
    assert_eq!(
        s.handle_frame(Instant::ZERO, b"FP"),
        Err(SessionError::Malformed(wire::Error::Truncated))
    );
}

#[test]
fn a_small_buffer_keeps_the_frame_queued() {
    let mut s = session(FlagSet::ALL, 0);
    s.connected(Instant::ZERO);
    assert_eq!(s.poll_transmit(Instant::ZERO, &mut [0u8; 4]), None);
    assert!(matches!(
        sent(&mut s, Instant::ZERO),
        Some(FrameRepr::Hello(_))
    ));
}

#[test]
fn backoff_doubles_with_jitter_and_caps() {
    let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    // the draw is from [ceiling / 2, ceiling): the largest random value
    // lands one microsecond below each doubling ceiling
    let seen: [u64; 6] = core::array::from_fn(|_| b.next_delay(u32::MAX).as_micros());
    assert_eq!(
        seen,
        [99_999, 199_999, 399_999, 799_999, 1_599_999, 1_999_999]
    );
    b.reset();
    assert_eq!(b.next_delay(0), Duration::from_millis(50));
    assert_eq!(b.attempts(), 1);
}
