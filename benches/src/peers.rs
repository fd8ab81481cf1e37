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

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use flagpost_core::wire::{NotifyRepr, SenderId, Seq, MAX_DATAGRAM_LEN};
use flagpost_core::Notification;
use flagpost_std::{Listener, Notifier};

use crate::clock::now_ns;
use crate::farm::{proc_sample, raise_fd_limit};
use crate::report::{self, PeerRun, Report, SystemFigures, Throughput};
use crate::Measured;

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

// ---- servers ------------------------------------------------------------------

/// A server instance of ours: a child process on a loopback port; stopped
/// (by PID) and its directory removed on drop.
struct Server {
    system: System,
    child: Child,
    addr: SocketAddr,
    dir: Option<PathBuf>,
    /// The Flagpost broker's query pipe (the bench binary's `_broker` mode).
    queries: Option<(ChildStdin, BufReader<ChildStdout>)>,
}

fn free_port() -> Result<u16, String> {
    // bind, read the port, release it; the server binds it right after
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("free port: {e}"))
}

/// A fresh directory for a server's data, config and log; directories a
/// killed run left behind (their PID is gone) are removed first.
fn temp_dir(system: System) -> Result<PathBuf, String> {
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let stale = name
                .strip_prefix("flagpost-peers-")
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok())
                .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
            if stale {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let dir = std::env::temp_dir().join(format!(
        "flagpost-peers-{}-{}",
        std::process::id(),
        system.name()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

fn log_file(dir: &Path, name: &str) -> Result<Stdio, String> {
    std::fs::File::create(dir.join(name))
        .map(Stdio::from)
        .map_err(|e| format!("log file: {e}"))
}

/// The last lines of a server's log, for error messages.
fn log_tail(dir: &Path, name: &str) -> String {
    let text = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

/// Runs a command to completion within `timeout`.
fn run_bounded(cmd: &mut Command, timeout: Duration, what: &str) -> Result<(), String> {
    let mut child = cmd.spawn().map_err(|e| format!("{what}: {e}"))?;
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("{what}: {status}")),
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{what}: still running after {timeout:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("{what}: {e}")),
        }
    }
}

/// The uid and gid PostgreSQL runs as: ours, or the `postgres` user's when
/// we are root (PostgreSQL refuses to run as root).
fn postgres_ids() -> Result<Option<(u32, u32)>, String> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let user = nix::unistd::User::from_name("postgres")
        .map_err(|e| e.to_string())?
        .ok_or("running as root and there is no postgres user to run PostgreSQL as")?;
    Ok(Some((user.uid.as_raw(), user.gid.as_raw())))
}

