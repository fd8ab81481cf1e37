//! The broker's PostgreSQL source: a thread of its own that holds one
//! connection, `LISTEN`s on one channel (default `flagpost`) and turns each
//! notification's payload (`status:gsm1;batch=20`, parsed by
//! [`flagpost_core::payload`]) into a broker notification, as a datagram
//! would. `DATABASE.md` is the operator's guide.
//!
//! * **Decides nothing itself**: the core's
//!   [`SourceSession`](flagpost_core::source::SourceSession) says when to
//!   connect, when to retry (the listeners' capped, jittered backoff, 0.5 s
//!   doubling to 30 s), when to prove a quiet connection alive and when to
//!   raise a re-check. PostgreSQL drops notifications while nobody listens,
//!   so after every
//!   reconnect (not the first connect) the source raises status, non-status
//!   and channel update on every listener
//!   ([`BrokerHandle::raise_recheck`](crate::BrokerHandle::raise_recheck)),
//!   never channel shutdown.
//! * **Waits** in the client's `timeout_iter` (no busy polling), waking
//!   twice a second to see whether the broker stopped; a `SELECT 1` after
//!   30 s without a notification finds a server that died without closing
//!   the connection.
//! * **Password**: from `postgres_password_file` (a file only its owner may
//!   read) or `PGPASSWORD`, never from the URL: a URL holding a password is
//!   refused, since command lines and configuration are readable by others.
//! * **TLS** when the URL says `sslmode=require`: rustls (ring) checking the
//!   server's certificate and name against the system's roots
//!   (`rustls-native-certs`); any other `sslmode` connects in plain text.
//!   Linux builds only (ring compiles C; see `Cargo.toml`): elsewhere
//!   `sslmode=require` is refused.
//! * **Metrics** ([`SourceMetrics`]): payloads, rejections by reason,
//!   deliveries, connects, reconnects, a connected gauge; rendered on
//!   `/metrics` beside the broker's table.
//!
//! The database being down never stops the broker: it starts, serves UDP
//! and TCP, and the source logs and retries.

use std::sync::atomic::{AtomicU64, Ordering};

use flagpost_core::payload::PayloadError;
#[cfg(feature = "metrics")]
use prometheus_client::metrics::counter::Counter;
#[cfg(feature = "metrics")]
use prometheus_client::metrics::family::Family;
#[cfg(feature = "metrics")]
use prometheus_client::metrics::gauge::Gauge;
#[cfg(feature = "metrics")]
use prometheus_client::registry::Registry;

#[cfg(feature = "postgres")]
mod source;
#[cfg(feature = "postgres")]
mod wal;

/// Where the source takes its notifications from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `LISTEN` to the payloads the triggers (or anyone) send with `NOTIFY`.
    #[default]
    Notify,
    /// Logical replication of the messages table's WAL through a
    /// replication slot: no trigger, nothing added to the commits.
    Wal,
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "notify" => Ok(Mode::Notify),
            "wal" => Ok(Mode::Wal),
            _ => Err(format!("`{s}`: must be notify or wal")),
        }
    }
}

