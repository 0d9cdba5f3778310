//! Each SDK's payload, as its clients send it, through [`super::prepare`]:
//! rows read back as PostgreSQL would.

use super::*;
use crate::ingest::tests::{parse_rows, request, Row};

fn prepared(body: &str, format: Format, call: Option<&str>) -> Result<Prepared, IngestError> {
    prepare(
        body.as_bytes(),
        false,
        format,
        call,
        &request(),
        &Limits::default(),
        Enricher::shared_default(),
    )
}

fn rows(body: &str, format: Format, call: Option<&str>) -> Vec<Row> {
    let p = prepared(body, format, call).unwrap_or_else(|e| panic!("{body}: {e:?}"));
    parse_rows(&p)
}

fn col<'r>(r: &'r Row, name: &str) -> Option<&'r str> {
    r[name].as_deref()
}

/// The `properties` column's JSON text (compact, so members can be found as text).
fn properties(r: &Row) -> String {
    col(r, "properties").unwrap().to_owned()
}

#[test]
fn segment_batch() {
    let body = r#"{"batch": [
        {"type": "track", "event": "Signed Up", "userId": "u1", "anonymousId": "a1",
         "messageId": "m-1", "timestamp": "2026-11-26T09:59:50Z",
         "properties": {"plan": "pro"},
         "context": {"ip": "198.51.100.7", "userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
                     "page": {"url": "https://shop.example/a?utm_source=news", "referrer": "https://ref.example/x"},
                     "campaign": {"name": "winter", "medium": "email"}}},
        {"type": "page", "anonymousId": "a2", "name": "Home", "properties": {"title": "Hi"}},
        {"type": "identify", "userId": "u3", "traits": {"email": "x@example.com"}}
    ], "sentAt": "2026-11-26T09:59:55Z", "writeKey": "secret"}"#;
    let r = rows(body, Format::Segment, None);
    assert_eq!(col(&r[0], "event_name"), Some("Signed Up"));
    assert_eq!(col(&r[0], "distinct_id"), Some("u1"));
    assert_eq!(col(&r[0], "event_id"), Some("m-1"));
    // 09:59:50 sent at 09:59:55, received at 10:00:00: skew of 5 s.
    assert_eq!(
        col(&r[0], "timestamp"),
        Some("2026-11-26 09:59:55.000000+00")
    );
    assert_eq!(col(&r[0], "ip"), Some("198.51.100.7"));
    assert_eq!(col(&r[0], "ua_browser"), Some("Chrome"));
    assert_eq!(col(&r[0], "url_host"), Some("shop.example"));
    assert_eq!(col(&r[0], "referrer_host"), Some("ref.example"));
    assert_eq!(col(&r[0], "utm_source"), Some("news"));
    assert_eq!(col(&r[0], "utm_campaign"), Some("winter"));
    assert_eq!(col(&r[0], "utm_medium"), Some("email"));
    let p = properties(&r[0]);
    assert!(p.contains(r#""plan":"pro""#), "{p}");
    assert!(p.contains(r#""context":{"page":{}"#), "{p}");
    assert!(!p.contains("shop.example"), "{p}");
    assert!(
        !p.contains("198.51.100.7") && !p.contains("userAgent"),
        "{p}"
    );
    assert!(!p.contains("secret") && !p.contains("messageId"), "{p}");
    assert_eq!(col(&r[1], "event_name"), Some("page"));
    assert_eq!(col(&r[1], "distinct_id"), Some("a2"));
    assert!(properties(&r[1]).contains(r#""name":"Home""#));
    assert_eq!(col(&r[2], "event_name"), Some("identify"));
    assert!(properties(&r[2]).contains(r#""email":"x@example.com""#));
}

#[test]
fn segment_single_calls_take_their_name_from_the_endpoint() {
    for call in ["page", "screen", "identify", "group", "alias"] {
        let r = rows(r#"{"userId": "u"}"#, Format::Segment, Some(call));
        assert_eq!(col(&r[0], "event_name"), Some(call));
    }
    let r = rows(
        r#"{"userId": "u", "event": "Clicked"}"#,
        Format::Segment,
        Some("track"),
    );
    assert_eq!(col(&r[0], "event_name"), Some("Clicked"));
}

#[test]
fn posthog_batch_and_historical_migration() {
    let body = r#"{"api_key": "secret", "sent_at": "2026-11-26T09:59:59Z", "batch": [
        {"event": "$pageview", "distinct_id": "d1", "uuid": "0190-1", "timestamp": "2026-11-26T09:59:58Z",
         "properties": {"$current_url": "https://app.example/p?utm_campaign=launch", "$referrer": "$direct",
                        "$ip": "198.51.100.8", "$raw_user_agent": "curl/8.0", "token": "secret", "plan": "free"}}]}"#;
    let r = rows(body, Format::PostHog, None);
    assert_eq!(col(&r[0], "event_name"), Some("$pageview"));
    assert_eq!(col(&r[0], "distinct_id"), Some("d1"));
    assert_eq!(col(&r[0], "event_id"), Some("0190-1"));
    assert_eq!(
        col(&r[0], "timestamp"),
        Some("2026-11-26 09:59:59.000000+00")
    );
    assert_eq!(col(&r[0], "ip"), Some("198.51.100.8"));
    assert_eq!(col(&r[0], "user_agent"), Some("curl/8.0"));
    assert_eq!(col(&r[0], "utm_campaign"), Some("launch"));
    assert_eq!(col(&r[0], "referrer"), None);
    let p = properties(&r[0]);
    assert!(
        p.contains(r#""plan":"free""#) && !p.contains("secret"),
        "{p}"
    );
    let historical = body.replacen(
        "{\"api_key\"",
        "{\"historical_migration\": true, \"api_key\"",
        1,
    );
    let r = rows(&historical, Format::PostHog, None);
    assert_eq!(
        col(&r[0], "timestamp"),
        Some("2026-11-26 09:59:58.000000+00")
    );
}

#[test]
fn posthog_key_from_the_body() {
    let limits = Limits::default();
    for body in [
        r#"{"api_key": "k", "batch": []}"#,
        r#"[{"event": "x", "properties": {"token": "k"}}]"#,
        r#"{"event": "x", "token": "k"}"#,
        r#"{"batch": [{"event": "x", "properties": {"token": "k"}}]}"#,
    ] {
        let key = body_key(body.as_bytes(), Format::PostHog, &limits).unwrap();
        assert_eq!(key.as_deref(), Some("k"), "{body}");
    }
}

#[test]
fn mixpanel_events_and_ndjson() {
    let body = "{\"event\": \"Played\", \"properties\": {\"token\": \"secret\", \"distinct_id\": 42, \"time\": 1795687190, \"$insert_id\": \"i-1\", \"ip\": \"198.51.100.9\", \"$current_url\": \"https://m.example/?utm_source=tw\", \"genre\": \"jazz\"}}\n{\"event\": \"Paused\", \"properties\": {\"token\": \"secret\", \"distinct_id\": \"d2\", \"time\": 1795687190123}}\n";
    let r = rows(body, Format::Mixpanel, None);
    assert_eq!(r.len(), 2);
    assert_eq!(col(&r[0], "event_name"), Some("Played"));
    assert_eq!(col(&r[0], "distinct_id"), Some("42"));
    assert_eq!(col(&r[0], "event_id"), Some("i-1"));
    assert_eq!(
        col(&r[0], "timestamp"),
        Some("2026-11-26 09:59:50.000000+00")
    );
    assert_eq!(col(&r[0], "ip"), Some("198.51.100.9"));
    assert_eq!(col(&r[0], "utm_source"), Some("tw"));
    let p = properties(&r[0]);
    assert!(
        p.contains(r#""genre":"jazz""#) && !p.contains("secret"),
        "{p}"
    );
    assert_eq!(
        col(&r[1], "timestamp"),
        Some("2026-11-26 09:59:50.123000+00")
    );
    let key = body_key(
        body.lines().next().unwrap().as_bytes(),
        Format::Mixpanel,
        &Limits::default(),
    );
    assert_eq!(key.unwrap().as_deref(), Some("secret"));
}

#[test]
fn amplitude_events() {
    let body = r#"{"api_key": "secret", "events": [
        {"event_type": "Song Played", "user_id": "u-1", "device_id": "dev-1", "time": 1795687195000,
         "insert_id": "ins-1", "ip": "$remote", "event_properties": {"[Amplitude] Page Location": "https://amp.example/x?utm_medium=cpc", "bpm": 120}},
        {"event_type": "Opened", "device_id": "dev-2", "ip": "198.51.100.10"}]}"#;
    let r = rows(body, Format::Amplitude, None);
    assert_eq!(col(&r[0], "event_name"), Some("Song Played"));
    assert_eq!(col(&r[0], "distinct_id"), Some("u-1"));
    assert_eq!(col(&r[0], "event_id"), Some("ins-1"));
    assert_eq!(col(&r[0], "ip"), Some("203.0.113.9"));
    assert_eq!(col(&r[0], "utm_medium"), Some("cpc"));
    assert_eq!(
        col(&r[0], "timestamp"),
        Some("2026-11-26 09:59:55.000000+00")
    );
    let p = properties(&r[0]);
    assert!(
        p.contains(r#""bpm":120"#) && p.contains(r#""device_id":"dev-1""#) && !p.contains("secret"),
        "{p}"
    );
    assert_eq!(col(&r[1], "distinct_id"), Some("dev-2"));
    assert_eq!(col(&r[1], "ip"), Some("198.51.100.10"));
}

#[test]
fn a_batch_is_all_or_nothing_with_sdk_indexes() {
    let body = r#"{"api_key": "k", "events": [{"event_type": "ok"}, {"time": 1}]}"#;
    let e = prepared(body, Format::Amplitude, None).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidEvent);
    assert_eq!(e.details[0].index, Some(1));
}

#[test]
fn profile_updates_are_identify_events() {
    // mixpanel-python's people_set and group_set, as posted to /engage and
    // /groups; PostHog's legacy /engage/ takes the same shape.
    let person = r#"[{"$token": "secret", "$time": 1795687190.5, "$distinct_id": "m-1",
                      "$ip": "198.51.100.11", "$set": {"plan": "pro"}},
                     {"$token": "secret", "$distinct_id": 7, "$unset": ["plan"]}]"#;
    for format in [Format::Mixpanel, Format::PostHog] {
        let r = rows(person, format, Some("engage"));
        assert_eq!(r.len(), 2);
        assert_eq!(col(&r[0], "event_name"), Some("$identify"));
        assert_eq!(col(&r[0], "distinct_id"), Some("m-1"));
        assert_eq!(col(&r[0], "ip"), Some("198.51.100.11"));
        assert_eq!(
            col(&r[0], "timestamp"),
            Some("2026-11-26 09:59:50.500000+00")
        );
        assert_eq!(properties(&r[0]), r#"{"$set":{"plan":"pro"}}"#);
        assert_eq!(col(&r[1], "distinct_id"), Some("7"));
        assert_eq!(properties(&r[1]), r#"{"$unset":["plan"]}"#);
    }
    let group = r#"{"$token": "secret", "$group_key": "company", "$group_id": "acme",
                    "$set_once": {"founded": 1999}}"#;
    let r = rows(group, Format::Mixpanel, Some("groups"));
    assert_eq!(col(&r[0], "event_name"), Some("$groupidentify"));
    assert_eq!(col(&r[0], "distinct_id"), None);
    let p = properties(&r[0]);
    assert!(
        p.contains(r#""$group_key":"company""#)
            && p.contains(r#""$set_once":{"founded":1999}"#)
            && !p.contains("secret"),
        "{p}"
    );
}
