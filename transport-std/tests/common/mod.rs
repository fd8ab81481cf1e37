//! Helpers shared by the tests that run the real `flagpost` binary.

#![allow(dead_code)] // each test file uses a subset

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};

use flagpost_std::core::wire::{NotifyRepr, SenderId, Seq, MAX_DATAGRAM_LEN};
use flagpost_std::core::Notification;

/// The binary under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_flagpost");

/// A `flagpost serve` child on a free loopback port; killed on drop.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) addr: String,
}

impl Server {
    pub(crate) fn start(extra: &[&str]) -> Server {
        let mut child = Command::new(BIN)
            .args(["serve", "--bind", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr = announced(&mut child);
        Server { child, addr }
    }

    pub(crate) fn stop(mut self) -> std::process::ExitStatus {
        // SIGINT: a graceful shutdown, exit code 0
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `flagpost listen --broker ADDR EXTRA…` and returns once it is
/// listening (it says so on stderr): from then on nothing is missed.
pub(crate) fn listen(addr: &str, extra: &[&str]) -> Child {
    let mut child = Command::new(BIN)
        .args(["listen", "--broker", addr])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("listening on") {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "listen exited early");
    }
    child
}

/// The address a `flagpost serve` child announces on its stdout
/// (`listening on ADDR`).
pub(crate) fn announced(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    line.trim()
        .strip_prefix("listening on ")
        .expect("serve announces its address")
        .to_owned()
}

/// Sends one notification datagram (batch 1, no ack asked) to `to`.
pub(crate) fn send_notify(
    udp: &UdpSocket,
    to: SocketAddr,
    notification: Notification,
    sender: u64,
    seq: u32,
) -> std::io::Result<usize> {
    let mut d = [0u8; MAX_DATAGRAM_LEN];
    let n = NotifyRepr {
        notification,
        sender: SenderId(sender),
        seq: Seq(seq),
        batch: 1,
        ack_requested: false,
        probe: false,
        tag: None,
    }
    .emit(&mut d)
    .unwrap();
    udp.send_to(&d[..n], to)
}

/// `flagpost stats --json` against `addr`: the array of entries.
pub(crate) fn stats_json(addr: &str) -> Vec<serde_json::Value> {
    let out = Command::new(BIN)
        .args(["stats", "--json", "--broker", addr])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stats: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    parsed.as_array().unwrap().clone()
}
