//! Asserts every hex vector in `PROTOCOL.md`: each `# vector:` block parses to
//! the value this test expects and that value emits exactly those bytes (the
//! handshake's tags computed here with the document's test key); each
//! `# invalid:` block is rejected with the error label it names, and each
//! `# invalid-proof:` / `# invalid-accept:` block fails the tag check.

use std::collections::BTreeMap;

use flagpost_core::auth::{Key, Keyring, Transcript};
use flagpost_core::wire::*;
use flagpost_core::{ChannelId, FlagSet, Notification};

const DOC: &str = include_str!("../../PROTOCOL.md");

/// The hex blocks whose header line starts with `prefix`, by name (the
/// first word after the prefix), each with the rest of its header line.
fn blocks(prefix: &str) -> BTreeMap<String, (String, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in DOC.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix(prefix) {
            let mut words = rest.split_whitespace();
            let name = words.next().unwrap().to_string();
            let tail = words.collect::<Vec<_>>().join(" ");
            assert!(
                out.insert(name.clone(), (tail, Vec::new())).is_none(),
                "duplicate {name}"
            );
            current = Some(name);
        } else if line.starts_with('#') || line.starts_with("```") || line.is_empty() {
            current = None;
        } else if let Some(name) = &current {
            let (_, bytes) = out.get_mut(name).unwrap();
            if line == "(empty)" {
                continue;
            }
            for byte in line.split_whitespace() {
                bytes.push(u8::from_str_radix(byte, 16).expect("hex byte"));
            }
        }
    }
    out
}

/// `# invalid…: name label (note)` blocks: name → (label, bytes).
fn invalid(prefix: &str) -> BTreeMap<String, (String, Vec<u8>)> {
    blocks(prefix)
        .into_iter()
        .map(|(name, (tail, bytes))| {
            let label = tail.split_whitespace().next().unwrap_or("").to_string();
            (name, (label, bytes))
        })
        .collect()
}

fn ch(s: &str) -> ChannelId {
    ChannelId::new(s).unwrap()
}

enum Expected {
    Notify(NotifyRepr),
    Ack(AckRepr),
    Frame(Framed),
}

/// The document's test key: `00 01 02 … 1f`.
fn test_key() -> Key {
    Key::new(&core::array::from_fn::<u8, 32, _>(|i| i as u8)).unwrap()
}

/// A nonce counting up from `from`.
fn nonce(from: u8) -> Nonce {
    core::array::from_fn(|i| from + i as u8)
}

/// The bytes of `frame` in version 2.
fn v2(frame: FrameRepr) -> Vec<u8> {
    let mut buf = [0u8; MAX_FRAME_LEN];
    let n = Framed::new(AUTH_VERSION, frame).emit(&mut buf).unwrap();
    buf[..n].to_vec()
}

fn hello_gsm1() -> FrameRepr {
    FrameRepr::Hello(HelloRepr {
        interest: FlagSet::STATUS | FlagSet::NON_STATUS,
        channel: Some(ch("gsm1")),
        keepalive_secs: 30,
    })
}

/// The proof and the accept of the exchange over `first` with `Nb`, `Nl`.
fn tags(first: FrameRepr, nb: u8, nl: u8) -> (FrameRepr, FrameRepr) {
    let (first, nb, nl) = (v2(first), nonce(nb), nonce(nl));
    let t = Transcript {
        first: &first,
        broker_nonce: &nb,
        listener_nonce: &nl,
    };
    let key = test_key();
    (
        FrameRepr::Proof(ProofRepr {
            nonce: nl,
            tag: t.proof(&key),
        }),
        FrameRepr::Accept(t.accept(&key)),
    )
}

