//! The sender's side as a sans-IO state machine: coalescing, sequence
//! numbers, the tail-loss probe and confirmed (acknowledged) sends, for
//! transports without threads (embassy-net, bare smoltcp).
//!
//! * [`Publisher::notify`] records a notification. The first one after a
//!   quiet period starts a *hold-off* (e.g. 5 ms); everything notified
//!   before it ends merges into one datagram per distinct kind and channel,
//!   carrying the summed batch count — a modem reporting 20 SMS at once
//!   becomes one status update with a batch of 20.
//! * [`Publisher::poll_transmit`] emits the next datagram that is due: a
//!   coalesced notification, a tail-loss probe (the last datagram once more,
//!   same sequence number, [`PublisherConfig::probe_delay`] after a burst),
//!   or a retransmission of a confirmed send.
//! * [`Publisher::notify_confirmed`] sends one notification that must be
//!   acknowledged, retransmitting with exponential backoff until an ack
//!   arrives ([`Publisher::handle_datagram`]) or the deadline passes; the
//!   outcome comes out of [`Publisher::poll_event`].
//! * An optional [`Signer`] fills the authentication tag of every datagram.
//!
//! ```
//! use flagpost_core::publish::{Publisher, PublisherConfig};
//! use flagpost_core::wire::{NotifyRepr, SenderId, MAX_DATAGRAM_LEN};
//! use flagpost_core::{ChannelId, Duration, Instant, Notification};
//!
//! let mut p: Publisher<4> = Publisher::new(PublisherConfig::default(), SenderId(7));
//! let gsm1 = ChannelId::new("gsm1").unwrap();
//! let t0 = Instant::ZERO;
//! for _ in 0..20 {
//!     p.notify(t0, Notification::status(Some(gsm1)), 1); // a burst of 20 SMS
//! }
//! let mut buf = [0u8; MAX_DATAGRAM_LEN];
//! assert_eq!(p.poll_transmit(t0, &mut buf), None); // holding off
//! let t1 = p.poll_timeout().unwrap();
//! let n = p.poll_transmit(t1, &mut buf).unwrap();
//! let sent = NotifyRepr::parse_bytes(&buf[..n]).unwrap();
//! assert_eq!((sent.batch, sent.seq.0), (20, 1));
//! ```

use core::fmt;

use crate::channel::ChannelId;
use crate::notify::{Kind, Notification};
use crate::time::{Duration, Instant};
use crate::wire::{AckRepr, AckResult, NotifyRepr, SenderId, Seq, Tag, TAG_LEN};

/// Computes authentication tags (the hardening work supplies a MAC).
pub trait Signer {
    /// The tag for `signed` (every byte of the datagram before the tag).
    fn sign(&self, signed: &[u8]) -> Tag;
}

/// Publisher settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PublisherConfig {
    /// How long notifications gather before they are sent (default 5 ms;
    /// zero sends at the next `poll_transmit`).
    pub hold_off: Duration,
    /// Quiet time after a burst before its last datagram is repeated
    /// (default 5 ms; zero disables the probe).
    pub probe_delay: Duration,
    /// First retransmission timeout of a confirmed send (default 20 ms),
    /// doubling up to `max_rto`.
    pub initial_rto: Duration,
    /// Longest retransmission timeout (default 1 s).
    pub max_rto: Duration,
}

impl PublisherConfig {
    /// The defaults (usable in `const` contexts).
    pub const DEFAULT: PublisherConfig = PublisherConfig {
        hold_off: Duration::from_millis(5),
        probe_delay: Duration::from_millis(5),
        initial_rto: Duration::from_millis(20),
        max_rto: Duration::from_secs(1),
    };
}

impl Default for PublisherConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The outcome of a confirmed send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PublishEvent {
    /// The broker acknowledged it.
    Confirmed {
        /// Its sequence number.
        seq: Seq,
        /// What the broker did with it.
        result: AckResult,
        /// Datagrams sent for it.
        attempts: u32,
    },
    /// No ack arrived before the deadline.
    TimedOut {
        /// Its sequence number.
        seq: Seq,
        /// Datagrams sent for it.
        attempts: u32,
    },
}

