//! The routing plan: which deployments of a model to try, in what order, with what pause.
//!
//! The order comes from the model's strategy:
//! - `priority`: by `priority` (ties keep file order);
//! - `round_robin`: each request starts one deployment further;
//! - `weighted`: the first deployment drawn with probability ∝ `weight`, the rest in priority order;
//! - `least_latency`: power of two choices on the EWMA of time to first byte (a deployment never
//!   measured counts as fastest, and one request in 20 goes to a random deployment, so slow ones
//!   keep being probed);
//! - `cost`: ascending expected cost of this request (prompt estimate × input price + max tokens ×
//!   output price).
//!
//! Providers that failed repeatedly go last (a last resort), then the list is cycled until
//! `retry.attempts` tries are planned; a deployment tried again waits an exponential backoff with
//! jitter first. Circuit breakers and `Retry-After` are checked when a step is taken
//! ([`crate::forward`]), since they change while a request is in flight. The plan is pure data.

use crate::config::{Deployment, RetryPolicy, Strategy};
use crate::state::{RoutedDeployment, RoutedModel};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// What a plan needs to know about the request.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlanInput {
    /// Request body size, a cheap upper estimate of the prompt (≈ 4 bytes per token).
    pub body_bytes: usize,
    /// The caller's max tokens, if given.
    pub max_tokens: Option<u64>,
    /// Random bits for jitter and weighted draws.
    pub seed: u64,
}

/// `least_latency` sends one request in this many to a random deployment.
const EXPLORE: u64 = 20;

/// Output tokens assumed when neither the caller nor the deployment says.
const DEFAULT_MAX_TOKENS: u64 = 1024;

/// One planned try.
pub struct Step<'a> {
    pub deployment: &'a RoutedDeployment,
    /// Pause before this try (zero on a first visit to a deployment).
    pub backoff: Duration,
}

/// Expected cost in USD of sending this request to `d`.
pub fn expected_cost(d: &Deployment, input: &PlanInput) -> f64 {
    let prompt_tokens = (input.body_bytes / 4) as f64;
    let out = input
        .max_tokens
        .or(d.max_tokens)
        .unwrap_or(DEFAULT_MAX_TOKENS) as f64;
    (prompt_tokens * d.price.input_per_mtok + out * d.price.output_per_mtok) / 1_000_000.0
}

/// The ordered tries for one request.
pub fn plan<'a>(model: &'a RoutedModel, input: &PlanInput) -> Vec<Step<'a>> {
    let n = model.deployments.len();
    if n == 0 {
        return Vec::new();
    }
    let mut rng = input.seed | 1;
    let mut order: Vec<&RoutedDeployment> = model.deployments.iter().collect();
    match model.config.routing.strategy {
        Strategy::Priority => {}
        Strategy::RoundRobin => {
            let start = model.next.fetch_add(1, Ordering::Relaxed) % n;
            order.rotate_left(start);
        }
        Strategy::Weighted => {
            let total: u64 = order.iter().map(|d| u64::from(d.spec(model).weight)).sum();
            rng = xorshift(rng);
            let mut pick = rng % total.max(1);
            let mut chosen = 0;
            for (i, d) in order.iter().enumerate() {
                let w = u64::from(d.spec(model).weight);
                if pick < w {
                    chosen = i;
                    break;
                }
                pick -= w;
            }
            let first = order.remove(chosen);
            order.insert(0, first);
        }
        Strategy::LeastLatency => {
            if n > 1 {
                rng = xorshift(rng);
                let a = (rng % n as u64) as usize;
                rng = xorshift(rng);
                let mut b = (rng % (n as u64 - 1)) as usize;
                if b >= a {
                    b += 1;
                }
                let latency = |i: usize| order[i].runtime.ewma_ttfb().unwrap_or(Duration::ZERO);
                rng = xorshift(rng);
                // One request in EXPLORE goes to a random deployment, so a slow one that got
                // faster is noticed even when p2c would never pick it.
                let chosen = if rng.is_multiple_of(EXPLORE) {
                    a
                } else if latency(b) < latency(a) {
                    b
                } else {
                    a
                };
                let first = order.remove(chosen);
                // The rest by measured latency, fastest first.
                order.sort_by_key(|d| d.runtime.ewma_ttfb().unwrap_or(Duration::ZERO));
                order.insert(0, first);
            }
        }
        Strategy::Cost => {
            order.sort_by(|x, y| {
                expected_cost(x.spec(model), input).total_cmp(&expected_cost(y.spec(model), input))
            });
        }
    }
    // Stable: keeps the strategy's order within the healthy and the unhealthy group.
    order.sort_by_key(|d| !d.provider.health.is_healthy());
    let retry = &model.config.routing.retry;
    (0..retry.attempts as usize)
        .map(|i| {
            let round = (i / n) as u32;
            let backoff = if round == 0 {
                Duration::ZERO
            } else {
                rng = xorshift(rng);
                backoff(retry, round, rng)
            };
            Step {
                deployment: order[i % n],
                backoff,
            }
        })
        .collect()
}

