//! The `Notifier`: fire-and-forget notifications over UDP, cheap to call
//! from a hot loop.
//!
//! Notifications are flags, so they can be merged. A call adds its batch
//! count to a pending slot — an atomic add for untargeted status and
//! non-status updates, a short mutex for channel-targeted ones. Then:
//!
//! * if the notifier has been quiet (its sender thread asleep, nothing sent
//!   in the last 20 µs), the call sends the datagram itself — one `sendto`,
//!   no thread hand-off on the latency path. The thread is not woken for
//!   it unless its tail-loss probe timer must be re-armed (in a steady
//!   trickle: once per probe delay);
//! * otherwise the thread turns whatever is pending into datagrams (one per
//!   distinct kind and channel, carrying the summed batch count).
//!
//! [`NotifierStats::inline`] counts the datagrams sent the first way.
//!
//! So a burst costs nanoseconds per call and few datagrams: the thread sends
//! at most one per 20 µs (pacing), merging everything that arrives
//! meanwhile, and as a burst goes on the gap doubles up to 160 µs, so a hot
//! loop cannot pile a backlog into the broker's socket that the last call's
//! wake-up would queue behind, nor keep the broker and its listeners busy
//! waking for a burst whose work they have already been told of. Between two
//! datagrams the thread watches the call counter (yielding its CPU between
//! looks) rather than sleeping: when no call has come for 2 µs the burst is
//! over, and its last calls go out at once instead of after the rest of the
//! pace and a timer wake-up (on a busy CPU, 20–60 µs). The thread thus stays
//! on a CPU for as long as a burst lasts; [`NotifierBuilder::spin_in_bursts`]
//! turns that off. No wake-up is lost.
//!
//! Loss: every datagram carries the notifier's random sender id and the
//! next sequence number, so the broker sees gaps. The loss of the *last*
//! datagram of a burst is covered by a tail-loss probe: after
//! [`NotifierBuilder::probe_delay`] of quiet the last datagram is sent once
//! more with the same sequence number (a duplicate if the first arrived).
//! Callers that need certainty use the `*_confirmed` calls, which ask for an
//! ack and retransmit with backoff until it arrives or the timeout passes.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use flagpost_core::wire::{AckRepr, AckResult, NotifyRepr, SenderId, Seq, MAX_DATAGRAM_LEN};
use flagpost_core::{ChannelId, Kind, Notification};

/// Distinct channel-targeted notifications that may wait at once; beyond
/// that they degrade to one untargeted status update (a superset: nothing is
/// lost, some listeners poll needlessly).
const MAX_PENDING_TARGETED: usize = 1024;

/// Why a notification could not be confirmed or sent.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// No ack arrived in time.
    #[error("no acknowledgement from the broker at {broker} within {timeout:?} ({attempts} attempts); is it running?")]
    Timeout {
        /// The broker.
        broker: SocketAddr,
        /// The time allowed.
        timeout: Duration,
        /// Datagrams sent.
        attempts: u32,
    },
    /// The broker's host answered that nothing listens on the port.
    #[error("the broker at {broker} is unreachable (nothing listens on that port)")]
    Unreachable {
        /// The broker.
        broker: SocketAddr,
    },
    /// The address did not resolve.
    #[error("cannot resolve broker address {0:?}")]
    Resolve(String),
    /// A socket error.
    #[error("notifier socket error: {0}")]
    Io(#[from] io::Error),
}

/// Counters of one notifier (shared by its clones).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NotifierStats {
    /// `notify_*` calls.
    pub calls: u64,
    /// Datagrams sent (excluding probes and retransmissions).
    pub datagrams: u64,
    /// Of those, sent by the calling thread itself (the notifier had been
    /// quiet): no hand-off to the sender thread on the latency path.
    pub inline: u64,
    /// Bursts handed to the sender thread: calls that came too close
    /// together to send one by one. Each starts again from the shortest
    /// pace.
    pub bursts: u64,
    /// Tail-loss probes sent.
    pub probes: u64,
    /// Confirmed-mode retransmissions.
    pub retransmissions: u64,
    /// Sends that failed.
    pub send_errors: u64,
}

/// Settings for a [`Notifier`].
#[derive(Clone, Debug)]
pub struct NotifierBuilder {
    probe_delay: Duration,
    sender: Option<SenderId>,
    spin: bool,
}

