//! Routing that learns: strategy `reliability` moves traffic away from a deployment that starts
//! failing or slowing and back once it recovers; `/admin/routing` and
//! `switchyard_deployment_score` show the score. Upstreams here can be switched while the gateway
//! runs (status and delay), so one gateway sees a deployment degrade and recover.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_benches::upstream::chat_completion_body;

const CHAT: &[u8] = br#"{"model":"fast","messages":[{"role":"user","content":"hi"}]}"#;
const ADMIN: &str = "admin-secret-token";

/// An OpenAI-compatible upstream whose status and delay can be changed while it serves.
struct Switchable {
    status: AtomicU16,
    delay_ms: AtomicU64,
    hits: AtomicUsize,
}

impl Switchable {
    async fn start() -> (Arc<Switchable>, String) {
        let me = Arc::new(Switchable {
            status: AtomicU16::new(200),
            delay_ms: AtomicU64::new(0),
            hits: AtomicUsize::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/v1", listener.local_addr().expect("addr"));
        let shared = me.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| answer(shared.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        (me, url)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn answer(
    s: Arc<Switchable>,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let _ = req.into_body().collect().await;
    s.hits.fetch_add(1, Ordering::SeqCst);
    let delay = s.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let status = s.status.load(Ordering::SeqCst);
    let body = if status == 200 {
        chat_completion_body("m")
    } else {
        r#"{"error":{"message":"upstream trouble","type":"server_error","param":null,"code":null}}"#
            .to_string()
    };
    let resp = hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default();
    Ok(resp)
}

/// Model `fast` with strategy `reliability` over `steady` and `shaky`; a 1 s half-life so the
/// test runs in seconds, and a breaker that never opens (the score alone moves traffic).
fn config(steady: &str, shaky: &str) -> String {
    format!(
        "routing:\n  reputation: {{ half_life: 1s }}\nproviders:\n{}\n{}\nmodels:\n  - name: fast\n    strategy: reliability\n    retry: {{ attempts: 2, backoff: {{ base: 1ms, max: 2ms }} }}\n    circuit_breaker: {{ failures: 100000, open_for: 1s }}\n    deployments:\n      - {{ provider: steady, model: m1 }}\n      - {{ provider: shaky, model: m2 }}\n",
        openai_provider("steady", steady, ""),
        openai_provider("shaky", shaky, ""),
    )
}

/// Sends `n` requests (each must succeed) and returns how many tries reached `shaky`.
async fn shaky_tries(gw: &Gateway, shaky: &Switchable, n: usize) -> usize {
    let before = shaky.hits();
    for _ in 0..n {
        let r = gw.post_json("/v1/chat/completions", CHAT).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    shaky.hits() - before
}

/// Polls in rounds of `round` requests until shaky's share of a round is at least `share`.
async fn share_recovers(gw: &Gateway, shaky: &Switchable, share: f64, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        let round = 50;
        if shaky_tries(gw, shaky, round).await as f64 / round as f64 >= share {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

fn score_of(view: &serde_json::Value, provider: &str) -> f64 {
    view["models"][0]["deployments"]
        .as_array()
        .and_then(|ds| ds.iter().find(|d| d["provider"] == provider))
        .and_then(|d| d["score"].as_f64())
        .unwrap_or(f64::NAN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_deployment_loses_its_share_and_wins_it_back() {
    let (steady, steady_url) = Switchable::start().await;
    let (shaky, shaky_url) = Switchable::start().await;
    let gw = Gateway::start(
        &config(&steady_url, &shaky_url),
        &format!("  admin_token: \"{ADMIN}\"\n"),
    )
    .await;
    // Both healthy: about half each.
    let healthy = shaky_tries(&gw, &shaky, 100).await;
    assert!((25..=75).contains(&healthy), "healthy share {healthy}/100");

    // Shaky fails: every request still succeeds (failover), and shaky is soon only probed.
    shaky.status.store(500, Ordering::SeqCst);
    shaky_tries(&gw, &shaky, 30).await;
    let failing = shaky_tries(&gw, &shaky, 200).await;
    assert!(
        failing <= 24,
        "a failing deployment kept {failing}/200 first tries"
    );
    assert!(failing >= 1, "a failing deployment must still be probed");
    let view = gw.admin("GET", "/admin/routing", Some(ADMIN), None).await;
    assert_eq!(view.status, 200, "{}", view.text());
    let view = view.json();
    assert_eq!(view["models"][0]["strategy"], "reliability");
    let (good, bad) = (score_of(&view, "steady"), score_of(&view, "shaky"));
    assert!(good > 0.9 && bad < 0.5, "scores steady {good} shaky {bad}");
    let metric = gw
        .metric(r#"switchyard_deployment_score{deployment="m2",model="fast",provider="shaky"}"#)
        .await
        .expect("score metric");
    assert!(metric < 0.5, "metric {metric}");

    // Recovered: the old failures fade (1 s half-life) and probes succeed: its share returns.
    shaky.status.store(200, Ordering::SeqCst);
    assert!(
        share_recovers(&gw, &shaky, 0.3, Duration::from_secs(15)).await,
        "a recovered deployment did not win its share back"
    );
    assert_eq!(steady.status.load(Ordering::SeqCst), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowing_deployment_loses_its_share_and_wins_it_back() {
    let (_steady, steady_url) = Switchable::start().await;
    let (shaky, shaky_url) = Switchable::start().await;
    let gw = Gateway::start(&config(&steady_url, &shaky_url), "").await;
    shaky_tries(&gw, &shaky, 40).await;
    shaky.delay_ms.store(150, Ordering::SeqCst);
    shaky_tries(&gw, &shaky, 40).await;
    let slow = shaky_tries(&gw, &shaky, 100).await;
    assert!(slow <= 15, "a slow deployment kept {slow}/100 first tries");
    assert!(
        slow >= 1 || shaky_tries(&gw, &shaky, 100).await >= 1,
        "never probed"
    );
    shaky.delay_ms.store(0, Ordering::SeqCst);
    assert!(
        share_recovers(&gw, &shaky, 0.3, Duration::from_secs(15)).await,
        "a deployment that got fast again did not win its share back"
    );
}
