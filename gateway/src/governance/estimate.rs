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
    let prompt = prompt_tokens(body_bytes);
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

/// The prompt tokens a request body of `body_bytes` bytes is taken to hold (≈ 4 bytes per token,
/// an upper estimate for JSON, plus one): what admission reserves for, and what a guardrail's
/// `max_input_tokens` is checked against.
pub fn prompt_tokens(body_bytes: usize) -> u64 {
    (body_bytes / 4) as u64 + 1
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

/// An estimate of a Messages request's input tokens (`/v1/messages/count_tokens` for providers
/// that cannot count): the text of `system`, `messages` and `tools` at ≈ 4 bytes a token (the
/// same rate as the prompt estimate above, on text rather than JSON), plus a few tokens of
/// framing per message and tool. `Err` names the field that is not a Messages request's.
pub fn input_tokens(body: &[u8]) -> Result<u64, (&'static str, &'static str)> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| ("", "request body is not valid JSON"))?;
    let Some(messages) = v.get("messages").and_then(|m| m.as_array()) else {
        return Err(("messages", "messages: field required"));
    };
    let tools = v.get("tools").and_then(|t| t.as_array());
    let mut bytes = 0usize;
    for part in [v.get("system"), Some(&v["messages"]), v.get("tools")]
        .into_iter()
        .flatten()
    {
        bytes += text_bytes(part);
    }
    let framing = 3 + 4 * messages.len() + 8 * tools.map_or(0, Vec::len);
    Ok((bytes.div_ceil(4) + framing) as u64)
}

/// Bytes of the text in a JSON value: string values, and object keys that carry meaning for a
/// model (tool schemas), never the structure around them.
fn text_bytes(v: &serde_json::Value) -> usize {
    use serde_json::Value;
    match v {
        Value::String(s) => s.len(),
        Value::Array(a) => a.iter().map(text_bytes).sum(),
        Value::Object(o) => o
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "type" | "role" | "cache_control"))
            .map(|(_, v)| text_bytes(v))
            .sum(),
        Value::Number(n) => n.to_string().len(),
        _ => 0,
    }
}

#[cfg(test)]
mod input_tokens_tests {
    use super::input_tokens;

    #[test]
    fn counts_text_not_json_structure() {
        let short = br#"{"model":"m","messages":[{"role":"user","content":"Hello, world"}]}"#;
        // 12 bytes of text: 3 tokens, plus 3 + 4 framing.
        assert_eq!(input_tokens(short), Ok(10));
        let long = br#"{"model":"m","system":"Be brief.","messages":[{"role":"user","content":[{"type":"text","text":"Hello, world, and a good deal more text than before"}]}]}"#;
        assert!(input_tokens(long).unwrap() > 10);
        assert_eq!(input_tokens(br#"{"model":"m"}"#).unwrap_err().0, "messages");
    }
}
