//! The flash configuration block: the byte layout of the module docs, round
//! trips, and every typed error.

use core::net::{Ipv4Addr, SocketAddrV4};

use flagpost_core::channel::{ChannelId, ChannelIdError};
use flagpost_core::time::Duration;
use flagpost_firmware::config::{
    field, Crc32, GatewayConfig, GatewayConfigError, Source, StaticIpv4, DEFAULT_CHANNEL, LEN,
    MAGIC,
};
use proptest::prelude::*;

fn sample() -> GatewayConfig {
    GatewayConfig {
        broker: SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 10), 16725),
        channel: ChannelId::new("gsm1").unwrap(),
        auth_key: Some([0xAB; 32]),
        dhcp: true,
        static_ipv4: StaticIpv4 {
            address: Ipv4Addr::new(10, 0, 0, 7),
            prefix_len: 24,
            gateway: Ipv4Addr::new(10, 0, 0, 1),
        },
        hold_off_ms: 250,
        modem_baud: 115_200,
    }
}

/// The sample config, written out by hand from the layout table.
#[rustfmt::skip]
fn fixture() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(b"FPGW");                  //  0 magic
    b.push(1);                          //  4 version
    b.push(0b11);                       //  5 flags: DHCP, key set
    b.extend([100, 0]);                 //  6 length 100, LE
    b.extend([0, 0, 0, 0]);             //  8 CRC, filled in below
    b.extend([192, 168, 1, 10]);        // 12 broker address
    b.extend(16725u16.to_le_bytes());   // 16 broker port (0x4155)
    b.extend([10, 0, 0, 7]);            // 18 static address
    b.push(24);                         // 22 prefix length
    b.extend([10, 0, 0, 1]);            // 23 gateway
    b.extend([250, 0, 0, 0]);           // 27 hold-off 250 ms
    b.extend([0x00, 0xC2, 0x01, 0x00]); // 31 baud 115200
    b.push(4);                          // 35 channel length
    b.extend(b"gsm1");                  // 36 channel
    b.extend([0; 28]);                  //    zero padding to 32
    b.extend([0xAB; 32]);               // 68 key
    assert_eq!(b.len(), 100);
    seal(&mut b);
    b
}

/// Recomputes the CRC of a block after a test changed it.
fn seal(block: &mut [u8]) {
    let len = usize::from(u16::from_le_bytes([block[6], block[7]])).min(block.len());
    let mut crc = Crc32::new();
    crc.update(&block[..8]);
    crc.update(&block[12..len]);
    block[8..12].copy_from_slice(&crc.finish().to_le_bytes());
}

/// The fixture with `f` applied and the CRC fixed up.
fn altered(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut b = fixture();
    f(&mut b);
    seal(&mut b);
    b
}

#[test]
fn writes_exactly_the_documented_layout() {
    let mut out = [0x55u8; 128];
    assert_eq!(sample().write(&mut out), Ok(LEN));
    assert_eq!(&out[..LEN], &fixture()[..]);
    assert!(
        out[LEN..].iter().all(|b| *b == 0x55),
        "wrote past the block"
    );
    assert_eq!(GatewayConfig::parse(&fixture()), Ok(sample()));
    // the field offsets are the table's
    assert_eq!(
        [
            field::MAGIC,
            field::VERSION,
            field::FLAGS,
            field::LENGTH,
            field::CRC
        ],
        [0, 4, 5, 6, 8]
    );
    assert_eq!(
        [
            field::BROKER_ADDR,
            field::BROKER_PORT,
            field::STATIC_ADDR,
            field::STATIC_PREFIX,
            field::STATIC_GATEWAY,
            field::HOLD_OFF_MS,
            field::MODEM_BAUD,
            field::CHANNEL_LEN,
            field::CHANNEL,
            field::KEY
        ],
        [12, 16, 18, 22, 23, 27, 31, 35, 36, 68]
    );
    assert_eq!(MAGIC, *b"FPGW");
}

#[test]
fn the_crc_is_crc32_ieee() {
    assert_eq!(Crc32::checksum(b""), 0);
    assert_eq!(Crc32::checksum(b"123456789"), 0xCBF4_3926);
    assert_eq!(
        Crc32::checksum(b"The quick brown fox jumps over the lazy dog"),
        0x414F_A339
    );
}

