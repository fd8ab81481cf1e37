//! Helpers shared by the tests that run the real `flagpost` binary.

#![allow(dead_code)] // each test file uses a subset

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

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
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .expect("serve announces its address")
            .to_owned();
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
