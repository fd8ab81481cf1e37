//! The `Listener` applications link: start listening (all channels or one),
//! then check flags with a lock-free test-and-clear, or wait for one.
//!
//! A TCP listener runs one small I/O thread that drives the core's
//! [`ListenerSession`]: hello, welcome, flags, keep-alive pings, and on any
//! loss a reconnect with the session's capped exponential backoff. Every
//! welcome — the first and each after a reconnect — is a *reconnect raise*:
//! status, non-status and channel update within the interest, never channel
//! shutdown, marked so that [`Listener::check_reconnect`] and
//! [`Listener::take_raise`] can tell it from a notification. An in-process
//! listener ([`ListenerBuilder::local`]) gets the same API straight from an
//! embedded broker, without TCP.
//!
//! On Unix a thread blocked in [`Listener::wait`] does not wait for the I/O
//! thread to hand it the news: it polls the socket itself, and whichever of
//! the two wakes first reads and raises (the connection's state sits behind
//! a mutex neither holds while blocked). The kernel thus wakes the waiter
//! directly, as it would wake a thread blocked in `read`.
//!
//! With a key ([`ListenerBuilder::key`]) each connection authenticates
//! (`PROTOCOL.md`, *Listener authentication*). A refusal either way — the
//! broker requires a key, has none, holds another, or does not prove it
//! holds ours — is not retried any faster than any other loss: the session
//! backs off as usual (capped at 5 s by default), so a key file corrected
//! on either side heals the listener without a restart. It is not silent
//! either: [`Listener::auth_error`] says why, [`Listener::wait_listening`]
//! returns early when an attempt is refused, and each new kind of refusal
//! is logged as a warning.
//!
//! With several brokers ([`ListenerBuilder::connect_any`]) the listener
//! fails over: it connects to the first, moves to the next whenever a
//! connection is lost or an attempt fails, and stays on one that works; the
//! order and the backoff are the core session's (`flagpost_core::listener`,
//! *Fail-over*), and each move is a reconnect raise, as every welcome is.
//! [`Listener::broker`] says which broker it is on.
//!
//! The connection's receive buffer is the smallest the kernel allows
//! ([`RECV_BUFFER`]): frames are at most 70 bytes and read at once, so it
//! costs nothing while the process runs, and when the process is frozen
//! (stopped, in a debugger) its TCP window closes after a few frames, so the
//! broker sees it stuck within a second instead of after filling a large
//! buffer.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use flagpost_core::auth::Key;
use flagpost_core::broker::{ListenerId, OpenError};
use flagpost_core::listener::{AuthError, ListenerConfig, ListenerSession, Raise};
use flagpost_core::wire::{FrameReader, MAX_FRAME_LEN};
use flagpost_core::{ChannelId, FlagSet};

use crate::clock::Clock;
use crate::server::{BrokerGone, BrokerHandle};
pub use crate::shared::RaiseHook;
use crate::shared::{ListenerState, Shared};

#[cfg(feature = "tokio")]
mod asynch;
mod link;
mod task;

#[cfg(feature = "tokio")]
pub use asynch::Raises;
pub use link::{LinkError, LinkEvent};
use task::{Control, Io, Task};

