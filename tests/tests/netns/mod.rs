//! Helpers the network-namespace tests share: running a closure inside a
//! namespace, running a command that must succeed, and reading a broker's
//! counters with `flagpost stats --json` from inside its namespace.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Output, Stdio};

use flagpost_tests::process::flagpost_bin;

/// Runs `program args…` (with `stdin` fed to it, if given) and returns its
/// output; panics with its stderr if it fails.
pub(crate) fn must(program: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "`{program} {}` failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    out
}

/// Whether this process may create network namespaces (root, with `ip`):
/// `Err` says why not.
pub(crate) fn available() -> Result<(), String> {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| e.to_string())?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Err("needs root".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => Ok(()),
        _ => Err("needs iproute2 (`ip`)".into()),
    }
}

/// Runs `f` on a thread inside network namespace `ns`: sockets it creates,
/// threads it spawns and children it starts belong to that namespace.
pub(crate) fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("setns into {path}: {e}"));
            f()
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// A broker's counters by name, read with `flagpost stats --json` inside
/// `ns`; labelled ones as `name{key="value"}`.
pub(crate) fn stats(ns: &str, broker: &str) -> HashMap<String, u64> {
    let bin = flagpost_bin();
    let bin = bin.to_str().expect("a UTF-8 path");
    let out = must(
        "ip",
        &[
            "netns", "exec", ns, bin, "stats", "--json", "--broker", broker,
        ],
        None,
    );
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("`flagpost stats --json` prints JSON");
    let mut counters = HashMap::new();
    for entry in json.as_array().expect("an array of metrics") {
        let mut name = entry["name"].as_str().expect("a name").to_owned();
        if let Some(labels) = entry["labels"].as_object() {
            for (k, v) in labels {
                name.push_str(&format!("{{{k}={v}}}"));
            }
        }
        counters.insert(name, entry["value"].as_u64().expect("a value"));
    }
    counters
}
