//! Federation between two brokers on the simulated clock: what one
//! publishes reaches the other's listeners once, never comes back, goes
//! through the same sequence window as datagrams (duplicates dropped, gaps a
//! possible loss), is verified with a key, and re-checks raise everyone.

use super::tests::{datagram, flags_of, listen, TestBroker};
use super::*;
use crate::auth::{Key, Keyring};
use crate::loss::Verdict;
use crate::notifier::Signer;
use crate::notify::Kind;
use crate::wire::{self, FederatedRepr, MAX_FEDERATED_LEN, TAG_LEN};

fn broker(id: u64) -> TestBroker {
    BrokerState::new(
        Config {
            broker_id: id,
            ..Config::default()
        },
        [ListenerSlot::EMPTY; 4],
        [SenderSlot::EMPTY; 4],
    )
}

fn ch(name: &str) -> ChannelId {
    ChannelId::new(name).unwrap()
}

fn t(ms: u64) -> Instant {
    Instant::from_millis(1_000 + ms)
}

/// What `a` publishes for a datagram it accepted and delivered.
fn publish(a: &mut TestBroker, now: Instant, d: &[u8]) -> Vec<u8> {
    let r = a.handle_datagram(now, d).unwrap();
    assert!(r.federate(), "a delivered datagram is federated");
    let mut buf = [0u8; MAX_FEDERATED_LEN];
    let n = a.federate(d, &mut buf).unwrap();
    buf[..n].to_vec()
}

#[test]
fn a_notification_accepted_by_one_broker_wakes_the_others_listeners_once() {
    let (mut a, mut b) = (broker(0xa), broker(0xb));
    let everything = listen(&mut b, t(0), None, FlagSet::ALL);
    let other_channel = listen(&mut b, t(0), Some(ch("gsm2")), FlagSet::ALL);
    let (d, n) = datagram(Notification::status(Some(ch("gsm1"))), 7, 1, true);
    let msg = publish(&mut a, t(1), &d[..n]);
    assert_eq!(FederatedRepr::parse(&msg).unwrap().origin, 0xa);

    assert_eq!(b.handle_federated(t(2), &msg), Ok(1));
    assert_eq!(flags_of(&mut b, everything), Kind::Status.flags());
    assert_eq!(flags_of(&mut b, other_channel), FlagSet::EMPTY);
    // the same message again (a redelivery) is a duplicate; the sender
    // firing the same datagram at b directly too
    assert_eq!(b.handle_federated(t(3), &msg), Ok(0));
    let direct = b.handle_datagram(t(3), &d[..n]).unwrap();
    assert_eq!((direct.verdict, direct.reached), (Verdict::Duplicate, 0));
    assert!(!direct.federate(), "a duplicate is not published again");
    assert_eq!(flags_of(&mut b, everything), FlagSet::EMPTY);
    let s = b.stats();
    assert_eq!(
        (s.federated, s.duplicates, s.delivered, s.acks),
        (2, 2, 1, 1)
    );
    // no ack is made for a federated notification (the ack above is the
    // direct datagram's)
}

#[test]
fn a_broker_drops_its_own_messages() {
    let mut a = broker(0xa);
    let l = listen(&mut a, t(0), None, FlagSet::ALL);
    let (d, n) = datagram(Notification::non_status(None), 7, 1, false);
    let msg = publish(&mut a, t(1), &d[..n]);
    assert_eq!(flags_of(&mut a, l), FlagSet::NON_STATUS);
    assert_eq!(a.handle_federated(t(2), &msg), Err(FederationError::Loop));
    assert_eq!(flags_of(&mut a, l), FlagSet::EMPTY);
    assert_eq!(a.stats().federated_rejects, [0, 0, 1]);
}

