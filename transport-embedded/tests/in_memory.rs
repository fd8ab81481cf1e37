//! The embassy-net notifier and listener against each other through the
//! core broker state, on two embassy-net stacks joined in memory by a
//! channel driver (no root, no kernel sockets: no packet leaves the
//! process; the addresses are from the documentation range).
//!
//! Stack A runs a minimal broker transport around `flagpost_core::broker`;
//! stack B runs the real `NotifierRunner` and `ListenerRunner`. The test
//! task waits on events only; a watchdog task bounds the run.

// The embassy task macro expands to unsafe code of its own.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use embassy_executor::{Executor, Spawner};
use embassy_futures::select::{select4, Either4};
use embassy_net::tcp::TcpSocket;
use embassy_net::udp::{PacketMetadata, UdpSocket};
use embassy_net::{Config, Ipv4Address, Ipv4Cidr, Stack, StackResources, StaticConfigV4};
use embassy_net_driver_channel::{self as ch, driver::LinkState};
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::signal::Signal;
use embassy_time::{Duration as EDuration, Timer};
use flagpost_core::broker::{BrokerState, Config as BrokerConfig, ListenerSlot};
use flagpost_core::loss::SenderSlot;
use flagpost_core::notifier::NotifierConfig;
use flagpost_core::wire::{FrameReader, SenderId, MAX_DATAGRAM_LEN, MAX_FRAME_LEN};
use flagpost_core::{ChannelId, FlagSet, Instant, Notification};
use flagpost_embedded::listener::{
    EmbassyListener, EmbassyListenerShared, ListenerConfig, ListenerRunner, ListenerState, Raise,
};
use flagpost_embedded::notifier::{EmbassyNotifier, EmbassyNotifierState, NotifierRunner};
use static_cell::StaticCell;

const MTU: usize = 1500;
type Device = ch::Device<'static, MTU>;

static DONE: AtomicBool = AtomicBool::new(false);
/// 0 running, 1 passed, 2 failed (with the step in FAILED_AT).
static OUTCOME: AtomicU8 = AtomicU8::new(0);
static FAILED_AT: AtomicU8 = AtomicU8::new(0);

static NOTIFIER: EmbassyNotifierState<4> =
    EmbassyNotifierState::new(NotifierConfig::DEFAULT, SenderId(0x60a7));
static LISTENER: EmbassyListenerShared = EmbassyListenerShared::new();
/// Signalled to crash and restart the test broker.
static RESTART: Signal<CriticalSectionRawMutex, ()> = Signal::new();

fn now() -> Instant {
    Instant::from_micros(embassy_time::Instant::now().as_micros())
}

fn addr(last: u8) -> Ipv4Address {
    Ipv4Address::new(192, 0, 2, last)
}

fn stack(
    device: Device,
    ip: u8,
    resources: &'static mut StackResources<4>,
) -> (Stack<'static>, embassy_net::Runner<'static, Device>) {
    let config = Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(addr(ip), 24),
        gateway: None,
        dns_servers: Default::default(),
    });
    embassy_net::new(device, config, resources, u64::from(ip))
}

#[embassy_executor::task(pool_size = 2)]
async fn net(mut runner: embassy_net::Runner<'static, Device>) -> ! {
    runner.run().await
}

/// Copies every frame one stack sends into the other's receive queue.
#[embassy_executor::task(pool_size = 2)]
async fn wire(mut from: ch::TxRunner<'static, MTU>, mut to: ch::RxRunner<'static, MTU>) -> ! {
    loop {
        let packet = from.tx_buf().await;
        let n = packet.len();
        let buf = to.rx_buf().await;
        buf[..n].copy_from_slice(&packet[..n]);
        to.rx_done(n);
        from.tx_done();
    }
}

