//! Integration tests of the Responses API (`POST /v1/responses`, issue 19): the real gateway
//! binary against the built-in mock provider and local upstreams answering canned bodies of each
//! provider's format — answers and stream events, a function tool round trip, a conversation
//! whose turns run on three providers, tenant isolation, TTL expiry, `store: false`, native
//! pass-through and the refusals.

mod common;

use common::canned::{sse_events as sse, sse_stream, Canned};
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

const JSON: &str = "application/json";
const KEY_A: &str = "sk-responses-test-key-team-a";
const KEY_B: &str = "sk-responses-test-key-team-b";

/// A gateway with a mock model `m` plus `extra` YAML (more providers and models).
async fn gateway(providers: &str, models: &str, extra: &str) -> Gateway {
    let conf = format!(
        "providers:\n  - {{ name: sim, kind: mock }}\n{providers}models:\n  - name: m\n    deployments:\n      - {{ provider: sim, model: mock-1 }}\n{models}{extra}"
    );
    Gateway::start(&conf, "").await
}

async fn call(
    gw: &Gateway,
    method: &str,
    path: &str,
    body: Option<&Value>,
    key: Option<&str>,
) -> Reply {
    let bearer = key.map(|k| format!("Bearer {k}"));
    let mut headers = vec![("content-type", JSON)];
    if let Some(b) = &bearer {
        headers.push(("authorization", b.as_str()));
    }
    let bytes = body.map(|b| serde_json::to_vec(b).unwrap());
    gw.request(method, path, bytes.as_deref(), &headers).await
}

async fn create(gw: &Gateway, body: Value) -> Reply {
    call(gw, "POST", "/v1/responses", Some(&body), None).await
}