impl Server {
    /// Starts `system`'s server and waits until it accepts connections.
    /// `max_connections` sizes PostgreSQL.
    fn start(system: System, max_connections: usize) -> Result<Server, String> {
        if system == System::Flagpost {
            return Server::start_flagpost();
        }
        let bin = |name: &str| find_binary(name).ok_or(format!("{name} is not installed"));
        let port = free_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let dir = temp_dir(system)?;
        let log = "server.log";
        let mut cmd = match system {
            System::Flagpost => unreachable!("started above"),
            System::Redis => {
                let mut c = Command::new(bin("redis-server")?);
                c.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                    .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                    .arg("--dir")
                    .arg(&dir);
                c
            }
            System::Postgres => {
                let data = dir.join("data");
                let ids = postgres_ids()?;
                std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
                if let Some((uid, gid)) = ids {
                    for d in [&dir, &data] {
                        std::os::unix::fs::chown(d, Some(uid), Some(gid))
                            .map_err(|e| format!("chown {}: {e}", d.display()))?;
                    }
                }
                let as_postgres = |c: &mut Command| {
                    c.current_dir(&dir).stdin(Stdio::null());
                    if let Some((uid, gid)) = ids {
                        c.uid(uid).gid(gid);
                    }
                };
                let mut init = Command::new(bin("initdb")?);
                init.arg("-D")
                    .arg(&data)
                    .args(["--username=postgres", "--auth=trust", "--encoding=UTF8"])
                    .args(["--locale=C", "--no-sync", "--no-instructions"])
                    .stdout(log_file(&dir, "initdb.log")?)
                    .stderr(log_file(&dir, "initdb.err")?);
                as_postgres(&mut init);
                run_bounded(&mut init, Duration::from_secs(120), "initdb")
                    .map_err(|e| format!("{e}: {}", log_tail(&dir, "initdb.err")))?;
                let mut c = Command::new(bin("postgres")?);
                c.arg("-D")
                    .arg(&data)
                    .args(["-c", "listen_addresses=127.0.0.1"])
                    .args(["-c", &format!("port={port}")])
                    .arg("-c")
                    .arg(format!("unix_socket_directories={}", dir.display()))
                    .args(["-c", &format!("max_connections={max_connections}")]);
                as_postgres(&mut c);
                c
            }
            System::Mosquitto => {
                let conf = dir.join("mosquitto.conf");
                std::fs::write(
                    &conf,
                    format!(
                        "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\nlog_type error\nlog_type warning\n"
                    ),
                )
                .map_err(|e| e.to_string())?;
                let mut c = Command::new(bin("mosquitto")?);
                c.arg("-c").arg(conf);
                c
            }
            System::Nats => {
                let mut c = Command::new(bin("nats-server")?);
                c.args(["--addr", "127.0.0.1", "--port", &port.to_string()]);
                c
            }
        };
        let out = std::fs::File::create(dir.join(log)).map_err(|e| format!("log file: {e}"))?;
        let err = out.try_clone().map_err(|e| format!("log file: {e}"))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("start {}: {e}", system.name()))?;
        let mut server = Server {
            system,
            child,
            addr,
            dir: Some(dir),
            queries: None,
        };
        server.wait_ready()?;
        Ok(server)
    }

    fn start_flagpost() -> Result<Server, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .arg("_broker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("start the broker: {e}"))?;
        let stdin = child.stdin.take().ok_or("broker stdin")?;
        let mut stdout = BufReader::new(child.stdout.take().ok_or("broker stdout")?);
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        let addr = line
            .trim()
            .strip_prefix("ready ")
            .and_then(|a| a.parse().ok());
        let server = Server {
            system: System::Flagpost,
            child,
            addr: addr.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0))),
            dir: None,
            queries: Some((stdin, stdout)),
        };
        match addr {
            Some(_) => Ok(server),
            None => Err(format!("broker: bad announcement {line:?}")),
        }
    }

    /// Waits until the server accepts connections (PostgreSQL: queries).
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "{} exited ({status}): {}",
                    self.system.name(),
                    self.log_tail()
                ));
            }
            let up = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).is_ok()
                && (self.system != System::Postgres
                    || postgres::Client::connect(&postgres_conninfo(self.addr), postgres::NoTls)
                        .is_ok());
            if up {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} did not accept connections within {START_TIMEOUT:?}: {}",
                    self.system.name(),
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self) -> String {
        self.dir
            .as_deref()
            .map(|d| log_tail(d, "server.log"))
            .unwrap_or_default()
    }

    /// The server's processes: itself, and for PostgreSQL every process
    /// the postmaster forked.
    fn pids(&self) -> Vec<u32> {
        let mut pids = vec![self.child.id()];
        if self.system == System::Postgres {
            pids.extend(children_of(self.child.id()));
        }
        pids
    }

    /// CPU seconds of the server's processes.
    fn cpu_s(&self) -> f64 {
        self.pids()
            .into_iter()
            .filter_map(|p| proc_sample(p).ok())
            .map(|s| s.cpu_s)
            .sum()
    }

    /// The server process's RSS, KiB.
    fn rss_kib(&self) -> u64 {
        proc_sample(self.child.id()).map_or(0, |s| s.rss_kib)
    }

    /// Datagrams the Flagpost broker has handled (its `_broker` query).
    fn datagrams(&mut self) -> Result<u64, String> {
        let (stdin, stdout) = self.queries.as_mut().ok_or("not a Flagpost broker")?;
        writeln!(stdin, "stats").map_err(|e| e.to_string())?;
        stdin.flush().map_err(|e| e.to_string())?;
        let mut line = String::new();
        stdout.read_line(&mut line).map_err(|e| e.to_string())?;
        line.split(' ')
            .next()
            .and_then(|v| v.trim().parse().ok())
            .ok_or(format!("broker stats: {line:?}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        // closing the broker's stdin ends it; the others stop on a signal
        // (PostgreSQL's fast shutdown is SIGINT)
        self.queries = None;
        let signal = if self.system == System::Postgres {
            Signal::SIGINT
        } else {
            Signal::SIGTERM
        };
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), signal);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The processes whose parent is `pid` (from `/proc/*/stat`).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    // after the ")" that ends the command: state, then ppid
                    let rest = s.rsplit_once(')')?.1.to_owned();
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// Proportional set size of `pid`, KiB.
fn pss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Pss:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn postgres_conninfo(addr: SocketAddr) -> String {
    format!(
        "host={} port={} user=postgres dbname=postgres",
        addr.ip(),
        addr.port()
    )
}

// ---- subscribers (child mode `_peer_sub`) -------------------------------------

/// What a subscriber does with each message it sees.
struct Sink {
    /// Deliveries counted.
    total: AtomicU64,
    /// `CLOCK_MONOTONIC` of the latest counted delivery.
    last_ns: AtomicU64,
    /// Wake mode: stamp each message and send the stamp instead of counting.
    wake: AtomicBool,
    /// Report the count every this many deliveries (0: never).
    every: AtomicU64,
    /// Connected to the parent's report socket.
    report: UdpSocket,
}

impl Sink {
    fn deliver(&self) {
        if self.wake.load(Ordering::Relaxed) {
            let woke = now_ns();
            let _ = self.report.send(&woke.to_be_bytes());
            return;
        }
        let total = self.total.fetch_add(1, Ordering::Relaxed) + 1;
        self.last_ns.fetch_max(now_ns(), Ordering::Relaxed);
        let every = self.every.load(Ordering::Relaxed);
        if every > 0 && total.is_multiple_of(every) {
            let mut msg = [0u8; 16];
            msg[..8].copy_from_slice(&total.to_be_bytes());
            let _ = self.report.send(&msg);
        }
    }

    fn counts(&self) -> String {
        format!(
            "{} {}",
            self.total.load(Ordering::Relaxed),
            self.last_ns.load(Ordering::Relaxed)
        )
    }
}

/// The `_peer_sub <system> <server> <n> <report>` child mode: `n`
/// subscriber connections to `system`'s server at `server`, a thread each.
/// Announces `ready` once every one is subscribed (confirmed by the
/// server), then answers the parent's queries on stdin, one line each:
/// `wake` (from now on stamp each message and send the stamp to `report`),
/// `count <k>` (from now on count messages and send the count to `report`
/// every k; answers `<count> <last delivery ns>`) and `total` (answers the
/// same). Exits when the parent closes stdin.
pub fn child_subscriber(args: &[String]) -> ! {
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let system = System::from_name(arg(0)).unwrap_or_else(|| fail("unknown system"));
    let server: SocketAddr = arg(1).parse().unwrap_or_else(|_| fail("bad server"));
    let n: usize = arg(2).parse().unwrap_or_else(|_| fail("bad count"));
    let report = UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| fail(&e.to_string()));
    report
        .connect(arg(3))
        .unwrap_or_else(|e| fail(&e.to_string()));
    // a socket, an event loop and a runtime's worth of descriptors each
    raise_fd_limit(8 * n as u64 + 256).unwrap_or_else(|e| fail(&e));
    let sink = Arc::new(Sink {
        total: AtomicU64::new(0),
        last_ns: AtomicU64::new(0),
        wake: AtomicBool::new(false),
        every: AtomicU64::new(0),
        report,
    });
    let (subscribed, confirmations) = mpsc::channel();
    for i in 0..n {
        let sink = sink.clone();
        let subscribed = subscribed.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("sub-{i}"))
            .spawn(move || {
                if let Err(e) = subscribe(system, server, i, &subscribed, &sink) {
                    // before the confirmation this fails the start; after
                    // it, the parent sees the missing deliveries
                    let _ = subscribed.send(Err(e.clone()));
                    eprintln!("_peer_sub {}: subscriber {i}: {e}", system.name());
                }
            });
        if let Err(e) = spawned {
            fail(&format!("thread {i}: {e}"));
        }
    }
    let deadline = Instant::now() + SUBSCRIBE_TIMEOUT;
    for _ in 0..n {
        let left = deadline.saturating_duration_since(Instant::now());
        match confirmations.recv_timeout(left) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => fail(&e),
            Err(_) => fail(&format!(
                "not every subscriber subscribed in {SUBSCRIBE_TIMEOUT:?}"
            )),
        }
    }
    println!("ready");
    let _ = std::io::stdout().flush();
    for line in std::io::stdin().lock().lines() {
        let Ok(q) = line else { break };
        let mut words = q.split_whitespace();
        let answer = match words.next() {
            Some("wake") => {
                sink.wake.store(true, Ordering::Relaxed);
                "ok".to_owned()
            }
            Some("count") => {
                let every = words.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                sink.every.store(every, Ordering::Relaxed);
                sink.wake.store(false, Ordering::Relaxed);
                sink.counts()
            }
            _ => sink.counts(),
        };
        println!("{answer}");
        let _ = std::io::stdout().flush();
    }
    std::process::exit(0)
}

