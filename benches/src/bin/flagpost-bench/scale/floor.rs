//! The bare ingest floor (`_ingest_floor`): the least work a process must
//! do to receive notification datagrams and tell each reached connection,
//! with no broker around it. One mio loop owns a UDP socket (the broker's
//! 8 MiB receive buffer and `SO_RXQ_OVFL`), a TCP listener on the same port
//! (backlog 4,096) and the connections:
//!
//! * a connection says its channel in a one-line hello (the channel's name
//!   and a newline; an empty line is all channels) and gets an 18-byte
//!   Flagpost welcome frame, so the same farm reads it as a broker's;
//! * datagrams are read with `recvmmsg`, 32 at a time (the broker's
//!   batch), and each decoded (`NotifyRepr::parse_bytes`) for its channel;
//!   the channels a batch reaches are marked once, then each connection of
//!   those channels (and the all-channels ones) becomes *pending* — raises
//!   coalesce until it is written — and every pending connection that can
//!   take it gets one 14-byte flags frame, written without blocking; one
//!   that would block stays pending and is written when it is writable
//!   again.
//!
//! When it writes is the one choice a floor makes, and it takes the
//! broker's schedule, the one that drops fewest notifications: the socket
//! is drained (up to 256 datagrams, a socket's turn in the broker) before writing, and read again after
//! every 64 connections written, at most 4,096 per turn (*interleaved*, the
//! targets' floor). The query `coalesce drain` switches it to writing every
//! pending connection after each drain without reading in between (what
//! the broker did before it interleaved), `coalesce interleave` back; each
//! answers `ok`.
//!
//! Its counters (datagrams, the kernel's drops, frames written) answer the
//! query `counters` in the broker's format ([`Counters`]).

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use flagpost_core::wire::{FlagsRepr, FrameRepr, NotifyRepr, WelcomeRepr};
use flagpost_core::FlagSet;
use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token};

use super::Counters;

const UDP: Token = Token(0);
const TCP: Token = Token(1);
/// Connection `i` is token `CONN_BASE + i`.
const CONN_BASE: usize = 2;
/// Datagrams per `recvmmsg`, as the broker.
const BATCH: usize = 32;
/// Datagrams read before the connections get a turn, as the broker (a
/// socket's turn).
const BUDGET: usize = 256;
/// Connections written between two reads of the socket, as the broker.
const WRITES_BETWEEN_READS: usize = 64;
/// Connections written per turn, as the broker.
const WRITES_PER_TURN: usize = 4096;
/// A flags frame: status and non-status, one raise.
const FRAME_LEN: usize = 14;

/// The floor's counters, shared with the query thread.
#[derive(Default)]
struct Shared {
    datagrams: AtomicU64,
    drops: AtomicU64,
    frames: AtomicU64,
    welcomed: AtomicU64,
    /// Write everything pending after each drain, without reading between
    /// writes.
    per_drain: AtomicBool,
}

struct Conn {
    stream: TcpStream,
    /// The hello line as read so far.
    line: Vec<u8>,
    /// The channel group, once the hello is read.
    group: Option<usize>,
    pending: bool,
    writable: bool,
    /// Bytes of the current frame already written.
    written: usize,
    dead: bool,
}

struct Floor {
    poll: Poll,
    udp: UdpSocket,
    tcp: TcpListener,
    conns: Vec<Conn>,
    /// Channel name → group; the empty name (group 0) is all channels.
    groups: HashMap<Vec<u8>, usize>,
    members: Vec<Vec<usize>>,
    /// Groups a batch reached (each once), and whether an untargeted
    /// datagram reached everyone.
    marked: Vec<bool>,
    marked_list: Vec<usize>,
    everyone: bool,
    pending: VecDeque<usize>,
    last_drops: u32,
    frame: [u8; FRAME_LEN],
    welcome: [u8; 18],
    shared: Arc<Shared>,
}