/// Why a listener could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// The broker address did not resolve.
    #[error("cannot resolve broker address {0:?}")]
    Resolve(String),
    /// A list of brokers that is empty or longer than 255.
    #[error("a listener takes 1 to 255 broker addresses, not {0}")]
    Brokers(usize),
    /// The I/O thread could not be started.
    #[error("cannot start the listener thread: {0}")]
    Thread(#[from] io::Error),
    /// The in-process broker has stopped.
    #[error(transparent)]
    BrokerGone(#[from] BrokerGone),
    /// The in-process broker refused (full or shutting down).
    #[error("the broker refused the listener: {0}")]
    Refused(OpenError),
    /// The broker and this listener could not authenticate each other
    /// (see [`Listener::auth_error`]).
    #[error("{0}")]
    Auth(AuthError),
    /// No random seed for the handshake's nonces could be drawn.
    #[error("cannot draw a random seed for the key's nonces: {0}")]
    Random(getrandom::Error),
}

/// Settings for a [`Listener`].
#[derive(Clone, Debug)]
pub struct ListenerBuilder {
    channel: Option<ChannelId>,
    interest: FlagSet,
    keepalive: Duration,
    backoff_initial: Duration,
    backoff_max: Duration,
    connect_timeout: Duration,
    key: Option<Key>,
    hook: Option<RaiseHook>,
}

impl Default for ListenerBuilder {
    fn default() -> Self {
        ListenerBuilder {
            channel: None,
            interest: FlagSet::ALL,
            keepalive: Duration::ZERO,
            backoff_initial: ListenerConfig::BACKOFF_INITIAL.into(),
            backoff_max: ListenerConfig::BACKOFF_MAX.into(),
            connect_timeout: Duration::from_secs(5),
            key: None,
            hook: None,
        }
    }
}

impl ListenerBuilder {
    /// Listen for one channel only (default: all channels).
    pub fn channel(mut self, channel: ChannelId) -> Self {
        self.channel = Some(channel);
        self
    }

    /// The flags wanted (default: all four).
    pub fn interest(mut self, interest: FlagSet) -> Self {
        self.interest = interest;
        self
    }

    /// The keep-alive timeout to ask for (default: the broker's, 30 s).
    pub fn keepalive(mut self, keepalive: Duration) -> Self {
        self.keepalive = keepalive;
        self
    }

    /// Authenticate with `key` (the broker's, from its key file): every
    /// connection then runs the handshake of `PROTOCOL.md` and speaks
    /// protocol version 2. Without it the listener speaks version 1 and a
    /// broker with a key refuses it. An in-process listener
    /// ([`local`](Self::local)) needs no key.
    pub fn key(mut self, key: Key) -> Self {
        self.key = Some(key);
        self
    }

    /// Calls `hook` after each raise of this listener's flags and when it
    /// closes, on the thread that raised (see [`RaiseHook`]): for callers
    /// that wait in an event loop of their own rather than in
    /// [`Listener::wait`].
    pub fn on_raise(mut self, hook: RaiseHook) -> Self {
        self.hook = Some(hook);
        self
    }

    /// Reconnect backoff: first delay and cap (default 100 ms, 2 s).
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff_initial = initial;
        self.backoff_max = max;
        self
    }

    /// Starts listening to the broker at `addr` over TCP. Returns at once;
    /// the connection is made (and remade) in the background.
    pub fn connect(
        self,
        addr: impl ToSocketAddrs + std::fmt::Debug,
    ) -> Result<Listener, ListenError> {
        self.start(vec![resolve(&addr)?])
    }

    /// Starts listening to the first of `brokers` (1 to 255) over TCP, and
    /// fails over to the next whenever a connection is lost or cannot be
    /// made, staying on one that works (see the module docs). Each address
    /// is resolved now (its first address is used): one that does not
    /// resolve is [`ListenError::Resolve`]. Returns at once; the connection
    /// is made (and remade) in the background.
    pub fn connect_any<A: ToSocketAddrs + std::fmt::Debug>(
        self,
        brokers: &[A],
    ) -> Result<Listener, ListenError> {
        if brokers.is_empty() || brokers.len() > usize::from(u8::MAX) {
            return Err(ListenError::Brokers(brokers.len()));
        }
        let addrs = brokers.iter().map(resolve).collect::<Result<_, _>>()?;
        self.start(addrs)
    }

    /// Starts the I/O thread for `brokers` (1 to 255).
    fn start(self, brokers: Vec<SocketAddr>) -> Result<Listener, ListenError> {
        let brokers: Arc<[SocketAddr]> = brokers.into();
        let shared = Arc::new(Shared::with_hook(ListenerState::Connecting, self.hook));
        let control = Arc::new(Control::default());
        let keepalive_secs = u16::try_from(self.keepalive.as_secs()).unwrap_or(u16::MAX);
        let clock = Clock::new();
        let mut session = ListenerSession::new(ListenerConfig {
            interest: self.interest,
            channel: self.channel,
            keepalive_secs,
            backoff_initial: self.backoff_initial.into(),
            backoff_max: self.backoff_max.into(),
            brokers: u8::try_from(brokers.len()).unwrap_or(u8::MAX),
        });
        if let Some(key) = self.key {
            // fresh per listener, so that its nonces never repeat
            let mut seed = [0u8; 16];
            getrandom::fill(&mut seed).map_err(ListenError::Random)?;
            session = session.with_key(key, seed);
        }
        let io = Arc::new(Mutex::new(Io {
            session,
            auth_failed: None,
            stream: None,
            reader: Box::new(FrameReader::new()),
            failed: false,
            error: None,
            changed: false,
            pollers: 0,
        }));
        let task = Task {
            brokers: brokers.clone(),
            io: io.clone(),
            shared: shared.clone(),
            control: control.clone(),
            connect_timeout: self.connect_timeout,
            clock,
        };
        #[cfg(unix)]
        let wake = std::os::unix::net::UnixDatagram::pair()?;
        #[cfg(unix)]
        wake.1.set_nonblocking(true)?;
        let thread = std::thread::Builder::new()
            .name("flagpost-listener".into())
            .spawn(move || task.run())?;
        Ok(Listener {
            shared,
            backend: Backend::Tcp {
                control,
                io,
                thread: Mutex::new(Some(thread)),
                #[cfg(unix)]
                wake,
                clock,
                brokers,
            },
        })
    }

    /// Starts listening inside the process that runs `broker`: no TCP, same
    /// API. The start is a reconnect raise, as over TCP.
    pub fn local(self, broker: &BrokerHandle) -> Result<Listener, ListenError> {
        let shared = Arc::new(Shared::with_hook(ListenerState::Listening, self.hook));
        let interest = if self.interest.is_empty() {
            FlagSet::ALL
        } else {
            self.interest
        };
        // Raised before the broker knows the listener, so that every later
        // raise comes from the broker's loop alone (see `Shared::raise`).
        if !(interest & FlagSet::RECHECK).is_empty() {
            shared.raise_reconnect(interest & FlagSet::RECHECK);
        }
        let id = broker
            .open_local(interest, self.channel, shared.clone())?
            .map_err(ListenError::Refused)?;
        Ok(Listener {
            shared,
            backend: Backend::Local {
                broker: broker.clone(),
                id,
            },
        })
    }
}

