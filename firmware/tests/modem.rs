//! The modem driver against a scripted fake modem on a simulated clock: no
//! UART, no sleeps.

use std::collections::HashMap;

use flagpost_core::time::{Duration, Instant};
use flagpost_firmware::modem::{
    Command, DeliveryReport, LostReason, Modem, ModemEvent, ModemState, Rejection, BACKOFF_MAX,
    EVENT_QUEUE, KEEPALIVE_IDLE, PROBE_ATTEMPTS, PROBE_TIMEOUT,
};
use flagpost_firmware::urc::{Mem, StatusReport};
use proptest::prelude::*;

const INIT: [&str; 6] = [
    "AT",
    "ATE0",
    "AT+CMGF=1",
    "AT+CNMI=2,1,0,1,0",
    "AT+CNMI?",
    "AT+CMGF?",
];

/// How long the fake takes to answer.
const LATENCY: Duration = Duration::from_millis(20);

/// A scripted modem: answers like a real one, with knobs for failures.
struct Fake {
    /// Echo commands back (on after power-up until `ATE0`).
    echo: bool,
    /// Answers at all.
    alive: bool,
    /// Command → answers to give instead of `OK`, used up in order.
    fail: HashMap<&'static str, Vec<&'static str>>,
    /// Command → lines sent between its information response and its `OK`.
    interleave: HashMap<&'static str, &'static str>,
    /// Command → extra answer delay.
    slow: HashMap<&'static str, Duration>,
    /// The answer to `AT+CNMI?`.
    cnmi: &'static str,
    /// The answer to `AT+CMGF?`.
    cmgf: &'static str,
}

impl Default for Fake {
    fn default() -> Self {
        Fake {
            echo: false,
            alive: true,
            fail: HashMap::new(),
            interleave: HashMap::new(),
            slow: HashMap::new(),
            cnmi: "2,1,0,1,0",
            cmgf: "1",
        }
    }
}

impl Fake {
    /// The answer to `cmd` (with its `\r`), and its delay.
    fn answer(&mut self, cmd: &[u8]) -> (Vec<u8>, Duration) {
        let text = std::str::from_utf8(cmd).unwrap().trim_end_matches('\r');
        if !self.alive {
            return (Vec::new(), Duration::ZERO);
        }
        let delay = LATENCY + self.slow.get(text).copied().unwrap_or(Duration::ZERO);
        let mut out = Vec::new();
        if self.echo {
            out.extend(cmd);
        }
        if let Some(answers) = self.fail.get_mut(text) {
            if !answers.is_empty() {
                let answer = answers.remove(0);
                out.extend(format!("\r\n{answer}\r\n").bytes());
                return (out, delay);
            }
        }
        match text {
            "AT" | "AT+CMGF=1" | "AT+CNMI=2,1,0,1,0" => {}
            "ATE0" => self.echo = false,
            "AT+CNMI?" => out.extend(format!("\r\n+CNMI: {}\r\n", self.cnmi).bytes()),
            "AT+CMGF?" => out.extend(format!("\r\n+CMGF: {}\r\n", self.cmgf).bytes()),
            _ => {
                out.extend(b"\r\nERROR\r\n");
                return (out, delay);
            }
        }
        if let Some(lines) = self.interleave.get(text) {
            out.extend(lines.bytes());
        }
        out.extend(b"\r\nOK\r\n");
        (out, delay)
    }
}

/// The driver, the fake and a simulated clock, as a board's modem task
/// would run them.
struct Sim {
    now: Instant,
    modem: Modem,
    fake: Fake,
    /// Bytes in flight to the driver, by arrival time.
    inbox: Vec<(Instant, Vec<u8>)>,
    /// Deliver answers in chunks of this many bytes (0: whole).
    chunk: usize,
    sent: Vec<(Instant, String)>,
    events: Vec<(Instant, ModemEvent)>,
}

impl Sim {
    fn new(fake: Fake) -> Self {
        Sim {
            now: Instant::ZERO,
            modem: Modem::new(Instant::ZERO, 0xC0FF_EE00),
            fake,
            inbox: Vec::new(),
            chunk: 0,
            sent: Vec::new(),
            events: Vec::new(),
        }
    }

    fn deliver(&mut self, at: Instant, bytes: Vec<u8>) {
        let pieces: Vec<Vec<u8>> = if self.chunk == 0 {
            vec![bytes]
        } else {
            bytes.chunks(self.chunk).map(<[u8]>::to_vec).collect()
        };
        for (i, piece) in pieces.into_iter().enumerate() {
            let t = at + Duration::from_micros(i as u64);
            let pos = self.inbox.partition_point(|(u, _)| *u <= t);
            self.inbox.insert(pos, (t, piece));
        }
    }

