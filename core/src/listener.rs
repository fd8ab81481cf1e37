//! The listener's side of the TCP stream as a sans-IO state machine: hello,
//! welcome, flags, keep-alive, and reconnecting with a capped exponential
//! backoff it owns.
//!
//! A [`ListenerSession`] lives across connections and says what to do next:
//! its [`state`](ListenerSession::state) is `Connecting` (open a connection
//! now), `Listening`, `BackingOff` (wait until
//! [`poll_timeout`](ListenerSession::poll_timeout)) or `Closed`. The
//! transport tells it when a connection is up
//! ([`connected`](ListenerSession::connected)) or gone or could not be made
//! ([`disconnected`](ListenerSession::disconnected)), hands it every frame
//! its [`FrameReader`](crate::wire::FrameReader) splits off, writes the bytes
//! of [`poll_transmit`](ListenerSession::poll_transmit), and wakes it at
//! `poll_timeout`. Every welcome resets the backoff and yields a *reconnect
//! raise*: status, non-status and channel update within the interest
//! ([`FlagSet::RECHECK`]), because whatever happened while the listener was
//! away may have been missed. Never channel shutdown: a re-check is right
//! after a reconnect, a command is not.
//!
//! ```
//! use flagpost_core::listener::{ListenerConfig, ListenerSession, ListenerState};
//! use flagpost_core::flags::FlagSet;
//! use flagpost_core::time::Instant;
//! use flagpost_core::wire::{FrameRepr, WelcomeRepr, MAX_FRAME_LEN};
//!
//! let mut s = ListenerSession::new(ListenerConfig::new(None));
//! let now = Instant::ZERO;
//! assert_eq!(s.state(), ListenerState::Connecting);
//! s.connected(now);
//! let mut out = [0u8; MAX_FRAME_LEN];
//! let n = s.poll_transmit(now, &mut out).unwrap();
//! assert!(matches!(FrameRepr::parse_bytes(&out[..n]), Ok(FrameRepr::Hello(_))));
//!
//! let mut welcome = [0u8; MAX_FRAME_LEN];
//! let n = FrameRepr::Welcome(WelcomeRepr { interest: FlagSet::ALL, keepalive_secs: 30, broker_id: 1 })
//!     .emit(&mut welcome).unwrap();
//! let raise = s.handle_frame(now, &welcome[..n]).unwrap();
//! assert_eq!(raise.flags, FlagSet::RECHECK); // re-check, but no shutdown
//! assert!(raise.reconnect);
//! assert_eq!(s.state(), ListenerState::Listening);
//! ```

use core::fmt;

use crate::channel::ChannelId;
use crate::flags::FlagSet;
use crate::time::{Duration, Instant};
use crate::wire::{self, CloseReason, CloseRepr, FrameRepr, HelloRepr};

/// Where a listener is: the one state both transports report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ListenerState {
    /// Opening a connection (first time or after a loss), or connected and
    /// waiting for the welcome.
    Connecting,
    /// Welcomed: flags arrive.
    Listening,
    /// The connection was lost or refused; waiting before the next attempt.
    BackingOff,
    /// Stopped by [`ListenerSession::close`] (or, for an in-process listener,
    /// its broker is gone); a closed session does not reconnect.
    Closed,
}

/// Why a session's connection must be dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SessionError {
    /// The broker closed the connection with this reason.
    Closed(CloseReason),
    /// A frame that a broker never sends, or sent out of order (type code).
    Unexpected(u8),
    /// Bytes that are not a valid frame.
    Malformed(wire::Error),
    /// Nothing arrived within the keep-alive timeout (or the welcome did not
    /// arrive in time).
    Timeout,
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::Closed(r) => write!(f, "broker closed the connection: {r}"),
            SessionError::Unexpected(t) => write!(f, "unexpected frame type {t:#04x} from broker"),
            SessionError::Malformed(e) => write!(f, "malformed frame from broker: {e}"),
            SessionError::Timeout => f.write_str("broker silent past the keep-alive timeout"),
        }
    }
}

impl core::error::Error for SessionError {}

/// What a listener wants and how it reconnects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ListenerConfig {
    /// The flags wanted (empty: all four).
    pub interest: FlagSet,
    /// The channel listened for (`None`: all).
    pub channel: Option<ChannelId>,
    /// Keep-alive to ask for, in seconds (0: the broker's).
    pub keepalive_secs: u16,
    /// First reconnect delay.
    pub backoff_initial: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
}

impl ListenerConfig {
    /// The first reconnect delay by default.
    pub const BACKOFF_INITIAL: Duration = Duration::from_millis(100);
    /// The longest reconnect delay by default: after a broker restart every
    /// listener is back within about 2 s (jittered, so they do not all come
    /// at once).
    pub const BACKOFF_MAX: Duration = Duration::from_secs(2);

