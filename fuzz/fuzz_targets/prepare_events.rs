//! The whole ingest preparation on any body: an answer, and rows that COPY
//! can always load (one line per event, 37 columns, no NUL).
#![no_main]

use eventbunker_native::enrich::Enricher;
use eventbunker_native::ingest::{self, Limits, Request, EVENT_COLUMNS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let request = Request {
        project_id: 1,
        received_at_us: 1_795_687_200_000_000,
        peer_ip: Some("203.0.113.9"),
        user_agent: Some("Fuzz/1.0"),
        ..Request::default()
    };
    if let Ok(p) = ingest::prepare_events(
        data,
        &request,
        &Limits::default(),
        Enricher::shared_default(),
    ) {
        assert!(!p.rows.contains(&0));
        let rows: Vec<&[u8]> = p
            .rows
            .split(|&b| b == b'\n')
            .filter(|r| !r.is_empty())
            .collect();
        assert_eq!(rows.len(), p.count);
        for row in rows {
            assert_eq!(
                row.iter().filter(|&&b| b == b'\t').count(),
                EVENT_COLUMNS.len() - 1
            );
        }
    }
});
