//! The Rust side of `python/bench/latency.py`: a Rust notifier and a Rust
//! listener (its own thread, blocked in [`Listener::wait`]) measured the
//! same way as the Python pair, round by round, so that the benchmark can
//! interleave the two through one broker in one run. No Python runs while
//! a round is measured (the GIL is released).

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use flagpost_std::core::ChannelId;
use flagpost_std::{Listener, Notifier};
use pyo3::prelude::*;

use crate::errors::{channel, error, notify_error};

/// A Rust notifier and listener thread on one channel of their own;
/// `round()` is one notify→wake.
#[pyclass(name = "_RustLatency", module = "flagpost._native", frozen)]
pub(crate) struct RustLatency {
    notifier: Notifier,
    channel: ChannelId,
    listener: std::sync::Arc<Listener>,
    woke: std::sync::Mutex<mpsc::Receiver<Instant>>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

#[pymethods]
impl RustLatency {
    #[new]
    fn new(py: Python<'_>, broker: &str, channel_name: &str) -> PyResult<Self> {
        let channel = channel(py, channel_name)?;
        let notifier = Notifier::new(broker).map_err(|e| notify_error(py, e))?;
        let listener = std::sync::Arc::new(
            Listener::builder()
                .channel(channel)
                .connect(broker)
                .map_err(|e| crate::errors::listen_error(py, e))?,
        );
        let ready = {
            let l = listener.clone();
            py.detach(move || l.wait_listening(Duration::from_secs(5)))
        };
        if !ready {
            return Err(error(
                py,
                "ConnectError",
                "the Rust listener did not connect",
            ));
        }
        let (tx, rx) = mpsc::channel();
        let l = listener.clone();
        // the listener's thread: wake, time, take, report
        let thread = std::thread::spawn(move || loop {
            if l.wait(Duration::from_secs(3600)) {
                let at = Instant::now();
                l.take_raise();
                if tx.send(at).is_err() {
                    return;
                }
            } else if l.state() == flagpost_std::ListenerState::Closed {
                return;
            }
        });
        Ok(RustLatency {
            notifier,
            channel,
            listener,
            woke: std::sync::Mutex::new(rx),
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Drops any raise pending (the connect's reconnect raise).
    fn drain(&self, py: Python<'_>) {
        let mut guard = self.woke.lock().unwrap_or_else(|p| p.into_inner());
        let rx: &mut mpsc::Receiver<Instant> = &mut guard;
        py.detach(move || while rx.recv_timeout(Duration::from_millis(50)).is_ok() {});
    }

    /// One round: notify a status update and return the nanoseconds until
    /// the listener's thread woke, or None if it did not within `timeout`.
    fn round(&self, py: Python<'_>, timeout: f64) -> Option<u64> {
        let mut guard = self.woke.lock().unwrap_or_else(|p| p.into_inner());
        let rx: &mut mpsc::Receiver<Instant> = &mut guard;
        let notifier = &self.notifier;
        let channel = self.channel;
        let timeout = Duration::try_from_secs_f64(timeout).unwrap_or(Duration::from_secs(1));
        py.detach(move || {
            while rx.try_recv().is_ok() {}
            let start = Instant::now();
            notifier.notify_status_update(Some(channel));
            let woke = rx.recv_timeout(timeout).ok()?;
            u64::try_from(woke.saturating_duration_since(start).as_nanos()).ok()
        })
    }

    /// Stops the listener and its thread.
    fn close(&self, py: Python<'_>) {
        let listener = &self.listener;
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        py.detach(|| {
            listener.stop();
            if let Some(t) = thread {
                let _ = t.join();
            }
        });
    }
}
