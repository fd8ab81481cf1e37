//! Reaching a broker from the client subcommands: its address (`HOST`
//! alone means port 16725) and the TCP connection `stats` and `ping` make,
//! with each way of failing mapped to its message and exit code.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use flagpost_std::core::listener::AuthError;
use flagpost_std::core::wire::{CloseReason, PORT};

use crate::{Failure, EXIT_CONFIG, EXIT_NOT_A_BROKER, EXIT_OTHER, EXIT_REFUSED, EXIT_UNREACHABLE};

/// How long `stats` and `ping` wait for the TCP connection and each answer.
pub(crate) const ANSWER_WAIT: Duration = Duration::from_secs(5);

/// `ADDR`, `HOST:PORT`, `HOST` (port 16725), `[v6]` or `v6` as one address.
/// A list (`a,b`) is `flagpost listen`'s only.
pub(crate) fn resolve(broker: &str) -> Result<SocketAddr, Failure> {
    let broker = broker.trim();
    if broker.contains(',') {
        return Err(Failure::new(
            EXIT_CONFIG,
            format!("--broker {broker}: one broker here; a list (a,b) is for `flagpost listen`"),
        ));
    }
    if let Ok(addr) = broker.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bare = broker
        .strip_prefix('[')
        .and_then(|b| b.strip_suffix(']'))
        .unwrap_or(broker);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, PORT));
    }
    let found = match broker.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse::<u16>() {
            Ok(port) => (host, port).to_socket_addrs(),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad port {port:?}"),
            )),
        },
        _ => (broker, PORT).to_socket_addrs(),
    };
    let why = match found.map(|mut a| a.next()) {
        Ok(Some(addr)) => return Ok(addr),
        Ok(None) => "no address found".to_owned(),
        Err(e) => e.to_string(),
    };
    Err(Failure::new(
        EXIT_CONFIG,
        format!(
            "cannot resolve broker address {broker}: {why} (expected HOST[:PORT], e.g. 127.0.0.1 or broker.example:{PORT}; the port defaults to {PORT})"
        ),
    ))
}

/// A failed TCP connection or read, by kind.
pub(crate) fn io_failure(addr: SocketAddr, e: &io::Error) -> Failure {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => Failure::new(
            EXIT_UNREACHABLE,
            format!(
                "refused: nothing listens on tcp {addr} (is the broker running, on that port?)"
            ),
        ),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Failure::new(
            EXIT_UNREACHABLE,
            format!(
                "broker at {addr} unreachable: no answer to the connection within {ANSWER_WAIT:?}"
            ),
        ),
        _ => Failure::new(
            EXIT_UNREACHABLE,
            format!("broker at {addr} unreachable: {e}"),
        ),
    }
}

/// Connects to `addr` for a request (`stats`, `ping`), reads bounded.
pub(crate) fn connect(addr: SocketAddr) -> Result<TcpStream, Failure> {
    let stream =
        TcpStream::connect_timeout(&addr, ANSWER_WAIT).map_err(|e| io_failure(addr, &e))?;
    stream
        .set_read_timeout(Some(ANSWER_WAIT))
        .map_err(|e| io_failure(addr, &e))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// A read on a connection made: silence past the wait means the peer is
/// not a broker (a broker answers at once).
pub(crate) fn read_failure(addr: SocketAddr, e: &io::Error) -> Failure {
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => not_a_broker(
            addr,
            &format!("it accepted the connection but did not answer within {ANSWER_WAIT:?}"),
        ),
        _ => io_failure(addr, e),
    }
}

/// The peer at `addr` does not speak the protocol.
pub(crate) fn not_a_broker(addr: SocketAddr, why: &str) -> Failure {
    Failure::new(
        EXIT_NOT_A_BROKER,
        format!("{addr} is not a Flagpost broker: {why} (a wrong port, such as the metrics port?)"),
    )
}

/// What a close reason before any answer means: a refusal by the broker.
pub(crate) fn refusal(addr: SocketAddr, reason: CloseReason) -> Failure {
    let (what, why) = match reason {
        CloseReason::TooManyListeners => ("too many listeners", "it holds max_listeners"),
        CloseReason::TooManyFromAddress => (
            "too many listeners from this address",
            "it holds max_per_address from here",
        ),
        CloseReason::Unauthorized => (
            "unauthorized",
            "this address is not in its allow_listeners, or it needs a key",
        ),
        CloseReason::Shutdown => ("shutting down", "try again once it is back"),
        other => {
            return Failure::new(
                EXIT_REFUSED,
                format!("refused: {other} (the broker at {addr})"),
            )
        }
    };
    Failure::new(
        EXIT_REFUSED,
        format!("refused: {what} (the broker at {addr}: {why})"),
    )
}

/// What a failed handshake means for the user of `listen`, `stats`, `ping`.
pub(crate) fn auth_failure(e: AuthError) -> Failure {
    let message = match e {
        AuthError::KeyRequired => {
            // an access rule (allow_listeners) refuses with the same close
            "refused: unauthorized (the broker has a key; pass --key-file), or this address is not in the broker's allow_listeners".to_owned()
        }
        AuthError::BrokerHasNoKey => {
            "the broker has no key: it cannot authenticate (drop --key-file, or give the broker key_file)".to_owned()
        }
        AuthError::BrokerTooOld => {
            "the broker speaks protocol version 1 only: it cannot authenticate (upgrade it, or drop --key-file)".to_owned()
        }
        AuthError::Refused => {
            "refused: unauthorized (the broker's key is not the one in --key-file)".to_owned()
        }
        AuthError::BrokerNotAuthenticated => {
            "the broker did not prove it holds the key in --key-file (another key on the broker, or not the broker)".to_owned()
        }
        other => other.to_string(),
    };
    Failure::new(EXIT_CONFIG, message)
}

/// Any other failure.
pub(crate) fn other(message: impl std::fmt::Display) -> Failure {
    Failure::new(EXIT_OTHER, message)
}
