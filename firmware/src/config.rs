//! The gateway's configuration block as stored in flash: its byte layout,
//! checked parsing and writing, and the compile-time defaults used when the
//! flash holds no valid block.
//!
//! # Layout (version 1)
//!
//! All integers are little-endian; IPv4 addresses are their four octets in
//! the usual order (`192.168.1.10` is `c0 a8 01 0a`).
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 4 | magic `"FPGW"` (`46 50 47 57`) |
//! | 4 | 1 | layout version, `1` |
//! | 5 | 1 | flags: bit 0 DHCP enabled, bit 1 authentication key set; bits 2–7 zero |
//! | 6 | 2 | length of the block in bytes, header included (`u16`, at least 100) |
//! | 8 | 4 | CRC-32/IEEE (`u32`) of bytes 0..8 followed by bytes 12..length |
//! | 12 | 4 | broker IPv4 address |
//! | 16 | 2 | broker port (`u16`, not 0) |
//! | 18 | 4 | static IPv4 address (used without DHCP, or when DHCP fails) |
//! | 22 | 1 | static prefix length (0..=32) |
//! | 23 | 4 | static gateway |
//! | 27 | 4 | coalescing hold-off in milliseconds (`u32`) |
//! | 31 | 4 | modem baud rate (`u32`, not 0) |
//! | 35 | 1 | channel id length (1..=32) |
//! | 36 | 32 | channel id, UTF-8, zero-padded |
//! | 68 | 32 | authentication key (zero when not set) |
//! | 100 | | end of a version 1 block ([`LEN`]) |
//!
//! The checks run in that order: magic, version, length, CRC, then the
//! fields. A version 1 block longer than 100 bytes is accepted and its
//! extra bytes (covered by the CRC) ignored, so fields can be appended
//! without a new version; a different layout gets a new version number.
//!
//! The CRC is CRC-32/IEEE (reflected, polynomial `0xEDB88320`, initial and
//! final XOR `0xFFFFFFFF`; check value `0xCBF43926`), computed bit by bit
//! ([`Crc32`]): the block is checked once at boot, so speed does not matter,
//! while a 1 KiB table would cost flash on a Cortex-M0+ and the `crc` crate
//! would be a dependency for twenty lines.
//!
//! # Defaults
//!
//! [`GatewayConfig::default`] is built from compile-time values:
//! `FLAGPOST_BROKER` (`a.b.c.d` or `a.b.c.d:port`, default
//! `192.168.1.10:16725`) and `FLAGPOST_CHANNEL` (default `gsm1`), read with
//! `option_env!` and validated by `const fn`s, so a malformed value fails
//! the build instead of silently falling back; an empty value counts as
//! unset. The rest are the `DEFAULT_*` constants. [`GatewayConfig::load`] falls back
//! to them when the flash is blank or its block invalid, and says which.
//!
//! ```
//! use flagpost_firmware::config::{GatewayConfig, Source, LEN};
//!
//! let mut config = GatewayConfig::default();
//! config.hold_off_ms = 250;
//! let mut flash = [0xFF; 256];
//! assert_eq!(GatewayConfig::load(&flash).1, Source::Blank);
//! assert_eq!(config.write(&mut flash), Ok(LEN));
//! assert_eq!(GatewayConfig::load(&flash), (config, Source::Flash));
//! ```

use core::fmt;
use core::net::{Ipv4Addr, SocketAddrV4};

use flagpost_core::channel::{ChannelId, ChannelIdError};
use flagpost_core::time::Duration;

/// The first four bytes of a block.
pub const MAGIC: [u8; 4] = *b"FPGW";
/// The layout version this module reads and writes.
pub const VERSION: u8 = 1;
/// The length of a version 1 block.
pub const LEN: usize = 100;
/// The length of the authentication key.
pub const KEY_LEN: usize = 32;

/// Flag bit: DHCP enabled.
pub const FLAG_DHCP: u8 = 0x01;
/// Flag bit: the authentication key is set.
pub const FLAG_KEY_SET: u8 = 0x02;

