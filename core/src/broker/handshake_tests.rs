//! Listener authentication end to end on a hand-driven clock: a
//! `BrokerState` and a `ListenerSession` (or a `StatsClient`) joined by two
//! in-memory pipes, written and read as the transports do — keyed and
//! keyless on either side, wrong keys, replayed proofs, the stats request
//! and the timeouts.

use super::tests::broker;
use super::*;
use crate::auth::Key;
use crate::listener::{
    AuthError, ListenerConfig, ListenerSession, ListenerState, Raise, SessionError, StatsClient,
};
use crate::notify::Notification;
use crate::wire::{
    CloseRepr, FlagsRepr, FrameReader, HelloRepr, ProofRepr, StatRepr, AUTH_VERSION, MAX_FRAME_LEN,
    VERSION,
};

type TestBroker = BrokerState<[ListenerSlot; 4], [SenderSlot; 4]>;

fn key(b: u8) -> Key {
    Key::new(&[b; 32]).unwrap()
}

fn keyed_broker(k: Option<u8>) -> TestBroker {
    let mut b = broker();
    b.set_keys(k.map(|k| Keyring::new(key(k))));
    b
}

fn session(k: Option<u8>) -> ListenerSession {
    let s = ListenerSession::new(ListenerConfig {
        interest: FlagSet::STATUS | FlagSet::NON_STATUS,
        keepalive_secs: 30,
        ..ListenerConfig::new(Some(ChannelId::new("gsm1").unwrap()))
    });
    match k {
        Some(k) => s.with_key(key(k), [k; 16]),
        None => s,
    }
}

/// What went over the wire and what each end concluded.
#[derive(Debug, Default)]
struct Outcome {
    /// Every frame the broker wrote, in order.
    to_listener: Vec<Framed>,
    /// Every frame the listener wrote, in order.
    to_broker: Vec<Framed>,
    /// What the listener raised.
    raises: Vec<Raise>,
    /// The listener's error, which drops the connection.
    listener_error: Option<SessionError>,
    /// The broker's error for a frame.
    broker_error: Option<FrameError>,
    /// The reason the broker closed the connection with.
    closed: Option<CloseReason>,
}

/// A connection between `b` and `l`, run at `now` until nothing moves.
struct Link {
    id: ListenerId,
    to_broker: FrameReader<256>,
    to_listener: FrameReader<256>,
    out: Outcome,
}

impl Link {
    fn open(b: &mut TestBroker, l: &mut ListenerSession, now: Instant) -> Link {
        let id = b.open(now).unwrap();
        l.connected(now);
        Link {
            id,
            to_broker: FrameReader::new(),
            to_listener: FrameReader::new(),
            out: Outcome::default(),
        }
    }

    fn put(reader: &mut FrameReader<256>, log: &mut Vec<Framed>, frame: Framed) {
        let mut buf = [0u8; MAX_FRAME_LEN];
        let n = frame.emit(&mut buf).unwrap();
        assert_eq!(reader.push(&buf[..n]), n);
        log.push(frame);
    }

