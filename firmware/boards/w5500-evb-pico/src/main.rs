//! Flagpost gateway firmware for the WIZnet W5500-EVB-Pico: an RP2040 with a
//! W5500 Ethernet controller on SPI0 and the cellular modem on UART0.
//!
//! This binary only brings the hardware up — clocks, watchdog, the W5500
//! and embassy-net (DHCPv4), the buffered modem UART, the ROSC random
//! source — and hands all of it to the board-independent application,
//! [`flagpost_firmware::app::run`].
//!
//! | what | where |
//! |---|---|
//! | W5500 | SPI0 (blocking, ≤ 33 MHz): SCK GP18, MOSI GP19, MISO GP16, CS GP17; INT GP21, RST GP20 |
//! | modem | UART0: TX GP0, RX GP1, 8N1 at the configured baud rate (115200 by default) |
//! | configuration block | the last 4 KiB flash sector, [`CONFIG_ADDR`] (`memory.x` keeps code out of it) |
//! | watchdog | 8 s, fed by the application through [`Hooks::feed_watchdog`] |
#![no_std]
#![no_main]
#![deny(unsafe_code)]
#![deny(missing_docs)]

use core::cell::RefCell;

use defmt::{debug, info, unwrap, warn};
use embassy_embedded_hal::adapter::BlockingAsync;
use embassy_executor::Spawner;
use embassy_net::StackResources;
use embassy_net_wiznet::chip::W5500;
use embassy_net_wiznet::{Device, Runner, State};
use embassy_rp::bind_interrupts;
use embassy_rp::clocks::RoscRng;
use embassy_rp::flash::{Blocking, Flash};
use embassy_rp::gpio::{Input, Level, Output, Pull};
use embassy_rp::peripherals::{SPI0, UART0};
use embassy_rp::spi::{self, Spi};
use embassy_rp::uart::{self, BufferedInterruptHandler, BufferedUart};
use embassy_rp::watchdog::Watchdog;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::blocking_mutex::Mutex;
use embassy_time::{Delay, Duration, Timer};
use embedded_hal_bus::spi::ExclusiveDevice;
use flagpost_firmware::app::{self, Hooks, Platform, Resources};
use flagpost_firmware::config::{GatewayConfig, Source};
use flagpost_firmware::modem::ModemEvent;
use static_cell::{ConstStaticCell, StaticCell};
use {defmt_rtt as _, panic_probe as _};

/// Size of the board's QSPI flash (W25Q16JV).
const FLASH_SIZE: usize = 2 * 1024 * 1024;
/// Where the configuration block lives: the last 4 KiB sector of flash,
/// kept out of the program by `memory.x`.
const CONFIG_ADDR: usize = 0x1000_0000 + FLASH_SIZE - 4096;
/// How many bytes of the sector the application is shown (a version 1
/// block is 100 bytes; longer blocks may append fields).
const CONFIG_LEN: usize = 256;
/// The watchdog resets the chip when it is not fed for this long (the
/// RP2040's longest period is about 8.38 s).
const WATCHDOG_TIMEOUT: Duration = Duration::from_secs(8);
/// W5500 SPI clock, at most: the datasheet guarantees 33.3 MHz (the
/// RP2040 divides its 125 MHz peripheral clock down to 31.25 MHz).
const SPI_HZ: u32 = 33_000_000;
/// Modem UART ring buffers, in bytes (commands are short; the receive
/// side holds a burst of URCs while the application is busy).
const UART_TX_LEN: usize = 64;
const UART_RX_LEN: usize = 256;

bind_interrupts!(struct Irqs {
    UART0_IRQ => BufferedInterruptHandler<UART0>;
});

/// The W5500's SPI device. Blocking transfers behind the async interface
/// (`BlockingAsync`): a full 1514-byte frame holds the executor for about
/// 0.4 ms, which Flagpost's few small packets never notice (the modem UART
/// is interrupt-driven), while the DMA-driven async SPI costs 2.6 KiB more
/// flash (more than the 64 KiB budget of the time could spare; the budget is
/// 96 KiB since the boards sign).
type W5500Spi =
    ExclusiveDevice<BlockingAsync<Spi<'static, SPI0, spi::Blocking>>, Output<'static>, Delay>;

/// The board's side of the application hooks.
struct Board {
    watchdog: Mutex<CriticalSectionRawMutex, RefCell<Option<Watchdog>>>,
}

impl Hooks for Board {
    fn outgoing_check(&self) {
        info!("status update for this channel: check outgoing");
    }

    fn feed_watchdog(&self) {
        self.watchdog.lock(|w| {
            if let Some(w) = w.borrow_mut().as_mut() {
                w.feed(WATCHDOG_TIMEOUT);
            }
        });
    }

    fn config_loaded(&self, _config: &GatewayConfig, source: Source) {
        info!("configuration: {}", source);
    }

