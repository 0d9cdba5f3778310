//! Drop-in for the SDKs people already use: Segment, PostHog, Mixpanel and
//! Amplitude payloads mapped into our event model on the same hot path as
//! `POST /v1/events` (the same parser, field rules, enrichment and COPY
//! encoding: [`crate::ingest::event::encode_mapped`]).
//!
//! Each SDK module only says where the fields of our model sit in its
//! payload (one [`Mapped`] per event: node indices, no copies), and which
//! members go into `properties`. The mapping table is in the README.
//!
//! Steps: [`form::decode`] (gzip, `data=` form bodies), the JSON parser,
//! the SDK's mapping, then [`encode_mapped`] per event. A batch is all or
//! nothing, as for our own endpoint.

pub mod form;

mod amplitude;
mod mixpanel;
mod posthog;
mod profile;
mod segment;

use crate::enrich::Enricher;
use crate::ingest::event::{self, encode_mapped, Mapped};
use crate::ingest::json::{self, Document, JsonLimits, Node};
use crate::ingest::Request;
use crate::ingest::{invalid_events, json_error_code, ErrorCode, IngestError, Limits, Prepared};

/// Whose payload a body is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Segment,
    PostHog,
    Mixpanel,
    Amplitude,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Segment => "segment",
            Format::PostHog => "posthog",
            Format::Mixpanel => "mixpanel",
            Format::Amplitude => "amplitude",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "segment" => Format::Segment,
            "posthog" => Format::PostHog,
            "mixpanel" => Format::Mixpanel,
            "amplitude" => Format::Amplitude,
            _ => return None,
        })
    }
}

/// An SDK's events in a parsed document.
pub(crate) struct Events {
    pub events: Vec<Mapped>,
    /// PostHog's `historical_migration: true`: bulk-import rules.
    pub historical: bool,
}

/// `call` names the single-message endpoint the body came to (Segment's
/// `/v1/page` is `page`, Mixpanel's `/import` is `import`, the profile
/// updates of `/engage` and `/groups` are `engage` and `groups`); `None`
/// for batch endpoints.
fn map(doc: &Document<'_>, format: Format, call: Option<&str>) -> Result<Events, IngestError> {
    if let Some(kind) = call.and_then(profile::Kind::of_call) {
        return Ok(profile::map(doc, kind));
    }
    match format {
        Format::Segment => segment::map(doc, call),
        Format::PostHog => posthog::map(doc),
        Format::Mixpanel => mixpanel::map(doc, call),
        Format::Amplitude => amplitude::map(doc),
    }
}

fn parse<'a>(json: &'a [u8], limits: &Limits) -> Result<Document<'a>, IngestError> {
    json::parse(
        json,
        JsonLimits {
            max_depth: limits.max_depth(),
            max_string_bytes: limits.max_string_bytes(),
        },
    )
    .map_err(|e| IngestError::body(json_error_code(e.kind), e.message))
}

/// Whose payload a body sent to a path two SDKs share is (`/track/`: PostHog
/// and mixpanel-browser): PostHog's carry `api_key`, a `batch`, or events
/// with a `uuid` or `timestamp`; Mixpanel's events have none of these.
pub fn sniff_posthog_or_mixpanel(json: &[u8], limits: &Limits) -> Result<Format, IngestError> {
    let doc = parse(json, limits)?;
    let root = Document::ROOT;
    let posthog = [b"api_key".as_slice(), b"batch"]
        .iter()
        .any(|k| get(&doc, root, k).is_some())
        || first_event(&doc).is_some_and(|e| {
            get(&doc, e, b"uuid").is_some() || get(&doc, e, b"timestamp").is_some()
        });
    Ok(if posthog {
        Format::PostHog
    } else {
        Format::Mixpanel
    })
}

