//! Property tests of the wire format (`wire`, and the `ChannelId` validation
//! it relies on).
//!
//! * Decoding never panics: arbitrary, header-shaped and mutated-valid bytes
//!   go through `NotifyRepr`/`AckRepr`/`Framed::parse`,
//!   `frame_len`, and every `Datagram`/`Frame` accessor of an unchecked
//!   view. Whatever parses is canonical: emitting it gives back the same
//!   bytes, also for every single-byte corruption of a valid encoding.
//! * Emit → parse round-trips every valid `NotifyRepr`, `AckRepr` and every
//!   `FrameRepr` variant in each version that has it (`Framed`), with
//!   channels of 1..=32 bytes of UTF-8 (multi-byte
//!   included) without control characters; emitting into a short buffer is
//!   an error, never a panic.
//! * The ack answering a notification is never longer than it.
//! * Stream splitting: frames emitted back to back, cut at arbitrary points
//!   and fed piecewise to a `MAX_FRAME_LEN` receive buffer split with
//!   `frame_len`, come out exactly as they went in.

use flagpost_core::channel::{ChannelId, ChannelIdError};
use flagpost_core::flags::FlagSet;
use flagpost_core::notify::Notification;
use flagpost_core::wire::frame::{Frame, HEADER_LEN};
use flagpost_core::wire::{
    frame_len, AckRepr, AckResult, BufferTooSmall, CloseReason, CloseRepr, Datagram, Error,
    FlagsRepr, FrameRepr, Framed, HelloRepr, NotifyRepr, ProofRepr, SenderId, Seq, StatRepr,
    WelcomeRepr, MAX_DATAGRAM_LEN, MAX_FRAME_LEN, TAG_LEN,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::Config as ProptestConfig;

fn config() -> ProptestConfig {
    // 256 cases, or PROPTEST_CASES: the default reads it, an explicit
    // count would override it
    ProptestConfig {
        // Keep the tree clean: a failure prints its minimal case instead.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------- strategies

fn channel_char() -> impl Strategy<Value = char> {
    prop_oneof![
        6 => proptest::char::range('!', '~'),
        1 => Just(' '),
        3 => select(vec!['é', 'ß', 'ж', '中', '語', '😀', '🚀', '\u{200b}', '\u{fffd}', '\u{10ffff}']),
        2 => any::<char>().prop_filter("no control characters", |c| !c.is_control()),
    ]
}

/// A valid channel id: 1..=32 bytes of UTF-8 without control characters.
fn channel_id() -> impl Strategy<Value = ChannelId> {
    vec(channel_char(), 1..=32).prop_map(|chars| {
        let mut name = String::new();
        for c in chars {
            if name.len() + c.len_utf8() > ChannelId::MAX_LEN {
                break;
            }
            name.push(c);
        }
        ChannelId::new(&name).expect("generated channel ids are valid")
    })
}

fn flag_set() -> impl Strategy<Value = FlagSet> {
    (1u8..16).prop_map(|b| FlagSet::from_bits(b).expect("within ALL"))
}

fn notification() -> impl Strategy<Value = Notification> {
    prop_oneof![
        option::of(channel_id()).prop_map(Notification::status),
        option::of(channel_id()).prop_map(Notification::non_status),
        channel_id().prop_map(Notification::channel_update),
        channel_id().prop_map(Notification::channel_shutdown),
    ]
}

fn tag() -> impl Strategy<Value = Option<[u8; TAG_LEN]>> {
    option::of(any::<[u8; TAG_LEN]>())
}

fn notify_repr() -> impl Strategy<Value = NotifyRepr> {
    (
        notification(),
        any::<u64>(),
        any::<u32>(),
        prop_oneof![1u32..=3, 1u32..=u32::MAX],
        (any::<bool>(), any::<bool>()),
        tag(),
    )
        .prop_map(
            |(notification, sender, seq, batch, (ack_requested, probe), tag)| NotifyRepr {
                notification,
                sender: SenderId(sender),
                seq: Seq(seq),
                batch,
                ack_requested,
                probe,
                tag,
            },
        )
}

fn ack_result() -> impl Strategy<Value = AckResult> {
    select(vec![
        AckResult::Delivered,
        AckResult::Duplicate,
        AckResult::Stale,
    ])
}

fn ack_repr() -> impl Strategy<Value = AckRepr> {
    (any::<u64>(), any::<u32>(), ack_result(), tag()).prop_map(|(sender, seq, result, tag)| {
        AckRepr {
            sender: SenderId(sender),
            seq: Seq(seq),
            result,
            tag,
        }
    })
}

/// Any frame, in version 1 or 2 (the handshake's in 2 only).
fn frame_repr() -> impl Strategy<Value = Framed> {
    (1u8..=2, frame_body()).prop_map(|(version, frame)| Framed::new(version, frame))
}

fn frame_body() -> impl Strategy<Value = FrameRepr> {
    prop_oneof![
        (flag_set(), option::of(channel_id()), any::<u16>()).prop_map(
            |(interest, channel, keepalive_secs)| FrameRepr::Hello(HelloRepr {
                interest,
                channel,
                keepalive_secs,
            })
        ),
        (flag_set(), any::<u16>(), any::<u64>()).prop_map(
            |(interest, keepalive_secs, broker_id)| FrameRepr::Welcome(WelcomeRepr {
                interest,
                keepalive_secs,
                broker_id,
            })
        ),
        (flag_set(), any::<u32>())
            .prop_map(|(flags, raises)| FrameRepr::Flags(FlagsRepr { flags, raises })),
        any::<u32>().prop_map(FrameRepr::Ping),
        any::<u32>().prop_map(FrameRepr::Pong),
        (select(CloseReason::ALL.to_vec()), any::<u8>())
            .prop_map(|(reason, version)| FrameRepr::Close(CloseRepr { reason, version })),
        Just(FrameRepr::StatsRequest),
        (any::<u16>(), any::<u64>())
            .prop_map(|(index, value)| FrameRepr::Stat(StatRepr { index, value })),
        any::<[u8; 16]>().prop_map(FrameRepr::Challenge),
        any::<([u8; 16], [u8; 16])>()
            .prop_map(|(nonce, tag)| FrameRepr::Proof(ProofRepr { nonce, tag })),
        any::<[u8; 16]>().prop_map(FrameRepr::Accept),
    ]
}

fn emit_notify(repr: &NotifyRepr) -> Vec<u8> {
    let mut buf = [0u8; MAX_DATAGRAM_LEN];
    let n = repr
        .emit(&mut buf)
        .expect("MAX_DATAGRAM_LEN holds any notify");
    buf[..n].to_vec()
}

fn emit_ack(repr: &AckRepr) -> Vec<u8> {
    let mut buf = [0u8; MAX_DATAGRAM_LEN];
    let n = repr.emit(&mut buf).expect("MAX_DATAGRAM_LEN holds any ack");
    buf[..n].to_vec()
}

fn emit_frame(repr: &Framed) -> Vec<u8> {
    let mut buf = [0u8; MAX_FRAME_LEN];
    let n = repr.emit(&mut buf).expect("MAX_FRAME_LEN holds any frame");
    buf[..n].to_vec()
}

/// A valid encoding of any message.
fn valid_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        notify_repr().prop_map(|r| emit_notify(&r)),
        ack_repr().prop_map(|r| emit_ack(&r)),
        frame_repr().prop_map(|r| emit_frame(&r)),
    ]
}

/// A header of the right magic and (mostly) version, a type code near the
/// real ones, and random flag/kind bytes with a body whose declared length
/// (for frames) matches what follows.
fn header_shaped_bytes() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![4 => Just(1u8), 1 => any::<u8>()],
        prop_oneof![4 => 0x00u8..=0x16, 1 => any::<u8>()],
        vec(any::<u8>(), 0..=80),
        any::<bool>(),
    )
        .prop_map(|(version, msg_type, rest, frame_shaped)| {
            let mut b = vec![b'F', b'P', version, msg_type];
            if frame_shaped {
                let body = &rest[..rest.len().min(64)];
                let len = u16::try_from(body.len()).expect("at most 64");
                b.extend_from_slice(&len.to_be_bytes());
                b.extend_from_slice(body);
            } else {
                b.extend_from_slice(&rest);
            }
            b
        })
}

