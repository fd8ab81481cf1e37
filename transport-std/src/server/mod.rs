//! The broker on port 16725: one `mio::Poll` loop owning every socket and
//! the core's broker state.
//!
//! ```text
//! loop:
//!   poll(sockets + waker, timeout = core.poll_timeout())      no busy polling
//!   UDP readable    → recvmmsg until WouldBlock (or a budget) → allow_senders
//!                     → core.handle_datagram → ack
//!                     kernel drop counter delta               → core.handle_lost
//!   TCP readable    → accept until WouldBlock → allow_listeners → limits
//!                     → core.open (which may evict a connection still awaiting
//!                     its hello: its close is handled before the slot is reused)
//!                     → register
//!                     out of descriptors → spend the spare on a refusal (fds)
//!   conn readable   → read until WouldBlock → FrameReader → core.handle_frames
//!   conn writable   → write what the core's outbox holds until WouldBlock
//!   waker           → commands from handles (stats, in-process listeners, shutdown)
//!                     and the federation's received messages (federation.rs)
//!                     → core.handle_federated; accepted datagrams and
//!                     in-process notifications are handed to its thread
//!   core.handle_timeout(now); then drain core.poll_event / poll_ready / poll_frame
//! ```
//!
//! A connection that cannot take a frame simply stops being written to: its
//! flags coalesce in the core's fixed outbox and nobody else waits. Every
//! connection costs a fixed amount of memory (the core's slot plus a small
//! boxed `TcpConn`) and a small, fixed amount of kernel memory (its send
//! buffer is kept at a few frames: see `conn`), and one file descriptor:
//! [`Broker::bind`] raises the open-files limit and logs how many listeners
//! it allows.

mod accept;
#[cfg(unix)]
mod activate;
mod allow;
mod bind;
mod conn;
mod error;
mod fds;
#[cfg(all(feature = "federation", target_os = "linux"))]
mod federation;
mod handle;
mod ratelimit;
mod reload;
mod udp;

pub use error::ServeError;
#[cfg(feature = "config")]
pub use reload::with_overrides;
pub use reload::{ReloadError, Reloaded};

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flagpost_core::broker::{
    BrokerState, Config as CoreConfig, Event, ListenerId, ListenerSlot, OpenError, Stats,
};
use flagpost_core::loss::SenderSlot;
use flagpost_core::wire::{CloseReason, CloseRepr, FrameRepr, Framed, StatRepr};
use flagpost_core::{ChannelId, FlagSet, Instant, Notification};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use tracing::{debug, info, warn};

use crate::clock::Clock;
use crate::config::BrokerConfig;
use crate::keyfile::read_keyring;
use crate::postgres::SourceMetrics;
use crate::shared::{ListenerState, Shared};
pub(crate) use allow::AllowList;
use conn::Conn;
use ratelimit::RateLimit;
use udp::UdpRx;

const WAKER: Token = Token(0);
/// Tokens `TCP_BASE + i` are the TCP listeners, `UDP_BASE + j` the UDP
/// sockets (up to 64 addresses of up to 16 sockets each), `CONN_BASE + k`
/// the connections.
const TCP_BASE: usize = 1;
const UDP_BASE: usize = 1 << 8;
/// Tokens 1..CONN_BASE are the bound sockets: UDP `1 + 2i`, TCP `2 + 2i`.
const CONN_BASE: usize = 1 << 10;
/// Datagrams read from one socket before other sockets get a turn: a
/// datagram in another socket waits for at most this many of a flood.
const UDP_BUDGET: usize = 256;
/// Listeners written to between two reads of the UDP sockets. Notifications
/// come first: a raise costs the core next to nothing, and frames not yet
/// written coalesce, so under overload fewer frames are written instead of
/// datagrams being dropped by the kernel.
const WRITES_BETWEEN_READS: usize = 64;
/// Listeners written to per loop turn; the rest stay queued in the core and
/// the loop polls again without sleeping, so that connections, commands and
/// timers are served during a long fan-out.
const WRITES_PER_TURN: usize = 4096;

/// The broker has stopped; the handle cannot reach it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the broker has stopped")]
pub struct BrokerGone;

