//! Three brokers on three hosts, joined over NATS: real `flagpost serve`
//! processes in three network namespaces this test creates, each joined by
//! a veth pair to a fourth (the "switch": a bridge, and the `nats-server`
//! the test starts). The test removes all of it when it ends, passed or not.
//!
//! It owns the claims of issue 18:
//!
//! 1. a notification sent to any broker wakes listeners on all three (and a
//!    channel listener only for its channel);
//! 2. nothing is lost end to end: every change notified is delivered on
//!    every broker (counted in `flagpost_changes_total`: a notifier batches
//!    bursts), or that broker raised a possible loss;
//! 3. a broker killed: its listeners, given a list of brokers, move to the
//!    next within the backoff cap, get their reconnect raise there, and are
//!    woken through the federation again;
//! 4. NATS stopped and restarted: every broker sees its link go and come
//!    back and raises status, non-status and channel update on its
//!    listeners, whose connections stayed up.
//!
//! Needs root and iproute2 (CI runs as root; `test.sh` installs iproute2 and
//! nats-server); without them it says why and returns, as the other
//! namespace tests do.

mod netns;

use std::time::{Duration, Instant};

use flagpost_std::core::broker::LOSS_FLAGS;
use flagpost_std::core::{ChannelId, FlagSet};
use flagpost_std::{Listener, Notifier};
use flagpost_tests::nats::NatsServer;
use flagpost_tests::process::BrokerProcess;
use netns::{available, in_netns, must};

/// The switch's address: where nats-server listens.
const NATS: &str = "10.18.0.254:4222";
/// Bounds a failure only.
const LONG: Duration = Duration::from_secs(20);
/// The listeners' longest reconnect delay (`ListenerConfig::BACKOFF_MAX`),
/// plus what connecting and the handshake take.
const FAIL_OVER: Duration = Duration::from_secs(5);
/// Changes notified in the end-to-end count (a third at each broker).
const COUNT: u64 = 300;

/// The namespaces (switch, a, b, c), the bridge and the veth pairs;
/// deleting the namespaces on drop removes all of it.
struct Lab {
    switch: String,
    hosts: [String; 3],
}

impl Lab {
    fn create() -> Lab {
        let pid = std::process::id();
        let lab = Lab {
            switch: format!("fpfed-sw-{pid}"),
            hosts: ["a", "b", "c"].map(|h| format!("fpfed-{h}-{pid}")),
        };
        let sw = lab.switch.as_str();
        for ns in std::iter::once(sw).chain(lab.hosts.iter().map(String::as_str)) {
            must("ip", &["netns", "add", ns], None);
            must("ip", &["-n", ns, "link", "set", "lo", "up"], None);
        }
        must(
            "ip",
            &["-n", sw, "link", "add", "br0", "type", "bridge"],
            None,
        );
        must(
            "ip",
            &["-n", sw, "addr", "add", "10.18.0.254/24", "dev", "br0"],
            None,
        );
        must("ip", &["-n", sw, "link", "set", "br0", "up"], None);
        for (i, ns) in lab.hosts.iter().enumerate() {
            let port = format!("p{i}");
            must(
                "ip",
                &[
                    "-n", sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                    "netns", ns,
                ],
                None,
            );
            must(
                "ip",
                &["-n", sw, "link", "set", &port, "master", "br0", "up"],
                None,
            );
            let addr = format!("10.18.0.{}/24", i + 1);
            must("ip", &["-n", ns, "addr", "add", &addr, "dev", "eth0"], None);
            must("ip", &["-n", ns, "link", "set", "eth0", "up"], None);
        }
        lab
    }

