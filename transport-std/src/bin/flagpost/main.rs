//! `flagpost`: run the broker, send notifications, listen, read counters.
//!
//! Exit codes: 0 success · 1 other failure · 2 bad usage or bad config ·
//! 3 broker unreachable · 4 address in use · 5 permission denied ·
//! 6 timed out waiting (`listen --timeout`).

use std::io::{self, IsTerminal, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use flagpost_std::core::broker::Stats;
use flagpost_std::core::listener::{AuthError, SessionError, StatsClient};
use flagpost_std::core::wire::{FrameReader, MAX_FRAME_LEN};
use flagpost_std::core::{ChannelId, FlagSet, Kind, Notification};
use flagpost_std::{
    Broker, BrokerConfig, ConfigError, Listener, ListenerState, MetricsServer, Notifier,
    NotifyError, ServeError,
};

const DEFAULT_BROKER: &str = "127.0.0.1:16725";

#[derive(Parser, Debug)]
#[command(
    name = "flagpost",
    version,
    about = "Flagpost: a wake-up broker for message-processing services"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the broker (UDP notifications and TCP listeners on one port).
    Serve(Box<ServeArgs>),
    /// Send one notification.
    Notify(NotifyArgs),
    /// Listen and print one line per raised flag.
    Listen(ListenArgs),
    /// Print the broker's counters and gauges.
    Stats(StatsArgs),
    /// Write a new random key file for `--key-file` / `key_file`.
    Keygen(KeygenArgs),
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// Address to serve on (repeatable; default 127.0.0.1:16725). Overrides
    /// the file and FLAGPOST_BIND.
    #[arg(long, value_name = "ADDR")]
    bind: Vec<SocketAddr>,
    /// TOML configuration file.
    #[arg(long, value_name = "FILE", env = "FLAGPOST_CONFIG")]
    config: Option<PathBuf>,
    /// Serve Prometheus metrics and /healthz over HTTP on this address.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Most listener connections at once.
    #[arg(long, value_name = "N")]
    max_listeners: Option<usize>,
    /// Most listener connections from one IP address (0: no limit).
    #[arg(long, value_name = "N")]
    max_per_address: Option<u32>,
    /// Keep-alive timeout for listeners (e.g. 30s).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    keepalive: Option<Duration>,
    /// File holding the shared key (see `flagpost keygen`): senders must
    /// sign, listeners must prove it.
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// During a key rotation, the file of the key being replaced (still
    /// accepted, never used to sign).
    #[arg(long, value_name = "FILE", requires = "key_file")]
    previous_key_file: Option<PathBuf>,
    /// Networks senders may notify from, comma-separated CIDRs (default any).
    #[arg(long, value_name = "CIDR,…", value_delimiter = ',')]
    allow_senders: Vec<ipnet::IpNet>,
    /// Networks listeners may connect from, comma-separated CIDRs (default any).
    #[arg(long, value_name = "CIDR,…", value_delimiter = ',')]
    allow_listeners: Vec<ipnet::IpNet>,
    /// A PostgreSQL database to LISTEN to: a postgres:// URL (or key=value
    /// string) without a password; each payload on the channel, such as
    /// `status:gsm1;batch=20`, is notified (see DATABASE.md).
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// The PostgreSQL channel to LISTEN on (default flagpost).
    #[arg(long, value_name = "NAME")]
    postgres_channel: Option<String>,
    /// File holding the PostgreSQL password, readable by its owner only
    /// (default: PGPASSWORD). Never put the password in the URL.
    #[arg(long, value_name = "FILE")]
    postgres_password_file: Option<PathBuf>,
    /// Where the notifications come from: notify (LISTEN, fed by the
    /// triggers; the default) or wal (logical replication of the messages
    /// table through a slot; no trigger needed; see DATABASE.md).
    #[arg(long, value_name = "notify|wal")]
    postgres_mode: Option<flagpost_std::postgres::Mode>,
    /// WAL mode: the replication slot (default flagpost; created if missing).
    #[arg(long, value_name = "NAME")]
    postgres_slot: Option<String>,
    /// WAL mode: the publication (default flagpost; sql/postgres/flagpost-wal.sql).
    #[arg(long, value_name = "NAME")]
    postgres_publication: Option<String>,
}

