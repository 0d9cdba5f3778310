//! Speed and memory of the user-agent parser.
//!
//! `cargo run --release --example user_agent_bench [DIR]`
//!
//! DIR holds uap-core's `test_ua.yaml` and `test_device.yaml` (default:
//! `../shared/testdata/uap-core` beside the crate). Reports start-up time
//! and memory, µs per distinct user agent without cache (first sight,
//! which includes compiling the regexes it needs, and steady state), and
//! µs per cache hit. Memory is counted by a wrapping global allocator
//! (bytes live on the heap).
//!
//! Times are the best of several passes, in wall-clock time and, on Linux,
//! in CPU time of the benchmarking thread (`CLOCK_THREAD_CPUTIME_ID`), which
//! other processes competing for the cores inflate less.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use eventbunker_native::enrich::{UserAgentCache, UserAgentParser};
use yaml_rust2::YamlLoader;

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

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

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

/// CPU time of this thread in nanoseconds (Linux).
#[cfg(target_os = "linux")]
fn cpu_ns() -> Option<u64> {
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec (64-bit Linux layout).
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

#[cfg(not(target_os = "linux"))]
fn cpu_ns() -> Option<u64> {
    None
}

/// µs per user agent of `f` over `uas`: best of `rounds` passes, wall
/// clock and on-CPU.
struct Timing {
    wall: f64,
    cpu: Option<f64>,
}

impl std::fmt::Display for Timing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.cpu {
            Some(cpu) => write!(f, "{:.3} µs/UA CPU ({:.3} wall)", cpu, self.wall),
            None => write!(f, "{:.3} µs/UA wall", self.wall),
        }
    }
}

fn per_ua(uas: &[String], rounds: usize, mut f: impl FnMut(&str)) -> Timing {
    let mut best = Timing {
        wall: f64::INFINITY,
        cpu: None,
    };
    for _ in 0..rounds {
        let (t, c) = (Instant::now(), cpu_ns());
        for ua in uas {
            f(ua);
        }
        let n = uas.len() as f64;
        best.wall = best.wall.min(t.elapsed().as_secs_f64() * 1e6 / n);
        if let (Some(c0), Some(c1)) = (c, cpu_ns()) {
            let cpu = (c1 - c0) as f64 / 1e3 / n;
            best.cpu = Some(best.cpu.map_or(cpu, |b: f64| b.min(cpu)));
        }
    }
    best
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata/uap-core")
        });
    let test_ua = load(&dir, "test_ua.yaml");
    let test_device = load(&dir, "test_device.yaml");

    let before = LIVE.load(Ordering::Relaxed);
    let t = Instant::now();
    let parser = UserAgentParser::new();
    let init = t.elapsed();
    let init_mem = LIVE.load(Ordering::Relaxed) - before;
    let stats = parser.stats();
    println!(
        "init: {:.1} ms, {:.2} MiB ({} ua / {} os / {} device rules; {} atoms; always tried: {:?})",
        init.as_secs_f64() * 1e3,
        mib(init_mem),
        stats.rules[0],
        stats.rules[1],
        stats.rules[2],
        stats.atoms,
        stats.always_tried
    );

    for (name, uas) in [
        ("test_ua.yaml", &test_ua),
        ("test_device.yaml", &test_device),
    ] {
        let parser = UserAgentParser::new();
        let before = LIVE.load(Ordering::Relaxed);
        let first = per_ua(uas, 1, |ua| {
            black_box(parser.parse(ua));
        });
        let steady = per_ua(uas, 5, |ua| {
            black_box(parser.parse(ua));
        });
        let grown = LIVE.load(Ordering::Relaxed) - before;
        println!(
            "{name}: {} distinct UAs, uncached parse:\n  first sight (compiles the regexes it needs): {first}\n  steady: {steady}\n  heap +{:.2} MiB",
            uas.len(),
            mib(grown)
        );
    }

    let t = Instant::now();
    let compiled = parser.compile_all().expect("all regexes compile");
    let before_parse = LIVE.load(Ordering::Relaxed);
    println!(
        "compile_all: {compiled} regexes in {:.1} ms, heap now {:.2} MiB",
        t.elapsed().as_secs_f64() * 1e3,
        mib(before_parse - before)
    );
    let all: Vec<String> = test_ua.iter().chain(&test_device).cloned().collect();
    let steady = per_ua(&all, 3, |ua| {
        black_box(parser.parse(ua));
    });
    println!(
        "after compile_all, both files: {steady}; heap now {:.2} MiB",
        mib(LIVE.load(Ordering::Relaxed) - before)
    );

    let cache = UserAgentCache::new(test_ua.len() * 2);
    for ua in &test_ua {
        cache.get(ua);
    }
    let hit = per_ua(&test_ua, 20, |ua| {
        black_box(cache.get(ua));
    });
    println!(
        "cache hits over test_ua.yaml ({} entries): {hit}",
        cache.len()
    );
}