impl Default for NotifierBuilder {
    fn default() -> Self {
        NotifierBuilder {
            probe_delay: Duration::from_millis(5),
            sender: None,
            spin: true,
        }
    }
}

impl NotifierBuilder {
    /// Quiet time after a burst before its last datagram is sent once more
    /// (default 5 ms; zero disables the probe).
    pub fn probe_delay(mut self, d: Duration) -> Self {
        self.probe_delay = d;
        self
    }

    /// Whether the sender thread stays on a CPU between the datagrams of a
    /// burst, watching for its end (default), or sleeps out the pace (20 µs,
    /// growing to 160 µs as a burst goes on). Watching sends a burst's last
    /// calls 2 µs after them; sleeping waits for the rest of the pace and a
    /// timer wake-up, which a busy CPU delays (measured in
    /// `BENCHMARKS.md`, the hot loop), but costs no CPU while the burst lasts.
    pub fn spin_in_bursts(mut self, spin: bool) -> Self {
        self.spin = spin;
        self
    }

    /// A fixed sender id (default: random per notifier, as the protocol
    /// expects; fix it only for tests).
    pub fn sender_id(mut self, id: u64) -> Self {
        self.sender = Some(SenderId(id));
        self
    }

    /// A notifier sending to the broker at `broker`.
    pub fn build(
        self,
        broker: impl ToSocketAddrs + std::fmt::Debug,
    ) -> Result<Notifier, NotifyError> {
        let broker = broker
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| NotifyError::Resolve(format!("{broker:?}")))?;
        let socket = bind_for(broker)?;
        let sender = self
            .sender
            .unwrap_or_else(|| SenderId(getrandom::u64().unwrap_or(0x5eed_5eed)));
        let core = Arc::new(Core {
            socket,
            broker,
            sender,
            seq: AtomicU32::new(Seq::FIRST.0),
            status_all: AtomicU32::new(0),
            non_status_all: AtomicU32::new(0),
            targeted: Mutex::new(Vec::new()),
            any_targeted: AtomicBool::new(false),
            sleeping: AtomicBool::new(true),
            handoff: AtomicBool::new(false),
            parked_until_ns: AtomicU64::new(u64::MAX),
            epoch: Instant::now(),
            last_send_ns: AtomicU64::new(NEVER),
            tail: Mutex::new(Tail::default()),
            stop: AtomicBool::new(false),
            thread: Mutex::new(None),
            probe_delay: self.probe_delay,
            spin: self.spin,
            idle: (Mutex::new(()), std::sync::Condvar::new()),
            busy: AtomicBool::new(false),
            confirm: Mutex::new(None),
            calls: AtomicU64::new(0),
            datagrams: AtomicU64::new(0),
            inline: AtomicU64::new(0),
            bursts: AtomicU64::new(0),
            probes: AtomicU64::new(0),
            retransmissions: AtomicU64::new(0),
            send_errors: AtomicU64::new(0),
        });
        let worker = core.clone();
        let thread = std::thread::Builder::new()
            .name("flagpost-notifier".into())
            .spawn(move || worker.run())?;
        *core.thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(thread.thread().clone());
        Ok(Notifier {
            handle: Arc::new(Handle {
                core,
                join: Mutex::new(Some(thread)),
            }),
        })
    }
}

/// Sends notifications to a broker. Cheap to clone (clones share one socket
/// and sender thread), `Send + Sync`; the last clone to go flushes what is
/// pending, repeats the last datagram at once if its tail-loss probe was
/// still due, and stops the thread.
#[derive(Clone, Debug)]
pub struct Notifier {
    handle: Arc<Handle>,
}

