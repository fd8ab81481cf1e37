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
//! With a key ([`ListenerSession::with_key`]) every connection speaks
//! version 2 and runs the handshake of `PROTOCOL.md` (*Listener
//! authentication*) before its welcome: the session answers the challenge
//! and takes nothing from the broker before a valid accept. A failure is a
//! [`SessionError::Auth`], kept in
//! [`auth_failure`](ListenerSession::auth_failure) until a welcome; the
//! session backs off and retries as after any other loss, so a key file
//! corrected on either side heals it. [`StatsClient`] is the same handshake
//! for a stats request.
//!
//! Fail-over: with several brokers ([`ListenerConfig::brokers`]) the session
//! also says which one to connect to ([`broker`](ListenerSession::broker)),
//! and the transport holds their addresses. It starts with the first; each
//! loss — a connection that could not be made, a handshake that failed, a
//! welcomed connection that ended — moves it to the next (after the last,
//! the first again), and it stays on a broker as long as that one works:
//! no falling back to the first. The backoff is the same as with one broker,
//! step by step: a working broker lost, the next is tried after the initial
//! delay, jittered (so that the listeners of a lost broker do not all reach
//! a survivor in the same millisecond); each failed attempt doubles the
//! delay up to its cap, whichever broker it was for; a welcome resets it,
//! and is a reconnect raise as every welcome is. With one broker (the
//! default) nothing of this shows.
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

use crate::auth::Key;
use crate::channel::ChannelId;
use crate::flags::FlagSet;
use crate::time::{Duration, Instant};
use crate::wire::{self, CloseReason, CloseRepr, FrameRepr, Framed, HelloRepr, ProofRepr};

mod auth;
mod backoff;
mod stats;

pub use auth::AuthError;
use auth::{Handshake, Step};
pub use backoff::Backoff;
pub use stats::StatsClient;

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
    /// The listener and the broker could not authenticate each other.
    Auth(AuthError),
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::Closed(r) => write!(f, "broker closed the connection: {r}"),
            SessionError::Unexpected(t) => write!(f, "unexpected frame type {t:#04x} from broker"),
            SessionError::Malformed(e) => write!(f, "malformed frame from broker: {e}"),
            SessionError::Timeout => f.write_str("broker silent past the keep-alive timeout"),
            SessionError::Auth(e) => e.fmt(f),
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
    /// How many brokers the transport can connect to, tried in turn (see
    /// the module's *Fail-over*); 0 counts as 1.
    pub brokers: u8,
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
            brokers: 1,
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
#[derive(Clone, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ListenerSession {
    hello: HelloRepr,
    handshake: Handshake,
    send_proof: Option<ProofRepr>,
    auth_failure: Option<AuthError>,
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
    /// The broker to connect to (< `brokers`, or 0).
    broker: u8,
    brokers: u8,
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
            handshake: Handshake::KEYLESS,
            send_proof: None,
            auth_failure: None,
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
            broker: 0,
            brokers: config.brokers,
        }
    }

    /// The same session authenticating with `key` (`PROTOCOL.md`,
    /// *Listener authentication*): every connection speaks version 2. Its
    /// nonces are derived from `seed`, 16 random bytes that must be fresh
    /// for every run of the program (`getrandom`, a board's RNG at boot):
    /// a seed used twice repeats the nonces, and a recorded accept could
    /// then pass again.
    pub fn with_key(mut self, key: Key, seed: [u8; 16]) -> Self {
        self.handshake = Handshake::keyed(key, seed);
        self
    }

    /// Whether the session authenticates with a key.
    pub fn has_key(&self) -> bool {
        self.handshake.has_key()
    }

    /// Why the latest connection failed to authenticate, until a welcome
    /// comes (`None`: it did not fail so).
    pub fn auth_failure(&self) -> Option<AuthError> {
        self.auth_failure
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

    /// The index of the broker to connect to now, or connected to, or to
    /// try next while backing off: `0 ≤ broker < brokers` (see the module's
    /// *Fail-over*).
    pub fn broker(&self) -> usize {
        usize::from(self.broker)
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
    /// welcome must arrive within the keep-alive timeout asked for (or 30 s)
    /// from now, the handshake included.
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
        self.send_proof = None;
        self.send_ping = false;
        self.send_close = false;
        self.handshake.start();
    }

    /// The connection is gone (EOF, error, an error from this session) or
    /// could not be made, at `now`: back off for the next delay, drawn with
    /// `random` (any uniformly random `u32`; the core has no RNG), and move
    /// on to the next broker. A closed session stays closed.
    pub fn disconnected(&mut self, now: Instant, random: u32) {
        self.linked = false;
        self.send_hello = false;
        self.send_proof = None;
        self.send_ping = false;
        if self.state != ListenerState::Closed {
            self.state = ListenerState::BackingOff;
            self.retry_at = now + self.backoff.next_delay(random);
            // compare and wrap: no division on a Cortex-M0+
            self.broker += 1;
            if self.broker >= self.brokers {
                self.broker = 0;
            }
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
    /// broker may come back. A failed handshake is [`SessionError::Auth`].
    pub fn handle_frame(&mut self, now: Instant, bytes: &[u8]) -> Result<Raise, SessionError> {
        let framed = Framed::parse(bytes).map_err(SessionError::Malformed)?;
        if !self.linked || self.state == ListenerState::Closed {
            // closing or closed: only a close still means something
            return match framed.frame {
                FrameRepr::Close(c) => Err(SessionError::Closed(c.reason)),
                _ => Ok(Raise::default()),
            };
        }
        let first = FrameRepr::Hello(self.hello);
        let step = self.handshake.handle(&first, framed).inspect_err(|e| {
            if let SessionError::Auth(e) = e {
                self.auth_failure = Some(*e);
            }
        })?;
        let frame = match step {
            Step::Proof(proof) => {
                self.send_proof = Some(proof);
                return Ok(Raise::default());
            }
            Step::Accepted => return Ok(Raise::default()),
            Step::Pass(frame) => frame,
        };
        // frames move the deadline from the welcome on; the handshake's
        // count toward the welcome's, which runs from the connection
        self.last_rx = now;
        match frame {
            FrameRepr::Welcome(w) if self.state == ListenerState::Connecting => {
                self.handshake.established();
                self.state = ListenerState::Listening;
                if w.keepalive_secs > 0 {
                    self.keepalive = w.keepalive();
                }
                self.broker_id = Some(w.broker_id);
                self.welcomes = self.welcomes.saturating_add(1);
                self.auth_failure = None;
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
        } else if let Some(proof) = self.send_proof {
            FrameRepr::Proof(proof)
        } else if self.send_ping {
            FrameRepr::Ping(self.nonce.wrapping_add(1))
        } else {
            return None;
        };
        // A buffer too small keeps the frame queued.
        let n = Framed::new(self.handshake.version(), frame)
            .emit(buf)
            .ok()?;
        if self.send_close {
            self.send_close = false;
        } else if self.send_hello {
            self.send_hello = false;
        } else if self.send_proof.is_some() {
            self.send_proof = None;
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

#[cfg(test)]
mod failover_tests;
#[cfg(test)]
mod tests;
