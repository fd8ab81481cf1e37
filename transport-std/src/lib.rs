//! # flagpost-std
//!
//! Flagpost on `std`: the broker that operators run, and the client API that
//! host services link.
//!
//! * [`Broker`] — one `mio` event loop on port 16725 (UDP notifications, TCP
//!   listeners) driving the core's broker state; [`Broker::spawn`] runs it
//!   in-process and returns a [`BrokerHandle`].
//! * [`Notifier`] — fire-and-forget notifications; calls coalesce while a
//!   datagram is being sent, so a hot loop of notify calls is not a hot loop
//!   of system calls; `*_confirmed` variants wait for an ack.
//! * [`Listener`] — starts listening, then `check_*` flags with a lock-free
//!   test-and-clear, or [`Listener::wait`]s; reconnects by itself.
//! * [`postgres`] — the broker's PostgreSQL source (`serve --postgres`):
//!   `LISTEN`, text payloads into notifications, reconnects with a re-check
//!   raise (`DATABASE.md`).
//! * [`Service`] — the processing cycle: *check triggers* / *check outgoing*
//!   callbacks woken by status updates, with polling intervals as a fallback.
//!
//! ```no_run
//! use flagpost_std::{BrokerConfig, Broker, Listener, Notifier};
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let broker = Broker::spawn(BrokerConfig::default())?;
//! let listener = Listener::builder().connect(broker.local_addr())?;
//! let notifier = Notifier::new(broker.local_addr())?;
//! notifier.notify_status_update(None);
//! if listener.wait(Duration::from_secs(1)) && listener.check_status_update() {
//!     // poll the database for new work
//! }
//! broker.shutdown();
//! # Ok(()) }
//! ```
//!
//! ## Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `cli` | yes | the `flagpost` command's dependencies (clap, clap_complete, tracing-subscriber, serde_json, ctrlc); implies `config` |
//! | `metrics` | yes | `MetricsServer`: `/metrics`, `/healthz`, `/events` (SSE), `/stats.json` and the dashboard over HTTP (prometheus-client, httparse; [`http`]) |
//! | `config` | with `cli` | `BrokerConfig::load`: the TOML file and `FLAGPOST_*` variables (toml) |
//! | `postgres` | yes | the broker's PostgreSQL source |
//! | `tokio` | no | `Listener::wait_async`, `Listener::next_raise` and the `Listener::raises` stream |
//!
//! A service that only wants the client API takes
//! `flagpost-std = { default-features = false }` (and `features = ["tokio"]`
//! to await wake-ups): none of the command line's, HTTP's or the config
//! file's crates are built.
#![deny(missing_docs)]

pub mod clock;
pub mod config;
#[cfg(feature = "metrics")]
pub mod http;
pub mod keyfile;
pub mod listener;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod notifier;
pub mod postgres;
pub mod server;
pub mod service;
mod shared;
#[cfg(any(feature = "cli", feature = "metrics"))]
pub mod stats_json;
pub mod systemd;
#[cfg(all(windows, feature = "cli"))]
pub mod winservice;

pub use config::{BrokerConfig, ConfigError};
pub use flagpost_core as core;
pub use listener::{ListenError, Listener, ListenerBuilder, RaiseHook};
#[cfg(feature = "metrics")]
pub use metrics::MetricsServer;
pub use notifier::{Notifier, NotifierBuilder, NotifierStats, NotifyError};

pub use server::{Broker, BrokerGone, BrokerHandle, ServeError};

pub use flagpost_core::listener::Raise;
pub use service::{Service, ServiceStopper};
pub use shared::ListenerState;
