//! `flagpost-bench wake`: one notification at a time, through the broker, to
//! a listener in another process — as a raw datagram and through the
//! `Notifier` — beside the bare relay floor, measured interleaved.

use std::net::UdpSocket;

use flagpost_benches::report::{self, Figure, Report, Rule, Section, Unit};
use flagpost_benches::{Latency, Measured};
use flagpost_core::Notification;
use flagpost_std::Notifier;

use crate::ingest::send_notify;
use crate::measure::{
    interleaved, latency_header, latency_row, measure, p50, p99, p999, report_socket, us,
    RELAY_TARGET,
};
use crate::{loopback, Participant, Relay, WARM_UP};

pub(crate) fn wake(samples: u32, report: &mut Report) {
    println!("wake latency, {samples} samples each, one at a time (µs)");
    latency_header(34);
    let row = |name: &str, m: &Measured| latency_row(34, name, m);

    // the floor: A → UDP → B → TCP → C
    let bare = Relay::spawn("_relay_b");
    let mut relay = |_| bare.send(&[0u8; 24]);
    measure(WARM_UP, &bare.sock, &mut relay);
    let floor = measure(samples, &bare.sock, &mut relay);
    row("floor: UDP→relay→TCP→reader", &floor);
    drop(bare);

    // Flagpost: notifier → broker → listener (three processes)
    let broker = Participant::spawn("_broker", &[]);
    let (report_sock, report_addr) = report_socket();
    let _listener = Participant::spawn("_listener", &[broker.addr.to_string(), report_addr]);
    // the default notifier, tail-loss probe included, as users get it
    let notifier = Notifier::new(broker.addr).expect("notifier");
    let mut notify = |_| notifier.notify_status_update(None);
    let raw = UdpSocket::bind(loopback()).expect("bind");
    let mut seq = 0;
    let mut datagram = |_| {
        seq += 1;
        send_notify(&raw, broker.addr, Notification::status(None), 0xbe9c, seq);
    };
    measure(WARM_UP, &report_sock, &mut notify);
    measure(WARM_UP, &report_sock, &mut datagram);
    // interleaved in blocks, so that both paths see the same machine
    let (via_notifier, via_datagram) =
        interleaved(samples, &report_sock, &mut notify, &mut datagram);
    row("flagpost: Notifier (API)", &via_notifier);
    let sent = notifier.stats();
    row("flagpost: raw datagram", &via_datagram);
    println!(
        "  the Notifier sent {} of its {} datagrams inline (from the calling thread)",
        sent.inline, sent.datagrams
    );

    let ratio = |x: &Measured| {
        (
            x.latency.p50_us / floor.latency.p50_us,
            x.latency.p99_us / floor.latency.p99_us,
        )
    };
    let (a50, a99) = ratio(&via_notifier);
    let (b50, b99) = ratio(&via_datagram);
    println!("ratio to floor (p50/p99): Notifier {a50:.2}/{a99:.2}, raw datagram {b50:.2}/{b99:.2} (target ≤ 1.2)");

    for (name, m) in [
        ("Flagpost, raw datagram", &via_datagram),
        ("Flagpost, `Notifier`", &via_notifier),
    ] {
        for (q, quantile, targeted) in [
            ("p50", p50 as fn(&Latency) -> f64, true),
            ("p99", p99, true),
            ("p99.9", p999, false),
        ] {
            let figure = Figure::new(
                Section::Wake,
                format!("{name}: {q}"),
                us(&m.latency, quantile),
                Unit::Micros,
            )
            .floor("relay floor", us(&floor.latency, quantile));
            report.add(if targeted {
                figure.target(Rule::RatioAtMost(1.2), RELAY_TARGET)
            } else {
                figure
            });
        }
    }
    report.note(
        Section::Wake,
        format!(
            "{} samples per path, one at a time; lost reports: floor {}, raw datagram {}, `Notifier` {}; largest sample: floor {:.0} µs, raw datagram {:.0} µs, `Notifier` {:.0} µs.",
            report::fmt_int(u64::from(samples)),
            floor.lost,
            via_datagram.lost,
            via_notifier.lost,
            floor.latency.max_us,
            via_datagram.latency.max_us,
            via_notifier.latency.max_us
        ),
    );
    report.note(
        Section::Wake,
        "The issue's target also asks for p50 and p99 below every peer's in the same run: see Peers.",
    );
    report.add_latency("floor: UDP → relay → TCP", &floor);
    report.add_latency("Flagpost, raw datagram", &via_datagram);
    report.add_latency("Flagpost, Notifier", &via_notifier);
}