fn output_text(resp: &Value) -> String {
    resp["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "message")
        .flat_map(|i| i["content"].as_array().unwrap().iter())
        .filter_map(|c| c["text"].as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_is_answered_stored_listed_and_deleted() {
    let gw = gateway("", "", "").await;
    let r = create(
        &gw,
        json!({"model": "m", "instructions": "Be brief.", "input": "Tell me about gateways.",
               "metadata": {"k": "v"}, "max_output_tokens": 64}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let resp = r.json();
    let id = resp["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("resp_"), "{id}");
    assert_eq!(resp["object"], "response");
    assert_eq!(resp["status"], "completed");
    assert!(resp["created_at"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(resp["model"], "mock-1");
    assert_eq!(resp["instructions"], "Be brief.");
    assert_eq!(resp["metadata"], json!({"k": "v"}));
    assert_eq!(resp["store"], true);
    assert!(resp["error"].is_null());
    let msg = &resp["output"][0];
    assert_eq!(msg["type"], "message");
    assert_eq!(msg["role"], "assistant");
    assert!(msg["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(msg["content"][0]["type"], "output_text");
    assert_eq!(msg["content"][0]["annotations"], json!([]));
    assert!(!output_text(&resp).is_empty());
    let u = &resp["usage"];
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["input_tokens"].as_u64().unwrap() + u["output_tokens"].as_u64().unwrap()
    );
    assert!(u["input_tokens_details"]["cached_tokens"].is_u64());
    assert!(u["output_tokens_details"]["reasoning_tokens"].is_u64());

    // Read back: the same object.
    let got = call(&gw, "GET", &format!("/v1/responses/{id}"), None, None).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.json(), resp);
    // Its input items: one user message, with an id.
    let items = call(
        &gw,
        "GET",
        &format!("/v1/responses/{id}/input_items"),
        None,
        None,
    )
    .await;
    assert_eq!(items.status, 200, "{}", items.text());
    let list = items.json();
    assert_eq!(list["object"], "list");
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(list["data"][0]["role"], "user");
    assert_eq!(list["first_id"], list["data"][0]["id"]);
    assert_eq!(list["has_more"], false);
    // The access log names the endpoint.
    let line = gw
        .access_line(|l| l["route"] == "responses")
        .await
        .expect("an access log line");
    assert_eq!(line["status"], 200);
    // Delete, then it is gone.
    let del = call(&gw, "DELETE", &format!("/v1/responses/{id}"), None, None).await;
    assert_eq!(del.status, 200, "{}", del.text());
    assert_eq!(
        del.json(),
        json!({"id": id, "object": "response", "deleted": true})
    );
    let gone = call(&gw, "GET", &format!("/v1/responses/{id}"), None, None).await;
    assert_eq!(gone.status, 404);
    assert_eq!(gone.json()["error"]["type"], "invalid_request_error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_is_the_documented_event_sequence() {
    let gw = gateway("", "", "").await;
    let r = create(
        &gw,
        json!({"model": "m", "input": "Stream me a sentence.", "stream": true}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    let events = sse(&r.text());
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        &kinds[..4],
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added"
        ]
    );
    let deltas = kinds
        .iter()
        .filter(|k| **k == "response.output_text.delta")
        .count();
    assert!(deltas >= 2, "{kinds:?}");
    assert_eq!(
        &kinds[4 + deltas..],
        [
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    for (i, (kind, v)) in events.iter().enumerate() {
        assert_eq!(v["type"], kind.as_str());
        assert_eq!(v["sequence_number"], i as u64, "{kind}");
    }
    let text: String = events
        .iter()
        .filter(|(k, _)| k == "response.output_text.delta")
        .map(|(_, v)| v["delta"].as_str().unwrap())
        .collect();
    let done = &events.last().unwrap().1["response"];
    assert_eq!(output_text(done), text);
    assert!(done["usage"]["output_tokens"].as_u64().unwrap() > 0);
    // The streamed response is stored like a whole one.
    let id = done["id"].as_str().unwrap();
    let got = call(&gw, "GET", &format!("/v1/responses/{id}"), None, None).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(output_text(&got.json()), text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_tool_round_trip_continues_the_conversation() {
    let gw = gateway("", "", "").await;
    let tool = json!({"type": "function", "name": "get_weather", "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}});
    let r = create(&gw, json!({"model": "m", "input": "Weather in Paris?", "tools": [tool], "tool_choice": "required", "stream": true})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let events = sse(&r.text());
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    assert!(
        kinds.contains(&"response.function_call_arguments.delta"),
        "{kinds:?}"
    );
    let args_done = events
        .iter()
        .find(|(k, _)| k == "response.function_call_arguments.done")
        .unwrap();
    let done = &events.last().unwrap().1["response"];
    let call_item = done["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "function_call")
        .unwrap();
    assert_eq!(call_item["name"], "get_weather");
    assert!(call_item["id"].as_str().unwrap().starts_with("fc_"));
    assert_eq!(call_item["arguments"], args_done.1["arguments"]);
    let args: Value = serde_json::from_str(call_item["arguments"].as_str().unwrap()).unwrap();
    assert!(args["city"].is_string());
    assert_eq!(done["tools"][0]["name"], "get_weather");

    // The tool's output, continuing from the stored turn.
    let second = create(&gw, json!({"model": "m", "previous_response_id": done["id"],
        "input": [{"type": "function_call_output", "call_id": call_item["call_id"], "output": "sunny, 21C"}]})).await;
    assert_eq!(second.status, 200, "{}", second.text());
    let resp = second.json();
    assert_eq!(resp["previous_response_id"], done["id"]);
    assert!(!output_text(&resp).is_empty());
    // Its input items hold the whole conversation: question, call, output.
    let id = resp["id"].as_str().unwrap();
    let items = call(
        &gw,
        "GET",
        &format!("/v1/responses/{id}/input_items?order=asc"),
        None,
        None,
    )
    .await
    .json();
    let types: Vec<&str> = items["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["message", "function_call", "function_call_output"]);
}

fn anthropic_answer(text: &str) -> String {
    json!({"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-x",
           "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": null,
           "usage": {"input_tokens": 20, "output_tokens": 5}})
    .to_string()
}

fn gemini_answer(text: &str) -> String {
    json!({"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP", "index": 0}],
           "usageMetadata": {"promptTokenCount": 30, "candidatesTokenCount": 4, "totalTokenCount": 34}})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_moves_across_three_providers() {
    let claude = Canned::start(200, JSON, anthropic_answer("Second answer from Claude.")).await;
    let gemini = Canned::start(200, JSON, gemini_answer("Third answer from Gemini.")).await;
    let providers = format!(
        "  - {{ name: claude, kind: anthropic, base_url: {}, api_key: sk-a }}\n  - {{ name: gem, kind: gemini, base_url: {}, api_key: g-key }}\n",
        claude.base, gemini.base
    );
    let models = "  - name: c\n    deployments:\n      - { provider: claude, model: claude-x }\n  - name: g\n    deployments:\n      - { provider: gem, model: gemini-x }\n";
    let gw = gateway(&providers, models, "").await;

    let first = create(
        &gw,
        json!({"model": "m", "instructions": "You are terse.", "input": "First question?"}),
    )
    .await;
    assert_eq!(first.status, 200, "{}", first.text());
    let first = first.json();
    let first_text = output_text(&first);
    let second = create(&gw, json!({"model": "c", "instructions": "You are terse.", "previous_response_id": first["id"], "input": "Second question?"})).await;
    assert_eq!(second.status, 200, "{}", second.text());
    let second = second.json();
    assert_eq!(output_text(&second), "Second answer from Claude.");
    let third = create(
        &gw,
        json!({"model": "g", "previous_response_id": second["id"], "input": "Third question?"}),
    )
    .await;
    assert_eq!(third.status, 200, "{}", third.text());
    assert_eq!(output_text(&third.json()), "Third answer from Gemini.");

    // Anthropic got turn one (question and the mock's answer) before turn two.
    let (_, sent) = &claude.requests()[0];
    assert_eq!(sent["system"], "You are terse.");
    let msgs = sent["messages"].as_array().unwrap();
    let texts: Vec<String> = msgs.iter().map(|m| m["content"].to_string()).collect();
    assert_eq!(msgs.len(), 3, "{texts:?}");
    assert_eq!(
        (
            msgs[0]["role"].as_str(),
            msgs[1]["role"].as_str(),
            msgs[2]["role"].as_str()
        ),
        (Some("user"), Some("assistant"), Some("user"))
    );
    assert!(
        texts[0].contains("First question?")
            && texts[1].contains(&first_text)
            && texts[2].contains("Second question?"),
        "{texts:?}"
    );
    // Gemini got all of it: five turns.
    let (path, sent) = &gemini.requests()[0];
    assert!(path.contains("gemini-x:generateContent"), "{path}");
    let contents = sent["contents"].as_array().unwrap();
    let all = serde_json::to_string(contents).unwrap();
    assert_eq!(contents.len(), 5, "{all}");
    for needle in [
        "First question?",
        first_text.as_str(),
        "Second question?",
        "Second answer from Claude.",
        "Third question?",
    ] {
        assert!(all.contains(needle), "{needle} missing from {all}");
    }
}

/// The status of team A's key reading response `id`.
async fn owner_reads(gw: &Gateway, id: &str) -> u16 {
    let path = format!("/v1/responses/{id}");
    call(gw, "GET", &path, None, Some(KEY_A)).await.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_responses_belong_to_their_team() {
    let extra = format!("auth:\n  api_keys:\n    - {{ name: a, key: {KEY_A}, team: ta }}\n    - {{ name: b, key: {KEY_B}, team: tb }}\n");
    let gw = gateway("", "", &extra).await;
    let r = call(
        &gw,
        "POST",
        "/v1/responses",
        Some(&json!({"model": "m", "input": "secret plans"})),
        Some(KEY_A),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(owner_reads(&gw, &id).await, 200);
    for path in [
        format!("/v1/responses/{id}"),
        format!("/v1/responses/{id}/input_items"),
    ] {
        let other = call(&gw, "GET", &path, None, Some(KEY_B)).await;
        assert_eq!(other.status, 404, "{path}: {}", other.text());
        assert!(!other.text().contains("secret plans"));
    }
    let other = call(
        &gw,
        "POST",
        "/v1/responses",
        Some(&json!({"model": "m", "input": "go on", "previous_response_id": id})),
        Some(KEY_B),
    )
    .await;
    assert_eq!(other.status, 404, "{}", other.text());
    assert_eq!(other.json()["error"]["code"], "previous_response_not_found");
    assert_eq!(
        call(
            &gw,
            "DELETE",
            &format!("/v1/responses/{id}"),
            None,
            Some(KEY_B)
        )
        .await
        .status,
        404
    );
    assert_eq!(owner_reads(&gw, &id).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_responses_expire_and_store_false_keeps_nothing() {
    let db = scratch_dir("sy-responses-ttl").join("responses.db");
    let extra = format!(
        "responses:\n  ttl: 600ms\nstore: {{ kind: sqlite, path: {} }}\n",
        db.display()
    );
    let gw = gateway("", "", &extra).await;
    let kept = create(&gw, json!({"model": "m", "input": "remember me"}))
        .await
        .json();
    let id = kept["id"].as_str().unwrap().to_string();
    assert_eq!(
        call(&gw, "GET", &format!("/v1/responses/{id}"), None, None)
            .await
            .status,
        200
    );
    let unstored = create(
        &gw,
        json!({"model": "m", "input": "forget me", "store": false}),
    )
    .await
    .json();
    assert_eq!(unstored["store"], false);
    let uid = unstored["id"].as_str().unwrap();
    assert_eq!(
        call(&gw, "GET", &format!("/v1/responses/{uid}"), None, None)
            .await
            .status,
        404
    );

    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        call(&gw, "GET", &format!("/v1/responses/{id}"), None, None)
            .await
            .status,
        404
    );
    let r = create(
        &gw,
        json!({"model": "m", "input": "and then?", "previous_response_id": id}),
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.text());
    let e = r.json();
    assert_eq!(e["error"]["code"], "previous_response_not_found");
    assert_eq!(e["error"]["param"], "previous_response_id");
    assert_eq!(e["error"]["type"], "invalid_request_error");
    // The expired row was swept from the database by the writes since.
    create(&gw, json!({"model": "m", "input": "one more"})).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let conn = rusqlite::Connection::open(&db).unwrap();
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM responses WHERE id = ?1", [&id], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(n, 0);
}

/// The mock model `m` plus `n`, served by `up` as a `responses: native` OpenAI provider.
async fn native_gateway(up: &Canned) -> Gateway {
    let providers = format!(
        "  - {{ name: oai, kind: openai, base_url: {}, api_key: sk-o, responses: native }}\n",
        up.base
    );
    let models = "  - name: n\n    deployments:\n      - { provider: oai, model: gpt-4.1, price: { input_per_mtok: 2, output_per_mtok: 8 } }\n";
    gateway(&providers, models, "").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_deployments_get_the_request_as_is() {
    let answer = json!({"id": "resp_native1", "object": "response", "created_at": 1741476542, "status": "completed",
        "model": "gpt-4.1-2025-04-14", "output": [{"type": "message", "id": "msg_n", "status": "completed", "role": "assistant",
        "content": [{"type": "output_text", "text": "Native hello.", "annotations": []}]}],
        "usage": {"input_tokens": 36, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 87,
                  "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 123}});
    let up = Canned::start(200, JSON, answer.to_string()).await;
    let gw = native_gateway(&up).await;
    let body =
        r#"{"model":"n",  "input":"hi", "background":true, "tools":[{"type":"web_search"}]}"#;
    let r = gw
        .request(
            "POST",
            "/v1/responses",
            Some(body.as_bytes()),
            &[("content-type", JSON)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), answer);
    assert!(r.header("x-switchyard-cost-usd").is_some());
    let (path, sent) = &up.raw()[0];
    assert_eq!(path, "/responses");
    assert_eq!(
        std::str::from_utf8(sent).unwrap(),
        r#"{"model":"gpt-4.1",  "input":"hi", "background":true, "tools":[{"type":"web_search"}]}"#
    );
    // The answer is stored: a later turn on the mock continues it.
    let next = create(
        &gw,
        json!({"model": "m", "previous_response_id": "resp_native1", "input": "more"}),
    )
    .await;
    assert_eq!(next.status, 200, "{}", next.text());
    // A known native id continues on the native deployment with its history expanded.
    let again = create(
        &gw,
        json!({"model": "n", "previous_response_id": "resp_native1", "input": "more"}),
    )
    .await;
    assert_eq!(again.status, 200, "{}", again.text());
    let (_, sent) = &up.raw()[1];
    let sent: Value = serde_json::from_slice(sent).unwrap();
    assert!(sent.get("previous_response_id").is_none(), "{sent}");
    assert_eq!(sent["input"].as_array().map(Vec::len), Some(3), "{sent}");
    // An id the gateway never stored for this caller is a 404 even on a native model: it never
    // reaches the provider (whose key may know another tenant's responses).
    let unknown = create(
        &gw,
        json!({"model": "n", "previous_response_id": "resp_someone_elses", "input": "more"}),
    )
    .await;
    assert_eq!(unknown.status, 404, "{}", unknown.text());
    assert_eq!(
        unknown.json()["error"]["code"],
        "previous_response_not_found"
    );
    assert_eq!(up.raw().len(), 2, "the unknown id reached the provider");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_translation_cannot_serve_is_refused_naming_the_field() {
    let gw = gateway("", "", "").await;
    for (body, param) in [
        (
            json!({"model": "m", "input": "x", "background": true}),
            "background",
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}]}),
            "tools",
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}),
            "tools",
        ),
        (
            json!({"model": "m", "input": "x", "conversation": "conv_123"}),
            "conversation",
        ),
        (
            json!({"model": "m", "input": "x", "previous_response_id": "resp_unknown"}),
            "previous_response_id",
        ),
    ] {
        let r = create(&gw, body.clone()).await;
        let want = if param == "previous_response_id" {
            404
        } else {
            400
        };
        assert_eq!(r.status, want, "{body}: {}", r.text());
        assert_eq!(r.json()["error"]["param"], param, "{body}");
    }
    let missing = call(&gw, "GET", "/v1/responses/resp_nope", None, None).await;
    assert_eq!(missing.status, 404);
    assert_eq!(
        call(
            &gw,
            "POST",
            "/v1/responses/resp_nope",
            Some(&json!({})),
            None
        )
        .await
        .status,
        405
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_stream_passes_through_and_is_stored() {
    let events = [
        r#"{"type":"response.created","sequence_number":0,"response":{"id":"resp_ns1","object":"response","status":"in_progress","output":[]}}"#,
        r#"{"type":"response.output_text.delta","sequence_number":1,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"Hi"}"#,
        r#"{"type":"response.completed","sequence_number":2,"response":{"id":"resp_ns1","object":"response","status":"completed","model":"gpt-4.1","output":[{"type":"message","id":"msg_1","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Hi","annotations":[]}]}],"usage":{"input_tokens":3,"output_tokens":1,"total_tokens":4}}}"#,
    ];
    let stream = sse_stream(&events);
    let up = Canned::start(200, "text/event-stream", stream.clone()).await;
    let gw = native_gateway(&up).await;
    let r = create(&gw, json!({"model": "n", "input": "hi", "stream": true})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), stream);
    let got = call(&gw, "GET", "/v1/responses/resp_ns1", None, None).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(output_text(&got.json()), "Hi");
}
