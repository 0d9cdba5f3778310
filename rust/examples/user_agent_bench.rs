//! Our uap-core matcher (`enrich::UserAgentParser`) side by side with the
//! `ua-parser` crate of the uap project (uap-rust), on the same
//! `regexes.yaml` (ours, embedded): correctness, speed and memory.
//!
//! `cargo run --release --example user_agent_bench [UAP_CORE_DIR [BROWSERS_JSONL]]`
//!
//! Inputs: uap-core's `test_ua.yaml`, `test_os.yaml`, `test_device.yaml`
//! (default `../shared/testdata/uap-core`), and a corpus of real user
//! agents with their share of traffic: `fake_useragent/data/browsers.jsonl`
//! of the `fake-useragent` package (a dev dependency; default: the one in
//! `.venv`). Workloads, each parsed without a cache (ua + os + device, the
//! results owned): every distinct uap-core test user agent; the corpus's
//! distinct user agents; 200,000 user agents drawn from the corpus by their
//! traffic share (repeated, as a site sees them). Times are the best of 5
//! passes, the two parsers alternating; the first pass of each is shown too
//! (ours compiles a regex on its first use). Memory: heap held by each
//! parser once built, and once every workload has run (a counting global
//! allocator).

use std::alloc::{GlobalAlloc, Layout, System};
use std::borrow::Cow;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use eventbunker_native::enrich::{RawDevice, RawVersioned, UserAgentParser};
use yaml_rust2::{Yaml, YamlLoader};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: defers to the system allocator, only counting sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const ROUNDS: usize = 5;
const REPEATED: usize = 200_000;

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The three uap-core results, as both parsers give them.
type Parsed = (RawVersioned, RawVersioned, RawDevice);

trait Parser {
    fn parse(&self, ua: &str) -> Parsed;
}

impl Parser for UserAgentParser {
    fn parse(&self, ua: &str) -> Parsed {
        self.parse_raw(ua)
    }
}