#[derive(Args, Debug)]
struct KeygenArgs {
    /// Where to write the key (must not exist; created readable by its owner only).
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum NotifyKind {
    /// A status update: new messages or a status change (work to do).
    Status,
    /// A non-status update: views refresh.
    NonStatus,
    /// A channel's configuration changed (needs --channel).
    ChannelUpdate,
    /// A channel must stop (needs --channel).
    ChannelShutdown,
}

#[derive(Args, Debug)]
struct NotifyArgs {
    /// What to notify.
    kind: NotifyKind,
    /// Target one channel (required for channel-update and channel-shutdown).
    #[arg(long, value_name = "ID")]
    channel: Option<ChannelId>,
    /// The broker.
    #[arg(long, value_name = "ADDR", env = "FLAGPOST_BROKER", default_value = DEFAULT_BROKER)]
    broker: String,
    /// How many changes this notification stands for.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    count: u32,
    /// Wait for the broker's acknowledgement, retransmitting until it comes.
    #[arg(long)]
    confirm: bool,
    /// How long --confirm waits.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Sign with the key in this file (the broker's key_file).
    #[arg(long, value_name = "FILE", env = "FLAGPOST_KEY_FILE")]
    key_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct ListenArgs {
    /// The broker.
    #[arg(long, value_name = "ADDR", env = "FLAGPOST_BROKER", default_value = DEFAULT_BROKER)]
    broker: String,
    /// Listen for one channel only.
    #[arg(long, value_name = "ID")]
    channel: Option<ChannelId>,
    /// Flags to listen for (comma-separated; default all).
    #[arg(long, value_name = "FLAGS", value_delimiter = ',')]
    interest: Vec<FlagName>,
    /// Exit after the first raise (a notification, or a re-check after a
    /// reconnect).
    #[arg(long)]
    once: bool,
    /// Print JSON lines: {"ts", "flag", "reconnect"}. "reconnect": true
    /// marks a re-check after the broker was away (status, non-status,
    /// channel update; never channel shutdown), not a notification.
    #[arg(long)]
    json: bool,
    /// Give up (exit 6) if nothing arrives within this time.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    timeout: Option<Duration>,
    /// Authenticate with the broker's key (see `flagpost keygen`); needed
    /// when the broker has one.
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum FlagName {
    Status,
    NonStatus,
    ChannelUpdate,
    ChannelShutdown,
}

impl FlagName {
    fn set(self) -> FlagSet {
        match self {
            FlagName::Status => FlagSet::STATUS,
            FlagName::NonStatus => FlagSet::NON_STATUS,
            FlagName::ChannelUpdate => FlagSet::CHANNEL_UPDATE,
            FlagName::ChannelShutdown => FlagSet::CHANNEL_SHUTDOWN,
        }
    }
}

#[derive(Args, Debug)]
struct StatsArgs {
    /// The broker.
    #[arg(long, value_name = "ADDR", env = "FLAGPOST_BROKER", default_value = DEFAULT_BROKER)]
    broker: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Authenticate with the broker's key (see `flagpost keygen`); needed
    /// when the broker has one.
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
}

/// A failure with its exit code.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn new(code: u8, message: impl std::fmt::Display) -> Self {
        Failure {
            code,
            message: message.to_string(),
        }
    }
}

const EXIT_OTHER: u8 = 1;
const EXIT_CONFIG: u8 = 2;
const EXIT_UNREACHABLE: u8 = 3;
const EXIT_ADDR_IN_USE: u8 = 4;
const EXIT_PERMISSION: u8 = 5;
const EXIT_TIMEOUT: u8 = 6;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .init();
    let result = match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Notify(args) => notify(args),
        Command::Listen(args) => listen(args),
        Command::Stats(args) => stats(args),
        Command::Keygen(args) => keygen(args),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "flagpost", &mut io::stdout());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("flagpost: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn serve_failure(e: ServeError) -> Failure {
    let code = match &e {
        ServeError::AddrInUse { .. } => EXIT_ADDR_IN_USE,
        ServeError::PermissionDenied { .. } => EXIT_PERMISSION,
        ServeError::Config(_) | ServeError::Key(_) => EXIT_CONFIG,
        ServeError::Metrics { .. } | ServeError::Bind { .. } | ServeError::Io(_) => EXIT_OTHER,
    };
    Failure::new(code, e)
}

