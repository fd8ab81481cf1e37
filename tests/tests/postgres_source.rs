//! The broker's PostgreSQL source against a real server: the `flagpost`
//! binary (`serve --postgres`) listening on a throwaway cluster, real
//! listeners on loopback, payloads sent with `SELECT pg_notify(…)`.
//!
//! No sleeps stand in for synchronisation: a listener's flags are awaited
//! with `Listener::wait`, and what must *not* arrive is fenced by a later
//! notification that must (the source delivers in order, the broker routes
//! in order and each listener's frames arrive in order, so once the fence is
//! in, anything sent before it is too). `/metrics` is polled until a value
//! is reached; every wait is bounded and says what it waited for.

use std::time::{Duration, Instant};

use flagpost_std::core::FlagSet;
use flagpost_std::{Listener, Notifier};
use flagpost_tests::postgres::PgCluster;

mod common;
use common::*;
use flagpost_tests::process::{run, BrokerProcess};

fn pg_notify(client: &mut postgres::Client, payload: &str) {
    client
        .execute("SELECT pg_notify('flagpost', $1)", &[&payload])
        .expect("pg_notify");
}

struct Setup {
    cluster: PgCluster,
    _broker: BrokerProcess,
    metrics: u16,
    /// All channels; gsm1; gsm2 (every flag each).
    listeners: [Listener; 3],
}

fn setup() -> Setup {
    let cluster = PgCluster::start();
    let metrics = free_port();
    let url = cluster.url();
    let password_file = cluster.password_file();
    let metrics_addr = format!("127.0.0.1:{metrics}");
    let broker = BrokerProcess::start(
        "127.0.0.1:0",
        &[
            "--metrics",
            &metrics_addr,
            "--postgres",
            &url,
            "--postgres-password-file",
            password_file.to_str().unwrap(),
        ],
    );
    let addr = broker.addr.as_str();
    let listeners = [
        ready(Listener::builder().connect(addr).unwrap()),
        ready(
            Listener::builder()
                .channel(ch("gsm1"))
                .connect(addr)
                .unwrap(),
        ),
        ready(
            Listener::builder()
                .channel(ch("gsm2"))
                .connect(addr)
                .unwrap(),
        ),
    ];
    // the password from the file worked: connected and listening
    wait_metric(metrics, "flagpost_postgres_connected", |v| v == 1);
    assert_eq!(
        sample(&scrape(metrics), "flagpost_postgres_connects_total"),
        Some(1)
    );
    Setup {
        cluster,
        _broker: broker,
        metrics,
        listeners,
    }
}

/// Sends `payload`, then a channel update to each channel listener expected
/// to get nothing (its fence), then a marker only the all-channels listener
/// hears, with a flag nothing before it raised for that listener (its
/// fence); checks that each listener got exactly what it should:
/// `expect[i]` for listener `i`, plus the fences that reach it. Returns how
/// many notifications it sent.
fn check(
    client: &mut postgres::Client,
    listeners: &[Listener; 3],
    payload: &str,
    expect: [FlagSet; 3],
) -> u64 {
    pg_notify(client, payload);
    let mut want = expect;
    // listener 0 hears every channel, so every fence too
    for (i, name) in [(1, "gsm1"), (2, "gsm2")] {
        if expect[i].is_empty() {
            pg_notify(client, &format!("channel-update:{name}"));
            want[i] = CU;
            want[0] |= CU;
        }
    }
    let (marker, flag) = [("non-status:zz", N), ("channel-shutdown:zz", CS)]
        .into_iter()
        .find(|(_, f)| !want[0].intersects(*f))
        .expect("a flag the case leaves alone");
    pg_notify(client, marker);
    want[0] |= flag;
    for (i, l) in listeners.iter().enumerate() {
        let (got, reconnect) = collect(l, want[i], payload);
        assert_eq!(got, want[i], "{payload:?}: listener {i}");
        assert!(!reconnect, "{payload:?}: listener {i} reconnected");
    }
    2 + expect[1..].iter().filter(|f| f.is_empty()).count() as u64
}

