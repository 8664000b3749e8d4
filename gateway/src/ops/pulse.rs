//! The gateway's recent pulse for the status page: an in-process ring of per-10-second buckets
//! over the last 15 minutes (requests, errors, latency and time-to-first-token histograms) and
//! a small ring of the last errors. Fed from the request logging path with relaxed atomics only
//! (no lock any request takes); read by the admin listener. Owns nothing else: no Prometheus
//! family, no database, no config.

use arc_swap::ArcSwapOption;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Seconds per bucket.
pub const BUCKET_SECS: u64 = 10;
/// Buckets kept: 15 minutes.
pub const SLOTS: usize = 90;
/// Upper bounds (milliseconds) of the latency histogram buckets; the last one is open.
const BOUNDS_MS: [f64; 20] = [
    5.0, 10.0, 20.0, 35.0, 50.0, 75.0, 100.0, 150.0, 200.0, 300.0, 500.0, 750.0, 1000.0, 1500.0,
    2000.0, 3000.0, 5000.0, 10_000.0, 30_000.0, 120_000.0,
];
const HIST: usize = BOUNDS_MS.len() + 1;
/// Last errors kept.
const ERRORS: usize = 20;

#[derive(Default)]
struct Slot {
    /// Which 10-second interval (Unix seconds / 10) the counters belong to.
    epoch: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
    latency: [AtomicU64; HIST],
    ttft: [AtomicU64; HIST],
}

impl Slot {
    /// The slot for `epoch`, cleared first if it still holds an older interval. Two threads
    /// crossing a boundary at once may lose a count or two to the clearing: a status picture,
    /// not an account.
    fn claim(&self, epoch: u64) -> &Self {
        let seen = self.epoch.load(Ordering::Acquire);
        if seen != epoch
            && self
                .epoch
                .compare_exchange(seen, epoch, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.requests.store(0, Ordering::Relaxed);
            self.errors.store(0, Ordering::Relaxed);
            for c in self.latency.iter().chain(self.ttft.iter()) {
                c.store(0, Ordering::Relaxed);
            }
        }
        self
    }
}

/// One error as the status page lists it.
#[derive(Debug, Clone)]
pub struct ErrorEntry {
    pub time_ms: u64,
    pub status: u16,
    pub code: String,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub request_id: String,
}

pub struct Pulse {
    slots: Box<[Slot]>,
    errors: Box<[ArcSwapOption<ErrorEntry>]>,
    next_error: AtomicUsize,
}

impl Default for Pulse {
    fn default() -> Self {
        Pulse {
            slots: (0..SLOTS).map(|_| Slot::default()).collect(),
            errors: (0..ERRORS).map(|_| ArcSwapOption::empty()).collect(),
            next_error: AtomicUsize::new(0),
        }
    }
}

fn bucket_of(d: Duration) -> usize {
    let ms = d.as_secs_f64() * 1000.0;
    BOUNDS_MS.iter().position(|b| ms <= *b).unwrap_or(HIST - 1)
}

/// The `q` quantile of a histogram, as the upper bound of the bucket it falls in (the open
/// bucket reports the last bound); `None` without observations.
fn quantile(hist: &[u64; HIST], q: f64) -> Option<f64> {
    let total: u64 = hist.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = (q * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, n) in hist.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return Some(BOUNDS_MS[i.min(BOUNDS_MS.len() - 1)]);
        }
    }
    None
}