/// The write key an SDK put in the body (Segment's `writeKey`, PostHog's
/// `api_key`/`token`, Mixpanel's `token` property, Amplitude's `api_key`),
/// from the already decoded JSON.
pub fn body_key(
    json: &[u8],
    format: Format,
    limits: &Limits,
) -> Result<Option<String>, IngestError> {
    let doc = parse(json, limits)?;
    let root = Document::ROOT;
    let key = match format {
        Format::Segment => get(&doc, root, b"writeKey"),
        Format::Amplitude => get(&doc, root, b"api_key"),
        Format::PostHog => posthog::key(&doc),
        Format::Mixpanel => {
            let first = first_event(&doc);
            first.and_then(|e| {
                path(&doc, e, &[b"properties", b"token"]).or_else(|| get(&doc, e, b"$token"))
            })
        }
    };
    Ok(key
        .filter(|&v| matches!(doc.node(v), Node::Str { .. }))
        .map(|v| doc.str(v).to_owned()))
}

/// Parse, map, check, enrich and encode one SDK body (already passed
/// through [`form::decode`] unless `req.gzip` or `form` asks for it here).
pub fn prepare(
    body: &[u8],
    form: bool,
    format: Format,
    call: Option<&str>,
    req: &Request<'_>,
    limits: &Limits,
    enricher: &Enricher,
) -> Result<Prepared, IngestError> {
    let decoded = form::decode(body, req.gzip, form, limits.max_body_bytes())?;
    // NDJSON (Mixpanel's /import) as one array.
    let lines = (format == Format::Mixpanel)
        .then(|| form::ndjson_as_array(&decoded.json))
        .flatten();
    let json: &[u8] = lines.as_deref().unwrap_or(&decoded.json);
    let doc = parse(json, limits)?;
    let Events { events, historical } = map(&doc, format, call)?;
    let count = events.len();
    if count == 0 {
        return Err(IngestError::body(
            ErrorCode::InvalidEvent,
            "empty batch: the body holds no events",
        ));
    }
    if count > limits.max_batch_events() {
        return Err(IngestError::body(
            ErrorCode::BatchTooLarge,
            format!(
                "batch of {count} events is larger than the limit of {}",
                limits.max_batch_events()
            ),
        ));
    }
    let req = Request {
        historical: req.historical || historical,
        ..*req
    };
    let ctx = event::RequestContext::new(&req, limits, enricher);
    let mut rows = Vec::with_capacity(json.len() + ctx.row_overhead() * count);
    let mut event_ids = Vec::with_capacity(count);
    let mut problems = event::Problems::default();
    for (index, e) in events.iter().enumerate() {
        if let Some(id) = encode_mapped(&doc, e, index, &ctx, &mut rows, &mut problems) {
            event_ids.push(id);
        }
    }
    if problems.total > 0 {
        return Err(invalid_events(problems, count, count > 1));
    }
    Ok(Prepared {
        rows,
        count,
        event_ids,
    })
}

/// The value of member `key` of object `obj` (the last of duplicates),
/// unless it is absent or null.
pub(crate) fn get(doc: &Document<'_>, obj: usize, key: &[u8]) -> Option<usize> {
    if !matches!(doc.node(obj), Node::Object { .. }) {
        return None;
    }
    doc.members(obj)
        .filter(|&(k, _)| doc.str_bytes(k) == key)
        .last()
        .map(|(_, v)| v)
        .filter(|&v| doc.node(v) != Node::Null)
}

/// The values of members `keys` of object `obj` in one pass over its
/// members (last of duplicates; absent or null: `None`); cheaper than one
/// [`get`] per key when several are wanted.
pub(crate) fn get_all<const N: usize>(
    doc: &Document<'_>,
    obj: Option<usize>,
    keys: [&[u8]; N],
) -> [Option<usize>; N] {
    let mut out = [None; N];
    let Some(obj) = obj.filter(|&o| matches!(doc.node(o), Node::Object { .. })) else {
        return out;
    };
    for (k, v) in doc.members(obj) {
        let key = doc.str_bytes(k);
        if let Some(i) = keys.iter().position(|&want| want == key) {
            out[i] = (doc.node(v) != Node::Null).then_some(v);
        }
    }
    out
}

