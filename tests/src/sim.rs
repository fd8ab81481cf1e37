//! A deterministic, simulated-clock network for the broker state and its
//! listeners: no sockets, no threads, no sleeps.
//!
//! [`Sim`] owns a core [`BrokerState`], any number of [`SimListener`]s (each a real
//! [`ListenerSession`] joined to the broker by two in-memory byte pipes, so
//! every frame is emitted, split with a `FrameReader` and parsed as on TCP), and a
//! lossy datagram path for senders. Time moves only through
//! [`Sim::advance`], which jumps from deadline to deadline exactly as a
//! transport sleeping on `poll_timeout` would. The broker may hold keys
//! ([`Sim::set_keys`]) and listeners may authenticate
//! ([`Sim::add_keyed_listener`]): frames then carry each session's version.

use std::collections::VecDeque;

use flagpost_core::auth::{Key, Keyring};
use flagpost_core::broker::{BrokerState, Config, Event, ListenerId, ListenerSlot};
use flagpost_core::listener::{ListenerConfig, ListenerSession, ListenerState, Raise};
use flagpost_core::loss::SenderSlot;
use flagpost_core::wire::{
    CloseRepr, FrameReader, FrameRepr, Framed, NotifyRepr, SenderId, Seq, MAX_DATAGRAM_LEN,
    MAX_FRAME_LEN,
};
use flagpost_core::{ChannelId, Duration, FlagSet, Flags, Instant, Notification};

/// The broker type the simulation drives.
pub type SimBroker = BrokerState<Box<[ListenerSlot]>, Box<[SenderSlot]>>;

/// Handle to a listener of the simulation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenerRef(usize);

/// One simulated listener process.
#[derive(Debug)]
pub struct SimListener {
    /// Its protocol state.
    pub session: ListenerSession,
    /// Its flags, as the application checks them.
    pub flags: Flags,
    /// Whether its process runs (false: frozen, like a stopped process: it
    /// reads nothing, sends nothing and runs no timers, while its socket
    /// buffer fills up).
    pub reading: bool,
    /// When it raised each flag set, newest last, and whether it was a
    /// reconnect raise.
    pub raised: Vec<(Instant, Raise)>,
    conn: Option<ListenerId>,
    to_broker: VecDeque<u8>,
    to_listener: VecDeque<u8>,
    /// The broker's read buffer for this listener's connection.
    broker_reader: FrameReader<MAX_FRAME_LEN>,
    /// The listener's own read buffer.
    reader: FrameReader<MAX_FRAME_LEN>,
    reconnect_at: Option<Instant>,
    rng: u32,
}

/// A sender process.
#[derive(Clone, Copy, Debug)]
pub struct SimSender {
    /// Its id.
    pub id: SenderId,
    /// The next sequence number.
    pub next: Seq,
}

impl SimSender {
    /// A sender with `id`, starting at sequence 1.
    pub fn new(id: u64) -> Self {
        SimSender {
            id: SenderId(id),
            next: Seq::FIRST,
        }
    }

    /// The next datagram for `notification`.
    pub fn datagram(&mut self, notification: Notification, batch: u32) -> Vec<u8> {
        let repr = NotifyRepr {
            notification,
            sender: self.id,
            seq: self.next,
            batch,
            ack_requested: false,
            probe: false,
            tag: None,
        };
        self.next = self.next.next();
        let mut buf = [0u8; MAX_DATAGRAM_LEN];
        let n = repr.emit(&mut buf).expect("buffer holds any datagram");
        buf[..n].to_vec()
    }
}

/// The simulated world.
#[derive(Debug)]
pub struct Sim {
    /// The broker's state, or `None` while the broker is down.
    pub broker: Option<SimBroker>,
    /// The broker's configuration (reused on restart).
    pub config: Config,
    /// The broker's keys (reused on restart).
    keys: Option<Keyring>,
    capacity: usize,
    /// The listeners.
    pub listeners: Vec<SimListener>,
    /// The current simulated time.
    pub now: Instant,
    /// Broker → listener frames that a listener could not take (bytes).
    pub max_pipe_bytes: usize,
    /// Close events the broker produced.
    pub closes: Vec<(ListenerId, flagpost_core::wire::CloseReason)>,
}

/// Per-listener bytes the broker may queue towards a listener that does not
/// read, modelling a kernel socket buffer.
pub const PIPE_LIMIT: usize = 4096;

impl Sim {
    /// A world with a running broker holding up to `capacity` listeners.
    pub fn new(config: Config, capacity: usize) -> Self {
        let mut sim = Sim {
            broker: None,
            config,
            keys: None,
            capacity,
            listeners: Vec::new(),
            now: Instant::ZERO,
            max_pipe_bytes: 0,
            closes: Vec::new(),
        };
        sim.start_broker();
        sim
    }

