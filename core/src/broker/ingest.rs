//! The broker's datagram path: parse, authenticate (when a key is set),
//! judge the sequence number, raise a possible loss (at most once per
//! [`Config::loss_interval`](super::Config::loss_interval)), route, and
//! answer with an ack.
//!
//! The order is the defence: nothing an unauthenticated datagram says
//! reaches the sender table, the routing or an ack while a key is set.

use core::fmt;

use super::route::Broadcast;
use super::{bump, BrokerState, Slots};
use crate::auth::{self, KeyUsed, Keyring};
use crate::loss::{SenderSlot, Verdict};
use crate::time::Instant;
use crate::wire::datagram::ACK_HEADER_LEN;
use crate::wire::{AckRepr, AckResult, Error as WireError, NotifyRepr, TAG_LEN};

/// What [`BrokerState::handle_datagram`] did with a valid notification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Received {
    /// The parsed notification.
    pub notify: NotifyRepr,
    /// What its sequence number said.
    pub verdict: Verdict,
    /// How many listeners had flags raised by it.
    pub reached: u32,
    /// The ack to send back to the datagram's source, when one was asked for.
    pub ack: Option<AckRepr>,
    /// Which key verified the datagram (`None`: the broker has no key).
    pub key: Option<KeyUsed>,
}

/// Why [`BrokerState::handle_datagram`] dropped a datagram (counted either
/// way; nothing else changed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DatagramError {
    /// The bytes are not a valid notify.
    Malformed(WireError),
    /// A key is set and the datagram carries no tag, or one no accepted key
    /// made.
    Unauthorized,
}

impl Received {
    /// Whether the broker publishes this datagram to its federation: it was
    /// delivered here (not a duplicate or stale), so the other brokers'
    /// listeners should hear of it too; or it is a tail-loss probe whose
    /// original arrived here, so that a broker whose copy of the original
    /// was lost on the way gets it from the probe (elsewhere it is a
    /// duplicate, as here).
    pub fn federate(&self) -> bool {
        self.verdict.deliver() || (self.notify.probe && self.verdict == Verdict::Duplicate)
    }
}

impl fmt::Display for DatagramError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatagramError::Malformed(e) => write!(f, "malformed datagram: {e}"),
            DatagramError::Unauthorized => f.write_str("datagram not signed with the broker's key"),
        }
    }
}

impl core::error::Error for DatagramError {}

impl From<WireError> for DatagramError {
    fn from(e: WireError) -> Self {
        DatagramError::Malformed(e)
    }
}

