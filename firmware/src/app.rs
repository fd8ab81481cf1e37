//! The gateway application, independent of the board: the modem's
//! unsolicited result codes become channel-targeted status updates, and the
//! notifications for this gateway's channel drive it.
//!
//! [`run`] joins four loops on the board's executor:
//!
//! * **modem** — the [`Modem`] driver over the board's UART: init, URCs,
//!   liveness, re-init with backoff. Every `+CMTI`/`+CDS`/`+CDSI` is one
//!   `notify(status, channel)`; the notifier coalesces a burst within the
//!   configured hold-off into one datagram carrying its batch count.
//! * **network** — DHCP, falling back to the configured static address when
//!   no lease arrives in [`DHCP_TIMEOUT`]; then the notifier and listener
//!   runners for the configured broker.
//! * **control** — the listener's flags: *status* → the board's
//!   [`Hooks::outgoing_check`]; *channel update* → reload the configuration
//!   from flash (and resume reporting); *channel shutdown* → stop reporting
//!   until the next update. Raised together (as after every reconnect), the
//!   update wins: the gateway keeps reporting.
//! * **watchdog** — [`Hooks::feed_watchdog`] twice a second while the
//!   executor runs.

use core::cell::Cell;

use embassy_futures::join::join3;
use embassy_futures::select::{select, select3, Either};
use embassy_net::tcp::TcpSocket;
use embassy_net::udp::{PacketMetadata, UdpSocket};
use embassy_net::{ConfigV4, IpEndpoint, Ipv4Cidr, Stack, StaticConfigV4};
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::blocking_mutex::Mutex;
use embassy_time::{with_timeout, Timer};
use embedded_io_async::{Read, Write};
#[cfg(feature = "sign")]
use flagpost_core::auth::Key;
use flagpost_core::notifier::{NotifierConfig, Signer};
use flagpost_core::wire::SenderId;
use flagpost_core::{ChannelId, FlagSet, Instant, Notification};
use flagpost_embedded::listener::{
    EmbassyListener, EmbassyListenerShared, ListenerConfig, ListenerRunner,
};
use flagpost_embedded::notifier::{EmbassyNotifier, EmbassyNotifierState, NotifierRunner};

use crate::config::{GatewayConfig, Source};
use crate::modem::{Modem, ModemEvent};

/// Distinct notifications the notifier can hold at once.
pub const PENDING: usize = 4;
/// How long DHCP may take before the static fallback is used.
pub const DHCP_TIMEOUT: embassy_time::Duration = embassy_time::Duration::from_secs(10);

const UDP_RX: usize = 128;
const UDP_TX: usize = 72 * PENDING;
const TCP_RX: usize = 256;
const TCP_TX: usize = 128;

/// Socket buffers and shared state, in one `static` the board provides:
/// 128 B UDP receive + 288 B UDP transmit (4 datagrams of ≤ 72 B), 256 B TCP
/// receive + 128 B TCP transmit, plus the notifier's and listener's state.
pub struct Resources {
    udp_rx_meta: [PacketMetadata; 2],
    udp_tx_meta: [PacketMetadata; PENDING],
    udp_rx: [u8; UDP_RX],
    udp_tx: [u8; UDP_TX],
    tcp_rx: [u8; TCP_RX],
    tcp_tx: [u8; TCP_TX],
    notifier: EmbassyNotifierState<PENDING>,
    listener: EmbassyListenerShared,
    control: Control,
}

impl Default for Resources {
    fn default() -> Self {
        Self::new()
    }
}

impl Resources {
    /// Zeroed buffers, nothing pending.
    pub const fn new() -> Self {
        Resources {
            udp_rx_meta: [PacketMetadata::EMPTY; 2],
            udp_tx_meta: [PacketMetadata::EMPTY; PENDING],
            udp_rx: [0; UDP_RX],
            udp_tx: [0; UDP_TX],
            tcp_rx: [0; TCP_RX],
            tcp_tx: [0; TCP_TX],
            notifier: EmbassyNotifierState::new(NotifierConfig::DEFAULT, SenderId(0)),
            listener: EmbassyListenerShared::new(),
            control: Control::new(),
        }
    }
}

