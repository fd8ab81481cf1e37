//! The sender's side as a sans-IO state machine: coalescing, pacing,
//! sequence numbers, the tail-loss probe and confirmed (acknowledged)
//! sends. Every transport's notifier runs this one policy: the gateway
//! board's notifier over embassy-net or bare smoltcp, and the std
//! `Notifier`, which only adds a lock-free front for its callers.
//!
//! * [`NotifierSession::notify`] records a notification. Notifications wait in a
//!   table of pending ones, one entry per distinct kind and channel, whose
//!   batch counts add up: a modem reporting 20 SMS at once becomes one
//!   status update with a batch of 20. When the table is full, what does not
//!   fit folds into an untargeted status update (a superset: nothing is
//!   lost, some listeners poll needlessly).
//! * [`NotifierSession::poll_transmit`] emits the next datagram that is due. The
//!   pending entries go out together, as a *round*: after a *hold-off* (a
//!   board gathers a modem's burst for 5 ms), and, within a burst, at most
//!   one round per *pace* ([`NotifierConfig::pace`]). Each pace that runs
//!   its full length while calls keep coming doubles the next, up to
//!   [`NotifierConfig::max_pace`]; a burst whose calls stop for
//!   [`NotifierConfig::quiet`] sends its last ones at once (at most every
//!   other round). A notification that comes after a full pace of quiet
//!   starts a new burst and goes at once.
//! * After a burst, the last datagram is sent once more, same sequence
//!   number, [`NotifierConfig::probe_delay`] later (the tail-loss probe,
//!   marked with the *probe* flag): a duplicate if the first arrived, the
//!   delivery if it was lost.
//! * [`NotifierSession::notify_confirmed`] sends one notification that must be
//!   acknowledged, retransmitting with exponential backoff until an ack
//!   arrives ([`NotifierSession::handle_datagram`]) or the deadline passes; the
//!   outcome comes out of [`NotifierSession::poll_event`]. A transport that
//!   receives acks on a socket of its own drives confirmed sends with
//!   [`NotifierSession::poll_confirm`] and the rest with
//!   [`NotifierSession::poll_notifications`].
//! * An optional [`Signer`] fills the authentication tag of every datagram.
//!
//! ```
//! use flagpost_core::notifier::{NotifierSession, NotifierConfig};
//! use flagpost_core::wire::{NotifyRepr, SenderId, MAX_DATAGRAM_LEN};
//! use flagpost_core::{ChannelId, Duration, Instant, Notification};
//!
//! let mut p: NotifierSession<4> = NotifierSession::new(NotifierConfig::default(), SenderId(7));
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
use crate::wire::datagram::ACK_HEADER_LEN;
use crate::wire::{AckRepr, AckResult, NotifyRepr, SenderId, Seq, Tag, TAG_LEN};

/// Computes authentication tags (the hardening work supplies a MAC).
pub trait Signer {
    /// The tag for `signed` (every byte of the datagram before the tag).
    fn sign(&self, signed: &[u8]) -> Tag;
}

/// Whether two tags are equal, in time independent of where they differ.
fn tags_equal(a: &Tag, b: &Tag) -> bool {
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// NotifierSession settings: the sending policy, in one place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct NotifierConfig {
    /// How long notifications gather before their round is sent (default
    /// 5 ms; zero sends at the next `poll_transmit`).
    pub hold_off: Duration,
    /// Quiet time after a burst before its last datagram is repeated
    /// (default 5 ms; zero disables the probe).
    pub probe_delay: Duration,
    /// First retransmission timeout of a confirmed send (default 20 ms),
    /// doubling up to `max_rto`.
    pub initial_rto: Duration,
    /// Longest retransmission timeout (default 1 s).
    pub max_rto: Duration,
    /// Shortest gap between two rounds of a burst (default zero: no
    /// pacing; the hold-off gathers a board's bursts).
    pub pace: Duration,
    /// Longest gap between two rounds of a burst: each gap that runs its
    /// full length while calls keep coming doubles the next, up to this.
    pub max_pace: Duration,
    /// A burst is over when no notification has come for this long: its
    /// last ones go out without waiting for the rest of the gap (at most
    /// every other round). Zero: never early.
    pub quiet: Duration,
}

