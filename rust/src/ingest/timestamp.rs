//! Event times: parsing the accepted forms into microseconds since the Unix
//! epoch (UTC), and writing them as PostgreSQL `timestamptz` text.
//!
//! Accepted forms:
//! - RFC 3339 with an offset: `2026-11-26T10:00:00Z`,
//!   `2026-11-26 10:00:00.123456789+01:00` (`T`, `t` or a space between date
//!   and time; `Z`/`z` or `±hh:mm`; 1 to 9 fractional digits, rounded to the
//!   microsecond, half up; a leap second `:60` is the next minute's `:00`, as
//!   in PostgreSQL). A time without an offset is refused: it would be
//!   ambiguous.
//! - A JSON number of epoch seconds, or of milliseconds when its absolute
//!   value is at least 1e11 (1e11 s is in the year 5138), fractions allowed;
//!   converted exactly from the decimal text, rounded to the microsecond.
//!
//! Stored times must fall between 1970-01-01 and 9999-12-31 (UTC).

/// 1970-01-01 00:00:00 UTC.
pub const MIN_US: i64 = 0;
/// 9999-12-31 23:59:59.999999 UTC.
pub const MAX_US: i64 = 253_402_300_799_999_999;

const US_PER_SEC: i64 = 1_000_000;
const US_PER_DAY: i64 = 86_400 * US_PER_SEC;

/// Whether `us` is in the storable range.
pub fn in_range(us: i64) -> bool {
    (MIN_US..=MAX_US).contains(&us)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[inline]
fn digits(s: &[u8], at: usize, n: usize) -> Option<u32> {
    let d = s.get(at..at + n)?;
    let mut v = 0u32;
    for &b in d {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(b - b'0');
    }
    Some(v)
}

#[inline]
fn expect(s: &[u8], at: usize, what: &[u8]) -> bool {
    s.get(at).is_some_and(|b| what.contains(b))
}

/// Parse an RFC 3339 date-time; returns microseconds since the epoch (not
/// range-checked: see [`in_range`]) or why it is not one.
pub fn parse_rfc3339(s: &[u8]) -> Result<i64, &'static str> {
    const SHAPE: &str = "is not an RFC 3339 date-time (expected e.g. 2026-11-26T10:00:00Z)";
    let year = digits(s, 0, 4).ok_or(SHAPE)?;
    let month = digits(s, 5, 2).ok_or(SHAPE)?;
    let day = digits(s, 8, 2).ok_or(SHAPE)?;
    if !expect(s, 4, b"-") || !expect(s, 7, b"-") {
        return Err(SHAPE);
    }
    if s.len() == 10 {
        return Err("has a date but no time and UTC offset (expected e.g. 2026-11-26T10:00:00Z)");
    }
    if !expect(s, 10, b"Tt ") {
        return Err(SHAPE);
    }
    let hour = digits(s, 11, 2).ok_or(SHAPE)?;
    let minute = digits(s, 14, 2).ok_or(SHAPE)?;
    let second = digits(s, 17, 2).ok_or(SHAPE)?;
    if !expect(s, 13, b":") || !expect(s, 16, b":") {
        return Err(SHAPE);
    }
    let mut i = 19;
    let mut nanos: i64 = 0;
    if s.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while s.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let n = i - start;
        if n == 0 || n > 9 {
            return Err("must have 1 to 9 fractional second digits");
        }
        for &b in &s[start..i] {
            nanos = nanos * 10 + i64::from(b - b'0');
        }
        nanos *= 10i64.pow(9 - n as u32);
    }
    let offset_secs: i64 = match s.get(i) {
        Some(b'Z' | b'z') => {
            i += 1;
            0
        }
        Some(&sign @ (b'+' | b'-')) => {
            let oh = digits(s, i + 1, 2);
            let om = digits(s, i + 4, 2);
            let (Some(oh), Some(om), true) = (oh, om, expect(s, i + 3, b":")) else {
                return Err("has a malformed UTC offset (expected Z or ±hh:mm)");
            };
            if oh > 23 || om > 59 {
                return Err("has a UTC offset out of range");
            }
            i += 6;
            let v = i64::from(oh * 3600 + om * 60);
            if sign == b'-' {
                -v
            } else {
                v
            }
        }
        None => return Err("has no UTC offset (add Z or ±hh:mm)"),
        Some(_) => return Err(SHAPE),
    };
    if i != s.len() {
        return Err("has unexpected characters after the UTC offset");
    }
    if !(1..=12).contains(&month) {
        return Err("has a month out of range");
    }
    let year = i64::from(year);
    if day < 1 || day > days_in_month(year, month) {
        return Err("has a day out of range for its month");
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err("has a time of day out of range");
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_secs;
    // Round to the microsecond, half up (nanos >= 0).
    Ok(secs * US_PER_SEC + (nanos + 500) / 1000)
}

