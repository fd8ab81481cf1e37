//! The measurements of one system: its wake latency interleaved with the
//! others' ([`wake_all`]), its publish throughput with 1 and 100
//! subscribers ([`throughput`]) and its idle memory per subscriber
//! ([`idle_memory`]), gathered into [`Figures`].

use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use crate::clock::now_ns;
use crate::farm::proc_sample;
use crate::report::{SystemFigures, Throughput};
use crate::Measured;

use super::publisher::Publisher;
use super::server::{children_of, pss_kib, Server};
use super::subscriber::Subscribers;
use super::{
    Measure, Sizes, System, BATCH, FANOUT_SUBSCRIBERS, REPORT_EVERY, STALL_TIMEOUT, WAKE_BLOCK,
    WARM_UP, WINDOW,
};

/// All figures of one system; a figure that failed holds why. (A
/// throughput run is `stalled` when no delivery report came for
/// [`STALL_TIMEOUT`].)
pub(super) struct Figures {
    pub(super) system: System,
    pub(super) version: String,
    pub(super) wake: Result<Measured, String>,
    pub(super) throughput: Vec<Result<Throughput, String>>,
    pub(super) idle_bytes: Result<f64, String>,
}

impl Figures {
    /// The report's copy of these figures.
    pub(super) fn into_report(self) -> SystemFigures {
        SystemFigures {
            system: self.system.label().to_owned(),
            flagpost: self.system == System::Flagpost,
            version: self.version,
            wake: self.wake,
            throughput: self.throughput,
            idle_bytes: self.idle_bytes,
        }
    }
}

fn report_socket() -> Result<(UdpSocket, SocketAddr), String> {
    crate::report_socket().map_err(|e| e.to_string())
}

/// Runs `f`, turning a panic (a failed publish mid-measurement) into an
/// error; whatever it started is dropped, so stopped, on the way out.
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(|e| format!("{what}: {e}")),
        Err(p) => Err(format!(
            "{what}: {}",
            p.downcast_ref::<String>()
                .map(String::as_str)
                .or(p.downcast_ref::<&str>().copied())
                .unwrap_or("panicked")
        )),
    }
}

/// Server memory per subscriber once `n` idle subscribers are subscribed.
fn idle_memory(server: &Server, n: usize) -> Result<f64, String> {
    let (_report, report_addr) = report_socket()?;
    let before_children: HashSet<u32> = children_of(server.child.id()).into_iter().collect();
    let before_rss = server.rss_kib();
    let subs = Subscribers::spawn(server.system, server.addr, n, report_addr)?;
    // let the server finish what the connections started (backends settle)
    std::thread::sleep(Duration::from_millis(500));
    let mut kib = server.rss_kib().saturating_sub(before_rss);
    if server.system == System::Postgres {
        let forked: Vec<u32> = children_of(server.child.id())
            .into_iter()
            .filter(|p| !before_children.contains(p))
            .collect();
        if forked.len() < n {
            return Err(format!("{} backends for {n} subscribers", forked.len()));
        }
        kib += forked.into_iter().map(pss_kib).sum::<u64>();
    }
    drop(subs);
    Ok((kib * 1024) as f64 / n as f64)
}

/// Wake latency through `server` to a subscriber in another process.
/// One system's wake-latency rig: its server, a publisher and one
/// subscriber process reporting to `report`.
pub(super) struct WakeRig {
    system: System,
    publisher: Publisher,
    subs: Subscribers,
    report: UdpSocket,
    measured: Option<Measured>,
    failed: Option<String>,
    /// Last: fields drop in order, and a server stopped before its
    /// subscriber process made the subscriber report the lost connection.
    _server: Server,
}

impl WakeRig {
    pub(super) fn start(system: System) -> Result<WakeRig, String> {
        let server = Server::start(system, 200)?;
        let publisher = Publisher::connect(system, server.addr)?;
        let (report, report_addr) = report_socket()?;
        let mut subs = Subscribers::spawn(system, server.addr, 1, report_addr)?;
        subs.query("wake")?;
        Ok(WakeRig {
            system,
            _server: server,
            publisher,
            subs,
            report,
            measured: None,
            failed: None,
        })
    }

