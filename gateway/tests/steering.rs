//! Callers steering routing: `model: "auto"` across candidate models with a per-request strategy
//! (`routingStrategy` / `x-switchyard-strategy`) and a `task`, limited to the models the caller
//! may use; hints on any model (`maxCostPerRequest` / `x-switchyard-max-cost`, `retryAttempts`);
//! hint fields never reach a provider.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;
use switchyard_benches::upstream::{MockUpstream, MockUpstreamConfig};

async fn upstream(status: u16, delay_ms: u64) -> MockUpstream {
    MockUpstream::start(MockUpstreamConfig {
        status,
        first_byte_delay: Duration::from_millis(delay_ms),
        ..Default::default()
    })
    .await
    .expect("upstream")
}

struct Three {
    cheap: MockUpstream,
    premium: MockUpstream,
    coder: MockUpstream,
}

impl Three {
    async fn start() -> Three {
        // premium answers at once; the others take 40 ms to their first byte.
        Three {
            cheap: upstream(200, 40).await,
            premium: upstream(200, 0).await,
            coder: upstream(200, 40).await,
        }
    }

    fn config(&self, auth: &str) -> String {
        format!(
            r#"providers:
{}
{}
{}
models:
  - name: chat
    deployments:
      - {{ provider: premium, model: p1, quality: 90, price: {{ input_per_mtok: 10, output_per_mtok: 30 }} }}
  - name: chat-cheap
    deployments:
      - {{ provider: cheap, model: c1, quality: 40, price: {{ input_per_mtok: 0.1, output_per_mtok: 0.1 }} }}
  - name: claude-code
    deployments:
      - {{ provider: coder, model: k1, quality: 70, price: {{ input_per_mtok: 3, output_per_mtok: 15 }} }}
  - name: both
    retry: {{ attempts: 3, backoff: {{ base: 1ms, max: 2ms }} }}
    deployments:
      - {{ provider: premium, model: p1, price: {{ input_per_mtok: 10, output_per_mtok: 30 }} }}
      - {{ provider: cheap, model: c1, price: {{ input_per_mtok: 0.1, output_per_mtok: 0.1 }} }}
  - name: auto
    candidates: [chat, chat-cheap, claude-code]
    tasks: {{ code-generation: [claude-code], summarize: [chat-cheap] }}
{auth}"#,
            openai_provider("cheap", &self.cheap.base_url(), ""),
            openai_provider("premium", &self.premium.base_url(), ""),
            openai_provider("coder", &self.coder.base_url(), ""),
        )
    }
}

