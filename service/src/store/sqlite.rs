//! [`Store`] on SQLite (`rusqlite`, the library compiled in): one file, WAL
//! journal, the tables created when missing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use super::{Message, NewMessage, Store, StoreError, STATUS_QUEUED};

/// The schema, created on every start when missing (`IF NOT EXISTS`): the
/// messages table in the shape of `sql/postgres/flagpost.sql`, the
/// service's `message_actions`, and partial indexes over the two queues.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    message_id        INTEGER PRIMARY KEY AUTOINCREMENT,
    channel           TEXT,
    status_id         INTEGER NOT NULL,
    trigger_status_id INTEGER NOT NULL DEFAULT 0,
    ack_status_id     INTEGER NOT NULL DEFAULT 0,
    body              TEXT NOT NULL DEFAULT '',
    created_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS messages_pending_triggers
    ON messages (message_id) WHERE status_id = 1 AND trigger_status_id = 0;
CREATE INDEX IF NOT EXISTS messages_queued
    ON messages (message_id) WHERE status_id = 2;
CREATE TABLE IF NOT EXISTS message_actions (
    action_id  INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id INTEGER NOT NULL,
    action     TEXT NOT NULL,
    at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS message_actions_message ON message_actions (message_id);
";

/// The `messages` database in one SQLite file.
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteStore {
    /// Opens (or creates) the database at `path` and creates the tables
    /// that are missing. WAL journal with `synchronous = NORMAL`: a commit
    /// survives the process being killed (the guarantee the service
    /// relies on); the last commits may be lost on power loss.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(30))?;
        // journal_mode answers with a row
        let _: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        conn.execute_batch("PRAGMA synchronous = NORMAL;")?;
        conn.execute_batch(SCHEMA)?;
        Ok(SqliteStore {
            conn,
            path: path.to_owned(),
        })
    }

    fn select(
        &mut self,
        sql: &str,
        channel: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let rows = stmt.query_map(params![channel, limit], |r| {
            Ok(Message {
                id: r.get(0)?,
                channel: r.get(1)?,
                status: r.get(2)?,
                body: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

impl Store for SqliteStore {
    fn begin(&mut self) -> Result<(), StoreError> {
        Ok(self.conn.execute_batch("BEGIN IMMEDIATE")?)
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        Ok(self.conn.execute_batch("COMMIT")?)
    }

    fn rollback(&mut self) {
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }

    fn select_pending_triggers(
        &mut self,
        channel: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        self.select(
            "SELECT message_id, channel, status_id, body FROM messages
             WHERE status_id = 1 AND trigger_status_id = 0
               AND (?1 IS NULL OR channel = ?1)
             ORDER BY message_id LIMIT ?2",
            channel,
            limit,
        )
    }

    fn select_queued(
        &mut self,
        channel: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        self.select(
            "SELECT message_id, channel, status_id, body FROM messages
             WHERE status_id = 2 AND (?1 IS NULL OR channel = ?1)
             ORDER BY message_id LIMIT ?2",
            channel,
            limit,
        )
    }

    fn record_actions(&mut self, actions: &[(i64, String)]) -> Result<(), StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("INSERT INTO message_actions (message_id, action) VALUES (?1, ?2)")?;
        for (id, action) in actions {
            stmt.execute(params![id, action])?;
        }
        Ok(())
    }

    fn queue_messages(&mut self, messages: &[NewMessage]) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO messages (channel, status_id, trigger_status_id, body)
             VALUES (?1, ?2, 1, ?3)",
        )?;
        for m in messages {
            stmt.execute(params![m.channel, STATUS_QUEUED, m.body])?;
        }
        Ok(())
    }

    fn mark_processed(&mut self, ids: &[i64]) -> Result<(), StoreError> {
        let sql = format!(
            "UPDATE messages SET trigger_status_id = 1, updated_at = {NOW}
             WHERE message_id = ?1"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        for id in ids {
            stmt.execute(params![id])?;
        }
        Ok(())
    }

    fn finish_queued(&mut self, id: i64, status: i16) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE messages SET status_id = ?2, updated_at = {NOW}
             WHERE message_id = ?1 AND status_id = 2 RETURNING message_id"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let changed: Option<i64> = stmt
            .query_row(params![id, status], |r| r.get(0))
            .optional()?;
        Ok(changed.is_some())
    }

    fn describe(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }
}
