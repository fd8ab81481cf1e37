//! A database source's decisions: when to connect, when to retry (the
//! listeners' [`Backoff`]), when to prove a quiet connection alive, and
//! when the broker must raise a re-check because notifications may have been
//! missed. The transport (the std broker's PostgreSQL thread) connects,
//! queries and waits; this session decides, on the time it is given.
//!
//! Call order: [`poll_action`](SourceSession::poll_action) with `now` and do
//! what it says, reporting the outcome with
//! [`handle_connected`](SourceSession::handle_connected) or
//! [`handle_failed`](SourceSession::handle_failed) (a failed attempt, a lost
//! connection or a failed keep-alive alike), and
//! [`handle_payload`](SourceSession::handle_payload) /
//! [`handle_alive`](SourceSession::handle_alive) for what arrives; when it
//! says nothing, wait until [`poll_timeout`](SourceSession::poll_timeout)
//! (and for notifications while connected).
//!
//! ```
//! use flagpost_core::source::{Action, SourceConfig, SourceSession};
//! use flagpost_core::time::{Duration, Instant};
//!
//! let mut s = SourceSession::new(SourceConfig::default());
//! let t = Instant::ZERO;
//! assert_eq!(s.poll_action(t), Some(Action::Connect));
//! assert!(!s.handle_connected(t), "the first connect raises nothing");
//! s.handle_failed(t, 0); // the connection is lost
//! let retry = s.poll_timeout().unwrap();
//! assert_eq!(s.poll_action(retry), Some(Action::Connect));
//! assert!(s.handle_connected(retry), "a reconnect raises a re-check");
//! ```

use crate::listener::Backoff;
use crate::payload::{Payload, PayloadError};
use crate::time::{Duration, Instant};

/// The source's timing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SourceConfig {
    /// The first retry delay's ceiling (delays are drawn from `[c/2, c)`).
    pub backoff_initial: Duration,
    /// The longest retry delay.
    pub backoff_max: Duration,
    /// A connection quiet this long is proved alive with a query.
    pub keepalive: Duration,
}

impl Default for SourceConfig {
    /// Retries from 0.5 s doubling to 30 s; a keep-alive after 30 s quiet.
    fn default() -> Self {
        SourceConfig {
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            keepalive: Duration::from_secs(30),
        }
    }
}

/// What the transport must do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Action {
    /// Connect and subscribe; report with `handle_connected` or
    /// `handle_failed`.
    Connect,
    /// Send a query that proves the connection alive; report with
    /// `handle_alive` or `handle_failed`.
    KeepAlive,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
enum State {
    /// A connection attempt is due at this time (or under way).
    Connect { at: Instant, underway: bool },
    /// Connected; last heard from at `quiet_since`.
    Listening { quiet_since: Instant, probing: bool },
}

/// The source's session across connections (see the [module](self)).
#[derive(Clone, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SourceSession {
    config: SourceConfig,
    backoff: Backoff,
    state: State,
    connected_before: bool,
}

impl SourceSession {
    /// A session that connects at once.
    pub fn new(config: SourceConfig) -> Self {
        SourceSession {
            config,
            backoff: Backoff::new(config.backoff_initial, config.backoff_max),
            state: State::Connect {
                at: Instant::ZERO,
                underway: false,
            },
            connected_before: false,
        }
    }

    /// Whether the source is connected and subscribed.
    pub fn is_connected(&self) -> bool {
        matches!(self.state, State::Listening { .. })
    }

    /// Failed attempts since the last connect.
    pub fn attempts(&self) -> u32 {
        self.backoff.attempts()
    }

    /// What to do at `now`, if anything; each action is handed out once
    /// until its outcome is reported.
    pub fn poll_action(&mut self, now: Instant) -> Option<Action> {
        match &mut self.state {
            State::Connect { at, underway } if !*underway && now >= *at => {
                *underway = true;
                Some(Action::Connect)
            }
            State::Listening {
                quiet_since,
                probing,
            } if !*probing && now >= *quiet_since + self.config.keepalive => {
                *probing = true;
                Some(Action::KeepAlive)
            }
            _ => None,
        }
    }