#[test]
fn payloads_rejections_and_a_database_restart() {
    let Setup {
        mut cluster,
        _broker,
        metrics,
        listeners,
    } = setup();
    let mut client = postgres::Client::connect(&cluster.url_with_password(), postgres::NoTls)
        .expect("the test's own client");

    // every kind, targeted or not, with and without a batch
    let cases: [(&str, [FlagSet; 3], u64); 7] = [
        ("status:gsm1;batch=5", [S | N, S | N, NONE], 5),
        ("non-status:gsm2", [N, NONE, N], 1),
        ("channel-update:gsm1", [CU, CU, NONE], 1),
        ("channel-shutdown:gsm2;batch=3", [CS, NONE, CS], 3),
        ("status", [S | N, S | N, S | N], 1),
        ("  non-status;batch=7\n", [N, N, N], 7),
        ("status:gsm3", [S | N, NONE, NONE], 1),
    ];
    let mut delivered = 0;
    let mut changes = 0;
    for (payload, expect, batch) in cases {
        let sent = check(&mut client, &listeners, payload, expect);
        delivered += sent;
        changes += batch + sent - 1;
    }
    // the batch counts reached the broker (flagpost_changes_total sums them)
    let text = scrape(metrics);
    assert_eq!(
        sample(&text, "flagpost_changes_total"),
        Some(changes),
        "{text}"
    );
    assert_eq!(
        sample(&text, "flagpost_postgres_delivered_total"),
        Some(delivered),
        "{text}"
    );
    assert_eq!(
        sample(&text, "flagpost_postgres_payloads_total"),
        Some(delivered),
        "{text}"
    );

    // rejected payloads: counted by reason, wake nobody
    let too_long = "status".to_owned() + &" ".repeat(300);
    let rejected: [(&str, &str); 10] = [
        ("", "empty"),
        (&too_long, "too_long"),
        ("wake-up", "unknown_kind"),
        ("channel-update", "missing_channel"),
        ("status: gsm1", "bad_channel"),
        ("status;batch=x", "bad_batch"),
        ("status;batch=0", "batch_zero"),
        ("status;batch=4294967296", "batch_overflow"),
        ("status;urgent", "trailing_garbage"),
        ("status:gsm1\u{1}", "bad_channel"),
    ];
    for (payload, _) in rejected {
        pg_notify(&mut client, payload);
    }
    // the fence: a channel update for both channels, and nothing else
    let sent = check(
        &mut client,
        &listeners,
        "channel-update:gsm1",
        [CU, CU, NONE],
    );
    let text = scrape(metrics);
    for (_, reason) in rejected {
        let want = rejected.iter().filter(|(_, r)| *r == reason).count() as u64;
        let name = format!("flagpost_postgres_rejected_total{{reason=\"{reason}\"}}");
        assert_eq!(sample(&text, &name), Some(want), "{name}\n{text}");
    }
    assert_eq!(
        sample(&text, "flagpost_postgres_payloads_total"),
        Some(delivered + sent + rejected.len() as u64),
        "{text}"
    );

    // PostgreSQL restarts: the source reconnects and raises a re-check on
    // every listener (status, non-status, channel update; never shutdown),
    // while their own connections to the broker never dropped
    drop(client);
    cluster.restart();
    for (i, l) in listeners.iter().enumerate() {
        let (got, reconnect) = collect(l, FlagSet::RECHECK, "the reconnect raise");
        assert_eq!(got, FlagSet::RECHECK, "listener {i}");
        assert!(!reconnect, "listener {i}: its own connection dropped");
    }
    wait_metric(metrics, "flagpost_postgres_connected", |v| v == 1);
    let text = scrape(metrics);
    assert_eq!(
        sample(&text, "flagpost_postgres_reconnects_total"),
        Some(1),
        "{text}"
    );
    assert_eq!(
        sample(&text, "flagpost_postgres_connects_total"),
        Some(2),
        "{text}"
    );
    // and notifications flow again
    let mut client = postgres::Client::connect(&cluster.url_with_password(), postgres::NoTls)
        .expect("the test's own client, after the restart");
    check(&mut client, &listeners, "status:gsm2", [S | N, NONE, S | N]);
}

#[test]
fn a_password_on_the_command_line_is_refused() {
    let out = run(&[
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--postgres",
        "postgres://flagpost:s3cr3t@127.0.0.1:1/postgres",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--postgres") && stderr.contains("password"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cr3t"), "the error repeats the password");
    assert!(out.stdout.is_empty(), "it must not start serving");
}