impl Pulse {
    /// Counts one finished inference request (`error`: it failed on the gateway's or the
    /// provider's side).
    pub fn record(&self, now_secs: u64, error: bool, latency: Duration, ttft: Option<Duration>) {
        let epoch = now_secs / BUCKET_SECS;
        let slot = self.slots[(epoch % SLOTS as u64) as usize].claim(epoch);
        slot.requests.fetch_add(1, Ordering::Relaxed);
        if error {
            slot.errors.fetch_add(1, Ordering::Relaxed);
        }
        slot.latency[bucket_of(latency)].fetch_add(1, Ordering::Relaxed);
        if let Some(t) = ttft {
            slot.ttft[bucket_of(t)].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Keeps `e` among the last errors (the oldest is overwritten).
    pub fn error(&self, e: ErrorEntry) {
        let i = self.next_error.fetch_add(1, Ordering::Relaxed) % ERRORS;
        self.errors[i].store(Some(Arc::new(e)));
    }

    /// The series of the last 15 minutes, oldest first, one point per bucket:
    /// `{bucket_secs, start, rps[], error_rate[], p50_ms[], p95_ms[], ttft_p50_ms[]}` plus the
    /// totals over the whole window.
    pub fn series(&self, now_secs: u64) -> Value {
        let last = now_secs / BUCKET_SECS;
        let first = last + 1 - SLOTS as u64;
        let (mut rps, mut err, mut p50, mut p95, mut ttft) = (
            Vec::with_capacity(SLOTS),
            Vec::with_capacity(SLOTS),
            Vec::with_capacity(SLOTS),
            Vec::with_capacity(SLOTS),
            Vec::with_capacity(SLOTS),
        );
        let (mut total, mut total_err) = (0u64, 0u64);
        let mut all_latency = [0u64; HIST];
        let mut all_ttft = [0u64; HIST];
        for epoch in first..=last {
            let slot = &self.slots[(epoch % SLOTS as u64) as usize];
            let mut lat = [0u64; HIST];
            let mut tt = [0u64; HIST];
            let (mut n, mut e) = (0, 0);
            if slot.epoch.load(Ordering::Acquire) == epoch {
                n = slot.requests.load(Ordering::Relaxed);
                e = slot.errors.load(Ordering::Relaxed);
                for i in 0..HIST {
                    lat[i] = slot.latency[i].load(Ordering::Relaxed);
                    tt[i] = slot.ttft[i].load(Ordering::Relaxed);
                    all_latency[i] += lat[i];
                    all_ttft[i] += tt[i];
                }
            }
            total += n;
            total_err += e;
            rps.push(n as f64 / BUCKET_SECS as f64);
            err.push(if n == 0 { 0.0 } else { e as f64 / n as f64 });
            p50.push(quantile(&lat, 0.5));
            p95.push(quantile(&lat, 0.95));
            ttft.push(quantile(&tt, 0.5));
        }
        json!({
            "bucket_secs": BUCKET_SECS,
            "start_unix": first * BUCKET_SECS,
            "rps": rps,
            "error_rate": err,
            "latency_p50_ms": p50,
            "latency_p95_ms": p95,
            "ttft_p50_ms": ttft,
            "window": {
                "requests": total,
                "errors": total_err,
                "rps": total as f64 / (SLOTS as u64 * BUCKET_SECS) as f64,
                "error_rate": if total == 0 { 0.0 } else { total_err as f64 / total as f64 },
                "latency_p50_ms": quantile(&all_latency, 0.5),
                "latency_p95_ms": quantile(&all_latency, 0.95),
                "ttft_p50_ms": quantile(&all_ttft, 0.5),
            },
        })
    }

    /// The last errors, newest first.
    pub fn last_errors(&self) -> Vec<Value> {
        let mut list: Vec<Arc<ErrorEntry>> =
            self.errors.iter().filter_map(|e| e.load_full()).collect();
        list.sort_by_key(|e| std::cmp::Reverse(e.time_ms));
        list.iter()
            .map(|e| {
                json!({
                    "time": crate::clock::rfc3339(e.time_ms / 1000),
                    "time_unix_ms": e.time_ms,
                    "status": e.status,
                    "code": e.code,
                    "model": e.model,
                    "provider": e.provider,
                    "request_id": e.request_id,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_roll_over_and_quantiles_follow_the_histogram() {
        let p = Pulse::default();
        let t0 = 1_000_000;
        for _ in 0..9 {
            p.record(
                t0,
                false,
                Duration::from_millis(40),
                Some(Duration::from_millis(8)),
            );
        }
        p.record(t0, true, Duration::from_millis(900), None);
        let s = p.series(t0);
        assert_eq!(s["window"]["requests"], 10);
        assert_eq!(s["window"]["errors"], 1);
        assert_eq!(s["rps"][SLOTS - 1], 1.0);
        assert_eq!(s["error_rate"][SLOTS - 1], 0.1);
        assert_eq!(s["latency_p50_ms"][SLOTS - 1], 50.0);
        assert_eq!(s["latency_p95_ms"][SLOTS - 1], 1000.0);
        assert_eq!(s["ttft_p50_ms"][SLOTS - 1], 10.0);
        // 15 minutes later the same slot holds a new interval; the old counts are gone.
        let later = t0 + SLOTS as u64 * BUCKET_SECS;
        p.record(later, false, Duration::from_millis(3), None);
        let s = p.series(later);
        assert_eq!(s["window"]["requests"], 1);
        assert_eq!(s["latency_p50_ms"][SLOTS - 1], 5.0);
    }

    #[test]
    fn the_error_ring_keeps_the_newest() {
        let p = Pulse::default();
        for i in 0..(ERRORS as u64 + 5) {
            p.error(ErrorEntry {
                time_ms: 1000 + i,
                status: 502,
                code: format!("e{i}"),
                model: None,
                provider: None,
                request_id: String::new(),
            });
        }
        let list = p.last_errors();
        assert_eq!(list.len(), ERRORS);
        assert_eq!(list[0]["code"], format!("e{}", ERRORS + 4));
    }
}
