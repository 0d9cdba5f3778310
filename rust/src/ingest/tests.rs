//! End-to-end tests of [`prepare_events`]: body in, COPY rows (read back as
//! PostgreSQL would) or errors out.

use std::collections::HashMap;
use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;

use super::*;

/// 2026-11-26T10:00:00Z
pub(crate) const RECEIVED: i64 = 1_795_687_200_000_000;
const RECEIVED_TEXT: &str = "2026-11-26 10:00:00.000000+00";

pub(crate) fn request() -> Request<'static> {
    Request {
        gzip: false,
        project_id: 7,
        customer_identifier: None,
        received_at_us: RECEIVED,
        peer_ip: Some("203.0.113.9"),
        forwarded_for: None,
        user_agent: Some("TestAgent/1.0"),
        referer: None,
        historical: false,
    }
}

/// [`super::prepare_events`] with the default enricher (no GeoIP, no
/// trusted proxy).
fn prepare_events(
    body: &[u8],
    req: &Request<'_>,
    limits: &Limits,
) -> Result<Prepared, IngestError> {
    super::prepare_events(body, req, limits, Enricher::shared_default())
}

pub(crate) type Row = HashMap<&'static str, Option<String>>;

/// PostgreSQL's COPY text de-escaping of one field.
fn unescape(field: &[u8]) -> Option<String> {
    if field == b"\\N" {
        return None;
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\' {
            out.push(match field[i + 1] {
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                other => other,
            });
            i += 2;
        } else {
            assert_ne!(field[i], b'\r', "raw CR in a COPY row");
            out.push(field[i]);
            i += 1;
        }
    }
    Some(String::from_utf8(out).expect("rows are UTF-8"))
}

pub(crate) fn parse_rows(p: &Prepared) -> Vec<Row> {
    assert!(p.rows.is_empty() || p.rows.ends_with(b"\n"));
    assert!(!p.rows.contains(&0), "NUL in rows");
    let rows: Vec<Row> = p
        .rows
        .split(|&b| b == b'\n')
        .filter(|r| !r.is_empty())
        .map(|r| {
            let fields: Vec<&[u8]> = r.split(|&b| b == b'\t').collect();
            assert_eq!(
                fields.len(),
                EVENT_COLUMNS.len(),
                "{}",
                String::from_utf8_lossy(r)
            );
            EVENT_COLUMNS
                .iter()
                .zip(fields)
                .map(|(c, f)| (*c, unescape(f)))
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), p.count);
    assert_eq!(p.event_ids.len(), p.count);
    rows
}

fn prepare_with(body: &str, req: &Request<'_>) -> Result<Prepared, IngestError> {
    prepare_events(body.as_bytes(), req, &Limits::default())
}

fn rows(body: &str) -> Vec<Row> {
    let p = prepare_with(body, &request()).unwrap_or_else(|e| panic!("{body}: {e:?}"));
    parse_rows(&p)
}

fn row(body: &str) -> Row {
    let mut r = rows(body);
    assert_eq!(r.len(), 1);
    r.pop().unwrap()
}

fn row_with(body: &str, req: &Request<'_>) -> Row {
    let p = prepare_with(body, req).unwrap_or_else(|e| panic!("{body}: {e:?}"));
    parse_rows(&p).pop().unwrap()
}

fn col<'r>(r: &'r Row, name: &str) -> Option<&'r str> {
    r.get(name)
        .unwrap_or_else(|| panic!("no column {name}"))
        .as_deref()
}

fn err(body: &str) -> IngestError {
    match prepare_with(body, &request()) {
        Ok(p) => panic!(
            "{body} was accepted: {:?}",
            String::from_utf8_lossy(&p.rows)
        ),
        Err(e) => e,
    }
}

/// The single problem of an invalid single event: (field, message).
fn problem(body: &str) -> (Option<String>, String) {
    let e = err(body);
    assert_eq!(e.code, ErrorCode::InvalidEvent, "{body}: {e:?}");
    assert_eq!(e.status(), 400);
    assert_eq!(e.details.len(), 1, "{body}: {e:?}");
    let d = e.details.into_iter().next().unwrap();
    assert_eq!(d.index, Some(0));
    (d.field, d.message)
}

fn assert_problem(body: &str, field: &str, contains: &str) {
    let (f, m) = problem(body);
    assert_eq!(f.as_deref(), Some(field), "{body}: {m}");
    assert!(m.contains(contains), "{body}: {m:?} lacks {contains:?}");
}

#[test]
fn columns_are_the_contract() {
    assert_eq!(EVENT_COLUMNS.len(), 37);
    assert_eq!(EVENT_COLUMNS[0], "timestamp");
    assert_eq!(EVENT_COLUMNS[35], "properties");
    assert_eq!(EVENT_COLUMNS[36], "distinct_id");
    let unique: std::collections::HashSet<_> = EVENT_COLUMNS.iter().collect();
    assert_eq!(unique.len(), 37);
}

