//! A listener that stops reading, against the broker as its own process
//! (`flagpost serve`): the healthy listener is not delayed, nobody is
//! closed, the stuck socket really filled up (the broker coalesced instead
//! of queueing), and the broker's resident memory stays flat.

#![cfg(target_os = "linux")]

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::process::Command;
use std::time::Duration;

use flagpost_std::core::wire::{FrameRepr, HelloRepr, MAX_FRAME_LEN};
use flagpost_std::core::{FlagSet, Notification};
use flagpost_std::Listener;

mod common;

use common::BIN;
const LONG: Duration = Duration::from_secs(10);

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_stuck_listener_delays_nobody_and_broker_memory_stays_flat() {
    let server = common::Server::start(&[]);
    let addr: std::net::SocketAddr = server.addr.parse().unwrap();
    let pid = server.child.id();

    // hello, welcome, then it never reads again
    let mut stuck = TcpStream::connect(addr).unwrap();
    socket2::SockRef::from(&stuck)
        .set_recv_buffer_size(2048)
        .unwrap();
    let mut buf = [0u8; MAX_FRAME_LEN];
    let hello = FrameRepr::Hello(HelloRepr {
        interest: FlagSet::ALL,
        channel: None,
        keepalive_secs: 0,
    });
    let n = hello.emit(&mut buf).unwrap();
    stuck.write_all(&buf[..n]).unwrap();
    stuck.set_read_timeout(Some(LONG)).unwrap();
    stuck.read_exact(&mut buf[..18]).unwrap();

    let healthy = Listener::connect(addr).unwrap();
    assert!(healthy.wait_listening(LONG));
    healthy.wait(LONG);
    healthy.take();

    // Distinct datagrams (one per round trip to the healthy listener, so
    // none coalesce before the broker): each is a chance to write a frame.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut seq = 0u32;
    let mut round = |rounds: u32| {
        for _ in 0..rounds {
            seq += 1;
            let kind = if seq.is_multiple_of(2) {
                Notification::status(None)
            } else {
                Notification::non_status(None)
            };
            common::send_notify(&udp, addr, kind, 7, seq).unwrap();
            assert!(
                healthy.wait(LONG),
                "healthy listener starved at datagram {seq}"
            );
            healthy.take();
        }
    };
    round(2_000);
    let before = rss_kib(pid);
    round(30_000);
    let after = rss_kib(pid);
    assert!(
        after <= before + 1024,
        "broker RSS grew from {before} KiB to {after} KiB"
    );

    // the stuck socket holds far fewer than one frame per datagram: the
    // broker hit its limit and coalesced the rest in the fixed outbox
    stuck.set_nonblocking(true).unwrap();
    let mut queued = 0usize;
    let mut chunk = [0u8; 4096];
    while let Ok(n) = stuck.read(&mut chunk) {
        if n == 0 {
            break;
        }
        queued += n;
    }
    let frames_if_never_stuck = 32_000 * 14;
    assert!(
        queued < frames_if_never_stuck / 4,
        "stuck socket took {queued} bytes"
    );

    let out = Command::new(BIN)
        .args(["stats", "--broker", &addr.to_string()])
        .output()
        .unwrap();
    let stats = String::from_utf8_lossy(&out.stdout);
    assert!(
        stats.contains("flagpost_listeners{state=\"listening\"} 2"),
        "{stats}"
    );
    drop(server);
}
