//! Flagpost gateway firmware for the ST NUCLEO-F767ZI: an STM32F767ZI with
//! its on-chip Ethernet MAC (RMII to the board's LAN8742A PHY) and the
//! cellular modem on USART2.
//!
//! This binary only brings the hardware up — clocks, watchdog, Ethernet and
//! embassy-net (DHCPv4), the buffered modem UART, the RNG — and hands all of
//! it to the board-independent application, [`flagpost_firmware::app::run`].
//!
//! | what | where |
//! |---|---|
//! | Ethernet (RMII) | REF_CLK PA1, MDIO PA2, MDC PC1, CRS_DV PA7, RXD0 PC4, RXD1 PC5, TXD0 PG13, TXD1 PB13, TX_EN PG11 |
//! | modem | USART2: TX PD5, RX PD6, 8N1 at the configured baud rate (115200 by default) |
//! | configuration block | flash sector 11 (single-bank layout), [`CONFIG_ADDR`] (`memory.x` keeps code out of it) |
//! | watchdog | IWDG, 8 s, fed by the application through [`Hooks::feed_watchdog`] |
#![no_std]
#![no_main]
#![deny(unsafe_code)]
#![deny(missing_docs)]

use core::cell::RefCell;

use defmt::info;
use embassy_executor::Spawner;
use embassy_net::StackResources;
use embassy_stm32::eth::{self, Ethernet, GenericPhy, PacketQueue, Sma};
use embassy_stm32::peripherals::{ETH, ETH_SMA, IWDG, RNG};
use embassy_stm32::rng::{self, Rng};
use embassy_stm32::time::Hertz;
use embassy_stm32::usart::{self, BufferedUart};
use embassy_stm32::wdg::IndependentWatchdog;
use embassy_stm32::{bind_interrupts, peripherals, uid};
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::blocking_mutex::Mutex;
use flagpost_firmware::app::{self, Hooks, Platform, Resources};
use flagpost_firmware::config::{GatewayConfig, Source};
use flagpost_firmware::modem::ModemEvent;
use static_cell::{ConstStaticCell, StaticCell};
use {defmt_rtt as _, panic_probe as _};

/// Where the configuration block lives: the start of flash sector 11
/// (0x081C_0000..0x0820_0000, 256 KiB, in the default single-bank layout),
/// which `memory.x` keeps out of the program.
const CONFIG_ADDR: usize = 0x081C_0000;
/// How many bytes of the sector the application is shown (a version 1
/// block is 100 bytes; longer blocks may append fields).
const CONFIG_LEN: usize = 256;
/// The watchdog resets the chip when it is not fed for this long.
const WATCHDOG_TIMEOUT_US: u32 = 8_000_000;
/// Modem UART ring buffers, in bytes (commands are short; the receive
/// side holds a burst of URCs while the application is busy).
const UART_TX_LEN: usize = 64;
const UART_RX_LEN: usize = 256;

bind_interrupts!(struct Irqs {
    ETH => eth::InterruptHandler;
    RNG => rng::InterruptHandler<peripherals::RNG>;
    USART2 => usart::BufferedInterruptHandler<peripherals::USART2>;
});

type Device = Ethernet<'static, ETH, GenericPhy<Sma<'static, ETH_SMA>>>;

/// The board's side of the application hooks.
struct Board {
    watchdog: Mutex<CriticalSectionRawMutex, RefCell<Option<IndependentWatchdog<'static, IWDG>>>>,
    rng: Mutex<CriticalSectionRawMutex, RefCell<Option<Rng<'static, RNG>>>>,
}

impl Hooks for Board {
    fn outgoing_check(&self) {
        info!("status update for this channel: check outgoing");
    }

    fn feed_watchdog(&self) {
        self.watchdog.lock(|w| {
            if let Some(w) = w.borrow_mut().as_mut() {
                w.pet();
            }
        });
    }

    fn config_loaded(&self, _config: &GatewayConfig, source: Source) {
        info!("configuration: {}", source);
    }

    fn modem_event(&self, event: &ModemEvent, notified: bool) {
        info!("modem: {} (notified: {})", event, notified);
    }

    fn reporting(&self, on: bool) {
        info!(
            "reporting {}",
            if on { "on" } else { "off (channel shutdown)" }
        );
    }
}

static BOARD: Board = Board {
    watchdog: Mutex::new(RefCell::new(None)),
    rng: Mutex::new(RefCell::new(None)),
};

/// The application's jitter source: the RNG peripheral.
fn random() -> u32 {
    BOARD
        .rng
        .lock(|r| r.borrow_mut().as_mut().map_or(0, |r| r.next_u32()))
}

fn random_u64() -> u64 {
    u64::from(random()) << 32 | u64::from(random())
}

