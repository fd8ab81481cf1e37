//! `flagpost serve` under a service manager: socket activation of its UDP
//! and TCP sockets (by `systemd-socket-activate`, and by this harness
//! passing both descriptors itself), `sd_notify` readiness read from a
//! `NOTIFY_SOCKET` the test binds, `SIGHUP` reloads under load, and the
//! unit files of `contrib/` checked by `systemd-analyze verify`.

#![cfg(target_os = "linux")]

mod common;

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{collect, ready, LONG, S};
use flagpost_std::core::wire::{CloseReason, CloseRepr, FrameRepr};
use flagpost_std::core::Notification;
use flagpost_std::{Listener, Notifier};
use flagpost_tests::process::flagpost_bin;

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("flagpost-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The service manager's end of `NOTIFY_SOCKET`.
struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        NotifySocket { socket, path }
    }

    /// Reads messages until one has the line `want`; returns that message.
    /// Panics after [`LONG`].
    fn wait_for(&self, want: &str) -> String {
        let deadline = Instant::now() + LONG;
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no {want} from the broker");
            self.socket.set_read_timeout(Some(left)).unwrap();
            let n = match self.socket.recv(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => panic!("no {want} from the broker: {e}"),
            };
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            if message.lines().any(|l| l == want) {
                return message;
            }
        }
    }
}

/// Sends `signal` (a `kill` name: HUP, TERM) to `child`.
fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits (bounded) for `child` to exit; returns its code and its stderr.
fn finish(mut child: Child) -> (Option<i32>, String) {
    let deadline = Instant::now() + LONG;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("the broker did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut log = String::new();
    if let Some(mut err) = child.stderr.take() {
        err.read_to_string(&mut log).unwrap();
    }
    (status.code(), log)
}

/// A UDP socket and a listening TCP socket on the same free loopback port.
fn socket_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..16 {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        if let Ok(udp) = UdpSocket::bind(tcp.local_addr().unwrap()) {
            return (udp, tcp);
        }
    }
    panic!("no free port for both UDP and TCP");
}

/// What a raw connection is told before the broker closes it.
fn told(addr: SocketAddr) -> FrameRepr {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(LONG)).unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).unwrap();
    FrameRepr::parse_bytes(&bytes).unwrap()
}

fn close(reason: CloseReason) -> FrameRepr {
    FrameRepr::Close(CloseRepr::new(reason))
}

/// A listener on `addr` gets a confirmed status update.
fn delivers(addr: SocketAddr) {
    let listener = ready(Listener::builder().connect(addr).unwrap());
    let notifier = Notifier::new(addr).unwrap();
    notifier
        .notify_confirmed(Notification::status(None), 1, LONG)
        .unwrap();
    collect(&listener, S, "a status update");
}

/// Starts `flagpost serve` with the harness's own UDP and TCP sockets as
/// descriptors 3 and 4 (`LISTEN_FDS=2`, `LISTEN_PID` set by a shell that
/// then execs the broker, keeping its process id).
fn serve_activated(fds: &[&dyn std::os::fd::AsRawFd], notify: &Path) -> Child {
    use std::os::unix::process::CommandExt;
    let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let mut command = Command::new("sh");
    command
        .args(["-c", "export LISTEN_PID=$$; exec \"$0\" serve"])
        .arg(flagpost_bin())
        .env("LISTEN_FDS", raw.len().to_string())
        .env("NOTIFY_SOCKET", notify)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    #[allow(unsafe_code)]
    // SAFETY: the closure runs in the child between fork and exec and only
    // calls dup2 (async-signal-safe), through fds 100.. first so that a
    // source already at 3 or 4 is not overwritten before it is moved.
    unsafe {
        command.pre_exec(move || {
            for (i, fd) in raw.iter().enumerate() {
                let high = nix::unistd::dup2_raw(
                    std::os::fd::BorrowedFd::borrow_raw(*fd),
                    100 + i as i32,
                )?;
                std::mem::forget(high);
            }
            for i in 0..raw.len() {
                let to = nix::unistd::dup2_raw(
                    std::os::fd::BorrowedFd::borrow_raw(100 + i as i32),
                    3 + i as i32,
                )?;
                std::mem::forget(to);
            }
            Ok(())
        });
    }
    command.spawn().unwrap()
}