fn serve(args: ServeArgs) -> Result<(), Failure> {
    let mut config = BrokerConfig::load(args.config.as_deref(), std::env::vars())
        .map_err(|e: ConfigError| Failure::new(EXIT_CONFIG, e))?;
    if !args.bind.is_empty() {
        config.bind = args.bind;
    }
    if let Some(m) = args.metrics {
        config.metrics = Some(m);
    }
    if let Some(n) = args.max_listeners {
        config.max_listeners = n;
    }
    if let Some(n) = args.max_per_address {
        config.max_per_address = n;
    }
    if let Some(k) = args.keepalive {
        config.keepalive = k;
    }
    if args.key_file.is_some() {
        config.key_file = args.key_file;
        config.previous_key_file = args.previous_key_file;
    }
    if !args.allow_senders.is_empty() {
        config.allow_senders = args.allow_senders;
    }
    if !args.allow_listeners.is_empty() {
        config.allow_listeners = args.allow_listeners;
    }
    if let Some(url) = args.postgres {
        // refused before anything else: the URL is on the command line
        flagpost_std::postgres::check_url(&url)
            .map_err(|reason| Failure::new(EXIT_CONFIG, format!("--postgres: {reason}")))?;
        config.postgres = Some(url);
    }
    if let Some(channel) = args.postgres_channel {
        config.postgres_channel = channel;
    }
    if args.postgres_password_file.is_some() {
        config.postgres_password_file = args.postgres_password_file;
    }
    if let Some(mode) = args.postgres_mode {
        config.postgres_mode = mode;
    }
    if let Some(slot) = args.postgres_slot {
        config.postgres_slot = slot;
    }
    if let Some(publication) = args.postgres_publication {
        config.postgres_publication = publication;
    }
    config
        .validate()
        .map_err(|e| Failure::new(EXIT_CONFIG, e))?;
    let metrics_addr = config.metrics;
    let broker = Broker::bind(config).map_err(serve_failure)?;
    let handle = broker.handle();
    let _metrics = match metrics_addr {
        Some(addr) => {
            let server = MetricsServer::start(addr, handle.clone()).map_err(serve_failure)?;
            tracing::info!(addr = %server.local_addr(), "metrics on /metrics and /healthz");
            Some(server)
        }
        None => None,
    };
    let on_signal = handle.clone();
    ctrlc::set_handler(move || on_signal.shutdown())
        .map_err(|e| Failure::new(EXIT_OTHER, format!("cannot install signal handler: {e}")))?;
    // Announce the bound addresses on stdout: scripts started with port 0 read them.
    for addr in handle.local_addrs() {
        println!("listening on {addr}");
    }
    let _ = io::stdout().flush();
    broker.run().map_err(serve_failure)
}

fn keygen(args: KeygenArgs) -> Result<(), Failure> {
    flagpost_std::keyfile::generate_key_file(&args.file)
        .map_err(|e| Failure::new(EXIT_OTHER, e))?;
    eprintln!(
        "wrote a new key to {} (readable by you only); give it to the broker (key_file) and to every sender and listener",
        args.file.display()
    );
    Ok(())
}

fn notify(args: NotifyArgs) -> Result<(), Failure> {
    let kind = match args.kind {
        NotifyKind::Status => Kind::Status,
        NotifyKind::NonStatus => Kind::NonStatus,
        NotifyKind::ChannelUpdate => Kind::ChannelUpdate,
        NotifyKind::ChannelShutdown => Kind::ChannelShutdown,
    };
    let notification = Notification::new(kind, args.channel)
        .map_err(|e| Failure::new(EXIT_CONFIG, format!("{e}: add --channel ID")))?;
    let mut builder = Notifier::builder();
    if let Some(path) = &args.key_file {
        let key =
            flagpost_std::keyfile::read_key_file(path).map_err(|e| Failure::new(EXIT_CONFIG, e))?;
        builder = builder.key(key);
    }
    let notifier = builder
        .build(args.broker.as_str())
        .map_err(notify_failure)?;
    if args.confirm {
        let result = notifier
            .notify_confirmed(notification, args.count, args.timeout)
            .map_err(notify_failure)?;
        let attempts = 1 + notifier.stats().retransmissions;
        eprintln!("acknowledged: {result:?} after {attempts} datagram(s)");
        return Ok(());
    }
    notifier.notify(notification, args.count);
    // the probe (a second copy a few ms later) goes out at the drop
    let handed = notifier.flush(Duration::from_secs(1));
    let stats = notifier.stats();
    drop(notifier);
    if !handed || stats.send_errors > 0 {
        return Err(Failure::new(
            EXIT_UNREACHABLE,
            format!("could not send to {}", args.broker),
        ));
    }
    // Fire and forget: nothing comes back, so say what is not known.
    eprintln!(
        "sent to {} (not confirmed: a lost datagram or a broker that is down or has another key looks the same; --confirm waits for the broker's ack)",
        args.broker
    );
    Ok(())
}

