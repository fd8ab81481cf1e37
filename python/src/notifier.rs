//! `flagpost._native.Notifier`: the vendor's four notify calls, their
//! confirmed forms (blocking without the GIL, failing with `NoAck`,
//! `Refused`, …), `flush`, `stats` and `close` over
//! [`flagpost_std::Notifier`].

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use flagpost_std::core::wire::AckResult;
use flagpost_std::core::{ChannelId, Notification};
use flagpost_std::Notifier;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::{channel, error, invalid, key, notify_error, seconds};

/// A notifier: sends wake-ups to a broker over UDP. The plain calls cost
/// microseconds and never block; the `*_confirmed` ones wait (without the
/// GIL) for the broker's ack.
#[pyclass(name = "Notifier", module = "flagpost._native", subclass, frozen)]
pub(crate) struct PyNotifier {
    /// `None` once closed.
    inner: Mutex<Option<Notifier>>,
}

impl PyNotifier {
    /// The notifier (a cheap clone), or `ClosedError`.
    fn get(&self, py: Python<'_>) -> PyResult<Notifier> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| error(py, "ClosedError", "the notifier is closed"))
    }

    fn send(&self, py: Python<'_>, n: Notification, batch: i64) -> PyResult<()> {
        let batch = u32::try_from(batch)
            .ok()
            .filter(|b| *b >= 1)
            .ok_or_else(|| invalid(py, format!("batch must be 1..=4294967295, not {batch}")))?;
        self.get(py)?.notify(n, batch);
        Ok(())
    }

    fn confirmed(&self, py: Python<'_>, n: Notification, timeout: f64) -> PyResult<&'static str> {
        let timeout = seconds(py, "timeout", timeout)?;
        let notifier = self.get(py)?;
        let result = py.detach(|| notifier.notify_confirmed(n, 1, timeout));
        match result {
            Ok(AckResult::Delivered) => Ok("delivered"),
            Ok(AckResult::Duplicate) => Ok("duplicate"),
            Ok(AckResult::Stale) => Ok("stale"),
            Err(e) => Err(notify_error(py, e)),
        }
    }
}

fn opt_channel(py: Python<'_>, name: Option<&str>) -> PyResult<Option<ChannelId>> {
    name.map(|n| channel(py, n)).transpose()
}

#[pymethods]
impl PyNotifier {
    #[new]
    #[pyo3(signature = (broker = "127.0.0.1:16725", *, key_file = None, probe_delay = None, spin_in_bursts = true))]
    fn new(
        py: Python<'_>,
        broker: &str,
        key_file: Option<PathBuf>,
        probe_delay: Option<f64>,
        spin_in_bursts: bool,
    ) -> PyResult<Self> {
        let mut builder = Notifier::builder().spin_in_bursts(spin_in_bursts);
        if let Some(path) = key_file {
            builder = builder.key(key(py, &path)?);
        }
        if let Some(d) = probe_delay {
            builder = builder.probe_delay(seconds(py, "probe_delay", d)?);
        }
        let broker = broker.to_owned();
        // resolving a name may block: without the GIL
        let notifier = py
            .detach(|| builder.build(broker.as_str()))
            .map_err(|e| notify_error(py, e))?;
        Ok(PyNotifier {
            inner: Mutex::new(Some(notifier)),
        })
    }

    /// `NotifyStatusUpdate`: new messages or a status change, for `channel`
    /// or (None) all channels.
    #[pyo3(signature = (channel = None, *, batch = 1))]
    fn notify_status_update(
        &self,
        py: Python<'_>,
        channel: Option<&str>,
        batch: i64,
    ) -> PyResult<()> {
        let n = Notification::status(opt_channel(py, channel)?);
        self.send(py, n, batch)
    }

    /// `NotifyNonStatusUpdate`: views refresh.
    #[pyo3(signature = (*, batch = 1))]
    fn notify_non_status_update(&self, py: Python<'_>, batch: i64) -> PyResult<()> {
        self.send(py, Notification::non_status(None), batch)
    }

    /// A channel's `NotifyUpdate`: it reloads its configuration.
    fn notify_channel_update(&self, py: Python<'_>, channel: &str) -> PyResult<()> {
        let n = Notification::channel_update(crate::errors::channel(py, channel)?);
        self.send(py, n, 1)
    }

    /// A channel's `NotifyShutdown`: it stops.
    fn notify_channel_shutdown(&self, py: Python<'_>, channel: &str) -> PyResult<()> {
        let n = Notification::channel_shutdown(crate::errors::channel(py, channel)?);
        self.send(py, n, 1)
    }

    /// A status update the broker must acknowledge within `timeout`.
    #[pyo3(signature = (channel = None, timeout = 1.0))]
    fn notify_status_update_confirmed(
        &self,
        py: Python<'_>,
        channel: Option<&str>,
        timeout: f64,
    ) -> PyResult<&'static str> {
        let n = Notification::status(opt_channel(py, channel)?);
        self.confirmed(py, n, timeout)
    }

    /// A non-status update the broker must acknowledge within `timeout`.
    #[pyo3(signature = (timeout = 1.0))]
    fn notify_non_status_update_confirmed(
        &self,
        py: Python<'_>,
        timeout: f64,
    ) -> PyResult<&'static str> {
        self.confirmed(py, Notification::non_status(None), timeout)
    }

    /// A channel update the broker must acknowledge within `timeout`.
    #[pyo3(signature = (channel, timeout = 1.0))]
    fn notify_channel_update_confirmed(
        &self,
        py: Python<'_>,
        channel: &str,
        timeout: f64,
    ) -> PyResult<&'static str> {
        let n = Notification::channel_update(crate::errors::channel(py, channel)?);
        self.confirmed(py, n, timeout)
    }

    /// A channel shutdown the broker must acknowledge within `timeout`.
    #[pyo3(signature = (channel, timeout = 1.0))]
    fn notify_channel_shutdown_confirmed(
        &self,
        py: Python<'_>,
        channel: &str,
        timeout: f64,
    ) -> PyResult<&'static str> {
        let n = Notification::channel_shutdown(crate::errors::channel(py, channel)?);
        self.confirmed(py, n, timeout)
    }

    /// Waits (without the GIL) until everything notified so far went to the
    /// socket, or `timeout` passes; returns whether it did.
    #[pyo3(signature = (timeout = 1.0))]
    fn flush(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        let timeout = seconds(py, "timeout", timeout)?;
        let notifier = self.get(py)?;
        Ok(py.detach(|| notifier.flush(timeout)))
    }

    /// The notifier's counters as a dict (`NotifierStats`).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.get(py)?.stats();
        let d = PyDict::new(py);
        for (k, v) in [
            ("calls", s.calls),
            ("datagrams", s.datagrams),
            ("inline", s.inline),
            ("bursts", s.bursts),
            ("cpu_moves", s.cpu_moves),
            ("probes", s.probes),
            ("retransmissions", s.retransmissions),
            ("send_errors", s.send_errors),
        ] {
            d.set_item(k, v)?;
        }
        Ok(d)
    }

    /// The broker's address, `ip:port`.
    #[getter]
    fn broker(&self, py: Python<'_>) -> PyResult<String> {
        Ok(self.get(py)?.broker().to_string())
    }

    /// Whether `close` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }

    /// Sends what is pending and stops the notifier's thread. Idempotent;
    /// later calls raise `ClosedError`.
    fn close(&self, py: Python<'_>) {
        let notifier = self.inner.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(n) = notifier {
            py.detach(|| {
                n.flush(Duration::from_millis(200));
                drop(n)
            });
        }
    }
}