/// Byte offsets of the fields (see the layout table).
pub mod field {
    /// Magic, 4 bytes.
    pub const MAGIC: usize = 0;
    /// Layout version, 1 byte.
    pub const VERSION: usize = 4;
    /// Flags, 1 byte.
    pub const FLAGS: usize = 5;
    /// Block length, `u16`.
    pub const LENGTH: usize = 6;
    /// CRC-32, `u32`.
    pub const CRC: usize = 8;
    /// The first byte after the CRC.
    pub const BODY: usize = 12;
    /// Broker IPv4 address, 4 bytes.
    pub const BROKER_ADDR: usize = 12;
    /// Broker port, `u16`.
    pub const BROKER_PORT: usize = 16;
    /// Static IPv4 address, 4 bytes.
    pub const STATIC_ADDR: usize = 18;
    /// Static prefix length, 1 byte.
    pub const STATIC_PREFIX: usize = 22;
    /// Static gateway, 4 bytes.
    pub const STATIC_GATEWAY: usize = 23;
    /// Hold-off in milliseconds, `u32`.
    pub const HOLD_OFF_MS: usize = 27;
    /// Modem baud rate, `u32`.
    pub const MODEM_BAUD: usize = 31;
    /// Channel id length, 1 byte.
    pub const CHANNEL_LEN: usize = 35;
    /// Channel id bytes, 32 bytes.
    pub const CHANNEL: usize = 36;
    /// Authentication key, 32 bytes.
    pub const KEY: usize = 68;
}

/// The broker's port when `FLAGPOST_BROKER` names none.
pub const DEFAULT_PORT: u16 = 16725;
/// The broker used when the flash holds no configuration
/// (`FLAGPOST_BROKER` at build time, else `192.168.1.10:16725`).
pub const DEFAULT_BROKER: SocketAddrV4 = match option_env!("FLAGPOST_BROKER") {
    Some(text) if !text.is_empty() => match parse_broker(text.as_bytes()) {
        Some(addr) => addr,
        None => panic!("FLAGPOST_BROKER must be an IPv4 address with an optional port, e.g. 192.168.1.10:16725"),
    },
    _ => SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 10), DEFAULT_PORT),
};
/// The channel id used when the flash holds no configuration
/// (`FLAGPOST_CHANNEL` at build time, else `gsm1`).
pub const DEFAULT_CHANNEL: &str = match option_env!("FLAGPOST_CHANNEL") {
    Some(text) if !text.is_empty() => {
        if is_valid_channel(text.as_bytes()) {
            text
        } else {
            panic!("FLAGPOST_CHANNEL must be 1 to 32 bytes of UTF-8 without control characters")
        }
    }
    _ => "gsm1",
};
/// DHCP is enabled by default.
pub const DEFAULT_DHCP: bool = true;
/// The default static fallback address: 192.168.1.200/24 via 192.168.1.1.
pub const DEFAULT_STATIC: StaticIpv4 = StaticIpv4 {
    address: Ipv4Addr::new(192, 168, 1, 200),
    prefix_len: 24,
    gateway: Ipv4Addr::new(192, 168, 1, 1),
};
/// The default coalescing hold-off: URCs within 50 ms make one notification.
pub const DEFAULT_HOLD_OFF_MS: u32 = 50;
/// The default modem baud rate.
pub const DEFAULT_MODEM_BAUD: u32 = 115_200;

/// A static IPv4 configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StaticIpv4 {
    /// The gateway board's address.
    pub address: Ipv4Addr,
    /// The network prefix length (0..=32).
    pub prefix_len: u8,
    /// The default router.
    pub gateway: Ipv4Addr,
}

/// The gateway's configuration.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct GatewayConfig {
    /// The Flagpost broker (UDP notifications and TCP listeners).
    pub broker: SocketAddrV4,
    /// The channel this gateway's notifications target.
    pub channel: ChannelId,
    /// The authentication key, if one is set.
    pub auth_key: Option<[u8; KEY_LEN]>,
    /// Use DHCP; [`static_ipv4`](Self::static_ipv4) is the fallback.
    pub dhcp: bool,
    /// The static address (always without DHCP, or when DHCP fails).
    pub static_ipv4: StaticIpv4,
    /// How long modem events are coalesced before one notification goes out.
    pub hold_off_ms: u32,
    /// The modem's UART baud rate.
    pub modem_baud: u32,
}

