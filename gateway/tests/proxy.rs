//! Integration tests: the real gateway binary against real local upstreams.

mod common;

use common::*;
use std::time::{Duration, Instant};
use switchyard_benches::upstream::{
    chat_completion_body, stream_events, MockUpstream, MockUpstreamConfig,
};

fn ok_upstream() -> MockUpstreamConfig {
    MockUpstreamConfig::default()
}

/// One model `fast` served by `providers` (YAML list items) through `deployments`.
fn config(providers: &[String], deployments: &[(&str, &str)], model_extra: &str) -> String {
    let mut s = String::from("providers:\n");
    for p in providers {
        s.push_str(p);
        s.push('\n');
    }
    s.push_str("models:\n  - name: fast\n    aliases: [\"gpt-4o-mini\"]\n");
    s.push_str(model_extra);
    s.push_str("    deployments:\n");
    for (provider, model) in deployments {
        s.push_str(&format!(
            "      - provider: {provider}\n        model: {model}\n"
        ));
    }
    s
}

async fn single(up: &MockUpstream) -> Gateway {
    let conf = config(
        &[openai_provider("up", &up.base_url(), "")],
        &[("up", "mock-model")],
        "",
    );
    Gateway::start(&conf, "").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_stream_passes_bytes_through_and_swaps_only_the_model() {
    let up = MockUpstream::start(ok_upstream()).await.expect("upstream");
    let gw = single(&up).await;
    // Odd spacing, key order and unicode must survive untouched.
    let body = "{ \"messages\" : [{\"role\":\"user\",\"content\":\"h\u{e9}llo \\\"model\\\"\"}],\n  \"model\":  \"gpt-4o-mini\", \"temperature\": 0.25, \"x_extra\": {\"a\": [1,2,3]} }";
    let r = gw
        .request(
            "POST",
            "/v1/chat/completions",
            Some(body.as_bytes()),
            &[
                ("content-type", "application/json"),
                ("authorization", "Bearer sk-caller-key"),
                ("x-api-key", "sk-caller-key"),
                ("x-request-id", "caller-req-1"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, chat_completion_body("mock-model").as_bytes());
    assert_eq!(r.header("x-request-id"), Some("caller-req-1"));
    assert_eq!(r.header("x-switchyard-provider"), Some("up"));
    assert_eq!(r.header("x-switchyard-model"), Some("mock-model"));

    let reqs = up.requests();
    assert_eq!(reqs.len(), 1);
    let seen = &reqs[0];
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(
        seen.body,
        body.replace("\"gpt-4o-mini\"", "\"mock-model\"").as_bytes()
    );
    assert_eq!(seen.header("authorization"), Some("Bearer sk-up-secret"));
    assert_eq!(seen.header("x-api-key"), None);
    assert_eq!(seen.header("x-request-id"), Some("caller-req-1"));
    assert!(!format!("{:?}", seen.headers).contains("sk-caller-key"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infer_endpoint_has_the_same_contract() {
    let up = MockUpstream::start(ok_upstream()).await.expect("upstream");
    let gw = single(&up).await;
    let r = gw
        .post_json(
            "/v1/ai/infer",
            br#"{"model":"fast","messages":[{"role":"user","content":"x"}]}"#,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, chat_completion_body("mock-model").as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_hides_the_injected_usage_chunk_but_meters_it() {
    let up = MockUpstream::start(MockUpstreamConfig {
        stream_chunks: 4,
        ..ok_upstream()
    })
    .await
    .expect("upstream");
    let gw = single(&up).await;
    let r = gw
        .post_json(
            "/v1/chat/completions",
            br#"{"model":"fast","stream":true,"messages":[{"role":"user","content":"x"}]}"#,
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap_or("")
        .starts_with("text/event-stream"));
    assert_eq!(r.text(), stream_events("mock-model", 4, false).concat());
    // The upstream was asked for usage...
    let sent: serde_json::Value = serde_json::from_slice(&up.requests()[0].body).expect("json");
    assert_eq!(sent["stream_options"]["include_usage"], true);
    // ...and it was metered.
    let completion = gw
        .metric_eventually(
            r#"switchyard_tokens_total{direction="completion",model="fast",provider="up"}"#,
            1.0,
        )
        .await;
    assert!(completion.unwrap_or(0.0) > 0.0, "{}", gw.metrics().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_with_requested_usage_is_byte_exact() {
    let up = MockUpstream::start(ok_upstream()).await.expect("upstream");
    let gw = single(&up).await;
    let body =
        br#"{"model":"fast","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#;
    let r = gw.post_json("/v1/chat/completions", body).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), stream_events("mock-model", 3, true).concat());
    let seen = &up.requests()[0].body;
    assert_eq!(
        seen.as_ref(),
        String::from_utf8_lossy(body)
            .replace("\"fast\"", "\"mock-model\"")
            .as_bytes()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_events_are_relayed_as_they_arrive() {
    let interval = Duration::from_millis(250);
    let up = MockUpstream::start(MockUpstreamConfig {
        stream_chunks: 4,
        chunk_interval: interval,
        ..ok_upstream()
    })
    .await
    .expect("upstream");
    let gw = single(&up).await;
    let started = Instant::now();
    let resp = gw
        .open_stream(br#"{"model":"fast","stream":true,"messages":[]}"#)
        .await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let first = next_data(&mut body, Duration::from_secs(5))
        .await
        .expect("first event");
    let first_at = started.elapsed();
    assert!(String::from_utf8_lossy(&first).starts_with("data: "));
    let mut last_at = first_at;
    while next_data(&mut body, Duration::from_secs(5)).await.is_some() {
        last_at = started.elapsed();
    }
    // 4 content chunks + role + finish + usage + [DONE] are spaced by `interval` upstream: if the
    // gateway buffered, everything would arrive together at the end.
    assert!(
        last_at - first_at >= interval * 4,
        "first event at {first_at:?}, last at {last_at:?}: the stream was buffered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_over_when_the_first_deployment_refuses_connections() {
    let up = MockUpstream::start(ok_upstream()).await.expect("upstream");
    let dead = format!("http://{}/v1", refused_addr());
    let conf = config(
        &[
            openai_provider("dead", &dead, ""),
            openai_provider("up", &up.base_url(), ""),
        ],
        &[("dead", "m1"), ("up", "mock-model")],
        "",
    );
    let gw = Gateway::start(&conf, "").await;
    let r = gw
        .post_json("/v1/chat/completions", br#"{"model":"fast","messages":[]}"#)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-switchyard-provider"), Some("up"));
    assert_eq!(
        gw.metric(r#"switchyard_upstream_attempts_total{outcome="connect_error",provider="dead"}"#)
            .await,
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2_mib_prompt_reaches_the_second_deployment_intact_after_a_5xx() {
    let failing = MockUpstream::start(MockUpstreamConfig {
        status: 503,
        ..ok_upstream()
    })
    .await
    .expect("upstream");
    let up = MockUpstream::start(ok_upstream()).await.expect("upstream");
    let conf = config(
        &[
            openai_provider("flaky", &failing.base_url(), ""),
            openai_provider("up", &up.base_url(), ""),
        ],
        &[("flaky", "m1"), ("up", "mock-model")],
        "",
    );
    let gw = Gateway::start(&conf, "").await;
    let prompt: String = (0..2 * 1024 * 1024)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let body = format!(r#"{{"model":"fast","messages":[{{"role":"user","content":"{prompt}"}}]}}"#);
    let r = gw.post_json("/v1/chat/completions", body.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-switchyard-provider"), Some("up"));
    let first = &failing.requests()[0].body;
    let second = &up.requests()[0].body;
    assert_eq!(
        first.as_ref(),
        body.replace("\"fast\"", "\"m1\"").as_bytes()
    );
    assert_eq!(
        second.as_ref(),
        body.replace("\"fast\"", "\"mock-model\"").as_bytes()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_deployment_error_is_relayed_as_the_provider_sent_it() {
    let limited = MockUpstream::start(MockUpstreamConfig {
        status: 429,
        error_body: Some(r#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#.into()),
        ..ok_upstream()
    })
    .await
    .expect("upstream");
    let gw = single(&limited).await;
    let r = gw
        .post_json("/v1/chat/completions", br#"{"model":"fast","messages":[]}"#)
        .await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"]["code"], "rate_limit_exceeded");
    // One deployment, three attempts: retried with backoff, then the provider's answer relayed.
    assert_eq!(limited.request_count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_deployment_unreachable_is_a_502() {
    let dead1 = format!("http://{}/v1", refused_addr());
    let dead2 = format!("http://{}/v1", refused_addr());
    let conf = config(
        &[
            openai_provider("d1", &dead1, ""),
            openai_provider("d2", &dead2, ""),
        ],
        &[("d1", "a"), ("d2", "b")],
        "    retry: { attempts: 2 }\n",
    );
    let gw = Gateway::start(&conf, "").await;
    let r = gw
        .post_json("/v1/chat/completions", br#"{"model":"fast","messages":[]}"#)
        .await;
    assert_eq!(r.status, 502);
    let e = r.json();
    assert_eq!(e["error"]["code"], "no_deployment_available");
    assert_eq!(e["error"]["type"], "upstream_error");
    let msg = e["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("d1/a") && msg.contains("d2/b"), "{msg}");
    assert!(!msg.contains("secret"), "{msg}");
    // The health endpoint reflects the failures.
    let h = gw.request("GET", "/v1/health", None, &[]).await.json();
    assert_eq!(h["providers"][0]["consecutive_failures"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_timeout_is_a_504() {
    let slow = MockUpstream::start(MockUpstreamConfig {
        first_byte_delay: Duration::from_secs(3),
        ..ok_upstream()
    })
    .await
    .expect("upstream");
    let conf = config(
        &[openai_provider(
            "slow",
            &slow.base_url(),
            "    timeouts: { total: 300ms, first_byte: 300ms }\n",
        )],
        &[("slow", "m")],
        "    retry: { attempts: 1 }\n",
    );
    let gw = Gateway::start(&conf, "").await;
    let r = gw
        .post_json("/v1/chat/completions", br#"{"model":"fast","messages":[]}"#)
        .await;
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "upstream_timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_fails_over_to_the_next_deployment() {
    let slow = MockUpstream::start(MockUpstreamConfig {
        first_byte_delay: Duration::from_secs(3),
        ..ok_upstream()
    })
    .await
    .expect("upstream");
    let up = MockUpstream::start(ok_upstream()).await.expect("upstream");
    let conf = config(
        &[
            openai_provider("slow", &slow.base_url(), "    timeouts: { total: 300ms }\n"),
            openai_provider("up", &up.base_url(), ""),
        ],
        &[("slow", "m"), ("up", "mock-model")],
        "",
    );
    let gw = Gateway::start(&conf, "").await;
    let r = gw
        .post_json("/v1/chat/completions", br#"{"model":"fast","messages":[]}"#)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-switchyard-provider"), Some("up"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_openai_errors() {
    let up = MockUpstream::start(ok_upstream()).await.expect("upstream");
    let gw = Gateway::start(
        &config(
            &[openai_provider("up", &up.base_url(), "")],
            &[("up", "mock-model")],
            "",
        ),
        "  max_body_bytes: 4096\n",
    )
    .await;
    let cases: &[(&[u8], u16, &str)] = &[
        (b"{\"model\":", 400, "invalid_json"),
        (b"not json", 400, "invalid_json"),
        (b"[1]", 400, "invalid_json"),
        (b"{\"messages\":[]}", 400, "missing_model"),
        (b"{\"model\":42}", 400, "invalid_model"),
        (
            b"{\"model\":\"nope\",\"messages\":[]}",
            404,
            "model_not_found",
        ),
        (
            b"{\"model\":\"fast\",\"stream\":\"yes\"}",
            400,
            "invalid_type",
        ),
    ];
    for (body, status, code) in cases {
        let r = gw.post_json("/v1/chat/completions", body).await;
        assert_eq!(r.status, *status, "{}", String::from_utf8_lossy(body));
        let e = r.json();
        assert_eq!(e["error"]["code"], *code, "{e}");
        assert!(e["error"]["message"].is_string());
        assert!(e["error"]["type"].is_string());
        assert!(r.header("x-request-id").is_some());
    }
    let big = vec![b' '; 5000];
    let r = gw.post_json("/v1/chat/completions", &big).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["error"]["code"], "request_too_large");

    let r = gw.request("GET", "/v1/nowhere", None, &[]).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "unknown_url");
    let r = gw.request("GET", "/v1/chat/completions", None, &[]).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
    assert_eq!(r.json()["error"]["code"], "method_not_allowed");
    let r = gw.request("DELETE", "/v1/models", None, &[]).await;
    assert_eq!(r.status, 405);
    // Nothing above reached the upstream.
    assert_eq!(up.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_body_with_chunked_encoding_is_refused_while_reading() {
    let up = MockUpstream::start(ok_upstream()).await.expect("upstream");
    let gw = Gateway::start(
        &config(
            &[openai_provider("up", &up.base_url(), "")],
            &[("up", "m")],
            "",
        ),
        "  max_body_bytes: 1024\n",
    )
    .await;
    // hyper sends a streamed body as chunked; use a raw socket to be explicit.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", gw.port))
        .await
        .expect("connect");
    let chunk = vec![b'x'; 800];
    let mut req =
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
            .to_vec();
    for _ in 0..2 {
        req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        req.extend_from_slice(&chunk);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    s.write_all(&req).await.expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("request_too_large"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_health_and_metrics() {
    let up = MockUpstream::start(ok_upstream()).await.expect("upstream");
    let gw = single(&up).await;
    let r = gw.request("GET", "/v1/models", None, &[]).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, vec!["fast", "gpt-4o-mini"]);
    assert_eq!(v["data"][0]["object"], "model");

    let h = gw.request("GET", "/v1/health", None, &[]).await;
    assert_eq!(h.status, 200);
    let h = h.json();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["providers"][0]["name"], "up");
    assert_eq!(h["providers"][0]["kind"], "openai");
    assert_eq!(h["providers"][0]["status"], "healthy");

    let r = gw
        .post_json("/v1/chat/completions", br#"{"model":"fast","messages":[]}"#)
        .await;
    assert_eq!(r.status, 200);
    let text = gw.metrics().await;
    for family in [
        "switchyard_requests_total",
        "switchyard_request_duration_seconds",
        "switchyard_time_to_first_byte_seconds",
        "switchyard_upstream_attempts_total",
        "switchyard_upstream_duration_seconds",
        "switchyard_tokens_total",
        "switchyard_active_requests",
        "switchyard_active_streams",
        "switchyard_provider_up",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "missing {family}:\n{text}"
        );
    }
    assert_eq!(
        gw.metric_eventually(
            r#"switchyard_requests_total{model="fast",provider="up",status="2xx"}"#,
            1.0
        )
        .await,
        Some(1.0)
    );
    assert_eq!(
        gw.metric_eventually(
            r#"switchyard_tokens_total{direction="prompt",model="fast",provider="up"}"#,
            9.0
        )
        .await,
        Some(9.0)
    );
    // /metrics lives on the admin listener only.
    assert_eq!(gw.request("GET", "/metrics", None, &[]).await.status, 404);
    // The access log has one JSON line per request, without credentials.
    let chat_line = gw
        .access_line(|l| l["route"] == "chat_completions")
        .await
        .expect("access log line");
    let log = gw.access_log();
    assert!(!log.contains("sk-caller-key") && !log.contains("sk-up-secret"));
    assert_eq!(chat_line["provider"], "up");
    assert_eq!(chat_line["status"], 200);
    assert_eq!(chat_line["prompt_tokens"], 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_callers_are_served() {
    let up = MockUpstream::start(ok_upstream()).await.expect("upstream");
    let gw = single(&up).await;
    let r = gw
        .request_h2(
            "POST",
            "/v1/chat/completions",
            Some(br#"{"model":"fast","messages":[]}"#),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, chat_completion_body("mock-model").as_bytes());
    let r = gw
        .request_h2(
            "POST",
            "/v1/chat/completions",
            Some(br#"{"model":"fast","stream":true,"messages":[]}"#),
        )
        .await;
    assert_eq!(r.text(), stream_events("mock-model", 3, false).concat());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_disconnects_mid_stream_frees_the_stream() {
    let up = MockUpstream::start(MockUpstreamConfig {
        stream_chunks: 50,
        chunk_interval: Duration::from_millis(100),
        ..ok_upstream()
    })
    .await
    .expect("upstream");
    let gw = single(&up).await;
    let resp = gw
        .open_stream(br#"{"model":"fast","stream":true,"messages":[]}"#)
        .await;
    let mut body = resp.into_body();
    assert!(next_data(&mut body, Duration::from_secs(5)).await.is_some());
    assert_eq!(gw.metric("switchyard_active_streams").await, Some(1.0));
    drop(body);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let streams = gw.metric("switchyard_active_streams").await;
        let requests = gw.metric("switchyard_active_requests").await;
        if streams == Some(0.0) && requests == Some(0.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "stream not freed: {streams:?} {requests:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The gateway is still fine.
    let r = gw
        .post_json("/v1/chat/completions", br#"{"model":"fast","messages":[]}"#)
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_built_in_mock_provider_answers() {
    let conf = "providers:\n  - name: sim\n    kind: mock\n    chunks: 3\nmodels:\n  - name: chat\n    deployments:\n      - provider: sim\n        model: mock-1\n";
    let gw = Gateway::start(conf, "").await;
    let body = br#"{"model":"chat","messages":[{"role":"user","content":"hello"}]}"#;
    let a = gw.post_json("/v1/chat/completions", body).await.json();
    let b = gw.post_json("/v1/chat/completions", body).await.json();
    assert_eq!(a["choices"][0]["message"], b["choices"][0]["message"]);
    assert_eq!(a["model"], "mock-1");
    assert!(a["usage"]["prompt_tokens"].as_u64().unwrap_or(0) > 0);
    let s = gw
        .post_json(
            "/v1/chat/completions",
            br#"{"model":"chat","stream":true,"messages":[{"role":"user","content":"hello"}]}"#,
        )
        .await;
    let text = s.text();
    assert_eq!(text.matches("data: ").count(), 1 + 3 + 1 + 1);
    assert!(text.ends_with("data: [DONE]\n\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_every_error_with_its_path() {
    let dir = scratch_dir("switchyard-check");
    let bad = dir.join("bad.yaml");
    // One file, six kinds of problem; every one must be reported in the same run.
    let text = "\
server:
  listen: [\"127.0.0.1:1\"]
  bogus: 1
providers:
  - name: openai
    kind: opnai
    base_url: http://127.0.0.1:9/v1
    timeouts: { connect: 5 parsecs }
models:
  - name: a
    strategy: fastestt
    deployments: [{provider: openai, model: x, weight: lots}]
  - name: b
    deployments:
      - provider: nope
        model: y
        price: { input_per_mtok: 1 }
";
    std::fs::write(&bad, text).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["check", "--conf"])
        .arg(&bad)
        .output()
        .expect("run check");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let at = bad.display().to_string();
    for (line, what) in [
        (3, "server.bogus: unknown field `bogus`"),
        (
            6,
            "providers[0].kind: unknown provider kind \"opnai\": did you mean \"openai\"?",
        ),
        (8, "providers[0].timeouts.connect:"),
        (11, "models[0].strategy: unknown strategy \"fastestt\""),
        (
            12,
            "models[0].deployments[0].weight: invalid type: string \"lots\"",
        ),
        (
            15,
            "models[1].deployments[0].provider: unknown provider \"nope\"",
        ),
        (
            17,
            "models[1].deployments[0].price: missing field `output_per_mtok`",
        ),
    ] {
        assert!(
            stderr.contains(&format!("{at}:{line}: {what}")),
            "{line} {what}:\n{stderr}"
        );
    }
    assert!(stderr.contains("7 error(s)"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn config_errors_show_references_not_the_secrets_they_expand_to() {
    let dir = scratch_dir("switchyard-secret-check");
    let files = [
        // A URL with the key in its query, and a duration that is a key: validation errors.
        ("values.yaml", "server:\n  listen: [\"127.0.0.1:1\"]\nproviders:\n  - name: g\n    kind: openai\n    base_url: \"http://127.0.0.1:9/v1?key=${GEMINI_API_KEY}\"\n    api_key: ${GEMINI_API_KEY}\n    timeouts: { connect: \"${CONNECT_TIMEOUT}\" }\nmodels:\n  - name: a\n    deployments: [{provider: g, model: x}]\n", &["${GEMINI_API_KEY}", "${CONNECT_TIMEOUT}"][..]),
        // A string where a number belongs: a structural error.
        ("types.yaml", "server:\n  listen: [\"127.0.0.1:1\"]\n  threads: ${WORKER_THREADS}\nproviders: []\nmodels: []\n", &["${WORKER_THREADS}"][..]),
    ];
    for (name, text, references) in files {
        let conf = dir.join(name);
        std::fs::write(&conf, text).expect("write");
        for command in ["check", "run"] {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
                .args([command, "--conf"])
                .arg(&conf)
                .env("GEMINI_API_KEY", "AIza-hunter2-gemini-0123456789")
                .env("CONNECT_TIMEOUT", "sk-hunter2-duration-0123")
                .env("WORKER_THREADS", "sk-hunter2-threads-0123")
                .output()
                .expect("run the binary");
            assert!(!out.status.success(), "{command} accepted {name}");
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                !text.contains("hunter2"),
                "{command} {name} printed a secret:\n{text}"
            );
            for r in references {
                assert!(
                    text.contains(r),
                    "{command} {name} does not show {r}:\n{text}"
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_file_in_conf_is_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("conf dir") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["check", "--conf"])
            .arg(&path)
            .env("OPENAI_API_KEY", "sk-test")
            .env("SWITCHYARD_ADMIN_TOKEN", "test-admin-token-0123456789")
            .env("INTROSPECTION_SECRET", "test-introspection-secret")
            .env("EVENTS_SECRET", "test-events-secret")
            .output()
            .expect("run check");
        assert!(
            out.status.success(),
            "{} is invalid:\n{}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(table.contains("model "), "{table}");
        checked += 1;
    }
    assert!(
        checked >= 2,
        "expected quickstart.yaml and full.yaml in conf/"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_stream_answers_say_what_they_cost() {
    let up = MockUpstream::start(ok_upstream()).await.expect("upstream");
    let conf = format!(
        "providers:\n{}\nmodels:\n  - name: fast\n    deployments:\n      - {{ provider: up, model: mock-model, price: {{ input_per_mtok: 1, output_per_mtok: 2 }} }}\n",
        openai_provider("up", &up.base_url(), "")
    );
    let gw = Gateway::start(&conf, "").await;
    let r = gw
        .post_json("/v1/chat/completions", br#"{"model":"fast","messages":[]}"#)
        .await;
    assert_eq!(r.status, 200);
    // The mock reports 9 prompt and 12 completion tokens: (9 × 1 + 12 × 2) / 1e6 USD.
    assert_eq!(r.header("x-switchyard-cost-usd"), Some("0.00003300"));
    assert_eq!(r.body, chat_completion_body("mock-model").as_bytes());
    let line = gw
        .access_line(|l| l["route"] == "chat_completions")
        .await
        .expect("line");
    assert!(
        (line["cost_usd"].as_f64().unwrap_or(0.0) - 0.000033).abs() < 1e-12,
        "{line}"
    );
}

// ---------------------------------------------------------------------------------------------
// Bounds: a broken upstream cannot take memory or time without bound; slow callers are cut off.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads one request (head, then a `Content-Length` body) from an upstream's socket.
async fn read_upstream_request(s: &mut TcpStream) -> bool {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        match s.read(&mut tmp).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    };
    let len = content_length(&buf[..head_end]).unwrap_or(0);
    while buf.len() < head_end + len {
        match s.read(&mut tmp).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
    true
}

/// The `Content-Length` of an HTTP/1.1 head.
fn content_length(head: &[u8]) -> Option<usize> {
    String::from_utf8_lossy(head)
        .to_ascii_lowercase()
        .lines()
        .find_map(|l| {
            l.strip_prefix("content-length:")
                .map(|v| v.trim().to_string())
        })
        .and_then(|v| v.parse().ok())
}

/// An upstream on a raw socket: each request is read, then `answer` writes whatever it likes.
/// Returns its base URL.
async fn raw_upstream<F, Fut>(answer: F) -> String
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                if read_upstream_request(&mut s).await {
                    answer(s).await;
                }
            });
        }
    });
    format!("http://{addr}/v1")
}

/// Writes one HTTP/1.1 chunk; `false` once the gateway closed the connection.
async fn write_chunk(s: &mut TcpStream, data: &[u8]) -> bool {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    s.write_all(&out).await.is_ok()
}

/// Writes a chunked answer's `head` and `opening`, then up to 400 MiB of `x` as fast as it goes,
/// counting what went into `sent`, until the gateway closes the connection.
async fn send_endless(mut s: TcpStream, head: &[u8], opening: &[u8], sent: Arc<AtomicUsize>) {
    let _ = s.write_all(head).await;
    let _ = write_chunk(&mut s, opening).await;
    let piece = vec![b'x'; 256 * 1024];
    for _ in 0..1600 {
        if !write_chunk(&mut s, &piece).await {
            return;
        }
        sent.fetch_add(piece.len(), Ordering::Relaxed);
    }
}

const CHUNKED_SSE_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";

const STREAM_REQUEST: &[u8] = br#"{"model":"fast","stream":true,"messages":[]}"#;

/// A gateway whose model `fast` is served by the upstream at `base` with these `timeouts`.
async fn gateway_for(base: &str, timeouts: &str, model_extra: &str) -> Gateway {
    let conf = config(
        &[openai_provider(
            "up",
            base,
            &format!("    timeouts: {timeouts}\n"),
        )],
        &[("up", "m")],
        model_extra,
    );
    Gateway::start(&conf, "").await
}

/// What a caller got from a stream.
struct Streamed {
    total: usize,
    /// The first 64 KiB.
    head: String,
    /// The last 4 KiB or so.
    tail: String,
    elapsed: Duration,
}

/// Reads a caller's stream to its end (at most `limit`).
async fn read_stream(gw: &Gateway, limit: Duration) -> Streamed {
    let started = Instant::now();
    let mut body = gw.open_stream(STREAM_REQUEST).await.into_body();
    let mut total = 0usize;
    let mut kept = Vec::new();
    let mut last: Vec<u8> = Vec::new();
    let deadline = started + limit;
    while let Some(data) = next_data(
        &mut body,
        deadline.saturating_duration_since(Instant::now()),
    )
    .await
    {
        total += data.len();
        if kept.len() < 64 * 1024 {
            kept.extend_from_slice(&data);
        }
        last.extend_from_slice(&data);
        if last.len() > 8192 {
            last.drain(..last.len() - 4096);
        }
    }
    Streamed {
        total,
        head: String::from_utf8_lossy(&kept).into_owned(),
        tail: String::from_utf8_lossy(&last).into_owned(),
        elapsed: started.elapsed(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_pass_through_event_ends_the_stream_with_an_error_event() {
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    let base = raw_upstream(move |s| {
        // One complete event, then one that never ends.
        let first: &[u8] = b"data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\ndata: {\"id\":\"c\",\"x\":\"";
        send_endless(s, CHUNKED_SSE_HEAD, first, counter.clone())
    })
    .await;
    let gw = gateway_for(&base, "{ total: 20s, idle: 5s, first_byte: 5s }", "").await;
    let rss_before = gw.peak_rss_kib();
    let got = read_stream(&gw, Duration::from_secs(20)).await;
    assert!(
        got.elapsed < Duration::from_secs(20),
        "took {:?}\n{}",
        got.elapsed,
        gw.log()
    );
    assert!(got.head.starts_with("data: {\"id\":\"c\""), "{}", got.head);
    assert!(
        got.head.contains("\"error\"") && got.head.contains("exceeds"),
        "no error event: {}",
        got.head
    );
    // Nothing of the oversized event reached the caller.
    assert!(got.total < 4096, "the caller got {} bytes", got.total);
    // The gateway held at most the 16 MiB cap (plus its buffer's growth), and let go of the
    // upstream soon after it.
    let grown = gw.peak_rss_kib().saturating_sub(rss_before);
    assert!(grown < 96 * 1024, "peak RSS grew by {grown} KiB");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let upstream_sent = sent.load(Ordering::Relaxed);
    assert!(
        upstream_sent < 120 * 1024 * 1024,
        "the upstream could still send {upstream_sent} bytes"
    );
    let line = gw
        .access_line(|l| l["route"] == "chat_completions")
        .await
        .expect("access line");
    assert_eq!(line["error"], "upstream_stream_error", "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_never_pauses_ends_at_the_total_timeout() {
    let base = raw_upstream(|mut s| async move {
        let _ = s.write_all(CHUNKED_SSE_HEAD).await;
        let ev =
            b"data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\n";
        // As fast as it goes: the gateway's reads always find data waiting, so no read
        // timeout can fire.
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if !write_chunk(&mut s, ev).await {
                return;
            }
        }
    })
    .await;
    let gw = gateway_for(&base, "{ total: 2s, idle: 1s, first_byte: 1s }", "").await;
    let got = read_stream(&gw, Duration::from_secs(15)).await;
    assert_about_2s(got.elapsed);
    assert!(got.total > 0);
    assert!(got.tail.contains("total timeout"), "{}", got.tail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_chunked_non_stream_answer_is_a_502() {
    let base = raw_upstream(|s| {
        let head =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
        let opening = b"{\"id\":\"c\",\"choices\":[{\"message\":{\"content\":\"";
        send_endless(s, head, opening, Arc::default())
    })
    .await;
    let gw = gateway_for(
        &base,
        "{ total: 20s, idle: 5s }",
        "    retry: { attempts: 1 }\n",
    )
    .await;
    let rss_before = gw.peak_rss_kib();
    let started = Instant::now();
    let r = gw
        .post_json("/v1/chat/completions", br#"{"model":"fast","messages":[]}"#)
        .await;
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "upstream_body_too_large");
    assert_eq!(r.json()["error"]["type"], "upstream_error");
    // At most the 64 MiB cap was held (with its buffer's growth): before, the whole answer was
    // kept, twice.
    let grown = gw.peak_rss_kib().saturating_sub(rss_before);
    assert!(grown < 200 * 1024, "peak RSS grew by {grown} KiB");
}

/// A gateway whose callers get 2 s for a head, a body and an idle keep-alive (and its upstream),
/// and a raw connection to it.
async fn slow_caller_gateway() -> (Gateway, MockUpstream, TcpStream) {
    let up = MockUpstream::start(ok_upstream()).await.expect("upstream");
    let conf = config(
        &[openai_provider("up", &up.base_url(), "")],
        &[("up", "m")],
        "",
    );
    let gw = Gateway::start(
        &conf,
        "  client_timeouts: { header: 2s, body: 2s, idle: 2s }\n",
    )
    .await;
    let s = TcpStream::connect(("127.0.0.1", gw.port))
        .await
        .expect("connect");
    (gw, up, s)
}

/// The configured 2 s, give or take scheduling.
fn assert_about_2s(after: Duration) {
    assert!(
        after >= Duration::from_millis(1500) && after < Duration::from_secs(5),
        "after {after:?}"
    );
}

/// Reads until the gateway closes the connection (or `limit`); returns what came and when it
/// closed.
async fn read_until_closed(
    r: &mut (impl AsyncRead + Unpin),
    limit: Duration,
) -> (Vec<u8>, Option<Instant>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, r.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (got, Some(Instant::now())),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (got, None),
        }
    }
}

/// Sends `bytes` one at a time, `every` apart, while reading what the gateway answers until it
/// closes the connection; returns the answer and how long after the first trickled byte was due
/// the connection closed.
async fn trickle(s: TcpStream, bytes: &'static [u8], every: Duration) -> (String, Duration) {
    let started = Instant::now();
    let (mut r, mut w) = s.into_split();
    let writer = tokio::spawn(async move {
        for b in bytes {
            tokio::time::sleep(every).await;
            if w.write_all(&[*b]).await.is_err() {
                return;
            }
        }
    });
    let (got, closed) = read_until_closed(&mut r, Duration::from_secs(10)).await;
    writer.abort();
    let closed = closed.expect("the connection stayed open");
    (String::from_utf8_lossy(&got).into_owned(), closed - started)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_trickling_its_head_is_disconnected_after_the_header_deadline() {
    let (_gw, _up, mut s) = slow_caller_gateway().await;
    s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
        .await
        .expect("write");
    // Then one byte a second: every read gets something, so no per-read timeout fires.
    let (answer, after) = trickle(
        s,
        b"x-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        Duration::from_secs(1),
    )
    .await;
    assert!(answer.is_empty(), "{answer}");
    assert_about_2s(after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_closed_after_the_header_deadline() {
    let (_gw, _up, mut s) = slow_caller_gateway().await;
    let started = Instant::now();
    let (got, closed) = read_until_closed(&mut s, Duration::from_secs(10)).await;
    assert!(got.is_empty());
    assert_about_2s(closed.expect("the connection stayed open") - started);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_trickling_its_body_gets_a_408() {
    let (_gw, _up, mut s) = slow_caller_gateway().await;
    s.write_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{",
    )
    .await
    .expect("write");
    let (answer, after) = trickle(s, &[b' '; 99], Duration::from_millis(500)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"type\":\"timeout\""), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert_about_2s(after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kept_alive_connection_is_closed() {
    let (_gw, _up, mut s) = slow_caller_gateway().await;
    s.write_all(b"GET /v1/health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    // The answer comes, and the connection stays open for another request...
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let answered = loop {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("an answer")
            .expect("read");
        assert!(n > 0, "closed before answering");
        got.extend_from_slice(&buf[..n]);
        if let Some(head_end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let len = content_length(&got[..head_end]).expect("content-length");
            if got.len() >= head_end + 4 + len {
                break Instant::now();
            }
        }
    };
    assert!(got.starts_with(b"HTTP/1.1 200"));
    // ...until it has been idle for 2 s.
    let (more, closed) = read_until_closed(&mut s, Duration::from_secs(10)).await;
    assert!(more.is_empty());
    assert_about_2s(closed.expect("the idle connection stayed open") - answered);
}

// ---- bounded request heads (issue 18, point 15) ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_over_max_header_bytes_is_a_431_in_the_callers_format() {
    let up = MockUpstream::start(ok_upstream()).await.expect("upstream");
    let gw = single(&up).await;
    let big = "x".repeat(200 * 1024);
    let r = gw
        .request(
            "POST",
            "/v1/chat/completions",
            Some(br#"{"model":"fast","messages":[{"role":"user","content":"hi"}]}"#),
            &[("content-type", "application/json"), ("x-padding", &big)],
        )
        .await;
    assert_eq!(r.status, 431, "{}", r.text());
    let e = r.json();
    assert_eq!(e["error"]["code"], "request_header_fields_too_large", "{e}");
    let r = gw
        .request(
            "POST",
            "/v1/messages",
            Some(br#"{"model":"fast","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#),
            &[("anthropic-version", "2023-06-01"), ("x-padding", &big)],
        )
        .await;
    assert_eq!(r.status, 431, "{}", r.text());
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    // The gateway is still up and a normal request passes; nothing reached the upstream before.
    assert_eq!(up.request_count(), 0);
    let ok = gw
        .post_json(
            "/v1/chat/completions",
            br#"{"model":"fast","messages":[{"role":"user","content":"hi"}]}"#,
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
}
