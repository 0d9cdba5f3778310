//! Mixpanel ingestion (`/track`, `/import`): an event
//! `{"event", "properties": {"token", "distinct_id", "time", "$insert_id", …}}`
//! or an array (or NDJSON lines) of them. Its `/engage` and `/groups`
//! profile updates: [`super::profile`].

use super::{id_value, not_an_object, unless, Events, Flat};
use crate::ingest::event::{Mapped, Slots};
use crate::ingest::json::{Document, Node};
use crate::ingest::IngestError;

const MAPPED: &[&[u8]] = &[b"event", b"properties"];
/// Properties that are secrets or columns.
const MAPPED_PROPERTIES: &[&[u8]] = &[b"token", b"distinct_id", b"time", b"$insert_id"];
const NO_REFERRER: &[&[u8]] = &[b"$direct", b""];

/// `call` is `import` for `/import`: historical events (bulk-import rules).
pub(super) fn map(doc: &Document<'_>, call: Option<&str>) -> Result<Events, IngestError> {
    let events = super::elements_or_root(doc, Document::ROOT)
        .into_iter()
        .map(|e| event(doc, e))
        .collect();
    Ok(Events {
        events,
        historical: call == Some("import"),
    })
}

fn event(doc: &Document<'_>, node: usize) -> Mapped {
    let Some(e) = Flat::new(doc, node, Some(b"properties")) else {
        return not_an_object(node);
    };
    let slots = Slots {
        event_name: e.get(b"event"),
        timestamp: e.prop(b"time"),
        event_id: e.prop(b"$insert_id"),
        distinct_id: id_value(doc, e.prop(b"distinct_id")),
        ip: address(doc, e.prop(b"ip")),
        url: e.prop(b"$current_url"),
        referrer: unless(doc, e.prop(b"$referrer"), NO_REFERRER),
        utm: e.utm(),
        ..Slots::default()
    };
    e.mapped(slots, MAPPED, MAPPED_PROPERTIES)
}

/// Mixpanel's `ip` is an address only when it is a string (`1`/`0` are flags).
pub(super) fn address(doc: &Document<'_>, v: Option<usize>) -> Option<usize> {
    v.filter(|&v| matches!(doc.node(v), Node::Str { .. }))
}
