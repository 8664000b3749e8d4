//! Integration tests of how faithfully a translated Responses request and answer follow OpenAI's
//! Responses API (issue 19): fields a translated deployment cannot honour follow the capability
//! table (dropped and named in `x-switchyard-dropped`, or refused naming the field on strict
//! models), streams that fail end with Responses events (`response.failed`, or `error` on a native
//! stream) never a chat-style error chunk, and the provider's reasoning becomes a `reasoning` item
//! and reasoning summary events. The real gateway binary against local upstreams answering canned
//! bodies of each provider's format, and the built-in mock.

mod common;

use common::canned::{sse_events as sse, sse_stream, Canned};
use common::*;
use serde_json::{json, Value};

const JSON: &str = "application/json";
const SSE: &str = "text/event-stream";

async fn create(gw: &Gateway, body: Value, headers: &[(&str, &str)]) -> Reply {
    let mut all = vec![("content-type", JSON)];
    all.extend_from_slice(headers);
    let bytes = serde_json::to_vec(&body).unwrap();
    gw.request("POST", "/v1/responses", Some(&bytes), &all)
        .await
}

/// Every event is a named Responses event numbered 0, 1, 2… (no chat-style `data:` chunk).
fn assert_responses_events(events: &[(String, Value)], text: &str) {
    for (i, (name, data)) in events.iter().enumerate() {
        assert!(!name.is_empty(), "an unnamed event: {text}");
        assert_eq!(data["type"], name.as_str(), "{text}");
        assert_eq!(data["sequence_number"], i as u64, "{text}");
        assert!(data.get("error").is_none_or(Value::is_null), "{text}");
    }
}

fn anthropic_answer() -> String {
    json!({"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-x",
           "content": [{"type": "thinking", "thinking": "The user greets me.", "signature": "sig"},
                       {"type": "text", "text": "Hello!"}],
           "stop_reason": "end_turn", "stop_sequence": null,
           "usage": {"input_tokens": 20, "output_tokens": 5}})
    .to_string()
}

fn chat_answer() -> String {
    json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "o-1",
           "choices": [{"index": 0, "finish_reason": "stop",
                        "message": {"role": "assistant", "content": "Four.", "reasoning_content": "2+2 is 4."}}],
           "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21,
                     "completion_tokens_details": {"reasoning_tokens": 8}}})
    .to_string()
}

/// A gateway with `claude` (strict `c`, lenient `cl`) and an OpenAI-compatible chat provider
/// (lenient `o`), each answering `claude` / `chat`.
async fn two_providers(claude: &Canned, chat: &Canned) -> Gateway {
    let conf = format!(
        "providers:\n  - {{ name: claude, kind: anthropic, base_url: {}, api_key: sk-a }}\n  - {{ name: oai, kind: openai, base_url: {}, api_key: sk-o }}\nmodels:\n  - name: c\n    deployments:\n      - {{ provider: claude, model: claude-x }}\n  - name: cl\n    strict: false\n    deployments:\n      - {{ provider: claude, model: claude-x }}\n  - name: o\n    strict: false\n    deployments:\n      - {{ provider: oai, model: o-1 }}\n",
        claude.base, chat.base
    );
    Gateway::start(&conf, "").await
}

/// A gateway whose model `c` is served by `up` as an Anthropic provider.
async fn claude_gateway(up: &Canned) -> Gateway {
    let conf = format!(
        "providers:\n  - {{ name: claude, kind: anthropic, base_url: {}, api_key: sk-a }}\nmodels:\n  - name: c\n    deployments:\n      - {{ provider: claude, model: claude-x }}\n",
        up.base
    );
    Gateway::start(&conf, "").await
}

