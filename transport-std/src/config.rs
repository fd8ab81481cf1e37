//! Broker configuration: defaults, a TOML file, `FLAGPOST_*` environment
//! variables and command-line flags, in increasing precedence, validated
//! into typed errors that name the key (and, for the file, the line).

use std::net::SocketAddr;
#[cfg(feature = "config")]
use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod federation;
pub use federation::{FederationConfig, DEFAULT_FEDERATION_SUBJECT};

/// Everything the broker can be told. Every field has a default, so an
/// empty file is a valid configuration.
///
/// ```toml
/// bind = ["127.0.0.1:16725", "[::1]:16725"]
/// metrics = "127.0.0.1:9725"
/// max_listeners = 100000
/// keepalive = "30s"
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// Addresses to serve on: each gets a UDP socket (notifications) and a
    /// TCP listener (listeners) on the same port. Default `127.0.0.1:16725`
    /// only: other interfaces are an explicit choice.
    pub bind: Vec<SocketAddr>,
    /// The HTTP address: the dashboard (`/`), event streams (`/events`),
    /// `/stats.json`, Prometheus metrics (`/metrics`) and `/healthz`.
    pub metrics: Option<SocketAddr>,
    /// Most listener connections at once (default 100,000).
    pub max_listeners: usize,
    /// Most listener connections from one IP address, with or without
    /// their hello (default 16,384; 0: no limit); one more is told *too
    /// many from this address*. The default suits the default bind,
    /// loopback only, where every listener comes from 127.0.0.1; a broker
    /// reachable from a network should set about twice the listeners its
    /// busiest client host runs, which bounds what one host can take (the
    /// broker warns when one address may take every slot). Connections
    /// that never say hello need no limit: a full table evicts them.
    pub max_per_address: u32,
    /// Backlog of the TCP listen queue (default 4,096: a reconnect storm's
    /// SYNs are queued, not dropped and retried a second later).
    pub listen_backlog: u32,
    /// Receive buffer asked for on each UDP socket, in bytes (default 8 MiB;
    /// the kernel may clamp it, which the broker reports).
    pub udp_recv_buffer: usize,
    /// UDP sockets per address (default 4, at most 16; Linux, elsewhere
    /// always 1): a `SO_REUSEPORT` group among which the kernel spreads
    /// senders by address and port, read in turn, so that a flooding sender
    /// queues behind itself and not in front of the others.
    pub udp_sockets: usize,
    /// Kernel send buffer of each listener connection, in bytes as the
    /// kernel counts them (`SO_SNDBUF` as read back; default 4,608, Linux's
    /// minimum: a few small frames in flight). A listener that stops
    /// reading then pins next to no kernel memory and its flags wait,
    /// coalescing, in the broker's outbox, where the stuck clock runs.
    /// 0 keeps the system's default (auto-tuned up to `tcp_wmem`'s maximum).
    pub listener_send_buffer: usize,
    /// Keep-alive timeout for listeners that ask for none (default 30 s).
    #[serde(with = "humantime_serde")]
    pub keepalive: Duration,
    /// How long a connection may take to say hello (default 10 s).
    #[serde(with = "humantime_serde")]
    pub hello_timeout: Duration,
    /// How long undelivered flags may wait before a listener that stopped
    /// reading is closed (default 60 s; 0: never).
    #[serde(with = "humantime_serde")]
    pub stuck_timeout: Duration,
    /// Senders tracked for loss detection (default 4,096; least recently
    /// seen evicted).
    pub sender_table: usize,
    /// The shared key (a file readable by its owner only; see
    /// [`keyfile`](crate::keyfile)). With a key, datagrams must be signed
    /// with it and listeners must prove it; without, anyone who can reach
    /// the port can notify, listen and read the stats (see SECURITY.md).
    pub key_file: Option<PathBuf>,
    /// During a key rotation, the key being replaced: still accepted from
    /// senders and listeners, never used to sign.
    pub previous_key_file: Option<PathBuf>,
    /// Networks senders may notify from (default: any). A datagram from
    /// elsewhere is dropped before it is parsed, unanswered, and counted
    /// (`flagpost_datagrams_denied_total`). An IPv4-mapped IPv6 address
    /// (`::ffff:10.0.0.1`) matches as the IPv4 address it stands for.
    pub allow_senders: Vec<ipnet::IpNet>,
    /// Networks listeners (and stats clients) may connect from (default:
    /// any). A connection from elsewhere is told *unauthorized* and closed
    /// at once, before it takes a listener slot, and counted
    /// (`flagpost_connections_refused_total{reason="denied"}`). Addresses match as for
    /// `allow_senders`.
    pub allow_listeners: Vec<ipnet::IpNet>,
    /// A PostgreSQL database to `LISTEN` to (a `postgres://` URL or a
    /// `key=value` string, without a password; default: none). Each
    /// notification on [`postgres_channel`](Self::postgres_channel) whose
    /// payload is a notification in text (`status:gsm1;batch=20`, see
    /// DATABASE.md) is delivered as a datagram would be. `sslmode=require`
    /// connects over TLS.
    pub postgres: Option<String>,
    /// The PostgreSQL channel to listen on (default `flagpost`): lower-case
    /// ASCII letters, digits and `_`, at most 63 bytes.
    pub postgres_channel: String,
    /// A file holding the PostgreSQL password, readable by its owner only
    /// (default: `PGPASSWORD` if set, else none).
    pub postgres_password_file: Option<PathBuf>,
    /// Where the PostgreSQL source takes its notifications from: `notify`
    /// (default: `LISTEN` on [`postgres_channel`](Self::postgres_channel),
    /// fed by the triggers) or `wal` (logical replication of the messages
    /// table through [`postgres_slot`](Self::postgres_slot) and
    /// [`postgres_publication`](Self::postgres_publication); no trigger).
    pub postgres_mode: crate::postgres::Mode,
    /// WAL mode: the replication slot (default `flagpost`; created if
    /// missing, permanent).
    pub postgres_slot: String,
    /// WAL mode: the publication (default `flagpost`,
    /// `sql/postgres/flagpost-wal.sql`).
    pub postgres_publication: String,
    /// Brokers joined over NATS (default: none):
    /// `federation = { nats = "nats://host:4222", subject = "flagpost" }`.
    /// Each broker publishes the notifications it accepts on the subject and
    /// raises flags for those the others publish (see [`FederationConfig`]).
    pub federation: Option<FederationConfig>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            bind: vec![SocketAddr::from((
                [127, 0, 0, 1],
                flagpost_core::wire::PORT,
            ))],
            metrics: None,
            max_listeners: 100_000,
            max_per_address: 16_384,
            listen_backlog: 4096,
            udp_recv_buffer: 8 << 20,
            udp_sockets: 4,
            listener_send_buffer: 4608,
            keepalive: Duration::from_secs(30),
            hello_timeout: Duration::from_secs(10),
            stuck_timeout: Duration::from_secs(60),
            sender_table: 4096,
            key_file: None,
            previous_key_file: None,
            allow_senders: Vec::new(),
            allow_listeners: Vec::new(),
            postgres: None,
            postgres_channel: crate::postgres::DEFAULT_CHANNEL.to_owned(),
            postgres_password_file: None,
            postgres_mode: crate::postgres::Mode::Notify,
            postgres_slot: crate::postgres::DEFAULT_SLOT.to_owned(),
            postgres_publication: crate::postgres::DEFAULT_PUBLICATION.to_owned(),
            federation: None,
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has a bad or unknown key.
    #[error("bad config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What and where (the parser's message names the line and key).
        message: String,
    },
    /// An environment variable holds a bad value.
    #[error("bad environment variable {var}: {message}")]
    Env {
        /// The variable.
        var: String,
        /// What is wrong.
        message: String,
    },
    /// A `FLAGPOST_*` variable that names no key: a misspelling, which
    /// would otherwise be silently ignored.
    #[error("unknown environment variable {var}: did you mean {suggestion}? (each config key KEY is FLAGPOST_KEY)")]
    UnknownEnv {
        /// The variable.
        var: String,
        /// The closest known variable.
        suggestion: String,
    },
    /// A value is out of range.
    #[error("bad config value for `{key}`: {reason}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// The largest socket buffer a key may ask for (the system call takes a C
