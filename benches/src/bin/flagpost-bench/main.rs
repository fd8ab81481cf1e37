//! `flagpost-bench`: end-to-end figures on loopback, each beside its
//! physical floor measured in the same run.
//!
//! ```text
//! flagpost-bench all [--quick]         every figure below
//! flagpost-bench wake [--quick] [--samples N]
//! flagpost-bench ingest [--quick] [--seconds S]
//! flagpost-bench fanout [--quick] [--rounds R]   fan-out to 1, 100, 1,000, 10,000, 19,000 listeners
//!                                      (--quick: 1 and 100), and memory
//! flagpost-bench idle [--quick] [--seconds S]    1,000 idle listeners (--quick: 100)
//! flagpost-bench hotloop [--quick] [--rounds R] [--calls C]
//! flagpost-bench flood [--quick] [--samples N]
//! flagpost-bench scale [--quick] [--part ingest|quiet|stuck] [--sizes N,N,…] [--seconds S]
//!                      [--flood-listeners N] [--samples N] [--stuck-listeners K]
//!                                      thousands of listeners: ingest, a quiet channel
//!                                      under flood, stuck listeners (see `scale`)
//! flagpost-bench peers [--quick] [--samples N] [--seconds S] [--idle N]
//!                                      Redis, PostgreSQL, mosquitto, NATS beside Flagpost
//! flagpost-bench database [--quick] [--samples N] [--poll-samples N] [--seconds S]
//!                                      committed INSERT → the reference service's check
//!                                      triggers, and its queries per minute, on PostgreSQL
//! flagpost-bench sse [--quick] [--clients N] [--rounds R]
//!                                      N SSE clients of /events (--quick: 10) beside a
//!                                      TCP listener: RSS per client, wake latency (not
//!                                      in `all` or the written report yet)
//! flagpost-bench federation [--quick] [--samples N] [--messages M] [--seconds S]
//!                                      two brokers joined through nats-server: cross-broker
//!                                      wake latency beside one broker and beside NATS
//!                                      alone, federated ingest (not in `all` either)
//!
//! `--quick` gives each the smoke sizes of `all --quick` (CI runs every
//! scenario so, without `--write`). Any of them, after its arguments:
//!   --write FILE       put the report (tables, machine, criterion medians, chart
//!                      links) between FILE's generated-section markers
//!   --charts DIR       PNG charts into DIR (default: benches/charts beside FILE)
//!   --criterion DIR    criterion results to include (default: target/criterion)
//! ```
//!
//! `flagpost-bench all --write BENCHMARKS.md` regenerates the generated
//! section of `BENCHMARKS.md` (see `flagpost_benches::report`); the text
//! outside its markers is kept byte for byte.
//!
//! *wake*: one notification at a time (nothing queues), from this process
//! to a listener in another process, through a broker in a third; the
//! listener stamps the moment `wait` returns with `CLOCK_MONOTONIC` and
//! reports it. The floor is a bare relay: process A sends a datagram to B,
//! B writes 8 bytes over TCP to C, C is blocked in `read`.
//!
//! *peers*: the same figures for the systems users compare Flagpost with,
//! each server started here on its own loopback port (see
//! `flagpost_benches::peers`; `benches/peers.sh` installs the servers).
//! `all` includes them when at least one is installed.
//!
//! Every participant is this same binary re-executed in a child mode, so
//! nothing else needs building. Children bind loopback only and exit when
//! their parent closes their stdin.
//!
//! This file owns the command line, the report output and the plumbing
//! every scenario shares (a child process as a `Participant`, the bare
//! `Relay`, reading the children's reports). Each scenario is a module of
//! its own: `wake`, `ingest`, `fanout`, `idle`, `hotloop` (with the
//! coalescing floor's sender in `coalescer`), `flood`, `scale` and
//! `database`; the child
//! modes are in `children`, the shared latency measurement in `measure`.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use flagpost_benches::farm::{proc_sample, raise_fd_limit, ProcSample};
use flagpost_benches::report::{self, Charts, Report};

