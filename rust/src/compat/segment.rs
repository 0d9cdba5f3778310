//! Segment's HTTP tracking API (`/v1/batch`, `/v1/track`, `/v1/page`, …):
//! a message, or `{"batch": [messages], "sentAt", "writeKey"}`.

use super::{elements_or_root, get, id_value, not_an_object, Events};
use crate::ingest::event::{Mapped, Properties, Slots, Source};
use crate::ingest::json::{Document, Node};
use crate::ingest::IngestError;

/// Message members stored as columns (or lifted into `properties`).
const MAPPED: &[&[u8]] = &[
    b"type",
    b"event",
    b"userId",
    b"anonymousId",
    b"messageId",
    b"timestamp",
    b"sentAt",
    b"writeKey",
    b"properties",
    b"traits",
];

/// The name of a typed call that came to its own endpoint without `type`.
fn call_name(call: &str) -> &'static str {
    match call {
        "page" => "page",
        "screen" => "screen",
        "identify" => "identify",
        "group" => "group",
        "alias" => "alias",
        _ => "track",
    }
}

pub(super) fn map(doc: &Document<'_>, call: Option<&str>) -> Result<Events, IngestError> {
    let root = Document::ROOT;
    let batch = get(doc, root, b"batch");
    let (messages, batch_sent_at) = match batch {
        Some(b) if matches!(doc.node(b), Node::Array { .. }) => {
            (doc.elements(b).collect(), get(doc, root, b"sentAt"))
        }
        _ => (elements_or_root(doc, root), None),
    };
    let events = messages
        .into_iter()
        .map(|m| message(doc, m, call, batch_sent_at))
        .collect();
    Ok(Events {
        events,
        historical: false,
    })
}

fn message(doc: &Document<'_>, m: usize, call: Option<&str>, sent_at: Option<usize>) -> Mapped {
    if !matches!(doc.node(m), Node::Object { .. }) {
        return not_an_object(m);
    }
    let kind = get(doc, m, b"type").filter(|&v| matches!(doc.node(v), Node::Str { .. }));
    let is_track = match kind {
        Some(t) => doc.str_bytes(t) == b"track",
        None => call.is_none_or(|c| c == "track"),
    };
    // A track is named by its `event`; a typed call by its type.
    let (name_node, name) = match (is_track, kind) {
        (true, _) => (get(doc, m, b"event"), None),
        (false, Some(t)) => (Some(t), None),
        (false, None) => (None, Some(call_name(call.unwrap_or("track")))),
    };
    let context = get(doc, m, b"context");
    let page = context.and_then(|c| get(doc, c, b"page"));
    let properties = get(doc, m, b"properties");
    let campaign = context.and_then(|c| get(doc, c, b"campaign"));
    let from_campaign = |key: &[u8]| campaign.and_then(|c| get(doc, c, key));
    let slots = Slots {
        event_name: name_node,
        timestamp: get(doc, m, b"timestamp"),
        sent_at: get(doc, m, b"sentAt").or(sent_at),
        event_id: get(doc, m, b"messageId"),
        distinct_id: id_value(doc, get(doc, m, b"userId"))
            .or_else(|| id_value(doc, get(doc, m, b"anonymousId"))),
        ip: context.and_then(|c| get(doc, c, b"ip")),
        user_agent: context.and_then(|c| get(doc, c, b"userAgent")),
        url: page
            .and_then(|p| get(doc, p, b"url"))
            .or_else(|| properties.and_then(|p| get(doc, p, b"url"))),
        referrer: page
            .and_then(|p| get(doc, p, b"referrer"))
            .or_else(|| properties.and_then(|p| get(doc, p, b"referrer")))
            .filter(|&v| !doc.str_bytes(v).is_empty()),
        utm: [
            from_campaign(b"source"),
            from_campaign(b"medium"),
            from_campaign(b"name"),
            from_campaign(b"term"),
            from_campaign(b"content"),
        ],
        ..Slots::default()
    };
    Mapped {
        node: m,
        slots,
        name,
        properties: Properties::Merged([
            Some(Source {
                obj: m,
                skip: MAPPED,
            }),
            properties.map(|obj| Source { obj, skip: &[] }),
            get(doc, m, b"traits").map(|obj| Source { obj, skip: &[] }),
        ]),
    }
}
