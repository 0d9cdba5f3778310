//! URL splitting and UTM extraction on any text: the parts are slices of the
//! URL and the UTM values come from its query.
#![no_main]

use eventbunker_native::ingest::url_fields;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(url) = std::str::from_utf8(data) else {
        return;
    };
    let parts = url_fields::split(url);
    if let Some(path) = parts.path {
        assert!(url.contains(path));
    }
    if let Some(query) = parts.query {
        assert!(url.contains(query));
        let mut utm: [Option<String>; 5] = Default::default();
        url_fields::fill_utm(query, &mut utm);
    }
});