/// What the board does for the application.
pub trait Hooks: Sync {
    /// A status update for this gateway's channel arrived: check for
    /// outgoing messages.
    fn outgoing_check(&self) {}
    /// Called twice a second while the executor runs.
    fn feed_watchdog(&self) {}
    /// The configuration was (re)loaded from flash.
    fn config_loaded(&self, _config: &GatewayConfig, _source: Source) {}
    /// The modem reported `event`; `notified` says whether a notification
    /// went out for it (not while reporting is off).
    fn modem_event(&self, _event: &ModemEvent, _notified: bool) {}
    /// Reporting was switched off (a channel shutdown) or on again (a
    /// channel update).
    fn reporting(&self, _on: bool) {}
}

/// What the board provides.
pub struct Platform<U> {
    /// The network stack (created with a DHCPv4 configuration, or static).
    pub stack: Stack<'static>,
    /// The modem's UART.
    pub modem: U,
    /// The configuration block as stored in flash (blank: all `0xFF`).
    pub flash_config: &'static [u8],
    /// The board's RNG, for jitter.
    pub random: fn() -> u32,
    /// Random per boot, from the board's RNG: the notifier's sender id.
    pub sender_id: u64,
    /// The board's hooks.
    pub hooks: &'static dyn Hooks,
}

/// The board's pieces every loop may use.
#[derive(Clone, Copy)]
struct Env {
    flash_config: &'static [u8],
    random: fn() -> u32,
    hooks: &'static dyn Hooks,
}

/// Shared between the loops: the configuration in force and whether the
/// gateway reports (a channel shutdown pauses it).
struct Control {
    config: Mutex<CriticalSectionRawMutex, Cell<Option<GatewayConfig>>>,
    reporting: Mutex<CriticalSectionRawMutex, Cell<bool>>,
}

impl Control {
    const fn new() -> Self {
        Control {
            config: Mutex::new(Cell::new(None)),
            reporting: Mutex::new(Cell::new(true)),
        }
    }

    fn config(&self) -> GatewayConfig {
        self.config.lock(Cell::get).unwrap_or_default()
    }

    fn channel(&self) -> ChannelId {
        self.config().channel
    }
}

