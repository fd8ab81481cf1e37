//! The peers: the systems a user compares Flagpost with — Redis pub/sub,
//! PostgreSQL `LISTEN`/`NOTIFY`, mosquitto (MQTT, QoS 0) and nats-server —
//! measured the way `flagpost-bench` measures Flagpost, in the same run,
//! beside Flagpost (`flagpost-bench peers [--quick]`).
//!
//! Every server is its own instance, started here as a child process on a
//! free loopback port (127.0.0.1 only) with a temporary data directory, and
//! stopped by its PID when the measurement ends (also when it fails). The
//! servers are Debian's packages (`benches/peers.sh` installs them); a
//! server that is not installed is skipped. Flagpost's "server" is the
//! bench binary's own `_broker` mode.
//!
//! Each system gets the same three figures:
//!
//! 1. **wake latency** — one publish at a time from this process, through
//!    the server, to a subscriber in another process (the bench binary's
//!    `_peer_sub` mode, using the system's Rust client), which stamps the
//!    moment it sees the message with the shared `CLOCK_MONOTONIC` and
//!    sends the stamp back; the parent's `measure` (the same function as
//!    `flagpost-bench wake`) records stamp minus send time. 100 warm-up
//!    samples are discarded first. Flagpost publishes with its `Notifier`,
//!    its listener is a `Listener` blocked in `wait` (as in `wake`). The
//!    systems are measured interleaved: every system's server, publisher
//!    and subscriber run at once, and they take turns in blocks of 100
//!    samples, so all see the same state of the shared machine.
//! 2. **publish throughput** with 1 and with 100 subscribers: the 100
//!    subscribers are 100 connections (100 clients, a thread each) in one
//!    subscriber process, every one subscribed to the same channel, so the
//!    server fans each publish out to 100 connections. The publisher sends
//!    batches of [`BATCH`] publishes (Redis: one pipeline; PostgreSQL: one
//!    simple-query string of `BEGIN; NOTIFY …; COMMIT;` — one transaction
//!    per notification; MQTT and NATS: the client's publish calls, then a
//!    flush) and keeps at most [`WINDOW`] publishes not yet delivered to
//!    every subscriber (the subscriber process reports its delivery count),
//!    so no server queues without bound (mosquitto drops QoS 0 messages
//!    beyond 1,000 queued per client). The figure is publishes per second
//!    delivered to every subscriber, from the first publish to the last
//!    delivery; deliveries are counted at the subscribers. Flagpost has no
//!    per-message delivery — raises coalesce into the listener's flags — so
//!    its publishes are raw notification datagrams blasted from one thread
//!    as in `flagpost-bench ingest`, counted by the broker, and its
//!    "deliveries" are listener wake-ups. Server CPU seconds per million
//!    publishes come from `/proc/<pid>/stat` of the server (all threads;
//!    for PostgreSQL the postmaster and every process it forked).
//! 3. **idle memory per subscriber** — the server's RSS growth once N idle
//!    subscribers are subscribed, measured on a fresh server (not the one
//!    of the wake latency) before its throughput figures. PostgreSQL serves each connection with a backend
//!    process of its own, so there it is the sum of the proportional set
//!    size (PSS, `/proc/<pid>/smaps_rollup`) of the backends forked for the
//!    subscribers, plus the postmaster's RSS growth.
//!
//! Every loop is bounded in count and time; a figure that fails is reported
//! as failed and the run goes on.
//!
//! This file owns the systems ([`System`]), the sizes and the run with its
//! tables ([`run`]); the servers, the subscriber child mode, the publishers
//! and the measurements are its submodules `server`, `subscriber`,
//! `publisher` and `measure`.

use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::report::{self, PeerRun, Report};
use crate::Measured;

mod measure;
mod publisher;
mod server;
mod subscriber;

use measure::{measure_system, wake_all, Figures};
pub use subscriber::child_subscriber;

/// NATS core pub/sub's wake latency on its own server, for a scenario that
/// measures it in the same run as something else (`flagpost-bench
/// federation` puts it beside brokers federated through the same server):
/// a `nats-server` child, this process's publisher and a subscriber child
/// reporting each delivery's stamp.
pub struct NatsWake(measure::WakeRig);

