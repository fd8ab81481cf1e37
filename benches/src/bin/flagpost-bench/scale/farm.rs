//! The scale scenarios' listener farm as a child process (`_scale_farm`):
//! a [`Farm`] opened as a [`FarmSpec`] says, that keeps reading on its own
//! (the fan-out farm only reads while a round is awaited) and answers
//! queries between two turns of its loop:
//!
//! | query | does | answers |
//! |---|---|---|
//! | `count` | — | flags frames received so far |
//! | `idle` | stops reading | the moment it stopped (`CLOCK_MONOTONIC` ns) |
//! | `read` | reads again | `ok` |
//! | `closed` | — | connections the peer closed, as seen while reading |
//! | `ports` | — | the local port of every connection, comma-separated |
//!
//! [`ScaleFarm`] is the parent's side.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use flagpost_benches::clock::now_ns;
use flagpost_benches::farm::{Channels, Farm, FarmSpec, Hello};
use flagpost_core::{ChannelId, FlagSet};

use crate::Participant;

/// The child's arguments for `spec`: hello, channels, receive buffer.
fn spec_args(spec: &FarmSpec) -> Vec<String> {
    let hello = match spec.hello {
        Hello::Flagpost(interest) => format!("flagpost:{}", interest.bits()),
        Hello::Line => "line".into(),
        Hello::None => "none".into(),
    };
    let channels = match spec.channels {
        Channels::All => "all".into(),
        Channels::One(c) => format!("one:{c}"),
        Channels::PerTen => "per-ten".into(),
    };
    let rcvbuf = spec.recv_buffer.map_or("-".into(), |b| b.to_string());
    vec![hello, channels, rcvbuf, spec.chunk.to_string()]
}

/// The inverse of [`spec_args`]; `None` if they do not parse.
fn parse_spec(args: &[String]) -> Option<FarmSpec> {
    let hello = match args.first()?.as_str() {
        "line" => Hello::Line,
        "none" => Hello::None,
        h => Hello::Flagpost(FlagSet::from_bits(
            h.strip_prefix("flagpost:")?.parse().ok()?,
        )?),
    };
    let channels = match args.get(1)?.as_str() {
        "all" => Channels::All,
        "per-ten" => Channels::PerTen,
        c => Channels::One(ChannelId::new(c.strip_prefix("one:")?).ok()?),
    };
    let recv_buffer = match args.get(2)?.as_str() {
        "-" => None,
        b => Some(b.parse().ok()?),
    };
    Some(FarmSpec {
        hello,
        channels,
        recv_buffer,
        chunk: args.get(3)?.parse().ok()?,
    })
}

/// `_scale_farm ADDR N SPEC…`: opens the farm, announces, then reads and
/// answers queries until the parent closes stdin.
pub(crate) fn child_scale_farm(args: &[String]) {
    crate::raise_fds("farm");
    let addr: SocketAddr = args.first().and_then(|a| a.parse().ok()).expect("addr");
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).expect("n");
    let spec = parse_spec(args.get(2..).unwrap_or_default()).expect("farm spec");
    let mut farm = Farm::open(addr, n, &spec).unwrap_or_else(|e| panic!("farm: {e}"));
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(q) = line else { break };
            if tx.send(q).is_err() {
                break;
            }
        }
        std::process::exit(0);
    });
    crate::announce(addr);
    loop {
        // a query waits at most one turn (10 ms) for its answer
        farm.poll(Some(Duration::from_millis(10)))
            .unwrap_or_else(|e| panic!("farm: {e}"));
        while let Ok(q) = rx.try_recv() {
            let answer = match q.trim() {
                "count" => farm.messages().unwrap_or(0).to_string(),
                "idle" => {
                    farm.set_reading(false)
                        .unwrap_or_else(|e| panic!("farm: {e}"));
                    now_ns().to_string()
                }
                "read" => {
                    farm.set_reading(true)
                        .unwrap_or_else(|e| panic!("farm: {e}"));
                    "ok".into()
                }
                "closed" => farm.closed().to_string(),
                "ports" => {
                    let ports: Vec<String> =
                        farm.local_ports().iter().map(u16::to_string).collect();
                    ports.join(",")
                }
                _ => String::new(),
            };
            println!("{answer}");
            let _ = std::io::stdout().flush();
        }
    }
}

/// The parent's side of a `_scale_farm` child.
pub(crate) struct ScaleFarm {
    pub(crate) p: Participant,
}

impl ScaleFarm {
    /// Opens `n` connections to `addr` as `spec` says; returns once every
    /// one is welcomed (the child announces itself then).
    pub(crate) fn spawn(addr: SocketAddr, n: usize, spec: &FarmSpec) -> ScaleFarm {
        let mut args = vec![addr.to_string(), n.to_string()];
        args.extend(spec_args(spec));
        ScaleFarm {
            p: Participant::spawn("_scale_farm", &args),
        }
    }

    /// Flags frames received so far.
    pub(crate) fn count(&mut self) -> u64 {
        self.p.query("count").parse().unwrap_or(0)
    }

    /// Stops reading; the moment it stopped (ns, `CLOCK_MONOTONIC`).
    pub(crate) fn idle(&mut self) -> u64 {
        self.p.query("idle").parse().unwrap_or(0)
    }

    /// The local port of every connection.
    pub(crate) fn ports(&mut self) -> Vec<u16> {
        self.p
            .query("ports")
            .split(',')
            .filter_map(|p| p.parse().ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_args_round_trip() {
        for spec in [
            FarmSpec::flagpost(FlagSet::CHANNEL_SHUTDOWN, Channels::All),
            FarmSpec {
                hello: Hello::Line,
                channels: Channels::PerTen,
                recv_buffer: Some(4096),
                chunk: 500,
            },
            FarmSpec::flagpost(
                FlagSet::ALL,
                Channels::One(ChannelId::new("parked").expect("channel")),
            ),
        ] {
            let parsed = parse_spec(&spec_args(&spec)).expect("parses");
            assert_eq!(spec_args(&parsed), spec_args(&spec));
        }
    }
}