    /// Every flag for `channel` (`None`: all channels), the broker's
    /// keep-alive, the default backoff.
    pub const fn new(channel: Option<ChannelId>) -> Self {
        ListenerConfig {
            interest: FlagSet::ALL,
            channel,
            keepalive_secs: 0,
            backoff_initial: Self::BACKOFF_INITIAL,
            backoff_max: Self::BACKOFF_MAX,
        }
    }
}

/// Flags a frame raises, and whether they are a reconnect raise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Raise {
    /// The flags to raise (empty: nothing).
    pub flags: FlagSet,
    /// Raised by a welcome, not by a notification: the listener was away
    /// (or just started) and re-checks what it may have missed.
    pub reconnect: bool,
}

/// The listener's protocol state across connections.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ListenerSession {
    hello: HelloRepr,
    state: ListenerState,
    /// A connection is up (awaiting the welcome, or listening).
    linked: bool,
    keepalive: Duration,
    last_rx: Instant,
    last_tx: Instant,
    retry_at: Instant,
    backoff: Backoff,
    nonce: u32,
    send_hello: bool,
    send_ping: bool,
    send_close: bool,
    broker_id: Option<u64>,
    welcomes: u32,
}

impl ListenerSession {
    /// A session for `config`, ready to connect.
    pub fn new(config: ListenerConfig) -> Self {
        let interest = if config.interest.is_empty() {
            FlagSet::ALL
        } else {
            config.interest
        };
        ListenerSession {
            hello: HelloRepr {
                interest,
                channel: config.channel,
                keepalive_secs: config.keepalive_secs,
            },
            state: ListenerState::Connecting,
            linked: false,
            keepalive: Duration::from_secs(30),
            last_rx: Instant::ZERO,
            last_tx: Instant::ZERO,
            retry_at: Instant::ZERO,
            backoff: Backoff::new(config.backoff_initial, config.backoff_max),
            nonce: 0,
            send_hello: false,
            send_ping: false,
            send_close: false,
            broker_id: None,
            welcomes: 0,
        }
    }

    /// The state.
    pub fn state(&self) -> ListenerState {
        self.state
    }

    /// The flags listened for.
    pub fn interest(&self) -> FlagSet {
        self.hello.interest
    }

    /// The channel listened for (`None`: all).
    pub fn channel(&self) -> Option<&ChannelId> {
        self.hello.channel.as_ref()
    }

    /// The broker id from the last welcome.
    pub fn broker_id(&self) -> Option<u64> {
        self.broker_id
    }

    /// How many welcomes were received (1 + reconnects).
    pub fn welcomes(&self) -> u32 {
        self.welcomes
    }

    /// Connection attempts that failed since the last welcome (the
    /// backoff's step).
    pub fn failed_attempts(&self) -> u32 {
        self.backoff.attempts()
    }

    /// A connection to the broker is up at `now`: queue the hello. The
    /// welcome must arrive within the keep-alive timeout asked for (or 30 s).
    pub fn connected(&mut self, now: Instant) {
        if self.state == ListenerState::Closed {
            return;
        }
        self.state = ListenerState::Connecting;
        self.linked = true;
        self.keepalive = match self.hello.keepalive_secs {
            0 => Duration::from_secs(30),
            s => Duration::from_secs(u64::from(s)),
        };
        self.last_rx = now;
        self.last_tx = now;
        self.send_hello = true;
        self.send_ping = false;
        self.send_close = false;
    }

    /// The connection is gone (EOF, error, an error from this session) or
    /// could not be made, at `now`: back off for the next delay, drawn with
    /// `random` (any uniformly random `u32`; the core has no RNG). A closed
    /// session stays closed.
    pub fn disconnected(&mut self, now: Instant, random: u32) {
        self.linked = false;
        self.send_hello = false;
        self.send_ping = false;
        if self.state != ListenerState::Closed {
            self.state = ListenerState::BackingOff;
            self.retry_at = now + self.backoff.next_delay(random);
        }
    }

    /// Stop listening: queue a close frame (if connected) and stay closed.
    pub fn close(&mut self) {
        if self.linked && self.state != ListenerState::Closed {
            self.send_close = true;
        }
        self.state = ListenerState::Closed;
    }