#[test]
fn a_probe_crosses_so_a_lost_last_message_is_recovered() {
    let (mut a, mut b) = (broker(0xa), broker(0xb));
    let l = listen(&mut b, t(0), None, FlagSet::ALL);
    let (d, n) = datagram(Notification::non_status(None), 7, 1, false);
    let _lost_on_the_way_to_b = publish(&mut a, t(1), &d[..n]);
    // the sender's tail-loss probe: a duplicate at a, published all the same
    let mut probe = d;
    probe[4] |= 0b100;
    let msg = publish(&mut a, t(2), &probe[..n]);
    assert_eq!(b.handle_federated(t(2), &msg), Ok(1));
    assert_eq!(flags_of(&mut b, l), FlagSet::NON_STATUS);
    assert_eq!(b.stats().probes_delivered, 1);
    // where the original did arrive, the probe changes nothing
    assert_eq!(b.handle_federated(t(3), &msg), Ok(0));
    // a plain duplicate is not published
    let again = a.handle_datagram(t(3), &d[..n]).unwrap();
    assert!(!again.federate());
}

#[test]
fn a_gap_upstream_is_a_possible_loss_downstream() {
    let (mut a, mut b) = (broker(0xa), broker(0xb));
    let l = listen(&mut b, t(0), Some(ch("gsm1")), FlagSet::CHANNEL_SHUTDOWN);
    for seq in [1, 3] {
        let (d, n) = datagram(Notification::status(None), 7, seq, false);
        let msg = publish(&mut a, t(u64::from(seq)), &d[..n]);
        b.handle_federated(t(u64::from(seq)), &msg).unwrap();
    }
    let s = b.stats();
    assert_eq!((s.gaps, s.missing, s.possible_losses), (1, 1, 1));
    // the loss raise never raises channel shutdown
    assert_eq!(flags_of(&mut b, l), FlagSet::EMPTY);
}

#[test]
fn in_process_notifications_federate_with_the_brokers_own_sequence() {
    let (mut a, mut b) = (broker(0xa), broker(0xb));
    let l = listen(&mut b, t(0), None, FlagSet::ALL);
    let mut buf = [0u8; MAX_FEDERATED_LEN];
    let mut msgs = Vec::new();
    for _ in 0..3 {
        let n = a
            .federate_local(&Notification::channel_update(ch("gsm1")), 5, &mut buf)
            .unwrap();
        msgs.push(buf[..n].to_vec());
    }
    for (i, m) in msgs.iter().enumerate() {
        match FederatedRepr::parse(m).unwrap().message {
            wire::Federated::Notify { notify, .. } => {
                assert_eq!(notify.sender.0, 0xa);
                assert_eq!(notify.seq.0, i as u32 + 1);
                assert_eq!((notify.batch, notify.tag), (5, None));
            }
            other => panic!("{other:?}"),
        }
    }
    for m in &msgs {
        assert_eq!(b.handle_federated(t(1), m), Ok(1));
    }
    assert_eq!(flags_of(&mut b, l), FlagSet::CHANNEL_UPDATE);
    assert_eq!(b.handle_federated(t(2), &msgs[1]), Ok(0)); // replayed
    let s = b.stats();
    assert_eq!(
        (s.delivered, s.changes, s.duplicates, s.gaps),
        (3, 15, 1, 0)
    );
    assert_eq!(s.possible_losses, 0, "a broker's first number is its first");
}

