//! The URC line parser against arbitrary bytes, arbitrary chunking and
//! overlong lines.

use flagpost_firmware::urc::{Cnmi, Line, Mem, StatusReport, Stored, UrcParser, MAX_LINE};
use proptest::prelude::*;

fn feed_whole<const N: usize>(bytes: &[u8]) -> (Vec<Line>, UrcParser<N>) {
    let mut p = UrcParser::<N>::new();
    let lines = p.push(bytes).collect();
    (lines, p)
}

/// Feeds `bytes` in chunks ending at `cuts` (any positions, any order),
/// checking the buffer bound after each chunk.
fn feed_chunked<const N: usize>(bytes: &[u8], cuts: &[usize]) -> (Vec<Line>, UrcParser<N>) {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.push(bytes.len());
    cuts.sort_unstable();
    let mut p = UrcParser::<N>::new();
    let mut lines = Vec::new();
    let mut start = 0;
    for end in cuts {
        lines.extend(p.push(&bytes[start..end]));
        assert!(p.buffered() <= N);
        start = end;
    }
    (lines, p)
}

/// One logical unit of modem output: its lines (unterminated) and the
/// items it must yield.
#[derive(Clone, Debug)]
struct Unit {
    lines: Vec<Vec<u8>>,
    items: Vec<Line>,
}

fn unit(line: String, item: Option<Line>) -> Unit {
    Unit {
        lines: vec![line.into_bytes()],
        items: item.into_iter().collect(),
    }
}

fn mem() -> impl Strategy<Value = (&'static str, Mem)> {
    prop_oneof![
        Just(("SM", Mem::Sm)),
        Just(("ME", Mem::Me)),
        Just(("MT", Mem::Mt)),
        Just(("SR", Mem::Sr)),
        Just(("BM", Mem::Bm)),
        Just(("TA", Mem::Ta)),
        Just(("XY", Mem::Other)),
    ]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// An SMS-STATUS-REPORT PDU with an SC address of `sca` octets and a
/// recipient of `digits` digits.
fn status_report_pdu(sca: usize, digits: u8, mr: u8, st: u8) -> Vec<u8> {
    let mut pdu = vec![sca as u8];
    if sca > 0 {
        pdu.push(0x91);
        pdu.extend(std::iter::repeat_n(0x21, sca - 1));
    }
    pdu.extend([0x06, mr, digits, 0x91]);
    pdu.extend(std::iter::repeat_n(0x43, usize::from(digits).div_ceil(2)));
    pdu.extend([0x42, 0x10, 0x22, 0x61, 0x95, 0x80, 0x40]); // SCTS
    pdu.extend([0x42, 0x10, 0x22, 0x61, 0x95, 0x90, 0x40]); // DT
    pdu.push(st);
    pdu
}

/// A line that is never a known result code: `#` and anything but line
/// terminators.
fn garbage() -> impl Strategy<Value = Unit> {
    prop::collection::vec(
        any::<u8>().prop_filter("no terminator", |b| *b != b'\r' && *b != b'\n'),
        0..200,
    )
    .prop_map(|rest| {
        let mut line = vec![b'#'];
        line.extend(rest);
        let item = if line.len() > MAX_LINE {
            Line::TooLong
        } else {
            Line::Other
        };
        Unit {
            lines: vec![line],
            items: vec![item],
        }
    })
}

fn valid() -> impl Strategy<Value = Unit> {
    prop_oneof![
        Just(unit("OK".into(), Some(Line::Ok))),
        Just(unit("ERROR".into(), Some(Line::Error))),
        Just(unit(String::new(), None)),
        Just(unit("   ".into(), None)),
        any::<u16>().prop_map(|n| unit(format!("+CME ERROR: {n}"), Some(Line::CmeError(Some(n))))),
        any::<u16>().prop_map(|n| unit(format!("+CMS ERROR: {n}"), Some(Line::CmsError(Some(n))))),
        (mem(), any::<u16>()).prop_map(|((name, mem), index)| unit(
            format!("+CMTI: \"{name}\",{index}"),
            Some(Line::NewSms(Stored { mem, index }))
        )),
        (mem(), any::<u16>()).prop_map(|((name, mem), index)| unit(
            format!("+CDSI: \"{name}\",{index}"),
            Some(Line::ReportStored(Stored { mem, index }))
        )),
        (any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(fo, mr, st)| unit(
            format!("+CDS: {fo},{mr},\"+491701234567\",145,\"24/01/01,12:00:00+04\",\"24/01/01,12:00:05+04\",{st}"),
            Some(Line::StatusReport(StatusReport { reference: Some(mr), status: Some(st) }))
        )),
        (0usize..12, 0u8..=20, any::<u8>(), any::<u8>()).prop_map(|(sca, digits, mr, st)| {
            let pdu = status_report_pdu(sca, digits, mr, st);
            Unit {
                lines: vec![format!("+CDS: {}", pdu.len() - sca - 1).into_bytes(), hex(&pdu).into_bytes()],
                items: vec![Line::StatusReport(StatusReport { reference: Some(mr), status: Some(st) })],
            }
        }),
        prop_oneof![Just("OK".to_string()), "[a-z]{1,20}"].prop_map(|body| Unit {
            lines: vec![b"+CMT: \"+4917\",,\"24/01/01,12:00:00+04\"".to_vec(), body.into_bytes()],
            items: vec![Line::SmsDirect, Line::Other],
        }),
        any::<[u8; 5]>().prop_map(|[mode, mt, bm, ds, bfr]| unit(
            format!("+CNMI: {mode},{mt},{bm},{ds},{bfr}"),
            Some(Line::Cnmi(Cnmi { mode, mt, bm, ds, bfr }))
        )),
        any::<u8>().prop_map(|m| unit(format!("+CMGF: {m}"), Some(Line::Cmgf(m)))),
        prop_oneof![Just("AT"), Just("ATE0"), Just("AT+CMGF=1"), Just("AT+CNMI=2,1,0,1,0"), Just("AT+CNMI?")]
            .prop_map(|echo| unit(echo.into(), Some(Line::Other))),
        Just(unit("RDY".into(), Some(Line::Other))),
        Just(unit("> ".into(), Some(Line::Other))),
    ]
}

fn terminator() -> impl Strategy<Value = &'static [u8]> {
    prop_oneof![
        Just(&b"\r\n"[..]),
        Just(&b"\n"[..]),
        Just(&b"\r"[..]),
        Just(&b"\r\n\r\n"[..])
    ]
}

