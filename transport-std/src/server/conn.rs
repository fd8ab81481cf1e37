//! One listener connection on the broker side: a non-blocking TCP stream
//! with a one-frame read buffer and a small write buffer, fed by the core.
//!
//! The read buffer (a [`FrameReader`]) holds at most one frame (70 bytes):
//! frames are handed to the core as soon as they are complete, and a hello's
//! welcome goes into the write buffer before the next frame is looked at.
//! The write buffer holds what the socket did not take yet; frames are
//! pulled from the core's outbox only while it has room, so the outbox keeps
//! coalescing when the peer is slow.
//!
//! The kernel's side is kept as small ([`configure`]): a small `SO_SNDBUF`
//! and, on Linux, `TCP_NOTSENT_LOWAT` of two frames, with every write sent
//! as its own record (`MSG_EOR`) so that it cannot be appended to an unsent
//! segment behind the low-water check. A listener that stops reading thus
//! gets `EAGAIN` once a few frames are unacknowledged or a couple unsent:
//! its flags wait in the core's outbox, where they coalesce and where the
//! core's stuck clock runs, rather than in kernel memory.

use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::sync::Arc;

use flagpost_core::broker::ListenerId;
use flagpost_core::broker::SlotState;
use flagpost_core::wire::{CloseReason, CloseRepr, FrameReader, FrameRepr, Framed, MAX_FRAME_LEN};
use flagpost_core::Instant;
use mio::net::TcpStream;
use tracing::warn;

use super::{HeapBroker, RateLimit};
use crate::shared::Shared;

/// Bytes of frames that may wait for the socket.
const WBUF: usize = 2 * MAX_FRAME_LEN;
/// Positions in the write buffer are kept in 16 bits (the whole connection
/// stays within its former size with the frame reader's bookkeeping).
const _: () = assert!(WBUF <= u16::MAX as usize);

/// Unsent bytes at which the kernel refuses further writes to a listener
/// (`TCP_NOTSENT_LOWAT`): two flags frames.
#[cfg(target_os = "linux")]
const NOTSENT_LOWAT: u32 = 2 * 14;

/// The send buffer given to a stats reply, so that the whole table goes in
/// one write whatever the peer's window (the connection ends right after).
const REPLY_SEND_BUFFER: usize = 64 << 10;

/// Sets up an accepted listener connection: no Nagle delay, a send buffer
/// of `send_buffer` bytes as the kernel counts them (0: the system's
/// default) and, on Linux, the unsent low-water mark. Failures are ignored:
/// each option only tightens a bound, none is needed to serve.
pub(crate) fn configure(stream: &TcpStream, send_buffer: usize) {
    let _ = stream.set_nodelay(true);
    let socket = socket2::SockRef::from(stream);
    if send_buffer > 0 {
        // Linux doubles what it is given (the bookkeeping overhead) and
        // reports the doubled figure; ask for half so it reports ours.
        let ask = if cfg!(target_os = "linux") {
            (send_buffer / 2).max(1)
        } else {
            send_buffer
        };
        let _ = socket.set_send_buffer_size(ask);
    }
    #[cfg(target_os = "linux")]
    let _ = socket.set_tcp_notsent_lowat(NOTSENT_LOWAT);
}

/// Lifts [`configure`]'s bounds for a connection about to receive its last,
/// larger write (the stats table): the reply must go out whole.
fn relax(stream: &TcpStream) {
    let socket = socket2::SockRef::from(stream);
    let _ = socket.set_send_buffer_size(REPLY_SEND_BUFFER);
    // 0 restores the system default (net.ipv4.tcp_notsent_lowat: no limit).
    #[cfg(target_os = "linux")]
    let _ = socket.set_tcp_notsent_lowat(0);
}

/// Writes `bytes` as one record: on Linux with `MSG_EOR`, so the kernel
/// starts a new segment, subject to the send-buffer and low-water checks,
/// instead of appending to an unsent one (which it would do up to half the
/// peer's largest window, unchecked).
#[cfg(target_os = "linux")]
fn send(stream: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    use nix::sys::socket::{send, MsgFlags};
    use std::os::fd::AsRawFd;
    send(
        stream.as_raw_fd(),
        bytes,
        MsgFlags::MSG_EOR | MsgFlags::MSG_NOSIGNAL,
    )
    .map_err(io::Error::from)
}

/// Writes `bytes` (elsewhere, a plain write).
#[cfg(not(target_os = "linux"))]
fn send(mut stream: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    stream.write(bytes)
}

/// A connection the broker serves.
pub(crate) enum Conn {
    /// A listener over TCP.
    Tcp(Box<TcpConn>),
    /// An in-process listener: frames become raises on its shared flags.
    Local {
        /// Its core handle.
        id: ListenerId,
        /// Its flags.
        shared: Arc<Shared>,
    },
}

impl Conn {
    pub(crate) fn id(&self) -> ListenerId {
        match self {
            Conn::Tcp(t) => t.id,
            Conn::Local { id, .. } => *id,
        }
    }
}

/// The TCP side of one connection.
pub(crate) struct TcpConn {
    pub(crate) stream: TcpStream,
    pub(crate) id: ListenerId,
    pub(crate) peer: IpAddr,
    reader: FrameReader<MAX_FRAME_LEN>,
    wbuf: [u8; WBUF],
    wstart: u16,
    wend: u16,
    /// No `WouldBlock` since the last writable event.
    pub(crate) writable: bool,
    /// The connection ended on a socket error (not a clean EOF).
    pub(crate) io_error: bool,
}