/// A valid encoding with a few bytes overwritten, then maybe cut or extended.
fn mutated_bytes() -> impl Strategy<Value = Vec<u8>> {
    (
        valid_bytes(),
        vec((any::<Index>(), any::<u8>()), 0..4),
        prop_oneof![
            2 => Just(None),
            1 => any::<Index>().prop_map(|i| Some(Err(i))),
            1 => vec(any::<u8>(), 1..20).prop_map(|v| Some(Ok(v))),
        ],
    )
        .prop_map(|(mut b, edits, resize)| {
            for (at, value) in edits {
                let i = at.index(b.len());
                b[i] = value;
            }
            match resize {
                None => {}
                Some(Err(cut)) => b.truncate(cut.index(b.len())),
                Some(Ok(extra)) => b.extend_from_slice(&extra),
            }
            b
        })
}

fn any_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => vec(any::<u8>(), 0..=100),
        2 => header_shaped_bytes(),
        3 => mutated_bytes(),
        1 => valid_bytes(),
    ]
}

fn check_error(e: Error) -> Result<(), TestCaseError> {
    prop_assert!(e.index() < Error::COUNT);
    prop_assert_eq!(e.label(), Error::LABELS[e.index()]);
    prop_assert!(!e.to_string().is_empty());
    Ok(())
}