mod children;
mod coalescer;
mod database;
mod fanout;
mod federation;
mod flood;
mod hotloop;
mod idle;
mod ingest;
mod measure;
mod scale;
mod sse;
mod wake;

use children::{
    child_broker, child_fanout_server, child_farm, child_flood_relay_b, child_idle_server,
    child_listener, child_relay_b, child_relay_c, child_udp_sink,
};
use fanout::fanout;
use flood::flood;
use hotloop::hotloop;
use idle::idle;
// `send_notify` and the `measure` items are also `scale`'s, as `crate::…`
use ingest::{ingest, send_notify};
use measure::{add_quantiles, measure, report_socket, P99};
use wake::wake;

/// The notifier's sending policy, which the bare merging sender copies.
const HOST: flagpost_core::notifier::NotifierConfig = flagpost_core::notifier::NotifierConfig::HOST;

const REPORT_TIMEOUT: Duration = Duration::from_secs(2);
/// Samples measured and discarded before each wake-latency path (as the
/// peers' measurement does): connection set-up, first-touch page faults
/// and cold caches stay out of the tail.
const WARM_UP: u32 = 100;
/// Open files each participant may need: 19,000 connections and change
/// (below the hard limit of 20,000 this is developed with).
const FD_NEEDED: u64 = 19_240;

/// A child process in one of the modes below; killed on drop. Lines
/// written to its stdin are queries; it answers each with one line.
struct Participant {
    child: Child,
    addr: SocketAddr,
    stdin: std::process::ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Participant {
    fn spawn(mode: &str, args: &[String]) -> Participant {
        let mut child = Command::new(std::env::current_exe().expect("own path"))
            .arg(mode)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn a participant");
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        stdout
            .read_line(&mut line)
            .expect("participant announces itself");
        let addr = line
            .trim()
            .strip_prefix("ready ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{mode}: bad announcement {line:?}"));
        let stdin = child.stdin.take().expect("stdin");
        Participant {
            child,
            addr,
            stdin,
            stdout,
        }
    }

    fn query(&mut self, q: &str) -> String {
        writeln!(self.stdin, "{q}").expect("query");
        self.stdin.flush().expect("flush");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("answer");
        line.trim().to_owned()
    }

    /// CPU time of all the child's threads so far, in ns (schedstat).
    fn cpu_ns(&self) -> u64 {
        schedstat_ns(self.child.id(), None)
    }

    fn sample(&self) -> ProcSample {
        proc_sample(self.child.id()).expect("/proc")
    }
}

impl Drop for Participant {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bare relay, the floor of the wake path: A (this process) sends a
/// datagram to B, B writes 8 bytes over TCP to C, C reports its wake on
/// `sock`. `b_mode` picks B's flavour (`_relay_b`, `_flood_relay_b`).
struct Relay {
    sock: UdpSocket,
    a: UdpSocket,
    b: Participant,
    c: Participant,
}

impl Relay {
    fn spawn(b_mode: &str) -> Relay {
        let (sock, report_addr) = report_socket();
        let c = Participant::spawn("_relay_c", std::slice::from_ref(&report_addr));
        let b = Participant::spawn(b_mode, &[c.addr.to_string()]);
        let a = UdpSocket::bind(loopback()).expect("bind A");
        Relay { sock, a, b, c }
    }