fn fail(why: &str) -> ! {
    eprintln!("_peer_sub: {why}");
    std::process::exit(1)
}

/// One subscriber: connects, subscribes, confirms on `subscribed` once the
/// server has the subscription, then hands every message to `sink` until
/// the connection fails.
fn subscribe(
    system: System,
    server: SocketAddr,
    i: usize,
    subscribed: &mpsc::Sender<Result<(), String>>,
    sink: &Sink,
) -> Result<(), String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let confirm = || {
        let _ = subscribed.send(Ok(()));
    };
    match system {
        System::Flagpost => {
            let listener = Listener::connect(server).map_err(|x| e(&x))?;
            if !listener.wait_listening(Duration::from_secs(30)) {
                return Err("never welcomed".into());
            }
            listener.take();
            confirm();
            // as the `_listener` mode: take when `wait` returns, then report.
            // Taking after reporting would race the next trigger: a raise
            // landing between the two is cleared unseen (4 lost samples in
            // 20,000 in one run).
            loop {
                if listener.wait(Duration::from_secs(3600)) {
                    listener.take();
                    sink.deliver();
                }
            }
        }
        System::Redis => {
            let client = redis::Client::open(format!("redis://{server}/")).map_err(|x| e(&x))?;
            let mut con = client.get_connection().map_err(|x| e(&x))?;
            let mut pubsub = con.as_pubsub();
            // returns once the server has confirmed the subscription
            pubsub.subscribe(CHANNEL).map_err(|x| e(&x))?;
            confirm();
            loop {
                pubsub.get_message().map_err(|x| e(&x))?;
                sink.deliver();
            }
        }
        System::Postgres => {
            use postgres::fallible_iterator::FallibleIterator;
            let mut client = postgres::Client::connect(&postgres_conninfo(server), postgres::NoTls)
                .map_err(|x| e(&x))?;
            // autocommit: in effect once the command completes
            client
                .batch_execute(&format!("LISTEN {CHANNEL}"))
                .map_err(|x| e(&x))?;
            confirm();
            let mut notifications = client.notifications();
            let mut iter = notifications.blocking_iter();
            while iter.next().map_err(|x| e(&x))?.is_some() {
                sink.deliver();
            }
            Err("connection closed".into())
        }
        System::Mosquitto => {
            use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
            let id = format!("flagpost-bench-sub-{}-{i}", std::process::id());
            let mut options = MqttOptions::new(id, server.ip().to_string(), server.port());
            options.set_keep_alive(Duration::from_secs(60));
            let (client, mut connection) = Client::new(options, 16);
            client
                .subscribe(CHANNEL, QoS::AtMostOnce)
                .map_err(|x| e(&x))?;
            let mut confirmed = false;
            for event in connection.iter() {
                match event.map_err(|x| e(&x))? {
                    Event::Incoming(Packet::SubAck(_)) if !confirmed => {
                        confirmed = true;
                        confirm();
                    }
                    Event::Incoming(Packet::Publish(_)) => sink.deliver(),
                    _ => {}
                }
            }
            Err("connection closed".into())
        }
        System::Nats => {
            use futures_util::StreamExt;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|x| e(&x))?;
            runtime.block_on(async {
                let client = async_nats::connect(server.to_string())
                    .await
                    .map_err(|x| e(&x))?;
                let mut subscription = client.subscribe(CHANNEL).await.map_err(|x| e(&x))?;
                // NATS does not confirm a subscription: a message to
                // ourselves after it, back through the server, shows the
                // server has processed it (a connection's operations are
                // handled in order)
                let own = format!("{CHANNEL}.ack.{}.{i}", std::process::id());
                let mut echo = client.subscribe(own.clone()).await.map_err(|x| e(&x))?;
                client.publish(own, "ok".into()).await.map_err(|x| e(&x))?;
                client.flush().await.map_err(|x| e(&x))?;
                tokio::time::timeout(Duration::from_secs(30), echo.next())
                    .await
                    .map_err(|_| "subscription never confirmed".to_owned())?;
                confirm();
                while subscription.next().await.is_some() {
                    sink.deliver();
                }
                Err("connection closed".into())
            })
        }
    }
}

