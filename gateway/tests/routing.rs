//! Routing: circuit breakers, Retry-After, strategies — against fault-injecting local upstreams.

mod common;

use common::*;
use std::time::Duration;
use switchyard_benches::upstream::{MockUpstream, MockUpstreamConfig};

const CHAT: &[u8] = br#"{"model":"fast","messages":[{"role":"user","content":"hi"}]}"#;

/// Model `fast` over providers `(name, base_url, provider extra YAML)`, in priority order; the
/// deployment of the i-th provider is `m{i+1}`.
fn model_over(providers: &[(&str, &str, &str)], model_extra: &str) -> String {
    let mut s = String::from("providers:\n");
    for (name, url, extra) in providers {
        s.push_str(&openai_provider(name, url, extra));
        s.push('\n');
    }
    s.push_str(&format!(
        "models:\n  - name: fast\n{model_extra}    deployments:\n"
    ));
    for (i, (name, _, _)) in providers.iter().enumerate() {
        s.push_str(&format!(
            "      - {{ provider: {name}, model: m{} }}\n",
            i + 1
        ));
    }
    s
}

fn two(a: &MockUpstream, b: &MockUpstream, model_extra: &str) -> String {
    model_over(
        &[("first", &a.base_url(), ""), ("second", &b.base_url(), "")],
        model_extra,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_circuit_opens_skips_the_deployment_then_probes_it() {
    let flaky = MockUpstream::start(MockUpstreamConfig {
        status: 503,
        ..Default::default()
    })
    .await
    .expect("upstream");
    let good = MockUpstream::start(MockUpstreamConfig::default())
        .await
        .expect("upstream");
    let gw = Gateway::start(
        &two(
            &flaky,
            &good,
            "    circuit_breaker: { failures: 2, open_for: 1s }\n",
        ),
        "",
    )
    .await;
    for _ in 0..2 {
        let r = gw.post_json("/v1/chat/completions", CHAT).await;
        assert_eq!(r.header("x-switchyard-provider"), Some("second"));
    }
    assert_eq!(flaky.request_count(), 2);
    // Open: skipped without a try.
    for _ in 0..3 {
        let r = gw.post_json("/v1/chat/completions", CHAT).await;
        assert_eq!(r.status, 200);
    }
    assert_eq!(flaky.request_count(), 2, "an open circuit was tried");
    assert_eq!(
        gw.metric(r#"switchyard_circuit_opened_total{provider="first"}"#)
            .await,
        Some(1.0)
    );
    assert_eq!(
        gw.metric(r#"switchyard_routing_skips_total{provider="first",reason="circuit_open"}"#)
            .await,
        Some(3.0)
    );
    assert_eq!(
        gw.metric_eventually(r#"switchyard_failovers_total{model="fast"}"#, 2.0)
            .await,
        Some(2.0)
    );
    let h = gw.request("GET", "/v1/health", None, &[]).await.json();
    assert_eq!(h["models"][0]["deployments"][0]["circuit"], "open", "{h}");
    // Half-open after open_for: one probe reaches it again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(gw.post_json("/v1/chat/completions", CHAT).await.status, 200);
    assert_eq!(flaky.request_count(), 3);
    let h = gw.request("GET", "/v1/health", None, &[]).await.json();
    assert_eq!(
        h["models"][0]["deployments"][0]["circuit"], "open",
        "the failed probe re-opens it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let limited = MockUpstream::start(MockUpstreamConfig {
        status: 429,
        error_headers: vec![("retry-after".into(), "2".into())],
        ..Default::default()
    })
    .await
    .expect("upstream");
    let good = MockUpstream::start(MockUpstreamConfig::default())
        .await
        .expect("upstream");
    let gw = Gateway::start(&two(&limited, &good, ""), "").await;
    assert_eq!(
        gw.post_json("/v1/chat/completions", CHAT)
            .await
            .header("x-switchyard-provider"),
        Some("second")
    );
    for _ in 0..3 {
        assert_eq!(gw.post_json("/v1/chat/completions", CHAT).await.status, 200);
    }
    assert_eq!(
        limited.request_count(),
        1,
        "a deployment inside its Retry-After was tried"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    gw.post_json("/v1/chat/completions", CHAT).await;
    assert_eq!(limited.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_requests() {
    let a = MockUpstream::start(MockUpstreamConfig::default())
        .await
        .expect("upstream");
    let b = MockUpstream::start(MockUpstreamConfig::default())
        .await
        .expect("upstream");
    let gw = Gateway::start(&two(&a, &b, "    strategy: round_robin\n"), "").await;
    for _ in 0..10 {
        assert_eq!(gw.post_json("/v1/chat/completions", CHAT).await.status, 200);
    }
    assert_eq!((a.request_count(), b.request_count()), (5, 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_latency_moves_traffic_to_the_fast_deployment() {
    let slow = MockUpstream::start(MockUpstreamConfig {
        first_byte_delay: Duration::from_millis(60),
        ..Default::default()
    })
    .await
    .expect("upstream");
    let fast = MockUpstream::start(MockUpstreamConfig::default())
        .await
        .expect("upstream");
    let gw = Gateway::start(&two(&slow, &fast, "    strategy: least_latency\n"), "").await;
    for _ in 0..40 {
        assert_eq!(gw.post_json("/v1/chat/completions", CHAT).await.status, 200);
    }
    // Both were measured; with two deployments p2c always compares both, so the fast one wins
    // every request once both have a sample.
    assert!(
        slow.request_count() >= 1,
        "the slow deployment was never probed"
    );
    assert!(
        fast.request_count() >= 35,
        "slow {} fast {}",
        slow.request_count(),
        fast.request_count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mesh_loop_ends_in_a_508() {
    // A node whose only deployment is itself: every hop adds one to x-switchyard-hops.
    // The deployment's upstream model is `fast` itself, so each hop asks this node again.
    let conf = model_over(&[("me", "http://127.0.0.1:{SELF_PORT}/v1", "")], "")
        .replace("model: m1", "model: fast");
    let gw = Gateway::start(&conf, "  max_hops: 3\n").await;
    let r = gw.post_json("/v1/chat/completions", CHAT).await;
    assert_eq!(r.status, 508, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "loop_detected");
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("limit 3"));
    // 508 is not retried: 3 hops, one request each (plus the caller's).
    let tries = gw
        .metric_eventually(
            r#"switchyard_upstream_attempts_total{outcome="ok",provider="me"}"#,
            3.0,
        )
        .await;
    assert_eq!(tries, Some(3.0));
}

async fn stream_text(gw: &Gateway) -> String {
    let r = gw
        .post_json(
            "/v1/chat/completions",
            br#"{"model":"fast","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
        )
        .await;
    assert_eq!(r.status, 200);
    r.text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_mid_stream_ends_with_an_error_event_and_is_not_retried() {
    let stalling = MockUpstream::start(MockUpstreamConfig {
        stall_after_events: Some(2),
        ..Default::default()
    })
    .await
    .expect("upstream");
    let spare = MockUpstream::start(MockUpstreamConfig::default())
        .await
        .expect("upstream");
    let conf = model_over(
        &[
            (
                "first",
                &stalling.base_url(),
                "    timeouts: { idle: 300ms }\n",
            ),
            ("second", &spare.base_url(), ""),
        ],
        "",
    );
    let gw = Gateway::start(&conf, "").await;
    let started = std::time::Instant::now();
    let text = stream_text(&gw).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the stall was not bounded"
    );
    assert_eq!(text.matches("chat.completion.chunk").count(), 2, "{text}");
    assert!(text.contains(r#"data: {"error":"#), "{text}");
    assert!(text.contains("idle timeout"), "{text}");
    assert_eq!(
        spare.request_count(),
        0,
        "retried after bytes reached the caller"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_mid_stream_ends_with_an_error_event() {
    let resetting = MockUpstream::start(MockUpstreamConfig {
        reset_after_events: Some(3),
        chunk_interval: Duration::from_millis(50),
        ..Default::default()
    })
    .await
    .expect("upstream");
    let conf = model_over(&[("first", &resetting.base_url(), "")], "");
    let gw = Gateway::start(&conf, "").await;
    let text = stream_text(&gw).await;
    assert_eq!(text.matches("chat.completion.chunk").count(), 3, "{text}");
    assert!(text.contains(r#"data: {"error":"#), "{text}");
    assert!(!text.contains("[DONE]"), "{text}");
    assert_eq!(resetting.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_bounds_every_try_together() {
    let slow_a = MockUpstream::start(MockUpstreamConfig {
        first_byte_delay: Duration::from_secs(5),
        ..Default::default()
    })
    .await
    .expect("upstream");
    let slow_b = MockUpstream::start(MockUpstreamConfig {
        first_byte_delay: Duration::from_secs(5),
        ..Default::default()
    })
    .await
    .expect("upstream");
    let gw = Gateway::start(&two(&slow_a, &slow_b, "    deadline: 700ms\n"), "").await;
    let started = std::time::Instant::now();
    let r = gw.post_json("/v1/chat/completions", CHAT).await;
    let took = started.elapsed();
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(
        took < Duration::from_millis(2000),
        "deadline of 700ms took {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hedging_beats_a_slow_upstream() {
    let slow = MockUpstream::start(MockUpstreamConfig {
        first_byte_delay: Duration::from_secs(2),
        ..Default::default()
    })
    .await
    .expect("upstream");
    let fast = MockUpstream::start(MockUpstreamConfig::default())
        .await
        .expect("upstream");
    let gw = Gateway::start(&two(&slow, &fast, "    hedge_after: 150ms\n"), "").await;
    let started = std::time::Instant::now();
    let r = gw.post_json("/v1/chat/completions", CHAT).await;
    let took = started.elapsed();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-switchyard-provider"), Some("second"));
    assert!(
        took < Duration::from_millis(1500),
        "hedge did not win: {took:?}"
    );
    assert_eq!((slow.request_count(), fast.request_count()), (1, 1));
    assert_eq!(
        gw.metric_eventually(r#"switchyard_hedges_total{model="fast"}"#, 1.0)
            .await,
        Some(1.0)
    );
    assert_eq!(
        gw.metric(
            r#"switchyard_upstream_attempts_total{outcome="hedge_cancelled",provider="first"}"#
        )
        .await,
        Some(1.0)
    );
    // Without a slow first deployment no hedge starts.
    let quick = MockUpstream::start(MockUpstreamConfig::default())
        .await
        .expect("upstream");
    let other = MockUpstream::start(MockUpstreamConfig::default())
        .await
        .expect("upstream");
    let gw2 = Gateway::start(&two(&quick, &other, "    hedge_after: 500ms\n"), "").await;
    assert_eq!(
        gw2.post_json("/v1/chat/completions", CHAT).await.status,
        200
    );
    assert_eq!((quick.request_count(), other.request_count()), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_health_checks_move_a_dead_provider_last() {
    let good = MockUpstream::start(MockUpstreamConfig::default())
        .await
        .expect("upstream");
    let dead = format!("http://{}/v1", refused_addr());
    let conf = model_over(
        &[
            (
                "dead",
                &dead,
                "    health_check: { interval: 100ms, timeout: 500ms }\n",
            ),
            (
                "good",
                &good.base_url(),
                "    health_check: { interval: 100ms }\n",
            ),
        ],
        "",
    );
    let gw = Gateway::start(&conf, "").await;
    // Probed before the listeners opened, then every 100ms: three failures make it unhealthy.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let h = gw.request("GET", "/v1/health", None, &[]).await.json();
        if h["providers"][0]["status"] == "unhealthy" {
            assert_eq!(h["providers"][1]["status"], "healthy");
            assert_eq!(h["status"], "degraded");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never marked unhealthy: {h}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The unhealthy provider is tried last: the request is answered with a single try.
    let r = gw.post_json("/v1/chat/completions", CHAT).await;
    assert_eq!(r.header("x-switchyard-provider"), Some("good"));
    let line = gw
        .access_line(|l| l["route"] == "chat_completions")
        .await
        .expect("line");
    assert_eq!(line["tries"], 1, "{line}");
    assert!(good
        .requests()
        .iter()
        .any(|r| r.path == "/v1/models"
            && r.header("authorization") == Some("Bearer sk-good-secret")));
    assert!(
        gw.log().contains("provider dead [openai]"),
        "routing table logged at start"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_at_quota_is_skipped() {
    let limited = MockUpstream::start(MockUpstreamConfig::default())
        .await
        .expect("upstream");
    let spare = MockUpstream::start(MockUpstreamConfig::default())
        .await
        .expect("upstream");
    let conf = model_over(
        &[
            (
                "limited",
                &limited.base_url(),
                "    rate_limit: { requests_per_minute: 2 }\n",
            ),
            ("spare", &spare.base_url(), ""),
        ],
        "",
    );
    let gw = Gateway::start(&conf, "").await;
    let mut served = Vec::new();
    for _ in 0..4 {
        let r = gw.post_json("/v1/chat/completions", CHAT).await;
        served.push(
            r.header("x-switchyard-provider")
                .unwrap_or_default()
                .to_string(),
        );
    }
    // Two per minute on `limited`; the rest spill (unless the minute just rolled over).
    assert!(limited.request_count() <= 3, "{served:?}");
    assert!(spare.request_count() >= 1, "{served:?}");
    assert!(
        gw.metric(r#"switchyard_routing_skips_total{provider="limited",reason="quota"}"#)
            .await
            .unwrap_or(0.0)
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_first_token_moves_on_to_the_next_deployment() {
    // The header comes at once, the first event only after 2s: first_byte (300ms) is about the
    // first token, not the header.
    let sluggish = MockUpstream::start(MockUpstreamConfig {
        first_event_delay: Duration::from_secs(2),
        ..Default::default()
    })
    .await
    .expect("upstream");
    let good = MockUpstream::start(MockUpstreamConfig::default())
        .await
        .expect("upstream");
    let conf = model_over(
        &[
            (
                "first",
                &sluggish.base_url(),
                "    timeouts: { first_byte: 300ms }\n",
            ),
            ("second", &good.base_url(), ""),
        ],
        "",
    );
    let gw = Gateway::start(&conf, "").await;
    let started = std::time::Instant::now();
    let r = gw
        .post_json(
            "/v1/chat/completions",
            br#"{"model":"fast","stream":true,"messages":[]}"#,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-switchyard-provider"), Some("second"));
    assert!(r.text().ends_with("data: [DONE]\n\n"));
    assert!(started.elapsed() < Duration::from_millis(1500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_rules_route_by_header() {
    let a = MockUpstream::start(MockUpstreamConfig::default())
        .await
        .expect("upstream");
    let b = MockUpstream::start(MockUpstreamConfig::default())
        .await
        .expect("upstream");
    let gw = Gateway::start(
        &two(
            &a,
            &b,
            "    strategy: conditional\n    rules:\n      - when: { header: x-tier, equals: premium }\n        deployments: [second]\n      - deployments: [first]\n",
        ),
        "",
    )
    .await;
    let premium = gw
        .request(
            "POST",
            "/v1/chat/completions",
            Some(CHAT),
            &[("content-type", "application/json"), ("x-tier", "premium")],
        )
        .await;
    assert_eq!(premium.header("x-switchyard-provider"), Some("second"));
    let plain = gw.post_json("/v1/chat/completions", CHAT).await;
    assert_eq!(plain.header("x-switchyard-provider"), Some("first"));
}

// ---- rate limits look like rate limits (issue 18, point 1) ----

/// The chat request as an Anthropic SDK sends it.
async fn ask_as_anthropic(gw: &Gateway) -> Reply {
    gw.request(
        "POST",
        "/v1/messages",
        Some(br#"{"model":"fast","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#),
        &[
            ("content-type", "application/json"),
            ("anthropic-version", "2023-06-01"),
        ],
    )
    .await
}

fn limited(retry_after: &str) -> MockUpstreamConfig {
    MockUpstreamConfig {
        status: 429,
        error_headers: vec![("retry-after".into(), retry_after.into())],
        error_body: Some(
            r#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#
                .into(),
        ),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_deployment_rate_limited_is_a_429_with_the_shortest_wait() {
    let a = MockUpstream::start(limited("5")).await.expect("upstream");
    let b = MockUpstream::start(limited("2")).await.expect("upstream");
    let gw = Gateway::start(
        &two(
            &a,
            &b,
            "    circuit_breaker: { failures: 1, open_for: 30s }\n",
        ),
        "",
    )
    .await;
    let r = gw.post_json("/v1/chat/completions", CHAT).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("2"));
    // (The last deployment's own 429 is relayed as it sent it.)
    assert_eq!(r.json()["error"]["code"], "rate_limit_exceeded");
    // Both are cooling: the next request is answered 429 by the gateway without reaching either.
    let again = gw.post_json("/v1/chat/completions", CHAT).await;
    assert_eq!(again.status, 429, "{}", again.text());
    let e = again.json();
    assert_eq!(e["error"]["type"], "rate_limit_error", "{e}");
    assert_eq!(e["error"]["code"], "rate_limit_exceeded", "{e}");
    assert_eq!((a.request_count(), b.request_count()), (1, 1));
    let ret: u64 = again
        .header("retry-after")
        .and_then(|s| s.parse().ok())
        .expect("retry-after");
    assert!((1..=2).contains(&ret), "{ret}");
    // An Anthropic caller gets Anthropic's rate-limit error.
    let r = ask_as_anthropic(&gw).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["error"]["type"], "rate_limit_error");
    // A 429 is a wait, not a failure: with failures: 1 neither circuit opened.
    let h = gw.request("GET", "/v1/health", None, &[]).await.json();
    for d in h["models"][0]["deployments"]
        .as_array()
        .expect("deployments")
    {
        assert_eq!(d["circuit"], "closed", "{h}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_deployment_with_retries_left_is_a_429_not_a_502() {
    let only = MockUpstream::start(limited("3")).await.expect("upstream");
    // The default policy retries the deployment; its Retry-After makes the retries wait.
    let gw = Gateway::start(&model_over(&[("only", &only.base_url(), "")], ""), "").await;
    let r = gw.post_json("/v1/chat/completions", CHAT).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("3"));
    assert_eq!(r.json()["error"]["code"], "rate_limit_exceeded");
    assert_eq!(only.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_refusal_of_the_request_keeps_its_status_in_the_callers_format() {
    let picky = MockUpstream::start(MockUpstreamConfig {
        status: 400,
        error_body: Some(
            r#"{"error":{"message":"Invalid 'messages[0].content'","type":"invalid_request_error","param":"messages[0].content","code":null}}"#
                .into(),
        ),
        ..Default::default()
    })
    .await
    .expect("upstream");
    let gw = Gateway::start(&model_over(&[("only", &picky.base_url(), "")], ""), "").await;
    let r = gw.post_json("/v1/chat/completions", CHAT).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"]["param"], "messages[0].content");
    let r = ask_as_anthropic(&gw).await;
    assert_eq!(r.status, 400, "{}", r.text());
    let e = r.json();
    assert_eq!(e["type"], "error", "{e}");
    assert_eq!(e["error"]["type"], "invalid_request_error", "{e}");
    assert_eq!(picky.request_count(), 2, "a request error is not retried");
}
