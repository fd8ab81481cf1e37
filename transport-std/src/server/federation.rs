//! The broker's NATS federation (`federation = { nats = "nats://…" }`): a
//! thread of its own, outside the core and the broker's loop, that holds
//! one NATS connection (async-nats on a current-thread tokio runtime),
//! publishes this broker's federation messages on the subject and hands the
//! loop those the other brokers publish. The core decides everything else
//! (what to publish, loops, duplicates, keys); this module only moves bytes.
//!
//! ```text
//! loop  ── try_send (OUT_QUEUE) ──▶ publisher task ──▶ NATS subject
//! loop  ◀── try_recv (IN_QUEUE) + waker ── subscriber task ◀── NATS subject
//! loop  ◀── `lost` flag + waker ── link events (connected, disconnected)
//! ```
//!
//! * The loop never waits on NATS: a full outgoing queue drops the message
//!   (`federation_send_drops`) and the publisher then sends the re-check
//!   message, so that the other brokers raise a re-check; a full incoming
//!   queue drops the message (`federation_receive_drops`) and the loop
//!   raises a re-check on its own listeners.
//! * `federation_connected` is 1 once the server has this broker's
//!   subscription (a flush after each connect), 0 from a disconnect on.
//! * The link is retried forever (async-nats' reconnects, also for the
//!   first connect) with `no_echo`: a broker does not hear itself. When it
//!   comes back after a loss, messages either way may have been lost: the
//!   loop raises a re-check on its listeners and the thread publishes the
//!   re-check message for the other brokers.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use async_nats::{Client, ConnectOptions, Event};
use bytes::Bytes;
use flagpost_core::broker::TransportStats;
use flagpost_core::wire::federation::MAX_FEDERATED_LEN;
use flagpost_core::{Instant, Notification};
use tokio::sync::{mpsc as tmpsc, oneshot};
use tracing::{info, warn};

use super::{BrokerHandle, HeapBroker};
use crate::config::FederationConfig;

/// Messages waiting to be published, at most.
const OUT_QUEUE: usize = 8192;
/// Received messages waiting for the loop, at most.
const IN_QUEUE: usize = 8192;
/// How long a stopping broker waits for the thread to end.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// What the thread tells the loop, through atomics.
#[derive(Debug, Default)]
struct Link {
    published: AtomicU64,
    /// Publishes that failed (counted as send drops).
    send_errors: AtomicU64,
    receive_drops: AtomicU64,
    link_losses: AtomicU64,
    connected: AtomicBool,
    /// Messages from the others may have been lost: raise a re-check here.
    lost: AtomicBool,
    /// Messages of this broker were dropped: publish the re-check message.
    dropped: AtomicBool,
    /// The loop was woken for received messages and has not drained them
    /// yet: one wake-up for a burst, not one per message.
    woken: AtomicBool,
    /// The re-check message (the loop writes it; a key change rewrites it).
    recheck: Mutex<Bytes>,
}

/// The loop's side of the federation; dropping it stops the thread.
pub(super) struct Federation {
    out: tmpsc::Sender<Bytes>,
    inbound: mpsc::Receiver<Bytes>,
    link: Arc<Link>,
    buf: Box<[u8]>,
    send_drops: u64,
    stop: Option<oneshot::Sender<()>>,
    done: mpsc::Receiver<()>,
}

