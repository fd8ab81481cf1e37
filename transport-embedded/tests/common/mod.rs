//! The in-memory network the embassy tests share: two embassy-net stacks
//! joined by a channel driver (no root, no kernel sockets: no packet leaves
//! the process; the addresses are from the documentation range), and a
//! minimal broker transport around `flagpost_core::broker` on stack A.

#![allow(dead_code)] // each test uses a subset

use embassy_executor::Spawner;
use embassy_futures::select::{select4, Either4};
use embassy_net::tcp::TcpSocket;
use embassy_net::udp::{PacketMetadata, UdpSocket};
use embassy_net::{Config, Ipv4Address, Ipv4Cidr, Stack, StackResources, StaticConfigV4};
use embassy_net_driver_channel::{self as ch, driver::LinkState};
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::signal::Signal;
use embassy_time::Timer;
use flagpost_core::auth::Keyring;
use flagpost_core::broker::{BrokerState, Config as BrokerConfig, ListenerSlot};
use flagpost_core::loss::SenderSlot;
use flagpost_core::wire::{FrameReader, MAX_DATAGRAM_LEN, MAX_FRAME_LEN};
use flagpost_core::Instant;
use static_cell::StaticCell;

pub(crate) const MTU: usize = 1500;
pub(crate) type Device = ch::Device<'static, MTU>;

/// Signalled to crash and restart the test broker.
pub(crate) static RESTART: Signal<CriticalSectionRawMutex, ()> = Signal::new();

pub(crate) fn now() -> Instant {
    Instant::from_micros(embassy_time::Instant::now().as_micros())
}

pub(crate) fn addr(last: u8) -> Ipv4Address {
    Ipv4Address::new(192, 0, 2, last)
}

pub(crate) fn stack(
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

/// The broker's keys in each of its lives (0, then one more per
/// [`RESTART`]); `None`: keyless.
pub(crate) type Keys = fn(life: u32) -> Option<Keyring>;

/// A minimal embassy broker transport: one UDP socket, one TCP listener,
/// and in each life the keys `keys` gives (then it serves authenticated
/// listeners only).
#[embassy_executor::task]
pub(crate) async fn broker(stack: Stack<'static>, keys: Keys) -> ! {
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
    for life in 0u32.. {
        let mut core = BrokerState::new(
            BrokerConfig {
                // a new run, new challenges
                hash_key: u64::from(life) + 1,
                ..BrokerConfig::default()
            },
            [ListenerSlot::EMPTY; 2],
            [SenderSlot::EMPTY; 2],
        );
        core.set_keys(keys(life));
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
                // in the session's version (2 with a key)
                while let Some(frame) = core.poll_framed(ready) {
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
    unreachable!("a broker has more lives than a u32 counts")
}

/// Brings up both stacks, the wire between them and the broker (with
/// `keys`) on stack A; returns stack B, for the clients.
pub(crate) fn network(spawner: Spawner, keys: Keys) -> Stack<'static> {
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
    spawner.spawn(broker(stack_a, keys).unwrap());
    stack_b
}
