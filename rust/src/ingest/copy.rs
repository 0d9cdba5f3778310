//! Step 4: encoding values as PostgreSQL `COPY ... FROM STDIN` text format
//! (the default: tab between columns, `\n` after each row, `\N` for null).
//!
//! In a text column a backslash, newline, carriage return and tab must be
//! backslash-escaped; everything else (other control characters included) is
//! taken literally. Because a backslash is always doubled, no value can ever
//! produce the end-of-data line `\.`. NUL cannot be stored in PostgreSQL
//! text at all: [`write_text`] turns it into U+FFFD (the JSON parser already
//! did that for strings that came from JSON).
//!
//! The `properties` column is `jsonb`: compact JSON text, then COPY-escaped.
//! JSON escaping leaves no raw control characters, so COPY escaping only has
//! to double the backslashes that JSON escaping produced; [`write_json`] does
//! both at once.

use std::borrow::Cow;
use std::collections::HashMap;

use super::json::{Document, Node};

/// Column separator.
pub const SEP: u8 = b'\t';
/// A null column.
pub const NULL: &[u8] = b"\\N";

/// Whether `s` holds a byte that [`write_text`] must change. Branch-free so
/// that it vectorises: cheaper than the escaping loop on clean text.
#[inline]
fn needs_escape(s: &[u8]) -> bool {
    s.iter()
        .fold(false, |acc, &b| acc | (b <= b'\r') | (b == b'\\'))
}

/// `s` as a COPY text value, borrowed when nothing needs escaping.
pub fn escape_text(s: &[u8]) -> Cow<'_, [u8]> {
    if needs_escape(s) {
        let mut out = Vec::with_capacity(s.len() + 8);
        write_text(&mut out, s);
        Cow::Owned(out)
    } else {
        Cow::Borrowed(s)
    }
}

/// Append `s` as a COPY text value: `\`, LF, CR, TAB escaped; NUL → U+FFFD.
pub fn write_text(out: &mut Vec<u8>, s: &[u8]) {
    if !needs_escape(s) {
        out.extend_from_slice(s);
        return;
    }
    let mut run = 0;
    for (i, &b) in s.iter().enumerate() {
        let esc: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0 => "\u{FFFD}".as_bytes(),
            _ => continue,
        };
        out.extend_from_slice(&s[run..i]);
        out.extend_from_slice(esc);
        run = i + 1;
    }
    out.extend_from_slice(&s[run..]);
}

/// Append `Some(s)` as text, `None` as `\N`.
pub fn write_opt_text(out: &mut Vec<u8>, s: Option<&[u8]>) {
    match s {
        Some(s) => write_text(out, s),
        None => out.extend_from_slice(NULL),
    }
}

/// Append the string node `i` of `doc` as a COPY text value. A string that
/// had no JSON escapes holds no byte that needs escaping, so it is copied
/// as is.
#[inline]
pub fn write_doc_text(out: &mut Vec<u8>, doc: &Document<'_>, i: usize) {
    let s = doc.str_bytes(i);
    if doc.str_escaped(i) {
        write_text(out, s);
    } else {
        out.extend_from_slice(s);
    }
}

/// Append a finite `f64` in its shortest round-trip form (`1.5`, `1e100`,
/// `-0.0`), which PostgreSQL's `float8` input reads back exactly.
#[inline]
pub fn write_f64(out: &mut Vec<u8>, v: f64) {
    debug_assert!(v.is_finite());
    let mut buf = ryu::Buffer::new();
    out.extend_from_slice(buf.format_finite(v).as_bytes());
}

/// Append a JSON string (quoted, JSON-escaped, then COPY-escaped).
fn write_json_str(out: &mut Vec<u8>, s: &[u8], maybe_special: bool) {
    out.push(b'"');
    if !maybe_special {
        out.extend_from_slice(s);
        out.push(b'"');
        return;
    }
    let mut run = 0;
    for (i, &b) in s.iter().enumerate() {
        // JSON escape, with its backslash doubled for COPY.
        let esc: &[u8] = match b {
            b'"' => b"\\\\\"",
            b'\\' => b"\\\\\\\\",
            b'\n' => b"\\\\n",
            b'\r' => b"\\\\r",
            b'\t' => b"\\\\t",
            0x08 => b"\\\\b",
            0x0c => b"\\\\f",
            0..=0x1f => {
                out.extend_from_slice(&s[run..i]);
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
                run = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&s[run..i]);
        out.extend_from_slice(esc);
        run = i + 1;
    }
    out.extend_from_slice(&s[run..]);
    out.push(b'"');
}

/// A value that PostgreSQL would refuse in `jsonb` (so the whole COPY would
/// fail): reported with the event, never sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unstorable {
    /// The key of the outermost object member that holds the value (each
    /// enclosing object overwrites it on the way out).
    pub field: String,
    pub message: String,
}

