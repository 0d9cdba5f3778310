//! A bounded, thread-safe cache, the one behind every enrichment cache
//! (GeoIP: address → location and record offset → location; user agents:
//! user agent → parsed, in `user_agent/cache.rs`).
//!
//! 16 mutex-protected shards chosen by a random-seeded hash, each evicting
//! with the CLOCK algorithm (second chance): a hit sets the entry's
//! "referenced" bit; when a full shard needs room, its hand sweeps the
//! slots, clearing set bits, and evicts the first entry whose bit was
//! clear. It approximates LRU at O(1) per operation with no per-hit list
//! surgery. At most `capacity` entries, whatever the traffic (capacity 0:
//! nothing is cached, and a lookup neither hashes nor locks); the value is
//! computed outside the lock.
//!
//! Kept (for now) beside `quick_cache` (S3-FIFO), measured side by side by
//! `cargo run --release --example cache_bench` (capacity 10,000, 1 M lookups of
//! ~110-byte user-agent keys, best of 5 alternating rounds, 2-core machine,
//! 2026-12-02), ns per lookup ours / quick_cache: all hits 62 / 31; skewed
//! (50,000 keys) 167 / 165 with hit rates 0.567 / 0.625; every key new
//! 131 / 231; skewed from 2 threads 118 / 124; heap when full 2.73 / 2.86 MiB.
//! quick_cache is within 20 % on memory and on the skewed traffic real user
//! agents give, faster on hits and keeps more of them (each miss costs a
//! parse, ~µs): by issue 16's rule it should replace this module.

use std::borrow::Borrow;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Number of shards (a cache of capacity `c` keeps at least `c - SHARDS`
/// entries once every shard is full).
pub(crate) const SHARDS: usize = 16;

/// Entries, capacity, hits and misses of a cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub entries: usize,
    pub capacity: usize,
    pub hits: u64,
    pub misses: u64,
}

/// The shard maps are keyed by the (already random-seeded) 64-bit hash of
/// the key; this hasher passes it through.
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

struct Slot<K, V> {
    hash: u64,
    key: K,
    value: V,
    referenced: bool,
}

struct Shard<K, V> {
    /// Hash of the key → slot. Two keys with the same 64-bit hash share a
    /// slot (the later replaces the earlier): a miss, never a wrong hit,
    /// since hits compare the key.
    index: HashMap<u64, usize, BuildHasherDefault<PassThrough>>,
    slots: Vec<Slot<K, V>>,
    capacity: usize,
    hand: usize,
    hits: u64,
    misses: u64,
}

impl<K, V: Clone> Shard<K, V> {
    fn new(capacity: usize) -> Self {
        Shard {
            index: HashMap::default(),
            slots: Vec::new(),
            capacity,
            hand: 0,
            hits: 0,
            misses: 0,
        }
    }

    fn get<Q: Eq + ?Sized>(&mut self, hash: u64, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        let hit = self
            .index
            .get(&hash)
            .map(|&i| &mut self.slots[i])
            .filter(|s| s.key.borrow() == key)
            .map(|s| {
                s.referenced = true;
                s.value.clone()
            });
        match hit {
            Some(_) => self.hits += 1,
            None => self.misses += 1,
        }
        hit
    }

    fn insert(&mut self, hash: u64, key: K, value: V) {
        if self.capacity == 0 {
            return;
        }
        let slot = Slot {
            hash,
            key,
            value,
            referenced: false,
        };
        if let Some(&i) = self.index.get(&hash) {
            self.slots[i] = slot;
            return;
        }
        if self.slots.len() < self.capacity {
            self.index.insert(hash, self.slots.len());
            self.slots.push(slot);
            return;
        }
        while self.slots[self.hand].referenced {
            self.slots[self.hand].referenced = false;
            self.hand = (self.hand + 1) % self.slots.len();
        }
        let victim = self.hand;
        self.index.remove(&self.slots[victim].hash);
        self.index.insert(hash, victim);
        self.slots[victim] = slot;
        self.hand = (victim + 1) % self.slots.len();
    }
}

/// A bounded map from `K` to `V`, filled on demand.
pub struct ClockCache<K, V> {
    shards: Box<[Mutex<Shard<K, V>>]>,
    hasher: RandomState,
    capacity: usize,
}

