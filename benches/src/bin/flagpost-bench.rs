//! `flagpost-bench`: end-to-end figures on loopback, each beside its
//! physical floor measured in the same run.
//!
//! ```text
//! flagpost-bench wake [--samples N]
//! ```
//!
//! *wake*: one notification at a time (nothing queues), from this process
//! to a listener in another process, through a broker in a third; the
//! listener stamps the moment `wait` returns with `CLOCK_MONOTONIC` and
//! reports it. The floor is a bare relay: process A sends a datagram to B,
//! B writes 8 bytes over TCP to C, C is blocked in `read`.
//!
//! Every participant is this same binary re-executed in a child mode, so
//! nothing else needs building. Children bind loopback only and exit when
//! their parent closes their stdin.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use flagpost_benches::clock::now_ns;
use flagpost_benches::Latency;
use flagpost_core::wire::{NotifyRepr, SenderId, Seq, MAX_DATAGRAM_LEN};
use flagpost_core::Notification;
use flagpost_std::{Broker, BrokerConfig, Listener, Notifier};
use hdrhistogram::Histogram;

const REPORT_TIMEOUT: Duration = Duration::from_secs(2);

/// A child process in one of the modes below; killed on drop.
struct Participant {
    child: Child,
    addr: SocketAddr,
}

impl Participant {
    fn spawn(mode: &str, args: &[String]) -> Participant {
        let mut child = Command::new(std::env::current_exe().expect("own path"))
            .arg(mode)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn a participant");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("participant announces itself");
        let addr = line
            .trim()
            .strip_prefix("ready ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{mode}: bad announcement {line:?}"));
        Participant { child, addr }
    }
}

