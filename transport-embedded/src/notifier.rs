//! The embassy-net notifier: application tasks hold a cheap [`EmbassyNotifier`]
//! handle; one [`NotifierRunner`] task owns the UDP socket, sends what the
//! core's coalescing notifier has due, receives acks and sleeps until the
//! next deadline.
//!
//! ```no_run
//! # use embassy_net::{udp::UdpSocket, IpEndpoint};
//! # use flagpost_core::notifier::NotifierConfig;
//! # use flagpost_core::wire::SenderId;
//! # use flagpost_core::{ChannelId, Notification};
//! # use flagpost_embedded::notifier::{EmbassyNotifier, NotifierRunner, EmbassyNotifierState};
//! static STATE: EmbassyNotifierState<4> = EmbassyNotifierState::new(NotifierConfig::DEFAULT, SenderId(0));
//!
//! // The task that owns the socket (in firmware, an `#[embassy_executor::task]`);
//! // once the RNG is up, main calls `STATE.set_sender(SenderId(rng.next_u64()))`.
//! async fn notifier_task(socket: UdpSocket<'static>, broker: IpEndpoint) -> ! {
//!     NotifierRunner::new(&STATE, socket, broker, None).run().await
//! }
//!
//! // From the modem task, when an SMS arrives:
//! fn on_sms(channel: ChannelId) {
//!     EmbassyNotifier::new(&STATE).notify(Notification::status(Some(channel)), 1);
//! }
//! ```

use core::cell::RefCell;

use embassy_futures::select::{select3, Either3};
use embassy_net::udp::UdpSocket;
use embassy_net::IpEndpoint;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::blocking_mutex::Mutex;
use embassy_sync::signal::Signal;
use embassy_time::Timer;
use flagpost_core::notifier::{self, ConfirmBusy, NotifierConfig, NotifierEvent, Signer};
use flagpost_core::wire::{AckResult, SenderId, MAX_DATAGRAM_LEN};
use flagpost_core::{Duration, Notification};

use crate::time::{now, to_embassy};

/// Why a confirmed notification failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum EmbassyNotifyError {
    /// Another confirmed send is in flight; try again after it.
    Busy,
    /// No ack arrived before the timeout.
    TimedOut {
        /// Datagrams sent.
        attempts: u32,
    },
}

impl From<ConfirmBusy> for EmbassyNotifyError {
    fn from(_: ConfirmBusy) -> Self {
        EmbassyNotifyError::Busy
    }
}

impl core::fmt::Display for EmbassyNotifyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            EmbassyNotifyError::Busy => f.write_str("a confirmed send is already in flight"),
            EmbassyNotifyError::TimedOut { attempts } => {
                write!(f, "no acknowledgement after {attempts} datagrams")
            }
        }
    }
}

impl core::error::Error for EmbassyNotifyError {}

/// The notifier's shared state, for up to `N` distinct pending
/// notifications. Put it in a `static`.
pub struct EmbassyNotifierState<const N: usize> {
    inner: Mutex<CriticalSectionRawMutex, RefCell<notifier::NotifierSession<N>>>,
    wake: Signal<CriticalSectionRawMutex, ()>,
    outcome: Signal<CriticalSectionRawMutex, NotifierEvent>,
}

impl<const N: usize> EmbassyNotifierState<N> {
    /// State for a notifier with `sender` as its id (random per boot:
    /// seed it from the board's RNG, or set it later with
    /// [`set_sender`](Self::set_sender)).
    pub const fn new(config: NotifierConfig, sender: SenderId) -> Self {
        EmbassyNotifierState {
            inner: Mutex::new(RefCell::new(notifier::NotifierSession::new(config, sender))),
            wake: Signal::new(),
            outcome: Signal::new(),
        }
    }

    /// Replaces the sender id (before anything is sent).
    pub fn set_sender(&self, sender: SenderId) {
        self.inner.lock(|p| {
            let config = *p.borrow().config();
            *p.borrow_mut() = notifier::NotifierSession::new(config, sender);
        });
    }

    /// Changes the settings (after a configuration reload), keeping the
    /// sender id, the sequence and anything pending.
    pub fn set_config(&self, config: NotifierConfig) {
        self.inner.lock(|p| p.borrow_mut().set_config(config));
    }

    fn with<R>(&self, f: impl FnOnce(&mut notifier::NotifierSession<N>) -> R) -> R {
        self.inner.lock(|p| f(&mut p.borrow_mut()))
    }
}

