//! The listener's async face (feature `tokio`) against a real broker on
//! loopback: `wait_async`, `next_raise` and the `raises` stream wake on a
//! notification, and end when the listener stops.
#![cfg(feature = "tokio")]

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use flagpost_std::core::FlagSet;
use flagpost_std::{Broker, BrokerConfig, BrokerHandle, Listener, Notifier};
use futures_core::Stream;
use tokio::time::timeout;

const LONG: Duration = Duration::from_secs(10);

fn broker() -> BrokerHandle {
    Broker::spawn(BrokerConfig {
        bind: vec!["127.0.0.1:0".parse().unwrap()],
        ..BrokerConfig::default()
    })
    .unwrap()
}

#[tokio::test]
async fn next_raise_wakes_on_a_notification_over_tcp() {
    let broker = broker();
    let listener = Listener::connect(broker.local_addr()).unwrap();
    // the welcome's reconnect raise comes first
    let first = timeout(LONG, listener.next_raise()).await.unwrap().unwrap();
    assert!(first.reconnect, "{first:?}");
    // nothing more is pending: the wait is pending, not spinning through
    assert!(timeout(Duration::from_millis(20), listener.wait_async())
        .await
        .is_err());
    Notifier::new(broker.local_addr())
        .unwrap()
        .notify_non_status_update();
    let raise = timeout(LONG, listener.next_raise()).await.unwrap().unwrap();
    assert_eq!((raise.flags, raise.reconnect), (FlagSet::NON_STATUS, false));
    broker.shutdown();
}

#[tokio::test]
async fn the_raises_stream_yields_and_ends_when_the_listener_stops() {
    let broker = broker();
    let listener = Arc::new(Listener::builder().local(&broker).unwrap());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let task = {
        let listener = listener.clone();
        tokio::spawn(async move {
            let mut raises = listener.raises();
            while let Some(raise) = poll_fn(|cx| Pin::new(&mut raises).poll_next(cx)).await {
                let _ = tx.send(raise);
            }
        })
    };
    // the welcome's reconnect raise first: the listener is listening, so
    // the notification below cannot come before it
    let first = timeout(LONG, rx.recv()).await.unwrap().unwrap();
    assert!(first.reconnect, "{first:?}");
    broker
        .notify(flagpost_std::core::Notification::status(None), 1)
        .unwrap();
    let raise = timeout(LONG, rx.recv()).await.unwrap().unwrap();
    // (a status update raises non-status too: the views refresh)
    assert!(
        raise.flags.contains(FlagSet::STATUS) && !raise.reconnect,
        "{raise:?}"
    );
    listener.stop();
    timeout(LONG, task).await.unwrap().unwrap();
    assert!(
        !listener.wait_async().await,
        "a stopped listener never waits"
    );
    broker.shutdown();
}