/// A listener: `check_*` are test-and-clear reads of memory (no syscall, no
/// lock, no locked instruction); [`wait`](Self::wait) blocks until any flag
/// is raised. `Send + Sync`: share it between threads behind an `Arc` —
/// checks racing from several threads on the same flag may both read one
/// raise as `true` (a spare wake-up, never a lost one). Dropping it stops
/// listening (a close frame tells the broker).
#[derive(Debug)]
pub struct Listener {
    shared: Arc<Shared>,
    backend: Backend,
}

#[derive(Debug)]
enum Backend {
    Tcp {
        control: Arc<Control>,
        io: Arc<Mutex<Io>>,
        thread: Mutex<Option<JoinHandle<()>>>,
        /// Written by `interrupt` to wake threads polling in `wait`.
        #[cfg(unix)]
        wake: (
            std::os::unix::net::UnixDatagram,
            std::os::unix::net::UnixDatagram,
        ),
        /// For the poll deadlines of `wait` (Unix only).
        #[cfg_attr(not(unix), allow(dead_code))]
        clock: Clock,
        /// The brokers, in the order tried.
        brokers: Arc<[SocketAddr]>,
    },
    Local {
        broker: BrokerHandle,
        id: ListenerId,
    },
}

impl Listener {
    /// Settings for a listener.
    pub fn builder() -> ListenerBuilder {
        ListenerBuilder::default()
    }

    /// Listens to every flag of every channel at `addr`.
    pub fn connect(addr: impl ToSocketAddrs + std::fmt::Debug) -> Result<Listener, ListenError> {
        ListenerBuilder::default().connect(addr)
    }

    /// Test-and-clear the status flag (`HasStatusUpdate`).
    #[inline]
    pub fn check_status_update(&self) -> bool {
        self.shared.flags().check_status()
    }

    /// Test-and-clear the non-status flag (`HasNonStatusUpdate`).
    #[inline]
    pub fn check_non_status_update(&self) -> bool {
        self.shared.flags().check_non_status()
    }

    /// Test-and-clear the channel-update flag.
    #[inline]
    pub fn check_channel_update(&self) -> bool {
        self.shared.flags().check_channel_update()
    }

