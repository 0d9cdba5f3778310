//! Event times: RFC 3339 parsing on any text, and epoch numbers on any JSON
//! number; every time in range formats and parses back to itself.
#![no_main]

use eventbunker_native::ingest::json::{self, Document, JsonLimits, Node};
use eventbunker_native::ingest::timestamp;
use libfuzzer_sys::fuzz_target;

fn round_trip(us: i64) {
    if timestamp::in_range(us) {
        let text = timestamp::format(us);
        // "YYYY-MM-DD HH:MM:SS.ffffff+00" is RFC 3339 once the offset is whole.
        let mut rfc = text[..26].to_vec();
        rfc.extend_from_slice(b"Z");
        assert_eq!(timestamp::parse_rfc3339(&rfc), Ok(us));
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(us) = timestamp::parse_rfc3339(data) {
        round_trip(us);
    }
    let limits = JsonLimits {
        max_depth: 1,
        max_string_bytes: 64,
    };
    if let Ok(doc) = json::parse(data, limits) {
        if let Node::Number { .. } = doc.node(Document::ROOT) {
            if let Some(us) = timestamp::from_epoch_number(doc.number_text(Document::ROOT)) {
                round_trip(us);
            }
        }
    }
});
