//! Step 3: one event object → its fields checked → one COPY row.
//!
//! Field rules (DESIGN.md "Ingest API"); JSON `null` for any known field is
//! the same as leaving it out, and of duplicate keys the last one counts:
//! - `event_name`: required non-empty string, at most 256 characters.
//! - `timestamp`, `sent_at`: RFC 3339 with offset, or epoch seconds /
//!   milliseconds (see `timestamp`), between 1970-01-01 and 9999-12-31.
//!   `timestamp` defaults to `received_at`. When the event has both, the
//!   timestamp is corrected by the client's clock skew:
//!   `timestamp + (received_at - sent_at)`, as Segment does (a `sent_at`
//!   alone corrects nothing: the default is already server time).
//!   An event timed more than `Limits::max_future_us` (24 h by default)
//!   after its receipt, so corrected, is stored at its receipt, and the
//!   time it was sent with (the `timestamp` member as sent; in an import
//!   without one, `sent_at`) is kept in `properties` under
//!   [`FUTURE_TIMESTAMP_PROPERTY`]: one bad client clock must not create
//!   hypertable chunks years ahead nor lead every "latest" query.
//! - `metric_name` (non-empty string, ≤ 256 characters) and `metric_value`
//!   (a number finite as a double): both or neither.
//! - `event_id`: non-empty string, ≤ 256 characters.
//! - `ip`: a valid IPv4/IPv6 address, stored normalised (see `ip`);
//!   else the request's client address (the peer, or `X-Forwarded-For`
//!   from a trusted proxy: `enrich::client_ip`); else null. Anonymised
//!   after the GeoIP lookup when the enricher says so.
//! - `user_agent`, `referrer`: strings; else the request's headers.
//!   `url`, `utm_*`: strings.
//! - Enrichment (`enrich`): `geo_*` from the event's `ip` before
//!   anonymisation, `ua_*` and `is_bot` from its `user_agent` (an empty one
//!   is none), each through the enricher's bounded caches. When the event
//!   uses the request's address or `User-Agent` header, the lookup is made
//!   once per request.
//! - `customer_identifier`: the write key's when it has one (the body's is
//!   then ignored); else the body's when it is a string; else null.
//! - `distinct_id`: the person, a non-empty string of at most 256
//!   characters or a number (stored as its text).
//! - Every other member goes, as sent, into `properties`.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::net::IpAddr;
use std::sync::Arc;

use super::copy::{self, NULL, SEP};
use super::error::{Detail, MAX_DETAILS};
use super::json::{Document, Node};
use super::url_fields::{self, UTM_FIELDS};
use super::{ip, timestamp};
use crate::enrich::{Enricher, Geo, UserAgent};

/// Longest `event_name`, `metric_name` and `event_id`, in characters.
pub const MAX_NAME_CHARS: usize = 256;

/// The `properties` member that keeps the time of an event sent too far in
/// the future (as sent), when it is stored at its receipt instead. Written
/// last, it wins over a member of that name the client sent (`jsonb` keeps
/// the last of duplicate keys).
pub const FUTURE_TIMESTAMP_PROPERTY: &str = "future_timestamp";

/// Values that come from the request rather than the body, prepared (and
/// COPY-escaped) once per request.
pub struct RequestContext<'r> {
    pub received_at_us: i64,
    /// Latest event time stored as given: `received_at_us` plus the bound.
    latest_us: i64,
    historical: bool,
    received_at_text: [u8; timestamp::TEXT_LEN],
    project_id_text: IntText,
    key_customer_identifier: Option<Cow<'r, [u8]>>,
    enricher: &'r Enricher,
    /// The request's client address and its stored text.
    client_ip: Option<IpAddr>,
    client_ip_text: Option<String>,
    client_geo: OnceCell<Option<Arc<Geo>>>,
    user_agent: Option<&'r str>,
    user_agent_text: Option<Cow<'r, [u8]>>,
    header_user_agent: OnceCell<Option<Arc<UserAgent>>>,
    referer_text: Option<Cow<'r, [u8]>>,
    referer_parts: Option<url_fields::UrlParts<'r>>,
}

