//! A processing service: checks triggers and outgoing messages the moment a
//! status update arrives, and polls the database only as a fallback.
//!
//! ```sh
//! cargo run -p flagpost-std --example service                 # self-contained demo
//! cargo run -p flagpost-std --example service -- 127.0.0.1:16725   # against a running broker
//! ```
//!
//! Without an address it embeds a broker, notifies a few status updates
//! from another thread, and exits after handling them. With one, it runs
//! until Ctrl-C.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use flagpost_std::core::schedule::Reason;
use flagpost_std::core::FlagSet;
use flagpost_std::{Broker, BrokerConfig, Listener, Notifier, Service};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let arg = std::env::args().nth(1);
    let (broker, addr) = match &arg {
        Some(addr) => (None, addr.parse()?),
        None => {
            let broker = Broker::spawn(BrokerConfig {
                bind: vec!["127.0.0.1:0".parse()?],
                ..BrokerConfig::default()
            })?;
            let addr = broker.local_addr();
            (Some(broker), addr)
        }
    };
    let listener = Arc::new(
        Listener::builder()
            .interest(FlagSet::STATUS)
            .connect(addr)?,
    );
    let (done, handled) = mpsc::channel();
    let done_outgoing = done.clone();
    let service = Service::new(listener.clone())
        // poll triggers every 30 s as a fallback; never poll outgoing
        .check_triggers(Duration::from_secs(30), move |why: Reason| {
            println!("check triggers   ({why:?})");
            let _ = done.send(());
        })
        .check_outgoing(Duration::ZERO, move |why: Reason| {
            println!("check outgoing   ({why:?})");
            let _ = done_outgoing.send(());
        });
    let stopper = service.stopper();
    let cycle = std::thread::spawn(move || service.run());

    if broker.is_some() {
        // demo: three batches of new messages, one status update each
        assert!(
            listener.wait_listening(Duration::from_secs(5)),
            "broker not reachable"
        );
        let notifier = Notifier::new(addr)?;
        for batch in [5, 20, 1] {
            handled.recv_timeout(Duration::from_secs(5))?; // triggers done
            handled.recv_timeout(Duration::from_secs(5))?; // outgoing done
            println!("-- {batch} new messages stored, notifying");
            notifier.notify(flagpost_std::core::Notification::status(None), batch);
        }
        handled.recv_timeout(Duration::from_secs(5))?;
        handled.recv_timeout(Duration::from_secs(5))?;
        stopper.stop();
    } else {
        let on_signal = stopper.clone();
        ctrlc::set_handler(move || on_signal.stop())?;
    }
    cycle.join().map_err(|_| "service thread panicked")?;
    if let Some(b) = broker {
        b.shutdown();
        b.join()?;
    }
    Ok(())
}
