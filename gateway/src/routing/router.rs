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
//!   output price);
//! - `reliability`: the first deployment drawn with probability ∝ its observed reputation score
//!   ([`crate::routing::reputation`]) to the 4th power, with a floor so every one is still probed;
//!   the rest by descending score;
//! - `quality`: descending deployment `quality` (ties keep priority order).
//!
//! Providers that failed repeatedly go last (a last resort; not under `reliability`, whose score
//! already counts failures and which must keep probing), then the list is cycled until
//! `retry.attempts` tries are planned; a deployment tried again waits an exponential backoff with
//! jitter first. Circuit breakers and `Retry-After` are checked when a step is taken
//! ([`crate::forward`]), since they change while a request is in flight. The plan is pure data.

use crate::config::{Condition, Deployment, RetryPolicy, Strategy};
use crate::routing::selection::DeploymentSelector;
use crate::routing::state::{RoutedDeployment, RoutedModel};
use std::time::Duration;

/// What a plan needs to know about the request.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlanInput<'a> {
    /// Request body size, a cheap upper estimate of the prompt (≈ 4 bytes per token).
    pub body_bytes: usize,
    /// The caller's max tokens, if given.
    pub max_tokens: Option<u64>,
    /// Random bits for jitter and weighted draws.
    pub seed: u64,
    /// The model name as the caller wrote it (a public name or an alias).
    pub requested_model: &'a str,
    /// The request's headers (for `conditional` rules).
    pub headers: Option<&'a http::HeaderMap>,
    /// The body's raw `metadata` object (for `conditional` rules).
    pub metadata: Option<&'a str>,
    /// A budget of the caller is past its soft ratio: order by expected cost whatever the
    /// strategy (the financial circuit breaker).
    pub prefer_cheapest: bool,
    /// The caller's routing hints (strategy, task, tries, cost cap).
    pub hints: Option<&'a crate::routing::hints::Hints>,
    /// The caller, for a candidates model: only deployments of models it may use.
    pub caller: Option<&'a switchyard_filters::auth::Identity>,
    /// The caller's key for a `sticky` model: its deployment goes first while healthy.
    pub sticky: Option<&'a str>,
}

impl PlanInput<'_> {
    /// Whether `d` may take this request at all: its origin model is one the caller may use and
    /// the `task` names, and its expected cost is within `maxCostPerRequest`.
    pub fn admits(&self, model: &RoutedModel, d: &RoutedDeployment) -> bool {
        let spec = d.spec(model);
        if let Some(origin) = &spec.from_model {
            if self.caller.is_some_and(|who| !who.may_use(origin)) {
                return false;
            }
            let task = self.hints.and_then(|h| h.task.as_deref());
            if let Some(names) = task.and_then(|t| model.config.tasks.get(t)) {
                if !names.contains(origin) {
                    return false;
                }
            }
        }
        self.hints
            .and_then(|h| h.max_cost_usd)
            .is_none_or(|cap| expected_cost(spec, self) <= cap)
    }
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
pub fn expected_cost(d: &Deployment, input: &PlanInput<'_>) -> f64 {
    let prompt_tokens = (input.body_bytes / 4) as f64;
    let out = input
        .max_tokens
        .or(d.max_tokens)
        .unwrap_or(DEFAULT_MAX_TOKENS) as f64;
    (prompt_tokens * d.price.input_per_mtok + out * d.price.output_per_mtok) / 1_000_000.0
}

