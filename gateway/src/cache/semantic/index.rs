//! The semantic cache's in-process vector index: per partition (route, public model, scope and
//! every request field but the prompt, hashed), the unit-length f32 vectors of prompts whose
//! answers were stored, each with the exact cache key its answer lives under and its expiry.
//!
//! Search is brute force: one dot product per live vector of the partition (cosine similarity,
//! the vectors being normalised), under a mutex. That is fine for thousands of entries (10,000
//! × 384 dimensions is ~4 M multiply-adds, about a millisecond); a larger index would want an
//! approximate-neighbour structure. The whole index is bounded by `max_entries` (oldest first
//! out) and expired vectors are dropped when met. It holds vectors and keys only: the answers
//! stay in the exact cache ([`super::super::Cache`]), so an answer evicted there is a miss here.

use super::super::key::Key;

/// A partition: the digest of a request without its prompt ([`super::super::key::digest_of_map`]).
pub type Part = [u8; 32];
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// One indexed prompt.
struct Item {
    key: Key,
    vector: Box<[f32]>,
    expires_ms: u64,
    /// Insertion number: matches the order queue's record of it.
    seq: u64,
}

#[derive(Default)]
struct Inner {
    parts: HashMap<Part, Vec<Item>>,
    /// (partition, seq) in insertion order: what is evicted first.
    order: VecDeque<(Part, u64)>,
    seq: u64,
}

/// The index (one per process; empty and free when no `cache.semantic` is configured).
#[derive(Default)]
pub struct Index {
    inner: Mutex<Inner>,
}

/// Scales `v` to unit length; `None` for an empty or zero vector.
pub fn normalise(mut v: Vec<f32>) -> Option<Box<[f32]>> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if v.is_empty() || !norm.is_finite() || norm == 0.0 {
        return None;
    }
    v.iter_mut().for_each(|x| *x /= norm);
    Some(v.into_boxed_slice())
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl Index {
    /// The exact key of the closest live vector in `part` whose similarity to `v` is at least
    /// `threshold`, with that similarity.
    pub fn nearest(
        &self,
        part: &Part,
        v: &[f32],
        threshold: f32,
        now_ms: u64,
    ) -> Option<(Key, f32)> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let items = g.parts.get_mut(part)?;
        items.retain(|i| i.expires_ms > now_ms);
        items
            .iter()
            .filter(|i| i.vector.len() == v.len())
            .map(|i| (&i.key, dot(&i.vector, v)))
            .filter(|(_, s)| *s >= threshold)
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(k, s)| (k.clone(), s))
    }

    /// Indexes `v` (unit length) for the answer stored under `key`; the oldest vectors go when
    /// the index holds `max_entries`.
    pub fn insert(&self, part: Part, key: Key, v: Box<[f32]>, expires_ms: u64, max_entries: usize) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let inner = &mut *g;
        inner.seq += 1;
        let seq = inner.seq;
        let items = inner.parts.entry(part).or_default();
        // The same prompt stored again replaces its vector.
        items.retain(|i| i.key != key);
        items.push(Item {
            key,
            vector: v,
            expires_ms,
            seq,
        });
        inner.order.push_back((part, seq));
        while inner.order.len() > max_entries.max(1) {
            let Some((p, s)) = inner.order.pop_front() else {
                break;
            };
            if let Some(items) = inner.parts.get_mut(&p) {
                items.retain(|i| i.seq != s);
                if items.is_empty() {
                    inner.parts.remove(&p);
                }
            }
        }
    }

    /// Vectors held (live or not yet found expired).
    #[cfg(test)]
    fn len(&self) -> usize {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.parts.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Box<[f32]> {
        normalise(v.to_vec()).unwrap()
    }

    #[test]
    fn the_nearest_above_the_threshold_in_its_partition_wins() {
        let idx = Index::default();
        let (p, q) = ([1u8; 32], [2u8; 32]);
        idx.insert(p, Key::of(&[10]), unit(&[1.0, 0.0, 0.0]), 1000, 10);
        idx.insert(p, Key::of(&[11]), unit(&[0.8, 0.6, 0.0]), 1000, 10);
        let v = unit(&[0.9, 0.44, 0.0]);
        let (k, s) = idx.nearest(&p, &v, 0.9, 0).unwrap();
        assert_eq!(k, Key::of(&[11]));
        assert!(s > 0.98, "{s}");
        assert_eq!(idx.nearest(&p, &unit(&[0.0, 0.0, 1.0]), 0.5, 0), None);
        assert_eq!(idx.nearest(&q, &v, 0.1, 0), None, "another partition");
        assert_eq!(idx.nearest(&p, &v, 0.9, 1000), None, "expired");
        assert_eq!(idx.len(), 0, "expired vectors are dropped when met");
    }

    #[test]
    fn the_index_is_bounded_oldest_first() {
        let idx = Index::default();
        for n in 0..50u8 {
            let part = [n % 3; 32];
            idx.insert(
                part,
                Key::of(&[n]),
                unit(&[1.0, f32::from(n)]),
                u64::MAX,
                20,
            );
        }
        assert_eq!(idx.len(), 20);
        // The newest survive: entry 49 (partition 1) is found, entry 0 is gone.
        let (k, _) = idx
            .nearest(&[1; 32], &unit(&[1.0, 49.0]), 0.9999, 0)
            .unwrap();
        assert_eq!(k, Key::of(&[49]));
        assert!(idx
            .nearest(&[0; 32], &unit(&[1.0, 0.0]), 0.9999, 0)
            .is_none());
        assert!(normalise(vec![0.0, 0.0]).is_none());
    }
}