// ---------------------------------------------------------------- properties

proptest! {
    #![proptest_config(config())]

    /// Channel ids accept exactly 1..=32 bytes of UTF-8 without control
    /// characters, and keep the bytes they were given.
    #[test]
    fn channel_id_validation_matches_its_definition(
        bytes in prop_oneof![
            vec(any::<u8>(), 0..40),
            vec(channel_char(), 0..40).prop_map(|c| c.into_iter().collect::<String>().into_bytes()),
            vec(any::<char>(), 0..12).prop_map(|c| c.into_iter().collect::<String>().into_bytes()),
        ],
    ) {
        let expected = if bytes.is_empty() {
            Err(ChannelIdError::Empty)
        } else if bytes.len() > ChannelId::MAX_LEN {
            Err(ChannelIdError::TooLong)
        } else {
            match core::str::from_utf8(&bytes) {
                Err(_) => Err(ChannelIdError::NotUtf8),
                Ok(s) if s.chars().any(char::is_control) => Err(ChannelIdError::ControlCharacter),
                Ok(_) => Ok(()),
            }
        };
        let got = ChannelId::from_bytes(&bytes);
        prop_assert_eq!(got.map(|_| ()), expected);
        if let Ok(id) = got {
            prop_assert_eq!(id.as_bytes(), &bytes[..]);
            prop_assert_eq!(id.len(), bytes.len());
            prop_assert_eq!(id.as_str().as_bytes(), &bytes[..]);
            prop_assert_eq!(ChannelId::new(id.as_str()), Ok(id));
        }
    }

    /// No byte sequence makes a decoder or accessor panic, and whatever
    /// decodes is canonical: it re-emits to the very same bytes.
    #[test]
    fn decoding_never_panics_and_accepts_only_canonical_bytes(bytes in any_bytes()) {
        // Datagrams.
        match NotifyRepr::parse_bytes(&bytes) {
            Ok(repr) => {
                prop_assert_eq!(repr.buffer_len(), bytes.len());
                prop_assert_eq!(emit_notify(&repr), bytes.clone());
                prop_assert!(repr.batch >= 1);
                prop_assert!(!repr.notification.kind().requires_channel()
                    || repr.notification.channel().is_some());
            }
            Err(e) => check_error(e)?,
        }
        match AckRepr::parse_bytes(&bytes) {
            Ok(repr) => {
                prop_assert_eq!(repr.buffer_len(), bytes.len());
                prop_assert_eq!(emit_ack(&repr), bytes.clone());
            }
            Err(e) => check_error(e)?,
        }
        let d = Datagram::new_unchecked(&bytes[..]);
        let _ = (d.version(), d.msg_type(), d.flags(), d.kind_code(), d.sender(), d.seq());
        let _ = (d.batch(), d.channel_len(), d.is_tagged());
        let channel = d.channel_bytes();
        let signed = d.signed_bytes();
        let tag = d.tag();
        prop_assert!(channel.len() <= usize::from(d.channel_len()));
        prop_assert!(signed.len() <= bytes.len());
        prop_assert!(signed == &bytes[..signed.len()]);
        if let Some(tag) = tag {
            prop_assert!(d.is_tagged());
            prop_assert_eq!(tag.len(), TAG_LEN);
        }
        let checked = d.check_len();
        if let Err(e) = checked {
            check_error(e)?;
        }
        prop_assert_eq!(Datagram::new_checked(&bytes[..]).is_ok(), checked.is_ok());
        if checked.is_ok() {
            // After check_len every accessor reads real bytes.
            prop_assert!(bytes.len() <= MAX_DATAGRAM_LEN);
            prop_assert_eq!(tag.is_some(), d.is_tagged());
            prop_assert_eq!(signed.len() + tag.map_or(0, <[u8]>::len), bytes.len());
        }
        let mut copy = bytes.clone();
        let tagged = Datagram::new_unchecked(&mut copy[..]).is_tagged();
        let mut dm = Datagram::new_unchecked(&mut copy[..]);
        let tag_mut_len = dm.tag_mut().len();
        prop_assert!(tag_mut_len == 0 || (tagged && tag_mut_len == TAG_LEN));
        prop_assert_eq!(dm.into_inner().len(), bytes.len());

        // Frames.
        let split = frame_len(&bytes);
        match split {
            Ok(Some(n)) => prop_assert!((HEADER_LEN..=MAX_FRAME_LEN.min(bytes.len())).contains(&n)),
            Ok(None) => prop_assert!(bytes.len() < MAX_FRAME_LEN),
            Err(e) => prop_assert!(matches!(e, Error::BadMagic | Error::TooLong), "{:?}", e),
        }
        let f = Frame::new_unchecked(&bytes[..]);
        let _ = (f.version(), f.frame_type(), f.body());
        let frame_checked = f.check_len();
        prop_assert_eq!(Frame::new_checked(&bytes[..]).is_ok(), frame_checked.is_ok());
        if frame_checked.is_ok() {
            prop_assert_eq!(split, Ok(Some(bytes.len())));
        }
        match Framed::parse(&bytes) {
            Ok(repr) => {
                prop_assert!(frame_checked.is_ok());
                prop_assert_eq!(repr.buffer_len(), bytes.len());
                prop_assert_eq!(emit_frame(&repr), bytes.clone());
            }
            Err(e) => check_error(e)?,
        }
    }

    /// Flipping bits of any one byte of a valid encoding gives bytes that
    /// are either rejected or decode to a message that emits exactly them
    /// (so no reserved, flag or length byte is silently ignored).
    #[test]
    fn any_corrupted_byte_is_rejected_or_canonical(bytes in valid_bytes(), xor in 1u8..=255) {
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= xor;
            if let Ok(repr) = NotifyRepr::parse_bytes(&b) {
                prop_assert_eq!(emit_notify(&repr), b.clone(), "byte {}", i);
            }
            if let Ok(repr) = AckRepr::parse_bytes(&b) {
                prop_assert_eq!(emit_ack(&repr), b.clone(), "byte {}", i);
            }
            if let Ok(repr) = Framed::parse(&b) {
                prop_assert_eq!(emit_frame(&repr), b.clone(), "byte {}", i);
            }
        }
    }

    /// Every valid notification survives emit → parse, at exactly
    /// `buffer_len()` bytes, and only a buffer that short is too small.
    #[test]
    fn notify_round_trips(repr in notify_repr()) {
        let bytes = emit_notify(&repr);
        prop_assert_eq!(bytes.len(), repr.buffer_len());
        prop_assert!(bytes.len() <= MAX_DATAGRAM_LEN);
        prop_assert_eq!(NotifyRepr::parse_bytes(&bytes), Ok(repr));
        // Not mistaken for an ack or a frame.
        prop_assert!(AckRepr::parse_bytes(&bytes).is_err());
        prop_assert!(FrameRepr::parse_bytes(&bytes).is_err());
        let d = Datagram::new_checked(&bytes[..]).expect("emitted datagrams check");
        let channel = repr.notification.channel().map_or(&[][..], ChannelId::as_bytes);
        prop_assert_eq!(d.channel_bytes(), channel);
        prop_assert_eq!(d.tag(), repr.tag.as_ref().map(|t| &t[..]));
        prop_assert_eq!(d.signed_bytes().len(), bytes.len() - repr.tag.map_or(0, |_| TAG_LEN));
        let mut short = vec![0u8; bytes.len() - 1];
        prop_assert_eq!(repr.emit(&mut short), Err(BufferTooSmall { needed: bytes.len() }));
        // Every proper prefix is rejected.
        for cut in 0..bytes.len() {
            prop_assert!(NotifyRepr::parse_bytes(&bytes[..cut]).is_err());
        }
    }

    /// Every valid ack survives emit → parse.
    #[test]
    fn ack_round_trips(repr in ack_repr()) {
        let bytes = emit_ack(&repr);
        prop_assert_eq!(bytes.len(), repr.buffer_len());
        prop_assert_eq!(AckRepr::parse_bytes(&bytes), Ok(repr));
        prop_assert!(NotifyRepr::parse_bytes(&bytes).is_err());
        let mut short = vec![0u8; bytes.len() - 1];
        prop_assert_eq!(repr.emit(&mut short), Err(BufferTooSmall { needed: bytes.len() }));
        for cut in 0..bytes.len() {
            prop_assert!(AckRepr::parse_bytes(&bytes[..cut]).is_err());
        }
    }

    /// The ack answering a notification names it, carries a tag exactly when
    /// it did, and is never longer than it.
    #[test]
    fn ack_is_never_longer_than_the_notify_it_answers(
        notify in notify_repr(),
        result in ack_result(),
    ) {
        let ack = AckRepr::answering(&notify, result);
        prop_assert_eq!(ack.sender, notify.sender);
        prop_assert_eq!(ack.seq, notify.seq);
        prop_assert_eq!(ack.result, result);
        prop_assert_eq!(ack.tag.is_some(), notify.tag.is_some());
        prop_assert!(ack.buffer_len() <= notify.buffer_len());
        let (ack_bytes, notify_bytes) = (emit_ack(&ack), emit_notify(&notify));
        prop_assert!(ack_bytes.len() <= notify_bytes.len());
        prop_assert_eq!(AckRepr::parse_bytes(&ack_bytes), Ok(ack));
    }

    /// Every frame variant survives emit → parse; `frame_len` finds its end
    /// and asks for more on every proper prefix.
    #[test]
    fn frame_round_trips(repr in frame_repr()) {
        let bytes = emit_frame(&repr);
        prop_assert_eq!(bytes.len(), repr.buffer_len());
        prop_assert!(bytes.len() <= MAX_FRAME_LEN);
        prop_assert_eq!(Framed::parse(&bytes), Ok(repr));
        prop_assert_eq!(repr.frame.frame_type(), bytes[3]);
        prop_assert_eq!(repr.version, bytes[2]);
        prop_assert_eq!(frame_len(&bytes), Ok(Some(bytes.len())));
        for cut in 0..bytes.len() {
            prop_assert_eq!(frame_len(&bytes[..cut]), Ok(None));
            prop_assert!(FrameRepr::parse_bytes(&bytes[..cut]).is_err());
        }
        let mut short = vec![0u8; bytes.len() - 1];
        prop_assert_eq!(repr.emit(&mut short), Err(BufferTooSmall { needed: bytes.len() }));
        // A dirty output buffer makes no difference.
        let mut dirty = [0xa5u8; MAX_FRAME_LEN];
        let n = repr.emit(&mut dirty).expect("fits");
        prop_assert_eq!(&dirty[..n], &bytes[..]);
        // Not mistaken for a datagram.
        prop_assert!(NotifyRepr::parse_bytes(&bytes).is_err());
        prop_assert!(AckRepr::parse_bytes(&bytes).is_err());
    }

    /// Frames written back to back and read in arbitrary pieces into a
    /// receive buffer of `MAX_FRAME_LEN` bytes, split with `frame_len`, come
    /// out exactly as they went in; the buffer never fills up without
    /// holding a complete frame.
    #[test]
    fn stream_splitting_recovers_every_frame(
        frames in vec(frame_repr(), 1..12),
        cuts in vec(any::<Index>(), 0..24),
    ) {
        let stream: Vec<u8> = frames.iter().flat_map(emit_frame).collect();
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        points.push(stream.len());
        points.sort_unstable();
        points.dedup();
        let mut chunks = Vec::new();
        let mut from = 0;
        for to in points {
            chunks.push(&stream[from..to]);
            from = to;
        }
        prop_assert_eq!(receive(&chunks)?, frames.clone());
        // The worst case: one byte at a time.
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        prop_assert_eq!(receive(&bytes)?, frames);
    }
}

