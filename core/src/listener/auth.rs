//! Listener authentication on the listener's side (`PROTOCOL.md`, *Listener
//! authentication*), shared by [`ListenerSession`](super::ListenerSession)
//! and [`StatsClient`](super::StatsClient): with a key, the first frame is
//! sent in version 2, the challenge is answered with a proof, and nothing
//! from the broker is taken before an accept whose tag checks out. Every
//! way this fails has an [`AuthError`] saying whose key is missing or wrong.

use core::fmt;

use super::SessionError;
use crate::auth::{Key, NonceSource, Transcript};
use crate::wire::{
    CloseReason, CloseRepr, FrameRepr, Framed, Nonce, ProofRepr, AUTH_VERSION, MAX_FRAME_LEN,
    VERSION,
};

/// Why a listener (or stats client) and a broker could not authenticate
/// each other. The connection is dropped; nothing from it was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum AuthError {
    /// This end has no key and the broker requires one (it closed the
    /// version-1 hello with reason *unauthorized*).
    KeyRequired,
    /// This end has a key and the broker has none (it closed the version-2
    /// hello with reason *unauthorized*).
    BrokerHasNoKey,
    /// This end has a key and the broker speaks version 1 only: it cannot
    /// authenticate listeners.
    BrokerTooOld,
    /// The broker refused the proof: its key is not this end's.
    Refused,
    /// The broker did not prove it holds the key (a welcome or other frame
    /// where the accept belonged, or an accept with a wrong tag): a broker
    /// with another key, or not the broker at all.
    BrokerNotAuthenticated,
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthError::KeyRequired => {
                "refused: unauthorized (the broker has a key; this end has none)"
            }
            AuthError::BrokerHasNoKey => "the broker has no key: it cannot authenticate listeners",
            AuthError::BrokerTooOld => {
                "the broker speaks protocol version 1 only: it cannot authenticate listeners"
            }
            AuthError::Refused => "refused: unauthorized (the broker's key is not this one)",
            AuthError::BrokerNotAuthenticated => {
                "the broker did not prove it holds the key (another key, or not the broker)"
            }
        })
    }
}

impl core::error::Error for AuthError {}

/// Where one connection's handshake is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
enum Phase {
    /// Not connected.
    Idle,
    /// The first frame is out: awaiting the challenge (with a key) or the
    /// welcome or stats (without).
    Sent,
    /// The proof is out: awaiting the accept.
    Proved { broker: Nonce, listener: Nonce },
    /// Authenticated (with a key) or served (without).
    Done,
}

/// What [`Handshake::handle`] made of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// A challenge: send this proof.
    Proof(ProofRepr),
    /// A valid accept: the broker is authenticated.
    Accepted,
    /// Not the handshake's: the caller's to handle (in the session's
    /// version).
    Pass(FrameRepr),
}

/// One end's side of the handshake, across connections.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub(crate) struct Handshake {
    key: Option<(Key, NonceSource)>,
    phase: Phase,
}

impl Handshake {
    /// Without a key: version 1, nothing to prove.
    pub(crate) const KEYLESS: Handshake = Handshake {
        key: None,
        phase: Phase::Idle,
    };

    /// With `key`, nonces seeded with `seed` (16 random bytes per run).
    pub(crate) fn keyed(key: Key, seed: [u8; 16]) -> Self {
        Handshake {
            key: Some((key, NonceSource::listener(seed))),
            phase: Phase::Idle,
        }
    }

    /// Whether this end has a key.
    pub(crate) fn has_key(&self) -> bool {
        self.key.is_some()
    }

    /// The version this end's frames carry.
    pub(crate) fn version(&self) -> u8 {
        if self.has_key() {
            AUTH_VERSION
        } else {
            VERSION
        }
    }

    /// A new connection: the first frame is about to be sent.
    pub(crate) fn start(&mut self) {
        self.phase = Phase::Sent;
    }

