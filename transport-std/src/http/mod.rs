//! The broker's HTTP address: a small HTTP/1.1 server on one `mio` event
//! loop of its own thread, holding every connection, so that thousands of
//! long-lived Server-Sent Events clients cost a socket and a few hundred
//! bytes each, not a thread.
//!
//! ```text
//! GET /            the dashboard (dashboard.html, built in)
//! GET /metrics     Prometheus text or OpenMetrics, as Accept asks (open)
//! GET /healthz     200 "ok" while the broker loop answers (open)
//! GET /events      text/event-stream of flag raises (key: token needed)
//! GET /stats.json  the core's stats table as JSON (key: token needed)
//! ```
//!
//! Each request is read into a bounded head ([`MAX_HEAD`]: 431 past it,
//! 400 when malformed) within [`HEAD_TIMEOUT`] (then the connection is
//! closed: slowloris), answered, and the connection closed (`Connection:
//! close`; no keep-alive, no request body). Only `GET` and `HEAD` are
//! served (405 otherwise). At most [`MAX_CONNECTIONS`] connections are
//! held; past that a new one gets a 503 and is closed.
//!
//! `GET /events?channel=NAME&interest=status,non_status,channel_update,channel_shutdown`
//! (both optional: all channels, all four flags; a bad value is a 400
//! saying why) opens an event stream. Each client is an in-process
//! listener of the broker, counted in its listener table (full: 503 with
//! the broker's reason); its raise hook only queues the client and wakes
//! this loop, so nothing here blocks the broker. The stream starts with
//! `retry: 1000`, then one event per raise:
//!
//! ```text
//! id: 1
//! event: raise
//! data: {"status":true,"non_status":true,"channel_update":true,"channel_shutdown":false,"reconnect":true}
//! ```
//!
//! The first event of every connection is a reconnect raise (`reconnect`
//! true, the re-check flags of the interest), as a TCP listener's welcome:
//! a browser that reconnects, with or without `Last-Event-ID`, re-checks,
//! so nothing raised while it was away is lost; ids go on from its
//! `Last-Event-ID`. The flags are taken (test-and-clear) only once the
//! socket has taken the previous event, so raises coalesce while a client
//! is slow: the server holds its flags and at most one event for it, the
//! kernel a socket buffer of `listener_send_buffer`. A client whose socket
//! takes nothing for the broker's `stuck_timeout` is closed; after 15 s of
//! silence a `: keep-alive` comment is sent. When the broker or this
//! server stops, every stream is closed.
//!
//! `GET /stats.json` is the core's stats table, fresh per request:
//! `{"time_ms": <Unix time in ms>, "uptime_ms": <since the HTTP server
//! started>, "metrics": [{"name": "flagpost_datagrams_total",
//! "labels": {"kind": "status"}, "type": "counter", "value": 5}, …]}`, the
//! entries as `flagpost stats --json` prints them
//! ([`crate::stats_json::entries`]).
//!
//! With a key ([`HttpKeys`]) `/events` and `/stats.json` need its
//! [`token`] as `Authorization: Bearer TOKEN` or `?token=TOKEN`, else 401
//! with `WWW-Authenticate: Bearer`; from an address outside the broker's
//! `allow_listeners` they are a 403.

mod auth;
mod conn;
mod routes;
mod sse;
#[cfg(test)]
mod tests;

pub use auth::{token, HttpKeys, TOKEN_CONTEXT};

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::metrics::Render;
use crate::server::BrokerHandle;
use conn::{Conn, Step};

/// The longest request head (request line and headers) read.
pub const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Most connections held at once (SSE clients included).
pub const MAX_CONNECTIONS: usize = 16 * 1024;
/// A comment line is sent to an SSE client after this much silence.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// How long a request waits for the broker loop's stats (`/metrics`,
/// `/healthz`, `/stats.json`) before it is answered 503: a stuck loop must
/// not stall the HTTP loop and every event stream with it.
pub const BROKER_ANSWER: Duration = Duration::from_secs(2);

/// Why a page is a 503 when the broker loop did not answer in time.
pub(crate) fn no_answer() -> String {
    format!(
        "the broker loop did not answer within {} s",
        BROKER_ANSWER.as_secs()
    )
}

/// How soon accepting is tried again after it failed.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

const WAKER: Token = Token(0);
const LISTEN: Token = Token(1);
const BASE: usize = 2;

/// What the server serves beside the page `render` gives.
pub(crate) struct Options {
    /// `/metrics` and `/healthz`.
    pub render: Render,
    /// `/events` and `/stats.json` (404 without a broker).
    pub broker: Option<BrokerHandle>,
    /// The tokens `/events` and `/stats.json` take.
    pub keys: HttpKeys,
    /// An SSE client whose socket takes nothing for this long is closed
    /// (zero: never).
    pub stuck_timeout: Duration,
    /// Kernel send buffer of an SSE connection (0: the system's default).
    pub send_buffer: usize,
    /// When the server started (`/stats.json`'s `uptime_ms`).
    pub started: Instant,
    /// Silence after which an SSE client gets a comment ([`KEEP_ALIVE`]).
    pub keep_alive: Duration,
}

