//! Keys through the real binary: `flagpost keygen`, a broker started with
//! `--key-file`, and `flagpost notify` signing with the same key file, a
//! wrong one or none — with the broker's counters as the witness.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

mod common;

use common::{Server, BIN};

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A fresh key file written by `flagpost keygen`, removed when dropped.
fn keygen() -> tempfile::TempPath {
    let path = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    std::fs::remove_file(&path).unwrap();
    let (code, err) = run(&["keygen", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "a key file is private");
    path
}

/// A counter of the keyed broker at `addr` (the stats need the key too).
fn stat(addr: &str, key: &std::path::Path, name: &str) -> u64 {
    let out = Command::new(BIN)
        .args(["stats", "--json", "--broker", addr, "--key-file"])
        .arg(key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let entries: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_u64())
        .unwrap_or_else(|| panic!("no {name}"))
}

#[test]
fn a_keyed_broker_acks_only_the_senders_with_its_key() {
    let key = keygen();
    let wrong = keygen();
    let server = Server::start(&["--key-file", key.to_str().unwrap()]);
    let notify = |extra: &[&str]| {
        let mut args = vec!["notify", "status", "--broker", &server.addr, "--confirm"];
        args.extend_from_slice(extra);
        run(&args)
    };
    let (code, err) = notify(&["--key-file", key.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("acknowledged: Delivered"), "{err}");
    // unsigned, and signed with another key: dropped, never acked
    for extra in [&[][..], &["--key-file", wrong.to_str().unwrap()][..]] {
        let mut args = extra.to_vec();
        args.extend_from_slice(&["--timeout", "300ms"]);
        let (code, err) = notify(&args);
        // no answer in time (8), not "unreachable": the broker is up
        assert_eq!(code, 8, "{err}");
        assert!(err.contains("no acknowledgement"), "{err}");
    }
    assert_eq!(stat(&server.addr, &key, "flagpost_datagrams_total"), 1);
    let unauthorized = stat(&server.addr, &key, "flagpost_datagrams_unauthorized_total");
    assert!(
        unauthorized >= 2,
        "every retransmission counted: {unauthorized}"
    );
    assert_eq!(stat(&server.addr, &key, "flagpost_acks_total"), 1);
}

#[test]
fn a_bad_key_file_stops_the_broker_before_it_binds() {
    let key = keygen();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--bind", "127.0.0.1:0", "--key-file"])
        .arg(&key)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("chmod 600"), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening on"));
    let (code, err) = run(&["keygen", key.to_str().unwrap()]);
    assert_eq!(code, 1, "keygen never overwrites a key: {err}");
}
