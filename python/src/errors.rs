//! Errors into exceptions: every failure the native module reports is an
//! instance of a class of `flagpost/_errors.py` (all under
//! `flagpost.FlagpostError`), and every argument is checked here before it
//! reaches the Rust API.

use std::path::Path;
use std::time::Duration;

use flagpost_std::core::auth::Key;
use flagpost_std::core::ChannelId;
use flagpost_std::keyfile::read_key_file;
use flagpost_std::{ListenError, NotifyError};
use pyo3::prelude::*;
use pyo3::types::PyType;

/// An exception of class `name` (of `flagpost._errors`) with `msg`.
pub(crate) fn error(py: Python<'_>, name: &str, msg: impl Into<String>) -> PyErr {
    let msg = msg.into();
    let class = py
        .import("flagpost._errors")
        .and_then(|m| m.getattr(name))
        .and_then(|c| c.cast_into::<PyType>().map_err(PyErr::from));
    match class {
        Ok(class) => PyErr::from_type(class, msg),
        Err(e) => e,
    }
}

/// `InvalidArgument` (a `ValueError`).
pub(crate) fn invalid(py: Python<'_>, msg: impl Into<String>) -> PyErr {
    error(py, "InvalidArgument", msg)
}

/// A notifier's error as its exception class.
pub(crate) fn notify_error(py: Python<'_>, e: NotifyError) -> PyErr {
    let class = match e {
        NotifyError::Timeout { .. } => "NoAck",
        NotifyError::Unreachable { .. } => "Refused",
        NotifyError::Resolve(_) | NotifyError::Io(_) => "ConnectError",
    };
    error(py, class, e.to_string())
}

/// A listener's start error as its exception class.
pub(crate) fn listen_error(py: Python<'_>, e: ListenError) -> PyErr {
    let class = match e {
        ListenError::Auth(_) => "AuthError",
        _ => "ConnectError",
    };
    error(py, class, e.to_string())
}

/// A channel name, or `InvalidChannel`.
pub(crate) fn channel(py: Python<'_>, name: &str) -> PyResult<ChannelId> {
    ChannelId::new(name).map_err(|e| error(py, "InvalidChannel", format!("{e}: {name:?}")))
}

/// A number of seconds (finite, ≥ 0, representable), or `InvalidArgument`.
pub(crate) fn seconds(py: Python<'_>, what: &str, secs: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(secs).map_err(|_| {
        invalid(
            py,
            format!("{what} must be a finite number of seconds >= 0, not {secs}"),
        )
    })
}

/// The key in `path` (written by `flagpost keygen`), or `KeyFileError`.
pub(crate) fn key(py: Python<'_>, path: &Path) -> PyResult<Key> {
    read_key_file(path).map_err(|e| error(py, "KeyFileError", e.to_string()))
}
