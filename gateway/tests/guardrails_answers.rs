//! Guardrails (issue 23), answer phase beyond plain text streams: the real gateway against
//! canned local upstreams and its built-in mock provider. Tool call argument deltas (OpenAI
//! `function.arguments`, Anthropic `input_json_delta`), legacy completions streams, in-process
//! answers, webhook guardrails on whole and streamed answers, and `max_input_tokens` at the
//! boundary of admission's estimate. Mid-stream actions are read back from the access log and
//! the metric (the header has gone by then).

mod common;
mod rails;

use common::canned::Canned;
use common::*;
use rails::*;
use serde_json::{json, Value};

async fn post(gw: &Gateway, path: &str, body: &Value) -> Reply {
    let headers = [("content-type", JSON), ("anthropic-version", "2023-06-01")];
    let bytes = serde_json::to_vec(body).expect("json");
    gw.request("POST", path, Some(&bytes), &headers).await
}

fn sse(data: &Value) -> String {
    format!("data: {data}\n\n")
}

/// An OpenAI chat stream of one tool call whose arguments arrive as `parts`.
fn tool_call_stream(parts: &[&str]) -> String {
    let chunk = |delta: Value, finish: Value| {
        sse(
            &json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1741569952,
            "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]}),
        )
    };
    let mut s = chunk(
        json!({"role": "assistant", "content": null, "tool_calls": [{"index": 0,
            "id": "call_1", "type": "function", "function": {"name": "send", "arguments": ""}}]}),
        Value::Null,
    );
    for p in parts {
        s += &chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}),
            Value::Null,
        );
    }
    s += &chunk(json!({}), json!("tool_calls"));
    s + "data: [DONE]\n\n"
}

const OUT: &str = "  - name: out\n    on: [response]\n    pii: [email, credit_card]\n";
const SPLIT_ARGS: [&str; 3] = [
    "{\"to\":\"jane@",
    "corp.example\",\"card\":\"4111 1111 ",
    "1111 1111\"}",
];
const REDACTED_ARGS: &str = r#"{"to":"[REDACTED:EMAIL]","card":"[REDACTED:CREDIT_CARD]"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_tool_call_argument_deltas_are_redacted_across_chunks() {
    let up = streaming(tool_call_stream(&SPLIT_ARGS)).await;
    let gw = gateway(&up, OUT, "out", "").await;
    let body = json!({"model": "chat", "stream": true,
        "messages": [{"role": "user", "content": "send it"}]});
    let r = post(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    assert!(!text.contains("4111") && !text.contains("jane@"), "{text}");
    let events = data_events(&text);
    assert!(events
        .iter()
        .all(|e| e["object"] == "chat.completion.chunk"));
    let args: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(args, REDACTED_ARGS);
    serde_json::from_str::<Value>(&args).expect("the arguments stay JSON");
    assert!(events
        .iter()
        .any(|e| e["choices"][0]["finish_reason"] == "tool_calls"));
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    // Taken mid-stream: in the access log and the metric.
    logged(&gw, "out:redact:response").await;
    assert_eq!(counted(&gw, "out", "redact", "response").await, Some(1.0));
}

