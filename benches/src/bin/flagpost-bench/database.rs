//! `flagpost-bench database`: the seed's two promises measured on a real
//! PostgreSQL — a committed INSERT to the reference service starting
//! *check triggers* (immediate processing), and the service's queries per
//! minute (fewer database queries) — with Flagpost (the PostgreSQL trigger
//! path, and `Notifier` after commit) beside polling alone.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flagpost_benches::Latency;
use flagpost_core::ChannelId;
use flagpost_service::{run, Cause, Database, ServiceConfig, Stop, Task};
use flagpost_std::{Broker, BrokerConfig, BrokerHandle, Notifier};
use flagpost_tests::postgres::PgCluster;

/// The schema and its triggers, as shipped.
const SQL: &str = include_str!("../../../../sql/postgres/flagpost.sql");
/// How long a sample waits for *check triggers* before it counts as lost.
const GIVE_UP: Duration = Duration::from_secs(5);

/// How the service learns of a new row.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// The statement trigger's NOTIFY, through the broker's PostgreSQL
    /// source.
    Trigger,
    /// The writer's `Notifier::notify_status_update` after its commit.
    NotifyAfterCommit,
    /// The writer runs `flagpost notify status --channel …` after its
    /// commit (a script's way: a process per notification).
    CommandAfterCommit,
    /// No notification: the service polls on this interval.
    Poll(Duration),
}

impl Mode {
    fn name(self) -> String {
        match self {
            Mode::Trigger => "Flagpost, PostgreSQL trigger → broker".into(),
            Mode::NotifyAfterCommit => "Flagpost, Notifier after commit".into(),
            Mode::CommandAfterCommit => "Flagpost, `flagpost notify` after commit".into(),
            Mode::Poll(d) => format!("polling alone every {} ms", d.as_millis()),
        }
    }
}

/// The cluster, the broker (its PostgreSQL source on or off) and the
/// service, for one mode.
struct Rig {
    _broker: Option<BrokerHandle>,
    notifier: Option<Notifier>,
    /// `flagpost notify … --broker ADDR` (CommandAfterCommit).
    command: Option<std::process::Command>,
    stop: Stop,
    service: Option<std::thread::JoinHandle<()>>,
    counters: Arc<flagpost_service::Counters>,
    /// Every *check triggers* start (ns since `epoch`).
    starts: Arc<Mutex<Vec<u64>>>,
}

fn ns_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_nanos() as u64
}

impl Rig {
    fn start(cluster: &PgCluster, mode: Mode, interval: Duration, epoch: Instant) -> Rig {
        let mut admin = admin(cluster);
        let switch = if mode == Mode::Trigger {
            "ENABLE"
        } else {
            "DISABLE"
        };
        admin
            .batch_execute(&format!(
                "TRUNCATE messages, message_actions; ALTER TABLE messages {switch} TRIGGER USER"
            ))
            .expect("reset");
        let broker = match mode {
            Mode::Poll(_) => None,
            _ => {
                let mut config = BrokerConfig {
                    bind: vec!["127.0.0.1:0".parse().expect("addr")],
                    ..BrokerConfig::default()
                };
                if mode == Mode::Trigger {
                    config.postgres = Some(cluster.url());
                    config.postgres_password_file = Some(cluster.password_file());
                }
                Some(Broker::spawn(config).expect("broker"))
            }
        };
        let notifier = match (&broker, mode) {
            (Some(b), Mode::NotifyAfterCommit) => {
                Some(Notifier::new(b.local_addr()).expect("notifier"))
            }
            _ => None,
        };
        let command = match (&broker, mode) {
            (Some(b), Mode::CommandAfterCommit) => {
                let mut c = std::process::Command::new(flagpost_bin());
                c.args(["notify", "status", "--channel", "bench", "--broker"])
                    .arg(b.local_addr().to_string())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null());
                Some(c)
            }
            _ => None,
        };
        let mut config = ServiceConfig::new(Database::Postgres {
            url: cluster.url(),
            password: Some(cluster.password.clone()),
        });
        config.broker = broker.as_ref().map(|b| b.local_addr().to_string());
        config.check_triggers_interval = interval;
        config.check_outgoing_interval = interval;
        let starts = Arc::new(Mutex::new(Vec::new()));
        let s = starts.clone();
        config.on_check_triggers = Some(Box::new(move |_| {
            s.lock().expect("starts").push(ns_since(epoch));
        }));
        let counters = config.counters.clone();
        let stop = Stop::new();
        let stopper = stop.clone();
        let service = std::thread::Builder::new()
            .name("service".into())
            .spawn(move || run(config, &stopper).expect("service"))
            .expect("thread");
        let rig = Rig {
            _broker: broker,
            notifier,
            command,
            stop,
            service: Some(service),
            counters,
            starts,
        };
        // start-up: both tasks once, and the broker's connection (and its
        // PostgreSQL source) up before anything is measured
        let deadline = Instant::now() + Duration::from_secs(20);
        while rig.counters.runs(Task::CheckTriggers, Cause::Startup) == 0
            || (rig._broker.is_some() && !rig.counters.broker_connected())
        {
            assert!(Instant::now() < deadline, "service not up after 20 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        if mode == Mode::Trigger {
            wait_for_source(&mut admin, &rig, epoch);
        }
        rig
    }

