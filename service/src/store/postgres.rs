//! [`Store`] on PostgreSQL (the synchronous `postgres` client): the
//! `messages` table is expected (`sql/postgres/flagpost.sql`); only the
//! service's own `message_actions` is created when missing. The password
//! never comes from the URL (a command line shows it to `ps`): it is given
//! apart, from an owner-only file or `PGPASSWORD`.

use std::str::FromStr;

use postgres::{Client, NoTls};

use super::{Message, NewMessage, Store, StoreError};

/// The service's own tables, created when missing.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS message_actions (
    action_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id bigint NOT NULL,
    action     text NOT NULL,
    at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS message_actions_message ON message_actions (message_id);
";

/// The `messages` database on a PostgreSQL server. Reconnects by itself
/// when the connection was lost (the statement that found it lost fails;
/// the cycle retries the work).
pub struct PostgresStore {
    config: postgres::Config,
    client: Option<Client>,
    describe: String,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("db", &self.describe)
            .finish()
    }
}

/// Parses `url` (a `postgres://` URL or a `key=value` string) and refuses
/// one that holds a password.
pub fn parse_url(url: &str) -> Result<postgres::Config, StoreError> {
    let config = postgres::Config::from_str(url)
        .map_err(|e| StoreError::Schema(format!("bad PostgreSQL URL: {e}")))?;
    if config.get_password().is_some() {
        return Err(StoreError::Schema(
            "the PostgreSQL URL holds a password, which `ps` and /proc show to every user: \
             remove it and give it with --db-password-file FILE (owner-only) or PGPASSWORD"
                .to_owned(),
        ));
    }
    Ok(config)
}

impl PostgresStore {
    /// Connects to `url` with `password` (if any), checks that `messages`
    /// exists and creates `message_actions` when missing. A `url` holding
    /// a password is refused.
    pub fn connect(url: &str, password: Option<&str>) -> Result<PostgresStore, StoreError> {
        let mut config = parse_url(url)?;
        if let Some(p) = password {
            config.password(p);
        }
        let describe = format!(
            "postgres://{}@{:?}:{:?}/{}",
            config.get_user().unwrap_or(""),
            config.get_hosts(),
            config.get_ports(),
            config.get_dbname().unwrap_or("")
        );
        let mut store = PostgresStore {
            config,
            client: None,
            describe,
        };
        let client = store.client()?;
        let found: Option<String> = client
            .query_one("SELECT to_regclass('messages')::text", &[])?
            .get(0);
        if found.is_none() {
            return Err(StoreError::Schema(
                "table `messages` is missing: load sql/postgres/flagpost.sql first \
                 (psql -f sql/postgres/flagpost.sql)"
                    .to_owned(),
            ));
        }
        client.batch_execute(SCHEMA)?;
        Ok(store)
    }

    /// The connection, made again if it was lost.
    fn client(&mut self) -> Result<&mut Client, StoreError> {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.client = None;
        }
        if self.client.is_none() {
            self.client = Some(self.config.connect(NoTls)?);
        }
        match self.client.as_mut() {
            Some(c) => Ok(c),
            None => Err(StoreError::Schema("no connection".to_owned())),
        }
    }

    fn select(
        &mut self,
        sql: &str,
        channel: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        let limit = i64::from(limit);
        let rows = self.client()?.query(sql, &[&channel, &limit])?;
        Ok(rows
            .iter()
            .map(|r| Message {
                id: r.get(0),
                channel: r.get(1),
                status: r.get(2),
                body: r.get(3),
            })
            .collect())
    }
}

impl Store for PostgresStore {
    fn begin(&mut self) -> Result<(), StoreError> {
        Ok(self.client()?.batch_execute("BEGIN")?)
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        Ok(self.client()?.batch_execute("COMMIT")?)
    }

    fn rollback(&mut self) {
        if let Some(c) = self.client.as_mut().filter(|c| !c.is_closed()) {
            let _ = c.batch_execute("ROLLBACK");
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
               AND ($1::text IS NULL OR channel = $1)
             ORDER BY message_id LIMIT $2
             FOR UPDATE SKIP LOCKED",
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
             WHERE status_id = 2 AND ($1::text IS NULL OR channel = $1)
             ORDER BY message_id LIMIT $2",
            channel,
            limit,
        )
    }

    fn record_actions(&mut self, actions: &[(i64, String)]) -> Result<(), StoreError> {
        if actions.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = actions.iter().map(|a| a.0).collect();
        let names: Vec<&str> = actions.iter().map(|a| a.1.as_str()).collect();
        self.client()?.execute(
            "INSERT INTO message_actions (message_id, action)
             SELECT * FROM unnest($1::bigint[], $2::text[])",
            &[&ids, &names],
        )?;
        Ok(())
    }

    fn queue_messages(&mut self, messages: &[NewMessage]) -> Result<(), StoreError> {
        if messages.is_empty() {
            return Ok(());
        }
        let channels: Vec<Option<&str>> = messages.iter().map(|m| m.channel.as_deref()).collect();
        let bodies: Vec<&str> = messages.iter().map(|m| m.body.as_str()).collect();
        self.client()?.execute(
            "INSERT INTO messages (channel, status_id, trigger_status_id, body)
             SELECT c, 2, 1, b FROM unnest($1::text[], $2::text[]) AS t (c, b)",
            &[&channels, &bodies],
        )?;
        Ok(())
    }

    fn mark_processed(&mut self, ids: &[i64]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids = ids.to_vec();
        self.client()?.execute(
            "UPDATE messages SET trigger_status_id = 1, updated_at = now()
             WHERE message_id = ANY($1)",
            &[&ids],
        )?;
        Ok(())
    }

    fn finish_queued(&mut self, id: i64, status: i16) -> Result<bool, StoreError> {
        let n = self.client()?.execute(
            "UPDATE messages SET status_id = $2, updated_at = now()
             WHERE message_id = $1 AND status_id = 2",
            &[&id, &status],
        )?;
        Ok(n > 0)
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_the_url_is_refused() {
        assert!(parse_url("postgres://u@127.0.0.1:5432/db").is_ok());
        for url in [
            "postgres://u:secret@127.0.0.1:5432/db",
            "host=127.0.0.1 user=u password=secret",
        ] {
            let e = parse_url(url).unwrap_err().to_string();
            assert!(e.contains("holds a password"), "{e}");
            assert!(!e.contains("secret"), "{e}");
        }
    }
}
