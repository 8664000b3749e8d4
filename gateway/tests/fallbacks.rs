//! Model fallbacks (`models[].fallbacks`): each trigger — every deployment failed, the prompt
//! fits no deployment's `context_window` — moves the request to the next fallback model, and the
//! answer (`x-switchyard-fallback`) and the access log say which model served.

mod common;

use common::*;
use switchyard_benches::upstream::{MockUpstream, MockUpstreamConfig};

fn chat(model: &str, text: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": text}],
    }))
    .unwrap_or_default()
}

async fn upstream(status: u16) -> MockUpstream {
    MockUpstream::start(MockUpstreamConfig {
        status,
        ..Default::default()
    })
    .await
    .expect("upstream")
}

/// Three upstreams answering with `statuses`, and a gateway where `chat` (over `primary`, its
/// deployment YAML extra in `window`) falls back to `fallbacks`; `backup` and `spare` are models
/// of their own.
struct Setup {
    gw: Gateway,
    primary: MockUpstream,
    backup: MockUpstream,
    spare: MockUpstream,
}

async fn start(statuses: [u16; 3], window: &str, fallbacks: &str) -> Setup {
    let (primary, backup, spare) = (
        upstream(statuses[0]).await,
        upstream(statuses[1]).await,
        upstream(statuses[2]).await,
    );
    let config = format!(
        "providers:\n{}\n{}\n{}\nmodels:\n  - name: chat\n    fallbacks: {fallbacks}\n    retry: {{ attempts: 2, backoff: {{ base: 1ms, max: 2ms }} }}\n    deployments:\n      - {{ provider: primary, model: p1{window} }}\n  - name: backup\n    deployments:\n      - {{ provider: backup, model: b1 }}\n  - name: spare\n    deployments:\n      - {{ provider: spare, model: s1 }}\n",
        openai_provider("primary", &primary.base_url(), ""),
        openai_provider("backup", &backup.base_url(), ""),
        openai_provider("spare", &spare.base_url(), ""),
    );
    Setup {
        gw: Gateway::start(&config, "").await,
        primary,
        backup,
        spare,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_deployment_fails_the_next_fallback_model_serves() {
    let Setup {
        gw,
        primary,
        backup,
        spare,
    } = start([503, 500, 200], "", "[backup, spare]").await;
    let r = gw
        .post_json("/v1/chat/completions", &chat("chat", "hello"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-switchyard-fallback"), Some("spare"));
    assert_eq!(r.header("x-switchyard-provider"), Some("spare"));
    assert_eq!(r.header("x-switchyard-model"), Some("s1"));
    // The primary was tried (twice: its retry budget), then each fallback in order.
    assert_eq!(primary.request_count(), 2);
    assert!(backup.request_count() >= 1);
    assert_eq!(spare.request_count(), 1);
    let sent: serde_json::Value = serde_json::from_slice(&spare.requests()[0].body).expect("json");
    assert_eq!(sent["model"], "s1");
    let line = gw
        .access_line(|l| l["route"] != "health" && l["status"] == 200)
        .await
        .expect("access line");
    assert_eq!(line["model"], "spare", "{line}");
    assert_eq!(line["provider"], "spare", "{line}");
    // 2 tries on chat, 3 on backup (its own retry policy), 1 on spare.
    assert_eq!(line["tries"], 6, "{line}");
    // A model that answers itself names no fallback.
    let r = gw
        .post_json("/v1/chat/completions", &chat("spare", "hello"))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-switchyard-fallback"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_no_fallback_answers_the_requested_models_error_is_answered() {
    let Setup {
        gw, backup, spare, ..
    } = start([503, 500, 500], "", "[backup]").await;
    let r = gw
        .post_json("/v1/chat/completions", &chat("chat", "hello"))
        .await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.header("x-switchyard-fallback"), None);
    let msg = r.json()["error"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(msg.contains("`chat`"), "{msg}");
    assert!(backup.request_count() >= 1, "the fallback was not tried");
    assert_eq!(spare.request_count(), 0, "spare is not a fallback of chat");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_over_every_context_window_goes_to_the_fallback() {
    let Setup {
        gw,
        primary,
        backup,
        ..
    } = start([200, 200, 200], ", context_window: 200", "[backup]").await;
    let short = gw
        .post_json("/v1/chat/completions", &chat("chat", "hello"))
        .await;
    assert_eq!(short.status, 200);
    assert_eq!(short.header("x-switchyard-fallback"), None);
    assert_eq!(short.header("x-switchyard-provider"), Some("primary"));
    let long_text = "word ".repeat(400); // ≈ 500 tokens at 4 bytes a token
    let long = gw
        .post_json("/v1/chat/completions", &chat("chat", &long_text))
        .await;
    assert_eq!(long.status, 200, "{}", long.text());
    assert_eq!(long.header("x-switchyard-fallback"), Some("backup"));
    assert_eq!(
        primary.request_count(),
        1,
        "a prompt over the window was sent"
    );
    assert_eq!(backup.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_over_every_context_window_without_fallbacks_is_a_400_on_messages() {
    let Setup { gw, primary, .. } = start([200, 200, 200], ", context_window: 200", "[]").await;
    let long = gw
        .post_json("/v1/chat/completions", &chat("chat", &"word ".repeat(400)))
        .await;
    assert_eq!(long.status, 400, "{}", long.text());
    let err = &long.json()["error"];
    assert_eq!(err["param"], "messages", "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap_or("")
            .contains("context window"),
        "{err}"
    );
    assert_eq!(primary.request_count(), 0);
}

/// OpenAI's content-policy refusal (Azure OpenAI sends the same shape with `content_filter`).
const POLICY_REFUSAL: &str = r#"{"error":{"message":"Your request was rejected as a result of our safety system.","type":"invalid_request_error","param":null,"code":"content_policy_violation"}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_content_policy_refusal_moves_to_the_fallback_model_not_another_deployment() {
    use common::canned::Canned;
    let refusing = Canned::start(400, "application/json", POLICY_REFUSAL).await;
    let other = upstream(200).await;
    let backup = upstream(200).await;
    let plain_400 = Canned::start(
        400,
        "application/json",
        r#"{"error":{"message":"bad temperature","type":"invalid_request_error","param":"temperature","code":null}}"#,
    )
    .await;
    let config = format!(
        "providers:\n{}\n{}\n{}\n{}\nmodels:\n  - name: chat\n    fallbacks: [backup]\n    strategy: priority\n    retry: {{ attempts: 2, backoff: {{ base: 1ms, max: 2ms }} }}\n    circuit_breaker: {{ failures: 2, open_for: 30s }}\n    deployments:\n      - {{ provider: refusing, model: r1, priority: 1 }}\n      - {{ provider: other, model: o1, priority: 2 }}\n  - name: backup\n    deployments:\n      - {{ provider: backup, model: b1 }}\n  - name: alone\n    deployments:\n      - {{ provider: refusing, model: r1 }}\n  - name: picky\n    fallbacks: [backup]\n    deployments:\n      - {{ provider: plain, model: p1 }}\n",
        openai_provider("refusing", &refusing.base, ""),
        openai_provider("other", &other.base_url(), ""),
        openai_provider("backup", &backup.base_url(), ""),
        openai_provider("plain", &plain_400.base, ""),
    );
    let gw = Gateway::start(&config, "").await;
    for i in 1..=4 {
        let r = gw
            .post_json("/v1/chat/completions", &chat("chat", "something flagged"))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-switchyard-fallback"), Some("backup"));
        assert_eq!(r.header("x-switchyard-provider"), Some("backup"));
        // Not an outage: the refusing deployment is asked first every time (its circuit, at
        // two failures, never opens) and the model's other deployment is never asked.
        assert_eq!(refusing.raw().len(), i);
        assert_eq!(other.request_count(), 0);
    }
    let line = gw
        .access_line(|l| l["route"] != "health" && l["status"] == 200)
        .await
        .expect("access line");
    assert_eq!(line["model"], "backup", "{line}");

    // Without a fallback the provider's refusal reaches the caller as it was sent.
    let r = gw
        .post_json("/v1/chat/completions", &chat("alone", "something flagged"))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], "content_policy_violation");
    // Any other 400 is the caller's own error: relayed byte for byte, no fallback.
    let before = backup.request_count();
    let r = gw
        .post_json("/v1/chat/completions", &chat("picky", "hi"))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "temperature", "{}", r.text());
    assert_eq!(r.header("x-switchyard-fallback"), None);
    assert_eq!(backup.request_count(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_content_policy_refusal_with_no_fallback_answering_is_a_400_in_the_callers_format() {
    use common::canned::Canned;
    let refusing = Canned::start(400, "application/json", POLICY_REFUSAL).await;
    let down = upstream(503).await;
    let config = format!(
        "providers:\n{}\n{}\nmodels:\n  - name: chat\n    fallbacks: [backup]\n    deployments:\n      - {{ provider: refusing, model: r1 }}\n  - name: backup\n    retry: {{ attempts: 1 }}\n    deployments:\n      - {{ provider: down, model: d1 }}\n",
        openai_provider("refusing", &refusing.base, ""),
        openai_provider("down", &down.base_url(), ""),
    );
    let gw = Gateway::start(&config, "").await;
    let r = gw
        .post_json("/v1/chat/completions", &chat("chat", "something flagged"))
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    let e = r.json();
    assert_eq!(e["error"]["code"], "content_policy_violation", "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("safety system"),
        "{e}"
    );
    assert!(down.request_count() >= 1, "the fallback was not tried");
    // The Anthropic ingress gets it in its own format.
    let body = br#"{"model":"chat","max_tokens":10,"messages":[{"role":"user","content":"something flagged"}]}"#;
    let r = gw
        .request(
            "POST",
            "/v1/messages",
            Some(body),
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["type"], "error");
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_withheld_for_content_policy_moves_to_the_fallback_model() {
    use common::canned::Canned;
    // Azure's filtered completion (a 200 whose choice ends `content_filter`, as documented for
    // Azure OpenAI's content filtering) and Gemini's blocked prompt (a 200 with
    // `promptFeedback.blockReason` and no candidates, as in Gemini's API reference).
    let filtered = Canned::start(
        200,
        "application/json",
        r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"finish_reason":"content_filter","message":{"role":"assistant","content":null}}],"usage":{"prompt_tokens":9,"completion_tokens":0,"total_tokens":9}}"#,
    )
    .await;
    let blocked = Canned::start(
        200,
        "application/json",
        r#"{"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":9,"totalTokenCount":9}}"#,
    )
    .await;
    let backup = upstream(200).await;
    let config = format!(
        "providers:\n{}\n  - {{ name: gem, kind: gemini, base_url: {}, api_key: g-key }}\n{}\nmodels:\n  - name: filtered\n    fallbacks: [backup]\n    deployments:\n      - {{ provider: filtered, model: f1 }}\n  - name: blocked\n    fallbacks: [backup]\n    deployments:\n      - {{ provider: gem, model: gemini-2.0-flash }}\n  - name: backup\n    deployments:\n      - {{ provider: backup, model: b1 }}\n  - name: alone\n    deployments:\n      - {{ provider: filtered, model: f1 }}\n",
        openai_provider("filtered", &filtered.base, ""),
        blocked.base,
        openai_provider("backup", &backup.base_url(), ""),
    );
    let gw = Gateway::start(&config, "").await;
    for model in ["filtered", "blocked"] {
        let r = gw
            .post_json("/v1/chat/completions", &chat(model, "something flagged"))
            .await;
        assert_eq!(r.status, 200, "{model}: {}", r.text());
        assert_eq!(r.header("x-switchyard-fallback"), Some("backup"), "{model}");
        assert_eq!(r.header("x-switchyard-provider"), Some("backup"), "{model}");
    }
    assert_eq!(backup.request_count(), 2);
    // Without a fallback model the withheld answer is relayed as the provider sent it.
    let r = gw
        .post_json("/v1/chat/completions", &chat("alone", "something flagged"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(backup.request_count(), 2);
}
