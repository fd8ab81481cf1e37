//! [`BrokerHandle`]'s methods: addresses, shutdown and join, stats,
//! in-process notifications and listeners, and the wake-up of the loop.

use std::io;
use std::sync::mpsc;
use std::sync::Arc;

use flagpost_core::broker::{ListenerId, OpenError, Stats};
use flagpost_core::{ChannelId, FlagSet, Notification};

use super::{BrokerGone, BrokerHandle, Command, ServeError};
use crate::postgres::SourceMetrics;
use crate::shared::Shared;
use std::net::SocketAddr;

impl BrokerHandle {
    /// The bound addresses (UDP and TCP share each).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.inner.addrs
    }

    /// The first bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.addrs[0]
    }

    /// Wakes the loop (it then looks at its queues).
    #[cfg_attr(
        not(all(feature = "federation", target_os = "linux")),
        allow(dead_code)
    )]
    pub(crate) fn wake(&self) -> Result<(), BrokerGone> {
        self.inner.waker.wake().map_err(|_| BrokerGone)
    }

    pub(super) fn send(&self, cmd: Command) -> Result<(), BrokerGone> {
        self.inner.tx.send(cmd).map_err(|_| BrokerGone)?;
        self.inner.waker.wake().map_err(|_| BrokerGone)
    }

    /// Asks the broker to stop: listeners get a close frame with reason
    /// *shutdown*. Returns at once; see [`join`](Self::join).
    pub fn shutdown(&self) {
        let _ = self.send(Command::Shutdown);
    }

    /// Waits for a broker started with [`Broker::spawn`](super::Broker::spawn)
    /// to stop, returning how it ended (once; later calls return `Ok`).
    pub fn join(&self) -> Result<(), ServeError> {
        let thread = self
            .inner
            .thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        match thread {
            Some(t) => t.join().unwrap_or_else(|_| {
                Err(ServeError::Io(io::Error::other("broker thread panicked")))
            }),
            None => Ok(()),
        }
    }

    /// Raises status, non-status and channel update (never channel
    /// shutdown) on every listener, within its interest, as a listener's
    /// own reconnect raise does: for an in-process source that may have
    /// missed notifications (the PostgreSQL source after a reconnect).
    pub fn raise_recheck(&self) -> Result<(), BrokerGone> {
        self.send(Command::RaiseRecheck)
    }

    /// The PostgreSQL source's counters, if the broker has a source.
    pub fn postgres_metrics(&self) -> Option<&SourceMetrics> {
        self.inner.postgres.as_deref()
    }

    /// A snapshot of the broker's counters and gauges.
    pub fn stats(&self) -> Result<Stats, BrokerGone> {
        let (tx, rx) = mpsc::channel();
        self.send(Command::Stats(tx))?;
        rx.recv().map_err(|_| BrokerGone)
    }

    /// A snapshot of the counters and gauges, or `Ok(None)` if the loop did
    /// not answer within `timeout` (stuck, or not running yet): for callers
    /// that must not wait on the loop, such as the HTTP address's health
    /// check.
    pub fn stats_within(&self, timeout: std::time::Duration) -> Result<Option<Stats>, BrokerGone> {
        let (tx, rx) = mpsc::channel();
        self.send(Command::Stats(tx))?;
        match rx.recv_timeout(timeout) {
            Ok(stats) => Ok(Some(stats)),
            Err(mpsc::RecvTimeoutError::Timeout) => Ok(None),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(BrokerGone),
        }
    }

    /// Delivers a notification in-process, as a datagram would (no sequence
    /// check: the channel is reliable).
    pub fn notify(&self, notification: Notification, batch: u32) -> Result<(), BrokerGone> {
        self.send(Command::Notify(notification, batch.max(1)))
    }

    pub(crate) fn open_local(
        &self,
        interest: FlagSet,
        channel: Option<ChannelId>,
        shared: Arc<Shared>,
    ) -> Result<Result<ListenerId, OpenError>, BrokerGone> {
        let (reply, rx) = mpsc::channel();
        self.send(Command::OpenLocal {
            interest,
            channel,
            shared,
            reply,
        })?;
        rx.recv().map_err(|_| BrokerGone)
    }

    pub(crate) fn close_local(&self, id: ListenerId) {
        let _ = self.send(Command::CloseLocal(id));
    }
}