/// Units (valid and garbage), each line with its own terminator.
fn stream() -> impl Strategy<Value = (Vec<u8>, Vec<Line>)> {
    prop::collection::vec(
        (prop_oneof![3 => valid(), 1 => garbage()], terminator()),
        0..40,
    )
    .prop_map(|units| {
        let mut bytes = Vec::new();
        let mut items = Vec::new();
        for (unit, end) in units {
            for line in unit.lines {
                bytes.extend(line);
                bytes.extend(end);
            }
            items.extend(unit.items);
        }
        (bytes, items)
    })
}

/// Bytes biased towards what the parser looks for.
fn noise() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..8),
        Just(b"\r\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"+CDS: ".to_vec()),
        Just(b"+CMTI: ".to_vec()),
        Just(b"+CDSI: ".to_vec()),
        Just(b"+CMT: ".to_vec()),
        Just(b"+CNMI: ".to_vec()),
        Just(b"+CME ERROR: ".to_vec()),
        Just(b"\"SM\",".to_vec()),
        Just(b"OK".to_vec()),
        "[0-9A-F,\"]{0,40}".prop_map(String::into_bytes),
    ];
    prop::collection::vec(token, 0..80).prop_map(|t| t.concat())
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_and_stay_bounded(
        bytes in prop_oneof![prop::collection::vec(any::<u8>(), 0..2000), noise()],
        cuts in prop::collection::vec(any::<usize>(), 0..20),
    ) {
        let terminators = bytes.iter().filter(|b| **b == b'\r' || **b == b'\n').count();
        let (lines, p) = feed_chunked::<MAX_LINE>(&bytes, &cuts);
        prop_assert!(lines.len() <= terminators);
        prop_assert!(p.buffered() <= p.capacity());
        let stats = p.stats();
        // every overlong line is one item: `TooLong`, or an undecoded status
        // report when it was the PDU after `+CDS: <length>`
        let too_long = lines.iter().filter(|l| **l == Line::TooLong).count();
        let unknown = lines.iter().filter(|l| **l == Line::StatusReport(StatusReport::UNKNOWN)).count();
        prop_assert!(too_long <= stats.too_long as usize);
        prop_assert!(stats.too_long as usize <= too_long + unknown);
        // a tiny buffer too
        let (small, p) = feed_chunked::<4>(&bytes, &cuts);
        prop_assert!(small.len() <= terminators);
        prop_assert!(p.buffered() <= 4);
    }

    #[test]
    fn chunking_never_changes_the_items((bytes, expected) in stream(), cuts in prop::collection::vec(any::<usize>(), 0..30)) {
        let (whole, p) = feed_whole::<MAX_LINE>(&bytes);
        prop_assert_eq!(&whole, &expected);
        prop_assert_eq!(p.buffered(), 0);
        prop_assert_eq!(p.stats().missing_pdu, 0);
        let (chunked, q) = feed_chunked::<MAX_LINE>(&bytes, &cuts);
        prop_assert_eq!(&chunked, &expected);
        prop_assert_eq!(p.stats(), q.stats());
        // byte at a time
        let mut r = UrcParser::<MAX_LINE>::new();
        let single: Vec<Line> = bytes.iter().filter_map(|b| r.feed(*b)).collect();
        prop_assert_eq!(&single, &expected);
    }

    #[test]
    fn an_overlong_line_is_reported_once(
        (before, before_items) in stream(),
        long in prop::collection::vec(any::<u8>().prop_filter("no terminator", |b| *b != b'\r' && *b != b'\n'), MAX_LINE + 1..1000),
        end in terminator(),
        next in valid(),
        next_end in terminator(),
        cuts in prop::collection::vec(any::<usize>(), 0..30),
    ) {
        let mut bytes = before;
        bytes.extend(&long);
        bytes.extend(end);
        for line in &next.lines {
            bytes.extend(line);
            bytes.extend(next_end);
        }
        let mut expected = before_items;
        expected.push(Line::TooLong);
        expected.extend(next.items);
        let before_too_long = expected.iter().filter(|l| **l == Line::TooLong).count() - 1;
        let (lines, p) = feed_chunked::<MAX_LINE>(&bytes, &cuts);
        prop_assert_eq!(&lines, &expected);
        prop_assert_eq!(p.stats().too_long as usize, before_too_long + 1);
    }
}

