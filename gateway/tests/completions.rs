//! Integration tests of `POST /v1/completions` and `POST /v1/messages/count_tokens`: the real
//! gateway binary against real local upstreams (the `switchyard-benches` mock upstream, which
//! speaks OpenAI chat and completions and enough of Anthropic's Messages API).

mod common;

use common::*;
use std::time::{Duration, Instant};
use switchyard_benches::upstream::{
    text_completion_body, MockUpstream, MockUpstreamConfig, COUNT_TOKENS_BODY,
};

const KEY: &str = "sk-completions-test-key-0001";
const NARROW: &str = "sk-completions-test-key-0002";
const ADMIN: &str = "0123456789abcdef-admin";

/// An Anthropic provider block for the mock upstream (whose Anthropic paths sit below `/`).
fn anthropic_provider(name: &str, up: &MockUpstream) -> String {
    let base = up.base_url();
    let base = base.trim_end_matches("/v1");
    format!("  - name: {name}\n    kind: anthropic\n    base_url: {base}\n    api_key: sk-{name}-secret\n")
}

/// Providers plus one model `m` served by `deployments` (provider, upstream model) in order.
fn config(providers: &[String], deployments: &[(&str, &str)]) -> String {
    let mut s = String::from("providers:\n");
    for p in providers {
        s.push_str(p);
    }
    s.push_str("models:\n  - name: m\n    strategy: priority\n    deployments:\n");
    for (i, (provider, model)) in deployments.iter().enumerate() {
        s.push_str(&format!(
            "      - {{ provider: {provider}, model: {model}, priority: {i}, price: {{ input_per_mtok: 1000, output_per_mtok: 2000 }} }}\n"
        ));
    }
    s
}

async fn post(gw: &Gateway, path: &str, body: &str) -> Reply {
    gw.request(
        "POST",
        path,
        Some(body.as_bytes()),
        &[("content-type", "application/json")],
    )
    .await
}

/// The `data:` payloads of an SSE body, `[DONE]` included.
fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(str::to_string)
        .collect()
}

