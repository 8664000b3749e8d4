//! The response cache end to end (issue #22): the real gateway against a local upstream that
//! counts the calls it gets. A repeat is answered without a provider call (`x-switchyard-cache:
//! hit`, `age`, the original body and usage, cost 0 with the saving in the ledger and metrics);
//! misses, bypasses, caller control headers, errors, scopes and the routes that cache.

mod common;

use common::*;
use serde_json::Value;
use std::time::Duration;
use switchyard_benches::upstream::{MockUpstream, MockUpstreamConfig};

const K1: &str = "sk-cache-key-one";
const K2: &str = "sk-cache-key-two";
const K3: &str = "sk-cache-key-three";

/// Model `cached` (opted in) and `plain` (not), both on `up`, priced so a hit saves money.
fn config(up: &MockUpstream, cache_ttl: &str, extra: &str) -> String {
    let price = "price: { input_per_mtok: 1000, output_per_mtok: 2000 }";
    format!(
        "providers:\n{}models:\n  - name: cached\n    cache: {{ ttl: {cache_ttl} }}\n    deployments:\n      - {{ provider: up, model: mock-model, {price} }}\n  - name: plain\n    deployments:\n      - {{ provider: up, model: mock-model, {price} }}\n{extra}",
        openai_provider("up", &up.base_url(), "")
    )
}

const ASK: &str = r#"{"model":"cached","messages":[{"role":"user","content":"What is a switchyard?"}],"temperature":0.2}"#;

async fn ask(gw: &Gateway, path: &str, body: &str, headers: &[(&str, &str)]) -> Reply {
    let mut h = vec![("content-type", "application/json")];
    if !headers.iter().any(|(k, _)| *k == "authorization") {
        h.push(("authorization", "Bearer sk-caller"));
    }
    h.extend_from_slice(headers);
    gw.request("POST", path, Some(body.as_bytes()), &h).await
}