    /// The session is established (the welcome, or the first stat, came).
    pub(crate) fn established(&mut self) {
        self.phase = Phase::Done;
    }

    /// Whether the broker may serve now: authenticated with a key, or
    /// anything without one.
    pub(crate) fn may_serve(&self) -> bool {
        self.key.is_none() || self.phase == Phase::Done
    }

    /// A frame from the broker while `first` (the hello or stats request)
    /// is this connection's first frame: the handshake's own, or passed
    /// on; a close, a frame of another version or one out of turn is an
    /// error.
    pub(crate) fn handle(
        &mut self,
        first: &FrameRepr,
        frame: Framed,
    ) -> Result<Step, SessionError> {
        if let FrameRepr::Close(close) = frame.frame {
            return Err(self.close_error(close));
        }
        let Some((key, nonces)) = &mut self.key else {
            return match frame.version {
                VERSION => Ok(Step::Pass(frame.frame)),
                _ => Err(SessionError::Unexpected(frame.frame.frame_type())),
            };
        };
        match (self.phase, frame.frame) {
            (Phase::Done, other) if frame.version == AUTH_VERSION => Ok(Step::Pass(other)),
            (Phase::Done, other) => Err(SessionError::Unexpected(other.frame_type())),
            (Phase::Sent, FrameRepr::Challenge(broker)) if frame.version == AUTH_VERSION => {
                let listener = nonces.next(key);
                let tag = Owned::of(first).with(&broker, &listener).proof(key);
                self.phase = Phase::Proved { broker, listener };
                Ok(Step::Proof(ProofRepr {
                    nonce: listener,
                    tag,
                }))
            }
            (Phase::Proved { broker, listener }, FrameRepr::Accept(tag))
                if frame.version == AUTH_VERSION
                    && Owned::of(first)
                        .with(&broker, &listener)
                        .verify_accept(key, &tag) =>
            {
                self.phase = Phase::Done;
                Ok(Step::Accepted)
            }
            // a welcome where the challenge or the accept belonged, an
            // accept with a wrong tag, a second challenge …
            _ => Err(SessionError::Auth(AuthError::BrokerNotAuthenticated)),
        }
    }

    /// What a close from the broker means at this point of the handshake.
    fn close_error(&self, close: CloseRepr) -> SessionError {
        let keyed = self.has_key();
        match (keyed, self.phase, close.reason) {
            (false, Phase::Sent, CloseReason::Unauthorized) => {
                SessionError::Auth(AuthError::KeyRequired)
            }
            (true, Phase::Sent, CloseReason::Unauthorized) => {
                SessionError::Auth(AuthError::BrokerHasNoKey)
            }
            (true, Phase::Sent, CloseReason::UnsupportedVersion)
                if close.version < AUTH_VERSION =>
            {
                SessionError::Auth(AuthError::BrokerTooOld)
            }
            (true, Phase::Proved { .. }, CloseReason::Unauthorized) => {
                SessionError::Auth(AuthError::Refused)
            }
            (_, _, reason) => SessionError::Closed(reason),
        }
    }
}

/// The transcript of `first` (emitted in version 2) and the two nonces,
/// with the buffer its bytes live in.
struct Owned {
    bytes: [u8; MAX_FRAME_LEN],
    len: usize,
}

impl Owned {
    fn of(first: &FrameRepr) -> Self {
        let mut bytes = [0u8; MAX_FRAME_LEN];
        let len = Framed::new(AUTH_VERSION, *first)
            .emit(&mut bytes)
            .unwrap_or(0);
        Owned { bytes, len }
    }

    fn with<'a>(&'a self, broker: &'a Nonce, listener: &'a Nonce) -> Transcript<'a> {
        Transcript {
            first: self.bytes.get(..self.len).unwrap_or(&[]),
            broker_nonce: broker,
            listener_nonce: listener,
        }
    }
}
