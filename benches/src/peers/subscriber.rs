//! The subscribers: the bench binary's `_peer_sub` child mode
//! ([`child_subscriber`]), which subscribes N connections of one system's
//! client and counts or stamps every message, and the parent's handle on
//! that process ([`Subscribers`]).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use flagpost_std::Listener;

use crate::clock::now_ns;
use crate::farm::raise_fd_limit;

use super::server::postgres_conninfo;
use super::{System, CHANNEL, SUBSCRIBE_TIMEOUT};

/// What a subscriber does with each message it sees.
struct Sink {
    /// Deliveries counted.
    total: AtomicU64,
    /// `CLOCK_MONOTONIC` of the latest counted delivery.
    last_ns: AtomicU64,
    /// Wake mode: stamp each message and send the stamp instead of counting.
    wake: AtomicBool,
    /// Report the count every this many deliveries (0: never).
    every: AtomicU64,
    /// Connected to the parent's report socket.
    report: UdpSocket,
}

impl Sink {
    fn deliver(&self) {
        if self.wake.load(Ordering::Relaxed) {
            let woke = now_ns();
            let _ = self.report.send(&woke.to_be_bytes());
            return;
        }
        let total = self.total.fetch_add(1, Ordering::Relaxed) + 1;
        self.last_ns.fetch_max(now_ns(), Ordering::Relaxed);
        let every = self.every.load(Ordering::Relaxed);
        if every > 0 && total.is_multiple_of(every) {
            let mut msg = [0u8; 16];
            msg[..8].copy_from_slice(&total.to_be_bytes());
            let _ = self.report.send(&msg);
        }
    }

    fn counts(&self) -> String {
        format!(
            "{} {}",
            self.total.load(Ordering::Relaxed),
            self.last_ns.load(Ordering::Relaxed)
        )
    }
}

/// The `_peer_sub <system> <server> <n> <report>` child mode: `n`
/// subscriber connections to `system`'s server at `server`, a thread each.
/// Announces `ready` once every one is subscribed (confirmed by the
/// server), then answers the parent's queries on stdin, one line each:
/// `wake` (from now on stamp each message and send the stamp to `report`),
/// `count <k>` (from now on count messages and send the count to `report`
/// every k; answers `<count> <last delivery ns>`) and `total` (answers the
/// same). Exits when the parent closes stdin.
pub fn child_subscriber(args: &[String]) -> ! {
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let system = System::from_name(arg(0)).unwrap_or_else(|| fail("unknown system"));
    let server: SocketAddr = arg(1).parse().unwrap_or_else(|_| fail("bad server"));
    let n: usize = arg(2).parse().unwrap_or_else(|_| fail("bad count"));
    let report = UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| fail(&e.to_string()));
    report
        .connect(arg(3))
        .unwrap_or_else(|e| fail(&e.to_string()));
    // a socket, an event loop and a runtime's worth of descriptors each
    raise_fd_limit(8 * n as u64 + 256).unwrap_or_else(|e| fail(&e));
    let sink = Arc::new(Sink {
        total: AtomicU64::new(0),
        last_ns: AtomicU64::new(0),
        wake: AtomicBool::new(false),
        every: AtomicU64::new(0),
        report,
    });
    let (subscribed, confirmations) = mpsc::channel();
    for i in 0..n {
        let sink = sink.clone();
        let subscribed = subscribed.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("sub-{i}"))
            .spawn(move || {
                if let Err(e) = subscribe(system, server, i, &subscribed, &sink) {
                    // before the confirmation this fails the start; after
                    // it, the parent sees the missing deliveries
                    let _ = subscribed.send(Err(e.clone()));
                    eprintln!("_peer_sub {}: subscriber {i}: {e}", system.name());
                }
            });
        if let Err(e) = spawned {
            fail(&format!("thread {i}: {e}"));
        }
    }
    let deadline = Instant::now() + SUBSCRIBE_TIMEOUT;
    for _ in 0..n {
        let left = deadline.saturating_duration_since(Instant::now());
        match confirmations.recv_timeout(left) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => fail(&e),
            Err(_) => fail(&format!(
                "not every subscriber subscribed in {SUBSCRIBE_TIMEOUT:?}"
            )),
        }
    }
    println!("ready");
    let _ = std::io::stdout().flush();
    for line in std::io::stdin().lock().lines() {
        let Ok(q) = line else { break };
        let mut words = q.split_whitespace();
        let answer = match words.next() {
            Some("wake") => {
                sink.wake.store(true, Ordering::Relaxed);
                "ok".to_owned()
            }
            Some("count") => {
                let every = words.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                sink.every.store(every, Ordering::Relaxed);
                sink.wake.store(false, Ordering::Relaxed);
                sink.counts()
            }
            _ => sink.counts(),
        };
        println!("{answer}");
        let _ = std::io::stdout().flush();
    }
    std::process::exit(0)
}

fn fail(why: &str) -> ! {
    eprintln!("_peer_sub: {why}");
    std::process::exit(1)
}