    /// The first *check triggers* start at or after `from` (ns), waiting
    /// for it until `give_up`.
    fn start_after(&self, from: u64, give_up: Duration) -> Option<u64> {
        let deadline = Instant::now() + give_up;
        loop {
            if let Some(&t) = self
                .starts
                .lock()
                .expect("starts")
                .iter()
                .find(|&&t| t >= from)
            {
                return Some(t);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::yield_now();
        }
    }

    fn queries(&self, cause: Cause) -> u64 {
        Task::ALL
            .iter()
            .map(|&t| self.counters.queries(t, cause))
            .sum()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(t) = self.service.take() {
            let _ = t.join();
        }
    }
}

/// The `flagpost` binary beside this one (`cargo build -p flagpost-std
/// --bins` in the same profile).
fn flagpost_bin() -> std::path::PathBuf {
    let bin = std::env::current_exe()
        .expect("own path")
        .with_file_name("flagpost");
    assert!(
        bin.exists(),
        "{} is missing: cargo build -p flagpost-std --bins (same profile)",
        bin.display()
    );
    bin
}

fn admin(cluster: &PgCluster) -> postgres::Client {
    postgres::Client::connect(&cluster.url_with_password(), postgres::NoTls).expect("connect")
}

/// The broker's `LISTEN` is in place once a notification sent now wakes
/// the service.
fn wait_for_source(admin: &mut postgres::Client, rig: &Rig, epoch: Instant) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let from = ns_since(epoch);
        admin
            .batch_execute("SELECT pg_notify('flagpost', 'status')")
            .expect("notify");
        if rig.start_after(from, Duration::from_millis(500)).is_some() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the broker's PostgreSQL source is not up after 20 s"
        );
    }
}

/// Committed INSERT → *check triggers* starts, `samples` times, a random
/// 5–25 ms apart (and, when polling, a random phase of the interval).
fn latency(cluster: &PgCluster, mode: Mode, samples: u32) -> (Latency, Latency, u32, u32) {
    let epoch = Instant::now();
    let interval = match mode {
        Mode::Poll(d) => d,
        _ => Duration::ZERO,
    };
    let mut rig = Rig::start(cluster, mode, interval, epoch);
    let mut writer = admin(cluster);
    let insert = writer
        .prepare("INSERT INTO messages (channel, status_id, body) VALUES ('bench', 1, 'x')")
        .expect("prepare");
    let channel = ChannelId::new("bench").ok();
    let (mut after, mut round_trips, mut early, mut lost) = (Vec::new(), Vec::new(), 0, 0);
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..samples {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let gap = 5_000 + rng % 20_000 + interval.as_micros() as u64 * (rng % 1000) / 1000;
        std::thread::sleep(Duration::from_micros(gap));
        let sent = ns_since(epoch);
        writer.execute(&insert, &[]).expect("insert");
        let committed = ns_since(epoch);
        if let Some(n) = &rig.notifier {
            n.notify_status_update(channel);
        }
        let child = rig
            .command
            .as_mut()
            .map(|c| c.spawn().expect("flagpost notify"));
        round_trips.push(committed - sent);
        match rig.start_after(sent, interval + GIVE_UP) {
            Some(t) if t < committed => {
                early += 1;
                after.push(1);
            }
            Some(t) => after.push(t - committed),
            None => lost += 1,
        }
        if let Some(mut c) = child {
            assert!(c.wait().expect("flagpost notify").success());
        }
    }
    (
        Latency::from_ns(after),
        Latency::from_ns(round_trips),
        early,
        lost,
    )
}

