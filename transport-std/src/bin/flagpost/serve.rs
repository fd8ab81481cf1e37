//! `flagpost serve`: a flag for every config key (over the file and the
//! `FLAGPOST_*` variables), `--check-config` to print the effective
//! configuration without binding, and the broker's run.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use flagpost_std::{Broker, BrokerConfig, ConfigError, MetricsServer, ServeError};

use crate::{Failure, EXIT_ADDR_IN_USE, EXIT_CONFIG, EXIT_OTHER, EXIT_PERMISSION};

/// One flag per key of [`flagpost_std::config::KEYS`] (a test checks).
#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
    /// Parse and validate the configuration (file, FLAGPOST_* variables,
    /// flags), print it as TOML and exit (0: valid, 2: not) without binding.
    #[arg(long)]
    check_config: bool,
    /// Address to serve on (repeatable; default 127.0.0.1:16725). Overrides
    /// the file and FLAGPOST_BIND.
    #[arg(long, value_name = "ADDR")]
    bind: Vec<SocketAddr>,
    /// TOML configuration file.
    #[arg(long, value_name = "FILE", env = "FLAGPOST_CONFIG")]
    config: Option<PathBuf>,
    /// Serve HTTP on this address: /metrics (Prometheus), /healthz, /events
    /// (Server-Sent Events of raises), /stats.json and the dashboard at /.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Most listener connections at once.
    #[arg(long, value_name = "N")]
    max_listeners: Option<usize>,
    /// Most listener connections from one IP address (0: no limit).
    #[arg(long, value_name = "N")]
    max_per_address: Option<u32>,
    /// Backlog of the TCP listen queue.
    #[arg(long, value_name = "N")]
    listen_backlog: Option<u32>,
    /// Receive buffer asked for on each UDP socket, in bytes.
    #[arg(long, value_name = "BYTES")]
    udp_recv_buffer: Option<usize>,
    /// UDP sockets per address (1 to 16; Linux).
    #[arg(long, value_name = "N")]
    udp_sockets: Option<usize>,
    /// Kernel send buffer of each listener connection, in bytes (0: the
    /// system's default).
    #[arg(long, value_name = "BYTES")]
    listener_send_buffer: Option<usize>,
    /// Keep-alive timeout for listeners (e.g. 30s).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    keepalive: Option<Duration>,
    /// How long a connection may take to say hello (e.g. 10s).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    hello_timeout: Option<Duration>,
    /// How long undelivered flags may wait before a listener that stopped
    /// reading is closed (0s: never).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    stuck_timeout: Option<Duration>,
    /// Senders tracked for loss detection.
    #[arg(long, value_name = "N")]
    sender_table: Option<usize>,
    /// File holding the shared key (see `flagpost keygen`): senders must
    /// sign, listeners must prove it.
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// During a key rotation, the file of the key being replaced (still
    /// accepted, never used to sign).
    #[arg(long, value_name = "FILE")]
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
    /// Join other brokers over NATS: a nats:// (or tls://) URL of the NATS
    /// server. Notifications accepted here are published on the subject;
    /// those other brokers publish raise flags here.
    #[arg(long, value_name = "URL")]
    federation: Option<String>,
    /// The NATS subject of the federation (default flagpost; with
    /// --federation or the file's `federation` key).
    #[arg(long, value_name = "SUBJECT")]
    federation_subject: Option<String>,
}

/// Sets `slot` when the flag was given.
fn set<T>(slot: &mut T, flag: Option<T>) {
    if let Some(v) = flag {
        *slot = v;
    }
}