    /// Starts (or restarts) the broker with empty state.
    pub fn start_broker(&mut self) {
        let mut broker = BrokerState::new(
            self.config,
            vec![ListenerSlot::EMPTY; self.capacity].into_boxed_slice(),
            vec![SenderSlot::EMPTY; 16].into_boxed_slice(),
        );
        broker.set_keys(self.keys.clone());
        self.broker = Some(broker);
    }

    /// Gives the broker `keys` (`None`: keyless), now and after restarts.
    pub fn set_keys(&mut self, keys: Option<Keyring>) {
        self.keys = keys.clone();
        if let Some(b) = &mut self.broker {
            b.set_keys(keys);
        }
    }

    /// Kills the broker: every connection breaks.
    pub fn kill_broker(&mut self) {
        self.broker = None;
        let now = self.now;
        for l in &mut self.listeners {
            if l.conn.take().is_some() {
                l.schedule_reconnect(now);
            }
        }
    }

    /// Adds a listener for `interest` on `channel`; it connects on the next
    /// [`step`](Self::step).
    pub fn add_listener(&mut self, channel: Option<&str>, interest: FlagSet) -> ListenerRef {
        self.add_session(channel, interest, None)
    }

    /// Adds a listener that authenticates with `key`.
    pub fn add_keyed_listener(
        &mut self,
        channel: Option<&str>,
        interest: FlagSet,
        key: Key,
    ) -> ListenerRef {
        self.add_session(channel, interest, Some(key))
    }

    fn add_session(
        &mut self,
        channel: Option<&str>,
        interest: FlagSet,
        key: Option<Key>,
    ) -> ListenerRef {
        let channel = channel.map(|c| ChannelId::new(c).expect("valid channel"));
        let index = self.listeners.len();
        let session = ListenerSession::new(ListenerConfig {
            interest,
            ..ListenerConfig::new(channel)
        });
        let session = match key {
            // a seed per listener, as each process draws its own
            Some(key) => session.with_key(key, [index as u8; 16]),
            None => session,
        };
        self.listeners.push(SimListener {
            session,
            flags: Flags::new(),
            reading: true,
            raised: Vec::new(),
            conn: None,
            to_broker: VecDeque::new(),
            to_listener: VecDeque::new(),
            broker_reader: FrameReader::new(),
            reader: FrameReader::new(),
            reconnect_at: Some(self.now),
            rng: 0x9e37_79b9 ^ index as u32,
        });
        ListenerRef(index)
    }

    /// The listener behind a handle.
    pub fn listener(&mut self, r: ListenerRef) -> &mut SimListener {
        &mut self.listeners[r.0]
    }

    /// Delivers a datagram to the broker now (if it is up) and settles.
    pub fn datagram(&mut self, bytes: &[u8]) {
        if let Some(b) = &mut self.broker {
            // Malformed datagrams are counted by the broker; nothing to do here.
            let _ = b.handle_datagram(self.now, bytes);
        }
        self.step();
    }

    /// Runs every pending exchange at the current time until quiet.
    pub fn step(&mut self) {
        for _ in 0..1000 {
            if !self.exchange() {
                return;
            }
        }
        panic!("simulation did not settle");
    }