impl NotifierConfig {
    /// The defaults (usable in `const` contexts): a board's, which holds
    /// off 5 ms to gather a modem's burst.
    pub const DEFAULT: NotifierConfig = NotifierConfig {
        hold_off: Duration::from_millis(5),
        probe_delay: Duration::from_millis(5),
        initial_rto: Duration::from_millis(20),
        max_rto: Duration::from_secs(1),
        pace: Duration::ZERO,
        max_pace: Duration::ZERO,
        quiet: Duration::ZERO,
    };

    /// A host's: an isolated notification goes at once; a burst (a hot
    /// loop's calls, nanoseconds apart) goes in rounds at most 20 µs apart,
    /// the gap doubling up to 160 µs while calls keep coming, so that it
    /// costs the broker and its listeners a wake-up per 160 µs rather than
    /// per 20 µs, and its last calls go out 2 µs after them.
    pub const HOST: NotifierConfig = NotifierConfig {
        hold_off: Duration::ZERO,
        pace: Duration::from_micros(20),
        max_pace: Duration::from_micros(160),
        quiet: Duration::from_micros(2),
        ..NotifierConfig::DEFAULT
    };

    /// The gap after one of length `loss` that ran its full length (calls
    /// kept coming) or did not: doubled up to [`max_pace`](Self::max_pace),
    /// or back to [`pace`](Self::pace).
    pub fn next_pace(&self, gap: Duration, ran_full: bool) -> Duration {
        if ran_full {
            (gap + gap).min(self.max_pace.max(self.pace))
        } else {
            self.pace
        }
    }
}

impl Default for NotifierConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The outcome of a confirmed send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum NotifierEvent {
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

/// [`NotifierSession::notify_confirmed`] refused.
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

/// NotifierSession counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SessionStats {
    /// `notify` calls.
    pub calls: u64,
    /// Datagrams emitted (including probes and retransmissions).
    pub datagrams: u64,
    /// Rounds: times the pending notifications went out.
    pub rounds: u64,
    /// Tail-loss probes emitted.
    pub probes: u64,
    /// Confirmed-send retransmissions.
    pub retransmissions: u64,
    /// Pending entries merged into an untargeted status update because
    /// the table was full.
    pub overflows: u64,
    /// Acks dropped because a key is in use and their tag is missing or
    /// wrong (forged, or from a broker without the key).
    pub acks_rejected: u64,
}

/// The pacing of rounds within a burst.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pacing {
    /// When the last round started.
    last_round: Option<Instant>,
    /// The gap before the next round of the same burst.
    gap: Duration,
    /// Whether that gap may end early, when calls stop.
    may_end_early: bool,
    /// When the last notification was recorded.
    last_call: Instant,
}

/// The sender's state: up to `N` distinct pending notifications.
#[derive(Clone, Debug)]
pub struct NotifierSession<const N: usize> {
    config: NotifierConfig,
    sender: SenderId,
    next_seq: Seq,
    pending: heapless::Deque<Pending, N>,
    /// When the oldest pending notification was recorded.
    pending_since: Option<Instant>,
    /// Entries at the front of `pending` that belong to the round being
    /// sent.
    round_left: usize,
    pacing: Pacing,
    last: Option<NotifyRepr>,
    probe_at: Option<Instant>,
    /// Everything is due at once: the transport is going away.
    closing: bool,
    confirm: Option<Confirm>,
    event: Option<NotifierEvent>,
    stats: SessionStats,
}

impl<const N: usize> NotifierSession<N> {
    /// A notifier with a sender id (random per process or boot: seed it
    /// from an RNG).
    pub const fn new(config: NotifierConfig, sender: SenderId) -> Self {
        NotifierSession {
            config,
            sender,
            next_seq: Seq::FIRST,
            pending: heapless::Deque::new(),
            pending_since: None,
            round_left: 0,
            pacing: Pacing {
                last_round: None,
                gap: config.pace,
                may_end_early: true,
                last_call: Instant::ZERO,
            },
            last: None,
            probe_at: None,
            closing: false,
            confirm: None,
            event: None,
            stats: SessionStats {
                calls: 0,
                datagrams: 0,
                rounds: 0,
                probes: 0,
                retransmissions: 0,
                overflows: 0,
                acks_rejected: 0,
            },
        }
    }

    /// The settings.
    pub fn config(&self) -> &NotifierConfig {
        &self.config
    }

    /// Changes the settings; the sender id, the sequence and whatever is
    /// pending stay.
    pub fn set_config(&mut self, config: NotifierConfig) {
        self.config = config;
    }

    /// The sender id.
    pub fn sender(&self) -> SenderId {
        self.sender
    }