/// Why bytes are not a valid configuration block, or a configuration cannot
/// be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum GatewayConfigError {
    /// Shorter than the header, or than the block's length field says.
    Truncated,
    /// The first four bytes are not `"FPGW"`.
    BadMagic,
    /// A layout version this firmware does not know.
    UnsupportedVersion(u8),
    /// The length field is below the version's minimum.
    BadLength(u16),
    /// The stored CRC is not the CRC of the block.
    CrcMismatch {
        /// The CRC in the block.
        stored: u32,
        /// The CRC of the block's bytes.
        computed: u32,
    },
    /// Flag bits this version does not define are set.
    BadFlags(u8),
    /// The broker port is 0.
    BadPort,
    /// The static prefix length is above 32.
    BadPrefix(u8),
    /// The modem baud rate is 0.
    BadBaud,
    /// The channel id is not valid.
    BadChannel(ChannelIdError),
    /// The output buffer is shorter than [`LEN`].
    BufferTooSmall,
}

impl fmt::Display for GatewayConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GatewayConfigError::Truncated => f.write_str("configuration block is truncated"),
            GatewayConfigError::BadMagic => f.write_str("no configuration block (bad magic)"),
            GatewayConfigError::UnsupportedVersion(v) => {
                write!(f, "configuration layout version {v} is not supported")
            }
            GatewayConfigError::BadLength(n) => {
                write!(f, "configuration block length {n} is too short")
            }
            GatewayConfigError::CrcMismatch { stored, computed } => write!(
                f,
                "configuration CRC mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
            GatewayConfigError::BadFlags(b) => write!(f, "unknown configuration flags {b:#04x}"),
            GatewayConfigError::BadPort => f.write_str("broker port is 0"),
            GatewayConfigError::BadPrefix(p) => write!(f, "static prefix length {p} is above 32"),
            GatewayConfigError::BadBaud => f.write_str("modem baud rate is 0"),
            GatewayConfigError::BadChannel(e) => write!(f, "bad channel id: {e}"),
            GatewayConfigError::BufferTooSmall => {
                f.write_str("buffer too small for the configuration")
            }
        }
    }
}

impl core::error::Error for GatewayConfigError {}

/// Where [`GatewayConfig::load`] got the configuration from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Source {
    /// A valid block in flash.
    Flash,
    /// Blank (erased, all `0xFF`) flash: the defaults.
    Blank,
    /// An invalid block: the defaults, and why the block was refused.
    Invalid(GatewayConfigError),
}

impl Default for GatewayConfig {
    /// The compile-time defaults (see the [module documentation](self)).
    fn default() -> Self {
        GatewayConfig {
            broker: DEFAULT_BROKER,
            channel: default_channel(),
            auth_key: None,
            dhcp: DEFAULT_DHCP,
            static_ipv4: DEFAULT_STATIC,
            hold_off_ms: DEFAULT_HOLD_OFF_MS,
            modem_baud: DEFAULT_MODEM_BAUD,
        }
    }
}

fn default_channel() -> ChannelId {
    match ChannelId::new(DEFAULT_CHANNEL) {
        Ok(id) => id,
        // `DEFAULT_CHANNEL` is checked by `is_valid_channel` at compile time
        // with the same rules as `ChannelId::new`.
        Err(_) => unreachable!("DEFAULT_CHANNEL is validated at compile time"),
    }
}