/// Objects with at most this many members are checked for duplicate keys
/// pairwise; larger ones with a hash map.
const SMALL_OBJECT: usize = 16;

/// Append value `i` of `doc` as compact JSON, COPY-escaped. Numbers keep
/// their original text; objects keep the last of duplicate keys (at its own
/// position), as `jsonb` would. Recursion depth is bounded by the parser's
/// `max_depth`.
pub fn write_json(out: &mut Vec<u8>, doc: &Document<'_>, i: usize) -> Result<(), Unstorable> {
    match doc.node(i) {
        Node::Null => out.extend_from_slice(b"null"),
        Node::Bool(true) => out.extend_from_slice(b"true"),
        Node::Bool(false) => out.extend_from_slice(b"false"),
        Node::Number { .. } => {
            let t = doc.number_text(i);
            if !jsonb_number_fits(t.as_bytes()) {
                let shown: String = t.chars().take(40).collect();
                let more = if t.len() > 40 { "…" } else { "" };
                return Err(Unstorable {
                    field: String::new(),
                    message: format!(
                        "number {shown}{more} is outside the range PostgreSQL can store"
                    ),
                });
            }
            out.extend_from_slice(t.as_bytes());
        }
        Node::Str { escaped, .. } => write_json_str(out, doc.str_bytes(i), escaped),
        Node::Array { .. } => {
            out.push(b'[');
            for (n, e) in doc.elements(i).enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                write_json(out, doc, e)?;
            }
            out.push(b']');
        }
        Node::Object { .. } => write_json_object(out, doc, i, |_| true)?,
    }
    Ok(())
}

/// Append the members of object `obj` for which `keep(key)` holds, as a
/// compact JSON object (duplicate keys: the last one wins).
pub fn write_json_object(
    out: &mut Vec<u8>,
    doc: &Document<'_>,
    obj: usize,
    keep: impl Fn(&[u8]) -> bool,
) -> Result<(), Unstorable> {
    let len = match doc.node(obj) {
        Node::Object { len, .. } => len as usize,
        _ => 0,
    };
    let emit = |out: &mut Vec<u8>, first: &mut bool, k: usize, v: usize| {
        if !*first {
            out.push(b',');
        }
        *first = false;
        write_json_str(out, doc.str_bytes(k), doc.str_escaped(k));
        out.push(b':');
        write_json(out, doc, v).map_err(|e| Unstorable {
            field: doc.str(k).to_owned(),
            ..e
        })
    };
    let mut first = true;
    out.push(b'{');
    if len <= SMALL_OBJECT {
        let mut members = [(0usize, 0usize); SMALL_OBJECT];
        let mut n = 0;
        for (k, v) in doc.members(obj) {
            if keep(doc.str_bytes(k)) {
                members[n] = (k, v);
                n += 1;
            }
        }
        let members = &members[..n];
        for (idx, &(k, v)) in members.iter().enumerate() {
            let key = doc.str_bytes(k);
            if members[idx + 1..]
                .iter()
                .any(|&(k2, _)| doc.str_bytes(k2) == key)
            {
                continue; // a later duplicate wins
            }
            emit(out, &mut first, k, v)?;
        }
    } else {
        let members: Vec<(usize, usize)> = doc
            .members(obj)
            .filter(|&(k, _)| keep(doc.str_bytes(k)))
            .collect();
        let mut last: HashMap<&[u8], usize> = HashMap::with_capacity(members.len());
        for (idx, &(k, _)) in members.iter().enumerate() {
            last.insert(doc.str_bytes(k), idx);
        }
        for (idx, &(k, v)) in members.iter().enumerate() {
            if last[doc.str_bytes(k)] == idx {
                emit(out, &mut first, k, v)?;
            }
        }
    }
    out.push(b'}');
    Ok(())
}

