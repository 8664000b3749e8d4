//! What a request cost, from the deployment's price and the provider's usage.
//!
//! Cached prompt tokens are billed at `cached_input_per_mtok`, prompt tokens written to the
//! provider's prompt cache at `cache_write_input_per_mtok`, the rest of the prompt at
//! `input_per_mtok`, completion tokens (reasoning included, as OpenAI bills them) at
//! `output_per_mtok`. The spend ledger and budgets build on this.

use crate::config::Price;
use switchyard_adapters::openai::Usage;

pub fn cost_usd(price: &Price, usage: &Usage) -> f64 {
    let cached = usage.cached_tokens().min(usage.prompt_tokens);
    let written = usage.cache_write_tokens.min(usage.prompt_tokens - cached);
    let uncached = usage.prompt_tokens - cached - written;
    (uncached as f64 * price.input_per_mtok
        + cached as f64 * price.cached_input_per_mtok
        + written as f64 * price.cache_write_input_per_mtok
        + usage.completion_tokens as f64 * price.output_per_mtok)
        / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_adapters::canonical::Dialect;
    use switchyard_adapters::openai::PromptTokensDetails;

    fn fixture(path: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/../adapters/tests/fixtures/{path}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("fixture")
    }

    fn price(input: f64, output: f64, cached: f64) -> Price {
        Price {
            input_per_mtok: input,
            output_per_mtok: output,
            cached_input_per_mtok: cached,
            cache_write_input_per_mtok: input,
        }
    }

    /// The provider's own usage shape, through its decoder and the gateway's metering, priced.
    fn cost_of(dialect: Dialect, body: &[u8], p: &Price) -> f64 {
        let resp = switchyard_adapters::providers::decode_response(dialect, body).expect("decodes");
        cost_usd(
            p,
            &crate::forward::translate::metered(&resp.usage.expect("usage")),
        )
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    #[test]
    fn every_provider_usage_shape_is_priced_exactly() {
        // OpenAI documented example: 19 prompt + 10 completion tokens.
        let p = price(0.15, 0.60, 0.075);
        close(
            cost_of(Dialect::OpenAi, &fixture("openai/response_text.json"), &p),
            19.0 * 0.15e-6 + 10.0 * 0.60e-6,
        );
        // Anthropic recorded response: 656 input (no cache) + 74 output.
        let p = price(0.80, 4.00, 0.08);
        close(
            cost_of(
                Dialect::Anthropic,
                &fixture("anthropic/response_tool_use.json"),
                &p,
            ),
            656.0 * 0.80e-6 + 74.0 * 4.00e-6,
        );
        // Anthropic with the cache: input_tokens excludes cache reads and writes; reads are billed
        // at the cached price, writes (and the rest) at the input price.
        let body = br#"{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[{"type":"text","text":"x"}],"stop_reason":"end_turn","usage":{"input_tokens":100,"cache_read_input_tokens":1000,"cache_creation_input_tokens":200,"output_tokens":50}}"#;
        let p = price(3.0, 15.0, 0.30);
        close(
            cost_of(Dialect::Anthropic, body, &p),
            300.0 * 3.0e-6 + 1000.0 * 0.30e-6 + 50.0 * 15.0e-6,
        );
        // Gemini thinking model: 38 prompt, 8 candidates + 501 thoughts = 509 output tokens.
        let p = price(1.25, 10.0, 0.3125);
        close(
            cost_of(
                Dialect::Gemini,
                &fixture("gemini/response_thinking_function_call.json"),
                &p,
            ),
            38.0 * 1.25e-6 + 509.0 * 10.0e-6,
        );
        // Gemini with cached content: promptTokenCount already includes the cached tokens.
        let body = br#"{"candidates":[{"content":{"parts":[{"text":"x"}],"role":"model"},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":1000,"cachedContentTokenCount":600,"candidatesTokenCount":20,"totalTokenCount":1020}}"#;
        close(
            cost_of(Dialect::Gemini, body, &p),
            400.0 * 1.25e-6 + 600.0 * 0.3125e-6 + 20.0 * 10.0e-6,
        );
        // Cloudflare Workers AI documented template: 86 prompt + 171 completion.
        let p = price(0.10, 0.20, 0.10);
        close(
            cost_of(
                Dialect::Cloudflare,
                &fixture("cloudflare/response_with_usage.json"),
                &p,
            ),
            86.0 * 0.10e-6 + 171.0 * 0.20e-6,
        );
        // Ollama documented example: prompt_eval_count 26, eval_count 298.
        let p = price(0.05, 0.10, 0.05);
        close(
            cost_of(Dialect::Ollama, &fixture("ollama/response.json"), &p),
            26.0 * 0.05e-6 + 298.0 * 0.10e-6,
        );
    }

    #[test]
    fn prices_cached_and_uncached_prompt_tokens() {
        let price = Price {
            input_per_mtok: 0.15,
            output_per_mtok: 0.60,
            cached_input_per_mtok: 0.075,
            cache_write_input_per_mtok: 0.15,
        };
        let usage = Usage {
            prompt_tokens: 1_000_000,
            completion_tokens: 500_000,
            total_tokens: 1_500_000,
            prompt_tokens_details: Some(PromptTokensDetails {
                cached_tokens: Some(400_000),
            }),
            completion_tokens_details: None,
            cache_write_tokens: 0,
        };
        let c = cost_usd(&price, &usage);
        assert!(
            (c - (0.6 * 0.15 + 0.4 * 0.075 + 0.5 * 0.60)).abs() < 1e-12,
            "{c}"
        );
    }

    #[test]
    fn anthropic_cache_writes_are_priced_at_their_own_rate() {
        // Claude-like prices: $3 input, $15 output, reads $0.30, writes $3.75 per million.
        let p = Price {
            input_per_mtok: 3.0,
            output_per_mtok: 15.0,
            cached_input_per_mtok: 0.30,
            cache_write_input_per_mtok: 3.75,
        };
        let body = br#"{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[{"type":"text","text":"x"}],"stop_reason":"end_turn","usage":{"input_tokens":100,"cache_read_input_tokens":1000,"cache_creation_input_tokens":200,"output_tokens":50}}"#;
        // 100 × 3 + 1000 × 0.30 + 200 × 3.75 + 50 × 15 = 300 + 300 + 750 + 750 = $2,100 per M.
        close(cost_of(Dialect::Anthropic, body, &p), 2100.0e-6);
    }
}
