//! Issue 16, "a CLI that never lies": each misleading behaviour of the
//! `flagpost` binary, run for real against a real broker (or a wrong or
//! dead port) on loopback — refused, unreachable, timed out, rejected and
//! not-a-broker told apart by message and exit code.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{Server, BIN};

fn run_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn run(args: &[&str]) -> (i32, String, String) {
    run_env(args, &[])
}

/// A loopback port nothing listens on (UDP and TCP): bound, then dropped.
fn dead_port() -> String {
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.local_addr().unwrap().to_string()
}

/// A free loopback TCP address (for a metrics endpoint).
fn free_tcp() -> String {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string()
}

/// Reads `child`'s stderr lines until one contains `what` (or it ends).
fn read_until(err: &mut BufReader<std::process::ChildStderr>, what: &str) -> String {
    let mut seen = String::new();
    let mut line = String::new();
    while !line.contains(what) {
        line.clear();
        if err.read_line(&mut line).unwrap() == 0 {
            panic!("stderr ended before {what:?}: {seen}");
        }
        seen.push_str(&line);
    }
    seen
}

/// Was: exit 0 and no word when nothing listened. Now refused (exit 3);
/// a live broker gets "delivery not confirmed" on stderr and exit 0.
#[test]
fn notify_without_confirm_tells_refused_from_unconfirmed() {
    let dead = dead_port();
    let (code, _, stderr) = run(&["notify", "status", "--broker", &dead]);
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("refused") && stderr.contains(&dead),
        "{stderr}"
    );

    let server = Server::start(&[]);
    let (code, _, stderr) = run(&["notify", "status", "--broker", &server.addr]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("not confirmed"), "{stderr}");
    assert!(stderr.contains("--confirm"), "{stderr}");

    // a port that takes datagrams and never answers: unconfirmed, not refused
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let (code, _, stderr) = run(&["notify", "status", "--broker", &silent_addr]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("not confirmed"), "{stderr}");
}