fn json_events(body: &str) -> Vec<serde_json::Value> {
    sse_data(body)
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_pass_through_to_openai_compatible_deployments_byte_for_byte() {
    let up = MockUpstream::start(MockUpstreamConfig::default())
        .await
        .expect("upstream");
    let conf = config(
        &[openai_provider("oai", &up.base_url(), "")],
        &[("oai", "gpt-3.5-turbo-instruct")],
    );
    let gw = Gateway::start(&conf, "").await;
    // Odd spacing, completions-only fields and a multi-prompt array: all untouched.
    let body = "{ \"model\" :\"m\",\"prompt\": [\"Say this is a test\", \"and this\"], \"echo\": true,\n \"suffix\":\"!\", \"logprobs\": 2, \"max_tokens\": 7 }";
    let r = post(&gw, "/v1/completions", body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), text_completion_body("gpt-3.5-turbo-instruct"));
    assert!(r.header("x-switchyard-cost-usd").is_some());
    let seen = &up.requests()[0];
    assert_eq!(seen.path, "/v1/completions");
    assert_eq!(
        seen.body,
        body.replace("\"m\"", "\"gpt-3.5-turbo-instruct\"")
            .as_bytes()
    );
    assert_eq!(seen.header("authorization"), Some("Bearer sk-oai-secret"));
    let line = gw
        .access_line(|l| l["route"] == "completions")
        .await
        .expect("access line");
    assert_eq!(line["prompt_tokens"], 5);
    assert_eq!(line["completion_tokens"], 7);
    assert_eq!(line["provider"], "oai");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passed_through_completion_stream_hides_the_injected_usage_but_meters_it() {
    let up = MockUpstream::start(MockUpstreamConfig::default())
        .await
        .expect("upstream");
    let conf = config(
        &[openai_provider("oai", &up.base_url(), "")],
        &[("oai", "inst")],
    );
    let gw = Gateway::start(&conf, "").await;
    let r = post(
        &gw,
        "/v1/completions",
        r#"{"model":"m","prompt":"Say this is a test","stream":true}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    assert!(!text.contains("usage"), "{text}");
    let events = json_events(&text);
    assert_eq!(events.len(), 4, "{text}");
    assert!(events.iter().all(|e| e["object"] == "text_completion"));
    assert_eq!(sse_data(&text).last().map(String::as_str), Some("[DONE]"));
    // The gateway asked for usage upstream, to meter the stream.
    let sent: serde_json::Value = serde_json::from_slice(&up.requests()[0].body).unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true);
    let line = gw
        .access_line(|l| l["route"] == "completions")
        .await
        .expect("access line");
    assert_eq!(line["prompt_tokens"], 5);
    assert_eq!(line["completion_tokens"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_are_translated_for_an_anthropic_deployment() {
    let up = MockUpstream::start(MockUpstreamConfig::default())
        .await
        .expect("upstream");
    let conf = config(
        &[anthropic_provider("claude", &up)],
        &[("claude", "claude-3-5-haiku")],
    );
    let gw = Gateway::start(&conf, "").await;
    let r = post(
        &gw,
        "/v1/completions",
        r#"{"model":"m","prompt":["Say this is a test"],"temperature":0,"echo":false}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "text_completion");
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-"), "{v}");
    assert_eq!(v["model"], "claude-3-5-haiku");
    assert!(v["created"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(
        v["choices"],
        serde_json::json!([{"text": "Hi! My name is Claude.", "index": 0, "logprobs": null, "finish_reason": "stop"}])
    );
    assert_eq!(v["usage"]["prompt_tokens"], 10);
    assert_eq!(v["usage"]["completion_tokens"], 8);
    let seen = &up.requests()[0];
    assert_eq!(seen.path, "/v1/messages");
    assert_eq!(seen.header("x-api-key"), Some("sk-claude-secret"));
    let sent: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(sent["model"], "claude-3-5-haiku");
    // No max_tokens from the caller: OpenAI's documented default for completions, 16.
    assert_eq!(sent["max_tokens"], 16);
    assert_eq!(sent["messages"][0]["role"], "user");
    let content = &sent["messages"][0]["content"];
    // The plain string or one text block, as the Anthropic encoder writes it.
    assert!(
        *content == serde_json::json!("Say this is a test")
            || *content == serde_json::json!([{"type": "text", "text": "Say this is a test"}]),
        "{content}"
    );
    assert_eq!(sent["messages"].as_array().map(Vec::len), Some(1));
    assert_eq!(sent["temperature"], 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_translated_completion_stream_is_text_completion_chunks() {
    let up = MockUpstream::start(MockUpstreamConfig::default())
        .await
        .expect("upstream");
    let conf = config(&[anthropic_provider("claude", &up)], &[("claude", "haiku")]);
    let gw = Gateway::start(&conf, "").await;
    let r = post(
        &gw,
        "/v1/completions",
        r#"{"model":"m","prompt":"hi","stream":true,"stream_options":{"include_usage":true},"max_tokens":50}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let text = r.text();
    assert_eq!(sse_data(&text).last().map(String::as_str), Some("[DONE]"));
    let events = json_events(&text);
    assert!(
        events.iter().all(|e| e["object"] == "text_completion"),
        "{text}"
    );
    let joined: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(joined, "word0 word1 word2 ");
    let usage = events.last().unwrap();
    assert_eq!(usage["choices"], serde_json::json!([]));
    assert_eq!(usage["usage"]["prompt_tokens"], 10);
    assert_eq!(usage["usage"]["completion_tokens"], 3);
    let finish: Vec<_> = events
        .iter()
        .filter_map(|e| e["choices"][0]["finish_reason"].as_str())
        .collect();
    assert_eq!(finish, ["stop"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mock_provider_answers_completions_whole_and_streamed() {
    let conf = "providers:\n  - { name: sim, kind: mock }\nmodels:\n  - name: m\n    deployments:\n      - { provider: sim, model: mock-1 }\n";
    let gw = Gateway::start(conf, "").await;
    let r = post(
        &gw,
        "/v1/completions",
        r#"{"model":"m","prompt":"the same prompt","max_tokens":4}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    let whole = v["choices"][0]["text"].as_str().unwrap().to_string();
    assert_eq!(whole.split_whitespace().count(), 4, "{whole}");
    assert_eq!(v["usage"]["completion_tokens"], 4);
    let r = post(
        &gw,
        "/v1/completions",
        r#"{"model":"m","prompt":"the same prompt","max_tokens":4,"stream":true}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    let streamed: String = json_events(&text)
        .iter()
        .filter_map(|e| e["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(streamed, whole);
    assert!(!text.contains("\"usage\""), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_deployment_fails_over_to_the_next() {
    let bad = MockUpstream::start(MockUpstreamConfig {
        status: 503,
        ..Default::default()
    })
    .await
    .expect("upstream");
    let good = MockUpstream::start(MockUpstreamConfig::default())
        .await
        .expect("upstream");
    let conf = config(
        &[
            openai_provider("bad", &bad.base_url(), ""),
            anthropic_provider("claude", &good),
        ],
        &[("bad", "inst"), ("claude", "haiku")],
    );
    let gw = Gateway::start(&conf, "").await;
    let r = post(&gw, "/v1/completions", r#"{"model":"m","prompt":"hi"}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["choices"][0]["text"], "Hi! My name is Claude.");
    assert_eq!(r.header("x-switchyard-provider"), Some("claude"));
    assert_eq!(bad.requests()[0].path, "/v1/completions");
    assert_eq!(good.requests()[0].path, "/v1/messages");
    let line = gw
        .access_line(|l| l["route"] == "completions")
        .await
        .expect("access line");
    assert_eq!(line["tries"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_a_translation_cannot_honour_are_400s_naming_the_param() {
    let up = MockUpstream::start(MockUpstreamConfig::default())
        .await
        .expect("upstream");
    let conf = config(&[anthropic_provider("claude", &up)], &[("claude", "haiku")]);
    let gw = Gateway::start(&conf, "").await;
    for (body, param) in [
        (r#"{"model":"m","prompt":["a","b"]}"#, "prompt"),
        (r#"{"model":"m","prompt":[1,2,3]}"#, "prompt"),
        (r#"{"model":"m","prompt":"x","suffix":"y"}"#, "suffix"),
        (r#"{"model":"m","prompt":"x","echo":true}"#, "echo"),
        (r#"{"model":"m","prompt":"x","best_of":3}"#, "best_of"),
        (r#"{"model":"m","prompt":"x","logprobs":1}"#, "logprobs"),
    ] {
        let r = post(&gw, "/v1/completions", body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        let e = r.json();
        assert_eq!(e["error"]["param"], param, "{body}: {e}");
        assert_eq!(e["error"]["type"], "invalid_request_error", "{e}");
    }
    assert!(up.requests().is_empty(), "nothing reached the provider");
    let r = post(&gw, "/v1/completions", r#"{"model":"nope","prompt":"x"}"#).await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.json()["error"]["param"], "model");
}

fn governed(providers: &[String], deployments: &[(&str, &str)], db: &std::path::Path) -> String {
    format!(
        "{}  - name: other\n    deployments:\n      - {{ provider: sim, model: mock-2 }}\nauth:\n  api_keys:\n    - {{ name: k1, key: {KEY}, team: t1 }}\n    - {{ name: k2, key: {NARROW}, team: t2, models: [other] }}\nbudgets:\n  - {{ scope: team:t1, limit: 100, period: daily }}\nstore: {{ kind: sqlite, path: {}, flush_interval: 50ms }}\n",
        config(providers, deployments),
        db.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_are_metered_and_token_counts_are_not_billed() {
    let dir = scratch_dir("switchyard-cmpl");
    let sim = "  - { name: sim, kind: mock }\n".to_string();
    let conf = governed(&[sim], &[("sim", "mock-1")], &dir.join("state.db"));
    let gw = Gateway::start(&conf, &format!("  admin_token: {ADMIN}\n")).await;
    let auth = format!("Bearer {KEY}");
    let r = gw
        .request(
            "POST",
            "/v1/completions",
            Some(br#"{"model":"m","prompt":"count me","max_tokens":5}"#),
            &[("authorization", &auth)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let cost: f64 = r.header("x-switchyard-cost-usd").unwrap().parse().unwrap();
    assert!(cost > 0.0);
    let usage = r.json()["usage"].clone();
    // A token count for the same model: answered, not billed.
    let r = gw
        .request(
            "POST",
            "/v1/messages/count_tokens",
            Some(br#"{"model":"m","messages":[{"role":"user","content":"count me"}]}"#),
            &[("x-api-key", KEY), ("anthropic-version", "2023-06-01")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-switchyard-token-count"), Some("estimated"));
    assert!(r.header("x-switchyard-cost-usd").is_none());
    // A key scoped to another model: 403 in Anthropic's format; an unknown model: 404.
    let r = gw
        .request(
            "POST",
            "/v1/messages/count_tokens",
            Some(br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#),
            &[("x-api-key", NARROW), ("anthropic-version", "2023-06-01")],
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["type"], "error");
    assert_eq!(r.json()["error"]["type"], "permission_error");
    let r = gw
        .request(
            "POST",
            "/v1/messages/count_tokens",
            Some(br#"{"model":"nope","messages":[]}"#),
            &[("x-api-key", KEY)],
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.json()["error"]["type"], "not_found_error");
    let r = gw
        .request(
            "POST",
            "/v1/messages/count_tokens",
            Some(br#"{"model":"m"}"#),
            &[],
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["type"], "error");
    // The ledger holds the completion alone, with its tokens and cost.
    let deadline = Instant::now() + Duration::from_secs(5);
    let u = loop {
        let u = gw
            .admin("GET", "/admin/usage?group_by=model", Some(ADMIN), None)
            .await
            .json();
        if u["totals"][0]["requests"] == 1 || Instant::now() > deadline {
            break u;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(u["totals"].as_array().map(Vec::len), Some(1), "{u}");
    assert_eq!(u["totals"][0]["group"], "m", "{u}");
    assert_eq!(u["totals"][0]["requests"], 1, "{u}");
    assert_eq!(
        u["totals"][0]["prompt_tokens"], usage["prompt_tokens"],
        "{u}"
    );
    assert_eq!(u["totals"][0]["completion_tokens"], 5, "{u}");
    assert!(
        (u["totals"][0]["cost_usd"].as_f64().unwrap() - cost).abs() < 1e-6,
        "{u}"
    );
    // ...recorded with the API it came in by.
    let by_endpoint = gw
        .admin("GET", "/admin/usage?group_by=endpoint", Some(ADMIN), None)
        .await
        .json();
    assert_eq!(
        by_endpoint["totals"][0]["group"], "completions",
        "{by_endpoint}"
    );
    let line = gw
        .access_line(|l| l["route"] == "count_tokens" && l["status"] == 200)
        .await
        .expect("count_tokens access line");
    assert_eq!(line["model"], "m");
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_tokens_goes_to_anthropic_with_the_deployments_key_and_model() {
    let up = MockUpstream::start(MockUpstreamConfig::default())
        .await
        .expect("upstream");
    let conf = config(
        &[anthropic_provider("claude", &up)],
        &[("claude", "claude-sonnet-4-5")],
    );
    let gw = Gateway::start(&conf, "").await;
    let body = r#"{"model":"m","system":"You are a scientist","messages":[{"role":"user","content":"Hello, Claude"}]}"#;
    let r = gw
        .request(
            "POST",
            "/v1/messages/count_tokens",
            Some(body.as_bytes()),
            &[
                ("x-api-key", "sk-caller-key"),
                ("anthropic-version", "2023-06-01"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), COUNT_TOKENS_BODY);
    assert_eq!(r.header("x-switchyard-token-count"), Some("exact"));
    assert!(r.header("x-switchyard-cost-usd").is_none());
    let seen = &up.requests()[0];
    assert_eq!(seen.path, "/v1/messages/count_tokens");
    assert_eq!(seen.header("x-api-key"), Some("sk-claude-secret"));
    assert!(seen.header("anthropic-version").is_some());
    assert_eq!(
        seen.body,
        body.replace("\"m\"", "\"claude-sonnet-4-5\"").as_bytes()
    );
    let line = gw
        .access_line(|l| l["route"] == "count_tokens")
        .await
        .expect("access line");
    assert_eq!(line["provider"], "claude");
    assert_eq!(line["status"], 200);
    // A body that is not a Messages request: the caller's 400, in Anthropic's format.
    let r = gw
        .request(
            "POST",
            "/v1/messages/count_tokens",
            Some(br#"{"model":"m"}"#),
            &[("anthropic-version", "2023-06-01")],
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_tokens_is_estimated_when_the_anthropic_deployment_fails() {
    let bad = MockUpstream::start(MockUpstreamConfig {
        status: 500,
        ..Default::default()
    })
    .await
    .expect("upstream");
    let conf = format!(
        "{}      - {{ provider: sim, model: mock-1, priority: 9 }}\n",
        config(
            &[
                anthropic_provider("claude", &bad),
                "  - { name: sim, kind: mock }\n".to_string()
            ],
            &[("claude", "haiku")]
        )
    );
    let gw = Gateway::start(&conf, "").await;
    let r = gw
        .request(
            "POST",
            "/v1/messages/count_tokens",
            Some(br#"{"model":"m","messages":[{"role":"user","content":"Hello, world"}]}"#),
            &[("anthropic-version", "2023-06-01")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-switchyard-token-count"), Some("estimated"));
    // 12 bytes of text (3 tokens) and the framing of one message (7).
    assert_eq!(r.json(), serde_json::json!({"input_tokens": 10}));
    assert_eq!(bad.requests()[0].path, "/v1/messages/count_tokens");
}

/// The committed tiny LM (greedy answer to "Hello": "pqrstuvwxyz") on a local pool.
#[cfg(feature = "local")]
fn local_config() -> String {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let lib = root.join("target/onnx/lib/libonnxruntime.so.1.31.1");
    assert!(
        lib.exists(),
        "{} missing: run scripts/fetch-models.sh",
        lib.display()
    );
    let lm = root.join("conf/models/tiny-lm/model.onnx");
    format!(
        "providers:\n  - {{ name: gpu0, kind: local, workers: 1, queue: 4, library: \"{}\" }}\nmodels:\n  - name: m\n    deployments:\n      - {{ provider: gpu0, model: \"{}\" }}\n",
        lib.display(),
        lm.display()
    )
}

#[cfg(feature = "local")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_model_completes_a_prompt_and_counts_with_its_own_tokenizer() {
    let gw = Gateway::start(&local_config(), "").await;
    let r = post(&gw, "/v1/completions", r#"{"model":"m","prompt":"Hello"}"#).await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), gw.log());
    let v = r.json();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["text"], "pqrstuvwxyz");
    let prompt_tokens = v["usage"]["prompt_tokens"].as_u64().unwrap();
    let r = gw
        .request(
            "POST",
            "/v1/messages/count_tokens",
            Some(br#"{"model":"m","messages":[{"role":"user","content":"Hello"}]}"#),
            &[("anthropic-version", "2023-06-01")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-switchyard-token-count"), Some("exact"));
    // The same prompt, templated and tokenized as the completion's was.
    assert_eq!(r.json()["input_tokens"].as_u64(), Some(prompt_tokens));
}
