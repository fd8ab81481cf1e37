//! The embassy-net notifier and listener against each other through the
//! core broker state, on two embassy-net stacks joined in memory by a
//! channel driver (no root, no kernel sockets: no packet leaves the
//! process; the addresses are from the documentation range).
//!
//! Stack A runs a minimal broker transport around `flagpost_core::broker`;
//! stack B runs the real `NotifierRunner` and `ListenerRunner`. The test
//! task waits on events only; a watchdog task bounds the run.
//!
//! The listener is given two brokers, the first a port where nothing
//! listens: it fails over to the second at the start, and after the
//! broker's restart it tries the first again and comes back to the second
//! (the core session's order), each time with its reconnect raise.

// The embassy task macro expands to unsafe code of its own.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use embassy_executor::{Executor, Spawner};
use embassy_net::tcp::TcpSocket;
use embassy_net::udp::{PacketMetadata, UdpSocket};
use embassy_time::{Duration as EDuration, Timer};
use flagpost_core::notifier::NotifierConfig;
use flagpost_core::wire::SenderId;
use flagpost_core::{ChannelId, FlagSet, Notification};
use flagpost_embedded::listener::{
    EmbassyListener, EmbassyListenerShared, ListenerConfig, ListenerRunner, ListenerState, Raise,
};
use flagpost_embedded::notifier::{EmbassyNotifier, EmbassyNotifierState, NotifierRunner};
use static_cell::StaticCell;

mod common;

use common::{addr, network, RESTART};

static DONE: AtomicBool = AtomicBool::new(false);
/// 0 running, 1 passed, 2 failed (with the step in FAILED_AT).
static OUTCOME: AtomicU8 = AtomicU8::new(0);
static FAILED_AT: AtomicU8 = AtomicU8::new(0);

static NOTIFIER: EmbassyNotifierState<4> =
    EmbassyNotifierState::new(NotifierConfig::DEFAULT, SenderId(0x60a7));
static LISTENER: EmbassyListenerShared = EmbassyListenerShared::new();

#[embassy_executor::task]
async fn notifier(runner: NotifierRunner<'static, 'static, 4>) -> ! {
    runner.run().await
}

#[embassy_executor::task]
async fn listener(runner: ListenerRunner<'static, 'static>) -> ! {
    runner.run().await
}

#[embassy_executor::task]
async fn watchdog() {
    Timer::after(EDuration::from_secs(30)).await;
    OUTCOME.store(2, Ordering::SeqCst);
    DONE.store(true, Ordering::SeqCst);
}

fn fail(step: u8) {
    FAILED_AT.store(step, Ordering::SeqCst);
    OUTCOME.store(2, Ordering::SeqCst);
    DONE.store(true, Ordering::SeqCst);
}

#[embassy_executor::task]
async fn scenario() {
    let l = EmbassyListener::new(&LISTENER);
    let p = EmbassyNotifier::new(&NOTIFIER);
    // the welcome is a reconnect raise: a re-check, never a shutdown
    l.wait().await;
    if l.state() != ListenerState::Listening {
        return fail(1);
    }
    if l.take_raise()
        != (Raise {
            flags: FlagSet::RECHECK,
            reconnect: true,
        })
    {
        return fail(6);
    }
    // a modem reporting 20 SMS at once: one coalesced status update for gsm1
    for _ in 0..20 {
        p.notify(
            Notification::status(Some(ChannelId::new("gsm1").unwrap())),
            1,
        );
    }
    l.wait().await;
    // a status update raises status and non-status
    if l.take() != flagpost_core::FlagSet::STATUS | flagpost_core::FlagSet::NON_STATUS {
        return fail(2);
    }
    // another channel's update does not reach this listener; its own does,
    // confirmed by an ack
    p.notify(
        Notification::channel_update(ChannelId::new("gsm2").unwrap()),
        1,
    );
    let result = p
        .notify_confirmed(
            Notification::channel_update(ChannelId::new("gsm1").unwrap()),
            1,
            flagpost_core::Duration::from_secs(5),
        )
        .await;
    if result != Ok(flagpost_core::wire::AckResult::Delivered) {
        return fail(3);
    }
    l.wait().await;
    let flags = l.take();
    if flags != flagpost_core::FlagSet::CHANNEL_UPDATE {
        return fail(4);
    }
    if p.stats().datagrams < 2 {
        return fail(5);
    }
    // the broker crashes and comes back: the listener backs off, reconnects
    // and re-checks, marked as a reconnect; no channel shutdown
    RESTART.signal(());
    l.wait().await;
    if l.state() != ListenerState::Listening || !l.check_reconnect() {
        return fail(7);
    }
    if l.check_channel_shutdown() || l.take() != FlagSet::RECHECK || l.check_reconnect() {
        return fail(8);
    }
    OUTCOME.store(1, Ordering::SeqCst);
    DONE.store(true, Ordering::SeqCst);
}

fn start(spawner: Spawner) {
    let stack_b = network(spawner, |_| None);

    static PUB_RX_META: StaticCell<[PacketMetadata; 2]> = StaticCell::new();
    static PUB_TX_META: StaticCell<[PacketMetadata; 4]> = StaticCell::new();
    static PUB_RX: StaticCell<[u8; 128]> = StaticCell::new();
    static PUB_TX: StaticCell<[u8; 4 * 72]> = StaticCell::new();
    let mut udp = UdpSocket::new(
        stack_b,
        PUB_RX_META.init([PacketMetadata::EMPTY; 2]),
        PUB_RX.init([0; 128]),
        PUB_TX_META.init([PacketMetadata::EMPTY; 4]),
        PUB_TX.init([0; 4 * 72]),
    );
    udp.bind(0).unwrap();
    let broker_endpoint = embassy_net::IpEndpoint::new(addr(1).into(), 16725);
    spawner.spawn(notifier(NotifierRunner::new(&NOTIFIER, udp, broker_endpoint, None)).unwrap());

    static TCP_RX: StaticCell<[u8; 256]> = StaticCell::new();
    static TCP_TX: StaticCell<[u8; 128]> = StaticCell::new();
    let tcp = TcpSocket::new(stack_b, TCP_RX.init([0; 256]), TCP_TX.init([0; 128]));
    let config = ListenerConfig::new(Some(ChannelId::new("gsm1").unwrap()));
    static BROKERS: StaticCell<[embassy_net::IpEndpoint; 2]> = StaticCell::new();
    let nothing_there = embassy_net::IpEndpoint::new(addr(1).into(), 16726);
    spawner.spawn(
        listener(ListenerRunner::new(
            &LISTENER,
            tcp,
            BROKERS.init([nothing_there, broker_endpoint]),
            config,
            || 0x1234_5678,
        ))
        .unwrap(),
    );
    spawner.spawn(scenario().unwrap());
    spawner.spawn(watchdog().unwrap());
}

#[test]
fn notifier_and_listener_through_the_core_broker() {
    static EXECUTOR: StaticCell<Executor> = StaticCell::new();
    let executor = EXECUTOR.init(Executor::new());
    executor.run_until(start, || DONE.load(Ordering::SeqCst));
    assert_eq!(
        OUTCOME.load(Ordering::SeqCst),
        1,
        "failed at step {} (0: watchdog fired)",
        FAILED_AT.load(Ordering::SeqCst)
    );
}