/// `int`, and Linux doubles what it is given).
const MAX_SOCKET_BUFFER: usize = 1 << 30;

/// `FLAGPOST_*` variables that are not config keys: `FLAGPOST_CONFIG`
/// (`serve --config`), `FLAGPOST_BROKER` (the clients' `--broker`, and the
/// firmware's build-time broker) and `FLAGPOST_CHANNEL` (the firmware's
/// build-time channel). `FLAGPOST_TEST_*` belong to the tests.
#[cfg(feature = "config")]
pub const OTHER_VARS: [&str; 3] = ["FLAGPOST_CONFIG", "FLAGPOST_BROKER", "FLAGPOST_CHANNEL"];

/// The variable of the `federation` table's `subject`
/// (`FLAGPOST_FEDERATION` is its `nats`).
#[cfg(feature = "config")]
pub const FEDERATION_SUBJECT_VAR: &str = "FLAGPOST_FEDERATION_SUBJECT";

/// Every config key, as in the file; `FLAGPOST_<KEY>` in upper case in the
/// environment, `--key-with-dashes` on `flagpost serve`'s command line.
#[cfg(feature = "config")]
pub const KEYS: [&str; 23] = [
    "bind",
    "metrics",
    "max_listeners",
    "max_per_address",
    "listen_backlog",
    "udp_recv_buffer",
    "udp_sockets",
    "listener_send_buffer",
    "keepalive",
    "hello_timeout",
    "stuck_timeout",
    "sender_table",
    "key_file",
    "previous_key_file",
    "allow_senders",
    "allow_listeners",
    "postgres",
    "postgres_channel",
    "postgres_password_file",
    "postgres_mode",
    "postgres_slot",
    "postgres_publication",
    "federation",
];

