//! The WAL source's thread (`postgres_mode = "wal"`): logical replication of
//! the messages table with the `pgoutput` plugin, from a permanent
//! replication slot (default `flagpost`, created if missing) over a
//! publication (default `flagpost`, `sql/postgres/flagpost-wal.sql`). No
//! trigger, no `NOTIFY`, nothing added to the writers' commits.
//!
//! The core decides: [`SourceSession`] when to connect, retry and raise a
//! re-check; [`PgOutput`] what each message is and [`Changes`] which
//! notifications one committed transaction makes. This thread connects
//! (pgwire-replication on a current-thread tokio runtime), hands the broker
//! each commit's notifications and then confirms the commit's LSN to the
//! server, so the slot keeps only WAL not yet delivered: changes committed
//! while the broker is away are delivered when it comes back, and those
//! delivered but not yet confirmed when it went away are delivered again
//! (at least once).
//!
//! While commits stream in, the thread reads what is waiting, delivers it
//! merged (several commits' notifications in one table, one broker command
//! per (kind, channel)) and reads again after [`PACE`]: one wake-up of the
//! thread and the broker per millisecond rather than per commit. A quiet
//! stream's first commit is delivered at once.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use flagpost_core::changes::{Changes, Decoded, PgOutput, RowChange};
use flagpost_core::source::{Action, SourceConfig, SourceSession};
use pgwire_replication::{Lsn, ReplicationClient, ReplicationConfig, ReplicationEvent, TlsConfig};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use super::SourceMetrics;
use crate::clock::Clock;
use crate::config::{BrokerConfig, ConfigError};
use crate::server::{BrokerHandle, ServeError};

/// How long a replication stream may stay silent before it counts as
/// lost: two and a half of the walsender's default keep-alive period
/// (`wal_sender_timeout` 60 s / 2).
const SILENT: flagpost_core::Duration = flagpost_core::Duration::from_secs(75);

/// Unless the URL says otherwise (`connect_timeout=`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stopping source waits for its stream to end cleanly.
const STOP_GRACE: Duration = Duration::from_millis(500);
/// How often the client reports the confirmed LSN (when it moved).
const STATUS_INTERVAL: Duration = Duration::from_secs(1);
/// Distinct (kind, channel) notifications per transaction before the rest
/// folds into an untargeted status.
const TABLE: usize = 64;
/// Relations remembered (the publication normally has one).
const RELATIONS: usize = 8;
/// While commits stream in, the source reads and delivers at most once per
/// this long: a commit's notifications wait at most this much longer, and
/// the thread and the broker wake once per pace instead of once per commit.
const PACE: Duration = Duration::from_millis(1);
/// Events handled before their commits' notifications are delivered, at
/// most: the source delivers what is already waiting together (several
/// commits' notifications merged), never waits for more.
const DRAIN: usize = 4096;

/// The running WAL source; dropping it stops the thread.
#[derive(Debug)]
pub(crate) struct Source {
    _stop: oneshot::Sender<()>,
}

/// Checks the configuration, reads the password and starts the thread.
pub(crate) fn start(
    config: &BrokerConfig,
    broker: BrokerHandle,
    metrics: Arc<SourceMetrics>,
) -> Result<Option<Source>, ServeError> {
    let Some(url) = &config.postgres else {
        return Ok(None);
    };
    let invalid = |key, reason: String| ServeError::Config(ConfigError::Invalid { key, reason });
    super::check_wal_url(url).map_err(|r| invalid("postgres", r))?;
    // both are quoted into commands: plain identifiers only
    super::check_channel(&config.postgres_slot)
        .map_err(|r| invalid("postgres_slot", r.to_owned()))?;
    super::check_channel(&config.postgres_publication)
        .map_err(|r| invalid("postgres_publication", r.to_owned()))?;
    let pg: postgres::Config = url
        .parse()
        .map_err(|e| invalid("postgres", format!("{e}")))?;
    let password = match &config.postgres_password_file {
        Some(path) => super::source::read_password_file(path)
            .map_err(|r| invalid("postgres_password_file", r))?,
        None => std::env::var("PGPASSWORD").unwrap_or_default(),
    };
    let repl = replication_config(&pg, password, config).map_err(|r| invalid("postgres", r))?;
    let connect_timeout = pg.get_connect_timeout().copied().unwrap_or(CONNECT_TIMEOUT);
    let (stop, stopped) = oneshot::channel();
    let thread = Thread {
        repl,
        connect_timeout,
        slot: config.postgres_slot.clone(),
        publication: config.postgres_publication.clone(),
        broker,
        metrics,
    };
    std::thread::Builder::new()
        .name("flagpost-postgres-wal".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match runtime {
                Ok(rt) => rt.block_on(thread.run(stopped)),
                Err(error) => warn!(%error, "cannot start the WAL source's runtime"),
            }
        })?;
    Ok(Some(Source { _stop: stop }))
}