    /// Counters.
    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// Whether notifications wait to be sent.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Records a notification standing for `batch` changes (at least 1).
    pub fn notify(&mut self, now: Instant, notification: Notification, batch: u32) {
        self.stats.calls += 1;
        self.pacing.last_call = now;
        if self.pending_since.is_none() {
            self.pending_since = Some(now);
        }
        let batch = batch.max(1);
        let kind = notification.kind();
        let channel = notification.channel().copied();
        let entry = self
            .pending
            .iter_mut()
            .find(|p| p.kind == kind && p.channel == channel);
        if let Some(p) = entry {
            p.batch = p.batch.saturating_add(batch);
        } else if self
            .pending
            .push_back(Pending {
                kind,
                channel,
                batch,
            })
            .is_err()
        {
            // Full: fold into an untargeted status update (a superset).
            self.stats.overflows += 1;
            self.fold_into_status(batch);
        }
    }

    /// Calls came at `now` that the transport gathers itself and records
    /// with [`notify`](Self::notify) before its next poll (the std
    /// `Notifier` counts them lock-free): the burst goes on, so its pace
    /// does not end early yet.
    pub fn calls_seen(&mut self, now: Instant) {
        self.pacing.last_call = self.pacing.last_call.max(now);
    }

    fn fold_into_status(&mut self, batch: u32) {
        let status = self
            .pending
            .iter_mut()
            .find(|p| p.kind == Kind::Status && p.channel.is_none());
        match status {
            Some(p) => p.batch = p.batch.saturating_add(batch),
            None => {
                // Replace the last entry with an untargeted status carrying both.
                if let Some(last) = self.pending.back_mut() {
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
            probe: false,
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
    pub fn handle_datagram(&mut self, now: Instant, bytes: &[u8]) {
        self.handle_datagram_signed(now, bytes, None);
    }

    /// [`handle_datagram`](Self::handle_datagram) for a session that signs
    /// with `signer`: an ack counts only if it carries the tag `signer`
    /// makes over its first 20 bytes, so a forged ack cannot end a
    /// confirmed send's retries.
    pub fn handle_datagram_signed(
        &mut self,
        _now: Instant,
        bytes: &[u8],
        signer: Option<&dyn Signer>,
    ) {
        let Ok(ack) = AckRepr::parse_bytes(bytes) else {
            return;
        };
        if let Some(signer) = signer {
            let genuine = match (ack.tag, bytes.get(..ACK_HEADER_LEN)) {
                (Some(tag), Some(signed)) => tags_equal(&tag, &signer.sign(signed)),
                _ => false,
            };
            if !genuine {
                self.stats.acks_rejected += 1;
                return;
            }
        }
        if let Some(c) = self.confirm {
            if ack.sender == c.repr.sender && ack.seq == c.repr.seq {
                self.confirm = None;
                self.event = Some(NotifierEvent::Confirmed {
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
                self.event = Some(NotifierEvent::TimedOut {
                    seq: c.repr.seq,
                    attempts: c.attempts,
                });
            }
        }
    }

    /// The outcome of a confirmed send, once.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<NotifierEvent> {
        self.event.take()
    }

    /// The transport is going away: whatever is pending, and the tail-loss
    /// probe if one is armed, are due at once.
    pub fn close(&mut self) {
        self.closing = true;
    }

    /// Writes the next due datagram into `buf` (at least
    /// [`MAX_DATAGRAM_LEN`](crate::wire::MAX_DATAGRAM_LEN) bytes) and
    /// returns its length: a confirmed send, then the pending notifications,
    /// then the tail-loss probe. Call until `None`.
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
        self.poll_confirm_signed(now, buf, signer)
            .or_else(|| self.poll_notifications_signed(now, buf, signer))
    }

    /// The confirmed send's (re)transmission, when due.
    #[must_use]
    pub fn poll_confirm(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        self.poll_confirm_signed(now, buf, None)
    }

    /// Everything but the confirmed send: the due round of pending
    /// notifications, then the tail-loss probe.
    #[must_use]
    pub fn poll_notifications(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        self.poll_notifications_signed(now, buf, None)
    }

    /// [`poll_confirm`](Self::poll_confirm), tagging with `signer`.
    #[must_use]
    pub fn poll_confirm_signed(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        signer: Option<&dyn Signer>,
    ) -> Option<usize> {
        self.handle_timeout(now);
        let c = self.confirm.as_mut().filter(|c| now >= c.next_send)?;
        if c.attempts > 0 {
            self.stats.retransmissions += 1;
        }
        c.attempts += 1;
        c.next_send = now + c.rto;
        c.rto = (c.rto + c.rto).min(self.config.max_rto);
        let repr = c.repr;
        self.emit(&repr, buf, signer)
    }

    /// [`poll_notifications`](Self::poll_notifications), tagging with
    /// `signer`.
    #[must_use]
    pub fn poll_notifications_signed(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        signer: Option<&dyn Signer>,
    ) -> Option<usize> {
        if self.round_left == 0 && self.next_round().is_some_and(|at| now >= at) {
            self.start_round(now);
        }
        if self.round_left > 0 {
            self.round_left -= 1;
            if let Some(p) = self.pending.pop_front() {
                if self.pending.is_empty() {
                    self.pending_since = None;
                }
                if let Ok(notification) = Notification::new(p.kind, p.channel) {
                    let repr = NotifyRepr {
                        notification,
                        sender: self.sender,
                        seq: self.take_seq(),
                        batch: p.batch,
                        ack_requested: false,
                        probe: false,
                        tag: None,
                    };
                    self.last = Some(repr);
                    self.probe_at =
                        (!self.config.probe_delay.is_zero()).then(|| now + self.config.probe_delay);
                    return self.emit(&repr, buf, signer);
                }
            }
        }
        // the tail-loss probe: the last datagram again, same sequence number
        let probe_due = self.probe_at.is_some_and(|at| now >= at || self.closing);
        if self.pending.is_empty() && probe_due {
            self.probe_at = None;
            if let Some(mut repr) = self.last {
                self.stats.probes += 1;
                // marked, so that the broker counts it apart from duplicates
                repr.probe = true;
                return self.emit(&repr, buf, signer);
            }
        }
        None
    }

    /// When the pending notifications' round is due (`None`: nothing
    /// pending).
    fn next_round(&self) -> Option<Instant> {
        let since = self.pending_since.filter(|_| !self.pending.is_empty())?;
        if self.closing {
            return Some(since);
        }
        let held = since + self.config.hold_off;
        let p = &self.pacing;
        let Some(last) = p.last_round.filter(|&t| since < t + p.gap) else {
            return Some(held); // the first notification after a quiet gap
        };
        let early = if p.may_end_early && !self.config.quiet.is_zero() {
            p.last_call + self.config.quiet
        } else {
            Instant::MAX
        };
        Some(held.max((last + p.gap).min(early)))
    }

    /// The pending notifications go out now: the pacing learns whether the
    /// last gap ran its full length.
    fn start_round(&mut self, now: Instant) {
        let since = self.pending_since.unwrap_or(now);
        let p = &mut self.pacing;
        match p.last_round.filter(|&t| since < t + p.gap) {
            // calls came while the last gap ran: the same burst
            Some(last) => {
                let ran_full = now >= last + p.gap;
                p.may_end_early = ran_full;
                p.gap = self.config.next_pace(p.gap, ran_full);
            }
            None => {
                p.may_end_early = true;
                p.gap = self.config.pace;
            }
        }
        p.last_round = Some(now);
        self.round_left = self.pending.len();
        self.stats.rounds += 1;
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
        Instant::earliest(
            self.poll_timeout_notifications(),
            self.poll_timeout_confirm(),
        )
    }

    /// When [`poll_confirm`](Self::poll_confirm) (or `handle_timeout`) next
    /// has something to do.
    pub fn poll_timeout_confirm(&self) -> Option<Instant> {
        self.confirm.map(|c| c.next_send.min(c.deadline))
    }

    /// Drops the confirmed send in flight, if any, without an event (its
    /// transport cannot wait for the ack any more).
    pub fn cancel_confirmed(&mut self) {
        self.confirm = None;
    }

    /// When [`poll_notifications`](Self::poll_notifications) next has
    /// something to do.
    pub fn poll_timeout_notifications(&self) -> Option<Instant> {
        let round = if self.round_left > 0 {
            self.pacing.last_round
        } else {
            self.next_round()
        };
        let probe = self.probe_at.filter(|_| self.pending.is_empty());
        Instant::earliest(round, probe)
    }

    /// Whether nothing is pending (no datagram, probe or confirmation).
    pub fn is_idle(&self) -> bool {
        self.poll_timeout().is_none()
    }
}

#[cfg(test)]
mod tests;