pub(crate) enum Command {
    Shutdown,
    Stats(Sender<Stats>),
    OpenLocal {
        interest: FlagSet,
        channel: Option<ChannelId>,
        shared: Arc<Shared>,
        reply: Sender<Result<ListenerId, OpenError>>,
    },
    CloseLocal(ListenerId),
    Notify(Notification, u32),
    RaiseRecheck,
    /// A validated configuration and its keys.
    Reload(
        Box<(BrokerConfig, Option<flagpost_core::auth::Keyring>)>,
        Sender<Reloaded>,
    ),
}

/// A bound broker, ready to [`run`](Broker::run).
pub struct Broker {
    server: Server,
    handle: BrokerHandle,
}

/// A cheap, cloneable handle to a running broker: stats, shutdown, and
/// in-process listeners and notifications.
#[derive(Clone, Debug)]
pub struct BrokerHandle {
    inner: Arc<HandleInner>,
}

#[derive(Debug)]
struct HandleInner {
    tx: Sender<Command>,
    waker: Waker,
    addrs: Vec<SocketAddr>,
    thread: Mutex<Option<JoinHandle<Result<(), ServeError>>>>,
    /// The PostgreSQL source's counters, when there is one.
    postgres: Option<Arc<SourceMetrics>>,
}

impl Broker {
    /// Binds every configured address (UDP and TCP on the same port; a port
    /// of 0 picks one free for both).
    ///
    /// On Unix this first raises the process's soft open-files limit
    /// (`RLIMIT_NOFILE`) to its hard limit, since every listener holds a
    /// descriptor, then logs how many listeners the limit leaves room for,
    /// with a warning when `max_listeners` is larger (connections beyond
    /// the limit are refused with *too many listeners*).
    pub fn bind(config: BrokerConfig) -> Result<Broker, ServeError> {
        Self::bind_with(config, None)
    }

    /// Serves on the sockets a service manager bound (socket activation,
    /// see [`crate::systemd::listen_fds`]) instead of `config.bind`: for
    /// each address a listening TCP socket and one or more UDP sockets.
    /// Descriptors of another kind, or an address without both, are a
    /// [`ServeError::Activation`]. Otherwise as [`bind`](Self::bind).
    #[cfg(unix)]
    pub fn bind_activated(
        config: BrokerConfig,
        fds: Vec<std::os::fd::OwnedFd>,
    ) -> Result<Broker, ServeError> {
        Self::bind_with(config, Some(fds))
    }

