//! The coalescing floor's sender for the hot-loop bench: the simplest
//! sender that merges calls (`BareCoalescer`), paced like the notifier,
//! sleeping out the pace, or unpaced.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use flagpost_core::wire::{NotifyRepr, SenderId, Seq, MAX_DATAGRAM_LEN};
use flagpost_core::Notification;

use crate::{loopback, HOST};

/// The sender of the coalescing floor: the simplest one that merges calls,
/// as the issue allows ("a sender may coalesce calls that arrive while its
/// previous datagram is being sent"). A call is one atomic add, plus an
/// unpark if the sender thread sleeps; the thread sends one 24-byte datagram
/// while the count is non-zero, `pace` apart if given, and parks otherwise.
pub(crate) struct BareCoalescer {
    shared: std::sync::Arc<BareShared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BareCoalescer {
    /// A bare sender to `to`, of 24-byte datagrams or, with `notify`, of
    /// valid status notifications (for the broker).
    pub(crate) fn new(to: SocketAddr, pacing: Pacing, notify: bool) -> BareCoalescer {
        use std::sync::atomic::Ordering::SeqCst;
        let shared = std::sync::Arc::new(BareShared {
            pending: std::sync::atomic::AtomicU64::new(0),
            calls: std::sync::atomic::AtomicU64::new(0),
            sent: std::sync::atomic::AtomicU64::new(0),
            parked: std::sync::atomic::AtomicBool::new(false),
            stop: std::sync::atomic::AtomicBool::new(false),
        });
        let udp = UdpSocket::bind(loopback()).expect("bind");
        udp.connect(to).expect("connect");
        let s = shared.clone();
        let name = match (pacing, notify) {
            (_, true) => "bare-notify",
            (Pacing::Watch, false) => "bare-paced",
            (Pacing::Sleep, false) => "bare-sleeping",
            (Pacing::None, false) => "bare-unpaced",
        };
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                // as the notifier does: its pacing sleeps are not stretched
                let _ = nix::sys::prctl::set_timerslack(1_000);
                let mut seq = 0u32;
                let mut buf = [0u8; MAX_DATAGRAM_LEN];
                let mut may_end_early = true;
                let mut pace = Duration::from(HOST.pace);
                while !s.stop.load(SeqCst) {
                    let count = s.pending.swap(0, SeqCst);
                    if count > 0 {
                        seq += 1;
                        let len = if notify {
                            NotifyRepr {
                                notification: Notification::status(None),
                                sender: SenderId(0x8888),
                                seq: Seq(seq),
                                batch: u32::try_from(count).unwrap_or(u32::MAX),
                                ack_requested: false,
                                probe: false,
                                tag: None,
                            }
                            .emit(&mut buf)
                            .expect("fits")
                        } else {
                            24
                        };
                        let _ = udp.send(&buf[..len]);
                        s.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        match pacing {
                            Pacing::None => {}
                            Pacing::Sleep => std::thread::sleep(pace),
                            Pacing::Watch => may_end_early = bare_watch(&s, pace, may_end_early),
                        }
                        // as the notifier does: a full pace doubles the next
                        pace = Duration::from(HOST.next_pace(pace.into(), may_end_early));
                        continue;
                    }
                    // publish, then re-check: a call either sees `parked` or its
                    // count is seen here
                    s.parked.store(true, SeqCst);
                    if s.pending.load(SeqCst) == 0 && !s.stop.load(SeqCst) {
                        std::thread::park();
                    }
                    s.parked.store(false, SeqCst);
                    may_end_early = true;
                    pace = Duration::from(HOST.pace);
                }
            })
            .expect("spawn");
        BareCoalescer {
            shared,
            thread: Some(thread),
        }
    }

    /// Datagrams sent so far.
    pub(crate) fn sent(&self) -> u64 {
        self.shared.sent.load(std::sync::atomic::Ordering::Relaxed)
    }

    #[inline]
    pub(crate) fn call(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        self.shared
            .calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.shared.pending.fetch_add(1, SeqCst);
        if self.shared.parked.load(SeqCst) && self.shared.parked.swap(false, SeqCst) {
            if let Some(t) = &self.thread {
                t.thread().unpark();
            }
        }
    }
}

impl Drop for BareCoalescer {
    fn drop(&mut self) {
        self.shared
            .stop
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// How a [`BareCoalescer`] spaces the datagrams of a burst.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pacing {
    /// Back to back.
    None,
    /// Sleeps out the pace after each: the pace of [`HOST`],
    /// doubling up to its maximum as the
    /// notifier's does.
    Sleep,
    /// As the notifier does: watches the call counter for up to the pace,
    /// sending early once no call has come for
    /// its quiet time (at most every other time).
    Watch,
}

struct BareShared {
    pending: std::sync::atomic::AtomicU64,
    calls: std::sync::atomic::AtomicU64,
    sent: std::sync::atomic::AtomicU64,
    parked: std::sync::atomic::AtomicBool,
    stop: std::sync::atomic::AtomicBool,
}

/// [`Pacing::Watch`] after a datagram: returns whether the next wait may end
/// early.
fn bare_watch(s: &BareShared, pace: Duration, may_end_early: bool) -> bool {
    use std::sync::atomic::Ordering::Relaxed;
    let sent_at = std::time::Instant::now();
    let paced = sent_at + pace;
    let mut calls = s.calls.load(Relaxed);
    let mut last_call_seen = sent_at;
    loop {
        std::thread::yield_now();
        let now = std::time::Instant::now();
        if now >= paced {
            return true;
        }
        let seen = s.calls.load(Relaxed);
        if seen != calls {
            calls = seen;
            last_call_seen = now;
        } else if may_end_early && now >= last_call_seen + Duration::from(HOST.quiet) {
            return false;
        }
    }
}
