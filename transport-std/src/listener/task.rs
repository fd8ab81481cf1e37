//! The listener's I/O thread: one connection at a time, to the broker the
//! core's session picks among the listener's brokers, driven by that
//! session (connect, hello and handshake, read and raise, keep-alive, back
//! off), and the [`Control`] it shares with the handles (stop, state
//! changes, authentication outcome).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use flagpost_core::listener::{AuthError, ListenerSession, SessionError};
use flagpost_core::wire::{FrameReader, MAX_FRAME_LEN};
use tracing::{debug, info, warn};

use super::link::{Events, LinkError, LinkEvent};
use super::{RBUF, RECV_BUFFER};
use crate::clock::Clock;
use crate::shared::{ListenerState, Shared};

/// Stop signal, state-change notification and authentication outcome,
/// between the I/O thread and the handles. Locked after `Io` when both are.
#[derive(Debug, Default)]
pub(super) struct Control {
    pub(super) lock: Mutex<ControlState>,
    pub(super) changed: Condvar,
}

#[derive(Debug, Default)]
pub(super) struct ControlState {
    pub(super) stopped: bool,
    /// Why the latest attempt failed to authenticate, until one succeeds.
    pub(super) auth: Option<AuthError>,
    /// Attempts refused authentication so far.
    pub(super) auth_refusals: u64,
    /// What happened to the connection, for `take_link_events`.
    pub(super) events: Events,
}

impl Control {
    fn state(&self) -> std::sync::MutexGuard<'_, ControlState> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn stop(&self) {
        self.state().stopped = true;
        self.changed.notify_all();
    }

    pub(super) fn stopped(&self) -> bool {
        self.state().stopped
    }

    pub(super) fn notify(&self) {
        let _guard = self.state();
        self.changed.notify_all();
    }

    pub(super) fn auth(&self) -> Option<AuthError> {
        self.state().auth
    }

    /// Records what happened to the connection and wakes waiters.
    fn event(&self, event: LinkEvent) {
        self.state().events.push(event);
        self.changed.notify_all();
    }

    pub(super) fn take_events(&self) -> Vec<LinkEvent> {
        self.state().events.take()
    }

    /// An attempt was refused authentication (`Some`), or a connection
    /// succeeded (`None`): recorded, logged when it changes, and waiters
    /// woken.
    fn set_auth(&self, outcome: Option<AuthError>, addr: SocketAddr) {
        let mut state = self.state();
        match (state.auth, outcome) {
            (before, Some(error)) => {
                state.auth_refusals += 1;
                if before != Some(error) {
                    warn!(%addr, %error, "listener not authenticated; retrying with backoff");
                } else {
                    debug!(%addr, %error, "listener not authenticated");
                }
            }
            (Some(_), None) => info!(%addr, "listener authenticated"),
            (None, None) => return,
        }
        state.auth = outcome;
        self.changed.notify_all();
    }

    /// Sleeps up to `d`, returning early (true) when stopped.
    pub(super) fn sleep(&self, d: Duration) -> bool {
        let guard = self.state();
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, d, |state| !state.stopped)
            .unwrap_or_else(|p| p.into_inner());
        guard.stopped
    }
}

/// Connects to the broker with a [`RECV_BUFFER`] receive buffer, set before
/// the handshake so that the window it advertises is small from the start.
fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // Only a bound on how much a frozen process absorbs; never fatal.
    let _ = socket.set_recv_buffer_size(RECV_BUFFER);
    socket.connect_timeout(&addr.into(), timeout)?;
    Ok(socket.into())
}

/// One connection's protocol state, shared by the I/O thread and waiters;
/// nobody holds it while blocked.
#[derive(Debug)]
pub(super) struct Io {
    pub(super) session: ListenerSession,
    /// The live connection was refused authentication (either way).
    pub(super) auth_failed: Option<AuthError>,
    /// The live connection (non-blocking); `Arc` so a poller keeps the
    /// socket it polls alive even if the connection is replaced meanwhile.
    pub(super) stream: Option<Arc<TcpStream>>,
    pub(super) reader: Box<FrameReader<RBUF>>,
    /// The connection must be dropped (EOF, error, protocol or session error).
    pub(super) failed: bool,
    /// The session error that failed the live connection, if one did.
    pub(super) error: Option<SessionError>,
    /// The session's state changed since the I/O thread last looked.
    pub(super) changed: bool,
    /// Threads polling in `wait`: while there are any, they read and the
    /// I/O thread stands aside. Changed and read only under the lock, so a
    /// waiter either sees flags raised or is the one that reads the data.
    pub(super) pollers: usize,
}

