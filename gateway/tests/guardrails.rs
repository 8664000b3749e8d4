//! Guardrails (issue 23), request phase: the real gateway against a recording local upstream
//! (what the provider received), with guardrails attached to models, keys and teams. Redact,
//! block and flag on chat completions, Messages, Responses and embeddings; token caps; the
//! metric, header, access and audit logs; `switchyard check` and reload.

mod common;
mod rails;

use common::canned::Canned;
use common::*;
use rails::*;
use serde_json::{json, Value};

const CARD: &str = "4111 1111 1111 1111";
const KEY: &str = "sk-guardrails-key-0001";

const NO_PII: &str = "  - name: no-pii\n    pii: [email, credit_card, ssn, secret]\n    words: [project-bluebird]\n    action: redact\n";

async fn messages(gw: &Gateway, body: &Value) -> Reply {
    gw.request(
        "POST",
        "/v1/messages",
        Some(&serde_json::to_vec(body).expect("json")),
        &[("content-type", JSON), ("anthropic-version", "2023-06-01")],
    )
    .await
}

async fn chat(gw: &Gateway, body: &Value) -> Reply {
    gw.post_json(
        "/v1/chat/completions",
        &serde_json::to_vec(body).expect("json"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redact_rewrites_what_the_provider_receives_tools_included() {
    let up = Canned::start(200, JSON, chat_answer("ok")).await;
    let gw = gateway(&up, NO_PII, "no-pii", "").await;
    let r = chat(&gw, &json!({"model": "chat", "messages": [
        {"role": "user", "content": format!("I am jane@corp.example, card {CARD}, re Project-Bluebird")},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
            "function": {"name": "lookup", "arguments": "{\"ssn\":\"123-45-6789\"}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "key sk-proj-abcdefghijklmnopqrstuvwx"}
    ]}))
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("x-switchyard-guardrails"),
        Some("no-pii:redact:request")
    );
    let sent = &up.requests()[0].1;
    let msgs = &sent["messages"];
    assert_eq!(
        msgs[0]["content"],
        "I am [REDACTED:EMAIL], card [REDACTED:CREDIT_CARD], re [REDACTED:WORD]"
    );
    assert_eq!(
        msgs[1]["tool_calls"][0]["function"]["arguments"],
        "{\"ssn\":\"[REDACTED:SSN]\"}"
    );
    assert_eq!(msgs[2]["content"], "key [REDACTED:SECRET]");
    assert_eq!(msgs[1]["tool_calls"][0]["id"], "c1");
    let raw = String::from_utf8_lossy(&up.raw()[0].1).to_string();
    assert!(!raw.contains("jane@") && !raw.contains("4111"), "{raw}");
    assert_eq!(counted(&gw, "no-pii", "redact", "request").await, Some(1.0));
    let line = gw
        .access_line(|l| l["guardrails"] == "no-pii:redact:request")
        .await;
    assert!(line.is_some(), "{}", gw.access_log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_match_leaves_the_request_alone_and_an_order_number_is_not_a_card() {
    let up = Canned::start(200, JSON, chat_answer("ok")).await;
    let gw = gateway(&up, NO_PII, "no-pii", "").await;
    let text = "order 1000000000000007 ships to Paris";
    let r = chat(
        &gw,
        &json!({"model": "chat", "messages": [{"role": "user", "content": text}]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-switchyard-guardrails"), None);
    assert_eq!(up.requests()[0].1["messages"][0]["content"], text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_on_messages_is_an_anthropic_400_and_audited_without_the_text() {
    let up = Canned::start(200, JSON, chat_answer("ok")).await;
    let rails = "  - name: no-cards\n    pii: [credit_card]\n    action: block\n";
    let gw = gateway(&up, rails, "no-cards", "").await;
    let r = messages(&gw, &json!({"model": "chat", "max_tokens": 64,
        "messages": [{"role": "user", "content": [{"type": "text", "text": format!("pay with {CARD}")}]}]}))
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    let v = r.json();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    let msg = v["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("no-cards"), "{v}");
    assert!(!r.text().contains("4111"));
    assert!(
        up.requests().is_empty(),
        "the provider saw a blocked request"
    );
    assert_eq!(
        r.header("x-switchyard-guardrails"),
        Some("no-cards:block:request")
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while !gw.audit_log().contains("guardrail_block") && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let audit = gw.audit_log();
    assert!(audit.contains("\"guardrail\":\"no-cards\""), "{audit}");
    assert!(!audit.contains("4111"), "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_on_chat_is_an_openai_400_naming_the_field() {
    let up = Canned::start(200, JSON, chat_answer("ok")).await;
    let rails = "  - name: words\n    words: [bluebird]\n    regex: [\"(?i)internal use only\"]\n    action: block\n";
    let gw = gateway(&up, rails, "words", "").await;
    let r = chat(&gw, &json!({"model": "chat", "messages": [{"role": "user", "content": "FOR INTERNAL USE ONLY"}]})).await;
    assert_eq!(r.status, 400, "{}", r.text());
    let e = &r.json()["error"];
    assert_eq!(e["code"], "content_blocked");
    assert_eq!(e["param"], "messages");
    assert_eq!(e["type"], "invalid_request_error");
    assert!(e["message"]
        .as_str()
        .unwrap_or_default()
        .contains("`words`"));
    // A word inside another word is not a match.
    let r = chat(
        &gw,
        &json!({"model": "chat", "messages": [{"role": "user", "content": "bluebirds sing"}]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flag_passes_the_text_and_records_it() {
    let up = Canned::start(200, JSON, chat_answer("ok")).await;
    let rails = "  - name: watch\n    pii: [email]\n    action: flag\n";
    let gw = gateway(&up, rails, "watch", "").await;
    let r = chat(
        &gw,
        &json!({"model": "chat", "messages": [{"role": "user", "content": "mail a@b.io"}]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("x-switchyard-guardrails"),
        Some("watch:flag:request")
    );
    assert_eq!(up.requests()[0].1["messages"][0]["content"], "mail a@b.io");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_and_embeddings_inputs_are_redacted() {
    let up = Canned::start(200, JSON, chat_answer("ok")).await;
    let gw = gateway(&up, NO_PII, "no-pii", "").await;
    let body = json!({"model": "chat", "store": false, "instructions": "reply to a@b.io",
                      "input": [{"role": "user", "content": [{"type": "input_text", "text": format!("card {CARD}")}]}]});
    let r = gw
        .post_json("/v1/responses", &serde_json::to_vec(&body).expect("json"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let raw = String::from_utf8_lossy(&up.raw()[0].1).to_string();
    assert!(
        raw.contains("[REDACTED:CREDIT_CARD]") && raw.contains("[REDACTED:EMAIL]"),
        "{raw}"
    );
    assert!(!raw.contains("4111") && !raw.contains("a@b.io"), "{raw}");

    let emb = Canned::start(
        200,
        JSON,
        json!({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
               "model": "text-embedding-3-small", "usage": {"prompt_tokens": 8, "total_tokens": 8}})
        .to_string(),
    )
    .await;
    let gw = gateway(&emb, NO_PII, "no-pii", "").await;
    let r = gw
        .post_json(
            "/v1/embeddings",
            br#"{"model":"chat","input":["hi a@b.io","plain"]}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        emb.requests()[0].1["input"],
        json!(["hi [REDACTED:EMAIL]", "plain"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_output_tokens_lowers_the_max_tokens_sent() {
    let up = Canned::start(200, JSON, chat_answer("ok")).await;
    let rails = "  - name: caps\n    max_input_tokens: 50\n    max_output_tokens: 50\n";
    let gw = gateway(&up, rails, "caps", "").await;
    let r = chat(
        &gw,
        &json!({"model": "chat", "max_tokens": 4000,
        "messages": [{"role": "user", "content": "short"}]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.requests()[0].1["max_tokens"], 50);
    // (`max_input_tokens` at its boundary: guardrails_answers.rs.)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_and_team_guardrails_apply_after_the_models() {
    let up = Canned::start(200, JSON, chat_answer("ok")).await;
    let rails = format!(
        "{NO_PII}  - name: watch-ip\n    pii: [ip_address]\n    action: flag\n  - name: no-iban\n    pii: [iban]\n    action: redact\n"
    );
    let extra = format!(
        "auth:\n  api_keys:\n    - {{ name: app, key: \"{KEY}\", team: team-a, guardrails: [watch-ip] }}\nteam_guardrails: {{ team-a: [no-iban] }}\n"
    );
    let gw = gateway(&up, &rails, "no-pii", &extra).await;
    let body = json!({"model": "chat", "messages": [{"role": "user",
        "content": "host 10.1.2.3, iban DE89370400440532013000, mail a@b.io"}]});
    let bearer = format!("Bearer {KEY}");
    let r = gw
        .request(
            "POST",
            "/v1/chat/completions",
            Some(&serde_json::to_vec(&body).expect("json")),
            &[("content-type", JSON), ("authorization", &bearer)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("x-switchyard-guardrails"),
        Some("no-pii:redact:request,watch-ip:flag:request,no-iban:redact:request")
    );
    assert_eq!(
        up.requests()[0].1["messages"][0]["content"],
        "host 10.1.2.3, iban [REDACTED:IBAN], mail [REDACTED:EMAIL]"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_the_guardrails() {
    let up = Canned::start(200, JSON, chat_answer("ok")).await;
    let gw = gateway(&up, NO_PII, "no-pii", "").await;
    let ask = json!({"model": "chat", "messages": [{"role": "user", "content": "a@b.io"}]});
    assert_eq!(chat(&gw, &ask).await.status, 200);
    gw.rewrite_config(&format!(
        "providers:\n{}models:\n  - name: chat\n    guardrails: [no-pii]\n    deployments:\n      - provider: up\n        model: gpt-4o-mini\nguardrails:\n  - name: no-pii\n    pii: [email]\n    action: block\n",
        openai_provider("up", &up.base, "")
    ));
    gw.signal("HUP");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let r = chat(&gw, &ask).await;
        if r.status == 400 {
            assert_eq!(r.json()["error"]["code"], "content_blocked");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "reload not applied:\n{}",
            gw.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[test]
fn check_rejects_unknown_guardrail_names_and_invalid_regexes() {
    let dir = scratch_dir("switchyard-gr-check");
    let conf = dir.join("bad.yaml");
    let text = "server:\n  listen: [\"127.0.0.1:0\"]\nproviders:\n  - name: up\n    kind: openai\n    base_url: http://127.0.0.1:9/v1\n    api_key: k\nmodels:\n  - name: chat\n    guardrails: [no-pi]\n    deployments: [{provider: up, model: m}]\nguardrails:\n  - name: no-pii\n    pii: [email, passport]\n    regex: [\"(unclosed\"]\nteam_guardrails: { team-a: [nope] }\n";
    std::fs::write(&conf, text).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["check", "--conf"])
        .arg(&conf)
        .output()
        .expect("run check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for want in [
        "guardrails[0].pii[1]: unknown PII kind \"passport\"",
        "guardrails[0].regex[0]: invalid regex \"(unclosed\"",
        "models[0].guardrails[0]: unknown guardrail \"no-pi\"",
        "team_guardrails.team-a[0]: unknown guardrail \"nope\"",
    ] {
        assert!(stderr.contains(want), "missing {want:?} in:\n{stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- answers (non-stream) ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_is_redacted_in_the_openai_format() {
    let up = Canned::start(
        200,
        JSON,
        chat_answer(&format!(
            "Your card {CARD} is on file, mail ops@corp.example"
        )),
    )
    .await;
    let rails =
        "  - name: out\n    on: [response]\n    pii: [credit_card, email]\n    action: redact\n";
    let gw = gateway(&up, rails, "out", "").await;
    // `on: [response]` only: the request goes out as written.
    let r = chat(
        &gw,
        &json!({"model": "chat", "messages": [{"role": "user", "content": "mine is a@b.io"}]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        up.requests()[0].1["messages"][0]["content"],
        "mine is a@b.io"
    );
    let v = r.json();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Your card [REDACTED:CREDIT_CARD] is on file, mail [REDACTED:EMAIL]"
    );
    assert_eq!(v["usage"]["total_tokens"], 29);
    assert_eq!(
        r.header("x-switchyard-guardrails"),
        Some("out:redact:response")
    );
    assert_eq!(
        r.header("content-length")
            .and_then(|l| l.parse::<usize>().ok()),
        Some(r.body.len())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_answer_is_an_anthropic_error_without_the_text() {
    let up = Canned::start(
        200,
        JSON,
        chat_answer("the launch code is project-bluebird"),
    )
    .await;
    let rails = "  - name: secrets-out\n    on: [response]\n    words: [project-bluebird]\n    action: block\n";
    let gw = gateway(&up, rails, "secrets-out", "").await;
    let r = messages(
        &gw,
        &json!({"model": "chat", "max_tokens": 64,
        "messages": [{"role": "user", "content": "what is the code?"}]}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    let v = r.json();
    assert_eq!(v["type"], "error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("secrets-out"),
        "{v}"
    );
    assert!(!r.text().contains("bluebird"), "{}", r.text());
    assert_eq!(
        r.header("x-switchyard-guardrails"),
        Some("secrets-out:block:response")
    );
    assert_eq!(
        counted(&gw, "secrets-out", "block", "response").await,
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anthropic_answer_is_redacted_and_a_flag_keeps_the_text() {
    let up = Canned::start(
        200,
        JSON,
        chat_answer("call +44 20 7946 0958 or host 192.168.0.1"),
    )
    .await;
    let rails = "  - name: phones\n    on: [response]\n    pii: [phone]\n  - name: ips\n    on: [response]\n    pii: [ip_address]\n    action: flag\n";
    let gw = gateway(&up, rails, "phones, ips", "").await;
    let r = messages(
        &gw,
        &json!({"model": "chat", "max_tokens": 64,
        "messages": [{"role": "user", "content": "who?"}]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(
        v["content"][0]["text"],
        "call [REDACTED:PHONE] or host 192.168.0.1"
    );
    assert_eq!(
        r.header("x-switchyard-guardrails"),
        Some("phones:redact:response,ips:flag:response")
    );
}

// ---- streamed answers ----

/// An Anthropic Messages stream (the documented event sequence) whose text arrives as `deltas`.
fn anthropic_stream(deltas: &[&str]) -> String {
    let ev = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let mut s = ev(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_1",
        "type": "message", "role": "assistant", "content": [], "model": "claude-sonnet-4-5",
        "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 25, "output_tokens": 1}}}),
    );
    s.push_str(&ev(
        "content_block_start",
        json!({"type": "content_block_start", "index": 0,
        "content_block": {"type": "text", "text": ""}}),
    ));
    for d in deltas {
        s.push_str(&ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": d}}),
        ));
    }
    s.push_str(&ev(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    s.push_str(&ev("message_delta", json!({"type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 15}})));
    s.push_str(&ev("message_stop", json!({"type": "message_stop"})));
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openai_stream_is_redacted_across_chunks_and_stays_valid() {
    let up = streaming(openai_stream(&SPLIT_TEXT)).await;
    let rails = "  - name: out\n    on: [response]\n    pii: [credit_card, email]\n";
    let gw = gateway(&up, rails, "out", "").await;
    let r = chat(
        &gw,
        &json!({"model": "chat", "stream": true,
        "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    assert!(!text.contains("4111") && !text.contains("a@"), "{text}");
    let events = data_events(&text);
    let said: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(said, REDACTED_TEXT);
    assert!(
        events
            .iter()
            .all(|e| e["object"] == "chat.completion.chunk"),
        "{text}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["choices"][0]["finish_reason"] == "stop"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    logged(&gw, "out:redact:response").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_stream_ends_with_an_anthropic_error_event_and_never_the_text() {
    let up = streaming(openai_stream(&[
        "The code is project-blue",
        "bird, keep it",
    ]))
    .await;
    let rails = "  - name: secrets-out\n    on: [response]\n    words: [project-bluebird]\n    action: block\n";
    let gw = gateway(&up, rails, "secrets-out", "").await;
    let r = messages(
        &gw,
        &json!({"model": "chat", "max_tokens": 64, "stream": true,
        "messages": [{"role": "user", "content": "code?"}]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    assert!(!text.contains("project-blue"), "{text}");
    let events = data_events(&text);
    let last = events.last().expect("events");
    assert_eq!(last["type"], "error", "{text}");
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("secrets-out"),
        "{text}"
    );
    assert_eq!(events[0]["type"], "message_start", "{text}");
    let line = logged(&gw, "secrets-out:block:response").await;
    assert_eq!(line["error"], "content_blocked");
    // Not the provider's failure.
    assert_eq!(
        gw.metric(r#"switchyard_upstream_attempts_total{outcome="stream_error",provider="up"}"#)
            .await
            .unwrap_or(0.0),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anthropic_to_anthropic_stream_is_redacted_across_events() {
    let up = streaming(anthropic_stream(&["mail jane@", "corp.example now"])).await;
    let conf = format!(
        "providers:\n  - name: claude\n    kind: anthropic\n    base_url: {}\n    api_key: sk-ant-test\nmodels:\n  - name: chat\n    guardrails: [out]\n    deployments:\n      - provider: claude\n        model: claude-sonnet-4-5\nguardrails:\n  - name: out\n    on: [response]\n    pii: [email]\n",
        up.base
    );
    let gw = Gateway::start(&conf, "").await;
    let r = messages(
        &gw,
        &json!({"model": "chat", "max_tokens": 64, "stream": true,
        "messages": [{"role": "user", "content": "who?"}]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    let events = data_events(&text);
    let said: String = events
        .iter()
        .filter(|e| e["type"] == "content_block_delta")
        .filter_map(|e| e["delta"]["text"].as_str())
        .collect();
    assert_eq!(said, "mail [REDACTED:EMAIL] now", "{text}");
    assert_eq!(
        events.last().map(|e| e["type"].clone()),
        Some(json!("message_stop")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_responses_stream_is_redacted_in_its_own_events() {
    let up = streaming(openai_stream(&[
        "key sk-proj-abcdefghij",
        "klmnopqrstuvwxyz done",
    ]))
    .await;
    let rails = "  - name: out\n    on: [response]\n    pii: [secret]\n";
    let gw = gateway(&up, rails, "out", "").await;
    let body = json!({"model": "chat", "stream": true, "store": false, "input": "give me a key"});
    let r = gw
        .post_json("/v1/responses", &serde_json::to_vec(&body).expect("json"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    assert!(!text.contains("sk-proj"), "{text}");
    let events = data_events(&text);
    let said: String = events
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .filter_map(|e| e["delta"].as_str())
        .collect();
    assert_eq!(said, "key [REDACTED:SECRET] done", "{text}");
    assert_eq!(
        events.last().map(|e| e["type"].clone()),
        Some(json!("response.completed")),
        "{text}"
    );
}

// ---- webhook guardrails ----

/// A gateway whose model `chat` asks the webhook at `url` (`on_error` as given).
async fn hooked(up: &Canned, url: &str, on_error: &str) -> Gateway {
    let rails = format!(
        "  - name: policy\n    on: [request]\n    webhook: {{ url: \"{url}\", timeout: 300ms, on_error: {on_error} }}\n"
    );
    gateway(up, &rails, "policy", "").await
}

fn ask_body() -> Value {
    json!({"model": "chat", "messages": [{"role": "user", "content": "tell me about Zed"}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_sees_the_conversation_and_allows_it() {
    let up = Canned::start(200, JSON, chat_answer("ok")).await;
    let hook = hook_answering(json!({"action": "allow"})).await;
    let gw = hooked(&up, &format!("{}/check", hook.base), "block").await;
    let r = chat(&gw, &ask_body()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (path, asked) = &hook.requests()[0];
    assert_eq!(path, "/check");
    assert_eq!(asked["guardrail"], "policy");
    assert_eq!(asked["phase"], "request");
    assert_eq!(asked["model"], "chat");
    assert_eq!(asked["messages"], ask_body()["messages"]);
    assert_eq!(up.requests()[0].1["messages"], ask_body()["messages"]);
    assert_eq!(r.header("x-switchyard-guardrails"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_blocks_or_redacts() {
    let up = Canned::start(200, JSON, chat_answer("ok")).await;
    let hook = hook_answering(json!({"action": "block", "reason": "no"})).await;
    let gw = hooked(&up, &hook.base, "allow").await;
    let r = chat(&gw, &ask_body()).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "content_blocked");
    assert!(up.requests().is_empty());
    drop(gw);

    let redacted = json!([{"role": "user", "content": "tell me about [REDACTED]"}]);
    let hook = hook_answering(json!({"action": "redact", "messages": redacted})).await;
    let gw = hooked(&up, &hook.base, "allow").await;
    let r = chat(&gw, &ask_body()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.requests()[0].1["messages"], redacted);
    assert_eq!(
        r.header("x-switchyard-guardrails"),
        Some("policy:redact:request")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_or_failing_webhook_is_decided_by_on_error() {
    let up = Canned::start(200, JSON, chat_answer("ok")).await;
    // Accepts connections and never answers: the 300 ms timeout decides.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let silent_url = format!("http://{}/check", silent.local_addr().expect("addr"));
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let gw = hooked(&up, &silent_url, "block").await;
    let started = std::time::Instant::now();
    let r = chat(&gw, &ask_body()).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    assert_eq!(
        r.header("x-switchyard-guardrails"),
        Some("policy:error:request,policy:block:request")
    );
    drop(gw);

    let broken = Canned::start(500, JSON, "{}").await;
    let gw = hooked(&up, &broken.base, "allow").await;
    let r = chat(&gw, &ask_body()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("x-switchyard-guardrails"),
        Some("policy:error:request")
    );
    assert_eq!(counted(&gw, "policy", "error", "request").await, Some(1.0));
}