impl GatewayConfig {
    /// Parses a block from the start of `bytes` (which may be longer: a
    /// whole flash page).
    pub fn parse(bytes: &[u8]) -> Result<GatewayConfig, GatewayConfigError> {
        if bytes.len() < field::BODY {
            return Err(GatewayConfigError::Truncated);
        }
        if array::<4>(bytes, field::MAGIC) != MAGIC {
            return Err(GatewayConfigError::BadMagic);
        }
        let version = byte(bytes, field::VERSION);
        if version != VERSION {
            return Err(GatewayConfigError::UnsupportedVersion(version));
        }
        let length = u16::from_le_bytes(array(bytes, field::LENGTH));
        if usize::from(length) < LEN {
            return Err(GatewayConfigError::BadLength(length));
        }
        let block = bytes
            .get(..usize::from(length))
            .ok_or(GatewayConfigError::Truncated)?;
        let stored = u32::from_le_bytes(array(block, field::CRC));
        let computed = block_crc(block);
        if stored != computed {
            return Err(GatewayConfigError::CrcMismatch { stored, computed });
        }

        let flags = byte(block, field::FLAGS);
        if flags & !(FLAG_DHCP | FLAG_KEY_SET) != 0 {
            return Err(GatewayConfigError::BadFlags(flags));
        }
        let port = u16::from_le_bytes(array(block, field::BROKER_PORT));
        if port == 0 {
            return Err(GatewayConfigError::BadPort);
        }
        let prefix_len = byte(block, field::STATIC_PREFIX);
        if prefix_len > 32 {
            return Err(GatewayConfigError::BadPrefix(prefix_len));
        }
        let modem_baud = u32::from_le_bytes(array(block, field::MODEM_BAUD));
        if modem_baud == 0 {
            return Err(GatewayConfigError::BadBaud);
        }
        let channel_len = usize::from(byte(block, field::CHANNEL_LEN));
        if channel_len > ChannelId::MAX_LEN {
            return Err(GatewayConfigError::BadChannel(ChannelIdError::TooLong));
        }
        let channel_bytes = array::<{ ChannelId::MAX_LEN }>(block, field::CHANNEL);
        let channel = ChannelId::from_bytes(channel_bytes.get(..channel_len).unwrap_or(&[]))
            .map_err(GatewayConfigError::BadChannel)?;

        Ok(GatewayConfig {
            broker: SocketAddrV4::new(ipv4(block, field::BROKER_ADDR), port),
            channel,
            auth_key: (flags & FLAG_KEY_SET != 0).then(|| array(block, field::KEY)),
            dhcp: flags & FLAG_DHCP != 0,
            static_ipv4: StaticIpv4 {
                address: ipv4(block, field::STATIC_ADDR),
                prefix_len,
                gateway: ipv4(block, field::STATIC_GATEWAY),
            },
            hold_off_ms: u32::from_le_bytes(array(block, field::HOLD_OFF_MS)),
            modem_baud,
        })
    }

    /// Writes the block (version 1, [`LEN`] bytes) to the start of `out`
    /// and returns its length. Refuses what [`parse`](Self::parse) would
    /// refuse (port 0, prefix above 32, baud rate 0).
    pub fn write(&self, out: &mut [u8]) -> Result<usize, GatewayConfigError> {
        if self.broker.port() == 0 {
            return Err(GatewayConfigError::BadPort);
        }
        if self.static_ipv4.prefix_len > 32 {
            return Err(GatewayConfigError::BadPrefix(self.static_ipv4.prefix_len));
        }
        if self.modem_baud == 0 {
            return Err(GatewayConfigError::BadBaud);
        }
        let block = out
            .get_mut(..LEN)
            .ok_or(GatewayConfigError::BufferTooSmall)?;
        block.fill(0);
        let mut flags = 0;
        if self.dhcp {
            flags |= FLAG_DHCP;
        }
        if self.auth_key.is_some() {
            flags |= FLAG_KEY_SET;
        }
        let mut channel = [0u8; ChannelId::MAX_LEN];
        for (dst, src) in channel.iter_mut().zip(self.channel.as_bytes()) {
            *dst = *src;
        }
        let channel_len = u8::try_from(self.channel.len()).unwrap_or(0);
        let length = u16::try_from(LEN).unwrap_or(u16::MAX);

        put(block, field::MAGIC, &MAGIC);
        put(block, field::VERSION, &[VERSION]);
        put(block, field::FLAGS, &[flags]);
        put(block, field::LENGTH, &length.to_le_bytes());
        put(block, field::BROKER_ADDR, &self.broker.ip().octets());
        put(block, field::BROKER_PORT, &self.broker.port().to_le_bytes());
        put(
            block,
            field::STATIC_ADDR,
            &self.static_ipv4.address.octets(),
        );
        put(block, field::STATIC_PREFIX, &[self.static_ipv4.prefix_len]);
        put(
            block,
            field::STATIC_GATEWAY,
            &self.static_ipv4.gateway.octets(),
        );
        put(block, field::HOLD_OFF_MS, &self.hold_off_ms.to_le_bytes());
        put(block, field::MODEM_BAUD, &self.modem_baud.to_le_bytes());
        put(block, field::CHANNEL_LEN, &[channel_len]);
        put(block, field::CHANNEL, &channel);
        put(block, field::KEY, &self.auth_key.unwrap_or([0; KEY_LEN]));
        let crc = block_crc(block);
        put(block, field::CRC, &crc.to_le_bytes());
        Ok(LEN)
    }