fn expected() -> BTreeMap<&'static str, Expected> {
    let s = SenderId(0x0102_0304_0506_0708);
    let notify = |notification, sender, seq, batch, ack, tag| {
        Expected::Notify(NotifyRepr {
            notification,
            sender,
            seq: Seq(seq),
            batch,
            ack_requested: ack,
            probe: false,
            tag,
        })
    };
    let tag = |from: u8| {
        let mut t = [0u8; TAG_LEN];
        for (i, b) in t.iter_mut().enumerate() {
            *b = from + i as u8;
        }
        t
    };
    let mut m = BTreeMap::new();
    m.insert(
        "notify-status-all",
        notify(Notification::status(None), s, 42, 1, false, None),
    );
    m.insert(
        "notify-status-gsm1-ack",
        notify(
            Notification::status(Some(ch("gsm1"))),
            SenderId(0xfeed_face_cafe_beef),
            7,
            20,
            true,
            None,
        ),
    );
    m.insert(
        "notify-probe",
        Expected::Notify(NotifyRepr {
            probe: true,
            ..NotifyRepr::parse_bytes(&[
                0x46, 0x50, 1, 1, 0, 1, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0x2a, 0, 0, 0, 1,
            ])
            .unwrap()
        }),
    );
    m.insert(
        "notify-non-status",
        notify(Notification::non_status(None), s, 43, 500, false, None),
    );
    m.insert(
        "notify-channel-update-tagged",
        notify(
            Notification::channel_update(ch("gsm1")),
            s,
            44,
            1,
            false,
            Some(tag(0xa0)),
        ),
    );
    m.insert(
        "notify-channel-shutdown",
        notify(
            Notification::channel_shutdown(ch("modem-é")),
            s,
            45,
            1,
            false,
            None,
        ),
    );
    m.insert(
        "ack-delivered",
        Expected::Ack(AckRepr {
            sender: SenderId(0xfeed_face_cafe_beef),
            seq: Seq(7),
            result: AckResult::Delivered,
            tag: None,
        }),
    );
    m.insert(
        "ack-duplicate-tagged",
        Expected::Ack(AckRepr {
            sender: s,
            seq: Seq(44),
            result: AckResult::Duplicate,
            tag: Some(tag(0xc0)),
        }),
    );
    let f = |r| Expected::Frame(Framed::v1(r));
    let f2 = |r| Expected::Frame(Framed::new(AUTH_VERSION, r));
    m.insert(
        "hello-all",
        f(FrameRepr::Hello(HelloRepr {
            interest: FlagSet::ALL,
            channel: None,
            keepalive_secs: 0,
        })),
    );
    m.insert(
        "hello-gsm1-status",
        f(FrameRepr::Hello(HelloRepr {
            interest: FlagSet::STATUS | FlagSet::NON_STATUS,
            channel: Some(ch("gsm1")),
            keepalive_secs: 30,
        })),
    );
    m.insert(
        "welcome",
        f(FrameRepr::Welcome(WelcomeRepr {
            interest: FlagSet::STATUS | FlagSet::NON_STATUS,
            keepalive_secs: 30,
            broker_id: 0x1122_3344_5566_7788,
        })),
    );
    m.insert(
        "flags",
        f(FrameRepr::Flags(FlagsRepr {
            flags: FlagSet::STATUS | FlagSet::NON_STATUS,
            raises: 1000,
        })),
    );
    m.insert("ping", f(FrameRepr::Ping(0xdead_beef)));
    m.insert("pong", f(FrameRepr::Pong(0xdead_beef)));
    m.insert(
        "close-shutdown",
        f(FrameRepr::Close(CloseRepr {
            reason: CloseReason::Shutdown,
            version: 1,
        })),
    );
    m.insert("stats-request", f(FrameRepr::StatsRequest));
    m.insert(
        "stat",
        f(FrameRepr::Stat(StatRepr {
            index: 2,
            value: 258,
        })),
    );
    // listener authentication, version 2
    let welcome = FrameRepr::Welcome(WelcomeRepr {
        interest: FlagSet::STATUS | FlagSet::NON_STATUS,
        keepalive_secs: 30,
        broker_id: 0x1122_3344_5566_7788,
    });
    let (proof, accept) = tags(hello_gsm1(), 0xb0, 0xc0);
    let (proof_stats, accept_stats) = tags(FrameRepr::StatsRequest, 0xd0, 0xe0);
    m.insert("hello-v2-gsm1-status", f2(hello_gsm1()));
    m.insert("challenge", f2(FrameRepr::Challenge(nonce(0xb0))));
    m.insert("proof", f2(proof));
    m.insert("accept", f2(accept));
    m.insert("welcome-v2", f2(welcome));
    m.insert("stats-request-v2", f2(FrameRepr::StatsRequest));
    m.insert("challenge-stats", f2(FrameRepr::Challenge(nonce(0xd0))));
    m.insert("proof-stats", f2(proof_stats));
    m.insert("accept-stats", f2(accept_stats));
    m.insert(
        "close-unauthorized-v2",
        f2(FrameRepr::Close(CloseRepr::new(CloseReason::Unauthorized))),
    );
    m
}

