//! `cache.kind: memory`: a per-replica LRU of cached answers bounded by bytes (`max_bytes`: the
//! bodies plus a fixed overhead per entry), each entry with its own expiry. It stores and evicts
//! only; what is cached and how it is answered is decided in [`super`].
//!
//! Sharded by key (up to 16 shards of at least 4 MiB each, each an LRU over its share of
//! `max_bytes`), so requests to different entries never wait on one lock. Hand-written rather
//! than a crate: Pingora's `pingora-lru` evicts by weight but cannot hand an entry back on a
//! hit, and a per-entry expiry checked on read is all the TTL handling this needs.

use super::key::Key;
use super::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Bytes counted for an entry beyond its body (key, maps, metadata).
const OVERHEAD: u64 = 160;
/// The smallest share of `max_bytes` a shard gets, and the most shards.
const MIN_SHARD_BYTES: u64 = 4 * 1024 * 1024;
const MAX_SHARDS: u64 = 16;

#[derive(Default)]
struct Inner {
    /// Key → (entry, its last use).
    entries: HashMap<Key, (Arc<Entry>, u64)>,
    /// Last use → key: the least recently used first.
    order: BTreeMap<u64, Key>,
    tick: u64,
    bytes: u64,
}

/// The memory store.
pub struct Memory {
    /// Each shard's bound.
    shard_max: u64,
    shards: Box<[Mutex<Inner>]>,
    /// Bytes held by all shards (for the `switchyard_cache_bytes` gauge).
    held: AtomicU64,
}

fn cost(e: &Entry) -> u64 {
    e.body.len() as u64 + OVERHEAD
}

impl Memory {
    pub fn new(max_bytes: u64) -> Memory {
        let shards = (max_bytes / MIN_SHARD_BYTES).clamp(1, MAX_SHARDS);
        Memory {
            shard_max: max_bytes / shards,
            shards: (0..shards).map(|_| Mutex::new(Inner::default())).collect(),
            held: AtomicU64::new(0),
        }
    }

    fn shard(&self, key: &Key) -> std::sync::MutexGuard<'_, Inner> {
        // Keys are SHA-256 digests: their first byte spreads evenly.
        let i = usize::from(key[0]) % self.shards.len();
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The entry under `key` unless it expired by `now_ms` (unix milliseconds).
    pub fn get(&self, key: &Key, now_ms: u64) -> Option<Arc<Entry>> {
        let mut g = self.shard(key);
        let inner = &mut *g;
        inner.tick += 1;
        let tick = inner.tick;
        let (entry, used) = inner.entries.get_mut(key)?;
        if entry.expires_ms <= now_ms {
            let old = *used;
            inner.order.remove(&old);
            if let Some((e, _)) = inner.entries.remove(key) {
                inner.bytes -= cost(&e);
                self.held.fetch_sub(cost(&e), Ordering::Relaxed);
            }
            return None;
        }
        let entry = entry.clone();
        inner.order.remove(used);
        *used = tick;
        inner.order.insert(tick, *key);
        Some(entry)
    }

    /// Stores `entry` under `key`, evicting its shard's least recently used until it fits; an
    /// entry larger than a shard's bound is not stored.
    pub fn put(&self, key: Key, entry: Entry) {
        let size = cost(&entry);
        if size > self.shard_max {
            return;
        }
        let mut g = self.shard(&key);
        let inner = &mut *g;
        let mut freed = 0;
        if let Some((old, used)) = inner.entries.remove(&key) {
            inner.order.remove(&used);
            freed += cost(&old);
        }
        while inner.bytes - freed + size > self.shard_max {
            let Some((_, oldest)) = inner.order.pop_first() else {
                break;
            };
            if let Some((e, _)) = inner.entries.remove(&oldest) {
                freed += cost(&e);
            }
        }
        inner.tick += 1;
        let tick = inner.tick;
        inner.order.insert(tick, key);
        inner.entries.insert(key, (Arc::new(entry), tick));
        inner.bytes = inner.bytes - freed + size;
        self.held.fetch_add(size, Ordering::Relaxed);
        self.held.fetch_sub(freed, Ordering::Relaxed);
    }

    /// Bytes held (bodies plus overhead).
    pub fn bytes(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn entry(len: usize, expires_ms: u64) -> Entry {
        Entry {
            body: Bytes::from(vec![b'x'; len]),
            prompt_tokens: 1,
            completion_tokens: 2,
            cost_usd: 0.5,
            stored_ms: 0,
            expires_ms,
        }
    }

    #[test]
    fn bounded_by_bytes_evicting_the_least_recently_used() {
        let m = Memory::new(3 * (100 + OVERHEAD));
        m.put([1; 32], entry(100, 1000));
        m.put([2; 32], entry(100, 1000));
        m.put([3; 32], entry(100, 1000));
        assert!(m.get(&[1; 32], 0).is_some(), "1 is now the most recent");
        m.put([4; 32], entry(100, 1000));
        assert!(
            m.get(&[2; 32], 0).is_none(),
            "2 was the least recently used"
        );
        assert!(m.get(&[1; 32], 0).is_some());
        assert!(m.get(&[3; 32], 0).is_some());
        assert!(m.get(&[4; 32], 0).is_some());
        assert!(m.bytes() <= 3 * (100 + OVERHEAD));
        for i in 0..200u8 {
            m.put([i; 32], entry(100, 1000));
            assert!(m.bytes() <= 3 * (100 + OVERHEAD));
        }
        m.put([9; 32], entry(10_000, 1000));
        assert!(
            m.get(&[9; 32], 0).is_none(),
            "larger than the bound: not stored"
        );
    }

    #[test]
    fn a_large_cache_is_sharded_and_each_shard_bounded() {
        let max = 64 * 1024 * 1024;
        let m = Memory::new(max);
        assert_eq!(m.shards.len(), 16);
        for i in 0..=255u8 {
            for j in 0..4u8 {
                let mut key = [i; 32];
                key[1] = j;
                m.put(key, entry(512 * 1024, 1000));
                assert!(m.bytes() <= max);
            }
        }
        let held: u64 = m.shards.iter().map(|s| s.lock().unwrap().bytes).sum();
        assert_eq!(held, m.bytes());
        assert!(m.get(&[255; 32], 0).is_none(), "evicted");
        let mut last = [255; 32];
        last[1] = 3;
        assert!(m.get(&last, 0).is_some(), "the newest stays");
    }

    #[test]
    fn expired_entries_are_gone_and_their_bytes_freed() {
        let m = Memory::new(10_000);
        m.put([1; 32], entry(100, 50));
        assert!(m.get(&[1; 32], 49).is_some());
        assert!(m.get(&[1; 32], 50).is_none());
        assert_eq!(m.bytes(), 0);
    }
}
