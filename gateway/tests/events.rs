//! Signed event webhooks (`events[]`): the body and its HMAC signature, retries with the same
//! id against a failing receiver, delivery after a `kill -9` and restart from the outbox, and
//! once-per-period budget events.

mod common;

use common::hooks::{Delivery, Receiver};
use common::*;
use serde_json::Value;
use std::sync::atomic::Ordering;
use std::time::Duration;

const SECRET: &str = "whsec-test-0123456789";

fn expected_signature(body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    let tag = ring::hmac::sign(&key, body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

fn config(receiver: &Receiver, dead: std::net::SocketAddr, db: &std::path::Path) -> String {
    format!(
        "providers:\n  - {{ name: sim, kind: mock }}\n  - name: dead\n    kind: openai\n    base_url: http://{dead}\n    api_key: sk-dead-secret\n    health_check: {{ interval: 100ms, timeout: 200ms }}\nmodels:\n  - name: chat\n    deployments:\n      - {{ provider: sim, model: mock-1 }}\n  - name: broken\n    deployments:\n      - {{ provider: dead, model: gpt-x }}\nstore: {{ kind: sqlite, path: {} }}\nevents:\n  - url: {}\n    secret: {SECRET}\n    on: [provider.down, config.reloaded, config.rejected]\n",
        db.display(),
        receiver.url
    )
}

fn of_type<'a>(seen: &'a [Delivery], kind: &str) -> Vec<&'a Delivery> {
    seen.iter().filter(|d| d.event["type"] == kind).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_signed_retried_under_one_id_and_delivered_after_kill_9() {
    let dir = scratch_dir("sy-events");
    let db = dir.join("events.db");
    let receiver = Receiver::start(500).await;
    let dead = refused_addr();
    let gw = Gateway::start(&config(&receiver, dead, &db), "").await;

    // The dead provider goes down: the event is signed, and retried under the same id.
    let seen = receiver
        .wait_for("provider.down tried twice", |s| {
            of_type(s, "provider.down").len() >= 2
        })
        .await;
    let tries = of_type(&seen, "provider.down");
    let first = tries[0];
    assert_eq!(first.signature, expected_signature(&first.body));
    let id = first.event["id"].as_str().expect("id").to_string();
    assert_eq!(first.header_id, id);
    assert_eq!(first.event["data"]["provider"], "dead");
    assert!(first.event["time"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    assert!(
        tries.iter().all(|d| d.event["id"] == id.as_str()),
        "one id across retries"
    );
    assert_eq!(tries[1].body, first.body, "the same body is retried");

    // A rejected reload is an event too; raised, tried once, then the process is killed.
    gw.write_raw_config("server: [not, a, mapping]\n");
    gw.signal("HUP");
    let seen = receiver
        .wait_for("config.rejected", |s| {
            !of_type(s, "config.rejected").is_empty()
        })
        .await;
    let rejected_id = of_type(&seen, "config.rejected")[0].event["id"].clone();
    assert!(of_type(&seen, "config.rejected")[0].event["data"]["errors"]
        .as_array()
        .is_some_and(|e| !e.is_empty()));
    gw.signal("KILL");
    drop(gw);

    // After a restart on the same store, the receiver now accepting: both pending events arrive
    // under their original ids.
    receiver.status.store(200, Ordering::SeqCst);
    let _gw = Gateway::start(&config(&receiver, dead, &db), "").await;
    let seen = receiver
        .wait_for("the events from before the kill delivered", |s| {
            let ok = |id: &Value| s.iter().any(|d| d.event["id"] == *id && d.answered == 200);
            ok(&Value::from(id.clone())) && ok(&rejected_id)
        })
        .await;
    for d in &seen {
        assert_eq!(
            d.signature,
            expected_signature(&d.body),
            "every try is signed"
        );
    }
    // Delivered once each: no try after the 200.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = receiver.seen();
    let delivered = after
        .iter()
        .filter(|d| d.event["id"] == rejected_id && d.answered == 200)
        .count();
    assert_eq!(delivered, 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_running_out_is_one_event_per_period_and_the_alert_webhook_still_fires() {
    let dir = scratch_dir("sy-events");
    let receiver = Receiver::start(200).await;
    let legacy = Receiver::start(200).await;
    let cfg = format!(
        "providers:\n  - {{ name: sim, kind: mock }}\nmodels:\n  - name: chat\n    deployments:\n      - {{ provider: sim, model: mock-1, price: {{ input_per_mtok: 0, output_per_mtok: 1000 }} }}\nbudgets:\n  - {{ scope: global, limit: 0.02, period: daily, soft_ratio: 0.5, alert_webhook: \"{}\" }}\nstore: {{ kind: sqlite, path: {} }}\nevents:\n  - url: {}\n    secret: {SECRET}\n    on: [budget.soft, budget.exhausted]\n",
        legacy.url,
        dir.join("b.db").display(),
        receiver.url
    );
    let gw = Gateway::start(&cfg, "").await;
    let body = br#"{"model":"chat","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}"#;
    let mut refused = 0;
    for _ in 0..12 {
        let r = gw
            .request(
                "POST",
                "/v1/chat/completions",
                Some(body),
                &[("content-type", "application/json")],
            )
            .await;
        if r.status == 429 || r.status == 402 {
            refused += 1;
        }
    }
    assert!(
        refused >= 2,
        "the budget ran out and refused more than once"
    );
    let seen = receiver
        .wait_for("budget.exhausted", |s| {
            !of_type(s, "budget.exhausted").is_empty()
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen_after = receiver.seen();
    assert_eq!(
        of_type(&seen_after, "budget.exhausted").len(),
        1,
        "{seen_after:#?}"
    );
    assert_eq!(of_type(&seen_after, "budget.soft").len(), 1);
    let ev = &of_type(&seen, "budget.exhausted")[0].event;
    assert_eq!(ev["data"]["scope"], "global");
    assert!(ev["id"]
        .as_str()
        .is_some_and(|id| id.starts_with("budget.exhausted:global:daily:")));
    // The per-budget alert_webhook keeps working beside it.
    legacy
        .wait_for("the legacy budget_exhausted alert", |s| {
            s.iter().any(|d| d.event["event"] == "budget_exhausted")
        })
        .await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_expiring_within_a_week_is_announced_once_across_restarts() {
    let dir = scratch_dir("sy-events");
    let receiver = Receiver::start(200).await;
    let soon = humantime::format_rfc3339_seconds(
        std::time::SystemTime::now() + Duration::from_secs(3 * 86_400),
    );
    let later = humantime::format_rfc3339_seconds(
        std::time::SystemTime::now() + Duration::from_secs(30 * 86_400),
    );
    let cfg = format!(
        "providers:\n  - {{ name: sim, kind: mock }}\nmodels:\n  - name: chat\n    deployments:\n      - {{ provider: sim, model: mock-1 }}\nauth:\n  api_keys:\n    - {{ name: soon, key: sk-soon-0123456789abcdef, team: t1, expires: \"{soon}\" }}\n    - {{ name: later, key: sk-later-0123456789abcdef, expires: \"{later}\" }}\nstore: {{ kind: sqlite, path: {} }}\nevents:\n  - url: {}\n    secret: {SECRET}\n    on: [key.expiring]\n",
        dir.join("k.db").display(),
        receiver.url
    );
    let gw = Gateway::start(&cfg, "").await;
    let seen = receiver
        .wait_for("key.expiring", |s| !of_type(s, "key.expiring").is_empty())
        .await;
    let ev = &of_type(&seen, "key.expiring")[0].event;
    assert_eq!(ev["data"]["key"], "soon");
    assert_eq!(ev["data"]["team"], "t1");
    // Delivery is at least once: a gateway killed between the receiver's 200 and marking the
    // row delivered sends it again after the restart (under the same id). Wait for the mark, so
    // what follows tests the scan alone.
    let db = dir.join("k.db");
    let marked = async {
        loop {
            let delivered = rusqlite::Connection::open(&db).ok().and_then(|c| {
                c.query_row(
                    "SELECT count(*) FROM events_outbox WHERE type = 'key.expiring' AND state = 'delivered'",
                    [],
                    |r| r.get::<_, i64>(0),
                )
                .ok()
            });
            if delivered == Some(1) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), marked)
        .await
        .expect("the delivery is marked in the outbox");
    drop(gw);
    // A restart scans again; the event is not sent a second time.
    let _gw = Gateway::start(&cfg, "").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let all = receiver.seen();
    assert_eq!(of_type(&all, "key.expiring").len(), 1, "{all:#?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Health transitions, an opened circuit and an applied reload are signed events too: a
/// provider that fails (`circuit.open` from traffic, `provider.down` from its probes) and then
/// answers again (`provider.up`), and a SIGHUP with a valid file (`config.reloaded`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_up_circuit_open_and_config_reloaded_are_signed_events() {
    let dir = scratch_dir("sy-events");
    let receiver = Receiver::start(200).await;
    // The provider: every request answered 500 until told otherwise.
    let flappy = Receiver::start(500).await;
    let base = flappy.url.trim_end_matches("/hook").to_string();
    let cfg = format!(
        "providers:\n  - {{ name: sim, kind: mock }}\n  - name: flappy\n    kind: openai\n    base_url: {base}\n    api_key: sk-flappy-secret\n    health_check: {{ interval: 1s, timeout: 500ms }}\nmodels:\n  - name: chat\n    deployments:\n      - {{ provider: sim, model: mock-1 }}\n  - name: flaky\n    deployments:\n      - {{ provider: flappy, model: gpt-x }}\nrouting:\n  retry: {{ attempts: 1 }}\n  circuit_breaker: {{ failures: 2, open_for: 30s }}\nstore: {{ kind: sqlite, path: {} }}\nevents:\n  - url: {}\n    secret: {SECRET}\n    on: [provider.down, provider.up, circuit.open, config.reloaded]\n",
        dir.join("e.db").display(),
        receiver.url
    );
    let gw = Gateway::start(&cfg, "").await;
    let body = br#"{"model":"flaky","messages":[{"role":"user","content":"hi"}]}"#;
    for _ in 0..3 {
        let r = gw.post_json("/v1/chat/completions", body).await;
        assert!(r.status >= 500, "{} {}", r.status, r.text());
    }
    let seen = receiver
        .wait_for("circuit.open and provider.down", |s| {
            !of_type(s, "circuit.open").is_empty() && !of_type(s, "provider.down").is_empty()
        })
        .await;
    let open = of_type(&seen, "circuit.open")[0];
    assert_eq!(open.event["data"]["provider"], "flappy");
    assert_eq!(open.event["data"]["model"], "gpt-x");
    assert!(of_type(&seen, "provider.up").is_empty());

    // The provider answers again: its next probe brings it up.
    flappy.status.store(200, Ordering::SeqCst);
    let seen = receiver
        .wait_for("provider.up", |s| !of_type(s, "provider.up").is_empty())
        .await;
    let up = of_type(&seen, "provider.up")[0];
    assert_eq!(up.event["data"]["provider"], "flappy");

    // A valid reload is announced with its generation.
    gw.signal("HUP");
    let seen = receiver
        .wait_for("config.reloaded", |s| {
            !of_type(s, "config.reloaded").is_empty()
        })
        .await;
    let reloaded = of_type(&seen, "config.reloaded")[0];
    assert_eq!(reloaded.event["data"]["generation"], 2);
    for d in &seen {
        assert_eq!(d.signature, expected_signature(&d.body), "{d:?}");
        assert_eq!(d.header_id, d.event["id"].as_str().unwrap_or(""));
        assert!(
            !String::from_utf8_lossy(&d.body).contains("sk-flappy-secret"),
            "no secret in an event"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
