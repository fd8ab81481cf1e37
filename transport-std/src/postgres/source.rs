//! The source's thread: the I/O shell of the core's
//! [`SourceSession`], which decides when to connect, retry, keep the
//! connection alive and raise a re-check; this thread connects, `LISTEN`s,
//! waits and delivers payloads (see the [parent](super)).

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flagpost_core::payload::{Payload, PayloadError};
use flagpost_core::source::{Action, SourceConfig, SourceSession};
#[cfg(target_os = "linux")]
use postgres::config::SslMode;
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls};
#[cfg(target_os = "linux")]
use tokio_postgres_rustls::MakeRustlsConnect;
#[cfg(target_os = "linux")]
use tracing::error;
use tracing::{debug, info, warn};

use super::SourceMetrics;
use crate::clock::Clock;
use crate::config::{BrokerConfig, ConfigError};
use crate::server::{BrokerHandle, ServeError};

/// How often the waiting thread looks whether the broker stopped.
const STOP_CHECK: Duration = Duration::from_millis(500);
/// Unless the URL says otherwise (`connect_timeout=`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Rejected payloads are logged at most this often.
const REJECT_LOG_EVERY: Duration = Duration::from_secs(1);

/// The running source; dropping it stops the thread (at its next check,
/// within [`STOP_CHECK`], or after a connection attempt under way).
#[derive(Debug)]
pub(crate) struct Source {
    _stop: Sender<()>,
}

/// Reads the password, prepares the connection and starts the thread.
/// Errors are the configuration's (a bad password file); an unreachable
/// database is not an error here: the thread logs and retries.
pub(crate) fn start(
    config: &BrokerConfig,
    broker: BrokerHandle,
    metrics: Arc<SourceMetrics>,
) -> Result<Option<Source>, ServeError> {
    let Some(url) = &config.postgres else {
        return Ok(None);
    };
    let invalid = |key, reason: String| ServeError::Config(ConfigError::Invalid { key, reason });
    super::check_url(url).map_err(|r| invalid("postgres", r))?;
    let mut pg: postgres::Config = url
        .parse()
        .map_err(|e| invalid("postgres", format!("{e}")))?;
    match &config.postgres_password_file {
        Some(path) => {
            let password =
                read_password_file(path).map_err(|r| invalid("postgres_password_file", r))?;
            pg.password(password);
        }
        None => {
            if let Some(password) = std::env::var_os("PGPASSWORD") {
                pg.password(password.as_encoded_bytes());
            }
        }
    }
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(CONNECT_TIMEOUT);
    }
    if pg.get_application_name().is_none() {
        pg.application_name("flagpost");
    }
    #[cfg(target_os = "linux")]
    let tls = match pg.get_ssl_mode() {
        SslMode::Require => Some(rustls_connector()),
        _ => None,
    };
    // check_url refused sslmode=require where there is no TLS
    #[cfg(not(target_os = "linux"))]
    let tls: Option<Option<Tls>> = None;
    let (stop, stopped) = mpsc::channel();
    let thread = Thread {
        pg,
        tls,
        listen: format!("LISTEN \"{}\"", config.postgres_channel),
        channel: config.postgres_channel.clone(),
        broker,
        metrics,
        stopped,
        reject_log: None,
        rejects_unlogged: 0,
    };
    std::thread::Builder::new()
        .name("flagpost-postgres".into())
        .spawn(move || thread.run())?;
    Ok(Some(Source { _stop: stop }))
}

/// The password in `path`: the file must be readable by its owner only
/// (as a key file); one trailing line break is not part of it.
pub(super) fn read_password_file(path: &Path) -> Result<String, String> {
    let shown = path.display();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| format!("{shown}: {e}"))?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "{shown} is readable by others (mode {mode:o}); run: chmod 600 {shown}"
            ));
        }
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?;
    let password = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    if password.is_empty() {
        return Err(format!("{shown} is empty"));
    }
    Ok(password.to_owned())
}

/// rustls with the ring provider and the system's root certificates
/// (`None` if rustls cannot be set up: then `sslmode=require` connections
/// fail, never fall back to plain text).
#[cfg(target_os = "linux")]
fn rustls_connector() -> Option<MakeRustlsConnect> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        warn!(%error, "reading the system's root certificates");
    }
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        warn!("no root certificates found: sslmode=require connections will fail");
    }
    debug!(added, ignored, "root certificates for PostgreSQL TLS");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(builder) => Some(MakeRustlsConnect::new(
            builder.with_root_certificates(roots).with_no_client_auth(),
        )),
        Err(error) => {
            error!(%error, "cannot set up TLS: sslmode=require connections will fail");
            None
        }
    }
}

/// The TLS connector, where there is one.
#[cfg(target_os = "linux")]
type Tls = MakeRustlsConnect;
#[cfg(not(target_os = "linux"))]
type Tls = NoTls;

struct Thread {
    pg: postgres::Config,
    /// `Some` for `sslmode=require` (`Some(None)`: TLS could not be set up).
    tls: Option<Option<Tls>>,
    /// `LISTEN "channel"`.
    listen: String,
    channel: String,
    broker: BrokerHandle,
    metrics: Arc<SourceMetrics>,
    stopped: Receiver<()>,
    /// When a rejected payload was last logged.
    reject_log: Option<Instant>,
    rejects_unlogged: u64,
}

/// Why the thread must end.
struct Stop;