/// `_ingest_floor`: binds, announces, answers `counters`, runs until the
/// parent goes away.
pub(crate) fn child_ingest_floor() {
    crate::raise_fds("ingest floor");
    let (udp, tcp) = bind().expect("bind the ingest floor");
    let addr = tcp.local_addr().expect("addr");
    let shared = Arc::new(Shared::default());
    let shown = shared.clone();
    crate::announce(addr);
    crate::serve_queries(move |q| match q {
        "counters" => Counters {
            datagrams: shown.datagrams.load(Relaxed),
            kernel_drops: shown.drops.load(Relaxed),
            flags_frames: shown.frames.load(Relaxed),
            listening: shown.welcomed.load(Relaxed),
            ..Counters::default()
        }
        .line(),
        "coalesce drain" | "coalesce interleave" => {
            shown.per_drain.store(q == "coalesce drain", Relaxed);
            "ok".into()
        }
        _ => String::new(),
    });
    let mut frame = [0u8; FRAME_LEN];
    let mut welcome = [0u8; 18];
    let flags = FrameRepr::Flags(FlagsRepr {
        flags: FlagSet::STATUS.union(FlagSet::NON_STATUS),
        raises: 1,
    });
    let hello_back = FrameRepr::Welcome(WelcomeRepr {
        interest: FlagSet::ALL,
        keepalive_secs: 3600,
        broker_id: 0,
    });
    assert_eq!(flags.emit(&mut frame).ok(), Some(FRAME_LEN));
    assert_eq!(hello_back.emit(&mut welcome).ok(), Some(18));
    let mut floor = Floor {
        poll: Poll::new().expect("poll"),
        udp,
        tcp,
        conns: Vec::new(),
        groups: HashMap::from([(Vec::new(), 0)]),
        members: vec![Vec::new()],
        marked: vec![false],
        marked_list: Vec::new(),
        everyone: false,
        pending: VecDeque::new(),
        last_drops: 0,
        frame,
        welcome,
        shared,
    };
    floor.run().expect("the ingest floor runs");
}