/// The harness passes a UDP and a TCP socket on one port: the broker serves
/// on them (it could not bind that port itself: the harness holds it),
/// says READY=1 once it serves, and STOPPING=1 on SIGTERM.
#[test]
fn both_sockets_passed_by_the_harness_are_served() {
    let dir = Scratch::new("activated");
    let notify = NotifySocket::bind(&dir.0);
    let (udp, tcp) = socket_pair();
    let addr = tcp.local_addr().unwrap();
    let child = serve_activated(&[&udp, &tcp], &notify.path);
    let message = notify.wait_for("READY=1");
    assert!(message.contains("STATUS=serving"), "{message}");
    delivers(addr);
    signal(&child, "TERM");
    notify.wait_for("STOPPING=1");
    let (code, log) = finish(child);
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("socket activation: serving"), "{log}");
}

/// A broker that cannot bind (the port is taken) exits 4 and never says
/// READY=1: readiness means serving, not started.
#[test]
fn no_readiness_without_the_sockets() {
    let dir = Scratch::new("no-ready");
    let notify = NotifySocket::bind(&dir.0);
    let (_udp, tcp) = socket_pair();
    let child = Command::new(flagpost_bin())
        .args(["serve", "--bind", &tcp.local_addr().unwrap().to_string()])
        .env("NOTIFY_SOCKET", &notify.path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (code, log) = finish(child);
    assert_eq!(code, Some(4), "{log}");
    notify.socket.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 4096];
    match notify.socket.recv(&mut buf) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the service manager was told something: {other:?}"),
    }
}

/// Descriptors that are not a UDP and TCP pair are refused with a reason
/// (exit 2), never served half.
#[test]
fn a_tcp_socket_without_its_udp_socket_is_refused() {
    let dir = Scratch::new("tcp-only");
    let notify = NotifySocket::bind(&dir.0);
    let (_udp, tcp) = socket_pair();
    let (code, log) = finish(serve_activated(&[&tcp], &notify.path));
    assert_eq!(code, Some(2), "{log}");
    assert!(log.contains("without its UDP socket"), "{log}");

    // a TCP socket that is bound but not listening
    let (udp, _tcp) = socket_pair();
    let idle = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    idle.bind(&any.into()).unwrap();
    let (code, log) = finish(serve_activated(&[&udp, &idle], &notify.path));
    assert_eq!(code, Some(2), "{log}");
    assert!(log.contains("is not listening"), "{log}");

    let unix = UnixDatagram::bind(dir.0.join("other")).unwrap();
    let (code, log) = finish(serve_activated(&[&unix], &notify.path));
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains("passed descriptor 3") && log.contains("IPv4 or IPv6"),
        "{log}"
    );
}