/// The replication client's configuration from the URL's first host.
fn replication_config(
    pg: &postgres::Config,
    password: String,
    config: &BrokerConfig,
) -> Result<ReplicationConfig, String> {
    let user = pg
        .get_user()
        .map(str::to_owned)
        .or_else(|| std::env::var("USER").ok())
        .ok_or("the URL names no user")?;
    let dbname = pg.get_dbname().map_or_else(|| user.clone(), str::to_owned);
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    let slot = config.postgres_slot.clone();
    let publication = config.postgres_publication.clone();
    let repl = match pg.get_hosts().first() {
        Some(postgres::config::Host::Tcp(host)) => {
            ReplicationConfig::new(host.clone(), user, password, dbname, slot, publication)
                .with_port(port)
                .with_tls(TlsConfig::disabled())
        }
        #[cfg(unix)]
        Some(postgres::config::Host::Unix(dir)) => ReplicationConfig::unix(
            dir.to_string_lossy(),
            port,
            user,
            password,
            dbname,
            slot,
            publication,
        ),
        None => ReplicationConfig::new("localhost", user, password, dbname, slot, publication)
            .with_port(port)
            .with_tls(TlsConfig::disabled()),
    };
    let name = pg.get_application_name().unwrap_or("flagpost");
    Ok(repl
        .with_application_name(name)
        .with_status_interval(STATUS_INTERVAL)
        .with_wakeup_interval(STATUS_INTERVAL))
}

struct Thread {
    repl: ReplicationConfig,
    connect_timeout: Duration,
    slot: String,
    publication: String,
    broker: BrokerHandle,
    metrics: Arc<SourceMetrics>,
}

/// Why the thread must end.
struct Stop;

/// One connection's reading state.
struct Stream {
    client: ReplicationClient,
    decoder: PgOutput<RELATIONS>,
    /// The open transaction's notifications.
    changes: Changes<TABLE>,
    /// Committed transactions' notifications, not yet delivered.
    ready: Changes<TABLE>,
    /// The last of those transactions' end.
    ready_lsn: Option<Lsn>,
    ready_transactions: u64,
    /// Between a Begin and its Commit.
    in_transaction: bool,
}

impl Thread {
    /// The core's session decides; this loop connects, streams and waits.
    async fn run(self, mut stopped: oneshot::Receiver<()>) {
        let clock = Clock::new();
        // The walsender sends a keep-alive at least every
        // wal_sender_timeout / 2 (30 s by default) when it has nothing
        // else: a stream silent for longer than SILENT is dead (a server
        // that vanished without closing the connection).
        let mut session = SourceSession::new(SourceConfig {
            keepalive: SILENT,
            ..SourceConfig::default()
        });
        let mut stream: Option<Stream> = None;
        loop {
            let step = match session.poll_action(clock.now()) {
                Some(Action::Connect) => tokio::select! {
                    biased;
                    _ = &mut stopped => Err(Stop),
                    s = self.connect(&mut session, &clock) => s.map(|s| stream = s),
                },
                Some(Action::KeepAlive) => {
                    // Nothing from the server, not even its keep-alives,
                    // for SILENT: the stream is dead whatever TCP says.
                    let why = match &stream {
                        Some(s) if s.client.is_running() => {
                            "no message from the server (not even a keep-alive) for 75 s"
                        }
                        _ => "the stream ended",
                    };
                    self.lost(&mut session, &clock, &mut stream, why);
                    Ok(())
                }
                None => {
                    let until = session
                        .poll_timeout()
                        .map_or(Duration::from_secs(1), |at| clock.until(at));
                    match stream.as_mut() {
                        None => tokio::select! {
                            biased;
                            _ = &mut stopped => Err(Stop),
                            () = tokio::time::sleep(until) => Ok(()),
                        },
                        Some(s) => {
                            let event = tokio::select! {
                                biased;
                                _ = &mut stopped => Err(Stop),
                                e = s.client.recv() => Ok(Some(e)),
                                () = tokio::time::sleep(until) => Ok(None),
                            };
                            let ended = match event {
                                Err(Stop) => Err(Stop),
                                Ok(None) => Ok(None),
                                Ok(Some(first)) => {
                                    session.handle_alive(clock.now());
                                    self.drain(s, first).await
                                }
                            };
                            match ended {
                                Err(Stop) => Err(Stop),
                                Ok(None) => Ok(()),
                                Ok(Some(error)) => {
                                    self.lost(&mut session, &clock, &mut stream, &error);
                                    Ok(())
                                }
                            }
                        }
                    }
                }
            };
            if step.is_err() {
                self.metrics.connected.store(0, Ordering::Relaxed);
                if let Some(mut s) = stream.take() {
                    // end the stream cleanly (CopyDone), briefly
                    let _ = tokio::time::timeout(STOP_GRACE, s.client.shutdown()).await;
                }
                return;
            }
        }
    }