    /// The configuration in `flash`: the block if valid, else the defaults,
    /// with where it came from. Blank flash (every byte `0xFF`, or none at
    /// all) is [`Source::Blank`].
    pub fn load(flash: &[u8]) -> (GatewayConfig, Source) {
        if flash.iter().all(|&b| b == 0xFF) {
            return (GatewayConfig::default(), Source::Blank);
        }
        match GatewayConfig::parse(flash) {
            Ok(config) => (config, Source::Flash),
            Err(e) => (GatewayConfig::default(), Source::Invalid(e)),
        }
    }

    /// The coalescing hold-off.
    pub fn hold_off(&self) -> Duration {
        Duration::from_millis(u64::from(self.hold_off_ms))
    }
}

impl fmt::Debug for GatewayConfig {
    /// The key itself is never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("broker", &self.broker)
            .field("channel", &self.channel)
            .field(
                "auth_key",
                &if self.auth_key.is_some() {
                    "<set>"
                } else {
                    "<none>"
                },
            )
            .field("dhcp", &self.dhcp)
            .field("static_ipv4", &self.static_ipv4)
            .field("hold_off_ms", &self.hold_off_ms)
            .field("modem_baud", &self.modem_baud)
            .finish()
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for StaticIpv4 {
    fn format(&self, f: defmt::Formatter<'_>) {
        let [a, b, c, d] = self.address.octets();
        let [e, g, h, i] = self.gateway.octets();
        defmt::write!(
            f,
            "{}.{}.{}.{}/{} via {}.{}.{}.{}",
            a,
            b,
            c,
            d,
            self.prefix_len,
            e,
            g,
            h,
            i
        )
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for GatewayConfig {
    /// The key itself is never printed.
    fn format(&self, f: defmt::Formatter<'_>) {
        let [a, b, c, d] = self.broker.ip().octets();
        defmt::write!(
            f,
            "GatewayConfig {{ broker: {}.{}.{}.{}:{}, channel: {}, key set: {}, dhcp: {}, static: {}, hold_off_ms: {}, modem_baud: {} }}",
            a,
            b,
            c,
            d,
            self.broker.port(),
            self.channel,
            self.auth_key.is_some(),
            self.dhcp,
            self.static_ipv4,
            self.hold_off_ms,
            self.modem_baud
        )
    }
}

/// CRC-32/IEEE (the CRC of Ethernet, zlib and PNG), bit by bit.
///
/// ```
/// use flagpost_firmware::config::Crc32;
///
/// assert_eq!(Crc32::checksum(b"123456789"), 0xCBF4_3926);
/// let mut crc = Crc32::new();
/// crc.update(b"1234");
/// crc.update(b"56789");
/// assert_eq!(crc.finish(), 0xCBF4_3926);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crc32 {
    state: u32,
}

impl Default for Crc32 {
    fn default() -> Self {
        Self::new()
    }
}

impl Crc32 {
    /// A CRC over no bytes yet.
    pub const fn new() -> Self {
        Crc32 { state: 0xFFFF_FFFF }
    }

    /// Adds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.state ^= u32::from(b);
            for _ in 0..8 {
                let mask = (self.state & 1).wrapping_neg();
                self.state = (self.state >> 1) ^ (0xEDB8_8320 & mask);
            }
        }
    }

    /// The CRC of everything added.
    pub const fn finish(self) -> u32 {
        !self.state
    }

    /// The CRC of `bytes`.
    pub fn checksum(bytes: &[u8]) -> u32 {
        let mut crc = Crc32::new();
        crc.update(bytes);
        crc.finish()
    }
}

/// The CRC of a block: bytes 0..8 then 12..end.
fn block_crc(block: &[u8]) -> u32 {
    let mut crc = Crc32::new();
    crc.update(block.get(..field::CRC).unwrap_or(&[]));
    crc.update(block.get(field::BODY..).unwrap_or(&[]));
    crc.finish()
}

/// `K` bytes at `at` (zeros past the end; callers check lengths first).
fn array<const K: usize>(bytes: &[u8], at: usize) -> [u8; K] {
    let mut out = [0; K];
    if let Some(src) = at.checked_add(K).and_then(|end| bytes.get(at..end)) {
        out.copy_from_slice(src);
    }
    out
}

fn byte(bytes: &[u8], at: usize) -> u8 {
    bytes.get(at).copied().unwrap_or(0)
}

fn ipv4(bytes: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::from(array::<4>(bytes, at))
}

