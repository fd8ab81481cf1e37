//! NotifierSession tests on a simulated clock: coalescing, overflow, the
//! tail-loss probe, confirmed sends, signing, and the pacing of bursts.
use super::*;
use crate::wire::MAX_DATAGRAM_LEN;

fn ch(s: &str) -> ChannelId {
    ChannelId::new(s).unwrap()
}

fn drain(p: &mut NotifierSession<4>, now: Instant) -> std::vec::Vec<NotifyRepr> {
    let mut out = std::vec::Vec::new();
    let mut buf = [0u8; MAX_DATAGRAM_LEN];
    while let Some(n) = p.poll_transmit(now, &mut buf) {
        out.push(NotifyRepr::parse_bytes(&buf[..n]).unwrap());
    }
    out
}

#[test]
fn a_burst_becomes_one_datagram_per_kind_and_channel() {
    let mut p = NotifierSession::<4>::new(NotifierConfig::default(), SenderId(1));
    let t0 = Instant::ZERO;
    for _ in 0..20 {
        p.notify(t0, Notification::status(Some(ch("gsm1"))), 1);
    }
    p.notify(t0, Notification::non_status(None), 3);
    assert!(drain(&mut p, t0).is_empty());
    let t1 = Instant::from_millis(5);
    assert_eq!(p.poll_timeout(), Some(t1));
    let sent = drain(&mut p, t1);
    assert_eq!(sent.len(), 2);
    assert_eq!((sent[0].seq, sent[0].batch), (Seq(1), 20));
    assert_eq!((sent[1].seq, sent[1].batch), (Seq(2), 3));
    // then the probe repeats the last one, same sequence number, marked
    assert!(!sent[1].probe);
    let t2 = p.poll_timeout().unwrap();
    assert_eq!(t2, Instant::from_millis(10));
    assert_eq!(
        drain(&mut p, t2),
        [NotifyRepr {
            probe: true,
            ..sent[1]
        }]
    );
    assert!(p.is_idle());
    assert_eq!(p.stats().probes, 1);
}

#[test]
fn overflow_folds_into_an_untargeted_status() {
    let mut p = NotifierSession::<2>::new(NotifierConfig::default(), SenderId(1));
    let t = Instant::ZERO;
    p.notify(t, Notification::channel_update(ch("a")), 1);
    p.notify(t, Notification::channel_update(ch("b")), 1);
    p.notify(t, Notification::channel_update(ch("c")), 1);
    assert_eq!(p.stats().overflows, 1);
    let mut buf = [0u8; MAX_DATAGRAM_LEN];
    let mut kinds = std::vec::Vec::new();
    while let Some(n) = p.poll_transmit(Instant::from_millis(5), &mut buf) {
        kinds.push(NotifyRepr::parse_bytes(&buf[..n]).unwrap().notification);
    }
    assert_eq!(
        kinds,
        [
            Notification::channel_update(ch("a")),
            Notification::status(None)
        ]
    );
}

#[test]
fn confirmed_sends_retransmit_with_backoff_until_acked() {
    let mut p = NotifierSession::<4>::new(NotifierConfig::default(), SenderId(9));
    let t0 = Instant::ZERO;
    let seq = p
        .notify_confirmed(t0, Notification::status(None), 1, Duration::from_secs(1))
        .unwrap();
    assert_eq!(
        p.notify_confirmed(t0, Notification::status(None), 1, Duration::from_secs(1)),
        Err(ConfirmBusy)
    );
    let mut buf = [0u8; MAX_DATAGRAM_LEN];
    let n = p.poll_transmit(t0, &mut buf).unwrap();
    let sent = NotifyRepr::parse_bytes(&buf[..n]).unwrap();
    assert!(sent.ack_requested);
    assert_eq!(p.poll_timeout(), Some(Instant::from_millis(20)));
    assert!(p
        .poll_transmit(Instant::from_millis(20), &mut buf)
        .is_some());
    assert_eq!(p.poll_timeout(), Some(Instant::from_millis(60)));
    // an ack for something else is ignored; the right one confirms
    let mut ack = [0u8; MAX_DATAGRAM_LEN];
    let other = AckRepr::answering(
        &NotifyRepr {
            seq: Seq(77),
            ..sent
        },
        AckResult::Delivered,
    );
    let len = other.emit(&mut ack).unwrap();
    p.handle_datagram(Instant::from_millis(30), &ack[..len]);
    assert_eq!(p.poll_event(), None);
    let len = AckRepr::answering(&sent, AckResult::Delivered)
        .emit(&mut ack)
        .unwrap();
    p.handle_datagram(Instant::from_millis(30), &ack[..len]);
    assert_eq!(
        p.poll_event(),
        Some(NotifierEvent::Confirmed {
            seq,
            result: AckResult::Delivered,
            attempts: 2
        })
    );
    assert!(p.is_idle());
}

