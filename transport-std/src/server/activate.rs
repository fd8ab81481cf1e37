//! Socket activation: the broker takes sockets a service manager bound for
//! it (`LISTEN_FDS`, see [`crate::systemd`]) instead of binding its own.
//!
//! Each passed descriptor is checked before it is used: it must be an
//! IPv4 or IPv6 socket, either a listening TCP socket or a UDP socket, bound
//! to an address. They are grouped by local address, and every address
//! needs one TCP listener and at least one UDP socket (the broker serves
//! both on one port); anything else is a [`ServeError::Activation`] that
//! says which descriptor is wrong and why.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use mio::net::TcpListener;
use socket2::{Protocol, Socket, Type};

use super::udp::UdpRx;
use super::ServeError;
use crate::config::BrokerConfig;

/// What one passed descriptor is.
enum Kind {
    Udp(Socket),
    Tcp(Socket),
}

/// Checks one descriptor (number `fd`, for messages).
fn classify(fd: i32, socket: Socket) -> Result<(SocketAddr, Kind), ServeError> {
    let bad = |why: String| ServeError::Activation(format!("passed descriptor {fd}: {why}"));
    let local = socket
        .local_addr()
        .map_err(|e| bad(format!("not a socket ({e})")))?;
    let addr = local.as_socket().ok_or_else(|| {
        bad("not an IPv4 or IPv6 socket (ListenStream=/ListenDatagram= with an address or port are needed)".into())
    })?;
    if addr.port() == 0 {
        return Err(bad("not bound to an address".into()));
    }
    let ty = socket.r#type().map_err(|e| bad(e.to_string()))?;
    // (SCTP would pass as TCP or UDP where the protocol cannot be read)
    #[cfg(target_os = "linux")]
    let protocol = socket.protocol().ok().flatten();
    #[cfg(not(target_os = "linux"))]
    let protocol: Option<Protocol> = None;
    if ty == Type::DGRAM && protocol.is_none_or(|p| p == Protocol::UDP) {
        Ok((addr, Kind::Udp(socket)))
    } else if ty == Type::STREAM && protocol.is_none_or(|p| p == Protocol::TCP) {
        #[cfg(target_os = "linux")]
        let listening = socket.is_listener().unwrap_or(false);
        #[cfg(not(target_os = "linux"))]
        let listening = true; // SO_ACCEPTCONN: read on Linux only
        if !listening {
            return Err(bad(format!(
                "the TCP socket on {addr} is not listening (Accept=no is needed)"
            )));
        }
        Ok((addr, Kind::Tcp(socket)))
    } else {
        Err(bad(format!(
            "socket type {ty:?} on {addr}; expected UDP (ListenDatagram=) or TCP (ListenStream=)"
        )))
    }
}

/// The UDP sockets and TCP listener of each address among `fds`, in the
/// order the addresses first appear.
pub(super) fn adopt(
    fds: Vec<OwnedFd>,
    config: &BrokerConfig,
) -> Result<Vec<(Vec<UdpRx>, TcpListener)>, ServeError> {
    use std::os::fd::AsRawFd;
    if fds.is_empty() {
        return Err(ServeError::Activation(
            "no descriptors were passed (LISTEN_FDS=0)".into(),
        ));
    }
    let mut groups: Vec<(SocketAddr, Vec<Socket>, Option<Socket>)> = Vec::new();
    for fd in fds {
        let number = fd.as_raw_fd();
        let (addr, kind) = classify(number, Socket::from(fd))?;
        let at = match groups.iter().position(|g| g.0 == addr) {
            Some(i) => i,
            None => {
                groups.push((addr, Vec::new(), None));
                groups.len() - 1
            }
        };
        let group = &mut groups[at];
        match kind {
            Kind::Udp(s) => group.1.push(s),
            Kind::Tcp(s) if group.2.is_none() => group.2 = Some(s),
            Kind::Tcp(_) => {
                return Err(ServeError::Activation(format!(
                    "passed descriptor {number}: a second TCP listener on {addr}"
                )))
            }
        }
    }
    if groups.len() > 64 {
        return Err(ServeError::Activation(
            "more than 64 addresses were passed".into(),
        ));
    }
    let addrs: Vec<SocketAddr> = groups.iter().map(|g| g.0).collect();
    tracing::info!(
        ?addrs,
        "socket activation: serving on the passed sockets (`bind` is not used)"
    );
    let mut pairs = Vec::with_capacity(groups.len());
    for (addr, udps, tcp) in groups {
        let missing = |what: &str| {
            ServeError::Activation(format!(
                "{addr} was passed without its {what}: the broker serves UDP (notifications) and TCP (listeners) on one port, so the socket unit needs ListenDatagram={addr} and ListenStream={addr}"
            ))
        };
        let tcp = tcp.ok_or_else(|| missing("TCP listener"))?;
        if udps.is_empty() {
            return Err(missing("UDP socket"));
        }
        if udps.len() > 16 {
            return Err(ServeError::Activation(format!(
                "more than 16 UDP sockets were passed for {addr}"
            )));
        }
        let group = udps
            .into_iter()
            .map(|s| UdpRx::adopt(s, config.udp_recv_buffer))
            .collect::<Result<Vec<_>, _>>()?;
        tcp.set_nonblocking(true)?;
        pairs.push((group, TcpListener::from_std(tcp.into())));
    }
    Ok(pairs)
}