struct Theirs(ua_parser::Extractor<'static>);

fn some(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

impl Parser for Theirs {
    fn parse(&self, ua: &str) -> Parsed {
        let agent = self.0.ua.extract(ua).map(|v| v.into_owned());
        let os = self.0.os.extract(ua).map(|v| v.into_owned());
        let device = self.0.dev.extract(ua).map(|v| v.into_owned());
        (
            agent.map_or_else(RawVersioned::default, |v| RawVersioned {
                family: v.family,
                major: some(v.major),
                minor: some(v.minor),
                patch: some(v.patch),
                patch_minor: some(v.patch_minor),
            }),
            os.map_or_else(RawVersioned::default, |v| RawVersioned {
                family: v.os,
                major: some(v.major),
                minor: some(v.minor),
                patch: some(v.patch),
                patch_minor: some(v.patch_minor),
            }),
            device.map_or_else(RawDevice::default, |v| RawDevice {
                family: v.device,
                brand: some(v.brand),
                model: some(v.model),
            }),
        )
    }
}

/// `Default` of ours is empty; uap-core says `"Other"`.
fn other_if_empty(mut p: Parsed) -> Parsed {
    for family in [&mut p.0.family, &mut p.1.family, &mut p.2.family] {
        if family.is_empty() {
            "Other".clone_into(family);
        }
    }
    p
}

/// The crate's extractor over our embedded `regexes.yaml`.
fn theirs() -> Theirs {
    let source = include_str!("../data/uap-core/regexes.yaml");
    let doc = &YamlLoader::load_from_str(source).expect("regexes.yaml")[0];
    let text = |v: &Yaml| match v {
        Yaml::String(s) | Yaml::Real(s) => Some(Cow::Owned(s.clone())),
        Yaml::Integer(i) => Some(Cow::Owned(i.to_string())),
        _ => None,
    };
    let list = |name: &str| doc[name].as_vec().expect("a rule list").clone();
    let ua = list("user_agent_parsers")
        .iter()
        .try_fold(ua_parser::user_agent::Builder::new(), |b, r| {
            b.push(ua_parser::user_agent::Parser {
                regex: text(&r["regex"]).expect("regex"),
                family_replacement: text(&r["family_replacement"]),
                v1_replacement: text(&r["v1_replacement"]),
                v2_replacement: text(&r["v2_replacement"]),
                v3_replacement: text(&r["v3_replacement"]),
                v4_replacement: text(&r["v4_replacement"]),
            })
        })
        .expect("ua rules")
        .build()
        .expect("ua extractor");
    let os = list("os_parsers")
        .iter()
        .try_fold(ua_parser::os::Builder::new(), |b, r| {
            b.push(ua_parser::os::Parser {
                regex: text(&r["regex"]).expect("regex"),
                os_replacement: text(&r["os_replacement"]),
                os_v1_replacement: text(&r["os_v1_replacement"]),
                os_v2_replacement: text(&r["os_v2_replacement"]),
                os_v3_replacement: text(&r["os_v3_replacement"]),
                os_v4_replacement: text(&r["os_v4_replacement"]),
            })
        })
        .expect("os rules")
        .build()
        .expect("os extractor");
    let dev = list("device_parsers")
        .iter()
        .try_fold(ua_parser::device::Builder::new(), |b, r| {
            b.push(ua_parser::device::Parser {
                regex: text(&r["regex"]).expect("regex"),
                regex_flag: (r["regex_flag"].as_str() == Some("i"))
                    .then_some(ua_parser::device::Flag::IgnoreCase),
                device_replacement: text(&r["device_replacement"]),
                brand_replacement: text(&r["brand_replacement"]),
                model_replacement: text(&r["model_replacement"]),
            })
        })
        .expect("device rules")
        .build()
        .expect("device extractor");
    Theirs(ua_parser::Extractor { ua, os, dev })
}

fn yaml_text(v: &Yaml) -> Option<String> {
    match v {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()).filter(|s| !s.is_empty()),
        Yaml::Integer(i) => Some(i.to_string()),
        _ => None,
    }
}

/// One uap-core test case: the file's list (0 ua, 1 os, 2 device), the user
/// agent, and the expected fields by name.
struct Case {
    list: usize,
    ua: String,
    expected: Vec<(&'static str, Option<String>)>,
}

fn cases(dir: &Path) -> Vec<Case> {
    let files: [(&str, &[&'static str]); 3] = [
        (
            "test_ua.yaml",
            &["family", "major", "minor", "patch", "patch_minor"],
        ),
        (
            "test_os.yaml",
            &["family", "major", "minor", "patch", "patch_minor"],
        ),
        ("test_device.yaml", &["family", "brand", "model"]),
    ];
    let mut all = Vec::new();
    for (list, (file, fields)) in files.into_iter().enumerate() {
        let path = dir.join(file);
        let source = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!("{}: {e} (pass the uap-core test data dir)", path.display())
        });
        let docs = YamlLoader::load_from_str(&source).expect("valid YAML");
        for case in docs[0]["test_cases"].as_vec().expect("test_cases") {
            all.push(Case {
                list,
                ua: case["user_agent_string"].as_str().expect("ua").to_owned(),
                expected: fields
                    .iter()
                    .filter(|f| !matches!(case[**f], Yaml::BadValue))
                    .map(|f| (*f, yaml_text(&case[*f])))
                    .collect(),
            });
        }
    }
    all
}

fn field(p: &Parsed, list: usize, name: &str) -> Option<String> {
    let versioned = |v: &RawVersioned| match name {
        "family" => Some(v.family.clone()),
        "major" => v.major.clone(),
        "minor" => v.minor.clone(),
        "patch" => v.patch.clone(),
        _ => v.patch_minor.clone(),
    };
    match (list, name) {
        (0, _) => versioned(&p.0),
        (1, _) => versioned(&p.1),
        (_, "family") => Some(p.2.family.clone()),
        (_, "brand") => p.2.brand.clone(),
        _ => p.2.model.clone(),
    }
}

/// Cases of uap-core's suites the parser passes, of all.
fn passed(parser: &dyn Parser, cases: &[Case]) -> usize {
    cases
        .iter()
        .filter(|c| {
            let p = other_if_empty(parser.parse(&c.ua));
            c.expected
                .iter()
                .all(|(name, want)| &field(&p, c.list, name) == want)
        })
        .count()
}

/// The `useragent` and `percent` of each line of fake-useragent's corpus
/// (JSON lines, which YAML reads).
fn corpus(path: &Path) -> Vec<(String, f64)> {
    let source = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (pip install fake-useragent, or pass the path)",
            path.display()
        )
    });
    source
        .lines()
        .map(|line| {
            let doc = &YamlLoader::load_from_str(line).expect("a JSON line")[0];
            let ua = doc["useragent"].as_str().expect("useragent").to_owned();
            let share = doc["percent"].as_f64().unwrap_or(0.0);
            (ua, share)
        })
        .collect()
}

fn default_corpus() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/lib");
    std::fs::read_dir(&venv)
        .ok()
        .and_then(|mut d| d.find_map(|e| e.ok()))
        .map(|python| {
            python
                .path()
                .join("site-packages/fake_useragent/data/browsers.jsonl")
        })
        .unwrap_or(venv)
}

