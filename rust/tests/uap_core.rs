//! uap-core's own test suites, case by case, through our parser.
//!
//! Reads `test_ua.yaml`, `test_os.yaml` and `test_device.yaml` from
//! `$CARGO_MANIFEST_DIR/../shared/testdata/uap-core/` at test time (they are
//! test data, not part of the product) and asserts every field each case
//! gives. An expected empty string counts as absent (`patch_minor: ''`).
//! A case that cannot pass must be listed in `KNOWN_FAILURES` with its
//! reason; any other failure, or a listed case that passes, fails the test.

use std::io::Write;
use std::path::PathBuf;

use eventbunker_native::enrich::{RawVersioned, UserAgentParser};
use yaml_rust2::{Yaml, YamlLoader};

/// `(file, user agent, reason)` of the cases that cannot pass.
const KNOWN_FAILURES: &[(&str, &str, &str)] = &[];

fn data_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata/uap-core");
    assert!(
        dir.is_dir(),
        "{} missing: put the shared test data (../shared/testdata) beside the repository",
        dir.display()
    );
    dir
}

/// Writes to the real stderr, which the test harness does not capture (so
/// the pass rates show in every `cargo test` run).
fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn text(v: &Yaml) -> Option<String> {
    match v {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()).filter(|s| !s.is_empty()),
        Yaml::Integer(i) => Some(i.to_string()),
        _ => None,
    }
}

/// Runs every case of `file`; `actual` gives the parser's value of each
/// field name the file uses.
fn run_suite(file: &str, fields: &[&str], actual: impl Fn(&str) -> Vec<Option<String>>) {
    let dir = data_dir();
    let source = std::fs::read_to_string(dir.join(file)).expect("readable test file");
    let docs = YamlLoader::load_from_str(&source).expect("valid YAML");
    let cases = docs[0]["test_cases"].as_vec().expect("test_cases list");
    assert!(!cases.is_empty(), "{file} has no cases");

    let mut passed = 0;
    let mut unexpected = Vec::new();
    let mut known_seen = Vec::new();
    for case in cases {
        let ua = case["user_agent_string"]
            .as_str()
            .expect("user_agent_string");
        let got = actual(ua);
        let mut diffs = Vec::new();
        for (name, got) in fields.iter().zip(&got) {
            let expected = &case[*name];
            if matches!(expected, Yaml::BadValue) {
                continue; // the case does not give this field
            }
            let expected = text(expected);
            if &expected != got {
                diffs.push(format!("{name}: expected {expected:?}, got {got:?}"));
            }
        }
        let known = KNOWN_FAILURES
            .iter()
            .find(|(f, u, _)| *f == file && *u == ua);
        match (diffs.is_empty(), known) {
            (true, None) => passed += 1,
            (true, Some(_)) => {
                unexpected.push(format!("{ua:?}: listed in KNOWN_FAILURES but passes"))
            }
            (false, Some(_)) => known_seen.push(ua),
            (false, None) => unexpected.push(format!("{ua:?}\n      {}", diffs.join("\n      "))),
        }
    }
    let total = cases.len();
    report(&format!(
        "uap-core {file}: {passed}/{total} passed ({:.2} %), {} known failures, {} unexpected",
        100.0 * passed as f64 / total as f64,
        known_seen.len(),
        unexpected.len()
    ));
    assert!(
        unexpected.is_empty(),
        "{file}: {} unexpected results:\n  {}",
        unexpected.len(),
        unexpected.join("\n  ")
    );
}

/// A suite of a list whose results are a family and a version.
fn run_versioned_suite(file: &str, parse: impl Fn(&str) -> RawVersioned) {
    run_suite(
        file,
        &["family", "major", "minor", "patch", "patch_minor"],
        |ua| {
            let r = parse(ua);
            vec![Some(r.family), r.major, r.minor, r.patch, r.patch_minor]
        },
    );
}

#[test]
fn uap_core_test_ua() {
    let parser = UserAgentParser::global();
    run_versioned_suite("test_ua.yaml", |ua| parser.ua(ua));
}

#[test]
fn uap_core_test_os() {
    let parser = UserAgentParser::global();
    run_versioned_suite("test_os.yaml", |ua| parser.os(ua));
}

#[test]
fn uap_core_test_device() {
    let parser = UserAgentParser::global();
    run_suite("test_device.yaml", &["family", "brand", "model"], |ua| {
        let r = parser.device(ua);
        vec![Some(r.family), r.brand, r.model]
    });
}