impl Thread {
    /// The core's session decides; this loop connects, queries and waits.
    fn run(mut self) {
        let clock = Clock::new();
        let mut session = SourceSession::new(SourceConfig::default());
        let mut client: Option<Client> = None;
        loop {
            let step = match session.poll_action(clock.now()) {
                Some(Action::Connect) => self.connect(&mut session, &clock, &mut client),
                Some(Action::KeepAlive) => {
                    let answer = client.as_mut().map(|c| c.simple_query("SELECT 1"));
                    match answer {
                        Some(Ok(_)) => session.handle_alive(clock.now()),
                        Some(Err(error)) => {
                            self.lost(&mut session, &clock, &mut client, &error.to_string())
                        }
                        None => self.lost(&mut session, &clock, &mut client, "no connection"),
                    }
                    Ok(())
                }
                None => self.wait(&mut session, &clock, &mut client),
            };
            if step.is_err() {
                self.metrics.connected.store(0, Ordering::Relaxed);
                return;
            }
        }
    }

    /// Connects, subscribes and, after a reconnect, raises a re-check.
    fn connect(
        &self,
        session: &mut SourceSession,
        clock: &Clock,
        client: &mut Option<Client>,
    ) -> Result<(), Stop> {
        // sslmode=require without a connector: NoTls, which refuses to connect
        let attempt = match &self.tls {
            Some(Some(tls)) => self.pg.connect(tls.clone()),
            Some(None) | None => self.pg.connect(NoTls),
        };
        let attempt = attempt.and_then(|mut c| c.batch_execute(&self.listen).map(|()| c));
        match attempt {
            Ok(c) => {
                *client = Some(c);
                let again = self.metrics.connected(session, clock.now(), &self.broker);
                if again.map_err(|_| Stop)? {
                    info!(channel = %self.channel, "reconnected to PostgreSQL; raised a re-check on every listener");
                } else {
                    info!(channel = %self.channel, "connected to PostgreSQL, listening");
                }
            }
            Err(error) => {
                self.metrics
                    .connect_failures
                    .fetch_add(1, Ordering::Relaxed);
                warn!(%error, attempt = session.attempts() + 1, "cannot connect to PostgreSQL; retrying");
                session.handle_failed(clock.now(), random());
            }
        }
        Ok(())
    }

    /// The connection failed: forget it; the session schedules a retry.
    fn lost(
        &self,
        session: &mut SourceSession,
        clock: &Clock,
        client: &mut Option<Client>,
        error: &str,
    ) {
        *client = None;
        self.metrics.connected.store(0, Ordering::Relaxed);
        warn!(%error, "lost the PostgreSQL connection; reconnecting");
        session.handle_failed(clock.now(), random());
    }

    /// Until the session's next deadline, or [`STOP_CHECK`]: for
    /// notifications while connected, for a stop request otherwise.
    fn wait(
        &mut self,
        session: &mut SourceSession,
        clock: &Clock,
        client: &mut Option<Client>,
    ) -> Result<(), Stop> {
        let timeout = session
            .poll_timeout()
            .map_or(STOP_CHECK, |at| clock.until(at).min(STOP_CHECK));
        let Some(c) = client.as_mut() else {
            return match self.stopped.recv_timeout(timeout) {
                Err(RecvTimeoutError::Timeout) => Ok(()),
                Ok(()) | Err(RecvTimeoutError::Disconnected) => Err(Stop),
            };
        };
        if !matches!(self.stopped.try_recv(), Err(TryRecvError::Empty)) {
            return Err(Stop);
        }
        let failed = {
            let mut notifications = c.notifications();
            let mut waiting = notifications.timeout_iter(timeout);
            loop {
                match FallibleIterator::next(&mut waiting) {
                    Ok(Some(n)) => {
                        let parsed = session.handle_payload(clock.now(), n.payload());
                        self.deliver(parsed, n.payload())?;
                    }
                    Ok(None) => break None,
                    Err(error) => break Some(error.to_string()),
                }
            }
        };
        match failed {
            Some(error) => self.lost(session, clock, client, &error),
            None if c.is_closed() => self.lost(session, clock, client, "the server closed it"),
            None => {}
        }
        Ok(())
    }

    /// Delivers one parsed payload, or counts and logs its rejection.
    fn deliver(&mut self, parsed: Result<Payload, PayloadError>, text: &str) -> Result<(), Stop> {
        self.metrics.payloads.fetch_add(1, Ordering::Relaxed);
        match parsed {
            Ok(p) => {
                self.broker
                    .notify(p.notification, p.batch)
                    .map_err(|_| Stop)?;
                self.metrics.delivered.fetch_add(1, Ordering::Relaxed);
                debug!(payload = %p, "notification from PostgreSQL");
            }
            Err(error) => {
                self.metrics.reject(error);
                let now = Instant::now();
                if self
                    .reject_log
                    .is_none_or(|at| now.duration_since(at) >= REJECT_LOG_EVERY)
                {
                    let shown: String = text.chars().take(80).collect();
                    warn!(
                        payload = ?shown,
                        reason = error.label(),
                        suppressed = self.rejects_unlogged,
                        "rejected a PostgreSQL payload: {error}"
                    );
                    self.reject_log = Some(now);
                    self.rejects_unlogged = 0;
                } else {
                    self.rejects_unlogged += 1;
                }
            }
        }
        Ok(())
    }
}

/// Jitter for the backoff.
fn random() -> u32 {
    getrandom::u32().unwrap_or(u32::MAX / 2)
}
