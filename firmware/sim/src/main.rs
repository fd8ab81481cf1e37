//! `flagpost-gateway-sim`: the gateway application (`flagpost_firmware::app`)
//! on Linux — embassy's std executor, embassy-net on a TAP device, and an
//! emulated modem behind an in-process UART.
//!
//! ```text
//! flagpost-gateway-sim --tap fptap0 --ip 192.168.69.2/24 --broker 192.168.69.1:16725 --channel gsm1
//! ```
//!
//! The emulated modem answers the driver's AT commands like a real one and
//! injects every line read from stdin as an unsolicited result code, so
//! `echo '+CMTI: "SM",3'` on stdin is an SMS arriving. The board hooks print
//! one line each on stdout: `ready`, `config …`, `outgoing-check`,
//! `reporting off` / `reporting on`, `modem <event> notified=<bool>`.
//! Run it inside a network namespace that owns the TAP device.

mod modem;

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};

use embassy_executor::{Executor, Spawner};
use embassy_net::{Config as NetConfig, Ipv4Cidr, StackResources, StaticConfigV4};
use embassy_net_tuntap::TunTapDevice;
use flagpost_core::ChannelId;
use flagpost_firmware::app::{self, Hooks, Platform, Resources};
use flagpost_firmware::config::{GatewayConfig, Source, StaticIpv4};
use flagpost_firmware::modem::ModemEvent;
use static_cell::StaticCell;

struct Args {
    tap: String,
    ip: Ipv4Addr,
    prefix: u8,
    broker: SocketAddrV4,
    channel: ChannelId,
    hold_off_ms: u32,
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "flagpost-gateway-sim: {problem}\n\
         usage: flagpost-gateway-sim --tap NAME --ip A.B.C.D/N --broker A.B.C.D:PORT --channel ID [--hold-off-ms N]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut tap = None;
    let mut ip = None;
    let mut broker = None;
    let mut channel = None;
    let mut hold_off_ms = 5;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--tap" => tap = Some(value),
            "--ip" => {
                let (a, n) = value
                    .split_once('/')
                    .unwrap_or_else(|| usage("--ip needs A.B.C.D/N"));
                let a: Ipv4Addr = a.parse().unwrap_or_else(|_| usage("bad --ip address"));
                let n: u8 = n
                    .parse()
                    .ok()
                    .filter(|n| *n <= 32)
                    .unwrap_or_else(|| usage("bad --ip prefix"));
                ip = Some((a, n));
            }
            "--broker" => broker = Some(value.parse().unwrap_or_else(|_| usage("bad --broker"))),
            "--channel" => {
                channel = Some(
                    ChannelId::new(&value)
                        .unwrap_or_else(|e| usage(&format!("bad --channel: {e}"))),
                )
            }
            "--hold-off-ms" => {
                hold_off_ms = value.parse().unwrap_or_else(|_| usage("bad --hold-off-ms"))
            }
            other => usage(&format!("unknown option {other}")),
        }
    }
    let (ip, prefix) = ip.unwrap_or_else(|| usage("--ip is required"));
    Args {
        tap: tap.unwrap_or_else(|| usage("--tap is required")),
        ip,
        prefix,
        broker: broker.unwrap_or_else(|| usage("--broker is required")),
        channel: channel.unwrap_or_else(|| usage("--channel is required")),
        hold_off_ms,
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

struct SimHooks;

impl Hooks for SimHooks {
    fn outgoing_check(&self) {
        say("outgoing-check");
    }

    fn modem_event(&self, event: &ModemEvent, notified: bool) {
        say(&format!("modem {event:?} notified={notified}"));
    }

    fn reporting(&self, on: bool) {
        say(if on { "reporting on" } else { "reporting off" });
    }

    fn config_loaded(&self, config: &GatewayConfig, source: Source) {
        say(&format!(
            "config {source:?} broker={} channel={}",
            config.broker, config.channel
        ));
    }
}

static HOOKS: SimHooks = SimHooks;

fn random() -> u32 {
    // Jitter only: the std RandomState is seeded per process.
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::Instant::now()) as u32
}

#[embassy_executor::task]
async fn net_task(mut runner: embassy_net::Runner<'static, TunTapDevice>) -> ! {
    runner.run().await
}

#[embassy_executor::task]
async fn app_task(platform: Platform<modem::Uart>, resources: &'static mut Resources) -> ! {
    app::run(platform, resources).await
}

fn start(spawner: Spawner, args: Args) {
    let device = TunTapDevice::new(&args.tap).unwrap_or_else(|e| {
        eprintln!(
            "flagpost-gateway-sim: cannot open TAP device {}: {e} (create it first; needs root)",
            args.tap
        );
        std::process::exit(3)
    });
    let net = NetConfig::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(args.ip, args.prefix),
        gateway: None,
        dns_servers: Default::default(),
    });
    static RESOURCES: StaticCell<StackResources<4>> = StaticCell::new();
    let (stack, runner) = embassy_net::new(
        device,
        net,
        RESOURCES.init(StackResources::new()),
        u64::from(random()),
    );
    spawner.spawn(net_task(runner).expect("one net task"));

    // The "flash": a configuration block written from the arguments.
    let config = GatewayConfig {
        broker: args.broker,
        channel: args.channel,
        dhcp: false,
        static_ipv4: StaticIpv4 {
            address: args.ip,
            prefix_len: args.prefix,
            gateway: Ipv4Addr::UNSPECIFIED,
        },
        hold_off_ms: args.hold_off_ms,
        ..GatewayConfig::default()
    };
    let mut block = vec![0xff; 256];
    config
        .write(&mut block)
        .unwrap_or_else(|e| usage(&format!("cannot write config: {e}")));
    let flash: &'static [u8] = Box::leak(block.into_boxed_slice());

    static APP: StaticCell<Resources> = StaticCell::new();
    let platform = Platform {
        stack,
        modem: modem::spawn(),
        flash_config: flash,
        random,
        sender_id: u64::from(random()) << 32 | u64::from(random()),
        hooks: &HOOKS,
    };
    spawner.spawn(app_task(platform, APP.init(Resources::new())).expect("one app task"));
    say("ready");
}

fn main() {
    let args = parse_args();
    static EXECUTOR: StaticCell<Executor> = StaticCell::new();
    EXECUTOR
        .init(Executor::new())
        .run(|spawner| start(spawner, args));
}
