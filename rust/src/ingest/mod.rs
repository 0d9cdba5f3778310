//! The hot path of `POST /v1/events`: the raw request body in, rows ready
//! for PostgreSQL `COPY events (<EVENT_COLUMNS>) FROM STDIN` (text format)
//! out, or one structured [`IngestError`].
//!
//! The steps, one module each, in order:
//! 1. [`body`]: gunzip when asked, with the size limit applied to the
//!    decompressed bytes;
//! 2. [`json`]: our own RFC 8259 parser (limits on depth and string length,
//!    numbers kept as text, strings PostgreSQL cannot hold replaced);
//! 3. [`event`]: each event's fields checked, derived fields computed
//!    ([`ip`], [`timestamp`], [`url_fields`]) and the event enriched
//!    (client address, GeoIP, user agent: [`crate::enrich`]);
//! 4. [`copy`]: values written as COPY text, straight into one buffer.
//!
//! A batch is all or nothing: every event is checked, every problem reported
//! (up to [`error::MAX_DETAILS`] details), and rows are returned only when
//! every event is valid.
//!
//! Nothing a client sends can make the COPY itself fail: text has no NUL
//! (`\u0000` and lone UTF-16 surrogates become U+FFFD, in keys and values,
//! columns and properties alike), every timestamp is in range, every
//! `jsonb` number fits PostgreSQL's `numeric`, and COPY escaping is applied
//! to every value. The database must use the UTF8 encoding.

pub mod body;
pub mod copy;
pub mod error;
pub mod event;
pub mod ip;
pub mod json;
pub mod lines;
pub mod timestamp;
pub mod url_fields;

#[cfg(test)]
pub(crate) mod tests;

pub use error::{Detail, ErrorCode, IngestError};

use json::{JsonErrorKind, JsonLimits, Node};

use crate::enrich::Enricher;

/// Column order of the rows.
pub const EVENT_COLUMNS: [&str; 37] = [
    "timestamp",
    "received_at",
    "sent_at",
    "project_id",
    "event_name",
    "event_id",
    "customer_identifier",
    "metric_name",
    "metric_value",
    "ip",
    "user_agent",
    "url",
    "referrer",
    "geo_country",
    "geo_region",
    "geo_city",
    "geo_latitude",
    "geo_longitude",
    "geo_timezone",
    "ua_browser",
    "ua_browser_version",
    "ua_os",
    "ua_os_version",
    "ua_device_type",
    "ua_device_brand",
    "ua_device_model",
    "is_bot",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "referrer_host",
    "url_host",
    "url_path",
    "properties",
    "distinct_id",
];

/// Request limits; build once per worker with [`Limits::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    max_body_bytes: usize,
    max_batch_events: usize,
    max_depth: usize,
    max_string_bytes: usize,
    max_future_us: i64,
}

impl Limits {
    pub const DEFAULT_MAX_BODY_BYTES: usize = 1_048_576;
    pub const DEFAULT_MAX_BATCH_EVENTS: usize = 1000;
    pub const DEFAULT_MAX_DEPTH: usize = 32;
    pub const DEFAULT_MAX_STRING_BYTES: usize = 65_536;
    /// How far past its receipt an event's time may be (24 h): a bad client
    /// clock must not create hypertable chunks years ahead.
    pub const DEFAULT_MAX_FUTURE_SECS: i64 = 86_400;
    /// Ten years: a bound past this guards nothing.
    pub const MAX_FUTURE_SECS_CEILING: i64 = 10 * 366 * 86_400;
    /// Offsets in the parser are 32-bit.
    pub const MAX_BODY_BYTES_CEILING: usize = u32::MAX as usize;
    /// Encoding `properties` recurses once per level.
    pub const MAX_DEPTH_CEILING: usize = 256;

    /// Limits, each at least 1; `max_body_bytes` at most 4 GiB - 1 and
    /// `max_depth` at most 256.
    pub fn new(
        max_body_bytes: usize,
        max_batch_events: usize,
        max_depth: usize,
        max_string_bytes: usize,
    ) -> Result<Self, String> {
        let check = |name: &str, v: usize, max: usize| {
            if (1..=max).contains(&v) {
                Ok(())
            } else {
                Err(format!("{name} must be between 1 and {max}, got {v}"))
            }
        };
        check(
            "max_body_bytes",
            max_body_bytes,
            Self::MAX_BODY_BYTES_CEILING,
        )?;
        check("max_batch_events", max_batch_events, usize::MAX)?;
        check("max_depth", max_depth, Self::MAX_DEPTH_CEILING)?;
        check("max_string_bytes", max_string_bytes, usize::MAX)?;
        Ok(Limits {
            max_body_bytes,
            max_batch_events,
            max_depth,
            max_string_bytes,
            max_future_us: Self::DEFAULT_MAX_FUTURE_SECS * 1_000_000,
        })
    }

    /// These limits with another future bound (see [`Self::max_future_us`]),
    /// between 0 and ten years, in seconds.
    pub fn with_max_future_secs(self, secs: i64) -> Result<Self, String> {
        if !(0..=Self::MAX_FUTURE_SECS_CEILING).contains(&secs) {
            return Err(format!(
                "max_future_seconds must be between 0 and {}, got {secs}",
                Self::MAX_FUTURE_SECS_CEILING
            ));
        }
        Ok(Limits {
            max_future_us: secs * 1_000_000,
            ..self
        })
    }

    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }
    pub fn max_batch_events(&self) -> usize {
        self.max_batch_events
    }
    pub fn max_depth(&self) -> usize {
        self.max_depth
    }
    pub fn max_string_bytes(&self) -> usize {
        self.max_string_bytes
    }
    /// An event timed more than this after its receipt (after clock-skew
    /// correction) is stored at its receipt, its sent time kept in
    /// `properties` (see `event::FUTURE_TIMESTAMP_PROPERTY`).
    pub fn max_future_us(&self) -> i64 {
        self.max_future_us
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
            max_batch_events: Self::DEFAULT_MAX_BATCH_EVENTS,
            max_depth: Self::DEFAULT_MAX_DEPTH,
            max_string_bytes: Self::DEFAULT_MAX_STRING_BYTES,
            max_future_us: Self::DEFAULT_MAX_FUTURE_SECS * 1_000_000,
        }
    }
}