    /// When [`poll_action`](Self::poll_action) will next have something to
    /// do (`None`: only after an outcome is reported).
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Connect { at, underway } => (!underway).then_some(at),
            State::Listening {
                quiet_since,
                probing,
            } => (!probing).then_some(quiet_since + self.config.keepalive),
        }
    }

    /// Connected and subscribed at `now`. Returns whether the broker must
    /// raise a re-check on every listener: after every reconnect, never
    /// after the first connect (notifications sent while nobody listened
    /// are lost).
    #[must_use]
    pub fn handle_connected(&mut self, now: Instant) -> bool {
        self.backoff.reset();
        self.state = State::Listening {
            quiet_since: now,
            probing: false,
        };
        core::mem::replace(&mut self.connected_before, true)
    }

    /// An attempt failed, the connection was lost or a keep-alive failed at
    /// `now`: the next attempt is after the backoff's next delay (`random`
    /// is any uniformly random `u32`).
    pub fn handle_failed(&mut self, now: Instant, random: u32) {
        self.state = State::Connect {
            at: now + self.backoff.next_delay(random),
            underway: false,
        };
    }

    /// The connection proved alive at `now` (a keep-alive answered).
    pub fn handle_alive(&mut self, now: Instant) {
        if let State::Listening { .. } = self.state {
            self.state = State::Listening {
                quiet_since: now,
                probing: false,
            };
        }
    }

    /// A notification's payload arrived at `now` (which proves the
    /// connection alive): what to notify, or why not.
    pub fn handle_payload(&mut self, now: Instant, text: &str) -> Result<Payload, PayloadError> {
        if let State::Listening {
            quiet_since,
            probing: false,
        } = &mut self.state
        {
            *quiet_since = now;
        }
        Payload::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::Notification;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn first_connect_raises_nothing_every_reconnect_does() {
        let mut s = SourceSession::new(SourceConfig::default());
        let mut now = Instant::from_secs(10);
        assert_eq!(s.poll_action(now), Some(Action::Connect));
        assert_eq!(s.poll_action(now), None, "handed out once");
        assert!(!s.handle_connected(now));
        assert!(s.is_connected());
        for _ in 0..3 {
            now += ms(1);
            s.handle_failed(now, 0);
            assert!(!s.is_connected());
            now = s.poll_timeout().unwrap();
            assert_eq!(s.poll_action(now), Some(Action::Connect));
            assert!(s.handle_connected(now), "a reconnect raises a re-check");
        }
    }

    #[test]
    fn retries_back_off_and_a_connect_resets_the_backoff() {
        let mut s = SourceSession::new(SourceConfig::default());
        let mut now = Instant::ZERO;
        let mut delays = std::vec::Vec::new();
        for _ in 0..10 {
            assert_eq!(s.poll_action(now), Some(Action::Connect));
            s.handle_failed(now, u32::MAX);
            let at = s.poll_timeout().unwrap();
            let before = Instant::from_micros(at.as_micros() - 1);
            assert_eq!(s.poll_action(before), None, "not before the delay");
            delays.push((at - now).as_millis());
            now = at;
        }
        // [c/2, c) with c = 500 ms doubling to 30 s (random = max: just under c)
        assert_eq!(delays[0], 499);
        assert_eq!(delays[1], 999);
        assert_eq!(delays[6], 29_999);
        assert_eq!(delays[9], 29_999);
        assert_eq!(s.attempts(), 10);
        assert_eq!(s.poll_action(now), Some(Action::Connect));
        let _ = s.handle_connected(now);
        assert_eq!(s.attempts(), 0);
        s.handle_failed(now, u32::MAX);
        assert_eq!((s.poll_timeout().unwrap() - now).as_millis(), 499);
    }

    #[test]
    fn a_quiet_connection_is_proved_alive_and_traffic_postpones_it() {
        let mut s = SourceSession::new(SourceConfig::default());
        let t0 = Instant::from_secs(1);
        assert_eq!(s.poll_action(t0), Some(Action::Connect));
        let _ = s.handle_connected(t0);
        assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(30)));
        assert_eq!(s.poll_action(t0 + Duration::from_secs(29)), None);
        // a payload is traffic: the keep-alive moves
        let t1 = t0 + Duration::from_secs(20);
        let p = s.handle_payload(t1, "status").unwrap();
        assert_eq!(p.notification, Notification::status(None));
        assert_eq!(s.poll_action(t0 + Duration::from_secs(30)), None);
        let due = t1 + Duration::from_secs(30);
        assert_eq!(s.poll_timeout(), Some(due));
        assert_eq!(s.poll_action(due), Some(Action::KeepAlive));
        assert_eq!(s.poll_action(due), None, "handed out once");
        assert_eq!(s.poll_timeout(), None, "waiting for the answer");
        s.handle_alive(due + ms(3));
        assert_eq!(
            s.poll_timeout(),
            Some(due + ms(3) + Duration::from_secs(30))
        );
        // a keep-alive that fails: reconnect after a backoff
        let due = s.poll_timeout().unwrap();
        assert_eq!(s.poll_action(due), Some(Action::KeepAlive));
        s.handle_failed(due, 0);
        assert!(!s.is_connected());
        assert_eq!(s.poll_timeout(), Some(due + ms(250)));
    }

    #[test]
    fn a_rejected_payload_is_still_traffic() {
        let mut s = SourceSession::new(SourceConfig::default());
        assert_eq!(s.poll_action(Instant::ZERO), Some(Action::Connect));
        let _ = s.handle_connected(Instant::ZERO);
        let t = Instant::from_secs(25);
        assert_eq!(s.handle_payload(t, "wake"), Err(PayloadError::UnknownKind));
        assert_eq!(s.poll_timeout(), Some(t + Duration::from_secs(30)));
    }
}