impl<L, S> BrokerState<L, S>
where
    L: AsRef<Slots> + AsMut<Slots>,
    S: AsRef<[SenderSlot]> + AsMut<[SenderSlot]>,
{
    /// Sets the keys datagrams and listeners must be signed with (`None`:
    /// none, the default). Takes effect for the next datagram and hello, so
    /// a key rotation needs no restart.
    ///
    /// With a key, a sender's window is never rewound after a far jump
    /// (`loss::SenderTable::set_rewind`): its numbers cannot be forged, and
    /// a replayed datagram must stay stale.
    pub fn set_keys(&mut self, keys: Option<Keyring>) {
        self.senders.set_rewind(keys.is_none());
        self.keys = keys;
    }

    /// The keys in force.
    pub fn keys(&self) -> Option<&Keyring> {
        self.keys.as_ref()
    }

    /// Feeds one UDP datagram received at `now`.
    ///
    /// A valid notification (with a key set: one tagged with an accepted
    /// key) is checked against its sender's sequence, routed to the
    /// listeners it reaches (unless duplicate or stale), and answered with
    /// an ack when asked (tagged with the key that verified it). A possible
    /// loss raises [`LOSS_FLAGS`](super::LOSS_FLAGS) for every listener, at
    /// once or, within [`Config::loss_interval`](super::Config::loss_interval)
    /// of the previous such raise, at that interval's end.
    /// Anything else is counted by reason and returned as the error; nothing
    /// else changes.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        bytes: &[u8],
    ) -> Result<Received, DatagramError> {
        let notify = match NotifyRepr::parse_bytes(bytes) {
            Ok(n) => n,
            Err(e) => {
                bump(&mut self.stats.datagram_rejects, e.index());
                return Err(e.into());
            }
        };
        let key = match &self.keys {
            None => None,
            Some(keys) => match notify.tag.and_then(|_| auth::verify_datagram(keys, bytes)) {
                Some(used) => Some(used),
                None => {
                    self.stats.datagrams_unauthorized += 1;
                    return Err(DatagramError::Unauthorized);
                }
            },
        };
        self.stats.datagrams += 1;
        let kind = notify.notification.kind();
        bump(
            &mut self.stats.datagrams_by_kind,
            usize::from(kind.code()) - 1,
        );
        let (verdict, reached) = self.judge_and_route(now, &notify);
        let ack = notify.ack_requested.then(|| {
            self.stats.acks += 1;
            let result = match verdict {
                Verdict::Duplicate => AckResult::Duplicate,
                Verdict::Stale => AckResult::Stale,
                _ => AckResult::Delivered,
            };
            let mut ack = AckRepr::answering(&notify, result);
            if let (Some(keys), Some(used)) = (&self.keys, key) {
                ack.tag = Some(sign_ack(keys, used, &ack));
            }
            ack
        });
        Ok(Received {
            notify,
            verdict,
            reached,
            ack,
            key,
        })
    }

    /// Checks an authenticated notification's sequence number against its
    /// sender's window, counts the verdict, raises a possible loss and
    /// routes it unless it is a duplicate or stale: the part of
    /// [`handle_datagram`](Self::handle_datagram) that federated
    /// notifications share. Returns the verdict and how many listeners it
    /// reached.
    pub(super) fn judge_and_route(&mut self, now: Instant, notify: &NotifyRepr) -> (Verdict, u32) {
        let verdict = self.senders.observe(notify.sender, notify.seq);
        match verdict {
            Verdict::InOrder => {}
            Verdict::Gap { missing } => {
                self.stats.gaps += 1;
                self.stats.missing += u64::from(missing);
            }
            Verdict::FirstSeenLate => self.stats.first_seen_late += 1,
            Verdict::Restart => self.stats.restarts += 1,
            Verdict::Reordered => self.stats.reordered += 1,
            Verdict::Duplicate if notify.probe => {}
            Verdict::Duplicate => self.stats.duplicates += 1,
            Verdict::Rewound => self.stats.senders_rewound += 1,
            Verdict::Stale => self.stats.stale += 1,
        }
        if notify.probe {
            self.stats.probes += 1;
            if verdict.deliver() {
                self.stats.probes_delivered += 1;
            }
        }
        if verdict.possible_loss() {
            self.raise_possible_loss(now);
        }
        let reached = if verdict.deliver() {
            self.notify(now, &notify.notification, notify.batch)
        } else {
            0
        };
        (verdict, reached)
    }

    /// The kernel reported `count` datagrams dropped before they reached the
    /// broker: treated as a sequence gap (one possible loss, folded like any
    /// other within [`Config::loss_interval`](super::Config::loss_interval)).
    pub fn handle_lost(&mut self, now: Instant, count: u64) {
        if count > 0 {
            self.stats.kernel_drops += count;
            self.raise_possible_loss(now);
        }
    }

    /// A possible loss was detected at `now`: raise everyone at once, unless
    /// a raise was made less than [`Config::loss_interval`](super::Config::loss_interval)
    /// ago; then fold it into one raise at the end of that interval
    /// ([`raise_deferred_loss`](Self::raise_deferred_loss)).
    pub(super) fn raise_possible_loss(&mut self, now: Instant) {
        if self.loss_quiet_until.is_some_and(|until| now < until) {
            self.loss_pending = true;
            self.stats.possible_losses_coalesced += 1;
        } else {
            self.raise_loss_now(now);
        }
    }

    /// Makes the raise that possible losses folded since the last one are
    /// waiting for, if its interval has ended by `now`.
    pub(super) fn raise_deferred_loss(&mut self, now: Instant) {
        if self.loss_pending && self.loss_quiet_until.is_none_or(|until| now >= until) {
            self.raise_loss_now(now);
        }
    }

    /// When the folded possible losses are to be raised, if any are.
    pub(super) fn loss_deadline(&self) -> Option<Instant> {
        self.loss_quiet_until.filter(|_| self.loss_pending)
    }

    /// Raises [`LOSS_FLAGS`](super::LOSS_FLAGS) on everyone now (whatever
    /// was folded goes with it) and starts a new interval.
    fn raise_loss_now(&mut self, now: Instant) {
        let interval = self.config.loss_interval;
        self.loss_pending = false;
        self.loss_quiet_until = (!interval.is_zero()).then(|| now + interval);
        self.stats.possible_losses += 1;
        self.broadcast(now, Broadcast::Loss);
    }
}

/// The tag of an ack: over its first 20 bytes, with the key that verified
/// the notify it answers.
fn sign_ack(keys: &Keyring, used: KeyUsed, ack: &AckRepr) -> [u8; TAG_LEN] {
    let mut buf = [0u8; ACK_HEADER_LEN + TAG_LEN];
    let unsigned = AckRepr {
        tag: Some([0; TAG_LEN]),
        ..*ack
    };
    match unsigned.emit(&mut buf) {
        Ok(_) => keys.key(used).tag(&[&buf[..ACK_HEADER_LEN]]),
        Err(_) => [0; TAG_LEN],
    }
}
