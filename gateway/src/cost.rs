//! What a request cost, from the deployment's price and the provider's usage.
//!
//! Cached prompt tokens are billed at `cached_input_per_mtok`, the rest of the prompt at
//! `input_per_mtok`, completion tokens (reasoning included, as OpenAI bills them) at
//! `output_per_mtok`. The spend ledger and budgets build on this.

use crate::config::Price;
use switchyard_adapters::openai::Usage;

pub fn cost_usd(price: &Price, usage: &Usage) -> f64 {
    let cached = usage.cached_tokens().min(usage.prompt_tokens);
    let uncached = usage.prompt_tokens - cached;
    (uncached as f64 * price.input_per_mtok
        + cached as f64 * price.cached_input_per_mtok
        + usage.completion_tokens as f64 * price.output_per_mtok)
        / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_adapters::openai::PromptTokensDetails;

    #[test]
    fn prices_cached_and_uncached_prompt_tokens() {
        let price = Price {
            input_per_mtok: 0.15,
            output_per_mtok: 0.60,
            cached_input_per_mtok: 0.075,
        };
        let usage = Usage {
            prompt_tokens: 1_000_000,
            completion_tokens: 500_000,
            total_tokens: 1_500_000,
            prompt_tokens_details: Some(PromptTokensDetails {
                cached_tokens: Some(400_000),
            }),
            completion_tokens_details: None,
        };
        let c = cost_usd(&price, &usage);
        assert!(
            (c - (0.6 * 0.15 + 0.4 * 0.075 + 0.5 * 0.60)).abs() < 1e-12,
            "{c}"
        );
    }
}
