//! The datagram path with a key set: what an unsigned, mis-signed, forged
//! or replayed datagram can do (nothing), and what a signed one gets.

use super::tests::{broker, datagram, flags_of, listen};
use super::*;
use crate::auth::{Key, KeyUsed};
use crate::loss::Verdict;
use crate::notifier::Signer;
use crate::wire::{AckRepr, AckResult, SenderId, Seq, MAX_DATAGRAM_LEN, TAG_LEN};

fn key(b: u8) -> Key {
    Key::new(&[b; 32]).unwrap()
}

/// A notify tagged by `signer` (or carrying `tag` when given).
fn signed(
    n: Notification,
    sender: u64,
    seq: u32,
    ack: bool,
    signer: &dyn Signer,
) -> ([u8; MAX_DATAGRAM_LEN], usize) {
    let (mut buf, len) = datagram(n, sender, seq, ack);
    buf[4] |= 0b10; // tagged
    let tag = signer.sign(&buf[..len]);
    buf[len..len + TAG_LEN].copy_from_slice(&tag);
    (buf, len + TAG_LEN)
}

#[test]
fn with_a_key_unsigned_and_mis_signed_datagrams_reach_nothing() {
    let mut b = broker();
    let t = Instant::ZERO;
    let id = listen(&mut b, t, None, FlagSet::ALL);
    b.set_keys(Some(Keyring::new(key(1))));
    let status = Notification::status(None);
    // untagged, a far-ahead sequence that would be a possible loss
    let (d, n) = datagram(status, 7, 1000, true);
    assert_eq!(
        b.handle_datagram(t, &d[..n]),
        Err(DatagramError::Unauthorized)
    );
    // tagged with another key
    let (d, n) = signed(status, 7, 1000, true, &key(2));
    assert_eq!(
        b.handle_datagram(t, &d[..n]),
        Err(DatagramError::Unauthorized)
    );
    // a right tag on changed bytes
    let (mut d, n) = signed(status, 7, 1000, true, &key(1));
    d[19] ^= 1;
    assert_eq!(
        b.handle_datagram(t, &d[..n]),
        Err(DatagramError::Unauthorized)
    );
    let s = b.stats();
    assert_eq!(s.datagrams_unauthorized, 3);
    assert_eq!((s.datagrams, s.possible_losses, s.acks), (0, 0, 0));
    assert_eq!(s.senders, 0, "the sender table never saw them");
    assert!(drain_ready(&mut b).is_empty(), "nobody woken");
    assert_eq!(flags_of(&mut b, id), FlagSet::EMPTY);
    // the real sender's sequence 1 is still in order
    let (d, n) = signed(status, 7, 1, false, &key(1));
    let r = b.handle_datagram(t, &d[..n]).unwrap();
    assert_eq!(
        (r.verdict, r.key),
        (Verdict::InOrder, Some(KeyUsed::Current))
    );
}

fn drain_ready(b: &mut TestBroker) -> std::vec::Vec<ListenerId> {
    core::iter::from_fn(|| b.poll_ready()).collect()
}

type TestBroker = BrokerState<[ListenerSlot; 4], [SenderSlot; 4]>;

#[test]
fn acks_are_tagged_with_the_key_that_verified_the_notify() {
    let mut b = broker();
    let t = Instant::ZERO;
    let (old, new) = (key(1), key(2));
    b.set_keys(Some(Keyring::new(new.clone()).with_previous(old.clone())));
    for (sender, k, used) in [(1, &new, KeyUsed::Current), (2, &old, KeyUsed::Previous)] {
        let (d, n) = signed(Notification::non_status(None), sender, 1, true, k);
        let r = b.handle_datagram(t, &d[..n]).unwrap();
        assert_eq!(r.key, Some(used));
        let ack = r.ack.unwrap();
        assert_eq!((ack.seq, ack.result), (Seq(1), AckResult::Delivered));
        let mut buf = [0u8; 36];
        assert_eq!(ack.emit(&mut buf), Ok(36));
        assert!(
            k.verify(&[&buf[..20]], &buf[20..]),
            "ack signed with the sender's key"
        );
        let parsed = AckRepr::parse_bytes(&buf).unwrap();
        assert_eq!(parsed.sender, SenderId(sender));
    }
    // once the rotation ends, the old key is refused
    b.set_keys(Some(Keyring::new(new)));
    let (d, n) = signed(Notification::non_status(None), 2, 2, true, &old);
    assert_eq!(
        b.handle_datagram(t, &d[..n]),
        Err(DatagramError::Unauthorized)
    );
}

#[test]
fn a_keyless_broker_carries_tags_through_and_zeroes_its_ack_tags() {
    let mut b = broker();
    let (d, n) = signed(Notification::status(None), 3, 1, true, &key(1));
    let r = b.handle_datagram(Instant::ZERO, &d[..n]).unwrap();
    assert_eq!(r.key, None);
    assert_eq!(r.ack.unwrap().tag, Some([0; TAG_LEN]));
}

#[test]
fn with_a_key_a_far_jump_is_not_rewound() {
    // a signed far jump is the sender's own (a long loss): what it skipped
    // stays stale, so a replay of a datagram the broker lost is refused
    let mut b = broker();
    let t = Instant::ZERO;
    b.set_keys(Some(Keyring::new(key(1))));
    let status = Notification::status(None);
    for seq in [1, 2, 1000] {
        let (d, n) = signed(status, 7, seq, false, &key(1));
        assert!(b.handle_datagram(t, &d[..n]).unwrap().verdict.deliver());
    }
    let (d, n) = signed(status, 7, 3, true, &key(1));
    let r = b.handle_datagram(t, &d[..n]).unwrap();
    assert_eq!(r.verdict, Verdict::Stale);
    assert_eq!(r.ack.map(|a| a.result), Some(AckResult::Stale));
    assert_eq!(b.stats().senders_rewound, 0);
    // without the key again, the anchor the next far jump leaves is followed
    b.set_keys(None);
    let (d, n) = datagram(status, 7, 5000, false);
    b.handle_datagram(t, &d[..n]).unwrap();
    let (d, n) = datagram(status, 7, 1001, false);
    let r = b.handle_datagram(t, &d[..n]).unwrap();
    assert_eq!(r.verdict, Verdict::Rewound);
    assert_eq!(b.stats().senders_rewound, 1);
}
