//! Helpers shared by the guardrail tests (`guardrails.rs`, `guardrails_answers.rs`): a gateway
//! with guardrails in front of a canned OpenAI-format upstream, canned answers and streams, and
//! an SSE body read back as JSON.
#![allow(dead_code)]

use crate::common::canned::Canned;
use crate::common::*;
use serde_json::{json, Value};

pub const JSON: &str = "application/json";
pub const SSE: &str = "text/event-stream";

pub fn chat_answer(text: &str) -> String {
    json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1741569952,
           "model": "gpt-4o-mini",
           "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                        "logprobs": null, "finish_reason": "stop"}],
           "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29}})
    .to_string()
}

/// A gateway whose model `chat` (guardrails `model_rails`) is served by `up`, with `rails`
/// (the `guardrails:` list body) and any `extra` top-level YAML.
pub async fn gateway(up: &Canned, rails: &str, model_rails: &str, extra: &str) -> Gateway {
    let conf = format!(
        "providers:\n{}models:\n  - name: chat\n    guardrails: [{model_rails}]\n    deployments:\n      - provider: up\n        model: gpt-4o-mini\nguardrails:\n{rails}{extra}",
        openai_provider("up", &up.base, "")
    );
    Gateway::start(&conf, "").await
}

/// An OpenAI chat stream whose text arrives as `deltas`.
pub fn openai_stream(deltas: &[&str]) -> String {
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1741569952,
                   "model": "gpt-4o-mini",
                   "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
        )
    };
    let mut s = chunk(json!({"role": "assistant", "content": ""}), Value::Null);
    for d in deltas {
        s.push_str(&chunk(json!({"content": d}), Value::Null));
    }
    s.push_str(&chunk(json!({}), json!("stop")));
    s.push_str("data: [DONE]\n\n");
    s
}

/// The `data:` payloads of an SSE body, as JSON where they are.
pub fn data_events(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).expect("event JSON"))
        .collect()
}

/// The access-log line whose `guardrails` field is `value` (waited for; the log shown if none).
pub async fn logged(gw: &Gateway, value: &str) -> Value {
    gw.access_line(|l| l["guardrails"] == value)
        .await
        .unwrap_or_else(|| panic!("no line with guardrails {value}: {}", gw.access_log()))
}

/// A webhook (or any upstream) that answers every request with `answer`.
pub async fn hook_answering(answer: Value) -> Canned {
    Canned::start(200, JSON, answer.to_string()).await
}

/// A card and an email split across three deltas, and what a redacting guardrail makes of them.
pub const SPLIT_TEXT: [&str; 3] = ["Card 4111 1111", " 1111 1111, mail a@", "b.io thanks"];
pub const REDACTED_TEXT: &str = "Card [REDACTED:CREDIT_CARD], mail [REDACTED:EMAIL] thanks";

/// An upstream that answers every request with the SSE `body`.
pub async fn streaming(body: String) -> Canned {
    Canned::start(200, SSE, body).await
}

/// `switchyard_guardrail_actions_total` for one guardrail, action and phase, once it reaches 1.
pub async fn counted(gw: &Gateway, guardrail: &str, action: &str, phase: &str) -> Option<f64> {
    let series = format!(
        "switchyard_guardrail_actions_total{{action=\"{action}\",guardrail=\"{guardrail}\",phase=\"{phase}\"}}"
    );
    gw.metric_eventually(&series, 1.0).await
}