/// [`Publisher::notify_confirmed`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ConfirmBusy;

impl fmt::Display for ConfirmBusy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a confirmed send is already in flight")
    }
}

impl core::error::Error for ConfirmBusy {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
struct Pending {
    kind: Kind,
    channel: Option<ChannelId>,
    batch: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
struct Confirm {
    repr: NotifyRepr,
    next_send: Instant,
    rto: Duration,
    deadline: Instant,
    attempts: u32,
}

/// Publisher counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PublishStats {
    /// `notify` calls.
    pub calls: u64,
    /// Datagrams emitted (including probes and retransmissions).
    pub datagrams: u64,
    /// Tail-loss probes emitted.
    pub probes: u64,
    /// Confirmed-send retransmissions.
    pub retransmissions: u64,
    /// Pending entries merged into an untargeted status update because
    /// the table was full.
    pub overflows: u64,
}

/// The sender's state: up to `N` distinct pending notifications.
#[derive(Clone, Debug)]
pub struct Publisher<const N: usize> {
    config: PublisherConfig,
    sender: SenderId,
    next_seq: Seq,
    pending: [Option<Pending>; N],
    send_at: Option<Instant>,
    last: Option<NotifyRepr>,
    probe_at: Option<Instant>,
    confirm: Option<Confirm>,
    event: Option<PublishEvent>,
    stats: PublishStats,
}

impl<const N: usize> Publisher<N> {
    /// A publisher with a sender id (random per boot: seed it from the
    /// board's RNG).
    pub const fn new(config: PublisherConfig, sender: SenderId) -> Self {
        Publisher {
            config,
            sender,
            next_seq: Seq::FIRST,
            pending: [None; N],
            send_at: None,
            last: None,
            probe_at: None,
            confirm: None,
            event: None,
            stats: PublishStats {
                calls: 0,
                datagrams: 0,
                probes: 0,
                retransmissions: 0,
                overflows: 0,
            },
        }
    }

    /// The settings.
    pub fn config(&self) -> &PublisherConfig {
        &self.config
    }

    /// Changes the settings; the sender id, the sequence and whatever is
    /// pending stay.
    pub fn set_config(&mut self, config: PublisherConfig) {
        self.config = config;
    }

    /// The sender id.
    pub fn sender(&self) -> SenderId {
        self.sender
    }

    /// Counters.
    pub fn stats(&self) -> PublishStats {
        self.stats
    }

    /// Records a notification standing for `batch` changes (at least 1).
    pub fn notify(&mut self, now: Instant, notification: Notification, batch: u32) {
        self.stats.calls += 1;
        let batch = batch.max(1);
        let kind = notification.kind();
        let channel = notification.channel().copied();
        let slot = self
            .pending
            .iter_mut()
            .flatten()
            .find(|p| p.kind == kind && p.channel == channel);
        if let Some(p) = slot {
            p.batch = p.batch.saturating_add(batch);
        } else if let Some(free) = self.pending.iter_mut().find(|p| p.is_none()) {
            *free = Some(Pending {
                kind,
                channel,
                batch,
            });
        } else {
            // Full: fold into an untargeted status update (a superset).
            self.stats.overflows += 1;
            self.fold_into_status(batch);
        }
        if self.send_at.is_none() {
            self.send_at = Some(now + self.config.hold_off);
        }
    }

    fn fold_into_status(&mut self, batch: u32) {
        let status = self
            .pending
            .iter_mut()
            .flatten()
            .find(|p| p.kind == Kind::Status && p.channel.is_none());
        match status {
            Some(p) => p.batch = p.batch.saturating_add(batch),
            None => {
                // Replace the last entry with an untargeted status carrying both.
                if let Some(last) = self.pending.iter_mut().rev().flatten().next() {
                    *last = Pending {
                        kind: Kind::Status,
                        channel: None,
                        batch: last.batch.saturating_add(batch),
                    };
                }
            }
        }
    }

