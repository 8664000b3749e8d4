//! Provider prompt caching (issue #22 point 7) against the mock Anthropic upstream, which records
//! what it received and simulates the cache (a request with `cache_control` has a 1,000-token
//! cached prefix keyed by its system and tools: written the first time, read after): the
//! caller's `cache_control` blocks reach Anthropic intact, `prompt_cache: auto` adds breakpoints,
//! usage reports cached tokens in each caller's format, and cost prices cache reads at
//! `cached_input_per_mtok` and writes at `cache_write_input_per_mtok` (hand-computed below).

mod common;

use common::*;
use serde_json::{json, Value};
use switchyard_benches::upstream::{MockUpstream, MockUpstreamConfig, PROMPT_CACHE_TOKENS};

fn anthropic_provider(name: &str, up: &MockUpstream) -> String {
    let base = up.base_url();
    let base = base.trim_end_matches("/v1");
    format!("  - name: {name}\n    kind: anthropic\n    base_url: {base}\n    api_key: sk-{name}-secret\n")
}

/// `claude` (the caller's breakpoints only) and `claude-auto` (`prompt_cache: auto`), priced like
/// Claude Sonnet: $3 input, $15 output, $0.30 cache reads, $3.75 cache writes per million.
fn config(up: &MockUpstream) -> String {
    let price = "price: { input_per_mtok: 3, output_per_mtok: 15, cached_input_per_mtok: 0.3, cache_write_input_per_mtok: 3.75 }";
    format!(
        "providers:\n{}models:\n  - name: claude\n    deployments:\n      - {{ provider: anth, model: claude-sonnet-4-5, {price} }}\n  - name: claude-auto\n    prompt_cache: auto\n    deployments:\n      - {{ provider: anth, model: claude-sonnet-4-5, {price} }}\n",
        anthropic_provider("anth", up)
    )
}

fn cost(r: &Reply) -> f64 {
    r.header("x-switchyard-cost-usd")
        .and_then(|c| c.parse().ok())
        .expect("a cost header")
}

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-9, "{a} != {b}");
}

fn last_body(up: &MockUpstream) -> Value {
    let reqs = up.requests();
    let last = reqs.last().expect("a request upstream");
    assert_eq!(last.path, "/v1/messages");
    serde_json::from_slice(&last.body).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_cache_control_reaches_anthropic_and_usage_and_cost_count_the_cache() {
    let up = MockUpstream::start(MockUpstreamConfig::default())
        .await
        .expect("upstream");
    let gw = Gateway::start(&config(&up), "").await;
    let sent = json!({
        "model": "claude",
        "max_tokens": 64,
        "system": [
            {"type": "text", "text": "You answer questions about a long manual."},
            {"type": "text", "text": "THE MANUAL ...", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
        ],
        "tools": [{"name": "lookup", "description": "d", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Page 3?", "cache_control": {"type": "ephemeral"}}]}]
    });
    let headers = [
        ("content-type", "application/json"),
        ("anthropic-version", "2023-06-01"),
    ];
    let body = sent.to_string();
    let first = gw
        .request("POST", "/v1/messages", Some(body.as_bytes()), &headers)
        .await;
    assert_eq!(first.status, 200, "{}", first.text());

    // Intact: everything as sent but the model name.
    let mut upstream = last_body(&up);
    assert_eq!(upstream["model"], "claude-sonnet-4-5");
    upstream["model"] = sent["model"].clone();
    assert_eq!(upstream, sent);

    // Anthropic's own usage shape: the write.
    let u = &first.json()["usage"];
    assert_eq!(u["cache_creation_input_tokens"], PROMPT_CACHE_TOKENS);
    assert_eq!(u["cache_read_input_tokens"], 0);
    assert_eq!(u["input_tokens"], 10);
    // 10 × $3 + 1000 × $3.75 (write) + 8 × $15, per million.
    close(cost(&first), (30.0 + 3750.0 + 120.0) / 1e6);

    let second = gw
        .request("POST", "/v1/messages", Some(body.as_bytes()), &headers)
        .await;
    let u = &second.json()["usage"];
    assert_eq!(u["cache_read_input_tokens"], PROMPT_CACHE_TOKENS);
    assert_eq!(u["cache_creation_input_tokens"], 0);
    // 10 × $3 + 1000 × $0.30 (read) + 8 × $15, per million.
    close(cost(&second), (30.0 + 300.0 + 120.0) / 1e6);

    // Streamed: message_start carries the read.
    let mut streamed = sent.clone();
    streamed["stream"] = true.into();
    let s = gw
        .request(
            "POST",
            "/v1/messages",
            Some(streamed.to_string().as_bytes()),
            &headers,
        )
        .await;
    let start = s
        .text()
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str::<Value>(d).expect("event"))
        .find(|e| e["type"] == "message_start")
        .expect("message_start");
    assert_eq!(
        start["message"]["usage"]["cache_read_input_tokens"],
        PROMPT_CACHE_TOKENS
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_cache_auto_adds_breakpoints_and_openai_callers_see_cached_tokens() {
    let up = MockUpstream::start(MockUpstreamConfig::default())
        .await
        .expect("upstream");
    let gw = Gateway::start(&config(&up), "").await;
    let ask = json!({
        "model": "claude-auto",
        "max_tokens": 64,
        "messages": [
            {"role": "system", "content": "You answer questions about a long manual."},
            {"role": "user", "content": "Page 1?"},
            {"role": "assistant", "content": "It is about trains."},
            {"role": "user", "content": "Page 2?"}
        ],
        "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    })
    .to_string();
    let first = gw.post_json("/v1/chat/completions", ask.as_bytes()).await;
    assert_eq!(first.status, 200, "{}", first.text());
    let upstream = last_body(&up);
    assert_eq!(upstream["system"][0]["cache_control"]["type"], "ephemeral");
    assert_eq!(upstream["tools"][0]["cache_control"]["type"], "ephemeral");
    let msgs = upstream["messages"].as_array().expect("messages");
    assert_eq!(msgs.len(), 3);
    for i in [0, 2] {
        assert_eq!(
            msgs[i]["content"][0]["cache_control"]["type"], "ephemeral",
            "{upstream}"
        );
    }
    assert!(msgs[1]["content"][0].get("cache_control").is_none());
    assert_eq!(upstream.to_string().matches("cache_control").count(), 4);

    // OpenAI's usage shape: prompt_tokens counts the whole prompt, cached_tokens the reads.
    let u = &first.json()["usage"];
    assert_eq!(u["prompt_tokens"], 10 + PROMPT_CACHE_TOKENS);
    assert_eq!(u["prompt_tokens_details"]["cached_tokens"], 0);
    close(cost(&first), (30.0 + 3750.0 + 120.0) / 1e6);
    let second = gw.post_json("/v1/chat/completions", ask.as_bytes()).await;
    let u = &second.json()["usage"];
    assert_eq!(
        u["prompt_tokens_details"]["cached_tokens"],
        PROMPT_CACHE_TOKENS
    );
    close(cost(&second), (30.0 + 300.0 + 120.0) / 1e6);

    // Without `prompt_cache: auto` nothing is added.
    let plain = ask.replace("claude-auto", "claude");
    let r = gw.post_json("/v1/chat/completions", plain.as_bytes()).await;
    assert_eq!(r.status, 200);
    assert!(!last_body(&up).to_string().contains("cache_control"));
    assert_eq!(r.json()["usage"]["prompt_tokens"], 10);
}