impl<'r> RequestContext<'r> {
    pub fn new(req: &super::Request<'r>, limits: &super::Limits, enricher: &'r Enricher) -> Self {
        let received_at_us = req
            .received_at_us
            .clamp(timestamp::MIN_US, timestamp::MAX_US);
        let escaped = |s: Option<&'r str>| s.map(|s| copy::escape_text(s.as_bytes()));
        let client_ip = enricher.client_ip(req.peer_ip, req.forwarded_for);
        RequestContext {
            received_at_us,
            latest_us: received_at_us.saturating_add(limits.max_future_us()),
            historical: req.historical,
            received_at_text: timestamp::format(received_at_us),
            project_id_text: IntText::new(req.project_id),
            key_customer_identifier: escaped(req.customer_identifier),
            enricher,
            client_ip,
            client_ip_text: client_ip.map(|ip| enricher.stored_ip(ip).to_string()),
            client_geo: OnceCell::new(),
            user_agent: req.user_agent,
            user_agent_text: escaped(req.user_agent),
            header_user_agent: OnceCell::new(),
            referer_text: escaped(req.referer),
            referer_parts: req.referer.map(url_fields::split),
        }
    }

    /// Where the request's client address is (looked up once).
    fn client_geo(&self) -> Option<Arc<Geo>> {
        self.client_geo
            .get_or_init(|| self.client_ip.and_then(|ip| self.enricher.geo(ip)))
            .clone()
    }

    /// The request's `User-Agent` header, parsed (once).
    fn header_user_agent(&self) -> Option<Arc<UserAgent>> {
        self.header_user_agent
            .get_or_init(|| {
                self.user_agent
                    .filter(|ua| !ua.is_empty())
                    .map(|ua| self.enricher.user_agent(ua))
            })
            .clone()
    }

    /// A generous estimate of a row's size beyond the event's own JSON
    /// bytes, to size the output buffer once.
    pub fn row_overhead(&self) -> usize {
        let len = |c: &Option<Cow<'_, [u8]>>| c.as_ref().map_or(0, |c| c.len());
        // Three timestamps, 36 separators, nulls, enrichment.
        384 + len(&self.user_agent_text)
            + 2 * len(&self.referer_text)
            + len(&self.key_customer_identifier)
            + self.client_ip_text.as_ref().map_or(0, |ip| ip.len())
    }
}

/// An `i64` as decimal text, without allocating.
struct IntText {
    buf: [u8; 20],
    start: usize,
}