/// `systemd-socket-activate` passes one kind of socket per invocation
/// (`--datagram` applies to every `-l`), and passes on the descriptors it
/// was given: a datagram one execs a stream one, which execs the broker
/// with both. The first datagram starts it all, as under systemd.
#[test]
fn socket_activation_by_systemd_socket_activate() {
    if Command::new("systemd-socket-activate")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("systemd-socket-activate is missing (Debian package systemd): not run");
        return;
    }
    let dir = Scratch::new("socket-activate");
    let notify = NotifySocket::bind(&dir.0);
    let (udp, tcp) = socket_pair();
    let addr = tcp.local_addr().unwrap();
    drop((udp, tcp));
    let listen = addr.to_string();
    // it passes on only a few variables; -E adds one
    let setenv = format!("--setenv=NOTIFY_SOCKET={}", notify.path.display());
    let child = Command::new("systemd-socket-activate")
        .args(["--datagram", "-l", &listen, "--", "systemd-socket-activate"])
        .args(["-l", &listen, &setenv, "--"])
        .arg(flagpost_bin())
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The datagram that activates the broker is queued, then acked. Until
    // the activator has bound the port, a send is refused at once: try
    // again until it is bound (or the deadline passes).
    let notifier = Notifier::new(addr).unwrap();
    let deadline = std::time::Instant::now() + LONG;
    loop {
        match notifier.notify_confirmed(Notification::status(None), 1, LONG) {
            Ok(_) => break,
            Err(flagpost_std::NotifyError::Unreachable { .. })
                if std::time::Instant::now() < deadline =>
            {
                std::thread::yield_now()
            }
            Err(e) => panic!("the activating datagram: {e}"),
        }
    }
    notify.wait_for("READY=1");
    delivers(addr);
    signal(&child, "TERM");
    notify.wait_for("STOPPING=1");
    let (code, log) = finish(child);
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("Received 1 descriptors"), "{log}");
    assert!(log.contains("socket activation: serving"), "{log}");
}

/// SIGHUP with listeners connected and notifications flowing: nobody is
/// dropped (no reconnect raise, every listener still gets flags); a lower
/// max_listeners, then an allow-list, take effect for new connections; an
/// invalid file changes nothing; a new address is logged as needing a
/// restart.
#[test]
fn sighup_reloads_under_load_without_dropping_a_listener() {
    let dir = Scratch::new("reload");
    let notify = NotifySocket::bind(&dir.0);
    let (udp, tcp) = socket_pair();
    let addr = tcp.local_addr().unwrap();
    drop((udp, tcp));
    let file = dir.0.join("flagpost.toml");
    let write = |body: &str| std::fs::write(&file, format!("bind = [\"{addr}\"]\n{body}")).unwrap();
    write("max_listeners = 100\n");
    let child = Command::new(flagpost_bin())
        .args(["serve", "--config"])
        .arg(&file)
        .env("NOTIFY_SOCKET", &notify.path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    notify.wait_for("READY=1");
    let listeners: Vec<Listener> = (0..20)
        .map(|_| ready(Listener::builder().connect(addr).unwrap()))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let notifier = Notifier::new(addr).unwrap();
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                notifier
                    .notify_confirmed(Notification::status(None), 1, LONG)
                    .unwrap();
                sent += 1;
            }
            sent
        })
    };
    let reload = |body: &str| {
        write(body);
        signal(&child, "HUP");
        notify.wait_for("RELOADING=1");
        notify.wait_for("READY=1")
    };
    let all_get_flags = || {
        for l in &listeners {
            let (_, reconnect) = collect(l, S, "a status update after the reload");
            assert!(!reconnect, "a listener was dropped and reconnected");
        }
    };
    all_get_flags();

    // Exactly the 20 connected: a 21st is refused, the 20 stay.
    let status = reload("max_listeners = 20\n");
    assert!(!status.contains("failed"), "{status}");
    assert_eq!(told(addr), close(CloseReason::TooManyListeners));
    all_get_flags();

    // Invalid: logged, the old configuration stays.
    let status = reload("max_listeners = 0\n");
    assert!(status.contains("reload failed"), "{status}");
    assert_eq!(told(addr), close(CloseReason::TooManyListeners));

    // An allow-list without loopback: new connections are told
    // unauthorized, the connected listeners keep getting flags. A new
    // address needs a restart: named, the old one kept.
    let other = format!("bind = [\"127.0.0.1:{}\"]\n", common::free_port());
    std::fs::write(
        &file,
        format!("{other}max_listeners = 100\nallow_listeners = [\"10.0.0.0/8\"]\n"),
    )
    .unwrap();
    signal(&child, "HUP");
    notify.wait_for("RELOADING=1");
    let status = notify.wait_for("READY=1");
    assert!(status.contains("restart needed for bind"), "{status}");
    assert_eq!(told(addr), close(CloseReason::Unauthorized));
    all_get_flags();

    stop.store(true, Ordering::Relaxed);
    let sent = load.join().unwrap();
    assert!(sent > 0);
    for l in &listeners {
        assert_eq!(l.state(), flagpost_std::ListenerState::Listening);
    }
    signal(&child, "TERM");
    let (code, log) = finish(child);
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("reload failed"), "{log}");
    assert!(log.contains("need a restart"), "{log}");
}