/// Exponential backoff for the `round`-th revisit (1-based), with "equal jitter": between half
/// and all of the capped exponential delay.
fn backoff(retry: &RetryPolicy, round: u32, random: u64) -> Duration {
    let exp = retry
        .backoff_base
        .saturating_mul(1u32.checked_shl(round - 1).unwrap_or(u32::MAX));
    let capped = exp.min(retry.backoff_max);
    let half = capped / 2;
    let jitter_fraction = (random % 1000) as u32;
    half + (capped - half) * jitter_fraction / 1000
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, RetryOn, RetryPolicy};
    use crate::state::State;
    use crate::telemetry::Metrics;
    use std::sync::Arc;

    fn policy(base_ms: u64, max_ms: u64) -> RetryPolicy {
        RetryPolicy {
            attempts: 5,
            backoff_base: Duration::from_millis(base_ms),
            backoff_max: Duration::from_millis(max_ms),
            on: RetryOn {
                connect: true,
                timeout: true,
                too_many_requests: true,
                server_error: true,
            },
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = policy(100, 300);
        for seed in [1u64, 999, 123456789] {
            let b1 = backoff(&p, 1, seed);
            assert!(b1 >= Duration::from_millis(50) && b1 <= Duration::from_millis(100));
            let b2 = backoff(&p, 2, seed);
            assert!(b2 >= Duration::from_millis(100) && b2 <= Duration::from_millis(200));
            let b9 = backoff(&p, 9, seed);
            assert!(b9 >= Duration::from_millis(150) && b9 <= Duration::from_millis(300));
        }
        assert!(backoff(&p, 40, 7) <= Duration::from_millis(300));
    }

    fn state(strategy: &str, deployments: &str) -> State {
        let text = format!(
            "server: {{ listen: [\"127.0.0.1:1\"] }}\nproviders: [{{name: a, kind: mock}}, {{name: b, kind: mock}}, {{name: c, kind: mock}}]\nmodels:\n  - name: m\n    strategy: {strategy}\n    deployments:\n{deployments}"
        );
        let cfg = config::parse(&text, &|_| None).unwrap();
        State::build(Arc::new(cfg), &Metrics::new())
    }

    fn first(s: &State, input: &PlanInput) -> String {
        let m = s.model("m").unwrap();
        plan(m, input)
            .first()
            .unwrap()
            .deployment
            .provider
            .name()
            .to_string()
    }

    const THREE: &str = "      - { provider: a, model: x, weight: 1 }\n      - { provider: b, model: y, weight: 3 }\n      - { provider: c, model: z, weight: 6 }\n";

    #[test]
    fn round_robin_rotates() {
        let s = state("round_robin", THREE);
        let firsts: Vec<String> = (0..6).map(|_| first(&s, &PlanInput::default())).collect();
        assert_eq!(firsts, vec!["a", "b", "c", "a", "b", "c"]);
    }

    #[test]
    fn weighted_shares_follow_weights() {
        let s = state("weighted", THREE);
        let mut counts = std::collections::HashMap::new();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..10_000 {
            seed = xorshift(seed);
            *counts
                .entry(first(
                    &s,
                    &PlanInput {
                        seed,
                        ..Default::default()
                    },
                ))
                .or_insert(0) += 1;
        }
        for (name, share) in [("a", 0.1), ("b", 0.3), ("c", 0.6)] {
            let got = counts[name] as f64 / 10_000.0;
            assert!((got - share).abs() < 0.03, "{name}: {got} vs {share}");
        }
    }

    #[test]
    fn least_latency_prefers_the_fast_one_but_still_probes() {
        let s = state("least_latency", "      - { provider: a, model: x }\n      - { provider: b, model: y }\n      - { provider: c, model: z }\n");
        let m = s.model("m").unwrap();
        m.deployments[0]
            .runtime
            .observe_ttfb(Duration::from_millis(300));
        m.deployments[1]
            .runtime
            .observe_ttfb(Duration::from_millis(20));
        m.deployments[2]
            .runtime
            .observe_ttfb(Duration::from_millis(150));
        let mut counts = std::collections::HashMap::new();
        let mut seed = 12345u64;
        for _ in 0..3000 {
            seed = xorshift(seed);
            *counts
                .entry(first(
                    &s,
                    &PlanInput {
                        seed,
                        ..Default::default()
                    },
                ))
                .or_insert(0) += 1;
        }
        // p2c: the fastest wins any pair it is in (≈2/3); the slowest only starts when explored.
        assert!(counts["b"] > 1700, "{counts:?}");
        assert!(counts.get("c").copied().unwrap_or(0) > 500, "{counts:?}");
        let a = counts.get("a").copied().unwrap_or(0);
        assert!(a > 0 && a < 150, "{counts:?}");
    }

    #[test]
    fn cost_picks_the_cheapest_for_this_request() {
        // a: cheap input, expensive output; b: the reverse.
        let s = state(
            "cost",
            "      - { provider: a, model: x, price: { input_per_mtok: 0.1, output_per_mtok: 10 } }\n      - { provider: b, model: y, price: { input_per_mtok: 5, output_per_mtok: 0.5 } }\n",
        );
        // Long prompt, few output tokens: input price dominates → a.
        let long = PlanInput {
            body_bytes: 400_000,
            max_tokens: Some(10),
            seed: 1,
        };
        assert_eq!(first(&s, &long), "a");
        // Short prompt, many output tokens: output price dominates → b.
        let short = PlanInput {
            body_bytes: 200,
            max_tokens: Some(4000),
            seed: 1,
        };
        assert_eq!(first(&s, &short), "b");
    }
}