impl IntText {
    fn new(v: i64) -> Self {
        let mut buf = [0u8; 20];
        let mut start = buf.len();
        let mut n = v.unsigned_abs();
        loop {
            start -= 1;
            buf[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        if v < 0 {
            start -= 1;
            buf[start] = b'-';
        }
        IntText { buf, start }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

/// Every problem found in a request, the first [`MAX_DETAILS`] kept.
#[derive(Default, Debug)]
pub struct Problems {
    pub details: Vec<Detail>,
    /// All problems, including those past the cap.
    pub total: usize,
    /// Events with at least one problem.
    pub invalid_events: usize,
    last_index: Option<usize>,
}

impl Problems {
    pub fn add(&mut self, index: usize, field: Option<&str>, message: String) {
        self.total += 1;
        if self.last_index != Some(index) {
            self.invalid_events += 1;
            self.last_index = Some(index);
        }
        if self.details.len() < MAX_DETAILS {
            self.details.push(Detail {
                index: Some(index),
                field: field.map(str::to_owned),
                message,
            });
        }
    }

    fn record<T>(&mut self, index: usize, field: &str, result: Result<T, String>) -> Option<T> {
        result.map_err(|m| self.add(index, Some(field), m)).ok()
    }
}

/// The top-level fields that are columns rather than properties.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    EventName,
    Timestamp,
    SentAt,
    MetricName,
    MetricValue,
    EventId,
    CustomerIdentifier,
    DistinctId,
    Ip,
    UserAgent,
    Url,
    Referrer,
    Utm(usize),
}

#[inline]
fn field_of(key: &[u8]) -> Option<Field> {
    Some(match key {
        b"event_name" => Field::EventName,
        b"timestamp" => Field::Timestamp,
        b"sent_at" => Field::SentAt,
        b"metric_name" => Field::MetricName,
        b"metric_value" => Field::MetricValue,
        b"event_id" => Field::EventId,
        b"customer_identifier" => Field::CustomerIdentifier,
        b"distinct_id" => Field::DistinctId,
        b"ip" => Field::Ip,
        b"user_agent" => Field::UserAgent,
        b"url" => Field::Url,
        b"referrer" => Field::Referrer,
        _ => Field::Utm(url_fields::utm_index(key)?),
    })
}

/// Whether a top-level key is a known field (so not a property).
pub fn is_known_field(key: &[u8]) -> bool {
    field_of(key).is_some()
}

/// Node index of each known field's value (`None`: absent or null). For
/// our own events they are members of the event object; an SDK's mapping
/// (`crate::compat`) may take them from anywhere in the document.
#[derive(Default, Clone, Copy, Debug)]
pub struct Slots {
    pub event_name: Option<usize>,
    pub timestamp: Option<usize>,
    pub sent_at: Option<usize>,
    pub metric_name: Option<usize>,
    pub metric_value: Option<usize>,
    pub event_id: Option<usize>,
    pub customer_identifier: Option<usize>,
    pub distinct_id: Option<usize>,
    pub ip: Option<usize>,
    pub user_agent: Option<usize>,
    pub url: Option<usize>,
    pub referrer: Option<usize>,
    pub utm: [Option<usize>; 5],
}

impl Slots {
    fn get_mut(&mut self, f: Field) -> &mut Option<usize> {
        match f {
            Field::EventName => &mut self.event_name,
            Field::Timestamp => &mut self.timestamp,
            Field::SentAt => &mut self.sent_at,
            Field::MetricName => &mut self.metric_name,
            Field::MetricValue => &mut self.metric_value,
            Field::EventId => &mut self.event_id,
            Field::CustomerIdentifier => &mut self.customer_identifier,
            Field::DistinctId => &mut self.distinct_id,
            Field::Ip => &mut self.ip,
            Field::UserAgent => &mut self.user_agent,
            Field::Url => &mut self.url,
            Field::Referrer => &mut self.referrer,
            Field::Utm(i) => &mut self.utm[i],
        }
    }
}

fn string_of(doc: &Document<'_>, v: usize) -> Result<usize, String> {
    match doc.node(v) {
        Node::Str { .. } => Ok(v),
        other => Err(format!("must be a string, got {}", other.kind())),
    }
}

/// Characters in UTF-8 text: the bytes that do not continue a character.
fn char_count(s: &[u8]) -> usize {
    s.iter().filter(|&&b| (b as i8) >= -0x40).count()
}

/// A non-empty string of at most [`MAX_NAME_CHARS`] characters.
fn name_of(doc: &Document<'_>, v: usize) -> Result<usize, String> {
    let v = string_of(doc, v)?;
    let s = doc.str_bytes(v);
    if s.is_empty() {
        return Err("must not be empty".to_string());
    }
    if s.len() > MAX_NAME_CHARS {
        let n = char_count(s);
        if n > MAX_NAME_CHARS {
            return Err(format!(
                "must be at most {MAX_NAME_CHARS} characters, got {n}"
            ));
        }
    }
    Ok(v)
}

/// A person id: a name (see [`name_of`]) or a number.
fn distinct_of(doc: &Document<'_>, v: usize) -> Result<usize, String> {
    match doc.node(v) {
        Node::Number { .. } => Ok(v),
        Node::Str { .. } => name_of(doc, v),
        other => Err(format!(
            "must be a string or a number, got {}",
            other.kind()
        )),
    }
}

fn time_of(doc: &Document<'_>, v: usize) -> Result<i64, String> {
    let us = match doc.node(v) {
        Node::Str { .. } => timestamp::parse_rfc3339(doc.str_bytes(v)).map_err(str::to_owned)?,
        Node::Number { .. } => {
            timestamp::from_epoch_number(doc.number_text(v)).ok_or_else(|| RANGE.to_owned())?
        }
        other => {
            return Err(format!(
                "must be an RFC 3339 date-time string or a number of epoch seconds or \
                 milliseconds, got {}",
                other.kind()
            ))
        }
    };
    if timestamp::in_range(us) {
        Ok(us)
    } else {
        Err(RANGE.to_owned())
    }
}

const RANGE: &str = "must fall between 1970-01-01 and 9999-12-31 (UTC)";

fn metric_value_of(doc: &Document<'_>, v: usize) -> Result<f64, String> {
    match doc.node(v) {
        Node::Number { .. } => {
            let t = doc.number_text(v);
            match t.parse::<f64>() {
                Ok(x) if x.is_finite() => Ok(x),
                _ => Err("must be a finite number (it overflows a double)".to_string()),
            }
        }
        other => Err(format!("must be a number, got {}", other.kind())),
    }
}

/// The body's `ip`: the address and its canonical text.
fn ip_of<'d>(doc: &'d Document<'_>, v: usize) -> Result<(IpAddr, Cow<'d, str>), String> {
    let v = string_of(doc, v)?;
    let given = doc.str(v);
    ip::parse(given)
        .map(|addr| (addr, ip::text(given, addr)))
        .ok_or_else(|| "must be a valid IPv4 or IPv6 address".to_string())
}

/// The geo and user-agent columns and `is_bot` (`geo_country` through
/// `is_bot` in `EVENT_COLUMNS`: 6 geo, 7 ua, 1 bool), each followed by a
/// separator: null (and `is_bot` false) for what is unknown.
fn write_enrichment(out: &mut Vec<u8>, geo: Option<&Geo>, ua: Option<&UserAgent>) {
    let text = |out: &mut Vec<u8>, s: &Option<String>| {
        copy::write_opt_text(out, s.as_deref().map(str::as_bytes));
        out.push(SEP);
    };
    let float = |out: &mut Vec<u8>, x: Option<f64>| {
        match x {
            Some(x) => copy::write_f64(out, x),
            None => out.extend_from_slice(NULL),
        }
        out.push(SEP);
    };
    match geo {
        Some(g) => {
            text(out, &g.country);
            text(out, &g.region);
            text(out, &g.city);
            float(out, g.latitude);
            float(out, g.longitude);
            text(out, &g.timezone);
        }
        None => out.extend_from_slice(NO_GEO),
    }
    match ua {
        Some(ua) => {
            text(out, &ua.browser);
            text(out, &ua.browser_version);
            text(out, &ua.os);
            text(out, &ua.os_version);
            out.extend_from_slice(ua.device_type.as_str().as_bytes());
            out.push(SEP);
            text(out, &ua.device_brand);
            text(out, &ua.device_model);
            out.extend_from_slice(if ua.is_bot { b"t\t" } else { b"f\t" });
        }
        None => out.extend_from_slice(NO_USER_AGENT),
    }
}

/// Six null geo columns.
const NO_GEO: &[u8] = b"\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t";
/// Seven null `ua_*` columns and `is_bot` false.
const NO_USER_AGENT: &[u8] = b"\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\tf\t";

/// Check the event at node `node` (position `index` in the batch) and, when
/// it is valid, append its row to `out` and return its `event_id`. An
/// invalid event adds its problems to `problems` and leaves `out` as it was.
pub fn encode_event(
    doc: &Document<'_>,
    node: usize,
    index: usize,
    ctx: &RequestContext<'_>,
    out: &mut Vec<u8>,
    problems: &mut Problems,
) -> Option<Option<String>> {
    let mut slots = Slots::default();
    if matches!(doc.node(node), Node::Object { .. }) {
        for (k, v) in doc.members(node) {
            if let Some(f) = field_of(doc.str_bytes(k)) {
                *slots.get_mut(f) = (doc.node(v) != Node::Null).then_some(v);
            }
        }
    }
    let event = Mapped {
        node,
        slots,
        name: None,
        properties: Properties::Native,
    };
    encode_mapped(doc, &event, index, ctx, out, problems)
}

/// One event of a document: where its fields are, and what goes into
/// `properties`.
#[derive(Clone, Copy, Debug)]
pub struct Mapped {
    /// The event object (it must be one).
    pub node: usize,
    pub slots: Slots,
    /// The event's name when `slots.event_name` is `None` (an SDK's typed
    /// call, such as Segment's `page`).
    pub name: Option<&'static str>,
    pub properties: Properties,
}

/// What an event's `properties` column holds.
#[derive(Clone, Copy, Debug)]
// Built on the stack once per event and never boxed: no allocation per event.
#[allow(clippy::large_enum_variant)]
pub enum Properties {
    /// Every member of the event object that is not a known field.
    Native,
    /// The members of up to four objects, in order (of duplicate keys the
    /// last one counts, as in `jsonb`), each without its `skip` keys.
    Merged([Option<Source>; 4]),
}

/// An object whose members go into `properties`: at the top, or (`nest`)
/// as one member holding them, named by the key node `nest`.
#[derive(Clone, Copy, Debug)]
pub struct Source {
    pub obj: usize,
    pub skip: &'static [&'static [u8]],
    pub nest: Option<usize>,
    /// A member (by key) that is an object written without some of its keys.
    pub trim: Option<(&'static [u8], &'static [&'static [u8]])>,
}

impl Source {
    pub fn members(obj: usize, skip: &'static [&'static [u8]]) -> Self {
        Source {
            obj,
            skip,
            nest: None,
            trim: None,
        }
    }
}

/// Check `event` (position `index` in the batch) and, when it is valid,
/// append its row to `out` and return its `event_id`. An invalid event adds
/// its problems to `problems` and leaves `out` as it was.
pub fn encode_mapped(
    doc: &Document<'_>,
    event: &Mapped,
    index: usize,
    ctx: &RequestContext<'_>,
    out: &mut Vec<u8>,
    problems: &mut Problems,
) -> Option<Option<String>> {
    let node = event.node;
    let kind = doc.node(node);
    if !matches!(kind, Node::Object { .. }) {
        problems.add(
            index,
            None,
            format!("event must be a JSON object, got {}", kind.kind()),
        );
        return None;
    }
    let s = event.slots;

    // Check everything first, collecting every problem.
    let before = problems.total;
    let p = &mut *problems;
    let event_name = match (s.event_name, event.name) {
        (None, None) => {
            p.add(index, Some("event_name"), "is required".to_string());
            None
        }
        (None, Some(fixed)) => Some(Name::Fixed(fixed)),
        (Some(v), _) => p
            .record(index, "event_name", name_of(doc, v))
            .map(Name::Node),
    };
    let ts = s
        .timestamp
        .and_then(|v| p.record(index, "timestamp", time_of(doc, v)));
    let sent_at = s
        .sent_at
        .and_then(|v| p.record(index, "sent_at", time_of(doc, v)));
    let metric_name = s
        .metric_name
        .and_then(|v| p.record(index, "metric_name", name_of(doc, v)));
    let metric_value = s
        .metric_value
        .and_then(|v| p.record(index, "metric_value", metric_value_of(doc, v)));
    match (s.metric_name, s.metric_value) {
        (Some(_), None) => p.add(
            index,
            Some("metric_value"),
            "is required when metric_name is given".to_string(),
        ),
        (None, Some(_)) => p.add(
            index,
            Some("metric_name"),
            "is required when metric_value is given".to_string(),
        ),
        _ => {}
    }
    let event_id = s
        .event_id
        .and_then(|v| p.record(index, "event_id", name_of(doc, v)));
    let distinct_id = s
        .distinct_id
        .and_then(|v| p.record(index, "distinct_id", distinct_of(doc, v)));
    let body_ip = s.ip.and_then(|v| p.record(index, "ip", ip_of(doc, v)));
    let user_agent = s
        .user_agent
        .and_then(|v| p.record(index, "user_agent", string_of(doc, v)));
    let url = s
        .url
        .and_then(|v| p.record(index, "url", string_of(doc, v)));
    let referrer = s
        .referrer
        .and_then(|v| p.record(index, "referrer", string_of(doc, v)));
    let mut body_utm = [None; 5];
    for (i, slot) in s.utm.iter().enumerate() {
        body_utm[i] = slot.and_then(|v| p.record(index, UTM_FIELDS[i], string_of(doc, v)));
    }
    let (timestamp, future_timestamp) = event_time(ctx, ts, sent_at, s);
    if !timestamp::in_range(timestamp) {
        // Only a skew-corrected time can be out of range here (and only below).
        p.add(
            index,
            Some("sent_at"),
            format!(
                "the timestamp corrected for clock skew (timestamp + received_at - sent_at) \
                 {RANGE}"
            ),
        );
    }
    if problems.total > before {
        return None;
    }
    let event_name = event_name?;

    // Derived fields.
    let url_parts = url.map(|v| url_fields::split(doc.str(v)));
    let body_referrer_parts = referrer.map(|v| url_fields::split(doc.str(v)));
    let referrer_parts = match referrer {
        Some(_) => body_referrer_parts.as_ref(),
        None => ctx.referer_parts.as_ref(),
    };
    let mut utm: [Option<String>; 5] = Default::default();
    if body_utm.iter().any(Option::is_none) {
        for (slot, given) in utm.iter_mut().zip(&body_utm) {
            if given.is_some() {
                *slot = Some(String::new()); // placeholder: the body's value wins
            }
        }
        for parts in [url_parts.as_ref(), referrer_parts].into_iter().flatten() {
            if let Some(q) = parts.query {
                url_fields::fill_utm(q, &mut utm);
            }
        }
    }

    // The row, in EVENT_COLUMNS order.
    let row_start = out.len();
    if timestamp == ctx.received_at_us {
        out.extend_from_slice(&ctx.received_at_text);
    } else {
        timestamp::write(out, timestamp);
    }
    out.push(SEP);
    out.extend_from_slice(&ctx.received_at_text);
    out.push(SEP);
    match sent_at {
        Some(t) => timestamp::write(out, t),
        None => out.extend_from_slice(NULL),
    }
    out.push(SEP);
    out.extend_from_slice(ctx.project_id_text.as_bytes());
    out.push(SEP);
    match event_name {
        Name::Node(v) => copy::write_doc_text(out, doc, v),
        Name::Fixed(name) => out.extend_from_slice(name.as_bytes()),
    }
    out.push(SEP);
    write_opt_doc_text(out, doc, event_id);
    out.push(SEP);
    match (&ctx.key_customer_identifier, s.customer_identifier) {
        (Some(key), _) => out.extend_from_slice(key),
        (None, Some(v)) if matches!(doc.node(v), Node::Str { .. }) => {
            copy::write_doc_text(out, doc, v)
        }
        _ => out.extend_from_slice(NULL),
    }
    out.push(SEP);
    write_opt_doc_text(out, doc, metric_name);
    out.push(SEP);
    match metric_value {
        Some(x) => copy::write_f64(out, x),
        None => out.extend_from_slice(NULL),
    }
    out.push(SEP);
    // The lookup uses the address as sent; the column may be anonymised.
    let geo = match &body_ip {
        Some((addr, text)) => {
            if ctx.enricher.anonymize_ip() {
                write_display(out, ctx.enricher.stored_ip(*addr));
            } else {
                out.extend_from_slice(text.as_bytes());
            }
            ctx.enricher.geo(*addr)
        }
        None => {
            copy::write_opt_text(out, ctx.client_ip_text.as_deref().map(str::as_bytes));
            ctx.client_geo()
        }
    };
    out.push(SEP);
    match user_agent {
        Some(v) => copy::write_doc_text(out, doc, v),
        None => out.extend_from_slice(ctx.user_agent_text.as_deref().unwrap_or(NULL)),
    }
    out.push(SEP);
    write_opt_doc_text(out, doc, url);
    out.push(SEP);
    match referrer {
        Some(v) => copy::write_doc_text(out, doc, v),
        None => out.extend_from_slice(ctx.referer_text.as_deref().unwrap_or(NULL)),
    }
    out.push(SEP);
    let ua = match user_agent {
        Some(v) => Some(doc.str(v))
            .filter(|s| !s.is_empty())
            .map(|s| ctx.enricher.user_agent(s)),
        None => ctx.header_user_agent(),
    };
    write_enrichment(out, geo.as_deref(), ua.as_deref());
    for (given, derived) in body_utm.iter().zip(&utm) {
        match given {
            Some(v) => copy::write_doc_text(out, doc, *v),
            None => copy::write_opt_text(out, derived.as_deref().map(str::as_bytes)),
        }
        out.push(SEP);
    }
    copy::write_opt_text(out, host(referrer_parts));
    out.push(SEP);
    copy::write_opt_text(out, host(url_parts.as_ref()));
    out.push(SEP);
    copy::write_opt_text(
        out,
        url_parts.as_ref().and_then(|p| p.path).map(str::as_bytes),
    );
    out.push(SEP);
    let written = match &event.properties {
        Properties::Native => copy::write_json_object(out, doc, node, |k| !is_known_field(k)),
        Properties::Merged(sources) => write_merged(out, doc, sources),
    };
    let written = written.and_then(|()| match future_timestamp {
        Some(v) => append_property(out, doc, FUTURE_TIMESTAMP_PROPERTY, v),
        None => Ok(()),
    });
    if let Err(e) = written {
        out.truncate(row_start);
        problems.add(index, Some(&e.field), e.message);
        return None;
    }
    out.push(SEP);
    match distinct_id.map(|v| (v, doc.node(v))) {
        Some((v, Node::Str { .. })) => copy::write_doc_text(out, doc, v),
        Some((v, _)) => out.extend_from_slice(doc.number_text(v).as_bytes()),
        None => out.extend_from_slice(NULL),
    }
    out.push(b'\n');
    Some(event_id.map(|v| doc.str(v).to_owned()))
}

/// The event's stored time, and the node of the time it was sent with when
/// that was too far in the future (it is then stored at its receipt).
/// The time may be out of range only when corrected for clock skew.
fn event_time(
    ctx: &RequestContext<'_>,
    ts: Option<i64>,
    sent_at: Option<i64>,
    s: Slots,
) -> (i64, Option<usize>) {
    let (time, source) = match (ts, sent_at) {
        (Some(t), _) if ctx.historical => (t, s.timestamp),
        (None, Some(sent)) if ctx.historical => (sent, s.sent_at),
        // In range: each is, so the sum stays far from i64's limits.
        (Some(t), Some(sent)) => (t + (ctx.received_at_us - sent), s.timestamp),
        (Some(t), None) => (t, s.timestamp),
        (None, _) => (ctx.received_at_us, None),
    };
    if time > ctx.latest_us {
        (ctx.received_at_us, source)
    } else {
        (time, None)
    }
}

/// Add the member `key: <node v>` to the JSON object just written at the
/// end of `out`.
fn append_property(
    out: &mut Vec<u8>,
    doc: &Document<'_>,
    key: &str,
    v: usize,
) -> Result<(), copy::Unstorable> {
    debug_assert_eq!(out.last(), Some(&b'}'));
    out.pop();
    if out.last() != Some(&b'{') {
        out.push(b',');
    }
    out.push(b'"');
    out.extend_from_slice(key.as_bytes()); // plain ASCII: nothing to escape
    out.extend_from_slice(b"\":");
    copy::write_json(out, doc, v)?;
    out.push(b'}');
    Ok(())
}

/// An event's name: a string of the document, or fixed by the mapping.
#[derive(Clone, Copy)]
enum Name {
    Node(usize),
    Fixed(&'static str),
}

/// The members of `sources` as one JSON object, COPY-escaped (duplicate keys
/// are left to `jsonb`, which keeps the last).
fn write_merged(
    out: &mut Vec<u8>,
    doc: &Document<'_>,
    sources: &[Option<Source>],
) -> Result<(), copy::Unstorable> {
    out.push(b'{');
    let mut first = true;
    for source in sources.iter().flatten() {
        if !matches!(doc.node(source.obj), Node::Object { .. }) {
            continue;
        }
        let mut inner_first = true;
        let first = match source.nest {
            Some(key) => {
                if !first {
                    out.push(b',');
                }
                first = false;
                copy::write_json(out, doc, key)?;
                out.extend_from_slice(b":{");
                &mut inner_first
            }
            None => &mut first,
        };
        for (k, v) in doc.members(source.obj) {
            if source.skip.contains(&doc.str_bytes(k)) {
                continue;
            }
            if !*first {
                out.push(b',');
            }
            *first = false;
            copy::write_json(out, doc, k)?;
            out.push(b':');
            let written = match source.trim {
                Some((key, drop))
                    if doc.str_bytes(k) == key && matches!(doc.node(v), Node::Object { .. }) =>
                {
                    copy::write_json_object(out, doc, v, |m| !drop.contains(&m))
                }
                _ => copy::write_json(out, doc, v),
            };
            written.map_err(|e| copy::Unstorable {
                field: doc.str(source.nest.unwrap_or(k)).to_owned(),
                ..e
            })?;
        }
        if source.nest.is_some() {
            out.push(b'}');
        }
    }
    out.push(b'}');
    Ok(())
}

/// Append `v`'s `Display` text (addresses hold nothing to escape).
fn write_display(out: &mut Vec<u8>, v: impl std::fmt::Display) {
    use std::io::Write;
    let _ = write!(out, "{v}");
}

fn host<'p>(parts: Option<&'p url_fields::UrlParts<'_>>) -> Option<&'p [u8]> {
    parts?.host.as_deref().map(str::as_bytes)
}

fn write_opt_doc_text(out: &mut Vec<u8>, doc: &Document<'_>, v: Option<usize>) {
    match v {
        Some(v) => copy::write_doc_text(out, doc, v),
        None => out.extend_from_slice(NULL),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_text() {
        for v in [0, 7, -1, 42, i64::MAX, i64::MIN, 1_000_000] {
            assert_eq!(IntText::new(v).as_bytes(), v.to_string().as_bytes());
        }
    }

    #[test]
    fn char_counting() {
        assert_eq!(char_count(b""), 0);
        assert_eq!(char_count("abc".as_bytes()), 3);
        assert_eq!(char_count("é😀€".as_bytes()), 3);
    }

    #[test]
    fn enrichment_has_fourteen_columns() {
        let mut out = Vec::new();
        write_enrichment(&mut out, None, None);
        let cols: Vec<&[u8]> = out.split(|&b| b == b'\t').collect();
        assert_eq!(cols.len(), 15); // 14 values and the empty rest
        assert_eq!(cols[13], b"f");
        assert!(cols[..13].iter().all(|c| *c == b"\\N"));
        let geo = Geo {
            country: Some("GB".into()),
            latitude: Some(51.5),
            ..Geo::default()
        };
        let ua = Enricher::shared_default()
            .user_agent("Googlebot/2.1 (+http://www.google.com/bot.html)");
        out.clear();
        write_enrichment(&mut out, Some(&geo), Some(&ua));
        let cols: Vec<&[u8]> = out.split(|&b| b == b'\t').collect();
        assert_eq!(cols.len(), 15);
        assert_eq!(cols[0], b"GB");
        assert_eq!(cols[3], b"51.5");
        assert_eq!(cols[6], b"Googlebot");
        assert_eq!(cols[10], b"bot");
        assert_eq!(cols[13], b"t");
    }

    #[test]
    fn known_fields() {
        for k in [
            "event_name",
            "timestamp",
            "sent_at",
            "metric_name",
            "metric_value",
            "event_id",
            "customer_identifier",
            "distinct_id",
            "ip",
            "user_agent",
            "url",
            "referrer",
            "utm_source",
            "utm_content",
        ] {
            assert!(is_known_field(k.as_bytes()), "{k}");
        }
        for k in [
            "properties",
            "received_at",
            "project_id",
            "Event_Name",
            "utm_id",
            "",
        ] {
            assert!(!is_known_field(k.as_bytes()), "{k}");
        }
    }
}