/// SSE clients whose listener raised, for the loop to serve.
pub(crate) struct Ready {
    queue: Mutex<Vec<usize>>,
    waker: Waker,
}

impl Ready {
    /// Queues connection `index` and wakes the loop (from the raise hook).
    /// Only the push onto an empty queue wakes it: a queue that is not
    /// empty has been woken for and not yet taken, so a fan-out to many
    /// clients costs one wake-up, not one system call each.
    pub(crate) fn push(&self, index: usize) {
        let first = {
            let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            queue.push(index);
            queue.len() == 1
        };
        if first {
            let _ = self.waker.wake();
        }
    }
}

/// The running server; stops (closing every connection) when dropped.
pub(crate) struct Server {
    stop: Arc<AtomicBool>,
    ready: Arc<Ready>,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl Server {
    /// Binds `addr` and serves from a thread named `name`.
    pub(crate) fn start(addr: SocketAddr, name: &str, options: Options) -> io::Result<Server> {
        // bound with std, so that a port in use keeps its error kind
        let std_listener = std::net::TcpListener::bind(addr)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let mut listener = TcpListener::from_std(std_listener);
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTEN, Interest::READABLE)?;
        let ready = Arc::new(Ready {
            queue: Mutex::new(Vec::new()),
            waker: Waker::new(poll.registry(), WAKER)?,
        });
        let stop = Arc::new(AtomicBool::new(false));
        let mut event_loop = Loop {
            poll,
            listener,
            conns: Vec::new(),
            free: Vec::new(),
            live: 0,
            accept_retry: None,
            ready: ready.clone(),
            stop: stop.clone(),
            options,
        };
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || event_loop.run())?;
        Ok(Server {
            stop,
            ready,
            thread: Some(thread),
            addr,
        })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.ready.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Loop {
    poll: Poll,
    listener: TcpListener,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    live: usize,
    /// Accepting failed (out of descriptors): try again at this time, as
    /// no new readiness may come for the connections already queued.
    accept_retry: Option<Instant>,
    ready: Arc<Ready>,
    stop: Arc<AtomicBool>,
    options: Options,
}

impl Loop {
    fn run(&mut self) {
        let mut events = Events::with_capacity(1024);
        let mut taken = Vec::new();
        loop {
            let now = Instant::now();
            let timeout = self
                .conns
                .iter()
                .flatten()
                .filter_map(|c| c.deadline(&self.options))
                .chain(self.accept_retry)
                .min()
                .map(|at| at.saturating_duration_since(now));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(error = %e, "HTTP server: poll failed; stopping");
                    break;
                }
            }
            if self.stop.load(Ordering::Acquire) {
                break;
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    LISTEN => self.accept(),
                    Token(t) => {
                        let index = t - BASE;
                        self.step(index, |c, o, r| c.on_event(o, r, index));
                    }
                }
            }
            // SSE clients whose listener raised (or closed)
            std::mem::swap(
                &mut taken,
                &mut *self.ready.queue.lock().unwrap_or_else(|p| p.into_inner()),
            );
            for index in taken.drain(..) {
                self.step(index, |c, o, _| c.on_raise(o));
            }
            let now = Instant::now();
            if self.accept_retry.is_some_and(|at| at <= now) {
                self.accept_retry = None;
                self.accept();
            }
            for index in 0..self.conns.len() {
                self.step(index, |c, o, _| c.on_time(o, now));
            }
        }
        // shutdown: each SSE client stops listening and gets a FIN
        for conn in self.conns.iter_mut().filter_map(Option::take) {
            conn.close();
        }
    }

    /// Runs `f` on connection `index` (if any) and closes it if it is done.
    fn step(&mut self, index: usize, f: impl FnOnce(&mut Conn, &Options, &Arc<Ready>) -> Step) {
        let Some(conn) = self.conns.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        if f(conn, &self.options, &self.ready) == Step::Close {
            if let Some(mut conn) = self.conns[index].take() {
                let _ = self.poll.registry().deregister(conn.stream_mut());
                conn.close();
            }
            self.free.push(index);
            self.live -= 1;
        }
    }

    fn accept(&mut self) {
        loop {
            let (stream, peer) = match self.listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // out of descriptors, or a connection reset before its
                    // accept: try again shortly
                    tracing::debug!(error = %e, "HTTP accept failed");
                    self.accept_retry = Some(Instant::now() + ACCEPT_RETRY);
                    return;
                }
            };
            if self.live >= MAX_CONNECTIONS {
                conn::refuse(stream, "too many connections");
                continue;
            }
            let index = self.free.pop().unwrap_or_else(|| {
                self.conns.push(None);
                self.conns.len() - 1
            });
            let mut conn = Conn::new(stream, Some(peer.ip()));
            if self
                .poll
                .registry()
                .register(
                    conn.stream_mut(),
                    Token(BASE + index),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .is_err()
            {
                self.free.push(index);
                continue;
            }
            self.conns[index] = Some(conn);
            self.live += 1;
        }
    }
}
