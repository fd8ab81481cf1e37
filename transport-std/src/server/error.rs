//! Why the broker could not start or stopped.

use std::io;
use std::net::SocketAddr;

use crate::config::ConfigError;
use crate::keyfile::KeyFileError;

/// Why the broker could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Another process holds the port.
    #[error("cannot bind {addr}: address already in use (is another broker running?)")]
    AddrInUse {
        /// The address.
        addr: SocketAddr,
    },
    /// The process may not bind there.
    #[error("cannot bind {addr}: permission denied (ports below 1024 need privileges)")]
    PermissionDenied {
        /// The address.
        addr: SocketAddr,
    },
    /// Another bind failure (address not available on this host, …).
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// The metrics endpoint could not start.
    #[error("cannot serve metrics on {addr}: {source}")]
    Metrics {
        /// The address.
        addr: SocketAddr,
        /// Why (its kind tells a port in use or a permission).
        source: io::Error,
    },
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The key file cannot be used.
    #[error(transparent)]
    Key(#[from] KeyFileError),
    /// The sockets passed by the service manager (`LISTEN_FDS`) are not
    /// what the broker needs.
    #[error("socket activation: {0}")]
    Activation(String),
    /// The event loop failed.
    #[error("broker I/O error: {0}")]
    Io(#[from] io::Error),
}

impl ServeError {
    pub(super) fn bind(addr: SocketAddr, source: io::Error) -> Self {
        match source.kind() {
            io::ErrorKind::AddrInUse => ServeError::AddrInUse { addr },
            io::ErrorKind::PermissionDenied => ServeError::PermissionDenied { addr },
            _ => ServeError::Bind { addr, source },
        }
    }
}