/// The parent's handle on a `_peer_sub` process; killed on drop.
struct Subscribers {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Subscribers {
    /// Starts `n` subscribers and returns once all are subscribed.
    fn spawn(
        system: System,
        server: SocketAddr,
        n: usize,
        report: SocketAddr,
    ) -> Result<Subscribers, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .arg("_peer_sub")
            .args([
                system.name().to_owned(),
                server.to_string(),
                n.to_string(),
                report.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("start the subscribers: {e}"))?;
        let stdin = child.stdin.take().ok_or("subscriber stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("subscriber stdout")?);
        let mut subs = Subscribers {
            child,
            stdin,
            stdout,
        };
        // the child gives up by itself after SUBSCRIBE_TIMEOUT
        let line = subs.read_line()?;
        if line != "ready" {
            return Err(format!("{n} {} subscribers did not start", system.name()));
        }
        Ok(subs)
    }

    fn read_line(&mut self) -> Result<String, String> {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        Ok(line.trim().to_owned())
    }

    fn query(&mut self, q: &str) -> Result<String, String> {
        writeln!(self.stdin, "{q}").map_err(|e| format!("subscribers gone: {e}"))?;
        self.stdin.flush().map_err(|e| e.to_string())?;
        self.read_line()
    }

    /// `(deliveries counted, CLOCK_MONOTONIC of the latest)`.
    fn counts(&mut self, q: &str) -> Result<(u64, u64), String> {
        let line = self.query(q)?;
        let mut it = line.split(' ').map(|v| v.parse::<u64>().ok());
        match (it.next().flatten(), it.next().flatten()) {
            (Some(total), Some(last)) => Ok((total, last)),
            _ => Err(format!("subscribers answered {line:?}")),
        }
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Subscribers {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- publishers ---------------------------------------------------------------

/// This process's publishing connection to a server.
// one value per system, on the stack: the variants' sizes do not matter
#[allow(clippy::large_enum_variant)]
enum Publisher {
    Flagpost {
        notifier: Notifier,
        raw: UdpSocket,
        broker: SocketAddr,
        seq: u32,
    },
    Redis(redis::Connection),
    Postgres {
        client: postgres::Client,
        /// [`BATCH`] notifications, a transaction each, in one query string.
        batch: String,
    },
    Mosquitto {
        client: rumqttc::Client,
        connection: rumqttc::Connection,
    },
    Nats {
        runtime: tokio::runtime::Runtime,
        client: async_nats::Client,
    },
}

impl Publisher {
    fn connect(system: System, server: SocketAddr) -> Result<Publisher, String> {
        let e = |e: &dyn std::fmt::Display| format!("publisher: {e}");
        Ok(match system {
            System::Flagpost => Publisher::Flagpost {
                // the default notifier, tail-loss probe included
                notifier: Notifier::new(server).map_err(|x| e(&x))?,
                raw: UdpSocket::bind("127.0.0.1:0").map_err(|x| e(&x))?,
                broker: server,
                seq: 0,
            },
            System::Redis => Publisher::Redis(
                redis::Client::open(format!("redis://{server}/"))
                    .and_then(|c| c.get_connection())
                    .map_err(|x| e(&x))?,
            ),
            System::Postgres => Publisher::Postgres {
                client: postgres::Client::connect(&postgres_conninfo(server), postgres::NoTls)
                    .map_err(|x| e(&x))?,
                batch: format!("BEGIN; NOTIFY {CHANNEL}, 'x'; COMMIT; ").repeat(BATCH as usize),
            },
            System::Mosquitto => {
                let id = format!("flagpost-bench-pub-{}", std::process::id());
                let mut options =
                    rumqttc::MqttOptions::new(id, server.ip().to_string(), server.port());
                options.set_keep_alive(Duration::from_secs(60));
                let (client, mut connection) = rumqttc::Client::new(options, 2 * BATCH as usize);
                // the first poll connects
                match connection.recv_timeout(Duration::from_secs(10)) {
                    Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_)))) => {}
                    other => return Err(format!("publisher: no CONNACK: {other:?}")),
                }
                Publisher::Mosquitto { client, connection }
            }
            System::Nats => {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|x| e(&x))?;
                let client = runtime
                    .block_on(async_nats::connect(server.to_string()))
                    .map_err(|x| e(&x))?;
                Publisher::Nats { runtime, client }
            }
        })
    }

