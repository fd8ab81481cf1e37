//! A broker killed with SIGKILL under load and started again on the same
//! address, as real processes on loopback: every listener — library and
//! command line — reconnects within the backoff cap, gets its reconnect
//! raise (a re-check, never a shutdown) and none exits.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use flagpost_std::core::FlagSet;
use flagpost_std::{Listener, ListenerState, Notifier};
use flagpost_tests::process::{flagpost_bin, BrokerProcess};

const LISTENERS: usize = 200;
const CLI_LISTENERS: usize = 3;
/// How long the broker stays down: long enough for every listener's
/// backoff to reach its cap (100 ms doubling to 2 s).
const DOWN: Duration = Duration::from_secs(3);
/// Bounds a failure only.
const LONG: Duration = Duration::from_secs(20);

/// `flagpost listen --json` with its stdout lines sent to a channel.
fn cli_listener(addr: &str) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(flagpost_bin())
        .args(["listen", "--json", "--broker", addr])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

#[test]
fn a_broker_killed_under_load_gets_every_listener_back() {
    let mut broker = BrokerProcess::start("127.0.0.1:0", &[]);
    let addr = broker.addr.clone();
    let listeners: Vec<Listener> = (0..LISTENERS)
        .map(|_| Listener::builder().connect(addr.as_str()).unwrap())
        .collect();
    for l in &listeners {
        assert!(l.wait_listening(LONG));
        assert!(l.wait(LONG), "the first welcome's re-check");
        assert!(l.take_raise().reconnect);
    }
    let mut cli: Vec<_> = (0..CLI_LISTENERS).map(|_| cli_listener(&addr)).collect();

    // Load: a status update every 200 µs for as long as the test runs.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (stop, addr) = (stop.clone(), addr.clone());
        std::thread::spawn(move || {
            let notifier = Notifier::new(addr.as_str()).unwrap();
            while !stop.load(Ordering::Relaxed) {
                notifier.notify_status_update(None);
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    // the load reaches everyone before the kill
    for l in &listeners {
        assert!(l.wait(LONG));
        let raise = l.take_raise();
        assert!(raise.flags.contains(FlagSet::STATUS) && !raise.reconnect);
    }
    for (_, lines) in &cli {
        let line = lines
            .recv_timeout(LONG)
            .expect("a CLI listener prints the load");
        assert!(line.contains("\"status\""), "{line}");
    }

    broker.kill();
    let deadline = Instant::now() + LONG;
    for l in &listeners {
        while l.state() == ListenerState::Listening {
            assert!(
                Instant::now() < deadline,
                "a listener never noticed the kill"
            );
            l.wait(Duration::from_millis(10));
        }
    }
    // the broker stays down while the listeners back off to their cap
    std::thread::sleep(DOWN);
    broker.restart();
    let restarted = Instant::now();

    // every library listener: back, with a marked re-check, never a shutdown
    let mut slowest = Duration::ZERO;
    for l in &listeners {
        loop {
            assert!(
                restarted.elapsed() < LONG,
                "a listener did not come back (state {:?})",
                l.state()
            );
            if !l.wait(Duration::from_millis(50)) {
                continue;
            }
            let raise = l.take_raise();
            assert!(
                !raise.flags.contains(FlagSet::CHANNEL_SHUTDOWN),
                "{raise:?}"
            );
            if raise.reconnect {
                assert!(raise.flags.contains(FlagSet::RECHECK), "{raise:?}");
                slowest = slowest.max(restarted.elapsed());
                break;
            }
        }
        assert_eq!(l.state(), ListenerState::Listening);
    }
    // every command-line listener: still running, and says it re-checks
    for (child, lines) in &mut cli {
        loop {
            let line = lines
                .recv_timeout(LONG)
                .expect("a CLI listener exited or fell silent");
            assert!(!line.contains("channel-shutdown"), "{line}");
            if line.contains("\"reconnect\":true") {
                break;
            }
        }
        assert!(child.try_wait().unwrap().is_none(), "a CLI listener exited");
    }
    println!(
        "{LISTENERS} listeners and {CLI_LISTENERS} `flagpost listen` back {} ms after the restart \
         (down {} ms; backoff cap 2 s)",
        slowest.as_millis(),
        DOWN.as_millis(),
    );
    assert!(
        slowest < Duration::from_secs(2) + Duration::from_millis(1500),
        "the backoff cap is 2 s, yet the slowest listener took {slowest:?}"
    );
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    for (mut child, _) in cli {
        let _ = child.kill();
        let _ = child.wait();
    }
}
