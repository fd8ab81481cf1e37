//! `flagpost-service`: the reference processing service (see README.md).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use flagpost_core::ChannelId;
use flagpost_service::{
    run, Database, Echo, LogChannel, MarkProcessed, MetricsEndpoint, Outbox, ServiceConfig, Stop,
    DEFAULT_BROKER,
};

/// The reference processing service: runs *check triggers* and *check
/// outgoing* over a messages table the moment the Flagpost broker says
/// something changed, and polls the database only when an interval expires.
#[derive(Debug, Parser)]
#[command(name = "flagpost-service", version)]
struct Args {
    /// The database: a SQLite file (created with its tables when missing)
    /// or a postgres://USER@HOST:PORT/DB URL without a password.
    #[arg(long, value_name = "PATH|URL")]
    db: String,
    /// A file holding the PostgreSQL password (owner-only: chmod 600);
    /// else PGPASSWORD is used, if set.
    #[arg(long, value_name = "FILE")]
    db_password_file: Option<PathBuf>,
    /// The broker to listen to.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_BROKER)]
    broker: String,
    /// No broker: poll on the intervals only.
    #[arg(long, conflicts_with_all = ["channel", "key_file"])]
    no_broker: bool,
    /// Listen to this channel only, and process only its messages.
    #[arg(long, value_name = "ID")]
    channel: Option<String>,
    /// The broker's key file (for a keyed broker).
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// Seconds between polls of check triggers when no notification came
    /// (fractions allowed; 0: never poll).
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    check_triggers_interval: f64,
    /// Seconds between polls of check outgoing when no notification came
    /// (fractions allowed; 0: never poll).
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    check_outgoing_interval: f64,
    /// Messages per batch (one transaction of check triggers).
    #[arg(long, value_name = "N", default_value_t = 500)]
    batch_size: u32,
    /// What check triggers does with a received message: `mark` records
    /// `processed`; `echo` also queues a reply `re: BODY`.
    #[arg(long, value_enum, default_value_t = TriggerArg::Mark)]
    trigger: TriggerArg,
    /// The channel stand-in: append each sent message to FILE (one line:
    /// ID, channel, body, tab-separated). Without it, sent messages are
    /// logged.
    #[arg(long, value_name = "FILE")]
    outbox: Option<PathBuf>,
    /// Serve the counters at http://ADDR/metrics (Prometheus text).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum TriggerArg {
    /// Record `processed`.
    Mark,
    /// Record `processed` and queue a reply.
    Echo,
}

fn seconds(name: &str, secs: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("--{name}: {secs} is not a number of seconds"))
}

/// The password in `path`, refused when its group or others may read it.
fn read_password_file(path: &Path) -> Result<String, String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "password file {} is readable by others (mode {mode:o}); run: chmod 600 {}",
                path.display(),
                path.display()
            ));
        }
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(text.trim_end_matches(['\r', '\n']).to_owned())
}

fn config(args: Args) -> Result<(ServiceConfig, Option<SocketAddr>), String> {
    let is_pg = args.db.starts_with("postgres://") || args.db.starts_with("postgresql://");
    let password = match (&args.db_password_file, is_pg) {
        (Some(_), false) => return Err("--db-password-file is for a postgres:// database".into()),
        (Some(f), true) => Some(read_password_file(f)?),
        (None, true) => std::env::var("PGPASSWORD").ok(),
        (None, false) => None,
    };
    if is_pg {
        flagpost_service::store::postgres_url_check(&args.db).map_err(|e| e.to_string())?;
    }
    let mut c = ServiceConfig::new(Database::from_arg(&args.db, password));
    c.broker = (!args.no_broker).then_some(args.broker);
    if let Some(ch) = &args.channel {
        c.only_channel = Some(ChannelId::new(ch).map_err(|e| format!("--channel {ch:?}: {e}"))?);
    }
    if let Some(f) = &args.key_file {
        c.key = Some(flagpost_std::keyfile::read_key_file(f).map_err(|e| e.to_string())?);
    }
    c.check_triggers_interval = seconds("check-triggers-interval", args.check_triggers_interval)?;
    c.check_outgoing_interval = seconds("check-outgoing-interval", args.check_outgoing_interval)?;
    if args.batch_size == 0 {
        return Err("--batch-size must be at least 1".into());
    }
    c.batch_size = args.batch_size;
    c.trigger = match args.trigger {
        TriggerArg::Mark => Box::new(MarkProcessed),
        TriggerArg::Echo => Box::new(Echo),
    };
    c.channel = match &args.outbox {
        Some(p) => Box::new(Outbox::open(p).map_err(|e| format!("--outbox {}: {e}", p.display()))?),
        None => Box::new(LogChannel),
    };
    Ok((c, args.metrics))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let (config, metrics) = match config(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("flagpost-service: {e}");
            return ExitCode::from(2);
        }
    };
    let _endpoint = match metrics {
        Some(addr) => match MetricsEndpoint::start(addr, config.counters.clone()) {
            Ok(m) => {
                tracing::info!("metrics on http://{}/metrics", m.local_addr());
                Some(m)
            }
            Err(e) => {
                eprintln!("flagpost-service: {e}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let stop = Stop::new();
    let on_signal = stop.clone();
    if let Err(e) = ctrlc::set_handler(move || on_signal.stop()) {
        eprintln!("flagpost-service: signal handler: {e}");
        return ExitCode::FAILURE;
    }
    match run(config, &stop) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flagpost-service: {e}");
            ExitCode::FAILURE
        }
    }
}