#[test]
fn minimal_event() {
    let r = row(r#"{"event_name":"signup"}"#);
    let want: &[(&str, Option<&str>)] = &[
        ("timestamp", Some(RECEIVED_TEXT)),
        ("received_at", Some(RECEIVED_TEXT)),
        ("sent_at", None),
        ("project_id", Some("7")),
        ("event_name", Some("signup")),
        ("event_id", None),
        ("customer_identifier", None),
        ("metric_name", None),
        ("metric_value", None),
        ("ip", Some("203.0.113.9")),
        ("user_agent", Some("TestAgent/1.0")),
        ("url", None),
        ("referrer", None),
        ("is_bot", Some("f")),
        // A user agent that uap-core does not recognise.
        ("ua_device_type", Some("other")),
        ("utm_source", None),
        ("referrer_host", None),
        ("url_host", None),
        ("url_path", None),
        ("properties", Some("{}")),
    ];
    for (c, v) in want {
        assert_eq!(col(&r, c), *v, "{c}");
    }
    for c in EVENT_COLUMNS
        .iter()
        .filter(|c| c.starts_with("geo_") || c.starts_with("ua_"))
        .filter(|c| **c != "ua_device_type")
    {
        assert_eq!(col(&r, c), None, "{c}");
    }
}

#[test]
fn exact_row_bytes() {
    let p = prepare_with(
        r#"{"event_name":"a\tb","x":"1\\2"}"#,
        &Request {
            peer_ip: None,
            user_agent: None,
            ..request()
        },
    )
    .unwrap();
    let want = format!(
        "{RECEIVED_TEXT}\t{RECEIVED_TEXT}\t\\N\t7\ta\\tb\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\
         \\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\tf\t\
         \\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t{{\"x\":\"1\\\\\\\\2\"}}\t\\N\n"
    );
    assert_eq!(String::from_utf8(p.rows).unwrap(), want);
}

#[test]
fn a_batch_keeps_its_order() {
    let body = r#"[{"event_name":"a","event_id":"1"},{"event_name":"b"},{"event_name":"c","event_id":"3"}]"#;
    let p = prepare_with(body, &request()).unwrap();
    assert_eq!(p.count, 3);
    assert_eq!(
        p.event_ids,
        vec![Some("1".to_string()), None, Some("3".to_string())]
    );
    let r = parse_rows(&p);
    let names: Vec<_> = r.iter().map(|r| col(r, "event_name").unwrap()).collect();
    assert_eq!(names, ["a", "b", "c"]);
}

#[test]
fn event_name_rules() {
    assert_problem(r#"{}"#, "event_name", "is required");
    assert_problem(r#"{"event_name":null}"#, "event_name", "is required");
    assert_problem(
        r#"{"event_name":1}"#,
        "event_name",
        "must be a string, got number",
    );
    assert_problem(r#"{"event_name":["a"]}"#, "event_name", "got array");
    assert_problem(r#"{"event_name":""}"#, "event_name", "must not be empty");
    let ok = "é".repeat(256);
    assert_eq!(
        col(&row(&format!(r#"{{"event_name":"{ok}"}}"#)), "event_name"),
        Some(ok.as_str())
    );
    let long = "é".repeat(257);
    assert_problem(
        &format!(r#"{{"event_name":"{long}"}}"#),
        "event_name",
        "at most 256 characters, got 257",
    );
    // Escapes count as the character they stand for.
    let escaped = "\\u00e9".repeat(256);
    assert!(prepare_with(&format!(r#"{{"event_name":"{escaped}"}}"#), &request()).is_ok());
}

#[test]
fn timestamp_forms() {
    let ts = |v: &str| {
        let r = row(&format!(r#"{{"event_name":"e","timestamp":{v}}}"#));
        col(&r, "timestamp").unwrap().to_string()
    };
    assert_eq!(
        ts(r#""2026-11-26T09:00:00Z""#),
        "2026-11-26 09:00:00.000000+00"
    );
    assert_eq!(
        ts(r#""2026-11-26 10:30:00.5+01:00""#),
        "2026-11-26 09:30:00.500000+00"
    );
    assert_eq!(ts("1795683600"), "2026-11-26 09:00:00.000000+00");
    assert_eq!(ts("1795683600.25"), "2026-11-26 09:00:00.250000+00");
    assert_eq!(ts("1795683600250"), "2026-11-26 09:00:00.250000+00");
    assert_eq!(ts("1795683600250.5"), "2026-11-26 09:00:00.250500+00");
    assert_eq!(ts("0"), "1970-01-01 00:00:00.000000+00");
    assert_eq!(ts("null"), RECEIVED_TEXT);
    // The latest storable time, received within the future bound of it.
    let late = Request {
        received_at_us: timestamp::MAX_US - 3_600_000_000,
        ..request()
    };
    let r = row_with(
        r#"{"event_name":"e","timestamp":"9999-12-31T23:59:59.999999Z"}"#,
        &late,
    );
    assert_eq!(col(&r, "timestamp"), Some("9999-12-31 23:59:59.999999+00"));
}

#[test]
fn future_timestamps_are_stored_at_receipt() {
    // Within 24 h of receipt (10:00 on the 26th): stored as given.
    let r = row(r#"{"event_name":"e","timestamp":"2026-11-27T10:00:00Z"}"#);
    assert_eq!(col(&r, "timestamp"), Some("2026-11-27 10:00:00.000000+00"));
    assert_eq!(col(&r, "properties"), Some("{}"));
    // One microsecond further: stored at receipt, the sent value kept as sent.
    let r = row(r#"{"event_name":"e","timestamp":"2026-11-27T10:00:00.000001Z","plan":"pro"}"#);
    assert_eq!(col(&r, "timestamp"), Some(RECEIVED_TEXT));
    assert_eq!(
        col(&r, "properties"),
        Some(r#"{"plan":"pro","future_timestamp":"2026-11-27T10:00:00.000001Z"}"#)
    );
    for (v, kept) in [
        (r#""9999-12-31T23:59:59Z""#, r#""9999-12-31T23:59:59Z""#),
        ("32503680000", "32503680000"),
        ("4102444800000", "4102444800000"),
    ] {
        let r = row(&format!(r#"{{"event_name":"e","timestamp":{v}}}"#));
        assert_eq!(col(&r, "timestamp"), Some(RECEIVED_TEXT), "{v}");
        assert_eq!(
            col(&r, "properties"),
            Some(format!(r#"{{"future_timestamp":{kept}}}"#).as_str())
        );
    }
    // Judged after clock-skew correction: a client clock two days ahead
    // that sends an event of its "now" is not in the future...
    let r = row(
        r#"{"event_name":"e","timestamp":"2026-11-28T10:00:00Z","sent_at":"2026-11-28T10:00:01Z"}"#,
    );
    assert_eq!(col(&r, "timestamp"), Some("2026-11-26 09:59:59.000000+00"));
    // ...and one two days ahead of a correct sent_at is.
    let r = row(
        r#"{"event_name":"e","timestamp":"2026-11-28T10:00:00Z","sent_at":"2026-11-26T10:00:00Z"}"#,
    );
    assert_eq!(col(&r, "timestamp"), Some(RECEIVED_TEXT));
    // A corrected time past 9999-12-31 is in the future, not an error.
    let r = row(
        r#"{"event_name":"e","timestamp":"9999-12-31T23:59:59Z","sent_at":"2026-11-26T09:00:00Z"}"#,
    );
    assert_eq!(col(&r, "timestamp"), Some(RECEIVED_TEXT));
    // The kept value wins over a client's own member of that name.
    let r = row(r#"{"event_name":"e","future_timestamp":1,"timestamp":"3000-01-01T00:00:00Z"}"#);
    let props = col(&r, "properties").unwrap();
    assert!(
        props.ends_with(r#""future_timestamp":"3000-01-01T00:00:00Z"}"#),
        "{props}"
    );
}

#[test]
fn future_bound_is_configurable() {
    let one_hour = Limits::default().with_max_future_secs(3600).unwrap();
    let body = br#"{"event_name":"e","timestamp":"2026-11-26T11:00:01Z"}"#;
    let p = prepare_events(body, &request(), &one_hour).unwrap();
    assert_eq!(col(&parse_rows(&p)[0], "timestamp"), Some(RECEIVED_TEXT));
    let p = prepare_events(body, &request(), &Limits::default()).unwrap();
    assert_eq!(
        col(&parse_rows(&p)[0], "timestamp"),
        Some("2026-11-26 11:00:01.000000+00")
    );
    // 0: nothing after the receipt is believed.
    let none = Limits::default().with_max_future_secs(0).unwrap();
    let body = br#"{"event_name":"e","timestamp":"2026-11-26T10:00:00.000001Z"}"#;
    let p = prepare_events(body, &request(), &none).unwrap();
    assert_eq!(col(&parse_rows(&p)[0], "timestamp"), Some(RECEIVED_TEXT));
    assert!(Limits::default().with_max_future_secs(-1).is_err());
    let e = Limits::default()
        .with_max_future_secs(Limits::MAX_FUTURE_SECS_CEILING + 1)
        .unwrap_err();
    assert!(
        e.starts_with("max_future_seconds must be between 0 and"),
        "{e}"
    );
    assert_eq!(
        Limits::default().max_future_us(),
        Limits::DEFAULT_MAX_FUTURE_SECS * 1_000_000
    );
}

#[test]
fn timestamp_errors() {
    for (v, msg) in [
        (r#""2026-11-26T09:00:00""#, "no UTC offset"),
        (r#""yesterday""#, "RFC 3339"),
        (
            r#""1969-12-31T23:59:59Z""#,
            "between 1970-01-01 and 9999-12-31",
        ),
        (r#""9999-12-31T23:00:00-02:00""#, "between 1970-01-01"),
        ("-1", "between 1970-01-01"),
        ("1e300", "between 1970-01-01"),
        ("true", "got boolean"),
        ("{}", "got object"),
    ] {
        assert_problem(
            &format!(r#"{{"event_name":"e","timestamp":{v}}}"#),
            "timestamp",
            msg,
        );
        assert_problem(
            &format!(r#"{{"event_name":"e","sent_at":{v}}}"#),
            "sent_at",
            msg,
        );
    }
}

#[test]
fn clock_skew_correction() {
    // The client's clock is 5 s ahead: it sent at 10:00:05 by its clock,
    // we received at 10:00:00, so its 09:00:05 is really 09:00:00.
    let r = row(
        r#"{"event_name":"e","timestamp":"2026-11-26T09:00:05Z","sent_at":"2026-11-26T10:00:05Z"}"#,
    );
    assert_eq!(col(&r, "timestamp"), Some("2026-11-26 09:00:00.000000+00"));
    assert_eq!(col(&r, "sent_at"), Some("2026-11-26 10:00:05.000000+00"));
    assert_eq!(col(&r, "received_at"), Some(RECEIVED_TEXT));
    // Mixed forms; a clock behind.
    let r = row(r#"{"event_name":"e","timestamp":1795683600000,"sent_at":1795687190}"#);
    assert_eq!(col(&r, "timestamp"), Some("2026-11-26 09:00:10.000000+00"));
    // sent_at alone: timestamp stays the receive time.
    let r = row(r#"{"event_name":"e","sent_at":"2026-11-26T10:00:05Z"}"#);
    assert_eq!(col(&r, "timestamp"), Some(RECEIVED_TEXT));
    assert_eq!(col(&r, "sent_at"), Some("2026-11-26 10:00:05.000000+00"));
    // Corrected out of range.
    assert_problem(
        r#"{"event_name":"e","timestamp":"1970-01-01T00:00:01Z","sent_at":"2026-11-26T10:00:05Z"}"#,
        "sent_at",
        "clock skew",
    );
}

#[test]
fn metrics() {
    let r = row(r#"{"event_name":"e","metric_name":"latency_ms","metric_value":12.5}"#);
    assert_eq!(col(&r, "metric_name"), Some("latency_ms"));
    assert_eq!(col(&r, "metric_value"), Some("12.5"));
    for (v, want) in [
        ("42", "42.0"),
        ("-0", "-0.0"),
        ("1e-7", "1e-7"),
        ("0.1", "0.1"),
        ("123456789012345678901234567890", "1.2345678901234568e29"),
        ("1.7976931348623157e308", "1.7976931348623157e308"),
    ] {
        let r = row(&format!(
            r#"{{"event_name":"e","metric_name":"m","metric_value":{v}}}"#
        ));
        assert_eq!(col(&r, "metric_value"), Some(want), "{v}");
    }
    assert_problem(
        r#"{"event_name":"e","metric_name":"m"}"#,
        "metric_value",
        "is required when metric_name",
    );
    assert_problem(
        r#"{"event_name":"e","metric_value":1}"#,
        "metric_name",
        "is required when metric_value",
    );
    assert_problem(
        r#"{"event_name":"e","metric_name":"m","metric_value":null}"#,
        "metric_value",
        "is required",
    );
    assert_problem(
        r#"{"event_name":"e","metric_name":"m","metric_value":1e400}"#,
        "metric_value",
        "finite",
    );
    assert_problem(
        r#"{"event_name":"e","metric_name":"m","metric_value":"1"}"#,
        "metric_value",
        "must be a number, got string",
    );
    assert_problem(
        r#"{"event_name":"e","metric_name":"","metric_value":1}"#,
        "metric_name",
        "must not be empty",
    );
    // Neither is fine.
    let r = row(r#"{"event_name":"e","metric_name":null,"metric_value":null}"#);
    assert_eq!(col(&r, "metric_value"), None);
}

#[test]
fn event_ids() {
    let p = prepare_with(r#"{"event_name":"e","event_id":"abc\u0000"}"#, &request()).unwrap();
    assert_eq!(p.event_ids, vec![Some("abc\u{FFFD}".to_string())]);
    assert_eq!(col(&parse_rows(&p)[0], "event_id"), Some("abc\u{FFFD}"));
    assert_problem(
        r#"{"event_name":"e","event_id":""}"#,
        "event_id",
        "must not be empty",
    );
    assert_problem(
        r#"{"event_name":"e","event_id":5}"#,
        "event_id",
        "must be a string",
    );
    let long = "x".repeat(257);
    assert_problem(
        &format!(r#"{{"event_name":"e","event_id":"{long}"}}"#),
        "event_id",
        "at most 256",
    );
    let p = prepare_with(r#"{"event_name":"e","event_id":null}"#, &request()).unwrap();
    assert_eq!(p.event_ids, vec![None]);
}

#[test]
fn customer_identifier() {
    let keyed = Request {
        customer_identifier: Some("acme\t1"),
        ..request()
    };
    let r = row_with(
        r#"{"event_name":"e","customer_identifier":"other"}"#,
        &keyed,
    );
    assert_eq!(col(&r, "customer_identifier"), Some("acme\t1"));
    assert_eq!(col(&r, "properties"), Some("{}"));
    let r = row(r#"{"event_name":"e","customer_identifier":"cust-9"}"#);
    assert_eq!(col(&r, "customer_identifier"), Some("cust-9"));
    let r = row(r#"{"event_name":"e","customer_identifier":42}"#);
    assert_eq!(col(&r, "customer_identifier"), None);
    assert_eq!(col(&r, "properties"), Some("{}"));
    // A NUL in the key's identifier cannot reach PostgreSQL.
    let nul = Request {
        customer_identifier: Some("a\0b"),
        ..request()
    };
    let r = row_with(r#"{"event_name":"e"}"#, &nul);
    assert_eq!(col(&r, "customer_identifier"), Some("a\u{FFFD}b"));
}

#[test]
fn ip_rules() {
    let r = row(r#"{"event_name":"e","ip":"2001:DB8::0:1"}"#);
    assert_eq!(col(&r, "ip"), Some("2001:db8::1"));
    let r = row(r#"{"event_name":"e","ip":"::ffff:192.0.2.1"}"#);
    assert_eq!(col(&r, "ip"), Some("192.0.2.1"));
    let r = row(r#"{"event_name":"e","ip":null}"#);
    assert_eq!(col(&r, "ip"), Some("203.0.113.9"));
    assert_problem(
        r#"{"event_name":"e","ip":"1.2.3.999"}"#,
        "ip",
        "valid IPv4 or IPv6",
    );
    assert_problem(r#"{"event_name":"e","ip":""}"#, "ip", "valid IPv4 or IPv6");
    assert_problem(
        r#"{"event_name":"e","ip":16909060}"#,
        "ip",
        "must be a string",
    );
    for (peer, want) in [
        (None, None),
        (Some("not an ip"), None),
        (Some("::ffff:10.0.0.1"), Some("10.0.0.1")),
        (Some("FE80::1"), Some("fe80::1")),
    ] {
        let req = Request {
            peer_ip: peer,
            ..request()
        };
        assert_eq!(
            col(&row_with(r#"{"event_name":"e"}"#, &req), "ip"),
            want,
            "{peer:?}"
        );
    }
}

#[test]
fn user_agent_and_referrer_fall_back_to_headers() {
    let req = Request {
        referer: Some("https://Search.Example/?q=x&utm_source=ref_header"),
        ..request()
    };
    let r = row_with(r#"{"event_name":"e"}"#, &req);
    assert_eq!(col(&r, "user_agent"), Some("TestAgent/1.0"));
    assert_eq!(
        col(&r, "referrer"),
        Some("https://Search.Example/?q=x&utm_source=ref_header")
    );
    assert_eq!(col(&r, "referrer_host"), Some("search.example"));
    assert_eq!(col(&r, "utm_source"), Some("ref_header"));
    let r = row_with(
        r#"{"event_name":"e","user_agent":"Body/2","referrer":"http://news.example/a"}"#,
        &req,
    );
    assert_eq!(col(&r, "user_agent"), Some("Body/2"));
    assert_eq!(col(&r, "referrer"), Some("http://news.example/a"));
    assert_eq!(col(&r, "referrer_host"), Some("news.example"));
    assert_eq!(col(&r, "utm_source"), None);
    let bare = Request {
        user_agent: None,
        ..request()
    };
    let r = row_with(r#"{"event_name":"e"}"#, &bare);
    assert_eq!(col(&r, "user_agent"), None);
    assert_problem(
        r#"{"event_name":"e","user_agent":1}"#,
        "user_agent",
        "must be a string",
    );
    assert_problem(
        r#"{"event_name":"e","referrer":{}}"#,
        "referrer",
        "must be a string",
    );
    assert_problem(r#"{"event_name":"e","url":[]}"#, "url", "must be a string");
}

#[test]
fn url_fields_from_the_body() {
    let r = row(
        r#"{"event_name":"e","url":"https://WWW.Shop.example:8443/p/a%20b?utm_campaign=bf#top"}"#,
    );
    assert_eq!(
        col(&r, "url"),
        Some("https://WWW.Shop.example:8443/p/a%20b?utm_campaign=bf#top")
    );
    assert_eq!(col(&r, "url_host"), Some("www.shop.example"));
    assert_eq!(col(&r, "url_path"), Some("/p/a%20b"));
    assert_eq!(col(&r, "utm_campaign"), Some("bf"));
    // Malformed URLs are kept, their parts are null, the event is fine.
    let r = row(r#"{"event_name":"e","url":"ht tp://bad host/\\x?utm_source=still"}"#);
    assert_eq!(
        col(&r, "url"),
        Some("ht tp://bad host/\\x?utm_source=still")
    );
    assert_eq!(col(&r, "url_host"), None);
    assert_eq!(col(&r, "url_path"), None);
    assert_eq!(col(&r, "utm_source"), Some("still"));
    // A huge query string: kept in url, derived value null.
    let big = "x".repeat(30_000);
    let r = row(&format!(
        r#"{{"event_name":"e","url":"https://a.example/?utm_source={big}&utm_medium=m"}}"#
    ));
    assert_eq!(col(&r, "url_host"), Some("a.example"));
    assert_eq!(col(&r, "utm_source"), None);
    assert_eq!(col(&r, "utm_medium"), Some("m"));
}

#[test]
fn utm_priority_is_per_field() {
    let req = Request {
        referer: Some("https://r.example/?utm_source=ref&utm_medium=ref&utm_term=ref"),
        ..request()
    };
    let r = row_with(
        r#"{"event_name":"e","utm_source":"body","url":"https://u.example/?utm_source=url&utm_medium=url+x&utm_content=%F0%9F%98%80"}"#,
        &req,
    );
    assert_eq!(col(&r, "utm_source"), Some("body"));
    assert_eq!(col(&r, "utm_medium"), Some("url x"));
    assert_eq!(col(&r, "utm_campaign"), None);
    assert_eq!(col(&r, "utm_term"), Some("ref"));
    assert_eq!(col(&r, "utm_content"), Some("😀"));
    // The body's utm_* are columns, not properties; they must be strings.
    assert_eq!(col(&r, "properties"), Some("{}"));
    assert_problem(
        r#"{"event_name":"e","utm_term":3}"#,
        "utm_term",
        "must be a string",
    );
    // Decoded control characters and NUL are escaped/replaced.
    let r = row(r#"{"event_name":"e","url":"/?utm_source=a%09b%00c%5Cd%0A"}"#);
    assert_eq!(col(&r, "utm_source"), Some("a\tb\u{FFFD}c\\d\n"));
    assert_eq!(col(&r, "url_path"), Some("/"));
}

#[test]
fn properties_keep_everything_else_as_sent() {
    let r = row(
        r#"{"event_name":"e","plan":"pro","n":1.50,"big":123456789012345678901234567890,"e":1E+2,"nested":{"a":[true,null,{"b":-0}]},"properties":{"x":1},"received_at":"x","project_id":9}"#,
    );
    assert_eq!(
        col(&r, "properties"),
        Some(
            r#"{"plan":"pro","n":1.50,"big":123456789012345678901234567890,"e":1E+2,"nested":{"a":[true,null,{"b":-0}]},"properties":{"x":1},"received_at":"x","project_id":9}"#
        )
    );
    assert_eq!(col(&r, "project_id"), Some("7"));
    // A null property is kept (it is not a known field).
    let r = row(r#"{"event_name":"e","gone":null}"#);
    assert_eq!(col(&r, "properties"), Some(r#"{"gone":null}"#));
}

#[test]
fn duplicate_keys_last_one_wins() {
    let r = row(r#"{"event_name":"first","a":1,"event_name":"second","a":2,"b":{"c":1,"c":2}}"#);
    assert_eq!(col(&r, "event_name"), Some("second"));
    assert_eq!(col(&r, "properties"), Some(r#"{"a":2,"b":{"c":2}}"#));
    // A later null clears an earlier value.
    let r = row(r#"{"event_name":"e","ip":"1.1.1.1","ip":null}"#);
    assert_eq!(col(&r, "ip"), Some("203.0.113.9"));
    // And a later valid value replaces an earlier invalid one.
    let r = row(r#"{"event_name":"e","ip":"bad","ip":"1.1.1.1"}"#);
    assert_eq!(col(&r, "ip"), Some("1.1.1.1"));
    // Keys compare after decoding.
    let r = row(r#"{"event_name":"e","event\u005fname":"decoded"}"#);
    assert_eq!(col(&r, "event_name"), Some("decoded"));
}

#[test]
fn copy_escaping_round_trips() {
    let nasty = "tab\there\nnew\rline\\back\\\\slash \\N \\. \"quoted\" \u{1} é😀";
    let json_nasty = nasty
        .replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
        .replace('"', "\\\"")
        .replace('\u{1}', "\\u0001");
    let body = format!(
        r#"{{"event_name":"{json_nasty}","url":"{json_nasty}","k{json_nasty}":"{json_nasty}"}}"#
    );
    let req = Request {
        user_agent: Some(nasty),
        ..request()
    };
    let r = row_with(&body, &req);
    assert_eq!(col(&r, "event_name"), Some(nasty));
    assert_eq!(col(&r, "url"), Some(nasty));
    assert_eq!(col(&r, "user_agent"), Some(nasty));
    // The properties text is JSON that decodes back to the same strings.
    let props = col(&r, "properties").unwrap().to_string();
    assert_eq!(props, format!(r#"{{"k{json_nasty}":"{json_nasty}"}}"#));
    let d = json::parse(
        props.as_bytes(),
        json::JsonLimits {
            max_depth: 4,
            max_string_bytes: 1000,
        },
    )
    .unwrap();
    let (k, v) = d.members(0).next().unwrap();
    assert_eq!(d.str(k), format!("k{nasty}"));
    assert_eq!(d.str(v), nasty);
}

#[test]
fn strings_postgres_cannot_hold_are_replaced() {
    let r = row(
        r#"{"event_name":"a\u0000b\ud800c","k\u0000\udfff":"\ud83d\ude00\ud83d","url":"\u0000"}"#,
    );
    assert_eq!(col(&r, "event_name"), Some("a\u{FFFD}b\u{FFFD}c"));
    assert_eq!(col(&r, "url"), Some("\u{FFFD}"));
    assert_eq!(
        col(&r, "properties"),
        Some("{\"k\u{FFFD}\u{FFFD}\":\"😀\u{FFFD}\"}")
    );
}

#[test]
fn non_object_events() {
    let e = err(r#"[{"event_name":"ok"},"nope",[{"event_name":"x"}],null]"#);
    assert_eq!(e.code, ErrorCode::InvalidEvent);
    let got: Vec<_> = e
        .details
        .iter()
        .map(|d| (d.index, d.field.clone(), d.message.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                Some(1),
                None,
                "event must be a JSON object, got string".to_string()
            ),
            (
                Some(2),
                None,
                "event must be a JSON object, got array".to_string()
            ),
            (
                Some(3),
                None,
                "event must be a JSON object, got null".to_string()
            ),
        ]
    );
    assert_eq!(
        e.message,
        "3 of 4 events are invalid, 3 problems (see details)"
    );
    // A scalar body is one event that is not an object.
    for body in ["42", "\"x\"", "null", "true"] {
        let (field, msg) = problem(body);
        assert_eq!(field, None);
        assert!(msg.starts_with("event must be a JSON object"), "{msg}");
    }
}

#[test]
fn batch_limits() {
    let e = err("[]");
    assert_eq!(e.code, ErrorCode::InvalidEvent);
    assert!(e.message.contains("empty batch"));
    assert_eq!(e.details.len(), 1);
    assert_eq!(e.details[0].index, None);

    let limits = Limits::new(1 << 20, 3, 32, 1000).unwrap();
    let three = r#"[{"event_name":"a"},{"event_name":"b"},{"event_name":"c"}]"#;
    assert_eq!(
        prepare_events(three.as_bytes(), &request(), &limits)
            .unwrap()
            .count,
        3
    );
    let four = r#"[{"event_name":"a"},{"event_name":"b"},{"event_name":"c"},{"event_name":"d"}]"#;
    let e = prepare_events(four.as_bytes(), &request(), &limits).unwrap_err();
    assert_eq!(e.code, ErrorCode::BatchTooLarge);
    assert_eq!(e.status(), 400);
    assert!(e.message.contains("4 events"), "{}", e.message);
}

#[test]
fn all_or_nothing_with_every_problem_reported() {
    let body = r#"[{"event_name":"ok"},{"event_name":"","ip":"x","timestamp":"bad","metric_name":"m"},{"event_name":"ok2"},{}]"#;
    let e = err(body);
    assert_eq!(e.code, ErrorCode::InvalidEvent);
    let got: Vec<_> = e
        .details
        .iter()
        .map(|d| (d.index.unwrap(), d.field.clone().unwrap()))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, "event_name".to_string()),
            (1, "timestamp".to_string()),
            (1, "metric_value".to_string()),
            (1, "ip".to_string()),
            (3, "event_name".to_string()),
        ]
    );
    assert_eq!(
        e.message,
        "2 of 4 events are invalid, 5 problems (see details)"
    );
    // One problem: the message says it all.
    let e = err(r#"[{"event_name":"ok"},{"event_name":7}]"#);
    assert_eq!(
        e.message,
        "invalid event at index 1: event_name must be a string, got number"
    );
    let e = err(r#"{"ip":"x","event_name":"e"}"#);
    assert_eq!(
        e.message,
        "invalid event: ip must be a valid IPv4 or IPv6 address"
    );
}

#[test]
fn details_are_capped_at_100() {
    let body = format!("[{}]", vec!["{}"; 150].join(","));
    let e = err(&body);
    assert_eq!(e.details.len(), error::MAX_DETAILS);
    assert_eq!(e.details[99].index, Some(99));
    assert_eq!(
        e.message,
        "150 of 150 events are invalid, 150 problems; the first 100 are in details"
    );
}

#[test]
fn malformed_json() {
    for (body, offset) in [
        ("{", "byte 1"),
        (r#"{"event_name":"e"} x"#, "byte 19"),
        (r#"{"event_name":"e",}"#, "byte 18"),
        ("[1,]", "byte 3"),
        ("", "empty body"),
        ("{\"event_name\":\"a\nb\"}", "byte 16"),
    ] {
        let e = err(body);
        assert_eq!(e.code, ErrorCode::MalformedJson, "{body}");
        assert_eq!(e.status(), 400);
        assert_eq!(e.details.len(), 1);
        assert_eq!(e.details[0].index, None);
        assert_eq!(e.details[0].field, None);
        assert!(e.message.contains(offset), "{body}: {}", e.message);
    }
    let e = prepare_events(b"{\"a\":\"\xff\"}", &request(), &Limits::default()).unwrap_err();
    assert_eq!(e.code, ErrorCode::MalformedJson);
    assert!(
        e.message.contains("invalid UTF-8 at byte 6"),
        "{}",
        e.message
    );
}

#[test]
fn limits_have_their_own_codes() {
    let limits = Limits::new(1 << 20, 10, 3, 10).unwrap();
    let deep = r#"[{"event_name":"e","p":{"q":{}}}]"#;
    let e = prepare_events(deep.as_bytes(), &request(), &limits).unwrap_err();
    assert_eq!(e.code, ErrorCode::TooDeep);
    assert_eq!(e.status(), 400);
    assert!(
        e.message.contains("deeper than 3 levels at byte 28"),
        "{}",
        e.message
    );
    assert!(prepare_events(br#"{"event_name":"e","p":{"q":{}}}"#, &request(), &limits).is_ok());
    let long = r#"{"event_name":"12345678901"}"#;
    let e = prepare_events(long.as_bytes(), &request(), &limits).unwrap_err();
    assert_eq!(e.code, ErrorCode::StringTooLong);
    assert!(e.message.contains("longer than 10 bytes"), "{}", e.message);
}

#[test]
fn unstorable_numbers_fail_their_event_not_the_copy() {
    let (field, msg) = problem(r#"{"event_name":"e","stats":{"x":[1e999999]}}"#);
    assert_eq!(field.as_deref(), Some("stats"));
    assert!(
        msg.contains("outside the range PostgreSQL can store"),
        "{msg}"
    );
}

#[test]
fn body_size_and_gzip() {
    let body = br#"{"event_name":"zipped"}"#;
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(body).unwrap();
    let gz = enc.finish().unwrap();
    let req = Request {
        gzip: true,
        ..request()
    };
    let p = prepare_events(&gz, &req, &Limits::default()).unwrap();
    assert_eq!(col(&parse_rows(&p)[0], "event_name"), Some("zipped"));

    let e = prepare_events(body, &req, &Limits::default()).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidGzip);

    let e = prepare_events(&gz, &request(), &Limits::default()).unwrap_err();
    assert_eq!(e.code, ErrorCode::MalformedJson);
    assert!(e.message.contains("looks gzip-compressed"), "{}", e.message);

    let small = Limits::new(body.len() - 1, 10, 32, 100).unwrap();
    for (b, r) in [(&body[..], request()), (&gz[..], req)] {
        let e = prepare_events(b, &r, &small).unwrap_err();
        assert_eq!(e.code, ErrorCode::BodyTooLarge);
        assert_eq!(e.status(), 413);
    }
}

#[test]
fn limits_are_checked() {
    assert_eq!(
        Limits::default(),
        Limits::new(1_048_576, 1000, 32, 65_536).unwrap()
    );
    assert!(Limits::new(0, 1, 1, 1).is_err());
    assert!(Limits::new(1, 0, 1, 1).is_err());
    assert!(Limits::new(1, 1, 0, 1).is_err());
    assert!(Limits::new(1, 1, 257, 1).is_err());
    assert!(Limits::new(1, 1, 1, 0).is_err());
    assert!(Limits::new(1 << 32, 1, 1, 1).is_err());
    let e = Limits::new(1, 1, 300, 1).unwrap_err();
    assert_eq!(e, "max_depth must be between 1 and 256, got 300");
}

#[test]
fn received_at_is_clamped_to_the_storable_range() {
    let req = Request {
        received_at_us: -5,
        ..request()
    };
    let r = row_with(r#"{"event_name":"e"}"#, &req);
    assert_eq!(
        col(&r, "received_at"),
        Some("1970-01-01 00:00:00.000000+00")
    );
}

#[test]
fn max_depth_properties_encode() {
    let limits = Limits::new(1 << 20, 10, Limits::MAX_DEPTH_CEILING, 100).unwrap();
    let depth = Limits::MAX_DEPTH_CEILING - 1;
    let body = format!(
        r#"{{"event_name":"e","p":{}1{}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let p = prepare_events(body.as_bytes(), &request(), &limits).unwrap();
    let r = parse_rows(&p);
    assert!(col(&r[0], "properties")
        .unwrap()
        .contains(&"[".repeat(depth)));
}

#[test]
fn big_batch_round_trips() {
    let events: Vec<String> = (0..1000)
        .map(|i| {
            format!(
                r#"{{"event_name":"e{i}","event_id":"id-{i}","timestamp":{},"i":{i},"s":"v\t{i}"}}"#,
                1_795_683_600 + i
            )
        })
        .collect();
    let body = format!("[{}]", events.join(","));
    let p = prepare_with(&body, &request()).unwrap();
    let r = parse_rows(&p);
    for (i, row) in r.iter().enumerate() {
        assert_eq!(col(row, "event_name"), Some(format!("e{i}").as_str()));
        assert_eq!(p.event_ids[i].as_deref(), Some(format!("id-{i}").as_str()));
        assert_eq!(
            col(row, "properties"),
            Some(format!(r#"{{"i":{i},"s":"v\t{i}"}}"#).as_str())
        );
    }
}

// --- enrichment ------------------------------------------------------------

const CHROME_MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

/// MaxMind's test City database, from ../shared (beside the repository).
fn test_geoip_db() -> std::path::PathBuf {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/testdata/geoip/GeoIP2-City-Test.mmdb");
    assert!(
        p.exists(),
        "{} missing: put the shared test data (../shared/testdata) beside the repository",
        p.display()
    );
    p
}

fn enricher(trusted: &[&str], anonymize_ip: bool) -> Enricher {
    Enricher::new(crate::enrich::EnricherConfig {
        geoip_db: Some(test_geoip_db()),
        trusted_proxies: crate::enrich::TrustedProxies::parse(trusted).unwrap(),
        anonymize_ip,
        ..Default::default()
    })
    .unwrap()
}

fn enriched(body: &str, req: &Request<'_>, e: &Enricher) -> Vec<Row> {
    let p = super::prepare_events(body.as_bytes(), req, &Limits::default(), e)
        .unwrap_or_else(|err| panic!("{body}: {err:?}"));
    parse_rows(&p)
}

fn cols<'r>(r: &'r Row, names: &[&str]) -> Vec<Option<&'r str>> {
    names.iter().map(|n| col(r, n)).collect()
}

const GEO: [&str; 6] = [
    "geo_country",
    "geo_region",
    "geo_city",
    "geo_latitude",
    "geo_longitude",
    "geo_timezone",
];
const UA: [&str; 8] = [
    "ua_browser",
    "ua_browser_version",
    "ua_os",
    "ua_os_version",
    "ua_device_type",
    "ua_device_brand",
    "ua_device_model",
    "is_bot",
];

#[test]
fn user_agents_are_parsed_from_the_body_or_the_header() {
    let req = Request {
        user_agent: Some(CHROME_MAC),
        ..request()
    };
    let r = row_with(r#"{"event_name":"e"}"#, &req);
    assert_eq!(
        cols(&r, &UA),
        [
            Some("Chrome"),
            Some("120.0.0"),
            Some("Mac OS X"),
            Some("10.15.7"),
            Some("desktop"),
            Some("Apple"),
            Some("Mac"),
            Some("f")
        ]
    );
    // The body's user_agent wins, for the columns too.
    let body = format!(r#"[{{"event_name":"e","user_agent":"{GOOGLEBOT}"}},{{"event_name":"f"}}]"#);
    let p = prepare_with(&body, &req).unwrap();
    let rs = parse_rows(&p);
    assert_eq!(col(&rs[0], "ua_browser"), Some("Googlebot"));
    assert_eq!(col(&rs[0], "ua_device_type"), Some("bot"));
    assert_eq!(col(&rs[0], "is_bot"), Some("t"));
    assert_eq!(col(&rs[1], "ua_browser"), Some("Chrome"));
    let r = row_with(
        &format!(r#"{{"event_name":"e","user_agent":"{IPHONE}"}}"#),
        &req,
    );
    assert_eq!(
        cols(
            &r,
            &["ua_browser", "ua_os", "ua_device_type", "ua_device_model"]
        ),
        [
            Some("Mobile Safari"),
            Some("iOS"),
            Some("mobile"),
            Some("iPhone")
        ]
    );
    // No user agent, or an empty one: nothing known, not a bot.
    for (body, header) in [
        (r#"{"event_name":"e"}"#, None),
        (r#"{"event_name":"e","user_agent":""}"#, Some(CHROME_MAC)),
    ] {
        let req = Request {
            user_agent: header,
            ..request()
        };
        let r = row_with(body, &req);
        assert_eq!(cols(&r, &UA)[..7], [None; 7], "{body}");
        assert_eq!(col(&r, "is_bot"), Some("f"));
    }
}

#[test]
fn geo_columns_from_the_client_address() {
    let e = enricher(&[], false);
    let london = [
        Some("GB"),
        Some("England"),
        Some("London"),
        Some("51.5142"),
        Some("-0.0931"),
        Some("Europe/London"),
    ];
    // The peer.
    let req = Request {
        peer_ip: Some("81.2.69.142"),
        ..request()
    };
    let r = &enriched(r#"{"event_name":"e"}"#, &req, &e)[0];
    assert_eq!(cols(r, &GEO), london);
    assert_eq!(col(r, "ip"), Some("81.2.69.142"));
    // The body's ip wins; IPv6; per event in a batch.
    let body = r#"[{"event_name":"a","ip":"2001:480:10::1"},{"event_name":"b","ip":"10.1.2.3"},{"event_name":"c"}]"#;
    let rs = enriched(body, &req, &e);
    assert_eq!(
        cols(&rs[0], &["ip", "geo_country", "geo_region", "geo_city"]),
        [
            Some("2001:480:10::1"),
            Some("US"),
            Some("California"),
            Some("San Diego")
        ]
    );
    // Private: no lookup, no geo.
    assert_eq!(cols(&rs[1], &GEO), [None; 6]);
    assert_eq!(col(&rs[1], "ip"), Some("10.1.2.3"));
    assert_eq!(cols(&rs[2], &GEO), london);
    // Without a database: null.
    let r = row_with(r#"{"event_name":"e"}"#, &req);
    assert_eq!(cols(&r, &GEO), [None; 6]);
}

#[test]
fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let e = enricher(&["127.0.0.1", "10.0.0.0/8"], false);
    let via = |peer, xff| Request {
        peer_ip: Some(peer),
        forwarded_for: Some(xff),
        ..request()
    };
    let body = r#"{"event_name":"e"}"#;
    let r = &enriched(
        body,
        &via("127.0.0.1", "6.6.6.6, 81.2.69.142, 10.0.0.2"),
        &e,
    )[0];
    assert_eq!(col(r, "ip"), Some("81.2.69.142"));
    assert_eq!(col(r, "geo_city"), Some("London"));
    let r = &enriched(body, &via("::ffff:127.0.0.1", "[2001:480:10::1]:443"), &e)[0];
    assert_eq!(col(r, "ip"), Some("2001:480:10::1"));
    // An untrusted peer's header is ignored.
    let r = &enriched(body, &via("89.160.20.128", "81.2.69.142"), &e)[0];
    assert_eq!(col(r, "ip"), Some("89.160.20.128"));
    assert_eq!(col(r, "geo_city"), Some("Linköping"));
    // The body's ip still wins over everything.
    let r = &enriched(
        r#"{"event_name":"e","ip":"89.160.20.128"}"#,
        &via("127.0.0.1", "81.2.69.142"),
        &e,
    )[0];
    assert_eq!(col(r, "ip"), Some("89.160.20.128"));
    // Without trusted proxies (the default enricher), the peer.
    let r = row_with(body, &via("127.0.0.1", "81.2.69.142"));
    assert_eq!(col(&r, "ip"), Some("127.0.0.1"));
}

#[test]
fn anonymised_addresses_are_looked_up_whole() {
    let e = enricher(&["127.0.0.1"], true);
    let req = Request {
        peer_ip: Some("127.0.0.1"),
        forwarded_for: Some("81.2.69.142"),
        ..request()
    };
    let body = r#"[{"event_name":"a"},{"event_name":"b","ip":"2001:480:10:ab::1"},{"event_name":"c","ip":"::ffff:89.160.20.129"}]"#;
    let rs = enriched(body, &req, &e);
    assert_eq!(
        cols(&rs[0], &["ip", "geo_city"]),
        [Some("81.2.69.0"), Some("London")]
    );
    assert_eq!(
        cols(&rs[1], &["ip", "geo_city"]),
        [Some("2001:480:10::"), Some("San Diego")]
    );
    assert_eq!(
        cols(&rs[2], &["ip", "geo_city"]),
        [Some("89.160.20.0"), Some("Linköping")]
    );
}