#[derive(Debug)]
struct Handle {
    core: Arc<Core>,
    join: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.core.stop.store(true, Ordering::SeqCst);
        self.core.wake();
        if let Some(t) = self.join.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

#[derive(Debug)]
struct Core {
    socket: UdpSocket,
    broker: SocketAddr,
    sender: SenderId,
    seq: AtomicU32,
    status_all: AtomicU32,
    non_status_all: AtomicU32,
    targeted: Mutex<Vec<(Kind, ChannelId, u32)>>,
    any_targeted: AtomicBool,
    /// The send flag is free (true): a caller that swaps this to false owns
    /// the next send — inline, or handing a burst to the thread, which
    /// takes the flag when it wakes to find something pending.
    sleeping: AtomicBool,
    /// A caller holding the send flag handed it, with a burst, to the
    /// thread. (A wake for anything else — the probe timer — leaves the
    /// flag and pending calls alone.)
    handoff: AtomicBool,
    /// Origin of `last_send_ns`.
    epoch: Instant,
    /// When the last datagram went out, in ns since `epoch` ([`NEVER`]
    /// before the first).
    last_send_ns: AtomicU64,
    /// When the parked sender thread wakes by itself, in ns since `epoch`
    /// (`u64::MAX`: not parked, or parked without a deadline).
    parked_until_ns: AtomicU64,
    /// The last datagram sent and when to repeat it (the tail-loss probe).
    tail: Mutex<Tail>,
    stop: AtomicBool,
    thread: Mutex<Option<Thread>>,
    probe_delay: Duration,
    /// Watch for the end of a burst between its datagrams (else sleep).
    spin: bool,
    /// Signalled when the sender thread has nothing left to send.
    idle: (Mutex<()>, std::sync::Condvar),
    busy: AtomicBool,
    confirm: Mutex<Option<UdpSocket>>,
    calls: AtomicU64,
    datagrams: AtomicU64,
    inline: AtomicU64,
    bursts: AtomicU64,
    probes: AtomicU64,
    retransmissions: AtomicU64,
    send_errors: AtomicU64,
}

#[derive(Debug, Default)]
struct Tail {
    last: Option<([u8; MAX_DATAGRAM_LEN], usize)>,
    probe_at: Option<Instant>,
}

/// `last_send_ns` before anything was sent: the first call is quiet.
const NEVER: u64 = u64::MAX;

/// A call sends inline only if nothing went out for this long: a burst
/// (calls nanoseconds apart) coalesces in the thread, while an isolated
/// notification skips the hand-off. Inline sends are at most one per 20 µs.
const COOLDOWN: Duration = Duration::from_micros(20);

/// The shortest gap between the sender thread's datagrams in a burst (but
/// see [`QUIET`]).
pub const PACE: Duration = Duration::from_micros(20);

/// The longest gap between the sender thread's datagrams in a burst. Each
/// pace that runs its full length (calls kept coming) doubles the next, from
/// [`PACE`] up to this; a pace that ends early starts again from [`PACE`].
/// A sustained burst thus costs the broker and its listeners a wake-up per
/// 160 µs, not per 20 µs (at ~17 µs of their CPU each, 10 % of a CPU rather
/// than 85 %), and its last calls still go out [`QUIET`] after them.
pub const MAX_PACE: Duration = Duration::from_micros(160);

/// A burst is over when no call has come for this long: a hot loop's calls
/// are nanoseconds apart. Its last calls are then sent without waiting for
/// the rest of the pace — at most every other datagram, so that calls a few
/// microseconds apart cannot turn the pace into one datagram per gap.
pub const QUIET: Duration = Duration::from_micros(2);

/// The pace after one of length `pace` that ran its full length or not: a
/// burst that goes on spreads its datagrams out, up to [`MAX_PACE`] apart;
/// one that paused starts again from [`PACE`]. (Public so that a bench's
/// bare sender can pace exactly as the notifier does.)
pub fn next_pace(pace: Duration, ran_full: bool) -> Duration {
    if ran_full {
        (pace * 2).min(MAX_PACE)
    } else {
        PACE
    }
}

fn bind_for(broker: SocketAddr) -> io::Result<UdpSocket> {
    let local: SocketAddr = if broker.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local)?;
    socket.connect(broker)?;
    Ok(socket)
}

fn add(slot: &AtomicU32, n: u32) {
    // Saturating add: a batch count pinned at u32::MAX still means "lots".
    let _ = slot.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
        Some(v.saturating_add(n))
    });
}

impl Notifier {
    /// A notifier with default settings sending to `broker`.
    pub fn new(broker: impl ToSocketAddrs + std::fmt::Debug) -> Result<Notifier, NotifyError> {
        NotifierBuilder::default().build(broker)
    }

    /// Settings for a notifier.
    pub fn builder() -> NotifierBuilder {
        NotifierBuilder::default()
    }

    /// The broker this notifier sends to.
    pub fn broker(&self) -> SocketAddr {
        self.handle.core.broker
    }

    /// This notifier's sender id.
    pub fn sender_id(&self) -> SenderId {
        self.handle.core.sender
    }

