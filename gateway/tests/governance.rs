//! Cost governance end to end: rate limits, budgets with reservations, the spend ledger (also
//! across `kill -9`), the usage API — the real gateway against its built-in mock provider.

mod common;

use common::redis_server::Redis;
use common::*;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KEY: &str = "sk-governance-test-key-0001";
const ADMIN: &str = "0123456789abcdef-admin";

/// A fresh directory for a test's store (kept outside the harness's dir, which restarts share).
fn store_dir(name: &str) -> std::path::PathBuf {
    scratch_dir(&format!("switchyard-gov-{name}"))
}

/// One mock deployment priced at $1000 per million output tokens, so a 5-token answer costs
/// exactly $0.005 (input is free: the reservation equals the actual cost).
fn config(extra: &str) -> String {
    format!(
        "providers:\n  - {{ name: sim, kind: mock }}\nmodels:\n  - name: chat\n    deployments:\n      - {{ provider: sim, model: mock-1, price: {{ input_per_mtok: 0, output_per_mtok: 1000 }} }}\nauth:\n  api_keys:\n    - {{ name: k1, key: {KEY}, team: t1, project: p1 }}\n{extra}"
    )
}

const ASK: &[u8] =
    br#"{"model":"chat","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#;

async fn ask(gw: &Gateway) -> Reply {
    gw.request(
        "POST",
        "/v1/chat/completions",
        Some(ASK),
        &[
            ("content-type", "application/json"),
            ("authorization", &format!("Bearer {KEY}")),
        ],
    )
    .await
}

