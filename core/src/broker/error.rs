//! Why the broker refused a connection ([`OpenError`]) or a frame
//! ([`FrameError`]).

use core::fmt;

#[cfg(doc)]
use super::{BrokerState, Event, Stats};
#[cfg(doc)]
use crate::wire::CloseReason;
use crate::wire::Error as WireError;

/// Why [`BrokerState::open`] refused a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum OpenError {
    /// Every listener slot is taken, and no connection can be evicted to
    /// make room (see [`BrokerState::open`]): send a close with
    /// [`CloseReason::TooManyListeners`] and drop the connection.
    Full,
    /// The broker is shutting down.
    ShuttingDown,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OpenError::Full => "listener table is full",
            OpenError::ShuttingDown => "broker is shutting down",
        })
    }
}

impl core::error::Error for OpenError {}

/// Why [`BrokerState::handle_frame`] rejected a frame. Except for
/// `UnknownListener`, the listener is being closed (see [`Event::Closed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum FrameError {
    /// The handle does not name a live connection.
    UnknownListener,
    /// The frame is malformed.
    Wire(WireError),
    /// A well-formed frame that is not valid in the connection's state
    /// (type code given), such as a second hello, a welcome, or a frame in
    /// another version than the session's.
    Unexpected(u8),
    /// The handshake failed: a hello or stats request in a version the
    /// broker's key rules out, or a wrong proof (counted in
    /// [`Stats::listeners_unauthorized`]).
    Unauthorized,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::UnknownListener => f.write_str("no such listener connection"),
            FrameError::Wire(e) => write!(f, "malformed frame: {e}"),
            FrameError::Unexpected(t) => write!(f, "unexpected frame type {t:#04x} in this state"),
            FrameError::Unauthorized => f.write_str("listener not authenticated"),
        }
    }
}

impl core::error::Error for FrameError {}

impl From<WireError> for FrameError {
    fn from(e: WireError) -> Self {
        FrameError::Wire(e)
    }
}