/// `contrib/`'s units pass `systemd-analyze verify` (where it can run).
#[test]
fn contrib_units_verify() {
    let contrib = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib");
    let unit = std::fs::read_to_string(contrib.join("flagpost.service")).unwrap();
    let socket = std::fs::read_to_string(contrib.join("flagpost.socket")).unwrap();
    assert!(unit.contains("Type=notify") && unit.contains("LimitNOFILE="));
    assert!(socket.contains("ListenDatagram=") && socket.contains("ListenStream="));
    let dir = Scratch::new("units");
    // verify wants the ExecStart binary where the unit says: point it here
    let bin = flagpost_bin();
    let unit = unit.replace("/usr/bin/flagpost", bin.to_str().unwrap());
    std::fs::write(dir.0.join("flagpost.service"), unit).unwrap();
    std::fs::write(dir.0.join("flagpost.socket"), socket).unwrap();
    let out = match Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.0.join("flagpost.socket"))
        .arg(dir.0.join("flagpost.service"))
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            eprintln!("systemd-analyze is missing ({e}): units not verified");
            return;
        }
    };
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    // it warns (exit 0) about values it cannot parse, naming the file
    assert!(!log.contains("flagpost"), "{log}");
}

/// `BrokerHandle::reload`, as SIGHUP calls it: a new key file (read again
/// though its path is the same) is in force for the next datagram, a
/// shorter hello timeout for the next connection; a key file that cannot
/// be read changes nothing.
#[test]
fn reload_puts_a_rewritten_key_and_new_timeouts_in_force() {
    use flagpost_std::keyfile::{generate_key_file, read_key_file};
    use flagpost_std::{Broker, BrokerConfig};
    let dir = Scratch::new("reload-key");
    let (current, old) = (dir.0.join("key"), dir.0.join("old"));
    generate_key_file(&current).unwrap();
    std::fs::copy(&current, &old).unwrap();
    let config = BrokerConfig {
        bind: vec!["127.0.0.1:0".parse().unwrap()],
        key_file: Some(current.clone()),
        ..BrokerConfig::default()
    };
    let broker = Broker::spawn(config.clone()).unwrap();
    let addr = broker.local_addr();
    let confirmed = |key: &Path| {
        let notifier = Notifier::builder()
            .key(read_key_file(key).unwrap())
            .build(addr)
            .unwrap();
        // a wrong key is dropped unanswered: a short bound for that case
        notifier
            .notify_confirmed(Notification::status(None), 1, Duration::from_millis(500))
            .is_ok()
    };
    assert!(confirmed(&old));

    // rotate: the same path, a new key
    std::fs::remove_file(&current).unwrap();
    generate_key_file(&current).unwrap();
    let new = BrokerConfig {
        hello_timeout: Duration::from_secs(1),
        ..config.clone()
    };
    let done = broker.reload(new).unwrap();
    assert_eq!(done.applied, ["hello_timeout"]);
    assert!(done.needs_restart.is_empty());
    assert!(confirmed(&current));
    assert!(!confirmed(&old));
    let started = Instant::now();
    assert_eq!(told(addr), close(CloseReason::HelloTimeout));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // unreadable: an error, and the rotated key stays in force
    let missing = BrokerConfig {
        key_file: Some(dir.0.join("missing")),
        ..config
    };
    assert!(broker.reload(missing).is_err());
    assert!(confirmed(&current));
    broker.shutdown();
    broker.join().unwrap();
}