impl<K, V> std::fmt::Debug for ClockCache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClockCache")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl<K, V: Clone> ClockCache<K, V> {
    /// A cache of at most `capacity` entries (0: nothing is cached).
    pub fn new(capacity: usize) -> Self {
        // Fewer shards than SHARDS for a small cache: a shard of capacity 0
        // would silently cache nothing for the keys that hash to it.
        let count = capacity.clamp(1, SHARDS);
        let shards = (0..count)
            .map(|i| {
                Mutex::new(Shard::new(
                    capacity / count + usize::from(i < capacity % count),
                ))
            })
            .collect();
        ClockCache {
            shards,
            hasher: RandomState::new(),
            capacity,
        }
    }

    fn shard(&self, hash: u64) -> MutexGuard<'_, Shard<K, V>> {
        // The shard's map uses the low bits (bucket) and the top 7 (tag):
        // pick the shard from bits in between.
        self.shards[(hash >> 32) as usize % self.shards.len()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached value for `key`, or `make(key)`, cached (under an owned
    /// copy of `key`: `Box<str>` for `&str`). `make` runs outside the lock
    /// (two threads missing the same key both compute it).
    pub fn get_or_insert_with<Q>(&self, key: &Q, make: impl FnOnce(&Q) -> V) -> V
    where
        Q: Hash + Eq + ToOwned + ?Sized,
        K: Borrow<Q> + From<Q::Owned>,
    {
        if self.capacity == 0 {
            return make(key);
        }
        let hash = self.hasher.hash_one(key);
        if let Some(hit) = self.shard(hash).get(hash, key) {
            return hit;
        }
        let value = make(key);
        self.shard(hash)
            .insert(hash, K::from(key.to_owned()), value.clone());
        value
    }

    /// Calls `f` on every cached key (tests check what is stored).
    #[cfg(test)]
    pub(crate) fn for_each_key(&self, mut f: impl FnMut(&K)) {
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            shard.slots.iter().for_each(|s| f(&s.key));
        }
    }

    /// Drop every entry (the counters stay; tests start cold).
    #[cfg(test)]
    pub(crate) fn clear(&self) {
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            shard.index.clear();
            shard.slots.clear();
            shard.hand = 0;
        }
    }

    /// Number of entries (never more than [`Self::capacity`]).
    pub fn len(&self) -> usize {
        self.stats().entries
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn stats(&self) -> CacheStats {
        let mut stats = CacheStats {
            capacity: self.capacity,
            ..CacheStats::default()
        };
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
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

    #[test]
    fn clock_gives_referenced_entries_a_second_chance() {
        let mut shard = Shard::new(3);
        for k in 1..=3u32 {
            shard.insert(u64::from(k), k, k * 10);
        }
        assert_eq!(shard.get(1, &1), Some(10));
        shard.insert(4, 4, 40); // evicts 2 (1 was referenced)
        assert_eq!(shard.get(2, &2), None);
        assert_eq!(shard.get(1, &1), Some(10));
        assert_eq!(shard.get(3, &3), Some(30));
        assert_eq!(shard.get(4, &4), Some(40));
        assert_eq!((shard.slots.len(), shard.index.len()), (3, 3));
    }

    #[test]
    fn a_hash_collision_is_a_miss_not_a_wrong_hit() {
        let mut shard = Shard::new(4);
        shard.insert(7, 1u32, "one");
        assert_eq!(shard.get(7, &2), None);
        shard.insert(7, 2, "two");
        assert_eq!(shard.get(7, &2), Some("two"));
        assert_eq!(shard.get(7, &1), None);
    }

    #[test]
    fn hits_are_cached_and_counted() {
        let cache: ClockCache<u64, u64> = ClockCache::new(100);
        let mut computed = 0;
        for _ in 0..3 {
            let v = cache.get_or_insert_with(&5u64, |k| {
                computed += 1;
                k * 2
            });
            assert_eq!(v, 10);
        }
        assert_eq!(computed, 1);
        let s = cache.stats();
        assert_eq!((s.entries, s.hits, s.misses), (1, 2, 1));
        cache.clear();
        assert!(cache.is_empty());
    }

    #[test]
    fn every_shard_of_a_small_cache_has_room() {
        for capacity in 1..=2 * SHARDS {
            let cache: ClockCache<u64, u64> = ClockCache::new(capacity);
            for k in 0..100u64 {
                cache.get_or_insert_with(&k, |&k| k);
                // Just inserted: a hit, whichever shard the key hashes to.
                assert_eq!(
                    cache.get_or_insert_with(&k, |_| u64::MAX),
                    k,
                    "capacity {capacity}"
                );
            }
            assert!(cache.len() <= capacity);
        }
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let cache: ClockCache<u32, u32> = ClockCache::new(0);
        for k in 0..100u32 {
            assert_eq!(cache.get_or_insert_with(&k, |k| k + 1), k + 1);
        }
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn a_flood_of_distinct_keys_stays_within_capacity() {
        let cache: ClockCache<u64, u64> = ClockCache::new(1000);
        for k in 0..200_000u64 {
            cache.get_or_insert_with(&k, |&k| k);
            if k % 10_007 == 0 {
                assert!(cache.len() <= 1000);
            }
        }
        assert!(cache.len() <= 1000);
        assert!(cache.len() > 900, "shards fill up: {}", cache.len());
        for shard in cache.shards.iter() {
            let shard = shard.lock().unwrap();
            assert_eq!(shard.index.len(), shard.slots.len());
        }
    }

    #[test]
    fn unsized_keys_are_looked_up_borrowed_and_stored_owned() {
        let cache: ClockCache<Box<str>, usize> = ClockCache::new(10);
        assert_eq!(cache.get_or_insert_with("abc", str::len), 3);
        assert_eq!(cache.get_or_insert_with("abc", |_| 0), 3);
        let mut keys = Vec::new();
        cache.for_each_key(|k| keys.push(k.clone()));
        assert_eq!(keys, vec![Box::from("abc")]);
    }
}
