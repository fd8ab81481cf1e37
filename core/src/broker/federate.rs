//! Federation, the broker's side: which notifications it publishes to the
//! other brokers, and what it does with theirs. The transport carries the
//! messages (NATS in `flagpost-std`); the decisions are here.
//!
//! A broker publishes what it delivered itself — datagrams, verbatim, and
//! in-process notifications as datagrams of its own sender id — stamped
//! with its [`Config::broker_id`](super::Config::broker_id) as the origin.
//! A federated notification goes through the same checks as a datagram:
//! its tag (with a key), then its sender's sequence window in the same
//! table, so a sender firing at two brokers is delivered once and a gap
//! anywhere upstream is a possible loss. It is never published again, and
//! one carrying this broker's own id is dropped: no loops. Whatever the
//! federation may have lost (an outage, a full queue, another broker's
//! drops) raises a re-check, folded like any possible loss.

use core::fmt;

use super::{bump, BrokerState, Slots};
use crate::auth;
use crate::loss::SenderSlot;
use crate::notify::Notification;
use crate::time::Instant;
use crate::wire::federation::{
    emit_notify, recheck_header, Federated, FederatedRepr, RECHECK_CONTEXT,
};
use crate::wire::{BufferTooSmall, Error as WireError, NotifyRepr, SenderId};
use crate::wire::{MAX_DATAGRAM_LEN, TAG_LEN};

/// Why [`BrokerState::handle_federated`] dropped a message (counted either
/// way; nothing else changed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FederationError {
    /// The bytes are not a valid federation message.
    Malformed(WireError),
    /// A key is set and the message carries no tag, or one no accepted key
    /// made.
    Unauthorized,
    /// The message names this broker as its origin.
    Loop,
}

impl FederationError {
    /// Number of variants, for per-reason counters.
    pub const COUNT: usize = 3;
    /// Stable labels, indexed by [`index`](Self::index).
    pub const LABELS: [&'static str; Self::COUNT] = ["malformed", "unauthorized", "loop"];

    /// A dense index in `0..COUNT`.
    pub const fn index(self) -> usize {
        match self {
            FederationError::Malformed(_) => 0,
            FederationError::Unauthorized => 1,
            FederationError::Loop => 2,
        }
    }
}

impl fmt::Display for FederationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FederationError::Malformed(e) => write!(f, "malformed federation message: {e}"),
            FederationError::Unauthorized => {
                f.write_str("federation message not signed with the broker's key")
            }
            FederationError::Loop => f.write_str("federation message from this broker itself"),
        }
    }
}

impl core::error::Error for FederationError {}

impl<L, S> BrokerState<L, S>
where
    L: AsRef<Slots> + AsMut<Slots>,
    S: AsRef<[SenderSlot]> + AsMut<[SenderSlot]>,
{
    /// The federation message for a datagram this broker accepted
    /// (`datagram`: its bytes as received; publish it when
    /// [`Received::federate`](super::Received::federate) says so).
    pub fn federate(&self, datagram: &[u8], buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        emit_notify(self.config.broker_id, datagram, buf)
    }

    /// An in-process notification (delivered with [`notify`](Self::notify))
    /// as a federation message: a datagram from this broker's own sender id
    /// (its broker id) with the next of its sequence numbers, tagged with
    /// the current key when there is one.
    pub fn federate_local(
        &mut self,
        notification: &Notification,
        batch: u32,
        buf: &mut [u8],
    ) -> Result<usize, BufferTooSmall> {
        let notify = NotifyRepr {
            notification: *notification,
            sender: SenderId(self.config.broker_id),
            seq: self.federation_seq,
            batch: batch.max(1),
            ack_requested: false,
            probe: false,
            tag: self.keys.as_ref().map(|_| [0; TAG_LEN]),
        };
        let mut datagram = [0u8; MAX_DATAGRAM_LEN];
        let len = notify.emit(&mut datagram)?;
        if let Some(keys) = &self.keys {
            let (signed, tag) = datagram.split_at_mut(len - TAG_LEN);
            let mac = keys.key(auth::KeyUsed::Current).tag(&[signed]);
            tag.iter_mut().zip(mac).for_each(|(t, m)| *t = m);
        }
        let n = emit_notify(
            self.config.broker_id,
            datagram.get(..len).unwrap_or(&[]),
            buf,
        )?;
        self.federation_seq = self.federation_seq.next();
        Ok(n)
    }

    /// The message asking the other brokers to raise a re-check (this
    /// broker may have failed to publish notifications), tagged with the
    /// current key when there is one.
    pub fn recheck_message(&self, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let origin = self.config.broker_id;
        let tag = self.keys.as_ref().map(|keys| {
            let header = recheck_header(origin, true);
            keys.key(auth::KeyUsed::Current)
                .tag(&[RECHECK_CONTEXT, &header])
        });
        FederatedRepr {
            origin,
            message: Federated::Recheck { tag },
        }
        .emit(buf)
    }

    /// Feeds one message received from the federation at `now`.
    ///
    /// A notification is checked like a datagram — its tag with a key, its
    /// sender's sequence in the same table — and routed unless duplicate or
    /// stale (never acked, never published again); a re-check request (with
    /// a key, a tagged one) raises a re-check as
    /// [`federation_lost`](Self::federation_lost) does. Returns how many
    /// listeners were reached; anything else is counted by reason and
    /// returned as the error.
    pub fn handle_federated(&mut self, now: Instant, bytes: &[u8]) -> Result<u32, FederationError> {
        let result = self.accept_federated(now, bytes);
        if let Err(e) = result {
            bump(&mut self.stats.federated_rejects, e.index());
        }
        result
    }

    fn accept_federated(&mut self, now: Instant, bytes: &[u8]) -> Result<u32, FederationError> {
        let repr = FederatedRepr::parse(bytes).map_err(FederationError::Malformed)?;
        if repr.origin == self.config.broker_id {
            return Err(FederationError::Loop);
        }
        match repr.message {
            Federated::Notify { datagram, notify } => {
                if let Some(keys) = &self.keys {
                    if notify
                        .tag
                        .and_then(|_| auth::verify_datagram(keys, datagram))
                        .is_none()
                    {
                        return Err(FederationError::Unauthorized);
                    }
                }
                self.stats.federated += 1;
                Ok(self.judge_and_route(now, &notify).1)
            }
            Federated::Recheck { tag } => {
                if let Some(keys) = &self.keys {
                    let header = recheck_header(repr.origin, true);
                    let ok =
                        tag.is_some_and(|t| keys.verify(&[RECHECK_CONTEXT, &header], &t).is_some());
                    if !ok {
                        return Err(FederationError::Unauthorized);
                    }
                }
                self.stats.federated += 1;
                Ok(self.federation_lost(now))
            }
        }
    }

    /// The federation may have lost messages at `now` (its link came back
    /// after an outage, a queue was full, another broker asked): raise a
    /// re-check — status, non-status, channel update — on every listener,
    /// folded with other possible losses within
    /// [`Config::loss_interval`](super::Config::loss_interval). Returns how
    /// many listeners were raised at once (0 when folded).
    pub fn federation_lost(&mut self, now: Instant) -> u32 {
        self.stats.federation_rechecks += 1;
        let before = self.stats.raises;
        self.raise_possible_loss(now);
        u32::try_from(self.stats.raises - before).unwrap_or(u32::MAX)
    }
}
