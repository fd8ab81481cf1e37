//! `flagpost._native.Listener`: the vendor's checks (test-and-clear), a
//! blocking `wait` that releases the GIL and checks for signals between
//! slices, and the wake-up socket the asyncio side of `flagpost` watches:
//! the listener's [`RaiseHook`] writes a byte to it after a raise while an
//! asyncio waiter is armed, so no thread waits and nothing polls.

use std::path::PathBuf;
#[cfg(unix)]
use std::sync::atomic::{fence, AtomicUsize, Ordering};
#[cfg(unix)]
use std::sync::Arc;
use std::time::{Duration, Instant};

use flagpost_std::core::FlagSet;
#[cfg(unix)]
use flagpost_std::RaiseHook;
use flagpost_std::{Listener, ListenerState};
use pyo3::prelude::*;

use crate::errors::{error, invalid, key, listen_error, seconds};

/// How long one GIL-free slice of `wait` lasts before it checks for
/// signals (Ctrl-C) and goes on waiting.
const SLICE: Duration = Duration::from_millis(100);

/// The asyncio wake-up: a non-blocking datagram socket pair; the raise hook
/// writes to `tx` while `armed` counts asyncio waiters.
#[cfg(unix)]
struct Wake {
    rx: std::os::unix::net::UnixDatagram,
    armed: Arc<AtomicUsize>,
}

/// A listener: keeps a TCP connection to the broker (reconnecting by
/// itself) and raises flags; checks are test-and-clear.
#[pyclass(name = "Listener", module = "flagpost._native", subclass, frozen)]
pub(crate) struct PyListener {
    inner: Listener,
    #[cfg(unix)]
    wake: Wake,
}

fn state_name(s: ListenerState) -> &'static str {
    match s {
        ListenerState::Connecting => "connecting",
        ListenerState::Listening => "listening",
        ListenerState::BackingOff => "backing_off",
        ListenerState::Closed => "closed",
    }
}

#[cfg(unix)]
fn wake_pair(py: Python<'_>) -> PyResult<(Wake, RaiseHook)> {
    let make = || -> std::io::Result<_> {
        let (tx, rx) = std::os::unix::net::UnixDatagram::pair()?;
        tx.set_nonblocking(true)?;
        rx.set_nonblocking(true)?;
        Ok((tx, rx))
    };
    let (tx, rx) = make().map_err(|e| {
        error(
            py,
            "ConnectError",
            format!("cannot make the wake-up socket: {e}"),
        )
    })?;
    let armed = Arc::new(AtomicUsize::new(0));
    let seen = armed.clone();
    let hook = RaiseHook::new(move || {
        // pairs with the fence in `_arm`: a raise either sees the waiter
        // armed, or the waiter's re-check after arming sees the raise
        fence(Ordering::SeqCst);
        if seen.load(Ordering::SeqCst) > 0 {
            // full (WouldBlock): a byte is already waiting to be read
            let _ = tx.send(&[1]);
        }
    });
    Ok((Wake { rx, armed }, hook))
}

#[pymethods]
impl PyListener {
    #[new]
    #[pyo3(signature = (broker = "127.0.0.1:16725", *, channel = None, interest = 15, key_file = None, backoff = None, keepalive = None))]
    fn new(
        py: Python<'_>,
        broker: &str,
        channel: Option<&str>,
        interest: i64,
        key_file: Option<PathBuf>,
        backoff: Option<(f64, f64)>,
        keepalive: Option<f64>,
    ) -> PyResult<Self> {
        let interest = u8::try_from(interest)
            .ok()
            .and_then(FlagSet::from_bits)
            .filter(|f| !f.is_empty())
            .ok_or_else(|| invalid(py, format!("interest must be a non-empty combination of Flags (1..=15), not {interest}")))?;
        let mut builder = Listener::builder().interest(interest);
        if let Some(name) = channel {
            builder = builder.channel(crate::errors::channel(py, name)?);
        }
        if let Some(path) = key_file {
            builder = builder.key(key(py, &path)?);
        }
        if let Some((first, max)) = backoff {
            let (first, max) = (seconds(py, "backoff", first)?, seconds(py, "backoff", max)?);
            if first.is_zero() || first > max {
                return Err(invalid(
                    py,
                    "backoff must be (initial, max) seconds with 0 < initial <= max",
                ));
            }
            builder = builder.backoff(first, max);
        }
        if let Some(k) = keepalive {
            builder = builder.keepalive(seconds(py, "keepalive", k)?);
        }
        #[cfg(unix)]
        let (wake, hook) = wake_pair(py)?;
        #[cfg(unix)]
        {
            builder = builder.on_raise(hook);
        }
        let broker = broker.to_owned();
        let inner = py
            .detach(|| builder.connect(broker.as_str()))
            .map_err(|e| listen_error(py, e))?;
        Ok(PyListener {
            inner,
            #[cfg(unix)]
            wake,
        })
    }