    /// Connects, makes the slot if it is missing, starts streaming and,
    /// after a reconnect, raises a re-check.
    async fn connect(
        &self,
        session: &mut SourceSession,
        clock: &Clock,
    ) -> Result<Option<Stream>, Stop> {
        let attempt = tokio::time::timeout(self.connect_timeout, self.open()).await;
        let attempt = match attempt {
            Ok(result) => result,
            Err(_) => Err(format!(
                "no answer within {} s",
                self.connect_timeout.as_secs()
            )),
        };
        match attempt {
            Ok(client) => {
                let again = self.metrics.connected(session, clock.now(), &self.broker);
                if again.map_err(|_| Stop)? {
                    info!(slot = %self.slot, "reconnected to PostgreSQL's WAL; raised a re-check on every listener");
                } else {
                    info!(slot = %self.slot, publication = %self.publication, "streaming PostgreSQL's WAL");
                }
                Ok(Some(Stream {
                    client,
                    decoder: PgOutput::new(),
                    changes: Changes::new(),
                    ready: Changes::new(),
                    ready_lsn: None,
                    ready_transactions: 0,
                    in_transaction: false,
                }))
            }
            Err(error) => {
                self.metrics
                    .connect_failures
                    .fetch_add(1, Ordering::Relaxed);
                warn!(%error, attempt = session.attempts() + 1, "cannot stream PostgreSQL's WAL; retrying");
                session.handle_failed(clock.now(), random());
                Ok(None)
            }
        }
    }

    /// One replication session: the publication must exist, the slot is
    /// made if missing (permanent, `pgoutput`), then `START_REPLICATION` from
    /// the slot's confirmed position.
    async fn open(&self) -> Result<ReplicationClient, String> {
        let e = |e: pgwire_replication::PgWireError| e.to_string();
        let mut client = ReplicationClient::connect_gated(self.repl.clone())
            .await
            .map_err(e)?;
        let publication = client
            .simple_query(&format!(
                "SELECT 1 FROM pg_publication WHERE pubname = '{}'",
                self.publication
            ))
            .await
            .map_err(e)?;
        if publication.is_empty() {
            return Err(format!(
                "the publication \"{}\" does not exist: run sql/postgres/flagpost-wal.sql",
                self.publication
            ));
        }
        let slot = client
            .simple_query(&format!(
                "SELECT plugin FROM pg_replication_slots WHERE slot_name = '{}'",
                self.slot
            ))
            .await
            .map_err(e)?;
        match slot.first().and_then(|row| row.first()) {
            None => {
                client
                    .simple_query(&format!(
                        "CREATE_REPLICATION_SLOT \"{}\" LOGICAL pgoutput NOEXPORT_SNAPSHOT",
                        self.slot
                    ))
                    .await
                    .map_err(e)?;
                info!(slot = %self.slot, "created the replication slot");
            }
            Some(Some(plugin)) if plugin.as_ref() != b"pgoutput" => {
                return Err(format!(
                    "the replication slot \"{}\" uses the plugin {:?}, not pgoutput",
                    self.slot,
                    String::from_utf8_lossy(plugin)
                ));
            }
            Some(_) => {}
        }
        client.start().await.map_err(e)?;
        client.wait_started().await.map_err(e)?;
        Ok(client)
    }

