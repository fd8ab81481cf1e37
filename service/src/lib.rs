//! A reference processing service: the vendor's cycle (*check triggers*,
//! *check outgoing*) over a `messages` table in SQLite or PostgreSQL, woken
//! by Flagpost and polling only when an interval expires.
//!
//! The layers, from the bottom:
//!
//! * [`store`]: the statements of the cycle behind the [`Store`] trait, one
//!   implementation per database ([`SqliteStore`], [`PostgresStore`]).
//! * [`trigger`] and [`channel`]: what a received message causes
//!   ([`Trigger`]) and how a queued one leaves ([`Channel`]); both
//!   pluggable.
//! * the cycle ([`run`]): the core's polling scheduler fed by a
//!   [`flagpost_std::Listener`], each step one transaction.
//! * [`counters`]: every query counted by cause, served as Prometheus text.
//!
//! # Never losing a message
//!
//! A batch of *check triggers* is one transaction: select up to
//! `batch_size` pending messages, run the trigger on each, write the
//! actions and queued replies it asked for, mark the messages processed,
//! commit. Killed anywhere, the service finds the batch pending again at
//! start-up (every start checks both tasks once), so each message's
//! trigger output is in the database **exactly once**. *Check outgoing*
//! sends a message, then commits its `sent` mark (and action) on its own:
//! killed between the two, the service sends that message again after the
//! restart, so delivery through a [`Channel`] is **at-least-once** (at most
//! one duplicate per crash).
//!
//! ```no_run
//! use std::time::Duration;
//! use flagpost_service::{run, Database, ServiceConfig, Stop};
//!
//! let mut config = ServiceConfig::new(Database::Sqlite("messages.db".into()));
//! config.check_triggers_interval = Duration::from_secs(30);
//! let stop = Stop::new();
//! let counters = config.counters.clone();
//! let stopper = stop.clone();
//! std::thread::spawn(move || { /* … */ stopper.stop(); });
//! run(config, &stop)?;
//! println!("{}", counters.summary());
//! # Ok::<(), flagpost_service::ServiceError>(())
//! ```
#![deny(missing_docs)]

pub mod channel;
pub mod counters;
mod cycle;
pub mod store;
pub mod trigger;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use flagpost_core::auth::Key;
use flagpost_core::ChannelId;

pub use channel::{Channel, LogChannel, Outbox, SendError};
pub use counters::{Cause, Counters, MetricsEndpoint};
pub use cycle::{Stop, ACTION_SENT};
pub use flagpost_core::schedule::Task;
pub use store::{Message, PostgresStore, SqliteStore, Store, StoreError};
pub use trigger::{Echo, MarkProcessed, Trigger, TriggerError, TriggerOutput, ACTION_PROCESSED};

/// Which database holds the messages.
#[derive(Clone)]
pub enum Database {
    /// A SQLite file, created with its tables when missing.
    Sqlite(PathBuf),
    /// A PostgreSQL server: `url` without a password (one in it is
    /// refused), the password apart.
    Postgres {
        /// `postgres://USER@HOST:PORT/DB` or `host=… user=…`.
        url: String,
        /// The password, if the server asks for one.
        password: Option<String>,
    },
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite(p) => f.debug_tuple("Sqlite").field(p).finish(),
            Database::Postgres { url, password } => f
                .debug_struct("Postgres")
                .field("url", url)
                .field("password", &password.as_ref().map(|_| "…"))
                .finish(),
        }
    }
}

impl Database {
    /// `postgres://…` and `postgresql://…` are PostgreSQL, anything else a
    /// SQLite file.
    pub fn from_arg(arg: &str, password: Option<String>) -> Database {
        if arg.starts_with("postgres://") || arg.starts_with("postgresql://") {
            Database::Postgres {
                url: arg.to_owned(),
                password,
            }
        } else {
            Database::Sqlite(arg.into())
        }
    }

    /// Connects (creating what the service may create).
    pub fn open(&self) -> Result<Box<dyn Store>, StoreError> {
        Ok(match self {
            Database::Sqlite(path) => Box::new(SqliteStore::open(path)?),
            Database::Postgres { url, password } => {
                Box::new(PostgresStore::connect(url, password.as_deref())?)
            }
        })
    }
}

/// Everything [`run`] needs. [`ServiceConfig::new`] gives the defaults.
pub struct ServiceConfig {
    /// The messages database.
    pub database: Database,
    /// The broker to listen to (`None`: poll only). Default
    /// `127.0.0.1:16725`.
    pub broker: Option<String>,
    /// Listen to this channel only, and process only its messages
    /// (`messages.channel = ID`). Default: every channel, every message.
    pub only_channel: Option<ChannelId>,
    /// The broker's key, for a keyed broker.
    pub key: Option<Key>,
    /// *Check triggers* polling interval (zero: never poll). Default 30 s.
    pub check_triggers_interval: Duration,
    /// *Check outgoing* polling interval (zero: never poll). Default 30 s.
    pub check_outgoing_interval: Duration,
    /// Messages per batch (and per transaction of *check triggers*).
    /// Default 500.
    pub batch_size: u32,
    /// How long start-up waits for the broker before its first checks, so
    /// that the first connection's raise is covered by them. Default 1 s.
    pub broker_wait: Duration,
    /// The trigger. Default [`MarkProcessed`].
    pub trigger: Box<dyn Trigger>,
    /// The channel queued messages leave through. Default [`LogChannel`].
    pub channel: Box<dyn Channel>,
    /// The counters the cycle updates (share the `Arc` to read them).
    pub counters: Arc<Counters>,
    /// Called as each run of *check triggers* starts, before its first
    /// query (for a commit → start latency measurement).
    pub on_check_triggers: Option<Box<dyn FnMut(Cause) + Send>>,
}

impl std::fmt::Debug for ServiceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceConfig")
            .field("database", &self.database)
            .field("broker", &self.broker)
            .field("only_channel", &self.only_channel)
            .field("check_triggers_interval", &self.check_triggers_interval)
            .field("check_outgoing_interval", &self.check_outgoing_interval)
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

/// The default broker address.
pub const DEFAULT_BROKER: &str = "127.0.0.1:16725";

impl ServiceConfig {
    /// The defaults, on `database`.
    pub fn new(database: Database) -> ServiceConfig {
        ServiceConfig {
            database,
            broker: Some(DEFAULT_BROKER.to_owned()),
            only_channel: None,
            key: None,
            check_triggers_interval: Duration::from_secs(30),
            check_outgoing_interval: Duration::from_secs(30),
            batch_size: 500,
            broker_wait: Duration::from_secs(1),
            trigger: Box::new(MarkProcessed),
            channel: Box::new(LogChannel),
            counters: Arc::new(Counters::default()),
            on_check_triggers: None,
        }
    }
}

/// Why the service could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The database could not be opened or set up.
    #[error("database: {0}")]
    Store(#[from] StoreError),
    /// The broker's address is no address.
    #[error("broker: {0}")]
    Listen(#[from] flagpost_std::ListenError),
}

/// Runs the cycle until `stop` is called: both tasks once at start-up, then
/// on every status update from the broker, on every expired interval, and
/// *check outgoing* right after *check triggers* queued messages. Returns
/// after the batch in progress, having logged the counters' summary. Fails
/// only at start-up (database, broker address); later database errors are
/// logged, counted and retried with a back-off of 1 to 30 s.
pub fn run(config: ServiceConfig, stop: &Stop) -> Result<(), ServiceError> {
    cycle::run(config, stop)
}