    /// Counters.
    pub fn stats(&self) -> NotifierStats {
        let c = &self.handle.core;
        NotifierStats {
            calls: c.calls.load(Ordering::Relaxed),
            datagrams: c.datagrams.load(Ordering::Relaxed),
            inline: c.inline.load(Ordering::Relaxed),
            bursts: c.bursts.load(Ordering::Relaxed),
            probes: c.probes.load(Ordering::Relaxed),
            retransmissions: c.retransmissions.load(Ordering::Relaxed),
            send_errors: c.send_errors.load(Ordering::Relaxed),
        }
    }

    /// A status update (`NotifyStatusUpdate`): new messages or a status
    /// change; `None` for all channels.
    pub fn notify_status_update(&self, channel: Option<ChannelId>) {
        self.notify(Notification::status(channel), 1);
    }

    /// A non-status update (`NotifyNonStatusUpdate`): views refresh.
    pub fn notify_non_status_update(&self) {
        self.notify(Notification::non_status(None), 1);
    }

    /// A channel update: `channel` reloads its configuration.
    pub fn notify_channel_update(&self, channel: ChannelId) {
        self.notify(Notification::channel_update(channel), 1);
    }

    /// A channel shutdown: `channel` stops.
    pub fn notify_channel_shutdown(&self, channel: ChannelId) {
        self.notify(Notification::channel_shutdown(channel), 1);
    }

    /// Any notification, standing for `batch` changes (at least 1). Costs
    /// nanoseconds: the datagram is sent by the notifier's thread, merged
    /// with whatever else arrives meanwhile.
    pub fn notify(&self, notification: Notification, batch: u32) {
        let core = &self.handle.core;
        let batch = batch.max(1);
        core.calls.fetch_add(1, Ordering::Relaxed);
        match (notification.kind(), notification.channel()) {
            (Kind::Status, None) => add(&core.status_all, batch),
            (Kind::NonStatus, None) => add(&core.non_status_all, batch),
            (kind, Some(channel)) => core.push_targeted(kind, *channel, batch),
            // Channel kinds always carry a channel.
            (_, None) => add(&core.status_all, batch),
        }
        // The thread sleeps and nothing went out in the last COOLDOWN: send
        // from here, saving the thread's wake-up on the latency path.
        // Otherwise the thread sends, merging this call with whatever else
        // arrives meanwhile (a hot loop stays a handful of datagrams).
        core.wake_or_send_inline();
    }