    /// `n` samples (warm-up when `keep` is false); a failure retires the rig.
    pub(super) fn block(&mut self, n: u32, keep: bool, measure: Measure<'_>) {
        if self.failed.is_some() {
            return;
        }
        let (publisher, subs) = (&mut self.publisher, &mut self.subs);
        let report = &self.report;
        let got = guarded("wake", || {
            let mut trigger = |i: u32| {
                if let Err(e) = publisher.publish_one() {
                    panic!("{e}");
                }
                // a dead subscriber would make every remaining sample time out
                if i % 100 == 99 && !subs.alive() {
                    panic!("the subscriber process exited");
                }
            };
            Ok(measure(n, report, &mut trigger))
        });
        match got {
            Ok(m) if keep => match &mut self.measured {
                Some(all) => all.merge(m),
                None => self.measured = Some(m),
            },
            Ok(_) => {}
            Err(e) => self.failed = Some(e),
        }
    }
}

impl WakeRig {
    /// The server's address.
    pub(super) fn server_addr(&self) -> std::net::SocketAddr {
        self._server.addr
    }

    /// What the kept blocks measured so far, or why it failed.
    pub(super) fn result(&self) -> Result<Measured, String> {
        match (&self.failed, &self.measured) {
            (Some(e), _) => Err(format!("{}: {e}", self.system.label())),
            (None, Some(m)) => Ok(m.clone()),
            (None, None) => Err("no sample".into()),
        }
    }
}

/// The wake latency of every system, measured interleaved: all servers run
/// at once (idle but for the one being sampled), and the systems take turns
/// in blocks of [`WAKE_BLOCK`] samples, so that every system sees the same
/// state of a shared machine rather than one after the other.
pub(super) fn wake_all(
    systems: &[System],
    samples: u32,
    measure: Measure<'_>,
) -> Vec<Result<Measured, String>> {
    let mut rigs: Vec<Result<WakeRig, String>> = systems
        .iter()
        .map(|&system| {
            eprintln!("peers: {} (wake latency) …", system.label());
            guarded("wake", || WakeRig::start(system))
        })
        .collect();
    for rig in rigs.iter_mut().flatten() {
        rig.block(WARM_UP, false, measure);
    }
    let mut done = 0;
    while done < samples {
        let n = WAKE_BLOCK.min(samples - done);
        for rig in rigs.iter_mut().flatten() {
            rig.block(n, true, measure);
        }
        done += n;
    }
    rigs.into_iter().map(|rig| rig?.result()).collect()
}