impl Federation {
    /// Starts the thread; it connects (and reconnects) in the background.
    pub(super) fn start(
        config: &FederationConfig,
        core: &HeapBroker,
        broker: BrokerHandle,
    ) -> std::io::Result<Federation> {
        let (out, out_rx) = tmpsc::channel(OUT_QUEUE);
        let (in_tx, inbound) = mpsc::sync_channel(IN_QUEUE);
        let (stop, stopped) = oneshot::channel();
        let (done_tx, done) = mpsc::channel();
        let link = Arc::new(Link::default());
        let mut federation = Federation {
            out,
            inbound,
            link: link.clone(),
            buf: vec![0; MAX_FEDERATED_LEN].into_boxed_slice(),
            send_drops: 0,
            stop: Some(stop),
            done,
        };
        federation.keys_changed(core);
        let thread = Thread {
            url: config.nats.clone(),
            subject: config.subject.clone(),
            link,
            broker,
        };
        std::thread::Builder::new()
            .name("flagpost-federation".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                match runtime {
                    Ok(rt) => rt.block_on(thread.run(out_rx, in_tx, stopped)),
                    Err(error) => warn!(%error, "cannot start the federation's runtime"),
                }
                let _ = done_tx.send(());
            })?;
        Ok(federation)
    }

    /// The re-check message again, after the keys changed (a reload).
    pub(super) fn keys_changed(&mut self, core: &HeapBroker) {
        if let Ok(n) = core.recheck_message(&mut self.buf) {
            let bytes = Bytes::copy_from_slice(&self.buf[..n]);
            *self.link.recheck.lock().unwrap_or_else(|p| p.into_inner()) = bytes;
        }
    }

    /// Publishes an accepted datagram (`bytes` as received).
    pub(super) fn datagram(&mut self, core: &HeapBroker, bytes: &[u8]) {
        if let Ok(n) = core.federate(bytes, &mut self.buf) {
            self.send(n);
        }
    }

    /// Publishes an in-process notification.
    pub(super) fn local(&mut self, core: &mut HeapBroker, n: &Notification, batch: u32) {
        if let Ok(len) = core.federate_local(n, batch, &mut self.buf) {
            self.send(len);
        }
    }

    fn send(&mut self, len: usize) {
        let message = Bytes::copy_from_slice(&self.buf[..len]);
        if self.out.try_send(message).is_err() {
            self.send_drops += 1;
            self.link.dropped.store(true, Ordering::Relaxed);
        }
    }

    /// Feeds what the other brokers published to the core, and a re-check
    /// when something may have been lost.
    pub(super) fn receive(&mut self, core: &mut HeapBroker, now: Instant) {
        // before draining: a message queued from now on wakes the loop again
        self.link.woken.store(false, Ordering::SeqCst);
        while let Ok(message) = self.inbound.try_recv() {
            // errors are counted by the core (malformed, unauthorized, loop)
            let _ = core.handle_federated(now, &message);
        }
        if self.link.lost.swap(false, Ordering::Relaxed) {
            core.federation_lost(now);
        }
    }

    /// Copies the thread's counters into the broker's table.
    pub(super) fn stats(&self, t: &mut TransportStats) {
        let link = &self.link;
        t.federation_published = link.published.load(Ordering::Relaxed);
        t.federation_send_drops = self.send_drops + link.send_errors.load(Ordering::Relaxed);
        t.federation_receive_drops = link.receive_drops.load(Ordering::Relaxed);
        t.federation_link_losses = link.link_losses.load(Ordering::Relaxed);
        t.federation_connected = u64::from(link.connected.load(Ordering::Relaxed));
    }
}

impl Drop for Federation {
    fn drop(&mut self) {
        drop(self.stop.take());
        if self.done.recv_timeout(STOP_GRACE).is_err() {
            warn!("the federation thread did not stop in time");
        }
    }
}

/// What the thread owns.
struct Thread {
    url: String,
    subject: String,
    link: Arc<Link>,
    broker: BrokerHandle,
}

impl Thread {
    async fn run(
        self,
        out: tmpsc::Receiver<Bytes>,
        inbound: mpsc::SyncSender<Bytes>,
        stop: oneshot::Receiver<()>,
    ) {
        let (events_tx, mut events) = tmpsc::unbounded_channel();
        let options = ConnectOptions::new()
            .name("flagpost broker")
            .no_echo()
            .retry_on_initial_connect()
            .max_reconnects(None)
            .event_callback(move |event| {
                let tx = events_tx.clone();
                async move {
                    let _ = tx.send(event);
                }
            });
        let client = match options.connect(self.url.as_str()).await {
            Ok(client) => client,
            Err(error) => {
                warn!(url = %self.url, %error, "federation: cannot use the NATS server");
                return;
            }
        };
        let subscriber = match client.subscribe(self.subject.clone()).await {
            Ok(s) => s,
            Err(error) => {
                warn!(subject = %self.subject, %error, "federation: cannot subscribe");
                return;
            }
        };
        let link = self.link.clone();
        let broker = self.broker.clone();
        tokio::spawn(deliver(subscriber, inbound, link, broker));
        tokio::spawn(publish(
            client.clone(),
            self.subject.clone(),
            out,
            self.link.clone(),
        ));
        let mut stop = stop;
        let mut ever = false;
        let mut lost = false;
        loop {
            tokio::select! {
                _ = &mut stop => break,
                event = events.recv() => match event {
                    Some(event) => self.event(&client, event, &mut ever, &mut lost),
                    None => break,
                },
            }
        }
    }