/// What the request says besides its body.
#[derive(Clone, Copy, Debug, Default)]
pub struct Request<'a> {
    /// The request had `Content-Encoding: gzip`.
    pub gzip: bool,
    pub project_id: i64,
    /// The write key's customer identifier, if it has one.
    pub customer_identifier: Option<&'a str>,
    /// Receive time, microseconds since the Unix epoch (UTC); clamped to
    /// 1970-01-01..9999-12-31.
    pub received_at_us: i64,
    /// The socket peer's address; an unparsable one is ignored.
    pub peer_ip: Option<&'a str>,
    /// `X-Forwarded-For` (several header lines joined with `,`), believed
    /// only when the peer is a trusted proxy of the enricher.
    pub forwarded_for: Option<&'a str>,
    /// `User-Agent` header.
    pub user_agent: Option<&'a str>,
    /// `Referer` header.
    pub referer: Option<&'a str>,
    /// The events are historical (a bulk import): `sent_at` is not the time
    /// of this request, so it corrects no clock skew; an event without a
    /// `timestamp` takes its `sent_at`, else `received_at`.
    pub historical: bool,
}

/// Rows ready for COPY.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prepared {
    /// COPY text rows, each ending in `\n`, one per event, in batch order.
    pub rows: Vec<u8>,
    pub count: usize,
    /// Each event's `event_id` (for idempotency), in batch order.
    pub event_ids: Vec<Option<String>>,
}

/// Parse, check, enrich and encode one request body.
pub fn prepare_events(
    body: &[u8],
    req: &Request<'_>,
    limits: &Limits,
    enricher: &Enricher,
) -> Result<Prepared, IngestError> {
    let json_bytes = body::decode(body, req.gzip, limits.max_body_bytes)?;
    let doc = json::parse(
        &json_bytes,
        JsonLimits {
            max_depth: limits.max_depth,
            max_string_bytes: limits.max_string_bytes,
        },
    )
    .map_err(|e| {
        let code = json_error_code(e.kind);
        let mut message = e.message;
        if !req.gzip && json_bytes.starts_with(b"\x1f\x8b") {
            message.push_str(" (the body looks gzip-compressed: send Content-Encoding: gzip)");
        }
        IngestError::body(code, message)
    })?;

    let root = json::Document::ROOT;
    let (count, first, batch) = match doc.node(root) {
        Node::Array { len, .. } => {
            let len = len as usize;
            if len == 0 {
                return Err(IngestError::body(
                    ErrorCode::InvalidEvent,
                    "empty batch: the array holds no events",
                ));
            }
            if len > limits.max_batch_events {
                return Err(IngestError::body(
                    ErrorCode::BatchTooLarge,
                    format!(
                        "batch of {len} events is larger than the limit of {}",
                        limits.max_batch_events
                    ),
                ));
            }
            (len, root + 1, true)
        }
        _ => (1, root, false),
    };

    let ctx = event::RequestContext::new(req, limits, enricher);
    let mut rows = Vec::with_capacity(json_bytes.len() + ctx.row_overhead() * count);
    let mut event_ids = Vec::with_capacity(count);
    let mut problems = event::Problems::default();
    let mut node = first;
    for index in 0..count {
        if let Some(id) = event::encode_event(&doc, node, index, &ctx, &mut rows, &mut problems) {
            event_ids.push(id);
        }
        node = doc.next(node);
    }
    if problems.total > 0 {
        return Err(invalid_events(problems, count, batch));
    }
    Ok(Prepared {
        rows,
        count,
        event_ids,
    })
}

pub(crate) fn json_error_code(kind: JsonErrorKind) -> ErrorCode {
    match kind {
        JsonErrorKind::Syntax => ErrorCode::MalformedJson,
        JsonErrorKind::TooDeep => ErrorCode::TooDeep,
        JsonErrorKind::StringTooLong => ErrorCode::StringTooLong,
    }
}

pub(crate) fn invalid_events(problems: event::Problems, count: usize, batch: bool) -> IngestError {
    let message = if problems.total == 1 {
        let d = &problems.details[0];
        let field = d
            .field
            .as_deref()
            .map(|f| format!("{f} "))
            .unwrap_or_default();
        if batch {
            format!(
                "invalid event at index {}: {field}{}",
                d.index.unwrap_or(0),
                d.message
            )
        } else {
            format!("invalid event: {field}{}", d.message)
        }
    } else if !batch {
        format!("invalid event: {} problems (see details)", problems.total)
    } else {
        let shown = if problems.total > problems.details.len() {
            format!("; the first {} are in details", problems.details.len())
        } else {
            " (see details)".to_string()
        };
        format!(
            "{} of {count} events are invalid, {} problems{shown}",
            problems.invalid_events, problems.total
        )
    };
    IngestError {
        code: ErrorCode::InvalidEvent,
        message,
        details: problems.details,
    }
}
