//! Federation messages on arbitrary bytes: `FederatedRepr::parse` never
//! panics, whatever parses re-emits byte for byte, and a broker fed the
//! same bytes (keyless, and with a key) either accepts them or counts one
//! reject — never both, never a panic.
#![no_main]

use flagpost_core::auth::{Key, Keyring};
use flagpost_core::broker::{BrokerState, Config, ListenerSlot};
use flagpost_core::loss::SenderSlot;
use flagpost_core::time::Instant;
use flagpost_core::wire::{Error, Federated, FederatedRepr, MAX_FEDERATED_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match FederatedRepr::parse(data) {
        Ok(repr) => {
            assert!(data.len() <= MAX_FEDERATED_LEN);
            let mut out = [0u8; MAX_FEDERATED_LEN];
            let n = repr.emit(&mut out).expect("fits MAX_FEDERATED_LEN");
            assert_eq!(&out[..n], data, "re-emit differs: {repr:?}");
            assert_eq!(FederatedRepr::parse(&out[..n]), Ok(repr));
            if let Federated::Notify { datagram, .. } = repr.message {
                assert_eq!(datagram.len() + 16, data.len());
            }
        }
        Err(e) => {
            assert!(e.index() < Error::COUNT);
            assert!(!e.to_string().is_empty());
        }
    }
    for keyed in [false, true] {
        let mut b = BrokerState::new(
            Config {
                broker_id: 0xb0,
                ..Config::default()
            },
            [ListenerSlot::EMPTY; 2],
            [SenderSlot::EMPTY; 2],
        );
        if keyed {
            b.set_keys(Some(Keyring::new(Key::new(&[7; 32]).expect("key"))));
        }
        let result = b.handle_federated(Instant::from_secs(1), data);
        let s = b.stats();
        let rejects: u64 = s.federated_rejects.iter().sum();
        assert_eq!(
            (s.federated, rejects),
            if result.is_ok() { (1, 0) } else { (0, 1) }
        );
    }
});
