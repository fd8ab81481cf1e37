//! Helpers the integration tests share: free ports, channel ids, `/metrics`
//! scraping, `flagpost stats --json` and bounded waits for flags.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use flagpost_std::core::{ChannelId, FlagSet};
use flagpost_std::Listener;

/// Bounds a failure only.
pub(crate) const LONG: Duration = Duration::from_secs(30);

pub(crate) const S: FlagSet = FlagSet::STATUS;
pub(crate) const N: FlagSet = FlagSet::NON_STATUS;
pub(crate) const CU: FlagSet = FlagSet::CHANNEL_UPDATE;
pub(crate) const CS: FlagSet = FlagSet::CHANNEL_SHUTDOWN;
pub(crate) const NONE: FlagSet = FlagSet::EMPTY;

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}

pub(crate) fn ch(name: &str) -> ChannelId {
    ChannelId::new(name).unwrap()
}

/// The `/metrics` text.
pub(crate) fn scrape(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("metrics endpoint");
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}

/// The value of the sample `name` (with its labels, if any).
pub(crate) fn sample(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Polls `/metrics` until `ok(value of name)`; panics after [`LONG`].
pub(crate) fn wait_metric(port: u16, name: &str, ok: impl Fn(u64) -> bool) -> u64 {
    let deadline = Instant::now() + LONG;
    loop {
        let text = scrape(port);
        if let Some(v) = sample(&text, name).filter(|v| ok(*v)) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never reached the expected value:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A listener that is listening and has consumed its first welcome's raise.
pub(crate) fn ready(listener: Listener) -> Listener {
    assert!(listener.wait_listening(LONG), "no welcome");
    assert!(listener.wait(LONG), "no first re-check");
    assert!(listener.take_raise().reconnect);
    listener
}

/// Waits until `l` has received at least `want`; returns everything it
/// received meanwhile and whether any of it was a reconnect raise.
pub(crate) fn collect(l: &Listener, want: FlagSet, what: &str) -> (FlagSet, bool) {
    let deadline = Instant::now() + LONG;
    let (mut got, mut reconnect) = (FlagSet::EMPTY, false);
    while !got.contains(want) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "{what}: waited for {want:?}, got only {got:?}"
        );
        if l.wait(left.min(Duration::from_millis(200))) {
            let raise = l.take_raise();
            got |= raise.flags;
            reconnect |= raise.reconnect;
        }
    }
    (got, reconnect)
}

/// The sum of the entries named `name` that `flagpost stats --json` prints
/// for the broker at `addr` (with `key`, when it has one), all labels, or
/// only those with `label` (`(key, value)`) among theirs.
pub(crate) fn stat(
    addr: &str,
    key: Option<&std::path::Path>,
    name: &str,
    label: Option<(&str, &str)>,
) -> u64 {
    let mut args = vec!["stats", "--json", "--broker", addr];
    if let Some(key) = key {
        args.extend(["--key-file", key.to_str().expect("a UTF-8 path")]);
    }
    let out = flagpost_tests::process::run(&args);
    assert!(out.status.success(), "{out:?}");
    let entries: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    entries
        .as_array()
        .expect("an array of entries")
        .iter()
        .filter(|e| e["name"] == name)
        .filter(|e| label.is_none_or(|(k, v)| e["labels"][k] == v))
        .map(|e| e["value"].as_u64().expect("a value"))
        .sum()
}