    /// One publish with the client's ordinary single-publish call (for
    /// Flagpost: `Notifier::notify_status_update`), written to the server
    /// before it returns.
    fn publish_one(&mut self) -> Result<(), String> {
        let e = |e: &dyn std::fmt::Display| format!("publish: {e}");
        match self {
            Publisher::Flagpost { notifier, .. } => {
                notifier.notify_status_update(None);
                Ok(())
            }
            Publisher::Redis(con) => redis::cmd("PUBLISH")
                .arg(CHANNEL)
                .arg("x")
                .query::<i64>(con)
                .map(drop)
                .map_err(|x| e(&x)),
            Publisher::Postgres { client, .. } => client
                .batch_execute(&format!("NOTIFY {CHANNEL}, 'x'"))
                .map_err(|x| e(&x)),
            Publisher::Mosquitto { .. } => self.publish_mqtt(1),
            Publisher::Nats { runtime, client } => runtime.block_on(async {
                client
                    .publish(CHANNEL, "x".into())
                    .await
                    .map_err(|x| e(&x))?;
                client.flush().await.map_err(|x| e(&x))
            }),
        }
    }

    /// [`BATCH`] publishes (for Flagpost: raw notification datagrams, as
    /// `flagpost-bench ingest` sends them).
    fn publish_batch(&mut self) -> Result<(), String> {
        let e = |e: &dyn std::fmt::Display| format!("publish: {e}");
        match self {
            Publisher::Flagpost {
                raw, broker, seq, ..
            } => {
                let mut buf = [0u8; MAX_DATAGRAM_LEN];
                for _ in 0..BATCH {
                    *seq = seq.wrapping_add(1);
                    let n = NotifyRepr {
                        notification: Notification::non_status(None),
                        sender: SenderId(0x9ee5),
                        seq: Seq(*seq),
                        batch: 1,
                        ack_requested: false,
                        tag: None,
                    }
                    .emit(&mut buf)
                    .map_err(|x| e(&x))?;
                    // UDP: a full receive buffer drops, the broker counts
                    // what it handled
                    let _ = raw.send_to(&buf[..n], *broker);
                }
                Ok(())
            }
            Publisher::Redis(con) => {
                let mut pipe = redis::pipe();
                for _ in 0..BATCH {
                    pipe.cmd("PUBLISH").arg(CHANNEL).arg("x").ignore();
                }
                pipe.query::<()>(con).map_err(|x| e(&x))
            }
            Publisher::Postgres { client, batch } => client.batch_execute(batch).map_err(|x| e(&x)),
            Publisher::Mosquitto { .. } => self.publish_mqtt(BATCH),
            Publisher::Nats { runtime, client } => runtime.block_on(async {
                for _ in 0..BATCH {
                    client
                        .publish(CHANNEL, "x".into())
                        .await
                        .map_err(|x| e(&x))?;
                }
                client.flush().await.map_err(|x| e(&x))
            }),
        }
    }