impl NatsWake {
    /// Starts the server, the publisher and the subscriber.
    pub fn start() -> Result<NatsWake, String> {
        measure::WakeRig::start(System::Nats).map(NatsWake)
    }

    /// The server's address (for other clients of the same server).
    pub fn server(&self) -> std::net::SocketAddr {
        self.0.server_addr()
    }

    /// `n` samples with `measure`, kept unless `warm_up`.
    pub fn block(&mut self, n: u32, warm_up: bool, measure: Measure<'_>) {
        self.0.block(n, !warm_up, measure);
    }

    /// What the kept samples measured so far, or why it failed (the
    /// server runs on until this is dropped).
    pub fn result(&self) -> Result<Measured, String> {
        self.0.result()
    }
}

/// Publishes per batch in the throughput runs.
pub const BATCH: u64 = 100;
/// Most publishes in flight (published, not yet delivered to every
/// subscriber) in the throughput runs of the peers.
pub const WINDOW: u64 = 500;
/// The subscriber process reports its delivery count every this many
/// publishes' worth of deliveries.
const REPORT_EVERY: u64 = 50;
/// Subscribers in the fan-out throughput run.
pub const FANOUT_SUBSCRIBERS: usize = 100;
/// Warm-up samples before each wake-latency measurement, discarded.
const WARM_UP: u32 = 100;
/// Wake-latency samples per turn when the systems are interleaved.
const WAKE_BLOCK: u32 = 100;
/// The channel (Redis, PostgreSQL), topic (MQTT) or subject (NATS).
const CHANNEL: &str = "flagpost_bench";
/// How long a server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the subscriber process may take to subscribe everything.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest wait for the next delivery report before a run counts as stalled.
const STALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A system measured by `flagpost-bench peers`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    /// Flagpost itself: the bench binary's `_broker` mode.
    Flagpost,
    /// Redis pub/sub (`redis-server`, client: the `redis` crate, sync).
    Redis,
    /// PostgreSQL `LISTEN`/`NOTIFY` (`postgres`, client: the `postgres`
    /// crate, sync).
    Postgres,
    /// MQTT 3.1.1, QoS 0 (`mosquitto`, client: `rumqttc`'s sync `Client`).
    Mosquitto,
    /// NATS core pub/sub (`nats-server`, client: `async-nats` on a
    /// current-thread tokio runtime).
    Nats,
}

impl System {
    /// The peers, in the order they are measured.
    pub const PEERS: [System; 4] = [
        System::Redis,
        System::Postgres,
        System::Mosquitto,
        System::Nats,
    ];

    /// Short name, as given to the `_peer_sub` child mode.
    pub fn name(self) -> &'static str {
        match self {
            System::Flagpost => "flagpost",
            System::Redis => "redis",
            System::Postgres => "postgres",
            System::Mosquitto => "mosquitto",
            System::Nats => "nats",
        }
    }

    /// What the table calls it.
    pub fn label(self) -> &'static str {
        match self {
            System::Flagpost => "Flagpost",
            System::Redis => "Redis pub/sub",
            System::Postgres => "PostgreSQL LISTEN/NOTIFY",
            System::Mosquitto => "mosquitto, MQTT QoS 0",
            System::Nats => "nats-server",
        }
    }

    fn from_name(name: &str) -> Option<System> {
        [System::Flagpost]
            .into_iter()
            .chain(System::PEERS)
            .find(|s| s.name() == name)
    }

    /// The server binaries this system needs (none for Flagpost).
    fn binaries(self) -> &'static [&'static str] {
        match self {
            System::Flagpost => &[],
            System::Redis => &["redis-server"],
            System::Postgres => &["postgres", "initdb"],
            System::Mosquitto => &["mosquitto"],
            System::Nats => &["nats-server"],
        }
    }

    /// Whether the server binaries are installed.
    pub fn installed(self) -> bool {
        self.binaries().iter().all(|b| find_binary(b).is_some())
    }

    /// The server's version line, from the binary itself.
    fn version(self) -> String {
        let (bin, arg) = match self {
            System::Flagpost => return "this workspace".into(),
            System::Redis => ("redis-server", "--version"),
            System::Postgres => ("postgres", "--version"),
            System::Mosquitto => ("mosquitto", "-h"),
            System::Nats => ("nats-server", "--version"),
        };
        find_binary(bin)
            .and_then(|p| Command::new(p).arg(arg).stdin(Stdio::null()).output().ok())
            .map(|o| {
                let text = if o.stdout.is_empty() {
                    o.stderr
                } else {
                    o.stdout
                };
                String::from_utf8_lossy(&text)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_owned()
            })
            .unwrap_or_default()
    }
}