/// Was: `--confirm` to a refused port waited its whole timeout. Now it
/// fails at once (exit 3); a silent peer times out with its own code (8).
#[test]
fn confirm_fails_at_once_when_refused_and_times_out_distinctly() {
    let dead = dead_port();
    let started = Instant::now();
    let (code, _, stderr) = run(&[
        "notify",
        "status",
        "--confirm",
        "--timeout",
        "30s",
        "--broker",
        &dead,
    ]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("refused"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );

    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let (code, _, stderr) = run(&[
        "notify",
        "status",
        "--confirm",
        "--timeout",
        "300ms",
        "--broker",
        &silent_addr,
    ]);
    assert_eq!(code, 8, "{stderr}");
    assert!(stderr.contains("no acknowledgement"), "{stderr}");
}

/// Was: `--broker 127.0.0.1` failed with `"\"127.0.0.1\""`. Now the port
/// defaults to 16725, and a bad address is quoted once with a hint.
#[test]
fn broker_without_a_port_defaults_to_16725_and_errors_hint_the_form() {
    // Whether or not a broker runs on this machine's 16725, the address used
    // is 127.0.0.1:16725, and it is not a resolution error.
    let (code, stdout, stderr) = run(&["ping", "--broker", "127.0.0.1"]);
    assert!(code == 0 || code == 3, "{code} {stderr}");
    assert!(
        stdout.contains("127.0.0.1:16725") || stderr.contains("127.0.0.1:16725"),
        "{stdout}{stderr}"
    );
    let (code, _, stderr) = run(&["notify", "status", "--broker", "[::1]"]);
    assert_ne!(code, 2, "{stderr}");

    let (code, _, stderr) = run(&["notify", "status", "--broker", "127.0.0.1:99999"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("HOST[:PORT]"), "{stderr}");
    assert!(stderr.contains("127.0.0.1:99999"), "{stderr}");
    assert!(!stderr.contains("\\\""), "doubled quotes: {stderr}");
    for sub in ["listen", "stats", "ping"] {
        let (code, _, stderr) = run(&[sub, "--broker", "127.0.0.1:99999"]);
        assert_eq!(code, 2, "{sub}: {stderr}");
        assert!(stderr.contains("HOST[:PORT]"), "{sub}: {stderr}");
    }
}

/// Was: `listen` at the metrics port was silent forever. Now it says
/// "not a Flagpost broker" and exits 9; so do `ping` and `stats`.
#[test]
fn a_wrong_port_is_not_a_flagpost_broker() {
    let metrics = free_tcp();
    let _server = Server::start(&["--metrics", &metrics]);
    // the metrics endpoint is up once serve announced its address; the
    // three wait out their answer timeouts (5 s) side by side
    let children: Vec<(&str, Child)> = [
        vec!["listen", "--broker", &metrics, "--timeout", "30s"],
        vec!["ping", "--broker", &metrics],
        vec!["stats", "--broker", &metrics],
    ]
    .into_iter()
    .map(|args| {
        let child = Command::new(BIN)
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        (args[0], child)
    })
    .collect();
    for (sub, child) in children {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(9), "{sub}: {stderr}");
        assert!(stderr.contains("not a Flagpost broker"), "{sub}: {stderr}");
        assert!(out.stdout.is_empty(), "{sub} printed to stdout");
        if sub == "listen" {
            assert!(stderr.contains("connecting to"), "{stderr}");
        }
    }
}

/// Was: "unreachable" against a full broker, and a screen of zero counters
/// from `stats`. Now "refused: too many listeners", exit 7, no counters.
#[test]
fn a_full_broker_refuses_with_its_reason() {
    let server = Server::start(&["--max-listeners", "1"]);
    let first = common::listen(&server.addr, &["--timeout", "60s"]);
    let _first = KillOnDrop(first);
    let (code, _, stderr) = run(&["listen", "--broker", &server.addr, "--timeout", "2s"]);
    assert_eq!(code, 7, "{stderr}");
    assert!(stderr.contains("too many listeners"), "{stderr}");
    assert!(stderr.contains("retrying"), "{stderr}");
    let (code, stdout, stderr) = run(&["stats", "--broker", &server.addr]);
    assert_eq!(code, 7, "{stderr}");
    assert!(stderr.contains("too many listeners"), "{stderr}");
    assert!(stdout.is_empty(), "counters printed: {stdout}");
    let (code, _, stderr) = run(&["ping", "--broker", &server.addr]);
    assert_eq!(code, 7, "{stderr}");
    assert!(stderr.contains("too many listeners"), "{stderr}");
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `listen` says when it connects, is connected, is disconnected and
/// reconnects.
#[test]
fn listen_reports_its_connection_on_stderr() {
    let server = Server::start(&[]);
    let addr = server.addr.clone();
    let mut child = Command::new(BIN)
        .args(["listen", "--timeout", "60s", "--broker", &addr])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let _child = KillOnDrop(child);
    let seen = read_until(&mut err, "listening on");
    assert!(seen.contains(&format!("connecting to {addr}")), "{seen}");
    assert!(seen.contains(&format!("connected to {addr}")), "{seen}");
    drop(server); // SIGKILL: the connection breaks
    let seen = read_until(&mut err, "disconnected from");
    assert!(seen.contains("reconnecting"), "{seen}");
    let restarted = Command::new(BIN)
        .args(["serve", "--bind", &addr])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _restarted = Server {
        child: restarted,
        addr: addr.clone(),
    };
    let seen = read_until(&mut err, "reconnected to");
    assert!(seen.contains(&addr), "{seen}");
}

/// `flagpost ping`: a round trip, or why not, by exit code.
#[test]
fn ping_reports_the_round_trip_or_why_not() {
    let server = Server::start(&[]);
    let (code, stdout, stderr) = run(&["ping", "--broker", &server.addr]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("round trip") && stdout.contains(" ms"),
        "{stdout}"
    );
    let (code, _, stderr) = run(&["ping", "--broker", &dead_port()]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("refused: nothing listens"), "{stderr}");
    // the broker counted a normal close, not an error
    let (_, stats, _) = run(&["stats", "--broker", &server.addr]);
    assert!(
        stats.contains("flagpost_connections_closed_total{reason=\"normal\"} 1"),
        "{stats}"
    );
}

/// Was: exit 1 (the README says 4).
#[test]
fn metrics_on_a_busy_port_exits_4() {
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    let (code, _, stderr) = run(&["serve", "--bind", "127.0.0.1:0", "--metrics", &busy_addr]);
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("metrics"), "{stderr}");
}

/// Was: no way to check a config without starting. `--check-config`
/// prints the effective config (file, env, flags) and binds nothing.
#[test]
fn check_config_validates_without_binding() {
    let server = Server::start(&[]);
    // the address is taken: a real start would exit 4, a check does not bind
    let (code, stdout, stderr) = run_env(
        &[
            "serve",
            "--check-config",
            "--bind",
            &server.addr,
            "--hello-timeout",
            "3s",
            "--sender-table",
            "77",
        ],
        &[("FLAGPOST_UDP_SOCKETS", "2")],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&format!("bind = [\"{}\"]", server.addr)),
        "{stdout}"
    );
    assert!(stdout.contains("hello_timeout = \"3s\""), "{stdout}");
    assert!(stdout.contains("sender_table = 77"), "{stdout}");
    assert!(stdout.contains("udp_sockets = 2"), "{stdout}");
    let (code, stdout, stderr) = run(&["serve", "--check-config", "--udp-sockets", "99"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("udp_sockets"), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
}

/// Was: only 4 of the 10 (now 22) keys had flags.
#[test]
fn every_config_key_has_a_flag() {
    let (code, help, _) = run(&["serve", "--help"]);
    assert_eq!(code, 0);
    for key in flagpost_std::config::KEYS {
        let flag = format!("--{}", key.replace('_', "-"));
        assert!(help.contains(&flag), "no {flag} in serve --help");
    }
}

/// Was: a misspelled `FLAGPOST_*` variable was silently ignored.
#[test]
fn a_misspelled_variable_names_the_closest_key() {
    let (code, _, stderr) = run_env(
        &["serve", "--check-config"],
        &[("FLAGPOST_MAX_LISTNERS", "5")],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("FLAGPOST_MAX_LISTNERS") && stderr.contains("FLAGPOST_MAX_LISTENERS"),
        "{stderr}"
    );
    // the clients too: FLAGPOST_BROKR would silently use the default broker
    let (code, _, stderr) = run_env(&["notify", "status"], &[("FLAGPOST_BROKR", "127.0.0.1:1")]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("FLAGPOST_BROKER"), "{stderr}");
}

/// `listen`'s own failures, each with its code: nothing listens (3), and
/// nothing raised before `--timeout` (6).
#[test]
fn listen_tells_unreachable_from_a_quiet_broker() {
    let dead = dead_port();
    let (code, _, stderr) = run(&["listen", "--broker", &dead, "--timeout", "1s"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("refused: nothing listens"), "{stderr}");
    let server = Server::start(&[]);
    let (code, _, stderr) = run(&["listen", "--broker", &server.addr, "--timeout", "1s"]);
    assert_eq!(code, 6, "{stderr}");
    assert!(stderr.contains("nothing arrived in time"), "{stderr}");
}

/// The per-address limit refuses `stats` too: its reason, exit 7, no zeros.
#[test]
fn stats_refused_by_the_per_address_limit_prints_no_counters() {
    let server = Server::start(&["--max-per-address", "1"]);
    let first = common::listen(&server.addr, &["--timeout", "60s"]);
    let _first = KillOnDrop(first);
    let (code, stdout, stderr) = run(&["stats", "--broker", &server.addr]);
    assert_eq!(code, 7, "{stderr}");
    assert!(
        stderr.contains("refused: too many listeners from this address"),
        "{stderr}"
    );
    assert!(stdout.is_empty(), "counters printed: {stdout}");
}