    /// Starts a confirmed send: sent at the next `poll_transmit`,
    /// retransmitted until acknowledged or `timeout` passes. One at a time.
    pub fn notify_confirmed(
        &mut self,
        now: Instant,
        notification: Notification,
        batch: u32,
        timeout: Duration,
    ) -> Result<Seq, ConfirmBusy> {
        if self.confirm.is_some() {
            return Err(ConfirmBusy);
        }
        self.stats.calls += 1;
        let repr = NotifyRepr {
            notification,
            sender: self.sender,
            seq: self.take_seq(),
            batch: batch.max(1),
            ack_requested: true,
            tag: None,
        };
        self.confirm = Some(Confirm {
            repr,
            next_send: now,
            rto: self.config.initial_rto,
            deadline: now + timeout,
            attempts: 0,
        });
        Ok(repr.seq)
    }

    fn take_seq(&mut self) -> Seq {
        let seq = self.next_seq;
        self.next_seq = seq.next();
        seq
    }

    /// Feeds a datagram received from the broker (an ack).
    pub fn handle_datagram(&mut self, _now: Instant, bytes: &[u8]) {
        let Ok(ack) = AckRepr::parse_bytes(bytes) else {
            return;
        };
        if let Some(c) = self.confirm {
            if ack.sender == c.repr.sender && ack.seq == c.repr.seq {
                self.confirm = None;
                self.event = Some(PublishEvent::Confirmed {
                    seq: c.repr.seq,
                    result: ack.result,
                    attempts: c.attempts,
                });
            }
        }
    }

