//! A bounded, thread-safe cache of parsed user agents: the enrichment
//! enrichment [`Cache`] (quick_cache: sharded, S3-FIFO) keyed by the user agent.
//!
//! Bounds: at most `capacity` entries, each keyed by the user agent cut to
//! [`MAX_UA_LEN`](super::MAX_UA_LEN) bytes, so the memory is bounded by
//! roughly `capacity × (512 + size of a parsed UserAgent)` bytes.
//! Parsing happens outside the locks (once per key: concurrent misses of
//! one user agent wait for the first); capacity 0 caches nothing (every
//! call parses, without hashing or locking).

use std::sync::Arc;

use super::{truncate_user_agent, UserAgent, UserAgentParser};
use crate::enrich::cache::{Cache, CacheStats};

/// The default number of entries.
pub const DEFAULT_CAPACITY: usize = 10_000;

/// A bounded cache mapping a user agent to its parsed [`UserAgent`].
pub struct UserAgentCache {
    parser: &'static UserAgentParser,
    entries: Cache<String, Arc<UserAgent>>,
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
        UserAgentCache {
            parser,
            entries: Cache::new(capacity),
        }
    }

    /// The parsed `ua` (cut to [`MAX_UA_LEN`](super::MAX_UA_LEN) bytes),
    /// from the cache or parsed and then cached.
    pub fn get(&self, ua: &str) -> Arc<UserAgent> {
        self.entries
            .get_or_insert_with(truncate_user_agent(ua), |key| {
                Arc::new(self.parser.parse(key))
            })
    }

    /// Number of cached entries (never more than [`Self::capacity`]).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The maximum number of entries.
    pub fn capacity(&self) -> usize {
        self.entries.capacity()
    }

    /// Entries, capacity, hits and misses so far.
    pub fn stats(&self) -> CacheStats {
        self.entries.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(stats.entries >= DEFAULT_CAPACITY * 9 / 10, "{stats:?}");
        assert_eq!(stats.misses, 1_000_000);
        let mut stored = 0;
        cache.entries.for_each_key(|k| {
            assert!(k.len() <= super::super::MAX_UA_LEN);
            stored += k.len();
        });
        assert!(stored <= DEFAULT_CAPACITY * super::super::MAX_UA_LEN);
    }
}
