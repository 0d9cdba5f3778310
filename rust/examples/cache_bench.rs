//! Our enrichment cache (`enrich::clock_cache::ClockCache`) side by side with
//! the `quick_cache` crate (`quick_cache::sync::Cache`, S3-FIFO), on the
//! workloads the enricher gives it: user-agent-like keys (~110 bytes) looked
//! up by `&str`, a cloned `Arc` value (the parsed result) on a hit.
//!
//! `cargo run --release --example cache_bench`
//!
//! Workloads at capacity 10,000: `hits` (5,000 keys, all cached), `skewed`
//! (50,000 keys, a few hot: hit rate shown), `distinct` (every key new: a
//! miss and an eviction each), `skewed x2` (two threads sharing the cache).
//! Reports ns per lookup (best of 5 rounds, the two caches alternating in
//! each round) and the heap held once full (a counting global allocator).

use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use eventbunker_native::enrich::clock_cache::ClockCache;

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
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const CAPACITY: usize = 10_000;
const LOOKUPS: usize = 1_000_000;
const ROUNDS: usize = 5;

/// What the user-agent cache holds per entry (a parsed result), shared.
type Value = Arc<[u64; 8]>;

/// The two caches behind one face.
trait Cache: Sync {
    fn get(&self, key: &str) -> Value;
}

/// Each cache with a count of the values it had to make (its misses).
struct Ours(ClockCache<Box<str>, Value>, AtomicUsize);
struct Theirs(quick_cache::sync::Cache<String, Value>, AtomicUsize);

fn make(key: &str, made: &AtomicUsize) -> Value {
    made.fetch_add(1, Ordering::Relaxed);
    Arc::new([key.len() as u64; 8])
}

impl Cache for Ours {
    fn get(&self, key: &str) -> Value {
        self.0.get_or_insert_with(key, |k| make(k, &self.1))
    }
}

impl Cache for Theirs {
    fn get(&self, key: &str) -> Value {
        let found = self
            .0
            .get_or_insert_with(key, || Ok::<_, Infallible>(make(key, &self.1)));
        match found {
            Ok(v) => v,
        }
    }
}

fn user_agent(i: usize) -> String {
    format!("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{i}.0.0.0 Safari/537.36")
}

/// `n` indices into `0..keys`, a few hot (index = keys * u^4, u uniform).
fn skewed(n: usize, keys: usize, seed: u64) -> Vec<usize> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            ((keys as f64) * u.powi(4)) as usize
        })
        .collect()
}

/// ns per lookup of `keys[order[..]]` from `threads` threads sharing `cache`.
fn run(cache: &dyn Cache, keys: &[String], order: &[usize], threads: usize) -> f64 {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                for &i in order.iter().skip(t).step_by(threads) {
                    black_box(cache.get(&keys[i]));
                }
            });
        }
    });
    start.elapsed().as_nanos() as f64 / order.len() as f64
}

fn ours() -> Ours {
    Ours(ClockCache::new(CAPACITY), AtomicUsize::new(0))
}

fn theirs() -> Theirs {
    Theirs(quick_cache::sync::Cache::new(CAPACITY), AtomicUsize::new(0))
}

/// Share of the timed lookups that were hits.
fn hit_rate(made: &AtomicUsize, warm_up: usize, lookups: usize) -> f64 {
    1.0 - (made.load(Ordering::Relaxed) - warm_up) as f64 / lookups as f64
}

/// Heap bytes a full cache holds (keys included).
fn memory(make: &dyn Fn() -> Box<dyn Cache>, keys: &[String]) -> usize {
    let before = LIVE.load(Ordering::Relaxed);
    let cache = make();
    for k in keys {
        black_box(cache.get(k));
    }
    let held = LIVE.load(Ordering::Relaxed) - before;
    drop(cache);
    held
}

fn main() {
    let distinct_keys: Vec<String> = (0..LOOKUPS).map(user_agent).collect();
    let hot_order: Vec<usize> = (0..LOOKUPS).map(|i| i % 5_000).collect();
    let skewed_order = skewed(LOOKUPS, 50_000, 42);
    let distinct_order: Vec<usize> = (0..LOOKUPS).collect();
    let workloads: [(&str, &[usize], usize); 4] = [
        ("hits", &hot_order, 1),
        ("skewed", &skewed_order, 1),
        ("distinct", &distinct_order, 1),
        ("skewed x2", &skewed_order, 2),
    ];
    println!("capacity {CAPACITY}, {LOOKUPS} lookups per workload, best of {ROUNDS} rounds");
    println!(
        "{:<10} {:>14} {:>14} {:>8}",
        "workload", "ours ns/op", "quick_cache", "ratio"
    );
    for (name, order, threads) in workloads {
        let (mut best_ours, mut best_theirs) = (f64::MAX, f64::MAX);
        let mut hit_rates = (0.0, 0.0);
        for _ in 0..ROUNDS {
            // Warm-up: the hot set is cached before `hits` is timed.
            let warm_up = if name == "hits" { 5_000 } else { 0 };
            let a = ours();
            run(&a, &distinct_keys, &order[..warm_up], 1);
            best_ours = best_ours.min(run(&a, &distinct_keys, order, threads));
            hit_rates.0 = hit_rate(&a.1, warm_up, order.len());
            let b = theirs();
            run(&b, &distinct_keys, &order[..warm_up], 1);
            best_theirs = best_theirs.min(run(&b, &distinct_keys, order, threads));
            hit_rates.1 = hit_rate(&b.1, warm_up, order.len());
        }
        println!(
            "{name:<10} {best_ours:>14.1} {best_theirs:>14.1} {:>8.2}   hit rate {:.3} / {:.3}",
            best_theirs / best_ours,
            hit_rates.0,
            hit_rates.1
        );
    }
    let fill = &distinct_keys[..CAPACITY * 2];
    let mine = memory(&|| Box::new(ours()), fill);
    let other = memory(&|| Box::new(theirs()), fill);
    println!(
        "memory when full: ours {:.2} MiB, quick_cache {:.2} MiB (ratio {:.2})",
        mine as f64 / 1048576.0,
        other as f64 / 1048576.0,
        other as f64 / mine as f64
    );
}