fn body(model: &str, extra: Value) -> Vec<u8> {
    let mut b =
        json!({"model": model, "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]});
    if let (Some(o), Some(e)) = (b.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    serde_json::to_vec(&b).unwrap_or_default()
}

async fn send(gw: &Gateway, b: &[u8], headers: &[(&str, &str)]) -> Reply {
    gw.request("POST", "/v1/chat/completions", Some(b), headers)
        .await
}

/// The body the upstream received last.
fn last_sent(u: &MockUpstream) -> Value {
    let reqs = u.requests();
    let last = reqs.last().expect("a request reached the upstream");
    serde_json::from_slice(&last.body).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_routes_by_each_strategy_and_task_and_strips_the_hints() {
    let t = Three::start().await;
    let gw = Gateway::start(&t.config(""), "").await;

    let r = send(
        &gw,
        &body("auto", json!({"routingStrategy": "cheapest"})),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-switchyard-provider"), Some("cheap"));
    assert_eq!(r.header("x-switchyard-model"), Some("c1"));
    let sent = last_sent(&t.cheap);
    assert_eq!(sent["model"], "c1");
    assert!(
        sent.get("routingStrategy").is_none(),
        "hint reached the provider: {sent}"
    );

    let r = send(
        &gw,
        &body("auto", json!({})),
        &[("x-switchyard-strategy", "quality")],
    )
    .await;
    assert_eq!(r.header("x-switchyard-provider"), Some("premium"));
    assert_eq!(r.header("x-switchyard-model"), Some("p1"));

    // fastest: once each deployment is measured, premium (no delay) wins most requests.
    // (power of two choices: the fastest wins every pair it is in, about 2/3 of requests)
    let mut premium = 0;
    for i in 0..40 {
        let r = send(
            &gw,
            &body("auto", json!({"routingStrategy": "fastest"})),
            &[],
        )
        .await;
        assert_eq!(r.status, 200);
        if i >= 10 {
            premium += usize::from(r.header("x-switchyard-provider") == Some("premium"));
        }
    }
    assert!(premium >= 14, "fastest chose premium {premium}/30");

    // reliability: all succeed, so the fastest scores best and takes most requests.
    let mut premium = 0;
    for _ in 0..30 {
        let r = send(
            &gw,
            &body("auto", json!({"routingStrategy": "reliability"})),
            &[],
        )
        .await;
        assert_eq!(r.status, 200);
        premium += usize::from(r.header("x-switchyard-provider") == Some("premium"));
    }
    assert!(premium >= 15, "reliability chose premium {premium}/30");

    // A task narrows the candidates whatever the strategy.
    let r = send(
        &gw,
        &body(
            "auto",
            json!({"task": "code-generation", "routingStrategy": "cheapest"}),
        ),
        &[],
    )
    .await;
    assert_eq!(r.header("x-switchyard-provider"), Some("coder"));
    let sent = last_sent(&t.coder);
    assert!(
        sent.get("task").is_none() && sent.get("routingStrategy").is_none(),
        "{sent}"
    );
    let r = send(
        &gw,
        &body("auto", json!({"task": "summarize"})),
        &[("x-switchyard-strategy", "quality")],
    )
    .await;
    assert_eq!(r.header("x-switchyard-provider"), Some("cheap"));

    let bad = send(
        &gw,
        &body("auto", json!({"routingStrategy": "psychic"})),
        &[],
    )
    .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["error"]["param"], "routingStrategy");

    // A task the model's `tasks` map does not name is refused, listing the known ones.
    let before = t.cheap.request_count() + t.premium.request_count() + t.coder.request_count();
    let bad = send(&gw, &body("auto", json!({"task": "poetry"})), &[]).await;
    assert_eq!(bad.status, 400, "{}", bad.text());
    let err = &bad.json()["error"];
    assert_eq!(err["param"], "task", "{err}");
    assert_eq!(err["code"], "unknown_task", "{err}");
    let message = err["message"].as_str().unwrap_or("");
    assert!(
        message.contains("poetry") && message.contains("code-generation, summarize"),
        "{err}"
    );
    let after = t.cheap.request_count() + t.premium.request_count() + t.coder.request_count();
    assert_eq!(after, before, "an unknown task reached a provider");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_only_routes_to_models_the_caller_may_use() {
    let t = Three::start().await;
    let key = "sk-steering-limited-0123456789";
    let auth = format!(
        "auth:\n  api_keys:\n    - {{ name: app, key: \"{key}\", models: [auto, chat-cheap] }}\n"
    );
    let gw = Gateway::start(&t.config(&auth), "").await;
    let bearer = format!("Bearer {key}");
    for _ in 0..3 {
        let r = send(
            &gw,
            &body("auto", json!({"routingStrategy": "quality"})),
            &[("authorization", &bearer)],
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-switchyard-provider"), Some("cheap"));
    }
    assert_eq!(t.premium.request_count(), 0);
    assert_eq!(t.coder.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_cost_skips_expensive_deployments_and_refuses_when_none_fits() {
    let t = Three::start().await;
    let gw = Gateway::start(&t.config(""), "").await;
    // `both` tries premium first; 100 output tokens at $30/Mtok is $0.003 there, $0.00001 on cheap.
    let r = send(&gw, &body("both", json!({})), &[]).await;
    assert_eq!(r.header("x-switchyard-provider"), Some("premium"));
    let r = send(&gw, &body("both", json!({"maxCostPerRequest": 0.001})), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-switchyard-provider"), Some("cheap"));
    assert!(last_sent(&t.cheap).get("maxCostPerRequest").is_none());
    let r = send(
        &gw,
        &body("both", json!({})),
        &[("x-switchyard-max-cost", "0.001")],
    )
    .await;
    assert_eq!(r.header("x-switchyard-provider"), Some("cheap"));

    let before = t.cheap.request_count() + t.premium.request_count();
    let r = send(
        &gw,
        &body("both", json!({})),
        &[("x-switchyard-max-cost", "0.0000001")],
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    let err = &r.json()["error"];
    assert_eq!(err["code"], "max_cost_exceeded", "{err}");
    assert_eq!(err["param"], "maxCostPerRequest", "{err}");
    assert!(
        err["message"].as_str().unwrap_or("").contains("0.0000001"),
        "{err}"
    );
    assert_eq!(t.cheap.request_count() + t.premium.request_count(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_attempts_lowers_the_tries_never_raises_them() {
    let (a, b) = (upstream(503, 0).await, upstream(503, 0).await);
    let cfg = format!(
        "providers:\n{}\n{}\nmodels:\n  - name: m\n    retry: {{ attempts: 3, backoff: {{ base: 1ms, max: 2ms }} }}\n    deployments:\n      - {{ provider: a, model: x }}\n      - {{ provider: b, model: y }}\n",
        openai_provider("a", &a.base_url(), ""),
        openai_provider("b", &b.base_url(), ""),
    );
    let gw = Gateway::start(&cfg, "").await;
    let r = send(&gw, &body("m", json!({"retryAttempts": 1})), &[]).await;
    assert_eq!(r.status, 503);
    assert_eq!(a.request_count() + b.request_count(), 1);
    let r = send(&gw, &body("m", json!({"retryAttempts": 50})), &[]).await;
    assert_eq!(r.status, 503);
    assert_eq!(
        a.request_count() + b.request_count(),
        4,
        "capped at retry.attempts (3)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_providers_are_tried_after_the_models_own_deployments() {
    let (down, cheap, premium) = (
        upstream(503, 0).await,
        upstream(200, 0).await,
        upstream(200, 0).await,
    );
    let cfg = format!(
        "providers:\n{}\n{}\n{}\n  - {{ name: sim, kind: mock }}\nmodels:\n  - name: chat-cheap\n    deployments:\n      - {{ provider: cheap, model: c1 }}\n  - name: premium-chat\n    deployments:\n      - {{ provider: premium, model: p1 }}\n  - name: solo\n    retry: {{ attempts: 1 }}\n    deployments:\n      - {{ provider: down, model: c1 }}\n  - name: odd\n    retry: {{ attempts: 1 }}\n    deployments:\n      - {{ provider: down, model: zz-1 }}\n",
        openai_provider("down", &down.base_url(), ""),
        openai_provider("cheap", &cheap.base_url(), ""),
        openai_provider("premium", &premium.base_url(), ""),
    );
    let gw = Gateway::start(&cfg, "").await;
    // Without the hint the model's own failure is the answer.
    let r = send(&gw, &body("solo", json!({})), &[]).await;
    assert_eq!(r.status, 503, "{}", r.text());

    // A provider by name: `cheap` already serves solo's upstream model c1 (for chat-cheap).
    let r = send(
        &gw,
        &body("solo", json!({"fallbackProviders": ["cheap"]})),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-switchyard-provider"), Some("cheap"));
    assert_eq!(r.header("x-switchyard-fallback"), None);
    let sent = last_sent(&cheap);
    assert_eq!(sent["model"], "c1");
    assert!(sent.get("fallbackProviders").is_none(), "{sent}");

    // No deployment of zz-1 on premium: the model's first deployment of premium's kind names it.
    let r = send(
        &gw,
        &body("odd", json!({})),
        &[("x-switchyard-fallback-providers", "premium")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-switchyard-provider"), Some("premium"));
    assert_eq!(last_sent(&premium)["model"], "zz-1");

    // By kind, with no deployment of that kind: the public model name.
    let r = send(
        &gw,
        &body("odd", json!({"fallbackProviders": ["mock"]})),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-switchyard-provider"), Some("sim"));
    assert_eq!(r.header("x-switchyard-model"), Some("odd"));

    // The model's own deployments go first: a healthy one serves without the hint's providers.
    let before = premium.request_count();
    let r = send(
        &gw,
        &body("chat-cheap", json!({"fallbackProviders": ["premium"]})),
        &[],
    )
    .await;
    assert_eq!(r.header("x-switchyard-provider"), Some("cheap"));
    assert_eq!(premium.request_count(), before);

    let bad = send(
        &gw,
        &body("solo", json!({"fallbackProviders": ["nowhere"]})),
        &[],
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert_eq!(bad.json()["error"]["param"], "fallbackProviders");
}