    /// `HasStatusUpdate`: test-and-clear the status flag.
    fn has_status_update(&self) -> bool {
        self.inner.check_status_update()
    }

    /// `HasNonStatusUpdate`: test-and-clear the non-status flag.
    fn has_non_status_update(&self) -> bool {
        self.inner.check_non_status_update()
    }

    /// Test-and-clear the channel-update flag.
    fn has_channel_update(&self) -> bool {
        self.inner.check_channel_update()
    }

    /// Test-and-clear the channel-shutdown flag.
    fn has_channel_shutdown(&self) -> bool {
        self.inner.check_channel_shutdown()
    }

    /// Test-and-clear the reconnect mark: the listener (re)connected, so
    /// its flags were raised to make the caller re-check.
    fn check_reconnect(&self) -> bool {
        self.inner.check_reconnect()
    }

    /// Takes every raised flag (bits of `Flags`).
    fn _take_bits(&self) -> u8 {
        self.inner.take().bits()
    }

    /// Takes every raised flag and the reconnect mark.
    fn _take_raise(&self) -> (u8, bool) {
        let r = self.inner.take_raise();
        (r.flags.bits(), r.reconnect)
    }

    /// Whether a flag is raised (clears nothing).
    fn pending(&self) -> bool {
        self.inner.wait(Duration::ZERO)
    }

    /// Blocks, without the GIL, until a flag is raised (True) or `timeout`
    /// seconds pass or the listener stops (False); None waits for ever.
    /// Clears nothing. Signals (Ctrl-C) are checked every 100 ms.
    #[pyo3(signature = (timeout = None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let deadline = match timeout {
            Some(t) if t == f64::INFINITY => None,
            Some(t) => Instant::now().checked_add(seconds(py, "timeout", t)?),
            None => None,
        };
        let listener = &self.inner;
        loop {
            let slice = deadline.map_or(SLICE, |d| {
                d.saturating_duration_since(Instant::now()).min(SLICE)
            });
            if py.detach(|| listener.wait(slice)) {
                return Ok(true);
            }
            py.check_signals()?;
            if listener.state() == ListenerState::Closed
                || deadline.is_some_and(|d| Instant::now() >= d)
            {
                return Ok(false);
            }
        }
    }

    /// Blocks, without the GIL, until the listener is listening (True), or
    /// `timeout` passes or an attempt is refused authentication (False).
    #[pyo3(signature = (timeout = 5.0))]
    fn wait_listening(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        let timeout = seconds(py, "timeout", timeout)?;
        let listener = &self.inner;
        Ok(py.detach(|| listener.wait_listening(timeout)))
    }

    /// Why the latest attempt failed to authenticate, or None.
    #[getter]
    fn auth_error(&self) -> Option<String> {
        self.inner.auth_error().map(|e| e.to_string())
    }

    /// "connecting", "listening", "backing_off" or "closed".
    #[getter]
    fn _state(&self) -> &'static str {
        state_name(self.inner.state())
    }

    /// `StopChangeListening`: stops listening; waiting threads return
    /// False. Idempotent.
    fn stop(&self, py: Python<'_>) {
        let listener = &self.inner;
        py.detach(|| listener.stop());
    }

    /// The file descriptor the asyncio side registers with `add_reader`.
    fn _wake_fd(&self, py: Python<'_>) -> PyResult<i64> {
        #[cfg(unix)]
        {
            let _ = py;
            use std::os::fd::AsRawFd;
            Ok(i64::from(self.wake.rx.as_raw_fd()))
        }
        #[cfg(not(unix))]
        Err(error(
            py,
            "FlagpostError",
            "asyncio waits need a Unix system",
        ))
    }

    /// One more asyncio waiter: raises now write to the wake-up socket.
    fn _arm(&self) {
        #[cfg(unix)]
        {
            self.wake.armed.fetch_add(1, Ordering::SeqCst);
            fence(Ordering::SeqCst);
        }
    }

    /// One asyncio waiter fewer.
    fn _disarm(&self) {
        #[cfg(unix)]
        {
            let _ = self
                .wake
                .armed
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        }
    }

    /// Empties the wake-up socket (its bytes only say "re-check").
    fn _drain_wake(&self) {
        #[cfg(unix)]
        {
            let mut buf = [0u8; 64];
            while self.wake.rx.recv(&mut buf).is_ok() {}
        }
    }
}