/// The connection must be forgotten (EOF or error).
pub(crate) struct Gone;

impl TcpConn {
    pub(crate) fn new(stream: TcpStream, id: ListenerId, peer: IpAddr) -> Self {
        TcpConn {
            stream,
            id,
            peer,
            reader: FrameReader::new(),
            wbuf: [0; WBUF],
            wstart: 0,
            wend: 0,
            writable: false,
            io_error: false,
        }
    }

    /// Reads until the socket would block, handing complete frames to the
    /// core. A malformed stream is the core's to count and close; the
    /// frames a hello or proof made owed (challenge; accept and welcome)
    /// are queued (and sent, if the socket is known writable) before the
    /// next frame, so that a close caused by that frame follows them.
    pub(crate) fn read(
        &mut self,
        core: &mut HeapBroker,
        now: Instant,
        log: &mut RateLimit,
    ) -> Result<(), Gone> {
        loop {
            let n = match self.stream.read(self.reader.unfilled()) {
                Ok(0) => return Err(Gone),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.io_error = true;
                    return Err(Gone);
                }
            };
            core.transport_stats().bytes_in += n as u64;
            self.reader.filled(n);
            let (wbuf, wend) = (&mut self.wbuf, &mut self.wend);
            let result = core.handle_frames(now, self.id, &mut self.reader, |frame| {
                // Nothing but these is written before the welcome: challenge,
                // accept and welcome take 62 bytes, there is room.
                let at = usize::from(*wend);
                let n = wbuf.get_mut(at..).map_or(0, |b| frame.emit(b).unwrap_or(0));
                *wend += n as u16;
            });
            if let Err(error) = result {
                if let Some(suppressed) = log.allow() {
                    warn!(peer = %self.peer, %error, suppressed, "rejected a listener frame");
                }
            }
            match core.state(self.id) {
                Some(
                    SlotState::Listening | SlotState::AwaitingHello | SlotState::AwaitingProof,
                ) => {}
                // closing: read nothing more (the close goes after what the
                // write buffer holds)
                _ => {
                    self.reader.clear();
                    return Ok(());
                }
            }
            if self.writable && self.wstart != self.wend {
                self.pump(core)?;
            }
        }
    }

    /// Writes frames from the core's outbox until it is empty or the socket
    /// would block.
    pub(crate) fn pump(&mut self, core: &mut HeapBroker) -> Result<(), Gone> {
        loop {
            if self.wstart > 0 && self.wstart == self.wend {
                self.wstart = 0;
                self.wend = 0;
            }
            while WBUF - usize::from(self.wend) >= MAX_FRAME_LEN {
                let Some(frame) = core.poll_framed(self.id) else {
                    break;
                };
                // Cannot fail: MAX_FRAME_LEN bytes are free.
                let at = usize::from(self.wend);
                self.wend += frame.emit(&mut self.wbuf[at..]).unwrap_or(0) as u16;
            }
            if self.wstart == self.wend {
                return Ok(());
            }
            let pending = &self.wbuf[usize::from(self.wstart)..usize::from(self.wend)];
            match send(&self.stream, pending) {
                Ok(n) => {
                    core.transport_stats().bytes_out += n as u64;
                    self.wstart += n.min(pending.len()) as u16;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.writable = false;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.io_error = true;
                    return Err(Gone);
                }
            }
        }
    }

    /// Writes `frames` after whatever is pending, without waiting: what the
    /// socket does not take is dropped (the connection is ending). Returns
    /// the bytes written.
    pub(crate) fn write_final(&mut self, frames: &[Framed]) -> usize {
        self.write_final_inner(frames)
    }

    /// [`write_final`](Self::write_final) for a reply that must arrive
    /// whole (the stats table): the send buffer is enlarged first.
    pub(crate) fn write_reply(&mut self, frames: &[Framed]) -> usize {
        relax(&self.stream);
        self.write_final_inner(frames)
    }

    fn write_final_inner(&mut self, frames: &[Framed]) -> usize {
        let pending = &self.wbuf[usize::from(self.wstart)..usize::from(self.wend)];
        let mut out = Vec::with_capacity(pending.len() + frames.len() * MAX_FRAME_LEN);
        out.extend_from_slice(pending);
        let mut buf = [0u8; MAX_FRAME_LEN];
        for f in frames {
            if let Ok(n) = f.emit(&mut buf) {
                out.extend_from_slice(&buf[..n]);
            }
        }
        let mut written = 0;
        while written < out.len() {
            match send(&self.stream, &out[written..]) {
                Ok(0) => break,
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = self.stream.flush();
        written
    }
}

/// Tells a connection it cannot be served, without waiting, and drops it.
pub(crate) fn refuse(stream: &mut TcpStream, reason: CloseReason) {
    let mut buf = [0u8; MAX_FRAME_LEN];
    if let Ok(n) = FrameRepr::Close(CloseRepr::new(reason)).emit(&mut buf) {
        let _ = send(stream, &buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    /// ARCHITECTURE.md's per-listener arithmetic counts on this: the frame
    /// reader's bookkeeping did not make a connection larger than the
    /// hand-written buffer it replaced (280 bytes on x86-64).
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_connection_stays_within_its_size() {
        let size = std::mem::size_of::<super::TcpConn>();
        eprintln!("TcpConn: {size} bytes");
        assert!(size <= 280);
    }
}
