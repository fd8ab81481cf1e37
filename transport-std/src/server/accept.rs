//! Accepting listener connections: the per-address and table limits and
//! the socket options of a new connection.

use std::io;

use flagpost_core::broker::OpenError;
use flagpost_core::wire::CloseReason;
use flagpost_core::Instant;
use mio::{Interest, Token};
use tracing::{debug, warn};

use super::conn::{self, Conn, TcpConn};
use super::{Server, CONN_BASE};

impl Server {
    /// Accepts from bound listener `i` until its backlog is empty.
    pub(super) fn accept(&mut self, i: usize, now: Instant) {
        loop {
            let Some(listener) = self.tcps.get(i) else {
                return;
            };
            let (mut stream, peer) = match listener.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                Err(error) => {
                    // Out of file descriptors, typically: the next connection
                    // attempt readies the listener again.
                    if let Some(suppressed) = self.accept_log.allow() {
                        warn!(%error, suppressed, "cannot accept a listener connection");
                    }
                    return;
                }
            };
            let ip = peer.ip();
            let from_here = self.per_addr.get(&ip).copied().unwrap_or(0);
            if self.config.max_per_address > 0 && from_here >= self.config.max_per_address {
                self.core.transport_stats().refused_per_address += 1;
                conn::refuse(&mut stream, CloseReason::TooManyFromAddress);
                continue;
            }
            match self.core.open(now) {
                Ok(id) => {
                    conn::configure(&stream, self.config.listener_send_buffer);
                    let token = Token(CONN_BASE + id.index());
                    if let Err(error) = self.poll.registry().register(
                        &mut stream,
                        token,
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        warn!(%error, "cannot register a connection");
                        self.core.disconnect(id);
                        continue;
                    }
                    *self.per_addr.entry(ip).or_insert(0) += 1;
                    self.put_conn(id, Conn::Tcp(Box::new(TcpConn::new(stream, id, ip))));
                    debug!(%peer, listener = %id, "connection opened");
                }
                Err(OpenError::Full) => conn::refuse(&mut stream, CloseReason::TooManyListeners),
                Err(_) => conn::refuse(&mut stream, CloseReason::Shutdown),
            }
        }
    }
}
