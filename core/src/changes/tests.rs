//! Tests of the row-change table and the `pgoutput` decoder.

use super::*;
use std::vec::Vec;

fn gsm(n: u32) -> ChannelId {
    ChannelId::from_bytes(std::format!("gsm{n}").as_bytes()).unwrap()
}

#[test]
fn inserts_fold_per_channel_with_their_counts() {
    let mut c = Changes::<8>::new();
    for i in 0..10_000u32 {
        c.add(RowChange::Insert {
            channel: Some(gsm(i % 4)),
        });
    }
    c.add(RowChange::Insert { channel: None });
    let mut out = Vec::new();
    while let Some(n) = c.poll_notification() {
        out.push(n);
    }
    assert_eq!(
        out,
        [
            (Notification::status(Some(gsm(0))), 2500),
            (Notification::status(Some(gsm(1))), 2500),
            (Notification::status(Some(gsm(2))), 2500),
            (Notification::status(Some(gsm(3))), 2500),
            (Notification::status(None), 1),
        ]
    );
    assert_eq!(c.rows(), 10_001);
    assert!(c.is_empty());
}

#[test]
fn updates_deletes_and_truncates_mirror_the_triggers() {
    let mut c = Changes::<8>::new();
    let ch = Some(gsm(1));
    c.add(RowChange::Update {
        channel: ch,
        old: OldRow::StatusChanged,
    });
    c.add(RowChange::Update {
        channel: ch,
        old: OldRow::Unknown,
    });
    c.add(RowChange::Update {
        channel: ch,
        old: OldRow::StatusSame,
    });
    c.add(RowChange::Update {
        channel: ch,
        old: OldRow::Identical,
    });
    c.add(RowChange::Delete);
    c.add(RowChange::Truncate);
    assert_eq!(c.poll_notification(), Some((Notification::status(ch), 2)));
    assert_eq!(
        c.poll_notification(),
        Some((Notification::non_status(None), 3))
    );
    assert_eq!(c.poll_notification(), None);
    // an identical update alone notifies nothing
    c.add(RowChange::Update {
        channel: ch,
        old: OldRow::Identical,
    });
    assert!(c.is_empty());
    // an unreadable change: untargeted status
    c.add(RowChange::Unknown);
    assert_eq!(c.poll_notification(), Some((Notification::status(None), 1)));
}

#[test]
fn committed_transactions_merge_into_a_second_table() {
    let mut txn = Changes::<4>::new();
    let mut ready = Changes::<4>::new();
    for i in 0..3 {
        txn.clear();
        txn.add(RowChange::Insert {
            channel: Some(gsm(i % 2)),
        });
        txn.add(RowChange::Delete);
        while let Some((n, b)) = txn.poll_notification() {
            ready.add_notification(n, b);
        }
    }
    assert_eq!(ready.len(), 3);
    assert_eq!(
        ready.poll_notification(),
        Some((Notification::status(Some(gsm(0))), 2))
    );
    assert_eq!(
        ready.poll_notification(),
        Some((Notification::non_status(None), 3))
    );
    assert_eq!(
        ready.poll_notification(),
        Some((Notification::status(Some(gsm(1))), 1))
    );
    assert_eq!(ready.poll_notification(), None);
}

#[test]
fn a_full_table_folds_into_an_untargeted_status() {
    let mut c = Changes::<3>::new();
    for i in 0..10 {
        c.add(RowChange::Insert {
            channel: Some(gsm(i)),
        });
    }
    let mut out = Vec::new();
    while let Some(n) = c.poll_notification() {
        out.push(n);
    }
    assert_eq!(
        out,
        [
            (Notification::status(Some(gsm(0))), 1),
            (Notification::status(Some(gsm(1))), 1),
            (Notification::status(None), 8),
        ]
    );
    assert_eq!(
        c.overflows(),
        7,
        "gsm3..gsm9; gsm2 was folded into the status they made"
    );
    // nothing lost: every change's listeners are reached
    let total: u32 = out.iter().map(|(_, b)| b).sum();
    assert_eq!(total, 10);
    // clear forgets an uncommitted transaction
    c.add(RowChange::Delete);
    c.clear();
    assert_eq!(c.poll_notification(), None);
}

// pgoutput fixtures
fn relation(oid: u32, name: &str, cols: &[&str]) -> Vec<u8> {
    let mut m = std::vec![b'R'];
    m.extend(oid.to_be_bytes());
    m.extend(b"public\0");
    m.extend(name.as_bytes());
    m.push(0);
    m.push(b'f');
    m.extend((cols.len() as u16).to_be_bytes());
    for c in cols {
        m.push(0);
        m.extend(c.as_bytes());
        m.push(0);
        m.extend(25u32.to_be_bytes());
        m.extend(u32::MAX.to_be_bytes());
    }
    m
}

fn tuple(values: &[Option<&str>]) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend((values.len() as u16).to_be_bytes());
    for v in values {
        match v {
            None => m.push(b'n'),
            Some(t) => {
                m.push(b't');
                m.extend((t.len() as u32).to_be_bytes());
                m.extend(t.as_bytes());
            }
        }
    }
    m
}

const COLS: [&str; 6] = [
    "message_id",
    "channel",
    "status_id",
    "trigger_status_id",
    "ack_status_id",
    "body",
];

fn row(channel: Option<&str>, status: &str, body: &str) -> Vec<u8> {
    tuple(&[
        Some("7"),
        channel,
        Some(status),
        Some("0"),
        Some("0"),
        Some(body),
    ])
}

