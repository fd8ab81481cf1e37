//! The AT-command driver for the SMS modem as a sans-IO state machine: it
//! owns the init sequence, the one command in flight and its deadline, the
//! liveness probe, re-initialisation with capped exponential backoff, and
//! the translation of the modem's URCs into [`ModemEvent`]s. It never
//! touches the UART and never reads a clock.
//!
//! # Call order (for the board's modem task)
//!
//! * Create it with [`Modem::new`]`(now, random)`; it starts initialising at
//!   once.
//! * Write every command [`Modem::poll_transmit`] hands out (until `None`)
//!   to the UART.
//! * Bytes arrive → [`Modem::handle_rx`]`(now, bytes)`, in any chunking.
//! * Sleep until [`Modem::poll_timeout`] (always `Some`: every state has a
//!   deadline), then call [`Modem::handle_timeout`]`(now)`.
//! * After each of these, drain [`Modem::poll_event`] until `None`.
//!
//! # The init sequence
//!
//! | step | command | timeout | expects |
//! |---|---|---|---|
//! | probe | `AT` | [`PROBE_TIMEOUT`] (1 s), up to [`PROBE_ATTEMPTS`] (5) tries | `OK` |
//! | echo off | `ATE0` | [`COMMAND_TIMEOUT`] (1 s) | `OK` |
//! | text mode | `AT+CMGF=1` | [`SMS_SETUP_TIMEOUT`] (5 s) | `OK` |
//! | indications | `AT+CNMI=2,1,0,1,0` | [`SMS_SETUP_TIMEOUT`] (5 s) | `OK` |
//! | verify indications | `AT+CNMI?` | [`COMMAND_TIMEOUT`] (1 s) | `+CNMI: 2,1,0,1,0`, `OK` |
//! | verify text mode | `AT+CMGF?` | [`COMMAND_TIMEOUT`] (1 s) | `+CMGF: 1`, `OK` |
//!
//! then [`ModemEvent::Ready`]. The `+CNMI` parameters ([`INDICATIONS`],
//! 3GPP TS 27.005 §3.4.1):
//!
//! * `mode=2`: while the serial link is reserved (a data call), buffer URCs
//!   in the modem and flush them afterwards; otherwise forward them at once.
//! * `mt=1`: store every incoming SMS and announce it with
//!   `+CMTI: <mem>,<index>` — the message waits in storage until read, so a
//!   missed URC loses no message.
//! * `bm=0`: no cell broadcast indications.
//! * `ds=1`: route status reports directly as `+CDS` (text mode: one line;
//!   PDU mode: `+CDS: <length>` and a PDU line). With the default
//!   `AT+CSMS=0` these need no `AT+CNMA` acknowledgement. (`ds=2` would
//!   store them and announce `+CDSI: <mem>,<index>`; both are understood.)
//! * `bfr=0`: flush URCs buffered under `mode` when it is entered.
//!
//! # Failures
//!
//! `ERROR`, `+CME ERROR` or `+CMS ERROR` to an init command (other than the
//! probe, which is simply retried), a timeout, or a read-back that does not
//! match ends the attempt: [`ModemEvent::Lost`] says why and when the next
//! attempt starts, after a delay from [`Backoff`] ([`BACKOFF_INITIAL`]
//! doubling to [`BACKOFF_MAX`], jittered with the caller's randomness). The
//! backoff resets once ready. Responses arriving while waiting are ignored,
//! so a late answer to a timed-out command cannot complete the next one.
//!
//! Once ready, a modem silent for [`KEEPALIVE_IDLE`] (30 s) gets an `AT`;
//! no answer within [`PROBE_TIMEOUT`] is [`ModemEvent::Lost`] and a
//! re-init. "Silent" means no recognised line: echo, banners and noise
//! ([`Line::Other`]) do not count as signs of life.
//!
//! URCs (`+CMTI`, `+CDSI`, `+CDS`, `+CMT`) are reported whatever the state,
//! including between a command and its final result code: only `OK`,
//! `ERROR`, `+CME ERROR` and `+CMS ERROR` complete the command in flight.