fn notify_failure(e: NotifyError) -> Failure {
    let code = match e {
        NotifyError::Timeout { .. } | NotifyError::Unreachable { .. } => EXIT_UNREACHABLE,
        NotifyError::Resolve(_) => EXIT_CONFIG,
        NotifyError::Io(_) => EXIT_OTHER,
    };
    Failure::new(code, e)
}

/// The key in `--key-file`, if given.
fn key_arg(
    path: Option<&std::path::Path>,
) -> Result<Option<flagpost_std::core::auth::Key>, Failure> {
    path.map(flagpost_std::keyfile::read_key_file)
        .transpose()
        .map_err(|e| Failure::new(EXIT_CONFIG, e))
}

/// What a failed handshake means for the user of `listen` or `stats`.
fn auth_failure(e: AuthError) -> Failure {
    let message = match e {
        AuthError::KeyRequired => {
            "refused: unauthorized (the broker has a key; pass --key-file)".to_owned()
        }
        AuthError::BrokerHasNoKey => {
            "the broker has no key: it cannot authenticate (drop --key-file, or give the broker key_file)".to_owned()
        }
        AuthError::BrokerTooOld => {
            "the broker speaks protocol version 1 only: it cannot authenticate (upgrade it, or drop --key-file)".to_owned()
        }
        AuthError::Refused => {
            "refused: unauthorized (the broker's key is not the one in --key-file)".to_owned()
        }
        AuthError::BrokerNotAuthenticated => {
            "the broker did not prove it holds the key in --key-file (another key on the broker, or not the broker)".to_owned()
        }
        other => other.to_string(),
    };
    Failure::new(EXIT_CONFIG, message)
}

fn listen(args: ListenArgs) -> Result<(), Failure> {
    let mut builder = Listener::builder();
    if let Some(key) = key_arg(args.key_file.as_deref())? {
        builder = builder.key(key);
    }
    if let Some(c) = args.channel {
        builder = builder.channel(c);
    }
    if !args.interest.is_empty() {
        builder = builder.interest(
            args.interest
                .iter()
                .fold(FlagSet::EMPTY, |s, f| s | f.set()),
        );
    }
    let listener = builder
        .connect(args.broker.as_str())
        .map_err(|e| Failure::new(EXIT_CONFIG, e))?;
    let deadline = args.timeout.map(|t| std::time::Instant::now() + t);
    let left = || {
        deadline.map_or(Duration::from_secs(3600), |d| {
            d.saturating_duration_since(std::time::Instant::now())
        })
    };
    // The first welcome is a reconnect raise (a fresh listener re-checks);
    // that is not a notification, so it is not printed. Reconnect raises
    // after that are printed and marked: something may have been missed.
    let mut warned = false;
    while !listener.wait_listening(Duration::from_millis(500).min(left())) {
        // refused either way: a key to fix, not a broker to wait for
        if let Some(flagpost_std::ListenError::Auth(e)) = listener.auth_error() {
            return Err(auth_failure(e));
        }
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            return Err(Failure::new(
                EXIT_UNREACHABLE,
                format!("broker at {} unreachable", args.broker),
            ));
        }
        if !warned && listener.state() == ListenerState::BackingOff {
            eprintln!("waiting for the broker at {}…", args.broker);
            warned = true;
        }
    }
    listener.wait(Duration::from_secs(1));
    listener.take_raise();
    eprintln!("listening on {}", args.broker);
    let stdout = io::stdout();
    loop {
        if !listener.wait(left()) {
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                return Err(Failure::new(EXIT_TIMEOUT, "nothing arrived in time"));
            }
            continue;
        }
        let raise = listener.take_raise();
        let flags = raise.flags;
        if raise.reconnect && !args.json {
            // stderr may be closed; the flags on stdout are what matters
            let _ = writeln!(
                io::stderr(),
                "reconnected to {}: the broker was away, re-check what may have been missed",
                args.broker
            );
        }
        let mut out = stdout.lock();
        for flag in flags.iter() {
            let name = flag.name().unwrap_or("?");
            // a reconnect raise is a re-check; a shutdown is only ever notified
            let reconnect = raise.reconnect && FlagSet::RECHECK.contains(flag);
            let line = if args.json {
                let ts = humantime::format_rfc3339_micros(std::time::SystemTime::now());
                serde_json::json!({ "ts": ts.to_string(), "flag": name, "reconnect": reconnect })
                    .to_string()
            } else {
                name.to_owned()
            };
            if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
                return Ok(()); // stdout closed: nobody is reading any more
            }
        }
        if args.once && !flags.is_empty() {
            return Ok(());
        }
    }
}