    /// Queues `n` QoS 0 publishes and drives rumqttc's event loop in this
    /// thread until it has written all of them.
    fn publish_mqtt(&mut self, n: u64) -> Result<(), String> {
        use rumqttc::{Event, Outgoing, QoS};
        let Publisher::Mosquitto { client, connection } = self else {
            return Err("not MQTT".into());
        };
        for _ in 0..n {
            client
                .publish(CHANNEL, QoS::AtMostOnce, false, &b"x"[..])
                .map_err(|x| format!("publish: {x}"))?;
        }
        let mut written = 0;
        while written < n {
            match connection.recv_timeout(Duration::from_secs(5)) {
                Ok(Ok(Event::Outgoing(Outgoing::Publish(_)))) => written += 1,
                Ok(Ok(_)) => {}
                Ok(Err(x)) => return Err(format!("publish: {x}")),
                Err(x) => return Err(format!("publish: {x:?}")),
            }
        }
        Ok(())
    }
}

// ---- measurements -------------------------------------------------------------

/// All figures of one system; a figure that failed holds why. (A
/// throughput run is `stalled` when no delivery report came for
/// [`STALL_TIMEOUT`].)
struct Figures {
    system: System,
    version: String,
    wake: Result<Measured, String>,
    throughput: Vec<Result<Throughput, String>>,
    idle_bytes: Result<f64, String>,
}

impl Figures {
    /// The report's copy of these figures.
    fn into_report(self) -> SystemFigures {
        SystemFigures {
            system: self.system.label().to_owned(),
            flagpost: self.system == System::Flagpost,
            version: self.version,
            wake: self.wake,
            throughput: self.throughput,
            idle_bytes: self.idle_bytes,
        }
    }
}

fn report_socket() -> Result<(UdpSocket, SocketAddr), String> {
    crate::report_socket().map_err(|e| e.to_string())
}

/// Runs `f`, turning a panic (a failed publish mid-measurement) into an
/// error; whatever it started is dropped, so stopped, on the way out.
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(|e| format!("{what}: {e}")),
        Err(p) => Err(format!(
            "{what}: {}",
            p.downcast_ref::<String>()
                .map(String::as_str)
                .or(p.downcast_ref::<&str>().copied())
                .unwrap_or("panicked")
        )),
    }
}

/// Server memory per subscriber once `n` idle subscribers are subscribed.
fn idle_memory(server: &Server, n: usize) -> Result<f64, String> {
    let (_report, report_addr) = report_socket()?;
    let before_children: HashSet<u32> = children_of(server.child.id()).into_iter().collect();
    let before_rss = server.rss_kib();
    let subs = Subscribers::spawn(server.system, server.addr, n, report_addr)?;
    // let the server finish what the connections started (backends settle)
    std::thread::sleep(Duration::from_millis(500));
    let mut kib = server.rss_kib().saturating_sub(before_rss);
    if server.system == System::Postgres {
        let forked: Vec<u32> = children_of(server.child.id())
            .into_iter()
            .filter(|p| !before_children.contains(p))
            .collect();
        if forked.len() < n {
            return Err(format!("{} backends for {n} subscribers", forked.len()));
        }
        kib += forked.into_iter().map(pss_kib).sum::<u64>();
    }
    drop(subs);
    Ok((kib * 1024) as f64 / n as f64)
}