use flagpost_core::listener::Backoff;
use flagpost_core::time::{Duration, Instant};

use crate::urc::{Cnmi, Line, Mem, StatusReport, UrcParser, UrcStats, MAX_LINE};

/// How long the probe `AT` (at init and as liveness probe) may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How many times the init probe `AT` is sent before the modem counts as
/// lost (autobauding modems need a few to lock on).
pub const PROBE_ATTEMPTS: u8 = 5;
/// How long a simple command (`ATE0`, `AT+CNMI?`, `AT+CMGF?`) may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
/// How long `AT+CMGF=1` and `AT+CNMI=…` may take: they reach the SMS
/// service, which is slow while the modem is still attaching to the network.
pub const SMS_SETUP_TIMEOUT: Duration = Duration::from_secs(5);
/// Silence after which a ready modem is probed.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
/// The first re-init delay (before jitter, which takes it to 0.5–1 s).
pub const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
/// The longest re-init delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Events held for [`Modem::poll_event`]; beyond that they are dropped and
/// reported as [`ModemEvent::Overrun`].
pub const EVENT_QUEUE: usize = 8;

/// The `+CNMI` settings the init sequence writes and verifies.
pub const INDICATIONS: Cnmi = Cnmi {
    mode: 2,
    mt: 1,
    bm: 0,
    ds: 1,
    bfr: 0,
};

/// The SMS format set and verified: 1, text mode.
pub const TEXT_MODE: u8 = 1;

/// A command the driver sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Command {
    /// `AT`: the init probe.
    Probe,
    /// `ATE0`: echo off.
    EchoOff,
    /// `AT+CMGF=1`: SMS text mode.
    TextMode,
    /// `AT+CNMI=2,1,0,1,0`: new message and status report indications.
    Indications,
    /// `AT+CNMI?`: read the indications back.
    ReadIndications,
    /// `AT+CMGF?`: read the SMS format back.
    ReadTextMode,
    /// `AT`: the liveness probe of a ready modem.
    KeepAlive,
}

impl Command {
    /// The bytes to write, `\r`-terminated.
    pub const fn bytes(self) -> &'static [u8] {
        match self {
            Command::Probe | Command::KeepAlive => b"AT\r",
            Command::EchoOff => b"ATE0\r",
            Command::TextMode => b"AT+CMGF=1\r",
            Command::Indications => b"AT+CNMI=2,1,0,1,0\r",
            Command::ReadIndications => b"AT+CNMI?\r",
            Command::ReadTextMode => b"AT+CMGF?\r",
        }
    }

    /// How long the modem has to answer it, from the moment it is handed
    /// out by [`Modem::poll_transmit`].
    pub const fn timeout(self) -> Duration {
        match self {
            Command::Probe | Command::KeepAlive => PROBE_TIMEOUT,
            Command::TextMode | Command::Indications => SMS_SETUP_TIMEOUT,
            Command::EchoOff | Command::ReadIndications | Command::ReadTextMode => COMMAND_TIMEOUT,
        }
    }

    /// The init step after this one (`None` after the last).
    const fn next_init(self) -> Option<Command> {
        match self {
            Command::Probe => Some(Command::EchoOff),
            Command::EchoOff => Some(Command::TextMode),
            Command::TextMode => Some(Command::Indications),
            Command::Indications => Some(Command::ReadIndications),
            Command::ReadIndications => Some(Command::ReadTextMode),
            Command::ReadTextMode | Command::KeepAlive => None,
        }
    }
}

/// A final result code that refused a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Rejection {
    /// `ERROR`.
    Error,
    /// `+CME ERROR: <n>`.
    Cme(Option<u16>),
    /// `+CMS ERROR: <n>`.
    Cms(Option<u16>),
}

