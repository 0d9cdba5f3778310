//! Our JSON parser against serde_json: on every input both accept, the same
//! value (ours replaces NUL and lone surrogates by U+FFFD, keeps the last of
//! duplicate keys as jsonb does; numbers compared as doubles); and what
//! serde_json accepts within our limits, we accept.
#![no_main]

use eventbunker_native::ingest::json::{self, Document, JsonLimits, Node};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn same(doc: &Document<'_>, i: usize, v: &Value) -> bool {
    match (doc.node(i), v) {
        (Node::Null, Value::Null) => true,
        (Node::Bool(a), Value::Bool(b)) => a == *b,
        (Node::Number { .. }, Value::Number(n)) => {
            let ours: f64 = doc.number_text(i).parse().unwrap();
            n.as_f64().is_some_and(|theirs| theirs == ours)
        }
        (Node::Str { .. }, Value::String(s)) => doc.str(i) == s.replace('\0', "\u{fffd}"),
        (Node::Array { .. }, Value::Array(items)) => {
            doc.elements(i).count() == items.len()
                && doc
                    .elements(i)
                    .zip(items)
                    .all(|(e, item)| same(doc, e, item))
        }
        (Node::Object { .. }, Value::Object(map)) => {
            // Last of duplicate keys wins, as in serde_json's map; its keys as
            // ours are stored (NUL as U+FFFD).
            let mut last = std::collections::BTreeMap::new();
            for (k, v) in doc.members(i) {
                last.insert(doc.str(k).to_owned(), v);
            }
            let theirs: std::collections::BTreeMap<String, &Value> = map
                .iter()
                .map(|(k, v)| (k.replace('\0', "\u{fffd}"), v))
                .collect();
            if theirs.len() != map.len() {
                return true; // "a\0" and "a\u{fffd}" both sent: which one is last is lost
            }
            last.len() == theirs.len()
                && last
                    .iter()
                    .all(|(k, &v)| theirs.get(k).is_some_and(|t| same(doc, v, t)))
        }
        _ => false,
    }
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = JsonLimits {
        max_depth: 64,
        max_string_bytes: 1 << 20,
    };
    let ours = json::parse(data, limits);
    let theirs: Result<Value, _> = serde_json::from_slice(data);
    match (&ours, &theirs) {
        (Ok(doc), Ok(v)) => assert!(same(doc, Document::ROOT, v), "{v:?}"),
        (Err(e), Ok(v)) => {
            // Only our depth limit may refuse what serde_json accepts.
            assert!(
                depth(v) > limits.max_depth,
                "we refused what serde_json accepts: {e}"
            );
        }
        _ => {}
    }
});