/// Reads delivery reports for up to `timeout`; the largest count seen.
fn read_reports(report: &UdpSocket, timeout: Option<Duration>) -> Option<u64> {
    let mut buf = [0u8; 16];
    let mut best = None;
    match timeout {
        Some(t) => {
            let _ = report.set_nonblocking(false);
            let _ = report.set_read_timeout(Some(t));
            if let Ok(16) = report.recv(&mut buf) {
                best = Some(u64::from_be_bytes(buf[..8].try_into().unwrap_or_default()));
            }
        }
        None => {
            let _ = report.set_nonblocking(true);
            // bounded: a full receive buffer holds a few thousand
            for _ in 0..100_000 {
                match report.recv(&mut buf) {
                    Ok(16) => {
                        let v = u64::from_be_bytes(buf[..8].try_into().unwrap_or_default());
                        best = best.max(Some(v));
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
    }
    best
}

/// Publish throughput through `server` with `n` subscribers.
fn throughput(
    server: &mut Server,
    publisher: &mut Publisher,
    n: usize,
    secs: f64,
) -> Result<Throughput, String> {
    let flagpost = server.system == System::Flagpost;
    let (report, report_addr) = report_socket()?;
    let mut subs = Subscribers::spawn(server.system, server.addr, n, report_addr)?;
    let nsubs = n as u64;
    let (c0, _) = subs.counts(&format!("count {}", REPORT_EVERY * nsubs))?;
    let d0 = if flagpost { server.datagrams()? } else { 0 };
    let cpu0 = server.cpu_s();
    let sub_cpu = |s: &Subscribers| proc_sample(s.child.id()).map_or(0.0, |p| p.cpu_s);
    let sub_cpu0 = sub_cpu(&subs);
    let t0 = now_ns();
    let started = Instant::now();
    let mut published = 0u64;
    let mut delivered = c0; // the subscribers' running count
    let mut stalled = false;
    'run: while started.elapsed().as_secs_f64() < secs {
        if !flagpost {
            if let Some(v) = read_reports(&report, None) {
                delivered = delivered.max(v);
            }
            // at most WINDOW publishes not yet delivered to everyone
            while published + BATCH > (delivered - c0) / nsubs + WINDOW {
                match read_reports(&report, Some(STALL_TIMEOUT)) {
                    Some(v) => delivered = delivered.max(v),
                    None => {
                        stalled = true;
                        break 'run;
                    }
                }
            }
        }
        publisher.publish_batch()?;
        published += BATCH;
    }
    let blast_end = now_ns();
    if flagpost {
        // as `ingest`: what the broker handled while the sender ran
        let datagrams = server.datagrams()? - d0;
        let cpu = server.cpu_s() - cpu0;
        let sub_cpu = sub_cpu(&subs) - sub_cpu0;
        let (c1, _) = subs.counts("total")?;
        let elapsed = (blast_end - t0) as f64 / 1e9;
        return Ok(Throughput {
            subscribers: n,
            publishes_per_s: datagrams as f64 / elapsed,
            deliveries_per_s: (c1 - c0) as f64 / elapsed,
            cpu_s_per_million: cpu / datagrams.max(1) as f64 * 1e6,
            sub_cpu_s_per_million: sub_cpu / datagrams.max(1) as f64 * 1e6,
            lost: 0,
            stalled: false,
        });
    }
    // wait for the last deliveries: until all arrived, or 2 s without any
    let expected = published * nsubs;
    let (mut total, mut last) = subs.counts("total")?;
    let mut progress = Instant::now();
    let drain_deadline = Instant::now() + Duration::from_secs(30);
    while total - c0 < expected
        && progress.elapsed() < Duration::from_secs(2)
        && Instant::now() < drain_deadline
    {
        std::thread::sleep(Duration::from_millis(5));
        let (t, l) = subs.counts("total")?;
        if t > total {
            progress = Instant::now();
        }
        (total, last) = (t, l);
    }
    let cpu = server.cpu_s() - cpu0;
    let sub_cpu = sub_cpu(&subs) - sub_cpu0;
    let deliveries = total - c0;
    let elapsed = (last.max(blast_end) - t0) as f64 / 1e9;
    let publishes = deliveries as f64 / nsubs as f64;
    Ok(Throughput {
        subscribers: n,
        publishes_per_s: publishes / elapsed,
        deliveries_per_s: deliveries as f64 / elapsed,
        cpu_s_per_million: cpu / published.max(1) as f64 * 1e6,
        sub_cpu_s_per_million: sub_cpu / published.max(1) as f64 * 1e6,
        lost: expected.saturating_sub(deliveries),
        stalled,
    })
}

/// Every figure of one system, on one fresh server instance: idle memory
/// first (on the fresh server), then wake latency, then throughput.
pub(super) fn measure_system(
    system: System,
    sizes: &Sizes,
    wake: Result<Measured, String>,
) -> Figures {
    let mut figures = Figures {
        system,
        version: system.version(),
        wake,
        throughput: Vec::new(),
        idle_bytes: Err("not measured".into()),
    };
    eprintln!("peers: {} …", system.label());
    let mut server = match Server::start(system, sizes.idle + 200) {
        Ok(s) => s,
        Err(e) => {
            figures.idle_bytes = Err(e);
            return figures;
        }
    };
    figures.idle_bytes = guarded("idle memory", || idle_memory(&server, sizes.idle));
    let mut publisher = match Publisher::connect(system, server.addr) {
        Ok(p) => p,
        Err(e) => {
            figures.throughput.push(Err(e));
            return figures;
        }
    };
    for n in [1, FANOUT_SUBSCRIBERS] {
        figures.throughput.push(guarded("throughput", || {
            throughput(&mut server, &mut publisher, n, sizes.secs)
        }));
    }
    drop(publisher);
    drop(server);
    figures
}
