//! `flagpost-bench scale`: the broker with thousands of listeners
//! connected. Three scenarios, each beside a floor measured in the same
//! run:
//!
//! * [`ingest`] — datagrams per second the broker processes, and the
//!   kernel's drops, with 0 to 19,000 listeners in four routing cases, idle
//!   and reading, beside the same broker with no listener and a bare
//!   fan-out process ([`floor`]);
//! * [`quiet`] — a quiet channel's wake latency while a channel of 10,000
//!   idle listeners is flooded, beside the same latency unloaded and the
//!   bare relay under the same flood;
//! * [`stuck`] — listeners that stop reading: the bytes the kernel queues
//!   for each on the broker's side ([`sockets`]), and how long after
//!   `stuck_timeout` the broker closes them.
//!
//! The participants are this binary's child modes: the broker (`_broker`,
//! which answers `counters` with the [`Counters`] line), the farm of raw
//! listeners ([`farm`], `_scale_farm`), the bare floor (`_ingest_floor`),
//! and the senders ([`send`]) run in the bench process itself.

pub(crate) mod farm;
mod floor;
mod ingest;
mod quiet;
mod send;
mod sockets;
mod stuck;

use std::time::{Duration, Instant};

use flagpost_benches::report::Report;
use flagpost_core::broker::Stats;
use flagpost_core::wire::CloseReason;

use crate::Participant;

pub(crate) use farm::child_scale_farm;
pub(crate) use floor::child_ingest_floor;

/// The sizes of one `scale` run.
pub(crate) struct Sizes {
    pub(crate) ingest: ingest::Sizes,
    pub(crate) quiet: quiet::Sizes,
    pub(crate) stuck: stuck::Sizes,
}

impl Sizes {
    /// The full run.
    pub(crate) fn full() -> Sizes {
        Sizes {
            ingest: ingest::Sizes::full(),
            quiet: quiet::Sizes::full(),
            stuck: stuck::Sizes::full(),
        }
    }

    /// Smoke sizes (`--quick`): they show that the scenarios run.
    pub(crate) fn quick() -> Sizes {
        Sizes {
            ingest: ingest::Sizes::quick(),
            quiet: quiet::Sizes::quick(),
            stuck: stuck::Sizes::quick(),
        }
    }

    /// `self` with the command line's overrides: `--sizes N,N,…` (ingest's
    /// listener counts), `--seconds S` (ingest's turn), `--flood-listeners
    /// N` and `--samples N` (the quiet channel), `--stuck-listeners K`.
    pub(crate) fn with_args(mut self, args: &[String]) -> Sizes {
        if let Some(list) = crate::flag_value::<String>(args, "--sizes", String::new())
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.trim().parse::<usize>().map_err(|_| ()))
            .collect::<Result<Vec<usize>, ()>>()
            .ok()
            .filter(|l| !l.is_empty())
        {
            self.ingest.sizes = list;
        }
        self.ingest.turn_secs = crate::flag_value(args, "--seconds", self.ingest.turn_secs);
        self.quiet.listeners = crate::flag_value(args, "--flood-listeners", self.quiet.listeners);
        self.quiet.samples = crate::flag_value(args, "--samples", self.quiet.samples);
        self.stuck.listeners = crate::flag_value(args, "--stuck-listeners", self.stuck.listeners);
        self
    }
}

/// Which scenarios a `scale` run measures (`--part ingest|quiet|stuck`;
/// all three without it).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    All,
    Ingest,
    Quiet,
    Stuck,
}

impl Part {
    pub(crate) fn from_args(args: &[String]) -> Part {
        match crate::flag_value::<String>(args, "--part", String::new()).as_str() {
            "" => Part::All,
            "ingest" => Part::Ingest,
            "quiet" => Part::Quiet,
            "stuck" => Part::Stuck,
            _ => crate::usage(),
        }
    }
}

/// Runs the scale scenarios `part` names.
pub(crate) fn run(sizes: &Sizes, part: Part, report: &mut Report) {
    if matches!(part, Part::All | Part::Ingest) {
        ingest::run(&sizes.ingest, report);
    }
    if matches!(part, Part::All | Part::Quiet) {
        quiet::run(&sizes.quiet, report);
    }
    if matches!(part, Part::All | Part::Stuck) {
        stuck::run(&sizes.stuck, report);
    }
}