/// Checks that every `FLAGPOST_*` variable in `env` is a key's or the
/// command line's; a misspelled one is an error naming the closest.
#[cfg(feature = "config")]
pub fn check_env<'a>(vars: impl IntoIterator<Item = &'a str>) -> Result<(), ConfigError> {
    let known = || {
        KEYS.iter()
            .map(|k| format!("FLAGPOST_{}", k.to_ascii_uppercase()))
            .chain(OTHER_VARS.iter().map(|v| (*v).to_owned()))
            .chain([FEDERATION_SUBJECT_VAR.to_owned()])
    };
    for var in vars {
        if !var.starts_with("FLAGPOST_")
            || var.starts_with("FLAGPOST_TEST_")
            || known().any(|k| k == var)
        {
            continue;
        }
        let upper = var.to_ascii_uppercase();
        let suggestion = known()
            .max_by(|a, b| {
                strsim::jaro_winkler(&upper, a).total_cmp(&strsim::jaro_winkler(&upper, b))
            })
            .unwrap_or_default();
        return Err(ConfigError::UnknownEnv {
            var: var.to_owned(),
            suggestion,
        });
    }
    Ok(())
}

impl BrokerConfig {
    /// Loads `file` (if any) over the defaults, then applies `FLAGPOST_*`
    /// variables from `env` (an unknown one is an error, see
    /// [`check_env`]), then validates (feature `config`).
    #[cfg(feature = "config")]
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut env: Vec<(String, String)> = env.into_iter().collect();
        // the federation's subject after its URL, which makes the table
        env.sort_by_key(|(var, _)| var == FEDERATION_SUBJECT_VAR);
        check_env(env.iter().map(|(k, _)| k.as_str()))?;
        let mut table = match file {
            None => toml::Table::new(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                // Parse into the typed struct first: its errors name the line and key.
                toml::from_str::<BrokerConfig>(&text).map_err(|e| ConfigError::Parse {
                    path: path.to_owned(),
                    message: e.to_string(),
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Parse {
                        path: path.to_owned(),
                        message: e.to_string(),
                    })?
            }
        };
        for (var, value) in env {
            let Some(key) = var.strip_prefix("FLAGPOST_") else {
                continue;
            };
            let key = key.to_ascii_lowercase();
            if key == "federation" || var == FEDERATION_SUBJECT_VAR {
                // one variable per field of the table: `nats`, `subject`
                let field = if key == "federation" {
                    "nats"
                } else {
                    "subject"
                };
                let entry = table
                    .entry("federation")
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                if let toml::Value::Table(fed) = entry {
                    fed.insert(field.to_owned(), toml::Value::String(value));
                }
            } else if !KEYS.contains(&key.as_str()) {
                continue; // OTHER_VARS: not the broker's
            } else {
                let parsed = parse_env_value(&key, &value);
                table.insert(key, parsed);
            }
            let config: Result<BrokerConfig, _> = table.clone().try_into();
            if let Err(e) = config {
                return Err(ConfigError::Env {
                    var,
                    message: e.to_string(),
                });
            }
        }
        let config: BrokerConfig =
            table
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    path: file.map(Path::to_owned).unwrap_or_default(),
                    message: e.to_string(),
                })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges the types cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: &str| {
            Err(ConfigError::Invalid {
                key,
                reason: reason.to_owned(),
            })
        };
        if self.bind.is_empty() || self.bind.len() > 64 {
            return invalid("bind", "between 1 and 64 addresses are needed");
        }
        if self.udp_sockets == 0 || self.udp_sockets > 16 {
            return invalid("udp_sockets", "must be between 1 and 16");
        }
        if self.max_listeners == 0 || self.max_listeners > 10_000_000 {
            return invalid("max_listeners", "must be between 1 and 10,000,000");
        }
        if self.listen_backlog == 0 {
            return invalid("listen_backlog", "must be at least 1");
        }
        if self.listener_send_buffer > MAX_SOCKET_BUFFER {
            return invalid("listener_send_buffer", "must be at most 1 GiB");
        }
        if self.keepalive < Duration::from_secs(1) || self.keepalive > Duration::from_secs(3600) {
            return invalid("keepalive", "must be between 1s and 1h");
        }
        if self.hello_timeout.is_zero() {
            return invalid("hello_timeout", "must be more than 0");
        }
        if self.sender_table == 0 {
            return invalid("sender_table", "must be at least 1");
        }
        if self.previous_key_file.is_some() && self.key_file.is_none() {
            return invalid(
                "previous_key_file",
                "needs key_file (the key that replaces it)",
            );
        }
        if let Some(url) = &self.postgres {
            let checked = match self.postgres_mode {
                crate::postgres::Mode::Notify => crate::postgres::check_url(url),
                crate::postgres::Mode::Wal => crate::postgres::check_wal_url(url),
            };
            if let Err(reason) = checked {
                return Err(ConfigError::Invalid {
                    key: "postgres",
                    reason,
                });
            }
        }
        if let Err(reason) = crate::postgres::check_channel(&self.postgres_channel) {
            return invalid("postgres_channel", reason);
        }
        if let Err(reason) = crate::postgres::check_channel(&self.postgres_slot) {
            return invalid("postgres_slot", reason);
        }
        if let Err(reason) = crate::postgres::check_channel(&self.postgres_publication) {
            return invalid("postgres_publication", reason);
        }
        if self.postgres_password_file.is_some() && self.postgres.is_none() {
            return invalid("postgres_password_file", "needs postgres (the database)");
        }
        if let Some(federation) = &self.federation {
            if !cfg!(all(feature = "federation", target_os = "linux")) {
                return invalid(
                    "federation",
                    "needs a Linux build of flagpost with the `federation` feature",
                );
            }
            federation.check()?;
        }
        Ok(())
    }
}

