//! A deployment's reputation: what the gateway observed of its tries (successes, failures, 429s,
//! time to first byte, and total latency of the answers it sent in full) over a decaying window, folded into a score in `0..=1` that strategy
//! `reliability` draws by and `/admin/routing` and `switchyard_deployment_score` show.
//!
//! Every observation counts `0.5^(age / half_life)`: an old failure fades, so a deployment that
//! recovered regains its share without a reset. Counters are `f64` bits in atomics, decayed and
//! added with compare-and-swap loops on each try (lock-free; two concurrent tries may each apply
//! the same decay step, a rounding error the score tolerates). A deployment with little recent
//! evidence scores near a perfect prior, so a new or long-idle deployment is probed again.
//!
//! Owns no routing order (that is `router.rs`) and no breaker state (`breaker.rs`).

use crate::routing::state::{RoutedModel, State};
use prometheus::{GaugeVec, Opts};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// Pseudo-tries of a perfect record every deployment starts with (and returns to when idle).
const PRIOR: f64 = 2.0;

/// Added to both sides of the latency ratio, so a few milliseconds' jitter between fast
/// deployments does not move traffic, while a deployment slower by a large factor loses it.
const LATENCY_SLACK_MS: f64 = 25.0;

/// Weight of the newest try in [`Reputation::recent_failure`].
const RECENT: f64 = 0.25;

/// An `f64` in an `AtomicU64`.
#[derive(Debug, Default)]
struct AtomicF64(AtomicU64);

impl AtomicF64 {
    fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }

    fn update(&self, f: impl Fn(f64) -> f64) {
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |bits| {
                Some(f(f64::from_bits(bits)).to_bits())
            });
    }
}

/// Decaying counts of a deployment's recent tries.
#[derive(Debug, Default)]
pub struct Reputation {
    /// Half-life in milliseconds (0 = the default 30 s); set from the config at each (re)load.
    half_life_ms: AtomicU64,
    /// When the counts were last decayed (unix ms; 0 = never).
    last_ms: AtomicU64,
    tries: AtomicF64,
    ok: AtomicF64,
    throttled: AtomicF64,
    /// Sum of time-to-first-byte samples (ms) and their count.
    ttfb_sum_ms: AtomicF64,
    ttfb_n: AtomicF64,
    /// Sum of total-latency samples (ms, request sent to last byte of a full answer) and their
    /// count.
    total_sum_ms: AtomicF64,
    total_n: AtomicF64,
    /// Per-try EWMA (weight [`RECENT`]) of the failure indicator (429s excluded), fading with
    /// the same half-life: reacts within a few tries where the windowed rate needs a half-life
    /// to forget a good past.
    recent_failure: AtomicF64,
}

/// One reading of a deployment's reputation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observed {
    /// Decayed number of tries behind the reading.
    pub tries: f64,
    /// Share of tries that succeeded (429s excluded), with the prior; no more than the recent
    /// tries' success rate.
    pub success_rate: f64,
    /// Share of tries the provider answered 429.
    pub throttle_rate: f64,
    /// Mean time to first byte, when measured.
    pub ttfb_ms: Option<f64>,
    /// Mean total latency of full answers, when measured.
    pub total_ms: Option<f64>,
    /// Weight of the latency evidence (0..1): how far the latency ratio moves the score.
    latency_confidence: f64,
    /// The same for total latency.
    total_confidence: f64,
}

/// The fastest of a model's deployments: what each one's latency is compared with.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Fastest {
    pub ttfb_ms: Option<f64>,
    pub total_ms: Option<f64>,
}

/// The latency factor of one measure: √((best + slack) / (own + slack)), moved toward 1 when
/// there is little evidence.
fn latency_factor(own: Option<f64>, best: Option<f64>, confidence: f64) -> f64 {
    match (own, best) {
        (Some(own), Some(best)) if own > 0.0 => {
            let ratio = ((best + LATENCY_SLACK_MS) / (own + LATENCY_SLACK_MS))
                .min(1.0)
                .sqrt();
            1.0 - confidence * (1.0 - ratio)
        }
        _ => 1.0,
    }
}

impl Reputation {
    pub fn set_half_life(&self, half_life: Duration) {
        self.half_life_ms
            .store(half_life.as_millis().max(1) as u64, Ordering::Relaxed);
    }

    fn half_life_ms(&self) -> f64 {
        match self.half_life_ms.load(Ordering::Relaxed) {
            0 => 30_000.0,
            ms => ms as f64,
        }
    }

    fn decay_factor(&self, from: u64, now: u64) -> f64 {
        if from == 0 || now <= from {
            return 1.0;
        }
        0.5f64.powf((now - from) as f64 / self.half_life_ms())
    }

