//! The listener's side of the TCP stream as a sans-IO state machine, plus
//! the capped exponential backoff it reconnects with.
//!
//! A [`ListenerSession`] lives across connections. The transport tells it
//! when a connection is up ([`ListenerSession::connected`]) or gone
//! ([`ListenerSession::disconnected`]), feeds it received frames, writes the
//! frames it yields, and wakes it at [`ListenerSession::poll_timeout`]. It
//! answers with the flags to raise: on every welcome — the first and after a
//! reconnect — it raises every flag in its interest, because whatever
//! happened while it was away may have been missed.
//!
//! ```
//! use flagpost_core::listener::{ListenerSession, ListenerState};
//! use flagpost_core::flags::FlagSet;
//! use flagpost_core::time::Instant;
//! use flagpost_core::wire::{FrameRepr, WelcomeRepr};
//!
//! let mut s = ListenerSession::new(FlagSet::ALL, None, 0);
//! let now = Instant::ZERO;
//! s.connected(now);
//! assert!(matches!(s.poll_transmit(now), Some(FrameRepr::Hello(_))));
//! let welcome = FrameRepr::Welcome(WelcomeRepr { interest: FlagSet::ALL, keepalive_secs: 30, broker_id: 1 });
//! assert_eq!(s.handle_frame(now, &welcome), Ok(FlagSet::ALL)); // re-check everything
//! assert_eq!(s.state(), ListenerState::Listening);
//! ```

use core::fmt;

use crate::channel::ChannelId;
use crate::flags::FlagSet;
use crate::time::{Duration, Instant};
use crate::wire::{CloseReason, CloseRepr, FrameRepr, HelloRepr};

/// Where a session is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ListenerState {
    /// No connection (never connected, or lost: reconnect).
    Disconnected,
    /// Connected, hello sent or queued, waiting for the welcome.
    AwaitingWelcome,
    /// Welcomed: flags arrive.
    Listening,
    /// Stopped by [`ListenerSession::close`] or closed by the broker; a
    /// closed session does not reconnect by itself.
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
    /// Nothing arrived within the keep-alive timeout (or the welcome did not
    /// arrive in time).
    Timeout,
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::Closed(r) => write!(f, "broker closed the connection: {r}"),
            SessionError::Unexpected(t) => write!(f, "unexpected frame type {t:#04x} from broker"),
            SessionError::Timeout => f.write_str("broker silent past the keep-alive timeout"),
        }
    }
}

impl core::error::Error for SessionError {}

/// The listener's protocol state across connections.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ListenerSession {
    hello: HelloRepr,
    state: ListenerState,
    keepalive: Duration,
    last_rx: Instant,
    last_tx: Instant,
    nonce: u32,
    send_hello: bool,
    send_ping: bool,
    send_close: bool,
    broker_id: Option<u64>,
    welcomes: u32,
}

