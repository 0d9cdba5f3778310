//! Profile updates: Mixpanel's `/engage` (people) and `/groups`, and
//! PostHog's legacy `/engage/`, which takes Mixpanel's shape: a message or
//! an array of them, `{"$token", "$distinct_id" | "$group_key" + "$group_id",
//! "$time", "$ip", "$set" | "$set_once" | "$add" | "$append" | "$union" |
//! "$remove" | "$unset" | "$delete": …}`.
//!
//! Each is stored as an event, named as the other SDKs name theirs
//! (PostHog's and Amplitude's `$identify` and `$groupidentify`), its
//! operations kept in `properties` as sent, so a profile's history can be
//! queried like any event.

use super::mixpanel::address;
use super::{elements_or_root, id_value, not_an_object, Events, Flat};
use crate::ingest::event::{Mapped, Slots};
use crate::ingest::json::Document;

/// Message members stored as columns, or secrets.
const MAPPED: &[&[u8]] = &[
    b"$token",
    b"token",
    b"api_key",
    b"$distinct_id",
    b"distinct_id",
    b"$time",
    b"$ip",
];

/// Whose profile a message updates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Person,
    Group,
}

impl Kind {
    /// The kind of the endpoint `call` names, if it is a profile endpoint.
    pub fn of_call(call: &str) -> Option<Self> {
        match call {
            "engage" => Some(Kind::Person),
            "groups" => Some(Kind::Group),
            _ => None,
        }
    }

    /// The stored event name.
    pub fn event_name(self) -> &'static str {
        match self {
            Kind::Person => "$identify",
            Kind::Group => "$groupidentify",
        }
    }
}

pub(super) fn map(doc: &Document<'_>, kind: Kind) -> Events {
    let events = elements_or_root(doc, Document::ROOT)
        .into_iter()
        .map(|m| message(doc, m, kind))
        .collect();
    Events {
        events,
        historical: false,
    }
}

fn message(doc: &Document<'_>, node: usize, kind: Kind) -> Mapped {
    // No properties object: every other member is an operation.
    let Some(m) = Flat::new(doc, node, None) else {
        return not_an_object(node);
    };
    let slots = Slots {
        timestamp: m.get(b"$time"),
        distinct_id: id_value(doc, m.get(b"$distinct_id"))
            .or_else(|| id_value(doc, m.get(b"distinct_id"))),
        ip: address(doc, m.get(b"$ip")),
        ..Slots::default()
    };
    Mapped {
        name: Some(kind.event_name()),
        ..m.mapped(slots, MAPPED, &[])
    }
}
