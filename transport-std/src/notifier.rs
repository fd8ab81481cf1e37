//! The `Notifier`: fire-and-forget notifications over UDP, cheap to call
//! from a hot loop — a lock-free front over the core's sender state machine
//! ([`flagpost_core::notifier::NotifierSession`], configured with
//! [`NotifierConfig::HOST`]), which makes every sending decision: what
//! merges with what, when a round of datagrams may go (pacing), sequence
//! numbers, the tail-loss probe, and the retransmission of confirmed sends.
//!
//! A call adds its batch count to an atomic (untargeted status and
//! non-status updates) or records it in the core under a short lock
//! (channel-targeted ones), and then:
//!
//! * if the notifier's sender thread is asleep, the calling thread asks the
//!   core for what is due and sends it itself — one `sendto`, no thread
//!   hand-off on the latency path ([`NotifierStats::inline`]). The core
//!   says nothing is due while a burst is being paced; the call then hands
//!   the burst to the thread;
//! * otherwise the thread, busy with a burst, merges the call into its next
//!   round. Between two rounds it watches the call counter (yielding its CPU
//!   between looks, and moving off a CPU it finds a busy caller on),
//!   feeding the calls it sees to the core, which ends a pace early once
//!   calls stop: a burst's last calls go out microseconds after them rather
//!   than after a timer wake-up.
//!   [`NotifierBuilder::spin_in_bursts`] makes it sleep out the paces
//!   instead, using no CPU while a burst lasts.
//!
//! Datagrams are taken from the core under its lock and sent after it, so
//! a caller never waits for a send. No wake-up is lost: the send flag is
//! handed back and re-checked as before.
//!
//! Loss: every datagram carries the notifier's random sender id and the
//! next sequence number, so the broker sees gaps; the loss of a burst's last
//! datagram is covered by the core's tail-loss probe. Callers that need
//! certainty use the `*_confirmed` calls, which ask for an ack and
//! retransmit with backoff until it arrives or the timeout passes.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

use placement::Placement;

use flagpost_core::auth::Key;
use flagpost_core::notifier::{NotifierConfig, NotifierSession, Signer};
use flagpost_core::wire::{AckResult, SenderId, MAX_DATAGRAM_LEN};
use flagpost_core::{ChannelId, Kind, Notification};

use crate::clock::Clock;

/// Distinct notifications that may wait at once (the core's pending
/// table); beyond that they fold into one untargeted status update (a
/// superset: nothing is lost, some listeners poll needlessly).
const PENDING: usize = 1024;

/// Datagrams taken from the core under one hold of its lock.
const OUT_BATCH: usize = 64;

type State = NotifierSession<PENDING>;

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
    /// The broker's host answered that nothing listens on the port (ICMP
    /// port unreachable: `ECONNREFUSED`). A confirmed send returns this at
    /// once, without waiting out its timeout.
    #[error("refused: nothing listens on udp {broker} (its host answered port unreachable)")]
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
    /// Times the sender thread, watching a burst, left a CPU that a busy
    /// thread (typically the callers' hot loop) shared with it (Linux).
    pub cpu_moves: u64,
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
    clock: Clock,
    key: Option<Key>,
}