    /// Expires a confirmed send whose deadline passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(c) = self.confirm {
            if now >= c.deadline {
                self.confirm = None;
                self.event = Some(PublishEvent::TimedOut {
                    seq: c.repr.seq,
                    attempts: c.attempts,
                });
            }
        }
    }

    /// The outcome of a confirmed send, once.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<PublishEvent> {
        self.event.take()
    }

    /// Writes the next due datagram into `buf` (at least
    /// [`MAX_DATAGRAM_LEN`](crate::wire::MAX_DATAGRAM_LEN) bytes) and returns its length. Call until `None`.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        self.poll_transmit_signed(now, buf, None)
    }

    /// [`poll_transmit`](Self::poll_transmit), tagging every datagram with
    /// `signer`.
    #[must_use]
    pub fn poll_transmit_signed(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        signer: Option<&dyn Signer>,
    ) -> Option<usize> {
        self.handle_timeout(now);
        // a confirmed send or its retransmission
        if let Some(c) = self.confirm.as_mut() {
            if now >= c.next_send {
                if c.attempts > 0 {
                    self.stats.retransmissions += 1;
                }
                c.attempts += 1;
                c.next_send = now + c.rto;
                c.rto = (c.rto + c.rto).min(self.config.max_rto);
                let repr = c.repr;
                return self.emit(&repr, buf, signer);
            }
        }
        // coalesced notifications, once the hold-off is over
        if self.send_at.is_some_and(|at| now >= at) {
            if let Some(p) = self.pending.iter_mut().find_map(Option::take) {
                if let Ok(notification) = Notification::new(p.kind, p.channel) {
                    let repr = NotifyRepr {
                        notification,
                        sender: self.sender,
                        seq: self.take_seq(),
                        batch: p.batch,
                        ack_requested: false,
                        tag: None,
                    };
                    self.last = Some(repr);
                    if !self.config.probe_delay.is_zero() {
                        self.probe_at = Some(now + self.config.probe_delay);
                    }
                    return self.emit(&repr, buf, signer);
                }
            }
            self.send_at = None;
        }
        // the tail-loss probe: the last datagram again, same sequence number
        if self.send_at.is_none() && self.probe_at.is_some_and(|at| now >= at) {
            self.probe_at = None;
            if let Some(repr) = self.last {
                self.stats.probes += 1;
                return self.emit(&repr, buf, signer);
            }
        }
        None
    }

    fn emit(
        &mut self,
        repr: &NotifyRepr,
        buf: &mut [u8],
        signer: Option<&dyn Signer>,
    ) -> Option<usize> {
        let mut repr = *repr;
        if signer.is_some() {
            repr.tag = Some([0; TAG_LEN]);
        }
        let n = repr.emit(buf).ok()?;
        if let Some(signer) = signer {
            let signed_len = n.checked_sub(TAG_LEN)?;
            let tag = signer.sign(buf.get(..signed_len)?);
            buf.get_mut(signed_len..n)?.copy_from_slice(&tag);
        }
        self.stats.datagrams += 1;
        Some(n)
    }

    /// When [`poll_transmit`](Self::poll_transmit) (or `handle_timeout`)
    /// next has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let confirm = self.confirm.map(|c| c.next_send.min(c.deadline));
        [self.send_at, self.probe_at, confirm]
            .into_iter()
            .flatten()
            .min()
    }

    /// Whether nothing is pending (no datagram, probe or confirmation).
    pub fn is_idle(&self) -> bool {
        self.poll_timeout().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::MAX_DATAGRAM_LEN;

    fn ch(s: &str) -> ChannelId {
        ChannelId::new(s).unwrap()
    }

    fn drain(p: &mut Publisher<4>, now: Instant) -> std::vec::Vec<NotifyRepr> {
        let mut out = std::vec::Vec::new();
        let mut buf = [0u8; MAX_DATAGRAM_LEN];
        while let Some(n) = p.poll_transmit(now, &mut buf) {
            out.push(NotifyRepr::parse_bytes(&buf[..n]).unwrap());
        }
        out
    }

    #[test]
    fn a_burst_becomes_one_datagram_per_kind_and_channel() {
        let mut p = Publisher::<4>::new(PublisherConfig::default(), SenderId(1));
        let t0 = Instant::ZERO;
        for _ in 0..20 {
            p.notify(t0, Notification::status(Some(ch("gsm1"))), 1);
        }
        p.notify(t0, Notification::non_status(None), 3);
        assert!(drain(&mut p, t0).is_empty());
        let t1 = Instant::from_millis(5);
        assert_eq!(p.poll_timeout(), Some(t1));
        let sent = drain(&mut p, t1);
        assert_eq!(sent.len(), 2);
        assert_eq!((sent[0].seq, sent[0].batch), (Seq(1), 20));
        assert_eq!((sent[1].seq, sent[1].batch), (Seq(2), 3));
        // then the probe repeats the last one, same sequence number
        let t2 = p.poll_timeout().unwrap();
        assert_eq!(t2, Instant::from_millis(10));
        assert_eq!(drain(&mut p, t2), [sent[1]]);
        assert!(p.is_idle());
        assert_eq!(p.stats().probes, 1);
    }

    #[test]
    fn overflow_folds_into_an_untargeted_status() {
        let mut p = Publisher::<2>::new(PublisherConfig::default(), SenderId(1));
        let t = Instant::ZERO;
        p.notify(t, Notification::channel_update(ch("a")), 1);
        p.notify(t, Notification::channel_update(ch("b")), 1);
        p.notify(t, Notification::channel_update(ch("c")), 1);
        assert_eq!(p.stats().overflows, 1);
        let mut buf = [0u8; MAX_DATAGRAM_LEN];
        let mut kinds = std::vec::Vec::new();
        while let Some(n) = p.poll_transmit(Instant::from_millis(5), &mut buf) {
            kinds.push(NotifyRepr::parse_bytes(&buf[..n]).unwrap().notification);
        }
        assert_eq!(
            kinds,
            [
                Notification::channel_update(ch("a")),
                Notification::status(None)
            ]
        );
    }

    #[test]
    fn confirmed_sends_retransmit_with_backoff_until_acked() {
        let mut p = Publisher::<4>::new(PublisherConfig::default(), SenderId(9));
        let t0 = Instant::ZERO;
        let seq = p
            .notify_confirmed(t0, Notification::status(None), 1, Duration::from_secs(1))
            .unwrap();
        assert_eq!(
            p.notify_confirmed(t0, Notification::status(None), 1, Duration::from_secs(1)),
            Err(ConfirmBusy)
        );
        let mut buf = [0u8; MAX_DATAGRAM_LEN];
        let n = p.poll_transmit(t0, &mut buf).unwrap();
        let sent = NotifyRepr::parse_bytes(&buf[..n]).unwrap();
        assert!(sent.ack_requested);
        assert_eq!(p.poll_timeout(), Some(Instant::from_millis(20)));
        assert!(p
            .poll_transmit(Instant::from_millis(20), &mut buf)
            .is_some());
        assert_eq!(p.poll_timeout(), Some(Instant::from_millis(60)));
        // an ack for something else is ignored; the right one confirms
        let mut ack = [0u8; MAX_DATAGRAM_LEN];
        let other = AckRepr::answering(
            &NotifyRepr {
                seq: Seq(77),
                ..sent
            },
            AckResult::Delivered,
        );
        let len = other.emit(&mut ack).unwrap();
        p.handle_datagram(Instant::from_millis(30), &ack[..len]);
        assert_eq!(p.poll_event(), None);
        let len = AckRepr::answering(&sent, AckResult::Delivered)
            .emit(&mut ack)
            .unwrap();
        p.handle_datagram(Instant::from_millis(30), &ack[..len]);
        assert_eq!(
            p.poll_event(),
            Some(PublishEvent::Confirmed {
                seq,
                result: AckResult::Delivered,
                attempts: 2
            })
        );
        assert!(p.is_idle());
    }

    #[test]
    fn confirmed_sends_time_out() {
        let mut p = Publisher::<4>::new(PublisherConfig::default(), SenderId(9));
        let seq = p
            .notify_confirmed(
                Instant::ZERO,
                Notification::status(None),
                1,
                Duration::from_millis(100),
            )
            .unwrap();
        let mut buf = [0u8; MAX_DATAGRAM_LEN];
        let mut sends = 0;
        while let Some(at) = p.poll_timeout() {
            if p.poll_transmit(at, &mut buf).is_some() {
                sends += 1;
            }
            if let Some(ev) = p.poll_event() {
                assert_eq!(
                    ev,
                    PublishEvent::TimedOut {
                        seq,
                        attempts: sends
                    }
                );
                assert!(at >= Instant::from_millis(100));
                assert_eq!(sends, 3); // at 0, 20 and 60 ms
                return;
            }
        }
        panic!("never timed out");
    }

    struct Xor;
    impl Signer for Xor {
        fn sign(&self, signed: &[u8]) -> Tag {
            let mut tag = [0u8; TAG_LEN];
            for (i, b) in signed.iter().enumerate() {
                tag[i % TAG_LEN] ^= *b;
            }
            tag
        }
    }

    #[test]
    fn a_signer_fills_the_tag() {
        let mut p = Publisher::<4>::new(
            PublisherConfig {
                hold_off: Duration::ZERO,
                ..PublisherConfig::default()
            },
            SenderId(3),
        );
        p.notify(Instant::ZERO, Notification::status(None), 1);
        let mut buf = [0u8; MAX_DATAGRAM_LEN];
        let n = p
            .poll_transmit_signed(Instant::ZERO, &mut buf, Some(&Xor))
            .unwrap();
        let repr = NotifyRepr::parse_bytes(&buf[..n]).unwrap();
        assert_eq!(repr.tag, Some(Xor.sign(&buf[..n - TAG_LEN])));
    }
}
