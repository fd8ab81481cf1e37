//! The `flagpost` command end to end, through the real binary: serve,
//! notify, listen --once, stats, confirmation, bad configuration, a port in
//! use and an unreachable broker — with their exit codes.

use std::process::Command;
use std::time::Duration;

mod common;

use common::{Server, BIN};

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn notify_listen_once_and_stats() {
    let server = Server::start(&[]);
    let listen = common::listen(
        &server.addr,
        &["--once", "--timeout", "20s", "--channel", "gsm1"],
    );
    let (code, _, _) = run(&[
        "notify",
        "status",
        "--channel",
        "gsm1",
        "--broker",
        &server.addr,
        "--count",
        "20",
    ]);
    assert_eq!(code, 0);
    let out = listen.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "status\nnon-status\n");

    let (code, stdout, _) = run(&["stats", "--broker", &server.addr]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("flagpost_datagrams_total{kind=\"status\"} "),
        "{stdout}"
    );
    assert!(stdout.contains("flagpost_changes_total 20"), "{stdout}");
    let (code, json, _) = run(&["stats", "--broker", &server.addr, "--json"]);
    assert_eq!(code, 0);
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(parsed
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["name"] == "flagpost_stats_requests_total"));
    assert!(server.stop().success());
}

#[test]
fn listen_json_lines_carry_a_timestamp() {
    let server = Server::start(&[]);
    let listen = common::listen(
        &server.addr,
        &[
            "--once",
            "--json",
            "--interest",
            "non-status",
            "--timeout",
            "20s",
        ],
    );
    assert_eq!(
        run(&["notify", "non-status", "--broker", &server.addr]).0,
        0
    );
    let out = listen.wait_with_output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["flag"], "non-status");
    assert!(v["ts"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn confirm_is_acknowledged_and_usage_errors_exit_2() {
    let server = Server::start(&[]);
    let (code, _, stderr) = run(&[
        "notify",
        "channel-update",
        "--channel",
        "gsm1",
        "--confirm",
        "--broker",
        &server.addr,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("acknowledged: Delivered"), "{stderr}");
    let (code, _, stderr) = run(&["notify", "channel-shutdown", "--broker", &server.addr]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--channel"), "{stderr}");
    let (code, _, _) = run(&["notify", "status", "--channel", &"x".repeat(40)]);
    assert_eq!(code, 2);
}

#[test]
fn unreachable_broker_exits_3() {
    // a port nobody serves: bind one and drop it
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    assert_eq!(run(&["stats", "--broker", &addr]).0, 3);
    let (code, _, stderr) = run(&[
        "notify",
        "status",
        "--confirm",
        "--timeout",
        "300ms",
        "--broker",
        &addr,
    ]);
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(
        run(&["listen", "--broker", &addr, "--timeout", "300ms"]).0,
        3
    );
}

#[test]
fn port_in_use_exits_4() {
    let server = Server::start(&[]);
    let (code, _, stderr) = run(&["serve", "--bind", &server.addr]);
    assert_eq!(code, 4);
    assert!(stderr.contains("address already in use"), "{stderr}");
}

#[test]
fn bad_config_exits_2_naming_key_and_line() {
    let dir = std::env::temp_dir().join(format!("flagpost-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(
        &file,
        "bind = [\"127.0.0.1:0\"]\nkeepalive = \"30s\"\nmax_listners = 10\n",
    )
    .unwrap();
    let (code, _, stderr) = run(&["serve", "--config", file.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("max_listners") && stderr.contains("line 3"),
        "{stderr}"
    );
    let out = Command::new(BIN)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("FLAGPOST_KEEPALIVE", "forever")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("FLAGPOST_KEEPALIVE"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn help_and_completions() {
    for sub in ["serve", "notify", "listen", "stats"] {
        let (code, stdout, _) = run(&[sub, "--help"]);
        assert_eq!(code, 0);
        assert!(stdout.contains("Usage: flagpost"), "{sub}");
    }
    let (code, stdout, _) = run(&["completions", "bash"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("_flagpost"));
}

#[test]
fn serve_with_metrics() {
    use std::io::{Read, Write};
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics = format!("127.0.0.1:{metrics_port}");
    let server = Server::start(&["--metrics", &metrics]);
    // the metrics endpoint is up once serve has announced its address
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let body = loop {
        if let Ok(mut s) = std::net::TcpStream::connect(&metrics) {
            write!(s, "GET /metrics HTTP/1.0\r\n\r\n").unwrap();
            let mut body = String::new();
            s.read_to_string(&mut body).unwrap();
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "metrics endpoint never came up"
        );
        std::thread::yield_now();
    };
    assert!(
        body.contains("flagpost_datagrams_total{kind=\"status\"} 0"),
        "{body}"
    );
    assert!(server.stop().success());
}

/// `notify --confirm` through a proxy that drops the first datagram: the
/// binary retransmits and reports two datagrams.
#[test]
fn confirm_retransmits_when_the_first_datagram_is_lost() {
    use std::net::UdpSocket;
    let server = Server::start(&[]);
    let broker: std::net::SocketAddr = server.addr.parse().unwrap();
    let front = UdpSocket::bind("127.0.0.1:0").unwrap();
    let back = UdpSocket::bind("127.0.0.1:0").unwrap();
    back.connect(broker).unwrap();
    let proxy = front.local_addr().unwrap().to_string();
    let relay = std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        // drop the first datagram, relay the second and its ack
        let (_, _) = front.recv_from(&mut buf).unwrap();
        let (n, client) = front.recv_from(&mut buf).unwrap();
        back.send(&buf[..n]).unwrap();
        let n = back.recv(&mut buf).unwrap();
        front.send_to(&buf[..n], client).unwrap();
    });
    let (code, _, stderr) = run(&[
        "notify",
        "status",
        "--confirm",
        "--timeout",
        "10s",
        "--broker",
        &proxy,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("after 2 datagram(s)"), "{stderr}");
    relay.join().unwrap();
}

/// A broker restart is a reconnect: `listen` prints a re-check marked
/// `"reconnect": true` (status, non-status, channel update) and never a
/// channel shutdown; the human output says the broker was away.
#[test]
fn a_broker_restart_is_a_marked_recheck_never_a_shutdown() {
    use std::io::{BufRead, BufReader};
    let server = Server::start(&[]);
    let addr = server.addr.clone();
    let json = common::listen(&addr, &["--once", "--json", "--timeout", "30s"]);
    let mut human = Command::new(BIN)
        .args(["listen", "--once", "--timeout", "30s", "--broker", &addr])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut human_err = BufReader::new(human.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("listening on") {
        line.clear();
        assert!(
            human_err.read_line(&mut line).unwrap() > 0,
            "listen exited early"
        );
    }
    drop(server); // SIGKILL: no close frame, the connections just break
                  // on the same address; the listeners find it when they retry
    let restarted = Command::new(BIN)
        .args(["serve", "--bind", &addr])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _restarted = Server {
        child: restarted,
        addr: addr.clone(),
    };

    let out = json.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = out
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    let flags: Vec<&str> = lines.iter().map(|v| v["flag"].as_str().unwrap()).collect();
    assert_eq!(flags, ["status", "non-status", "channel-update"]);
    assert!(lines.iter().all(|v| v["reconnect"] == true));

    let mut rest = String::new();
    std::io::Read::read_to_string(&mut human_err, &mut rest).unwrap();
    let out = human.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(rest.contains("the broker was away"), "{rest}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["status", "non-status", "channel-update"]
    );
}