/// A TCP listener (backlog 4,096) and a UDP socket on the same loopback
/// port, as the broker binds them.
fn bind() -> io::Result<(UdpSocket, TcpListener)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let mut last = io::Error::other("no port");
    for _ in 0..16 {
        let tcp = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        tcp.set_reuse_address(true)?;
        tcp.bind(&crate::loopback().into())?;
        tcp.listen(4096)?;
        tcp.set_nonblocking(true)?;
        let addr = tcp.local_addr()?.as_socket().ok_or(io::ErrorKind::Other)?;
        let udp = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        let _ = udp.set_recv_buffer_size(8 << 20);
        nix::sys::socket::setsockopt(&udp, nix::sys::socket::sockopt::RxqOvfl, &1)?;
        udp.set_nonblocking(true)?;
        match udp.bind(&addr.into()) {
            Ok(()) => {
                let udp: std::net::UdpSocket = udp.into();
                let tcp: std::net::TcpListener = tcp.into();
                return Ok((UdpSocket::from_std(udp), TcpListener::from_std(tcp)));
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

impl Floor {
    fn run(&mut self) -> io::Result<()> {
        self.poll
            .registry()
            .register(&mut self.udp, UDP, Interest::READABLE)?;
        self.poll
            .registry()
            .register(&mut self.tcp, TCP, Interest::READABLE)?;
        let mut events = Events::with_capacity(1024);
        let mut udp_more = false;
        loop {
            let timeout = udp_more.then_some(std::time::Duration::ZERO);
            match self.poll.poll(&mut events, timeout) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => other?,
            }
            let mut readable = std::mem::take(&mut udp_more);
            for event in events.iter() {
                match event.token() {
                    UDP => readable = true,
                    TCP => self.accept()?,
                    Token(t) => self.conn_event(t - CONN_BASE, event),
                }
            }
            if readable {
                udp_more = self.receive();
            }
            udp_more |= self.write_pending();
        }
    }

    fn accept(&mut self) -> io::Result<()> {
        loop {
            let (mut stream, _) = match self.tcp.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let _ = stream.set_nodelay(true);
            let token = Token(CONN_BASE + self.conns.len());
            self.poll.registry().register(
                &mut stream,
                token,
                Interest::READABLE | Interest::WRITABLE,
            )?;
            self.conns.push(Conn {
                stream,
                line: Vec::new(),
                group: None,
                pending: false,
                writable: false,
                written: 0,
                dead: false,
            });
        }
    }

    fn conn_event(&mut self, i: usize, event: &mio::event::Event) {
        let Some(conn) = self.conns.get_mut(i) else {
            return;
        };
        if conn.dead {
            return;
        }
        if event.is_writable() {
            conn.writable = true;
        }
        if !(event.is_readable() || event.is_read_closed() || event.is_error()) {
            return;
        }
        let mut buf = [0u8; 256];
        loop {
            match conn.stream.read(&mut buf) {
                Ok(0) => {
                    conn.dead = true;
                    let _ = self.poll.registry().deregister(&mut conn.stream);
                    return;
                }
                Ok(n) if conn.group.is_none() => conn.line.extend_from_slice(&buf[..n]),
                Ok(_) => {} // nothing is expected after the hello
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    conn.dead = true;
                    let _ = self.poll.registry().deregister(&mut conn.stream);
                    return;
                }
            }
        }
        let Some(end) = conn.line.iter().position(|&b| b == b'\n') else {
            return;
        };
        if conn.group.is_some() {
            return;
        }
        let name = conn.line[..end].to_vec();
        let next = self.members.len();
        let group = *self.groups.entry(name).or_insert(next);
        if group == next {
            self.members.push(Vec::new());
            self.marked.push(false);
        }
        self.members[group].push(i);
        conn.group = Some(group);
        // an 18-byte write into a fresh connection's empty buffer
        let _ = conn.stream.write_all(&self.welcome);
        self.shared.welcomed.fetch_add(1, Relaxed);
    }

    /// Reads datagrams in batches until a short batch or the budget,
    /// routing after each batch. Returns whether more may be waiting.
    fn receive(&mut self) -> bool {
        let mut read = 0;
        while read < BUDGET {
            let got = self.recv_batch();
            self.route();
            read += got;
            if got < BATCH {
                return false;
            }
        }
        true
    }

    /// One `recvmmsg` of up to [`BATCH`]: decodes each datagram's channel
    /// and marks the groups it reaches.
    fn recv_batch(&mut self) -> usize {
        use nix::sys::socket::{
            recvmmsg, ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage,
        };
        use std::os::fd::AsRawFd;
        let mut bufs = [[0u8; 128]; BATCH];
        let mut headers =
            MultiHeaders::<SockaddrStorage>::preallocate(BATCH, Some(nix::cmsg_space!(u32)));
        let mut iovs: [[io::IoSliceMut<'_>; 1]; BATCH] =
            bufs.each_mut().map(|b| [io::IoSliceMut::new(&mut b[..])]);
        let Ok(results) = recvmmsg(
            self.udp.as_raw_fd(),
            &mut headers,
            iovs.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        ) else {
            return 0;
        };
        let mut count = 0;
        for msg in results {
            count += 1;
            if let Ok(cmsgs) = msg.cmsgs() {
                for c in cmsgs {
                    if let ControlMessageOwned::RxqOvfl(total) = c {
                        let new = total.wrapping_sub(self.last_drops);
                        self.shared.drops.fetch_add(u64::from(new), Relaxed);
                        self.last_drops = total;
                    }
                }
            }
            let Some(data) = msg.iovs().next() else {
                continue;
            };
            let data = &data[..msg.bytes.min(data.len())];
            let Ok(notify) = NotifyRepr::parse_bytes(data) else {
                continue;
            };
            self.shared.datagrams.fetch_add(1, Relaxed);
            match notify.notification.channel() {
                None => self.everyone = true,
                Some(channel) => {
                    if let Some(&g) = self.groups.get(channel.as_bytes()) {
                        self.mark(g);
                    }
                    self.mark(0);
                }
            }
        }
        count
    }

    fn mark(&mut self, group: usize) {
        if let Some(m) = self.marked.get_mut(group) {
            if !*m {
                *m = true;
                self.marked_list.push(group);
            }
        }
    }

    /// Makes every connection of the marked groups pending, once.
    fn route(&mut self) {
        let groups: Vec<usize> = if std::mem::take(&mut self.everyone) {
            (0..self.members.len()).collect()
        } else {
            self.marked_list.clone()
        };
        for g in self.marked_list.drain(..) {
            self.marked[g] = false;
        }
        for g in groups {
            for &i in &self.members[g] {
                let conn = &mut self.conns[i];
                if !conn.pending && !conn.dead {
                    conn.pending = true;
                    self.pending.push_back(i);
                }
            }
        }
    }

    /// Writes a frame to every pending connection that can take it; when
    /// interleaving, reads the socket every [`WRITES_BETWEEN_READS`] and
    /// stops after [`WRITES_PER_TURN`]. Returns whether connections are
    /// left to write now.
    fn write_pending(&mut self) -> bool {
        let interleave = !self.shared.per_drain.load(Relaxed);
        let (mut frames, mut writes) = (0, 0);
        let mut blocked = Vec::new();
        let mut more = false;
        while let Some(i) = self.pending.pop_front() {
            let frame = self.frame;
            let conn = &mut self.conns[i];
            if conn.dead {
                conn.pending = false;
                continue;
            }
            if !conn.writable {
                blocked.push(i);
                continue;
            }
            writes += 1;
            match conn.stream.write(&frame[conn.written..]) {
                Ok(n) => {
                    conn.written += n;
                    if conn.written < FRAME_LEN {
                        conn.writable = false; // the buffer is full
                        blocked.push(i);
                    } else {
                        conn.written = 0;
                        conn.pending = false;
                        frames += 1;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    conn.writable = false;
                    blocked.push(i);
                }
                Err(_) => {
                    conn.dead = true;
                    conn.pending = false;
                }
            }
            if interleave && writes % WRITES_BETWEEN_READS == 0 {
                self.receive();
            }
            if interleave && writes >= WRITES_PER_TURN {
                more = !self.pending.is_empty();
                break;
            }
        }
        self.pending.extend(blocked);
        self.shared.frames.fetch_add(frames, Relaxed);
        more
    }
}
