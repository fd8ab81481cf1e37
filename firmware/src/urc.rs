//! The line parser for the modem's serial output: bytes in, in whatever
//! chunks the UART delivers, typed [`Line`]s out — final result codes,
//! unsolicited result codes (URCs) and the information responses the
//! [`modem`](crate::modem) driver asks for.
//!
//! The parser owns one fixed line buffer of `N` bytes ([`MAX_LINE`] by
//! default) and nothing else. A line ends at `\r` or `\n` (so `\r\n`, bare
//! `\n` and bare `\r` all work; empty lines are skipped). A line longer than
//! `N` bytes is discarded in full up to its terminator and reported once as
//! [`Line::TooLong`]; it never turns into several bogus lines. Nothing here
//! can panic, whatever the bytes: binary noise becomes [`Line::Other`].
//!
//! Two URCs span two lines, and the parser pairs them: `+CDS: <length>` (a
//! status report in PDU mode) is followed by the PDU in hex, and `+CMT: …`
//! (an SMS routed to the terminal without being stored) is followed by the
//! message text. The header line yields nothing; the second line yields the
//! item ([`Line::StatusReport`]) or is swallowed as payload (after `+CMT:`,
//! so that a message reading `OK` is not taken for a result code). If the
//! line after `+CDS: <length>` is not hex, it is parsed as an ordinary line
//! (a lost PDU must not swallow an `OK`) and counted in
//! [`UrcStats::missing_pdu`].
//!
//! The `> ` prompt (for `AT+CMGS`, which Flagpost never sends) is not
//! terminated and would be glued to the next line; it is not handled.
//!
//! ```
//! use flagpost_firmware::urc::{Line, Mem, Stored, UrcParser};
//!
//! let mut p: UrcParser = UrcParser::new();
//! let mut lines = Vec::new();
//! for chunk in [&b"\r\n+CMTI: \"SM\""[..], b",3\r\n\r\nO", b"K\r\n"] {
//!     lines.extend(p.push(chunk));
//! }
//! assert_eq!(lines, [Line::NewSms(Stored { mem: Mem::Sm, index: 3 }), Line::Ok]);
//! ```

/// The default line capacity in bytes: longer lines are dropped as
/// [`Line::TooLong`].
pub const MAX_LINE: usize = 128;

/// A preferred message storage named in `+CMTI`/`+CDSI` (3GPP TS 27.005
/// §3.1 `<mem>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Mem {
    /// `"SM"`: the SIM.
    Sm,
    /// `"ME"`: the modem's own memory.
    Me,
    /// `"MT"`: SIM and modem memory together.
    Mt,
    /// `"SR"`: status report storage.
    Sr,
    /// `"BM"`: broadcast message storage.
    Bm,
    /// `"TA"`: terminal adaptor storage.
    Ta,
    /// A storage name not listed here.
    Other,
}

impl Mem {
    /// The storage named by `name` (quotes already removed).
    pub fn from_name(name: &[u8]) -> Mem {
        match name {
            b"SM" => Mem::Sm,
            b"ME" => Mem::Me,
            b"MT" => Mem::Mt,
            b"SR" => Mem::Sr,
            b"BM" => Mem::Bm,
            b"TA" => Mem::Ta,
            _ => Mem::Other,
        }
    }

    /// The storage's name as the modem spells it (`"?"` for [`Mem::Other`]).
    pub fn name(self) -> &'static str {
        match self {
            Mem::Sm => "SM",
            Mem::Me => "ME",
            Mem::Mt => "MT",
            Mem::Sr => "SR",
            Mem::Bm => "BM",
            Mem::Ta => "TA",
            Mem::Other => "?",
        }
    }
}

/// Where a message or report was stored: `+CMTI`/`+CDSI: <mem>,<index>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Stored {
    /// The storage.
    pub mem: Mem,
    /// The location in that storage (for `AT+CMGR`).
    pub index: u16,
}

/// A status report routed directly to us (`+CDS`), as far as it could be
/// decoded: in text mode `+CDS: <fo>,<mr>,[<ra>],[<tora>],<scts>,<dt>,<st>`,
/// in PDU mode the SMS-STATUS-REPORT TPDU (3GPP TS 23.040 §9.2.2.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct StatusReport {
    /// TP-MR: the reference of the message this report is about.
    pub reference: Option<u8>,
    /// TP-ST: the status (`0x00` received by the recipient, `0x20..=0x3F`
    /// still trying, `0x40..` failed).
    pub status: Option<u8>,
}

impl StatusReport {
    /// A report that arrived but could not be decoded.
    pub const UNKNOWN: StatusReport = StatusReport {
        reference: None,
        status: None,
    };
}

