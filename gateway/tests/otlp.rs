//! OpenTelemetry traces: spans POSTed as OTLP/HTTP JSON to a collector the test starts — a
//! server span continuing the caller's `traceparent`, a client span per upstream try, the GenAI
//! attributes and Switchyard's; `sample_ratio` honoured; a collector that is away costs no
//! request anything.

mod common;

use common::hooks::Receiver;
use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

const KEY: &str = "sk-otlp-key-0123456789";
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

fn config(fail: std::net::SocketAddr) -> String {
    format!(
        "providers:\n  - {{ name: sim, kind: mock }}\n  - name: broken\n    kind: openai\n    base_url: http://{fail}\n    api_key: sk-broken-secret\nmodels:\n  - name: chat\n    deployments:\n      - {{ provider: broken, model: gpt-x, priority: 1 }}\n      - {{ provider: sim, model: mock-1, priority: 2, price: {{ input_per_mtok: 1000, output_per_mtok: 1000 }} }}\nauth:\n  api_keys:\n    - {{ name: k1, key: {KEY}, team: t1 }}\n"
    )
}

/// A gateway whose config gains `telemetry.otlp` by a reload (the harness owns `telemetry`).
async fn traced(collector: &str, ratio: f64) -> Gateway {
    let gw = Gateway::start(&config(refused_addr()), "").await;
    let path = gw.dir.join("switchyard.yaml");
    let text = std::fs::read_to_string(&path).expect("config");
    let otlp = format!(
        "telemetry:\n  otlp:\n    endpoint: {collector}\n    sample_ratio: {ratio}\n    headers: {{ authorization: \"Bearer otlp-token\" }}\n"
    );
    gw.write_raw_config(&text.replacen("telemetry:\n", &otlp, 1));
    gw.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while gw
        .metric("switchyard_config_reloads_total{result=\"success\"}")
        .await
        != Some(1.0)
    {
        assert!(
            Instant::now() < deadline,
            "reload not applied:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw
}

fn attr<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

fn spans(receiver: &Receiver) -> Vec<Value> {
    receiver
        .seen()
        .iter()
        .flat_map(|d| {
            d.event["resourceSpans"][0]["scopeSpans"][0]["spans"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

async fn chat(gw: &Gateway, traceparent: Option<&str>) -> u16 {
    let auth = format!("Bearer {KEY}");
    let mut headers = vec![
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    if let Some(tp) = traceparent {
        headers.push(("traceparent", tp));
    }
    gw.request(
        "POST",
        "/v1/chat/completions",
        Some(br#"{"model":"chat","messages":[{"role":"user","content":"hi"}]}"#),
        &headers,
    )
    .await
    .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_a_server_span_with_a_client_span_per_try() {
    let collector = Receiver::start(200).await;
    let gw = traced(&collector.url, 1.0).await;
    let tp = format!("00-{TRACE}-{PARENT}-01");
    assert_eq!(chat(&gw, Some(&tp)).await, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while spans(&collector).len() < 3 {
        assert!(
            Instant::now() < deadline,
            "spans never arrived: {:?}",
            collector.seen()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = collector.seen();
    assert!(seen[0].path.ends_with("/v1/traces"), "{}", seen[0].path);
    assert_eq!(seen[0].authorization, "Bearer otlp-token");
    let all = spans(&collector);
    let server = all.iter().find(|s| s["kind"] == 2).expect("server span");
    assert_eq!(server["traceId"], TRACE);
    assert_eq!(server["parentSpanId"], PARENT);
    let s = |k: &str| attr(server, k).cloned().unwrap_or(Value::Null);
    assert_eq!(s("gen_ai.operation.name")["stringValue"], "chat");
    assert_eq!(s("gen_ai.provider.name")["stringValue"], "mock");
    assert_eq!(s("gen_ai.request.model")["stringValue"], "chat");
    assert_eq!(s("gen_ai.response.model")["stringValue"], "mock-1");
    assert!(s("gen_ai.usage.input_tokens")["intValue"]
        .as_str()
        .is_some());
    assert!(s("gen_ai.usage.output_tokens")["intValue"]
        .as_str()
        .is_some());
    assert_eq!(
        s("gen_ai.response.finish_reasons")["arrayValue"]["values"],
        serde_json::json!([{"stringValue": "stop"}]),
        "{server:#}"
    );
    assert_eq!(s("switchyard.key.name")["stringValue"], "k1");
    assert_eq!(s("switchyard.team")["stringValue"], "t1");
    assert!(s("switchyard.cost_usd")["doubleValue"]
        .as_f64()
        .is_some_and(|c| c > 0.0));
    assert!(attr(server, "error.type").is_none(), "served: no error");
    let start: u64 = server["startTimeUnixNano"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("start");
    let end: u64 = server["endTimeUnixNano"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("end");
    assert!(end >= start);

    // Two tries: the refused deployment (an error) then the one that served, both children of
    // the server span in the caller's trace.
    let clients: Vec<&Value> = all.iter().filter(|s| s["kind"] == 3).collect();
    assert_eq!(clients.len(), 2, "{all:#?}");
    for c in &clients {
        assert_eq!(c["traceId"], TRACE);
        assert_eq!(c["parentSpanId"], server["spanId"]);
    }
    assert_eq!(
        attr(clients[0], "gen_ai.request.model").expect("model")["stringValue"],
        "gpt-x"
    );
    assert!(attr(clients[0], "error.type").is_some());
    assert_eq!(clients[0]["status"]["code"], 2);
    assert_eq!(
        attr(clients[1], "gen_ai.request.model").expect("model")["stringValue"],
        "mock-1"
    );
    assert!(attr(clients[1], "error.type").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_ratio_zero_exports_only_callers_sampled_traces_and_a_dead_collector_costs_nothing()
{
    let collector = Receiver::start(200).await;
    let gw = traced(&collector.url, 0.0).await;
    for _ in 0..3 {
        assert_eq!(chat(&gw, None).await, 200);
    }
    let tp = format!("00-{TRACE}-{PARENT}-01");
    assert_eq!(chat(&gw, Some(&tp)).await, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while spans(&collector).is_empty() {
        assert!(Instant::now() < deadline, "the sampled trace never arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        spans(&collector).iter().all(|s| s["traceId"] == TRACE),
        "only the caller's sampled trace"
    );

    // No collector at all: requests are served as before.
    let gw = traced(&format!("http://{}", refused_addr()), 1.0).await;
    let started = Instant::now();
    for _ in 0..5 {
        assert_eq!(chat(&gw, None).await, 200);
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(gw
        .metric("switchyard_otlp_spans_dropped_total")
        .await
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finish_reasons_are_read_from_a_stream_in_the_callers_format() {
    let collector = Receiver::start(200).await;
    let gw = traced(&collector.url, 1.0).await;
    let r = gw
        .request(
            "POST",
            "/v1/messages",
            Some(br#"{"model":"chat","max_tokens":50,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#),
            &[
                ("x-api-key", KEY),
                ("anthropic-version", "2023-06-01"),
                ("content-type", "application/json"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.text().contains("\"stop_reason\":\"end_turn\""),
        "{}",
        r.text()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let server = loop {
        if let Some(s) = spans(&collector).into_iter().find(|s| s["kind"] == 2) {
            break s;
        }
        assert!(Instant::now() < deadline, "no server span");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        attr(&server, "gen_ai.response.finish_reasons").expect("finish reasons")["arrayValue"]
            ["values"],
        serde_json::json!([{"stringValue": "end_turn"}]),
        "{server:#}"
    );
}
