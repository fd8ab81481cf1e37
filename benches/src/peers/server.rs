//! The servers: each system's own instance, a child process on a free
//! loopback port with a temporary directory ([`Server`]), started, awaited
//! until it accepts connections, read for its CPU and memory from `/proc`,
//! and stopped by its PID (with its forked children) on drop.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use crate::farm::proc_sample;

use super::{find_binary, System, START_TIMEOUT};

/// A server instance of ours: a child process on a loopback port; stopped
/// (by PID) and its directory removed on drop.
pub(super) struct Server {
    pub(super) system: System,
    pub(super) child: Child,
    pub(super) addr: SocketAddr,
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
    pub(super) fn start(system: System, max_connections: usize) -> Result<Server, String> {
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
    pub(super) fn cpu_s(&self) -> f64 {
        self.pids()
            .into_iter()
            .filter_map(|p| proc_sample(p).ok())
            .map(|s| s.cpu_s)
            .sum()
    }

    /// The server process's RSS, KiB.
    pub(super) fn rss_kib(&self) -> u64 {
        proc_sample(self.child.id()).map_or(0, |s| s.rss_kib)
    }

    /// Datagrams the Flagpost broker has handled (its `_broker` query).
    pub(super) fn datagrams(&mut self) -> Result<u64, String> {
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
pub(super) fn children_of(pid: u32) -> Vec<u32> {
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
pub(super) fn pss_kib(pid: u32) -> u64 {
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

pub(super) fn postgres_conninfo(addr: SocketAddr) -> String {
    format!(
        "host={} port={} user=postgres dbname=postgres",
        addr.ip(),
        addr.port()
    )
}