fn stats(args: StatsArgs) -> Result<(), Failure> {
    use std::net::ToSocketAddrs;
    let addr = args
        .broker
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| Failure::new(EXIT_CONFIG, format!("cannot resolve {}", args.broker)))?;
    let mut client = StatsClient::new();
    if let Some(key) = key_arg(args.key_file.as_deref())? {
        let mut seed = [0u8; 16];
        getrandom::fill(&mut seed)
            .map_err(|e| Failure::new(EXIT_OTHER, format!("no random seed: {e}")))?;
        client = client.with_key(key, seed);
    }
    let unreachable = |e: io::Error| {
        Failure::new(
            EXIT_UNREACHABLE,
            format!("broker at {addr} unreachable: {e}"),
        )
    };
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(unreachable)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(unreachable)?;
    let mut stats = Stats::default();
    let mut reader = FrameReader::<MAX_FRAME_LEN>::new();
    let mut buf = [0u8; MAX_FRAME_LEN];
    'read: loop {
        // the request, then (with a key) the proof
        while let Some(n) = client.poll_transmit(&mut buf) {
            stream.write_all(&buf[..n]).map_err(unreachable)?;
        }
        let n = match stream.read(reader.unfilled()) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(unreachable(e)),
        };
        reader.filled(n);
        while let Some(frame) = reader.next_frame() {
            match frame
                .map_err(SessionError::Malformed)
                .and_then(|f| client.handle_frame(f))
            {
                Ok(Some(s)) => {
                    stats.set(s.index, s.value);
                }
                Ok(None) if client.is_done() => break 'read,
                Ok(None) => {}
                Err(SessionError::Auth(e)) => return Err(auth_failure(e)),
                Err(SessionError::Closed(reason)) => {
                    return Err(Failure::new(
                        EXIT_OTHER,
                        format!("the broker closed the connection: {reason}"),
                    ))
                }
                Err(e) => {
                    return Err(Failure::new(
                        EXIT_OTHER,
                        format!("the broker's stats reply is malformed: {e}"),
                    ))
                }
            }
        }
    }
    if !client.is_done() {
        return Err(Failure::new(
            EXIT_OTHER,
            "the broker's stats reply was cut short",
        ));
    }
    let mut out = io::stdout().lock();
    if args.json {
        let mut entries = Vec::new();
        stats.visit(|_, m, v| {
            let label = m.label.map(|(k, v)| serde_json::json!({ k: v }));
            entries.push(serde_json::json!({
                "name": m.name, "labels": label, "value": v,
                "type": if m.gauge { "gauge" } else { "counter" },
            }));
        });
        let _ = writeln!(out, "{}", serde_json::Value::Array(entries));
    } else {
        stats.visit(|_, m, v| {
            let _ = match m.label {
                Some((k, l)) => writeln!(out, "{}{{{k}=\"{l}\"}} {v}", m.name),
                None => writeln!(out, "{} {v}", m.name),
            };
        });
    }
    Ok(())
}