/// The ordered tries for one request.
pub fn plan<'a>(model: &'a RoutedModel, input: &PlanInput<'_>) -> Vec<Step<'a>> {
    if model.deployments.is_empty() {
        return Vec::new();
    }
    let mut rng = input.seed | 1;
    let all: Vec<&RoutedDeployment> = model
        .deployments
        .iter()
        .filter(|d| input.admits(model, d))
        .collect();
    let strategy = input
        .hints
        .and_then(|h| h.strategy)
        .unwrap_or(model.config.routing.strategy);
    let mut order = match strategy {
        Strategy::Conditional if !input.prefer_cheapest => {
            let rule = model
                .config
                .rules
                .iter()
                .enumerate()
                .find(|(_, r)| r.when.as_ref().is_none_or(|c| matches(c, input)));
            match rule {
                Some((i, r)) => {
                    let subset: Vec<&RoutedDeployment> = r
                        .deployments
                        .iter()
                        .filter_map(|i| model.deployments.get(*i))
                        .filter(|d| all.iter().any(|a| std::ptr::eq(*a, *d)))
                        .collect();
                    let selector = model.rule_selectors.get(i).and_then(Option::as_ref);
                    arrange(model, subset, r.strategy, selector, input, &mut rng)
                }
                // No rule matched: every deployment, by priority.
                None => all,
            }
        }
        _ if input.prefer_cheapest => arrange(model, all, Strategy::Cost, None, input, &mut rng),
        strategy => {
            let selector = model.selector.as_ref();
            arrange(model, all, strategy, selector, input, &mut rng)
        }
    };
    if order.is_empty() {
        return Vec::new();
    }
    // Stable: keeps the strategy's order within the healthy and the unhealthy group.
    // `reliability` already weighs failures by its score, and must keep probing a deployment
    // that failed, or it could never win its share back.
    if strategy != Strategy::Reliability {
        order.sort_by_key(|d| !d.provider.health.is_healthy());
    }
    if let Some(key) = input.sticky {
        if let Some(i) = crate::routing::sticky::pick(model, &order, key, crate::clock::now_ms()) {
            let first = order.remove(i);
            order.insert(0, first);
        }
    }
    let n = order.len();
    let retry = &model.config.routing.retry;
    // A caller may ask for fewer tries, never more than configured.
    let attempts = input
        .hints
        .and_then(|h| h.retry_attempts)
        .map_or(retry.attempts, |n| n.clamp(1, retry.attempts));
    (0..attempts as usize)
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

/// Whether a `conditional` rule's condition holds for this request.
fn matches(c: &Condition, input: &PlanInput<'_>) -> bool {
    match c {
        Condition::Model(name) => input.requested_model == name,
        Condition::Header { name, value } => input
            .headers
            .and_then(|h| h.get(name.as_str()))
            .is_some_and(|v| v.as_bytes() == value.as_bytes()),
        Condition::Metadata { key, value } => input
            .metadata
            .and_then(|raw| {
                serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(raw).ok()
            })
            .and_then(|m| m.get(key).and_then(|v| v.as_str().map(|s| s == value)))
            .unwrap_or(false),
    }
}

/// Orders `order` (already in priority order) by `strategy`. `round_robin` and `weighted` take
/// their first deployment from Pingora's selection over the same set (`selector`).
fn arrange<'a>(
    model: &'a RoutedModel,
    mut order: Vec<&'a RoutedDeployment>,
    strategy: Strategy,
    selector: Option<&DeploymentSelector>,
    input: &PlanInput<'_>,
    rng: &mut u64,
) -> Vec<&'a RoutedDeployment> {
    let n = order.len();
    if n < 2 {
        return order;
    }
    let by_cost = |v: &mut Vec<&'a RoutedDeployment>| {
        v.sort_by(|x, y| {
            expected_cost(x.spec(model), input).total_cmp(&expected_cost(y.spec(model), input))
        })
    };
    let picked = || {
        selector
            .and_then(DeploymentSelector::pick)
            .and_then(|index| order.iter().position(|d| d.index == index))
    };
    match strategy {
        Strategy::Priority | Strategy::Conditional => {}
        Strategy::RoundRobin => {
            // The rest follow in cyclic order, so retries move on round the set.
            if let Some(start) = picked() {
                order.rotate_left(start);
            }
        }
        Strategy::Weighted => {
            // The pick first; fallbacks in priority order.
            if let Some(chosen) = picked() {
                let first = order.remove(chosen);
                order.insert(0, first);
            }
        }
        Strategy::LeastLatency => least_latency(&mut order, rng),
        Strategy::Reliability => reliability(model, &mut order, rng),
        Strategy::Quality => {
            order.sort_by(|x, y| y.spec(model).quality.total_cmp(&x.spec(model).quality))
        }
        Strategy::Cost => by_cost(&mut order),
        Strategy::LowestLatencyUnderBudget => {
            let cap = model.config.max_cost_per_request.unwrap_or(f64::INFINITY);
            let (mut under, mut over): (Vec<_>, Vec<_>) = order
                .into_iter()
                .partition(|d| expected_cost(d.spec(model), input) <= cap);
            least_latency(&mut under, rng);
            // Over budget: only as a fallback, cheapest first.
            by_cost(&mut over);
            under.extend(over);
            order = under;
        }
    }
    order
}