/// A refusal by a full window just filled: `retry-after` in whole seconds, when the first
/// requests leave it (a minute from the second they were counted in).
fn assert_retry_after_a_minute(r: &Reply) {
    let retry: u64 = r
        .header("retry-after")
        .expect("retry-after")
        .parse()
        .expect("whole seconds");
    assert!((59..=61).contains(&retry), "retry-after {retry}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_admits_n_back_to_back_and_refuses_the_next_for_the_rest_of_the_minute() {
    let cfg = config("").replace(
        "project: p1 }",
        "project: p1, limits: { requests_per_minute: 5 } }",
    );
    let gw = Gateway::start(&cfg, &format!("  admin_token: {ADMIN}\n")).await;
    // requests_per_minute: 5 means five requests sent back to back are served...
    for left in (0..5).rev() {
        let r = ask(&gw).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-ratelimit-limit-requests"), Some("5"));
        assert_eq!(
            r.header("x-ratelimit-remaining-requests"),
            Some(left.to_string().as_str())
        );
        // The first requests leave the window a minute (and up to a second) from now.
        let reset = r.header("x-ratelimit-reset-requests").expect("reset");
        assert!(["59s", "60s", "1m0s", "1m1s"].contains(&reset), "{reset}");
    }
    // ...and the sixth is refused, told to come back when the first ones have left the window.
    let r = ask(&gw).await;
    assert_eq!(r.status, 429, "{}", r.text());
    let e = r.json();
    assert_eq!(e["error"]["type"], "rate_limit_error");
    assert_eq!(e["error"]["code"], "rate_limit_exceeded");
    assert!(e["error"]["message"].as_str().unwrap().contains("key:k1"));
    assert_retry_after_a_minute(&r);
    // Never a sixth within the minute, however hard it is asked.
    let started = Instant::now();
    let mut refused = 1u32;
    while started.elapsed() < Duration::from_secs(2) {
        let r = ask(&gw).await;
        assert_eq!(r.status, 429, "{}", r.text());
        refused += 1;
    }
    // Anthropic callers get the refusal in their format.
    let r = gw
        .request(
            "POST",
            "/v1/messages",
            Some(br#"{"model":"chat","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#),
            &[("x-api-key", KEY)],
        )
        .await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["type"], "error");
    assert_eq!(r.json()["error"]["type"], "rate_limit_error");
    assert!(r.header("retry-after").is_some());
    assert!(
        gw.metric("switchyard_refused_total{limit=\"requests_per_minute\",reason=\"rate_limit\"}")
            .await
            .unwrap_or(0.0)
            >= f64::from(refused + 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_requests_never_overshoot_a_budget_that_fits_fifty() {
    let dir = store_dir("budget");
    let cfg = config(&format!(
        "budgets:\n  - {{ scope: team:t1, limit: 0.25, period: daily }}\nstore: {{ kind: sqlite, path: {}, flush_interval: 50ms }}\n",
        dir.join("state.db").display()
    ));
    let gw = Arc::new(Gateway::start(&cfg, &format!("  admin_token: {ADMIN}\n")).await);
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move { ask(&gw).await }));
    }
    let mut ok = 0;
    let mut budget_refusals = 0;
    for t in tasks {
        let r = t.await.expect("task");
        match r.status {
            200 => ok += 1,
            429 => {
                let e = r.json();
                assert_eq!(e["error"]["type"], "budget_exceeded", "{e}");
                assert!(e["error"]["message"].as_str().unwrap().contains("team:t1"));
                // A daily budget resets at midnight UTC: no retry-after (unless that is within
                // the minute), and SDKs are told not to retry.
                assert!(
                    r.header("retry-after")
                        .is_none_or(|s| s.parse::<u64>().is_ok_and(|s| s <= 60)),
                    "{:?}",
                    r.header("retry-after")
                );
                assert_eq!(r.header("x-should-retry"), Some("false"));
                budget_refusals += 1;
            }
            s => panic!("unexpected {s}: {}", r.text()),
        }
    }
    assert_eq!(ok, 50, "exactly the 50 requests the budget fits");
    assert_eq!(budget_refusals, 150);
    // Each request settles in its logging phase, just after its response: poll briefly.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let b = gw
            .admin("GET", "/admin/budgets", Some(ADMIN), None)
            .await
            .json();
        let spent = b["budgets"][0]["spent_usd"].as_f64().unwrap();
        let reserved = b["budgets"][0]["reserved_usd"].as_f64().unwrap();
        assert!(
            spent + reserved <= 0.25 + 1e-9,
            "committed {spent} + {reserved}"
        );
        if (spent - 0.25).abs() < 1e-9 && reserved == 0.0 {
            break;
        }
        assert!(Instant::now() < deadline, "{b}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The ledger agrees (rows are flushed every 50 ms).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let u = gw
        .admin("GET", "/admin/usage?group_by=team", Some(ADMIN), None)
        .await
        .json();
    assert_eq!(u["totals"][0]["group"], "t1");
    assert_eq!(u["totals"][0]["requests"], 200);
    assert!((u["totals"][0]["cost_usd"].as_f64().unwrap() - 0.25).abs() < 1e-9);
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spend_survives_a_restart_and_the_usage_api_groups_it() {
    let dir = store_dir("restart");
    let cfg = config(&format!(
        "budgets:\n  - {{ scope: key:k1, limit: 10, period: monthly }}\nstore: {{ kind: sqlite, path: {}, flush_interval: 1s }}\n",
        dir.join("state.db").display()
    ));
    let extra = format!("  admin_token: {ADMIN}\n");
    {
        let gw = Gateway::start(&cfg, &extra).await;
        for i in 0..3 {
            let r = gw
                .request(
                    "POST",
                    "/v1/chat/completions",
                    Some(ASK),
                    &[
                        ("authorization", &format!("Bearer {KEY}")),
                        (
                            "x-switchyard-tags",
                            if i == 0 { "app=billing" } else { "app=search" },
                        ),
                    ],
                )
                .await;
            assert_eq!(r.status, 200);
            assert_eq!(r.header("x-switchyard-cost-usd"), Some("0.00500000"));
        }
        // A clean stop commits the queued rows (the flush interval here is a full second).
        gw.signal("TERM");
        let mut gw = gw;
        assert!(
            gw.wait_exit(Duration::from_secs(10)).is_some(),
            "did not stop"
        );
    }
    let gw = Gateway::start(&cfg, &extra).await;
    let b = gw
        .admin("GET", "/admin/budgets", Some(ADMIN), None)
        .await
        .json();
    assert!(
        (b["budgets"][0]["spent_usd"].as_f64().unwrap() - 0.015).abs() < 1e-9,
        "rebuilt from the ledger: {b}"
    );
    let u = gw
        .admin("GET", "/admin/usage?group_by=tag", Some(ADMIN), None)
        .await
        .json();
    let tags: Vec<(String, u64)> = u["totals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["group"].as_str().unwrap().to_string(),
                t["requests"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(tags.contains(&("app=search".into(), 2)), "{tags:?}");
    assert!(tags.contains(&("app=billing".into(), 1)), "{tags:?}");
    let u = gw
        .admin(
            "GET",
            "/admin/usage?group_by=model&from=2020-01-01",
            Some(ADMIN),
            None,
        )
        .await
        .json();
    assert_eq!(u["totals"][0]["group"], "chat");
    assert!(u["forecast"]["projected_month_usd"].as_f64().unwrap() >= 0.015);
    let bad = gw
        .admin("GET", "/admin/usage?group_by=colour", Some(ADMIN), None)
        .await;
    assert_eq!(bad.status, 400);
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Load from a few tasks until `kill -9`; returns (request id, completion time) of every
/// response received in full, and the moment of the kill.
async fn load_then_kill(gw: &Gateway, run: Duration) -> (Vec<(String, Instant)>, Instant) {
    let done: Arc<Mutex<Vec<(String, Instant)>>> = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (client, url, done, stop) = (
            gw.client(),
            gw.url("/v1/chat/completions"),
            done.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            use http_body_util::BodyExt;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let req = http::Request::post(&url)
                    .header("authorization", format!("Bearer {KEY}"))
                    .body(http_body_util::Full::new(bytes::Bytes::from_static(ASK)))
                    .expect("request");
                let Ok(resp) = client.request(req).await else {
                    break;
                };
                let id = resp
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let ok = resp.status() == 200;
                if resp.into_body().collect().await.is_ok() && ok {
                    if let Some(id) = id {
                        done.lock().unwrap().push((id, Instant::now()));
                    }
                }
            }
        }));
    }
    tokio::time::sleep(run).await;
    gw.signal("KILL");
    let killed = Instant::now();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let v = done.lock().unwrap().clone();
    (v, killed)
}

fn ledger_ids(db: &std::path::Path) -> HashSet<String> {
    let conn = rusqlite::Connection::open(db).expect("open ledger");
    let mut stmt = conn
        .prepare("SELECT request_id FROM ledger")
        .expect("query");
    let ids = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .expect("rows")
        .map(|r| r.expect("row"))
        .collect();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_at_most_the_flush_interval_of_ledger_rows() {
    let dir = store_dir("kill");
    let db = dir.join("state.db");
    let flush = Duration::from_millis(300);
    let cfg = config(&format!(
        "store: {{ kind: sqlite, path: {}, flush_interval: 300ms }}\n",
        db.display()
    ));
    let gw = Gateway::start(&cfg, "").await;
    let (done, killed) = load_then_kill(&gw, Duration::from_millis(1500)).await;
    assert!(done.len() > 50, "load ran: {} responses", done.len());
    let ids = ledger_ids(&db);
    let lost: Vec<&(String, Instant)> = done.iter().filter(|(id, _)| !ids.contains(id)).collect();
    // Every lost row belongs to a response completed within the last flush interval before the
    // kill (plus scheduling slack): nothing older is ever lost.
    let oldest_lost = lost.iter().map(|(_, t)| killed.duration_since(*t)).max();
    eprintln!(
        "kill -9 (batched, flush {flush:?}): {} of {} completed responses without a ledger row; oldest {:?} before the kill",
        lost.len(),
        done.len(),
        oldest_lost
    );
    if let Some(age) = oldest_lost {
        assert!(
            age <= flush + Duration::from_millis(250),
            "lost a row {age:?} old"
        );
    }
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_durability_loses_no_record_of_a_completed_response_on_kill_9() {
    let dir = store_dir("strict");
    let db = dir.join("state.db");
    let cfg = config(&format!(
        "store: {{ kind: sqlite, path: {}, durability: strict }}\n",
        db.display()
    ));
    let gw = Gateway::start(&cfg, "").await;
    let (done, _) = load_then_kill(&gw, Duration::from_millis(1500)).await;
    assert!(done.len() > 20, "load ran: {} responses", done.len());
    let ids = ledger_ids(&db);
    let lost: Vec<_> = done.iter().filter(|(id, _)| !ids.contains(id)).collect();
    eprintln!(
        "kill -9 (strict): {} completed responses, {} without a ledger row",
        done.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "lost {lost:?}");
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_soft_ratio_the_cheapest_deployment_serves_and_a_spent_provider_is_skipped() {
    let cfg = format!(
        "providers:\n  - {{ name: pricey, kind: mock }}\n  - {{ name: cheap, kind: mock }}\nmodels:\n  - name: chat\n    deployments:\n      - {{ provider: pricey, model: big, priority: 1, price: {{ input_per_mtok: 0, output_per_mtok: 2000 }} }}\n      - {{ provider: cheap, model: small, priority: 2, price: {{ input_per_mtok: 0, output_per_mtok: 1000 }} }}\nauth:\n  api_keys:\n    - {{ name: k1, key: {KEY}, team: t1 }}\nbudgets:\n  - {{ scope: global, limit: 1.0, period: total, soft_ratio: 0.025 }}\n  - {{ scope: provider:cheap, limit: 0.012, period: total }}\n"
    );
    let gw = Gateway::start(&cfg, &format!("  admin_token: {ADMIN}\n")).await;
    // $0.01 a request on `pricey` (reserved before it runs): below 2.5% of $1 the priority
    // order holds.
    let r = ask(&gw).await;
    assert_eq!(r.header("x-switchyard-provider"), Some("pricey"));
    let r = ask(&gw).await;
    assert_eq!(r.header("x-switchyard-provider"), Some("pricey"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    // $0.02 of $1 spent, plus the next reservation: past 2.5%, so the cheapest deployment serves.
    let mut providers = Vec::new();
    for _ in 0..6 {
        let r = ask(&gw).await;
        assert_eq!(r.status, 200, "{}", r.text());
        providers.push(r.header("x-switchyard-provider").unwrap_or("").to_string());
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    // `cheap` costs $0.005 a request and its own budget is $0.012: two requests, then it is
    // skipped and `pricey` serves again.
    assert_eq!(
        &providers[..3],
        ["cheap", "cheap", "pricey"],
        "{providers:?}"
    );
    let health = gw
        .request(
            "GET",
            "/v1/health",
            None,
            &[("authorization", &format!("Bearer {KEY}"))],
        )
        .await
        .json();
    let global = &health["budgets"][0];
    assert_eq!(global["state"], "prefer_cheapest", "{health}");
}

async fn ask_as(gw: &Gateway, key: &str) -> Reply {
    gw.request(
        "POST",
        "/v1/chat/completions",
        Some(ASK),
        &[("authorization", &format!("Bearer {key}"))],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_on_one_redis_share_a_budget_and_a_rate_limit_and_survive_its_restart() {
    let redis = Redis::start_on(free_port());
    const K2: &str = "sk-governance-test-key-0002";
    let cfg = format!(
        "providers:\n  - {{ name: sim, kind: mock }}\nmodels:\n  - name: chat\n    deployments:\n      - {{ provider: sim, model: mock-1, price: {{ input_per_mtok: 0, output_per_mtok: 1000 }} }}\nauth:\n  api_keys:\n    - {{ name: k1, key: {KEY}, team: t1 }}\n    - {{ name: k2, key: {K2}, team: t2, limits: {{ requests_per_minute: 6 }} }}\nbudgets:\n  - {{ scope: team:t1, limit: 0.05, period: total }}\nstore: {{ kind: redis, url: \"{}\" }}\n",
        redis.url()
    );
    let extra = format!("  admin_token: {ADMIN}\n");
    let a = Arc::new(Gateway::start(&cfg, &extra).await);
    let b = Arc::new(Gateway::start(&cfg, &extra).await);

    // One budget for both: $0.05 fits ten $0.005 requests, wherever they land.
    let mut tasks = Vec::new();
    for i in 0..30 {
        let gw = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move { ask_as(&gw, KEY).await.status }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.expect("task"));
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(ok, 10, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 429));
    // Shared-store settlement runs in a task after each response: poll until it has landed.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let view = b
            .admin("GET", "/admin/budgets", Some(ADMIN), None)
            .await
            .json();
        let spent = view["budgets"][0]["spent_usd"].as_f64().unwrap();
        if (spent - 0.05).abs() < 1e-9 {
            assert_eq!(
                view["budgets"][0]["reserved_usd"].as_f64(),
                Some(0.0),
                "{view}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{view}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // One rate limit for both: 6/min admits six back to back, not six per gateway; the seventh
    // is told, in whole seconds, when the first have left the window.
    let mut statuses = Vec::new();
    for i in 0..20 {
        let gw = if i % 2 == 0 { &a } else { &b };
        let r = ask_as(gw, K2).await;
        if r.status == 429 {
            assert_retry_after_a_minute(&r);
        }
        statuses.push(r.status);
    }
    assert_eq!(statuses[..6], [200; 6], "{statuses:?}");
    assert!(statuses[6..].iter().all(|s| *s == 429), "{statuses:?}");

    // Redis goes away: fail_open serves on each node's own accounts, and says so.
    let port = redis.port;
    drop(redis);
    // k1's shared budget is spent, but this node alone has not spent it: served.
    let r = ask_as(&a, KEY).await;
    assert_eq!(r.status, 200, "fail_open: {}", r.text());
    assert_eq!(a.metric("switchyard_store_up").await, Some(0.0));
    assert!(
        a.metric("switchyard_store_errors_total")
            .await
            .unwrap_or(0.0)
            >= 1.0
    );
    // It comes back (empty: no persistence) and the gateways use it again by themselves.
    let redis = Redis::start_on(port);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = ask_as(&a, KEY).await;
        assert_eq!(r.status, 200, "{}", r.text());
        if a.metric("switchyard_store_up").await == Some(1.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the shared store did not recover"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_refuses_with_503_while_the_store_is_down() {
    let port = free_port();
    let cfg = config(&format!(
        "budgets:\n  - {{ scope: global, limit: 1, period: daily }}\nstore: {{ kind: redis, url: \"redis://127.0.0.1:{port}\", on_unavailable: fail_closed }}\n"
    ));
    let gw = Gateway::start(&cfg, "").await;
    let r = ask(&gw).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "store_unavailable");
    assert!(r.header("retry-after").is_some());
    let redis = Redis::start_on(port);
    let deadline = Instant::now() + Duration::from_secs(10);
    while ask(&gw).await.status != 200 {
        assert!(Instant::now() < deadline, "did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_alerts_are_posted_once_at_the_soft_ratio_and_once_at_the_limit() {
    use switchyard_benches::upstream::{MockUpstream, MockUpstreamConfig};
    let hook = MockUpstream::start(MockUpstreamConfig::default())
        .await
        .expect("webhook receiver");
    let cfg = config(&format!(
        "budgets:\n  - {{ scope: team:t1, limit: 0.02, period: daily, soft_ratio: 0.5, alert_webhook: \"{}/chat/completions\" }}\n",
        hook.base_url()
    ));
    let gw = Gateway::start(&cfg, "").await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(ask(&gw).await.status);
    }
    assert_eq!(statuses, [200, 200, 200, 200, 429, 429]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while hook.request_count() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let calls = hook.requests();
    let events: Vec<String> = calls
        .iter()
        .map(|c| {
            let v: serde_json::Value = serde_json::from_slice(&c.body).expect("JSON alert");
            assert_eq!(v["scope"], "team:t1");
            assert_eq!(v["limit_usd"], 0.02);
            v["event"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(
        events,
        ["budget_soft_limit", "budget_exhausted"],
        "one of each"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cutoff_budget_ends_a_stream_cleanly_when_its_cost_reaches_what_is_left() {
    let cfg = config(
        "budgets:\n  - { scope: team:t1, limit: 0.01, period: daily, on_exhaust: cutoff }\n",
    )
    .replace(
        "{ name: sim, kind: mock }",
        "{ name: sim, kind: mock, chunks: 40 }",
    );
    let gw = Gateway::start(&cfg, "").await;
    // No max_tokens: the request may cost far more than $0.01, but a cutoff budget lets it start
    // with what is left ($0.001 a token: ten tokens).
    let body = br#"{"model":"chat","stream":true,"messages":[{"role":"user","content":"tell me a long story"}]}"#;
    let r = gw
        .request(
            "POST",
            "/v1/chat/completions",
            Some(body),
            &[("authorization", &format!("Bearer {KEY}"))],
        )
        .await;
    assert_eq!(r.status, 200);
    let text = r.text();
    let events: Vec<&str> = text
        .split("\n\n")
        .filter(|e| e.starts_with("data: "))
        .collect();
    let last = events.last().expect("events");
    assert!(last.contains("\"budget_exceeded\""), "{text}");
    assert!(
        !text.contains("[DONE]"),
        "a cut stream has no clean terminator: {text}"
    );
    let content_events = events
        .iter()
        .filter(|e| e.contains("\"content\":\""))
        .count();
    assert!(
        (9..=11).contains(&content_events),
        "{content_events} content events: {text}"
    );
    // The budget is spent: the next request is refused up front.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = ask(&gw).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "budget_exceeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_reserves_every_choice_so_one_request_cannot_overshoot_a_budget() {
    // One 5-token choice costs $0.005; the budget fits ten.
    let gw = Gateway::start(
        &config("budgets:\n  - { scope: team:t1, limit: 0.05, period: daily }\n"),
        &format!("  admin_token: {ADMIN}\n"),
    )
    .await;
    let ask_n = |n: &str, field: &str| {
        format!(
            r#"{{"model":"chat","max_tokens":5,"{field}":{n},"messages":[{{"role":"user","content":"hi"}}]}}"#
        )
    };
    let post = |body: String| {
        let gw = &gw;
        async move {
            gw.request(
                "POST",
                "/v1/chat/completions",
                Some(body.as_bytes()),
                &[
                    ("content-type", "application/json"),
                    ("authorization", &format!("Bearer {KEY}")),
                ],
            )
            .await
        }
    };
    // n: 128 would cost $0.64 at most: refused up front, nothing reserved or spent.
    for (n, field) in [("128", "n"), ("11", "n"), ("11", "best_of")] {
        let r = post(ask_n(n, field)).await;
        assert_eq!(r.status, 429, "{field}={n}: {}", r.text());
        assert_eq!(r.json()["error"]["type"], "budget_exceeded");
    }
    let b = gw
        .admin("GET", "/admin/budgets", Some(ADMIN), None)
        .await
        .json();
    assert_eq!(b["budgets"][0]["spent_usd"].as_f64(), Some(0.0), "{b}");
    assert_eq!(b["budgets"][0]["reserved_usd"].as_f64(), Some(0.0), "{b}");
    // A stream of several choices is refused by the mock, naming the field.
    let streamed = post(
        r#"{"model":"chat","max_tokens":5,"n":2,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#
            .to_string(),
    )
    .await;
    assert_eq!(streamed.status, 400, "{}", streamed.text());
    assert_eq!(streamed.json()["error"]["param"], "n");
    // Ten choices fit exactly, and the mock answers ten, all counted.
    let ten = post(ask_n("10", "n")).await;
    assert_eq!(ten.status, 200, "{}", ten.text());
    let ten = ten.json();
    assert_eq!(ten["choices"].as_array().map(Vec::len), Some(10), "{ten}");
    assert_eq!(ten["usage"]["completion_tokens"], 50, "{ten}");
    // Out-of-range and mistyped counts are the caller's error, naming the field.
    for (n, field, code) in [
        ("0", "n", "invalid_value"),
        ("129", "n", "invalid_value"),
        ("\"2\"", "n", "invalid_type"),
        ("1.5", "best_of", "invalid_type"),
    ] {
        let r = post(ask_n(n, field)).await;
        assert_eq!(r.status, 400, "{field}={n}: {}", r.text());
        let e = r.json();
        assert_eq!(e["error"]["param"], field, "{e}");
        assert_eq!(e["error"]["code"], code, "{e}");
    }
}

/// The provider's own answer headers reach the caller; what describes the gateway's account or
/// connection with the provider does not: its `x-ratelimit-*` (the caller sees the gateway's own
/// limits instead), its `anthropic-ratelimit-*`, its cookies and hop-by-hop headers. Its request
/// id is kept as `x-upstream-request-id`; the caller's `x-request-id` is the gateway's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_head_carries_the_gateways_limits_never_the_providers_account() {
    let up = common::canned::Canned::start_with_headers(
        200,
        "application/json",
        switchyard_benches::upstream::chat_completion_body("up-model"),
        &[
            ("x-ratelimit-limit-requests", "10000"),
            ("x-ratelimit-remaining-requests", "9999"),
            ("anthropic-ratelimit-tokens-remaining", "77"),
            ("set-cookie", "__cf_bm=provider-session; path=/"),
            ("set-cookie", "second=cookie"),
            ("keep-alive", "timeout=5"),
            ("x-request-id", "req_provider_123"),
            ("openai-processing-ms", "42"),
            ("x-provider-note", "one"),
            ("x-provider-note", "two"),
        ],
    )
    .await;
    let cfg = format!(
        "providers:\n  - {{ name: up, kind: openai, base_url: {}, api_key: sk-up-secret }}\nmodels:\n  - name: chat\n    deployments:\n      - {{ provider: up, model: up-model }}\nauth:\n  api_keys:\n    - {{ name: k1, key: {KEY}, team: t1, limits: {{ requests_per_minute: 5 }} }}\n",
        up.base
    );
    let gw = Gateway::start(&cfg, "").await;
    let r = ask(&gw).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // The gateway's limit, not the provider's account.
    assert_eq!(r.header("x-ratelimit-limit-requests"), Some("5"));
    assert_eq!(r.header("x-ratelimit-remaining-requests"), Some("4"));
    assert_eq!(
        r.headers
            .get_all("x-ratelimit-limit-requests")
            .iter()
            .count(),
        1
    );
    assert_eq!(r.header("anthropic-ratelimit-tokens-remaining"), None);
    assert_eq!(r.header("set-cookie"), None);
    assert_eq!(r.header("keep-alive"), None);
    // The provider's request id under its own name; the caller's is the gateway's.
    assert_eq!(r.header("x-upstream-request-id"), Some("req_provider_123"));
    let id = r.header("x-request-id").expect("x-request-id");
    assert_ne!(id, "req_provider_123");
    // The provider's other headers, every value of a repeated one, as it sent them.
    assert_eq!(r.header("openai-processing-ms"), Some("42"));
    let notes: Vec<_> = r.headers.get_all("x-provider-note").iter().collect();
    assert_eq!(notes, ["one", "two"]);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-switchyard-provider"), Some("up"));
    assert_eq!(
        r.body,
        switchyard_benches::upstream::chat_completion_body("up-model").as_bytes()
    );
}
