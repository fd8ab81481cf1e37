//! `flagpost-bench federation`: two brokers joined through one
//! `nats-server`, in the same run as NATS on its own.
//!
//! 1. **Wake latency**, one notification at a time: a datagram to broker A
//!    wakes a listener on A (the single-broker path) and, through NATS, a
//!    listener on B (the cross-broker path) — both stamps from the same
//!    notification — interleaved in blocks with NATS core publish →
//!    subscribe on the same server (`peers::NatsWake`: this process's
//!    `async-nats` publisher, a subscriber in another process).
//! 2. **Federated ingest**: this process publishes federation messages
//!    straight to the subject (64 senders, in-order sequences), first with
//!    at most [`WINDOW`] not yet taken by broker B (its sustained intake,
//!    from its `federated` counter), then in one burst as fast as NATS takes
//!    them (what overload does); then a datagram flood at A says what
//!    crosses end to end (A's accepted, published, dropped; B's federated).
//!
//! Every participant is a child of this process on loopback and stops with
//! it; every loop is bounded.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use flagpost_benches::clock::now_ns;
use flagpost_benches::peers::NatsWake;
use flagpost_benches::{latency_histogram, Measured};
use flagpost_core::wire::federation::emit_notify;
use flagpost_core::wire::{NotifyRepr, SenderId, Seq, MAX_FEDERATED_LEN};
use flagpost_core::Notification;

use crate::ingest::send_notify;
use crate::measure::{latency_header, latency_row, measure, report_socket};
use crate::{loopback, Participant, REPORT_TIMEOUT, WARM_UP};

/// The subject the brokers federate on.
const SUBJECT: &str = "flagpost";
/// Samples per turn when the paths are interleaved.
const BLOCK: u32 = 100;

/// A broker's federation counters (and its loss detector's `missing`), from
/// its `federation` query.
#[derive(Clone, Copy, Debug, Default)]
struct Fed {
    connected: u64,
    federated: u64,
    published: u64,
    send_drops: u64,
    receive_drops: u64,
    datagrams: u64,
    missing: u64,
    link_losses: u64,
}

fn fed(broker: &mut Participant) -> Fed {
    let line = broker.query("federation");
    let v: Vec<u64> = line
        .split_whitespace()
        .map(|w| {
            w.parse()
                .unwrap_or_else(|_| panic!("federation query: {line:?}"))
        })
        .collect();
    assert_eq!(v.len(), 8, "federation query: {line:?}");
    Fed {
        connected: v[0],
        federated: v[1],
        published: v[2],
        send_drops: v[3],
        receive_drops: v[4],
        datagrams: v[5],
        missing: v[6],
        link_losses: v[7],
    }
}

/// Polls `f` every 5 ms until it holds or `timeout` passes.
fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5)); // polling a child's counters
    }
    false
}

fn drain(sock: &UdpSocket) {
    let _ = sock.set_nonblocking(true);
    let mut buf = [0u8; 16];
    while sock.recv(&mut buf).is_ok() {}
    let _ = sock.set_nonblocking(false);
}

fn stamp(sock: &UdpSocket) -> Option<u64> {
    let mut buf = [0u8; 16];
    match sock.recv(&mut buf) {
        Ok(8) => Some(u64::from_be_bytes(buf[..8].try_into().ok()?)),
        _ => None,
    }
}

/// `n` notifications to A, one at a time; each gives the stamp of A's
/// listener (single broker) and of B's (across the federation).
fn both(
    n: u32,
    raw: &UdpSocket,
    a: SocketAddr,
    seq: &mut u32,
    reports: (&UdpSocket, &UdpSocket),
) -> (Measured, Measured) {
    let (mut single, mut cross) = (latency_histogram(), latency_histogram());
    let (mut lost_single, mut lost_cross) = (0, 0);
    for r in [reports.0, reports.1] {
        r.set_read_timeout(Some(REPORT_TIMEOUT)).expect("timeout");
    }
    for _ in 0..n {
        drain(reports.0);
        drain(reports.1);
        *seq += 1;
        let sent = now_ns();
        send_notify(raw, a, Notification::status(None), 0xfed, *seq);
        match stamp(reports.0) {
            Some(t) => drop(single.record(t.saturating_sub(sent).max(1))),
            None => lost_single += 1,
        }
        match stamp(reports.1) {
            Some(t) => drop(cross.record(t.saturating_sub(sent).max(1))),
            None => lost_cross += 1,
        }
    }
    (
        Measured::new(single, lost_single),
        Measured::new(cross, lost_cross),
    )
}

