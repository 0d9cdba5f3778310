//! A bounded, thread-safe cache of parsed user agents.
//!
//! Sharded (16 mutex-protected shards, chosen by hash) and evicting with
//! the CLOCK algorithm (second chance): each entry has a "referenced" bit
//! set by a hit; when a full shard needs room, a hand sweeps its slots,
//! clearing set bits and evicting the first entry whose bit was clear. It
//! approximates LRU at O(1) per operation with no per-hit list surgery.
//!
//! Bounds: at most `capacity` entries, each keyed by the user agent cut to
//! [`MAX_UA_LEN`](super::MAX_UA_LEN) bytes, so the memory is bounded by
//! roughly `capacity × (512 + size of a parsed UserAgent)` bytes.
//! Parsing happens outside the locks.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{truncate_user_agent, UserAgent, UserAgentParser};

const SHARDS: usize = 16;

/// The default number of entries.
pub const DEFAULT_CAPACITY: usize = 10_000;

/// The shard maps are keyed by the (already random-seeded) 64-bit hash of
/// the user agent; this hasher passes it through.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

struct Entry {
    hash: u64,
    key: Box<str>,
    value: Arc<UserAgent>,
    referenced: bool,
}

#[derive(Default)]
struct Shard {
    /// Hash of the key → slot. Two keys with the same 64-bit hash share a
    /// slot (the later replaces the earlier): only a miss, never a wrong hit,
    /// since hits compare the key.
    index: HashMap<u64, usize, BuildHasherDefault<PassThrough>>,
    slots: Vec<Entry>,
    capacity: usize,
    hand: usize,
    hits: u64,
    misses: u64,
}

impl Shard {
    fn get(&mut self, hash: u64, key: &str) -> Option<Arc<UserAgent>> {
        let hit = self
            .index
            .get(&hash)
            .map(|&i| &mut self.slots[i])
            .filter(|e| &*e.key == key)
            .map(|e| {
                e.referenced = true;
                Arc::clone(&e.value)
            });
        match hit {
            Some(_) => self.hits += 1,
            None => self.misses += 1,
        }
        hit
    }

    fn insert(&mut self, hash: u64, key: &str, value: Arc<UserAgent>) {
        if self.capacity == 0 {
            return;
        }
        let entry = Entry {
            hash,
            key: key.into(),
            value,
            referenced: false,
        };
        if let Some(&i) = self.index.get(&hash) {
            self.slots[i] = entry;
            return;
        }
        if self.slots.len() < self.capacity {
            self.index.insert(hash, self.slots.len());
            self.slots.push(entry);
            return;
        }
        while self.slots[self.hand].referenced {
            self.slots[self.hand].referenced = false;
            self.hand = (self.hand + 1) % self.slots.len();
        }
        let victim = self.hand;
        self.index.remove(&self.slots[victim].hash);
        self.index.insert(hash, victim);
        self.slots[victim] = entry;
        self.hand = (victim + 1) % self.slots.len();
    }
}

/// Hit and miss counts of a [`UserAgentCache`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub entries: usize,
    pub capacity: usize,
    pub hits: u64,
    pub misses: u64,
}

/// A bounded cache mapping a user agent to its parsed [`UserAgent`].
pub struct UserAgentCache {
    parser: &'static UserAgentParser,
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    capacity: usize,
}

impl std::fmt::Debug for UserAgentCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserAgentCache")
            .field("stats", &self.stats())
            .finish()
    }
}