#[test]
fn every_vector_parses_and_emits_exactly() {
    let vectors: BTreeMap<String, Vec<u8>> = blocks("# vector:")
        .into_iter()
        .map(|(name, (_, bytes))| (name, bytes))
        .collect();
    let expected = expected();
    assert_eq!(
        vectors.keys().map(String::as_str).collect::<Vec<_>>(),
        expected.keys().copied().collect::<Vec<_>>(),
        "PROTOCOL.md vectors and this test must list the same names"
    );
    for (name, bytes) in &vectors {
        let mut out = [0u8; 128];
        match &expected[name.as_str()] {
            Expected::Notify(repr) => {
                assert_eq!(NotifyRepr::parse_bytes(bytes).as_ref(), Ok(repr), "{name}");
                let n = repr.emit(&mut out).unwrap();
                assert_eq!(&out[..n], &bytes[..], "{name}");
            }
            Expected::Ack(repr) => {
                assert_eq!(AckRepr::parse_bytes(bytes).as_ref(), Ok(repr), "{name}");
                let n = repr.emit(&mut out).unwrap();
                assert_eq!(&out[..n], &bytes[..], "{name}");
            }
            Expected::Frame(framed) => {
                assert_eq!(Framed::parse(bytes).as_ref(), Ok(framed), "{name}");
                assert_eq!(frame_len(bytes), Ok(Some(bytes.len())), "{name}");
                let n = framed.emit(&mut out).unwrap();
                assert_eq!(&out[..n], &bytes[..], "{name}");
            }
        }
    }
}

#[test]
fn every_invalid_datagram_is_rejected_with_its_label() {
    let invalid = invalid("# invalid:");
    assert!(invalid.len() >= 25);
    for (name, (label, bytes)) in &invalid {
        let err = NotifyRepr::parse_bytes(bytes).expect_err(name);
        assert_eq!(err.label(), label, "{name}: got {err:?}");
        // The generic check and the ack parser agree on what the length
        // checks find (they run first, for either type).
        if let Err(e) = Datagram::new_checked(&bytes[..]) {
            assert_eq!(e, err, "{name}: check_len");
            assert_eq!(AckRepr::parse_bytes(bytes), Err(e), "{name}: ack");
        }
    }
    for label in Error::LABELS {
        let frame_only = ["empty_interest", "empty_flags", "unknown_code"];
        if !frame_only.contains(&label) {
            assert!(
                invalid.values().any(|(l, _)| l == label),
                "no invalid datagram vector for {label}"
            );
        }
    }
}

#[test]
fn every_invalid_frame_is_rejected_with_its_label() {
    let invalid = invalid("# invalid-frame:");
    assert!(invalid.len() >= 20);
    for (name, (label, bytes)) in &invalid {
        let err = FrameRepr::parse_bytes(bytes).expect_err(name);
        assert_eq!(err.label(), label, "{name}: got {err:?}");
        // A stream reader fails the same way on what it checks (magic and
        // the body bound), and otherwise hands the frame over whole.
        let mut reader = FrameReader::<MAX_FRAME_LEN>::new();
        reader.push(bytes);
        match reader.next_frame() {
            Some(Err(e)) => assert_eq!(e, err, "{name}: reader"),
            Some(Ok(frame)) => match FrameRepr::parse_bytes(frame) {
                // Bytes after a whole frame start the next one on a stream.
                Ok(_) => assert!(
                    err == Error::LengthMismatch && frame.len() < bytes.len(),
                    "{name}: split"
                ),
                Err(e) => assert_eq!(e, err, "{name}: split"),
            },
            None => assert_eq!(err, Error::Truncated, "{name}: reader waits"),
        }
    }
    for label in Error::LABELS {
        let datagram_only = ["unknown_kind", "missing_channel", "zero_batch"];
        if !datagram_only.contains(&label) {
            assert!(
                invalid.values().any(|(l, _)| l == label),
                "no invalid frame vector for {label}"
            );
        }
    }
}