    fn modem_event(&self, event: &ModemEvent, notified: bool) {
        // Debug level: formatting every event costs 0.6 KiB of flash, which
        // this board keeps for the application (`DEFMT_LOG=debug` shows it).
        debug!("modem: {} (notified: {})", event, notified);
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
};

/// The application's jitter source: the ring oscillator's random bit.
fn random() -> u32 {
    RoscRng.next_u32()
}

/// The configuration block as stored in flash.
#[allow(unsafe_code)]
fn flash_config() -> &'static [u8] {
    // SAFETY: CONFIG_ADDR..CONFIG_ADDR + CONFIG_LEN lies inside the RP2040's
    // execute-in-place window (0x1000_0000.., 2 MiB here), which is mapped
    // and readable for as long as the chip runs, and it is aligned for u8.
    // `memory.x` keeps the linker out of that sector, and this firmware
    // never erases or programs flash (the block is written with a debug
    // probe while the core is halted), so the bytes never change under
    // the `&'static` borrow.
    unsafe { core::slice::from_raw_parts(CONFIG_ADDR as *const u8, CONFIG_LEN) }
}

#[embassy_executor::task]
async fn w5500_task(
    runner: Runner<'static, W5500, W5500Spi, Input<'static>, Output<'static>>,
) -> ! {
    runner.run().await
}

#[embassy_executor::task]
async fn net_task(mut runner: embassy_net::Runner<'static, Device<'static>>) -> ! {
    runner.run().await
}

#[embassy_executor::main(
    executor = "embassy_rp::executor::Executor",
    entry = "cortex_m_rt::entry"
)]
async fn main(spawner: Spawner) {
    let p = embassy_rp::init(Default::default());
    info!("flagpost on W5500-EVB-Pico");

    // First, so that a hang or a panic anywhere below ends in a reset.
    let mut watchdog = Watchdog::new(p.WATCHDOG);
    watchdog.pause_on_debug(true);
    watchdog.start(WATCHDOG_TIMEOUT);
    BOARD.watchdog.lock(|w| w.replace(Some(watchdog)));

    // The MAC address comes from the flash chip's 64-bit unique id. Give an
    // attached probe time to read the defmt RTT header first: the id
    // command briefly takes the flash out of XIP mode.
    Timer::after_millis(10).await;
    let mut flash = Flash::<_, Blocking, FLASH_SIZE>::new_blocking(p.FLASH);
    let mut flash_id = [0u8; 8];
    let mac = match flash.blocking_unique_id(&mut flash_id) {
        Ok(()) => flagpost_firmware::app::mac_from_id(&flash_id),
        Err(_) => {
            warn!("no flash unique id; random MAC address");
            flagpost_firmware::app::mac_from_id(&RoscRng.next_u64().to_le_bytes())
        }
    };
    info!("MAC {=[u8]:02x}", mac);

    let flash_config = flash_config();
    // The application loads (and reports) the configuration itself; the
    // board needs only the modem's baud rate from it.
    let (config, _) = GatewayConfig::load(flash_config);

    // The modem.
    static UART_TX: ConstStaticCell<[u8; UART_TX_LEN]> = ConstStaticCell::new([0; UART_TX_LEN]);
    static UART_RX: ConstStaticCell<[u8; UART_RX_LEN]> = ConstStaticCell::new([0; UART_RX_LEN]);
    let mut uart_config = uart::Config::default();
    uart_config.baudrate = config.modem_baud;
    let modem = BufferedUart::new(
        p.UART0,
        p.PIN_0,
        p.PIN_1,
        Irqs,
        UART_TX.take(),
        UART_RX.take(),
        uart_config,
    );
    info!("modem on UART0 at {} baud", config.modem_baud);

    // The W5500.
    let mut spi_config = spi::Config::default();
    spi_config.frequency = SPI_HZ;
    // SCK GP18, MOSI GP19, MISO GP16.
    let spi = BlockingAsync::new(Spi::new_blocking(
        p.SPI0, p.PIN_18, p.PIN_19, p.PIN_16, spi_config,
    ));
    let cs = Output::new(p.PIN_17, Level::High);
    let int = Input::new(p.PIN_21, Pull::Up);
    let reset = Output::new(p.PIN_20, Level::High);
    // Two frames each way: Flagpost's packets are few and small.
    static W5500_STATE: ConstStaticCell<State<2, 2>> = ConstStaticCell::new(State::new());
    let w5500 = embassy_net_wiznet::new(
        mac,
        W5500_STATE.take(),
        ExclusiveDevice::new(spi, cs, Delay),
        int,
        reset,
    )
    .await;
    let Ok((device, runner)) = w5500 else {
        // Nothing works without the network: the watchdog reboots us.
        defmt::panic!("no W5500 on SPI0");
    };
    spawner.spawn(unwrap!(w5500_task(runner)));

    // The network stack: DHCPv4 (the application falls back to the
    // configured static address itself).
    // Socket slots: DHCP, the notifier's UDP, the listener's TCP, one spare.
    static STACK: StaticCell<StackResources<4>> = StaticCell::new();
    let (stack, runner) = embassy_net::new(
        device,
        embassy_net::Config::dhcpv4(Default::default()),
        STACK.init(StackResources::new()),
        RoscRng.next_u64(),
    );
    spawner.spawn(unwrap!(net_task(runner)));

    // Built at run time into .bss: a `const` initialiser with non-zero
    // fields would put all of it in .data, a copy in flash.
    static RESOURCES: StaticCell<Resources> = StaticCell::new();
    let platform = Platform {
        stack,
        modem,
        flash_config,
        random,
        sender_id: RoscRng.next_u64(),
        hooks: &BOARD,
    };
    app::run(platform, RESOURCES.init(Resources::new())).await
}