/// One subscriber: connects, subscribes, confirms on `subscribed` once the
/// server has the subscription, then hands every message to `sink` until
/// the connection fails.
fn subscribe(
    system: System,
    server: SocketAddr,
    i: usize,
    subscribed: &mpsc::Sender<Result<(), String>>,
    sink: &Sink,
) -> Result<(), String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let confirm = || {
        let _ = subscribed.send(Ok(()));
    };
    match system {
        System::Flagpost => {
            let listener = Listener::connect(server).map_err(|x| e(&x))?;
            if !listener.wait_listening(Duration::from_secs(30)) {
                return Err("never welcomed".into());
            }
            listener.take();
            confirm();
            // as the `_listener` mode: take when `wait` returns, then report.
            // Taking after reporting would race the next trigger: a raise
            // landing between the two is cleared unseen (4 lost samples in
            // 20,000 in one run).
            loop {
                if listener.wait(Duration::from_secs(3600)) {
                    listener.take();
                    sink.deliver();
                }
            }
        }
        System::Redis => {
            let client = redis::Client::open(format!("redis://{server}/")).map_err(|x| e(&x))?;
            let mut con = client.get_connection().map_err(|x| e(&x))?;
            let mut pubsub = con.as_pubsub();
            // returns once the server has confirmed the subscription
            pubsub.subscribe(CHANNEL).map_err(|x| e(&x))?;
            confirm();
            loop {
                pubsub.get_message().map_err(|x| e(&x))?;
                sink.deliver();
            }
        }
        System::Postgres => {
            use postgres::fallible_iterator::FallibleIterator;
            let mut client = postgres::Client::connect(&postgres_conninfo(server), postgres::NoTls)
                .map_err(|x| e(&x))?;
            // autocommit: in effect once the command completes
            client
                .batch_execute(&format!("LISTEN {CHANNEL}"))
                .map_err(|x| e(&x))?;
            confirm();
            let mut notifications = client.notifications();
            let mut iter = notifications.blocking_iter();
            while iter.next().map_err(|x| e(&x))?.is_some() {
                sink.deliver();
            }
            Err("connection closed".into())
        }
        System::Mosquitto => {
            use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
            let id = format!("flagpost-bench-sub-{}-{i}", std::process::id());
            let mut options = MqttOptions::new(id, server.ip().to_string(), server.port());
            options.set_keep_alive(Duration::from_secs(60));
            let (client, mut connection) = Client::new(options, 16);
            client
                .subscribe(CHANNEL, QoS::AtMostOnce)
                .map_err(|x| e(&x))?;
            let mut confirmed = false;
            for event in connection.iter() {
                match event.map_err(|x| e(&x))? {
                    Event::Incoming(Packet::SubAck(_)) if !confirmed => {
                        confirmed = true;
                        confirm();
                    }
                    Event::Incoming(Packet::Publish(_)) => sink.deliver(),
                    _ => {}
                }
            }
            Err("connection closed".into())
        }
        System::Nats => {
            use futures_util::StreamExt;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|x| e(&x))?;
            runtime.block_on(async {
                let client = async_nats::connect(server.to_string())
                    .await
                    .map_err(|x| e(&x))?;
                let mut subscription = client.subscribe(CHANNEL).await.map_err(|x| e(&x))?;
                // NATS does not confirm a subscription: a message to
                // ourselves after it, back through the server, shows the
                // server has processed it (a connection's operations are
                // handled in order)
                let own = format!("{CHANNEL}.ack.{}.{i}", std::process::id());
                let mut echo = client.subscribe(own.clone()).await.map_err(|x| e(&x))?;
                client.publish(own, "ok".into()).await.map_err(|x| e(&x))?;
                client.flush().await.map_err(|x| e(&x))?;
                tokio::time::timeout(Duration::from_secs(30), echo.next())
                    .await
                    .map_err(|_| "subscription never confirmed".to_owned())?;
                confirm();
                while subscription.next().await.is_some() {
                    sink.deliver();
                }
                Err("connection closed".into())
            })
        }
    }
}

/// The parent's handle on a `_peer_sub` process; killed on drop.
pub(super) struct Subscribers {
    pub(super) child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Subscribers {
    /// Starts `n` subscribers and returns once all are subscribed.
    pub(super) fn spawn(
        system: System,
        server: SocketAddr,
        n: usize,
        report: SocketAddr,
    ) -> Result<Subscribers, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .arg("_peer_sub")
            .args([
                system.name().to_owned(),
                server.to_string(),
                n.to_string(),
                report.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("start the subscribers: {e}"))?;
        let stdin = child.stdin.take().ok_or("subscriber stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("subscriber stdout")?);
        let mut subs = Subscribers {
            child,
            stdin,
            stdout,
        };
        // the child gives up by itself after SUBSCRIBE_TIMEOUT
        let line = subs.read_line()?;
        if line != "ready" {
            return Err(format!("{n} {} subscribers did not start", system.name()));
        }
        Ok(subs)
    }

    fn read_line(&mut self) -> Result<String, String> {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        Ok(line.trim().to_owned())
    }

    pub(super) fn query(&mut self, q: &str) -> Result<String, String> {
        writeln!(self.stdin, "{q}").map_err(|e| format!("subscribers gone: {e}"))?;
        self.stdin.flush().map_err(|e| e.to_string())?;
        self.read_line()
    }

    /// `(deliveries counted, CLOCK_MONOTONIC of the latest)`.
    pub(super) fn counts(&mut self, q: &str) -> Result<(u64, u64), String> {
        let line = self.query(q)?;
        let mut it = line.split(' ').map(|v| v.parse::<u64>().ok());
        match (it.next().flatten(), it.next().flatten()) {
            (Some(total), Some(last)) => Ok((total, last)),
            _ => Err(format!("subscribers answered {line:?}")),
        }
    }

    pub(super) fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Subscribers {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