    /// Handles `first` and every event already waiting behind it (at most
    /// [`DRAIN`]), then delivers what their commits made at once, merged.
    /// Returns why the stream ended, if it did.
    async fn drain(
        &self,
        s: &mut Stream,
        first: pgwire_replication::Result<Option<ReplicationEvent>>,
    ) -> Result<Option<String>, Stop> {
        let mut next = first;
        let mut handled = 0;
        let ended = loop {
            match next {
                Ok(Some(event)) => self.handle(s, event)?,
                Ok(None) => break Some("the server ended the stream".to_owned()),
                Err(error) => break Some(error.to_string()),
            }
            handled += 1;
            if handled == DRAIN {
                break None;
            }
            // only what is ready now: a zero timeout polls the receiver once
            match tokio::time::timeout(Duration::ZERO, s.client.recv()).await {
                Ok(event) => next = event,
                Err(_) => break None,
            }
        };
        // committed transactions read before the stream ended still go out
        self.flush(s)?;
        if ended.is_none() && handled > 1 {
            // busy: let the next events gather (one wake-up per PACE, not one
            // per commit)
            tokio::time::sleep(PACE).await;
        }
        Ok(ended)
    }

    /// One event of the stream.
    fn handle(&self, s: &mut Stream, event: ReplicationEvent) -> Result<(), Stop> {
        let m = &self.metrics;
        match event {
            ReplicationEvent::Begin { .. } => {
                s.changes.clear();
                s.in_transaction = true;
            }
            ReplicationEvent::XLogData { data, .. } => {
                let change = match s.decoder.decode(&data) {
                    Ok(Decoded::Row(change)) => change,
                    Ok(Decoded::Begin | Decoded::Commit { .. } | Decoded::Other) => return Ok(()),
                    Err(error) => {
                        // never drop a change: an untargeted status
                        m.wal_undecodable.fetch_add(1, Ordering::Relaxed);
                        warn!(%error, "a WAL change could not be read; notifying status to everyone");
                        RowChange::Unknown
                    }
                };
                m.wal_changes.fetch_add(1, Ordering::Relaxed);
                s.changes.add(change);
            }
            ReplicationEvent::Commit { end_lsn, .. } => {
                while let Some((notification, batch)) = s.changes.poll_notification() {
                    s.ready.add_notification(notification, batch);
                }
                s.in_transaction = false;
                s.ready_lsn = Some(end_lsn);
                s.ready_transactions += 1;
                // deliver before different channels would start to fold
                if s.ready.len() >= TABLE / 2 {
                    self.flush(s)?;
                }
            }
            ReplicationEvent::KeepAlive { wal_end, .. } => {
                // Everything before a keep-alive outside a transaction was
                // sent and, once delivered, handled (other tables'
                // transactions send nothing): confirm it, or the slot would
                // hold their WAL.
                if !s.in_transaction && wal_end != Lsn::from_u64(0) {
                    self.flush(s)?;
                    s.client.update_applied_lsn(wal_end);
                }
            }
            ReplicationEvent::Message { .. } | ReplicationEvent::StoppedAt { .. } => {}
        }
        Ok(())
    }

    /// Delivers the committed transactions' notifications to the broker,
    /// then confirms their LSN: the slot may let their WAL go.
    fn flush(&self, s: &mut Stream) -> Result<(), Stop> {
        let m = &self.metrics;
        while let Some((notification, batch)) = s.ready.poll_notification() {
            self.broker.notify(notification, batch).map_err(|_| Stop)?;
            m.delivered.fetch_add(1, Ordering::Relaxed);
            debug!(?notification, batch, "notification from the WAL");
        }
        m.wal_transactions
            .fetch_add(std::mem::take(&mut s.ready_transactions), Ordering::Relaxed);
        if let Some(lsn) = s.ready_lsn.take() {
            s.client.update_applied_lsn(lsn);
        }
        Ok(())
    }

    /// The stream failed: forget it (and its open transaction, which the
    /// slot will send again); the session schedules a retry.
    fn lost(
        &self,
        session: &mut SourceSession,
        clock: &Clock,
        stream: &mut Option<Stream>,
        error: &str,
    ) {
        if let Some(s) = stream.take() {
            s.client.stop();
        }
        self.metrics.connected.store(0, Ordering::Relaxed);
        warn!(%error, "lost PostgreSQL's WAL stream; reconnecting");
        session.handle_failed(clock.now(), random());
    }
}

/// Jitter for the backoff.
fn random() -> u32 {
    getrandom::u32().unwrap_or(u32::MAX / 2)
}
