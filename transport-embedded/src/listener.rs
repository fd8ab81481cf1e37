//! The embassy-net listener: application tasks hold a cheap [`EmbassyListener`]
//! handle and check flags from RAM; one [`ListenerRunner`] task owns the TCP
//! socket and drives the core's `ListenerSession` — hello, keep-alive,
//! reconnect with capped exponential backoff, and every flag listened for
//! raised again on each welcome (what happened while away may be missed).

use core::cell::Cell;

use embassy_futures::select::{select, Either};
use embassy_net::tcp::TcpSocket;
use embassy_net::IpEndpoint;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::blocking_mutex::Mutex;
use embassy_sync::signal::Signal;
use embassy_time::Timer;
use flagpost_core::listener::{Backoff, ListenerSession, ListenerState as SessionState};
use flagpost_core::wire::{frame_len, FrameRepr, MAX_FRAME_LEN};
use flagpost_core::{ChannelId, Duration, FlagSet};

use crate::time::{now, to_embassy};

/// Where the listener is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ListenerState {
    /// Connecting to the broker.
    Connecting,
    /// Welcomed: flags arrive.
    Listening,
    /// The connection was lost; waiting before the next attempt.
    BackingOff,
}

/// The listener's shared state. Put it in a `static`.
pub struct EmbassyListenerShared {
    flags: Mutex<CriticalSectionRawMutex, Cell<FlagSet>>,
    state: Mutex<CriticalSectionRawMutex, Cell<ListenerState>>,
    raised: Signal<CriticalSectionRawMutex, ()>,
}

impl Default for EmbassyListenerShared {
    fn default() -> Self {
        Self::new()
    }
}

impl EmbassyListenerShared {
    /// Nothing raised, connecting.
    pub const fn new() -> Self {
        EmbassyListenerShared {
            flags: Mutex::new(Cell::new(FlagSet::EMPTY)),
            state: Mutex::new(Cell::new(ListenerState::Connecting)),
            raised: Signal::new(),
        }
    }

    fn raise(&self, set: FlagSet) {
        if !set.is_empty() {
            self.flags.lock(|f| f.set(f.get() | set));
            self.raised.signal(());
        }
    }

    fn set_state(&self, state: ListenerState) {
        self.state.lock(|s| s.set(state));
    }
}

/// A cheap handle: test-and-clear checks from RAM, and an async wait.
#[derive(Clone, Copy)]
pub struct EmbassyListener<'a> {
    shared: &'a EmbassyListenerShared,
}

impl<'a> EmbassyListener<'a> {
    /// A handle to `shared`.
    pub const fn new(shared: &'a EmbassyListenerShared) -> Self {
        EmbassyListener { shared }
    }

    fn check(&self, set: FlagSet) -> bool {
        self.shared.flags.lock(|f| {
            let raised = f.get();
            f.set(raised.difference(set));
            raised.intersects(set)
        })
    }

    /// Test-and-clear the status flag.
    pub fn check_status_update(&self) -> bool {
        self.check(FlagSet::STATUS)
    }

    /// Test-and-clear the non-status flag.
    pub fn check_non_status_update(&self) -> bool {
        self.check(FlagSet::NON_STATUS)
    }

    /// Test-and-clear the channel-update flag.
    pub fn check_channel_update(&self) -> bool {
        self.check(FlagSet::CHANNEL_UPDATE)
    }

    /// Test-and-clear the channel-shutdown flag.
    pub fn check_channel_shutdown(&self) -> bool {
        self.check(FlagSet::CHANNEL_SHUTDOWN)
    }

    /// Takes every raised flag.
    pub fn take(&self) -> FlagSet {
        self.shared.flags.lock(|f| f.replace(FlagSet::EMPTY))
    }

    /// Waits until some flag is raised (returns at once if one is). One
    /// task may wait at a time.
    pub async fn wait(&self) {
        loop {
            if !self.shared.flags.lock(Cell::get).is_empty() {
                return;
            }
            self.shared.raised.wait().await;
        }
    }

    /// Where the listener is.
    pub fn state(&self) -> ListenerState {
        self.shared.state.lock(Cell::get)
    }
}

/// EmbassyListener settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ListenerConfig {
    /// The flags wanted.
    pub interest: FlagSet,
    /// The channel listened for (`None`: all).
    pub channel: Option<ChannelId>,
    /// Keep-alive to ask for, in seconds (0: the broker's).
    pub keepalive_secs: u16,
    /// First reconnect delay (default 100 ms).
    pub backoff_initial: Duration,
    /// Longest reconnect delay (default 10 s).
    pub backoff_max: Duration,
}