impl ListenerSession {
    /// A session that will listen for `interest` on `channel` (`None`: all
    /// channels), asking for a keep-alive of `keepalive_secs` (0: the
    /// broker's default). An empty interest is treated as every flag.
    pub fn new(interest: FlagSet, channel: Option<ChannelId>, keepalive_secs: u16) -> Self {
        let interest = if interest.is_empty() {
            FlagSet::ALL
        } else {
            interest
        };
        ListenerSession {
            hello: HelloRepr {
                interest,
                channel,
                keepalive_secs,
            },
            state: ListenerState::Disconnected,
            keepalive: Duration::from_secs(30),
            last_rx: Instant::ZERO,
            last_tx: Instant::ZERO,
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

    /// A connection to the broker is up at `now`: queue the hello. The
    /// welcome must arrive within the keep-alive timeout asked for (or 30 s).
    pub fn connected(&mut self, now: Instant) {
        if self.state == ListenerState::Closed {
            return;
        }
        self.state = ListenerState::AwaitingWelcome;
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

    /// The connection is gone (EOF, error, or after an error from this
    /// session). The transport reconnects unless the state is `Closed`.
    pub fn disconnected(&mut self) {
        if self.state != ListenerState::Closed {
            self.state = ListenerState::Disconnected;
        }
        self.send_hello = false;
        self.send_ping = false;
    }

    /// Stop listening: queue a close frame (if connected) and stay closed.
    pub fn close(&mut self) {
        if matches!(
            self.state,
            ListenerState::AwaitingWelcome | ListenerState::Listening
        ) {
            self.send_close = true;
        }
        self.state = ListenerState::Closed;
    }

    /// Feeds a frame received at `now`; returns the flags to raise.
    ///
    /// An error means the connection must be dropped (call
    /// [`disconnected`](Self::disconnected)); after a close for anything but
    /// a shutdown or timeout the session keeps reconnecting all the same,
    /// since a broker may come back. A [`CloseReason::Normal`] close from the
    /// broker is treated likewise.
    pub fn handle_frame(
        &mut self,
        now: Instant,
        frame: &FrameRepr,
    ) -> Result<FlagSet, SessionError> {
        self.last_rx = now;
        match (self.state, frame) {
            (ListenerState::AwaitingWelcome, FrameRepr::Welcome(w)) => {
                self.state = ListenerState::Listening;
                if w.keepalive_secs > 0 {
                    self.keepalive = w.keepalive();
                }
                self.broker_id = Some(w.broker_id);
                self.welcomes = self.welcomes.saturating_add(1);
                Ok(self.hello.interest)
            }
            (ListenerState::Listening, FrameRepr::Flags(f)) => Ok(f.flags & self.hello.interest),
            (ListenerState::Listening, FrameRepr::Pong(_)) => Ok(FlagSet::EMPTY),
            (_, FrameRepr::Close(c)) => Err(SessionError::Closed(c.reason)),
            (ListenerState::Closed, _) => Ok(FlagSet::EMPTY),
            (_, other) => Err(SessionError::Unexpected(other.frame_type())),
        }
    }

    /// The next frame to send at `now`, if any.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant) -> Option<FrameRepr> {
        let frame = if self.send_close {
            self.send_close = false;
            FrameRepr::Close(CloseRepr::new(CloseReason::Normal))
        } else if self.send_hello {
            self.send_hello = false;
            FrameRepr::Hello(self.hello)
        } else if self.send_ping {
            self.send_ping = false;
            self.nonce = self.nonce.wrapping_add(1);
            FrameRepr::Ping(self.nonce)
        } else {
            return None;
        };
        self.last_tx = now;
        Some(frame)
    }

    fn ping_at(&self) -> Instant {
        self.last_tx + Duration::from_micros(self.keepalive.as_micros() / 3)
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has something to
    /// do: the next ping, or the moment the broker counts as dead.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            ListenerState::AwaitingWelcome => Some(self.last_rx + self.keepalive),
            ListenerState::Listening => Some(self.ping_at().min(self.last_rx + self.keepalive)),
            ListenerState::Disconnected | ListenerState::Closed => None,
        }
    }

    /// Queues a ping when due; reports a dead broker as an error (drop the
    /// connection and reconnect).
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), SessionError> {
        match self.state {
            ListenerState::AwaitingWelcome | ListenerState::Listening
                if now >= self.last_rx + self.keepalive =>
            {
                Err(SessionError::Timeout)
            }
            ListenerState::Listening if now >= self.ping_at() && !self.send_ping => {
                self.send_ping = true;
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
    use crate::wire::{FlagsRepr, WelcomeRepr};

    fn welcome(secs: u16) -> FrameRepr {
        FrameRepr::Welcome(WelcomeRepr {
            interest: FlagSet::ALL,
            keepalive_secs: secs,
            broker_id: 9,
        })
    }

    #[test]
    fn flags_are_filtered_by_interest() {
        let mut s = ListenerSession::new(FlagSet::STATUS, None, 0);
        s.connected(Instant::ZERO);
        assert_eq!(
            s.handle_frame(Instant::ZERO, &welcome(30)),
            Ok(FlagSet::STATUS)
        );
        let f = FrameRepr::Flags(FlagsRepr {
            flags: FlagSet::ALL,
            raises: 1,
        });
        assert_eq!(s.handle_frame(Instant::ZERO, &f), Ok(FlagSet::STATUS));
    }

    #[test]
    fn pings_at_a_third_and_detects_a_dead_broker() {
        let mut s = ListenerSession::new(FlagSet::ALL, None, 30);
        s.connected(Instant::ZERO);
        assert!(s.poll_transmit(Instant::ZERO).is_some());
        s.handle_frame(Instant::ZERO, &welcome(30)).unwrap();
        assert_eq!(s.poll_timeout(), Some(Instant::from_secs(10)));
        s.handle_timeout(Instant::from_secs(10)).unwrap();
        assert_eq!(
            s.poll_transmit(Instant::from_secs(10)),
            Some(FrameRepr::Ping(1))
        );
        assert_eq!(s.poll_timeout(), Some(Instant::from_secs(20)));
        s.handle_timeout(Instant::from_secs(20)).unwrap();
        assert_eq!(
            s.poll_transmit(Instant::from_secs(20)),
            Some(FrameRepr::Ping(2))
        );
        // no pong, nothing at all since t=0: dead at 30 s
        assert_eq!(s.poll_timeout(), Some(Instant::from_secs(30)));
        assert_eq!(
            s.handle_timeout(Instant::from_secs(30)),
            Err(SessionError::Timeout)
        );
        s.disconnected();
        assert_eq!(s.state(), ListenerState::Disconnected);
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn reconnect_raises_everything_again() {
        let mut s = ListenerSession::new(FlagSet::ALL, None, 0);
        for i in 1..=3 {
            s.connected(Instant::ZERO);
            assert!(matches!(
                s.poll_transmit(Instant::ZERO),
                Some(FrameRepr::Hello(_))
            ));
            assert_eq!(
                s.handle_frame(Instant::ZERO, &welcome(30)),
                Ok(FlagSet::ALL)
            );
            assert_eq!(s.welcomes(), i);
            s.disconnected();
        }
    }

    #[test]
    fn close_sends_close_and_stays_closed() {
        let mut s = ListenerSession::new(FlagSet::ALL, None, 0);
        s.connected(Instant::ZERO);
        let _ = s.poll_transmit(Instant::ZERO);
        s.close();
        assert_eq!(
            s.poll_transmit(Instant::ZERO),
            Some(FrameRepr::Close(CloseRepr::new(CloseReason::Normal)))
        );
        s.disconnected();
        s.connected(Instant::ZERO);
        assert_eq!(s.state(), ListenerState::Closed);
        assert_eq!(s.poll_transmit(Instant::ZERO), None);
    }

    #[test]
    fn unexpected_frames_are_errors() {
        let mut s = ListenerSession::new(FlagSet::ALL, None, 0);
        s.connected(Instant::ZERO);
        assert_eq!(
            s.handle_frame(Instant::ZERO, &FrameRepr::Ping(1)),
            Err(SessionError::Unexpected(0x13))
        );
        let close = FrameRepr::Close(CloseRepr::new(CloseReason::Shutdown));
        assert_eq!(
            s.handle_frame(Instant::ZERO, &close),
            Err(SessionError::Closed(CloseReason::Shutdown))
        );
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
