//! Integration tests for issue 18 points 7–9: structured output translated to every provider and
//! checked when strict, 2xx answers that are not answers failed over, and complete translated
//! output (`refusal: null`, `usage: null` chunks, Anthropic stream input tokens). The real gateway
//! binary against real local upstreams that answer canned bodies of each provider's format.

mod common;

use common::canned::Canned;
use common::*;
use serde_json::{json, Value};

/// A gateway with one model `chat` served by `deps` in order: (name, kind, upstream).
async fn gateway(deps: &[(&str, &str, &Canned)]) -> Gateway {
    let mut conf = String::from("providers:\n");
    for (name, kind, up) in deps {
        conf.push_str(&format!(
            "  - name: {name}\n    kind: {kind}\n    base_url: {}\n    api_key: sk-{name}-secret\n",
            up.base
        ));
    }
    conf.push_str("models:\n  - name: chat\n    deployments:\n");
    for (name, _, _) in deps {
        conf.push_str(&format!(
            "      - provider: {name}\n        model: {name}-model\n"
        ));
    }
    Gateway::start(&conf, "").await
}

fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {"name": {"type": "string"}, "email": {"type": "string"},
                       "demo_requested": {"type": "boolean"}},
        "required": ["name", "email", "demo_requested"],
        "additionalProperties": false
    })
}

const VALID: &str = r#"{"name":"John Smith","email":"john@example.com","demo_requested":true}"#;

/// OpenAI's structured-outputs request shape.
fn strict_request(stream: bool) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "model": "chat",
        "stream": stream,
        "messages": [{"role": "user", "content": "Extract: John Smith (john@example.com) wants a demo."}],
        "response_format": {"type": "json_schema",
                            "json_schema": {"name": "contact", "strict": true, "schema": schema()}}
    }))
    .expect("json")
}