/// The `# invalid-proof:` and `# invalid-accept:` blocks: well-formed
/// frames whose tags must fail against the first exchange of the document
/// (`hello-v2-gsm1-status`, `Nb` = `b0 … bf`, `Nl` = `c0 … cf`).
#[test]
fn every_invalid_proof_and_accept_fails_the_tag_check() {
    let first = v2(hello_gsm1());
    let (nb, nl) = (nonce(0xb0), nonce(0xc0));
    let keys = Keyring::new(test_key());
    let proofs = invalid("# invalid-proof:");
    assert!(proofs.len() >= 4);
    for (name, (_, bytes)) in &proofs {
        let Ok(FrameRepr::Proof(p)) = FrameRepr::parse_bytes(bytes) else {
            panic!("{name}: not a well-formed proof");
        };
        let t = Transcript {
            first: &first,
            broker_nonce: &nb,
            listener_nonce: &p.nonce,
        };
        assert_eq!(t.verify_proof(&keys, &p.tag), None, "{name}");
    }
    let accepts = invalid("# invalid-accept:");
    assert!(accepts.len() >= 2);
    for (name, (_, bytes)) in &accepts {
        let Ok(FrameRepr::Accept(tag)) = FrameRepr::parse_bytes(bytes) else {
            panic!("{name}: not a well-formed accept");
        };
        let t = Transcript {
            first: &first,
            broker_nonce: &nb,
            listener_nonce: &nl,
        };
        assert!(!t.verify_accept(&test_key(), &tag), "{name}");
    }
    // and the valid ones pass the same checks
    let (FrameRepr::Proof(p), FrameRepr::Accept(a)) = tags(hello_gsm1(), 0xb0, 0xc0) else {
        unreachable!()
    };
    let t = Transcript {
        first: &first,
        broker_nonce: &nb,
        listener_nonce: &nl,
    };
    assert!(t.verify_proof(&keys, &p.tag).is_some() && t.verify_accept(&test_key(), &a));
}

#[test]
fn the_context_strings_are_the_documents() {
    use flagpost_core::auth::*;
    for context in [
        flagpost_core::wire::federation::RECHECK_CONTEXT,
        PROOF_CONTEXT,
        ACCEPT_CONTEXT,
        BROKER_NONCE_CONTEXT,
        LISTENER_NONCE_CONTEXT,
    ] {
        let text = std::str::from_utf8(context).unwrap();
        assert!(
            DOC.contains(&format!("\"{text}\"")),
            "{text} in PROTOCOL.md"
        );
    }
}

