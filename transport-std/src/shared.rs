//! The state a listener shares between the thread that raises its flags (a
//! connection thread or the in-process broker loop) and the application
//! threads that check and wait on them.
//!
//! Checks are lock-free test-and-clear reads of an [`AtomicFlags`]. Waiting
//! uses a mutex and condvar, but a raise only touches them when some thread
//! is actually waiting (a `waiters` count, ordered with `SeqCst` against the
//! flags), so raising with nobody waiting costs one atomic add. A
//! [`RaiseHook`], if the owner gave one, is called after each raise and at
//! the close: the way callers outside Rust's threads (a C callback, an
//! `asyncio` loop, the broker's event stream) learn of a raise.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use flagpost_core::flags::AtomicFlags;
use flagpost_core::FlagSet;

pub use flagpost_core::listener::ListenerState;

fn state_from_u8(v: u8) -> ListenerState {
    match v {
        0 => ListenerState::Connecting,
        1 => ListenerState::Listening,
        2 => ListenerState::BackingOff,
        _ => ListenerState::Closed,
    }
}

fn state_to_u8(state: ListenerState) -> u8 {
    match state {
        ListenerState::Connecting => 0,
        ListenerState::Listening => 1,
        ListenerState::BackingOff => 2,
        ListenerState::Closed => 3,
    }
}

/// A function called after each raise of a listener's flags and when the
/// listener closes, on the thread that raised: the listener's connection
/// thread, or the broker's loop for an in-process listener. It must be
/// short and must not block (set a flag, write to a pipe, wake a poll):
/// that thread serves the connection. It may be called with nothing left
/// to take (a check already took the flags): callers re-check.
#[derive(Clone)]
pub struct RaiseHook(Arc<dyn Fn() + Send + Sync>);

impl RaiseHook {
    /// Wraps `f`.
    pub fn new(f: impl Fn() + Send + Sync + 'static) -> Self {
        RaiseHook(Arc::new(f))
    }

    fn call(&self) {
        (self.0)()
    }
}

impl std::fmt::Debug for RaiseHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RaiseHook")
    }
}

/// Flags, state and the wait machinery of one listener.
#[derive(Debug)]
pub(crate) struct Shared {
    flags: AtomicFlags,
    /// Set with a reconnect raise, cleared by `take_reconnect`.
    reconnect: AtomicBool,
    state: AtomicU8,
    waiters: AtomicUsize,
    interrupts: AtomicUsize,
    lock: Mutex<()>,
    cond: Condvar,
    /// Set when the owner stops listening.
    pub(crate) stop: AtomicBool,
    /// Wakes async waiters (`listener::asynch`) with the threads.
    #[cfg(feature = "tokio")]
    notify: tokio::sync::Notify,
    /// Called after each raise and at the close.
    hook: Option<RaiseHook>,
}

impl Shared {
    #[cfg(test)]
    pub(crate) fn new(state: ListenerState) -> Self {
        Shared::with_hook(state, None)
    }

    /// A listener's shared state whose raises also call `hook`.
    pub(crate) fn with_hook(state: ListenerState, hook: Option<RaiseHook>) -> Self {
        Shared {
            flags: AtomicFlags::new(),
            reconnect: AtomicBool::new(false),
            state: AtomicU8::new(state_to_u8(state)),
            waiters: AtomicUsize::new(0),
            interrupts: AtomicUsize::new(0),
            lock: Mutex::new(()),
            cond: Condvar::new(),
            stop: AtomicBool::new(false),
            #[cfg(feature = "tokio")]
            notify: tokio::sync::Notify::new(),
            hook,
        }
    }

    pub(crate) fn flags(&self) -> &AtomicFlags {
        &self.flags
    }

    pub(crate) fn state(&self) -> ListenerState {
        state_from_u8(self.state.load(Ordering::Acquire))
    }

    pub(crate) fn set_state(&self, state: ListenerState) {
        self.state.store(state_to_u8(state), Ordering::Release);
        if state == ListenerState::Closed {
            self.wake_all();
            if let Some(hook) = &self.hook {
                hook.call();
            }
        }
    }

    /// Raises `set` and wakes waiters, if any.
    ///
    /// One raiser at a time (so a raise is a plain store): a TCP listener's
    /// raises come from `Io::process`, which needs the `Io` lock; an
    /// in-process listener's from the broker's loop, after the one raise
    /// made before the broker knows it.
    pub(crate) fn raise(&self, set: FlagSet) {
        if set.is_empty() {
            return;
        }
        self.raise_flags(set);
    }

    /// Raises a reconnect raise: `set` (a re-check) and the reconnect mark,
    /// the mark first so that whoever sees the flags can see the mark.
    pub(crate) fn raise_reconnect(&self, set: FlagSet) {
        self.reconnect.store(true, Ordering::Release);
        self.raise_flags(set);
    }