/// The decimal number `text` (JSON grammar) times 10^`scale`, rounded half
/// away from zero; `None` when its magnitude exceeds ~1e30.
fn decimal_scaled(text: &str, scale: i64) -> Option<i128> {
    const CAP: i128 = 1_000_000_000_000_000_000_000_000_000_000;
    let t = text.as_bytes();
    let (neg, t) = match t.first() {
        Some(b'-') => (true, &t[1..]),
        _ => (false, t),
    };
    let (mantissa, exp) = match t.iter().position(|&b| b == b'e' || b == b'E') {
        Some(p) => {
            let e = &t[p + 1..];
            let (eneg, e) = match e.first() {
                Some(b'-') => (true, &e[1..]),
                Some(b'+') => (false, &e[1..]),
                _ => (false, e),
            };
            // Saturate: anything past a few thousand is over or under anyway.
            let mut v: i64 = 0;
            for &b in e {
                v = (v * 10 + i64::from(b - b'0')).min(1_000_000);
            }
            (&t[..p], if eneg { -v } else { v })
        }
        None => (t, 0),
    };
    let (int, frac) = match mantissa.iter().position(|&b| b == b'.') {
        Some(p) => (&mantissa[..p], &mantissa[p + 1..]),
        None => (mantissa, &mantissa[..0]),
    };
    let all = int.iter().chain(frac.iter()).map(|b| i128::from(b - b'0'));
    let total = (int.len() + frac.len()) as i64;
    // value = digits × 10^shift
    let shift = exp + scale - frac.len() as i64;
    let mut acc: i128 = 0;
    if shift >= 0 {
        for d in all {
            acc = acc * 10 + d;
            if acc > CAP {
                return None;
            }
        }
        for _ in 0..shift {
            if acc == 0 {
                break;
            }
            acc *= 10;
            if acc > CAP {
                return None;
            }
        }
    } else {
        let keep = total + shift; // digits before the rounding position
        let mut round_digit = 0;
        for (n, d) in all.enumerate() {
            let n = n as i64;
            if n < keep {
                acc = acc * 10 + d;
                if acc > CAP {
                    return None;
                }
            } else {
                if n == keep {
                    round_digit = d;
                }
                break;
            }
        }
        if round_digit >= 5 {
            acc += 1;
        }
    }
    Some(if neg { -acc } else { acc })
}

/// A JSON number of epoch seconds (or milliseconds when |v| ≥ 1e11) to
/// microseconds; `None` when it is far out of range.
pub fn from_epoch_number(text: &str) -> Option<i64> {
    let as_seconds = decimal_scaled(text, 6)?;
    let us = if as_seconds.abs() >= 100_000_000_000 * 1_000_000 {
        decimal_scaled(text, 3)?
    } else {
        as_seconds
    };
    i64::try_from(us).ok()
}

/// Length of [`write`]'s output.
pub const TEXT_LEN: usize = 29;