#[test]
fn a_password_file_others_may_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("fp-pgpw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("password");
    std::fs::write(&file, "secret\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(&[
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--postgres",
        "postgres://flagpost@127.0.0.1:1/postgres",
        "--postgres-password-file",
        file.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("chmod 600"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_broker_whose_database_is_down_serves_and_retries() {
    let metrics = free_port();
    let dead = format!("postgres://flagpost@127.0.0.1:{}/postgres", free_port());
    let broker = BrokerProcess::start(
        "127.0.0.1:0",
        &[
            "--metrics",
            &format!("127.0.0.1:{metrics}"),
            "--postgres",
            &dead,
        ],
    );
    let listener = ready(Listener::connect(broker.addr.as_str()).unwrap());
    Notifier::new(broker.addr.as_str())
        .unwrap()
        .notify_status_update(None);
    let (got, _) = collect(&listener, S | N, "a UDP notification");
    assert_eq!(got, S | N);
    // it keeps trying
    wait_metric(metrics, "flagpost_postgres_connect_failures_total", |v| {
        v >= 2
    });
    assert_eq!(
        sample(&scrape(metrics), "flagpost_postgres_connected"),
        Some(0)
    );
}

/// A `flagpost serve` child with its own environment; killed on drop.
struct Serve {
    child: std::process::Child,
    addr: String,
}

impl Serve {
    fn start(args: &[&str], env: &[(&str, &str)], remove: &[&str]) -> Serve {
        use std::io::BufRead;
        let mut command = std::process::Command::new(flagpost_tests::process::flagpost_bin());
        command
            .args(["serve", "--bind", "127.0.0.1:0"])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        for var in remove {
            command.env_remove(var);
        }
        for (var, value) in env {
            command.env(var, value);
        }
        let mut child = command.spawn().expect("start flagpost serve");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("serve did not start: {line:?}"))
            .to_owned();
        Serve { child, addr }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn tls_with_sslmode_require_and_the_password_from_pgpassword() {
    use std::os::unix::fs::PermissionsExt;
    let cluster = PgCluster::start();
    // the server's certificate: files the server (maybe the postgres user)
    // can read, the key for its owner only
    let dir = cluster.data_dir();
    flagpost_tests::tls::make_certificates(&dir);
    std::fs::set_permissions(
        dir.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let owner = std::process::Command::new("stat")
        .args(["-c", "%U:%G"])
        .arg(&dir)
        .output()
        .unwrap();
    let owner = String::from_utf8_lossy(&owner.stdout).trim().to_owned();
    let chown = std::process::Command::new("chown")
        .arg(&owner)
        .arg(dir.join("server.key"))
        .arg(dir.join("server.pem"))
        .status()
        .unwrap();
    assert!(chown.success());
    let mut client = postgres::Client::connect(&cluster.url_with_password(), postgres::NoTls)
        .expect("the test's own client");
    for sql in [
        "ALTER SYSTEM SET ssl_cert_file = 'server.pem'",
        "ALTER SYSTEM SET ssl_key_file = 'server.key'",
        "ALTER SYSTEM SET ssl = on",
        "SELECT pg_reload_conf()",
    ] {
        client.batch_execute(sql).expect(sql);
    }
    // the reload is asynchronous: wait until a new session sees it
    let deadline = Instant::now() + LONG;
    loop {
        let mut c = postgres::Client::connect(&cluster.url_with_password(), postgres::NoTls)
            .expect("a new session");
        let ssl: String = c.query_one("SHOW ssl", &[]).unwrap().get(0);
        if ssl == "on" {
            break;
        }
        assert!(Instant::now() < deadline, "ssl never turned on");
        std::thread::sleep(Duration::from_millis(20));
    }

    let url = format!("{}?sslmode=require", cluster.url());
    let ca = dir.join("ca.pem");
    let metrics = free_port();
    let metrics_addr = format!("127.0.0.1:{metrics}");
    let broker = Serve::start(
        &["--metrics", &metrics_addr, "--postgres", &url],
        &[
            ("PGPASSWORD", cluster.password.as_str()),
            ("SSL_CERT_FILE", ca.to_str().unwrap()),
        ],
        &["SSL_CERT_DIR"],
    );
    wait_metric(metrics, "flagpost_postgres_connected", |v| v == 1);
    let ssl: bool = client
        .query_one(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = 'flagpost'",
            &[],
        )
        .expect("the broker's session")
        .get(0);
    assert!(ssl, "the broker's session is not TLS");
    let listener = ready(Listener::connect(broker.addr.as_str()).unwrap());
    pg_notify(&mut client, "channel-update:gsm1");
    let (got, _) = collect(&listener, CU, "a notification over TLS");
    assert_eq!(got, CU);

    // without the test CA among its roots, the broker refuses the server
    let metrics = free_port();
    let metrics_addr = format!("127.0.0.1:{metrics}");
    let _untrusting = Serve::start(
        &["--metrics", &metrics_addr, "--postgres", &url],
        &[("PGPASSWORD", cluster.password.as_str())],
        &["SSL_CERT_FILE", "SSL_CERT_DIR"],
    );
    wait_metric(metrics, "flagpost_postgres_connect_failures_total", |v| {
        v >= 1
    });
    assert_eq!(
        sample(&scrape(metrics), "flagpost_postgres_connected"),
        Some(0)
    );
}