    /// Feeds one frame's bytes received at `now` (as split by a
    /// [`FrameReader`](crate::wire::FrameReader)); returns what to raise.
    ///
    /// An error means the connection must be dropped (call
    /// [`disconnected`](Self::disconnected)); after a close from the broker,
    /// whatever its reason, the session reconnects all the same, since a
    /// broker may come back.
    pub fn handle_frame(&mut self, now: Instant, bytes: &[u8]) -> Result<Raise, SessionError> {
        let frame = FrameRepr::parse_bytes(bytes).map_err(SessionError::Malformed)?;
        self.last_rx = now;
        let awaiting = self.linked && self.state == ListenerState::Connecting;
        match frame {
            FrameRepr::Welcome(w) if awaiting => {
                self.state = ListenerState::Listening;
                if w.keepalive_secs > 0 {
                    self.keepalive = w.keepalive();
                }
                self.broker_id = Some(w.broker_id);
                self.welcomes = self.welcomes.saturating_add(1);
                self.backoff.reset();
                Ok(Raise {
                    flags: self.hello.interest & FlagSet::RECHECK,
                    reconnect: true,
                })
            }
            FrameRepr::Flags(f) if self.state == ListenerState::Listening => Ok(Raise {
                flags: f.flags & self.hello.interest,
                reconnect: false,
            }),
            FrameRepr::Pong(_) if self.state == ListenerState::Listening => Ok(Raise::default()),
            FrameRepr::Close(c) => Err(SessionError::Closed(c.reason)),
            _ if self.state == ListenerState::Closed => Ok(Raise::default()),
            other => Err(SessionError::Unexpected(other.frame_type())),
        }
    }

    /// Writes the next frame to send at `now` into `buf` (at least
    /// [`MAX_FRAME_LEN`](crate::wire::MAX_FRAME_LEN) bytes) and returns its
    /// length. Call until `None`.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        let frame = if self.send_close {
            FrameRepr::Close(CloseRepr::new(CloseReason::Normal))
        } else if self.send_hello {
            FrameRepr::Hello(self.hello)
        } else if self.send_ping {
            FrameRepr::Ping(self.nonce.wrapping_add(1))
        } else {
            return None;
        };
        // A buffer too small keeps the frame queued.
        let n = frame.emit(buf).ok()?;
        if self.send_close {
            self.send_close = false;
        } else if self.send_hello {
            self.send_hello = false;
        } else {
            self.send_ping = false;
            self.nonce = self.nonce.wrapping_add(1);
        }
        self.last_tx = now;
        Some(n)
    }

    fn ping_at(&self) -> Instant {
        self.last_tx + Duration::from_micros(self.keepalive.as_micros() / 3)
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has something to
    /// do: the welcome's deadline, the next ping or the moment the broker
    /// counts as dead, or the end of a backoff.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            ListenerState::Connecting if self.linked => Some(self.last_rx + self.keepalive),
            ListenerState::Listening => Some(self.ping_at().min(self.last_rx + self.keepalive)),
            ListenerState::BackingOff => Some(self.retry_at),
            ListenerState::Connecting | ListenerState::Closed => None,
        }
    }

    /// Queues a ping when due and ends a backoff (the state becomes
    /// `Connecting`); reports a dead broker as an error (drop the connection
    /// and call [`disconnected`](Self::disconnected)).
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), SessionError> {
        match self.state {
            ListenerState::Connecting | ListenerState::Listening
                if self.linked && now >= self.last_rx + self.keepalive =>
            {
                Err(SessionError::Timeout)
            }
            ListenerState::Listening if now >= self.ping_at() && !self.send_ping => {
                self.send_ping = true;
                Ok(())
            }
            ListenerState::BackingOff if now >= self.retry_at => {
                self.state = ListenerState::Connecting;
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// Capped exponential backoff with jitter for reconnecting.
///
/// The n-th delay is drawn uniformly from `[c / 2, c)` with
/// `c = min(max, initial · 2ⁿ)`, using randomness the caller supplies (the
/// core has no RNG). [`reset`](Self::reset) after a successful welcome.
///
/// ```
/// use flagpost_core::listener::Backoff;
/// use flagpost_core::time::Duration;
///
/// let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
/// let d1 = b.next_delay(0);
/// assert_eq!(d1, Duration::from_millis(50));
/// for _ in 0..20 { b.next_delay(u32::MAX); }
/// assert!(b.next_delay(u32::MAX) <= Duration::from_secs(5));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// Delays start at `initial` and double up to `max`.
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            attempt: 0,
        }
    }

    /// How many delays were handed out since the last reset.
    pub const fn attempts(&self) -> u32 {
        self.attempt
    }

    /// The next delay; `random` is any uniformly random `u32`.
    pub fn next_delay(&mut self, random: u32) -> Duration {
        let factor = 1u64 << self.attempt.min(32);
        self.attempt = self.attempt.saturating_add(1);
        let ceiling = self
            .initial
            .saturating_mul(factor)
            .min(self.max)
            .as_micros();
        let half = ceiling / 2;
        // span · random / 2³², without a u128 division (a kilobyte of
        // library code on Cortex-M0); spans past 2³² µs (71 min) scale
        // coarsely first.
        let span = ceiling - half;
        let jitter = match u32::try_from(span) {
            Ok(span) => (u64::from(span) * u64::from(random)) >> 32,
            Err(_) => (span >> 32).saturating_mul(u64::from(random)),
        };
        Duration::from_micros(half.saturating_add(jitter))
    }

    /// Back to the initial delay.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
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
}
