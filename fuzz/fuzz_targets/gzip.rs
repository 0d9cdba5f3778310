//! The gzip reader on any bytes, with a small limit: it answers, never more
//! than the limit, and a valid stream decodes to what was compressed.
#![no_main]

use std::io::Write;

use eventbunker_native::ingest::body;
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    if let Ok(out) = body::decode(data, true, LIMIT) {
        assert!(out.len() <= LIMIT);
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    let compressed = gz.finish().unwrap();
    match body::decode(&compressed, true, LIMIT) {
        Ok(out) => assert_eq!(&out[..], data),
        Err(e) => assert!(data.len() > LIMIT, "{e:?}"),
    }
});