    /// Moves frames both ways at `now` until quiet, as the transports do.
    fn run(&mut self, b: &mut TestBroker, l: &mut ListenerSession, now: Instant) {
        for _ in 0..20 {
            let mut moved = false;
            let mut buf = [0u8; MAX_FRAME_LEN];
            while let Some(n) = l.poll_transmit(now, &mut buf) {
                let frame = Framed::parse(&buf[..n]).unwrap();
                Self::put(&mut self.to_broker, &mut self.out.to_broker, frame);
                moved = true;
            }
            let (to_listener, log) = (&mut self.to_listener, &mut self.out.to_listener);
            if let Err(e) = b.handle_frames(now, self.id, &mut self.to_broker, |f| {
                Self::put(to_listener, log, f)
            }) {
                self.out.broker_error.get_or_insert(e);
            }
            self.broker_output(b);
            while let Some(frame) = self.to_listener.next_frame() {
                moved = true;
                match l.handle_frame(now, frame.unwrap()) {
                    Ok(raise) if !raise.flags.is_empty() => self.out.raises.push(raise),
                    Ok(_) => {}
                    Err(e) => {
                        self.out.listener_error.get_or_insert(e);
                        l.disconnected(now, 0);
                        b.disconnect(self.id);
                        return;
                    }
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the link did not settle");
    }

    fn broker_output(&mut self, b: &mut TestBroker) {
        while let Some(event) = b.poll_event() {
            if let Event::Closed {
                listener,
                reason,
                send_close,
                version,
            } = event
            {
                assert_eq!(listener, self.id);
                self.out.closed = Some(reason);
                if send_close {
                    let close = Framed::new(version, FrameRepr::Close(CloseRepr::new(reason)));
                    Self::put(&mut self.to_listener, &mut self.out.to_listener, close);
                }
            }
        }
        while let Some(id) = b.poll_ready() {
            while let Some(frame) = b.poll_framed(id) {
                Self::put(&mut self.to_listener, &mut self.out.to_listener, frame);
            }
        }
    }
}

/// One connection of `l` to `b` at `now`, run until quiet.
fn connect(b: &mut TestBroker, l: &mut ListenerSession, now: Instant) -> Link {
    let mut link = Link::open(b, l, now);
    link.run(b, l, now);
    link
}

fn types(frames: &[Framed]) -> Vec<(u8, u8)> {
    frames
        .iter()
        .map(|f| (f.version, f.frame.frame_type()))
        .collect()
}

#[test]
fn a_keyed_listener_and_broker_authenticate_and_then_talk_version_2() {
    let mut b = keyed_broker(Some(1));
    let mut l = session(Some(1));
    let t = Instant::ZERO;
    let mut link = connect(&mut b, &mut l, t);
    assert_eq!(l.state(), ListenerState::Listening);
    assert_eq!(b.state(link.id), Some(SlotState::Listening));
    assert_eq!(
        types(&link.out.to_broker),
        [(2, 0x10), (2, 0x19)],
        "hello, proof"
    );
    assert_eq!(
        types(&link.out.to_listener),
        [(2, 0x18), (2, 0x1a), (2, 0x11)],
        "challenge, accept, welcome"
    );
    assert_eq!(
        link.out.raises[0].flags,
        FlagSet::STATUS | FlagSet::NON_STATUS
    );
    assert!(link.out.raises[0].reconnect);
    assert_eq!(l.auth_failure(), None);

    // flags and pongs carry version 2 as well
    b.notify(
        t,
        &Notification::status(Some(ChannelId::new("gsm1").unwrap())),
        1,
    );
    l.handle_timeout(Instant::from_secs(10)).unwrap();
    link.run(&mut b, &mut l, Instant::from_secs(10));
    assert_eq!(
        types(&link.out.to_listener[3..]),
        [(2, 0x12), (2, 0x14)],
        "flags, pong"
    );
    assert_eq!(types(&link.out.to_broker[2..]), [(2, 0x13)], "ping");
    assert_eq!(link.out.listener_error, None);
    let stats = b.stats();
    assert_eq!(
        (
            stats.listening,
            stats.awaiting_hello,
            stats.listeners_unauthorized
        ),
        (1, 0, 0)
    );
}

#[test]
fn the_broker_accepts_the_previous_key_during_a_rotation_and_answers_with_it() {
    let mut b = broker();
    b.set_keys(Some(Keyring::new(key(2)).with_previous(key(1))));
    let mut old = session(Some(1));
    connect(&mut b, &mut old, Instant::ZERO);
    assert_eq!(old.state(), ListenerState::Listening);
    let mut new = session(Some(2));
    connect(&mut b, &mut new, Instant::ZERO);
    assert_eq!(new.state(), ListenerState::Listening);
}

#[test]
fn a_wrong_key_is_refused_both_ways() {
    // the listener's proof fails at the broker
    let mut b = keyed_broker(Some(1));
    let mut l = session(Some(2));
    let link = connect(&mut b, &mut l, Instant::ZERO);
    assert_eq!(link.out.broker_error, Some(FrameError::Unauthorized));
    assert_eq!(link.out.closed, Some(CloseReason::Unauthorized));
    assert_eq!(
        link.out.listener_error,
        Some(SessionError::Auth(AuthError::Refused))
    );
    assert_eq!(l.auth_failure(), Some(AuthError::Refused));
    assert_eq!(
        l.state(),
        ListenerState::BackingOff,
        "it retries, backing off"
    );
    assert!(link.out.raises.is_empty(), "nothing raised");
    assert_eq!(types(&link.out.to_listener), [(2, 0x18), (2, 0x15)]);
    let stats = b.stats();
    assert_eq!(stats.listeners_unauthorized, 1);
    assert_eq!(stats.closes[CloseReason::Unauthorized as usize], 1);
    assert_eq!((stats.awaiting_hello, stats.listening), (0, 0));

    // a broker that answers without the key: its accept does not check out
    let mut l = session(Some(1));
    l.connected(Instant::ZERO);
    let mut buf = [0u8; MAX_FRAME_LEN];
    let n = l.poll_transmit(Instant::ZERO, &mut buf).unwrap();
    assert_eq!(Framed::parse(&buf[..n]).unwrap().version, AUTH_VERSION);
    let fake = |frame| {
        let mut out = [0u8; MAX_FRAME_LEN];
        let n = Framed::new(AUTH_VERSION, frame).emit(&mut out).unwrap();
        (out, n)
    };
    let (challenge, n) = fake(FrameRepr::Challenge([9; 16]));
    assert_eq!(
        l.handle_frame(Instant::ZERO, &challenge[..n]),
        Ok(Raise::default())
    );
    assert!(
        l.poll_transmit(Instant::ZERO, &mut buf).is_some(),
        "the proof"
    );
    let (accept, n) = fake(FrameRepr::Accept([7; 16]));
    assert_eq!(
        l.handle_frame(Instant::ZERO, &accept[..n]),
        Err(SessionError::Auth(AuthError::BrokerNotAuthenticated))
    );
    assert_eq!(l.auth_failure(), Some(AuthError::BrokerNotAuthenticated));
}

#[test]
fn a_welcome_without_an_accept_is_never_taken_by_a_keyed_listener() {
    let welcome = |version| {
        let mut out = [0u8; MAX_FRAME_LEN];
        let frame = FrameRepr::Welcome(crate::wire::WelcomeRepr {
            interest: FlagSet::ALL,
            keepalive_secs: 30,
            broker_id: 1,
        });
        let n = Framed::new(version, frame).emit(&mut out).unwrap();
        (out, n)
    };
    for version in [VERSION, AUTH_VERSION] {
        // straight after the hello, as a keyless broker of old would
        let mut l = session(Some(1));
        l.connected(Instant::ZERO);
        let _ = l.poll_transmit(Instant::ZERO, &mut [0u8; MAX_FRAME_LEN]);
        let (w, n) = welcome(version);
        assert_eq!(
            l.handle_frame(Instant::ZERO, &w[..n]),
            Err(SessionError::Auth(AuthError::BrokerNotAuthenticated))
        );
        assert_eq!(l.welcomes(), 0);
        // after the proof, where the accept belongs
        let mut l = session(Some(1));
        l.connected(Instant::ZERO);
        let _ = l.poll_transmit(Instant::ZERO, &mut [0u8; MAX_FRAME_LEN]);
        let mut c = [0u8; MAX_FRAME_LEN];
        let cn = FrameRepr::Challenge([3; 16]).emit(&mut c).unwrap();
        l.handle_frame(Instant::ZERO, &c[..cn]).unwrap();
        assert_eq!(
            l.handle_frame(Instant::ZERO, &w[..n]),
            Err(SessionError::Auth(AuthError::BrokerNotAuthenticated))
        );
        assert_eq!(l.state(), ListenerState::Connecting);
    }
}

#[test]
fn a_version_1_hello_to_a_keyed_broker_is_refused() {
    let mut b = keyed_broker(Some(1));
    let mut l = session(None);
    let link = connect(&mut b, &mut l, Instant::ZERO);
    assert_eq!(link.out.broker_error, Some(FrameError::Unauthorized));
    assert_eq!(
        types(&link.out.to_listener),
        [(1, 0x15)],
        "a version-1 close"
    );
    assert_eq!(
        link.out.listener_error,
        Some(SessionError::Auth(AuthError::KeyRequired))
    );
    assert_eq!(l.auth_failure(), Some(AuthError::KeyRequired));
    assert_eq!(b.stats().listeners_unauthorized, 1);
    assert_eq!(b.stats().listening, 0);
}

#[test]
fn a_version_2_hello_to_a_keyless_broker_is_refused() {
    let mut b = keyed_broker(None);
    let mut l = session(Some(1));
    let link = connect(&mut b, &mut l, Instant::ZERO);
    assert_eq!(link.out.broker_error, Some(FrameError::Unauthorized));
    assert_eq!(
        types(&link.out.to_listener),
        [(2, 0x15)],
        "a version-2 close"
    );
    assert_eq!(
        link.out.listener_error,
        Some(SessionError::Auth(AuthError::BrokerHasNoKey))
    );
    assert_eq!(b.stats().listeners_unauthorized, 1);

    // and a keyless listener to a keyless broker is version 1, unchanged
    let mut l = session(None);
    let link = connect(&mut b, &mut l, Instant::ZERO);
    assert_eq!(types(&link.out.to_listener), [(1, 0x11)]);
    assert_eq!(l.state(), ListenerState::Listening);
}

#[test]
fn a_broker_of_version_1_only_is_reported_as_too_old() {
    let mut l = session(Some(1));
    l.connected(Instant::ZERO);
    let _ = l.poll_transmit(Instant::ZERO, &mut [0u8; MAX_FRAME_LEN]);
    // what a version-1 broker answers a version-2 hello
    let mut out = [0u8; MAX_FRAME_LEN];
    let close = FrameRepr::Close(CloseRepr {
        reason: CloseReason::UnsupportedVersion,
        version: 1,
    });
    let n = close.emit(&mut out).unwrap();
    assert_eq!(
        l.handle_frame(Instant::ZERO, &out[..n]),
        Err(SessionError::Auth(AuthError::BrokerTooOld))
    );
}

#[test]
fn a_replayed_proof_is_refused_the_challenge_is_fresh() {
    let mut b = keyed_broker(Some(1));
    let mut l = session(Some(1));
    let first = connect(&mut b, &mut l, Instant::ZERO);
    let (hello, proof) = (first.out.to_broker[0], first.out.to_broker[1]);
    let challenge = first.out.to_listener[0];
    // an eavesdropper replays the recorded hello and proof
    let id = b.open(Instant::ZERO).unwrap();
    let mut buf = [0u8; MAX_FRAME_LEN];
    let n = hello.emit(&mut buf).unwrap();
    b.handle_frame(Instant::ZERO, id, &buf[..n]).unwrap();
    let fresh = b.poll_framed(id).unwrap();
    assert_eq!(fresh.frame.frame_type(), 0x18);
    assert_ne!(fresh, challenge, "a new nonce");
    let n = proof.emit(&mut buf).unwrap();
    assert_eq!(
        b.handle_frame(Instant::ZERO, id, &buf[..n]),
        Err(FrameError::Unauthorized)
    );
    assert!(matches!(
        b.poll_event(),
        Some(Event::Closed {
            reason: CloseReason::Unauthorized,
            version: 2,
            ..
        })
    ));
    assert_eq!(b.stats().listeners_unauthorized, 1);
}

#[test]
fn frames_out_of_turn_or_of_another_version_are_protocol_errors() {
    let t = Instant::ZERO;
    let bytes = |version, frame| {
        let mut buf = [0u8; MAX_FRAME_LEN];
        let n = Framed::new(version, frame).emit(&mut buf).unwrap();
        buf[..n].to_vec()
    };
    let hello = FrameRepr::Hello(HelloRepr {
        interest: FlagSet::ALL,
        channel: None,
        keepalive_secs: 0,
    });
    let proof = FrameRepr::Proof(ProofRepr {
        nonce: [0; 16],
        tag: [0; 16],
    });
    // a proof before any hello; a ping while awaiting the proof; a
    // version-1 hello where the version-2 proof belongs
    let cases = [
        (None, proof, 2, 0x19),
        (Some(hello), FrameRepr::Ping(1), 2, 0x13),
        (Some(hello), hello, 1, 0x10),
    ];
    for (first, frame, version, code) in cases {
        let mut b = keyed_broker(Some(1));
        let id = b.open(t).unwrap();
        if let Some(first) = first {
            b.handle_frame(t, id, &bytes(AUTH_VERSION, first)).unwrap();
        }
        assert_eq!(
            b.handle_frame(t, id, &bytes(version, frame)),
            Err(FrameError::Unexpected(code))
        );
        assert!(matches!(
            b.poll_event(),
            Some(Event::Closed {
                reason: CloseReason::ProtocolError,
                ..
            })
        ));
        assert_eq!(b.stats().listeners_unauthorized, 0);
    }

    // established in version 2, a version-1 ping is unexpected too
    let mut b = keyed_broker(Some(1));
    let mut l = session(Some(1));
    let link = connect(&mut b, &mut l, t);
    assert_eq!(
        b.handle_frame(t, link.id, &bytes(VERSION, FrameRepr::Ping(1))),
        Err(FrameError::Unexpected(0x13))
    );
    // and a proof cannot even be written in version 1: it does not parse
    let mut buf = bytes(AUTH_VERSION, proof);
    buf[2] = VERSION;
    assert_eq!(
        FrameRepr::parse_bytes(&buf),
        Err(crate::wire::Error::UnknownType(0x19))
    );
}

#[test]
fn the_hello_timeout_covers_the_whole_handshake() {
    let mut b = keyed_broker(Some(1));
    let opened = Instant::ZERO;
    let id = b.open(opened).unwrap();
    // the hello comes late, at 9 s of 10; the challenge goes out
    let mut buf = [0u8; MAX_FRAME_LEN];
    let hello = FrameRepr::Hello(HelloRepr {
        interest: FlagSet::ALL,
        channel: None,
        keepalive_secs: 0,
    });
    let n = Framed::new(AUTH_VERSION, hello).emit(&mut buf).unwrap();
    b.handle_frame(Instant::from_secs(9), id, &buf[..n])
        .unwrap();
    assert_eq!(b.state(id), Some(SlotState::AwaitingProof));
    assert!(!b.state(id).unwrap().is_established());
    assert_eq!(b.poll_ready(), Some(id));
    assert!(matches!(b.poll_framed(id), Some(f) if f.frame.frame_type() == 0x18));
    assert_eq!(b.poll_framed(id), None);
    // no proof: closed at 10 s from the opening, not from the hello
    b.handle_timeout(Instant::from_secs(10));
    assert!(matches!(
        b.poll_event(),
        Some(Event::Closed {
            reason: CloseReason::HelloTimeout,
            version: 2,
            ..
        })
    ));
    assert_eq!(b.stats().awaiting_hello, 0);
}

#[test]
fn the_listeners_welcome_deadline_covers_the_whole_handshake() {
    // keep-alive asked: 30 s, so the welcome is due 30 s after connecting
    let mut l = session(Some(1));
    l.connected(Instant::ZERO);
    let _ = l.poll_transmit(Instant::ZERO, &mut [0u8; MAX_FRAME_LEN]);
    let mut c = [0u8; MAX_FRAME_LEN];
    let n = FrameRepr::Challenge([3; 16]).emit(&mut c).unwrap();
    l.handle_frame(Instant::from_secs(20), &c[..n]).unwrap();
    assert_eq!(
        l.poll_timeout(),
        Some(Instant::from_secs(30)),
        "the challenge did not move it"
    );
    assert_eq!(
        l.handle_timeout(Instant::from_secs(30)),
        Err(SessionError::Timeout)
    );
}

/// A stats request from `client` to `b`, answered as the transports do:
/// the stats, or the error that ended it.
fn stats_exchange(
    b: &mut TestBroker,
    mut client: StatsClient,
) -> (Result<Stats, SessionError>, Vec<(u8, u8)>) {
    let t = Instant::ZERO;
    let id = b.open(t).unwrap();
    let mut to_broker = FrameReader::<256>::new();
    let mut to_client: Vec<Framed> = Vec::new();
    let mut stats = Stats::default();
    let mut seen = Vec::new();
    for _ in 0..4 {
        let mut buf = [0u8; MAX_FRAME_LEN];
        while let Some(n) = client.poll_transmit(&mut buf) {
            to_broker.push(&buf[..n]);
        }
        let _ = b.handle_frames(t, id, &mut to_broker, |f| to_client.push(f));
        while let Some(event) = b.poll_event() {
            match event {
                Event::StatsRequested {
                    version, accept, ..
                } => {
                    if let Some(tag) = accept {
                        to_client.push(Framed::new(version, FrameRepr::Accept(tag)));
                    }
                    b.stats().visit(|index, _, value| {
                        to_client.push(Framed::new(
                            version,
                            FrameRepr::Stat(StatRepr { index, value }),
                        ));
                    });
                    let close = FrameRepr::Close(CloseRepr::new(CloseReason::Normal));
                    to_client.push(Framed::new(version, close));
                }
                Event::Closed {
                    reason, version, ..
                } => {
                    to_client.push(Framed::new(
                        version,
                        FrameRepr::Close(CloseRepr::new(reason)),
                    ));
                }
            }
        }
        for frame in to_client.drain(..) {
            seen.push((frame.version, frame.frame.frame_type()));
            let mut buf = [0u8; MAX_FRAME_LEN];
            let n = frame.emit(&mut buf).unwrap();
            match client.handle_frame(&buf[..n]) {
                Ok(Some(stat)) => assert!(stats.set(stat.index, stat.value)),
                Ok(None) => {}
                Err(e) => return (Err(e), seen),
            }
        }
        if client.is_done() {
            return (Ok(stats), seen);
        }
    }
    panic!("the stats exchange did not end");
}

#[test]
fn stats_with_and_without_a_key() {
    // keyless both: version 1, unchanged
    let mut b = keyed_broker(None);
    let (stats, seen) = stats_exchange(&mut b, StatsClient::new());
    assert_eq!(stats.unwrap().stats_requests, 1);
    assert!(seen.iter().all(|&(v, _)| v == 1));
    assert_eq!(seen.last(), Some(&(1, 0x15)));

    // keyed both: challenge, accept, then the stats in version 2
    let mut b = keyed_broker(Some(1));
    let (stats, seen) = stats_exchange(&mut b, StatsClient::new().with_key(key(1), [5; 16]));
    let stats = stats.unwrap();
    assert_eq!((stats.stats_requests, stats.listeners_unauthorized), (1, 0));
    assert_eq!(seen[..2], [(2, 0x18), (2, 0x1a)]);
    assert!(seen.iter().all(|&(v, _)| v == 2));
    assert_eq!(seen.len(), 2 + Stats::len() + 1);

    // keyless client, keyed broker: refused, nothing read
    let (stats, seen) = stats_exchange(&mut b, StatsClient::new());
    assert_eq!(
        stats.unwrap_err(),
        SessionError::Auth(AuthError::KeyRequired)
    );
    assert_eq!(seen, [(1, 0x15)]);
    // wrong key: refused after the proof
    let (stats, _) = stats_exchange(&mut b, StatsClient::new().with_key(key(2), [5; 16]));
    assert_eq!(stats.unwrap_err(), SessionError::Auth(AuthError::Refused));
    // keyed client, keyless broker
    let mut keyless = keyed_broker(None);
    let (stats, _) = stats_exchange(&mut keyless, StatsClient::new().with_key(key(1), [5; 16]));
    assert_eq!(
        stats.unwrap_err(),
        SessionError::Auth(AuthError::BrokerHasNoKey)
    );
    let after = b.stats();
    assert_eq!((after.stats_requests, after.listeners_unauthorized), (1, 2));
}

#[test]
fn a_flags_frame_in_the_handshake_is_not_taken() {
    // a keyed listener awaiting the accept takes no flags, whoever sends them
    let mut l = session(Some(1));
    l.connected(Instant::ZERO);
    let _ = l.poll_transmit(Instant::ZERO, &mut [0u8; MAX_FRAME_LEN]);
    let mut f = [0u8; MAX_FRAME_LEN];
    let flags = FrameRepr::Flags(FlagsRepr {
        flags: FlagSet::CHANNEL_SHUTDOWN,
        raises: 1,
    });
    let n = Framed::new(AUTH_VERSION, flags).emit(&mut f).unwrap();
    assert_eq!(
        l.handle_frame(Instant::ZERO, &f[..n]),
        Err(SessionError::Auth(AuthError::BrokerNotAuthenticated))
    );
}

#[test]
fn connections_that_never_prove_the_key_are_evicted_to_make_room() {
    // a keyed broker's table filled with connections that sent a hello
    // and got their challenge, but never prove the key
    let mut b = keyed_broker(Some(1));
    let t0 = Instant::ZERO;
    let hello = FrameRepr::Hello(HelloRepr {
        interest: FlagSet::ALL,
        channel: None,
        keepalive_secs: 0,
    });
    let mut buf = [0u8; MAX_FRAME_LEN];
    let n = Framed::new(AUTH_VERSION, hello).emit(&mut buf).unwrap();
    let stalled: Vec<ListenerId> = (0..4)
        .map(|_| {
            let id = b.open(t0).unwrap();
            b.handle_frame(t0, id, &buf[..n]).unwrap();
            assert_eq!(b.state(id), Some(SlotState::AwaitingProof));
            id
        })
        .collect();
    while b.poll_ready().is_some() {}
    // before the minimum wait the newcomer is refused, after it the oldest
    // unproven connection makes room
    let early = t0 + Duration::from_millis(100);
    assert_eq!(b.open(early), Err(OpenError::Full));
    let later = t0 + b.config().evict_after;
    let newcomer = b.open(later).unwrap();
    assert_eq!(
        b.poll_event(),
        Some(Event::Closed {
            listener: stalled[0],
            reason: CloseReason::TooManyListeners,
            send_close: true,
            version: VERSION,
        })
    );
    assert_eq!(b.stats().connections_evicted, 1);
    assert_eq!(b.state(stalled[0]), None);
    assert_eq!(b.state(newcomer), Some(SlotState::AwaitingHello));
}
