//! The user-agent parser (uap-core's regexes, our prefilter) on any text.
#![no_main]

use eventbunker_native::enrich::Enricher;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let ua = String::from_utf8_lossy(data);
    let _ = Enricher::shared_default().user_agent(&ua);
});