fn verdict(r: &Reply) -> Option<&str> {
    r.header("x-switchyard-cache")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_is_answered_from_the_cache_without_a_provider_call() {
    let up = MockUpstream::start(MockUpstreamConfig::default())
        .await
        .expect("upstream");
    let gw = Gateway::start(&config(&up, "10m", ""), "").await;
    let first = ask(&gw, "/v1/chat/completions", ASK, &[]).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(verdict(&first), Some("miss"));
    assert_eq!(up.request_count(), 1);
    let cost: f64 = first
        .header("x-switchyard-cost-usd")
        .and_then(|c| c.parse().ok())
        .expect("a priced miss");
    assert!(cost > 0.0);

    // Same question, other key order and whitespace, plus fields that cannot change the answer.
    let again = r#"{ "temperature": 0.2, "user": "someone", "stream": false, "metadata": {"run": "2"},
        "messages": [ {"content": "What is a switchyard?", "role": "user"} ], "model": "cached" }"#;
    let hit = ask(&gw, "/v1/chat/completions", again, &[]).await;
    assert_eq!(hit.status, 200, "{}", hit.text());
    assert_eq!(verdict(&hit), Some("hit"));
    assert_eq!(up.request_count(), 1, "a hit never reaches the provider");
    assert_eq!(hit.body, first.body, "the original body, usage included");
    assert_eq!(hit.json()["usage"]["total_tokens"], 21);
    let age: u64 = hit.header("age").and_then(|a| a.parse().ok()).expect("age");
    assert!(age < 60);
    assert_eq!(hit.header("x-switchyard-cost-usd"), Some("0.00000000"));

    // Another temperature is another question.
    let other = ASK.replace("0.2", "0.3");
    let r = ask(&gw, "/v1/chat/completions", &other, &[]).await;
    assert_eq!(verdict(&r), Some("miss"));
    assert_eq!(up.request_count(), 2);

    // A model that did not opt in is never cached.
    let plain = ASK.replace("\"cached\"", "\"plain\"");
    for _ in 0..2 {
        let r = ask(&gw, "/v1/chat/completions", &plain, &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(verdict(&r), Some("bypass"));
    }
    assert_eq!(up.request_count(), 4);

    assert_eq!(
        gw.metric_eventually("switchyard_cache_hits_total", 1.0)
            .await,
        Some(1.0)
    );
    assert_eq!(gw.metric("switchyard_cache_misses_total").await, Some(2.0));
    let saved = gw
        .metric("switchyard_cache_saved_usd_total")
        .await
        .expect("saved");
    assert!((saved - cost).abs() < 1e-9, "saved {saved}, cost {cost}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_control_no_cache_no_store_and_ttl() {
    let up = MockUpstream::start(MockUpstreamConfig::default())
        .await
        .expect("upstream");
    let gw = Gateway::start(&config(&up, "10m", ""), "").await;
    let q = |n: u32| ASK.replace("switchyard?", &format!("switchyard {n}?"));

    // no-cache: skips the lookup, still stores.
    let r = ask(&gw, "/v1/chat/completions", &q(1), &[]).await;
    assert_eq!(verdict(&r), Some("miss"));
    let r = ask(
        &gw,
        "/v1/chat/completions",
        &q(1),
        &[("cache-control", "no-cache")],
    )
    .await;
    assert_eq!(verdict(&r), Some("miss"));
    assert_eq!(up.request_count(), 2, "no-cache asked the provider again");
    let r = ask(&gw, "/v1/chat/completions", &q(1), &[]).await;
    assert_eq!(verdict(&r), Some("hit"));
    assert_eq!(up.request_count(), 2);

    // no-store: neither looks up nor stores.
    let r = ask(
        &gw,
        "/v1/chat/completions",
        &q(2),
        &[("cache-control", "no-store")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(verdict(&r), Some("bypass"));
    let r = ask(&gw, "/v1/chat/completions", &q(2), &[]).await;
    assert_eq!(verdict(&r), Some("miss"), "no-store stored nothing");
    let r = ask(
        &gw,
        "/v1/chat/completions",
        &q(1),
        &[("cache-control", "no-store")],
    )
    .await;
    assert_eq!(verdict(&r), Some("bypass"), "no-store does not read either");
    assert_eq!(up.request_count(), 5);

    // x-switchyard-cache-ttl: this entry lives 1 s instead of the model's 10 m.
    let r = ask(
        &gw,
        "/v1/chat/completions",
        &q(3),
        &[("x-switchyard-cache-ttl", "1s")],
    )
    .await;
    assert_eq!(verdict(&r), Some("miss"));
    let r = ask(&gw, "/v1/chat/completions", &q(3), &[]).await;
    assert_eq!(verdict(&r), Some("hit"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = ask(&gw, "/v1/chat/completions", &q(3), &[]).await;
    assert_eq!(verdict(&r), Some("miss"), "expired after its own ttl");
    assert_eq!(up.request_count(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_ttl_expires_entries() {
    let up = MockUpstream::start(MockUpstreamConfig::default())
        .await
        .expect("upstream");
    let gw = Gateway::start(&config(&up, "1s", ""), "").await;
    assert_eq!(
        verdict(&ask(&gw, "/v1/chat/completions", ASK, &[]).await),
        Some("miss")
    );
    assert_eq!(
        verdict(&ask(&gw, "/v1/chat/completions", ASK, &[]).await),
        Some("hit")
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        verdict(&ask(&gw, "/v1/chat/completions", ASK, &[]).await),
        Some("miss")
    );
    assert_eq!(up.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_never_cached() {
    let up = MockUpstream::start(MockUpstreamConfig {
        status: 400,
        error_body: Some(r#"{"error":{"message":"bad","type":"invalid_request_error","param":null,"code":null}}"#.into()),
        ..Default::default()
    })
    .await
    .expect("upstream");
    let gw = Gateway::start(&config(&up, "10m", ""), "").await;
    for n in 1..=2 {
        let r = ask(&gw, "/v1/chat/completions", ASK, &[]).await;
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(verdict(&r), Some("miss"));
        assert_eq!(up.request_count(), n, "an error is asked again");
    }
}

/// The SSE `data:` payloads of a stream body, `[DONE]` included.
fn data_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(str::to_string)
        .collect()
}

/// The text a chat completions stream carried.
fn streamed_text(text: &str) -> String {
    data_lines(text)
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_miss_is_stored_and_replayed_as_a_stream_or_whole() {
    let up = MockUpstream::start(MockUpstreamConfig::default())
        .await
        .expect("upstream");
    let gw = Gateway::start(&config(&up, "10m", ""), "").await;
    let streamed = ASK.replace("\"temperature\"", "\"stream\":true,\"temperature\"");
    let first = ask(&gw, "/v1/chat/completions", &streamed, &[]).await;
    assert_eq!(first.status, 200);
    assert_eq!(verdict(&first), Some("miss"));
    assert_eq!(streamed_text(&first.text()), "word0 word1 word2 ");

    // The same question, whole: the stream's answer as a chat completion.
    let whole = ask(&gw, "/v1/chat/completions", ASK, &[]).await;
    assert_eq!(verdict(&whole), Some("hit"), "{}", whole.text());
    assert_eq!(
        whole.json()["choices"][0]["message"]["content"],
        "word0 word1 word2 "
    );
    assert_eq!(whole.json()["choices"][0]["finish_reason"], "stop");

    // Streamed again, usage asked: replayed as chunks, usage chunk, [DONE].
    let with_usage = streamed.replace(
        "\"stream\":true",
        "\"stream\":true,\"stream_options\":{\"include_usage\":true}",
    );
    let again = ask(&gw, "/v1/chat/completions", &with_usage, &[]).await;
    assert_eq!(verdict(&again), Some("hit"));
    assert!(again
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/event-stream")));
    let text = again.text();
    assert_eq!(streamed_text(&text), "word0 word1 word2 ");
    let lines = data_lines(&text);
    assert_eq!(lines.last().map(String::as_str), Some("[DONE]"));
    let usage = lines
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find(|v| v["usage"].is_object())
        .expect("a usage chunk");
    assert!(usage["usage"]["completion_tokens"].as_u64().is_some());
    assert_eq!(up.request_count(), 1, "one provider call for all three");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_stream_is_never_stored() {
    let up = MockUpstream::start(MockUpstreamConfig {
        reset_after_events: Some(2),
        ..Default::default()
    })
    .await
    .expect("upstream");
    let gw = Gateway::start(&config(&up, "10m", ""), "").await;
    let streamed = ASK.replace("\"temperature\"", "\"stream\":true,\"temperature\"");
    let r = ask(&gw, "/v1/chat/completions", &streamed, &[]).await;
    assert_eq!(verdict(&r), Some("miss"));
    assert!(!r.text().contains("[DONE]") || r.text().contains("error"));
    let r = ask(&gw, "/v1/chat/completions", &streamed, &[]).await;
    assert_eq!(verdict(&r), Some("miss"), "the cut stream was not stored");
    assert!(up.request_count() >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_and_completions_streams_replay_in_their_own_format() {
    let up = MockUpstream::start(MockUpstreamConfig::default())
        .await
        .expect("upstream");
    let gw = Gateway::start(&config(&up, "10m", ""), "").await;
    let v = [("anthropic-version", "2023-06-01")];
    let msg = r#"{"model":"cached","max_tokens":50,"messages":[{"role":"user","content":"Hi"}]}"#;
    let whole = ask(&gw, "/v1/messages", msg, &v).await;
    assert_eq!(verdict(&whole), Some("miss"), "{}", whole.text());
    let text = whole.json()["content"][0]["text"]
        .as_str()
        .expect("text")
        .to_string();
    let streamed = msg.replace("\"max_tokens\"", "\"stream\":true,\"max_tokens\"");
    let hit = ask(&gw, "/v1/messages", &streamed, &v).await;
    assert_eq!(verdict(&hit), Some("hit"));
    let events: Vec<Value> = data_lines(&hit.text())
        .iter()
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(kinds.first(), Some(&"message_start"));
    assert_eq!(kinds.last(), Some(&"message_stop"));
    let replayed: String = events
        .iter()
        .filter_map(|e| e["delta"]["text"].as_str())
        .collect();
    assert_eq!(replayed, text);
    assert_eq!(up.request_count(), 1);

    // A streamed completion miss is stored when it ends, then replayed as text_completion
    // chunks (usage when asked) or answered whole.
    let completion = r#"{"model":"cached","prompt":"Say this is a test","max_tokens":7,"stream":true,"stream_options":{"include_usage":true}}"#;
    let miss = ask(&gw, "/v1/completions", completion, &[]).await;
    assert_eq!(miss.status, 200);
    assert_eq!(verdict(&miss), Some("miss"));
    let text_of = |body: &str| -> String {
        data_lines(body)
            .iter()
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter_map(|e| e["choices"][0]["text"].as_str().map(str::to_string))
            .collect()
    };
    let sent = text_of(&miss.text());
    assert!(!sent.is_empty(), "{}", miss.text());
    let hit = ask(&gw, "/v1/completions", completion, &[]).await;
    assert_eq!(verdict(&hit), Some("hit"), "{}", hit.text());
    assert_eq!(text_of(&hit.text()), sent);
    let chunks: Vec<Value> = data_lines(&hit.text())
        .iter()
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect();
    assert!(chunks.iter().all(|c| c["object"] == "text_completion"));
    assert!(chunks
        .iter()
        .any(|c| c["usage"]["completion_tokens"].as_u64() > Some(0)));
    assert!(hit.text().trim_end().ends_with("data: [DONE]"));
    let whole = completion.replace(r#""stream":true"#, r#""stream":false"#);
    let r = ask(&gw, "/v1/completions", &whole, &[]).await;
    assert_eq!(verdict(&r), Some("hit"));
    assert_eq!(r.json()["choices"][0]["text"], sent.as_str());
    assert_eq!(up.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_scope_shares_within_a_team_only_and_the_ledger_records_the_saving() {
    let up = MockUpstream::start(MockUpstreamConfig::default())
        .await
        .expect("upstream");
    let dir = scratch_dir("sy-cache-ledger");
    let db = dir.join("ledger.db");
    let extra = format!(
        "auth:\n  api_keys:\n    - {{ name: k1, key: {K1}, team: t1 }}\n    - {{ name: k2, key: {K2}, team: t1 }}\n    - {{ name: k3, key: {K3}, team: t2 }}\nstore: {{ kind: sqlite, path: {}, flush_interval: 50ms }}\n",
        db.display()
    );
    let gw = Gateway::start(&config(&up, "10m", &extra), "").await;
    let with = |k: &str| format!("Bearer {k}");
    let (b1, b2, b3) = (with(K1), with(K2), with(K3));
    let r = ask(&gw, "/v1/chat/completions", ASK, &[("authorization", &b1)]).await;
    assert_eq!(verdict(&r), Some("miss"), "{}", r.text());
    let r = ask(&gw, "/v1/chat/completions", ASK, &[("authorization", &b2)]).await;
    assert_eq!(verdict(&r), Some("hit"), "same team");
    let hit_id = r.header("x-request-id").expect("id").to_string();
    let r = ask(&gw, "/v1/chat/completions", ASK, &[("authorization", &b3)]).await;
    assert_eq!(
        verdict(&r),
        Some("miss"),
        "another team never gets t1's entries"
    );
    assert_eq!(up.request_count(), 2);

    // The hit's ledger row: tokens as the original, cost 0, the saving in its tags.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let row = loop {
        let conn = rusqlite::Connection::open(&db).expect("ledger");
        let row = conn
            .query_row(
                "SELECT tokens_in, tokens_out, cost_nanos, tags FROM ledger WHERE request_id = ?1",
                [&hit_id],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, Option<String>>(3)?,
                    ))
                },
            )
            .ok();
        if row.is_some() || std::time::Instant::now() > deadline {
            break row;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (tin, tout, cost, tags) = row.expect("the hit's ledger row");
    assert_eq!((tin, tout, cost), (9, 12, 0));
    let tags: Value = serde_json::from_str(&tags.expect("tags")).expect("json");
    assert_eq!(tags["cache"], "hit");
    // 9 × $1000/M + 12 × $2000/M = $0.033.
    assert_eq!(tags["cache_saved_usd"], "0.03300000");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_and_completions_are_cached_in_their_own_format() {
    let up = MockUpstream::start(MockUpstreamConfig::default())
        .await
        .expect("upstream");
    let gw = Gateway::start(&config(&up, "10m", ""), "").await;
    let msg = r#"{"model":"cached","max_tokens":50,"messages":[{"role":"user","content":"What is a switchyard?"}]}"#;
    let first = ask(
        &gw,
        "/v1/messages",
        msg,
        &[("anthropic-version", "2023-06-01")],
    )
    .await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(verdict(&first), Some("miss"));
    assert_eq!(first.json()["type"], "message");
    let hit = ask(
        &gw,
        "/v1/messages",
        msg,
        &[("anthropic-version", "2023-06-01")],
    )
    .await;
    assert_eq!(verdict(&hit), Some("hit"));
    assert_eq!(hit.body, first.body);
    assert_eq!(up.request_count(), 1);

    // The same prompt on chat completions is not the Messages entry (another format).
    let r = ask(&gw, "/v1/chat/completions", ASK, &[]).await;
    assert_eq!(verdict(&r), Some("miss"));
    assert_eq!(r.json()["object"], "chat.completion");

    let text = r#"{"model":"cached","prompt":"Say this is a test","max_tokens":7}"#;
    let first = ask(&gw, "/v1/completions", text, &[]).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(verdict(&first), Some("miss"));
    let hit = ask(&gw, "/v1/completions", text, &[]).await;
    assert_eq!(verdict(&hit), Some("hit"));
    assert_eq!(hit.body, first.body);
    assert_eq!(hit.json()["object"], "text_completion");
    assert_eq!(up.request_count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_on_one_redis_share_entries_with_redis_ttls() {
    let redis = common::redis_server::Redis::start();
    let url = redis.url();
    let up = MockUpstream::start(MockUpstreamConfig::default())
        .await
        .expect("upstream");
    let extra =
        format!("cache: {{ kind: redis, ttl: 1h }}\nstore: {{ kind: redis, url: \"{url}\" }}\n");
    let a = Gateway::start(&config(&up, "90s", &extra), "").await;
    let b = Gateway::start(&config(&up, "90s", &extra), "").await;

    let r = ask(&a, "/v1/chat/completions", ASK, &[]).await;
    assert_eq!(verdict(&r), Some("miss"), "{}", r.text());
    // The store is written beside the answer: wait for the key, then read its TTL.
    let client = redis::Client::open(url.as_str()).expect("client");
    let mut conn = client.get_connection().expect("connect");
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let keys: Vec<String> = loop {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("switchyard:cache:*")
            .query(&mut conn)
            .expect("KEYS");
        if !keys.is_empty() || std::time::Instant::now() > deadline {
            break keys;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(keys.len(), 1, "one shared entry");
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&keys[0])
        .query(&mut conn)
        .expect("PTTL");
    assert!(
        pttl > 80_000 && pttl <= 90_000,
        "the model's 90s ttl, in Redis: {pttl}"
    );

    let hit = ask(&b, "/v1/chat/completions", ASK, &[]).await;
    assert_eq!(
        verdict(&hit),
        Some("hit"),
        "a miss on one gateway is a hit on the other"
    );
    assert_eq!(hit.body, r.body);
    assert_eq!(up.request_count(), 1);

    // Redis expires it: with the key gone, both miss again.
    let _: () = redis::cmd("DEL")
        .arg(&keys[0])
        .query(&mut conn)
        .expect("DEL");
    assert_eq!(
        verdict(&ask(&b, "/v1/chat/completions", ASK, &[]).await),
        Some("miss")
    );
    assert_eq!(up.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_answers_are_cached_too() {
    let conf = "providers:\n  - { name: sim, kind: mock }\nmodels:\n  - name: cached\n    cache: {}\n    deployments:\n      - { provider: sim, model: mock-1, price: { input_per_mtok: 1, output_per_mtok: 1 } }\ncache: { ttl: 1m, scope: global }\n";
    let gw = Gateway::start(conf, "").await;
    let first = ask(&gw, "/v1/chat/completions", ASK, &[]).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(verdict(&first), Some("miss"));
    let hit = ask(&gw, "/v1/chat/completions", ASK, &[]).await;
    assert_eq!(verdict(&hit), Some("hit"));
    assert_eq!(hit.body, first.body);
    assert_eq!(
        hit.header("x-switchyard-provider"),
        None,
        "no provider served it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_without_previous_response_id_are_cached() {
    let up = MockUpstream::start(MockUpstreamConfig::default())
        .await
        .expect("upstream");
    let gw = Gateway::start(&config(&up, "10m", ""), "").await;
    let body = r#"{"model":"cached","input":"What is a switchyard?"}"#;
    let first = ask(&gw, "/v1/responses", body, &[]).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(verdict(&first), Some("miss"));
    assert_eq!(first.json()["object"], "response");
    let hit = ask(&gw, "/v1/responses", body, &[]).await;
    assert_eq!(verdict(&hit), Some("hit"));
    assert_eq!(hit.body, first.body);
    assert_eq!(up.request_count(), 1);

    // The cached id is a stored response: it continues, and a continuation is never cached.
    let id = first.json()["id"].as_str().expect("id").to_string();
    let next = format!(r#"{{"model":"cached","input":"And then?","previous_response_id":"{id}"}}"#);
    for n in 2..=3 {
        let r = ask(&gw, "/v1/responses", &next, &[]).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(verdict(&r), Some("bypass"));
        assert_eq!(up.request_count(), n);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_cache_is_bounded_and_evicts_the_least_recently_used() {
    let up = MockUpstream::start(MockUpstreamConfig::default())
        .await
        .expect("upstream");
    // Room for about ten of the mock's ~400-byte answers.
    let gw = Gateway::start(&config(&up, "10m", "cache: { max_bytes: 5000 }\n"), "").await;
    let q = |n: u32| ASK.replace("switchyard?", &format!("switchyard {n}?"));
    assert_eq!(
        verdict(&ask(&gw, "/v1/chat/completions", &q(0), &[]).await),
        Some("miss")
    );
    for n in 1..60 {
        // Entry 0 stays the most recently used for a while, then the flood pushes it out.
        if n < 5 {
            let r = ask(&gw, "/v1/chat/completions", &q(0), &[]).await;
            assert_eq!(verdict(&r), Some("hit"));
        }
        let r = ask(&gw, "/v1/chat/completions", &q(n), &[]).await;
        assert_eq!(verdict(&r), Some("miss"));
    }
    assert_eq!(
        verdict(&ask(&gw, "/v1/chat/completions", &q(58), &[]).await),
        Some("hit")
    );
    assert_eq!(
        verdict(&ask(&gw, "/v1/chat/completions", &q(0), &[]).await),
        Some("miss"),
        "evicted by the flood"
    );
    assert_eq!(up.request_count(), 61);
}

/// A flood of distinct cacheable requests with large answers (the built-in mock's embeddings,
/// 6 × 3,072 floats ≈ 230 KB each, ~70 MB in all) against `max_bytes: 4 MiB`: the cache's
/// accounted bytes stay within the bound at every step, the newest entries are kept, and the
/// gateway's peak RSS grows by a fraction of what an unbounded cache would hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_distinct_requests_keeps_the_cache_within_max_bytes() {
    const MAX: f64 = 4.0 * 1024.0 * 1024.0;
    let gw = Gateway::start(
        "providers:\n  - { name: sim, kind: mock }\nmodels:\n  - { name: emb, cache: {}, deployments: [{ provider: sim, model: mock-embed }] }\ncache: { max_bytes: 4194304 }\n",
        "",
    )
    .await;
    let body = |n: usize| {
        serde_json::json!({
            "model": "emb",
            "dimensions": 3072,
            "input": (0..6).map(|i| format!("flood {n} part {i}")).collect::<Vec<_>>()
        })
        .to_string()
    };
    let mut answer_bytes = 0;
    for n in 0..20 {
        let r = ask(&gw, "/v1/embeddings", &body(n), &[]).await;
        assert_eq!(r.status, 200, "{}", r.text());
        answer_bytes = r.body.len();
    }
    assert!(answer_bytes > 200_000, "{answer_bytes}");
    let warm_rss = gw.peak_rss_kib();
    let flood = 300;
    for wave in 0..flood / 6 {
        let mut tasks = Vec::new();
        for k in 0..6 {
            let b = body(20 + wave * 6 + k);
            let c = gw.client();
            let url = gw.url("/v1/embeddings");
            tasks.push(tokio::spawn(async move {
                let req = hyper::Request::post(url)
                    .header("content-type", "application/json")
                    .body(http_body_util::Full::new(bytes::Bytes::from(b)))
                    .expect("request");
                let resp = c.request(req).await.expect("answer");
                let verdict = resp
                    .headers()
                    .get("x-switchyard-cache")
                    .map(|v| v.to_str().unwrap_or("").to_string());
                let status = resp.status();
                http_body_util::BodyExt::collect(resp.into_body())
                    .await
                    .expect("body");
                (status, verdict)
            }));
        }
        for t in tasks {
            let (status, verdict) = t.await.expect("task");
            assert_eq!(status, 200);
            assert_eq!(verdict.as_deref(), Some("miss"));
        }
        let held = gw.metric("switchyard_cache_bytes").await.expect("gauge");
        assert!(held > 0.0 && held <= MAX, "held {held} > {MAX}");
    }
    let grown_kib = gw.peak_rss_kib().saturating_sub(warm_rss);
    let unbounded_kib = (flood * answer_bytes / 1024) as u64;
    eprintln!("peak RSS grew {grown_kib} KiB; unbounded: {unbounded_kib} KiB");
    assert!(
        grown_kib < unbounded_kib / 3,
        "peak RSS grew {grown_kib} KiB (unbounded would hold {unbounded_kib} KiB)"
    );
    let last = ask(&gw, "/v1/embeddings", &body(20 + flood - 1), &[]).await;
    assert_eq!(verdict(&last), Some("hit"), "the newest entry is kept");
    let first = ask(&gw, "/v1/embeddings", &body(0), &[]).await;
    assert_eq!(verdict(&first), Some("miss"), "the oldest was evicted");
}
