//! One HTTP connection of the server's loop: reading its bounded request
//! head, writing a response and closing, or streaming events to an SSE
//! client (whose raises the loop hands over), with its timeouts.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;

use super::routes::{self, Reply};
use super::sse::Client;
use super::{Options, Ready, HEAD_TIMEOUT, MAX_HEAD};

/// How long a client may take to read a whole (non-SSE) response.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether the loop keeps a connection after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    Keep,
    Close,
}

enum Phase {
    /// Reading the request head, since `opened`.
    Head,
    /// Writing a response; closed once it is written.
    Respond { since: Instant },
    /// Streaming events.
    Sse(Box<Client>),
}

pub(crate) struct Conn {
    stream: TcpStream,
    /// The client's address, for the allow-list (None if unknown).
    peer: Option<IpAddr>,
    head: Vec<u8>,
    out: Vec<u8>,
    sent: usize,
    phase: Phase,
    opened: Instant,
    /// The last write of an SSE stream (for its keep-alive comments).
    last_write: Instant,
    /// Since when bytes wait for the client to read (SSE).
    blocked_since: Option<Instant>,
}

impl Conn {
    pub(crate) fn new(stream: TcpStream, peer: Option<IpAddr>) -> Conn {
        let now = Instant::now();
        Conn {
            stream,
            peer,
            head: Vec::new(),
            out: Vec::new(),
            sent: 0,
            phase: Phase::Head,
            opened: now,
            last_write: now,
            blocked_since: None,
        }
    }

    pub(crate) fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Readiness (either way; the loop is edge-triggered).
    pub(crate) fn on_event(&mut self, options: &Options, ready: &Arc<Ready>, index: usize) -> Step {
        if let Phase::Head = self.phase {
            match self.read_head() {
                Ok(Some(len)) => {
                    let reply = routes::handle(&self.head[..len], self.peer, options, ready, index);
                    self.head = Vec::new();
                    self.begin(reply, options);
                }
                Ok(None) => return Step::Keep,
                Err(reply) => match reply {
                    Some(reply) => self.begin(reply, options),
                    None => return Step::Close,
                },
            }
        } else if self.drain_input() {
            // the client went away (an SSE client's only way to leave)
            if let Phase::Sse(_) = self.phase {
                return Step::Close;
            }
        }
        self.progress()
    }

    /// The listener of this SSE client raised (or closed).
    pub(crate) fn on_raise(&mut self, _options: &Options) -> Step {
        if let Phase::Sse(client) = &mut self.phase {
            client.unqueue();
        }
        self.progress()
    }

    /// Timeouts: the head's, a response's, a stuck SSE client's, and the
    /// SSE keep-alive comment.
    pub(crate) fn on_time(&mut self, options: &Options, now: Instant) -> Step {
        match self.deadline(options) {
            Some(at) if at <= now => {}
            _ => return Step::Keep,
        }
        match &self.phase {
            Phase::Head | Phase::Respond { .. } => Step::Close,
            Phase::Sse(_) if self.sent < self.out.len() => {
                tracing::debug!("SSE client stuck: closed");
                Step::Close
            }
            Phase::Sse(_) => {
                self.out.clear();
                self.sent = 0;
                self.out.extend_from_slice(b": keep-alive\n\n");
                self.progress()
            }
        }
    }

    /// When [`on_time`](Self::on_time) has something to do.
    pub(crate) fn deadline(&self, options: &Options) -> Option<Instant> {
        match &self.phase {
            Phase::Head => Some(self.opened + HEAD_TIMEOUT),
            Phase::Respond { since } => Some(*since + RESPONSE_TIMEOUT),
            Phase::Sse(_) => match self.blocked_since {
                Some(_) if options.stuck_timeout.is_zero() => None,
                Some(since) => Some(since + options.stuck_timeout),
                None => Some(self.last_write + options.keep_alive),
            },
        }
    }

    /// Stops listening (an SSE client) and sends a FIN.
    pub(crate) fn close(self) {
        let _ = self.stream.shutdown(Shutdown::Write);
        drop(self.phase);
    }

    fn begin(&mut self, reply: Reply, options: &Options) {
        match reply {
            Reply::Response(bytes) => {
                self.out = bytes;
                self.phase = Phase::Respond {
                    since: Instant::now(),
                };
            }
            Reply::Sse(client, head) => {
                if options.send_buffer > 0 {
                    let _ = socket2::SockRef::from(&self.stream)
                        .set_send_buffer_size(options.send_buffer);
                }
                self.out = head;
                self.phase = Phase::Sse(client);
            }
        }
        self.sent = 0;
    }

    /// Writes what is pending and, for an SSE client with nothing pending,
    /// its next event.
    fn progress(&mut self) -> Step {
        loop {
            match self.flush() {
                Ok(true) => {}
                Ok(false) => return Step::Keep,
                Err(_) => return Step::Close,
            }
            let Phase::Sse(client) = &mut self.phase else {
                // a whole response written: done
                return match self.phase {
                    Phase::Respond { .. } => Step::Close,
                    _ => Step::Keep,
                };
            };
            match client.next_event() {
                Ok(Some(event)) => {
                    self.out.clear();
                    self.sent = 0;
                    self.out.extend_from_slice(event.as_bytes());
                }
                Ok(None) => return Step::Keep,
                Err(_) => return Step::Close,
            }
        }
    }

    /// Writes until done (true) or the socket is full (false).
    fn flush(&mut self) -> io::Result<bool> {
        while self.sent < self.out.len() {
            match self.stream.write(&self.out[self.sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.sent += n;
                    self.last_write = Instant::now();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.blocked_since.get_or_insert_with(Instant::now);
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.blocked_since = None;
        Ok(true)
    }

    /// Reads what the client sent after its request and drops it; true at
    /// its end (or an error).
    fn drain_input(&mut self) -> bool {
        let mut sink = [0u8; 1024];
        loop {
            match self.stream.read(&mut sink) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
    }

    /// Reads into the head: `Ok(Some(len))` once it is complete, `Ok(None)`
    /// while more is to come, `Err(Some(reply))` for a bad or oversized
    /// head, `Err(None)` when the client left.
    fn read_head(&mut self) -> Result<Option<usize>, Option<Reply>> {
        let mut chunk = [0u8; 2048];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(None),
                Ok(n) => {
                    let room = (MAX_HEAD + 1).saturating_sub(self.head.len());
                    self.head.extend_from_slice(&chunk[..n.min(room)]);
                    match routes::head_len(&self.head) {
                        Ok(Some(len)) => return Ok(Some(len)),
                        Ok(None) if self.head.len() > MAX_HEAD => {
                            return Err(Some(routes::too_large()))
                        }
                        Ok(None) => {}
                        Err(reply) => return Err(Some(reply)),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(None),
            }
        }
    }
}

/// Tells a connection beyond the cap why it is closed (best effort).
pub(crate) fn refuse(mut stream: TcpStream, reason: &str) {
    let _ = stream.write_all(&routes::response(
        503,
        "text/plain; charset=utf-8",
        &[],
        format!("{reason}\n").as_bytes(),
        false,
    ));
    let _ = stream.shutdown(Shutdown::Write);
}