impl ListenerConfig {
    /// Every flag for `channel`, default timings.
    pub const fn new(channel: Option<ChannelId>) -> Self {
        ListenerConfig {
            interest: FlagSet::ALL,
            channel,
            keepalive_secs: 0,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
        }
    }
}

/// The task that owns the TCP socket.
pub struct ListenerRunner<'a, 'd> {
    shared: &'a EmbassyListenerShared,
    socket: TcpSocket<'d>,
    broker: IpEndpoint,
    session: ListenerSession,
    backoff: Backoff,
    random: fn() -> u32,
}

/// Why one connection ended.
enum Ended {
    Io,
    Session,
}

impl<'a, 'd> ListenerRunner<'a, 'd> {
    /// A runner for `config`, connecting to `broker` with `socket`;
    /// `random` supplies reconnect jitter (the board's RNG).
    pub fn new(
        shared: &'a EmbassyListenerShared,
        socket: TcpSocket<'d>,
        broker: IpEndpoint,
        config: ListenerConfig,
        random: fn() -> u32,
    ) -> Self {
        ListenerRunner {
            shared,
            socket,
            broker,
            session: ListenerSession::new(config.interest, config.channel, config.keepalive_secs),
            backoff: Backoff::new(config.backoff_initial, config.backoff_max),
            random,
        }
    }

    /// Connects, listens, reconnects — forever.
    pub async fn run(mut self) -> ! {
        loop {
            self.shared.set_state(ListenerState::Connecting);
            // Bound the connect and every later read by the keep-alive.
            self.socket
                .set_timeout(Some(embassy_time::Duration::from_secs(30)));
            if self.socket.connect(self.broker).await.is_ok() {
                self.session.connected(now());
                let _ended = self.serve().await;
                self.session.disconnected();
            }
            self.socket.abort();
            let _ = self.socket.flush().await;
            self.shared.set_state(ListenerState::BackingOff);
            let delay = self.backoff.next_delay((self.random)());
            Timer::after(embassy_time::Duration::from_micros(delay.as_micros())).await;
        }
    }

    async fn write_all(&mut self, mut bytes: &[u8]) -> Result<(), Ended> {
        while !bytes.is_empty() {
            match self.socket.write(bytes).await {
                Ok(0) | Err(_) => return Err(Ended::Io),
                Ok(n) => bytes = bytes.get(n..).unwrap_or(&[]),
            }
        }
        Ok(())
    }

    async fn serve(&mut self) -> Ended {
        let mut rbuf = [0u8; 4 * MAX_FRAME_LEN];
        let mut rlen = 0usize;
        let mut wbuf = [0u8; MAX_FRAME_LEN];
        loop {
            while let Some(frame) = self.session.poll_transmit(now()) {
                let Ok(n) = frame.emit(&mut wbuf) else {
                    return Ended::Session;
                };
                if let Err(e) = self.write_all(wbuf.get(..n).unwrap_or(&[])).await {
                    return e;
                }
            }
            let deadline = self.session.poll_timeout();
            let timer = Timer::at(deadline.map_or(embassy_time::Instant::MAX, to_embassy));
            let read = match rbuf.get_mut(rlen..) {
                Some(free) if !free.is_empty() => select(self.socket.read(free), timer).await,
                _ => return Ended::Session, // a frame larger than the buffer: impossible
            };
            let t = now();
            match read {
                Either::First(Ok(0)) | Either::First(Err(_)) => return Ended::Io,
                Either::First(Ok(n)) => rlen += n,
                Either::Second(()) => {
                    if self.session.handle_timeout(t).is_err() {
                        return Ended::Session;
                    }
                    continue;
                }
            }
            let mut start = 0;
            loop {
                let rest = rbuf.get(start..rlen).unwrap_or(&[]);
                let len = match frame_len(rest) {
                    Ok(Some(len)) => len,
                    Ok(None) => break,
                    Err(_) => return Ended::Session,
                };
                let Ok(frame) = FrameRepr::parse_bytes(rest.get(..len).unwrap_or(&[])) else {
                    return Ended::Session;
                };
                start += len;
                match self.session.handle_frame(t, &frame) {
                    Ok(raised) => {
                        if matches!(frame, FrameRepr::Welcome(_)) {
                            self.backoff.reset();
                            self.shared.set_state(ListenerState::Listening);
                        }
                        self.shared.raise(raised);
                    }
                    Err(_) => return Ended::Session,
                }
            }
            rbuf.copy_within(start..rlen, 0);
            rlen -= start;
            if self.session.handle_timeout(t).is_err() {
                return Ended::Session;
            }
            if self.session.state() == SessionState::Closed {
                return Ended::Session;
            }
        }
    }
}
