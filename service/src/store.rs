//! The database behind the cycle: the few statements *check triggers* and
//! *check outgoing* need, behind [`Store`], with one implementation per
//! database ([`SqliteStore`], [`PostgresStore`]). Everything that is not a
//! difference between the two databases (batches, the trigger, the channel,
//! counting) lives in the cycle, not here.
//!
//! The contract every implementation keeps: [`Store::begin`] …
//! [`Store::commit`] is one transaction, so the writes of one batch (the
//! actions, the queued replies, the marks) are all there after a crash or
//! none is.

mod postgres;
mod sqlite;

pub use self::postgres::{
    parse_url as postgres_url_check, PostgresStore, SCHEMA as POSTGRES_SCHEMA,
};
pub use self::sqlite::{SqliteStore, SCHEMA as SQLITE_SCHEMA};

/// `messages.status_id` of an incoming message (triggers run on these).
pub const STATUS_RECEIVED: i16 = 1;
/// `messages.status_id` of a message queued to send (*check outgoing*).
pub const STATUS_QUEUED: i16 = 2;
/// `messages.status_id` of a sent message.
pub const STATUS_SENT: i16 = 3;
/// `messages.status_id` of a message the channel refused for good.
pub const STATUS_FAILED: i16 = 4;

/// One row of `messages`, as the trigger and the channel see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// `message_id`.
    pub id: i64,
    /// `channel` (`None`: SQL NULL).
    pub channel: Option<String>,
    /// `status_id`.
    pub status: i16,
    /// `body`.
    pub body: String,
}

/// A message to queue for sending (`status_id` 2), written in the same
/// transaction as the batch that made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMessage {
    /// Its channel.
    pub channel: Option<String>,
    /// Its text.
    pub body: String,
}

/// A database error, with the database's own message.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// From SQLite.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// From PostgreSQL.
    #[error("postgres: {0}")]
    Postgres(#[from] ::postgres::Error),
    /// The database is not set up as the service expects.
    #[error("{0}")]
    Schema(String),
}

/// The statements of the cycle, for one database. Not `Sync`: the cycle
/// owns its store on one thread.
pub trait Store: Send {
    /// Starts a transaction that takes the write lock at once (SQLite:
    /// `BEGIN IMMEDIATE`), so that two writers never deadlock on upgrade.
    fn begin(&mut self) -> Result<(), StoreError>;
    /// Commits the transaction.
    fn commit(&mut self) -> Result<(), StoreError>;
    /// Rolls the transaction back (after an error; its own error is moot).
    fn rollback(&mut self);
    /// Up to `limit` received messages whose triggers have not run
    /// (`status_id = 1 AND trigger_status_id = 0`), lowest id first, of
    /// `channel` only when given. Inside a transaction; on PostgreSQL the
    /// rows are locked (`FOR UPDATE SKIP LOCKED`), so that two services
    /// never take the same row.
    fn select_pending_triggers(
        &mut self,
        channel: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError>;
    /// Up to `limit` queued messages (`status_id = 2`), lowest id first, of
    /// `channel` only when given.
    fn select_queued(
        &mut self,
        channel: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError>;
    /// Appends `(message_id, action)` rows to `message_actions`.
    fn record_actions(&mut self, actions: &[(i64, String)]) -> Result<(), StoreError>;
    /// Inserts messages queued to send (`status_id = 2`; their own
    /// triggers are not run: `trigger_status_id = 1`).
    fn queue_messages(&mut self, messages: &[NewMessage]) -> Result<(), StoreError>;
    /// Sets `trigger_status_id = 1` on `ids`.
    fn mark_processed(&mut self, ids: &[i64]) -> Result<(), StoreError>;
    /// Moves message `id` from queued to `status` (sent or failed); false
    /// when it was no longer queued (nothing changed).
    fn finish_queued(&mut self, id: i64, status: i16) -> Result<bool, StoreError>;
    /// Which database this is, for logs (`sqlite:PATH`, `postgres://…`).
    fn describe(&self) -> String;
}
