//! The scale scenarios' senders: raw notification datagrams, each one a
//! notification picked at random from a *mix* (status updates to random
//! channels of a set, or one untargeted notification), sent back to back
//! (a blast) or paced at a rate, from the calling thread for a fixed time
//! ([`send_for`]) or from background threads until stopped
//! ([`Background`]). Every run takes a fresh sender id
//! ([`fresh_sender`]): a broker that outlives a run sees each new run as a
//! new sender starting at sequence 1, never as a restart (which would be a
//! possible loss).

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flagpost_core::wire::{NotifyRepr, SenderId, Seq, MAX_DATAGRAM_LEN};
use flagpost_core::Notification;

static NEXT_SENDER: AtomicU64 = AtomicU64::new(0x5ca1_e000_0000_0000);

/// A sender id no earlier run of this process used.
pub(crate) fn fresh_sender() -> u64 {
    NEXT_SENDER.fetch_add(1, Ordering::Relaxed)
}

/// The notifications a run picks from, one at random per datagram.
pub(crate) type Mix = Arc<[Notification]>;

/// What a run sent.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Sent {
    /// Datagrams sent (accepted by `send_to`).
    pub(crate) datagrams: u64,
    /// How long it sent, seconds.
    pub(crate) secs: f64,
}

impl Sent {
    /// Datagrams per second.
    pub(crate) fn rate(&self) -> f64 {
        self.datagrams as f64 / self.secs.max(1e-9)
    }
}

/// One sender: its socket, id, sequence and random state.
struct Sender {
    udp: UdpSocket,
    to: SocketAddr,
    id: u64,
    seq: u32,
    rng: u64,
    buf: [u8; MAX_DATAGRAM_LEN],
}

impl Sender {
    fn new(to: SocketAddr) -> Sender {
        let id = fresh_sender();
        Sender {
            udp: UdpSocket::bind("127.0.0.1:0").expect("bind a sender"),
            to,
            id,
            seq: 0,
            rng: id | 1,
            buf: [0; MAX_DATAGRAM_LEN],
        }
    }

    /// Sends one notification of `mix`; whether the kernel took it.
    fn send(&mut self, mix: &[Notification]) -> bool {
        // xorshift64: cheap, and good enough to spread channels
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let Some(notification) = mix.get((self.rng % mix.len().max(1) as u64) as usize) else {
            return false;
        };
        self.seq = self.seq.wrapping_add(1);
        let Ok(len) = (NotifyRepr {
            notification: *notification,
            sender: SenderId(self.id),
            seq: Seq(self.seq),
            batch: 1,
            ack_requested: false,
            probe: false,
            tag: None,
        })
        .emit(&mut self.buf) else {
            return false;
        };
        self.udp.send_to(&self.buf[..len], self.to).is_ok()
    }

    /// Sends until `done(elapsed)` says stop, at most `rate` per second
    /// (`None`: back to back); returns the datagrams sent and the time.
    fn run(
        &mut self,
        mix: &[Notification],
        rate: Option<f64>,
        done: impl Fn(Duration) -> bool,
    ) -> Sent {
        let start = Instant::now();
        let mut sent = 0u64;
        loop {
            let elapsed = start.elapsed();
            if done(elapsed) {
                return Sent {
                    datagrams: sent,
                    secs: elapsed.as_secs_f64(),
                };
            }
            if let Some(rate) = rate {
                // no rate (a floor that measured nothing): send nothing
                let ahead = if rate > 0.0 {
                    sent as f64 / rate - elapsed.as_secs_f64()
                } else {
                    1e-3
                };
                if ahead > 0.0 {
                    // far ahead (a slow pace): sleep, leaving the CPU to
                    // the receiver, at most 10 ms between two looks at
                    // the clock and the stop flag; close to the pace: give
                    // way only
                    if ahead > 300e-6 {
                        std::thread::sleep(Duration::from_secs_f64((ahead - 200e-6).min(0.01)));
                    } else {
                        std::thread::yield_now();
                    }
                    continue;
                }
            }
            sent += u64::from(self.send(mix));
        }
    }
}

/// Sends from this thread for `secs`, back to back or at `rate` per second.
pub(crate) fn send_for(to: SocketAddr, mix: &[Notification], secs: f64, rate: Option<f64>) -> Sent {
    let limit = Duration::from_secs_f64(secs);
    Sender::new(to).run(mix, rate, |elapsed| elapsed >= limit)
}

/// Senders on threads of their own, each with its own socket and sender
/// id, until [`stop`](Self::stop) (or drop).
pub(crate) struct Background {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Sent>>,
}

impl Background {
    /// `threads` senders of `mix` to `to`, each back to back or at `rate`
    /// per second.
    pub(crate) fn start(
        to: SocketAddr,
        mix: &Mix,
        threads: usize,
        rate: Option<f64>,
    ) -> Background {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..threads)
            .map(|_| {
                let (stop, mix) = (stop.clone(), mix.clone());
                std::thread::spawn(move || {
                    Sender::new(to).run(&mix, rate, |_| stop.load(Ordering::Relaxed))
                })
            })
            .collect();
        Background { stop, threads }
    }

    /// Stops the senders; what they sent together (the longest time).
    pub(crate) fn stop(mut self) -> Sent {
        self.finish()
    }

    fn finish(&mut self) -> Sent {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = Sent::default();
        for t in self.threads.drain(..) {
            if let Ok(s) = t.join() {
                total.datagrams += s.datagrams;
                total.secs = total.secs.max(s.secs);
            }
        }
        total
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.finish();
    }
}