    fn bind_with(
        config: BrokerConfig,
        #[cfg(unix)] passed: Option<Vec<std::os::fd::OwnedFd>>,
        #[cfg(not(unix))] passed: Option<()>,
    ) -> Result<Broker, ServeError> {
        config.validate()?;
        // the key first: a bad key file must not leave a keyless broker bound
        let keys = match &config.key_file {
            Some(path) => Some(read_keyring(path, config.previous_key_file.as_deref())?),
            None => None,
        };
        let fd_limit = fds::raise_limit();
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let mut udps = Vec::new();
        let mut tcps = Vec::new();
        let mut addrs = Vec::new();
        let pairs = match passed {
            #[cfg(unix)]
            Some(fds) => activate::adopt(fds, &config)?,
            #[cfg(not(unix))]
            Some(()) => Vec::new(),
            None => config
                .bind
                .iter()
                .map(|&addr| bind::bind_pair(addr, &config))
                .collect::<Result<_, _>>()?,
        };
        for (group, tcp) in pairs {
            let local = tcp.local_addr()?;
            let granted = group.first().map_or(0, |u| u.recv_buffer);
            if config.udp_recv_buffer > 0 && granted < config.udp_recv_buffer {
                warn!(
                    %local,
                    asked = config.udp_recv_buffer,
                    granted,
                    "kernel clamped the UDP receive buffer; raise net.core.rmem_max to absorb larger bursts"
                );
            }
            addrs.push(local);
            udps.extend(group);
            tcps.push(tcp);
        }
        for (i, udp) in udps.iter_mut().enumerate() {
            poll.registry()
                .register(&mut udp.socket, Token(UDP_BASE + i), Interest::READABLE)?;
        }
        for (i, tcp) in tcps.iter_mut().enumerate() {
            poll.registry()
                .register(tcp, Token(TCP_BASE + i), Interest::READABLE)?;
        }
        let reserve = fds::open_reserve();
        accept::report_fd_limit(fd_limit, config.max_listeners);
        let (tx, rx) = mpsc::channel();
        match &config.key_file {
            Some(path) => info!(
                key_file = %path.display(),
                previous = keys.as_ref().is_some_and(|k| k.has_previous()),
                "senders must sign and listeners must prove the key"
            ),
            None if addrs.iter().any(|a| !a.ip().is_loopback()) => warn!(
                "no key_file: anyone who can reach {addrs:?} can notify, listen and read the stats (see SECURITY.md)"
            ),
            None => {}
        }
        accept::report_access(&config, &addrs);
        let mut core = BrokerState::new(
            CoreConfig {
                keepalive: config.keepalive.into(),
                hello_timeout: config.hello_timeout.into(),
                stuck_timeout: config.stuck_timeout.into(),
                broker_id: getrandom::u64().unwrap_or(0x5eed),
                hash_key: getrandom::u64().unwrap_or(0x5eed_5eed),
                ..CoreConfig::default()
            },
            vec![ListenerSlot::EMPTY; config.max_listeners].into_boxed_slice(),
            vec![SenderSlot::EMPTY; config.sender_table].into_boxed_slice(),
        );
        core.set_keys(keys);
        let postgres_metrics = config
            .postgres
            .is_some()
            .then(|| Arc::new(SourceMetrics::default()));
        let handle = BrokerHandle {
            inner: Arc::new(HandleInner {
                tx,
                waker,
                addrs,
                thread: Mutex::new(None),
                postgres: postgres_metrics.clone(),
            }),
        };
        // Its thread delivers through the handle; the database being down
        // is no error (it logs and retries), a bad password file is.
        #[cfg(feature = "postgres")]
        let postgres = match postgres_metrics {
            Some(metrics) => crate::postgres::start(&config, handle.clone(), metrics)?,
            None => None,
        };
        // NATS being down is no error either: the thread retries
        #[cfg(all(feature = "federation", target_os = "linux"))]
        let federation = match &config.federation {
            Some(fed) => Some(federation::Federation::start(fed, &core, handle.clone())?),
            None => None,
        };
        Ok(Broker {
            server: Server {
                poll,
                core,
                clock: Clock::new(),
                udps,
                udp_more: Vec::new(),
                flush_more: false,
                tcps,
                conns: Vec::new(),
                per_addr: HashMap::new(),
                rx,
                allow_senders: AllowList::new(&config.allow_senders),
                allow_listeners: AllowList::new(&config.allow_listeners),
                config,
                bad_input_log: RateLimit::default(),
                accept_log: RateLimit::default(),
                deny_log: RateLimit::default(),
                reserve,
                accept_paused: None,
                fd_freed: false,
                #[cfg(feature = "postgres")]
                postgres,
                #[cfg(all(feature = "federation", target_os = "linux"))]
                federation,
            },
            handle,
        })
    }

    /// Binds and runs the broker on a thread of its own; the handle stops it.
    pub fn spawn(config: BrokerConfig) -> Result<BrokerHandle, ServeError> {
        let broker = Broker::bind(config)?;
        let handle = broker.handle();
        let thread = std::thread::Builder::new()
            .name("flagpost-broker".into())
            .spawn(move || broker.run())?;
        *handle
            .inner
            .thread
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(thread);
        Ok(handle)
    }

    /// A handle to this broker.
    pub fn handle(&self) -> BrokerHandle {
        self.handle.clone()
    }

    /// Runs the loop until [`BrokerHandle::shutdown`]; listeners get a close
    /// frame with reason *shutdown*.
    pub fn run(self) -> Result<(), ServeError> {
        let addrs = self.handle.local_addrs();
        info!(
            ?addrs,
            "broker listening (UDP notifications, TCP listeners)"
        );
        // The handle must not keep the loop's own command channel alive, but
        // the loop needs nothing from it: drop ours.
        drop(self.handle);
        self.server.run()
    }
}

/// The core's broker state over tables on the heap.
type HeapBroker = BrokerState<Box<[ListenerSlot]>, Box<[SenderSlot]>>;

