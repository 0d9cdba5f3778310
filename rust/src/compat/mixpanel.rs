//! Mixpanel ingestion (`/track`, `/import`): an event
//! `{"event", "properties": {"token", "distinct_id", "time", "$insert_id", …}}`
//! or an array (or NDJSON lines) of them.

use super::{get, id_value, not_an_object, unless, utm_members, Events};
use crate::ingest::event::{Mapped, Properties, Slots, Source};
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

fn event(doc: &Document<'_>, e: usize) -> Mapped {
    if !matches!(doc.node(e), Node::Object { .. }) {
        return not_an_object(e);
    }
    let props = get(doc, e, b"properties");
    let prop = |key: &[u8]| props.and_then(|p| get(doc, p, key));
    let utm = utm_members(doc, props);
    let slots = Slots {
        event_name: get(doc, e, b"event"),
        timestamp: prop(b"time"),
        event_id: prop(b"$insert_id"),
        distinct_id: id_value(doc, prop(b"distinct_id")),
        // `ip` is an address only when it is a string (`1`/`0` are flags).
        ip: prop(b"ip").filter(|&v| matches!(doc.node(v), Node::Str { .. })),
        url: prop(b"$current_url"),
        referrer: unless(doc, prop(b"$referrer"), NO_REFERRER),
        utm,
        ..Slots::default()
    };
    Mapped {
        node: e,
        slots,
        name: None,
        properties: Properties::Merged([
            Some(Source::members(e, MAPPED)),
            props.map(|obj| Source::members(obj, MAPPED_PROPERTIES)),
            None,
            None,
        ]),
    }
}