/// A cheap handle for application tasks.
#[derive(Clone, Copy)]
pub struct EmbassyNotifier<'a, const N: usize> {
    state: &'a EmbassyNotifierState<N>,
}

impl<'a, const N: usize> EmbassyNotifier<'a, N> {
    /// A handle to `state`.
    pub const fn new(state: &'a EmbassyNotifierState<N>) -> Self {
        EmbassyNotifier { state }
    }

    /// Records a notification standing for `batch` changes; the runner sends
    /// it, merged with whatever else arrives within the hold-off.
    pub fn notify(&self, notification: Notification, batch: u32) {
        self.state.with(|p| p.notify(now(), notification, batch));
        self.state.wake.signal(());
    }

    /// Sends `notification` and waits until the broker acknowledges it
    /// (retransmitting with backoff) or `timeout` passes.
    pub async fn notify_confirmed(
        &self,
        notification: Notification,
        batch: u32,
        timeout: Duration,
    ) -> Result<AckResult, EmbassyNotifyError> {
        self.state.outcome.reset();
        let seq = self
            .state
            .with(|p| p.notify_confirmed(now(), notification, batch, timeout))?;
        self.state.wake.signal(());
        loop {
            match self.state.outcome.wait().await {
                NotifierEvent::Confirmed { seq: s, result, .. } if s == seq => return Ok(result),
                NotifierEvent::TimedOut { seq: s, attempts } if s == seq => {
                    return Err(EmbassyNotifyError::TimedOut { attempts })
                }
                _ => {}
            }
        }
    }

    /// The core notifier's counters.
    pub fn stats(&self) -> notifier::SessionStats {
        self.state.with(|p| p.stats())
    }
}

/// The task that owns the UDP socket.
pub struct NotifierRunner<'a, 'd, const N: usize> {
    state: &'a EmbassyNotifierState<N>,
    socket: UdpSocket<'d>,
    broker: IpEndpoint,
    signer: Option<&'a dyn Signer>,
}

impl<'a, 'd, const N: usize> NotifierRunner<'a, 'd, N> {
    /// A runner sending to `broker` through `socket` (bound by the caller,
    /// any local port); `signer` fills authentication tags when set.
    pub fn new(
        state: &'a EmbassyNotifierState<N>,
        socket: UdpSocket<'d>,
        broker: IpEndpoint,
        signer: Option<&'a dyn Signer>,
    ) -> Self {
        NotifierRunner {
            state,
            socket,
            broker,
            signer,
        }
    }

    /// Changes the broker (after a configuration reload).
    pub fn set_broker(&mut self, broker: IpEndpoint) {
        self.broker = broker;
    }

    /// Sends, receives and sleeps forever.
    pub async fn run(mut self) -> ! {
        let mut tx = [0u8; MAX_DATAGRAM_LEN];
        let mut rx = [0u8; MAX_DATAGRAM_LEN];
        loop {
            self.step(&mut tx).await;
            let deadline = self.state.with(|p| p.poll_timeout());
            let timer = Timer::at(deadline.map_or(embassy_time::Instant::MAX, to_embassy));
            match select3(
                self.socket.recv_from(&mut rx),
                timer,
                self.state.wake.wait(),
            )
            .await
            {
                Either3::First(Ok((n, _))) => {
                    let bytes = rx.get(..n).unwrap_or(&[]);
                    let signer = self.signer;
                    self.state
                        .with(|p| p.handle_datagram_signed(now(), bytes, signer));
                }
                Either3::First(Err(_)) | Either3::Second(()) | Either3::Third(()) => {}
            }
        }
    }

    /// Sends every due datagram and notifies confirmation outcomes.
    async fn step(&mut self, tx: &mut [u8; MAX_DATAGRAM_LEN]) {
        loop {
            let signer = self.signer;
            let n = self
                .state
                .with(|p| p.poll_transmit_signed(now(), tx, signer));
            let Some(n) = n else { break };
            // A full queue or no route drops the datagram: loss detection
            // and the tail-loss probe cover it.
            let _ = self
                .socket
                .send_to(tx.get(..n).unwrap_or(&[]), self.broker)
                .await;
        }
        if let Some(event) = self.state.with(|p| p.poll_event()) {
            self.state.outcome.signal(event);
        }
    }
}