/// Queries per minute over `secs` seconds at `rate` inserts per second
/// (0: none), by cause: notification, interval, own write, and the rest
/// (reconnect, retry; start-up is before the measured time).
fn queries_per_minute(
    cluster: &PgCluster,
    mode: Mode,
    interval: Duration,
    rate: u32,
    secs: f64,
) -> [f64; 4] {
    let epoch = Instant::now();
    let rig = Rig::start(cluster, mode, interval, epoch);
    let mut writer = admin(cluster);
    let channel = ChannelId::new("bench").ok();
    let by_cause = |rig: &Rig| {
        [
            rig.queries(Cause::Notification),
            rig.queries(Cause::Interval),
            rig.queries(Cause::OwnWrite),
            rig.queries(Cause::Reconnect) + rig.queries(Cause::Retry),
        ]
    };
    let before = by_cause(&rig);
    let start = Instant::now();
    let run_for = Duration::from_secs_f64(secs);
    let mut next = start;
    while start.elapsed() < run_for {
        if rate == 0 {
            std::thread::sleep(run_for.saturating_sub(start.elapsed()));
            break;
        }
        next += Duration::from_secs(1) / rate;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        writer
            .execute(
                "INSERT INTO messages (channel, status_id, body) VALUES ('bench', 1, 'x')",
                &[],
            )
            .expect("insert");
        if let Some(n) = &rig.notifier {
            n.notify_status_update(channel);
        }
    }
    let minutes = start.elapsed().as_secs_f64() / 60.0;
    let after = by_cause(&rig);
    [0, 1, 2, 3].map(|i| (after[i] - before[i]) as f64 / minutes)
}

/// The scenario: latency rows, then queries per minute.
pub(crate) fn database(samples: u32, poll_samples: u32, secs: f64) {
    println!("\ndatabase: a throwaway PostgreSQL cluster (fsync off), sql/postgres/flagpost.sql, flagpost-service on it");
    let cluster = PgCluster::start();
    admin(&cluster).batch_execute(SQL).expect("schema");
    // the service's own table (`message_actions`), made as it connects
    flagpost_service::PostgresStore::connect(&cluster.url(), Some(&cluster.password))
        .expect("the service's tables");
    println!("committed INSERT → check triggers starts (µs; from the commit's return; `early`: started before the writer saw its commit return, counted as 0)");
    println!(
        "{:<42} {:>8} {:>8} {:>8} {:>7} {:>6} {:>14}",
        "mode", "samples", "p50", "p99", "early", "lost", "commit RTT p50"
    );
    for mode in [
        Mode::Trigger,
        Mode::NotifyAfterCommit,
        Mode::CommandAfterCommit,
        Mode::Poll(Duration::from_millis(100)),
        Mode::Poll(Duration::from_secs(1)),
    ] {
        let n = if matches!(mode, Mode::Poll(_)) {
            poll_samples
        } else {
            samples
        };
        let (l, rtt, early, lost) = latency(&cluster, mode, n);
        println!(
            "{:<42} {:>8} {:>8.0} {:>8.0} {:>7} {:>6} {:>14.0}",
            mode.name(),
            n,
            l.p50_us,
            l.p99_us,
            early,
            lost,
            rtt.p50_us
        );
    }
    println!("queries per minute over {secs} s (the service's own counters; by cause: notification / interval / own write / reconnect+retry)");
    println!(
        "{:<58} {:>10} {:>24} {:>24}",
        "mode", "inserts/s", "queries/min", "notif./interval/own/other"
    );
    let one = Duration::from_secs(1);
    for (mode, interval) in [
        (Mode::Trigger, Duration::ZERO),
        (Mode::Trigger, one),
        (Mode::NotifyAfterCommit, Duration::ZERO),
        (Mode::Poll(one), one),
        (
            Mode::Poll(Duration::from_millis(100)),
            Duration::from_millis(100),
        ),
    ] {
        for rate in [10, 0] {
            let q = queries_per_minute(&cluster, mode, interval, rate, secs);
            let label = match mode {
                Mode::Poll(_) => mode.name(),
                _ => format!("{}, intervals {} s", mode.name(), interval.as_secs()),
            };
            println!(
                "{:<58} {:>10} {:>24.0} {:>24}",
                label,
                rate,
                q.iter().sum::<f64>(),
                format!("{:.0}/{:.0}/{:.0}/{:.0}", q[0], q[1], q[2], q[3])
            );
        }
    }
}
