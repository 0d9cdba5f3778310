//! Time `prepare_events` on a typical ~250-byte event, single and batched.
//! Run: `cargo run --release --example prepare_bench`

use std::hint::black_box;
use std::time::Instant;

use eventbunker_native::enrich::{Enricher, EnricherConfig};
use eventbunker_native::ingest::{self, Limits, Request};

/// The enricher of this run (set once in `main`).
static ENRICHER: std::sync::OnceLock<Enricher> = std::sync::OnceLock::new();

fn prepare_events(
    body: &[u8],
    req: &Request<'_>,
    limits: &Limits,
) -> Result<ingest::Prepared, ingest::IngestError> {
    ingest::prepare_events(body, req, limits, ENRICHER.get().expect("set in main"))
}

const EVENT: &str = r#"{"event_name":"page_view","timestamp":"2026-11-26T10:00:00.123Z","url":"https://www.example.com/pricing?utm_source=newsletter&utm_medium=email","referrer":"https://www.google.com/","event_id":"0b6f6f0e-5b4e-4c1e-9d0a-3f1f2b7c9a11","plan":"pro","count":3}"#;

/// Best of 25 rounds of ~20 ms each: the minimum is what the code costs;
/// anything above it is other work on a shared machine.
fn time(label: &str, body: &[u8], events: usize, req: &Request<'_>, limits: &Limits) {
    // BENCH_ONLY=<label prefix> runs one case (for profiling).
    if let Ok(only) = std::env::var("BENCH_ONLY") {
        if !label.starts_with(&only) {
            return;
        }
    }
    let out = prepare_events(body, req, limits).expect("valid");
    assert_eq!(out.count, events);
    let mut iters = 1usize;
    while {
        let start = Instant::now();
        for _ in 0..iters {
            black_box(prepare_events(black_box(body), req, limits).unwrap());
        }
        start.elapsed().as_millis() < 20
    } {
        iters *= 2;
    }
    let best = (0..25)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(prepare_events(black_box(body), req, limits).unwrap());
            }
            start.elapsed().as_nanos() as f64 / (iters * events) as f64
        })
        .fold(f64::INFINITY, f64::min);
    println!(
        "{label:<20} {:>4} bytes/event {best:>6.0} ns/event  ({} bytes of rows/event)",
        body.len() / events,
        out.rows.len() / events
    );
}

fn main() {
    let req = Request {
        gzip: false,
        project_id: 42,
        customer_identifier: None,
        received_at_us: 1_795_687_200_000_000,
        // An address of MaxMind's test database (London), so that the
        // GeoIP lookup is measured when that database is there.
        peer_ip: Some("81.2.69.142"),
        forwarded_for: None,
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36"),
        referer: None,
        historical: false,
    };
    let limits = Limits::default();
    // Enrichment as a server configured with GeoIP has it (cache hits after
    // the first call), when ../shared's test database is present.
    let db = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/testdata/geoip/GeoIP2-City-Test.mmdb");
    let geoip_db = db.exists().then_some(db);
    println!("GeoIP: {geoip_db:?}");
    let enricher = Enricher::new(EnricherConfig {
        geoip_db,
        ..EnricherConfig::default()
    })
    .expect("enricher");
    let _ = ENRICHER.set(enricher);
    time("single event", EVENT.as_bytes(), 1, &req, &limits);
    let batch = format!("[{}]", vec![EVENT; 100].join(","));
    time("batch of 100", batch.as_bytes(), 100, &req, &limits);
    let minimal = r#"{"event_name":"signup"}"#;
    time("minimal event", minimal.as_bytes(), 1, &req, &limits);
    let escaped = r#"{"event_name":"a\tb","note":"line\nbreak \"quoted\" \u00e9\ud83d\ude00","url":"/p?utm_source=a%20b"}"#;
    time("escapes everywhere", escaped.as_bytes(), 1, &req, &limits);
}