/// The running source, of either mode; dropping it stops its thread.
#[cfg(feature = "postgres")]
#[derive(Debug)]
pub(crate) enum Source {
    Notify(#[allow(dead_code)] source::Source),
    Wal(#[allow(dead_code)] wal::Source),
}

/// Starts the source the configuration asks for, if any.
#[cfg(feature = "postgres")]
pub(crate) fn start(
    config: &crate::config::BrokerConfig,
    broker: crate::server::BrokerHandle,
    metrics: std::sync::Arc<SourceMetrics>,
) -> Result<Option<Source>, crate::server::ServeError> {
    Ok(match config.postgres_mode {
        Mode::Notify => source::start(config, broker, metrics)?.map(Source::Notify),
        Mode::Wal => wal::start(config, broker, metrics)?.map(Source::Wal),
    })
}

/// The channel the source listens on unless told otherwise.
pub const DEFAULT_CHANNEL: &str = "flagpost";

/// The WAL source's replication slot unless told otherwise.
pub const DEFAULT_SLOT: &str = "flagpost";

/// The WAL source's publication unless told otherwise.
pub const DEFAULT_PUBLICATION: &str = "flagpost";

/// Checks a channel name: a PostgreSQL identifier of 1 to 63 bytes made of
/// lower-case ASCII letters, digits and `_`, not starting with a digit. (The
/// source quotes it, so `LISTEN "name"` hears exactly
/// `pg_notify('name', …)`; lower case only keeps `NOTIFY name`, which folds
/// to lower case, the same channel.)
pub fn check_channel(name: &str) -> Result<(), &'static str> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > 63 {
        return Err("must be 1 to 63 bytes");
    }
    if bytes.first().is_some_and(u8::is_ascii_digit) {
        return Err("must not start with a digit");
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
    {
        return Err("may hold only lower-case ASCII letters, digits and `_`");
    }
    Ok(())
}

/// Checks a connection URL (or `key=value` string): it must parse, and it
/// must not hold a password.
#[cfg(feature = "postgres")]
pub fn check_url(url: &str) -> Result<(), String> {
    let config: postgres::Config = url
        .parse()
        .map_err(|e| format!("not a PostgreSQL connection URL: {e}"))?;
    if !cfg!(target_os = "linux") && config.get_ssl_mode() == postgres::config::SslMode::Require {
        return Err(
            "sslmode=require: TLS to PostgreSQL needs a Linux build of flagpost \
             (its rustls/ring crypto is built on Linux only)"
                .to_owned(),
        );
    }
    if config.get_password().is_some() {
        return Err(
            "the URL holds a password, which command lines and configuration files \
             show to others: remove it and give the password in postgres_password_file \
             (--postgres-password-file, a file only its owner may read) or PGPASSWORD"
                .to_owned(),
        );
    }
    Ok(())
}

/// Checks what the WAL mode adds to [`check_url`]: its replication client
/// has no TLS, so `sslmode=require` is refused rather than ignored.
#[cfg(feature = "postgres")]
pub fn check_wal_url(url: &str) -> Result<(), String> {
    check_url(url)?;
    let config: postgres::Config = url
        .parse()
        .map_err(|e| format!("not a PostgreSQL connection URL: {e}"))?;
    if config.get_ssl_mode() == postgres::config::SslMode::Require {
        return Err("sslmode=require: postgres_mode = \"wal\" has no TLS yet \
             (connect over a Unix socket or a network you trust, or use postgres_mode = \"notify\")"
            .to_owned());
    }
    Ok(())
}

/// Without the `postgres` feature there is no source.
#[cfg(not(feature = "postgres"))]
pub fn check_wal_url(url: &str) -> Result<(), String> {
    check_url(url)
}

/// Without the `postgres` feature there is no source.
#[cfg(not(feature = "postgres"))]
pub fn check_url(_url: &str) -> Result<(), String> {
    Err("this flagpost was built without the `postgres` feature".to_owned())
}

/// The source's counters, shared between its thread and `/metrics`. They
/// belong to this process's source, not to the wire's stats table.
#[derive(Debug, Default)]
pub struct SourceMetrics {
    /// Notifications received on the channel.
    pub payloads: AtomicU64,
    /// Payloads rejected, by [`PayloadError::index`].
    pub rejected: [AtomicU64; PayloadError::ALL.len()],
    /// Payloads handed to the broker as notifications.
    pub delivered: AtomicU64,
    /// Connections made (and `LISTEN` done), the first included.
    pub connects: AtomicU64,
    /// Connections made after a lost one (each raised a re-check).
    pub reconnects: AtomicU64,
    /// Connection attempts that failed.
    pub connect_failures: AtomicU64,
    /// 1 while connected and listening, else 0.
    pub connected: AtomicU64,
    /// WAL mode: committed transactions read from the stream (those that
    /// touched the messages table).
    pub wal_transactions: AtomicU64,
    /// WAL mode: row changes of the messages table read.
    pub wal_changes: AtomicU64,
    /// WAL mode: changes that could not be read (each notified as an
    /// untargeted status).
    pub wal_undecodable: AtomicU64,
}

impl SourceMetrics {
    /// How many payloads were rejected for `reason`.
    pub fn rejected(&self, reason: PayloadError) -> u64 {
        self.rejected
            .get(reason.index())
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Counts a connection made at `now`, tells `session`, and after a
    /// reconnect raises the re-check on every listener through `broker`
    /// (what was sent while nobody listened is gone). Returns whether it
    /// was a reconnect.
    #[cfg(feature = "postgres")]
    pub(crate) fn connected(
        &self,
        session: &mut flagpost_core::source::SourceSession,
        now: flagpost_core::Instant,
        broker: &crate::BrokerHandle,
    ) -> Result<bool, crate::BrokerGone> {
        self.connects.fetch_add(1, Ordering::Relaxed);
        self.connected.store(1, Ordering::Relaxed);
        let again = session.handle_connected(now);
        if again {
            self.reconnects.fetch_add(1, Ordering::Relaxed);
            broker.raise_recheck()?;
        }
        Ok(again)
    }

    /// Counts one payload rejected for `reason`.
    pub fn reject(&self, reason: PayloadError) {
        if let Some(c) = self.rejected.get(reason.index()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Adds the source's metrics to `registry` (names in `DATABASE.md`;
    /// feature `metrics`).
    #[cfg(feature = "metrics")]
    pub fn register(&self, registry: &mut Registry) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let counter = |registry: &mut Registry, name: &str, help: &str, value: u64| {
            let c = Counter::<u64, AtomicU64>::default();
            c.inc_by(value);
            registry.register(name, help, c);
        };
        counter(
            registry,
            "flagpost_postgres_payloads",
            "Notifications received from PostgreSQL",
            load(&self.payloads),
        );
        let rejected =
            Family::<Vec<(&'static str, &'static str)>, Counter<u64, AtomicU64>>::default();
        for reason in PayloadError::ALL {
            rejected
                .get_or_create(&vec![("reason", reason.label())])
                .inc_by(self.rejected(reason));
        }
        registry.register(
            "flagpost_postgres_rejected",
            "PostgreSQL payloads rejected, by reason",
            rejected,
        );
        counter(
            registry,
            "flagpost_postgres_delivered",
            "PostgreSQL payloads delivered to the broker as notifications",
            load(&self.delivered),
        );
        counter(
            registry,
            "flagpost_postgres_connects",
            "Connections to PostgreSQL made (LISTEN done), the first included",
            load(&self.connects),
        );
        counter(
            registry,
            "flagpost_postgres_reconnects",
            "Connections to PostgreSQL made after a lost one (each raised a re-check on every listener)",
            load(&self.reconnects),
        );
        counter(
            registry,
            "flagpost_postgres_connect_failures",
            "Connection attempts to PostgreSQL that failed",
            load(&self.connect_failures),
        );
        counter(
            registry,
            "flagpost_postgres_wal_transactions",
            "WAL mode: committed transactions of the messages table read from the replication stream",
            load(&self.wal_transactions),
        );
        counter(
            registry,
            "flagpost_postgres_wal_changes",
            "WAL mode: row changes of the messages table read from the replication stream",
            load(&self.wal_changes),
        );
        counter(
            registry,
            "flagpost_postgres_wal_undecodable",
            "WAL mode: changes that could not be read, each notified as an untargeted status",
            load(&self.wal_undecodable),
        );
        let g = Gauge::<u64, AtomicU64>::default();
        g.set(load(&self.connected));
        registry.register(
            "flagpost_postgres_connected",
            "1 while connected to PostgreSQL and listening",
            g,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names() {
        for ok in ["flagpost", "_x", "a1_b", &"a".repeat(63)] {
            assert_eq!(check_channel(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "1a",
            "Flagpost",
            "a-b",
            "a b",
            "a\"b",
            "é",
            &"a".repeat(64),
        ] {
            assert!(check_channel(bad).is_err(), "{bad}");
        }
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn a_url_with_a_password_is_refused() {
        assert_eq!(check_url("postgres://u@127.0.0.1:5432/db"), Ok(()));
        assert_eq!(check_url("host=/run/postgresql user=u"), Ok(()));
        let e = check_url("postgres://u:secret@127.0.0.1/db").unwrap_err();
        assert!(e.contains("password") && !e.contains("secret"), "{e}");
        assert!(check_url("host=x password=secret").is_err());
        assert!(check_url("postgres://[").is_err());
    }

    #[test]
    #[cfg(feature = "metrics")]
    fn every_reason_is_rendered() {
        let m = SourceMetrics::default();
        m.reject(PayloadError::UnknownKind);
        m.connected.store(1, Ordering::Relaxed);
        let mut registry = Registry::default();
        m.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("flagpost_postgres_rejected_total{reason=\"unknown_kind\"} 1"),
            "{text}"
        );
        for reason in PayloadError::ALL {
            assert!(text.contains(reason.label()), "{text}");
        }
        assert!(text.contains("flagpost_postgres_connected 1"), "{text}");
    }
}