    /// Ages every count to `now` (the thread that moves `last_ms` applies the decay).
    fn decay_to(&self, now: u64) {
        let last = self.last_ms.load(Ordering::Acquire);
        if now <= last {
            return;
        }
        if self
            .last_ms
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let k = self.decay_factor(last, now);
        if k < 1.0 {
            for c in [
                &self.tries,
                &self.ok,
                &self.throttled,
                &self.ttfb_sum_ms,
                &self.ttfb_n,
                &self.total_sum_ms,
                &self.total_n,
                &self.recent_failure,
            ] {
                c.update(|v| v * k);
            }
        }
    }

    fn observe(&self, now: u64, ok: bool, throttled: bool) {
        self.decay_to(now);
        self.tries.update(|v| v + 1.0);
        if !throttled {
            let sample = if ok { 0.0 } else { 1.0 };
            self.recent_failure
                .update(|v| v * (1.0 - RECENT) + sample * RECENT);
        }
        if ok {
            self.ok.update(|v| v + 1.0);
        }
        if throttled {
            self.throttled.update(|v| v + 1.0);
        }
    }

    pub fn success(&self, now: u64) {
        self.observe(now, true, false);
    }

    pub fn failure(&self, now: u64) {
        self.observe(now, false, false);
    }

    pub fn throttled(&self, now: u64) {
        self.observe(now, false, true);
    }

    pub fn ttfb(&self, now: u64, ttfb: Duration) {
        self.decay_to(now);
        let ms = ttfb.as_secs_f64() * 1000.0;
        self.ttfb_sum_ms.update(|v| v + ms);
        self.ttfb_n.update(|v| v + 1.0);
    }

    /// The total latency of an answer sent in full (request sent to its last byte).
    pub fn total(&self, now: u64, took: Duration) {
        self.decay_to(now);
        let ms = took.as_secs_f64() * 1000.0;
        self.total_sum_ms.update(|v| v + ms);
        self.total_n.update(|v| v + 1.0);
    }

    /// The counts as of `now` (decayed without being written back).
    pub fn read(&self, now: u64) -> Observed {
        let k = self.decay_factor(self.last_ms.load(Ordering::Acquire), now);
        let tries = self.tries.get() * k;
        let ok = self.ok.get() * k;
        let throttled = self.throttled.get() * k;
        let n = self.ttfb_n.get() * k;
        let total_n = self.total_n.get() * k;
        let answered = (tries - throttled).max(0.0);
        Observed {
            tries,
            success_rate: ((ok + PRIOR) / (answered + PRIOR))
                .min(1.0 - self.recent_failure.get() * k)
                .clamp(0.0, 1.0),
            throttle_rate: (throttled / (tries + PRIOR)).clamp(0.0, 1.0),
            ttfb_ms: (n > 1e-9).then(|| self.ttfb_sum_ms.get() * k / n),
            total_ms: (total_n > 1e-9).then(|| self.total_sum_ms.get() * k / total_n),
            latency_confidence: n / (n + PRIOR),
            total_confidence: total_n / (total_n + PRIOR),
        }
    }
}

impl Observed {
    /// The score in `0..=1`: success rate × (1 − 429 rate) × a latency factor for time to first
    /// byte and one for total latency, each against the fastest of the model's deployments:
    /// √((best + slack) / (own + slack)), weighed by how much recent evidence there is.
    pub fn score(&self, fastest: Fastest) -> f64 {
        let ttfb = latency_factor(self.ttfb_ms, fastest.ttfb_ms, self.latency_confidence);
        let total = latency_factor(self.total_ms, fastest.total_ms, self.total_confidence);
        (self.success_rate * (1.0 - self.throttle_rate) * ttfb * total).clamp(0.0, 1.0)
    }
}

/// Each deployment's score, against the fastest of `readings` (one per deployment of a model).
pub fn scores(readings: &[Observed]) -> Vec<f64> {
    let best =
        |f: fn(&Observed) -> Option<f64>| readings.iter().filter_map(f).min_by(f64::total_cmp);
    let fastest = Fastest {
        ttfb_ms: best(|o| o.ttfb_ms),
        total_ms: best(|o| o.total_ms),
    };
    readings.iter().map(|o| o.score(fastest)).collect()
}

/// Strategy `reliability` draws a deployment with probability ∝ max(score^SHARPNESS, FLOOR):
/// most traffic to the best, and every deployment still probed.
const SHARPNESS: i32 = 4;
const FLOOR: f64 = 0.05;

/// Each of a model's deployments' score now, index for index.
pub fn model_scores(model: &RoutedModel, now: u64) -> Vec<f64> {
    let readings: Vec<Observed> = model
        .deployments
        .iter()
        .map(|d| d.runtime.reputation.read(now))
        .collect();
    scores(&readings)
}

/// The draw weight of a deployment with `score` under strategy `reliability`.
pub fn draw_weight(score: f64) -> f64 {
    score.powi(SHARPNESS).max(FLOOR)
}

