//! Enrichment from URLs: `url_host`, `url_path`, `referrer_host` and the
//! `utm_*` campaign parameters found in a query string.
//!
//! Parsing is lenient and never fails an event: whatever cannot be read
//! from a URL is simply null. The rules:
//! - `scheme://[userinfo@]host[:port][/path][?query][#fragment]` and
//!   `//host...` give a host and a path (`/` when empty); `/path...` gives
//!   only a path; anything else (`mailto:x`, `example.com/x`, garbage) gives
//!   neither. Leading/trailing ASCII whitespace is ignored.
//! - The host is lowercased (ASCII), without userinfo or port; an IPv6
//!   literal keeps its brackets. A host with characters no host can have
//!   (space, `<`, `"`, `/`…) or a non-numeric port is null.
//! - The path is kept as sent (still percent-encoded), without query or
//!   fragment.
//! - The query is everything between the first `?` and the first `#`,
//!   found even when the rest is malformed.
//! - Query parameters are split on `&`, then on the first `=`;
//!   names and values are percent-decoded with `+` as a space; a decoded
//!   value that is not UTF-8 is decoded lossily (U+FFFD). The first
//!   non-empty occurrence of a parameter wins.
//! - Any derived value longer than [`MAX_DERIVED_BYTES`] is null: these
//!   columns are for grouping, and a huge query string must not bloat them.

use std::borrow::Cow;

/// Longest host, path or UTM value kept (bytes); longer ones are null.
pub const MAX_DERIVED_BYTES: usize = 2048;

/// The UTM parameters, in `EVENT_COLUMNS` order.
pub const UTM_FIELDS: [&str; 5] = [
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
];

/// Index of `name` in [`UTM_FIELDS`].
pub fn utm_index(name: &[u8]) -> Option<usize> {
    let rest = name.strip_prefix(b"utm_")?;
    match rest {
        b"source" => Some(0),
        b"medium" => Some(1),
        b"campaign" => Some(2),
        b"term" => Some(3),
        b"content" => Some(4),
        _ => None,
    }
}

/// What a URL yields.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UrlParts<'a> {
    pub host: Option<Cow<'a, str>>,
    pub path: Option<&'a str>,
    pub query: Option<&'a str>,
}

/// Split a URL leniently (see the module docs), in one forward pass.
pub fn split(url: &str) -> UrlParts<'_> {
    let url = url.trim_ascii();
    let b = url.as_bytes();
    // Index of the first byte at or after `from` that ends a part.
    let scan = |from: usize, with_slash: bool| {
        b[from..]
            .iter()
            .position(|&c| c == b'?' || c == b'#' || (with_slash && c == b'/'))
            .map_or(b.len(), |p| from + p)
    };
    let scheme = scheme_len(url);
    let mut i = scheme.map_or(0, |n| n + 1);
    let mut host = None;
    let has_authority = b[i..].starts_with(b"//");
    if has_authority {
        let end = scan(i + 2, true);
        host = host_of(&url[i + 2..end]);
        i = end;
    }
    let path_end = scan(i, false);
    let path = if has_authority {
        Some(if path_end == i {
            "/"
        } else {
            &url[i..path_end]
        })
    } else if scheme.is_none() && b.get(i) == Some(&b'/') {
        Some(&url[i..path_end])
    } else {
        None
    };
    // The query is found even in an otherwise unreadable URL.
    let query = (b.get(path_end) == Some(&b'?')).then(|| {
        let q = &url[path_end + 1..];
        &q[..q.bytes().position(|c| c == b'#').unwrap_or(q.len())]
    });
    UrlParts {
        host,
        path: path.filter(|p| p.len() <= MAX_DERIVED_BYTES),
        query,
    }
}

