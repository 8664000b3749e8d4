//! What a request may cost before it runs: the prompt estimated from the body size, the
//! completion from the caller's (or the deployment's) max tokens times the completions asked for
//! (`n` / `best_of`), at the deployment's prices.
//! Used for reservations and for a provider budget's per-try check.

use switchyard_filters::budget::{self};

/// The most a request may cost on one deployment (nano-dollars), estimated as in
/// [`max_cost_nanos`].
pub fn deployment_cost_nanos(
    model: &crate::routing::state::RoutedModel,
    dep: &crate::routing::state::RoutedDeployment,
    body_bytes: usize,
    max_tokens: Option<u64>,
    choices: u64,
) -> u64 {
    let spec = dep.spec(model);
    let prompt = (body_bytes / 4) as u64 + 1;
    let completion = max_tokens
        .or(spec.max_tokens)
        .unwrap_or(u64::from(crate::forward::translate::FALLBACK_MAX_TOKENS))
        .saturating_mul(choices.max(1));
    let usage = switchyard_adapters::openai::Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt.saturating_add(completion),
        ..Default::default()
    };
    budget::usd_to_nanos(crate::governance::cost::cost_usd(&spec.price, &usage))
}

/// The most a request may cost on any deployment of its model (nano-dollars): the prompt
/// estimated from the body size (≈ 4 bytes per token, an upper estimate for JSON) plus the
/// caller's max tokens — or the deployment's default, or 4096 — for each of the `choices`
/// completions, at the output price.
pub fn max_cost_nanos(
    model: &crate::routing::state::RoutedModel,
    body_bytes: usize,
    max_tokens: Option<u64>,
    choices: u64,
) -> u64 {
    model
        .deployments
        .iter()
        .map(|d| deployment_cost_nanos(model, d, body_bytes, max_tokens, choices))
        .max()
        .unwrap_or(0)
}