    fn broker_addr(i: usize) -> String {
        format!("10.18.0.{}:16725", i + 1)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in std::iter::once(&self.switch).chain(&self.hosts) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// Polls `f` every 20 ms until it holds or `LONG` passes.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + LONG;
    while !f() {
        assert!(Instant::now() < end, "never: {what}");
        std::thread::sleep(Duration::from_millis(20)); // polling another process's counters
    }
}

fn stat(lab: &Lab, i: usize, name: &str) -> u64 {
    let s = netns::stats(&lab.hosts[i], &Lab::broker_addr(i));
    *s.get(name).unwrap_or_else(|| panic!("no counter {name}"))
}

/// Waits until `l` has every flag of `want` pending and takes them; the
/// flags it took.
fn woken(l: &Listener, want: FlagSet) -> FlagSet {
    let end = Instant::now() + LONG;
    let mut got = FlagSet::EMPTY;
    while !got.contains(want) && Instant::now() < end {
        l.wait(end.saturating_duration_since(Instant::now()));
        got = got.union(l.take());
    }
    got
}

#[test]
fn three_brokers_in_three_namespaces_share_notifications_over_nats() {
    if let Err(why) = available() {
        eprintln!("skipped: {why}");
        return;
    }
    let lab = Lab::create();
    let mut nats = NatsServer::start_in_netns(&lab.switch, NATS.parse().expect("address"));
    let url = format!("nats://{NATS}");
    let mut brokers: Vec<BrokerProcess> = (0..3)
        .map(|i| {
            BrokerProcess::start_in_netns(
                &lab.hosts[i],
                &Lab::broker_addr(i),
                &["--federation", &url],
            )
        })
        .collect();
    for i in 0..3 {
        eventually("every broker joins NATS", || {
            stat(&lab, i, "flagpost_federation_connected") == 1
        });
    }

    // one listener on each broker for everything, one on c for gsm2 only
    let listeners: Vec<Listener> = (0..3)
        .map(|i| {
            in_netns(&lab.hosts[i], || {
                Listener::connect(Lab::broker_addr(i)).expect("listener")
            })
        })
        .collect();
    let gsm2 = in_netns(&lab.hosts[2], || {
        Listener::builder()
            .channel(ChannelId::new("gsm2").unwrap())
            .connect(Lab::broker_addr(2))
            .expect("listener")
    });
    for l in listeners.iter().chain([&gsm2]) {
        assert!(l.wait_listening(LONG), "a listener never listened");
        assert!(l.check_reconnect(), "the first welcome's reconnect raise");
        l.take();
    }

    // 1. sent to any broker, heard on all three
    let gsm1 = ChannelId::new("gsm1").unwrap();
    for origin in 0..3 {
        in_netns(&lab.hosts[origin], || {
            let n = Notifier::new(Lab::broker_addr(origin)).expect("notifier");
            n.notify_status_update(Some(gsm1));
            assert!(n.flush(LONG), "flush");
        });
        for (i, l) in listeners.iter().enumerate() {
            let got = woken(l, FlagSet::STATUS);
            assert!(
                got.contains(FlagSet::STATUS),
                "a status update sent to broker {origin} did not wake the listener on {i} ({got:?})"
            );
        }
        assert!(
            !gsm2.check_status_update(),
            "gsm2's listener raised for gsm1"
        );
    }
    in_netns(&lab.hosts[0], || {
        let n = Notifier::new(Lab::broker_addr(0)).expect("notifier");
        n.notify_status_update(Some(ChannelId::new("gsm2").unwrap()));
        assert!(n.flush(LONG), "flush");
    });
    assert!(woken(&gsm2, FlagSet::STATUS).contains(FlagSet::STATUS));

    // 2. nothing lost end to end: COUNT changes, a third to each broker
    let before: Vec<(u64, u64)> = (0..3)
        .map(|i| {
            (
                stat(&lab, i, "flagpost_changes_total"),
                stat(&lab, i, "flagpost_possible_losses_total")
                    + stat(&lab, i, "flagpost_possible_losses_coalesced_total"),
            )
        })
        .collect();
    for origin in 0..3 {
        in_netns(&lab.hosts[origin], || {
            let n = Notifier::new(Lab::broker_addr(origin)).expect("notifier");
            for _ in 0..COUNT / 3 {
                n.notify_non_status_update();
            }
            assert!(n.flush(LONG), "flush");
        });
    }
    for (i, before) in before.iter().enumerate() {
        let end = Instant::now() + LONG;
        let last = loop {
            let delivered = stat(&lab, i, "flagpost_changes_total") - before.0;
            let losses = stat(&lab, i, "flagpost_possible_losses_total")
                + stat(&lab, i, "flagpost_possible_losses_coalesced_total")
                - before.1;
            if delivered == COUNT || Instant::now() >= end {
                break (delivered, losses);
            }
            std::thread::sleep(Duration::from_millis(20)); // polling counters
        };
        assert!(
            last.0 == COUNT || last.1 > 0,
            "broker {i}: {} of {COUNT} changes delivered and no possible loss raised",
            last.0
        );
        assert!(last.0 <= COUNT, "broker {i} delivered {} > {COUNT}", last.0);
    }
    for l in &listeners {
        assert!(woken(l, FlagSet::NON_STATUS).contains(FlagSet::NON_STATUS));
    }

    // 3. broker a killed: a listener given [a, b] moves to b
    let roamer = in_netns(&lab.hosts[0], || {
        Listener::builder()
            .connect_any(&[Lab::broker_addr(0), Lab::broker_addr(1)])
            .expect("listener")
    });
    assert!(roamer.wait_listening(LONG));
    assert!(roamer.check_reconnect(), "the first welcome's raise");
    roamer.take();
    brokers[0].kill();
    let killed = Instant::now();
    let end = killed + FAIL_OVER;
    while !roamer.check_reconnect() {
        assert!(
            Instant::now() < end,
            "the listener did not fail over to broker b within {FAIL_OVER:?}"
        );
        roamer.wait(end.saturating_duration_since(Instant::now()));
    }
    let moved = killed.elapsed();
    assert!(woken(&roamer, LOSS_FLAGS).contains(LOSS_FLAGS));
    in_netns(&lab.hosts[2], || {
        let n = Notifier::new(Lab::broker_addr(2)).expect("notifier");
        n.notify_channel_update(gsm1);
        assert!(n.flush(LONG), "flush");
    });
    assert!(
        woken(&roamer, FlagSet::CHANNEL_UPDATE).contains(FlagSet::CHANNEL_UPDATE),
        "after its move, a notification sent to c reached the listener on b"
    );
    eprintln!("fail-over from a to b took {moved:?}");

    // 4. NATS stopped and restarted: b and c raise a re-check
    for l in listeners[1..].iter().chain([&roamer]) {
        l.take();
    }
    let rechecks: Vec<u64> = (1..3)
        .map(|i| stat(&lab, i, "flagpost_federation_rechecks_total"))
        .collect();
    nats.stop();
    for i in 1..3 {
        eventually("each broker sees NATS go", || {
            stat(&lab, i, "flagpost_federation_connected") == 0
        });
    }
    nats.restart();
    for (k, i) in (1..3).enumerate() {
        eventually("each broker rejoins NATS", || {
            stat(&lab, i, "flagpost_federation_connected") == 1
        });
        assert!(stat(&lab, i, "flagpost_federation_rechecks_total") > rechecks[k]);
        assert!(stat(&lab, i, "flagpost_federation_link_losses_total") >= 1);
    }
    for (name, l) in [
        ("b", &listeners[1]),
        ("c", &listeners[2]),
        ("b (moved)", &roamer),
    ] {
        let got = woken(l, LOSS_FLAGS);
        assert!(got.contains(LOSS_FLAGS), "the listener on {name}: {got:?}");
        assert!(!l.check_reconnect(), "{name}: its connection stayed up");
    }
    // and the federation works again
    in_netns(&lab.hosts[1], || {
        let n = Notifier::new(Lab::broker_addr(1)).expect("notifier");
        n.notify_status_update(None);
        assert!(n.flush(LONG), "flush");
    });
    assert!(woken(&listeners[2], FlagSet::STATUS).contains(FlagSet::STATUS));
    drop(brokers);
}
