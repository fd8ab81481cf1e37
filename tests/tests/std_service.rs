//! The std `Service` cycle against a real broker: start-up work, immediate
//! wake-ups on status updates, interval polling as a fallback, and stop.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use flagpost_std::core::schedule::{Reason, Task};
use flagpost_std::core::{FlagSet, Notification};
use flagpost_std::{Broker, BrokerConfig, Listener, Notifier, Service};

const LONG: Duration = Duration::from_secs(10);

/// An in-process listener for status updates only, shared with a `Service`.
fn status_listener(broker: &flagpost_std::BrokerHandle) -> Arc<Listener> {
    Arc::new(
        Listener::builder()
            .interest(FlagSet::STATUS)
            .local(broker)
            .unwrap(),
    )
}

fn broker() -> flagpost_std::BrokerHandle {
    Broker::spawn(BrokerConfig {
        bind: vec!["127.0.0.1:0".parse().unwrap()],
        ..BrokerConfig::default()
    })
    .unwrap()
}

#[test]
fn status_updates_wake_both_tasks_and_zero_intervals_never_poll() {
    let broker = broker();
    let listener = status_listener(&broker);
    let (tx, rx) = mpsc::channel();
    let tx2 = tx.clone();
    let service = Service::new(listener.clone())
        .check_triggers(Duration::ZERO, move |r| {
            tx.send((Task::CheckTriggers, r)).unwrap()
        })
        .check_outgoing(Duration::ZERO, move |r| {
            tx2.send((Task::CheckOutgoing, r)).unwrap()
        });
    let stopper = service.stopper();
    let cycle = std::thread::spawn(move || service.run());

    assert_eq!(
        rx.recv_timeout(LONG).unwrap(),
        (Task::CheckTriggers, Reason::Startup)
    );
    assert_eq!(
        rx.recv_timeout(LONG).unwrap(),
        (Task::CheckOutgoing, Reason::Startup)
    );
    let notifier = Notifier::new(broker.local_addr()).unwrap();
    for _ in 0..3 {
        notifier.notify_status_update(None);
        // the initial raise of a new listener may add one notification round
        let (task, reason) = rx.recv_timeout(LONG).unwrap();
        assert_eq!((task, reason), (Task::CheckTriggers, Reason::Notification));
        assert_eq!(
            rx.recv_timeout(LONG).unwrap(),
            (Task::CheckOutgoing, Reason::Notification)
        );
    }
    // non-status updates cause no work
    broker.notify(Notification::non_status(None), 1).unwrap();
    stopper.stop();
    cycle.join().unwrap();
    assert!(rx.try_iter().all(|(_, r)| r == Reason::Notification));
}

#[test]
fn an_expired_interval_polls_with_reason_interval() {
    let broker = broker();
    let listener = status_listener(&broker);
    // the initial raise is a notification round: consume it first
    listener.take();
    let (tx, rx) = mpsc::channel();
    let service = Service::new(listener)
        .check_triggers(Duration::from_millis(50), move |r| {
            let _ = tx.send(r);
        })
        .check_outgoing(Duration::ZERO, |_| {});
    let stopper = service.stopper();
    let cycle = std::thread::spawn(move || service.run());
    assert_eq!(rx.recv_timeout(LONG).unwrap(), Reason::Startup);
    // with no notifications, the fallback polls at the interval
    for _ in 0..3 {
        assert_eq!(rx.recv_timeout(LONG).unwrap(), Reason::Interval);
    }
    stopper.stop();
    cycle.join().unwrap();
}