/// The configuration block as stored in flash.
#[allow(unsafe_code)]
fn flash_config() -> &'static [u8] {
    // SAFETY: CONFIG_ADDR..CONFIG_ADDR + CONFIG_LEN lies inside the
    // STM32F767ZI's internal flash (0x0800_0000, 2 MiB), which is mapped
    // and readable for as long as the chip runs, and it is aligned for u8.
    // `memory.x` keeps the linker out of that sector, and this firmware
    // never erases or programs flash (the block is written with a debug
    // probe while the core is halted), so the bytes never change under
    // the `&'static` borrow.
    unsafe { core::slice::from_raw_parts(CONFIG_ADDR as *const u8, CONFIG_LEN) }
}

#[embassy_executor::task]
async fn net_task(mut runner: embassy_net::Runner<'static, Device>) -> ! {
    runner.run().await
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let mut config = embassy_stm32::Config::default();
    {
        use embassy_stm32::rcc::*;
        // The ST-LINK feeds an 8 MHz clock to OSC_IN (bypass mode).
        config.rcc.hse = Some(Hse {
            freq: Hertz(8_000_000),
            mode: HseMode::Bypass,
        });
        config.rcc.pll_src = PllSource::HSE;
        config.rcc.pll = Some(Pll {
            prediv: PllPreDiv::DIV4,
            mul: PllMul::MUL216,
            divp: Some(PllPDiv::DIV2), // 216 MHz system clock
            divq: Some(PllQDiv::DIV9), // 48 MHz for the RNG
            divr: None,
        });
        config.rcc.ahb_pre = AHBPrescaler::DIV1;
        config.rcc.apb1_pre = APBPrescaler::DIV4;
        config.rcc.apb2_pre = APBPrescaler::DIV2;
        config.rcc.sys = Sysclk::PLL1_P;
        config.rcc.mux.clk48sel = mux::Clk48sel::PLL1_Q;
    }
    let p = embassy_stm32::init(config);
    info!("flagpost on NUCLEO-F767ZI");

    // First, so that a hang or a panic anywhere below ends in a reset.
    let mut watchdog = IndependentWatchdog::new(p.IWDG, WATCHDOG_TIMEOUT_US);
    watchdog.unleash();
    BOARD.watchdog.lock(|w| w.replace(Some(watchdog)));
    BOARD.rng.lock(|r| r.replace(Some(Rng::new(p.RNG, Irqs))));

    let flash_config = flash_config();
    // The application loads (and reports) the configuration itself; the
    // board needs only the modem's baud rate from it.
    let (config, _) = GatewayConfig::load(flash_config);

    // The modem.
    static UART_TX: ConstStaticCell<[u8; UART_TX_LEN]> = ConstStaticCell::new([0; UART_TX_LEN]);
    static UART_RX: ConstStaticCell<[u8; UART_RX_LEN]> = ConstStaticCell::new([0; UART_RX_LEN]);
    let mut uart_config = usart::Config::default();
    uart_config.baudrate = config.modem_baud;
    let Ok(modem) = BufferedUart::new(
        p.USART2,
        p.PD6,
        p.PD5,
        UART_TX.take(),
        UART_RX.take(),
        Irqs,
        uart_config,
    ) else {
        // Only an impossible baud rate fails; the configuration's check
        // rejects zero, so this is a wiring-independent bug: reboot.
        defmt::panic!("USART2 rejected {} baud", config.modem_baud);
    };
    info!("modem on USART2 at {} baud", config.modem_baud);

    // Ethernet: RMII to the LAN8742A. Two frames out, four in (broadcast
    // noise on a busy LAN arrives in bursts).
    static PACKETS: ConstStaticCell<PacketQueue<2, 4>> = ConstStaticCell::new(PacketQueue::new());
    let mac = flagpost_firmware::app::mac_from_id(&uid::uid());
    info!("MAC {=[u8]:02x}", mac);
    let device = Ethernet::new(
        PACKETS.take(),
        p.ETH,
        Irqs,
        p.PA1,  // REF_CLK
        p.PA7,  // CRS_DV
        p.PC4,  // RXD0
        p.PC5,  // RXD1
        p.PG13, // TXD0
        p.PB13, // TXD1
        p.PG11, // TX_EN
        mac,
        p.ETH_SMA,
        p.PA2, // MDIO
        p.PC1, // MDC
    );

    // The network stack: DHCPv4 (the application falls back to the
    // configured static address itself).
    // Socket slots: DHCP, the notifier's UDP, the listener's TCP, one spare.
    static STACK: StaticCell<StackResources<4>> = StaticCell::new();
    let (stack, runner) = embassy_net::new(
        device,
        embassy_net::Config::dhcpv4(Default::default()),
        STACK.init(StackResources::new()),
        random_u64(),
    );
    spawner.spawn(defmt::unwrap!(net_task(runner)));

    // Built at run time into .bss: a `const` initialiser with non-zero
    // fields would put all of it in .data, a copy in flash.
    static RESOURCES: StaticCell<Resources> = StaticCell::new();
    let platform = Platform {
        stack,
        modem,
        flash_config,
        random,
        sender_id: random_u64(),
        hooks: &BOARD,
    };
    app::run(platform, RESOURCES.init(Resources::new())).await
}
