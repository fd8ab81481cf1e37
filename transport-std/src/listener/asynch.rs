//! The listener's async face for tokio users (feature `tokio`):
//! [`Listener::wait_async`] and [`Listener::next_raise`] await a raise
//! without blocking a thread, and [`Listener::raises`] is a [`Stream`] of
//! them. Nothing polls: the thread that raises the flags (the listener's
//! I/O thread, or an in-process broker's loop) wakes the awaiting tasks
//! through a `tokio::sync::Notify`, and only when some task awaits, so a
//! raise with nobody waiting costs what it costs without this feature.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = flagpost_std::Listener::connect("127.0.0.1:16725")?;
//! while let Some(raise) = listener.next_raise().await {
//!     if raise.flags.contains(flagpost_std::core::FlagSet::STATUS) {
//!         // poll the database for new work
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! The listener itself stays what it is: the connection is driven by its
//! I/O thread, and dropping it (or [`Listener::stop`]) joins that thread,
//! which takes at most a close frame's write.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

use super::Listener;
use crate::Raise;

impl Listener {
    /// Waits until a flag is raised (true) or the listener is stopped
    /// (false), without blocking the thread. Clears nothing, like
    /// [`wait`](Self::wait); for a deadline, wrap it in
    /// `tokio::time::timeout`. Cancel-safe.
    pub async fn wait_async(&self) -> bool {
        self.shared.wait_async().await
    }

    /// Waits for the next raise and takes it (every flag raised, and
    /// whether it came from a (re)connect: [`take_raise`](Self::take_raise));
    /// `None` once the listener is stopped. Cancel-safe: a raise is only
    /// taken by the call that returns it.
    pub async fn next_raise(&self) -> Option<Raise> {
        loop {
            if !self.wait_async().await {
                return None;
            }
            let raise = self.take_raise();
            // another taker may have emptied the flags since the wake-up
            if !raise.flags.is_empty() {
                return Some(raise);
            }
        }
    }

    /// The raises as a [`Stream`]: each item is [`next_raise`](Self::next_raise)'s;
    /// the stream ends when the listener is stopped.
    pub fn raises(&self) -> Raises<'_> {
        Raises {
            listener: self,
            next: None,
        }
    }
}

/// A [`Stream`] of a listener's raises ([`Listener::raises`]).
pub struct Raises<'a> {
    listener: &'a Listener,
    next: Option<Pin<Box<dyn Future<Output = Option<Raise>> + Send + 'a>>>,
}

impl std::fmt::Debug for Raises<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Raises")
            .field("listener", self.listener)
            .finish_non_exhaustive()
    }
}

impl Stream for Raises<'_> {
    type Item = Raise;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Raise>> {
        let listener = self.listener;
        let next = self
            .next
            .get_or_insert_with(|| Box::pin(listener.next_raise()));
        let item = next.as_mut().poll(cx);
        if item.is_ready() {
            self.next = None;
        }
        item
    }
}