/// `switchyard_deployment_score{model, provider, deployment}`: one registered family per process
/// (set at each scrape by [`publish`]).
pub fn score_family() -> &'static GaugeVec {
    static FAMILY: OnceLock<GaugeVec> = OnceLock::new();
    FAMILY.get_or_init(|| {
        let opts = Opts::new(
            "switchyard_deployment_score",
            "Observed reputation of a deployment (0..1): success, 429 and latency over a decaying window",
        );
        match GaugeVec::new(opts, &["model", "provider", "deployment"]) {
            Ok(g) => g,
            Err(e) => panic!("invalid metric definition: {e}"),
        }
    })
}

/// Sets `switchyard_deployment_score` for every deployment of `state` (called per scrape).
pub fn publish(state: &State) {
    let now = crate::clock::now_ms();
    for m in state.models() {
        for (d, score) in m.deployments.iter().zip(model_scores(m, now)) {
            score_family()
                .with_label_values(&[&m.config.name, d.provider.name(), &d.spec(m).model])
                .set(score);
        }
    }
}

/// `GET /admin/routing`: every model's strategy and each deployment's reputation.
pub fn admin_view(state: &State) -> serde_json::Value {
    let now = crate::clock::now_ms();
    let models: Vec<serde_json::Value> = state
        .models()
        .map(|m| {
            let scores = model_scores(m, now);
            let deployments: Vec<serde_json::Value> = m
                .deployments
                .iter()
                .zip(scores)
                .map(|(d, score)| {
                    let spec = d.spec(m);
                    let o = d.runtime.reputation.read(now);
                    serde_json::json!({
                        "provider": d.provider.name(),
                        "model": spec.model,
                        "score": score,
                        "tries": o.tries,
                        "success_rate": o.success_rate,
                        "rate_limited_rate": o.throttle_rate,
                        "ttfb_ms": o.ttfb_ms,
                        "total_ms": o.total_ms,
                        "quality": spec.quality,
                        "weight": spec.weight,
                        "context_window": spec.context_window,
                        "circuit": d.runtime.state(now).label(),
                        "healthy": d.provider.health.is_healthy(),
                    })
                })
                .collect();
            serde_json::json!({
                "name": m.config.name,
                "strategy": m.config.routing.strategy.label(),
                "fallbacks": m.config.fallbacks,
                "reputation_half_life_ms": m.config.routing.reputation_half_life.as_millis() as u64,
                "deployments": deployments,
            })
        })
        .collect();
    serde_json::json!({ "models": models })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rep() -> Reputation {
        let r = Reputation::default();
        r.set_half_life(Duration::from_secs(10));
        r
    }

    #[test]
    fn an_unobserved_deployment_scores_perfect() {
        let r = rep();
        assert_eq!(r.read(1_000).score(Fastest::default()), 1.0);
    }

    #[test]
    fn failures_lower_the_score_and_fade_with_time() {
        let r = rep();
        for i in 0..10 {
            r.failure(1_000 + i);
        }
        let now = r.read(1_010).score(Fastest::default());
        assert!(now < 0.2, "{now}");
        // Three half-lives later the failures count an eighth.
        let later = r.read(31_010).score(Fastest::default());
        assert!(later > 0.5, "{later}");
        for i in 0..10 {
            r.success(31_010 + i);
        }
        assert!(r.read(31_020).score(Fastest::default()) > now);
    }

    #[test]
    fn rate_limits_and_slowness_lower_the_score() {
        let (fast, slow, limited) = (rep(), rep(), rep());
        for i in 0..20 {
            fast.success(1_000 + i);
            fast.ttfb(1_000 + i, Duration::from_millis(10));
            slow.success(1_000 + i);
            slow.ttfb(1_000 + i, Duration::from_millis(400));
            limited.throttled(1_000 + i);
        }
        let s = scores(&[fast.read(1_020), slow.read(1_020), limited.read(1_020)]);
        assert!(s[0] > 0.95, "{s:?}");
        assert!(s[1] < 0.4 && s[1] > 0.1, "{s:?}");
        assert!(s[2] < 0.2, "{s:?}");
    }

    #[test]
    fn a_slow_total_latency_lowers_the_score_at_equal_ttfb() {
        let (quick, long) = (rep(), rep());
        for i in 0..20 {
            for r in [&quick, &long] {
                r.success(1_000 + i);
                r.ttfb(1_000 + i, Duration::from_millis(10));
            }
            quick.total(1_000 + i, Duration::from_millis(50));
            long.total(1_000 + i, Duration::from_millis(2_000));
        }
        let s = scores(&[quick.read(1_020), long.read(1_020)]);
        assert!(s[0] > 0.95, "{s:?}");
        assert!(s[1] < 0.4, "{s:?}");
        // It fades like the rest: ten half-lives later it barely counts.
        let later = scores(&[quick.read(101_020), long.read(101_020)]);
        assert!(later[1] > 0.9, "{later:?}");
    }
}