/// A Responses stream from model `c` over an Anthropic provider streaming `events`: the body, and
/// its events (checked to be Responses events numbered in order).
async fn claude_stream(events: &[&str]) -> (String, Vec<(String, Value)>) {
    let up = Canned::start(200, SSE, sse_stream(events)).await;
    let gw = claude_gateway(&up).await;
    let r = create(
        &gw,
        json!({"model": "c", "input": "hi", "stream": true}),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    let parsed = sse(&text);
    assert_responses_events(&parsed, &text);
    (text, parsed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_a_translated_deployment_cannot_honour_are_dropped_and_named_or_refused() {
    let claude = Canned::start(200, JSON, anthropic_answer()).await;
    let chat = Canned::start(200, JSON, chat_answer()).await;
    let gw = two_providers(&claude, &chat).await;
    let fields = json!({"input": "hi", "include": ["reasoning.encrypted_content"], "truncation": "auto",
                        "top_logprobs": 2, "service_tier": "flex", "prompt_cache_key": "k1"});
    let with = |model: &str| {
        let mut b = fields.clone();
        b["model"] = json!(model);
        b
    };

    // Lenient model: dropped, and named.
    let r = create(&gw, with("cl"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("x-switchyard-dropped"),
        Some("include, truncation, top_logprobs")
    );
    let (_, sent) = claude.requests().pop().expect("sent to claude");
    for k in [
        "include",
        "truncation",
        "top_logprobs",
        "service_tier",
        "prompt_cache_key",
    ] {
        assert!(sent.get(k).is_none(), "{k} reached Anthropic: {sent}");
    }

    // Strict model (the default): 400 naming the first field, nothing sent.
    let before = claude.raw().len();
    let r = create(&gw, with("c"), &[]).await;
    assert_eq!(r.status, 400, "{}", r.text());
    let e = r.json();
    assert_eq!(e["error"]["param"], "include", "{e}");
    assert_eq!(e["error"]["code"], "unsupported_field", "{e}");
    assert_eq!(claude.raw().len(), before);

    // Defaults are no request for anything: served on the strict model, nothing named.
    let r = create(
        &gw,
        json!({"model": "c", "input": "hi", "include": [], "truncation": "disabled"}),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-switchyard-dropped"), None);

    // OpenAI-compatible chat has service_tier and prompt_cache_key, not include.
    let r = create(&gw, with("o"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("x-switchyard-dropped"),
        Some("include, truncation, top_logprobs")
    );
    let (path, sent) = chat.requests().pop().expect("sent to oai");
    assert_eq!(path, "/chat/completions");
    assert_eq!(sent["service_tier"], "flex", "{sent}");
    assert_eq!(sent["prompt_cache_key"], "k1", "{sent}");
    assert!(sent.get("include").is_none() && sent.get("top_logprobs").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reasoning_is_an_item_with_its_tokens_and_streams_as_summary_text() {
    let claude = Canned::start(200, JSON, anthropic_answer()).await;
    let chat = Canned::start(200, JSON, chat_answer()).await;
    let gw = two_providers(&claude, &chat).await;
    let r = create(&gw, json!({"model": "o", "input": "2+2?"}), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["output"][0]["type"], "reasoning", "{v}");
    assert_eq!(v["output"][0]["summary"][0]["text"], "2+2 is 4.", "{v}");
    assert_eq!(v["output"][1]["content"][0]["text"], "Four.", "{v}");
    assert_eq!(v["usage"]["output_tokens_details"]["reasoning_tokens"], 8);
    let r = create(&gw, json!({"model": "c", "input": "hi"}), &[]).await;
    let v = r.json();
    assert_eq!(v["output"][0]["type"], "reasoning", "{v}");
    assert_eq!(
        v["output"][0]["summary"][0]["text"], "The user greets me.",
        "{v}"
    );

    // A stream: Anthropic thinking deltas become reasoning summary text events.
    let stream = [
        r#"{"type":"message_start","message":{"id":"msg_s","type":"message","role":"assistant","model":"claude-x","content":[],"stop_reason":null,"usage":{"input_tokens":7,"output_tokens":1}}}"#,
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Greeting; "}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"reply kindly."}}"#,
        r#"{"type":"content_block_stop","index":0}"#,
        r#"{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}"#,
        r#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Hi!"}}"#,
        r#"{"type":"content_block_stop","index":1}"#,
        r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":9}}"#,
        r#"{"type":"message_stop"}"#,
    ];
    let (text, events) = claude_stream(&stream).await;
    let deltas: Vec<&str> = events
        .iter()
        .filter(|(n, _)| n == "response.reasoning_summary_text.delta")
        .filter_map(|(_, v)| v["delta"].as_str())
        .collect();
    assert_eq!(deltas, ["Greeting; ", "reply kindly."], "{text}");
    let done = events
        .iter()
        .find(|(n, _)| n == "response.reasoning_summary_text.done")
        .expect("reasoning done");
    assert_eq!(done.1["text"], "Greeting; reply kindly.");
    let (last, completed) = events.last().unwrap();
    assert_eq!(last, "response.completed");
    assert_eq!(completed["response"]["output"][0]["type"], "reasoning");
    assert_eq!(
        completed["response"]["output"][1]["content"][0]["text"],
        "Hi!"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_translated_stream_cut_mid_way_ends_with_response_failed() {
    // The provider stops after the first delta: no message_stop.
    let body = [
        r#"{"type":"message_start","message":{"id":"msg_c","type":"message","role":"assistant","model":"claude-x","content":[],"stop_reason":null,"usage":{"input_tokens":7,"output_tokens":1}}}"#,
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Once upon"}}"#,
    ];
    let (text, events) = claude_stream(&body).await;
    let (last, failed) = events.last().unwrap();
    assert_eq!(last, "response.failed", "{text}");
    assert_eq!(failed["response"]["status"], "failed");
    assert!(failed["response"]["error"]["code"].is_string(), "{failed}");
    assert!(
        failed["response"]["error"]["message"].is_string(),
        "{failed}"
    );
    assert_eq!(
        failed["response"]["output"][0]["content"][0]["text"],
        "Once upon"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_stream_cut_short_ends_with_an_error_event() {
    let events = [
        r#"{"type":"response.created","sequence_number":0,"response":{"id":"resp_cut","object":"response","status":"in_progress","output":[]}}"#,
        r#"{"type":"response.output_text.delta","sequence_number":1,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"Hi"}"#,
    ];
    let stream = sse_stream(&events);
    let up = Canned::start(200, SSE, stream.clone()).await;
    let conf = format!(
        "providers:\n  - {{ name: oai, kind: openai, base_url: {}, api_key: sk-o, responses: native }}\nmodels:\n  - name: n\n    deployments:\n      - {{ provider: oai, model: gpt-4.1 }}\n",
        up.base
    );
    let gw = Gateway::start(&conf, "").await;
    let r = create(
        &gw,
        json!({"model": "n", "input": "hi", "stream": true}),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    assert!(
        text.starts_with(&stream),
        "the provider's events pass through: {text}"
    );
    let events = sse(&text);
    assert_eq!(events.len(), 3, "{text}");
    let (name, err) = &events[2];
    assert_eq!(name, "error", "{text}");
    assert_eq!(err["type"], "error");
    assert_eq!(err["sequence_number"], 2, "{text}");
    assert!(
        err["code"].is_string() && err["message"].is_string(),
        "{err}"
    );
    assert!(
        err.get("error").is_none(),
        "a chat-style error chunk: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_cutoff_ends_a_responses_stream_with_response_failed() {
    let key = "sk-responses-fidelity-key-0001";
    let conf = format!(
        "providers:\n  - {{ name: sim, kind: mock, chunks: 40 }}\nmodels:\n  - name: chat\n    deployments:\n      - {{ provider: sim, model: mock-1, price: {{ input_per_mtok: 0, output_per_mtok: 1000 }} }}\nauth:\n  api_keys:\n    - {{ name: k1, key: {key}, team: t1 }}\nbudgets:\n  - {{ scope: team:t1, limit: 0.01, period: daily, on_exhaust: cutoff }}\n"
    );
    let gw = Gateway::start(&conf, "").await;
    let bearer = format!("Bearer {key}");
    let r = create(
        &gw,
        json!({"model": "chat", "input": "tell me a long story", "stream": true}),
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    let events = sse(&text);
    assert_responses_events(&events, &text);
    let (last, failed) = events.last().unwrap();
    assert_eq!(last, "response.failed", "{text}");
    assert_eq!(failed["response"]["error"]["code"], "budget_exceeded");
    let deltas = events
        .iter()
        .filter(|(n, _)| n == "response.output_text.delta")
        .count();
    assert!(deltas > 0 && deltas < 40, "{deltas} deltas: {text}");
}