impl Default for NotifierBuilder {
    fn default() -> Self {
        NotifierBuilder {
            probe_delay: NotifierConfig::HOST.probe_delay.into(),
            sender: None,
            spin: true,
            clock: Clock::new(),
            key: None,
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

    /// Whether the sender thread stays on a CPU between the rounds of a
    /// burst, watching for its end (default), or sleeps out the paces.
    /// Watching sends a burst's last calls microseconds after them;
    /// sleeping waits for the rest of the pace and a timer wake-up, which a
    /// busy CPU delays (measured in `BENCHMARKS.md`, the hot loop), but
    /// costs no CPU while the burst lasts.
    pub fn spin_in_bursts(mut self, spin: bool) -> Self {
        self.spin = spin;
        self
    }

    /// Signs every datagram with `key` (the broker's `key_file`; see
    /// [`keyfile::read_key_file`](crate::keyfile::read_key_file)), and
    /// believes only acks signed with it.
    pub fn key(mut self, key: Key) -> Self {
        self.key = Some(key);
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
        let config = NotifierConfig {
            probe_delay: self.probe_delay.into(),
            ..NotifierConfig::HOST
        };
        let core = Arc::new(Front {
            socket,
            broker,
            sender,
            clock: self.clock,
            status_all: AtomicU32::new(0),
            non_status_all: AtomicU32::new(0),
            calls: AtomicU64::new(0),
            state: Mutex::new(Box::new(NotifierSession::new(config, sender))),
            sleeping: AtomicBool::new(true),
            handoff: AtomicBool::new(false),
            parked_until: AtomicU64::new(u64::MAX),
            stop: AtomicBool::new(false),
            thread: Mutex::new(None),
            spin: self.spin,
            idle: (Mutex::new(()), std::sync::Condvar::new()),
            busy: AtomicBool::new(false),
            confirm: Mutex::new(None),
            inline: AtomicU64::new(0),
            bursts: AtomicU64::new(0),
            cpu_moves: AtomicU64::new(0),
            send_errors: AtomicU64::new(0),
            key: self.key,
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
/// and sender thread), `Send + Sync`; the last clone to go sends what is
/// pending and, if its tail-loss probe was still due, repeats the last
/// datagram at once, then stops the thread.
#[derive(Clone, Debug)]
pub struct Notifier {
    handle: Arc<Handle>,
}

#[derive(Debug)]
struct Handle {
    core: Arc<Front>,
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

/// What the callers and the sender thread share: the lock-free front
/// (atomics the calls bump) and the core's state machine behind a mutex.
#[derive(Debug)]
struct Front {
    socket: UdpSocket,
    broker: SocketAddr,
    sender: SenderId,
    clock: Clock,
    /// Untargeted calls' batch counts, not yet given to the core.
    status_all: AtomicU32,
    non_status_all: AtomicU32,
    /// Every call: the sender thread watches it between rounds.
    calls: AtomicU64,
    /// The core's sender state machine: every sending decision.
    state: Mutex<Box<State>>,
    /// The send flag is free (true): a caller that swaps this to false owns
    /// the next send — inline, or handing a burst to the thread.
    sleeping: AtomicBool,
    /// A caller holding the send flag handed it, with a burst, to the
    /// thread. (A wake for anything else — a timer — leaves the flag and
    /// pending calls alone.)
    handoff: AtomicBool,
    /// When the parked sender thread wakes by itself, in the core's µs
    /// (`u64::MAX`: not parked, or parked without a deadline).
    parked_until: AtomicU64,
    stop: AtomicBool,
    thread: Mutex<Option<Thread>>,
    /// Watch for the end of a burst between its rounds (else sleep).
    spin: bool,
    /// Signalled when the sender thread has nothing left to send.
    idle: (Mutex<()>, std::sync::Condvar),
    busy: AtomicBool,
    /// The socket confirmed sends go out on and read their acks from; its
    /// lock makes them one at a time.
    confirm: Mutex<Option<UdpSocket>>,
    inline: AtomicU64,
    bursts: AtomicU64,
    cpu_moves: AtomicU64,
    send_errors: AtomicU64,
    /// Signs datagrams and checks acks, when the broker has a key.
    key: Option<Key>,
}

/// Datagrams taken from the core, to send once its lock is released.
type Out = Vec<([u8; MAX_DATAGRAM_LEN], usize)>;

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
        let core = c.lock().stats();
        NotifierStats {
            calls: c.calls.load(Ordering::Relaxed),
            datagrams: core.datagrams - core.probes - core.retransmissions,
            inline: c.inline.load(Ordering::Relaxed),
            bursts: c.bursts.load(Ordering::Relaxed),
            cpu_moves: c.cpu_moves.load(Ordering::Relaxed),
            probes: core.probes,
            retransmissions: core.retransmissions,
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
    /// nanoseconds when the notifier is busy: the datagram is then sent by
    /// its thread, merged with whatever else arrives meanwhile.
    pub fn notify(&self, notification: Notification, batch: u32) {
        let core = &self.handle.core;
        let batch = batch.max(1);
        core.calls.fetch_add(1, Ordering::Relaxed);
        match (notification.kind(), notification.channel()) {
            (Kind::Status, None) => add(&core.status_all, batch),
            (Kind::NonStatus, None) => add(&core.non_status_all, batch),
            // targeted: into the core's table, under its lock
            _ => core.lock().notify(core.clock.now(), notification, batch),
        }
        // The thread sleeps: send from here what the core says is due,
        // saving the thread's wake-up on the latency path. Otherwise the
        // thread sends, merging this call with whatever else arrives
        // meanwhile (a hot loop stays a handful of datagrams).
        core.wake_or_send_inline();
    }

    /// Waits until everything notified so far has been handed to the
    /// socket, or `timeout` passes; returns whether it was.
    pub fn flush(&self, timeout: Duration) -> bool {
        let core = &self.handle.core;
        let deadline = std::time::Instant::now() + timeout;
        let (lock, cond) = &core.idle;
        let mut guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if !core.has_pending() && !core.busy.load(Ordering::SeqCst) {
                return true;
            }
            core.wake();
            let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) else {
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
    /// arrives or `timeout` passes: at-least-once delivery. Blocks the
    /// caller; confirmed sends go one at a time.
    pub fn notify_confirmed(
        &self,
        notification: Notification,
        batch: u32,
        timeout: Duration,
    ) -> Result<AckResult, NotifyError> {
        let core = &self.handle.core;
        core.calls.fetch_add(1, Ordering::Relaxed);
        let mut guard = core.confirm.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = Some(bind_for(core.broker)?);
        }
        let Some(socket) = guard.as_ref() else {
            return Err(NotifyError::Io(io::Error::other("no confirm socket")));
        };
        let started = core.clock.now();
        core.lock()
            .notify_confirmed(started, notification, batch, timeout.into())
            .map_err(io::Error::other)?;
        let outcome = core.confirm_on(socket, timeout);
        if outcome.is_err() {
            core.lock().cancel_confirmed();
        }
        outcome
    }
}

impl Front {
    fn signer(&self) -> Option<&dyn Signer> {
        self.key.as_ref().map(|k| k as &dyn Signer)
    }

    fn lock(&self) -> MutexGuard<'_, Box<State>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives the untargeted calls' counts to the core.
    fn drain(&self, state: &mut State, now: flagpost_core::Instant) {
        let status = self.status_all.swap(0, Ordering::AcqRel);
        if status > 0 {
            state.notify(now, Notification::status(None), status);
        }
        let non_status = self.non_status_all.swap(0, Ordering::AcqRel);
        if non_status > 0 {
            state.notify(now, Notification::non_status(None), non_status);
        }
    }

    /// Drains the calls into the core and takes what it says is due:
    /// whether more is pending, and when to look again.
    /// `calls_at`: when the calls not yet drained were last seen coming
    /// (by the thread's watch), if earlier than now.
    fn take_due(
        &self,
        out: &mut Out,
        calls_at: Option<flagpost_core::Instant>,
    ) -> (bool, Option<flagpost_core::Instant>) {
        let now = self.clock.now();
        let mut state = self.lock();
        self.drain(&mut state, calls_at.unwrap_or(now).min(now));
        self.poll_due(&mut state, now, out)
    }

    /// Takes what the core says is due, without draining the front: the
    /// parked thread's part (the calls in the front belong to the caller
    /// that takes the send flag, which sends them inline).
    fn take_due_parked(&self, out: &mut Out) -> Option<flagpost_core::Instant> {
        let now = self.clock.now();
        let mut state = self.lock();
        self.poll_due(&mut state, now, out).1
    }

    fn poll_due(
        &self,
        state: &mut State,
        now: flagpost_core::Instant,
        out: &mut Out,
    ) -> (bool, Option<flagpost_core::Instant>) {
        let mut buf = [0u8; MAX_DATAGRAM_LEN];
        while out.len() < OUT_BATCH {
            match state.poll_notifications_signed(now, &mut buf, self.signer()) {
                Some(n) => out.push((buf, n)),
                None => break,
            }
        }
        (state.has_pending(), state.poll_timeout_notifications())
    }

    /// Sends `out` (after the core's lock is released); returns how many.
    fn send_all(&self, out: &mut Out) -> u64 {
        let mut sent = 0;
        for (buf, len) in out.drain(..) {
            match self.socket.send(&buf[..len]) {
                Ok(_) => sent += 1,
                Err(_) => {
                    self.send_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        sent
    }

    fn has_pending(&self) -> bool {
        self.status_all.load(Ordering::SeqCst) > 0
            || self.non_status_all.load(Ordering::SeqCst) > 0
            || self.lock().has_pending()
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

    #[inline]
    fn wake_or_send_inline(&self) {
        // Pairs with the SeqCst store + re-check in `run`.
        std::sync::atomic::fence(Ordering::SeqCst);
        if !self.sleeping.load(Ordering::SeqCst) {
            return; // the thread is at work and will see the call
        }
        if !self.sleeping.swap(false, Ordering::SeqCst) {
            return; // another caller took it
        }
        self.busy.store(true, Ordering::SeqCst);
        let mut out = Vec::new();
        let (more, next) = self.take_due(&mut out, None);
        let sent = self.send_all(&mut out);
        self.inline.fetch_add(sent, Ordering::Relaxed);
        if !more {
            // The thread need not hear of this send when it will wake by
            // itself before the probe just armed is due (it then finds the
            // probe moved and sleeps on): in a steady trickle it wakes once
            // per probe delay, not once per send.
            let covered =
                next.is_none_or(|at| self.parked_until.load(Ordering::SeqCst) <= at.as_micros());
            // Hand the flag back, so that the next quiet call goes inline
            // too; re-check after handing over, as the thread does, so that no
            // call is stranded.
            self.busy.store(false, Ordering::SeqCst);
            self.sleeping.store(true, Ordering::SeqCst);
            if !self.has_pending() || !self.sleeping.swap(false, Ordering::SeqCst) {
                // Wake the thread only to re-arm its timer, after handing
                // the flag back: a woken thread that held the flag made the
                // next calls wait for its wake-up (25–50 µs on an idle vCPU).
                if !covered {
                    self.wake();
                }
                return;
            }
        }
        // A burst (the core paces it): hand the flag, still held, to the
        // thread, which sends its rounds, merging the calls that find the
        // flag held meanwhile.
        self.handoff.store(true, Ordering::SeqCst);
        self.wake();
    }

    /// Waits until the core's next round of a burst is due (`next`):
    /// watching the call counter and telling the core when it moved, so
    /// that the pace ends early once calls stop; or sleeping it out.
    /// Returns when calls were last seen coming (for their record).
    fn wait_for_round(
        &self,
        mut next: Option<flagpost_core::Instant>,
        placement: &mut Placement,
    ) -> Option<flagpost_core::Instant> {
        if !self.spin {
            if let Some(at) = next {
                std::thread::sleep(self.clock.until(at));
            }
            return None;
        }
        let mut calls_at = None;
        // Each look at the counter costs the calling thread a cache miss on
        // its next call, so look twice per quiet period, not per yield.
        let look_every = Duration::from_nanos(self.lock().config().quiet.as_micros() * 500);
        let mut calls = self.calls.load(Ordering::Relaxed);
        let mut looked = std::time::Instant::now();
        let mut before = looked;
        loop {
            // Let the broker and listeners run if they share this CPU; move
            // off it if the callers' busy thread does.
            std::thread::yield_now();
            let after = std::time::Instant::now();
            if placement.after_yield(after - before) {
                self.cpu_moves.fetch_add(1, Ordering::Relaxed);
            }
            before = after;
            let now = self.clock.now();
            if after - looked >= look_every {
                looked = after;
                let seen = self.calls.load(Ordering::Relaxed);
                if seen != calls {
                    // the counts stay in the front until the round takes them
                    calls = seen;
                    calls_at = Some(now);
                    let mut state = self.lock();
                    state.calls_seen(now);
                    next = state.poll_timeout_notifications();
                }
                if self.stop.load(Ordering::Relaxed) {
                    return calls_at;
                }
            }
            if next.is_none_or(|at| now >= at) {
                return calls_at;
            }
        }
    }

    /// Sends what is due and parks until the core's next deadline (a
    /// probe), a hand-off or the stop; returns whether a burst was handed
    /// over.
    fn park_until_burst(&self) -> bool {
        loop {
            if self.handoff.swap(false, Ordering::SeqCst) {
                return true; // a caller handed over the flag with a burst
            }
            if self.stop.load(Ordering::SeqCst) {
                return false;
            }
            let mut out = Vec::new();
            let next = self.take_due_parked(&mut out);
            self.send_all(&mut out);
            match next {
                Some(at) => {
                    self.parked_until.store(at.as_micros(), Ordering::SeqCst);
                    std::thread::park_timeout(self.clock.until(at));
                }
                None => std::thread::park(),
            }
            self.parked_until.store(u64::MAX, Ordering::SeqCst);
        }
    }

    /// At the stop: what is pending, and the probe if armed, go out now.
    fn close(&self) {
        let now = self.clock.now();
        let mut out: Out = Vec::new();
        {
            let mut state = self.lock();
            self.drain(&mut state, now);
            state.close();
            let mut buf = [0u8; MAX_DATAGRAM_LEN];
            while let Some(n) = state.poll_notifications_signed(now, &mut buf, self.signer()) {
                out.push((buf, n));
            }
        }
        self.send_all(&mut out);
    }

    /// The sender thread. It holds the send flag (`sleeping` false) while it
    /// sends a burst; asleep, it holds nothing, so quiet calls send inline,
    /// and it takes the flag only when a caller hands it a burst.
    fn run(self: Arc<Self>) {
        // Linux lets a normal thread's timers fire up to 50 µs late (timer
        // slack); the pacing sleep of 20 µs then lasted 70–85 µs.
        #[cfg(target_os = "linux")]
        let _ = nix::sys::prctl::set_timerslack(1_000);
        let mut placement = Placement::of_this_thread();
        loop {
            if !self.park_until_burst() {
                self.close();
                return;
            }
            self.bursts.fetch_add(1, Ordering::Relaxed);
            let mut calls_at = None;
            loop {
                self.busy.store(true, Ordering::SeqCst);
                let mut out = Vec::new();
                let (more, next) = self.take_due(&mut out, calls_at.take());
                self.send_all(&mut out);
                if more && !self.stop.load(Ordering::SeqCst) {
                    // paced: the next round when the core says
                    calls_at = self.wait_for_round(next, &mut placement);
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

mod confirm;
mod placement;
mod refused;
#[cfg(test)]
mod tests;
