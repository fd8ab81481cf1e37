//! `flagpost-bench ingest`: the datagrams per second and CPU per datagram of
//! the broker beside a bare `recvmmsg` receiver, and of a broker with a key
//! (verifying every datagram's tag) beside the broker without; and the raw
//! senders (`send_notify`, `blast`, `blast_until`) that ingest, flood and
//! scale share.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use flagpost_benches::report::{Figure, Report, Rule, Section, Unit};
use flagpost_core::auth::Key;
use flagpost_core::wire::{NotifyRepr, SenderId, Seq, MAX_DATAGRAM_LEN, TAG_LEN};
use flagpost_core::Notification;

use crate::{loopback, Participant};

/// Sends one notification datagram (batch 1, no ack) from `udp` to `to`.
pub(crate) fn send_notify(
    udp: &UdpSocket,
    to: SocketAddr,
    notification: Notification,
    sender: u64,
    seq: u32,
) {
    let mut buf = [0u8; MAX_DATAGRAM_LEN];
    let n = NotifyRepr {
        notification,
        sender: SenderId(sender),
        seq: Seq(seq),
        batch: 1,
        ack_requested: false,
        probe: false,
        tag: None,
    }
    .emit(&mut buf)
    .expect("fits");
    let _ = udp.send_to(&buf[..n], to);
}

/// Sends raw notification datagrams from `threads` threads for `secs`.
pub(crate) fn blast(target: SocketAddr, threads: u64, secs: f64, sender_base: u64) -> u64 {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers = blast_until(
        target,
        threads,
        Notification::non_status(None),
        &stop,
        sender_base,
    );
    std::thread::sleep(Duration::from_secs_f64(secs)); // the measured interval itself
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    workers.into_iter().map(|w| w.join().expect("sender")).sum()
}

pub(crate) fn ingest(secs: f64, report: &mut Report) {
    let (key, key_file) = bench_key();
    println!("\ningest: raw notification datagrams, {secs} s per receiver in 5 alternating turns (counted by the receiver)");
    println!(
        "{:<34} {:>12} {:>12} {:>16}",
        "receiver", "threads", "per second", "CPU s/million"
    );
    // The floor and the broker take turns (TURNS runs of secs / TURNS each),
    // so that both see the same state of a shared machine.
    const TURNS: u32 = 5;
    for threads in [1u64, 2] {
        let mut sink = Participant::spawn("_udp_sink", &[]);
        let mut broker = Participant::spawn("_broker", &[]);
        let mut keyed = Participant::spawn(
            "_broker",
            &["--key-file".into(), key_file.display().to_string()],
        );
        fn broker_count(b: &mut Participant) -> u64 {
            b.query("stats")
                .split(' ')
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        }
        fn sink_count(s: &mut Participant) -> u64 {
            s.query("count").parse::<u64>().unwrap_or(0)
        }
        // one turn of senders at `p`: (datagrams counted, seconds, CPU seconds)
        let turn = |p: &mut Participant, count: fn(&mut Participant) -> u64, base: u64| {
            let (c0, s0) = (count(p), p.sample());
            let started = std::time::Instant::now();
            blast(p.addr, threads, secs / f64::from(TURNS), base);
            let elapsed = started.elapsed().as_secs_f64();
            let (c1, s1) = (count(p), p.sample());
            (c1 - c0, elapsed, s1.cpu_s - s0.cpu_s)
        };
        let (mut floor_n, mut floor_s, mut floor_cpu_s) = (0u64, 0f64, 0f64);
        let (mut n, mut elapsed_s, mut cpu_s) = (0u64, 0f64, 0f64);
        let (mut keyed_n, mut keyed_s, mut keyed_cpu_s) = (0u64, 0f64, 0f64);
        for t in 0..TURNS {
            // fresh sender ids every turn: each run is a new sender to the broker
            let base = 0x2000 + u64::from(t) * 16;
            let (a, b, c) = turn(&mut sink, sink_count, base);
            (floor_n, floor_s, floor_cpu_s) = (floor_n + a, floor_s + b, floor_cpu_s + c);
            let (a, b, c) = turn(&mut broker, broker_count, base);
            (n, elapsed_s, cpu_s) = (n + a, elapsed_s + b, cpu_s + c);
            // the keyed broker, from datagrams signed before the turn starts
            // (so that the senders' own HMAC does not slow what they offer):
            // each sender's pool holds twice what it sent the broker without
            // a key in this turn
            let per_sender = (2 * a / threads).max(10_000);
            let pools = (0..threads)
                .map(|i| signed_pool(&key, 0x9000 + base + i, per_sender))
                .collect();
            let (c0, s0) = (broker_count(&mut keyed), keyed.sample());
            let started = std::time::Instant::now();
            blast_pools(keyed.addr, pools, secs / f64::from(TURNS));
            let elapsed = started.elapsed().as_secs_f64();
            let (c1, s1) = (broker_count(&mut keyed), keyed.sample());
            (keyed_n, keyed_s, keyed_cpu_s) = (
                keyed_n + (c1 - c0),
                keyed_s + elapsed,
                keyed_cpu_s + (s1.cpu_s - s0.cpu_s),
            );
        }
        let floor_rate = floor_n as f64 / floor_s;
        let floor_cpu = floor_cpu_s / (floor_n.max(1) as f64) * 1e6;
        println!(
            "{:<34} {threads:>12} {floor_rate:>12.0} {floor_cpu:>16.2}",
            "floor: recvmmsg loop"
        );
        let rate = n as f64 / elapsed_s;
        let cpu = cpu_s / (n.max(1) as f64) * 1e6;
        println!(
            "{:<34} {threads:>12} {rate:>12.0} {cpu:>16.2}",
            "flagpost broker"
        );
        println!(
            "  ratio to floor: rate {:.2} (target ≥ 0.9), CPU per million {:.2} (target ≤ 1.2)",
            rate / floor_rate.max(1.0),
            cpu / floor_cpu.max(1e-9)
        );
        let senders = if threads == 1 {
            "1 sender".to_owned()
        } else {
            format!("{threads} senders")
        };
        report.add(
            Figure::new(
                Section::Ingest,
                format!("broker, {senders}: datagrams per second"),
                rate,
                Unit::PerSecond,
            )
            .floor("`recvmmsg` loop", floor_rate)
            .target(Rule::RatioAtLeast(0.9), "≥ 0.9× the UDP floor"),
        );
        report.add(
            Figure::new(
                Section::Ingest,
                format!("broker, {senders}: CPU s per million datagrams"),
                cpu,
                Unit::CpuSecondsPerMillion,
            )
            .floor("`recvmmsg` loop", floor_cpu)
            .target(Rule::RatioAtMost(1.2), "≤ 1.2× the bare receiver"),
        );
        let keyed_rate = keyed_n as f64 / keyed_s.max(1e-9);
        let keyed_cpu = keyed_cpu_s / (keyed_n.max(1) as f64) * 1e6;
        println!(
            "{:<34} {threads:>12} {keyed_rate:>12.0} {keyed_cpu:>16.2}",
            "flagpost broker with a key"
        );
        println!(
            "  ratio to the broker without a key: rate {:.2} (target ≥ 0.9), CPU per million {:.2}",
            keyed_rate / rate.max(1.0),
            keyed_cpu / cpu.max(1e-9)
        );
        report.add(
            Figure::new(
                Section::Ingest,
                format!("broker with a key, {senders}: datagrams per second"),
                keyed_rate,
                Unit::PerSecond,
            )
            .floor("the broker without a key", rate)
            .target(Rule::RatioAtLeast(0.9), "≥ 0.9× without a key"),
        );
        report.add(
            Figure::new(
                Section::Ingest,
                format!("broker with a key, {senders}: CPU s per million datagrams"),
                keyed_cpu,
                Unit::CpuSecondsPerMillion,
            )
            .floor("the broker without a key", cpu),
        );
    }
    report.note(
        Section::Ingest,
        format!("{secs} s per receiver and sender count, in five alternating turns of floor, broker and broker with a key; one sender thread and then two; counted by the receiver. The keyed broker's datagrams are signed before each turn, so its senders do no more work than the others'."),
    );
}