struct Server {
    poll: Poll,
    core: HeapBroker,
    clock: Clock,
    udps: Vec<UdpRx>,
    /// Sockets whose last drain stopped at the budget.
    udp_more: Vec<usize>,
    /// The last flush stopped at its budget: listeners are still ready.
    flush_more: bool,
    tcps: Vec<TcpListener>,
    /// Connections by core slot index.
    conns: Vec<Option<Conn>>,
    per_addr: HashMap<IpAddr, u32>,
    rx: Receiver<Command>,
    /// `config.allow_senders`, canonical.
    allow_senders: AllowList,
    /// `config.allow_listeners`, canonical.
    allow_listeners: AllowList,
    config: BrokerConfig,
    bad_input_log: RateLimit,
    accept_log: RateLimit,
    /// Datagrams and connections refused by an allow-list.
    deny_log: RateLimit,
    /// The spare descriptor spent on refusing a connection when none is left.
    reserve: Option<std::fs::File>,
    /// Accepting stopped (no descriptor to be had) until a connection
    /// closes or this retry time passes.
    accept_paused: Option<std::time::Instant>,
    /// A connection's descriptor was closed since accepting paused.
    fd_freed: bool,
    /// The PostgreSQL source; dropping it stops its thread.
    #[cfg(feature = "postgres")]
    postgres: Option<crate::postgres::Source>,
    /// The NATS federation; dropping it stops its thread.
    #[cfg(all(feature = "federation", target_os = "linux"))]
    federation: Option<federation::Federation>,
}