/// Length of a leading `scheme` followed by `:` (RFC 3986:
/// `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`).
fn scheme_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    if !b.first()?.is_ascii_alphabetic() {
        return None;
    }
    let n = b
        .iter()
        .position(|&c| !(c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.')))?;
    (b[n] == b':').then_some(n)
}

fn host_of(authority: &str) -> Option<Cow<'_, str>> {
    let last = |s: &str, c: u8| s.bytes().rposition(|b| b == c);
    let hostport = last(authority, b'@').map_or(authority, |at| &authority[at + 1..]);
    let (host, port) = if hostport.starts_with('[') {
        let close = hostport.find(']')?;
        let inner = &hostport[1..close];
        if inner.is_empty()
            || !inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return None;
        }
        let rest = &hostport[close + 1..];
        let port = if rest.is_empty() {
            ""
        } else {
            rest.strip_prefix(':')?
        };
        (&hostport[..=close], port)
    } else {
        let (h, port) = match last(hostport, b':') {
            Some(colon) => (&hostport[..colon], &hostport[colon + 1..]),
            None => (hostport, ""),
        };
        if !h.bytes().all(is_host_byte) {
            return None;
        }
        (h, port)
    };
    if host.is_empty()
        || host.len() > MAX_DERIVED_BYTES
        || !port.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    Some(if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    })
}

/// RFC 3986 `reg-name` characters, plus any non-ASCII (internationalised
/// names sent unencoded).
fn is_host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || b >= 0x80
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'%'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
        )
}