/// Wake latency through `server` to a subscriber in another process.
/// One system's wake-latency rig: its server, a publisher and one
/// subscriber process reporting to `report`.
struct WakeRig {
    system: System,
    publisher: Publisher,
    subs: Subscribers,
    report: UdpSocket,
    measured: Option<Measured>,
    failed: Option<String>,
    /// Last: fields drop in order, and a server stopped before its
    /// subscriber process made the subscriber report the lost connection.
    _server: Server,
}

impl WakeRig {
    fn start(system: System) -> Result<WakeRig, String> {
        let server = Server::start(system, 200)?;
        let publisher = Publisher::connect(system, server.addr)?;
        let (report, report_addr) = report_socket()?;
        let mut subs = Subscribers::spawn(system, server.addr, 1, report_addr)?;
        subs.query("wake")?;
        Ok(WakeRig {
            system,
            _server: server,
            publisher,
            subs,
            report,
            measured: None,
            failed: None,
        })
    }

    /// `n` samples (warm-up when `keep` is false); a failure retires the rig.
    fn block(&mut self, n: u32, keep: bool, measure: Measure<'_>) {
        if self.failed.is_some() {
            return;
        }
        let (publisher, subs) = (&mut self.publisher, &mut self.subs);
        let report = &self.report;
        let got = guarded("wake", || {
            let mut trigger = |i: u32| {
                if let Err(e) = publisher.publish_one() {
                    panic!("{e}");
                }
                // a dead subscriber would make every remaining sample time out
                if i % 100 == 99 && !subs.alive() {
                    panic!("the subscriber process exited");
                }
            };
            Ok(measure(n, report, &mut trigger))
        });
        match got {
            Ok(m) if keep => match &mut self.measured {
                Some(all) => all.merge(m),
                None => self.measured = Some(m),
            },
            Ok(_) => {}
            Err(e) => self.failed = Some(e),
        }
    }
}

/// The wake latency of every system, measured interleaved: all servers run
/// at once (idle but for the one being sampled), and the systems take turns
/// in blocks of [`WAKE_BLOCK`] samples, so that every system sees the same
/// state of a shared machine rather than one after the other.
fn wake_all(
    systems: &[System],
    samples: u32,
    measure: Measure<'_>,
) -> Vec<Result<Measured, String>> {
    let mut rigs: Vec<Result<WakeRig, String>> = systems
        .iter()
        .map(|&system| {
            eprintln!("peers: {} (wake latency) …", system.label());
            guarded("wake", || WakeRig::start(system))
        })
        .collect();
    for rig in rigs.iter_mut().flatten() {
        rig.block(WARM_UP, false, measure);
    }
    let mut done = 0;
    while done < samples {
        let n = WAKE_BLOCK.min(samples - done);
        for rig in rigs.iter_mut().flatten() {
            rig.block(n, true, measure);
        }
        done += n;
    }
    rigs.into_iter()
        .map(|rig| {
            let rig = rig?;
            match (rig.failed, rig.measured) {
                (Some(e), _) => Err(format!("{}: {e}", rig.system.label())),
                (None, Some(m)) => Ok(m),
                (None, None) => Err("no sample".into()),
            }
        })
        .collect()
}

