//! `cache.kind: memory`: a per-replica LRU of cached answers bounded by bytes (`max_bytes`: the
//! bodies plus a fixed overhead per entry), each entry with its own expiry. It stores and evicts
//! only; what is cached and how it is answered is decided in [`super`].

use super::key::Key;
use super::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// Bytes counted for an entry beyond its body (key, maps, metadata).
const OVERHEAD: u64 = 160;

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
    max_bytes: u64,
    inner: Mutex<Inner>,
}

fn cost(e: &Entry) -> u64 {
    e.body.len() as u64 + OVERHEAD
}

impl Memory {
    pub fn new(max_bytes: u64) -> Memory {
        Memory {
            max_bytes,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The entry under `key` unless it expired by `now_ms` (unix milliseconds).
    pub fn get(&self, key: &Key, now_ms: u64) -> Option<Arc<Entry>> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let inner = &mut *g;
        inner.tick += 1;
        let tick = inner.tick;
        let (entry, used) = inner.entries.get_mut(key)?;
        if entry.expires_ms <= now_ms {
            let old = *used;
            inner.order.remove(&old);
            if let Some((e, _)) = inner.entries.remove(key) {
                inner.bytes -= cost(&e);
            }
            return None;
        }
        let entry = entry.clone();
        inner.order.remove(used);
        *used = tick;
        inner.order.insert(tick, *key);
        Some(entry)
    }

    /// Stores `entry` under `key`, evicting the least recently used until it fits; an entry
    /// larger than the whole bound is not stored.
    pub fn put(&self, key: Key, entry: Entry) {
        let size = cost(&entry);
        if size > self.max_bytes {
            return;
        }
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let inner = &mut *g;
        if let Some((old, used)) = inner.entries.remove(&key) {
            inner.order.remove(&used);
            inner.bytes -= cost(&old);
        }
        while inner.bytes + size > self.max_bytes {
            let Some((_, oldest)) = inner.order.pop_first() else {
                break;
            };
            if let Some((e, _)) = inner.entries.remove(&oldest) {
                inner.bytes -= cost(&e);
            }
        }
        inner.tick += 1;
        let tick = inner.tick;
        inner.order.insert(tick, key);
        inner.entries.insert(key, (Arc::new(entry), tick));
        inner.bytes += size;
    }

    /// Bytes held (bodies plus overhead).
    pub fn bytes(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).bytes
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
    fn expired_entries_are_gone_and_their_bytes_freed() {
        let m = Memory::new(10_000);
        m.put([1; 32], entry(100, 50));
        assert!(m.get(&[1; 32], 49).is_some());
        assert!(m.get(&[1; 32], 50).is_none());
        assert_eq!(m.bytes(), 0);
    }
}