#[test]
fn with_a_key_only_messages_made_with_it_are_accepted() {
    let key = || Key::new(&[1; 32]).unwrap();
    let (mut a, mut b) = (broker(0xa), broker(0xb));
    // (listening before the key is set: the handshake is not under test)
    let l = listen(&mut b, t(0), None, FlagSet::ALL);
    a.set_keys(Some(Keyring::new(key())));
    b.set_keys(Some(Keyring::new(key())));
    let mut stranger = broker(0xc);
    stranger.set_keys(Some(Keyring::new(Key::new(&[2; 32]).unwrap())));
    let mut buf = [0u8; MAX_FEDERATED_LEN];

    // a's in-process notification is tagged with a's key: accepted
    let n = a
        .federate_local(&Notification::status(None), 1, &mut buf)
        .unwrap();
    assert_eq!(b.handle_federated(t(1), &buf[..n]), Ok(1));
    assert_eq!(flags_of(&mut b, l), Kind::Status.flags());
    // a datagram signed by a sender with the key, published by a
    let (mut d, len) = datagram(Notification::non_status(None), 9, 1, false);
    d[4] |= 0b10;
    let tag = key().sign(&d[..len]);
    d[len..len + TAG_LEN].copy_from_slice(&tag);
    let msg = publish(&mut a, t(2), &d[..len + TAG_LEN]);
    assert_eq!(b.handle_federated(t(2), &msg), Ok(1));
    assert_eq!(flags_of(&mut b, l), FlagSet::NON_STATUS);

    // another key's message, an unsigned one, a forged recheck: nothing
    let n = stranger
        .federate_local(&Notification::status(None), 1, &mut buf)
        .unwrap();
    assert_eq!(
        b.handle_federated(t(3), &buf[..n]),
        Err(FederationError::Unauthorized)
    );
    let (d, len) = datagram(Notification::status(None), 10, 1, false);
    let mut unsigned = [0u8; MAX_FEDERATED_LEN];
    let n = wire::federation::emit_notify(0xa, &d[..len], &mut unsigned).unwrap();
    assert_eq!(
        b.handle_federated(t(3), &unsigned[..n]),
        Err(FederationError::Unauthorized)
    );
    let n = stranger.recheck_message(&mut buf).unwrap();
    assert_eq!(
        b.handle_federated(t(3), &buf[..n]),
        Err(FederationError::Unauthorized)
    );
    let n = broker(0xd).recheck_message(&mut buf).unwrap();
    assert_eq!(
        b.handle_federated(t(3), &buf[..n]),
        Err(FederationError::Unauthorized)
    );
    assert_eq!(flags_of(&mut b, l), FlagSet::EMPTY);
    let s = b.stats();
    assert_eq!((s.federated, s.federated_rejects), (2, [0, 4, 0]));
    assert_eq!((s.federation_rechecks, s.possible_losses), (0, 0));

    // a's own recheck is accepted and raises everyone
    let n = a.recheck_message(&mut buf).unwrap();
    assert_eq!(b.handle_federated(t(4), &buf[..n]), Ok(1));
    assert_eq!(flags_of(&mut b, l), LOSS_FLAGS);
}

#[test]
fn rechecks_raise_everyone_folded_like_any_possible_loss() {
    let (a, mut b) = (broker(0xa), broker(0xb));
    let l = listen(&mut b, t(0), None, FlagSet::ALL);
    let mut buf = [0u8; MAX_FEDERATED_LEN];
    let n = a.recheck_message(&mut buf).unwrap();
    assert_eq!(b.handle_federated(t(1), &buf[..n]), Ok(1));
    assert_eq!(flags_of(&mut b, l), LOSS_FLAGS);
    // within the loss interval: folded into one raise at its end
    assert_eq!(b.federation_lost(t(2)), 0);
    assert_eq!(b.handle_federated(t(3), &buf[..n]), Ok(0));
    assert_eq!(flags_of(&mut b, l), FlagSet::EMPTY);
    b.handle_timeout(t(1) + b.config().loss_interval);
    assert_eq!(flags_of(&mut b, l), LOSS_FLAGS);
    let s = b.stats();
    assert_eq!((s.federation_rechecks, s.possible_losses), (3, 2));
    assert_eq!(s.possible_losses_coalesced, 2);
}

#[test]
fn malformed_messages_are_counted_and_change_nothing() {
    let mut b = broker(0xb);
    let l = listen(&mut b, t(0), None, FlagSet::ALL);
    let (d, n) = datagram(Notification::status(None), 7, 1, false);
    let mut buf = [0u8; MAX_FEDERATED_LEN];
    let len = wire::federation::emit_notify(0xa, &d[..n], &mut buf).unwrap();
    for bad in [&buf[..3], &buf[..len - 1], &d[..n], b"FP\x01\x10"] {
        assert!(matches!(
            b.handle_federated(t(1), bad),
            Err(FederationError::Malformed(_))
        ));
    }
    assert_eq!(flags_of(&mut b, l), FlagSet::EMPTY);
    let s = b.stats();
    assert_eq!((s.federated_rejects[0], s.federated, s.senders), (4, 0, 0));
}