/// The installed peers.
pub fn installed_peers() -> Vec<System> {
    System::PEERS
        .into_iter()
        .filter(|s| s.installed())
        .collect()
}

/// Finds a server binary in `PATH`, the sbin directories, or Debian's
/// per-version PostgreSQL directories (newest first).
fn find_binary(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from));
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<(f64, PathBuf)> = entries
            .flatten()
            .map(|e| {
                let major = e.file_name().to_string_lossy().parse().unwrap_or(0.0);
                (major, e.path().join("bin"))
            })
            .collect();
        versions.sort_by(|a, b| b.0.total_cmp(&a.0));
        dirs.extend(versions.into_iter().map(|(_, p)| p));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// Measurement sizes.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    /// Wake-latency samples per system.
    pub samples: u32,
    /// Seconds of publishing per throughput run.
    pub secs: f64,
    /// Idle subscribers for the memory figure.
    pub idle: usize,
}

impl Sizes {
    /// The full run: 20,000 samples, 5 s runs, 1,000 idle subscribers.
    pub fn full() -> Sizes {
        Sizes {
            samples: 20_000,
            secs: 5.0,
            idle: 1_000,
        }
    }

    /// The smoke run (`--quick`): 200 samples, 0.5 s runs, 50 idle
    /// subscribers.
    pub fn quick() -> Sizes {
        Sizes {
            samples: 200,
            secs: 0.5,
            idle: 50,
        }
    }
}

/// The wake-latency measurement of `flagpost-bench`: sends `samples`
/// triggers one at a time, each reported wake stamp (8 bytes on the report
/// socket) minus the send stamp is a sample; returns the samples, their
/// statistics and the number of lost reports.
pub type Measure<'a> = &'a dyn Fn(u32, &UdpSocket, &mut dyn FnMut(u32)) -> Measured;

// ---- the run and its tables -----------------------------------------------------