/// An OpenAI chat completion (the documented example) whose answer text is `text`.
fn openai_answer(text: &str) -> String {
    json!({"id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", "object": "chat.completion",
           "created": 1741569952, "model": "gpt-4.1-2025-04-14",
           "choices": [{"index": 0, "message": {"role": "assistant", "content": text,
                        "refusal": null, "annotations": []},
                        "logprobs": null, "finish_reason": "stop"}],
           "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29}})
    .to_string()
}

/// An Anthropic Messages answer (the documented shape) whose text is `text`.
fn anthropic_answer(text: &str) -> String {
    json!({"id": "msg_013Zva2CMHLNnXjNJJKqJ2EF", "type": "message", "role": "assistant",
           "model": "claude-sonnet-4-5", "content": [{"type": "text", "text": text}],
           "stop_reason": "end_turn", "stop_sequence": null,
           "usage": {"input_tokens": 2095, "output_tokens": 503}})
    .to_string()
}

const JSON: &str = "application/json";
const SSE: &str = "text/event-stream";
const HTML: &str = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>";

async fn ask_openai(gw: &Gateway, body: &[u8]) -> Reply {
    gw.post_json("/v1/chat/completions", body).await
}

async fn ask_anthropic(gw: &Gateway, body: &[u8]) -> Reply {
    gw.request(
        "POST",
        "/v1/messages",
        Some(body),
        &[
            ("content-type", "application/json"),
            ("anthropic-version", "2023-06-01"),
        ],
    )
    .await
}

const ANTHROPIC_HI: &[u8] =
    br#"{"model":"chat","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}"#;

// ---- point 7: structured output on every provider ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_schema_reaches_an_anthropic_upstream_as_output_config() {
    let up = Canned::start(200, JSON, anthropic_answer(VALID)).await;
    let gw = gateway(&[("claude", "anthropic", &up)]).await;
    let r = ask_openai(&gw, &strict_request(false)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let sent = &up.requests()[0].1;
    assert_eq!(
        sent["output_config"],
        json!({"format": {"type": "json_schema", "schema": schema()}})
    );
    assert!(sent.get("response_format").is_none(), "{sent}");
    let v = r.json();
    let msg = &v["choices"][0]["message"];
    assert_eq!(msg["content"], VALID);
    // Point 9: an OpenAI answer built from another provider carries `refusal: null`.
    assert!(msg.get("refusal").is_some_and(Value::is_null), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_schema_reaches_a_gemini_upstream_as_response_json_schema() {
    let answer = json!({"candidates": [{"content": {"parts": [{"text": VALID}], "role": "model"},
                        "finishReason": "STOP", "index": 0}],
                        "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 12,
                                          "totalTokenCount": 20},
                        "modelVersion": "gemini-2.5-flash"});
    let up = Canned::start(200, JSON, answer.to_string()).await;
    let gw = gateway(&[("gem", "gemini", &up)]).await;
    let r = ask_openai(&gw, &strict_request(false)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (path, sent) = &up.requests()[0];
    assert!(
        path.ends_with("/models/gem-model:generateContent"),
        "{path}"
    );
    assert_eq!(
        sent["generationConfig"]["responseMimeType"],
        "application/json"
    );
    assert_eq!(sent["generationConfig"]["responseJsonSchema"], schema());
    assert_eq!(r.json()["choices"][0]["message"]["content"], VALID);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_output_config_reaches_an_openai_upstream_as_response_format() {
    let up = Canned::start(200, JSON, openai_answer(VALID)).await;
    let gw = gateway(&[("oai", "openai", &up)]).await;
    let body = json!({"model": "chat", "max_tokens": 256,
                      "messages": [{"role": "user", "content": "Extract the contact."}],
                      "output_config": {"format": {"type": "json_schema", "schema": schema()}}});
    let r = ask_anthropic(&gw, &serde_json::to_vec(&body).expect("json")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let sent = &up.requests()[0].1;
    assert_eq!(
        sent["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "response", "schema": schema()}})
    );
    assert!(sent.get("output_config").is_none(), "{sent}");
    assert_eq!(r.json()["content"][0]["text"], VALID);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strict_answer_that_does_not_validate_is_served_by_the_next_deployment() {
    let bad = Canned::start(200, JSON, openai_answer(r#"{"name":"John Smith"}"#)).await;
    let good = Canned::start(200, JSON, anthropic_answer(VALID)).await;
    let gw = gateway(&[("first", "openai", &bad), ("second", "anthropic", &good)]).await;
    let r = ask_openai(&gw, &strict_request(false)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-switchyard-provider"), Some("second"));
    assert_eq!(r.json()["choices"][0]["message"]["content"], VALID);
    assert_eq!((bad.requests().len(), good.requests().len()), (1, 1));
    // The refused answer counts as a failed try of the first deployment.
    let failed = gw
        .metric(r#"switchyard_upstream_attempts_total{outcome="status_5xx",provider="first"}"#)
        .await;
    assert_eq!(failed, Some(1.0));
    // Without `strict` the same answer is the caller's to judge: served as it is.
    let lax = String::from_utf8(strict_request(false))
        .expect("utf8")
        .replace("\"strict\":true", "\"strict\":false");
    let r = ask_openai(&gw, lax.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-switchyard-provider"), Some("first"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_valid_strict_answer_is_a_502_invalid_structured_output() {
    let prose = Canned::start(200, JSON, openai_answer("Sure! John Smith wants a demo.")).await;
    let partial = Canned::start(200, JSON, anthropic_answer(r#"{"name":"John"}"#)).await;
    let gw = gateway(&[
        ("first", "openai", &prose),
        ("second", "anthropic", &partial),
    ])
    .await;
    let r = ask_openai(&gw, &strict_request(false)).await;
    assert_eq!(r.status, 502, "{}", r.text());
    let e = r.json();
    assert_eq!(e["error"]["code"], "invalid_structured_output", "{e}");
    assert_eq!(e["error"]["type"], "upstream_error", "{e}");
    let message = e["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("not JSON"), "{message}");
    assert!(message.contains("does not match"), "{message}");
    // Three tries (the default `retry.attempts`) over two deployments.
    let tries = (prose.requests().len(), partial.requests().len());
    assert!(
        tries.0 >= 1 && tries.1 >= 1 && tries.0 + tries.1 == 3,
        "{tries:?}"
    );
}

// ---- point 8: a 200 that is not an answer is a failure ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_truncated_and_wrong_shape_200s_fail_over_then_502_for_openai_callers() {
    let html = Canned::start(200, "text/html", HTML).await;
    let full = openai_answer("hello");
    let truncated = Canned::start(200, JSON, full[..full.len() / 2].to_string()).await;
    let shapeless = Canned::start(
        200,
        JSON,
        r#"{"id":"chatcmpl-1","object":"chat.completion"}"#,
    )
    .await;
    let gw = gateway(&[
        ("html", "openai", &html),
        ("cut", "openai", &truncated),
        ("shape", "openai", &shapeless),
    ])
    .await;
    let r = ask_openai(
        &gw,
        br#"{"model":"chat","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(r.status, 502, "{}", r.text());
    let e = r.json();
    assert_eq!(e["error"]["code"], "bad_upstream_response", "{e}");
    assert_eq!(e["error"]["type"], "upstream_error", "{e}");
    for up in [&html, &truncated, &shapeless] {
        assert_eq!(up.requests().len(), 1);
    }
    assert!(
        !r.text().contains("nginx"),
        "the upstream's body is never relayed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_that_is_not_an_answer_fails_over_to_a_good_deployment() {
    let html = Canned::start(200, "text/html", HTML).await;
    let good = Canned::start(200, JSON, openai_answer("hello")).await;
    let gw = gateway(&[("html", "openai", &html), ("good", "openai", &good)]).await;
    let r = ask_openai(
        &gw,
        br#"{"model":"chat","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-switchyard-provider"), Some("good"));
    assert_eq!(r.json()["choices"][0]["message"]["content"], "hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_200s_fail_over_then_502_in_the_anthropic_format() {
    // Anthropic to Anthropic (the byte-exact observed path), then a translated OpenAI upstream.
    let html = Canned::start(200, "text/html", HTML).await;
    let shapeless = Canned::start(200, JSON, r#"{"object":"list","data":[]}"#).await;
    let gw = gateway(&[
        ("claude", "anthropic", &html),
        ("oai", "openai", &shapeless),
    ])
    .await;
    let r = ask_anthropic(&gw, ANTHROPIC_HI).await;
    assert_eq!(r.status, 502, "{}", r.text());
    let e = r.json();
    assert_eq!(e["type"], "error", "{e}");
    assert_eq!(e["error"]["type"], "api_error", "{e}");
    let message = e["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("bad_upstream_response"), "{message}");
    let tries = (html.requests().len(), shapeless.requests().len());
    assert!(
        tries.0 >= 1 && tries.1 >= 1 && tries.0 + tries.1 == 3,
        "{tries:?}"
    );

    // And a good Anthropic answer after a bad one is served.
    let good = Canned::start(200, JSON, anthropic_answer("hello")).await;
    let gw = gateway(&[("claude", "anthropic", &html), ("good", "anthropic", &good)]).await;
    let r = ask_anthropic(&gw, ANTHROPIC_HI).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["content"][0]["text"], "hello");
}

/// OpenAI's documented stream with `include_usage`.
const OPENAI_STREAM: &str = concat!(
    "data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
    "data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
    "data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
    "data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\n",
    "data: [DONE]\n\n",
);

fn data_events(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_whose_first_event_is_not_sse_fails_over() {
    let html = Canned::start(200, SSE, HTML).await;
    let garbage = Canned::start(200, SSE, "data: {\"id\":\"x\",\"choi\n\n").await;
    let good = Canned::start(200, SSE, OPENAI_STREAM).await;
    let gw = gateway(&[
        ("html", "openai", &html),
        ("garbage", "openai", &garbage),
        ("good", "openai", &good),
    ])
    .await;
    let body = br#"{"model":"chat","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#;
    let r = ask_openai(&gw, body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-switchyard-provider"), Some("good"));
    assert_eq!(
        r.text(),
        OPENAI_STREAM,
        "the good stream is relayed byte for byte"
    );

    let gw = gateway(&[("html", "openai", &html), ("garbage", "openai", &garbage)]).await;
    let r = ask_openai(&gw, body).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "bad_upstream_response");
}

// ---- point 9: translated output is complete ----

/// Anthropic's documented basic stream.
const ANTHROPIC_STREAM: &str = concat!(
    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-opus-4-6\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: ping\ndata: {\"type\":\"ping\"}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"!\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\n",
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn include_usage_chunks_carry_usage_null_until_the_last() {
    let up = Canned::start(200, SSE, ANTHROPIC_STREAM).await;
    let gw = gateway(&[("claude", "anthropic", &up)]).await;
    let body = br#"{"model":"chat","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#;
    let r = ask_openai(&gw, body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let events = data_events(&r.text());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).expect("chunk"))
        .collect();
    assert!(chunks.len() >= 3, "{chunks:?}");
    let (last, rest) = chunks.split_last().expect("chunks");
    for c in rest {
        assert!(c.get("usage").is_some_and(Value::is_null), "{c}");
    }
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["prompt_tokens"], 25);
    assert_eq!(last["usage"]["completion_tokens"], 15);
    // Without include_usage no chunk has a usage field at all.
    let r = ask_openai(
        &gw,
        br#"{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    for d in data_events(&r.text()).iter().filter(|d| *d != "[DONE]") {
        let c: Value = serde_json::from_str(d).expect("chunk");
        assert!(c.get("usage").is_none(), "{c}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anthropic_stream_from_an_openai_upstream_reports_input_tokens() {
    let up = Canned::start(200, SSE, OPENAI_STREAM).await;
    let gw = gateway(&[("oai", "openai", &up)]).await;
    let r = ask_anthropic(
        &gw,
        br#"{"model":"chat","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    let delta: Value = text
        .split("\n\n")
        .find(|e| e.starts_with("event: message_delta"))
        .and_then(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or_else(|| panic!("no message_delta in {text}"));
    assert_eq!(delta["usage"]["input_tokens"], 9, "{delta}");
    assert_eq!(delta["usage"]["output_tokens"], 2, "{delta}");
    assert!(text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
}
