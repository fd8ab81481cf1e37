//! Accepting listener connections: the listeners' allow-list, the
//! per-address and table limits, the socket options of a new connection,
//! and running out of file descriptors without spinning and without
//! stalling the backlog (see `fds`).
//!
//! A connection from an address `allow_listeners` does not allow is told
//! *unauthorized* (one close frame written to its empty send buffer: it
//! cannot block) and closed before it takes a listener slot or counts
//! against its address's limit.

use std::io;
use std::net::SocketAddr;

use flagpost_core::broker::OpenError;
use flagpost_core::wire::CloseReason;
use flagpost_core::Instant;
use mio::{Interest, Token};
use tracing::{debug, info, warn};

use super::conn::{self, Conn, TcpConn};
use super::{fds, Server, CONN_BASE};
use crate::BrokerConfig;

/// Logs the allow-lists in force and, for a broker reachable beyond
/// loopback, warns when one client address may take every listener slot.
pub(super) fn report_access(config: &BrokerConfig, addrs: &[SocketAddr]) {
    if !config.allow_senders.is_empty() || !config.allow_listeners.is_empty() {
        info!(
            allow_senders = ?config.allow_senders,
            allow_listeners = ?config.allow_listeners,
            "allow-lists in force (empty: any address)"
        );
    }
    let exposed = addrs.iter().any(|a| !a.ip().is_loopback());
    let per_address = config.max_per_address as usize;
    if exposed && (per_address == 0 || per_address >= config.max_listeners) {
        warn!(
            max_per_address = config.max_per_address,
            max_listeners = config.max_listeners,
            "one client address may take every listener slot: set max_per_address below max_listeners"
        );
    }
}

/// Logs how many listeners the open-files limit leaves room for, next to
/// `max_listeners` (a warning when that is larger).
pub(super) fn report_fd_limit(limit: Option<usize>, max_listeners: usize) {
    let (Some(limit), Some(open)) = (limit, fds::open_now()) else {
        return;
    };
    let fit = fds::listeners_fit(limit, open);
    if max_listeners > fit {
        warn!(
            open_files_limit = limit,
            open,
            listeners_fit = fit,
            max_listeners,
            "the open-files limit allows fewer listeners than max_listeners; \
             connections beyond it are refused (raise the hard limit: ulimit -Hn, LimitNOFILE=)"
        );
    } else {
        info!(
            open_files_limit = limit,
            open,
            listeners_fit = fit,
            max_listeners,
            "file descriptors"
        );
    }
}

/// What spending the spare descriptor on one queued connection did.
enum Shed {
    /// A connection was refused; more may be queued.
    Refused,
    /// Nothing was queued.
    Drained,
    /// No descriptor could be had: accepting must pause.
    Stalled,
}

