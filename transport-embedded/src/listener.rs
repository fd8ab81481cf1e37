//! The embassy-net listener: application tasks hold a cheap [`EmbassyListener`]
//! handle and check flags from RAM; one [`ListenerRunner`] task owns the TCP
//! socket and moves bytes for the core's [`ListenerSession`], which decides
//! everything else — hello, keep-alive, when to reconnect (its capped
//! exponential backoff) and the reconnect raise on each welcome (status,
//! non-status and channel update; never channel shutdown), which the handle
//! marks ([`EmbassyListener::check_reconnect`]).
//!
//! With a key ([`ListenerRunner::with_key`]) every connection authenticates
//! (`PROTOCOL.md`, *Listener authentication*); the board supplies the nonce
//! seed from its RNG at boot. A refusal is retried at the backoff's pace, as
//! any other loss, and the handle says why
//! ([`EmbassyListener::auth_error`]).
//!
//! With several broker endpoints the runner fails over: it connects to the
//! one the session picks (`flagpost_core::listener`, *Fail-over*): the
//! first, then the next on every loss, staying on one that works; each move
//! is a reconnect raise, as every welcome is.

use core::cell::{Cell, RefCell};

use embassy_futures::select::{select, Either};
use embassy_net::tcp::TcpSocket;
use embassy_net::IpEndpoint;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::blocking_mutex::Mutex;
use embassy_sync::signal::Signal;
use embassy_time::Timer;
use flagpost_core::auth::Key;
use flagpost_core::flags::Flags;
pub use flagpost_core::listener::{AuthError, ListenerConfig, ListenerState, Raise};
use flagpost_core::listener::{ListenerSession, SessionError};
use flagpost_core::wire::{FrameReader, MAX_FRAME_LEN};
use flagpost_core::FlagSet;

use crate::time::{now, to_embassy};

/// What the runner raised and the handles have not taken yet.
#[derive(Default)]
struct Raised {
    flags: Flags,
    reconnect: bool,
}

/// The listener's shared state. Put it in a `static`.
pub struct EmbassyListenerShared {
    raised: Mutex<CriticalSectionRawMutex, RefCell<Raised>>,
    state: Mutex<CriticalSectionRawMutex, Cell<ListenerState>>,
    auth: Mutex<CriticalSectionRawMutex, Cell<Option<AuthError>>>,
    signal: Signal<CriticalSectionRawMutex, ()>,
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
            raised: Mutex::new(RefCell::new(Raised {
                flags: Flags::new(),
                reconnect: false,
            })),
            state: Mutex::new(Cell::new(ListenerState::Connecting)),
            auth: Mutex::new(Cell::new(None)),
            signal: Signal::new(),
        }
    }

    fn raise(&self, raise: Raise) {
        if !raise.flags.is_empty() {
            self.with(|r| {
                r.flags.raise(raise.flags);
                r.reconnect |= raise.reconnect;
            });
            self.signal.signal(());
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Raised) -> R) -> R {
        self.raised.lock(|r| f(&mut r.borrow_mut()))
    }

    fn set_state(&self, state: ListenerState) {
        self.state.lock(|s| s.set(state));
    }

    fn set_auth(&self, auth: Option<AuthError>) {
        self.auth.lock(|a| a.set(auth));
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

    /// Test-and-clear the status flag.
    pub fn check_status_update(&self) -> bool {
        self.shared.with(|r| r.flags.check_status())
    }

    /// Test-and-clear the non-status flag.
    pub fn check_non_status_update(&self) -> bool {
        self.shared.with(|r| r.flags.check_non_status())
    }

    /// Test-and-clear the channel-update flag.
    pub fn check_channel_update(&self) -> bool {
        self.shared.with(|r| r.flags.check_channel_update())
    }

    /// Test-and-clear the channel-shutdown flag.
    pub fn check_channel_shutdown(&self) -> bool {
        self.shared.with(|r| r.flags.check_channel_shutdown())
    }

    /// Test-and-clear of the reconnect mark: true when a reconnect raise
    /// (a re-check after a (re)connect; nothing was notified) came since the
    /// last call.
    pub fn check_reconnect(&self) -> bool {
        self.shared.with(|r| core::mem::take(&mut r.reconnect))
    }

    /// Takes every raised flag.
    pub fn take(&self) -> FlagSet {
        self.shared.with(|r| r.flags.take())
    }

    /// Takes every raised flag and the reconnect mark at once.
    pub fn take_raise(&self) -> Raise {
        self.shared.with(|r| Raise {
            flags: r.flags.take(),
            reconnect: core::mem::take(&mut r.reconnect),
        })
    }

    /// Waits until some flag is raised (returns at once if one is). One
    /// task may wait at a time.
    pub async fn wait(&self) {
        loop {
            if !self.shared.with(|r| r.flags.peek()).is_empty() {
                return;
            }
            self.shared.signal.wait().await;
        }
    }

    /// Where the listener is.
    pub fn state(&self) -> ListenerState {
        self.shared.state.lock(Cell::get)
    }

    /// Why the latest connection failed to authenticate, until one
    /// succeeds (`None`: it did not fail so). The runner keeps retrying.
    pub fn auth_error(&self) -> Option<AuthError> {
        self.shared.auth.lock(Cell::get)
    }
}