/// An Anthropic Messages stream of one `tool_use` block whose input arrives as `parts`.
fn anthropic_tool_stream(parts: &[&str]) -> String {
    let ev = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let mut s = ev(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message",
        "role": "assistant", "content": [], "model": "claude-sonnet-4-5", "stop_reason": null,
        "stop_sequence": null, "usage": {"input_tokens": 25, "output_tokens": 1}}}),
    );
    s += &ev(
        "content_block_start",
        json!({"type": "content_block_start", "index": 0,
        "content_block": {"type": "tool_use", "id": "toolu_1", "name": "send", "input": {}}}),
    );
    for p in parts {
        s += &ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": p}}),
        );
    }
    s += &ev(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    );
    s += &ev(
        "message_delta",
        json!({"type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 30}}),
    );
    s + &ev("message_stop", json!({"type": "message_stop"}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_input_json_deltas_are_redacted_and_the_events_stay_in_order() {
    let up = streaming(anthropic_tool_stream(&SPLIT_ARGS)).await;
    let conf = format!(
        "providers:\n  - name: claude\n    kind: anthropic\n    base_url: {}\n    api_key: sk-ant-test\nmodels:\n  - name: chat\n    guardrails: [out]\n    deployments:\n      - provider: claude\n        model: claude-sonnet-4-5\nguardrails:\n{OUT}",
        up.base
    );
    let gw = Gateway::start(&conf, "").await;
    let body = json!({"model": "chat", "max_tokens": 64, "stream": true,
        "messages": [{"role": "user", "content": "send it"}]});
    let r = post(&gw, "/v1/messages", &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    assert!(!text.contains("4111") && !text.contains("jane@"), "{text}");
    let events = data_events(&text);
    let args: String = events
        .iter()
        .filter(|e| e["delta"]["type"] == "input_json_delta")
        .filter_map(|e| e["delta"]["partial_json"].as_str())
        .collect();
    assert_eq!(args, REDACTED_ARGS, "{text}");
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    let mut deduped = kinds.clone();
    deduped.dedup();
    assert_eq!(
        deduped,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ],
        "{text}"
    );
}

/// A legacy completions stream (`text_completion` chunks) whose text arrives as `parts`.
fn completions_stream(parts: &[&str]) -> String {
    let chunk = |text: &str, finish: Value| {
        sse(
            &json!({"id": "cmpl-1", "object": "text_completion", "created": 1741569952,
            "model": "gpt-3.5-turbo-instruct",
            "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": finish}]}),
        )
    };
    let mut s = String::new();
    for p in parts {
        s += &chunk(p, Value::Null);
    }
    s += &chunk("", json!("stop"));
    s + "data: [DONE]\n\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_completions_stream_is_redacted_in_text_completion_chunks() {
    let up = streaming(completions_stream(&SPLIT_TEXT)).await;
    let gw = gateway(&up, OUT, "out", "").await;
    let body = json!({"model": "chat", "stream": true, "prompt": "Say it", "max_tokens": 20});
    let r = post(&gw, "/v1/completions", &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.requests()[0].0, "/completions");
    let text = r.text();
    let events = data_events(&text);
    assert!(
        events.iter().all(|e| e["object"] == "text_completion"),
        "{text}"
    );
    let said: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(said, REDACTED_TEXT);
    assert!(events
        .iter()
        .any(|e| e["choices"][0]["finish_reason"] == "stop"));
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
}

/// A gateway whose model `chat` is the built-in mock (one word per stream chunk).
async fn mock_gateway(rails: &str, model_rails: &str) -> Gateway {
    let conf = format!(
        "providers:\n  - name: sim\n    kind: mock\n    chunks: 64\nmodels:\n  - name: chat\n    guardrails: [{model_rails}]\n    deployments:\n      - provider: sim\n        model: mock-1\nguardrails:\n{rails}"
    );
    Gateway::start(&conf, "").await
}

fn stream_text(events: &[Value]) -> String {
    events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mock_providers_streams_and_answers_are_guarded() {
    let ask = json!({"model": "chat", "stream": true,
        "messages": [{"role": "user", "content": "describe the yard"}]});
    // The mock's words for this prompt, unguarded.
    let plain_gw = mock_gateway("  - name: none\n    on: [request]\n    words: [zzz]\n", "").await;
    let plain = stream_text(&data_events(
        &post(&plain_gw, "/v1/chat/completions", &ask).await.text(),
    ));
    drop(plain_gw);
    let words: Vec<&str> = plain.split(' ').collect();
    assert!(words.len() > 4, "{plain}");
    // Two words: one per chunk, so every match spans two chunks.
    let phrase = format!("{} {}", words[2], words[3]);
    let rails = format!("  - name: out\n    on: [response]\n    words: [\"{phrase}\"]\n");
    let gw = mock_gateway(&rails, "out").await;
    let r = post(&gw, "/v1/chat/completions", &ask).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    let said = stream_text(&data_events(&text));
    assert_eq!(said, plain.replace(&phrase, "[REDACTED:WORD]"), "{text}");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    // The whole answer too, with the action in the header.
    let mut whole = ask.clone();
    whole["stream"] = json!(false);
    let r = post(&gw, "/v1/chat/completions", &whole).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let content = r.json()["choices"][0]["message"]["content"].clone();
    assert_eq!(
        content,
        json!(plain.replace(&phrase, "[REDACTED:WORD]")),
        "{}",
        r.text()
    );
    assert_eq!(
        r.header("x-switchyard-guardrails"),
        Some("out:redact:response")
    );
}

// ---- webhook guardrails on answers ----

fn answer_hook(url: &str, on_error: &str) -> String {
    format!(
        "  - name: policy\n    on: [response]\n    webhook: {{ url: \"{url}\", timeout: 300ms, on_error: {on_error} }}\n"
    )
}

fn ask_body(stream: bool) -> Value {
    json!({"model": "chat", "stream": stream,
        "messages": [{"role": "user", "content": "tell me about Zed"}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_sees_the_whole_answer_and_redacts_or_blocks_it() {
    let up = Canned::start(200, JSON, chat_answer("Zed lives at 1 Main St")).await;
    let hook = hook_answering(json!({"action": "redact", "text": "Zed lives at [address]"})).await;
    let gw = gateway(
        &up,
        &answer_hook(&format!("{}/answers", hook.base), "allow"),
        "policy",
        "",
    )
    .await;
    let r = post(&gw, "/v1/chat/completions", &ask_body(false)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        "Zed lives at [address]"
    );
    assert_eq!(
        r.header("x-switchyard-guardrails"),
        Some("policy:redact:response")
    );
    let asked = hook.requests();
    assert_eq!(asked.len(), 1, "asked about the answer only ({asked:?})");
    assert_eq!(asked[0].0, "/answers");
    assert_eq!(asked[0].1["phase"], "response");
    assert_eq!(asked[0].1["model"], "chat");
    assert_eq!(asked[0].1["text"], "Zed lives at 1 Main St");
    drop(gw);

    let hook = hook_answering(json!({"action": "block"})).await;
    let gw = gateway(&up, &answer_hook(&hook.base, "allow"), "policy", "").await;
    let r = post(&gw, "/v1/messages", &{
        let mut b = ask_body(false);
        b["max_tokens"] = json!(64);
        b
    })
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    let v = r.json();
    assert_eq!(v["type"], "error", "{v}");
    assert!(!r.text().contains("Main St"), "{}", r.text());
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("policy"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_answer_webhook_is_decided_by_on_error_and_counted() {
    let up = Canned::start(200, JSON, chat_answer("fine")).await;
    let broken = Canned::start(503, JSON, "{}").await;
    let gw = gateway(&up, &answer_hook(&broken.base, "block"), "policy", "").await;
    let r = post(&gw, "/v1/chat/completions", &ask_body(false)).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "content_blocked");
    assert_eq!(
        r.header("x-switchyard-guardrails"),
        Some("policy:error:response,policy:block:response")
    );
    drop(gw);
    let gw = gateway(&up, &answer_hook(&broken.base, "allow"), "policy", "").await;
    let r = post(&gw, "/v1/chat/completions", &ask_body(false)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["choices"][0]["message"]["content"], "fine");
    assert_eq!(counted(&gw, "policy", "error", "response").await, Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_answer_is_shown_whole_to_the_webhook_at_the_end() {
    let up = streaming(openai_stream(&["Zed lives ", "at 1 Main St"])).await;
    let allow = hook_answering(json!({"action": "allow"})).await;
    let gw = gateway(&up, &answer_hook(&allow.base, "block"), "policy", "").await;
    let r = post(&gw, "/v1/chat/completions", &ask_body(true)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert!(data_events(&text)
        .iter()
        .any(|e| e["choices"][0]["finish_reason"] == "stop"));
    assert_eq!(allow.requests()[0].1["text"], "Zed lives at 1 Main St");
    drop(gw);

    // A block ends the stream with the caller's error event instead of its end.
    let block = hook_answering(json!({"action": "block"})).await;
    let gw = gateway(&up, &answer_hook(&block.base, "allow"), "policy", "").await;
    let r = post(&gw, "/v1/chat/completions", &ask_body(true)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    let events = data_events(&text);
    let last = events.last().expect("events");
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("policy"),
        "{text}"
    );
    assert!(!events
        .iter()
        .any(|e| e["choices"][0]["finish_reason"] == "stop"));
    let line = logged(&gw, "policy:block:response").await;
    assert_eq!(line["error"], "content_blocked");
}

// ---- max_input_tokens ----

/// A chat body exactly `len` bytes long.
fn body_of_len(len: usize) -> Vec<u8> {
    let empty = serde_json::to_vec(&json!({"model": "chat",
        "messages": [{"role": "user", "content": ""}]}))
    .expect("json");
    let body = json!({"model": "chat",
        "messages": [{"role": "user", "content": "x".repeat(len - empty.len())}]});
    let bytes = serde_json::to_vec(&body).expect("json");
    assert_eq!(bytes.len(), len);
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_input_tokens_uses_admissions_estimate_at_the_boundary() {
    let up = Canned::start(200, JSON, chat_answer("ok")).await;
    // Admission's estimate is body bytes / 4 + 1: 399 bytes → 100 tokens, 400 → 101.
    let gw = gateway(
        &up,
        "  - name: caps\n    max_input_tokens: 100\n",
        "caps",
        "",
    )
    .await;
    let r = gw
        .post_json("/v1/chat/completions", &body_of_len(399))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = gw
        .post_json("/v1/chat/completions", &body_of_len(400))
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    let e = &r.json()["error"];
    assert_eq!(e["code"], "input_tokens_exceeded");
    let message = e["message"].as_str().unwrap_or_default();
    assert!(message.contains("101") && message.contains("`caps`"), "{e}");
    assert_eq!(up.requests().len(), 1);
}

// ---- native Responses streams ----

/// A native Responses stream (the documented event sequence) whose text arrives as `deltas`.
fn native_responses_stream(deltas: &[&str]) -> String {
    let whole: String = deltas.concat();
    let ev = |data: Value| {
        format!(
            "event: {}\ndata: {data}\n\n",
            data["type"].as_str().unwrap_or("")
        )
    };
    let part = json!({"type": "output_text", "text": whole, "annotations": []});
    let item = json!({"id": "msg_1", "type": "message", "status": "completed", "role": "assistant",
        "content": [part]});
    let mut s = ev(json!({"type": "response.created", "sequence_number": 0,
        "response": {"id": "resp_1", "object": "response", "status": "in_progress", "output": []}}));
    s += &ev(
        json!({"type": "response.output_item.added", "sequence_number": 1, "output_index": 0,
        "item": {"id": "msg_1", "type": "message", "status": "in_progress", "role": "assistant", "content": []}}),
    );
    s += &ev(
        json!({"type": "response.content_part.added", "sequence_number": 2, "item_id": "msg_1",
        "output_index": 0, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}),
    );
    for (i, d) in deltas.iter().enumerate() {
        s += &ev(
            json!({"type": "response.output_text.delta", "sequence_number": 3 + i,
            "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": d, "logprobs": []}),
        );
    }
    let n = 3 + deltas.len();
    s += &ev(
        json!({"type": "response.output_text.done", "sequence_number": n, "item_id": "msg_1",
        "output_index": 0, "content_index": 0, "text": whole, "logprobs": []}),
    );
    s += &ev(
        json!({"type": "response.content_part.done", "sequence_number": n + 1,
        "item_id": "msg_1", "output_index": 0, "content_index": 0, "part": part}),
    );
    s += &ev(
        json!({"type": "response.output_item.done", "sequence_number": n + 2,
        "output_index": 0, "item": item}),
    );
    s + &ev(
        json!({"type": "response.completed", "sequence_number": n + 3,
        "response": {"id": "resp_1", "object": "response", "status": "completed", "output": [item],
        "usage": {"input_tokens": 5, "output_tokens": 9, "total_tokens": 14}}}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_responses_stream_is_redacted_in_its_deltas_and_whole_events() {
    let up = streaming(native_responses_stream(&SPLIT_TEXT)).await;
    let conf = format!(
        "providers:\n  - {{ name: oai, kind: openai, base_url: {}, api_key: sk-o, responses: native }}\nmodels:\n  - name: chat\n    guardrails: [out]\n    deployments:\n      - provider: oai\n        model: gpt-4o-mini\nguardrails:\n{OUT}",
        up.base
    );
    let gw = Gateway::start(&conf, "").await;
    let body = json!({"model": "chat", "stream": true, "store": false, "input": "say it"});
    let r = post(&gw, "/v1/responses", &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.requests()[0].0, "/responses");
    let text = r.text();
    assert!(!text.contains("4111") && !text.contains("a@"), "{text}");
    let events = data_events(&text);
    let said: String = events
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .filter_map(|e| e["delta"].as_str())
        .collect();
    assert_eq!(said, REDACTED_TEXT, "{text}");
    let done = events
        .iter()
        .find(|e| e["type"] == "response.output_text.done")
        .expect("output_text.done");
    assert_eq!(done["text"], REDACTED_TEXT);
    let last = events.last().expect("events");
    assert_eq!(last["type"], "response.completed", "{text}");
    assert_eq!(
        last["response"]["output"][0]["content"][0]["text"],
        REDACTED_TEXT
    );
    // Each event is still named by its type.
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(names.len(), events.len(), "{text}");
    logged(&gw, "out:redact:response").await;

    // Stored, the conversation keeps what the caller was shown, never the provider's text.
    let body = json!({"model": "chat", "stream": true, "input": "say it"});
    let r = post(&gw, "/v1/responses", &body).await;
    let events = data_events(&r.text());
    let id = events.last().expect("events")["response"]["id"]
        .as_str()
        .expect("response id")
        .to_string();
    stored_is_redacted(&gw, &id).await;
}

/// The response stored under `id` holds the redacted text, never the provider's.
async fn stored_is_redacted(gw: &Gateway, id: &str) {
    let stored = gw
        .request("GET", &format!("/v1/responses/{id}"), None, &[])
        .await;
    assert_eq!(stored.status, 200, "{}", stored.text());
    assert!(!stored.text().contains("4111"), "{}", stored.text());
    assert_eq!(
        stored.json()["output"][0]["content"][0]["text"],
        REDACTED_TEXT
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_response_keeps_the_redacted_answer() {
    let up = Canned::start(200, JSON, chat_answer(&SPLIT_TEXT.concat())).await;
    let gw = gateway(&up, OUT, "out", "").await;
    let r = post(
        &gw,
        "/v1/responses",
        &json!({"model": "chat", "input": "say it"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let answer = r.json();
    assert_eq!(answer["output"][0]["content"][0]["text"], REDACTED_TEXT);
    let id = answer["id"].as_str().expect("id");
    stored_is_redacted(&gw, id).await;
}