    fn pump(&mut self) {
        while let Some(cmd) = self.modem.poll_transmit(self.now) {
            let text = std::str::from_utf8(cmd).unwrap().trim_end_matches('\r');
            self.sent.push((self.now, text.to_string()));
            let (answer, delay) = self.fake.answer(cmd);
            if !answer.is_empty() {
                self.deliver(self.now + delay, answer);
            }
        }
        while let Some(event) = self.modem.poll_event() {
            self.events.push((self.now, event));
        }
    }

    /// Runs the event loop until `end`, asserting that a deadline always
    /// exists and that time always moves on.
    fn run_until(&mut self, end: Instant) {
        let mut spins = 0;
        loop {
            self.pump();
            let deadline = self
                .modem
                .poll_timeout()
                .expect("every state has a deadline");
            let next_rx = self.inbox.first().map(|(t, _)| *t);
            let next = next_rx.map_or(deadline, |t| t.min(deadline));
            if next > end {
                self.now = end;
                break;
            }
            if next <= self.now {
                spins += 1;
                assert!(spins < 100, "no progress at {}", self.now);
            } else {
                spins = 0;
            }
            self.now = self.now.max(next);
            if next_rx.is_some_and(|t| t <= self.now) {
                let (_, bytes) = self.inbox.remove(0);
                self.modem.handle_rx(self.now, &bytes);
            } else {
                self.modem.handle_timeout(self.now);
                self.pump();
                assert!(
                    self.modem.poll_timeout().unwrap() > self.now,
                    "deadline not moved on at {}",
                    self.now
                );
            }
        }
        self.pump();
    }

    fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    fn commands(&self) -> Vec<&str> {
        self.sent.iter().map(|(_, c)| c.as_str()).collect()
    }

    fn events(&self) -> Vec<ModemEvent> {
        self.events.iter().map(|(_, e)| *e).collect()
    }

    fn take_events(&mut self) -> Vec<ModemEvent> {
        std::mem::take(&mut self.events)
            .into_iter()
            .map(|(_, e)| e)
            .collect()
    }

    /// The time of the first event matching `f`.
    fn when(&self, f: impl Fn(&ModemEvent) -> bool) -> Instant {
        self.events
            .iter()
            .find(|(_, e)| f(e))
            .map(|(t, _)| *t)
            .expect("no such event")
    }
}

/// `t - d` (the core has no `Instant - Duration`).
fn before(t: Instant, d: Duration) -> Instant {
    Instant::from_micros(t.as_micros() - d.as_micros())
}

fn secs(s: u64) -> Instant {
    Instant::from_secs(s)
}

#[test]
fn happy_init() {
    let mut sim = Sim::new(Fake::default());
    assert_eq!(sim.modem.state(), ModemState::Initializing);
    sim.run_until(secs(1));
    assert_eq!(sim.commands(), INIT);
    assert_eq!(sim.events(), [ModemEvent::Ready]);
    assert!(sim.modem.is_ready());
    let ready_at = sim.when(|e| *e == ModemEvent::Ready);
    assert_eq!(ready_at, Instant::from_millis(6 * 20));
    assert_eq!(sim.modem.poll_timeout(), Some(ready_at + KEEPALIVE_IDLE));
    let stats = sim.modem.stats();
    assert_eq!((stats.inits, stats.readies, stats.losses), (1, 1, 0));
    assert_eq!(
        (stats.timeouts, stats.rejections, stats.unexpected),
        (0, 0, 0)
    );
}

#[test]
fn commands_go_out_one_at_a_time() {
    let mut sim = Sim::new(Fake::default());
    let mut modem = Modem::new(Instant::ZERO, 1);
    assert_eq!(modem.poll_transmit(Instant::ZERO), Some(&b"AT\r"[..]));
    assert_eq!(modem.poll_transmit(Instant::ZERO), None);
    modem.handle_rx(Instant::from_millis(5), b"\r\nOK\r\n");
    assert_eq!(
        modem.poll_transmit(Instant::from_millis(5)),
        Some(&b"ATE0\r"[..])
    );
    assert_eq!(modem.poll_transmit(Instant::from_millis(5)), None);
    // the whole run: every command is answered before the next goes out
    sim.run_until(secs(1));
    for pair in sim.sent.windows(2) {
        assert!(pair[1].0 >= pair[0].0 + LATENCY, "{pair:?}");
    }
}