/// The `utm_*` members of object `obj` (PostHog's, Mixpanel's and
/// Amplitude's properties carry them under our own names), in column order.
fn utm_members(doc: &Document<'_>, obj: Option<usize>) -> [Option<usize>; 5] {
    let [source, medium, campaign, term, content] = get_all(
        doc,
        obj,
        [
            b"utm_source",
            b"utm_medium",
            b"utm_campaign",
            b"utm_term",
            b"utm_content",
        ],
    );
    [source, medium, campaign, term, content]
}

/// `get` along a path of keys.
pub(crate) fn path(doc: &Document<'_>, obj: usize, keys: &[&[u8]]) -> Option<usize> {
    keys.iter().try_fold(obj, |at, key| get(doc, at, key))
}

/// The value when it can name a person: a non-empty string or a number.
pub(crate) fn id_value(doc: &Document<'_>, v: Option<usize>) -> Option<usize> {
    v.filter(|&v| match doc.node(v) {
        Node::Str { .. } => !doc.str_bytes(v).is_empty(),
        Node::Number { .. } => true,
        _ => false,
    })
}

/// The value unless it is one of the strings an SDK uses for "none".
pub(crate) fn unless(doc: &Document<'_>, v: Option<usize>, none: &[&[u8]]) -> Option<usize> {
    v.filter(|&v| !(matches!(doc.node(v), Node::Str { .. }) && none.contains(&doc.str_bytes(v))))
}

/// The events of a body that is one event object or an array of them.
pub(crate) fn elements_or_root(doc: &Document<'_>, root: usize) -> Vec<usize> {
    match doc.node(root) {
        Node::Array { .. } => doc.elements(root).collect(),
        _ => vec![root],
    }
}

fn first_event(doc: &Document<'_>) -> Option<usize> {
    elements_or_root(doc, Document::ROOT).first().copied()
}

/// A message that is not a JSON object, for `encode_mapped` to report.
pub(crate) fn not_an_object(node: usize) -> Mapped {
    Mapped {
        node,
        slots: event::Slots::default(),
        name: None,
        properties: event::Properties::Native,
    }
}

/// An event object with its properties in one member object (PostHog's,
/// Mixpanel's and Amplitude's events), as the flat SDKs' mappings read it.
pub(crate) struct Flat<'a, 'd> {
    doc: &'a Document<'d>,
    pub node: usize,
    /// The member object that holds the event's own properties.
    pub props: Option<usize>,
}

impl<'a, 'd> Flat<'a, 'd> {
    /// `None` when `node` is not an object (`encode_mapped` reports it);
    /// `props_key` names the member holding its properties, if any.
    pub fn new(doc: &'a Document<'d>, node: usize, props_key: Option<&[u8]>) -> Option<Self> {
        matches!(doc.node(node), Node::Object { .. }).then(|| Flat {
            doc,
            node,
            props: props_key.and_then(|k| get(doc, node, k)),
        })
    }

    /// A member of the event.
    pub fn get(&self, key: &[u8]) -> Option<usize> {
        get(self.doc, self.node, key)
    }

    /// A member of its properties.
    pub fn prop(&self, key: &[u8]) -> Option<usize> {
        self.props.and_then(|p| get(self.doc, p, key))
    }

    /// The `utm_*` properties (these SDKs send them under our own names).
    pub fn utm(&self) -> [Option<usize>; 5] {
        utm_members(self.doc, self.props)
    }

    /// The event: `properties` holds the members of its properties but
    /// `props_skip`, then the event's other members but `skip` (of
    /// duplicate keys the last one counts).
    pub fn mapped(
        &self,
        slots: event::Slots,
        skip: &'static [&'static [u8]],
        props_skip: &'static [&'static [u8]],
    ) -> Mapped {
        Mapped {
            node: self.node,
            slots,
            name: None,
            properties: event::Properties::Merged([
                Some(event::Source::members(self.node, skip)),
                self.props
                    .map(|obj| event::Source::members(obj, props_skip)),
                None,
                None,
            ]),
        }
    }
}

#[cfg(test)]
mod tests;
