//! `flagpost listen`: one line per raised flag on stdout, and on stderr
//! what happens to the connection — connecting, connected, listening,
//! disconnected, reconnecting, and why an attempt failed (refused by the
//! broker, nothing listening, not a Flagpost broker). `--broker a,b` lists
//! brokers to fail over across (the listener's order: the first, then the
//! next on every loss; it stays on one that works). With one broker a wrong
//! key or a peer that is not a broker ends `listen` before the first
//! welcome; with a list it is reported and the next broker is tried.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use flagpost_std::core::FlagSet;
use flagpost_std::listener::{LinkError, LinkEvent};
use flagpost_std::{ListenError, Listener};

use crate::broker::{self, auth_failure, not_a_broker, refusal};
use crate::{key_arg, Failure, ListenArgs, EXIT_CONFIG, EXIT_TIMEOUT, EXIT_UNREACHABLE};

/// A broker welcomes at once; a peer silent this long after the TCP
/// connection is not one.
const WELCOME_WAIT: Duration = Duration::from_secs(5);

/// How often the connection's events are looked at.
const TICK: Duration = Duration::from_millis(100);

/// Prints to stderr, which may be closed: the flags on stdout matter more.
fn say(message: std::fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr(), "flagpost: {message}");
}

/// The failure a lost attempt means, if it ends `listen` (before the first
/// welcome): a key or a wrong port will not heal by retrying.
fn fatal(addr: SocketAddr, error: &LinkError) -> Option<Failure> {
    match error {
        LinkError::Auth(e) => Some(auth_failure(*e)),
        LinkError::NotABroker(why) => Some(not_a_broker(addr, why)),
        _ => None,
    }
}

/// The failure to report when `--timeout` expires before the first welcome.
fn never_listened(addr: SocketAddr, last: Option<&LinkError>, connected: bool) -> Failure {
    match last {
        Some(LinkError::Refused(reason)) => refusal(addr, *reason),
        Some(LinkError::Connect { kind, .. }) => broker::io_failure(addr, &io::Error::from(*kind)),
        _ if connected => not_a_broker(addr, "it accepted the connection but sent no welcome"),
        Some(other) => Failure::new(
            EXIT_UNREACHABLE,
            format!("cannot listen on {addr}: {other}"),
        ),
        None => Failure::new(EXIT_UNREACHABLE, format!("broker at {addr} unreachable")),
    }
}

/// What the connection did, as the user is told it.
struct Reporter {
    /// The broker of the latest attempt.
    addr: SocketAddr,
    /// Several brokers: no failure of one ends `listen`.
    several: bool,
    /// A listening connection was lost: the next attempt is a move, told.
    moving: bool,
    /// The first welcome came.
    listened: bool,
    /// Listening now.
    up: bool,
    /// TCP connected, welcome awaited, since.
    connected_at: Option<Instant>,
    /// The latest failure, and the latest one printed.
    last: Option<LinkError>,
    printed: Option<LinkError>,
}

impl Reporter {
    fn new(addr: SocketAddr, several: bool) -> Self {
        Reporter {
            addr,
            several,
            moving: false,
            listened: false,
            up: false,
            connected_at: None,
            last: None,
            printed: None,
        }
    }

    /// Reports `events`; a failure that ends `listen`.
    fn report(&mut self, events: Vec<LinkEvent>) -> Result<(), Failure> {
        for event in events {
            let addr = self.addr;
            match event {
                LinkEvent::Connecting(to) => {
                    if std::mem::take(&mut self.moving) && to != addr {
                        say(format_args!("trying {to}…"));
                    }
                    self.addr = to;
                }
                LinkEvent::Connected => {
                    self.connected_at = Some(Instant::now());
                    if self.printed.is_none() && !self.up {
                        say(format_args!("connected to {addr}, waiting for the welcome"));
                    }
                }
                LinkEvent::Listening => {
                    self.connected_at = None;
                    // (a reconnect is reported with its re-check raise)
                    self.up = true;
                    self.printed = None;
                    self.listened = true;
                }
                LinkEvent::Lost(error) => {
                    self.connected_at = None;
                    if !self.listened && !self.several {
                        if let Some(f) = fatal(addr, &error) {
                            return Err(f);
                        }
                    }
                    if self.up {
                        say(format_args!(
                            "disconnected from {addr}: {error}; reconnecting…"
                        ));
                        self.moving = true;
                    } else if self.printed.as_ref() != Some(&error) {
                        let what = match &error {
                            LinkError::Refused(reason) => refusal(addr, *reason).message,
                            other => format!("cannot listen on {addr}: {other}"),
                        };
                        say(format_args!("{what}; retrying…"));
                    }
                    self.up = false;
                    self.printed = Some(error.clone());
                    self.last = Some(error);
                }
            }
        }
        if !self.listened
            && !self.several
            && self
                .connected_at
                .is_some_and(|t| t.elapsed() >= WELCOME_WAIT)
        {
            return Err(not_a_broker(
                self.addr,
                &format!("it accepted the connection but sent no welcome within {WELCOME_WAIT:?}"),
            ));
        }
        Ok(())
    }
}

/// `--broker`: one address, or a comma-separated list of them.
fn brokers(list: &str) -> Result<Vec<SocketAddr>, Failure> {
    list.split(',')
        .map(|one| match one.trim() {
            "" => Err(Failure::new(
                EXIT_CONFIG,
                format!("--broker {list:?}: an empty address in the list"),
            )),
            one => broker::resolve(one),
        })
        .collect()
}

pub(crate) fn listen(args: ListenArgs) -> Result<(), Failure> {
    let addrs = brokers(&args.broker)?;
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
    let list = addrs.iter().map(ToString::to_string).collect::<Vec<_>>();
    say(format_args!("connecting to {}…", list.join(", then ")));
    let listener = builder.connect_any(&addrs).map_err(|e| match e {
        ListenError::Brokers(_) => Failure::new(EXIT_CONFIG, format!("--broker: {e}")),
        e => broker::other(e),
    })?;
    let deadline = args.timeout.map(|t| Instant::now() + t);
    let left = || {
        deadline.map_or(TICK, |d| {
            d.saturating_duration_since(Instant::now()).min(TICK)
        })
    };
    let expired = || deadline.is_some_and(|d| Instant::now() >= d);
    let Some(&first) = addrs.first() else {
        return Err(Failure::new(EXIT_CONFIG, "--broker: no address"));
    };
    let mut reporter = Reporter::new(first, addrs.len() > 1);
    while !reporter.listened {
        listener.wait_listening(left());
        reporter.report(listener.take_link_events())?;
        if !reporter.listened && expired() {
            return Err(never_listened(
                reporter.addr,
                reporter.last.as_ref(),
                reporter.connected_at.is_some(),
            ));
        }
    }
    // The first welcome is a reconnect raise (a fresh listener re-checks);
    // that is not a notification, so it is not printed. Reconnect raises
    // after that are printed and marked: something may have been missed.
    listener.wait(Duration::from_secs(1));
    listener.take_raise();
    say(format_args!("listening on {}", reporter.addr));
    let stdout = io::stdout();
    loop {
        let raised = listener.wait(left());
        reporter.report(listener.take_link_events())?;
        if !raised {
            if expired() {
                return Err(Failure::new(EXIT_TIMEOUT, "nothing arrived in time"));
            }
            continue;
        }
        let raise = listener.take_raise();
        let flags = raise.flags;
        if raise.reconnect {
            say(format_args!(
                "reconnected to {}: the broker was away, re-check what may have been missed",
                reporter.addr
            ));
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
