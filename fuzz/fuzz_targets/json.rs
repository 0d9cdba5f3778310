//! Our JSON parser on any bytes: it answers (a document or an error) and
//! every accessor of a document it returns holds.
#![no_main]

use eventbunker_native::ingest::json::{self, Document, JsonLimits, Node};
use libfuzzer_sys::fuzz_target;

fn walk(doc: &Document<'_>, i: usize) -> usize {
    match doc.node(i) {
        Node::Object { len, .. } => {
            let n = doc.members(i).count();
            assert_eq!(n, len as usize);
            for (k, v) in doc.members(i) {
                assert!(matches!(doc.node(k), Node::Str { .. }));
                assert!(!doc.str_bytes(k).contains(&0));
                walk(doc, v);
            }
        }
        Node::Array { len, .. } => {
            assert_eq!(doc.elements(i).count(), len as usize);
            for v in doc.elements(i) {
                walk(doc, v);
            }
        }
        Node::Str { .. } => {
            let s = doc.str(i);
            assert!(!s.contains('\0'));
        }
        Node::Number { .. } => assert!(!doc.number_text(i).is_empty()),
        Node::Null | Node::Bool(_) => {}
    }
    doc.next(i)
}

fuzz_target!(|data: &[u8]| {
    let limits = JsonLimits {
        max_depth: 32,
        max_string_bytes: 1 << 16,
    };
    if let Ok(doc) = json::parse(data, limits) {
        walk(&doc, Document::ROOT);
    }
});
