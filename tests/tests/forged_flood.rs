//! A flood of forged, replayed, mis-tagged and garbage datagrams at a
//! broker with a key, as real processes on loopback: every one is dropped
//! and counted, none wakes a listener, and real signed notifications are
//! still delivered — with their latency under the flood printed beside the
//! same measurement without it.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flagpost_std::core::auth::Key;
use flagpost_std::core::wire::{NotifyRepr, SenderId, Seq, MAX_DATAGRAM_LEN, TAG_LEN};
use flagpost_std::core::{ChannelId, FlagSet, Notification};
use flagpost_std::keyfile::{generate_key_file, read_key_file};
use flagpost_std::{Listener, Notifier};
use flagpost_tests::process::{run, BrokerProcess};

mod common;

/// Bounds a failure only.
const LONG: Duration = Duration::from_secs(20);
/// Attack datagrams of each kind in the first phase.
const PER_KIND: u64 = 5_000;
/// Real notifications timed, with and without the flood.
const SAMPLES: usize = 200;

/// A fresh key file, removed when dropped.
fn key_file() -> tempfile::TempPath {
    let path = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    std::fs::remove_file(&path).unwrap();
    generate_key_file(&path).unwrap();
    path
}

/// A small deterministic generator (xorshift): the attack needs variety, not
/// secrecy.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A notify datagram; tagged with `key`, or carrying `tag` as it is.
fn datagram(
    n: Notification,
    sender: u64,
    seq: u32,
    sign: Option<&Key>,
    tag: Option<[u8; 16]>,
) -> Vec<u8> {
    let mut buf = [0u8; MAX_DATAGRAM_LEN];
    let len = NotifyRepr {
        notification: n,
        sender: SenderId(sender),
        seq: Seq(seq),
        batch: 1,
        ack_requested: true,
        probe: false,
        tag: sign.map(|_| [0; TAG_LEN]).or(tag),
    }
    .emit(&mut buf)
    .unwrap();
    if let Some(key) = sign {
        let t = key.tag(&[&buf[..len - TAG_LEN]]);
        buf[len - TAG_LEN..len].copy_from_slice(&t);
    }
    buf[..len].to_vec()
}

/// The four kinds of attack datagram, in turn: forged (untagged, a new
/// sender far ahead: a possible loss on a keyless broker), mis-tagged (a
/// random tag), a replay of `captured` (a real signed datagram), garbage.
fn attack(rng: &mut Rng, i: u64, captured: &[u8]) -> Vec<u8> {
    let victim = Notification::channel_shutdown(ChannelId::new("quiet").unwrap());
    match i % 4 {
        0 => datagram(victim, rng.next(), rng.next() as u32 | 2, None, None),
        1 => {
            let tag = (rng.next() as u128 | (u128::from(rng.next()) << 64)).to_be_bytes();
            datagram(victim, rng.next(), 1, None, Some(tag))
        }
        2 => captured.to_vec(),
        _ => {
            let len = (rng.next() % 100) as usize;
            (0..len).map(|_| rng.next() as u8).collect()
        }
    }
}