/// Why the modem was declared lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum LostReason {
    /// No final result code in time (for [`Command::Probe`]: after
    /// [`PROBE_ATTEMPTS`] tries).
    Timeout(Command),
    /// The modem refused an init command.
    Rejected(Command, Rejection),
    /// A read-back (`AT+CNMI?`, `AT+CMGF?`) did not show the settings just
    /// written, or showed none.
    Mismatch(Command),
}

/// A status report, stored or routed directly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DeliveryReport {
    /// `+CDSI`: stored at `index` in `mem`.
    Stored {
        /// The storage.
        mem: Mem,
        /// The location.
        index: u16,
    },
    /// `+CDS`: routed directly, with what could be decoded of it.
    Direct(StatusReport),
}

/// What the driver reports to the application.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ModemEvent {
    /// Init succeeded and was verified: indications will arrive.
    Ready,
    /// `+CMTI`: a new SMS is stored at `index` in `mem`.
    NewSms {
        /// The storage.
        mem: Mem,
        /// The location.
        index: u16,
    },
    /// `+CMT`: a new SMS was routed directly, not stored (the modem is not
    /// configured the way [`INDICATIONS`] says, or another program changed
    /// it).
    NewSmsDirect,
    /// `+CDS` or `+CDSI`: a status report arrived.
    DeliveryReport(DeliveryReport),
    /// The modem stopped answering, refused a command, or did not keep its
    /// settings. It is re-initialised from `retry_at`.
    Lost {
        /// Why.
        reason: LostReason,
        /// When the next init attempt starts.
        retry_at: Instant,
    },
    /// `dropped` events did not fit in the queue ([`EVENT_QUEUE`]) since
    /// the last overrun: check the modem's storage for missed messages.
    Overrun {
        /// How many.
        dropped: u32,
    },
}

/// Where the driver is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ModemState {
    /// Waiting for the backoff delay before the next init attempt.
    Waiting,
    /// Running the init sequence.
    Initializing,
    /// Initialised and verified.
    Ready,
}

/// Counters of the driver's life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ModemStats {
    /// Init attempts started.
    pub inits: u32,
    /// Times the modem became ready.
    pub readies: u32,
    /// [`ModemEvent::Lost`] events.
    pub losses: u32,
    /// Commands that timed out.
    pub timeouts: u32,
    /// Commands answered with `ERROR`, `+CME ERROR` or `+CMS ERROR`.
    pub rejections: u32,
    /// Final result codes with no command waiting for one (late answers,
    /// noise).
    pub unexpected: u32,
    /// Events dropped because the queue was full.
    pub events_dropped: u32,
    /// The line parser's counters.
    pub urc: UrcStats,
}

/// A command queued or sent, with its deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct InFlight {
    command: Command,
    /// Handed out by `poll_transmit`; only then can a result complete it.
    sent: bool,
    deadline: Instant,
}