    /// Test-and-clear of the reconnect mark.
    pub(crate) fn take_reconnect(&self) -> bool {
        self.reconnect.swap(false, Ordering::AcqRel)
    }

    fn raise_flags(&self, set: FlagSet) {
        self.flags.raise_exclusive(set);
        // Pairs with the SeqCst increment in `wait`: either the waiter sees
        // the flags, or we see the waiter.
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.wake_all();
        }
        if let Some(hook) = &self.hook {
            hook.call();
        }
    }

    /// How many interrupts there were (waiters compare before and after).
    pub(crate) fn interrupts(&self) -> usize {
        self.interrupts.load(Ordering::SeqCst)
    }

    /// Wakes every waiter without raising anything (they re-check and,
    /// finding nothing, keep waiting unless stopped).
    pub(crate) fn interrupt(&self) {
        self.interrupts.fetch_add(1, Ordering::SeqCst);
        self.wake_all();
    }

    fn wake_all(&self) {
        {
            let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            self.cond.notify_all();
        }
        #[cfg(feature = "tokio")]
        self.notify.notify_waiters();
    }

    /// Waits, without blocking a thread, until a flag is raised (true) or
    /// the listener is closed (false). Clears nothing. Counts as a waiter
    /// for as long as it is pending, so a raise wakes it; cancel-safe.
    #[cfg(feature = "tokio")]
    pub(crate) async fn wait_async(&self) -> bool {
        /// Unregisters the waiter however the future ends (dropped too).
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.waiters);
        loop {
            // Registered before the check: a raise after it wakes this
            // future, one before it is seen by the check.
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.flags.peek().is_empty() {
                return true;
            }
            if self.state() == ListenerState::Closed {
                return false;
            }
            notified.await;
        }
    }

    /// Blocks until a flag is raised, the listener is closed or interrupted,
    /// or `timeout` passes; returns whether a flag is raised. Clears nothing.
    /// Any interrupt after [`interrupts`](Self::interrupts) returned `epoch`
    /// counts: a caller that takes the epoch before checking its own stop
    /// condition cannot miss an interrupt sent between that check and the
    /// wait.
    pub(crate) fn wait_since(&self, epoch: usize, timeout: Duration) -> bool {
        if !self.flags.peek().is_empty() {
            return true;
        }
        let deadline = Instant::now().checked_add(timeout);
        let mut guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let raised = loop {
            if !self.flags.peek().is_empty() {
                break true;
            }
            if self.state() == ListenerState::Closed
                || self.interrupts.load(Ordering::SeqCst) != epoch
            {
                break false;
            }
            let remaining = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(r) if !r.is_zero() => r,
                    _ => break false,
                },
                None => Duration::from_secs(3600),
            };
            guard = match self.cond.wait_timeout(guard, remaining) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        };
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        raised
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn wait_returns_on_raise_from_another_thread() {
        let shared = Arc::new(Shared::new(ListenerState::Listening));
        let raiser = {
            let shared = shared.clone();
            std::thread::spawn(move || {
                // raise only once the waiter is registered: no sleep needed
                while shared.waiters.load(Ordering::SeqCst) == 0 {
                    std::thread::yield_now();
                }
                shared.raise(FlagSet::STATUS);
            })
        };
        assert!(shared.wait_since(shared.interrupts(), Duration::from_secs(30)));
        assert!(shared.flags().check_status());
        raiser.join().unwrap();
    }

    #[test]
    fn the_hook_runs_after_each_raise_and_at_the_close() {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let shared = Shared::with_hook(
            ListenerState::Listening,
            Some(RaiseHook::new(move || {
                seen.fetch_add(1, Ordering::SeqCst);
            })),
        );
        shared.raise(FlagSet::EMPTY);
        assert_eq!(calls.load(Ordering::SeqCst), 0, "nothing raised");
        shared.raise(FlagSet::STATUS);
        assert!(shared.flags().check_status(), "raised before the call");
        shared.raise_reconnect(FlagSet::RECHECK);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        shared.set_state(ListenerState::Closed);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    /// An interrupt between taking the epoch and waiting is not lost: the
    /// race that left a stopped service waiting for an hour.
    #[test]
    fn an_interrupt_before_the_wait_is_seen() {
        let shared = Shared::new(ListenerState::Listening);
        let epoch = shared.interrupts();
        shared.interrupt();
        assert!(!shared.wait_since(epoch, Duration::from_secs(3600)));
    }

    #[test]
    fn wait_times_out_and_close_releases() {
        let shared = Shared::new(ListenerState::Listening);
        assert!(!shared.wait_since(shared.interrupts(), Duration::from_millis(1)));
        shared.set_state(ListenerState::Closed);
        assert!(!shared.wait_since(shared.interrupts(), Duration::from_secs(30)));
    }
}