/// Defaults, file, environment, then flags: the configuration to run, and
/// the one before the flags (a reload re-reads the file and environment and
/// keeps the flags).
fn effective(args: ServeArgs) -> Result<(BrokerConfig, BrokerConfig), Failure> {
    let mut config = BrokerConfig::load(args.config.as_deref(), std::env::vars())
        .map_err(|e: ConfigError| Failure::new(EXIT_CONFIG, e))?;
    let base = config.clone();
    if !args.bind.is_empty() {
        config.bind = args.bind;
    }
    if args.metrics.is_some() {
        config.metrics = args.metrics;
    }
    set(&mut config.max_listeners, args.max_listeners);
    set(&mut config.max_per_address, args.max_per_address);
    set(&mut config.listen_backlog, args.listen_backlog);
    set(&mut config.udp_recv_buffer, args.udp_recv_buffer);
    set(&mut config.udp_sockets, args.udp_sockets);
    set(&mut config.listener_send_buffer, args.listener_send_buffer);
    set(&mut config.keepalive, args.keepalive);
    set(&mut config.hello_timeout, args.hello_timeout);
    set(&mut config.stuck_timeout, args.stuck_timeout);
    set(&mut config.sender_table, args.sender_table);
    if args.key_file.is_some() {
        config.key_file = args.key_file;
        // a new key on the command line replaces the file's pair
        config.previous_key_file = None;
    }
    if args.previous_key_file.is_some() {
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
    set(&mut config.postgres_channel, args.postgres_channel);
    if args.postgres_password_file.is_some() {
        config.postgres_password_file = args.postgres_password_file;
    }
    set(&mut config.postgres_mode, args.postgres_mode);
    set(&mut config.postgres_slot, args.postgres_slot);
    set(&mut config.postgres_publication, args.postgres_publication);
    if let Some(url) = args.federation {
        match &mut config.federation {
            Some(fed) => fed.nats = url,
            None => config.federation = Some(flagpost_std::config::FederationConfig::new(url)),
        }
    }
    if let Some(subject) = args.federation_subject {
        let Some(fed) = &mut config.federation else {
            return Err(Failure::new(
                EXIT_CONFIG,
                "--federation-subject needs --federation (or the file's federation key)",
            ));
        };
        fed.subject = subject;
    }
    config
        .validate()
        .map_err(|e| Failure::new(EXIT_CONFIG, e))?;
    Ok((base, config))
}

fn serve_failure(e: ServeError) -> Failure {
    let code = match &e {
        ServeError::AddrInUse { .. } => EXIT_ADDR_IN_USE,
        ServeError::PermissionDenied { .. } => EXIT_PERMISSION,
        ServeError::Config(_) | ServeError::Key(_) | ServeError::Activation(_) => EXIT_CONFIG,
        ServeError::Metrics { source, .. } => match source.kind() {
            io::ErrorKind::AddrInUse => EXIT_ADDR_IN_USE,
            io::ErrorKind::PermissionDenied => EXIT_PERMISSION,
            _ => EXIT_OTHER,
        },
        ServeError::Bind { .. } | ServeError::Io(_) => EXIT_OTHER,
    };
    Failure::new(code, e)
}

pub(crate) fn serve(args: ServeArgs) -> Result<(), Failure> {
    let check = args.check_config;
    let config_file = args.config.clone();
    let (base, config) = effective(args)?;
    if check {
        // the key files too: a missing or unreadable key fails the start
        for path in [&config.key_file, &config.previous_key_file]
            .into_iter()
            .flatten()
        {
            flagpost_std::keyfile::read_key_file(path).map_err(|e| Failure::new(EXIT_CONFIG, e))?;
        }
        let text = toml::to_string(&config)
            .map_err(|e| Failure::new(EXIT_OTHER, format!("cannot print the config: {e}")))?;
        print!("{text}");
        eprintln!("flagpost: configuration OK");
        return Ok(());
    }
    let metrics_addr = config.metrics;
    let federation = config.federation.clone();
    let started = config.clone();
    #[cfg(unix)] // socket activation: the service manager's sockets, if any
    let broker = match flagpost_std::systemd::listen_fds()
        .map_err(|e| Failure::new(EXIT_CONFIG, format!("socket activation (LISTEN_FDS): {e}")))?
    {
        Some(fds) => Broker::bind_activated(config, fds),
        None => Broker::bind(config),
    };
    #[cfg(not(unix))]
    let broker = Broker::bind(config);
    let broker = broker.map_err(serve_failure)?;
    let handle = broker.handle();
    let metrics = match metrics_addr {
        Some(addr) => {
            let server = MetricsServer::start_config(addr, handle.clone(), &started)
                .map_err(serve_failure)?;
            tracing::info!(
                addr = %server.local_addr(),
                "HTTP on / (dashboard), /metrics, /healthz, /events and /stats.json"
            );
            Some(server)
        }
        None => None,
    };
    // SIGHUP reloads (the HTTP token's keys too), SIGINT/SIGTERM stop;
    // READY=1 once the loop serves
    #[cfg(unix)]
    {
        let http_keys = metrics.as_ref().map(MetricsServer::keys);
        flagpost_std::systemd::handle_signals(handle.clone(), move || {
            let fresh = BrokerConfig::load(config_file.as_deref(), std::env::vars())
                .map_err(|e| e.to_string())?;
            let config = flagpost_std::server::with_overrides(fresh, &base, &started)
                .map_err(|e| e.to_string())?;
            // the keys of new HTTP requests; a key file that cannot be read
            // fails the reload (the broker reads it again) and changes nothing
            if let Some(keys) = &http_keys {
                let ring = match &config.key_file {
                    Some(path) => Some(
                        flagpost_std::keyfile::read_keyring(
                            path,
                            config.previous_key_file.as_deref(),
                        )
                        .map_err(|e| e.to_string())?,
                    ),
                    None => None,
                };
                keys.set(ring);
                keys.set_allow_listeners(&config.allow_listeners);
            }
            Ok::<_, String>(config)
        })
        .map_err(|e| Failure::new(EXIT_OTHER, format!("cannot install signal handler: {e}")))?;
    }
    #[cfg(not(unix))]
    let on_signal = handle.clone();
    #[cfg(not(unix))]
    ctrlc::set_handler(move || on_signal.shutdown())
        .map_err(|e| Failure::new(EXIT_OTHER, format!("cannot install signal handler: {e}")))?;
    #[cfg(not(unix))]
    let _ = (base, &started, config_file, &metrics);
    // Announce the bound addresses on stdout: scripts started with port 0 read them.
    // (a stdout nobody reads any more must not stop the broker: errors are
    // ignored)
    let mut out = io::stdout().lock();
    for addr in handle.local_addrs() {
        let _ = writeln!(out, "listening on {addr}");
    }
    if let Some(server) = &metrics {
        let _ = writeln!(out, "http on http://{}/", server.local_addr());
    }
    if let Some(fed) = &federation {
        let _ = writeln!(out, "federation on {} subject {}", fed.nats, fed.subject);
    }
    let _ = out.flush();
    drop(out);
    #[cfg(windows)]
    flagpost_std::winservice::serving(&handle);
    broker.run().map_err(serve_failure)
}
