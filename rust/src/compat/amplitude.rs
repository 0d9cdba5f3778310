//! Amplitude HTTP V2 and Batch APIs (`/2/httpapi`, `/batch`):
//! `{"api_key", "events": [events], "options", "client_upload_time"}`.

use super::{get, id_value, not_an_object, unless, utm_members, Events};
use crate::ingest::event::{Mapped, Properties, Slots, Source};
use crate::ingest::json::{Document, Node};
use crate::ingest::{ErrorCode, IngestError};

const MAPPED: &[&[u8]] = &[b"event_type", b"time", b"insert_id", b"event_properties"];
/// Amplitude's "use the request's address".
const REMOTE_IP: &[&[u8]] = &[b"$remote", b""];
/// The page view's full URL (with its query string, so its UTM tags).
const PAGE_LOCATION: &[u8] = b"[Amplitude] Page Location";

pub(super) fn map(doc: &Document<'_>) -> Result<Events, IngestError> {
    let root = Document::ROOT;
    let Some(list) =
        get(doc, root, b"events").filter(|&v| matches!(doc.node(v), Node::Array { .. }))
    else {
        return Err(IngestError::body(
            ErrorCode::InvalidEvent,
            "the body must be an object with an events array",
        ));
    };
    let sent_at = get(doc, root, b"client_upload_time");
    let events = doc.elements(list).map(|e| event(doc, e, sent_at)).collect();
    Ok(Events {
        events,
        historical: false,
    })
}

fn event(doc: &Document<'_>, e: usize, sent_at: Option<usize>) -> Mapped {
    if !matches!(doc.node(e), Node::Object { .. }) {
        return not_an_object(e);
    }
    let props = get(doc, e, b"event_properties");
    let prop = |key: &[u8]| props.and_then(|p| get(doc, p, key));
    let utm = utm_members(doc, props);
    let slots = Slots {
        event_name: get(doc, e, b"event_type"),
        timestamp: get(doc, e, b"time"),
        sent_at,
        event_id: get(doc, e, b"insert_id"),
        distinct_id: id_value(doc, get(doc, e, b"user_id"))
            .or_else(|| id_value(doc, get(doc, e, b"device_id"))),
        ip: unless(doc, get(doc, e, b"ip"), REMOTE_IP),
        user_agent: get(doc, e, b"user_agent"),
        url: prop(PAGE_LOCATION),
        utm,
        ..Slots::default()
    };
    Mapped {
        node: e,
        slots,
        name: None,
        properties: Properties::Merged([
            Some(Source::members(e, MAPPED)),
            props.map(|obj| Source::members(obj, &[])),
            None,
            None,
        ]),
    }
}
