//! A lossy link, with real processes and kernel sockets: two network
//! namespaces this test creates, joined by a veth pair that drops one packet
//! in five in each direction (nftables, `numgen random`). The `flagpost
//! serve` broker runs in namespace A, every client in namespace B. It owns
//! three claims:
//!
//! 1. every confirmed notification arrives: `notify_confirmed` (library) and
//!    `flagpost notify --confirm` (command line) retransmit until acked, and
//!    the broker counts each exactly once;
//! 2. every unconfirmed notification the link loses is detected: the
//!    broker's gap counters account for each one, and a listener is raised
//!    with the loss flags (status, non-status, channel update);
//! 3. `flagpost notify` says when it cannot know whether the broker got a
//!    notification, and `--confirm` against a port where nothing listens
//!    fails with a non-zero exit code.
//!
//! Loss is applied where a packet *arrives* (the input hook of the receiving
//! namespace), as on a wire: a drop in the sender's output hook would make
//! its `send` fail with `EPERM`, which no real link does. UDP loses one
//! datagram in five. TCP loses one segment in five too, except SYNs: the
//! listener's connection must carry its flags through retransmissions and
//! survive, but a lost SYN costs a fixed 1 s kernel retry (3 s, 7 s when
//! repeated) that tests the kernel, not Flagpost, and would make the run's
//! length a lottery. Counters are read from namespace A over loopback, where
//! nothing is lost. The nftables counters on each drop rule are the ground
//! truth the broker's counters are checked against.
//!
//! Needs root, iproute2 and nftables (CI runs as root and `test.sh` installs
//! them); without them it says why and returns, as the gateway's TAP test
//! does.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use flagpost_std::core::broker::LOSS_FLAGS;
use flagpost_std::core::wire::AckResult;
use flagpost_std::core::{ChannelId, FlagSet};
use flagpost_std::{Listener, ListenerState, Notifier, NotifierStats};
use flagpost_tests::process::{run, BrokerProcess};
use netns::{in_netns, must};

mod netns;

/// The broker's address, in namespace A.
const BROKER: &str = "192.168.70.1:16725";
/// An address in namespace A where nothing listens.
const NOTHING: &str = "192.168.70.1:16726";
/// Percent of the packets dropped, in each direction.
const LOSS_PERCENT: u32 = 20;
/// Confirmed notifications from the library's `Notifier`.
const CONFIRMED: u64 = 200;
/// `flagpost notify --confirm` runs.
const CLI_CONFIRMED: u64 = 5;
/// Unconfirmed notifications from one long-lived `Notifier`.
const UNCONFIRMED: u64 = 500;
/// Between two unconfirmed notifications: far above the notifier's pacing
/// (20–160 µs), so each is a datagram of its own; below the 5 ms probe
/// delay, so the tail-loss probe follows the last one only.
const SPACING: Duration = Duration::from_millis(2);
/// For a confirmed send to be acked: 15 attempts (20 ms apart, doubling to
/// 1 s), each failing with probability 0.36 (lost either way), so one of the
/// 207 confirmed sends timing out is a one-in-twenty-thousand event per run.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
/// Bounds a failure only.
const LONG: Duration = Duration::from_secs(10);

const DATAGRAMS: &str = "flagpost_datagrams_total";
const DELIVERED: &str = "flagpost_delivered_total";
const DUPLICATES: &str = "flagpost_duplicates_total";
const REORDERED: &str = "flagpost_reordered_total";
const GAPS: &str = "flagpost_gaps_total";
const MISSING: &str = "flagpost_missing_total";
const FIRST_SEEN_LATE: &str = "flagpost_first_seen_late_total";
const RESTARTS: &str = "flagpost_restarts_total";
const KERNEL_DROPS: &str = "flagpost_kernel_drops_total";
const POSSIBLE_LOSSES: &str = "flagpost_possible_losses_total";
const LOSSES_COALESCED: &str = "flagpost_possible_losses_coalesced_total";
const ACKS: &str = "flagpost_acks_total";
/// nftables counters (namespace A's: the clients' packets to the broker).
const TO_BROKER_UDP: &str = "a.udp_in";
const TO_BROKER_UDP_DROPPED: &str = "a.udp_dropped";
const TO_CLIENTS_UDP_DROPPED: &str = "b.udp_dropped";
const TCP_DROPPED: [&str; 2] = ["a.tcp_dropped", "b.tcp_dropped"];