fn decoder() -> PgOutput<2> {
    let mut d = PgOutput::<2>::new();
    assert_eq!(
        d.decode(&relation(16384, "messages", &COLS)),
        Ok(Decoded::Other)
    );
    d
}

#[test]
fn decodes_inserts_updates_deletes() {
    let mut d = decoder();
    let mut m = std::vec![b'I'];
    m.extend(16384u32.to_be_bytes());
    m.push(b'N');
    m.extend(row(Some("gsm1"), "2", "hi"));
    let ch = Some(ChannelId::new("gsm1").unwrap());
    assert_eq!(
        d.decode(&m),
        Ok(Decoded::Row(RowChange::Insert { channel: ch }))
    );
    // NULL and unfit channels are untargeted
    for bad in [None, Some("x".repeat(33).as_str()), Some("a\u{1}b")] {
        let mut m = std::vec![b'I'];
        m.extend(16384u32.to_be_bytes());
        m.push(b'N');
        m.extend(row(bad, "2", "hi"));
        assert_eq!(
            d.decode(&m),
            Ok(Decoded::Row(RowChange::Insert { channel: None }))
        );
    }
    let update = |old: Option<(u8, Vec<u8>)>, new: Vec<u8>| {
        let mut m = std::vec![b'U'];
        m.extend(16384u32.to_be_bytes());
        if let Some((tag, t)) = old {
            m.push(tag);
            m.extend(t);
        }
        m.push(b'N');
        m.extend(new);
        m
    };
    let cases = [
        (None, OldRow::Unknown),
        (
            Some((b'K', tuple(&[Some("7"), None, None, None, None, None]))),
            OldRow::Unknown,
        ),
        (
            Some((b'O', row(Some("gsm1"), "1", "hi"))),
            OldRow::StatusChanged,
        ),
        (
            Some((b'O', row(Some("gsm1"), "2", "old"))),
            OldRow::StatusSame,
        ),
        (
            Some((b'O', row(Some("gsm1"), "2", "hi"))),
            OldRow::Identical,
        ),
    ];
    for (old, want) in cases {
        let m = update(old, row(Some("gsm1"), "2", "hi"));
        assert_eq!(
            d.decode(&m),
            Ok(Decoded::Row(RowChange::Update {
                channel: ch,
                old: want
            })),
            "{want:?}"
        );
    }
    let mut m = std::vec![b'D'];
    m.extend(16384u32.to_be_bytes());
    m.push(b'O');
    m.extend(row(Some("gsm1"), "2", "hi"));
    assert_eq!(d.decode(&m), Ok(Decoded::Row(RowChange::Delete)));
    let mut m = std::vec![b'T'];
    m.extend(2u32.to_be_bytes());
    m.push(0);
    m.extend(99u32.to_be_bytes());
    m.extend(16384u32.to_be_bytes());
    assert_eq!(d.decode(&m), Ok(Decoded::Row(RowChange::Truncate)));
    let mut m = std::vec![b'C', 0];
    m.extend(1u64.to_be_bytes());
    m.extend(0x1_0000_0020u64.to_be_bytes());
    m.extend(0u64.to_be_bytes());
    assert_eq!(
        d.decode(&m),
        Ok(Decoded::Commit {
            end_lsn: 0x1_0000_0020
        })
    );
}

#[test]
fn other_tables_are_ignored_and_unknown_relations_reported() {
    let mut d = decoder();
    assert_eq!(
        d.decode(&relation(20000, "channels", &["name"])),
        Ok(Decoded::Other)
    );
    let mut m = std::vec![b'I'];
    m.extend(20000u32.to_be_bytes());
    m.push(b'N');
    m.extend(tuple(&[Some("gsm1")]));
    assert_eq!(d.decode(&m), Ok(Decoded::Other));
    let mut m = std::vec![b'D'];
    m.extend(1u32.to_be_bytes());
    assert_eq!(d.decode(&m), Err(DecodeError::UnknownRelation));
    // a third relation replaces one of the two slots, never panics
    assert_eq!(
        d.decode(&relation(30000, "other", &["x"])),
        Ok(Decoded::Other)
    );
    d.reset();
    let mut m = std::vec![b'D'];
    m.extend(16384u32.to_be_bytes());
    assert_eq!(d.decode(&m), Err(DecodeError::UnknownRelation));
}

#[test]
fn truncated_and_malformed_messages_are_errors_never_panics() {
    let mut d = decoder();
    let mut m = std::vec![b'U'];
    m.extend(16384u32.to_be_bytes());
    m.push(b'O');
    m.extend(row(Some("gsm1"), "1", "hi"));
    m.push(b'N');
    m.extend(row(Some("gsm1"), "2", "hi"));
    for cut in 0..m.len() {
        let _ = d.decode(&m[..cut]);
        assert!(cut == 0 || d.decode(&m[..cut]).is_err(), "{cut}");
    }
    let mut bad = m.clone();
    bad[5] = b'X';
    assert_eq!(d.decode(&bad), Err(DecodeError::Malformed));
    // every byte string: no panic
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut fuzz = m.clone();
        let at = (x as usize) % fuzz.len();
        fuzz[at] = (x >> 32) as u8;
        fuzz.truncate(((x >> 40) as usize) % (m.len() + 1));
        let _ = d.decode(&fuzz);
    }
}