impl Server {
    /// Accepts from bound listener `i` until its backlog is empty (mio is
    /// edge-triggered: a connection left queued would get no new event).
    pub(super) fn accept(&mut self, i: usize, now: Instant) {
        if self.accept_paused.is_some() {
            // resume_accepting drains every listener
            return;
        }
        loop {
            let Some(listener) = self.tcps.get(i) else {
                return;
            };
            let (mut stream, peer) = match listener.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if fds::exhausted(&e) => match self.shed(i) {
                    Shed::Refused => continue,
                    Shed::Drained => return,
                    Shed::Stalled => {
                        self.pause_accepting(&e);
                        return;
                    }
                },
                Err(error) => {
                    self.core.transport_stats().accept_errors += 1;
                    if let Some(suppressed) = self.accept_log.allow() {
                        warn!(%error, suppressed, "cannot accept a listener connection");
                    }
                    if fds::per_connection(&error) {
                        continue;
                    }
                    // ENOBUFS, ENOMEM, …: retrying at once could spin
                    self.pause_accepting(&error);
                    return;
                }
            };
            let ip = peer.ip();
            if !self.allow_listeners.allows(ip) {
                self.core.transport_stats().connections_denied += 1;
                conn::refuse(&mut stream, CloseReason::Unauthorized);
                if let Some(suppressed) = self.deny_log.allow() {
                    warn!(%peer, suppressed, "refused a connection: address not in allow_listeners");
                }
                continue;
            }
            let from_here = self.per_addr.get(&ip).copied().unwrap_or(0);
            if self.config.max_per_address > 0 && from_here >= self.config.max_per_address {
                self.core.transport_stats().refused_per_address += 1;
                conn::refuse(&mut stream, CloseReason::TooManyFromAddress);
                continue;
            }
            match self.core.open(now) {
                Ok(id) => {
                    self.vacate(id);
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

    /// Out of descriptors: closes the spare, accepts the connection at the
    /// head of listener `i`'s backlog with it, tells that connection it is
    /// refused (*too many listeners*), closes it and takes the spare back.
    fn shed(&mut self, i: usize) -> Shed {
        let Some(reserve) = self.reserve.take() else {
            return Shed::Stalled;
        };
        drop(reserve);
        let outcome = match self.tcps.get(i).map(|l| l.accept()) {
            Some(Ok((mut stream, peer))) => {
                conn::refuse(&mut stream, CloseReason::TooManyListeners);
                drop(stream);
                self.core.transport_stats().accept_no_fds += 1;
                if let Some(suppressed) = self.accept_log.allow() {
                    warn!(
                        %peer,
                        suppressed,
                        "out of file descriptors: refused a listener (too many listeners)"
                    );
                }
                Shed::Refused
            }
            Some(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => Shed::Drained,
            Some(Err(e)) if e.kind() == io::ErrorKind::Interrupted => Shed::Refused,
            Some(Err(e)) if fds::per_connection(&e) => {
                self.core.transport_stats().accept_errors += 1;
                Shed::Refused
            }
            // Another thread took the freed descriptor, or a new failure.
            Some(Err(_)) | None => Shed::Stalled,
        };
        self.reserve = fds::open_reserve();
        if self.reserve.is_none() {
            return Shed::Stalled;
        }
        outcome
    }

    /// Stops accepting until a connection closes or [`fds::RETRY`] passes.
    fn pause_accepting(&mut self, error: &io::Error) {
        if self.accept_paused.is_none() {
            warn!(
                %error,
                "accepting paused until a connection closes or {:?} pass",
                fds::RETRY
            );
        }
        self.accept_paused = Some(std::time::Instant::now() + fds::RETRY);
        self.fd_freed = false;
    }

    /// Accepts again once the spare can be had back, from every listener:
    /// their backlogs got no new event while accepting was paused.
    pub(super) fn resume_accepting(&mut self, now: Instant) {
        self.fd_freed = false;
        if self.reserve.is_none() {
            self.reserve = fds::open_reserve();
        }
        if self.reserve.is_none() && cfg!(unix) {
            self.accept_paused = Some(std::time::Instant::now() + fds::RETRY);
            return;
        }
        self.accept_paused = None;
        debug!("accepting resumed");
        for i in 0..self.tcps.len() {
            self.accept(i, now);
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::fs::File;
    use std::io::Read;
    use std::net::TcpStream;

    use flagpost_core::wire::{CloseReason, CloseRepr, FrameRepr};

    use super::super::Broker;
    use crate::BrokerConfig;

    /// Set in the child process that runs [`paused_child`].
    const CHILD: &str = "FLAGPOST_TEST_ACCEPT_CHILD";

    /// Runs [`paused_child`] in a process of its own, since it lowers that
    /// process's open-files limit and fills it.
    #[test]
    fn without_a_spare_accepting_pauses_then_drains_the_backlog() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "server::accept::tests::paused_child"])
            .args(["--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Out of descriptors with the spare gone: accepting pauses (no spin,
    /// nothing accepted, nothing refused); once a descriptor frees up it
    /// resumes and refuses every queued connection with a reason, though
    /// none of them produced a new event.
    #[test]
    fn paused_child() {
        if std::env::var_os(CHILD).is_none() {
            return;
        }
        use nix::sys::resource::{setrlimit, Resource};
        setrlimit(Resource::RLIMIT_NOFILE, 64, 64).unwrap();
        let broker = Broker::bind(BrokerConfig {
            bind: vec!["127.0.0.1:0".parse().unwrap()],
            max_listeners: 16,
            ..BrokerConfig::default()
        })
        .unwrap();
        let addr = broker.handle.local_addr();
        let mut server = broker.server;
        let mut queued: Vec<TcpStream> =
            (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
        // as if another thread had taken the spare's descriptor ...
        server.reserve = None;
        // ... and every other one
        let mut filler = Vec::new();
        while let Ok(f) = File::open("/dev/null") {
            filler.push(f);
        }
        let now = server.clock.now();

        server.accept(0, now);
        assert!(server.accept_paused.is_some());
        server.accept(0, now); // a new event while paused: ignored
        server.resume_accepting(now); // the retry timer, nothing freed
        assert!(server.accept_paused.is_some() && server.reserve.is_none());
        assert_eq!(server.core.connections(), 0);
        assert_eq!(server.core.stats().transport.accept_no_fds, 0);

        filler.pop(); // a connection closed
        server.resume_accepting(now);
        assert!(server.accept_paused.is_none() && server.reserve.is_some());
        assert_eq!(server.core.stats().transport.accept_no_fds, 3);
        for stream in &mut queued {
            let mut bytes = Vec::new();
            stream.read_to_end(&mut bytes).unwrap();
            let expected = FrameRepr::Close(CloseRepr::new(CloseReason::TooManyListeners));
            assert_eq!(FrameRepr::parse_bytes(&bytes), Ok(expected));
        }

        filler.truncate(filler.len() - 2); // room for one more listener
        let _client = TcpStream::connect(addr).unwrap();
        server.accept(0, now);
        assert_eq!(server.core.connections(), 1);
        assert_eq!(server.core.stats().transport.accept_no_fds, 3);
    }
}
