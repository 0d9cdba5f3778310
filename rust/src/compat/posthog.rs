//! PostHog capture (`/batch/`, `/capture/`, `/e/`, `/i/v0/e/`, `/track/`,
//! `/engage/`): `{"api_key", "batch": [events], "sent_at",
//! "historical_migration"}`, an array of events, or one event.

use super::{elements_or_root, get, id_value, not_an_object, path, unless, utm_members, Events};
use crate::ingest::event::{Mapped, Properties, Slots, Source};
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

pub(super) fn map(doc: &Document<'_>, call: Option<&str>) -> Result<Events, IngestError> {
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
    let engage = call == Some("engage");
    let events = events
        .into_iter()
        .map(|e| event(doc, e, sent_at, engage))
        .collect();
    Ok(Events { events, historical })
}

fn event(doc: &Document<'_>, e: usize, sent_at: Option<usize>, engage: bool) -> Mapped {
    if !matches!(doc.node(e), Node::Object { .. }) {
        return not_an_object(e);
    }
    let props = get(doc, e, b"properties");
    let prop = |key: &[u8]| props.and_then(|p| get(doc, p, key));
    let utm = utm_members(doc, props);
    let slots = Slots {
        event_name: get(doc, e, b"event"),
        timestamp: get(doc, e, b"timestamp"),
        sent_at: get(doc, e, b"sent_at").or(sent_at),
        event_id: get(doc, e, b"uuid"),
        distinct_id: id_value(doc, get(doc, e, b"distinct_id"))
            .or_else(|| id_value(doc, prop(b"distinct_id")))
            .or_else(|| id_value(doc, get(doc, e, b"$distinct_id"))),
        ip: prop(b"$ip"),
        user_agent: prop(b"$raw_user_agent"),
        url: prop(b"$current_url"),
        referrer: unless(doc, prop(b"$referrer"), NO_REFERRER),
        utm,
        ..Slots::default()
    };
    Mapped {
        node: e,
        slots,
        // A person update sent to /engage/ (`$set` without `event`).
        name: engage.then_some("$identify"),
        properties: Properties::Merged([
            Some(Source::members(e, MAPPED)),
            props.map(|obj| Source::members(obj, MAPPED_PROPERTIES)),
            None,
            None,
        ]),
    }
}