/// An environment value as TOML: lists (comma-separated) and numbers as
/// such, anything else as a string (so `FLAGPOST_KEEPALIVE=45s` and
/// `FLAGPOST_BIND=[::1]:1` work).
#[cfg(feature = "config")]
fn parse_env_value(key: &str, value: &str) -> toml::Value {
    if matches!(key, "bind" | "allow_senders" | "allow_listeners") {
        let list = value
            .split(',')
            .map(|s| toml::Value::String(s.trim().to_owned()))
            .collect();
        return toml::Value::Array(list);
    }
    if let Ok(n) = value.parse::<i64>() {
        return toml::Value::Integer(n);
    }
    toml::Value::String(value.to_owned())
}

#[cfg(all(test, feature = "config"))]
mod tests {
    use super::*;

    /// `(name, value)` pairs as the environment `BrokerConfig::load` reads.
    pub(super) fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_valid_and_loopback_only() {
        let c = BrokerConfig::load(None, env(&[])).unwrap();
        assert_eq!(c, BrokerConfig::default());
        assert!(c.bind.iter().all(|a| a.ip().is_loopback()));
    }

    #[test]
    fn file_then_env() {
        let dir = std::env::temp_dir().join(format!("fp-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.toml");
        std::fs::write(&path, "bind = [\"127.0.0.1:1\"]\nkeepalive = \"45s\"\n").unwrap();
        let c = BrokerConfig::load(
            Some(&path),
            env(&[
                ("FLAGPOST_MAX_LISTENERS", "7"),
                ("FLAGPOST_BIND", "[::1]:2, 127.0.0.1:3"),
            ]),
        )
        .unwrap();
        assert_eq!(c.keepalive, Duration::from_secs(45));
        assert_eq!(c.max_listeners, 7);
        assert_eq!(
            c.bind,
            ["[::1]:2".parse().unwrap(), "127.0.0.1:3".parse().unwrap()]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_listener_send_buffer_is_a_key_and_bounded() {
        let c = BrokerConfig::load(None, env(&[("FLAGPOST_LISTENER_SEND_BUFFER", "0")])).unwrap();
        assert_eq!(c.listener_send_buffer, 0);
        let e = BrokerConfig::load(
            None,
            env(&[("FLAGPOST_LISTENER_SEND_BUFFER", "4294967296")]),
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                ConfigError::Invalid {
                    key: "listener_send_buffer",
                    ..
                }
            ),
            "{e}"
        );
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn the_postgres_keys_are_checked() {
        let c = BrokerConfig::load(
            None,
            env(&[
                ("FLAGPOST_POSTGRES", "postgres://u@127.0.0.1:5432/db"),
                ("FLAGPOST_POSTGRES_CHANNEL", "wake_up"),
            ]),
        )
        .unwrap();
        assert_eq!(
            c.postgres.as_deref(),
            Some("postgres://u@127.0.0.1:5432/db")
        );
        assert_eq!(c.postgres_channel, "wake_up");
        assert_eq!(BrokerConfig::default().postgres_channel, "flagpost");
        let key = |pairs: &[(&str, &str)]| match BrokerConfig::load(None, env(pairs)) {
            Err(ConfigError::Invalid { key, reason }) => (key, reason),
            other => panic!("{other:?}"),
        };
        let (k, reason) = key(&[("FLAGPOST_POSTGRES", "postgres://u:hunter2@h/db")]);
        assert_eq!(k, "postgres");
        assert!(
            reason.contains("password") && !reason.contains("hunter2"),
            "{reason}"
        );
        let (k, _) = key(&[
            ("FLAGPOST_POSTGRES", "postgres://u@h/db"),
            ("FLAGPOST_POSTGRES_CHANNEL", "Bad-Name"),
        ]);
        assert_eq!(k, "postgres_channel");
        let (k, _) = key(&[("FLAGPOST_POSTGRES_PASSWORD_FILE", "/x")]);
        assert_eq!(k, "postgres_password_file");
        // the WAL source's keys
        let c = BrokerConfig::load(
            None,
            env(&[
                ("FLAGPOST_POSTGRES", "postgres://u@h/db"),
                ("FLAGPOST_POSTGRES_MODE", "wal"),
                ("FLAGPOST_POSTGRES_SLOT", "broker_1"),
                ("FLAGPOST_POSTGRES_PUBLICATION", "msgs"),
            ]),
        )
        .unwrap();
        assert_eq!(c.postgres_mode, crate::postgres::Mode::Wal);
        assert_eq!(
            (c.postgres_slot.as_str(), c.postgres_publication.as_str()),
            ("broker_1", "msgs")
        );
        let d = BrokerConfig::default();
        assert_eq!(d.postgres_mode, crate::postgres::Mode::Notify);
        assert_eq!(
            (d.postgres_slot.as_str(), d.postgres_publication.as_str()),
            ("flagpost", "flagpost")
        );
        assert!(matches!(
            BrokerConfig::load(None, env(&[("FLAGPOST_POSTGRES_MODE", "trigger")])),
            Err(ConfigError::Env { .. })
        ));
        let (k, reason) = key(&[
            ("FLAGPOST_POSTGRES", "postgres://u@h/db?sslmode=require"),
            ("FLAGPOST_POSTGRES_MODE", "wal"),
        ]);
        assert_eq!(k, "postgres");
        assert!(reason.contains("sslmode=require"), "{reason}");
        let (k, _) = key(&[("FLAGPOST_POSTGRES_SLOT", "Bad Slot")]);
        assert_eq!(k, "postgres_slot");
        let (k, _) = key(&[("FLAGPOST_POSTGRES_PUBLICATION", "x;drop")]);
        assert_eq!(k, "postgres_publication");
    }

    #[test]
    fn a_misspelled_variable_names_the_closest_key() {
        let e = BrokerConfig::load(None, env(&[("FLAGPOST_MAX_LISTNERS", "5")])).unwrap_err();
        assert!(
            matches!(&e, ConfigError::UnknownEnv { suggestion, .. } if suggestion == "FLAGPOST_MAX_LISTENERS"),
            "{e}"
        );
        let e = BrokerConfig::load(None, env(&[("FLAGPOST_KEEPALIVES", "5s")])).unwrap_err();
        assert!(e.to_string().contains("FLAGPOST_KEEPALIVE?"), "{e}");
        // the command line's own variables and other programs' are fine
        BrokerConfig::load(
            None,
            env(&[
                ("FLAGPOST_CONFIG", "/nonexistent"),
                ("FLAGPOST_BROKER", "127.0.0.1"),
                ("FLAGPOST_CHANNEL", "gsm1"),
                ("FLAGPOST_TEST_ACCEPT_CHILD", "1"),
                ("FLAGPOSTX", "1"),
            ]),
        )
        .unwrap();
    }

    #[test]
    fn errors_name_the_key_and_line() {
        let dir = std::env::temp_dir().join(format!("fp-config-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");
        std::fs::write(&path, "bind = [\"127.0.0.1:1\"]\n\nmax_listners = 5\n").unwrap();
        let e = BrokerConfig::load(Some(&path), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_listners") && e.contains("line 3"), "{e}");
        std::fs::write(&path, "keepalive = \"soon\"\n").unwrap();
        let e = BrokerConfig::load(Some(&path), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("keepalive") && e.contains("line 1"), "{e}");
        std::fs::write(&path, "keepalive = \"2h\"\n").unwrap();
        let e = BrokerConfig::load(Some(&path), env(&[])).unwrap_err();
        assert!(
            matches!(
                e,
                ConfigError::Invalid {
                    key: "keepalive",
                    ..
                }
            ),
            "{e}"
        );
        let e = BrokerConfig::load(None, env(&[("FLAGPOST_MAX_LISTENERS", "many")])).unwrap_err();
        assert!(e.to_string().contains("FLAGPOST_MAX_LISTENERS"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