/// The new-message indication settings, `+CNMI: <mode>,<mt>,<bm>,<ds>,<bfr>`
/// (3GPP TS 27.005 §3.4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Cnmi {
    /// How URCs are buffered while the serial link is busy.
    pub mode: u8,
    /// How SMS-DELIVERs are indicated (1: stored, `+CMTI`).
    pub mt: u8,
    /// How cell broadcasts are indicated (0: not at all).
    pub bm: u8,
    /// How status reports are indicated (1: `+CDS`, 2: stored, `+CDSI`).
    pub ds: u8,
    /// What happens to buffered URCs when `mode` becomes 1..=3.
    pub bfr: u8,
}

/// One parsed line (or line pair) of modem output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Line {
    /// The final result code `OK`.
    Ok,
    /// The final result code `ERROR`.
    Error,
    /// `+CME ERROR: <n>` (`None` when the code is text or unreadable).
    CmeError(Option<u16>),
    /// `+CMS ERROR: <n>` (`None` when the code is text or unreadable).
    CmsError(Option<u16>),
    /// `+CMTI: <mem>,<index>`: a new SMS was stored.
    NewSms(Stored),
    /// `+CDSI: <mem>,<index>`: a status report was stored.
    ReportStored(Stored),
    /// `+CDS`: a status report routed directly (text mode, or the PDU line
    /// after `+CDS: <length>`).
    StatusReport(StatusReport),
    /// `+CMT`: an SMS routed directly without being stored (its text, the
    /// next line, is skipped).
    SmsDirect,
    /// `+CNMI: …`, the answer to `AT+CNMI?`.
    Cnmi(Cnmi),
    /// `+CMGF: <mode>`, the answer to `AT+CMGF?` (1: text mode).
    Cmgf(u8),
    /// Anything else: echo of our commands, unknown URCs, banners, noise, a
    /// known prefix with unreadable fields.
    Other,
    /// A line longer than the buffer, dropped in full.
    TooLong,
}

/// Counters of the parser's life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct UrcStats {
    /// Non-empty lines seen (overlong ones included).
    pub lines: u32,
    /// Lines dropped for being longer than the buffer.
    pub too_long: u32,
    /// Lines with a known prefix whose fields could not be read.
    pub malformed: u32,
    /// `+CDS: <length>` headers not followed by a hex PDU line.
    pub missing_pdu: u32,
}

/// What the next line is expected to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Any line.
    Line,
    /// The hex PDU after `+CDS: <length>`.
    CdsPdu,
    /// The text after `+CMT: …`.
    SmsBody,
}

/// The incremental line parser, with a line buffer of `N` bytes.
///
/// Feed it with [`feed`](Self::feed) (one byte, at most one line out) or
/// [`push`](Self::push) (a chunk, an iterator of lines). Its memory is the
/// struct itself: `N` bytes plus a few words.
#[derive(Clone, Debug)]
pub struct UrcParser<const N: usize = MAX_LINE> {
    buf: [u8; N],
    len: usize,
    discarding: bool,
    expect: Expect,
    stats: UrcStats,
}

impl<const N: usize> Default for UrcParser<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> UrcParser<N> {
    /// An empty parser.
    pub const fn new() -> Self {
        UrcParser {
            buf: [0; N],
            len: 0,
            discarding: false,
            expect: Expect::Line,
            stats: UrcStats {
                lines: 0,
                too_long: 0,
                malformed: 0,
                missing_pdu: 0,
            },
        }
    }

    /// The line capacity, `N`.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// Bytes of the current, unterminated line held in the buffer (never
    /// more than `N`; 0 while an overlong line is being discarded).
    pub fn buffered(&self) -> usize {
        self.len
    }

    /// The counters.
    pub fn stats(&self) -> UrcStats {
        self.stats
    }

    /// Forgets the partial line and any pending `+CDS`/`+CMT` pairing (for
    /// example after the modem was reset). The counters are kept.
    pub fn clear(&mut self) {
        self.len = 0;
        self.discarding = false;
        self.expect = Expect::Line;
    }

    /// Feeds one byte; returns the line it completes, if any.
    pub fn feed(&mut self, byte: u8) -> Option<Line> {
        if byte == b'\r' || byte == b'\n' {
            return self.end_line();
        }
        if self.discarding {
            return None;
        }
        match self.buf.get_mut(self.len) {
            Some(slot) => {
                *slot = byte;
                self.len += 1;
            }
            None => {
                self.discarding = true;
                self.len = 0;
            }
        }
        None
    }