/// Power of two choices on the EWMA of time to first byte, then the rest fastest first.
fn least_latency(order: &mut Vec<&RoutedDeployment>, rng: &mut u64) {
    let n = order.len();
    if n < 2 {
        return;
    }
    *rng = xorshift(*rng);
    let a = (*rng % n as u64) as usize;
    *rng = xorshift(*rng);
    let mut b = (*rng % (n as u64 - 1)) as usize;
    if b >= a {
        b += 1;
    }
    let latency = |d: &RoutedDeployment| d.runtime.ewma_ttfb().unwrap_or(Duration::ZERO);
    *rng = xorshift(*rng);
    // One request in EXPLORE goes to a random deployment, so a slow one that got faster is
    // noticed even when p2c would never pick it.
    let chosen = if rng.is_multiple_of(EXPLORE) || latency(order[a]) <= latency(order[b]) {
        a
    } else {
        b
    };
    let first = order.remove(chosen);
    order.sort_by_key(|d| latency(d));
    order.insert(0, first);
}

/// One deployment drawn by reputation (∝ score^k with a floor), then the rest best first.
fn reliability(model: &RoutedModel, order: &mut Vec<&RoutedDeployment>, rng: &mut u64) {
    let all = crate::routing::reputation::model_scores(model, crate::clock::now_ms());
    let score = |d: &RoutedDeployment| all.get(d.index).copied().unwrap_or(1.0);
    let weights: Vec<f64> = order
        .iter()
        .map(|d| crate::routing::reputation::draw_weight(score(d)))
        .collect();
    let total: f64 = weights.iter().sum();
    *rng = xorshift(*rng);
    let mut point = (*rng >> 11) as f64 / (1u64 << 53) as f64 * total;
    let mut chosen = weights.len() - 1;
    for (i, w) in weights.iter().enumerate() {
        if point < *w {
            chosen = i;
            break;
        }
        point -= w;
    }
    let first = order.remove(chosen);
    order.sort_by(|x, y| score(y).total_cmp(&score(x)));
    order.insert(0, first);
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
    use crate::ops::telemetry::Metrics;
    use crate::routing::state::State;
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

    /// Gives each deployment one time-to-first-byte sample, in milliseconds.
    fn set_latencies(m: &RoutedModel, ms: &[u64]) {
        for (d, ms) in m.deployments.iter().zip(ms) {
            d.runtime
                .observe_ttfb(Duration::from_millis(*ms), crate::clock::now_ms());
        }
    }

    /// How often each provider is planned first over `n` requests with varying seeds.
    fn first_counts(
        s: &State,
        n: usize,
        mut seed: u64,
    ) -> std::collections::HashMap<String, usize> {
        let mut counts = std::collections::HashMap::new();
        for _ in 0..n {
            seed = xorshift(seed);
            let input = PlanInput {
                seed,
                ..Default::default()
            };
            *counts.entry(first(s, &input)).or_insert(0) += 1;
        }
        counts
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
        let counts = first_counts(&s, 10_000, 0x9e37_79b9_7f4a_7c15);
        for (name, share) in [("a", 0.1), ("b", 0.3), ("c", 0.6)] {
            let got = counts[name] as f64 / 10_000.0;
            assert!((got - share).abs() < 0.03, "{name}: {got} vs {share}");
        }
    }

    #[test]
    fn least_latency_prefers_the_fast_one_but_still_probes() {
        let s = state("least_latency", "      - { provider: a, model: x }\n      - { provider: b, model: y }\n      - { provider: c, model: z }\n");
        let m = s.model("m").unwrap();
        set_latencies(m, &[300, 20, 150]);
        let counts = first_counts(&s, 3000, 12345);
        // p2c: the fastest wins any pair it is in (≈2/3); the slowest only starts when explored.
        assert!(counts["b"] > 1700, "{counts:?}");
        assert!(counts.get("c").copied().unwrap_or(0) > 500, "{counts:?}");
        let a = counts.get("a").copied().unwrap_or(0);
        assert!(a > 0 && a < 150, "{counts:?}");
    }

    fn state_with(model_yaml: &str) -> State {
        let text = format!(
            "server: {{ listen: [\"127.0.0.1:1\"] }}\nproviders: [{{name: a, kind: mock}}, {{name: b, kind: mock}}, {{name: c, kind: mock}}]\nmodels:\n  - name: m\n    aliases: [alias]\n{model_yaml}"
        );
        let cfg = config::parse(&text, &|_| None).unwrap();
        State::build(Arc::new(cfg), &Metrics::new())
    }

    #[test]
    fn conditional_rules_pick_deployments_by_header_metadata_and_model() {
        let s = state_with(
            r#"    strategy: conditional
    deployments:
      - { provider: a, model: x }
      - { provider: b, model: y }
      - { provider: c, model: z }
    rules:
      - when: { header: X-Tier, equals: premium }
        deployments: [c]
      - when: { metadata: team, equals: research }
        deployments: [b, c]
        strategy: round_robin
      - when: { model: alias }
        deployments: [b]
      - deployments: [a]
"#,
        );
        let m = s.model("m").unwrap();
        let names = |input: &PlanInput<'_>| -> Vec<String> {
            plan(m, input)
                .iter()
                .map(|s| s.deployment.provider.name().to_string())
                .collect()
        };
        let mut headers = http::HeaderMap::new();
        headers.insert("x-tier", "premium".parse().unwrap());
        let premium = PlanInput {
            requested_model: "m",
            headers: Some(&headers),
            ..Default::default()
        };
        assert_eq!(names(&premium), vec!["c", "c", "c"]);
        let research = PlanInput {
            requested_model: "m",
            metadata: Some(r#"{"team":"research"}"#),
            ..Default::default()
        };
        let firsts: Vec<String> = (0..4).map(|_| names(&research)[0].clone()).collect();
        assert_eq!(firsts, vec!["b", "c", "b", "c"]);
        let alias = PlanInput {
            requested_model: "alias",
            ..Default::default()
        };
        assert_eq!(names(&alias)[0], "b");
        let other = PlanInput {
            requested_model: "m",
            ..Default::default()
        };
        assert_eq!(names(&other)[0], "a");
    }

    #[test]
    fn lowest_latency_under_budget_skips_deployments_over_the_cap() {
        let s = state_with(
            r#"    strategy: lowest_latency_under_budget
    max_cost_per_request: 0.01
    deployments:
      - { provider: a, model: x, price: { input_per_mtok: 1, output_per_mtok: 1 } }
      - { provider: b, model: y, price: { input_per_mtok: 100, output_per_mtok: 100 } }
      - { provider: c, model: z, price: { input_per_mtok: 2, output_per_mtok: 2 } }
"#,
        );
        let m = s.model("m").unwrap();
        // b is the fastest but a 1000-token request there costs 0.1 > 0.01.
        set_latencies(m, &[300, 10, 50]);
        let mut seed = 7u64;
        for _ in 0..200 {
            seed = xorshift(seed);
            let input = PlanInput {
                body_bytes: 400,
                max_tokens: Some(900),
                seed,
                requested_model: "m",
                ..Default::default()
            };
            let order: Vec<String> = plan(m, &input)
                .iter()
                .map(|s| s.deployment.provider.name().to_string())
                .collect();
            assert_ne!(order[0], "b", "over budget chosen first");
        }
        let input = PlanInput {
            body_bytes: 400,
            max_tokens: Some(900),
            seed: 3,
            requested_model: "m",
            ..Default::default()
        };
        assert_eq!(
            plan(m, &input)[2].deployment.provider.name(),
            "b",
            "over budget only as a fallback"
        );
    }

    #[test]
    fn quality_ranks_by_deployment_quality() {
        let s = state(
            "quality",
            "      - { provider: a, model: x, quality: 40 }\n      - { provider: b, model: y, quality: 95 }\n      - { provider: c, model: z }\n",
        );
        let m = s.model("m").unwrap();
        let order: Vec<&str> = plan(m, &PlanInput::default())
            .iter()
            .map(|s| s.deployment.provider.name())
            .collect();
        assert_eq!(order, vec!["b", "c", "a"]);
    }

    #[test]
    fn reliability_moves_traffic_off_a_failing_deployment_but_still_probes_it() {
        let s = state(
            "reliability",
            "      - { provider: a, model: x }\n      - { provider: b, model: y }\n",
        );
        let m = s.model("m").unwrap();
        let even = first_counts(&s, 2000, 99);
        assert!(even["a"] > 800 && even["b"] > 800, "{even:?}");
        let policy = m.config.routing.breaker;
        for _ in 0..10 {
            m.deployments[1]
                .runtime
                .on_failure(&policy, crate::clock::now_ms());
        }
        let after = first_counts(&s, 2000, 99);
        let b = after.get("b").copied().unwrap_or(0);
        assert!(b > 20 && b < 200, "{after:?}");
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
            ..Default::default()
        };
        assert_eq!(first(&s, &long), "a");
        // Short prompt, many output tokens: output price dominates → b.
        let short = PlanInput {
            body_bytes: 200,
            max_tokens: Some(4000),
            seed: 1,
            ..Default::default()
        };
        assert_eq!(first(&s, &short), "b");
    }
}
