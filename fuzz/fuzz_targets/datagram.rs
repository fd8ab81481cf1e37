//! UDP datagram decoding on arbitrary bytes: the `Datagram` view and every
//! accessor (checked and unchecked), `NotifyRepr::parse_bytes` and
//! `AckRepr::parse_bytes`, and the canonical round trip of whatever parses:
//! emit reproduces the input byte for byte and parses back to the same repr.
#![no_main]

use flagpost_core::wire::datagram::{ACK_HEADER_LEN, NOTIFY_HEADER_LEN, TYPE_ACK, TYPE_NOTIFY};
use flagpost_core::wire::{
    AckRepr, AckResult, BufferTooSmall, Datagram, Error, NotifyRepr, MAGIC, MAX_DATAGRAM_LEN,
    TAG_LEN, VERSION,
};
use libfuzzer_sys::fuzz_target;

/// Reads every accessor; none may panic, checked or not.
fn touch<T: AsRef<[u8]>>(d: &Datagram<T>) -> usize {
    let mut sum = usize::from(d.version())
        + usize::from(d.msg_type())
        + usize::from(d.flags())
        + usize::from(d.is_tagged())
        + usize::from(d.kind_code())
        + usize::from(d.channel_len())
        + (d.sender().0 & 0xff) as usize
        + (d.seq().0 & 0xff) as usize
        + (d.batch() & 0xff) as usize
        + d.channel_bytes().len()
        + d.signed_bytes().len()
        + d.tag().map_or(0, <[u8]>::len);
    if d.check_len().is_ok() {
        sum += 1;
    }
    sum
}

fn check_error(e: Error) {
    assert!(e.index() < Error::COUNT);
    assert_eq!(e.label(), Error::LABELS[e.index()]);
    assert!(!e.to_string().is_empty());
}

fn check_notify(data: &[u8], repr: &NotifyRepr) {
    let d = Datagram::new_checked(data).expect("a parsed notification passes check_len");
    assert_eq!(d.msg_type(), TYPE_NOTIFY);
    assert_eq!(repr.batch, d.batch());
    assert_ne!(repr.batch, 0);
    assert_eq!(repr.ack_requested, d.flags() & 1 != 0);
    assert_eq!(repr.probe, d.flags() & 4 != 0);
    assert_eq!(repr.tag.is_some(), d.is_tagged());
    assert_eq!(
        repr.notification.channel().map(|c| c.as_bytes()),
        (d.channel_len() != 0).then(|| d.channel_bytes())
    );
    let kind = repr.notification.kind();
    assert_eq!(kind.code(), d.kind_code());
    if kind.requires_channel() {
        assert!(
            repr.notification.channel().is_some(),
            "{kind} without a channel"
        );
    }

    // Canonical: emit reproduces the input exactly.
    assert_eq!(repr.buffer_len(), data.len());
    let mut out = [0u8; MAX_DATAGRAM_LEN];
    let n = repr.emit(&mut out).expect("fits MAX_DATAGRAM_LEN");
    assert_eq!(n, data.len(), "re-emitted length of {repr:?}");
    assert_eq!(
        &out[..n],
        data,
        "notify re-emit differs from input: {repr:?}"
    );
    assert_eq!(NotifyRepr::parse_bytes(&out[..n]), Ok(*repr));
    // into a buffer of exactly its size, and not one byte less
    let mut exact = vec![0u8; n];
    assert_eq!(repr.emit(&mut exact), Ok(n));
    assert_eq!(exact, data);
    assert_eq!(
        repr.emit(&mut exact[..n - 1]),
        Err(BufferTooSmall { needed: n })
    );
    // the signer's view: tag_mut covers exactly the tag
    let mut copy = data.to_vec();
    let mut view = Datagram::new_unchecked(&mut copy[..]);
    assert_eq!(
        view.tag_mut().len(),
        if repr.tag.is_some() { TAG_LEN } else { 0 }
    );

    // The ack answering it is never longer and round-trips.
    for result in [AckResult::Delivered, AckResult::Duplicate, AckResult::Stale] {
        let ack = AckRepr::answering(repr, result);
        assert!(ack.buffer_len() <= repr.buffer_len());
        let n = ack.emit(&mut out).expect("fits");
        assert_eq!(AckRepr::parse_bytes(&out[..n]), Ok(ack));
        assert_eq!(
            NotifyRepr::parse_bytes(&out[..n]),
            Err(Error::UnknownType(TYPE_ACK))
        );
    }
}

fn check_ack(data: &[u8], repr: &AckRepr) {
    let d = Datagram::new_checked(data).expect("a parsed ack passes check_len");
    assert_eq!(d.msg_type(), TYPE_ACK);
    assert_eq!(repr.tag.is_some(), d.is_tagged());
    assert_eq!(repr.buffer_len(), data.len());
    let mut out = [0u8; MAX_DATAGRAM_LEN];
    let n = repr.emit(&mut out).expect("fits MAX_DATAGRAM_LEN");
    assert_eq!(&out[..n], data, "ack re-emit differs from input: {repr:?}");
    assert_eq!(AckRepr::parse_bytes(&out[..n]), Ok(*repr));
}

fuzz_target!(|data: &[u8]| {
    // Unchecked views read 0 past the end and never panic.
    let unchecked = Datagram::new_unchecked(data);
    touch(&unchecked);
    let mut copy = data.to_vec();
    Datagram::new_unchecked(&mut copy[..]).tag_mut().fill(0);

    let checked = Datagram::new_checked(data);
    match &checked {
        Ok(d) => {
            touch(d);
            assert!(data.len() <= MAX_DATAGRAM_LEN);
            assert_eq!(data[..2], MAGIC);
            assert_eq!(d.version(), VERSION);
            let tag = if d.is_tagged() { TAG_LEN } else { 0 };
            let expected = match d.msg_type() {
                TYPE_NOTIFY => NOTIFY_HEADER_LEN + usize::from(d.channel_len()) + tag,
                TYPE_ACK => ACK_HEADER_LEN + tag,
                other => panic!("check_len accepted type {other:#x}"),
            };
            assert_eq!(data.len(), expected);
            assert_eq!(d.signed_bytes().len() + tag, data.len());
            assert_eq!(d.tag().map(<[u8]>::len), d.is_tagged().then_some(TAG_LEN));
            if d.msg_type() == TYPE_NOTIFY {
                assert_eq!(d.channel_bytes().len(), usize::from(d.channel_len()));
            }
        }
        Err(e) => check_error(*e),
    }

    let notify = NotifyRepr::parse_bytes(data);
    let ack = AckRepr::parse_bytes(data);
    assert_eq!(NotifyRepr::parse(&unchecked), notify);
    assert_eq!(AckRepr::parse(&unchecked), ack);
    if let Err(e) = checked {
        // Both parsers check the length first and fail the same way.
        assert_eq!(notify, Err(e));
        assert_eq!(ack, Err(e));
    }
    assert!(
        !(notify.is_ok() && ack.is_ok()),
        "bytes parse as both a notification and an ack"
    );
    match notify {
        Ok(repr) => check_notify(data, &repr),
        Err(e) => check_error(e),
    }
    match ack {
        Ok(repr) => check_ack(data, &repr),
        Err(e) => check_error(e),
    }
});