impl Server {
    fn run(mut self) -> Result<(), ServeError> {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = if self.udp_more.is_empty() && !self.flush_more {
                let core = self.core.poll_timeout().map(|at| self.clock.until(at));
                let retry = self
                    .accept_paused
                    .map(|at| at.saturating_duration_since(std::time::Instant::now()));
                match (core, retry) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            } else {
                Some(std::time::Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e.into());
            }
            let now = self.clock.now();
            let mut more = std::mem::take(&mut self.udp_more);
            for event in events.iter() {
                match event.token() {
                    WAKER => {
                        #[cfg(all(feature = "federation", target_os = "linux"))]
                        if let Some(fed) = &mut self.federation {
                            fed.receive(&mut self.core, now);
                        }
                        if self.commands(now) {
                            self.stop();
                            return Ok(());
                        }
                    }
                    Token(t) if (UDP_BASE..CONN_BASE).contains(&t) => more.push(t - UDP_BASE),
                    Token(t) if t < UDP_BASE => self.accept(t - TCP_BASE, now),
                    Token(t) => self.conn_event(t - CONN_BASE, event, now),
                }
            }
            more.sort_unstable();
            more.dedup();
            for i in more {
                self.receive(i, now);
            }
            self.core.handle_timeout(now);
            self.flush();
            if let Some(at) = self.accept_paused {
                if self.fd_freed || std::time::Instant::now() >= at {
                    self.resume_accepting(now);
                }
            }
        }
    }

    /// The core's stats, with the federation thread's counters.
    fn stats(&mut self) -> Stats {
        #[cfg(all(feature = "federation", target_os = "linux"))]
        if let Some(fed) = &self.federation {
            fed.stats(self.core.transport_stats());
        }
        self.core.stats()
    }

    /// Runs queued commands; returns whether to stop.
    fn commands(&mut self, now: Instant) -> bool {
        while let Ok(cmd) = self.rx.try_recv() {
            match cmd {
                Command::Shutdown => return true,
                Command::Stats(reply) => {
                    let _ = reply.send(self.stats());
                }
                Command::OpenLocal {
                    interest,
                    channel,
                    shared,
                    reply,
                } => {
                    let result = self.core.open_local(now, interest, channel);
                    if let Ok(id) = result {
                        self.put_conn(id, Conn::Local { id, shared });
                    }
                    let _ = reply.send(result);
                }
                Command::CloseLocal(id) => {
                    if let Some(Conn::Local { shared, .. }) = self.take_conn(id) {
                        shared.set_state(ListenerState::Closed);
                    }
                    self.core.disconnect(id);
                }
                Command::Notify(n, batch) => {
                    self.core.notify(now, &n, batch);
                    #[cfg(all(feature = "federation", target_os = "linux"))]
                    if let Some(fed) = &mut self.federation {
                        fed.local(&mut self.core, &n, batch);
                    }
                }
                Command::RaiseRecheck => {
                    self.core.raise_recheck(now);
                }
                Command::Reload(new, reply) => {
                    let (config, keys) = *new;
                    let _ = reply.send(self.reload(config, keys));
                }
            }
        }
        false
    }

    /// `open` just gave slot `id`: if the slot still holds a connection,
    /// `open` evicted that one to make room. Its close (and any other due)
    /// is handled now, which empties the entry and its token.
    fn vacate(&mut self, id: ListenerId) {
        if self.conns.get(id.index()).is_some_and(Option::is_some) {
            if let Some(suppressed) = self.accept_log.allow() {
                info!(
                    suppressed,
                    "listener table full: closed a connection that had not said hello, to make room"
                );
            }
            self.handle_events();
        }
    }

    /// Stores the connection of a slot `open` just gave (see [`Self::vacate`]).
    fn put_conn(&mut self, id: ListenerId, conn: Conn) {
        self.vacate(id);
        let i = id.index();
        if self.conns.len() <= i {
            self.conns.resize_with(i + 1, || None);
        }
        self.conns[i] = Some(conn);
    }

    /// Removes the connection of `id` (if it is still that connection).
    fn take_conn(&mut self, id: ListenerId) -> Option<Conn> {
        let slot = self.conns.get_mut(id.index())?;
        if slot.as_ref().is_some_and(|c| c.id() == id) {
            let conn = slot.take()?;
            if let Conn::Tcp(tcp) = &conn {
                self.fd_freed = true;
                if let Some(n) = self.per_addr.get_mut(&tcp.peer) {
                    *n -= 1;
                    if *n == 0 {
                        self.per_addr.remove(&tcp.peer);
                    }
                }
            }
            Some(conn)
        } else {
            None
        }
    }

    fn receive(&mut self, i: usize, now: Instant) {
        let Some(udp) = self.udps.get_mut(i) else {
            return;
        };
        let core = &mut self.core;
        #[cfg(all(feature = "federation", target_os = "linux"))]
        let fed = &mut self.federation;
        let log = &mut self.bad_input_log;
        let (allow, deny_log) = (&self.allow_senders, &mut self.deny_log);
        let mut acks_unsent = 0;
        let mut bytes_out = 0;
        let mut denied = 0;
        let result = udp.drain(
            UDP_BUDGET,
            &mut acks_unsent,
            &mut bytes_out,
            |bytes, from, ack| {
                if !allow.allows(from.ip()) {
                    denied += 1;
                    if let Some(suppressed) = deny_log.allow() {
                        warn!(%from, suppressed, "dropped a datagram: sender not in allow_senders");
                    }
                    return None;
                }
                match core.handle_datagram(now, bytes) {
                    Ok(received) => {
                        #[cfg(all(feature = "federation", target_os = "linux"))]
                        if let Some(fed) = fed.as_mut().filter(|_| received.federate()) {
                            fed.datagram(core, bytes);
                        }
                        received.ack.and_then(|a| a.emit(ack).ok())
                    }
                    Err(error) => {
                        if let Some(suppressed) = log.allow() {
                            warn!(%from, %error, suppressed, "dropped a datagram");
                        }
                        None
                    }
                }
            },
        );
        let t = self.core.transport_stats();
        t.acks_unsent += acks_unsent;
        t.bytes_out += bytes_out;
        t.datagrams_denied += denied;
        match result {
            Ok(drained) => {
                let t = self.core.transport_stats();
                t.udp_reads += drained.reads;
                t.bytes_in += drained.bytes;
                self.core.handle_lost(now, drained.drops);
                if !drained.empty {
                    self.udp_more.push(i);
                }
            }
            Err(error) => {
                if let Some(suppressed) = self.bad_input_log.allow() {
                    warn!(%error, suppressed, "UDP receive error");
                }
            }
        }
    }

    fn conn_event(&mut self, index: usize, event: &mio::event::Event, now: Instant) {
        let Some(Some(Conn::Tcp(conn))) = self.conns.get_mut(index) else {
            return;
        };
        let id = conn.id;
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            let outcome = conn.read(&mut self.core, now, &mut self.bad_input_log);
            if outcome.is_err() {
                self.drop_conn(id);
                return;
            }
        }
        if event.is_writable() {
            conn.writable = true;
            if conn.pump(&mut self.core).is_err() {
                self.drop_conn(id);
            }
        }
    }

    /// The peer went away or the socket failed: forget the connection.
    fn drop_conn(&mut self, id: ListenerId) {
        if let Some(Conn::Tcp(mut tcp)) = self.take_conn(id) {
            let _ = self.poll.registry().deregister(&mut tcp.stream);
            if tcp.io_error {
                self.core.transport_stats().io_errors += 1;
            }
        }
        self.core.disconnect(id);
    }

    /// Acts on the core's events and writes whatever its outboxes hold.
    fn flush(&mut self) {
        self.handle_events();
        self.write_ready();
    }

    /// Acts on the core's events: closes connections (with a close frame if
    /// asked) and answers stats requests.
    fn handle_events(&mut self) {
        while let Some(event) = self.core.poll_event() {
            match event {
                Event::Closed {
                    listener,
                    reason,
                    send_close,
                    version,
                } => match self.take_conn(listener) {
                    Some(Conn::Tcp(mut tcp)) => {
                        if send_close {
                            let close = FrameRepr::Close(CloseRepr::new(reason));
                            tcp.write_final(&[Framed::new(version, close)]);
                        }
                        let _ = self.poll.registry().deregister(&mut tcp.stream);
                        debug!(%listener, %reason, "connection closed");
                    }
                    Some(Conn::Local { shared, .. }) => shared.set_state(ListenerState::Closed),
                    None => {}
                },
                Event::StatsRequested {
                    listener,
                    version,
                    accept,
                } => {
                    if let Some(Conn::Tcp(mut tcp)) = self.take_conn(listener) {
                        // the accept (version 2) first, then the table and a close
                        let mut frames = Vec::with_capacity(Stats::len() + 2);
                        frames
                            .extend(accept.map(|tag| Framed::new(version, FrameRepr::Accept(tag))));
                        self.stats().visit(|index, _, value| {
                            let stat = FrameRepr::Stat(StatRepr { index, value });
                            frames.push(Framed::new(version, stat));
                        });
                        let close = FrameRepr::Close(CloseRepr::new(CloseReason::Normal));
                        frames.push(Framed::new(version, close));
                        let written = tcp.write_reply(&frames);
                        self.core.transport_stats().bytes_out += written as u64;
                        let _ = self.poll.registry().deregister(&mut tcp.stream);
                    }
                }
                _ => {}
            }
        }
    }

    /// Writes to the ready listeners, reading the UDP sockets in between.
    fn write_ready(&mut self) {
        let mut written = 0;
        self.flush_more = false;
        while let Some(id) = self.core.poll_ready() {
            written += 1;
            if written % WRITES_BETWEEN_READS == 0 {
                let now = self.clock.now();
                for i in 0..self.udps.len() {
                    self.receive(i, now);
                }
            }
            if written >= WRITES_PER_TURN {
                self.flush_more = true;
            }
            let failed = match self.conns.get_mut(id.index()) {
                Some(Some(Conn::Tcp(tcp))) if tcp.id == id => {
                    tcp.writable && tcp.pump(&mut self.core).is_err()
                }
                Some(Some(Conn::Local { id: local, shared })) if *local == id => {
                    while let Some(frame) = self.core.poll_frame(id) {
                        if let FrameRepr::Flags(f) = frame {
                            shared.raise(f.flags);
                        }
                    }
                    false
                }
                _ => false,
            };
            if failed {
                self.drop_conn(id);
            }
            if self.flush_more {
                break;
            }
        }
    }

    /// Shutdown: every listener gets a close frame, then the loop ends.
    fn stop(&mut self) {
        info!("broker shutting down");
        #[cfg(feature = "postgres")]
        drop(self.postgres.take());
        #[cfg(all(feature = "federation", target_os = "linux"))]
        drop(self.federation.take());
        self.core.shutdown();
        self.flush();
    }
}