fn merge(into: &mut Option<Measured>, m: Measured) {
    match into {
        Some(t) => t.merge(m),
        None => *into = Some(m),
    }
}

pub(crate) fn federation(samples: u32, messages: u64, flood_secs: f64) {
    let mut nats = match NatsWake::start() {
        Ok(n) => n,
        Err(e) => {
            println!("\nfederation: skipped, {e} (benches/peers.sh installs nats-server)");
            return;
        }
    };
    let url = format!("nats://{}", nats.server());
    let args = ["--federation".to_owned(), url.clone()];
    let mut a = Participant::spawn("_broker", &args);
    let mut b = Participant::spawn("_broker", &args);
    for (name, p) in [("A", &mut a), ("B", &mut b)] {
        assert!(
            wait_for(Duration::from_secs(20), || fed(p).connected == 1),
            "broker {name} never joined {url}"
        );
    }
    let (rep_a, rep_a_addr) = report_socket();
    let (rep_b, rep_b_addr) = report_socket();
    let _la = Participant::spawn("_listener", &[a.addr.to_string(), rep_a_addr]);
    let _lb = Participant::spawn("_listener", &[b.addr.to_string(), rep_b_addr]);
    let raw = UdpSocket::bind(loopback()).expect("bind");
    let mut seq = 0;

    println!(
        "\nfederation: two brokers joined through one nats-server ({url}), NATS core pub/sub on the same server; {samples} samples each, interleaved in blocks of {BLOCK} (µs)"
    );
    let nats_measure = |n, s: &UdpSocket, t: &mut dyn FnMut(u32)| measure(n, s, t);
    nats.block(WARM_UP, true, &nats_measure);
    both(WARM_UP, &raw, a.addr, &mut seq, (&rep_a, &rep_b));
    let (mut single, mut cross) = (None, None);
    let mut done = 0;
    while done < samples {
        let n = BLOCK.min(samples - done);
        nats.block(n, false, &nats_measure);
        let (s, c) = both(n, &raw, a.addr, &mut seq, (&rep_a, &rep_b));
        merge(&mut single, s);
        merge(&mut cross, c);
        done += n;
    }
    let (single, cross) = (single.expect("samples"), cross.expect("samples"));
    latency_header(46);
    let row = |name: &str, m: &Measured| latency_row(46, name, m);
    row("single broker: datagram → A → listener on A", &single);
    row("cross-broker: datagram → A → NATS → B → listener", &cross);
    match nats.result() {
        Ok(m) => {
            row("NATS only: publish → nats-server → subscriber", &m);
            let r = |x: &Measured, y: &Measured| {
                (
                    x.latency.p50_us / y.latency.p50_us,
                    x.latency.p99_us / y.latency.p99_us,
                )
            };
            let (c50, c99) = r(&cross, &single);
            let (n50, n99) = r(&cross, &m);
            println!("ratio cross-broker / single broker (p50/p99): {c50:.2}/{c99:.2}");
            println!("ratio cross-broker / NATS only     (p50/p99): {n50:.2}/{n99:.2}");
            println!(
                "added by federation at p50: {:.1} µs over the single broker, {:.1} µs over NATS alone",
                cross.latency.p50_us - single.latency.p50_us,
                cross.latency.p50_us - m.latency.p50_us
            );
        }
        Err(e) => println!("NATS only: failed: {e}"),
    }

    ingest(&url, &mut b, messages);
    flood(&mut a, &mut b, flood_secs);
}

/// Most federation messages the windowed run keeps published but not yet
/// taken by B: half of B's receive queue.
const WINDOW: u64 = 4_096;

/// Message `i` of the ingest runs: 64 senders, each in order.
fn message(i: u64, buf: &mut [u8; MAX_FEDERATED_LEN]) -> usize {
    let mut datagram = [0u8; 72];
    let n = NotifyRepr {
        notification: Notification::non_status(None),
        sender: SenderId(0x1_0000 + i % 64),
        seq: Seq(1 + (i / 64) as u32),
        batch: 1,
        ack_requested: false,
        probe: false,
        tag: None,
    }
    .emit(&mut datagram)
    .expect("fits");
    emit_notify(0xbe9c_0000, &datagram[..n], buf).expect("fits")
}