#[test]
fn error_during_init_backs_off_then_reinits() {
    let mut fake = Fake::default();
    fake.fail.insert("AT+CNMI=2,1,0,1,0", vec!["ERROR"]);
    let mut sim = Sim::new(fake);
    sim.run_until(secs(10));
    let events = sim.events();
    let ModemEvent::Lost { reason, retry_at } = events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(
        reason,
        LostReason::Rejected(Command::Indications, Rejection::Error)
    );
    let lost_at = sim.when(|e| matches!(e, ModemEvent::Lost { .. }));
    let delay = retry_at - lost_at;
    assert!(
        delay >= Duration::from_millis(500) && delay <= Duration::from_secs(1),
        "{delay}"
    );
    assert_eq!(events[1], ModemEvent::Ready);
    assert_eq!(events.len(), 2);
    // the sequence starts over from the probe, exactly at retry_at
    let mut expected: Vec<&str> = INIT[..4].to_vec();
    expected.extend(INIT);
    assert_eq!(sim.commands(), expected);
    assert_eq!(sim.sent[4].0, retry_at);
    let stats = sim.modem.stats();
    assert_eq!(
        (stats.inits, stats.readies, stats.losses, stats.rejections),
        (2, 1, 1, 1)
    );
    // waiting was a state with its deadline
    assert!(sim.modem.is_ready());
}

