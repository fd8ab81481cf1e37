//! A throwaway NATS server for the federation tests: Debian's `nats-server`
//! (`apt-get install nats-server`, which `test.sh` does) on a free loopback
//! port, or on a given address, optionally inside a network namespace
//! (`ip netns exec`, which execs: the child is the server itself). Started
//! when it logs that it is ready, stopped and started again on the same
//! address, killed when dropped.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long a start may take before the harness gives up.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The `nats-server` program: `$NATS_SERVER`, else the first of `PATH`,
/// `/usr/sbin` (Debian's package) and `/usr/bin` that has it.
pub fn nats_server_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("nats-server"))
        .find(|bin| bin.exists())
        .unwrap_or_else(|| {
            panic!(
                "nats-server is not installed (not in PATH, /usr/sbin or /usr/bin): \
                 apt-get install nats-server (test.sh does), or set NATS_SERVER"
            )
        })
}

/// A running `nats-server`.
pub struct NatsServer {
    /// The address it listens on.
    pub addr: SocketAddr,
    netns: Option<String>,
    /// More arguments for `nats-server` (`--tls …`).
    args: Vec<String>,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a server on a free port of 127.0.0.1.
    pub fn start() -> NatsServer {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port");
        Self::start_at(addr)
    }

    /// Starts a server on `addr`.
    pub fn start_at(addr: SocketAddr) -> NatsServer {
        Self::start_with(None, addr)
    }

    /// Starts a server on `addr` inside the network namespace `netns`.
    pub fn start_in_netns(netns: &str, addr: SocketAddr) -> NatsServer {
        Self::start_with(Some(netns.to_owned()), addr)
    }

    /// Starts a server on a free port of 127.0.0.1 with more arguments
    /// (`["--tls", "--tlscert", CERT, "--tlskey", KEY]`; kept for
    /// [`restart`](Self::restart)).
    pub fn start_with_args(args: &[&str]) -> NatsServer {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port");
        let mut server = NatsServer {
            addr,
            netns: None,
            args: args.iter().map(|a| a.to_string()).collect(),
            child: None,
        };
        server.start_server();
        server
    }

    fn start_with(netns: Option<String>, addr: SocketAddr) -> NatsServer {
        let mut server = NatsServer {
            addr,
            netns,
            args: Vec::new(),
            child: None,
        };
        server.start_server();
        server
    }

    /// `nats://ADDR`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Whether it is running (not [`stop`](Self::stop)ped).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Stops the server (SIGKILL: clients see the connection drop) and
    /// waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same address (after [`stop`](Self::stop);
    /// stops it first if it runs).
    pub fn restart(&mut self) {
        self.stop();
        self.start_server();
    }

    fn start_server(&mut self) {
        let bin = nats_server_bin();
        let mut command = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        let mut child = command
            .args(["-a", &self.addr.ip().to_string()])
            .args(["-p", &self.addr.port().to_string()])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        crate::process::wait_ready_on_stderr(
            &mut child,
            "Server is ready",
            START_TIMEOUT,
            "nats-server",
        );
        self.child = Some(child);
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}
