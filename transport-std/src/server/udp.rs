//! The broker's UDP sockets: creation with a large receive buffer, batched
//! receive (`recvmmsg` on Linux, `recv_from` elsewhere), the kernel's drop
//! counter (`SO_RXQ_OVFL` on Linux) and acks sent back to each source.

use std::io;
use std::net::SocketAddr;

use mio::net::UdpSocket;
use socket2::{Domain, Protocol, Socket, Type};

/// Datagrams per receive call.
const BATCH: usize = 32;
/// Whether a `recvmmsg` that returns fewer than [`BATCH`] datagrams ends the
/// drain. On Linux it may: the call took everything queued, and
/// edge-triggered epoll reports a new event for every datagram that arrives
/// after it (epoll(7): "multiple events can be generated upon receipt of
/// multiple chunks of data"), so the usual final read that returns
/// `EAGAIN` — one wasted system call per wake-up, measured at 40 % of the
/// broker's reads under a single sender — is skipped. Elsewhere the drain
/// runs until `WouldBlock`, as mio's contract asks.
const SHORT_BATCH_DRAINS: bool = cfg!(target_os = "linux");

/// Receive buffer per datagram: larger than any valid datagram, so an
/// oversized one shows up as too long rather than silently cut.
const DGRAM_BUF: usize = 128;

/// What one [`UdpRx::drain`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Drained {
    /// Datagrams handed to the callback.
    pub(crate) datagrams: usize,
    /// Receive system calls that returned data.
    pub(crate) reads: u64,
    /// Bytes received.
    pub(crate) bytes: u64,
    /// Datagrams the kernel reported dropping since the last drain.
    pub(crate) drops: u64,
    /// Whether the socket was drained until it would block (otherwise the
    /// budget ran out and more may be waiting).
    pub(crate) empty: bool,
}

/// One bound UDP socket and its receive buffers.
#[derive(Debug)]
pub(crate) struct UdpRx {
    pub(crate) socket: UdpSocket,
    bufs: Box<[[u8; DGRAM_BUF]; BATCH]>,
    /// Acks to send after the current batch: (destination, bytes, length).
    acks: Vec<(SocketAddr, [u8; DGRAM_BUF], usize)>,
    /// The kernel's cumulative drop counter as last seen (Linux only).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    last_drops: u32,
    /// The receive buffer the kernel granted, in bytes.
    pub(crate) recv_buffer: usize,
}

impl UdpRx {
    /// Binds `addr` with a receive buffer of `recv_buffer` bytes; `shared`
    /// (Linux): one of a `SO_REUSEPORT` group of sockets on the port, among
    /// which the kernel spreads senders by address and port, so that one
    /// sender's flood queues in its own socket and not before the others'.
    pub(crate) fn bind(addr: SocketAddr, recv_buffer: usize, shared: bool) -> io::Result<Self> {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        #[cfg(target_os = "linux")]
        if shared {
            socket.set_reuse_port(true)?;
        }
        #[cfg(not(target_os = "linux"))]
        let _ = shared;
        socket.bind(&addr.into())?;
        Self::adopt(socket, recv_buffer)
    }

    /// Takes a UDP socket bound elsewhere (socket activation): asks for a
    /// receive buffer of `recv_buffer` bytes, turns on the drop counter and
    /// non-blocking mode.
    pub(crate) fn adopt(socket: Socket, recv_buffer: usize) -> io::Result<Self> {
        if recv_buffer > 0 {
            // The kernel may clamp this (net.core.rmem_max); we report what we got.
            let _ = socket.set_recv_buffer_size(recv_buffer);
        }
        #[cfg(target_os = "linux")]
        {
            use nix::sys::socket::{setsockopt, sockopt::RxqOvfl};
            setsockopt(&socket, RxqOvfl, &1).map_err(io::Error::from)?;
        }
        socket.set_nonblocking(true)?;
        let granted = socket.recv_buffer_size().unwrap_or(0);
        let std_socket: std::net::UdpSocket = socket.into();
        Ok(UdpRx {
            socket: UdpSocket::from_std(std_socket),
            bufs: Box::new([[0; DGRAM_BUF]; BATCH]),
            acks: Vec::with_capacity(BATCH),
            last_drops: 0,
            recv_buffer: granted,
        })
    }

