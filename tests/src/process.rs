//! Real `flagpost` processes for the fault tests: the binary built beside
//! the test (`cargo test --workspace` and `test.sh` build it), a broker
//! child that can be killed with SIGKILL and started again on the same
//! address (optionally inside a network namespace), and `flagpost`
//! subcommands run to completion.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

/// The `flagpost` binary of this build (`target/<profile>/flagpost`, beside
/// the test executable's `deps/`).
pub fn flagpost_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("flagpost"))
        .expect("target directory");
    assert!(
        bin.exists(),
        "{} is missing: build it first (cargo build -p flagpost-std --bins, as test.sh does)",
        bin.display()
    );
    bin
}

/// A `flagpost serve` child; killed on drop.
pub struct BrokerProcess {
    child: Child,
    /// The address it serves on.
    pub addr: String,
    args: Vec<String>,
    netns: Option<String>,
}

impl BrokerProcess {
    /// Starts `flagpost serve --bind BIND ARGS…` and waits until it
    /// announces its address on stdout.
    pub fn start(bind: &str, args: &[&str]) -> BrokerProcess {
        Self::start_with(None, bind, args)
    }

    /// Like [`start`](Self::start), inside the network namespace `netns`
    /// (`ip netns exec`, which execs: the child is `flagpost` itself).
    pub fn start_in_netns(netns: &str, bind: &str, args: &[&str]) -> BrokerProcess {
        Self::start_with(Some(netns.to_owned()), bind, args)
    }

    fn start_with(netns: Option<String>, bind: &str, args: &[&str]) -> BrokerProcess {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (child, addr) = spawn(netns.as_deref(), bind, &args);
        BrokerProcess {
            child,
            addr,
            args,
            netns,
        }
    }

    /// SIGKILL: no close frames, no flush; the listeners find out from TCP.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same address, with the same arguments.
    pub fn restart(&mut self) {
        let (child, addr) = spawn(self.netns.as_deref(), &self.addr, &self.args);
        assert_eq!(addr, self.addr, "restarted on another address");
        self.child = child;
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(netns: Option<&str>, bind: &str, args: &[String]) -> (Child, String) {
    let mut command = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(flagpost_bin());
            c
        }
        None => Command::new(flagpost_bin()),
    };
    let mut child = command
        .args(["serve", "--bind", bind])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start flagpost serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read the announced address");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("serve did not announce its address: {line:?}"))
        .to_owned();
    (child, addr)
}

/// Runs `flagpost ARGS…` to completion.
pub fn run(args: &[&str]) -> Output {
    Command::new(flagpost_bin())
        .args(args)
        .output()
        .expect("run flagpost")
}

/// Waits until `child` (started with `stderr` piped) prints a line
/// containing `ready` on stderr, within `timeout`; panics with its log if it
/// exits first, and kills it if it is not ready in time. `what` names it in
/// the panic. Its stderr is read to the end on a thread of its own.
pub fn wait_ready_on_stderr(
    child: &mut std::process::Child,
    ready: &'static str,
    timeout: std::time::Duration,
    what: &str,
) {
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut log = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains(ready) {
                let _ = tx.send(Ok(()));
            }
            log.push_str(&line);
            log.push('\n');
        }
        let _ = tx.send(Err(log));
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(())) => {}
        Ok(Err(log)) => panic!("{what} exited before it was ready:\n{log}"),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} not ready after {timeout:?}")
        }
    }
}