/// A locally administered unicast MAC address derived from a chip's unique
/// id (FNV-1a over its bytes): stable across reboots, distinct per chip.
pub fn mac_from_id(id: &[u8]) -> [u8; 6] {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in id {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let [h0, h1, h2, h3, h4, ..] = hash.to_le_bytes();
    // 0x02: locally administered (bit 1), unicast (bit 0 clear)
    [0x02, h0, h1, h2, h3, h4]
}

fn now() -> Instant {
    Instant::from_micros(embassy_time::Instant::now().as_micros())
}

fn notifier_config(config: &GatewayConfig) -> NotifierConfig {
    NotifierConfig {
        hold_off: config.hold_off(),
        ..NotifierConfig::DEFAULT
    }
}

fn endpoint(config: &GatewayConfig) -> IpEndpoint {
    let ip = config.broker.ip().octets();
    IpEndpoint::new(
        embassy_net::Ipv4Address::new(ip[0], ip[1], ip[2], ip[3]).into(),
        config.broker.port(),
    )
}

/// Runs the gateway forever.
pub async fn run<U: Read + Write>(platform: Platform<U>, resources: &'static mut Resources) -> ! {
    let Resources {
        udp_rx_meta,
        udp_tx_meta,
        udp_rx,
        udp_tx,
        tcp_rx,
        tcp_tx,
        notifier,
        listener,
        control,
    } = resources;
    let Platform {
        stack,
        modem,
        flash_config,
        random,
        sender_id,
        hooks,
    } = platform;
    let env = Env {
        flash_config,
        random,
        hooks,
    };
    let (config, source) = GatewayConfig::load(flash_config);
    hooks.config_loaded(&config, source);
    control.config.lock(|c| c.set(Some(config)));
    notifier.set_sender(SenderId(sender_id));
    notifier.set_config(notifier_config(&config));
    let notifier: &'static EmbassyNotifierState<PENDING> = notifier;
    let listener: &'static EmbassyListenerShared = listener;
    let control: &'static Control = control;

    let modem = modem_loop(
        modem,
        EmbassyNotifier::new(notifier),
        control,
        random(),
        hooks,
    );
    let watchdog = async {
        loop {
            hooks.feed_watchdog();
            Timer::after_millis(500).await;
        }
    };
    let network = async {
        network_up(stack, &config).await;
        loop {
            let config = control.config();
            let udp = UdpSocket::new(
                stack,
                &mut udp_rx_meta[..],
                &mut udp_rx[..],
                &mut udp_tx_meta[..],
                &mut udp_tx[..],
            );
            let tcp = TcpSocket::new(stack, &mut tcp_rx[..], &mut tcp_tx[..]);
            // Returns when a reload changed the broker or the channel.
            serve(udp, tcp, &config, notifier, listener, control, env).await;
        }
    };
    let ((), (), ()) = join3(modem, watchdog, network).await;
    unreachable_forever().await
}

async fn unreachable_forever() -> ! {
    loop {
        Timer::after_secs(3600).await;
    }
}

/// DHCP with a static fallback, or static only.
async fn network_up(stack: Stack<'static>, config: &GatewayConfig) {
    let fallback = || {
        let s = config.static_ipv4;
        let a = s.address.octets();
        let g = s.gateway.octets();
        ConfigV4::Static(StaticConfigV4 {
            address: Ipv4Cidr::new(
                embassy_net::Ipv4Address::new(a[0], a[1], a[2], a[3]),
                s.prefix_len,
            ),
            gateway: (g != [0; 4]).then(|| embassy_net::Ipv4Address::new(g[0], g[1], g[2], g[3])),
            dns_servers: Default::default(),
        })
    };
    // Without DHCP, or when no lease came in time: the static address.
    let leased = config.dhcp
        && with_timeout(DHCP_TIMEOUT, stack.wait_config_up())
            .await
            .is_ok();
    if !leased {
        stack.set_config_v4(fallback());
    }
    stack.wait_config_up().await;
}

/// One configuration epoch: notifier and listener runners for the broker
/// in force, until a reload changes the broker or the channel.
async fn serve(
    mut udp: UdpSocket<'_>,
    tcp: TcpSocket<'_>,
    config: &GatewayConfig,
    notifier: &'static EmbassyNotifierState<PENDING>,
    listener: &'static EmbassyListenerShared,
    control: &'static Control,
    env: Env,
) {
    let broker = endpoint(config);
    // Binding port 0 picks a free port; it cannot fail on a fresh socket.
    let _ = udp.bind(0);
    // With a key in the configuration block every datagram is signed (and
    // only signed acks are believed), as a broker with that key requires.
    #[cfg(feature = "sign")]
    let key = config.auth_key.and_then(|k| Key::new(&k).ok());
    #[cfg(feature = "sign")]
    let signer = key.as_ref().map(|k| k as &dyn Signer);
    // Built without `sign` (only to measure what signing costs): never signs.
    #[cfg(not(feature = "sign"))]
    let signer: Option<&dyn Signer> = None;
    let pub_runner = NotifierRunner::new(notifier, udp, broker, signer);
    let interest = FlagSet::STATUS | FlagSet::CHANNEL_UPDATE | FlagSet::CHANNEL_SHUTDOWN;
    // One broker in the configuration block: a one-element list.
    let brokers = [broker];
    let lis_runner = ListenerRunner::new(
        listener,
        tcp,
        &brokers,
        ListenerConfig {
            interest,
            ..ListenerConfig::new(Some(config.channel))
        },
        env.random,
    );
    // The same key proves this gateway to the broker's listener handshake
    // (and the broker to it); the nonce seed is fresh per connection epoch.
    #[cfg(feature = "sign")]
    let lis_runner = match &key {
        Some(key) => {
            let mut seed = [0u8; 16];
            for chunk in seed.chunks_exact_mut(4) {
                chunk.copy_from_slice(&(env.random)().to_le_bytes());
            }
            lis_runner.with_key(key.clone(), seed)
        }
        None => lis_runner,
    };
    let control_loop = control_loop(EmbassyListener::new(listener), notifier, control, env);
    match select3(pub_runner.run(), lis_runner.run(), control_loop).await {
        embassy_futures::select::Either3::Third(()) => {}
        embassy_futures::select::Either3::First(never)
        | embassy_futures::select::Either3::Second(never) => match never {},
    }
}

/// Acts on the listener's flags; returns when a reload changed the broker
/// or the channel (the network loop then restarts the runners).
async fn control_loop(
    listener: EmbassyListener<'static>,
    notifier: &'static EmbassyNotifierState<PENDING>,
    control: &'static Control,
    env: Env,
) {
    loop {
        listener.wait().await;
        let flags = listener.take();
        if flags.contains(FlagSet::CHANNEL_UPDATE) {
            if !control.reporting.lock(|r| r.replace(true)) {
                env.hooks.reporting(true);
            }
            let before = control.config();
            let (config, source) = GatewayConfig::load(env.flash_config);
            env.hooks.config_loaded(&config, source);
            control.config.lock(|c| c.set(Some(config)));
            notifier.set_config(notifier_config(&config));
            if config.broker != before.broker || config.channel != before.channel {
                return;
            }
        } else if flags.contains(FlagSet::CHANNEL_SHUTDOWN)
            && control.reporting.lock(|r| r.replace(false))
        {
            env.hooks.reporting(false);
        }
        if flags.contains(FlagSet::STATUS) {
            env.hooks.outgoing_check();
        }
    }
}

/// Drives the modem over the UART and notifies its events.
async fn modem_loop<U: Read + Write>(
    mut uart: U,
    notifier: EmbassyNotifier<'static, PENDING>,
    control: &'static Control,
    random: u32,
    hooks: &'static dyn Hooks,
) {
    let mut modem = Modem::new(now(), random);
    let mut buf = [0u8; 64];
    loop {
        while let Some(command) = modem.poll_transmit(now()) {
            // A UART error loses the command; its timeout re-inits the modem.
            let _ = uart.write_all(command).await;
        }
        while let Some(event) = modem.poll_event() {
            let batch = match event {
                ModemEvent::NewSms { .. }
                | ModemEvent::NewSmsDirect
                | ModemEvent::DeliveryReport(_) => 1,
                // Events were lost: one notification standing for all of them.
                ModemEvent::Overrun { dropped } => dropped,
                _ => 0,
            };
            let notify = batch > 0 && control.reporting.lock(Cell::get);
            if notify {
                notifier.notify(Notification::status(Some(control.channel())), batch);
            }
            hooks.modem_event(&event, notify);
        }
        let deadline = modem.poll_timeout();
        let timer = Timer::at(deadline.map_or(embassy_time::Instant::MAX, |at| {
            embassy_time::Instant::from_micros(at.as_micros())
        }));
        match select(uart.read(&mut buf), timer).await {
            Either::First(Ok(n)) => modem.handle_rx(now(), buf.get(..n).unwrap_or(&[])),
            // A UART error: the command in flight times out and the modem is re-initialised.
            Either::First(Err(_)) => {}
            Either::Second(()) => modem.handle_timeout(now()),
        }
    }
}