impl Drop for Participant {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn announce(addr: SocketAddr) {
    println!("ready {addr}");
    let _ = std::io::stdout().flush();
}

/// Exits when the parent goes away (its end of our stdin closes).
fn exit_with_parent() {
    std::thread::spawn(|| {
        let mut sink = [0u8; 16];
        while matches!(std::io::stdin().read(&mut sink), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().expect("literal")
}

// ---- child modes ----------------------------------------------------------

fn child_broker() {
    let broker = Broker::bind(BrokerConfig {
        bind: vec![loopback()],
        ..BrokerConfig::default()
    })
    .expect("bind broker");
    announce(broker.handle().local_addr());
    exit_with_parent();
    broker.run().expect("broker runs");
}

fn child_listener(broker: &str, report: &str) {
    let report: SocketAddr = report.parse().expect("report addr");
    let listener = Listener::connect(broker).expect("listener");
    assert!(
        listener.wait_listening(Duration::from_secs(10)),
        "listener never welcomed"
    );
    listener.wait(Duration::from_secs(1));
    listener.take();
    let out = UdpSocket::bind(loopback()).expect("report socket");
    announce(out.local_addr().expect("addr"));
    exit_with_parent();
    loop {
        if listener.wait(Duration::from_secs(3600)) {
            let woke = now_ns();
            listener.take();
            let _ = out.send_to(&woke.to_be_bytes(), report);
        }
    }
}

fn child_relay_c(report: &str) {
    let report: SocketAddr = report.parse().expect("report addr");
    let server = TcpListener::bind(loopback()).expect("bind");
    announce(server.local_addr().expect("addr"));
    exit_with_parent();
    let (mut conn, _) = server.accept().expect("accept B");
    let out = UdpSocket::bind(loopback()).expect("report socket");
    let mut buf = [0u8; 8];
    while conn.read_exact(&mut buf).is_ok() {
        let woke = now_ns();
        let _ = out.send_to(&woke.to_be_bytes(), report);
    }
}

fn child_relay_b(c: &str) {
    let mut to_c = TcpStream::connect(c).expect("connect C");
    to_c.set_nodelay(true).expect("nodelay");
    let udp = UdpSocket::bind(loopback()).expect("bind");
    announce(udp.local_addr().expect("addr"));
    exit_with_parent();
    let mut buf = [0u8; 128];
    while udp.recv(&mut buf).is_ok() {
        if to_c.write_all(&[1u8; 8]).is_err() {
            return;
        }
    }
}

// ---- measurements ---------------------------------------------------------

/// Sends `samples` triggers one at a time; each reported wake stamp minus
/// the send stamp is a sample. Lost reports are counted, not recorded.
fn measure(samples: u32, report: &UdpSocket, mut trigger: impl FnMut(u32)) -> (Latency, u32) {
    let mut h = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).expect("histogram");
    report
        .set_read_timeout(Some(REPORT_TIMEOUT))
        .expect("timeout");
    let mut lost = 0;
    let mut buf = [0u8; 16];
    for i in 0..samples {
        let sent = now_ns();
        trigger(i);
        match report.recv(&mut buf) {
            Ok(8) => {
                let woke = u64::from_be_bytes(buf[..8].try_into().expect("8 bytes"));
                let _ = h.record(woke.saturating_sub(sent).max(1));
            }
            _ => lost += 1,
        }
    }
    (Latency::from_histogram(&h), lost)
}

fn report_socket() -> (UdpSocket, String) {
    let s = UdpSocket::bind(loopback()).expect("report socket");
    let a = s.local_addr().expect("addr").to_string();
    (s, a)
}

fn wake(samples: u32) {
    println!("wake latency, {samples} samples each, one at a time (µs)");
    println!(
        "{:<34} {:>8} {:>8} {:>8} {:>9} {:>6}",
        "path", "p50", "p99", "p99.9", "max", "lost"
    );
    let row = |name: &str, (l, lost): &(Latency, u32)| {
        println!(
            "{name:<34} {:>8.1} {:>8.1} {:>8.1} {:>9.1} {lost:>6}",
            l.p50_us, l.p99_us, l.p999_us, l.max_us
        );
    };

    // the floor: A → UDP → B → TCP → C
    let (report, report_addr) = report_socket();
    let c = Participant::spawn("_relay_c", std::slice::from_ref(&report_addr));
    let b = Participant::spawn("_relay_b", &[c.addr.to_string()]);
    let a = UdpSocket::bind(loopback()).expect("bind A");
    let floor = measure(samples, &report, |_| {
        let _ = a.send_to(&[0u8; 24], b.addr);
    });
    row("floor: UDP→relay→TCP→reader", &floor);
    drop((b, c));

    // Flagpost: notifier → broker → listener (three processes)
    let broker = Participant::spawn("_broker", &[]);
    let (report, report_addr) = report_socket();
    let _listener = Participant::spawn("_listener", &[broker.addr.to_string(), report_addr]);
    let notifier = Notifier::builder()
        .probe_delay(Duration::ZERO)
        .build(broker.addr)
        .expect("notifier");
    let via_notifier = measure(samples, &report, |_| notifier.notify_status_update(None));
    row("flagpost: Notifier (API)", &via_notifier);

    let raw = UdpSocket::bind(loopback()).expect("bind");
    let mut buf = [0u8; MAX_DATAGRAM_LEN];
    let via_datagram = measure(samples, &report, |i| {
        let n = NotifyRepr {
            notification: Notification::status(None),
            sender: SenderId(0xbe9c),
            seq: Seq(i + 1),
            batch: 1,
            ack_requested: false,
            tag: None,
        }
        .emit(&mut buf)
        .expect("fits");
        let _ = raw.send_to(&buf[..n], broker.addr);
    });
    row("flagpost: raw datagram", &via_datagram);

    let ratio = |x: &(Latency, u32)| (x.0.p50_us / floor.0.p50_us, x.0.p99_us / floor.0.p99_us);
    let (a50, a99) = ratio(&via_notifier);
    let (b50, b99) = ratio(&via_datagram);
    println!("ratio to floor (p50/p99): Notifier {a50:.2}/{a99:.2}, raw datagram {b50:.2}/{b99:.2} (target ≤ 1.2)");
}

fn usage() -> ! {
    eprintln!("usage: flagpost-bench wake [--samples N]");
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or_else(|| usage());
    match args.first().map(String::as_str) {
        Some("_broker") => child_broker(),
        Some("_listener") => child_listener(arg(1), arg(2)),
        Some("_relay_b") => child_relay_b(arg(1)),
        Some("_relay_c") => child_relay_c(arg(1)),
        Some("wake") => {
            let samples = match args.get(1).map(String::as_str) {
                Some("--samples") => arg(2).parse().unwrap_or_else(|_| usage()),
                None => 20_000,
                Some(_) => usage(),
            };
            wake(samples);
        }
        _ => usage(),
    }
}