    /// Feeds a chunk of bytes; the iterator yields the lines it completes.
    ///
    /// Bytes are consumed as the iterator advances: drain it (a `for` loop,
    /// `extend`) — bytes after the point where iteration stops are not fed.
    #[must_use = "the bytes are parsed as the iterator is drained"]
    pub fn push<'a>(&'a mut self, bytes: &'a [u8]) -> Lines<'a, N> {
        Lines {
            parser: self,
            bytes: bytes.iter(),
        }
    }

    fn end_line(&mut self) -> Option<Line> {
        let len = core::mem::take(&mut self.len);
        if core::mem::take(&mut self.discarding) {
            self.stats.lines = self.stats.lines.saturating_add(1);
            self.stats.too_long = self.stats.too_long.saturating_add(1);
            // An overlong PDU still means a status report arrived.
            return Some(match core::mem::replace(&mut self.expect, Expect::Line) {
                Expect::CdsPdu => Line::StatusReport(StatusReport::UNKNOWN),
                Expect::Line | Expect::SmsBody => Line::TooLong,
            });
        }
        let line = trim(self.buf.get(..len).unwrap_or(&[]));
        if line.is_empty() {
            return None;
        }
        self.stats.lines = self.stats.lines.saturating_add(1);
        match core::mem::replace(&mut self.expect, Expect::Line) {
            Expect::SmsBody => return Some(Line::Other),
            Expect::CdsPdu if is_hex(line) => {
                return Some(Line::StatusReport(decode_status_report_pdu(line)))
            }
            Expect::CdsPdu => {
                self.stats.missing_pdu = self.stats.missing_pdu.saturating_add(1);
            }
            Expect::Line => {}
        }
        let (item, expect) = classify(line);
        self.expect = expect;
        if item == Some(Line::Other) && is_known_prefix(line) {
            self.stats.malformed = self.stats.malformed.saturating_add(1);
        }
        item
    }
}

/// The lines completed by one [`UrcParser::push`].
#[derive(Debug)]
pub struct Lines<'a, const N: usize> {
    parser: &'a mut UrcParser<N>,
    bytes: core::slice::Iter<'a, u8>,
}

impl<const N: usize> Iterator for Lines<'_, N> {
    type Item = Line;

    fn next(&mut self) -> Option<Line> {
        for &b in self.bytes.by_ref() {
            if let Some(line) = self.parser.feed(b) {
                return Some(line);
            }
        }
        None
    }
}

/// The prefixes [`classify`] reads fields after.
const PREFIXES: [&[u8]; 8] = [
    b"+CME ERROR:",
    b"+CMS ERROR:",
    b"+CMTI:",
    b"+CDSI:",
    b"+CDS:",
    b"+CMT:",
    b"+CNMI:",
    b"+CMGF:",
];

fn is_known_prefix(line: &[u8]) -> bool {
    PREFIXES.iter().any(|p| line.starts_with(p))
}

/// One complete, trimmed, non-empty line → its item and what comes next.
fn classify(line: &[u8]) -> (Option<Line>, Expect) {
    let item = match line {
        b"OK" => Line::Ok,
        b"ERROR" => Line::Error,
        _ => {
            if let Some(rest) = line.strip_prefix(b"+CME ERROR:") {
                Line::CmeError(parse_num(trim(rest)))
            } else if let Some(rest) = line.strip_prefix(b"+CMS ERROR:") {
                Line::CmsError(parse_num(trim(rest)))
            } else if let Some(rest) = line.strip_prefix(b"+CMTI:") {
                parse_stored(rest).map_or(Line::Other, Line::NewSms)
            } else if let Some(rest) = line.strip_prefix(b"+CDSI:") {
                parse_stored(rest).map_or(Line::Other, Line::ReportStored)
            } else if let Some(rest) = line.strip_prefix(b"+CDS:") {
                let rest = trim(rest);
                if parse_num::<u16>(rest).is_some() {
                    // PDU mode: `+CDS: <length>`, the PDU follows.
                    return (None, Expect::CdsPdu);
                }
                Line::StatusReport(parse_status_report_text(rest))
            } else if line.starts_with(b"+CMT:") {
                return (Some(Line::SmsDirect), Expect::SmsBody);
            } else if let Some(rest) = line.strip_prefix(b"+CNMI:") {
                parse_cnmi(rest).map_or(Line::Other, Line::Cnmi)
            } else if let Some(rest) = line.strip_prefix(b"+CMGF:") {
                parse_num(trim(rest)).map_or(Line::Other, Line::Cmgf)
            } else {
                Line::Other
            }
        }
    };
    (Some(item), Expect::Line)
}