#[test]
fn round_trip_without_key_and_dhcp() {
    let config = GatewayConfig {
        auth_key: None,
        dhcp: false,
        channel: ChannelId::new(&"é".repeat(16)).unwrap(),
        ..sample()
    };
    let mut out = [0u8; LEN];
    config.write(&mut out).unwrap();
    assert_eq!(out[field::FLAGS], 0);
    assert!(out[field::KEY..].iter().all(|b| *b == 0));
    assert_eq!(GatewayConfig::parse(&out), Ok(config));
    assert_eq!(config.hold_off(), Duration::from_millis(250));
}

#[test]
fn a_flipped_bit_is_a_crc_mismatch() {
    // (a flipped length bit is caught earlier, as a bad length)
    for at in [field::LENGTH, field::LENGTH + 1] {
        let mut b = fixture();
        b[at] ^= 0x10;
        assert!(GatewayConfig::parse(&b).is_err());
    }
    for at in std::iter::once(field::FLAGS).chain(field::BODY..LEN) {
        let mut b = fixture();
        b[at] ^= 0x10;
        assert!(
            matches!(
                GatewayConfig::parse(&b),
                Err(GatewayConfigError::CrcMismatch { .. })
            ),
            "byte {at}: {:?}",
            GatewayConfig::parse(&b)
        );
    }
    let mut b = fixture();
    b[field::CRC] ^= 1;
    let stored = u32::from_le_bytes(b[8..12].try_into().unwrap());
    assert_eq!(
        GatewayConfig::parse(&b),
        Err(GatewayConfigError::CrcMismatch {
            stored,
            computed: stored ^ 1
        })
    );
}

#[test]
fn blank_flash_gives_the_defaults() {
    assert_eq!(
        GatewayConfig::load(&[0xFF; 4096]),
        (GatewayConfig::default(), Source::Blank)
    );
    assert_eq!(
        GatewayConfig::load(&[]),
        (GatewayConfig::default(), Source::Blank)
    );
    let d = GatewayConfig::default();
    assert_eq!(d.channel.as_str(), DEFAULT_CHANNEL);
    assert_eq!(d.auth_key, None);
}

#[test]
fn an_invalid_block_gives_the_defaults_and_says_why() {
    let mut b = fixture();
    b[20] ^= 1;
    assert!(matches!(
        GatewayConfig::load(&b),
        (c, Source::Invalid(GatewayConfigError::CrcMismatch { .. })) if c == GatewayConfig::default()
    ));
    assert_eq!(
        GatewayConfig::load(&[0u8; 64]),
        (
            GatewayConfig::default(),
            Source::Invalid(GatewayConfigError::BadMagic)
        )
    );
    let mut flash = vec![0xFF; 4096];
    flash[..LEN].copy_from_slice(&fixture());
    assert_eq!(GatewayConfig::load(&flash), (sample(), Source::Flash));
}

#[test]
fn every_error_is_reachable() {
    use GatewayConfigError::*;
    let cases: Vec<(Vec<u8>, GatewayConfigError)> = vec![
        (fixture()[..11].to_vec(), Truncated),
        (fixture()[..99].to_vec(), Truncated),
        (altered(|b| b[0] = b'X'), BadMagic),
        (altered(|b| b[field::VERSION] = 2), UnsupportedVersion(2)),
        (altered(|b| b[field::LENGTH] = 99), BadLength(99)),
        (
            {
                let mut b = fixture();
                b[30] ^= 0xFF;
                b
            },
            CrcMismatch {
                stored: 0,
                computed: 0,
            },
        ),
        (altered(|b| b[field::FLAGS] = 0x83), BadFlags(0x83)),
        (altered(|b| b[16..18].fill(0)), BadPort),
        (altered(|b| b[field::STATIC_PREFIX] = 33), BadPrefix(33)),
        (altered(|b| b[31..35].fill(0)), BadBaud),
        (
            altered(|b| b[field::CHANNEL_LEN] = 0),
            BadChannel(ChannelIdError::Empty),
        ),
        (
            altered(|b| b[field::CHANNEL_LEN] = 33),
            BadChannel(ChannelIdError::TooLong),
        ),
        (
            altered(|b| b[field::CHANNEL] = 0xFF),
            BadChannel(ChannelIdError::NotUtf8),
        ),
        (
            altered(|b| b[field::CHANNEL] = b'\n'),
            BadChannel(ChannelIdError::ControlCharacter),
        ),
    ];
    for (bytes, expected) in cases {
        let got = GatewayConfig::parse(&bytes);
        match (got, expected) {
            (Err(CrcMismatch { .. }), CrcMismatch { .. }) => {}
            (got, expected) => assert_eq!(got, Err(expected)),
        }
        assert!(!expected.to_string().is_empty());
    }
    let mut small = [0u8; LEN - 1];
    assert_eq!(sample().write(&mut small), Err(BufferTooSmall));
    let bad = |f: fn(&mut GatewayConfig)| {
        let mut c = sample();
        f(&mut c);
        c.write(&mut [0u8; LEN])
    };
    assert_eq!(bad(|c| c.broker.set_port(0)), Err(BadPort));
    assert_eq!(bad(|c| c.static_ipv4.prefix_len = 40), Err(BadPrefix(40)));
    assert_eq!(bad(|c| c.modem_baud = 0), Err(BadBaud));
}

