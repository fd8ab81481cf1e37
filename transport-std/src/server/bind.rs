//! Binding the broker's addresses: each one's TCP listener and its UDP
//! sockets on the same port (a port of 0 picks one free for both).

use std::io;
use std::net::SocketAddr;

use mio::net::TcpListener;

use super::udp::UdpRx;
use super::ServeError;
use crate::config::BrokerConfig;

/// The TCP listener of `addr` and its UDP sockets on the same port.
pub(super) fn bind_pair(
    addr: SocketAddr,
    config: &BrokerConfig,
) -> Result<(Vec<UdpRx>, TcpListener), ServeError> {
    // With port 0, TCP picks a port and UDP takes the same one; retry if
    // that UDP port happens to be taken.
    let attempts = if addr.port() == 0 { 16 } else { 1 };
    let sockets = if cfg!(target_os = "linux") {
        config.udp_sockets.max(1)
    } else {
        1
    };
    let mut last = None;
    for _ in 0..attempts {
        let tcp = bind_tcp(addr, config.listen_backlog).map_err(|e| ServeError::bind(addr, e))?;
        let local = tcp.local_addr()?;
        let group: io::Result<Vec<UdpRx>> = (0..sockets)
            .map(|_| UdpRx::bind(local, config.udp_recv_buffer, sockets > 1))
            .collect();
        match group {
            Ok(group) => return Ok((group, tcp)),
            Err(e) => last = Some(ServeError::bind(local, e)),
        }
    }
    Err(last.unwrap_or(ServeError::AddrInUse { addr }))
}

fn bind_tcp(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // Restarting on the same port must not wait for TIME_WAIT (Unix meaning
    // of SO_REUSEADDR; on Windows it would allow port stealing).
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(TcpListener::from_std(socket.into()))
}