#[test]
fn a_line_of_exactly_the_capacity_fits() {
    let mut line = vec![b'#'; MAX_LINE];
    line.extend(b"\r\n");
    assert_eq!(feed_whole::<MAX_LINE>(&line).0, [Line::Other]);
    line.insert(0, b'#');
    assert_eq!(feed_whole::<MAX_LINE>(&line).0, [Line::TooLong]);
}

#[test]
fn an_overlong_pdu_still_reports_a_status_report() {
    let mut bytes = b"+CDS: 140\r\n".to_vec();
    bytes.extend(std::iter::repeat_n(b'0', 280));
    bytes.extend(b"\r\nOK\r\n");
    let (lines, p) = feed_whole::<MAX_LINE>(&bytes);
    assert_eq!(lines, [Line::StatusReport(StatusReport::UNKNOWN), Line::Ok]);
    assert_eq!(p.stats().too_long, 1);
}

#[test]
fn a_pdu_that_is_not_a_status_report_is_reported_undecoded() {
    // first octet 0x04: an SMS-DELIVER, not a status report
    let (lines, _) = feed_whole::<MAX_LINE>(b"+CDS: 3\r\n00042A07\r\n");
    assert_eq!(lines, [Line::StatusReport(StatusReport::UNKNOWN)]);
}

#[test]
fn binary_noise_between_lines_is_other() {
    let (lines, _) =
        feed_whole::<MAX_LINE>(b"\x00\xff\xfe\r\n\x00OK\x00\r\n+CMTI: \"SM\",\r\n+CMTI: SM,7\r\n");
    assert_eq!(
        lines,
        [
            Line::Other,
            Line::Ok,
            Line::Other,
            Line::NewSms(Stored {
                mem: Mem::Sm,
                index: 7
            })
        ]
    );
}

#[test]
fn clear_forgets_the_partial_line() {
    let mut p = UrcParser::<MAX_LINE>::new();
    assert_eq!(p.push(b"+CDS: 25\r\n+CM").count(), 0);
    assert_eq!(p.buffered(), 3);
    p.clear();
    assert_eq!(p.buffered(), 0);
    let lines: Vec<Line> = p.push(b"TI\r\nOK\r\n").collect();
    assert_eq!(lines, [Line::Other, Line::Ok]);
    assert_eq!(p.stats().missing_pdu, 0);
}
