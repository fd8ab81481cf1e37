//! What happens to a TCP listener's connection, as events a user interface
//! can report (`flagpost listen` prints each on stderr): connecting,
//! connected, listening, and why an attempt or a connection ended, typed so
//! that a refusal by the broker, a peer that is not a broker and an
//! unreachable address are told apart.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;

use flagpost_core::listener::{AuthError, SessionError};
use flagpost_core::wire::CloseReason;

/// Events kept for [`Listener::take_link_events`](super::Listener::take_link_events)
/// before the oldest are dropped.
const KEPT: usize = 64;

/// One step in the life of a TCP listener's connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// A TCP connection attempt to this broker starts.
    Connecting(SocketAddr),
    /// The TCP connection is up; the hello is sent, the welcome awaited.
    Connected,
    /// The welcome arrived: listening.
    Listening,
    /// The attempt or the connection ended; the listener backs off and
    /// retries.
    Lost(LinkError),
}

/// Why a connection attempt or a connection ended.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The TCP connection could not be made (refused: nothing listens;
    /// unreachable; timed out).
    #[error("cannot connect: {message}")]
    Connect {
        /// The error's kind (`ConnectionRefused`, `TimedOut`, …).
        kind: io::ErrorKind,
        /// The system's message.
        message: String,
    },
    /// The broker closed the connection before its welcome, with this
    /// reason: a limit (too many listeners, too many from this address) or
    /// an access rule.
    #[error("refused: {0}")]
    Refused(CloseReason),
    /// The broker closed a listening connection with this reason.
    #[error("closed by the broker: {0}")]
    Closed(CloseReason),
    /// The peer answered with bytes that are not the protocol's, or stayed
    /// silent past the welcome timeout: not a Flagpost broker.
    #[error("not a Flagpost broker ({0})")]
    NotABroker(String),
    /// The listener and the broker could not authenticate each other.
    #[error("{0}")]
    Auth(AuthError),
    /// The broker went silent past the keep-alive timeout.
    #[error("the broker went silent past the keep-alive timeout")]
    Silent,
    /// The connection broke (end of stream, reset).
    #[error("the connection was lost")]
    Lost,
}

impl LinkError {
    /// The error a session reported, on a connection that was (`welcomed`)
    /// or was not yet welcomed.
    pub(super) fn from_session(error: SessionError, welcomed: bool) -> LinkError {
        match error {
            SessionError::Closed(reason) if welcomed => LinkError::Closed(reason),
            SessionError::Closed(reason) => LinkError::Refused(reason),
            SessionError::Auth(e) => LinkError::Auth(e),
            SessionError::Timeout if welcomed => LinkError::Silent,
            SessionError::Timeout => {
                LinkError::NotABroker("no welcome within the timeout".to_owned())
            }
            SessionError::Malformed(e) if !welcomed => {
                LinkError::NotABroker(format!("it sent bytes that are not a frame: {e}"))
            }
            SessionError::Unexpected(t) if !welcomed => {
                LinkError::NotABroker(format!("it sent frame type {t:#04x} before a welcome"))
            }
            other => LinkError::NotABroker(other.to_string()),
        }
    }
}

/// The bounded queue of events, kept in the listener's control block.
#[derive(Debug, Default)]
pub(super) struct Events(VecDeque<LinkEvent>);

impl Events {
    pub(super) fn push(&mut self, event: LinkEvent) {
        if self.0.len() == KEPT {
            self.0.pop_front();
        }
        self.0.push_back(event);
    }

    pub(super) fn take(&mut self) -> Vec<LinkEvent> {
        self.0.drain(..).collect()
    }
}
