//! Deterministic profile of the uncached user-agent parse.
//!
//! `cargo run --release --example user_agent_profile [DIR] [PASSES] [STRIDE]`
//!
//! Compiles every regex, then parses each distinct user agent of uap-core's
//! `test_ua.yaml` and `test_device.yaml` (DIR, default
//! `../shared/testdata/uap-core` beside the crate) PASSES times (default 1),
//! every STRIDE-th one only (default 1: all),
//! i.e. every user agent is new to the regexes' lazy DFAs on the first
//! pass. Meant to run under `valgrind --tool=callgrind`.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use eventbunker_native::enrich::UserAgentParser;
use yaml_rust2::YamlLoader;

fn load(dir: &std::path::Path, file: &str) -> Vec<String> {
    let path = dir.join(file);
    let source = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (pass the uap-core test data dir)", path.display()));
    let docs = YamlLoader::load_from_str(&source).expect("valid YAML");
    let mut uas: Vec<String> = docs[0]["test_cases"]
        .as_vec()
        .expect("test_cases")
        .iter()
        .filter_map(|c| c["user_agent_string"].as_str().map(str::to_owned))
        .collect();
    uas.sort();
    uas.dedup();
    uas
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata/uap-core")
    });
    let passes: usize = args.next().map_or(1, |p| p.parse().expect("PASSES"));
    let stride: usize = args.next().map_or(1, |s| s.parse().expect("STRIDE"));
    let mut uas = load(&dir, "test_ua.yaml");
    uas.extend(load(&dir, "test_device.yaml"));
    uas.sort();
    uas.dedup();
    let uas: Vec<String> = uas.into_iter().step_by(stride.max(1)).collect();

    let parser = UserAgentParser::new();
    let n = parser.compile_all().expect("all regexes compile");
    println!("{n} regexes compiled, {} distinct user agents", uas.len());
    for pass in 0..passes {
        let t = Instant::now();
        for ua in &uas {
            black_box(parser.parse(black_box(ua)));
        }
        println!(
            "pass {pass}: {:.3} µs/UA",
            t.elapsed().as_secs_f64() * 1e6 / uas.len() as f64
        );
    }
}