impl Default for UserAgentCache {
    /// [`DEFAULT_CAPACITY`] entries over the global parser.
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl UserAgentCache {
    /// A cache of at most `capacity` entries over
    /// [`UserAgentParser::global`].
    pub fn new(capacity: usize) -> Self {
        Self::with_parser(UserAgentParser::global(), capacity)
    }

    /// A cache of at most `capacity` entries over `parser`.
    pub fn with_parser(parser: &'static UserAgentParser, capacity: usize) -> Self {
        let shards = (0..SHARDS)
            .map(|i| {
                Mutex::new(Shard {
                    capacity: capacity / SHARDS + usize::from(i < capacity % SHARDS),
                    ..Shard::default()
                })
            })
            .collect();
        UserAgentCache {
            parser,
            shards,
            hasher: RandomState::new(),
            capacity,
        }
    }

    fn shard(&self, hash: u64) -> MutexGuard<'_, Shard> {
        // The shard's map uses the low bits (bucket) and the top 7 (tag):
        // pick the shard from bits in between.
        let i = (hash >> 32) as usize % SHARDS;
        self.shards[i]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The parsed `ua` (cut to [`MAX_UA_LEN`](super::MAX_UA_LEN) bytes),
    /// from the cache or parsed and then cached.
    pub fn get(&self, ua: &str) -> Arc<UserAgent> {
        let key = truncate_user_agent(ua);
        let hash = self.hasher.hash_one(key);
        if let Some(hit) = self.shard(hash).get(hash, key) {
            return hit;
        }
        let value = Arc::new(self.parser.parse(key));
        self.shard(hash).insert(hash, key, Arc::clone(&value));
        value
    }

    /// Number of cached entries (never more than [`Self::capacity`]).
    pub fn len(&self) -> usize {
        self.stats().entries
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The maximum number of entries.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Entries, capacity, hits and misses so far.
    pub fn stats(&self) -> CacheStats {
        let mut stats = CacheStats {
            capacity: self.capacity,
            ..CacheStats::default()
        };
        for shard in self.shards.iter() {
            let shard = shard
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            stats.entries += shard.slots.len();
            stats.hits += shard.hits;
            stats.misses += shard.misses;
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(s: &str) -> Arc<UserAgent> {
        Arc::new(UserAgent {
            browser: Some(s.to_owned()),
            browser_version: None,
            os: None,
            os_version: None,
            device_brand: None,
            device_model: None,
            device_family: None,
            device_type: super::super::DeviceType::Other,
            is_bot: false,
        })
    }

    #[test]
    fn clock_gives_referenced_entries_a_second_chance() {
        let mut shard = Shard {
            capacity: 3,
            ..Shard::default()
        };
        for (h, k) in [(1, "a"), (2, "b"), (3, "c")] {
            shard.insert(h, k, value(k));
        }
        assert!(shard.get(1, "a").is_some());
        shard.insert(4, "d", value("d")); // evicts b (a was referenced)
        assert!(shard.get(2, "b").is_none());
        assert!(shard.get(1, "a").is_some());
        assert!(shard.get(3, "c").is_some());
        assert!(shard.get(4, "d").is_some());
        assert_eq!(shard.slots.len(), 3);
        assert_eq!(shard.index.len(), 3);
    }

    #[test]
    fn a_colliding_hash_is_a_miss_not_a_wrong_hit() {
        let mut shard = Shard {
            capacity: 2,
            ..Shard::default()
        };
        shard.insert(7, "a", value("a"));
        assert!(shard.get(7, "b").is_none());
        shard.insert(7, "b", value("b"));
        assert_eq!(shard.get(7, "b").unwrap().browser.as_deref(), Some("b"));
        assert!(shard.get(7, "a").is_none());
        assert_eq!(shard.slots.len(), 1);
    }

    #[test]
    fn hits_return_the_same_parse() {
        let cache = UserAgentCache::new(100);
        let ua = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";
        let a = cache.get(ua);
        let b = cache.get(ua);
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.browser.as_deref(), Some("Firefox"));
        let stats = cache.stats();
        assert_eq!((stats.entries, stats.hits, stats.misses), (1, 1, 1));
    }

    #[test]
    fn concurrent_use_stays_bounded_and_correct() {
        let cache = UserAgentCache::new(64);
        let uas: Vec<String> = (0..200)
            .map(|i| {
                format!("Mozilla/5.0 (X11; Linux x86_64; rv:{i}.0) Gecko/20100101 Firefox/{i}.0")
            })
            .collect();
        std::thread::scope(|s| {
            for t in 0..4 {
                let (cache, uas) = (&cache, &uas);
                s.spawn(move || {
                    for round in 0..3 {
                        for (i, ua) in uas.iter().enumerate().skip((t + round) % 7) {
                            let parsed = cache.get(ua);
                            assert_eq!(parsed.browser.as_deref(), Some("Firefox"));
                            assert_eq!(parsed.browser_version, Some(format!("{i}.0")));
                        }
                    }
                });
            }
        });
        assert!(cache.len() <= 64, "{:?}", cache.stats());
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let cache = UserAgentCache::new(0);
        assert_eq!(cache.get("curl/8.0").browser.as_deref(), Some("curl"));
        assert!(cache.is_empty());
    }

    #[test]
    fn stays_bounded_under_a_million_distinct_user_agents() {
        // Uses a parser with no rules so that the test measures the cache,
        // not uap-core (1,000,000 parses would be slow in debug builds).
        static EMPTY: std::sync::LazyLock<UserAgentParser> = std::sync::LazyLock::new(|| {
            UserAgentParser::from_yaml(
                "user_agent_parsers: []\nos_parsers: []\ndevice_parsers: []\n",
            )
            .unwrap()
        });
        let cache = UserAgentCache::with_parser(&EMPTY, DEFAULT_CAPACITY);
        let mut max_seen = 0;
        for i in 0..1_000_000u32 {
            // Long keys: they are cut to 512 bytes before being stored.
            let ua = format!(
                "agent-{i}-{}",
                "x".repeat(if i % 1000 == 0 { 4096 } else { 20 })
            );
            let _ = cache.get(&ua);
            if i % 10_000 == 0 {
                max_seen = max_seen.max(cache.len());
            }
        }
        let stats = cache.stats();
        assert!(stats.entries <= DEFAULT_CAPACITY, "{stats:?}");
        assert!(max_seen <= DEFAULT_CAPACITY);
        assert!(stats.entries >= DEFAULT_CAPACITY - SHARDS, "{stats:?}");
        assert_eq!(stats.misses, 1_000_000);
        let stored: usize = cache
            .shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap()
                    .slots
                    .iter()
                    .map(|e| e.key.len())
                    .sum::<usize>()
            })
            .sum();
        assert!(stored <= DEFAULT_CAPACITY * super::super::MAX_UA_LEN);
        for shard in cache.shards.iter() {
            let shard = shard.lock().unwrap();
            assert_eq!(shard.index.len(), shard.slots.len());
        }
    }
}