    /// Acts on a link event: `ever` (connected once), `lost` (disconnected
    /// since).
    fn event(&self, client: &Client, event: Event, ever: &mut bool, lost: &mut bool) {
        match event {
            Event::Connected => {
                // up once the server has our subscription: a flush (PING,
                // PONG) after the client's (re)subscribe
                tokio::spawn(mark_connected(
                    client.clone(),
                    self.link.clone(),
                    self.broker.clone(),
                ));
                if *ever && *lost {
                    info!(url = %self.url, "federation link back: raising a re-check here and on the other brokers");
                    self.link.lost.store(true, Ordering::Relaxed);
                    self.link.dropped.store(true, Ordering::Relaxed);
                    tokio::spawn(publish_recheck(
                        client.clone(),
                        self.subject.clone(),
                        self.link.clone(),
                    ));
                } else {
                    info!(url = %self.url, subject = %self.subject, "federation link up");
                }
                *ever = true;
                *lost = false;
            }
            Event::Disconnected | Event::Closed => {
                if self.link.connected.swap(false, Ordering::Relaxed) {
                    self.link.link_losses.fetch_add(1, Ordering::Relaxed);
                    warn!(url = %self.url, "federation link down: retrying");
                }
                *lost = true;
            }
            Event::SlowConsumer(_) => {
                // the client dropped messages it received for us
                self.link.receive_drops.fetch_add(1, Ordering::Relaxed);
                self.link.lost.store(true, Ordering::Relaxed);
            }
            other => info!(event = %other, "federation"),
        }
        let _ = self.broker.wake();
    }
}

/// Sets the `connected` gauge once the server answers after our
/// subscription.
async fn mark_connected(client: Client, link: Arc<Link>, broker: BrokerHandle) {
    if client.flush().await.is_ok() {
        link.connected.store(true, Ordering::Relaxed);
        let _ = broker.wake();
    }
}

/// Hands every message received to the loop.
async fn deliver(
    mut subscriber: async_nats::Subscriber,
    inbound: mpsc::SyncSender<Bytes>,
    link: Arc<Link>,
    broker: BrokerHandle,
) {
    use futures_core::Stream;
    while let Some(message) =
        std::future::poll_fn(|cx| Pin::new(&mut subscriber).poll_next(cx)).await
    {
        match inbound.try_send(message.payload) {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(_)) => {
                link.receive_drops.fetch_add(1, Ordering::Relaxed);
                link.lost.store(true, Ordering::Relaxed);
            }
            Err(mpsc::TrySendError::Disconnected(_)) => return,
        }
        if !link.woken.swap(true, Ordering::SeqCst) && broker.wake().is_err() {
            return;
        }
    }
}

/// Publishes what the loop hands over, and the re-check message after a
/// drop.
async fn publish(
    client: Client,
    subject: String,
    mut out: tmpsc::Receiver<Bytes>,
    link: Arc<Link>,
) {
    while let Some(message) = out.recv().await {
        match client.publish(subject.clone(), message).await {
            Ok(()) => {
                link.published.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                link.send_errors.fetch_add(1, Ordering::Relaxed);
                link.dropped.store(true, Ordering::Relaxed);
                warn!(%error, "federation: publish failed");
            }
        }
        // the loop dropped some (a full queue), or a publish failed
        if link.dropped.load(Ordering::Relaxed) {
            publish_recheck(client.clone(), subject.clone(), link.clone()).await;
        }
    }
}

/// Publishes the re-check message once (clearing `dropped`).
async fn publish_recheck(client: Client, subject: String, link: Arc<Link>) {
    if !link.dropped.swap(false, Ordering::Relaxed) {
        return;
    }
    let message = link
        .recheck
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if client.publish(subject, message).await.is_err() {
        link.send_errors.fetch_add(1, Ordering::Relaxed);
        link.dropped.store(true, Ordering::Relaxed);
    } else {
        link.published.fetch_add(1, Ordering::Relaxed);
    }
}