/// Reads delivery reports for up to `timeout`; the largest count seen.
fn read_reports(report: &UdpSocket, timeout: Option<Duration>) -> Option<u64> {
    let mut buf = [0u8; 16];
    let mut best = None;
    match timeout {
        Some(t) => {
            let _ = report.set_nonblocking(false);
            let _ = report.set_read_timeout(Some(t));
            if let Ok(16) = report.recv(&mut buf) {
                best = Some(u64::from_be_bytes(buf[..8].try_into().unwrap_or_default()));
            }
        }
        None => {
            let _ = report.set_nonblocking(true);
            // bounded: a full receive buffer holds a few thousand
            for _ in 0..100_000 {
                match report.recv(&mut buf) {
                    Ok(16) => {
                        let v = u64::from_be_bytes(buf[..8].try_into().unwrap_or_default());
                        best = best.max(Some(v));
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
    }
    best
}

/// Publish throughput through `server` with `n` subscribers.
fn throughput(
    server: &mut Server,
    publisher: &mut Publisher,
    n: usize,
    secs: f64,
) -> Result<Throughput, String> {
    let flagpost = server.system == System::Flagpost;
    let (report, report_addr) = report_socket()?;
    let mut subs = Subscribers::spawn(server.system, server.addr, n, report_addr)?;
    let nsubs = n as u64;
    let (c0, _) = subs.counts(&format!("count {}", REPORT_EVERY * nsubs))?;
    let d0 = if flagpost { server.datagrams()? } else { 0 };
    let cpu0 = server.cpu_s();
    let sub_cpu = |s: &Subscribers| proc_sample(s.child.id()).map_or(0.0, |p| p.cpu_s);
    let sub_cpu0 = sub_cpu(&subs);
    let t0 = now_ns();
    let started = Instant::now();
    let mut published = 0u64;
    let mut delivered = c0; // the subscribers' running count
    let mut stalled = false;
    'run: while started.elapsed().as_secs_f64() < secs {
        if !flagpost {
            if let Some(v) = read_reports(&report, None) {
                delivered = delivered.max(v);
            }
            // at most WINDOW publishes not yet delivered to everyone
            while published + BATCH > (delivered - c0) / nsubs + WINDOW {
                match read_reports(&report, Some(STALL_TIMEOUT)) {
                    Some(v) => delivered = delivered.max(v),
                    None => {
                        stalled = true;
                        break 'run;
                    }
                }
            }
        }
        publisher.publish_batch()?;
        published += BATCH;
    }
    let blast_end = now_ns();
    if flagpost {
        // as `ingest`: what the broker handled while the sender ran
        let datagrams = server.datagrams()? - d0;
        let cpu = server.cpu_s() - cpu0;
        let sub_cpu = sub_cpu(&subs) - sub_cpu0;
        let (c1, _) = subs.counts("total")?;
        let elapsed = (blast_end - t0) as f64 / 1e9;
        return Ok(Throughput {
            subscribers: n,
            publishes_per_s: datagrams as f64 / elapsed,
            deliveries_per_s: (c1 - c0) as f64 / elapsed,
            cpu_s_per_million: cpu / datagrams.max(1) as f64 * 1e6,
            sub_cpu_s_per_million: sub_cpu / datagrams.max(1) as f64 * 1e6,
            lost: 0,
            stalled: false,
        });
    }
    // wait for the last deliveries: until all arrived, or 2 s without any
    let expected = published * nsubs;
    let (mut total, mut last) = subs.counts("total")?;
    let mut progress = Instant::now();
    let drain_deadline = Instant::now() + Duration::from_secs(30);
    while total - c0 < expected
        && progress.elapsed() < Duration::from_secs(2)
        && Instant::now() < drain_deadline
    {
        std::thread::sleep(Duration::from_millis(5));
        let (t, l) = subs.counts("total")?;
        if t > total {
            progress = Instant::now();
        }
        (total, last) = (t, l);
    }
    let cpu = server.cpu_s() - cpu0;
    let sub_cpu = sub_cpu(&subs) - sub_cpu0;
    let deliveries = total - c0;
    let elapsed = (last.max(blast_end) - t0) as f64 / 1e9;
    let publishes = deliveries as f64 / nsubs as f64;
    Ok(Throughput {
        subscribers: n,
        publishes_per_s: publishes / elapsed,
        deliveries_per_s: deliveries as f64 / elapsed,
        cpu_s_per_million: cpu / published.max(1) as f64 * 1e6,
        sub_cpu_s_per_million: sub_cpu / published.max(1) as f64 * 1e6,
        lost: expected.saturating_sub(deliveries),
        stalled,
    })
}

/// Every figure of one system, on one fresh server instance: idle memory
/// first (on the fresh server), then wake latency, then throughput.
fn measure_system(system: System, sizes: &Sizes, wake: Result<Measured, String>) -> Figures {
    let mut figures = Figures {
        system,
        version: system.version(),
        wake,
        throughput: Vec::new(),
        idle_bytes: Err("not measured".into()),
    };
    eprintln!("peers: {} …", system.label());
    let mut server = match Server::start(system, sizes.idle + 200) {
        Ok(s) => s,
        Err(e) => {
            figures.idle_bytes = Err(e);
            return figures;
        }
    };
    figures.idle_bytes = guarded("idle memory", || idle_memory(&server, sizes.idle));
    let mut publisher = match Publisher::connect(system, server.addr) {
        Ok(p) => p,
        Err(e) => {
            figures.throughput.push(Err(e));
            return figures;
        }
    };
    for n in [1, FANOUT_SUBSCRIBERS] {
        figures.throughput.push(guarded("throughput", || {
            throughput(&mut server, &mut publisher, n, sizes.secs)
        }));
    }
    drop(publisher);
    drop(server);
    figures
}

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
