//! The smoltcp notifier against the core broker state, over a smoltcp
//! loopback interface on a simulated clock: a burst coalesces into one
//! datagram with its batch count, the tail-loss probe follows, and a
//! confirmed send is acknowledged.

#![cfg(feature = "smoltcp")]

use flagpost_core::broker::{BrokerState, Config, ListenerSlot};
use flagpost_core::loss::{SenderSlot, Verdict};
use flagpost_core::notifier::{NotifierConfig, NotifierEvent};
use flagpost_core::wire::{AckResult, NotifyRepr, SenderId, MAX_DATAGRAM_LEN};
use flagpost_core::{ChannelId, Duration, Instant, Notification};
use flagpost_embedded::smoltcp_notifier::{to_smoltcp, SmoltcpNotifier};
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet};
use smoltcp::phy::{Loopback, Medium};
use smoltcp::socket::udp;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpEndpoint};

struct World {
    device: Loopback,
    iface: Interface,
    sockets: SocketSet<'static>,
    broker_socket: smoltcp::iface::SocketHandle,
    notifier_socket: smoltcp::iface::SocketHandle,
    broker: BrokerState<[ListenerSlot; 2], [SenderSlot; 2]>,
    received: Vec<NotifyRepr>,
    verdicts: Vec<Verdict>,
}

fn udp_socket() -> udp::Socket<'static> {
    udp::Socket::new(
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 8], vec![0; 1024]),
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 8], vec![0; 1024]),
    )
}

impl World {
    fn new() -> World {
        let mut device = Loopback::new(Medium::Ip);
        let mut iface = Interface::new(
            IfaceConfig::new(HardwareAddress::Ip),
            &mut device,
            to_smoltcp(Instant::ZERO),
        );
        iface.update_ip_addrs(|a| a.push(IpCidr::new(IpAddress::v4(127, 0, 0, 1), 8)).unwrap());
        let mut sockets = SocketSet::new(vec![]);
        let mut b = udp_socket();
        b.bind(16725).unwrap();
        let mut p = udp_socket();
        p.bind(40000).unwrap();
        let broker_socket = sockets.add(b);
        let notifier_socket = sockets.add(p);
        World {
            device,
            iface,
            sockets,
            broker_socket,
            notifier_socket,
            broker: BrokerState::new(
                Config::default(),
                [ListenerSlot::EMPTY; 2],
                [SenderSlot::EMPTY; 2],
            ),
            received: Vec::new(),
            verdicts: Vec::new(),
        }
    }

    /// One round: interface, notifier, broker. Returns the notifier's next deadline.
    fn poll(&mut self, now: Instant, notifier: &mut SmoltcpNotifier<4>) -> Option<Instant> {
        self.iface
            .poll(to_smoltcp(now), &mut self.device, &mut self.sockets);
        let next = notifier.poll(
            now,
            self.sockets
                .get_mut::<udp::Socket<'_>>(self.notifier_socket),
        );
        self.iface
            .poll(to_smoltcp(now), &mut self.device, &mut self.sockets);
        let socket = self.sockets.get_mut::<udp::Socket<'_>>(self.broker_socket);
        let mut acks = Vec::new();
        while let Ok((data, meta)) = socket.recv() {
            let r = self
                .broker
                .handle_datagram(now, data)
                .expect("valid datagram");
            self.received.push(r.notify);
            self.verdicts.push(r.verdict);
            if let Some(ack) = r.ack {
                let mut buf = [0u8; MAX_DATAGRAM_LEN];
                let n = ack.emit(&mut buf).unwrap();
                acks.push((buf[..n].to_vec(), meta.endpoint));
            }
        }
        for (ack, to) in acks {
            socket.send_slice(&ack, to).unwrap();
        }
        self.iface
            .poll(to_smoltcp(now), &mut self.device, &mut self.sockets);
        next
    }
}

fn broker_endpoint() -> IpEndpoint {
    IpEndpoint::new(IpAddress::v4(127, 0, 0, 1), 16725)
}

#[test]
fn a_burst_of_twenty_sms_is_one_datagram_then_a_probe() {
    let mut world = World::new();
    let mut notifier = SmoltcpNotifier::<4>::new(
        NotifierConfig::default(),
        SenderId(0xb0a4d),
        broker_endpoint(),
    );
    let gsm1 = ChannelId::new("gsm1").unwrap();
    let mut now = Instant::ZERO;
    for _ in 0..20 {
        notifier.notify(now, Notification::status(Some(gsm1)), 1);
    }
    // drive it the smoltcp way: poll, then sleep until the returned instant
    for _ in 0..10 {
        match world.poll(now, &mut notifier) {
            Some(at) => now = at.max(now + Duration::from_micros(1)),
            None => break,
        }
    }
    world.poll(now, &mut notifier);
    assert_eq!(world.received.len(), 2, "{:?}", world.received);
    assert_eq!(
        world.received[0].notification,
        Notification::status(Some(gsm1))
    );
    assert_eq!(world.received[0].batch, 20);
    // the probe repeats it, marked as a probe: the broker sees a duplicate
    // and ignores it (counting it as a probe, not a duplicate)
    assert_eq!(world.verdicts, [Verdict::InOrder, Verdict::Duplicate]);
    assert_eq!(
        (world.received[0].probe, world.received[1].probe),
        (false, true)
    );
    assert_eq!(notifier.stats().probes, 1);
}

#[test]
fn a_confirmed_send_is_acknowledged() {
    let mut world = World::new();
    let mut notifier =
        SmoltcpNotifier::<4>::new(NotifierConfig::default(), SenderId(2), broker_endpoint());
    let seq = notifier
        .notify_confirmed(
            Instant::ZERO,
            Notification::channel_update(ChannelId::new("gsm1").unwrap()),
            1,
            Duration::from_secs(1),
        )
        .unwrap();
    let mut now = Instant::ZERO;
    for _ in 0..4 {
        world.poll(now, &mut notifier);
        now += Duration::from_millis(1);
    }
    assert_eq!(
        notifier.poll_event(),
        Some(NotifierEvent::Confirmed {
            seq,
            result: AckResult::Delivered,
            attempts: 1
        })
    );
}
