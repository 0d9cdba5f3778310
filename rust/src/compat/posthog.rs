//! PostHog capture (`/batch/`, `/capture/`, `/e/`, `/i/v0/e/`, `/track/`):
//! `{"api_key", "batch": [events], "sent_at", "historical_migration"}`, an
//! array of events, or one event. Its legacy `/engage/` person updates are
//! Mixpanel's shape: [`super::profile`].

use super::{elements_or_root, get, id_value, not_an_object, path, unless, Events, Flat};
use crate::ingest::event::{Mapped, Slots};
use crate::ingest::json::{Document, Node};
use crate::ingest::IngestError;

/// Event members stored as columns (or lifted into `properties`).
const MAPPED: &[&[u8]] = &[
    b"event",
    b"distinct_id",
    b"$distinct_id",
    b"uuid",
    b"timestamp",
    b"sent_at",
    b"api_key",
    b"token",
    b"$token",
    b"properties",
];
/// Properties that are secrets or columns.
const MAPPED_PROPERTIES: &[&[u8]] = &[b"token", b"distinct_id"];

/// How posthog-js says "no referrer".
const NO_REFERRER: &[&[u8]] = &[b"$direct", b""];

pub(super) fn key(doc: &Document<'_>) -> Option<usize> {
    let root = Document::ROOT;
    let of = |obj: usize| {
        get(doc, obj, b"api_key")
            .or_else(|| get(doc, obj, b"token"))
            .or_else(|| get(doc, obj, b"$token"))
            .or_else(|| path(doc, obj, &[b"properties", b"token"]))
    };
    of(root).or_else(|| {
        let first = match get(doc, root, b"batch") {
            Some(b) => doc.elements(b).next(),
            None => elements_or_root(doc, root).first().copied(),
        };
        first.and_then(of)
    })
}

pub(super) fn map(doc: &Document<'_>) -> Result<Events, IngestError> {
    let root = Document::ROOT;
    let batch = get(doc, root, b"batch").filter(|&b| matches!(doc.node(b), Node::Array { .. }));
    let (events, sent_at) = match batch {
        Some(b) => (doc.elements(b).collect(), get(doc, root, b"sent_at")),
        None => (elements_or_root(doc, root), None),
    };
    let historical = batch.is_some()
        && matches!(
            get(doc, root, b"historical_migration").map(|v| doc.node(v)),
            Some(Node::Bool(true))
        );
    let events = events.into_iter().map(|e| event(doc, e, sent_at)).collect();
    Ok(Events { events, historical })
}

fn event(doc: &Document<'_>, node: usize, sent_at: Option<usize>) -> Mapped {
    let Some(e) = Flat::new(doc, node, Some(b"properties")) else {
        return not_an_object(node);
    };
    let slots = Slots {
        event_name: e.get(b"event"),
        timestamp: e.get(b"timestamp"),
        sent_at: e.get(b"sent_at").or(sent_at),
        event_id: e.get(b"uuid"),
        distinct_id: id_value(doc, e.get(b"distinct_id"))
            .or_else(|| id_value(doc, e.prop(b"distinct_id")))
            .or_else(|| id_value(doc, e.get(b"$distinct_id"))),
        ip: e.prop(b"$ip"),
        user_agent: e.prop(b"$raw_user_agent"),
        url: e.prop(b"$current_url"),
        referrer: unless(doc, e.prop(b"$referrer"), NO_REFERRER),
        utm: e.utm(),
        ..Slots::default()
    };
    e.mapped(slots, MAPPED, MAPPED_PROPERTIES)
}