/// Starts `threads` senders of `notification` datagrams to `target` that
/// run until `stop` is set; returns their handles (each yields its count).
pub(crate) fn blast_until(
    target: SocketAddr,
    threads: u64,
    notification: Notification,
    stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
    sender_base: u64,
) -> Vec<std::thread::JoinHandle<u64>> {
    (0..threads)
        .map(|t| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let udp = UdpSocket::bind(loopback()).expect("bind");
                let mut seq = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    seq += 1;
                    send_notify(&udp, target, notification, sender_base + t, seq);
                }
                u64::from(seq)
            })
        })
        .collect()
}

/// A random key, and a private key file holding it for the keyed broker
/// (removed when dropped).
fn bench_key() -> (Key, tempfile::TempPath) {
    let path = tempfile::NamedTempFile::new()
        .expect("a temporary file for the bench key")
        .into_temp_path();
    let _ = std::fs::remove_file(&path);
    flagpost_std::keyfile::generate_key_file(&path).expect("write the bench key file");
    let key = flagpost_std::keyfile::read_key_file(&path).expect("read the bench key file");
    (key, path)
}

/// The longest a tagged untargeted notify is.
const SIGNED_LEN: usize = 24 + TAG_LEN;

/// `n` non-status updates from `sender`, sequences 1, 2, …, signed with
/// `key`.
fn signed_pool(key: &Key, sender: u64, n: u64) -> Vec<[u8; SIGNED_LEN]> {
    let n = u32::try_from(n).unwrap_or(u32::MAX);
    (1..=n)
        .map(|seq| {
            let mut buf = [0u8; MAX_DATAGRAM_LEN];
            let len = NotifyRepr {
                notification: Notification::non_status(None),
                sender: SenderId(sender),
                seq: Seq(seq),
                batch: 1,
                ack_requested: false,
                probe: false,
                tag: Some([0; TAG_LEN]),
            }
            .emit(&mut buf)
            .expect("fits");
            let tag = key.tag(&[&buf[..len - TAG_LEN]]);
            buf[len - TAG_LEN..len].copy_from_slice(&tag);
            let mut out = [0u8; SIGNED_LEN];
            out.copy_from_slice(&buf[..SIGNED_LEN]);
            out
        })
        .collect()
}

/// Sends each pool from its own thread for `secs` (or until it runs out,
/// which is reported); returns how many were sent.
fn blast_pools(target: SocketAddr, pools: Vec<Vec<[u8; SIGNED_LEN]>>, secs: f64) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs_f64(secs);
    let workers: Vec<_> = pools
        .into_iter()
        .map(|pool| {
            std::thread::spawn(move || {
                let udp = UdpSocket::bind(loopback()).expect("bind");
                let mut sent = 0u64;
                for d in &pool {
                    if sent.is_multiple_of(256) && std::time::Instant::now() >= deadline {
                        return sent;
                    }
                    let _ = udp.send_to(d, target);
                    sent += 1;
                }
                println!("  (a signed pool ran out before the turn ended: the keyed rate is a lower bound)");
                sent
            })
        })
        .collect();
    workers.into_iter().map(|w| w.join().expect("sender")).sum()
}
