//! Runs the broker's core state with three simulated listeners and one
//! sender on a simulated clock, printing what each listener sees. A stand-in
//! main job until the std broker on port 16725 exists; it exits by itself.

use flagpost_core::broker::Config;
use flagpost_core::{ChannelId, Duration, FlagSet, Notification};
use flagpost_tests::sim::{Sim, SimSender};

fn main() {
    let mut sim = Sim::new(Config::default(), 16);
    let names = ["manager (all channels)", "channel gsm1", "channel gsm2"];
    let refs = [
        sim.add_listener(None, FlagSet::ALL),
        sim.add_listener(Some("gsm1"), FlagSet::ALL),
        sim.add_listener(Some("gsm2"), FlagSet::ALL),
    ];
    sim.step();
    let gsm1 = ChannelId::new("gsm1").expect("valid channel");
    let mut sender = SimSender::new(0x5eed);
    let script = [
        ("connect", None),
        (
            "20 SMS arrive on gsm1 (one batched status update)",
            Some(Notification::status(Some(gsm1))),
        ),
        (
            "a message's text is edited (non-status)",
            Some(Notification::non_status(None)),
        ),
        (
            "gsm1 is reconfigured (channel update)",
            Some(Notification::channel_update(gsm1)),
        ),
    ];
    for (what, notification) in script {
        if let Some(n) = notification {
            let datagram = sender.datagram(n, 20);
            sim.datagram(&datagram);
        }
        println!("t={} {what}", sim.now);
        for (name, r) in names.iter().zip(refs) {
            println!("    {name:<24} sees {}", sim.listener(r).flags.take());
        }
        sim.advance(Duration::from_secs(1));
    }
    let s = sim.broker.as_ref().map(|b| b.stats()).unwrap_or_default();
    println!(
        "broker: {} datagrams, {} flags frames, {} raises ({} coalesced)",
        s.datagrams, s.flags_frames, s.raises, s.raises_coalesced
    );
}