    /// A sends `bytes` to B.
    fn send(&self, bytes: &[u8]) {
        let _ = self.a.send_to(bytes, self.b.addr);
    }
}

/// How long without a report ends a round's reports.
const REPORTS_QUIET: Duration = Duration::from_millis(50);

/// Reads `sock` until [`REPORTS_QUIET`] passes without a report: the
/// reports of the previous round, before a new one starts.
fn quiet(sock: &UdpSocket) {
    let mut buf = [0u8; 16];
    sock.set_read_timeout(Some(REPORTS_QUIET)).expect("timeout");
    while sock.recv(&mut buf).is_ok() {}
}

/// How long the reader of a round's reports stays off the CPUs before it
/// reads them. A round queues a report per wake (hundreds); reading them
/// takes a CPU for ~0.4 ms, and a broker or listener woken onto that CPU
/// waited behind the reader (ftrace, `sched_switch`: up to 3.2 ms). Reading
/// after the round keeps the bench's own work off the path it measures.
const SETTLE: Duration = Duration::from_millis(50);

/// The latest wake time (ns) among the reports on `sock`, read after
/// [`SETTLE`] until [`REPORTS_QUIET`] passes without one; `None` if none
/// came.
fn last_report(sock: &UdpSocket) -> Option<u64> {
    std::thread::sleep(SETTLE);
    let mut buf = [0u8; 16];
    sock.set_read_timeout(Some(REPORTS_QUIET)).expect("timeout");
    let mut last = None;
    while let Ok(8) = sock.recv(&mut buf) {
        let at = u64::from_be_bytes(buf[..8].try_into().expect("8 bytes"));
        last = last.max(Some(at));
    }
    last
}

/// CPU time in ns that the kernel accounted to the threads of process
/// `pid` (`/proc/<pid>/task/*/schedstat`, first field) — only to the thread
/// named `thread` if given. 0 where unreadable.
fn schedstat_ns(pid: u32, thread: Option<&str>) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| {
            thread.is_none_or(|name| {
                std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name)
            })
        })
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Raises this process's soft open-file limit to [`FD_NEEDED`]. Where the
/// hard limit is lower, raises it that far and says so: runs that open
/// fewer connections (the smoke sizes) still fit.
fn raise_fds(who: &str) {
    if let Err(e) = raise_fd_limit(FD_NEEDED) {
        use nix::sys::resource::{getrlimit, setrlimit, Resource};
        if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
        eprintln!("note: {who}: {e}; enough for smaller runs");
    }
}

fn announce(addr: SocketAddr) {
    println!("ready {addr}");
    let _ = std::io::stdout().flush();
}

/// Answers the parent's queries (one line each) and exits when the parent
/// goes away (its end of our stdin closes).
fn serve_queries(mut answer: impl FnMut(&str) -> String + Send + 'static) {
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(q) = line else { break };
            println!("{}", answer(q.trim()));
            let _ = std::io::stdout().flush();
        }
        std::process::exit(0);
    });
}

fn exit_with_parent() {
    serve_queries(|_| String::new());
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().expect("literal")
}

/// The peers beside Flagpost, measured with the same `measure` as `wake`.
fn peers(sizes: &flagpost_benches::peers::Sizes, report: &mut Report) {
    flagpost_benches::peers::run(
        sizes,
        &|samples, socket, trigger| measure(samples, socket, trigger),
        report,
    );
}

fn usage() -> ! {
    eprintln!("usage: flagpost-bench all [--quick] | wake [--quick] [--samples N] | ingest [--quick] [--seconds S] | fanout [--quick] [--rounds R] | idle [--quick] [--seconds S] | hotloop [--quick] [--rounds R] [--calls C] | flood [--quick] [--samples N] | scale [--quick] [--part ingest|quiet|stuck] [--sizes N,N,…] [--seconds S] [--flood-listeners N] [--samples N] [--stuck-listeners K] | peers [--quick] [--samples N] [--seconds S] [--idle N] | database [--quick] [--samples N] [--poll-samples N] [--seconds S] | sse [--quick] [--clients N] [--rounds R] | federation [--quick] [--samples N] [--messages M] [--seconds S]");
    eprintln!("       each optionally followed by --write FILE [--charts DIR] [--criterion DIR]");
    std::process::exit(2)
}

fn flag_value<T: std::str::FromStr>(args: &[String], flag: &str, default: T) -> T {
    match args.iter().position(|a| a == flag) {
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| usage()),
        None => default,
    }
}

fn flag_path(args: &[String], flag: &str) -> Option<PathBuf> {
    args.iter().position(|a| a == flag).map(|i| {
        args.get(i + 1)
            .filter(|v| !v.starts_with("--"))
            .map(PathBuf::from)
            .unwrap_or_else(|| usage())
    })
}