    /// Test-and-clear the channel-shutdown flag.
    #[inline]
    pub fn check_channel_shutdown(&self) -> bool {
        self.shared.flags().check_channel_shutdown()
    }

    /// Takes every raised flag at once.
    #[inline]
    pub fn take(&self) -> FlagSet {
        self.shared.flags().take()
    }

    /// Test-and-clear of the reconnect mark: true when a reconnect raise
    /// (the listener (re)connected and re-checks; nothing was notified) came
    /// since the last call. Check it before the flags it marks.
    #[inline]
    pub fn check_reconnect(&self) -> bool {
        self.shared.take_reconnect()
    }

    /// Takes every raised flag and the reconnect mark at once: `reconnect`
    /// says that the flags (also) come from a (re)connect.
    pub fn take_raise(&self) -> Raise {
        let reconnect = self.shared.take_reconnect();
        Raise {
            flags: self.shared.flags().take(),
            reconnect,
        }
    }

    /// Blocks until a flag is raised (true), or `timeout` passes or the
    /// listener stops (false). Clears nothing; no spinning.
    pub fn wait(&self, timeout: Duration) -> bool {
        self.wait_since(self.shared.interrupts(), timeout)
    }

    /// [`wait`](Self::wait), returning false for any interrupt after the
    /// interrupt count was `epoch` (see `Shared::wait_since`).
    pub(crate) fn wait_since(&self, epoch: usize, timeout: Duration) -> bool {
        #[cfg(unix)]
        if let Backend::Tcp {
            io, wake, clock, ..
        } = &self.backend
        {
            return self.wait_polling(io, &wake.1, *clock, epoch, timeout);
        }
        self.shared.wait_since(epoch, timeout)
    }

    /// [`wait`](Self::wait) for a TCP listener on Unix: poll the socket from
    /// this thread, and read whatever arrives here (see the module docs).
    #[cfg(unix)]
    fn wait_polling(
        &self,
        io: &Mutex<Io>,
        wake: &std::os::unix::net::UnixDatagram,
        clock: Clock,
        epoch: usize,
        timeout: Duration,
    ) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let deadline = std::time::Instant::now().checked_add(timeout);
        loop {
            if !self.shared.flags().peek().is_empty() {
                return true;
            }
            if self.shared.state() == ListenerState::Closed || self.shared.interrupts() != epoch {
                return false;
            }
            let left = match deadline {
                Some(d) => d.saturating_duration_since(std::time::Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                return false;
            }
            // Under the lock: either the I/O thread already raised what it
            // read (seen here), or it will leave the reading to this poller.
            let (stream, session_at) = {
                let mut g = io.lock().unwrap_or_else(|p| p.into_inner());
                if !self.shared.flags().peek().is_empty() {
                    return true;
                }
                // The live connection, if listening; otherwise the I/O
                // thread is (re)connecting and raises everything on the
                // next welcome.
                let live = g
                    .stream
                    .clone()
                    .filter(|_| !g.failed && self.shared.state() == ListenerState::Listening);
                if live.is_some() {
                    g.pollers += 1;
                }
                (live, g.session.poll_timeout())
            };
            let Some(stream) = stream else {
                return self.shared.wait_since(epoch, left);
            };
            let until = session_at.map_or(left, |at| clock.until(at)).min(left);
            let ms = u16::try_from(until.as_millis().max(1)).unwrap_or(u16::MAX);
            let mut fds = [
                PollFd::new(stream.as_fd(), PollFlags::POLLIN),
                PollFd::new(wake.as_fd(), PollFlags::POLLIN),
            ];
            // An error (EINTR) is handled like a wake-up: re-check and retry.
            let _ = poll(&mut fds, PollTimeout::from(ms));
            if fds[1].any().unwrap_or(false) {
                let mut sink = [0u8; 16];
                while wake.recv(&mut sink).is_ok() {}
            }
            let mut g = io.lock().unwrap_or_else(|p| p.into_inner());
            g.pollers -= 1;
            if g.stream.as_ref().is_some_and(|s| Arc::ptr_eq(s, &stream)) && !g.failed {
                let now = clock.now();
                g.pump(now, &self.shared);
            }
        }
    }