#[test]
fn confirmed_sends_time_out() {
    let mut p = NotifierSession::<4>::new(NotifierConfig::default(), SenderId(9));
    let seq = p
        .notify_confirmed(
            Instant::ZERO,
            Notification::status(None),
            1,
            Duration::from_millis(100),
        )
        .unwrap();
    let mut buf = [0u8; MAX_DATAGRAM_LEN];
    let mut sends = 0;
    while let Some(at) = p.poll_timeout() {
        if p.poll_transmit(at, &mut buf).is_some() {
            sends += 1;
        }
        if let Some(ev) = p.poll_event() {
            assert_eq!(
                ev,
                NotifierEvent::TimedOut {
                    seq,
                    attempts: sends
                }
            );
            assert!(at >= Instant::from_millis(100));
            assert_eq!(sends, 3); // at 0, 20 and 60 ms
            return;
        }
    }
    panic!("never timed out");
}

struct Xor;
impl Signer for Xor {
    fn sign(&self, signed: &[u8]) -> Tag {
        let mut tag = [0u8; TAG_LEN];
        for (i, b) in signed.iter().enumerate() {
            tag[i % TAG_LEN] ^= *b;
        }
        tag
    }
}

#[test]
fn a_signer_fills_the_tag() {
    let mut p = NotifierSession::<4>::new(
        NotifierConfig {
            hold_off: Duration::ZERO,
            ..NotifierConfig::default()
        },
        SenderId(3),
    );
    p.notify(Instant::ZERO, Notification::status(None), 1);
    let mut buf = [0u8; MAX_DATAGRAM_LEN];
    let n = p
        .poll_transmit_signed(Instant::ZERO, &mut buf, Some(&Xor))
        .unwrap();
    let repr = NotifyRepr::parse_bytes(&buf[..n]).unwrap();
    assert_eq!(repr.tag, Some(Xor.sign(&buf[..n - TAG_LEN])));
}

// ---------------------------------------------------------------- pacing

fn host() -> NotifierSession<8> {
    NotifierSession::new(NotifierConfig::HOST, SenderId(5))
}

/// Drives `p` one microsecond at a time for `until` µs: `calls(t)`
/// notifications of status at µs `t`, then everything due is sent. Returns
/// the rounds: (µs, summed batch of its datagrams).
fn drive(
    p: &mut NotifierSession<8>,
    until: u64,
    calls: impl Fn(u64) -> u32,
) -> std::vec::Vec<(u64, u32)> {
    let mut rounds = std::vec::Vec::new();
    let mut buf = [0u8; MAX_DATAGRAM_LEN];
    let mut last_seq = None;
    for t in 0..until {
        let now = Instant::from_micros(t);
        for _ in 0..calls(t) {
            p.notify(now, Notification::status(None), 1);
        }
        let mut batch = 0;
        while let Some(n) = p.poll_notifications(now, &mut buf) {
            let repr = NotifyRepr::parse_bytes(&buf[..n]).unwrap();
            // a probe repeats the sequence number of the datagram before it
            if last_seq != Some(repr.seq) {
                batch += repr.batch;
            }
            last_seq = Some(repr.seq);
        }
        if batch > 0 {
            rounds.push((t, batch));
        }
    }
    rounds
}

fn times(rounds: &[(u64, u32)]) -> std::vec::Vec<u64> {
    rounds.iter().map(|r| r.0).collect()
}

#[test]
fn an_isolated_notification_goes_at_once_and_is_probed_later() {
    let mut p = host();
    let rounds = drive(&mut p, 6_000, |t| u32::from(t == 100));
    assert_eq!(rounds, [(100, 1)]);
    assert_eq!(p.stats().probes, 1);
    assert!(p.is_idle());
}