    /// Receives until the socket would block or `budget` datagrams were
    /// read, calling `handle(bytes, source)` for each; an ack it returns is
    /// sent back to the source. Ack send failures are counted, not fatal.
    pub(crate) fn drain(
        &mut self,
        budget: usize,
        acks_unsent: &mut u64,
        bytes_out: &mut u64,
        mut handle: impl FnMut(&[u8], SocketAddr, &mut [u8; DGRAM_BUF]) -> Option<usize>,
    ) -> io::Result<Drained> {
        let mut out = Drained::default();
        while out.datagrams < budget {
            let got = self.recv_batch(&mut out, &mut handle)?;
            for (to, bytes, len) in self.acks.drain(..) {
                match self.socket.send_to(&bytes[..len], to) {
                    Ok(n) => *bytes_out += n as u64,
                    Err(_) => *acks_unsent += 1,
                }
            }
            if got == 0 || (SHORT_BATCH_DRAINS && got < BATCH) {
                out.empty = true;
                break;
            }
        }
        Ok(out)
    }

    #[cfg(target_os = "linux")]
    fn recv_batch(
        &mut self,
        out: &mut Drained,
        handle: &mut impl FnMut(&[u8], SocketAddr, &mut [u8; DGRAM_BUF]) -> Option<usize>,
    ) -> io::Result<usize> {
        use std::io::IoSliceMut;
        use std::os::fd::AsRawFd;

        use nix::errno::Errno;
        use nix::sys::socket::{
            recvmmsg, ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage,
        };

        let fd = self.socket.as_raw_fd();
        let mut headers =
            MultiHeaders::<SockaddrStorage>::preallocate(BATCH, Some(nix::cmsg_space!(u32)));
        let mut iovs: [[IoSliceMut<'_>; 1]; BATCH] =
            self.bufs.each_mut().map(|b| [IoSliceMut::new(&mut b[..])]);
        let results = match recvmmsg(
            fd,
            &mut headers,
            iovs.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        ) {
            Ok(r) => r,
            Err(Errno::EAGAIN) => return Ok(0),
            Err(Errno::EINTR) => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        let mut count = 0;
        let mut ack = [0u8; DGRAM_BUF];
        for msg in results {
            count += 1;
            if let Ok(cmsgs) = msg.cmsgs() {
                for c in cmsgs {
                    if let ControlMessageOwned::RxqOvfl(total) = c {
                        out.drops += u64::from(total.wrapping_sub(self.last_drops));
                        self.last_drops = total;
                    }
                }
            }
            let Some(from) = msg.address.as_ref().and_then(storage_to_addr) else {
                continue;
            };
            let len = msg.bytes.min(DGRAM_BUF);
            out.bytes += msg.bytes as u64;
            // An empty datagram fills no slice, and is handed over all the
            // same: the core counts it as a reject (truncated).
            let data: &[u8] = match msg.iovs().next() {
                Some(data) => &data[..len.min(data.len())],
                None => &[],
            };
            if let Some(n) = handle(data, from, &mut ack) {
                self.acks.push((from, ack, n));
            }
        }
        if count > 0 {
            out.reads += 1;
            out.datagrams += count;
        }
        Ok(count)
    }

    #[cfg(not(target_os = "linux"))]
    fn recv_batch(
        &mut self,
        out: &mut Drained,
        handle: &mut impl FnMut(&[u8], SocketAddr, &mut [u8; DGRAM_BUF]) -> Option<usize>,
    ) -> io::Result<usize> {
        let mut count = 0;
        let mut ack = [0u8; DGRAM_BUF];
        let buf = &mut self.bufs[0];
        while count < BATCH {
            match self.socket.recv_from(buf) {
                Ok((n, from)) => {
                    count += 1;
                    out.reads += 1;
                    out.bytes += n as u64;
                    if let Some(len) = handle(&buf[..n.min(DGRAM_BUF)], from, &mut ack) {
                        self.acks.push((from, ack, len));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Windows reports an ICMP port-unreachable for an earlier
                // ack as a receive error; it is not fatal.
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => continue,
                Err(e) => return Err(e),
            }
        }
        out.datagrams += count;
        Ok(count)
    }
}

#[cfg(target_os = "linux")]
fn storage_to_addr(s: &nix::sys::socket::SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = s.as_sockaddr_in() {
        return Some(SocketAddr::from((v4.ip(), v4.port())));
    }
    s.as_sockaddr_in6()
        .map(|v6| SocketAddr::from((v6.ip(), v6.port())))
}
