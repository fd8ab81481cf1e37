//! How the report prints numbers, ratios and dates ([`fmt_num`],
//! [`fmt_int`], [`fmt_ratio`], [`ratio_or_dash`], [`utc_minutes`]) and the
//! text every markdown table uses: a safe cell and a target's verdict.

use std::time::{SystemTime, UNIX_EPOCH};

/// A number as the tables print it: integers with thousands separators
/// from 1,000 on, otherwise three significant digits; `—` if not finite.
pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "—".into();
    }
    if v.abs() >= 999.5 {
        let out = fmt_int(v.abs().round() as u64);
        return if v < 0.0 { format!("-{out}") } else { out };
    }
    if v == 0.0 {
        return "0".into();
    }
    let magnitude = v.abs().log10().floor() as i32;
    let decimals = (2 - magnitude).clamp(0, 8) as usize;
    format!("{v:.decimals$}")
}

/// An integer with thousands separators: 1,000,000.
pub fn fmt_int(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A ratio with at least two significant digits (0.00028, 0.031, 1.27) and
/// no more than it needs from 10 on (43.5, 192).
pub fn fmt_ratio(r: f64) -> String {
    if !r.is_finite() {
        return "—".into();
    }
    let decimals = if r >= 100.0 {
        0
    } else if r >= 10.0 {
        1
    } else if r > 0.0 {
        (1 - r.log10().floor() as i32).max(2) as usize
    } else {
        2
    };
    format!("{r:.decimals$}")
}

/// `a / b` formatted with [`fmt_ratio`], `—` when either is not positive.
pub fn ratio_or_dash(a: f64, b: f64) -> String {
    if a > 0.0 && b > 0.0 && a.is_finite() && b.is_finite() {
        fmt_ratio(a / b)
    } else {
        "—".into()
    }
}

/// Text safe in a markdown table cell: no `|`, no line break.
pub(super) fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// ✓, ✗ or `?` (could not be told).
pub(super) fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "✓",
        Some(false) => "✗",
        None => "?",
    }
}

/// `t` as `YYYY-MM-DD HH:MM UTC`.
pub fn utc_minutes(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Unit;
    use std::time::Duration;

    #[test]
    fn numbers() {
        assert_eq!(fmt_num(48.44), "48.4");
        assert_eq!(fmt_num(175.3), "175");
        assert_eq!(fmt_num(5.123), "5.12");
        assert_eq!(fmt_num(1197.4), "1,197");
        assert_eq!(fmt_num(3_807_288.0), "3,807,288");
        assert_eq!(fmt_num(0.0), "0");
        assert_eq!(fmt_int(50), "50");
        assert_eq!(fmt_int(20_000), "20,000");
        assert_eq!(fmt_num(f64::NAN), "—");
        assert_eq!(fmt_ratio(1.6), "1.60");
        assert_eq!(fmt_ratio(0.000_28), "0.00028");
        assert_eq!(fmt_ratio(43.46), "43.5");
        assert_eq!(fmt_ratio(192.4), "192");
        assert_eq!(Unit::PerSecond.format(47.04e6), "47.0 M/s");
        assert_eq!(Unit::PerSecond.format(8_676_013.0), "8.68 M/s");
        assert_eq!(Unit::PerSecond.format(339_985.2), "339,985 /s");
        assert_eq!(ratio_or_dash(1.0, 0.0), "—");
        assert_eq!(utc_minutes(UNIX_EPOCH), "1970-01-01 00:00 UTC");
        // 2026-11-26 05:12:17 UTC
        let t = UNIX_EPOCH + Duration::from_secs(1_795_669_937);
        assert_eq!(utc_minutes(t), "2026-11-26 05:12 UTC");
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