/// The task that owns the TCP socket.
pub struct ListenerRunner<'a, 'd> {
    shared: &'a EmbassyListenerShared,
    socket: TcpSocket<'d>,
    brokers: &'a [IpEndpoint],
    session: ListenerSession,
    reader: FrameReader<{ 4 * MAX_FRAME_LEN }>,
    random: fn() -> u32,
}

impl<'a, 'd> ListenerRunner<'a, 'd> {
    /// A runner for `config`, connecting with `socket` to one of `brokers`,
    /// tried in turn (`config.brokers` is replaced by their count; past the
    /// 255th none is tried); `random` supplies reconnect jitter (the
    /// board's RNG). With no broker at all the runner stays
    /// [`ListenerState::Closed`].
    pub fn new(
        shared: &'a EmbassyListenerShared,
        socket: TcpSocket<'d>,
        brokers: &'a [IpEndpoint],
        config: ListenerConfig,
        random: fn() -> u32,
    ) -> Self {
        let config = ListenerConfig {
            brokers: u8::try_from(brokers.len()).unwrap_or(u8::MAX),
            ..config
        };
        ListenerRunner {
            shared,
            socket,
            brokers,
            session: ListenerSession::new(config),
            reader: FrameReader::new(),
            random,
        }
    }

    /// The same runner authenticating with `key`; `seed` is 16 bytes from
    /// the board's RNG, drawn at every boot (a seed used twice repeats the
    /// handshake's nonces).
    pub fn with_key(mut self, key: Key, seed: [u8; 16]) -> Self {
        self.session = self.session.with_key(key, seed);
        self
    }

    /// Connects, listens, reconnects when the session says — forever.
    pub async fn run(mut self) -> ! {
        loop {
            self.shared.set_state(self.session.state());
            match self.session.state() {
                ListenerState::BackingOff => {
                    let at = self.session.poll_timeout();
                    Timer::at(at.map_or(embassy_time::Instant::MIN, to_embassy)).await;
                    let _ = self.session.handle_timeout(now());
                }
                ListenerState::Closed => core::future::pending::<()>().await,
                ListenerState::Connecting | ListenerState::Listening => {
                    let Some(&broker) = self.brokers.get(self.session.broker()) else {
                        // no broker given: nothing to connect to, ever
                        self.session.close();
                        continue;
                    };
                    // Bound the connect by the default keep-alive.
                    self.socket
                        .set_timeout(Some(embassy_time::Duration::from_secs(30)));
                    if self.socket.connect(broker).await.is_ok() {
                        self.session.connected(now());
                        self.reader.clear();
                        let _ended = self.serve().await;
                        self.shared.set_auth(self.session.auth_failure());
                    }
                    self.socket.abort();
                    let _ = self.socket.flush().await;
                    self.session.disconnected(now(), (self.random)());
                }
            }
        }
    }

    async fn write_all(&mut self, mut bytes: &[u8]) -> Result<(), ()> {
        while !bytes.is_empty() {
            match self.socket.write(bytes).await {
                Ok(0) | Err(_) => return Err(()),
                Ok(n) => bytes = bytes.get(n..).unwrap_or(&[]),
            }
        }
        Ok(())
    }

    /// One connection's life; returns when it must end.
    async fn serve(&mut self) -> Result<(), ()> {
        let mut wbuf = [0u8; MAX_FRAME_LEN];
        loop {
            while let Some(n) = self.session.poll_transmit(now(), &mut wbuf) {
                self.write_all(wbuf.get(..n).unwrap_or(&[])).await?;
            }
            let deadline = self.session.poll_timeout();
            let timer = Timer::at(deadline.map_or(embassy_time::Instant::MAX, to_embassy));
            let read = select(self.socket.read(self.reader.unfilled()), timer).await;
            let t = now();
            match read {
                Either::First(Ok(0)) | Either::First(Err(_)) => return Err(()),
                Either::First(Ok(n)) => self.reader.filled(n),
                Either::Second(()) => {}
            }
            while let Some(frame) = self.reader.next_frame() {
                let raise = frame
                    .map_err(SessionError::Malformed)
                    .and_then(|bytes| self.session.handle_frame(t, bytes))
                    .map_err(|_| ())?;
                self.shared.raise(raise);
                self.shared.set_state(self.session.state());
                if raise.reconnect {
                    // welcomed: any earlier refusal is over
                    self.shared.set_auth(None);
                }
            }
            self.session.handle_timeout(t).map_err(|_| ())?;
            if self.session.state() == ListenerState::Closed {
                return Err(());
            }
        }
    }
}