/// Strips ASCII whitespace (and NUL, which some modems emit at power-up)
/// from both ends.
fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if first.is_ascii_whitespace() || *first == 0 {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if last.is_ascii_whitespace() || *last == 0 {
            s = rest;
        } else {
            break;
        }
    }
    s
}

/// A decimal number of type `T`, the whole of `s`; `None` if empty, not
/// decimal, or out of range.
fn parse_num<T: TryFrom<u32>>(s: &[u8]) -> Option<T> {
    if s.is_empty() || s.len() > 9 {
        return None;
    }
    let mut n: u32 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u32::from(b - b'0');
    }
    T::try_from(n).ok()
}

/// A field with surrounding whitespace and one pair of quotes removed.
fn unquote(s: &[u8]) -> &[u8] {
    let s = trim(s);
    match s {
        [b'"', inner @ .., b'"'] => inner,
        _ => s,
    }
}

/// Comma-separated fields, commas inside double quotes not splitting.
struct Fields<'a> {
    rest: Option<&'a [u8]>,
}

fn fields(s: &[u8]) -> Fields<'_> {
    Fields { rest: Some(s) }
}

impl<'a> Iterator for Fields<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let s = self.rest?;
        let mut quoted = false;
        for (i, &b) in s.iter().enumerate() {
            match b {
                b'"' => quoted = !quoted,
                b',' if !quoted => {
                    self.rest = s.get(i + 1..);
                    return s.get(..i);
                }
                _ => {}
            }
        }
        self.rest = None;
        Some(s)
    }
}

/// `<mem>,<index>` (further fields, which some modems add, ignored).
fn parse_stored(rest: &[u8]) -> Option<Stored> {
    let mut f = fields(rest);
    let mem = Mem::from_name(unquote(f.next()?));
    let index = parse_num(trim(f.next()?))?;
    Some(Stored { mem, index })
}

/// `<mode>,<mt>,<bm>,<ds>,<bfr>`, exactly five numbers.
fn parse_cnmi(rest: &[u8]) -> Option<Cnmi> {
    let mut f = fields(rest);
    let mut next = || parse_num::<u8>(trim(f.next()?));
    let cnmi = Cnmi {
        mode: next()?,
        mt: next()?,
        bm: next()?,
        ds: next()?,
        bfr: next()?,
    };
    match f.next() {
        None => Some(cnmi),
        Some(_) => None,
    }
}

/// Text mode: `<fo>,<mr>,[<ra>],[<tora>],<scts>,<dt>,<st>`. The reference is
/// the second field, the status the last (when there are at least three).
fn parse_status_report_text(rest: &[u8]) -> StatusReport {
    let mut count = 0usize;
    let mut reference = None;
    let mut last = None;
    for field in fields(rest) {
        if count == 1 {
            reference = parse_num(trim(field));
        }
        count = count.saturating_add(1);
        last = Some(field);
    }
    let status = if count >= 3 {
        last.and_then(|f| parse_num(trim(f)))
    } else {
        None
    };
    StatusReport { reference, status }
}