impl Io {
    /// Reads what arrived (without blocking), raises its flags, runs the
    /// session's timers and writes its frames.
    pub(super) fn pump(&mut self, now: flagpost_core::Instant, shared: &Shared) {
        let Some(stream) = self.stream.clone() else {
            return;
        };
        loop {
            match (&*stream).read(self.reader.unfilled()) {
                Ok(0) => {
                    self.failed = true;
                    return;
                }
                Ok(n) => {
                    self.reader.filled(n);
                    self.process(now, shared);
                    if self.failed {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.failed = true;
                    return;
                }
            }
        }
        if let Err(error) = self.session.handle_timeout(now) {
            self.error = Some(error);
            self.failed = true;
            return;
        }
        self.flush(now, &stream);
    }

    /// Hands every complete frame to the session and raises what it says.
    fn process(&mut self, now: flagpost_core::Instant, shared: &Shared) {
        while let Some(frame) = self.reader.next_frame() {
            let raise = frame
                .map_err(SessionError::Malformed)
                .and_then(|bytes| self.session.handle_frame(now, bytes));
            // The state first: whoever a raise wakes sees it listening.
            self.sync_state(shared);
            match raise {
                Ok(raise) if raise.reconnect => {
                    if !raise.flags.is_empty() {
                        shared.raise_reconnect(raise.flags);
                    }
                }
                Ok(raise) => shared.raise(raise.flags),
                Err(SessionError::Auth(error)) => {
                    self.auth_failed = Some(error);
                    self.failed = true;
                    return;
                }
                Err(error) => {
                    debug!(%error, "listener connection dropped");
                    self.error = Some(error);
                    self.failed = true;
                    return;
                }
            }
        }
    }

    /// Copies the session's state to the handles.
    fn sync_state(&mut self, shared: &Shared) {
        let state = self.session.state();
        if shared.state() != state && shared.state() != ListenerState::Closed {
            shared.set_state(state);
            self.changed = true;
        }
    }

    /// Writes the frames the session has to send. Frames are tiny; a send
    /// buffer too full to take one means a dead peer.
    fn flush(&mut self, now: flagpost_core::Instant, stream: &TcpStream) {
        let mut wbuf = [0u8; MAX_FRAME_LEN];
        while let Some(n) = self.session.poll_transmit(now, &mut wbuf) {
            if !wbuf
                .get(..n)
                .is_some_and(|bytes| write_all_nonblocking(stream, bytes))
            {
                self.failed = true;
                return;
            }
        }
    }
}

/// Writes all of `bytes` to a non-blocking socket, retrying briefly on a
/// full send buffer; false when the socket fails or stays full.
fn write_all_nonblocking(mut stream: &TcpStream, mut bytes: &[u8]) -> bool {
    let mut full = 0;
    while !bytes.is_empty() {
        match stream.write(bytes) {
            Ok(0) => return false,
            Ok(n) => bytes = bytes.get(n..).unwrap_or(&[]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && full < 100 => {
                full += 1;
                std::thread::yield_now();
            }
            Err(_) => return false,
        }
    }
    true
}

/// Blocks until `stream` is readable or `timeout` passes.
#[cfg(unix)]
fn wait_readable(stream: &TcpStream, timeout: Duration) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let ms = u16::try_from(timeout.as_millis().max(1)).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(stream.as_fd(), PollFlags::POLLIN)];
    // EINTR and errors: the caller re-checks everything anyway.
    let _ = poll(&mut fds, PollTimeout::from(ms));
}

/// Blocks until `stream` is readable or `timeout` passes (a blocking peek;
/// only the I/O thread touches the socket on these platforms).
#[cfg(not(unix))]
fn wait_readable(stream: &TcpStream, timeout: Duration) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(timeout.max(Duration::from_millis(1))));
    let _ = stream.peek(&mut [0u8]);
    let _ = stream.set_nonblocking(true);
}

pub(super) struct Task {
    /// The brokers, in the order tried; the session picks one.
    pub(super) brokers: Arc<[SocketAddr]>,
    pub(super) io: Arc<Mutex<Io>>,
    pub(super) shared: Arc<Shared>,
    pub(super) control: Arc<Control>,
    pub(super) connect_timeout: Duration,
    pub(super) clock: Clock,
}