    /// Waits until everything notified so far has been handed to the
    /// socket, or `timeout` passes; returns whether it was.
    pub fn flush(&self, timeout: Duration) -> bool {
        let core = &self.handle.core;
        let deadline = Instant::now() + timeout;
        let (lock, cond) = &core.idle;
        let mut guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if !core.has_pending() && !core.busy.load(Ordering::SeqCst) {
                return true;
            }
            core.wake();
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            guard = match cond.wait_timeout(guard, left.min(Duration::from_millis(50))) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// A status update the broker must acknowledge; see
    /// [`notify_confirmed`](Self::notify_confirmed).
    pub fn notify_status_update_confirmed(
        &self,
        channel: Option<ChannelId>,
        timeout: Duration,
    ) -> Result<AckResult, NotifyError> {
        self.notify_confirmed(Notification::status(channel), 1, timeout)
    }

    /// A non-status update the broker must acknowledge.
    pub fn notify_non_status_update_confirmed(
        &self,
        timeout: Duration,
    ) -> Result<AckResult, NotifyError> {
        self.notify_confirmed(Notification::non_status(None), 1, timeout)
    }

    /// A channel update the broker must acknowledge.
    pub fn notify_channel_update_confirmed(
        &self,
        channel: ChannelId,
        timeout: Duration,
    ) -> Result<AckResult, NotifyError> {
        self.notify_confirmed(Notification::channel_update(channel), 1, timeout)
    }

    /// A channel shutdown the broker must acknowledge.
    pub fn notify_channel_shutdown_confirmed(
        &self,
        channel: ChannelId,
        timeout: Duration,
    ) -> Result<AckResult, NotifyError> {
        self.notify_confirmed(Notification::channel_shutdown(channel), 1, timeout)
    }

    /// Sends `notification` asking for an ack, retransmitting (same
    /// sequence number) after 20 ms, 40 ms, … up to 1 s apart until an ack
    /// arrives or `timeout` passes: at-least-once delivery. Blocks the caller.
    pub fn notify_confirmed(
        &self,
        notification: Notification,
        batch: u32,
        timeout: Duration,
    ) -> Result<AckResult, NotifyError> {
        let core = &self.handle.core;
        core.calls.fetch_add(1, Ordering::Relaxed);
        let repr = NotifyRepr {
            notification,
            sender: core.sender,
            seq: core.next_seq(),
            batch: batch.max(1),
            ack_requested: true,
            tag: None,
        };
        let mut buf = [0u8; MAX_DATAGRAM_LEN];
        let len = repr.emit(&mut buf).map_err(io::Error::other)?;
        let mut guard = core.confirm.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = Some(bind_for(core.broker)?);
        }
        let Some(socket) = guard.as_ref() else {
            return Err(NotifyError::Io(io::Error::other("no confirm socket")));
        };
        let deadline = Instant::now() + timeout;
        let mut rto = Duration::from_millis(20);
        let mut attempts = 0u32;
        let mut refused = false;
        let mut ack_buf = [0u8; MAX_DATAGRAM_LEN];
        loop {
            attempts += 1;
            if attempts > 1 {
                core.retransmissions.fetch_add(1, Ordering::Relaxed);
            }
            match socket.send(&buf[..len]) {
                Ok(_) => core.datagrams.fetch_add(1, Ordering::Relaxed),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    refused = true;
                    core.send_errors.fetch_add(1, Ordering::Relaxed)
                }
                Err(e) => return Err(e.into()),
            };
            let wait_until = (Instant::now() + rto).min(deadline);
            while let Some(left) = wait_until.checked_duration_since(Instant::now()) {
                socket.set_read_timeout(Some(left.max(Duration::from_micros(100))))?;
                match socket.recv(&mut ack_buf) {
                    Ok(n) => {
                        if let Ok(ack) = AckRepr::parse_bytes(&ack_buf[..n]) {
                            if ack.sender == repr.sender && ack.seq == repr.seq {
                                return Ok(ack.result);
                            }
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                    {
                        break
                    }
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                        refused = true;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if Instant::now() >= deadline {
                return Err(if refused {
                    NotifyError::Unreachable {
                        broker: core.broker,
                    }
                } else {
                    NotifyError::Timeout {
                        broker: core.broker,
                        timeout,
                        attempts,
                    }
                });
            }
            rto = (rto * 2).min(Duration::from_secs(1));
        }
    }
}

impl Core {
    fn next_seq(&self) -> Seq {
        Seq(self.seq.fetch_add(1, Ordering::Relaxed))
    }

    fn push_targeted(&self, kind: Kind, channel: ChannelId, batch: u32) {
        let mut pending = self.targeted.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = pending
            .iter_mut()
            .find(|(k, c, _)| *k == kind && *c == channel)
        {
            entry.2 = entry.2.saturating_add(batch);
        } else if pending.len() < MAX_PENDING_TARGETED {
            pending.push((kind, channel, batch));
        } else {
            drop(pending);
            add(&self.status_all, batch);
            return;
        }
        self.any_targeted.store(true, Ordering::Release);
    }

    fn has_pending(&self) -> bool {
        self.status_all.load(Ordering::SeqCst) > 0
            || self.non_status_all.load(Ordering::SeqCst) > 0
            || self.any_targeted.load(Ordering::SeqCst)
    }

    fn wake(&self) {
        if let Some(t) = self
            .thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            t.unpark();
        }
    }

    fn since_epoch_ns(&self) -> u64 {
        self.ns_of(Instant::now())
    }

    /// `t` in ns since `epoch` (the unit of `last_send_ns` and
    /// `parked_until_ns`).
    fn ns_of(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    #[inline]
    fn wake_or_send_inline(&self) {
        // Pairs with the SeqCst store + re-check in `run`.
        std::sync::atomic::fence(Ordering::SeqCst);
        if !self.sleeping.load(Ordering::SeqCst) {
            return; // the thread is at work and will see the call
        }
        let last = self.last_send_ns.load(Ordering::Relaxed);
        let now_ns = self.since_epoch_ns();
        let quiet = last == NEVER
            || now_ns.saturating_sub(last)
                >= u64::try_from(COOLDOWN.as_nanos()).unwrap_or(u64::MAX);
        if !self.sleeping.swap(false, Ordering::SeqCst) {
            return; // another caller took it
        }
        if quiet {
            self.busy.store(true, Ordering::SeqCst);
            // the send happens after `now_ns`, so its probe is due after this
            let probe_by = now_ns
                .saturating_add(u64::try_from(self.probe_delay.as_nanos()).unwrap_or(u64::MAX));
            let sent = self.send_pending_and_arm_probe();
            self.inline.fetch_add(sent, Ordering::Relaxed);
            // The thread need not hear of this send when it will wake by
            // itself before the probe just armed is due (it then finds the
            // probe moved and sleeps on): in a steady trickle it wakes once
            // per probe delay, not once per send.
            let probe_covered = self.probe_delay.is_zero()
                || self.parked_until_ns.load(Ordering::SeqCst) <= probe_by;
            // Hand the flag back, so that the next quiet call goes inline
            // too; re-check after publishing, as the thread does, so that no
            // call is stranded.
            self.busy.store(false, Ordering::SeqCst);
            self.sleeping.store(true, Ordering::SeqCst);
            if !self.has_pending() || !self.sleeping.swap(false, Ordering::SeqCst) {
                // Wake the thread only to re-arm its probe timer, after
                // handing the flag back: a woken thread that held the flag
                // made the next calls wait for its wake-up (25–50 µs on an
                // idle vCPU) — 3–5 % of the wake-latency samples, all in
                // the tail.
                if !probe_covered {
                    self.wake();
                }
                return;
            }
        }
        // A burst: hand the flag (still held) to the thread, which sends,
        // paced, merging the calls that find the flag held meanwhile.
        self.handoff.store(true, Ordering::SeqCst);
        self.wake();
    }

    /// Sends one datagram; returns its bytes for a later probe.
    fn send(&self, notification: Notification, batch: u32) -> ([u8; MAX_DATAGRAM_LEN], usize) {
        let repr = NotifyRepr {
            notification,
            sender: self.sender,
            seq: self.next_seq(),
            batch,
            ack_requested: false,
            tag: None,
        };
        let mut buf = [0u8; MAX_DATAGRAM_LEN];
        let len = repr.emit(&mut buf).unwrap_or(0);
        match self.socket.send(&buf[..len]) {
            Ok(_) => self.datagrams.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.send_errors.fetch_add(1, Ordering::Relaxed),
        };
        (buf, len)
    }

    /// Sends everything pending; returns how many datagrams that took and
    /// the last one, if any.
    fn send_pending(&self) -> (u64, Option<([u8; MAX_DATAGRAM_LEN], usize)>) {
        let mut sent = 0;
        let mut last = None;
        let status = self.status_all.swap(0, Ordering::AcqRel);
        if status > 0 {
            sent += 1;
            last = Some(self.send(Notification::status(None), status));
        }
        let non_status = self.non_status_all.swap(0, Ordering::AcqRel);
        if non_status > 0 {
            sent += 1;
            last = Some(self.send(Notification::non_status(None), non_status));
        }
        if self.any_targeted.swap(false, Ordering::AcqRel) {
            let batch =
                std::mem::take(&mut *self.targeted.lock().unwrap_or_else(|p| p.into_inner()));
            for (kind, channel, count) in batch {
                if let Ok(n) = Notification::new(kind, Some(channel)) {
                    sent += 1;
                    last = Some(self.send(n, count));
                }
            }
        }
        (sent, last)
    }

    /// Sends everything pending and, if something went out, schedules its
    /// tail-loss probe; returns how many datagrams went out.
    fn send_pending_and_arm_probe(&self) -> u64 {
        let (count, Some(sent)) = self.send_pending() else {
            return 0;
        };
        let now = Instant::now();
        self.last_send_ns.store(self.ns_of(now), Ordering::Relaxed);
        let mut tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        tail.last = Some(sent);
        tail.probe_at = (!self.probe_delay.is_zero()).then(|| now + self.probe_delay);
        count
    }

    /// Sends the probe now if one is armed (at the stop).
    fn probe_now(&self) {
        let mut tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        if tail.probe_at.take().is_some() {
            self.send_probe(&tail);
        }
    }

    /// Repeats the last datagram, same sequence number: a duplicate if the
    /// original arrived.
    fn send_probe(&self, tail: &Tail) {
        if let Some((buf, len)) = &tail.last {
            if self.socket.send(&buf[..*len]).is_ok() {
                self.probes.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Sends the probe if it is due; returns when the next one is due.
    fn probe_if_due(&self) -> Option<Instant> {
        let mut tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        let at = tail.probe_at?;
        if Instant::now() < at {
            return Some(at);
        }
        tail.probe_at = None;
        self.send_probe(&tail);
        None
    }

    /// Waits between two datagrams of a burst, the first sent at `sent_at`:
    /// until `pace` has passed or, if `may_end_early`, until no call has
    /// come for [`QUIET`]. Returns whether the next wait may end early (not
    /// after this one did).
    fn pace(&self, sent_at: Instant, pace: Duration, may_end_early: bool) -> bool {
        if !self.spin {
            std::thread::sleep(pace);
            return true;
        }
        let paced = sent_at + pace;
        let mut calls = self.calls.load(Ordering::Relaxed);
        let mut last_call_seen = sent_at;
        loop {
            // Let the broker and listeners run if they share this CPU.
            std::thread::yield_now();
            let now = Instant::now();
            if now >= paced {
                return true;
            }
            let seen = self.calls.load(Ordering::Relaxed);
            if seen != calls {
                calls = seen;
                last_call_seen = now;
            } else if may_end_early && now >= last_call_seen + QUIET {
                return false;
            }
        }
    }

    /// The sender thread. It holds the send flag (`sleeping` false) while it
    /// sends; asleep, it holds nothing, so quiet calls send inline, and it
    /// takes the flag only when a caller hands it a burst (or at the stop).
    fn run(self: Arc<Self>) {
        // Linux lets a normal thread's timers fire up to 50 µs late (timer
        // slack); the pacing sleep of 20 µs then lasted 70–85 µs (`perf sched
        // timehist`), long enough for the next call of a trickle to find
        // the thread pacing and wait for it, and the next, in a cascade.
        #[cfg(target_os = "linux")]
        let _ = nix::sys::prctl::set_timerslack(1_000);
        loop {
            // Asleep, holding nothing, until the probe is due, a call hands
            // over a burst, or the notifier stops.
            loop {
                if self.handoff.swap(false, Ordering::SeqCst) {
                    break; // a caller handed over the flag with a burst
                }
                if self.stop.load(Ordering::SeqCst) {
                    if self.has_pending() && self.sleeping.swap(false, Ordering::SeqCst) {
                        break; // the last calls before the stop
                    }
                    // Repeat the last datagram now rather than make the drop
                    // wait out the probe delay.
                    self.probe_now();
                    return;
                }
                let probe = self.probe_if_due();
                match probe {
                    Some(at) => {
                        self.parked_until_ns.store(self.ns_of(at), Ordering::SeqCst);
                        std::thread::park_timeout(at.saturating_duration_since(Instant::now()));
                    }
                    None => std::thread::park(),
                }
                self.parked_until_ns.store(u64::MAX, Ordering::SeqCst);
            }
            // Holding the flag: send until nothing is pending.
            self.bursts.fetch_add(1, Ordering::Relaxed);
            let mut may_end_early = true;
            let mut pace = PACE;
            loop {
                self.busy.store(true, Ordering::SeqCst);
                if self.send_pending_and_arm_probe() > 0 && self.has_pending() {
                    // Pace a burst: a datagram per PACE at most, so the
                    // broker's socket never queues a backlog that the last
                    // call's wake-up would wait behind (calls keep merging
                    // meanwhile). With nothing pending the flag goes back at
                    // once instead: pacing with the flag held made the next
                    // call of a trickle wait for the pace, and the next…
                    may_end_early = self.pace(Instant::now(), pace, may_end_early);
                    pace = next_pace(pace, may_end_early);
                    continue;
                }
                // Nothing pending: hand the flag back, then re-check (pairs
                // with `wake_or_send_inline`) so a concurrent call is never
                // missed.
                self.sleeping.store(true, Ordering::SeqCst);
                if self.has_pending() && self.sleeping.swap(false, Ordering::SeqCst) {
                    continue;
                }
                self.busy.store(false, Ordering::SeqCst);
                let (lock, cond) = &self.idle;
                let _g = lock.lock().unwrap_or_else(|p| p.into_inner());
                cond.notify_all();
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sustained_burst_doubles_its_pace_up_to_the_cap() {
        let mut pace = PACE;
        let mut seen = vec![pace];
        for _ in 0..6 {
            pace = next_pace(pace, true);
            seen.push(pace);
        }
        let us: Vec<u128> = seen.iter().map(Duration::as_micros).collect();
        assert_eq!(us, [20, 40, 80, 160, 160, 160, 160]);
        assert_eq!(next_pace(MAX_PACE, false), PACE, "a pause starts over");
    }
}
