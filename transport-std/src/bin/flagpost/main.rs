//! `flagpost`: run the broker, send notifications, listen, read counters,
//! check that a broker answers.
//!
//! Exit codes (README.md, *Exit codes*): 0 success · 1 other failure ·
//! 2 bad usage or bad config · 3 broker unreachable (nothing listens,
//! no route) · 4 address in use · 5 permission denied · 6 timed out
//! waiting (`listen --timeout`) · 7 refused by the broker (a limit, an
//! access rule) · 8 no answer in time (`notify --confirm`) · 9 not a
//! Flagpost broker at that address.

use std::io::{self, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use flagpost_std::core::{ChannelId, FlagSet};

mod broker;
mod client;
mod listen;
mod serve;

use serve::ServeArgs;

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
    /// One round trip to the broker (a listener's hello and welcome): print
    /// the time, or why not (exit 3 unreachable, 7 refused, 9 not a broker).
    Ping(PingArgs),
    /// Write a new random key file for `--key-file` / `key_file`.
    Keygen(KeygenArgs),
    /// Print the HTTP token of a key file: what `/events` and `/stats.json`
    /// of `serve --metrics` take (`Authorization: Bearer TOKEN` or
    /// `?token=TOKEN`) when the broker has that key.
    HttpToken(HttpTokenArgs),
    /// Windows service: install [SERVE FLAGS…] | uninstall | run (the SCM's entry).
    #[cfg(windows)]
    Service {
        /// What to do.
        #[arg(value_parser = ["install", "uninstall", "run"])]
        action: String,
        /// The serve flags the service runs with (install), e.g. --config FILE.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        serve_flags: Vec<std::ffi::OsString>,
    },
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Args, Debug)]
struct KeygenArgs {
    /// Where to write the key (must not exist; created readable by its owner only).
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

#[derive(Args, Debug)]
struct HttpTokenArgs {
    /// The broker's key file.
    #[arg(long, value_name = "FILE")]
    key_file: PathBuf,
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
    /// The broker: HOST or HOST:PORT (the port defaults to 16725).
    #[arg(long, value_name = "HOST[:PORT]", env = "FLAGPOST_BROKER", default_value = DEFAULT_BROKER)]
    broker: String,
    /// How many changes this notification stands for.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    count: u32,
    /// Wait for the broker's acknowledgement, retransmitting until it comes.
    #[arg(long)]
    confirm: bool,
    /// How long --confirm waits (then exit 8).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Sign with the key in this file (the broker's key_file).
    #[arg(long, value_name = "FILE", env = "FLAGPOST_KEY_FILE")]
    key_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct ListenArgs {
    /// The broker: HOST or HOST:PORT (the port defaults to 16725); or a
    /// comma-separated list to fail over across: the first, then the next
    /// whenever the connection is lost (it stays on one that works).
    #[arg(long, value_name = "HOST[:PORT][,…]", env = "FLAGPOST_BROKER", default_value = DEFAULT_BROKER)]
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
    /// The broker: HOST or HOST:PORT (the port defaults to 16725).
    #[arg(long, value_name = "HOST[:PORT]", env = "FLAGPOST_BROKER", default_value = DEFAULT_BROKER)]
    broker: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Authenticate with the broker's key (see `flagpost keygen`); needed
    /// when the broker has one.
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct PingArgs {
    /// The broker: HOST or HOST:PORT (the port defaults to 16725).
    #[arg(long, value_name = "HOST[:PORT]", env = "FLAGPOST_BROKER", default_value = DEFAULT_BROKER)]
    broker: String,
    /// Authenticate with the broker's key (needed when the broker has one).
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
const EXIT_REFUSED: u8 = 7;
const EXIT_NO_ANSWER: u8 = 8;
const EXIT_NOT_A_BROKER: u8 = 9;

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
    let reads_env = !matches!(
        cli.command,
        Command::Completions { .. } | Command::Keygen(_) | Command::HttpToken(_)
    );
    let checked = if reads_env { check_env() } else { Ok(()) };
    let result = checked.and_then(|()| match cli.command {
        Command::Serve(args) => serve::serve(*args),
        Command::Notify(args) => client::notify(args),
        Command::Listen(args) => listen::listen(args),
        Command::Stats(args) => client::stats(args),
        Command::Ping(args) => client::ping(args),
        Command::Keygen(args) => keygen(args),
        Command::HttpToken(args) => {
            let key = key_arg(Some(&args.key_file))?
                .ok_or_else(|| Failure::new(EXIT_CONFIG, "--key-file: no key"))?;
            println!("{}", flagpost_std::http::token(&key));
            Ok(())
        }
        #[cfg(windows)]
        Command::Service {
            action,
            serve_flags,
        } => windows_service(&action, serve_flags),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "flagpost", &mut io::stdout());
            Ok(())
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("flagpost: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// A misspelled `FLAGPOST_*` variable is an error for every subcommand.
fn check_env() -> Result<(), Failure> {
    let vars: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .collect();
    flagpost_std::config::check_env(vars.iter().map(String::as_str))
        .map_err(|e| Failure::new(EXIT_CONFIG, e))
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

/// The key in `--key-file`, if given.
fn key_arg(
    path: Option<&std::path::Path>,
) -> Result<Option<flagpost_std::core::auth::Key>, Failure> {
    path.map(flagpost_std::keyfile::read_key_file)
        .transpose()
        .map_err(|e| Failure::new(EXIT_CONFIG, e))
}

/// `flagpost service …` (flagpost_std::winservice): the serve flags are
/// checked here, so a bad one fails the install, not the service's start.
#[cfg(windows)]
fn windows_service(action: &str, flags: Vec<std::ffi::OsString>) -> Result<(), Failure> {
    let argv = ["flagpost".into(), "serve".into()]
        .into_iter()
        .chain(flags.clone());
    let args = match Cli::try_parse_from(argv).map_err(|e| Failure::new(EXIT_CONFIG, e))? {
        Cli {
            command: Command::Serve(args),
        } => args,
        _ => return Err(Failure::new(EXIT_CONFIG, "service: expected serve flags")),
    };
    flagpost_std::winservice::command(action, &flags, move || {
        serve::serve(*args).map_err(|f| f.message)
    })
    .map_err(|e| Failure::new(EXIT_OTHER, e))
}