impl InFlight {
    fn queued(now: Instant, command: Command) -> Self {
        InFlight {
            command,
            sent: false,
            deadline: now + command.timeout(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Backing off until `until`.
    Waiting { until: Instant },
    /// An init step is in flight; `probes` counts the probe tries.
    Init { cmd: InFlight, probes: u8 },
    /// Ready; probed after `last_heard + KEEPALIVE_IDLE`.
    Ready {
        last_heard: Instant,
        probe: Option<InFlight>,
    },
}

/// A fixed ring of events.
#[derive(Clone, Debug)]
struct EventQueue {
    items: [Option<ModemEvent>; EVENT_QUEUE],
    head: usize,
    len: usize,
}

impl EventQueue {
    const fn new() -> Self {
        EventQueue {
            items: [None; EVENT_QUEUE],
            head: 0,
            len: 0,
        }
    }

    /// Hands the event back when full.
    fn push(&mut self, event: ModemEvent) -> Result<(), ModemEvent> {
        if self.len >= EVENT_QUEUE {
            return Err(event);
        }
        let at = (self.head + self.len) % EVENT_QUEUE;
        match self.items.get_mut(at) {
            Some(slot) => {
                *slot = Some(event);
                self.len += 1;
                Ok(())
            }
            None => Err(event),
        }
    }

    fn pop(&mut self) -> Option<ModemEvent> {
        if self.len == 0 {
            return None;
        }
        let event = self.items.get_mut(self.head).and_then(Option::take);
        self.head = (self.head + 1) % EVENT_QUEUE;
        self.len -= 1;
        event
    }
}

/// The modem driver. See the [module documentation](self) for the call
/// order, the commands and the failure handling.
#[derive(Clone, Debug)]
pub struct Modem {
    parser: UrcParser<MAX_LINE>,
    state: State,
    backoff: Backoff,
    rng: u32,
    seen_cnmi: Option<Cnmi>,
    seen_cmgf: Option<u8>,
    events: EventQueue,
    dropped: u32,
    stats: ModemStats,
}

impl Modem {
    /// A driver that starts initialising the modem at `now`. `random` seeds
    /// the backoff jitter (any value; use the board's RNG or a unique id so
    /// that gateways restarted together do not retry in lockstep).
    pub fn new(now: Instant, random: u32) -> Self {
        let mut modem = Modem {
            parser: UrcParser::new(),
            state: State::Waiting { until: now },
            backoff: Backoff::new(BACKOFF_INITIAL, BACKOFF_MAX),
            rng: if random == 0 { 0x9E37_79B9 } else { random },
            seen_cnmi: None,
            seen_cmgf: None,
            events: EventQueue::new(),
            dropped: 0,
            stats: ModemStats::default(),
        };
        modem.start_init(now);
        modem
    }

    /// Where the driver is.
    pub fn state(&self) -> ModemState {
        match self.state {
            State::Waiting { .. } => ModemState::Waiting,
            State::Init { .. } => ModemState::Initializing,
            State::Ready { .. } => ModemState::Ready,
        }
    }

    /// `true` once initialised and verified, until lost.
    pub fn is_ready(&self) -> bool {
        matches!(self.state, State::Ready { .. })
    }

    /// The counters.
    pub fn stats(&self) -> ModemStats {
        ModemStats {
            urc: self.parser.stats(),
            ..self.stats
        }
    }

    /// Abandons whatever is going on and initialises again from the probe
    /// at `now` (for example after the board power-cycled the modem). No
    /// event is reported; the backoff is reset.
    pub fn restart(&mut self, now: Instant) {
        self.parser.clear();
        self.backoff.reset();
        self.start_init(now);
    }

    /// Feeds bytes received from the modem at `now`.
    pub fn handle_rx(&mut self, now: Instant, bytes: &[u8]) {
        for &b in bytes {
            if let Some(line) = self.parser.feed(b) {
                self.handle_line(now, line);
            }
        }
    }

    /// The next command to write to the modem, if any. Its timeout runs
    /// from `now`.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant) -> Option<&'static [u8]> {
        let cmd = match &mut self.state {
            State::Init { cmd, .. } => cmd,
            State::Ready {
                probe: Some(cmd), ..
            } => cmd,
            State::Waiting { .. } | State::Ready { probe: None, .. } => return None,
        };
        if cmd.sent {
            return None;
        }
        cmd.sent = true;
        cmd.deadline = now + cmd.command.timeout();
        Some(cmd.command.bytes())
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called:
    /// the end of the backoff delay, the deadline of the command in flight,
    /// or the liveness probe. Always `Some`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        Some(match self.state {
            State::Waiting { until } => until,
            State::Init { cmd, .. }
            | State::Ready {
                probe: Some(cmd), ..
            } => cmd.deadline,
            State::Ready {
                last_heard,
                probe: None,
            } => last_heard + KEEPALIVE_IDLE,
        })
    }