#[test]
fn every_federated_vector_parses_and_emits_exactly() {
    use flagpost_core::wire::federation::{recheck_header, RECHECK_CONTEXT};
    let fed = blocks("# federated:");
    let datagrams = blocks("# vector:");
    let signed = blocks("# signed:");
    let names: Vec<&str> = fed.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "federated-notify",
            "federated-notify-signed",
            "federated-recheck",
            "federated-recheck-signed"
        ]
    );
    let keys = Keyring::new(test_key());
    for (name, (_, bytes)) in &fed {
        let repr = FederatedRepr::parse(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(repr.origin, 0x1122_3344_5566_7788, "{name}");
        let mut out = [0u8; MAX_FEDERATED_LEN];
        let n = repr.emit(&mut out).unwrap();
        assert_eq!(&out[..n], &bytes[..], "{name}");
        match (name.as_str(), repr.message) {
            ("federated-notify", Federated::Notify { datagram, .. }) => {
                assert_eq!(datagram, &datagrams["notify-status-all"].1[..]);
            }
            ("federated-notify-signed", Federated::Notify { datagram, .. }) => {
                assert_eq!(datagram, &signed["notify-status-gsm1-ack-signed"].1[..]);
                assert!(flagpost_core::auth::verify_datagram(&keys, datagram).is_some());
            }
            ("federated-recheck", Federated::Recheck { tag }) => assert_eq!(tag, None),
            ("federated-recheck-signed", Federated::Recheck { tag }) => {
                let header = recheck_header(repr.origin, true);
                assert_eq!(tag, Some(test_key().tag(&[RECHECK_CONTEXT, &header])));
            }
            (name, other) => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn every_invalid_federated_message_is_rejected_with_its_label() {
    let invalid = invalid("# invalid-federated:");
    assert!(invalid.len() >= 9);
    for (name, (label, bytes)) in &invalid {
        let err = FederatedRepr::parse(bytes).expect_err(name);
        assert_eq!(err.label(), label, "{name}: got {err:?}");
    }
}

#[test]
fn stated_bounds_hold() {
    assert_eq!(MAX_FEDERATED_LEN, 88);
    assert_eq!(MAX_DATAGRAM_LEN, 72);
    assert_eq!(MAX_FRAME_LEN, 70);
    assert_eq!(ChannelId::MAX_LEN, 32);
    assert_eq!(PORT, 16725);
}

/// The stats table as `PROTOCOL.md` lists it: one row per entry of
/// `Stats::visit`, in index order.
fn stats_table_rows() -> Vec<String> {
    let mut rows = Vec::new();
    flagpost_core::broker::Stats::default().visit(|index, metric, _| {
        let label = metric
            .label
            .map_or("—".to_string(), |(k, v)| format!("`{k}=\"{v}\"`"));
        let kind = if metric.gauge { "gauge" } else { "counter" };
        rows.push(format!(
            "| {index} | `{}` | {label} | {kind} |",
            metric.name
        ));
    });
    rows
}

#[test]
fn the_stats_table_is_the_cores() {
    let expected = stats_table_rows();
    let documented: Vec<String> = DOC
        .lines()
        .skip_while(|l| !l.starts_with("| index | name | label | kind |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| l.trim().to_string())
        .collect();
    assert!(
        documented == expected,
        "PROTOCOL.md's stats table differs from Stats::visit; it should read:\n\
         | index | name | label | kind |\n|---:|---|---|---|\n{}",
        expected.join("\n")
    );
}

#[test]
fn every_signed_vector_carries_the_tag_of_the_documented_key() {
    use flagpost_core::auth::Key;
    let key = Key::new(&core::array::from_fn::<u8, 32, _>(|i| i as u8)).unwrap();
    let signed = blocks("# signed:");
    assert_eq!(signed.len(), 2, "a signed notify and its ack");
    // a broker with the key answers the notify with exactly the ack
    let mut broker = flagpost_core::broker::BrokerState::new(
        flagpost_core::broker::Config::default(),
        [flagpost_core::broker::ListenerSlot::EMPTY; 1],
        [flagpost_core::loss::SenderSlot::EMPTY; 1],
    );
    broker.set_keys(Some(flagpost_core::auth::Keyring::new(key.clone())));
    let notify = &signed["notify-status-gsm1-ack-signed"].1;
    let ack = broker
        .handle_datagram(flagpost_core::Instant::ZERO, notify)
        .unwrap()
        .ack
        .unwrap();
    let mut buf = [0u8; MAX_DATAGRAM_LEN];
    let n = ack.emit(&mut buf).unwrap();
    assert_eq!(&buf[..n], &signed["ack-delivered-signed"].1[..]);
    for (name, (_, bytes)) in signed {
        let (body, tag) = bytes.split_at(bytes.len() - TAG_LEN);
        assert_eq!(key.tag(&[body]), tag, "{name}");
        match (
            NotifyRepr::parse_bytes(&bytes),
            AckRepr::parse_bytes(&bytes),
        ) {
            (Ok(n), _) => assert_eq!(n.tag.as_ref().map(|t| &t[..]), Some(tag), "{name}"),
            (_, Ok(a)) => assert_eq!(a.tag.as_ref().map(|t| &t[..]), Some(tag), "{name}"),
            (n, a) => panic!("{name}: neither a notify ({n:?}) nor an ack ({a:?})"),
        }
    }
}