#[test]
fn a_hot_loop_goes_in_rounds_whose_gap_doubles_to_the_cap() {
    let mut p = host();
    // ten calls every microsecond for 1 ms
    let rounds = drive(&mut p, 1_000, |_| 10);
    let t = times(&rounds);
    assert_eq!(&t[..6], [0, 20, 60, 140, 300, 460]);
    for w in t.windows(2).skip(4) {
        assert_eq!(w[1] - w[0], 160, "{t:?}");
    }
    // every call went out in one round or another
    let sent: u32 = rounds.iter().map(|r| r.1).sum();
    let last = *t.last().unwrap();
    assert_eq!(sent, 10 * (last as u32 + 1));
}

#[test]
fn a_burst_s_last_calls_go_out_quiet_after_them() {
    let mut p = host();
    // a call every microsecond until 50 µs: rounds at 0 and 20 (paced), then
    // the calls stop and the rest goes 2 µs after the last one
    let rounds = drive(&mut p, 200, |t| u32::from(t <= 50));
    assert_eq!(times(&rounds), [0, 20, 52]);
    assert_eq!(rounds.iter().map(|r| r.1).sum::<u32>(), 51);
}

#[test]
fn calls_seen_but_not_yet_recorded_keep_a_pace_from_ending_early() {
    // A transport that gathers calls lock-free records their counts only
    // when a round is due, and in between reports that calls came.
    let mut p = host();
    let mut buf = [0u8; MAX_DATAGRAM_LEN];
    let at = Instant::from_micros;
    p.notify(at(0), Notification::status(None), 1);
    assert!(
        p.poll_notifications(at(0), &mut buf).is_some(),
        "the first goes at once"
    );
    p.notify(at(1), Notification::status(None), 1);
    // calls keep coming (seen, not recorded) until 15 µs: no early end
    for t in 2..=15 {
        p.calls_seen(at(t));
        assert!(p.poll_notifications(at(t), &mut buf).is_none(), "at {t} µs");
    }
    assert_eq!(
        p.poll_timeout_notifications(),
        Some(at(17)),
        "quiet after the last seen"
    );
    // a look that comes late does not move the quiet period back
    p.calls_seen(at(12));
    assert_eq!(p.poll_timeout_notifications(), Some(at(17)));
    // the counts are recorded when they were last seen coming
    p.notify(at(15), Notification::status(None), 14);
    let n = p.poll_notifications(at(17), &mut buf).expect("the round");
    assert_eq!(NotifyRepr::parse_bytes(&buf[..n]).unwrap().batch, 15);
}

#[test]
fn early_ends_are_at_most_every_other_round() {
    let mut p = host();
    // clumps of calls 5 µs apart: every pause is "quiet", but only every
    // other gap may end early, so the rounds stay paced on average
    let rounds = drive(&mut p, 400, |t| u32::from(t % 5 == 0));
    let t = times(&rounds);
    let mut early_before = false;
    for w in t.windows(2) {
        let early = w[1] - w[0] < 20;
        assert!(!(early && early_before), "two early rounds in a row: {t:?}");
        early_before = early;
    }
    assert!(
        t.len() < 400 / 10,
        "{} rounds for 80 clumps: {t:?}",
        t.len()
    );
}

#[test]
fn a_trickle_slower_than_the_pace_is_sent_call_by_call() {
    let mut p = host();
    let rounds = drive(&mut p, 300, |t| u32::from(t % 30 == 0));
    assert_eq!(
        times(&rounds),
        (0..10).map(|i| i * 30).collect::<std::vec::Vec<_>>()
    );
}

#[test]
fn no_probe_while_a_burst_is_paced_then_one_after_it() {
    let mut p = host();
    let mut buf = [0u8; MAX_DATAGRAM_LEN];
    p.notify(Instant::ZERO, Notification::status(None), 1);
    assert!(p.poll_notifications(Instant::ZERO, &mut buf).is_some());
    // a call during the pace: paced, and the probe waits for the burst
    p.notify(Instant::from_micros(5), Notification::status(None), 1);
    assert_eq!(
        p.poll_timeout_notifications(),
        Some(Instant::from_micros(7))
    );
    assert!(p
        .poll_notifications(Instant::from_micros(7), &mut buf)
        .is_some());
    assert_eq!(p.stats().probes, 0);
    assert_eq!(
        p.poll_timeout_notifications(),
        Some(Instant::from_micros(7) + Duration::from_millis(5))
    );
}