/// Measures Flagpost and every installed peer, prints the tables, with the
/// ratio Flagpost / peer for every figure both have, and records the run in
/// `report`. `measure` is the bench binary's wake-latency measurement, so
/// both sides are measured by the same code.
pub fn run(sizes: &Sizes, measure: Measure<'_>, report: &mut Report) {
    let peers = installed_peers();
    println!(
        "\npeers: Flagpost beside the systems it is compared with, same run, same method; every server its own instance on 127.0.0.1"
    );
    let missing: Vec<&str> = System::PEERS
        .into_iter()
        .filter(|s| !peers.contains(s))
        .map(System::name)
        .collect();
    if !missing.is_empty() {
        println!(
            "  not installed, skipped: {} (benches/peers.sh installs them)",
            missing.join(", ")
        );
    }
    let systems: Vec<System> = [System::Flagpost].into_iter().chain(peers).collect();
    let wakes = wake_all(&systems, sizes.samples, measure);
    let all: Vec<Figures> = systems
        .into_iter()
        .zip(wakes)
        .map(|(s, wake)| measure_system(s, sizes, wake))
        .collect();
    for f in &all {
        println!("  {:<26} {}", f.system.label(), f.version);
    }
    let flagpost = &all[0];
    let ratio = |fp: Option<f64>, peer: Option<f64>| match (fp, peer) {
        // two significant digits at least: 0.00028, 0.031, 1.27, 237
        (Some(a), Some(b)) => report::ratio_or_dash(a, b),
        _ => "—".into(),
    };

    println!(
        "\nwake latency, {} samples each, one at a time, publisher → server → subscriber process (µs); ratio = Flagpost / peer (below 1: Flagpost is faster)",
        sizes.samples
    );
    println!(
        "{:<26} {:>9} {:>9} {:>9} {:>10} {:>6} {:>13}",
        "system", "p50", "p99", "p99.9", "max", "lost", "ratio p50/p99"
    );
    let fp_wake = flagpost.wake.as_ref().ok();
    for f in &all {
        match &f.wake {
            Ok(Measured {
                latency: l, lost, ..
            }) => {
                let r = if f.system == System::Flagpost {
                    String::new()
                } else {
                    format!(
                        "{} / {}",
                        ratio(fp_wake.map(|w| w.latency.p50_us), Some(l.p50_us)),
                        ratio(fp_wake.map(|w| w.latency.p99_us), Some(l.p99_us))
                    )
                };
                println!(
                    "{:<26} {:>9.1} {:>9.1} {:>9.1} {:>10.1} {lost:>6} {r:>13}",
                    f.system.label(),
                    l.p50_us,
                    l.p99_us,
                    l.p999_us,
                    l.max_us
                );
            }
            Err(e) => println!("{:<26} failed: {e}", f.system.label()),
        }
    }

    println!(
        "\npublish throughput, {} s per run: publishes/s delivered to every subscriber (Flagpost: handled by the broker), deliveries counted at the subscribers, server CPU s per million publishes; ratio = Flagpost / peer (rate above 1 and CPU below 1: Flagpost does better)",
        sizes.secs
    );
    println!(
        "{:<26} {:>5} {:>12} {:>13} {:>10} {:>10} {:>8} {:>14}",
        "system",
        "subs",
        "publishes/s",
        "deliveries/s",
        "CPU s/M",
        "sub CPU s/M",
        "lost",
        "ratio rate/CPU"
    );
    for f in &all {
        for (i, t) in f.throughput.iter().enumerate() {
            match t {
                Ok(t) => {
                    let fp = flagpost.throughput.get(i).and_then(|r| r.as_ref().ok());
                    let r = if f.system == System::Flagpost {
                        String::new()
                    } else {
                        format!(
                            "{} / {}",
                            ratio(fp.map(|x| x.publishes_per_s), Some(t.publishes_per_s)),
                            ratio(fp.map(|x| x.cpu_s_per_million), Some(t.cpu_s_per_million))
                        )
                    };
                    println!(
                        "{:<26} {:>5} {:>12.0} {:>13.0} {:>10.2} {:>10.2} {:>8} {r:>14}{}",
                        f.system.label(),
                        t.subscribers,
                        t.publishes_per_s,
                        t.deliveries_per_s,
                        t.cpu_s_per_million,
                        t.sub_cpu_s_per_million,
                        t.lost,
                        if t.stalled { "  (stalled)" } else { "" }
                    );
                }
                Err(e) => println!("{:<26} failed: {e}", f.system.label()),
            }
        }
    }
    println!("  (CPU s/M: the server's CPU seconds per million publishes; sub CPU s/M: the subscriber process's. Flagpost's listener wake-ups coalesce many publishes into one; its publishes are raw datagrams from one thread, as in `ingest`, not flow-controlled. The peers' publisher keeps at most {WINDOW} publishes undelivered.)");

    println!(
        "\nidle memory per subscriber: server growth once {} idle subscribers are subscribed (PostgreSQL: PSS of the backends it forked for them); ratio = Flagpost / peer (below 1: Flagpost needs less)",
        sizes.idle
    );
    println!("{:<26} {:>16} {:>8}", "system", "B/subscriber", "ratio");
    let fp_idle = flagpost.idle_bytes.as_ref().ok().copied();
    for f in &all {
        match &f.idle_bytes {
            Ok(b) => {
                let r = if f.system == System::Flagpost {
                    String::new()
                } else {
                    ratio(fp_idle, Some(*b))
                };
                println!("{:<26} {b:>16.0} {r:>8}", f.system.label());
            }
            Err(e) => println!("{:<26} failed: {e}", f.system.label()),
        }
    }
    report.set_peers(PeerRun {
        samples: sizes.samples,
        secs: sizes.secs,
        idle: sizes.idle,
        systems: all.into_iter().map(Figures::into_report).collect(),
        missing: missing.into_iter().map(str::to_owned).collect(),
    });
}