fn can_run() -> Result<(), String> {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| e.to_string())?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Err("not root".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Err("iproute2 (`ip`) is missing".into());
    }
    if Command::new("nft").arg("--version").output().is_err() {
        return Err("nftables (`nft`) is missing".into());
    }
    Ok(())
}

/// The two namespaces (A: the broker's, B: the clients'), the veth pair
/// between them and the loss rules; deleting the namespaces on drop removes
/// all of it, whether the test passed or not.
struct Lab {
    a: String,
    b: String,
}

impl Lab {
    fn create() -> Lab {
        let pid = std::process::id();
        let lab = Lab {
            a: format!("fplossy-a-{pid}"),
            b: format!("fplossy-b-{pid}"),
        };
        for ns in [&lab.a, &lab.b] {
            let out = Command::new("ip")
                .args(["netns", "add", ns])
                .output()
                .expect("run ip");
            assert!(
                out.status.success(),
                "`ip netns add {ns}` failed: {} (network namespaces unavailable?)",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let (a, b) = (lab.a.as_str(), lab.b.as_str());
        must("ip", &["-n", a, "link", "set", "lo", "up"], None);
        must("ip", &["-n", b, "link", "set", "lo", "up"], None);
        must(
            "ip",
            &[
                "-n", a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", b,
            ],
            None,
        );
        must(
            "ip",
            &["-n", a, "addr", "add", "192.168.70.1/24", "dev", "va"],
            None,
        );
        must(
            "ip",
            &["-n", b, "addr", "add", "192.168.70.2/24", "dev", "vb"],
            None,
        );
        must("ip", &["-n", a, "link", "set", "va", "up"], None);
        must("ip", &["-n", b, "link", "set", "vb", "up"], None);
        for (ns, dev) in [(a, "va"), (b, "vb")] {
            must(
                "ip",
                &["netns", "exec", ns, "nft", "-f", "-"],
                Some(&loss_rules(dev)),
            );
        }
        lab
    }

    /// The broker's counters and the link's, read now.
    fn snapshot(&self) -> Snapshot {
        let mut counters = netns::stats(&self.a, BROKER);
        for (prefix, ns) in [("a", &self.a), ("b", &self.b)] {
            let out = must(
                "ip",
                &[
                    "netns",
                    "exec",
                    ns,
                    "nft",
                    "list",
                    "counters",
                    "table",
                    "inet",
                    "flagpost_lossy",
                ],
                None,
            );
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let mut current = None;
            for line in text.lines().map(str::trim) {
                if let Some(rest) = line.strip_prefix("counter ") {
                    current = rest.split_whitespace().next().map(str::to_owned);
                } else if let (Some(name), Some(rest)) = (&current, line.strip_prefix("packets ")) {
                    let packets = rest.split_whitespace().next().and_then(|n| n.parse().ok());
                    counters.insert(
                        format!("{prefix}.{name}"),
                        packets.expect("nft counter packets"),
                    );
                }
            }
        }
        Snapshot(counters)
    }

    /// Polls the counters until `done` says they are complete (the last
    /// datagrams counted), or `LONG` passes; returns the last read either
    /// way, for the caller's assertions to explain.
    fn settle(&self, mut done: impl FnMut(&Snapshot) -> bool) -> Snapshot {
        let deadline = Instant::now() + LONG;
        loop {
            let now = self.snapshot();
            if done(&now) || Instant::now() >= deadline {
                return now;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The nftables ruleset of one end: what arrives on `dev` is dropped with
/// probability `LOSS_PERCENT` %, UDP and TCP (SYNs excepted), and counted.
fn loss_rules(dev: &str) -> String {
    format!(
        "table inet flagpost_lossy {{
    counter udp_in {{}}
    counter udp_dropped {{}}
    counter tcp_dropped {{}}
    chain input {{
        type filter hook input priority 0; policy accept;
        iifname \"{dev}\" meta l4proto udp counter name \"udp_in\"
        iifname \"{dev}\" meta l4proto udp numgen random mod 100 < {LOSS_PERCENT} counter name \"udp_dropped\" drop
        iifname \"{dev}\" tcp flags & syn == 0 numgen random mod 100 < {LOSS_PERCENT} counter name \"tcp_dropped\" drop
    }}
}}
"
    )
}

/// Counters by name: the broker's (`flagpost_…`, labelled ones as
/// `name{key="value"}`) and the link's (`a.…`, `b.…`).
#[derive(Clone, Debug)]
struct Snapshot(HashMap<String, u64>);

impl Snapshot {
    fn get(&self, name: &str) -> u64 {
        *self
            .0
            .get(name)
            .unwrap_or_else(|| panic!("no counter {name}"))
    }

    /// How much `name` grew since `before`.
    fn since(&self, before: &Snapshot, name: &str) -> u64 {
        self.get(name) - before.get(name)
    }
}

/// Every datagram a notifier put on the wire: first transmissions, probes
/// and retransmissions.
fn on_wire(s: &NotifierStats) -> u64 {
    s.datagrams + s.probes + s.retransmissions
}

/// What a listener saw while the unconfirmed notifications ran.
#[derive(Debug, Default)]
struct Seen {
    flags: FlagSet,
    /// Wake-ups that carried the loss flags: status and non-status come
    /// only from possible-loss raises here (only channel updates are sent).
    loss_wakes: u64,
    reconnects: u64,
}

/// Sets the flag on drop: stops the watcher even when an assertion fails.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn watch(listener: &Listener, stop: &AtomicBool, seen: &Mutex<Seen>) {
    while !stop.load(Ordering::SeqCst) {
        if !listener.wait(Duration::from_millis(10)) {
            continue;
        }
        let raise = listener.take_raise();
        let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.flags |= raise.flags;
        seen.reconnects += u64::from(raise.reconnect);
        if raise.flags.contains(FlagSet::STATUS | FlagSet::NON_STATUS) {
            seen.loss_wakes += 1;
        }
    }
}

/// Claim 2: the unconfirmed channel updates the link loses are all found
/// by the broker's sequence checks, and raise the loss flags.
///
/// The run is bracketed by two confirmed channel updates from the same
/// notifier (one sequence space): the first makes the broker know the
/// sender from number 1, the last (acked, so delivered) has a number above
/// every unconfirmed one. Every unconfirmed datagram lost for good then lies
/// inside a gap the broker saw, so `missing − reordered` must equal exactly
/// the unconfirmed notifications never delivered. Before the closing send,
/// the last datagram's loss is covered by the tail-loss probe alone, which
/// the link drops too (one time in five): how many losses were still
/// undetected at that point is printed, not asserted.
fn unconfirmed_losses_are_detected(lab: &Lab) {
    let gsm1 = ChannelId::new("gsm1").unwrap();
    let listener = Listener::connect(BROKER).unwrap();
    assert!(
        listener.wait_listening(LONG),
        "the listener did not connect across the lossy link within {LONG:?}"
    );
    assert!(listener.wait(LONG), "the first welcome's re-check");
    assert!(listener.take_raise().reconnect);
    let notifier = Notifier::new(BROKER).unwrap();
    // every datagram this notifier put on the wire since `before`: dropped
    // by the rule or counted by the broker
    let arrived = |before: &Snapshot, s0: &NotifierStats, now: &Snapshot| {
        now.since(before, DATAGRAMS) + now.since(before, TO_BROKER_UDP_DROPPED)
            == on_wire(&notifier.stats()) - on_wire(s0)
    };

    let before = lab.snapshot();
    let s0 = notifier.stats();
    let started = Instant::now();
    let stop = AtomicBool::new(false);
    let seen = Mutex::new(Seen::default());
    let (sending, undetected_tail) = std::thread::scope(|scope| {
        let _stop = StopOnDrop(&stop);
        scope.spawn(|| watch(&listener, &stop, &seen));

        let first = notifier.notify_channel_update_confirmed(gsm1, CONFIRM_TIMEOUT);
        assert!(
            matches!(first, Ok(AckResult::Delivered | AckResult::Duplicate)),
            "{first:?}"
        );
        let mut probes_before_last = 0;
        for i in 0..UNCONFIRMED {
            if i + 1 == UNCONFIRMED {
                probes_before_last = notifier.stats().probes;
            }
            notifier.notify_channel_update(gsm1);
            if i + 1 < UNCONFIRMED {
                std::thread::sleep(SPACING); // pacing, not synchronisation
            }
        }
        let sending = started.elapsed();
        // the tail-loss probe repeats the last datagram 5 ms after it
        let deadline = Instant::now() + LONG;
        while notifier.stats().probes == probes_before_last {
            assert!(Instant::now() < deadline, "no tail-loss probe");
            std::thread::sleep(Duration::from_millis(1));
        }
        // what the broker knows before the closing send: losses after its
        // newest datagram are not yet detected
        let tail = lab.settle(|now| arrived(&before, &s0, now));
        let unconfirmed = notifier.stats().datagrams - s0.datagrams - 1;
        let never = unconfirmed + 1 - tail.since(&before, DELIVERED);
        let detected = tail
            .since(&before, MISSING)
            .saturating_sub(tail.since(&before, REORDERED));
        let undetected_tail = never.saturating_sub(detected);

        let last = notifier.notify_channel_update_confirmed(gsm1, CONFIRM_TIMEOUT);
        assert!(
            matches!(last, Ok(AckResult::Delivered | AckResult::Duplicate)),
            "{last:?}"
        );
        lab.settle(|now| {
            arrived(&before, &s0, now)
                && now.since(&before, POSSIBLE_LOSSES) + now.since(&before, LOSSES_COALESCED)
                    >= now.since(&before, GAPS)
        });
        // the listener, raised with the loss flags (a raise folded by the
        // broker's loss interval comes at the interval's end)
        let deadline = Instant::now() + LONG;
        while !seen.lock().unwrap().flags.contains(LOSS_FLAGS) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        (sending, undetected_tail)
    });
    let elapsed = started.elapsed();
    let seen = seen.into_inner().unwrap();
    let after = lab.snapshot();
    let s1 = notifier.stats();
    drop(notifier);

    let sent = on_wire(&s1) - on_wire(&s0);
    let unconfirmed = s1.datagrams - s0.datagrams - 2;
    let dropped = after.since(&before, TO_BROKER_UDP_DROPPED);
    let received = after.since(&before, DATAGRAMS);
    let never_delivered = unconfirmed + 2 - after.since(&before, DELIVERED);
    let missing = after.since(&before, MISSING);
    let reordered = after.since(&before, REORDERED);
    let gaps = after.since(&before, GAPS);
    let raised = after.since(&before, POSSIBLE_LOSSES);
    let folded = after.since(&before, LOSSES_COALESCED);
    let verdicts = gaps + after.since(&before, FIRST_SEEN_LATE) + after.since(&before, RESTARTS);
    println!(
        "unconfirmed: {} calls {} ms apart → {unconfirmed} datagrams, + 2 confirmed + {} probes + {} retransmissions = {sent} on the wire; \
         sending {} ms, whole phase {} ms",
        s1.calls - s0.calls - 2,
        SPACING.as_millis(),
        s1.probes - s0.probes,
        s1.retransmissions - s0.retransmissions,
        sending.as_millis(),
        elapsed.as_millis(),
    );
    println!(
        "  link dropped {dropped} ({:.1} %); broker received {received} ({} duplicates); {never_delivered} notifications never delivered; \
         broker found {gaps} gaps, {missing} missing, {reordered} reordered; raised the loss flags {raised} times, folded {folded}; \
         the listener woke {} times with them; losses undetected before the closing confirmed send (tail and its probe lost): {undetected_tail}",
        100.0 * dropped as f64 / sent as f64,
        after.since(&before, DUPLICATES),
        seen.loss_wakes,
    );

    assert_eq!(s1.calls - s0.calls, UNCONFIRMED + 2, "calls counted");
    assert_eq!(s1.send_errors, s0.send_errors, "a send failed");
    assert!(
        unconfirmed > UNCONFIRMED / 2,
        "{UNCONFIRMED} calls {SPACING:?} apart merged into {unconfirmed} datagrams"
    );
    // the link: every datagram on the wire reached the rule, and was either
    // dropped by it or counted by the broker; nothing else lost or added
    assert_eq!(
        after.since(&before, TO_BROKER_UDP),
        sent,
        "reached the rule"
    );
    assert_eq!(received + dropped, sent, "received + dropped = sent");
    assert_eq!(
        after.since(&before, KERNEL_DROPS),
        0,
        "the broker's socket overflowed: the accounting below assumes it did not"
    );
    // the sender was known from number 1: no other kind of detection
    assert_eq!(after.since(&before, FIRST_SEEN_LATE), 0);
    assert_eq!(after.since(&before, RESTARTS), 0);
    // every unconfirmed notification lost for good lies inside a gap
    assert!(
        never_delivered > 0,
        "{sent} datagrams at {LOSS_PERCENT} % loss and none lost for good?"
    );
    assert_eq!(
        missing,
        never_delivered + reordered,
        "missing (net of late arrivals) = notifications never delivered"
    );
    assert!(
        gaps >= 1 && gaps <= missing,
        "{gaps} gaps, {missing} missing"
    );
    // every detection raised the loss flags for everyone, or was folded into
    // such a raise (the broker's loss interval)
    assert!(
        raised >= 1 && raised <= verdicts,
        "{raised} raises for {verdicts} detections"
    );
    assert!(
        raised + folded >= verdicts,
        "{raised} raises + {folded} folded < {verdicts} detections"
    );
    // the listener: raised with the loss flags, never told to shut down, and
    // its connection survived the lossy TCP
    assert!(
        seen.flags.contains(LOSS_FLAGS),
        "the listener saw {:?}, not the loss flags",
        seen.flags
    );
    assert!(!seen.flags.contains(FlagSet::CHANNEL_SHUTDOWN));
    assert!(
        seen.loss_wakes >= 1 && seen.loss_wakes <= raised,
        "{} wakes with the loss flags, {raised} raises",
        seen.loss_wakes
    );
    assert_eq!(seen.reconnects, 0, "the listener reconnected");
    assert_eq!(listener.state(), ListenerState::Listening);
}

/// Claim 1: every confirmed notification is delivered, once.
fn confirmed_notifications_arrive(lab: &Lab) {
    let notifier = Notifier::new(BROKER).unwrap();
    let before = lab.snapshot();
    let s0 = notifier.stats();
    let started = Instant::now();
    let (mut delivered, mut duplicate) = (0u64, 0u64);
    for i in 0..CONFIRMED {
        match notifier.notify_status_update_confirmed(None, CONFIRM_TIMEOUT) {
            Ok(AckResult::Delivered) => delivered += 1,
            Ok(AckResult::Duplicate) => duplicate += 1,
            other => panic!("confirmed notification {i}: {other:?}"),
        }
    }
    let library = started.elapsed();
    let s1 = notifier.stats();
    let attempts = on_wire(&s1) - on_wire(&s0);
    let after = lab.settle(|now| {
        now.since(&before, DATAGRAMS) + now.since(&before, TO_BROKER_UDP_DROPPED) == attempts
    });
    drop(notifier);
    println!(
        "confirmed (library): {CONFIRMED} in {} ms, {attempts} attempts ({} retransmissions); \
         link dropped {} notifications and {} acks; acks said {delivered} delivered, {duplicate} duplicate",
        library.as_millis(),
        s1.retransmissions - s0.retransmissions,
        after.since(&before, TO_BROKER_UDP_DROPPED),
        after.since(&before, TO_CLIENTS_UDP_DROPPED),
    );
    let received = after.since(&before, DATAGRAMS);
    assert_eq!(
        received + after.since(&before, TO_BROKER_UDP_DROPPED),
        attempts,
        "received + dropped = sent"
    );
    assert_eq!(
        after.since(&before, DELIVERED),
        CONFIRMED,
        "each delivered once"
    );
    assert_eq!(after.since(&before, DUPLICATES), received - CONFIRMED);
    assert_eq!(after.since(&before, ACKS), received, "every copy acked");
    assert_eq!(
        after.since(&before, GAPS),
        0,
        "a confirmed send leaves no gap"
    );
    // a duplicate ack answers a retransmission whose original arrived: its
    // ack was lost
    assert!(duplicate <= after.since(&before, TO_CLIENTS_UDP_DROPPED));

    // `flagpost notify --confirm`, a process per notification
    let before = lab.snapshot();
    let started = Instant::now();
    let mut attempts = 0;
    for _ in 0..CLI_CONFIRMED {
        let out = run(&[
            "notify",
            "channel-update",
            "--channel",
            "gsm1",
            "--confirm",
            "--timeout",
            "10s",
            "--broker",
            BROKER,
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{}: {stderr}", out.status);
        // "acknowledged: Delivered after 2 datagram(s)"
        let n = stderr
            .strip_prefix("acknowledged: ")
            .and_then(|rest| rest.split(" after ").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("unexpected output: {stderr}"));
        attempts += n;
    }
    let cli = started.elapsed();
    let after = lab.settle(|now| {
        now.since(&before, DATAGRAMS) + now.since(&before, TO_BROKER_UDP_DROPPED) == attempts
    });
    println!(
        "confirmed (flagpost notify --confirm): {CLI_CONFIRMED} runs in {} ms, {attempts} attempts",
        cli.as_millis()
    );
    assert_eq!(
        after.since(&before, DATAGRAMS) + after.since(&before, TO_BROKER_UDP_DROPPED),
        attempts,
        "received + dropped = sent"
    );
    assert_eq!(after.since(&before, DELIVERED), CLI_CONFIRMED);
    assert_eq!(after.since(&before, GAPS), 0);
    assert_eq!(after.since(&before, FIRST_SEEN_LATE), 0);
}

/// Claim 3: what `flagpost notify` says when it cannot know.
fn the_command_line_says_what_it_does_not_know() {
    let out = run(&["notify", "status", "--broker", BROKER]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.starts_with(&format!("sent to {BROKER}")) && stderr.contains("not confirmed"),
        "fire and forget must say it was not confirmed: {stderr}"
    );

    let started = Instant::now();
    let out = run(&[
        "notify",
        "status",
        "--confirm",
        "--timeout",
        "1s",
        "--broker",
        NOTHING,
    ]);
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!(
        "nothing at {NOTHING}: exit {:?} after {} ms: {}",
        out.status.code(),
        took.as_millis(),
        stderr.trim()
    );
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(NOTHING)
            && (stderr.contains("unreachable") || stderr.contains("no acknowledgement")),
        "the failure must name the broker and say why: {stderr}"
    );
    assert!(took < Duration::from_secs(5), "--timeout 1s took {took:?}");
}

#[test]
fn over_a_link_losing_one_packet_in_five_no_confirmed_notification_and_no_loss_goes_unnoticed() {
    if let Err(why) = can_run() {
        eprintln!("skipped: {why} (needs root, iproute2 and nftables)");
        return;
    }
    let started = Instant::now();
    let lab = Lab::create();
    let _broker = BrokerProcess::start_in_netns(&lab.a, BROKER, &[]);
    in_netns(&lab.b, || {
        // the unconfirmed phase first: the broker's loss counters then
        // start from a sender table with nobody else in it
        unconfirmed_losses_are_detected(&lab);
        confirmed_notifications_arrive(&lab);
        the_command_line_says_what_it_does_not_know();
    });
    let after = lab.snapshot();
    println!(
        "TCP segments dropped over the whole run (SYNs spared): {} to the broker, {} to the clients; {} ms in all",
        after.get(TCP_DROPPED[0]),
        after.get(TCP_DROPPED[1]),
        started.elapsed().as_millis()
    );
}