#[test]
fn close_sends_what_is_pending_and_the_probe_at_once() {
    let mut p = host();
    let mut buf = [0u8; MAX_DATAGRAM_LEN];
    let t = Instant::ZERO;
    p.notify(t, Notification::status(None), 1);
    assert!(p.poll_notifications(t, &mut buf).is_some());
    p.notify(t, Notification::non_status(None), 1); // paced for 20 µs
    assert!(p.poll_notifications(t, &mut buf).is_none());
    p.close();
    let n = p.poll_notifications(t, &mut buf).unwrap();
    let last = NotifyRepr::parse_bytes(&buf[..n]).unwrap();
    assert_eq!(last.notification, Notification::non_status(None));
    let n = p.poll_notifications(t, &mut buf).unwrap();
    assert_eq!(
        NotifyRepr::parse_bytes(&buf[..n]).unwrap(),
        NotifyRepr {
            probe: true,
            ..last
        }
    );
    assert_eq!(p.stats().probes, 1);
    assert!(p.is_idle());
}

#[test]
fn confirmed_sends_and_notifications_can_be_driven_apart() {
    let mut p = host();
    let mut buf = [0u8; MAX_DATAGRAM_LEN];
    let t = Instant::ZERO;
    p.notify_confirmed(t, Notification::status(None), 1, Duration::from_secs(1))
        .unwrap();
    assert_eq!(p.poll_timeout_notifications(), None);
    assert!(p.poll_notifications(t, &mut buf).is_none());
    p.notify(t, Notification::non_status(None), 1);
    let n = p.poll_notifications(t, &mut buf).unwrap();
    assert!(!NotifyRepr::parse_bytes(&buf[..n]).unwrap().ack_requested);
    let n = p.poll_confirm(t, &mut buf).unwrap();
    assert!(NotifyRepr::parse_bytes(&buf[..n]).unwrap().ack_requested);
    assert!(p.poll_confirm(t, &mut buf).is_none());
    assert_eq!(
        p.poll_timeout(),
        Some(Instant::from_millis(5).min(Instant::from_millis(20)))
    );
}

#[test]
fn the_pace_doubles_up_to_its_cap_and_a_pause_starts_over() {
    let c = NotifierConfig::HOST;
    let mut gap = c.pace;
    let mut seen = std::vec![gap.as_micros()];
    for _ in 0..5 {
        gap = c.next_pace(gap, true);
        seen.push(gap.as_micros());
    }
    assert_eq!(seen, [20, 40, 80, 160, 160, 160]);
    assert_eq!(c.next_pace(c.max_pace, false), c.pace);
}

// ---------------------------------------------------------- signed sessions

#[test]
fn a_signed_session_and_a_keyed_broker_agree_and_forged_acks_are_ignored() {
    use crate::auth::{Key, Keyring};
    use crate::broker::{BrokerState, Config, ListenerSlot};
    use crate::loss::SenderSlot;
    let key = Key::new(&[7; 32]).unwrap();
    let mut broker = BrokerState::new(
        Config::default(),
        [ListenerSlot::EMPTY; 2],
        [SenderSlot::EMPTY; 2],
    );
    broker.set_keys(Some(Keyring::new(key.clone())));
    let mut p = NotifierSession::<4>::new(NotifierConfig::default(), SenderId(11));
    let t = Instant::ZERO;
    let seq = p
        .notify_confirmed(t, Notification::status(None), 1, Duration::from_secs(1))
        .unwrap();
    let mut buf = [0u8; MAX_DATAGRAM_LEN];
    let n = p.poll_transmit_signed(t, &mut buf, Some(&key)).unwrap();
    let received = broker.handle_datagram(t, &buf[..n]).unwrap();
    let ack = received.ack.unwrap();
    // a forged ack for the same sequence: untagged, then tagged with zeros
    let mut forged = [0u8; 36];
    let untagged = AckRepr { tag: None, ..ack };
    let len = untagged.emit(&mut forged).unwrap();
    p.handle_datagram_signed(t, &forged[..len], Some(&key));
    let zeroed = AckRepr {
        tag: Some([0; TAG_LEN]),
        ..ack
    };
    let len = zeroed.emit(&mut forged).unwrap();
    p.handle_datagram_signed(t, &forged[..len], Some(&key));
    assert_eq!(p.poll_event(), None, "forged acks end nothing");
    assert_eq!(p.stats().acks_rejected, 2);
    // the broker's own ack is genuine
    let mut genuine = [0u8; 36];
    let len = ack.emit(&mut genuine).unwrap();
    p.handle_datagram_signed(t, &genuine[..len], Some(&key));
    assert_eq!(
        p.poll_event(),
        Some(NotifierEvent::Confirmed {
            seq,
            result: AckResult::Delivered,
            attempts: 1
        })
    );
}