    /// One round of I/O; returns whether anything moved.
    fn exchange(&mut self) -> bool {
        let now = self.now;
        let mut moved = false;
        // connect listeners whose reconnect time came
        for l in self.listeners.iter_mut().filter(|l| l.reading) {
            if l.conn.is_none() && l.reconnect_at.is_some_and(|at| at <= now) {
                l.reconnect_at = None;
                let _ = l.session.handle_timeout(now); // the backoff ends
                match self.broker.as_mut().map(|b| b.open(now)) {
                    Some(Ok(id)) => {
                        l.conn = Some(id);
                        l.to_broker.clear();
                        l.to_listener.clear();
                        l.broker_reader.clear();
                        l.reader.clear();
                        l.session.connected(now);
                        moved = true;
                    }
                    _ => l.schedule_reconnect(now), // refused: try again later
                }
            }
        }
        // listener → broker
        for l in self.listeners.iter_mut().filter(|l| l.reading) {
            let mut buf = [0u8; MAX_FRAME_LEN];
            while let Some(n) = l.session.poll_transmit(now, &mut buf) {
                l.to_broker.extend(&buf[..n]);
            }
            let (Some(id), Some(b)) = (l.conn, self.broker.as_mut()) else {
                continue;
            };
            // The broker reads what the pipe holds, as its transport does:
            // what a hello or proof made owed goes out first, whatever
            // follows it.
            loop {
                let took = l.broker_reader.push(l.to_broker.make_contiguous());
                l.to_broker.drain(..took);
                let to_listener = &mut l.to_listener;
                // A rejected frame closes the connection; the event says so.
                let _ = b.handle_frames(now, id, &mut l.broker_reader, |frame| {
                    let mut buf = [0u8; MAX_FRAME_LEN];
                    let n = frame.emit(&mut buf).expect("buffer holds any frame");
                    to_listener.extend(&buf[..n]);
                });
                if took == 0 {
                    break;
                }
                moved = true;
            }
        }
        // broker outputs
        if let Some(b) = self.broker.as_mut() {
            while let Some(Event::Closed {
                listener,
                reason,
                send_close,
                version,
            }) = b.poll_event()
            {
                self.closes.push((listener, reason));
                if let Some(l) = self.listeners.iter_mut().find(|l| l.conn == Some(listener)) {
                    if send_close && l.to_listener.len() < PIPE_LIMIT {
                        let mut buf = [0u8; MAX_FRAME_LEN];
                        let n = Framed::new(version, FrameRepr::Close(CloseRepr::new(reason)))
                            .emit(&mut buf)
                            .expect("buffer holds any frame");
                        l.to_listener.extend(&buf[..n]);
                    }
                    // the broker side is gone; the listener reads what is left, then EOF
                    l.conn = None;
                    l.flush_and_disconnect(now);
                }
                moved = true;
            }
            while let Some(id) = b.poll_ready() {
                let _ = id; // written below for every writable listener
            }
            for l in &mut self.listeners {
                let Some(id) = l.conn else { continue };
                // "writable" while the pipe has room for a whole frame
                while l.to_listener.len() + MAX_FRAME_LEN <= PIPE_LIMIT {
                    let Some(frame) = b.poll_framed(id) else {
                        break;
                    };
                    let mut buf = [0u8; MAX_FRAME_LEN];
                    let n = frame.emit(&mut buf).expect("buffer holds any frame");
                    l.to_listener.extend(&buf[..n]);
                    moved = true;
                }
                self.max_pipe_bytes = self.max_pipe_bytes.max(l.to_listener.len());
            }
        }
        // listeners read; one that rejects what it read drops the connection
        for l in &mut self.listeners {
            let Some(id) = l.conn else { continue };
            if l.reading && l.read_frames(now) {
                moved = true;
                if l.conn.is_none() {
                    if let Some(b) = self.broker.as_mut() {
                        b.disconnect(id);
                    }
                }
            }
        }
        moved
    }

    /// The earliest deadline of anything in the world.
    pub fn next_deadline(&self) -> Option<Instant> {
        let broker = self.broker.as_ref().and_then(|b| b.poll_timeout());
        let listeners = self.listeners.iter().filter(|l| l.reading).flat_map(|l| {
            [
                l.conn.and_then(|_| l.session.poll_timeout()),
                l.reconnect_at,
            ]
        });
        broker.into_iter().chain(listeners.flatten()).min()
    }

    /// Moves time forward by `d`, stopping at every deadline on the way to
    /// run timeouts and settle, as event-driven transports would.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            let at = self.next_deadline().filter(|at| *at <= end);
            self.now = at.unwrap_or(end).max(self.now);
            let now = self.now;
            if let Some(b) = self.broker.as_mut() {
                b.handle_timeout(now);
            }
            for l in self.listeners.iter_mut().filter(|l| l.reading) {
                if l.conn.is_some() && l.session.handle_timeout(now).is_err() {
                    // the listener drops the connection: the broker sees EOF
                    if let (Some(id), Some(b)) = (l.conn.take(), self.broker.as_mut()) {
                        b.disconnect(id);
                    }
                    l.schedule_reconnect(now);
                }
            }
            self.step();
            if at.is_none() {
                return;
            }
        }
    }
}

impl SimListener {
    /// The connection is gone or was refused: the session backs off.
    fn schedule_reconnect(&mut self, now: Instant) {
        // xorshift: deterministic jitter
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 17;
        self.rng ^= self.rng << 5;
        self.session.disconnected(now, self.rng);
        self.reconnect_at = self.session.poll_timeout();
    }

    fn read_frames(&mut self, now: Instant) -> bool {
        let mut moved = false;
        loop {
            let took = self.reader.push(self.to_listener.make_contiguous());
            self.to_listener.drain(..took);
            let Some(frame) = self.reader.next_frame() else {
                if took == 0 {
                    break;
                }
                continue;
            };
            moved = true;
            let result = frame
                .map_err(flagpost_core::listener::SessionError::Malformed)
                .and_then(|bytes| self.session.handle_frame(now, bytes));
            match result {
                Ok(raise) if !raise.flags.is_empty() => {
                    self.flags.raise(raise.flags);
                    self.raised.push((now, raise));
                }
                Ok(_) => {}
                Err(_) => {
                    self.conn = None;
                    self.schedule_reconnect(now);
                    return true;
                }
            }
        }
        moved
    }

    fn flush_and_disconnect(&mut self, now: Instant) {
        if self.reading {
            self.read_frames(now);
        }
        self.to_listener.clear();
        self.reader.clear();
        self.schedule_reconnect(now);
    }

    /// Whether the session is listening.
    pub fn is_listening(&self) -> bool {
        self.session.state() == ListenerState::Listening && self.conn.is_some()
    }
}