impl Task {
    fn lock(&self) -> std::sync::MutexGuard<'_, Io> {
        self.io.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The broker the session says to connect to.
    fn broker(&self, io: &Io) -> SocketAddr {
        let index = io.session.broker();
        // the session's index is below the count it was given, the list's
        // length; the first is a fallback that never serves
        match self.brokers.get(index).or(self.brokers.first()) {
            Some(addr) => *addr,
            None => SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }

    /// Copies the session's state to the handles and wakes `wait_listening`.
    fn sync_state(&self, io: &mut Io) {
        io.sync_state(&self.shared);
        if std::mem::take(&mut io.changed) {
            if self.shared.state() == ListenerState::Listening {
                // authenticated (or keyless): any earlier refusal is over
                self.control.set_auth(None, self.broker(io));
                self.control.event(LinkEvent::Listening);
            }
            self.control.notify();
        }
    }

    /// The session decides: connect now, back off until its deadline, or
    /// stop (closed).
    pub(super) fn run(self) {
        while !self.control.stopped() {
            let (state, until) = {
                let mut io = self.lock();
                self.sync_state(&mut io);
                (io.session.state(), io.session.poll_timeout())
            };
            match state {
                ListenerState::Closed => break,
                ListenerState::BackingOff => {
                    let wait = until.map_or(Duration::ZERO, |at| self.clock.until(at));
                    if self.control.sleep(wait) {
                        break;
                    }
                    let now = self.clock.now();
                    let _ = self.lock().session.handle_timeout(now);
                }
                ListenerState::Connecting | ListenerState::Listening => self.connection(),
            }
        }
        self.shared.set_state(ListenerState::Closed);
        self.control.notify();
    }

    /// One connection attempt and, if it is made, the connection's life.
    fn connection(&self) {
        let addr = self.broker(&self.lock());
        self.control.event(LinkEvent::Connecting(addr));
        let mut lost = None;
        match connect(addr, self.connect_timeout) {
            Ok(stream) if stream.set_nonblocking(true).is_ok() => {
                let _ = stream.set_nodelay(true);
                let stream = Arc::new(stream);
                self.control.event(LinkEvent::Connected);
                let welcomes = {
                    let now = self.clock.now();
                    let mut io = self.lock();
                    io.stream = Some(stream.clone());
                    io.failed = false;
                    io.error = None;
                    io.auth_failed = None;
                    io.reader.clear();
                    io.session.connected(now);
                    io.flush(now, &stream);
                    io.session.welcomes()
                };
                self.serve(&stream);
                let _ = stream.shutdown(std::net::Shutdown::Both);
                let mut io = self.lock();
                io.stream = None;
                let welcomed = io.session.welcomes() != welcomes;
                lost = match (io.auth_failed, io.error.take()) {
                    (Some(e), _) => Some(LinkError::Auth(e)),
                    (None, Some(e)) => Some(LinkError::from_session(e, welcomed)),
                    (None, None) if self.control.stopped() => None,
                    (None, None) => Some(LinkError::Lost),
                };
                debug!(%addr, "listener connection ended");
            }
            Ok(_) => {}
            Err(error) => {
                debug!(%addr, %error, "cannot connect to broker");
                lost = Some(LinkError::Connect {
                    kind: error.kind(),
                    message: error.to_string(),
                });
            }
        }
        if let Some(error) = lost {
            self.control.event(LinkEvent::Lost(error));
        }
        let now = self.clock.now();
        let mut io = self.lock();
        if let Some(error) = io.auth_failed.take() {
            self.control.set_auth(Some(error), addr);
        }
        io.session
            .disconnected(now, getrandom::u32().unwrap_or(u32::MAX / 2));
        self.sync_state(&mut io);
    }

    /// One connection's life: returns when it ends or must end.
    fn serve(&self, stream: &Arc<TcpStream>) {
        loop {
            if self.control.stopped() {
                // StopChangeListening: tell the broker, then hang up.
                let now = self.clock.now();
                let mut io = self.lock();
                io.session.close();
                io.flush(now, stream);
                let _ = stream.shutdown(std::net::Shutdown::Write);
                return;
            }
            let timeout = {
                let io = self.lock();
                if io.failed {
                    return;
                }
                io.session
                    .poll_timeout()
                    .map_or(Duration::from_secs(3600), |at| self.clock.until(at))
            };
            wait_readable(stream, timeout);
            if self.control.stopped() {
                continue;
            }
            let now = self.clock.now();
            let mut io = self.lock();
            if io.pollers > 0 {
                // A waiter polls the same socket and reads what woke us
                // both; let it (it is running, or about to).
                drop(io);
                std::thread::yield_now();
                continue;
            }
            io.pump(now, &self.shared);
            self.sync_state(&mut io);
            if io.failed {
                return;
            }
        }
    }
}