    /// Acts on whatever is due at `now` (nothing if called early).
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Waiting { until } if now >= until => self.start_init(now),
            State::Init { cmd, probes } if now >= cmd.deadline => {
                self.stats.timeouts = self.stats.timeouts.saturating_add(1);
                if cmd.command == Command::Probe && probes < PROBE_ATTEMPTS {
                    self.state = State::Init {
                        cmd: InFlight::queued(now, Command::Probe),
                        probes: probes.saturating_add(1),
                    };
                } else {
                    self.fail(now, LostReason::Timeout(cmd.command));
                }
            }
            State::Ready {
                probe: Some(cmd), ..
            } if now >= cmd.deadline => {
                self.stats.timeouts = self.stats.timeouts.saturating_add(1);
                self.fail(now, LostReason::Timeout(cmd.command));
            }
            State::Ready {
                last_heard,
                probe: None,
            } if now >= last_heard + KEEPALIVE_IDLE => {
                self.state = State::Ready {
                    last_heard,
                    probe: Some(InFlight::queued(now, Command::KeepAlive)),
                };
            }
            _ => {}
        }
    }

    /// The next event, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ModemEvent> {
        if let Some(event) = self.events.pop() {
            return Some(event);
        }
        match core::mem::take(&mut self.dropped) {
            0 => None,
            dropped => Some(ModemEvent::Overrun { dropped }),
        }
    }

    fn handle_line(&mut self, now: Instant, line: Line) {
        if let State::Ready { last_heard, .. } = &mut self.state {
            if !matches!(line, Line::Other | Line::TooLong) {
                *last_heard = now;
            }
        }
        match line {
            Line::Ok => self.complete(now, Ok(())),
            Line::Error => self.complete(now, Err(Rejection::Error)),
            Line::CmeError(code) => self.complete(now, Err(Rejection::Cme(code))),
            Line::CmsError(code) => self.complete(now, Err(Rejection::Cms(code))),
            Line::NewSms(s) => self.push_event(ModemEvent::NewSms {
                mem: s.mem,
                index: s.index,
            }),
            Line::ReportStored(s) => {
                self.push_event(ModemEvent::DeliveryReport(DeliveryReport::Stored {
                    mem: s.mem,
                    index: s.index,
                }))
            }
            Line::StatusReport(r) => {
                self.push_event(ModemEvent::DeliveryReport(DeliveryReport::Direct(r)))
            }
            Line::SmsDirect => self.push_event(ModemEvent::NewSmsDirect),
            Line::Cnmi(c) => {
                if self.sent_command() == Some(Command::ReadIndications) {
                    self.seen_cnmi = Some(c);
                }
            }
            Line::Cmgf(m) => {
                if self.sent_command() == Some(Command::ReadTextMode) {
                    self.seen_cmgf = Some(m);
                }
            }
            Line::Other | Line::TooLong => {}
        }
    }

    /// The command sent and awaiting its final result code.
    fn sent_command(&self) -> Option<Command> {
        match self.state {
            State::Init { cmd, .. }
            | State::Ready {
                probe: Some(cmd), ..
            } if cmd.sent => Some(cmd.command),
            _ => None,
        }
    }

    /// A final result code arrived at `now`.
    fn complete(&mut self, now: Instant, result: Result<(), Rejection>) {
        let Some(command) = self.sent_command() else {
            self.stats.unexpected = self.stats.unexpected.saturating_add(1);
            return;
        };
        if result.is_err() {
            self.stats.rejections = self.stats.rejections.saturating_add(1);
        }
        let probes = match self.state {
            State::Init { probes, .. } => probes,
            State::Ready { .. } => {
                // The liveness probe: any answer proves the modem alive.
                self.state = State::Ready {
                    last_heard: now,
                    probe: None,
                };
                return;
            }
            State::Waiting { .. } => return,
        };
        match (command, result) {
            (Command::Probe, Err(rejection)) => {
                if probes < PROBE_ATTEMPTS {
                    self.state = State::Init {
                        cmd: InFlight::queued(now, Command::Probe),
                        probes: probes.saturating_add(1),
                    };
                } else {
                    self.fail(now, LostReason::Rejected(command, rejection));
                }
            }
            (_, Err(rejection)) => self.fail(now, LostReason::Rejected(command, rejection)),
            (Command::ReadIndications, Ok(())) if self.seen_cnmi != Some(INDICATIONS) => {
                self.fail(now, LostReason::Mismatch(command));
            }
            (Command::ReadTextMode, Ok(())) if self.seen_cmgf != Some(TEXT_MODE) => {
                self.fail(now, LostReason::Mismatch(command));
            }
            (_, Ok(())) => match command.next_init() {
                Some(next) => {
                    self.state = State::Init {
                        cmd: InFlight::queued(now, next),
                        probes,
                    };
                }
                None => {
                    self.state = State::Ready {
                        last_heard: now,
                        probe: None,
                    };
                    self.backoff.reset();
                    self.stats.readies = self.stats.readies.saturating_add(1);
                    self.push_event(ModemEvent::Ready);
                }
            },
        }
    }

    fn start_init(&mut self, now: Instant) {
        self.seen_cnmi = None;
        self.seen_cmgf = None;
        self.stats.inits = self.stats.inits.saturating_add(1);
        self.state = State::Init {
            cmd: InFlight::queued(now, Command::Probe),
            probes: 1,
        };
    }

    fn fail(&mut self, now: Instant, reason: LostReason) {
        let random = self.next_random();
        let retry_at = now + self.backoff.next_delay(random);
        self.state = State::Waiting { until: retry_at };
        self.stats.losses = self.stats.losses.saturating_add(1);
        self.push_event(ModemEvent::Lost { reason, retry_at });
    }

    fn push_event(&mut self, event: ModemEvent) {
        if self.events.push(event).is_err() {
            self.dropped = self.dropped.saturating_add(1);
            self.stats.events_dropped = self.stats.events_dropped.saturating_add(1);
        }
    }

    /// xorshift32: spreads the caller's seed over the retries. Not for
    /// anything but jitter.
    fn next_random(&mut self) -> u32 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng = x;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::urc::UrcParser;

    #[test]
    fn indications_command_matches_the_verified_settings() {
        let mut p: UrcParser = UrcParser::new();
        let mut text = *b"+CNMI: 2,1,0,1,0\r\n";
        let command = Command::Indications.bytes();
        assert_eq!(command.get(..8), Some(&b"AT+CNMI="[..]));
        text[7..16].copy_from_slice(&command[8..17]);
        let lines: std::vec::Vec<Line> = p.push(&text).collect();
        assert_eq!(lines, [Line::Cnmi(INDICATIONS)]);
    }

    #[test]
    fn every_command_ends_in_cr() {
        for c in [
            Command::Probe,
            Command::EchoOff,
            Command::TextMode,
            Command::Indications,
            Command::ReadIndications,
            Command::ReadTextMode,
            Command::KeepAlive,
        ] {
            assert_eq!(c.bytes().last(), Some(&b'\r'));
            assert!(c.bytes().starts_with(b"AT"));
            assert!(!c.timeout().is_zero());
        }
    }

    #[test]
    fn event_queue_wraps_and_hands_back_when_full() {
        let mut q = EventQueue::new();
        for round in 0..3 {
            for _ in 0..EVENT_QUEUE {
                q.push(ModemEvent::Ready).unwrap();
            }
            assert_eq!(
                q.push(ModemEvent::NewSmsDirect),
                Err(ModemEvent::NewSmsDirect)
            );
            for _ in 0..EVENT_QUEUE {
                assert_eq!(q.pop(), Some(ModemEvent::Ready), "round {round}");
            }
            assert_eq!(q.pop(), None);
            q.push(ModemEvent::NewSmsDirect).unwrap();
            assert_eq!(q.pop(), Some(ModemEvent::NewSmsDirect));
        }
    }

    #[test]
    fn random_never_sticks_at_zero() {
        let mut m = Modem::new(Instant::ZERO, 0);
        assert_ne!(m.next_random(), 0);
    }
}