/// Where the report goes: `--write FILE`, `--charts DIR`, `--criterion DIR`.
struct Output {
    write: Option<PathBuf>,
    charts: Option<PathBuf>,
    criterion: PathBuf,
}

impl Output {
    fn from_args(args: &[String]) -> Output {
        let criterion = flag_path(args, "--criterion").unwrap_or_else(|| {
            // target/<profile>/flagpost-bench → target/criterion
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .or_else(|| {
                    std::env::current_exe()
                        .ok()
                        .and_then(|exe| Some(exe.parent()?.parent()?.to_owned()))
                })
                .unwrap_or_else(|| PathBuf::from("target"));
            target.join("criterion")
        });
        Output {
            write: flag_path(args, "--write"),
            charts: flag_path(args, "--charts"),
            criterion,
        }
    }

    /// Draws the charts and writes the generated section, as asked.
    fn finish(&self, report: &Report, command: &str) -> Result<(), report::WriteError> {
        if self.write.is_none() && self.charts.is_none() {
            return Ok(());
        }
        let base = match &self.write {
            Some(file) => match file.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
                _ => PathBuf::from("."),
            },
            None => PathBuf::from("."),
        };
        let dir = self
            .charts
            .clone()
            .unwrap_or_else(|| base.join("benches").join("charts"));
        let charts = report::draw_charts(report, &dir, &base);
        match &charts {
            Charts::Skipped(why) => println!("\ncharts skipped: {why}"),
            Charts::Drawn { charts, failed } => {
                println!();
                for c in charts {
                    println!("chart: {} ({} bytes)", c.file.display(), c.bytes);
                }
                for f in failed {
                    println!("chart not drawn: {f}");
                }
            }
            Charts::NotRequested => {}
        }
        let Some(file) = &self.write else {
            return Ok(());
        };
        let micro = report::Micro::read(&self.criterion);
        let machine = report::Machine::describe(command);
        report::write_generated(
            file,
            &report.render_markdown(&machine, &micro, &charts),
            Some(&report.render_headline(&micro)),
        )?;
        println!(
            "wrote the generated section of {} ({} criterion results from {})",
            file.display(),
            micro.figures.len(),
            self.criterion.display()
        );
        Ok(())
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or_else(|| usage());
    let quick = args.iter().any(|a| a == "--quick");
    let output = Output::from_args(&args);
    if let Some(file) = &output.write {
        // fail now, not after the run, if the file cannot take the report
        if let Err(e) = report::check_markers(file) {
            eprintln!("flagpost-bench: {e}");
            std::process::exit(1);
        }
    }
    let mut report = Report::new();
    if quick {
        // tiny counts whose figures only show that the scenarios run
        report.set_smoke();
    }
    match args.first().map(String::as_str) {
        Some("_broker") => child_broker(&args[1..]),
        Some("_listener") => child_listener(
            arg(1),
            arg(2),
            args.get(3).map(String::as_str),
            args.get(4).map(String::as_str),
        ),
        Some("_relay_b") => child_relay_b(arg(1)),
        Some("_relay_c") => child_relay_c(arg(1)),
        Some("_flood_relay_b") => child_flood_relay_b(arg(1)),
        Some("_udp_sink") => child_udp_sink(),
        Some("_fanout_server") => child_fanout_server(),
        Some("_idle_server") => child_idle_server(),
        Some("_farm") => child_farm(arg(1), arg(2), arg(3), args.get(4).map(String::as_str)),
        Some("_scale_farm") => scale::child_scale_farm(&args[1..]),
        Some("_ingest_floor") => scale::child_ingest_floor(),
        Some("_sse_broker") => sse::child_sse_broker(),
        Some("_peer_sub") => flagpost_benches::peers::child_subscriber(&args[1..]),
        // `--quick`: the smoke sizes of `all --quick`, one scenario at a time
        Some("wake") => {
            let samples = flag_value(&args, "--samples", if quick { 200 } else { 20_000 });
            wake(samples, &mut report);
        }
        Some("ingest") => {
            let secs = flag_value(&args, "--seconds", if quick { 0.5 } else { 5.0 });
            ingest(secs, &mut report);
        }
        Some("fanout") => {
            let rounds = flag_value(&args, "--rounds", if quick { 5 } else { 200 });
            let sizes: &[usize] = if quick {
                &[1, 100]
            } else {
                &[1, 100, 1_000, 10_000, 19_000]
            };
            fanout(rounds, sizes, &mut report);
        }
        Some("idle") => {
            let secs = flag_value(&args, "--seconds", if quick { 1.0 } else { 10.0 });
            idle(secs, if quick { 100 } else { 1_000 }, &mut report);
        }
        Some("database") => {
            let samples = flag_value(&args, "--samples", if quick { 20 } else { 500 });
            let poll = flag_value(&args, "--poll-samples", if quick { 3 } else { 60 });
            let secs = flag_value(&args, "--seconds", if quick { 2.0 } else { 30.0 });
            database::database(samples, poll, secs);
        }
        Some("sse") => {
            let clients = flag_value(&args, "--clients", if quick { 10 } else { 1_000 });
            let rounds = flag_value(&args, "--rounds", if quick { 5 } else { 200 });
            sse::sse(clients, rounds);
        }
        Some("federation") => {
            let samples = flag_value(&args, "--samples", if quick { 100 } else { 2_000 });
            let messages = flag_value(&args, "--messages", if quick { 5_000 } else { 200_000 });
            let secs = flag_value(&args, "--seconds", if quick { 0.3 } else { 2.0 });
            federation::federation(samples, messages, secs);
        }
        Some("hotloop") => {
            let rounds = flag_value(&args, "--rounds", if quick { 3 } else { 200 });
            let calls = flag_value(&args, "--calls", if quick { 100_000 } else { 1_000_000 });
            hotloop(rounds, calls, &mut report);
        }
        Some("flood") => {
            let samples = flag_value(&args, "--samples", if quick { 100 } else { 2_000 });
            flood(samples, &mut report);
        }
        Some("scale") => {
            let sizes = if quick {
                scale::Sizes::quick()
            } else {
                scale::Sizes::full()
            };
            scale::run(
                &sizes.with_args(&args),
                scale::Part::from_args(&args),
                &mut report,
            );
        }
        Some("peers") => {
            let base = if quick {
                flagpost_benches::peers::Sizes::quick()
            } else {
                flagpost_benches::peers::Sizes::full()
            };
            peers(
                &flagpost_benches::peers::Sizes {
                    samples: flag_value(&args, "--samples", base.samples),
                    secs: flag_value(&args, "--seconds", base.secs),
                    idle: flag_value(&args, "--idle", base.idle),
                },
                &mut report,
            );
        }
        Some("all") if quick => {
            wake(200, &mut report);
            ingest(0.5, &mut report);
            fanout(5, &[1, 100], &mut report);
            idle(1.0, 100, &mut report);
            hotloop(3, 100_000, &mut report);
            flood(100, &mut report);
            scale::run(&scale::Sizes::quick(), scale::Part::All, &mut report);
            report.skip_peers("smoke run (`--quick`)");
        }
        Some("all") => {
            wake(20_000, &mut report);
            ingest(5.0, &mut report);
            fanout(200, &[1, 100, 1_000, 10_000, 19_000], &mut report);
            idle(10.0, 1_000, &mut report);
            hotloop(200, 1_000_000, &mut report);
            flood(2_000, &mut report);
            scale::run(&scale::Sizes::full(), scale::Part::All, &mut report);
            if flagpost_benches::peers::installed_peers().is_empty() {
                println!("\npeers: skipped, no peer server is installed (benches/peers.sh installs them)");
                report.skip_peers("no peer server is installed (`benches/peers.sh` installs them)");
            } else {
                peers(&flagpost_benches::peers::Sizes::full(), &mut report);
            }
        }
        _ => usage(),
    }
    let command = report::command_line(&std::env::args().collect::<Vec<_>>());
    if let Err(e) = output.finish(&report, &command) {
        eprintln!("flagpost-bench: {e}");
        std::process::exit(1);
    }
}