/// `n` user agents drawn by traffic share (a fixed linear congruential
/// sequence: every run draws the same).
fn repeated(corpus: &[(String, f64)], n: usize) -> Vec<String> {
    let total: f64 = corpus.iter().map(|(_, s)| s).sum();
    let mut x = 42u64;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let mut pick = (x >> 11) as f64 / (1u64 << 53) as f64 * total;
            let found = corpus.iter().find(|(_, s)| {
                pick -= s;
                pick < 0.0
            });
            found.unwrap_or(&corpus[corpus.len() - 1]).0.clone()
        })
        .collect()
}

/// µs per user agent of one pass.
fn pass(parser: &dyn Parser, uas: &[String]) -> f64 {
    let t = Instant::now();
    for ua in uas {
        black_box(parser.parse(ua));
    }
    t.elapsed().as_secs_f64() * 1e6 / uas.len() as f64
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata/uap-core")
    });
    let corpus_path = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(default_corpus);
    let cases = cases(&dir);
    let mut uap: Vec<String> = cases.iter().map(|c| c.ua.clone()).collect();
    uap.sort();
    uap.dedup();
    let real = corpus(&corpus_path);
    let mut distinct: Vec<String> = real.iter().map(|(ua, _)| ua.clone()).collect();
    distinct.sort();
    distinct.dedup();
    let drawn = repeated(&real, REPEATED);
    let workloads: [(&str, &[String]); 3] = [
        ("uap-core tests, distinct", &uap),
        ("real corpus, distinct", &distinct),
        ("real corpus, repeated", &drawn),
    ];

    let mut parsers: Vec<(&str, Box<dyn Parser>, usize, f64)> = Vec::new();
    for (name, build) in [
        (
            "ours",
            &(|| Box::new(UserAgentParser::new()) as Box<dyn Parser>) as &dyn Fn() -> _,
        ),
        ("ua-parser", &|| Box::new(theirs()) as Box<dyn Parser>),
    ] {
        let before = LIVE.load(Ordering::Relaxed);
        let t = Instant::now();
        let parser = build();
        let built_ms = t.elapsed().as_secs_f64() * 1e3;
        parsers.push((name, parser, before, built_ms));
    }
    let mut baseline = LIVE.load(Ordering::Relaxed);
    // Heap each one holds once built: ours was built first, then theirs.
    let built_ours = parsers[1].2 - parsers[0].2;
    let built_theirs = baseline - parsers[1].2;
    println!(
        "built: ours {:.1} ms, {:.2} MiB; ua-parser {:.1} ms, {:.2} MiB",
        parsers[0].3,
        mib(built_ours),
        parsers[1].3,
        mib(built_theirs)
    );
    // Growth from here on is each parser's lazily built state (regexes
    // compiled on first use, their caches): counted per parser below.
    let mut grown = [0usize; 2];
    println!(
        "{:<28} {:>8} {:>12} {:>12} {:>12} {:>12} {:>7}",
        "µs per user agent", "count", "ours 1st", "ours best", "theirs 1st", "theirs best", "ratio"
    );
    for (name, uas) in workloads {
        let mut first = [0.0f64; 2];
        let mut best = [f64::INFINITY; 2];
        for round in 0..ROUNDS {
            for (i, (_, parser, _, _)) in parsers.iter().enumerate() {
                baseline = LIVE.load(Ordering::Relaxed);
                let t = pass(&**parser, uas);
                grown[i] += LIVE.load(Ordering::Relaxed).saturating_sub(baseline);
                if round == 0 {
                    first[i] = t;
                }
                best[i] = best[i].min(t);
            }
        }
        println!(
            "{name:<28} {:>8} {:>12.2} {:>12.2} {:>12.2} {:>12.2} {:>7.2}",
            uas.len(),
            first[0],
            best[0],
            first[1],
            best[1],
            best[1] / best[0]
        );
    }
    // Correctness last, so that the first passes above were first sights.
    let mut suites = [0usize; 2];
    for (i, (_, parser, _, _)) in parsers.iter().enumerate() {
        baseline = LIVE.load(Ordering::Relaxed);
        suites[i] = passed(&**parser, &cases);
        grown[i] += LIVE.load(Ordering::Relaxed).saturating_sub(baseline);
    }
    println!(
        "uap-core suites ({} cases): ours {} passed, ua-parser {} passed",
        cases.len(),
        suites[0],
        suites[1]
    );
    let (ours, theirs) = (built_ours + grown[0], built_theirs + grown[1]);
    println!(
        "heap after every workload: ours {:.2} MiB, ua-parser {:.2} MiB (ratio {:.2})",
        mib(ours),
        mib(theirs),
        theirs as f64 / ours as f64
    );
}
