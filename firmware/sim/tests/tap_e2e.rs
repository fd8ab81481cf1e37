//! End to end through real kernel sockets: the std broker and the simulated
//! gateway (embassy-net on a TAP device) in a network namespace this test
//! creates and deletes. A `+CMTI` written into the emulated modem must reach
//! a std listener for the gateway's channel; `flagpost notify status
//! --channel <board>` must run the gateway's outgoing-check hook. Both
//! latencies are printed.
//!
//! Needs root and `/dev/net/tun` (CI runs as root); without them it says why
//! and returns.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);
const BROKER: &str = "192.168.69.1:16725";
const CHANNEL: &str = "board1";

fn sibling_binary(name: &str) -> PathBuf {
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not built: run `cargo build --workspace --bins` first (./test.sh does)",
        path.display()
    );
    path
}

fn run(args: &[&str]) {
    let status = Command::new(args[0]).args(&args[1..]).status().unwrap();
    assert!(status.success(), "{args:?} failed");
}

/// A network namespace with a TAP device; deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn create() -> Netns {
        let name = format!("fpe2e{}", std::process::id());
        run(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        ns.exec_ok(&["ip", "tuntap", "add", "name", "fptap0", "mode", "tap"]);
        ns.exec_ok(&["ip", "link", "set", "fptap0", "up"]);
        ns.exec_ok(&["ip", "addr", "add", "192.168.69.1/24", "dev", "fptap0"]);
        ns
    }

    fn cmd(&self, program: &std::path::Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    fn exec_ok(&self, args: &[&str]) {
        let mut all = vec!["ip", "netns", "exec", &self.name];
        all.extend_from_slice(args);
        run(&all);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A child whose output lines arrive on a channel; killed on drop.
struct Proc {
    child: Child,
    lines: Receiver<String>,
    stdin: Option<ChildStdin>,
}

impl Proc {
    fn spawn(mut cmd: Command, watch_stderr: bool) -> Proc {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if watch_stderr {
                    let _ = tx2.send(line);
                } else {
                    eprintln!("  [stderr] {line}");
                }
            }
        });
        Proc {
            stdin: child.stdin.take(),
            child,
            lines,
        }
    }

    /// Waits for a line containing `needle`; returns it and when it came.
    fn expect(&self, needle: &str) -> (String, Instant) {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return (line, Instant::now()),
                Ok(_) => {}
                Err(_) => panic!("no line containing {needle:?} within {WAIT:?}"),
            }
        }
    }

    fn write_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `flagpost listen --once` for the gateway's channel, returned once it
/// is listening (from then on nothing is missed).
fn listen_once(ns: &Netns, flagpost: &std::path::Path) -> Proc {
    let mut cmd = ns.cmd(flagpost);
    cmd.args([
        "listen",
        "--broker",
        BROKER,
        "--channel",
        CHANNEL,
        "--once",
        "--interest",
        "status",
        "--timeout",
        "30s",
    ]);
    let listener = Proc::spawn(cmd, true);
    listener.expect("listening on");
    listener
}

fn can_run() -> Result<(), String> {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| e.to_string())?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Err("not root".into());
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Err("/dev/net/tun is missing".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Err("iproute2 (`ip`) is missing".into());
    }
    Ok(())
}

#[test]
fn sms_to_listener_and_notify_to_outgoing_hook_through_a_tap_device() {
    if let Err(why) = can_run() {
        eprintln!("skipped: {why} (needs root, /dev/net/tun and iproute2)");
        return;
    }
    let flagpost = sibling_binary("flagpost");
    let sim = sibling_binary("flagpost-gateway-sim");
    let ns = Netns::create();

    let mut broker_cmd = ns.cmd(&flagpost);
    broker_cmd.args(["serve", "--bind", BROKER]);
    let broker = Proc::spawn(broker_cmd, false);
    broker.expect("listening on");

    let mut gw_cmd = ns.cmd(&sim);
    gw_cmd.args([
        "--tap",
        "fptap0",
        "--ip",
        "192.168.69.2/24",
        "--broker",
        BROKER,
        "--channel",
        CHANNEL,
    ]);
    let mut gateway = Proc::spawn(gw_cmd, false);
    gateway.expect("config");
    // the first welcome raises every flag: the gateway checks outgoing once
    gateway.expect("outgoing-check");

    // 1. an SMS arrives at the gateway's modem → a listener for its channel wakes
    let listener = listen_once(&ns, &flagpost);
    let sent = Instant::now();
    gateway.write_line("+CMTI: \"SM\",3");
    let (line, at) = listener.expect("status");
    assert_eq!(line, "status");
    let sms_latency = at - sent;

    // 2. the broker is told there is work for the board → its outgoing hook runs
    let sent = Instant::now();
    let status = ns
        .cmd(&flagpost)
        .args(["notify", "status", "--channel", CHANNEL, "--broker", BROKER])
        .status()
        .unwrap();
    assert!(status.success());
    let (_, at) = gateway.expect("outgoing-check");
    let notify_latency = at - sent;

    // 3. a channel shutdown pauses reporting; a channel update resumes it
    let stats = |ns: &Netns| -> u64 {
        let out = ns
            .cmd(&flagpost)
            .args(["stats", "--broker", BROKER])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let line = text
            .lines()
            .find(|l| l.starts_with("flagpost_changes_total "))
            .unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let notify = |kind: &str| {
        let ok = ns
            .cmd(&flagpost)
            .args([
                "notify",
                kind,
                "--channel",
                CHANNEL,
                "--broker",
                BROKER,
                "--confirm",
            ])
            .status()
            .unwrap()
            .success();
        assert!(ok, "notify {kind}");
    };
    notify("channel-shutdown");
    gateway.expect("reporting off");
    let before = stats(&ns);
    gateway.write_line("+CMTI: \"SM\",4"); // paused: not reported
    gateway.expect("index: 4 } notified=false");
    notify("channel-update");
    gateway.expect("reporting on");
    let listener2 = listen_once(&ns, &flagpost);
    gateway.write_line("+CMTI: \"SM\",5"); // reported again
    listener2.expect("status");
    // delivered since: the channel update (1) and the second SMS (1) — not the paused one
    assert_eq!(stats(&ns) - before, 2);

    println!(
        "e2e latencies: +CMTI written → listener woke: {sms_latency:?} (includes the 5 ms hold-off); \
         `flagpost notify` started → outgoing hook ran: {notify_latency:?} (includes process start)"
    );
    drop(listener);
    drop(listener2);
    drop(gateway);
    drop(broker);
    drop(ns);
}
