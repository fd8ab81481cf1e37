//! Writes the Flagpost gateway's flash configuration block to a file, for a
//! debug probe to program into the board's configuration sector, and checks
//! a block read back from a board.
//!
//! ```text
//! cargo run --release -- --broker 10.0.0.5:16725 --channel gsm1 -o config.bin
//! probe-rs download --chip RP2040 --binary-format bin --base-address 0x101FF000 config.bin
//! cargo run --release -- --check config.bin
//! ```
//!
//! The layout, its CRC and its checks are `flagpost_firmware::config`'s
//! ([`GatewayConfig::write`], [`GatewayConfig::parse`]): this tool only fills the fields.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::ExitCode;

use flagpost_firmware::config::{GatewayConfig, DEFAULT_PORT, KEY_LEN, LEN};
use flagpost_firmware::core::ChannelId;

const USAGE: &str = "\
usage: flagpost-config-block [OPTIONS] [-o FILE]
       flagpost-config-block --check FILE

Writes a version 1 configuration block (100 bytes) to FILE (default
config.bin). Fields not given keep the firmware's compile-time defaults
(FLAGPOST_BROKER / FLAGPOST_CHANNEL as set when this tool was built).

  --broker A.B.C.D[:PORT]    the Flagpost broker (port default 16725)
  --channel NAME             this gateway's channel id (1..=32 bytes)
  --no-dhcp                  use the static address only
  --static A.B.C.D/PREFIX    static address (without DHCP, or when DHCP fails)
  --gateway A.B.C.D          static default router (0.0.0.0: none)
  --hold-off-ms N            coalescing hold-off for modem events
  --baud N                   modem UART baud rate
  --key-file FILE            authentication key: a key file of 64 hex digits
                             (`flagpost keygen FILE`), readable by its owner
                             only; never on the command line, where ps shows it
  -o, --out FILE             where to write the block
  --check FILE               parse FILE (a block, or a dump of the sector) and print it

Program it with a debug probe (the block's sector is erased first):
  W5500-EVB-Pico:  probe-rs download --chip RP2040 --binary-format bin --base-address 0x101FF000 FILE
  NUCLEO-F767ZI:   probe-rs download --chip STM32F767ZITx --binary-format bin --base-address 0x081C0000 FILE
";

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("flagpost-config-block: {message}");
            eprintln!("(--help for usage)");
            ExitCode::from(2)
        }
    }
}

fn run(args: Vec<String>) -> Result<(), String> {
    let mut config = GatewayConfig::default();
    let mut out = String::from("config.bin");
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(());
            }
            "--check" => return check(&value("--check")?),
            "--broker" => config.broker = parse_broker(&value("--broker")?)?,
            "--channel" => {
                let name = value("--channel")?;
                config.channel =
                    ChannelId::new(&name).map_err(|e| format!("--channel {name:?}: {e}"))?;
            }
            "--no-dhcp" => config.dhcp = false,
            "--static" => {
                let text = value("--static")?;
                let (addr, prefix) = text
                    .split_once('/')
                    .ok_or(format!("--static {text:?}: expected A.B.C.D/PREFIX"))?;
                config.static_ipv4.address = parse_ip("--static", addr)?;
                config.static_ipv4.prefix_len = prefix
                    .parse()
                    .ok()
                    .filter(|p| *p <= 32)
                    .ok_or(format!("--static {text:?}: the prefix must be 0..=32"))?;
            }
            "--gateway" => {
                config.static_ipv4.gateway = parse_ip("--gateway", &value("--gateway")?)?
            }
            "--hold-off-ms" => {
                config.hold_off_ms = parse_number("--hold-off-ms", &value("--hold-off-ms")?)?
            }
            "--baud" => config.modem_baud = parse_number("--baud", &value("--baud")?)?,
            "--key-file" => config.auth_key = Some(read_key_file(&value("--key-file")?)?),
            "--key" => {
                return Err("--key is gone: a key on the command line shows in ps; \
                     write it to a file (flagpost keygen FILE) and pass --key-file FILE"
                    .into())
            }
            "-o" | "--out" => out = value("--out")?,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let mut block = [0u8; LEN];
    let len = config
        .write(&mut block)
        .map_err(|e| format!("cannot write the block: {e}"))?;
    let block = block
        .get(..len)
        .ok_or("the block is longer than its buffer")?;
    // Read it back the way the firmware will.
    let parsed = GatewayConfig::parse(block)
        .map_err(|e| format!("the written block does not parse: {e}"))?;
    write_private(&out, block).map_err(|e| format!("{out}: {e}"))?;
    println!("wrote {len} bytes to {out}");
    print_config(&parsed);
    Ok(())
}

/// Writes `bytes` to `path`, readable by its owner only (the block may
/// hold the key).
fn write_private(path: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}

fn check(path: &str) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    if bytes.iter().all(|b| *b == 0xFF) {
        println!("{path}: blank (erased flash): the firmware uses its compile-time defaults");
        return Ok(());
    }
    let config =
        GatewayConfig::parse(&bytes).map_err(|e| format!("{path}: not a valid block: {e}"))?;
    println!("{path}: valid block");
    print_config(&config);
    Ok(())
}

fn print_config(c: &GatewayConfig) {
    let s = &c.static_ipv4;
    println!("  broker      {}", c.broker);
    println!("  channel     {}", c.channel);
    println!("  dhcp        {}", if c.dhcp { "on" } else { "off" });
    println!(
        "  static      {}/{} via {}",
        s.address, s.prefix_len, s.gateway
    );
    println!("  hold-off    {} ms", c.hold_off_ms);
    println!("  modem baud  {}", c.modem_baud);
    println!(
        "  key         {}",
        if c.auth_key.is_some() {
            "set"
        } else {
            "not set"
        }
    );
}

fn parse_broker(text: &str) -> Result<SocketAddrV4, String> {
    if let Ok(addr) = text.parse::<SocketAddrV4>() {
        if addr.port() == 0 {
            return Err(format!("--broker {text:?}: port 0"));
        }
        return Ok(addr);
    }
    Ok(SocketAddrV4::new(parse_ip("--broker", text)?, DEFAULT_PORT))
}

fn parse_ip(option: &str, text: &str) -> Result<Ipv4Addr, String> {
    text.parse()
        .map_err(|_| format!("{option} {text:?}: not an IPv4 address"))
}

fn parse_number(option: &str, text: &str) -> Result<u32, String> {
    text.parse()
        .map_err(|_| format!("{option} {text:?}: not a number"))
}

/// A key file as `flagpost keygen` writes it: `#` comment lines and
/// whitespace around 64 hex digits; refused if its group or others may
/// read it.
fn read_key_file(path: &str) -> Result<[u8; KEY_LEN], String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| format!("--key-file {path}: {e}"))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "--key-file {path} is readable by others (mode {:o}); run: chmod 600 {path}",
                mode & 0o777
            ));
        }
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("--key-file {path}: {e}"))?;
    let digits: Vec<u8> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(str::bytes)
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if digits.len() != 2 * KEY_LEN {
        return Err(format!(
            "--key-file {path}: expected {} hex digits, found {}",
            2 * KEY_LEN,
            digits.len()
        ));
    }
    let mut key = [0u8; KEY_LEN];
    for (byte, pair) in key.iter_mut().zip(digits.chunks_exact(2)) {
        let pair = std::str::from_utf8(pair).map_err(|_| format!("--key-file {path}: not hex"))?;
        *byte = u8::from_str_radix(pair, 16).map_err(|_| format!("--key-file {path}: not hex"))?;
    }
    Ok(key)
}
