//! Segment's HTTP tracking API (`/v1/batch`, `/v1/track`, `/v1/page`, …):
//! a message, or `{"batch": [messages], "sentAt", "writeKey"}`.

use super::{elements_or_root, get, get_all, id_value, not_an_object, Events};
use crate::ingest::event::{Mapped, Properties, Slots, Source};
use crate::ingest::json::{Document, Node};
use crate::ingest::IngestError;

/// Message members stored as columns (or lifted into `properties`), in
/// the order [`message`] reads them.
const MAPPED: [&[u8]; 11] = [
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
    b"context",
];
/// Context members stored as columns (kept once, there); `context.page`
/// keeps its other members (title, path, search), `context.campaign` all.
const CONTEXT_MAPPED: &[&[u8]] = &[b"ip", b"userAgent"];
const PAGE_MAPPED: &[&[u8]] = &[b"url", b"referrer"];

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
    let [kind, event, user_id, anonymous_id, message_id, timestamp, own_sent_at, _write_key, properties, traits, context] =
        get_all(doc, Some(m), MAPPED);
    let kind = kind.filter(|&v| matches!(doc.node(v), Node::Str { .. }));
    let is_track = match kind {
        Some(t) => doc.str_bytes(t) == b"track",
        None => call.is_none_or(|c| c == "track"),
    };
    // A track is named by its `event`; a typed call by its type.
    let (name_node, name) = match (is_track, kind) {
        (true, _) => (event, None),
        (false, Some(t)) => (Some(t), None),
        (false, None) => (None, Some(call_name(call.unwrap_or("track")))),
    };
    // On the parser's tape a member's key node comes right before its value.
    let context_key = context.map(|v| v - 1);
    let [ip, user_agent, page, campaign] =
        get_all(doc, context, [b"ip", b"userAgent", b"page", b"campaign"]);
    let [page_url, page_referrer] = get_all(doc, page, [b"url", b"referrer"]);
    let [source, medium, campaign_name, term, content] = get_all(
        doc,
        campaign,
        [b"source", b"medium", b"name", b"term", b"content"],
    );
    let from_properties = |key: &[u8]| properties.and_then(|p| get(doc, p, key));
    let slots = Slots {
        event_name: name_node,
        timestamp,
        sent_at: own_sent_at.or(sent_at),
        event_id: message_id,
        distinct_id: id_value(doc, user_id).or_else(|| id_value(doc, anonymous_id)),
        ip,
        user_agent,
        url: page_url.or_else(|| from_properties(b"url")),
        referrer: page_referrer
            .or_else(|| from_properties(b"referrer"))
            .filter(|&v| !doc.str_bytes(v).is_empty()),
        utm: [source, medium, campaign_name, term, content],
        ..Slots::default()
    };
    Mapped {
        node: m,
        slots,
        name,
        properties: Properties::Merged([
            Some(Source::members(m, &MAPPED)),
            properties.map(|obj| Source::members(obj, &[])),
            traits.map(|obj| Source::members(obj, &[])),
            context.map(|obj| Source {
                obj,
                skip: CONTEXT_MAPPED,
                nest: context_key,
                trim: Some((b"page", PAGE_MAPPED)),
            }),
        ]),
    }
}
