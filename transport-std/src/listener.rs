//! The `Listener` applications link: start listening (all channels or one),
//! then check flags with a lock-free test-and-clear, or wait for one.
//!
//! A TCP listener runs one small I/O thread that drives the core's
//! [`ListenerSession`]: hello, welcome, flags, keep-alive pings, and on any
//! loss a reconnect with capped exponential backoff. Every welcome — the first
//! and each after a reconnect — raises every flag listened for, since what
//! happened while away may have been missed. An in-process listener
//! ([`ListenerBuilder::local`]) gets the same API straight from an embedded
//! broker, without TCP.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use flagpost_core::broker::{ListenerId, OpenError};
use flagpost_core::client::{Backoff, ListenerSession};
use flagpost_core::wire::{frame_len, FrameRepr, MAX_FRAME_LEN};
use flagpost_core::{ChannelId, FlagSet};
use tracing::debug;

use crate::clock::Clock;
use crate::server::{BrokerGone, BrokerHandle};
use crate::shared::{ListenerState, Shared};

/// Why a listener could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// The broker address did not resolve.
    #[error("cannot resolve broker address {0:?}")]
    Resolve(String),
    /// The I/O thread could not be started.
    #[error("cannot start the listener thread: {0}")]
    Thread(#[from] io::Error),
    /// The in-process broker has stopped.
    #[error(transparent)]
    BrokerGone(#[from] BrokerGone),
    /// The in-process broker refused (full or shutting down).
    #[error("the broker refused the listener: {0}")]
    Refused(OpenError),
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
}

impl Default for ListenerBuilder {
    fn default() -> Self {
        ListenerBuilder {
            channel: None,
            interest: FlagSet::ALL,
            keepalive: Duration::ZERO,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
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

    /// Reconnect backoff: first delay and cap (default 100 ms, 5 s).
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
        let addr = addr
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| ListenError::Resolve(format!("{addr:?}")))?;
        let shared = Arc::new(Shared::new(ListenerState::Connecting));
        let control = Arc::new(Control::default());
        let keepalive_secs = u16::try_from(self.keepalive.as_secs()).unwrap_or(u16::MAX);
        let session = ListenerSession::new(self.interest, self.channel, keepalive_secs);
        let backoff = Backoff::new(self.backoff_initial.into(), self.backoff_max.into());
        let task = Task {
            addr,
            session,
            backoff,
            shared: shared.clone(),
            control: control.clone(),
            connect_timeout: self.connect_timeout,
            clock: Clock::new(),
        };
        let thread = std::thread::Builder::new()
            .name("flagpost-listener".into())
            .spawn(move || task.run())?;
        Ok(Listener {
            shared,
            backend: Backend::Tcp {
                control,
                thread: Mutex::new(Some(thread)),
            },
        })
    }

    /// Starts listening inside the process that runs `broker`: no TCP, same
    /// API. Every flag listened for is raised once at the start.
    pub fn local(self, broker: &BrokerHandle) -> Result<Listener, ListenError> {
        let shared = Arc::new(Shared::new(ListenerState::Listening));
        let interest = if self.interest.is_empty() {
            FlagSet::ALL
        } else {
            self.interest
        };
        let id = broker
            .open_local(interest, self.channel, shared.clone())?
            .map_err(ListenError::Refused)?;
        shared.raise(interest);
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
/// lock); [`wait`](Self::wait) blocks until any flag is raised. `Send +
/// Sync`: share it between threads behind an `Arc`. Dropping it stops
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
        thread: Mutex<Option<JoinHandle<()>>>,
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

    /// Blocks until a flag is raised (true), or `timeout` passes or the
    /// listener stops (false). Clears nothing; no spinning.
    pub fn wait(&self, timeout: Duration) -> bool {
        self.shared.wait(timeout)
    }

    /// Where the listener is: connecting, listening, backing off, closed.
    pub fn state(&self) -> ListenerState {
        self.shared.state()
    }

    /// Blocks until the listener is listening (true) or `timeout` passes.
    pub fn wait_listening(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let backend = match &self.backend {
            Backend::Tcp { control, .. } => control,
            Backend::Local { .. } => return self.state() == ListenerState::Listening,
        };
        let mut guard = backend.lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            match self.state() {
                ListenerState::Listening => return true,
                ListenerState::Closed => return false,
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

    /// The shared flags and wait machinery (for [`crate::Service`]).
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Stops listening (`StopChangeListening`): the broker gets a close
    /// frame and waiting threads return. Idempotent; also done on drop.
    pub fn stop(&self) {
        match &self.backend {
            Backend::Tcp { control, thread } => {
                control.stop();
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

/// Stop signal and state-change notification for the I/O thread.
#[derive(Debug, Default)]
struct Control {
    lock: Mutex<ControlState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct ControlState {
    stop: bool,
    stream: Option<TcpStream>,
}

impl Control {
    fn stop(&self) {
        let mut s = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        s.stop = true;
        // Unblock a read in progress; the thread then sends its close frame.
        if let Some(stream) = &s.stream {
            let _ = stream.shutdown(std::net::Shutdown::Read);
        }
        self.changed.notify_all();
    }

    fn stopped(&self) -> bool {
        self.lock.lock().unwrap_or_else(|p| p.into_inner()).stop
    }

    fn set_stream(&self, stream: Option<TcpStream>) -> bool {
        let mut s = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        s.stream = stream;
        !s.stop
    }

    fn notify(&self) {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.changed.notify_all();
    }

    /// Sleeps up to `d`, returning early (true) when stopped.
    fn sleep(&self, d: Duration) -> bool {
        let guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, d, |s| !s.stop)
            .unwrap_or_else(|p| p.into_inner());
        guard.stop
    }
}

struct Task {
    addr: SocketAddr,
    session: ListenerSession,
    backoff: Backoff,
    shared: Arc<Shared>,
    control: Arc<Control>,
    connect_timeout: Duration,
    clock: Clock,
}

impl Task {
    fn set_state(&self, state: ListenerState) {
        self.shared.set_state(state);
        self.control.notify();
    }

    fn run(mut self) {
        while !self.control.stopped() {
            self.set_state(ListenerState::Connecting);
            match TcpStream::connect_timeout(&self.addr, self.connect_timeout) {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    let registered = stream
                        .try_clone()
                        .map(|clone| self.control.set_stream(Some(clone)))
                        .unwrap_or(true);
                    if registered {
                        self.session.connected(self.clock.now());
                        let result = self.serve(&stream);
                        debug!(addr = %self.addr, ?result, "listener connection ended");
                    }
                    self.control.set_stream(None);
                    self.session.disconnected();
                }
                Err(error) => debug!(addr = %self.addr, %error, "cannot connect to broker"),
            }
            if self.control.stopped() {
                break;
            }
            self.set_state(ListenerState::BackingOff);
            let delay = self
                .backoff
                .next_delay(getrandom::u32().unwrap_or(u32::MAX / 2));
            if self.control.sleep(delay.into()) {
                break;
            }
        }
        self.set_state(ListenerState::Closed);
    }

    /// One connection's life: returns when it ends (or must end).
    fn serve(&mut self, stream: &TcpStream) -> io::Result<()> {
        let mut stream = stream;
        let mut rbuf = [0u8; 16 * MAX_FRAME_LEN];
        let mut rlen = 0;
        let mut wbuf = [0u8; MAX_FRAME_LEN];
        loop {
            let now = self.clock.now();
            if self.control.stopped() {
                self.session.close();
            }
            while let Some(frame) = self.session.poll_transmit(now) {
                let n = frame.emit(&mut wbuf).map_err(io::Error::other)?;
                stream.write_all(&wbuf[..n])?;
            }
            if self.control.stopped() {
                let _ = stream.shutdown(std::net::Shutdown::Write);
                return Ok(());
            }
            let timeout = self
                .session
                .poll_timeout()
                .map(|at| self.clock.until(at).max(Duration::from_millis(1)));
            stream.set_read_timeout(timeout)?;
            match stream.read(&mut rbuf[rlen..]) {
                Ok(0) if self.control.stopped() => continue, // stop() shut our read side
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => rlen += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    self.session
                        .handle_timeout(self.clock.now())
                        .map_err(io::Error::other)?;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let now = self.clock.now();
            let mut start = 0;
            while let Some(len) = frame_len(&rbuf[start..rlen]).map_err(io::Error::other)? {
                let frame =
                    FrameRepr::parse_bytes(&rbuf[start..start + len]).map_err(io::Error::other)?;
                start += len;
                let was_listening = self.shared.state() == ListenerState::Listening;
                let raised = self
                    .session
                    .handle_frame(now, &frame)
                    .map_err(io::Error::other)?;
                if !was_listening && matches!(frame, FrameRepr::Welcome(_)) {
                    self.backoff.reset();
                    self.set_state(ListenerState::Listening);
                }
                self.shared.raise(raised);
            }
            rbuf.copy_within(start..rlen, 0);
            rlen -= start;
            self.session.handle_timeout(now).map_err(io::Error::other)?;
        }
    }
}