/// Whether PostgreSQL's `numeric` (which `jsonb` numbers are) can hold the
/// JSON number `t`: at most 16383 digits after the decimal point, a leading
/// digit's base-10000 weight that fits in an int16, and an exponent below
/// INT_MAX/2 (numeric.c: `set_var_from_str`, `make_result`). Anything
/// else would fail the COPY of the whole batch.
pub fn jsonb_number_fits(t: &[u8]) -> bool {
    const MAX_DSCALE: i64 = 0x3FFF;
    const MAX_EXPONENT: i64 = (i32::MAX / 2) as i64;
    let exp_at = t.iter().position(|&b| b == b'e' || b == b'E');
    if exp_at.is_none() && t.len() as i64 <= MAX_DSCALE {
        return true; // the common case: short, plain
    }
    let (mantissa, exp) = match exp_at {
        Some(p) => {
            let e = &t[p + 1..];
            let (neg, e) = match e.first() {
                Some(b'-') => (true, &e[1..]),
                Some(b'+') => (false, &e[1..]),
                _ => (false, e),
            };
            let mut v: i64 = 0;
            for &b in e {
                v = (v * 10 + i64::from(b - b'0')).min(MAX_EXPONENT);
            }
            if v >= MAX_EXPONENT {
                return false;
            }
            (&t[..p], if neg { -v } else { v })
        }
        None => (t, 0),
    };
    let mantissa = mantissa.strip_prefix(b"-").unwrap_or(mantissa);
    let (int, frac) = match mantissa.iter().position(|&b| b == b'.') {
        Some(p) => (&mantissa[..p], &mantissa[p + 1..]),
        None => (mantissa, &mantissa[..0]),
    };
    if frac.len() as i64 - exp > MAX_DSCALE {
        return false;
    }
    // Decimal position of the leading non-zero digit (0 = units).
    let top = if let Some(p) = int.iter().position(|&b| b != b'0') {
        (int.len() - 1 - p) as i64 + exp
    } else if let Some(p) = frac.iter().position(|&b| b != b'0') {
        exp - 1 - p as i64
    } else {
        return true; // zero
    };
    (i64::from(i16::MIN)..=i64::from(i16::MAX)).contains(&top.div_euclid(4))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::json::{parse, JsonLimits};

    const LIMITS: JsonLimits = JsonLimits {
        max_depth: 64,
        max_string_bytes: 1 << 20,
    };

    fn text(s: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_text(&mut out, s);
        out
    }

    /// PostgreSQL's COPY text de-escaping, for round-trip tests.
    pub(crate) fn copy_unescape(s: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < s.len() {
            if s[i] == b'\\' {
                let c = s[i + 1];
                out.push(match c {
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'b' => 8,
                    b'f' => 12,
                    b'v' => 11,
                    other => other,
                });
                i += 2;
            } else {
                assert!(s[i] != b'\t' && s[i] != b'\n' && s[i] != b'\r');
                out.push(s[i]);
                i += 1;
            }
        }
        out
    }

    fn json_copy(src: &str) -> String {
        let d = parse(src.as_bytes(), LIMITS).unwrap();
        let mut out = Vec::new();
        write_json(&mut out, &d, 0).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn json(src: &str) -> String {
        String::from_utf8(copy_unescape(json_copy(src).as_bytes())).unwrap()
    }

    #[test]
    fn text_escaping() {
        assert_eq!(text(b"plain"), b"plain");
        assert_eq!(text(b"a\tb\nc\rd\\e"), b"a\\tb\\nc\\rd\\\\e");
        assert_eq!(text(b"\\."), b"\\\\.");
        assert_eq!(text(b"a\0b"), "a\u{FFFD}b".as_bytes());
        assert_eq!(text(b"\x01\x7f"), b"\x01\x7f");
        for s in [
            &b"x\\\\y\t\t\n\r\n"[..],
            b"\\",
            b"\\N",
            b"",
            "é\t😀".as_bytes(),
        ] {
            assert_eq!(copy_unescape(&text(s)), s);
        }
    }

    #[test]
    fn null_and_opt() {
        let mut out = Vec::new();
        write_opt_text(&mut out, None);
        out.push(SEP);
        write_opt_text(&mut out, Some(b"\\N"));
        assert_eq!(out, b"\\N\t\\\\N");
    }

    #[test]
    fn floats() {
        for (v, s) in [
            (1.5, "1.5"),
            (42.0, "42.0"),
            (-0.0, "-0.0"),
            (1e100, "1e100"),
            (0.1, "0.1"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e308"),
        ] {
            let mut out = Vec::new();
            write_f64(&mut out, v);
            assert_eq!(out, s.as_bytes());
            assert_eq!(s.parse::<f64>().unwrap().to_bits(), v.to_bits());
        }
    }

    #[test]
    fn compact_json() {
        assert_eq!(
            json(" { \"a\" : [ 1 , 2.50 , -0 , 1E+2 ] } "),
            r#"{"a":[1,2.50,-0,1E+2]}"#
        );
        assert_eq!(json("[true,false,null,{},[]]"), "[true,false,null,{},[]]");
        assert_eq!(json(r#""é😀""#), r#""é😀""#);
    }

    #[test]
    fn json_strings_are_escaped_then_copy_escaped() {
        // JSON text on the wire → the JSON text PostgreSQL will see.
        assert_eq!(json(r#""a\"b""#), r#""a\"b""#);
        assert_eq!(json(r#""a\\b""#), r#""a\\b""#);
        assert_eq!(json(r#""a\nb\tc\rd""#), r#""a\nb\tc\rd""#);
        assert_eq!(json(r#""\b\f\u0001\u001f""#), r#""\b\f\u0001\u001f""#);
        assert_eq!(json(r#""\/""#), r#""/""#);
        assert_eq!(json(r#""\u0041""#), r#""A""#);
        assert_eq!(json(r#""\u0000""#), "\"\u{FFFD}\"");
        // The COPY form has no raw tab/newline and only doubled backslashes.
        let raw = json_copy(r#"{"k\tey":"v\\al\nue"}"#);
        assert_eq!(raw, r#"{"k\\tey":"v\\\\al\\nue"}"#);
        assert!(!raw.contains(['\t', '\n', '\r']));
    }

    #[test]
    fn duplicate_keys_last_wins() {
        assert_eq!(json(r#"{"a":1,"b":2,"a":3}"#), r#"{"b":2,"a":3}"#);
        assert_eq!(
            json(r#"{"a":{"x":1,"x":2},"a":{"y":1}}"#),
            r#"{"a":{"y":1}}"#
        );
        assert_eq!(json(r#"{"x":{"y":1,"y":[2]}}"#), r#"{"x":{"y":[2]}}"#);
        // Keys compare decoded.
        assert_eq!(json(r#"{"a":1,"\u0061":2}"#), r#"{"a":2}"#);
    }

    #[test]
    fn duplicate_keys_in_large_objects() {
        let mut src = String::from("{");
        for i in 0..100 {
            src.push_str(&format!("\"k{}\":{i},", i % 40));
        }
        src.push_str("\"end\":true}");
        let out = json(&src);
        for i in 0..40 {
            let last = (0..100).filter(|j| j % 40 == i).max().unwrap();
            assert!(out.contains(&format!("\"k{i}\":{last},")), "{i}: {out}");
            assert_eq!(out.matches(&format!("\"k{i}\":")).count(), 1);
        }
    }

    #[test]
    fn filtered_object() {
        let d = parse(br#"{"a":1,"b":2,"c":3,"b":4}"#, LIMITS).unwrap();
        let mut out = Vec::new();
        write_json_object(&mut out, &d, 0, |k| k != b"b").unwrap();
        assert_eq!(out, br#"{"a":1,"c":3}"#);
        let mut out = Vec::new();
        write_json_object(&mut out, &d, 0, |_| false).unwrap();
        assert_eq!(out, b"{}");
    }

    #[test]
    fn numbers_postgres_cannot_hold() {
        // Boundaries checked against PostgreSQL 15 (`SELECT '<n>'::jsonb`).
        for ok in [
            "0",
            "9.99e131071",
            "0e1073741822",
            "1e131071",
            "9e131071",
            "1e-16383",
            "0.1e-16382",
            "0e-16383",
            "0e999999",
            "-1.5e300",
            "1e1000",
        ] {
            assert!(jsonb_number_fits(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "0.1e-16383",
            "1e131072",
            "1e-16384",
            "0e-16384",
            "1e1073741823",
            "0e1073741823",
            "1e99999999999999999999",
            "-1e-99999999999999999999",
        ] {
            assert!(!jsonb_number_fits(bad.as_bytes()), "{bad}");
        }
        // Long plain numbers: a scale over 16383 digits does not fit.
        let long_frac = format!("0.{}", "1".repeat(16384));
        assert!(!jsonb_number_fits(long_frac.as_bytes()));
        let long_int = "9".repeat(131_072);
        assert!(jsonb_number_fits(long_int.as_bytes()));
        let too_long_int = "9".repeat(131_073);
        assert!(!jsonb_number_fits(too_long_int.as_bytes()));
        let d = parse(br#"{"n":{"m":[1e999999]}}"#, LIMITS).unwrap();
        let e = write_json(&mut Vec::new(), &d, 0).unwrap_err();
        assert!(e.message.contains("1e999999"), "{e:?}");
        assert_eq!(e.field, "n");
    }
}