#[test]
fn cme_and_cms_errors_are_rejections_too() {
    let mut fake = Fake::default();
    fake.fail.insert("AT+CMGF=1", vec!["+CMS ERROR: 302"]);
    fake.fail.insert("ATE0", vec!["+CME ERROR: 3"]);
    let mut sim = Sim::new(fake);
    sim.run_until(secs(20));
    let reasons: Vec<LostReason> = sim
        .events()
        .into_iter()
        .filter_map(|e| match e {
            ModemEvent::Lost { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(
        reasons,
        [
            LostReason::Rejected(Command::EchoOff, Rejection::Cme(Some(3))),
            LostReason::Rejected(Command::TextMode, Rejection::Cms(Some(302))),
        ]
    );
    assert_eq!(sim.events().last(), Some(&ModemEvent::Ready));
}

#[test]
fn a_silent_modem_is_lost_and_retried_with_growing_delays() {
    let mut sim = Sim::new(Fake {
        alive: false,
        ..Fake::default()
    });
    sim.run_until(secs(15 * 60));
    assert!(!sim.modem.is_ready());
    let losses: Vec<(Instant, LostReason, Instant)> = sim
        .events
        .iter()
        .map(|(t, e)| match e {
            ModemEvent::Lost { reason, retry_at } => (*t, *reason, *retry_at),
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(losses.len() >= 10, "{}", losses.len());
    let mut previous = Duration::ZERO;
    for (at, reason, retry_at) in &losses {
        assert_eq!(*reason, LostReason::Timeout(Command::Probe));
        let delay = *retry_at - *at;
        // doubling until the cap; at the cap, anywhere in its upper half
        assert!(
            delay >= previous || delay >= Duration::from_secs(30),
            "{delay} after {previous}"
        );
        assert!(delay <= BACKOFF_MAX);
        previous = delay;
    }
    assert!(previous >= Duration::from_secs(30), "{previous}");
    // each attempt: PROBE_ATTEMPTS probes, PROBE_TIMEOUT apart, then lost
    let first: Vec<Instant> = sim.sent.iter().take(6).map(|(t, _)| *t).collect();
    assert_eq!(
        first[..5],
        [0, 1, 2, 3, 4].map(secs)[..],
        "probes a second apart"
    );
    assert_eq!(losses[0].0, Instant::ZERO + PROBE_TIMEOUT.saturating_mul(5));
    assert_eq!(first[5], losses[0].2, "the next attempt starts at retry_at");
    assert!(sim.commands().iter().all(|c| *c == "AT"));
    let in_current_attempt = sim.sent.len() - losses.len() * usize::from(PROBE_ATTEMPTS);
    assert!(in_current_attempt <= usize::from(PROBE_ATTEMPTS));

    // it comes back: ready within the longest backoff plus an init
    sim.fake.alive = true;
    sim.events.clear();
    sim.run_for(BACKOFF_MAX + Duration::from_secs(10));
    // (a probe sent while it was dead may still time out first)
    assert_eq!(sim.events().last(), Some(&ModemEvent::Ready));
}

#[test]
fn an_autobauding_modem_answering_the_third_probe_is_fine() {
    let mut sim = Sim::new(Fake::default());
    sim.fake.alive = false;
    sim.run_until(Instant::from_millis(2_500));
    sim.fake.alive = true;
    sim.run_until(secs(4));
    assert_eq!(sim.events(), [ModemEvent::Ready]);
    // probes at 0, 1 and 2 s unanswered, the one at 3 s answered
    assert_eq!(&sim.commands()[..5], ["AT", "AT", "AT", "AT", "ATE0"]);
    assert_eq!(sim.modem.stats().timeouts, 3);
}

#[test]
fn a_urc_between_a_command_and_its_ok_is_reported() {
    let mut fake = Fake::default();
    fake.interleave
        .insert("AT+CMGF?", "\r\n+CMTI: \"SM\",3\r\n");
    fake.interleave
        .insert("AT+CNMI=2,1,0,1,0", "\r\n+CDSI: \"SR\",9\r\n");
    for chunk in [0, 1, 3, 7] {
        let mut sim = Sim::new(Fake {
            interleave: fake.interleave.clone(),
            ..Fake::default()
        });
        sim.chunk = chunk;
        sim.run_until(secs(1));
        assert_eq!(
            sim.events(),
            [
                ModemEvent::DeliveryReport(DeliveryReport::Stored {
                    mem: Mem::Sr,
                    index: 9
                }),
                ModemEvent::NewSms {
                    mem: Mem::Sm,
                    index: 3
                },
                ModemEvent::Ready,
            ],
            "chunk {chunk}"
        );
        assert_eq!(sim.commands(), INIT);
    }
}

#[test]
fn a_urc_before_the_information_response_does_not_break_verification() {
    let mut sim = Sim::new(Fake::default());
    sim.run_until(Instant::from_millis(81)); // AT+CNMI? was just sent
    assert_eq!(sim.commands().last(), Some(&"AT+CNMI?"));
    let (t, _) = sim.inbox[0];
    sim.deliver(
        before(t, Duration::from_millis(1)),
        b"\r\n+CMTI: \"ME\",1\r\n".to_vec(),
    );
    sim.run_until(secs(1));
    assert_eq!(
        sim.events(),
        [
            ModemEvent::NewSms {
                mem: Mem::Me,
                index: 1
            },
            ModemEvent::Ready
        ]
    );
}

#[test]
fn liveness_probe_after_silence() {
    let mut sim = Sim::new(Fake::default());
    sim.run_until(secs(1));
    let ready_at = sim.when(|e| *e == ModemEvent::Ready);
    let init_commands = sim.sent.len();

    // no probe before 30 s of silence
    sim.run_until(before(ready_at + KEEPALIVE_IDLE, Duration::from_millis(1)));
    assert_eq!(sim.sent.len(), init_commands);
    sim.run_until(ready_at + KEEPALIVE_IDLE);
    assert_eq!(
        sim.sent.last(),
        Some(&(ready_at + KEEPALIVE_IDLE, "AT".to_string()))
    );
    sim.run_for(Duration::from_secs(1));
    assert!(sim.modem.is_ready());
    let answered = ready_at + KEEPALIVE_IDLE + LATENCY;
    assert_eq!(sim.modem.poll_timeout(), Some(answered + KEEPALIVE_IDLE));

    // a URC is a sign of life and postpones the probe
    let urc_at = answered + Duration::from_secs(20);
    sim.deliver(urc_at, b"\r\n+CMTI: \"SM\",4\r\n".to_vec());
    sim.run_until(urc_at);
    assert_eq!(sim.modem.poll_timeout(), Some(urc_at + KEEPALIVE_IDLE));
    // echo or noise is not
    sim.deliver(urc_at + Duration::from_secs(1), b"garbage\r\n".to_vec());
    sim.run_until(urc_at + Duration::from_secs(2));
    assert_eq!(sim.modem.poll_timeout(), Some(urc_at + KEEPALIVE_IDLE));

    // the modem dies: the next probe times out and the modem is lost
    sim.fake.alive = false;
    sim.run_until(urc_at + KEEPALIVE_IDLE + PROBE_TIMEOUT);
    let probe_at = urc_at + KEEPALIVE_IDLE;
    assert_eq!(sim.sent.last(), Some(&(probe_at, "AT".to_string())));
    let lost: Vec<(Instant, ModemEvent)> = sim
        .events
        .iter()
        .filter(|(_, e)| matches!(e, ModemEvent::Lost { .. }))
        .copied()
        .collect();
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].0, probe_at + PROBE_TIMEOUT);
    assert!(matches!(
        lost[0].1,
        ModemEvent::Lost {
            reason: LostReason::Timeout(Command::KeepAlive),
            ..
        }
    ));
    assert_eq!(sim.modem.state(), ModemState::Waiting);

    // and re-initialised once it answers again
    sim.fake.alive = true;
    sim.events.clear();
    sim.run_for(Duration::from_secs(5));
    assert_eq!(sim.events(), [ModemEvent::Ready]);
    assert_eq!(sim.modem.stats().readies, 2);
}

#[test]
fn echo_still_on_at_first_is_tolerated() {
    let mut sim = Sim::new(Fake {
        echo: true,
        ..Fake::default()
    });
    sim.chunk = 2;
    sim.run_until(secs(1));
    assert_eq!(sim.events(), [ModemEvent::Ready]);
    assert_eq!(sim.commands(), INIT);
    assert!(!sim.fake.echo);
    // "AT" and "ATE0" came back as lines of their own
    assert_eq!(sim.modem.stats().urc.lines, 2 + 6 + 2);
}

#[test]
fn settings_that_do_not_read_back_are_a_mismatch() {
    for (cnmi, cmgf, command) in [
        ("1,1,0,0,0", "1", Command::ReadIndications),
        ("2,1,0,1", "1", Command::ReadIndications),
        ("2,1,0,1,0", "0", Command::ReadTextMode),
    ] {
        let mut sim = Sim::new(Fake {
            cnmi,
            cmgf,
            ..Fake::default()
        });
        sim.run_until(Instant::from_millis(500)); // before any retry
        assert!(
            matches!(
                sim.events()[..],
                [ModemEvent::Lost { reason: LostReason::Mismatch(c), .. }] if c == command
            ),
            "{:?}",
            sim.events()
        );
    }
}

#[test]
fn delivery_reports_and_direct_messages_are_events() {
    let mut sim = Sim::new(Fake::default());
    sim.run_until(secs(1));
    sim.take_events();
    sim.deliver(
        secs(2),
        b"\r\n+CDS: 6,46,\"+491701234567\",145,\"24/01/01,12:00:00+04\",\"24/01/01,12:00:05+04\",0\r\n"
            .to_vec(),
    );
    sim.deliver(secs(3), b"\r\n+CDSI: \"SR\",4\r\n".to_vec());
    sim.deliver(
        secs(4),
        b"\r\n+CDS: 25\r\n00062A0B911326880736F4421022619580404210226195904000\r\n".to_vec(),
    );
    sim.deliver(
        secs(5),
        b"\r\n+CMT: \"+4917\",,\"24/01/01\"\r\nOK\r\n".to_vec(),
    );
    sim.run_until(secs(6));
    assert_eq!(
        sim.take_events(),
        [
            ModemEvent::DeliveryReport(DeliveryReport::Direct(StatusReport {
                reference: Some(46),
                status: Some(0)
            })),
            ModemEvent::DeliveryReport(DeliveryReport::Stored {
                mem: Mem::Sr,
                index: 4
            }),
            ModemEvent::DeliveryReport(DeliveryReport::Direct(StatusReport {
                reference: Some(0x2A),
                status: Some(0)
            })),
            ModemEvent::NewSmsDirect,
        ]
    );
    // the message text "OK" was not taken for a result code
    assert_eq!(sim.modem.stats().unexpected, 0);
    assert!(sim.modem.is_ready());
}

#[test]
fn a_late_answer_does_not_complete_the_next_command() {
    let mut fake = Fake::default();
    // ATE0 (sent at 20 ms, timeout at 1.02 s) answers at 1.24 s: too late,
    // and before the retry (at 1.52 s or later)
    fake.slow.insert("ATE0", Duration::from_millis(1_200));
    let mut sim = Sim::new(fake);
    sim.run_until(Instant::from_millis(1_300));
    let events = sim.events();
    assert!(
        matches!(
            events[0],
            ModemEvent::Lost {
                reason: LostReason::Timeout(Command::EchoOff),
                ..
            }
        ),
        "{events:?}"
    );
    // the late OK arrived while waiting: counted, ignored
    assert_eq!(sim.modem.stats().unexpected, 1);
    sim.fake.slow.clear();
    sim.run_until(secs(5));
    assert_eq!(sim.events().last(), Some(&ModemEvent::Ready));
}

#[test]
fn unsolicited_final_results_are_counted_and_ignored() {
    let mut sim = Sim::new(Fake::default());
    sim.run_until(secs(1));
    sim.deliver(secs(2), b"\r\nOK\r\n\r\nERROR\r\n".to_vec());
    sim.run_until(secs(3));
    assert!(sim.modem.is_ready());
    assert_eq!(sim.modem.stats().unexpected, 2);
}

#[test]
fn an_event_flood_overruns_the_queue_and_says_so() {
    let mut modem = Modem::new(Instant::ZERO, 7);
    let flood: Vec<u8> = (0..20)
        .flat_map(|i| format!("\r\n+CMTI: \"SM\",{i}\r\n").into_bytes())
        .collect();
    modem.handle_rx(Instant::ZERO, &flood);
    let events: Vec<ModemEvent> = std::iter::from_fn(|| modem.poll_event()).collect();
    assert_eq!(events.len(), EVENT_QUEUE + 1);
    for (i, e) in events[..EVENT_QUEUE].iter().enumerate() {
        assert_eq!(
            *e,
            ModemEvent::NewSms {
                mem: Mem::Sm,
                index: i as u16
            }
        );
    }
    assert_eq!(
        events[EVENT_QUEUE],
        ModemEvent::Overrun {
            dropped: 20 - EVENT_QUEUE as u32
        }
    );
    assert_eq!(modem.poll_event(), None);
    assert_eq!(modem.stats().events_dropped, 20 - EVENT_QUEUE as u32);
}

#[test]
fn restart_begins_again_from_the_probe() {
    let mut sim = Sim::new(Fake::default());
    sim.run_until(secs(1));
    sim.modem.restart(secs(1));
    assert_eq!(sim.modem.state(), ModemState::Initializing);
    sim.run_until(secs(2));
    assert_eq!(sim.commands()[6..], INIT);
    assert_eq!(sim.events(), [ModemEvent::Ready, ModemEvent::Ready]);
}

#[test]
fn early_handle_timeout_does_nothing() {
    let mut modem = Modem::new(Instant::ZERO, 3);
    let _ = modem.poll_transmit(Instant::ZERO);
    let deadline = modem.poll_timeout().unwrap();
    modem.handle_timeout(before(deadline, Duration::from_micros(1)));
    assert_eq!(modem.poll_timeout(), Some(deadline));
    assert_eq!(modem.poll_transmit(Instant::ZERO), None);
    assert_eq!(modem.stats().timeouts, 0);
}

proptest! {
    /// Whatever the modem sends and whenever: no panic, always a deadline,
    /// a due deadline always moves on, at most one command in flight.
    #[test]
    fn arbitrary_input_never_hangs_the_driver(
        steps in prop::collection::vec(
            (0u64..5_000_000, prop_oneof![
                prop::collection::vec(any::<u8>(), 0..64),
                prop_oneof![
                    Just(b"\r\nOK\r\n".to_vec()),
                    Just(b"\r\nERROR\r\n".to_vec()),
                    Just(b"\r\n+CNMI: 2,1,0,1,0\r\n".to_vec()),
                    Just(b"\r\n+CMGF: 1\r\n".to_vec()),
                    Just(b"+CMTI: \"SM\",1\r\n".to_vec()),
                    Just(b"+CDS: 3\r\n".to_vec()),
                    Just(b"+CME ERROR: 1\r\n".to_vec()),
                ],
            ]),
            0..200,
        ),
        seed in any::<u32>(),
    ) {
        let mut now = Instant::ZERO;
        let mut modem = Modem::new(now, seed);
        for (dt, bytes) in steps {
            now += Duration::from_micros(dt);
            let deadline = modem.poll_timeout();
            prop_assert!(deadline.is_some());
            if deadline.is_some_and(|d| d <= now) {
                modem.handle_timeout(now);
                prop_assert!(modem.poll_timeout().unwrap() > now);
            }
            if let Some(cmd) = modem.poll_transmit(now) {
                prop_assert!(cmd.starts_with(b"AT") && cmd.ends_with(b"\r"));
            }
            prop_assert_eq!(modem.poll_transmit(now), None);
            modem.handle_rx(now, &bytes);
            while let Some(event) = modem.poll_event() {
                if let ModemEvent::Lost { retry_at, .. } = event {
                    prop_assert!(retry_at > now && retry_at <= now + BACKOFF_MAX);
                }
            }
        }
    }
}