/// A listener's receive loop: reads each chunk (as much as fits) into a
/// fixed buffer and splits complete frames off its front.
fn receive(chunks: &[&[u8]]) -> Result<Vec<Framed>, TestCaseError> {
    let mut buf = [0u8; MAX_FRAME_LEN];
    let mut fill = 0;
    let mut out = Vec::new();
    for chunk in chunks {
        let mut chunk: &[u8] = chunk;
        loop {
            let n = chunk.len().min(MAX_FRAME_LEN - fill);
            buf[fill..fill + n].copy_from_slice(&chunk[..n]);
            fill += n;
            chunk = &chunk[n..];
            loop {
                match frame_len(&buf[..fill]) {
                    Ok(Some(len)) => {
                        let frame = Framed::parse(&buf[..len]);
                        prop_assert!(frame.is_ok(), "split a bad frame: {:?}", frame);
                        out.extend(frame.ok());
                        buf.copy_within(len..fill, 0);
                        fill -= len;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        prop_assert!(false, "stream rejected: {:?}", e);
                    }
                }
            }
            prop_assert!(fill < MAX_FRAME_LEN, "receive buffer full without a frame");
            if chunk.is_empty() {
                break;
            }
        }
    }
    prop_assert_eq!(fill, 0, "bytes left over");
    Ok(out)
}
