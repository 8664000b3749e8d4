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
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
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
    entries: HashMap<Key, (Arc<Entry>, u64), BuildHasherDefault<KeyHasher>>,
    /// (use, key) in the order of use, the least recent first. A key used again is pushed
    /// again: a record whose use is not its entry's last is stale and skipped when met (the
    /// queue is compacted when stale records outnumber the entries).
    order: VecDeque<(u64, Key)>,
    tick: u64,
    bytes: u64,
}

/// Hands the key's own hash to the map: it is already a hash seeded per process
/// ([`Key::spread`]), so hashing it again would only cost time.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (`Key`'s `Hash`); anything else still spreads.
        for b in bytes {
            self.0 =
                (self.0.rotate_left(5) ^ u64::from(*b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

impl Inner {
    /// Drops stale order records once they outnumber the entries (amortised O(1) per use).
    fn compact(&mut self) {
        if self.order.len() > 2 * self.entries.len() + 64 {
            let entries = &self.entries;
            self.order
                .retain(|(used, k)| entries.get(k).is_some_and(|(_, u)| u == used));
        }
    }
}

/// The memory store.
pub struct Memory {
    /// Each shard's bound.
    shard_max: u64,
    shards: Box<[Mutex<Inner>]>,
    /// Bytes held by all shards (for the `switchyard_cache_bytes` gauge).
    held: AtomicU64,
}

fn cost(key: &Key, e: &Entry) -> u64 {
    (key.text_len() + e.body.len()) as u64 + OVERHEAD
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
        // Middle bits: the map inside uses the low ones for its slot and the top ones for tags.
        let i = ((key.spread() >> 32) % self.shards.len() as u64) as usize;
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The entry under `key` unless it expired by `now_ms` (unix milliseconds).
    pub fn get(&self, key: &Key, now_ms: u64) -> Option<Arc<Entry>> {
        let mut g = self.shard(key);
        let inner = &mut *g;
        let (entry, used) = inner.entries.get_mut(key)?;
        if entry.expires_ms <= now_ms {
            if let Some((e, _)) = inner.entries.remove(key) {
                inner.bytes -= cost(key, &e);
                self.held.fetch_sub(cost(key, &e), Ordering::Relaxed);
            }
            return None;
        }
        let entry = entry.clone();
        inner.tick += 1;
        *used = inner.tick;
        inner.order.push_back((inner.tick, key.clone()));
        inner.compact();
        Some(entry)
    }

    /// Stores `entry` under `key`, evicting its shard's least recently used until it fits; an
    /// entry larger than a shard's bound is not stored.
    pub fn put(&self, key: Key, entry: Entry) {
        let size = cost(&key, &entry);
        if size > self.shard_max {
            return;
        }
        let mut g = self.shard(&key);
        let inner = &mut *g;
        let mut freed = 0;
        if let Some((old, _)) = inner.entries.remove(&key) {
            freed += cost(&key, &old);
        }
        while inner.bytes - freed + size > self.shard_max {
            let Some((used, oldest)) = inner.order.pop_front() else {
                break;
            };
            if inner.entries.get(&oldest).is_some_and(|(_, u)| *u == used) {
                if let Some((e, _)) = inner.entries.remove(&oldest) {
                    freed += cost(&oldest, &e);
                }
            }
        }
        inner.tick += 1;
        let tick = inner.tick;
        inner.order.push_back((tick, key.clone()));
        inner.entries.insert(key, (Arc::new(entry), tick));
        inner.bytes = inner.bytes - freed + size;
        inner.compact();
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
        let m = Memory::new(3 * (101 + OVERHEAD));
        m.put(Key::of(&[1]), entry(100, 1000));
        m.put(Key::of(&[2]), entry(100, 1000));
        m.put(Key::of(&[3]), entry(100, 1000));
        assert!(
            m.get(&Key::of(&[1]), 0).is_some(),
            "1 is now the most recent"
        );
        m.put(Key::of(&[4]), entry(100, 1000));
        assert!(
            m.get(&Key::of(&[2]), 0).is_none(),
            "2 was the least recently used"
        );
        assert!(m.get(&Key::of(&[1]), 0).is_some());
        assert!(m.get(&Key::of(&[3]), 0).is_some());
        assert!(m.get(&Key::of(&[4]), 0).is_some());
        assert!(m.bytes() <= 3 * (101 + OVERHEAD));
        for i in 0..200u8 {
            m.put(Key::of(&[i]), entry(100, 1000));
            assert!(m.bytes() <= 3 * (101 + OVERHEAD));
        }
        m.put(Key::of(&[9]), entry(10_000, 1000));
        assert!(
            m.get(&Key::of(&[9]), 0).is_none(),
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
                m.put(Key::of(&[i, j]), entry(512 * 1024, 1000));
                assert!(m.bytes() <= max);
            }
        }
        let held: u64 = m.shards.iter().map(|s| s.lock().unwrap().bytes).sum();
        assert_eq!(held, m.bytes());
        // ~64 entries went to each shard, which holds 7: the first is long gone.
        assert!(m.get(&Key::of(&[0, 0]), 0).is_none(), "evicted");
        assert!(m.get(&Key::of(&[255, 3]), 0).is_some(), "the newest stays");
    }

    #[test]
    fn the_order_queue_stays_bounded_under_repeated_hits() {
        let m = Memory::new(10_000);
        m.put(Key::of(&[1]), entry(10, 1000));
        m.put(Key::of(&[2]), entry(10, 1000));
        for _ in 0..10_000 {
            assert!(m.get(&Key::of(&[1]), 0).is_some());
        }
        let order = m.shards[0].lock().unwrap().order.len();
        assert!(order <= 2 * 2 + 64 + 1, "{order}");
        // 2 is the least recently used: a put that needs room evicts it, not 1.
        // 171 bytes each for 1 and 2; 9,761 for 3: room for one of them only.
        m.put(Key::of(&[3]), entry(9_600, 1000));
        assert!(m.get(&Key::of(&[2]), 0).is_none());
        assert!(m.get(&Key::of(&[1]), 0).is_some());
    }

    #[test]
    fn expired_entries_are_gone_and_their_bytes_freed() {
        let m = Memory::new(10_000);
        m.put(Key::of(&[1]), entry(100, 50));
        assert!(m.get(&Key::of(&[1]), 49).is_some());
        assert!(m.get(&Key::of(&[1]), 50).is_none());
        assert_eq!(m.bytes(), 0);
    }
}