/// What the broker's (or the bare floor's) counters say, as the answer to
/// the query `counters`: one line of `key=value` pairs. The bare floor
/// fills the fields it has (datagrams, kernel drops, frames).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    /// Valid datagrams processed.
    pub(crate) datagrams: u64,
    /// Datagrams the kernel reported dropping (`SO_RXQ_OVFL`).
    pub(crate) kernel_drops: u64,
    /// Flags frames written.
    pub(crate) flags_frames: u64,
    /// Possible losses that raised status for every listener.
    pub(crate) possible_losses: u64,
    /// Flag raises on listeners.
    pub(crate) raises: u64,
    /// Listener slots routing visited.
    pub(crate) route_visits: u64,
    /// Gauge: listening connections.
    pub(crate) listening: u64,
    /// Connections closed as stuck.
    pub(crate) closes_stuck: u64,
}

/// The keys of the `counters` line, in order.
const KEYS: [&str; 8] = [
    "datagrams",
    "kernel_drops",
    "flags_frames",
    "possible_losses",
    "raises",
    "route_visits",
    "listening",
    "closes_stuck",
];

impl Counters {
    /// The broker's figures.
    pub(crate) fn of(s: &Stats) -> Counters {
        Counters {
            datagrams: s.datagrams,
            kernel_drops: s.kernel_drops,
            flags_frames: s.flags_frames,
            possible_losses: s.possible_losses,
            raises: s.raises,
            route_visits: s.route_visits,
            listening: s.listening,
            closes_stuck: s.closes[CloseReason::Stuck as usize],
        }
    }

    fn fields(&mut self) -> [&mut u64; 8] {
        [
            &mut self.datagrams,
            &mut self.kernel_drops,
            &mut self.flags_frames,
            &mut self.possible_losses,
            &mut self.raises,
            &mut self.route_visits,
            &mut self.listening,
            &mut self.closes_stuck,
        ]
    }

    /// The `counters` answer.
    pub(crate) fn line(mut self) -> String {
        let values: Vec<String> = KEYS
            .iter()
            .zip(self.fields())
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        values.join(" ")
    }

    /// Parses a `counters` answer; unknown keys and bad values are skipped.
    pub(crate) fn parse(line: &str) -> Counters {
        let mut c = Counters::default();
        for pair in line.split_whitespace() {
            let Some((key, value)) = pair.split_once('=') else {
                continue;
            };
            let Some(i) = KEYS.iter().position(|k| *k == key) else {
                continue;
            };
            if let (Some(field), Ok(v)) = (c.fields().into_iter().nth(i), value.parse()) {
                *field = v;
            }
        }
        c
    }

    /// Asks `p` (a broker or a bare floor).
    pub(crate) fn query(p: &mut Participant) -> Counters {
        Counters::parse(&p.query("counters"))
    }

    /// `self − before`, field by field (gauges too; saturating).
    pub(crate) fn since(mut self, mut before: Counters) -> Counters {
        for (a, b) in self.fields().into_iter().zip(before.fields()) {
            *a = a.saturating_sub(*b);
        }
        self
    }
}

/// Waits until `p` has processed what its socket holds: its datagram count
/// unchanged over 50 ms (at most `limit`). The kernel's drop counter is
/// only seen with the next datagram read, so drops are read after this.
/// (A broker answers a query between two turns of its loop, so an
/// unchanged count means a turn that read nothing.)
pub(crate) fn settle(p: &mut Participant, limit: Duration) -> Counters {
    let deadline = Instant::now() + limit;
    let mut last = Counters::query(p);
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let now = Counters::query(p);
        if now.datagrams == last.datagrams || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

/// `n` with thousands separators.
pub(crate) fn int(n: u64) -> String {
    flagpost_benches::report::fmt_int(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_round_trip() {
        let c = Counters {
            datagrams: 1,
            kernel_drops: 2,
            flags_frames: 3,
            possible_losses: 4,
            raises: 5,
            route_visits: 6,
            listening: 7,
            closes_stuck: 8,
        };
        assert_eq!(Counters::parse(&c.line()), c);
        assert_eq!(
            Counters::parse("datagrams=9 bogus=1 raises=x flags_frames=2").flags_frames,
            2
        );
        assert_eq!(c.since(Counters { datagrams: 3, ..c }).datagrams, 0);
    }
}