fn is_hex(s: &[u8]) -> bool {
    !s.is_empty() && s.len().is_multiple_of(2) && s.iter().all(u8::is_ascii_hexdigit)
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Octet `i` of a hex string.
fn octet(hex: &[u8], i: usize) -> Option<u8> {
    let at = i.checked_mul(2)?;
    let hi = hex_digit(*hex.get(at)?)?;
    let lo = hex_digit(*hex.get(at.checked_add(1)?)?)?;
    Some(hi << 4 | lo)
}

/// The SC address then an SMS-STATUS-REPORT TPDU: first octet (TP-MTI
/// `0b10`), TP-MR, TP-RA (digit count, type, BCD digits), TP-SCTS (7
/// octets), TP-DT (7 octets), TP-ST.
fn decode_status_report_pdu(hex: &[u8]) -> StatusReport {
    let decode = || -> (Option<u8>, Option<u8>) {
        let Some(sca_len) = octet(hex, 0) else {
            return (None, None);
        };
        let mut i = 1 + usize::from(sca_len);
        match octet(hex, i) {
            Some(fo) if fo & 0x03 == 0x02 => {}
            _ => return (None, None),
        }
        i += 1;
        let reference = octet(hex, i);
        i += 1;
        let Some(ra_digits) = octet(hex, i) else {
            return (reference, None);
        };
        i += 2 + usize::from(ra_digits).div_ceil(2) + 14;
        (reference, octet(hex, i))
    };
    let (reference, status) = decode();
    StatusReport { reference, status }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn parse(bytes: &[u8]) -> (Vec<Line>, UrcStats) {
        let mut p: UrcParser = UrcParser::new();
        let lines = p.push(bytes).collect();
        (lines, p.stats())
    }

    #[test]
    fn result_codes_and_errors() {
        let (lines, _) = parse(
            b"OK\r\nERROR\r\n+CME ERROR: 10\r\n+CMS ERROR:500\r\n+CME ERROR: SIM not inserted\r\n",
        );
        assert_eq!(
            lines,
            [
                Line::Ok,
                Line::Error,
                Line::CmeError(Some(10)),
                Line::CmsError(Some(500)),
                Line::CmeError(None)
            ]
        );
    }

    #[test]
    fn stored_indications() {
        let (lines, _) = parse(
            b"+CMTI: \"SM\",3\r\n+CDSI: \"SR\",12\r\n+CMTI: \"XX\",65535\r\n+CMTI: \"ME\",65536\n",
        );
        assert_eq!(
            lines,
            [
                Line::NewSms(Stored {
                    mem: Mem::Sm,
                    index: 3
                }),
                Line::ReportStored(Stored {
                    mem: Mem::Sr,
                    index: 12
                }),
                Line::NewSms(Stored {
                    mem: Mem::Other,
                    index: 65535
                }),
                Line::Other,
            ]
        );
    }

    #[test]
    fn cds_text_mode() {
        let (lines, _) =
            parse(b"+CDS: 6,46,\"+491701234567\",145,\"24/01/01,12:00:00+04\",\"24/01/01,12:00:05+04\",0\r\n");
        assert_eq!(
            lines,
            [Line::StatusReport(StatusReport {
                reference: Some(46),
                status: Some(0)
            })]
        );
    }

    #[test]
    fn cds_pdu_mode() {
        // SCA 07 91 447758100650, fo 06, mr 2A, RA 0B 91 1326880736F4,
        // SCTS, DT, ST 46 (failed: SM validity period expired)
        let pdu = b"+CDS: 25\r\n\r\n079144775810065006\
2A0B911326880736F4421022619580404210226195904046\r\n";
        let (lines, stats) = parse(pdu);
        assert_eq!(
            lines,
            [Line::StatusReport(StatusReport {
                reference: Some(0x2A),
                status: Some(0x46)
            })]
        );
        assert_eq!(stats.missing_pdu, 0);
    }

    #[test]
    fn cds_header_without_pdu_does_not_swallow_ok() {
        let (lines, stats) = parse(b"+CDS: 25\r\nOK\r\n");
        assert_eq!(lines, [Line::Ok]);
        assert_eq!(stats.missing_pdu, 1);
    }

    #[test]
    fn cmt_body_is_not_a_result_code() {
        let (lines, _) = parse(b"+CMT: \"+4917\",,\"24/01/01,12:00:00+04\"\r\nOK\r\nOK\r\n");
        assert_eq!(lines, [Line::SmsDirect, Line::Other, Line::Ok]);
    }

    #[test]
    fn information_responses() {
        let (lines, stats) =
            parse(b"+CNMI: 2,1,0,1,0\r\n+CMGF: 1\r\n+CMGF: (0,1)\r\n+CNMI: 2,1\r\n");
        assert_eq!(
            lines,
            [
                Line::Cnmi(Cnmi {
                    mode: 2,
                    mt: 1,
                    bm: 0,
                    ds: 1,
                    bfr: 0
                }),
                Line::Cmgf(1),
                Line::Other,
                Line::Other
            ]
        );
        assert_eq!(stats.malformed, 2);
    }

    #[test]
    fn terminators_and_echo() {
        let (lines, _) = parse(b"AT\r\r\nOK\r\n\nOK\rOK\n");
        assert_eq!(lines, [Line::Other, Line::Ok, Line::Ok, Line::Ok]);
    }

    #[test]
    fn overlong_line_is_dropped_once() {
        let mut p: UrcParser<8> = UrcParser::new();
        let lines: Vec<Line> = p.push(b"0123456789abcdef\r\nOK\r\n12345678\r\n").collect();
        assert_eq!(lines, [Line::TooLong, Line::Ok, Line::Other]);
        assert_eq!(p.stats().too_long, 1);
    }

    #[test]
    fn pdu_decoding_is_bounded() {
        assert_eq!(decode_status_report_pdu(b"FF"), StatusReport::UNKNOWN);
        assert_eq!(decode_status_report_pdu(b"0002"), StatusReport::UNKNOWN);
        assert_eq!(
            decode_status_report_pdu(b"000207FF"),
            StatusReport {
                reference: Some(7),
                status: None
            }
        );
    }
}