/// Federation messages published straight to the subject: first windowed
/// (at most [`WINDOW`] not yet taken by B: B's sustained intake, nothing
/// dropped), then as one burst as fast as NATS takes them (what overload
/// does: drops counted, gaps seen by the sequence check).
fn ingest(url: &str, b: &mut Participant, messages: u64) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = runtime
        .block_on(async_nats::connect(url))
        .expect("connect to NATS");
    let mut buf = [0u8; MAX_FEDERATED_LEN];

    // windowed
    let before = fed(b);
    let started = Instant::now();
    let mut sent = 0;
    let mut taken = 0;
    while taken < messages && started.elapsed() < Duration::from_secs(60) {
        if sent < messages && sent - taken < WINDOW {
            let batch = 256.min(messages - sent);
            runtime.block_on(async {
                for i in sent..sent + batch {
                    let len = message(i, &mut buf);
                    let bytes = buf[..len].to_vec().into();
                    client.publish(SUBJECT, bytes).await.expect("publish");
                }
                client.flush().await.expect("flush");
            });
            sent += batch;
        }
        taken = fed(b).federated - before.federated;
    }
    let secs = started.elapsed().as_secs_f64();
    let after = fed(b);
    println!(
        "\nfederated ingest at broker B, windowed (≤ {WINDOW} in flight): {messages} messages, B took {taken} in {secs:.2} s: {:.0}/s; receive drops {}, missing by sequence {}",
        taken as f64 / secs,
        after.receive_drops - before.receive_drops,
        after.missing - before.missing,
    );

    // one burst
    let before = after;
    let started = Instant::now();
    let first = messages;
    runtime.block_on(async {
        for i in first..first + messages {
            let len = message(i, &mut buf);
            let bytes = buf[..len].to_vec().into();
            client.publish(SUBJECT, bytes).await.expect("publish");
        }
        client.flush().await.expect("flush");
    });
    let publish_s = started.elapsed().as_secs_f64();
    let want = before.federated + messages;
    let mut last = before.federated;
    let mut last_change = Instant::now();
    while last < want && last_change.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(5)); // polling B's counter
        let now = fed(b).federated;
        if now != last {
            last = now;
            last_change = Instant::now();
        }
    }
    let after = fed(b);
    let got = after.federated - before.federated;
    let drops = after.receive_drops - before.receive_drops;
    println!(
        "federated ingest at broker B, one burst: {messages} messages published in {publish_s:.2} s ({:.0}/s into NATS); B took {got}; receive drops {drops} (queue full, or one per slow-consumer event of the NATS client); missing by sequence {}; link losses {}",
        messages as f64 / publish_s,
        after.missing - before.missing,
        after.link_losses - before.link_losses,
    );
}

/// A datagram flood at A for `secs`: what A accepts, publishes and drops,
/// and what B takes.
fn flood(a: &mut Participant, b: &mut Participant, secs: f64) {
    let (a0, b0) = (fed(a), fed(b));
    let started = Instant::now();
    let sent = crate::ingest::blast(a.addr, 1, secs, 0x2_0000);
    // B drains what is queued in NATS for a moment after the flood
    let mut last = fed(b).federated;
    while wait_for(Duration::from_millis(200), || fed(b).federated != last) {
        last = fed(b).federated;
    }
    let s = started.elapsed().as_secs_f64();
    let (a1, b1) = (fed(a), fed(b));
    println!(
        "datagram flood at A for {secs} s (one sender thread): sent {sent}, A accepted {} ({:.0}/s), published {}, send drops {}; B federated {} ({:.0}/s over {s:.1} s), receive drops {}",
        a1.datagrams - a0.datagrams,
        (a1.datagrams - a0.datagrams) as f64 / secs,
        a1.published - a0.published,
        a1.send_drops - a0.send_drops,
        b1.federated - b0.federated,
        (b1.federated - b0.federated) as f64 / s,
        b1.receive_drops - b0.receive_drops,
    );
}
