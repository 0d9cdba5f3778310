//! Amplitude HTTP V2 and Batch APIs (`/2/httpapi`, `/batch`):
//! `{"api_key", "events": [events], "options", "client_upload_time"}`.

use super::{get, id_value, not_an_object, unless, Events, Flat};
use crate::ingest::event::{Mapped, Slots};
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

fn event(doc: &Document<'_>, node: usize, sent_at: Option<usize>) -> Mapped {
    let Some(e) = Flat::new(doc, node, Some(b"event_properties")) else {
        return not_an_object(node);
    };
    let slots = Slots {
        event_name: e.get(b"event_type"),
        timestamp: e.get(b"time"),
        sent_at,
        event_id: e.get(b"insert_id"),
        distinct_id: id_value(doc, e.get(b"user_id"))
            .or_else(|| id_value(doc, e.get(b"device_id"))),
        ip: unless(doc, e.get(b"ip"), REMOTE_IP),
        user_agent: e.get(b"user_agent"),
        url: e.prop(PAGE_LOCATION),
        utm: e.utm(),
        ..Slots::default()
    };
    e.mapped(slots, MAPPED, &[])
}