/// A minimal embassy broker transport: one UDP socket, one TCP listener.
#[embassy_executor::task]
async fn broker(stack: Stack<'static>) -> ! {
    static UDP_RX_META: StaticCell<[PacketMetadata; 4]> = StaticCell::new();
    static UDP_TX_META: StaticCell<[PacketMetadata; 4]> = StaticCell::new();
    static UDP_RX: StaticCell<[u8; 512]> = StaticCell::new();
    static UDP_TX: StaticCell<[u8; 512]> = StaticCell::new();
    static TCP_RX: StaticCell<[u8; 512]> = StaticCell::new();
    static TCP_TX: StaticCell<[u8; 512]> = StaticCell::new();
    let mut udp = UdpSocket::new(
        stack,
        UDP_RX_META.init([PacketMetadata::EMPTY; 4]),
        UDP_RX.init([0; 512]),
        UDP_TX_META.init([PacketMetadata::EMPTY; 4]),
        UDP_TX.init([0; 512]),
    );
    udp.bind(16725).unwrap();
    let mut tcp = TcpSocket::new(stack, TCP_RX.init([0; 512]), TCP_TX.init([0; 512]));
    // Each round is one broker life: RESTART ends it as a crash would (the
    // connection is reset, the state is lost).
    loop {
        let mut core = BrokerState::new(
            BrokerConfig::default(),
            [ListenerSlot::EMPTY; 2],
            [SenderSlot::EMPTY; 2],
        );
        tcp.accept(16725).await.unwrap();
        let id = core.open(now()).unwrap();
        let mut dgram = [0u8; MAX_DATAGRAM_LEN];
        let mut reader = FrameReader::<{ 2 * MAX_FRAME_LEN }>::new();
        loop {
            let timer = Timer::at(
                core.poll_timeout()
                    .map_or(embassy_time::Instant::MAX, |at| {
                        embassy_time::Instant::from_micros(at.as_micros())
                    }),
            );
            match select4(
                udp.recv_from(&mut dgram),
                tcp.read(reader.unfilled()),
                timer,
                RESTART.wait(),
            )
            .await
            {
                Either4::First(Ok((n, meta))) => {
                    if let Ok(r) = core.handle_datagram(now(), &dgram[..n]) {
                        if let Some(ack) = r.ack {
                            let mut out = [0u8; MAX_DATAGRAM_LEN];
                            let len = ack.emit(&mut out).unwrap();
                            udp.send_to(&out[..len], meta.endpoint).await.unwrap();
                        }
                    }
                }
                Either4::Second(Ok(n)) if n > 0 => {
                    reader.filled(n);
                    while let Some(frame) = reader.next_frame() {
                        let _ = core.handle_frame(now(), id, frame.unwrap());
                    }
                }
                Either4::Second(_) => panic!("listener connection lost"),
                Either4::Fourth(()) => {
                    tcp.abort();
                    let _ = tcp.flush().await;
                    break;
                }
                _ => core.handle_timeout(now()),
            }
            if let Some(event) = core.poll_event() {
                panic!("unexpected broker event {event:?}");
            }
            while let Some(ready) = core.poll_ready() {
                while let Some(frame) = core.poll_frame(ready) {
                    let mut out = [0u8; MAX_FRAME_LEN];
                    let n = frame.emit(&mut out).unwrap();
                    let mut written = 0;
                    while written < n {
                        written += tcp.write(&out[written..n]).await.unwrap();
                    }
                }
            }
        }
    }
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
    static CHAN_A: StaticCell<ch::State<MTU, 4, 4>> = StaticCell::new();
    static CHAN_B: StaticCell<ch::State<MTU, 4, 4>> = StaticCell::new();
    static RES_A: StaticCell<StackResources<4>> = StaticCell::new();
    static RES_B: StaticCell<StackResources<4>> = StaticCell::new();
    let hw = ch::driver::HardwareAddress::Ip;
    let (runner_a, device_a) = ch::new(CHAN_A.init(ch::State::new()), hw);
    let (runner_b, device_b) = ch::new(CHAN_B.init(ch::State::new()), hw);
    let (state_a, rx_a, tx_a) = runner_a.split();
    let (state_b, rx_b, tx_b) = runner_b.split();
    state_a.set_link_state(LinkState::Up);
    state_b.set_link_state(LinkState::Up);
    let (stack_a, net_a) = stack(device_a, 1, RES_A.init(StackResources::new()));
    let (stack_b, net_b) = stack(device_b, 2, RES_B.init(StackResources::new()));
    spawner.spawn(net(net_a).unwrap());
    spawner.spawn(net(net_b).unwrap());
    spawner.spawn(wire(tx_a, rx_b).unwrap());
    spawner.spawn(wire(tx_b, rx_a).unwrap());
    spawner.spawn(broker(stack_a).unwrap());

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
    spawner.spawn(
        listener(ListenerRunner::new(
            &LISTENER,
            tcp,
            broker_endpoint,
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