/// Percent-decode `s` (`+` as a space); invalid `%` sequences stay as they
/// are; bytes that are not UTF-8 become U+FFFD.
pub fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (
                    b.get(i + 1).and_then(|&c| hex(c)),
                    b.get(i + 2).and_then(|&c| hex(c)),
                ) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    Cow::Owned(match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// Fill the empty slots of `utm` (indexed as [`UTM_FIELDS`]) from the query
/// string `query`; slots already set are left alone (a source of higher
/// priority, or an earlier occurrence, wins).
pub fn fill_utm(query: &str, utm: &mut [Option<String>; 5]) {
    for pair in query.split('&') {
        if utm.iter().all(Option::is_some) {
            return;
        }
        let (name, value) = match pair.bytes().position(|c| c == b'=') {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, ""),
        };
        let slot = match utm_index(name.as_bytes()) {
            Some(i) => i,
            // An encoded name ("utm%5Fsource"): decoding never lengthens,
            // and no UTM name decodes from more than 3 × 12 bytes.
            None if name.len() <= 36 && name.bytes().any(|c| c == b'%' || c == b'+') => {
                match utm_index(percent_decode(name).as_bytes()) {
                    Some(i) => i,
                    None => continue,
                }
            }
            None => continue,
        };
        if utm[slot].is_some() || value.is_empty() || value.len() > 3 * MAX_DERIVED_BYTES {
            continue;
        }
        let value = percent_decode(value);
        if !value.is_empty() && value.len() <= MAX_DERIVED_BYTES {
            utm[slot] = Some(value.into_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(url: &str) -> (Option<String>, Option<&str>, Option<&str>) {
        let p = split(url);
        (p.host.map(Cow::into_owned), p.path, p.query)
    }

    fn utm(query: &str) -> [Option<String>; 5] {
        let mut u: [Option<String>; 5] = Default::default();
        fill_utm(query, &mut u);
        u
    }

    #[test]
    fn full_urls() {
        assert_eq!(
            parts("https://Shop.Example.COM:8443/a/B%20c?x=1&y#frag"),
            (
                Some("shop.example.com".into()),
                Some("/a/B%20c"),
                Some("x=1&y")
            )
        );
        assert_eq!(
            parts("https://example.com"),
            (Some("example.com".into()), Some("/"), None)
        );
        assert_eq!(
            parts("https://example.com?utm_source=x"),
            (Some("example.com".into()), Some("/"), Some("utm_source=x"))
        );
        assert_eq!(
            parts("http://user:pw@example.com:80/p"),
            (Some("example.com".into()), Some("/p"), None)
        );
        assert_eq!(
            parts("http://[2001:DB8::1]:8080/p"),
            (Some("[2001:db8::1]".into()), Some("/p"), None)
        );
        assert_eq!(
            parts("//cdn.example.com/x.js"),
            (Some("cdn.example.com".into()), Some("/x.js"), None)
        );
        assert_eq!(
            parts("android-app://com.example.app/path"),
            (Some("com.example.app".into()), Some("/path"), None)
        );
        assert_eq!(
            parts("  https://a.b/c  "),
            (Some("a.b".into()), Some("/c"), None)
        );
        assert_eq!(
            parts("https://bücher.example/ä"),
            (Some("bücher.example".into()), Some("/ä"), None)
        );
        assert_eq!(
            parts("https://example.com#?x"),
            (Some("example.com".into()), Some("/"), None)
        );
    }

    #[test]
    fn relative_and_odd_urls() {
        assert_eq!(
            parts("/pricing?plan=pro"),
            (None, Some("/pricing"), Some("plan=pro"))
        );
        assert_eq!(parts("file:///tmp/x"), (None, Some("/tmp/x"), None));
        assert_eq!(parts("mailto:a@b.c"), (None, None, None));
        assert_eq!(parts("about:blank"), (None, None, None));
        assert_eq!(
            parts("example.com/x?utm_source=a"),
            (None, None, Some("utm_source=a"))
        );
        assert_eq!(parts(""), (None, None, None));
        assert_eq!(parts("?"), (None, None, Some("")));
        assert_eq!(parts("https://"), (None, Some("/"), None));
    }

    #[test]
    fn malformed_hosts_are_null() {
        for url in [
            "https://exa mple.com/",
            "https://example.com:80x/",
            "https://<script>/",
            "http://[::1/",
            "http://[::1]x/",
            "http://[zz::1]/",
            "http://[]/",
            "https://a\"b/",
            "https://:80/",
        ] {
            assert_eq!(split(url).host, None, "{url}");
        }
    }

    #[test]
    fn huge_inputs_never_fail() {
        let long_path = format!("https://example.com/{}", "a".repeat(MAX_DERIVED_BYTES));
        assert_eq!(parts(&long_path), (Some("example.com".into()), None, None));
        let long_host = format!("https://{}.com/", "a".repeat(MAX_DERIVED_BYTES));
        assert_eq!(split(&long_host).host, None);
        let q = format!("utm_source={}&utm_medium=m", "x".repeat(1 << 20));
        let u = utm(&q);
        assert_eq!(u[0], None);
        assert_eq!(u[1].as_deref(), Some("m"));
        let many = "a=b&".repeat(200_000) + "utm_term=t";
        assert_eq!(utm(&many)[3].as_deref(), Some("t"));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("plain"), "plain");
        assert!(matches!(percent_decode("plain"), Cow::Borrowed(_)));
        assert_eq!(percent_decode("a+b%20c"), "a b c");
        assert_eq!(percent_decode("%C3%A9%e2%82%ac"), "é€");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%2B"), "+");
        assert_eq!(percent_decode("%FF%41"), "\u{FFFD}A");
        assert_eq!(percent_decode("%00"), "\0"); // COPY encoding replaces NUL
    }

    #[test]
    fn utm_extraction() {
        let u = utm("utm_source=news+letter&utm_medium=email&utm_campaign=black%20friday&utm_term=a%26b&utm_content=c%3Dd&x=1");
        assert_eq!(
            u,
            [
                Some("news letter".into()),
                Some("email".into()),
                Some("black friday".into()),
                Some("a&b".into()),
                Some("c=d".into())
            ]
        );
        // First non-empty occurrence wins; names are case-sensitive.
        let u = utm("utm_source=&utm_source=a&utm_source=b&UTM_MEDIUM=x");
        assert_eq!(u[0].as_deref(), Some("a"));
        assert_eq!(u[1], None);
        // Encoded names.
        assert_eq!(utm("utm%5Fsource=enc")[0].as_deref(), Some("enc"));
        // Bare name, empty pairs, garbage.
        assert_eq!(
            utm("utm_source&&=&utm_medium==x"),
            [None, Some("=x".into()), None, None, None]
        );
        // Invalid UTF-8 is decoded lossily.
        assert_eq!(utm("utm_term=%FFok")[3].as_deref(), Some("\u{FFFD}ok"));
    }

    #[test]
    fn fill_keeps_higher_priority_values() {
        let mut u: [Option<String>; 5] = Default::default();
        u[0] = Some("body".into());
        fill_utm("utm_source=url&utm_medium=url", &mut u);
        fill_utm("utm_source=ref&utm_medium=ref&utm_term=ref", &mut u);
        assert_eq!(u[0].as_deref(), Some("body"));
        assert_eq!(u[1].as_deref(), Some("url"));
        assert_eq!(u[3].as_deref(), Some("ref"));
        assert_eq!(u[2], None);
    }

    #[test]
    fn utm_names() {
        for (i, name) in UTM_FIELDS.iter().enumerate() {
            assert_eq!(utm_index(name.as_bytes()), Some(i));
        }
        assert_eq!(utm_index(b"utm_"), None);
        assert_eq!(utm_index(b"utm_id"), None);
    }
}
