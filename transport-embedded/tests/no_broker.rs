//! A `ListenerRunner` given an empty list of brokers: bad input, so it
//! neither panics nor spins; its handle says `Closed`.

// The embassy task macro expands to unsafe code of its own.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicBool, Ordering};

use embassy_executor::{Executor, Spawner};
use embassy_net::tcp::TcpSocket;
use embassy_time::{Duration as EDuration, Instant as EInstant, Timer};
use flagpost_embedded::listener::{
    EmbassyListener, EmbassyListenerShared, ListenerConfig, ListenerRunner, ListenerState,
};
use static_cell::StaticCell;

mod common;

use common::network;

static DONE: AtomicBool = AtomicBool::new(false);
static CLOSED: AtomicBool = AtomicBool::new(false);
static LISTENER: EmbassyListenerShared = EmbassyListenerShared::new();

#[embassy_executor::task]
async fn listener(runner: ListenerRunner<'static, 'static>) -> ! {
    runner.run().await
}

/// Looks at the handle's state as the runner changes it, until it is
/// closed or 10 s (of the executor's clock) pass.
#[embassy_executor::task]
async fn watch() {
    let l = EmbassyListener::new(&LISTENER);
    let deadline = EInstant::now() + EDuration::from_secs(10);
    while EInstant::now() < deadline {
        if l.state() == ListenerState::Closed {
            CLOSED.store(true, Ordering::SeqCst);
            break;
        }
        Timer::after(EDuration::from_millis(1)).await;
    }
    DONE.store(true, Ordering::SeqCst);
}

fn start(spawner: Spawner) {
    let stack_b = network(spawner, |_| None);
    static TCP_RX: StaticCell<[u8; 256]> = StaticCell::new();
    static TCP_TX: StaticCell<[u8; 128]> = StaticCell::new();
    let tcp = TcpSocket::new(stack_b, TCP_RX.init([0; 256]), TCP_TX.init([0; 128]));
    let runner = ListenerRunner::new(&LISTENER, tcp, &[], ListenerConfig::new(None), || 7);
    spawner.spawn(listener(runner).unwrap());
    spawner.spawn(watch().unwrap());
}

#[test]
fn an_empty_broker_list_leaves_the_runner_closed() {
    static EXECUTOR: StaticCell<Executor> = StaticCell::new();
    let executor = EXECUTOR.init(Executor::new());
    executor.run_until(start, || DONE.load(Ordering::SeqCst));
    assert!(
        CLOSED.load(Ordering::SeqCst),
        "the runner never said Closed"
    );
}