fn counters(addr: &str, key: &std::path::Path) -> std::collections::BTreeMap<String, u64> {
    let out = run(&[
        "stats",
        "--json",
        "--broker",
        addr,
        "--key-file",
        key.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let entries: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut by_name = std::collections::BTreeMap::new();
    for e in entries.as_array().unwrap() {
        *by_name
            .entry(e["name"].as_str().unwrap().to_owned())
            .or_insert(0) += e["value"].as_u64().unwrap();
    }
    by_name
}

/// Times `SAMPLES` real status updates for `quiet`, one at a time: from the
/// call to the listener's wake-up. Returns (p50, p99).
fn time_real(notifier: &Notifier, listener: &Listener, phase: &str) -> (Duration, Duration) {
    let quiet = ChannelId::new("quiet").unwrap();
    let mut samples = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let start = Instant::now();
        notifier.notify_status_update(Some(quiet));
        assert!(listener.wait(LONG), "a real notification was not delivered");
        samples.push(start.elapsed());
        let raise = listener.take_raise();
        assert_eq!(
            raise.flags,
            FlagSet::STATUS | FlagSet::NON_STATUS,
            "{phase}: {raise:?}"
        );
        // past the notifier's pace, so the next call is its own datagram
        std::thread::sleep(Duration::from_micros(300));
    }
    samples.sort();
    (samples[SAMPLES / 2], samples[SAMPLES * 99 / 100])
}

#[test]
fn with_a_key_a_flood_of_forgeries_is_dropped_and_counted_and_wakes_nobody() {
    let path = key_file();
    let key = read_key_file(&path).unwrap();
    let broker = BrokerProcess::start("127.0.0.1:0", &["--key-file", path.to_str().unwrap()]);
    let addr: SocketAddr = broker.addr.parse().unwrap();
    let listen = |channel: Option<&str>| {
        let mut b = Listener::builder().key(key.clone());
        if let Some(c) = channel {
            b = b.channel(ChannelId::new(c).unwrap());
        }
        let l = b.connect(addr).unwrap();
        assert!(l.wait_listening(LONG), "{:?}", l.auth_error());
        assert!(l.wait(LONG) && l.take_raise().reconnect);
        l
    };
    let quiet = listen(Some("quiet"));
    let everyone = listen(None);
    let notifier = Notifier::builder().key(key.clone()).build(addr).unwrap();

    // latency without the flood
    let (calm_p50, calm_p99) = time_real(&notifier, &quiet, "calm");
    assert!(everyone.wait(LONG));
    everyone.take_raise();

    // a real signed datagram, delivered once, to replay
    let captured = datagram(Notification::status(None), 0xcafe, 1, Some(&key), None);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(&captured, addr).unwrap();
    assert!(quiet.wait(LONG) && everyone.wait(LONG));
    quiet.take_raise();
    everyone.take_raise();
    let before = counters(&broker.addr, &path);

    // phase 1: the flood alone, paced in bursts the socket buffer absorbs
    let mut rng = Rng(0x5eed_f00d);
    let mut total = 4 * PER_KIND;
    for burst in 0..total / 50 {
        for i in 0..50 {
            let _ = udp.send_to(&attack(&mut rng, burst * 50 + i, &captured), addr);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let deadline = Instant::now() + LONG;
    let after = loop {
        // one more garbage datagram on the same path: the kernel reports
        // drops with the next datagram the socket delivers
        let _ = udp.send_to(b"FP", addr);
        total += 1;
        let c = counters(&broker.addr, &path);
        let seen = |name: &str| c[name] - before[name];
        let accounted = seen("flagpost_datagrams_unauthorized_total")
            + seen("flagpost_duplicates_total")
            + seen("flagpost_probes_total")
            + seen("flagpost_datagram_rejects_total")
            + seen("flagpost_kernel_drops_total");
        if accounted >= total {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "only {accounted} of {total} datagrams accounted for"
        );
    };
    let seen = |name: &str| after[name] - before[name];
    assert_eq!(
        seen("flagpost_kernel_drops_total"),
        0,
        "the pacing let the socket overflow"
    );
    assert_eq!(
        seen("flagpost_datagrams_unauthorized_total"),
        2 * PER_KIND,
        "forged and mis-tagged"
    );
    // the replays, and only them: the tail-loss probe of the notifier's
    // last calm-phase datagram is counted as a probe
    let duplicates = seen("flagpost_duplicates_total");
    assert_eq!(duplicates, PER_KIND, "replays: {duplicates}");
    assert!(seen("flagpost_probes_total") <= 1, "one probe at most");
    let garbage = seen("flagpost_datagram_rejects_total");
    assert!(
        garbage >= PER_KIND && garbage <= total - 3 * PER_KIND,
        "garbage: {garbage}"
    );
    for unmoved in [
        "flagpost_delivered_total",
        "flagpost_possible_losses_total",
        "flagpost_senders",
    ] {
        assert_eq!(seen(unmoved), 0, "{unmoved}");
    }
    // replays are acked (a duplicate, once each, never longer than the
    // replay); forgeries never
    assert!((PER_KIND..=PER_KIND + 1).contains(&seen("flagpost_acks_total")));
    // nobody was woken: a real channel update is the only thing raised
    notifier.notify_channel_update(ChannelId::new("quiet").unwrap());
    for l in [&quiet, &everyone] {
        assert!(l.wait(LONG));
        assert_eq!(l.take_raise().flags, FlagSet::CHANNEL_UPDATE);
    }

    // phase 2: the same flood, continuous, while real notifications flow
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let flood = {
        let (stop, sent, captured) = (stop.clone(), sent.clone(), captured.clone());
        std::thread::spawn(move || {
            let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
            let mut rng = Rng(0xdead_beef);
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..50 {
                    let _ = udp.send_to(&attack(&mut rng, i, &captured), addr);
                    i += 1;
                }
                sent.store(i, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let (flood_p50, flood_p99) = time_real(&notifier, &quiet, "flood");
    stop.store(true, Ordering::Relaxed);
    flood.join().unwrap();
    let end = counters(&broker.addr, &path);
    let flooded = sent.load(Ordering::Relaxed);
    assert!(!everyone
        .take_raise()
        .flags
        .contains(FlagSet::CHANNEL_SHUTDOWN));
    assert_eq!(
        end["flagpost_possible_losses_total"], after["flagpost_possible_losses_total"],
        "no forged datagram was taken for a loss"
    );
    println!(
        "flood with a key: phase 1 {} attack datagrams (forged, mis-tagged, replayed, garbage \
         {PER_KIND} each) all dropped and counted, nobody woken; phase 2 {flooded} more during \
         {SAMPLES} real notifications: latency p50 {:.0} µs, p99 {:.0} µs under the flood \
         (p50 {:.0} µs, p99 {:.0} µs without)",
        4 * PER_KIND,
        flood_p50.as_secs_f64() * 1e6,
        flood_p99.as_secs_f64() * 1e6,
        calm_p50.as_secs_f64() * 1e6,
        calm_p99.as_secs_f64() * 1e6,
    );
}

/// Without a key (the default, documented in SECURITY.md) anyone who can
/// reach the port is a sender: forged datagrams are delivered. What the
/// broker still bounds: a flood of fake losses raises everyone at most once
/// per `loss_interval` (100 ms), and a forged far-ahead sequence number for
/// a real sender's id does not silence it.
#[test]
fn without_a_key_forgeries_arrive_but_fake_losses_are_bounded_and_no_sender_is_silenced() {
    let broker = BrokerProcess::start("127.0.0.1:0", &[]);
    let addr: SocketAddr = broker.addr.parse().unwrap();
    let everyone = Listener::builder().connect(addr).unwrap();
    assert!(everyone.wait_listening(LONG));
    assert!(everyone.wait(LONG) && everyone.take_raise().reconnect);
    let stats = |name: &str| common::stat(&broker.addr, None, name, None);

    // 2,000 forged "first seen late" datagrams, each a possible loss
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut rng = Rng(0x0bad_5eed);
    let start = Instant::now();
    for burst in 0..40 {
        for _ in 0..50 {
            let d = datagram(
                Notification::non_status(None),
                rng.next(),
                1000 + burst,
                None,
                None,
            );
            udp.send_to(&d, addr).unwrap();
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let deadline = Instant::now() + LONG;
    while stats("flagpost_first_seen_late_total") < 2_000 {
        assert!(
            Instant::now() < deadline,
            "the broker did not take the forgeries"
        );
    }
    let elapsed = start.elapsed();
    // the deferred raise at the end of the last interval
    let deadline = Instant::now() + LONG;
    while stats("flagpost_possible_losses_total")
        + stats("flagpost_possible_losses_coalesced_total")
        < 2_000
    {
        assert!(Instant::now() < deadline, "losses unaccounted for");
    }
    let raises = stats("flagpost_possible_losses_total");
    let bound = 2 + elapsed.as_millis() as u64 / 100;
    assert!(
        (1..=bound).contains(&raises),
        "{raises} raises of everyone for 2,000 fake losses in {elapsed:?} (at most {bound})"
    );
    assert!(
        everyone.wait(LONG),
        "the forgeries do wake listeners without a key"
    );
    assert!(everyone.take_raise().flags.contains(FlagSet::RECHECK));

    // a real sender, and a forged far jump on its id: it is not silenced
    let notifier = Notifier::new(addr).unwrap();
    notifier.notify_channel_update(ChannelId::new("gsm1").unwrap());
    assert!(everyone.wait(LONG));
    everyone.take_raise();
    let forged = datagram(
        Notification::non_status(None),
        notifier.sender_id().0,
        1_000_000,
        None,
        None,
    );
    udp.send_to(&forged, addr).unwrap();
    let delivered = stats("flagpost_delivered_total");
    for _ in 0..3 {
        // past the notifier's pace, so each call is its own datagram
        std::thread::sleep(Duration::from_millis(2));
        notifier.notify_channel_update(ChannelId::new("gsm1").unwrap());
    }
    assert!(notifier.flush(LONG));
    let deadline = Instant::now() + LONG;
    while stats("flagpost_delivered_total") < delivered + 3 {
        assert!(
            Instant::now() < deadline,
            "the real sender's datagrams after the forged jump were dropped"
        );
    }
    assert!(stats("flagpost_senders_rewound_total") >= 1);
    assert_eq!(
        stats("flagpost_stale_total"),
        0,
        "nothing of the real sender went stale"
    );
    println!(
        "without a key: 2,000 forged possible losses in {} ms raised everyone {raises} times \
         (loss_interval 100 ms); a forged far jump on a real sender's id was rewound",
        elapsed.as_millis()
    );
}
