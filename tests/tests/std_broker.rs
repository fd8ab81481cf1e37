//! The std broker on real loopback sockets: notifications in over UDP,
//! flags out over TCP to real listeners. No sleeps: every wait is a
//! `Listener::wait` with a generous timeout that only bounds a failure.

use std::time::Duration;

use flagpost_std::core::ChannelId;
use flagpost_std::{Broker, BrokerConfig, Listener, ListenerState, Notifier};

const LONG: Duration = Duration::from_secs(10);

fn config() -> BrokerConfig {
    BrokerConfig {
        bind: vec!["127.0.0.1:0".parse().unwrap()],
        max_listeners: 2000,
        ..BrokerConfig::default()
    }
}

fn ch(s: &str) -> ChannelId {
    ChannelId::new(s).unwrap()
}

/// A listener that is listening and has consumed its initial raise.
fn ready(listener: Listener) -> Listener {
    assert!(
        listener.wait_listening(LONG),
        "listener never got its welcome"
    );
    assert!(listener.wait(LONG));
    listener.take();
    listener
}

#[test]
fn notify_reaches_listener_and_status_raises_non_status() {
    let broker = Broker::spawn(config()).unwrap();
    let listener = ready(Listener::connect(broker.local_addr()).unwrap());
    let notifier = Notifier::new(broker.local_addr()).unwrap();

    notifier.notify_status_update(None);
    assert!(listener.wait(LONG));
    // both flags arrive in one frame
    assert!(listener.check_status_update());
    assert!(listener.check_non_status_update());
    assert!(!listener.check_status_update());

    notifier.notify_non_status_update();
    assert!(listener.wait(LONG));
    assert!(listener.check_non_status_update());
    assert!(!listener.check_status_update());
    assert_eq!(listener.state(), ListenerState::Listening);
    broker.shutdown();
    broker.join().unwrap();
}

#[test]
fn channel_updates_reach_the_right_listeners_only() {
    let broker = Broker::spawn(config()).unwrap();
    let addr = broker.local_addr();
    let gsm1 = ready(
        Listener::builder()
            .channel(ch("gsm1"))
            .connect(addr)
            .unwrap(),
    );
    let gsm2 = ready(
        Listener::builder()
            .channel(ch("gsm2"))
            .connect(addr)
            .unwrap(),
    );
    let all = ready(Listener::connect(addr).unwrap());
    let notifier = Notifier::new(addr).unwrap();

    notifier.notify_channel_update(ch("gsm1"));
    notifier.notify_status_update(Some(ch("gsm2")));
    // A marker everyone gets, sent strictly after (flush: the first two are
    // on the wire). Loopback UDP and each TCP stream keep order, so a
    // listener that has the marker has seen everything before it.
    assert!(notifier.flush(LONG));
    notifier.notify_non_status_update();
    for l in [&gsm1, &gsm2, &all] {
        while !l.check_non_status_update() {
            assert!(l.wait(LONG));
        }
    }
    assert!(gsm1.check_channel_update());
    assert!(!gsm1.check_status_update());
    assert!(gsm2.check_status_update());
    assert!(!gsm2.check_channel_update());
    assert!(all.check_channel_update());
    assert!(all.check_status_update());
}