/// "00".."99", for formatting two digits at a time.
const TWO_DIGITS: [u8; 200] = {
    let mut t = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        t[2 * i] = b'0' + (i / 10) as u8;
        t[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    t
};

/// `us` (in range) as `YYYY-MM-DD HH:MM:SS.ffffff+00`.
pub fn format(us: i64) -> [u8; TEXT_LEN] {
    let us = us.clamp(MIN_US, MAX_US);
    let days = us / US_PER_DAY;
    let rem = (us % US_PER_DAY) as u64;
    let (y, m, d) = civil_from_days(days);
    let secs = rem / US_PER_SEC as u64;
    let micros = rem % US_PER_SEC as u64;
    let mut out = *b"0000-00-00 00:00:00.000000+00";
    let mut put2 = |at: usize, v: u64| {
        let v = v as usize * 2;
        out[at] = TWO_DIGITS[v];
        out[at + 1] = TWO_DIGITS[v + 1];
    };
    let y = y as u64;
    put2(0, y / 100);
    put2(2, y % 100);
    put2(5, u64::from(m));
    put2(8, u64::from(d));
    put2(11, secs / 3600);
    put2(14, secs / 60 % 60);
    put2(17, secs % 60);
    put2(20, micros / 10_000);
    put2(22, micros / 100 % 100);
    put2(24, micros % 100);
    out
}

/// Append `us` (in range) as `timestamptz` text.
#[inline]
pub fn write(out: &mut Vec<u8>, us: i64) {
    out.extend_from_slice(&format(us));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(us: i64) -> String {
        String::from_utf8(format(us).to_vec()).unwrap()
    }

    fn rfc(s: &str) -> i64 {
        parse_rfc3339(s.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn civil_round_trip_over_the_whole_range() {
        let last = days_from_civil(9999, 12, 31);
        let mut z = -800;
        while z <= last + 800 {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
            assert!((1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m));
            z += 1;
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn formatting() {
        assert_eq!(fmt(0), "1970-01-01 00:00:00.000000+00");
        assert_eq!(fmt(MAX_US), "9999-12-31 23:59:59.999999+00");
        assert_eq!(fmt(1_795_687_200_123_456), "2026-11-26 10:00:00.123456+00");
        assert_eq!(fmt(951_782_400_000_001), "2000-02-29 00:00:00.000001+00");
    }

    #[test]
    fn rfc3339_forms() {
        let base = 1_795_687_200_000_000; // 2026-11-26T10:00:00Z
        assert_eq!(rfc("2026-11-26T10:00:00Z"), base);
        assert_eq!(rfc("2026-11-26t10:00:00z"), base);
        assert_eq!(rfc("2026-11-26 10:00:00Z"), base);
        assert_eq!(rfc("2026-11-26T10:00:00+00:00"), base);
        assert_eq!(rfc("2026-11-26T10:00:00-00:00"), base);
        assert_eq!(rfc("2026-11-26T11:30:00+01:30"), base);
        assert_eq!(rfc("2026-11-26T05:00:00-05:00"), base);
        assert_eq!(rfc("2026-11-26T10:00:00.1Z"), base + 100_000);
        assert_eq!(rfc("2026-11-26T10:00:00.123456Z"), base + 123_456);
        assert_eq!(rfc("2026-11-26T10:00:00.1234564Z"), base + 123_456);
        assert_eq!(rfc("2026-11-26T10:00:00.1234565Z"), base + 123_457);
        assert_eq!(rfc("2026-11-26T10:00:00.999999999Z"), base + 1_000_000);
        assert_eq!(rfc("2026-11-26T09:59:60Z"), base);
        assert_eq!(rfc("1970-01-01T00:00:00Z"), 0);
        assert_eq!(rfc("9999-12-31T23:59:59.999999Z"), MAX_US);
        assert_eq!(rfc("2024-02-29T00:00:00Z"), 1_709_164_800_000_000);
        // Out of range still parses; range is the caller's check.
        assert!(!in_range(rfc("1969-12-31T23:59:59Z")));
        assert!(!in_range(rfc("9999-12-31T23:00:00-02:00")));
        assert!(!in_range(rfc("0000-01-01T00:00:00Z")));
    }

    #[test]
    fn rfc3339_rejects() {
        for (s, why) in [
            ("2026-11-26T10:00:00", "no UTC offset"),
            ("2026-11-26", "no time"),
            ("2026-11-26T10:00Z", "RFC 3339"),
            ("2026-11-26T10:00:00.Z", "fractional"),
            ("2026-11-26T10:00:00.1234567891Z", "fractional"),
            ("2026-11-26T10:00:00+0100", "offset"),
            ("2026-11-26T10:00:00+1", "offset"),
            ("2026-11-26T10:00:00+24:00", "offset out of range"),
            ("2026-11-26T10:00:00+01:60", "offset out of range"),
            ("2026-11-26T10:00:00Zx", "after the UTC offset"),
            ("2026-11-26T10:00:00 Z", "RFC 3339"),
            ("2026-13-01T00:00:00Z", "month"),
            ("2026-00-01T00:00:00Z", "month"),
            ("2026-02-29T00:00:00Z", "day"),
            ("2026-04-31T00:00:00Z", "day"),
            ("2026-04-00T00:00:00Z", "day"),
            ("1900-02-29T00:00:00Z", "day"),
            ("2026-11-26T24:00:00Z", "time of day"),
            ("2026-11-26T10:60:00Z", "time of day"),
            ("2026-11-26T10:00:61Z", "time of day"),
            ("2026/11/26T10:00:00Z", "RFC 3339"),
            ("26-11-26T10:00:00Z", "RFC 3339"),
            ("+2026-11-26T10:00:00Z", "RFC 3339"),
            ("2026-11-26X10:00:00Z", "RFC 3339"),
            ("", "RFC 3339"),
            ("now", "RFC 3339"),
            ("2026-11-26T1０:00:00Z", "RFC 3339"),
        ] {
            let e = parse_rfc3339(s.as_bytes()).unwrap_err();
            assert!(e.contains(why), "{s}: {e}");
        }
    }

    #[test]
    fn epoch_numbers() {
        assert_eq!(from_epoch_number("0"), Some(0));
        assert_eq!(from_epoch_number("1795687200"), Some(1_795_687_200_000_000));
        assert_eq!(
            from_epoch_number("1795687200.123456"),
            Some(1_795_687_200_123_456)
        );
        assert_eq!(
            from_epoch_number("1795687200.1234565"),
            Some(1_795_687_200_123_457)
        );
        assert_eq!(
            from_epoch_number("1795687200123"),
            Some(1_795_687_200_123_000)
        );
        assert_eq!(
            from_epoch_number("1795687200123.456"),
            Some(1_795_687_200_123_456)
        );
        assert_eq!(
            from_epoch_number("1.795687200123e12"),
            Some(1_795_687_200_123_000)
        );
        assert_eq!(
            from_epoch_number("1.7956872e9"),
            Some(1_795_687_200_000_000)
        );
        // Threshold: 99999999999 s is seconds, 1e11 is milliseconds.
        assert_eq!(
            from_epoch_number("99999999999"),
            Some(99_999_999_999_000_000)
        );
        assert_eq!(from_epoch_number("100000000000"), Some(100_000_000_000_000));
        assert_eq!(from_epoch_number("1e11"), Some(100_000_000_000_000));
        // Exact even at the far end in milliseconds (an f64 would be off).
        assert_eq!(
            from_epoch_number("253402300799999"),
            Some(253_402_300_799_999_000)
        );
        assert_eq!(from_epoch_number("-1"), Some(-1_000_000));
        assert_eq!(from_epoch_number("-0.0000001"), Some(0));
        assert_eq!(from_epoch_number("1e-999999999"), Some(0));
        assert_eq!(from_epoch_number("0e999999999"), Some(0));
        assert_eq!(from_epoch_number("1e30"), None);
        assert_eq!(from_epoch_number("1e999999999"), None);
        assert_eq!(from_epoch_number(&"9".repeat(500)), None);
        assert_eq!(
            from_epoch_number(&format!("0.{}1", "0".repeat(500))),
            Some(0)
        );
    }

    #[test]
    fn decimal_scaling_rounds_half_away_from_zero() {
        assert_eq!(decimal_scaled("1.5", 0), Some(2));
        assert_eq!(decimal_scaled("1.4999", 0), Some(1));
        assert_eq!(decimal_scaled("-1.5", 0), Some(-2));
        assert_eq!(decimal_scaled("0.5", 0), Some(1));
        assert_eq!(decimal_scaled("0.05", 0), Some(0));
        assert_eq!(decimal_scaled("12.345e1", 1), Some(1235));
        assert_eq!(decimal_scaled("12345e-2", 0), Some(123));
    }
}
