//! A poll-driven notifier over a bare smoltcp UDP socket, for boards
//! without embassy: call [`SmoltcpNotifier::poll`] after every
//! `Interface::poll`, with the same `now`, and again by the instant it
//! returns — the way smoltcp's own sockets are driven.

use flagpost_core::notifier::{self, ConfirmBusy, NotifierConfig, NotifierEvent};
use flagpost_core::wire::{SenderId, Seq, MAX_DATAGRAM_LEN};
use flagpost_core::{Duration, Instant, Notification};
use smoltcp::socket::udp;
use smoltcp::wire::IpEndpoint;

/// A notifier for up to `N` distinct pending notifications.
pub struct SmoltcpNotifier<const N: usize> {
    inner: notifier::NotifierSession<N>,
    broker: IpEndpoint,
}

/// The smoltcp instant of a core instant.
pub fn to_smoltcp(at: Instant) -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros(i64::try_from(at.as_micros()).unwrap_or(i64::MAX))
}

/// The core instant of a smoltcp instant (negative times clamp to zero).
pub fn from_smoltcp(at: smoltcp::time::Instant) -> Instant {
    Instant::from_micros(u64::try_from(at.total_micros()).unwrap_or(0))
}

impl<const N: usize> SmoltcpNotifier<N> {
    /// A notifier sending to `broker` as `sender` (random per boot).
    pub const fn new(config: NotifierConfig, sender: SenderId, broker: IpEndpoint) -> Self {
        SmoltcpNotifier {
            inner: notifier::NotifierSession::new(config, sender),
            broker,
        }
    }

    /// Records a notification standing for `batch` changes.
    pub fn notify(&mut self, now: Instant, notification: Notification, batch: u32) {
        self.inner.notify(now, notification, batch);
    }

    /// Starts a confirmed send; its outcome comes from
    /// [`poll_event`](Self::poll_event).
    pub fn notify_confirmed(
        &mut self,
        now: Instant,
        notification: Notification,
        batch: u32,
        timeout: Duration,
    ) -> Result<Seq, ConfirmBusy> {
        self.inner
            .notify_confirmed(now, notification, batch, timeout)
    }

    /// The outcome of a confirmed send, once.
    pub fn poll_event(&mut self) -> Option<NotifierEvent> {
        self.inner.poll_event()
    }

    /// Reads acks from `socket`, sends every due datagram the socket has
    /// room for, and returns when to poll again (`None`: nothing pending).
    pub fn poll(&mut self, now: Instant, socket: &mut udp::Socket<'_>) -> Option<Instant> {
        while let Ok((data, _meta)) = socket.recv() {
            self.inner.handle_datagram(now, data);
        }
        let mut buf = [0u8; MAX_DATAGRAM_LEN];
        while socket.can_send() {
            let Some(n) = self.inner.poll_transmit(now, &mut buf) else {
                break;
            };
            // can_send() said there is room; a failure here only drops a
            // datagram, which loss detection and the probe cover.
            let _ = socket.send_slice(buf.get(..n).unwrap_or(&[]), self.broker);
        }
        self.inner.handle_timeout(now);
        self.inner.poll_timeout()
    }

    /// The core notifier's counters.
    pub fn stats(&self) -> notifier::SessionStats {
        self.inner.stats()
    }
}
