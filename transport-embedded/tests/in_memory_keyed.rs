//! The embassy-net listener authenticating with a key, against the core
//! broker state on the in-memory network of `in_memory.rs`: the handshake
//! before the welcome, a signed notification (the notifier signs with the
//! same key), and a broker restart into a key rotation (new key, the old
//! one still accepted), after which the listener authenticates again.

// The embassy task macro expands to unsafe code of its own.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::LazyLock;

use embassy_executor::{Executor, Spawner};
use embassy_net::tcp::TcpSocket;
use embassy_net::udp::{PacketMetadata, UdpSocket};
use embassy_time::{Duration as EDuration, Timer};
use flagpost_core::auth::{Key, Keyring};
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
    EmbassyNotifierState::new(NotifierConfig::DEFAULT, SenderId(0x60a8));
static LISTENER: EmbassyListenerShared = EmbassyListenerShared::new();

/// The board's key (from its configuration block, on a real board).
static KEY: LazyLock<Key> = LazyLock::new(|| Key::new(&[0x42; 32]).unwrap());

/// The broker's keys: the board's, then (after a restart) a new key with
/// the board's still accepted, as during a rotation.
fn keys(life: u32) -> Option<Keyring> {
    let ring = Keyring::new(KEY.clone());
    Some(match life {
        0 => ring,
        _ => Keyring::new(Key::new(&[0x43; 32]).unwrap()).with_previous(KEY.clone()),
    })
}

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
    let recheck = Raise {
        flags: FlagSet::RECHECK,
        reconnect: true,
    };
    // authenticated, then welcomed: the reconnect raise
    l.wait().await;
    if l.state() != ListenerState::Listening || l.auth_error().is_some() {
        return fail(1);
    }
    if l.take_raise() != recheck {
        return fail(2);
    }
    // a signed channel shutdown reaches it
    p.notify(
        Notification::channel_shutdown(ChannelId::new("gsm1").unwrap()),
        1,
    );
    l.wait().await;
    if l.take() != FlagSet::CHANNEL_SHUTDOWN {
        return fail(3);
    }
    // the broker restarts with a new key, still accepting the board's: the
    // listener authenticates again and re-checks
    RESTART.signal(());
    l.wait().await;
    if l.state() != ListenerState::Listening || l.take_raise() != recheck {
        return fail(4);
    }
    if l.auth_error().is_some() {
        return fail(5);
    }
    OUTCOME.store(1, Ordering::SeqCst);
    DONE.store(true, Ordering::SeqCst);
}

fn start(spawner: Spawner) {
    let stack_b = network(spawner, keys);

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
    let signer: &'static Key = &KEY;
    spawner.spawn(
        notifier(NotifierRunner::new(
            &NOTIFIER,
            udp,
            broker_endpoint,
            Some(signer),
        ))
        .unwrap(),
    );

    static TCP_RX: StaticCell<[u8; 256]> = StaticCell::new();
    static TCP_TX: StaticCell<[u8; 128]> = StaticCell::new();
    let tcp = TcpSocket::new(stack_b, TCP_RX.init([0; 256]), TCP_TX.init([0; 128]));
    let config = ListenerConfig::new(Some(ChannelId::new("gsm1").unwrap()));
    // the seed: from the board's RNG at boot, on a real board
    static BROKERS: StaticCell<[embassy_net::IpEndpoint; 1]> = StaticCell::new();
    let brokers = BROKERS.init([broker_endpoint]);
    let runner = ListenerRunner::new(&LISTENER, tcp, brokers, config, || 0x1234_5678)
        .with_key(KEY.clone(), [0x5e; 16]);
    spawner.spawn(listener(runner).unwrap());
    spawner.spawn(scenario().unwrap());
    spawner.spawn(watchdog().unwrap());
}

#[test]
fn a_keyed_listener_authenticates_through_a_restart_into_a_rotation() {
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