/// Copies `src` to `out` at `at` (callers size `out` first).
fn put(out: &mut [u8], at: usize, src: &[u8]) {
    if let Some(dst) = at
        .checked_add(src.len())
        .and_then(|end| out.get_mut(at..end))
    {
        dst.copy_from_slice(src);
    }
}

/// A decimal number of at most 5 digits and at most `max`, and the rest.
const fn number(mut s: &[u8], max: u32) -> Option<(u32, &[u8])> {
    let mut value: u32 = 0;
    let mut digits = 0;
    while let [d @ b'0'..=b'9', rest @ ..] = s {
        value = value * 10 + (*d - b'0') as u32;
        digits += 1;
        if digits > 5 || value > max {
            return None;
        }
        s = rest;
    }
    if digits == 0 {
        None
    } else {
        Some((value, s))
    }
}

/// `a.b.c.d` or `a.b.c.d:port` (port 1..=65535), at compile time.
#[allow(clippy::cast_possible_truncation)] // each number is bounded by `number`'s `max`
const fn parse_broker(s: &[u8]) -> Option<SocketAddrV4> {
    let Some((a, s)) = number(s, 255) else {
        return None;
    };
    let [b'.', s @ ..] = s else { return None };
    let Some((b, s)) = number(s, 255) else {
        return None;
    };
    let [b'.', s @ ..] = s else { return None };
    let Some((c, s)) = number(s, 255) else {
        return None;
    };
    let [b'.', s @ ..] = s else { return None };
    let Some((d, s)) = number(s, 255) else {
        return None;
    };
    let port = match s {
        [] => DEFAULT_PORT,
        [b':', s @ ..] => match number(s, 65535) {
            Some((p, [])) if p > 0 => p as u16,
            _ => return None,
        },
        _ => return None,
    };
    Some(SocketAddrV4::new(
        Ipv4Addr::new(a as u8, b as u8, c as u8, d as u8),
        port,
    ))
}

/// The rules of `ChannelId::new` for a `&str`, at compile time: 1..=32
/// bytes, no control character (C0, DEL, or C1 — `C2 80`..`C2 9F` in UTF-8).
const fn is_valid_channel(s: &[u8]) -> bool {
    if s.is_empty() || s.len() > ChannelId::MAX_LEN {
        return false;
    }
    let mut s = s;
    while let [b, rest @ ..] = s {
        if *b < 0x20 || *b == 0x7F {
            return false;
        }
        if let (0xC2, [0x80..=0x9F, ..]) = (*b, rest) {
            return false;
        }
        s = rest;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_parsing() {
        let addr = |a, b, c, d, p| SocketAddrV4::new(Ipv4Addr::new(a, b, c, d), p);
        assert_eq!(
            parse_broker(b"192.168.1.10:16725"),
            Some(addr(192, 168, 1, 10, 16725))
        );
        assert_eq!(
            parse_broker(b"10.0.0.1"),
            Some(addr(10, 0, 0, 1, DEFAULT_PORT))
        );
        assert_eq!(
            parse_broker(b"255.255.255.255:65535"),
            Some(addr(255, 255, 255, 255, 65535))
        );
        for bad in [
            &b""[..],
            b"1.2.3",
            b"1.2.3.4.5",
            b"256.1.1.1",
            b"1.2.3.4:",
            b"1.2.3.4:0",
            b"1.2.3.4:65536",
            b"1.2.3.4:1x",
            b"a.b.c.d",
            b"1..2.3",
            b" 1.2.3.4",
            b"1.2.3.4:000001",
        ] {
            assert_eq!(parse_broker(bad), None, "{:?}", core::str::from_utf8(bad));
        }
    }

    #[test]
    fn channel_rules_match_the_core() {
        for name in [
            "gsm1",
            "é",
            "x\u{7f}",
            "a\u{85}b",
            "",
            "a\tb",
            &"x".repeat(32),
            &"x".repeat(33),
        ] {
            assert_eq!(
                is_valid_channel(name.as_bytes()),
                ChannelId::new(name).is_ok(),
                "{name:?}"
            );
        }
    }

    #[test]
    fn defaults_are_valid() {
        let c = GatewayConfig::default();
        assert_eq!(c.channel.as_str(), DEFAULT_CHANNEL);
        assert_eq!(c.broker, DEFAULT_BROKER);
        let mut buf = [0u8; LEN];
        assert_eq!(c.write(&mut buf), Ok(LEN));
        assert_eq!(GatewayConfig::parse(&buf), Ok(c));
    }
}
