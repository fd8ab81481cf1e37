//! Running out of file descriptors, against `flagpost serve` as its own
//! process with a low open-files limit (soft and hard, so the broker cannot
//! raise it): connections beyond what it can hold get a close frame with
//! reason *too many listeners* at once, the listeners it holds keep getting
//! notifications, the refusals are counted in `flagpost_connections_refused_total{reason="no_fds"}`,
//! the broker does not spin, and once listeners leave new ones are accepted
//! again.

#![cfg(target_os = "linux")]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flagpost_std::core::wire::{CloseReason, FrameReader, FrameRepr, HelloRepr, MAX_FRAME_LEN};
use flagpost_std::core::{FlagSet, Notification};

mod common;

use common::BIN;
/// The broker's open-files limit: its own descriptors take about ten.
const NOFILE: u64 = 32;
/// Connections tried: more than NOFILE, so that some must be refused.
const ATTEMPTS: usize = 40;
const LONG: Duration = Duration::from_secs(10);
/// How soon a refusal must arrive.
const PROMPT: Duration = Duration::from_secs(2);

struct Serve {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `flagpost serve` on a free loopback port with RLIMIT_NOFILE lowered to
/// `NOFILE` (soft and hard) in the child before it runs.
fn serve() -> Serve {
    let mut command = Command::new(BIN);
    command
        .args(["serve", "--bind", "127.0.0.1:0", "--max-listeners", "1000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the closure runs in the forked child before exec and only
    // makes the setrlimit system call, which is async-signal-safe.
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(|| {
            use nix::sys::resource::{setrlimit, Resource};
            setrlimit(Resource::RLIMIT_NOFILE, NOFILE, NOFILE).map_err(std::io::Error::from)
        });
    }
    let mut child = command.spawn().unwrap();
    let addr = common::announced(&mut child).parse().unwrap();
    Serve { child, addr }
}

/// Reads one frame (blocking, bounded by the stream's read timeout), a byte
/// at a time so that nothing after it is consumed.
fn read_frame(stream: &mut TcpStream) -> std::io::Result<FrameRepr> {
    let mut reader = FrameReader::<MAX_FRAME_LEN>::new();
    loop {
        let Some(byte) = reader.unfilled().get_mut(..1) else {
            return Err(std::io::Error::other("not a frame"));
        };
        match stream.read(byte) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => reader.filled(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        match reader.next_frame() {
            None => {}
            Some(Ok(frame)) => {
                return FrameRepr::parse_bytes(frame)
                    .map_err(|e| std::io::Error::other(format!("{e:?}")))
            }
            Some(Err(e)) => return Err(std::io::Error::other(format!("not a frame: {e:?}"))),
        }
    }
}

enum Outcome {
    Welcomed(TcpStream),
    Refused(Duration),
}

/// Connects and says hello: welcomed, or refused for want of descriptors.
fn attempt(addr: SocketAddr) -> Outcome {
    let start = Instant::now();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(LONG)).unwrap();
    let mut hello = [0u8; MAX_FRAME_LEN];
    let n = FrameRepr::Hello(HelloRepr {
        interest: FlagSet::ALL,
        channel: None,
        keepalive_secs: 0,
    })
    .emit(&mut hello)
    .unwrap();
    // A refused connection may be closed before the hello goes out.
    let _ = stream.write_all(&hello[..n]);
    match read_frame(&mut stream).expect("a frame, in time") {
        FrameRepr::Welcome(_) => Outcome::Welcomed(stream),
        FrameRepr::Close(c) if c.reason == CloseReason::TooManyListeners => {
            Outcome::Refused(start.elapsed())
        }
        other => panic!("unexpected {other:?}"),
    }
}

fn notify(addr: SocketAddr, seq: u32) {
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    common::send_notify(&udp, addr, Notification::status(None), 0xfd, seq).unwrap();
}

/// User plus system CPU time of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // fields after the parenthesised command name; utime and stime are 14 and 15
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// The value of metric `name` with label `reason` (`""`: none) in
/// `flagpost stats --json`.
fn stat(addr: SocketAddr, name: &str, reason: &str) -> u64 {
    common::stats_json(&addr.to_string())
        .iter()
        .find(|e| {
            e["name"] == name
                && (reason.is_empty() || e["labels"]["reason"].as_str() == Some(reason))
        })
        .and_then(|e| e["value"].as_u64())
        .unwrap_or_else(|| panic!("{name}{{reason={reason:?}}} missing"))
}

#[test]
fn out_of_descriptors_refuses_with_a_reason_and_recovers() {
    let mut server = serve();
    let addr = server.addr;
    let mut held = Vec::new();
    let mut refused = 0u64;
    let mut slowest = Duration::ZERO;
    for _ in 0..ATTEMPTS {
        match attempt(addr) {
            Outcome::Welcomed(stream) => {
                assert_eq!(refused, 0, "a listener was welcomed after a refusal");
                held.push(stream);
            }
            Outcome::Refused(after) => {
                assert!(after < PROMPT, "refused only after {after:?}");
                slowest = slowest.max(after);
                refused += 1;
            }
        }
    }
    assert!(
        held.len() >= 10 && refused >= 8,
        "{} held, {refused} refused",
        held.len()
    );

    // At the limit, the listeners held are served as ever.
    notify(addr, 1);
    for stream in &mut held {
        assert!(matches!(
            read_frame(stream).expect("flags in time"),
            FrameRepr::Flags(_)
        ));
    }

    // Connections that arrive and are refused cost no busy loop: the
    // broker's CPU time over a quiet half second stays near zero.
    let pid = server.child.id();
    let before = cpu_ticks(pid);
    for _ in 0..5 {
        assert!(matches!(attempt(addr), Outcome::Refused(_)));
        refused += 1;
    }
    std::thread::sleep(Duration::from_millis(500)); // a measurement window
    let spent = cpu_ticks(pid) - before;
    assert!(spent < 20, "the broker used {spent} ticks while refusing");

    // Three listeners leave; the next connection is accepted again (the
    // broker may see it before their ends, so refusals may come first).
    held.truncate(held.len() - 3);
    let deadline = Instant::now() + LONG;
    loop {
        assert!(Instant::now() < deadline, "no listener accepted again");
        match attempt(addr) {
            Outcome::Welcomed(stream) => {
                held.push(stream);
                break;
            }
            Outcome::Refused(_) => refused += 1,
        }
    }

    eprintln!(
        "{} listeners held under {NOFILE} descriptors, {refused} refused, \
         {spent} ticks of CPU while refusing, slowest refusal {slowest:?}",
        held.len()
    );
    // Every refusal counted, as refusals for want of descriptors only.
    assert_eq!(
        stat(addr, "flagpost_connections_refused_total", "no_fds"),
        refused
    );
    assert_eq!(stat(addr, "flagpost_accept_errors_total", ""), 0);
    assert_eq!(
        stat(addr, "flagpost_connections_refused_total", "table_full"),
        0
    );

    // The limit was reported at start, with a warning: max_listeners is larger.
    let _ = server.child.kill();
    let _ = server.child.wait();
    let mut log = String::new();
    server
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(
        log.contains("allows fewer listeners than max_listeners")
            && log.contains("open_files_limit=32"),
        "{log}"
    );
    assert!(log.contains("out of file descriptors"), "{log}");
}