#[test]
fn a_longer_version_1_block_is_accepted() {
    let mut b = fixture();
    b.extend([1, 2, 3, 4]);
    b[field::LENGTH] = 104;
    seal(&mut b);
    assert_eq!(GatewayConfig::parse(&b), Ok(sample()));
    // but not one longer than the bytes given
    b[field::LENGTH] = 105;
    seal(&mut b);
    assert_eq!(GatewayConfig::parse(&b), Err(GatewayConfigError::Truncated));
}

#[test]
fn debug_never_prints_the_key() {
    let text = format!("{:?}", sample());
    assert!(text.contains("<set>"), "{text}");
    assert!(!text.contains("171"), "{text}"); // 0xAB
}

proptest! {
    #[test]
    fn parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = GatewayConfig::parse(&bytes);
        let _ = GatewayConfig::load(&bytes);
    }

    #[test]
    fn parse_never_panics_on_sealed_garbage(mut body in prop::collection::vec(any::<u8>(), LEN..200)) {
        body[..4].copy_from_slice(b"FPGW");
        body[4] = 1;
        let len = body.len() as u16;
        body[6..8].copy_from_slice(&len.to_le_bytes());
        seal(&mut body);
        if let Ok(config) = GatewayConfig::parse(&body) {
            let mut out = [0u8; LEN];
            prop_assert_eq!(config.write(&mut out), Ok(LEN));
            prop_assert_eq!(GatewayConfig::parse(&out), Ok(config));
        }
    }

    #[test]
    fn round_trip(
        ip in any::<[u8; 4]>(),
        port in 1u16..,
        channel in "[a-zA-Z0-9_.-]{1,32}",
        key in prop::option::of(any::<[u8; 32]>()),
        dhcp in any::<bool>(),
        static_ip in any::<[u8; 4]>(),
        prefix_len in 0u8..=32,
        gateway in any::<[u8; 4]>(),
        hold_off_ms in any::<u32>(),
        modem_baud in 1u32..,
    ) {
        let config = GatewayConfig {
            broker: SocketAddrV4::new(ip.into(), port),
            channel: ChannelId::new(&channel).unwrap(),
            auth_key: key,
            dhcp,
            static_ipv4: StaticIpv4 { address: static_ip.into(), prefix_len, gateway: gateway.into() },
            hold_off_ms,
            modem_baud,
        };
        let mut out = [0xFFu8; 512];
        prop_assert_eq!(config.write(&mut out), Ok(LEN));
        prop_assert_eq!(GatewayConfig::load(&out), (config, Source::Flash));
    }
}

#[test]
fn mac_addresses_are_locally_administered_unicast_and_stable() {
    use flagpost_firmware::app::mac_from_id;
    let a = mac_from_id(&[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(a, mac_from_id(&[1, 2, 3, 4, 5, 6, 7, 8]));
    assert_eq!(a[0], 0x02);
    assert_ne!(a, mac_from_id(&[1, 2, 3, 4, 5, 6, 7, 9]));
}