    /// Wakes every thread in [`wait`](Self::wait) (they return `false`
    /// unless a flag is raised).
    pub(crate) fn interrupt(&self) {
        self.shared.interrupt();
        #[cfg(unix)]
        if let Backend::Tcp { wake, .. } = &self.backend {
            let _ = wake.0.send(&[1]);
        }
    }

    /// Where the listener is: connecting, listening, backing off, closed.
    pub fn state(&self) -> ListenerState {
        self.shared.state()
    }

    /// The broker the listener is connected to, or connecting to, or tries
    /// next while backing off (one of those given to
    /// [`connect_any`](ListenerBuilder::connect_any), or the one of
    /// [`connect`](ListenerBuilder::connect)); `None` in process.
    pub fn broker(&self) -> Option<SocketAddr> {
        match &self.backend {
            Backend::Tcp { io, brokers, .. } => {
                let index = io
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .session
                    .broker();
                brokers.get(index).copied()
            }
            Backend::Local { .. } => None,
        }
    }

    /// Blocks until the listener is listening (true), or `timeout` passes,
    /// or a connection attempt made meanwhile is refused authentication
    /// (false; [`auth_error`](Self::auth_error) says why, and the listener
    /// keeps retrying with its backoff).
    pub fn wait_listening(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let backend = match &self.backend {
            Backend::Tcp { control, .. } => control,
            Backend::Local { .. } => return self.state() == ListenerState::Listening,
        };
        let mut guard = backend.lock.lock().unwrap_or_else(|p| p.into_inner());
        let refusals = guard.auth_refusals;
        loop {
            match self.state() {
                ListenerState::Listening => return true,
                ListenerState::Closed => return false,
                _ if guard.auth_refusals != refusals => return false,
                _ => {}
            }
            let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) else {
                return false;
            };
            guard = match backend.changed.wait_timeout(guard, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// Why the latest connection attempt failed to authenticate
    /// ([`ListenError::Auth`]), until a connection succeeds; `None` when it
    /// did not fail so (or for an in-process listener). The listener keeps
    /// retrying meanwhile, at its backoff's pace.
    pub fn auth_error(&self) -> Option<ListenError> {
        match &self.backend {
            Backend::Tcp { control, .. } => control.auth().map(ListenError::Auth),
            Backend::Local { .. } => None,
        }
    }

    /// What happened to the connection since the last call, oldest first
    /// (the latest 64): connecting, connected, listening, and why each
    /// attempt or connection ended. Empty for an in-process listener.
    pub fn take_link_events(&self) -> Vec<LinkEvent> {
        match &self.backend {
            Backend::Tcp { control, .. } => control.take_events(),
            Backend::Local { .. } => Vec::new(),
        }
    }

    /// The shared flags and wait machinery (for [`crate::Service`]).
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Stops listening (`StopChangeListening`): the broker gets a close
    /// frame and waiting threads return. Idempotent; also done on drop.
    pub fn stop(&self) {
        match &self.backend {
            Backend::Tcp {
                control,
                io,
                thread,
                ..
            } => {
                control.stop();
                // Unblock the I/O thread's poll; it then sends its close frame.
                let stream = io.lock().unwrap_or_else(|p| p.into_inner()).stream.clone();
                if let Some(stream) = stream {
                    let _ = stream.shutdown(std::net::Shutdown::Read);
                }
                self.shared.stop.store(true, Ordering::Release);
                let handle = thread.lock().unwrap_or_else(|p| p.into_inner()).take();
                if let Some(handle) = handle {
                    let _ = handle.join();
                }
            }
            Backend::Local { broker, id } => {
                if self.shared.state() != ListenerState::Closed {
                    broker.close_local(*id);
                }
            }
        }
        self.shared.set_state(ListenerState::Closed);
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The first address `addr` resolves to.
fn resolve(addr: &(impl ToSocketAddrs + std::fmt::Debug)) -> Result<SocketAddr, ListenError> {
    addr.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| ListenError::Resolve(format!("{addr:?}")))
}

/// Bytes of frames that may arrive in one read.
const RBUF: usize = 16 * MAX_FRAME_LEN;

/// The receive buffer asked for on a listener's connection: Linux doubles
/// it and raises it to its minimum (2,304 bytes, a window of about a
/// kilobyte); other systems take it as is (still fourteen of the largest
/// frames).
pub const RECV_BUFFER: usize = 1024;
