//! Sticky splits (`sticky: user | key | header:<name>`): a caller stays on one deployment across
//! many requests, while the split over many callers follows the weights (an A/B test).

mod common;

use common::*;
use std::collections::HashMap;

fn config(sticky: &str) -> String {
    format!(
        "providers:\n  - {{ name: a, kind: mock }}\n  - {{ name: b, kind: mock }}\n  - {{ name: c, kind: mock }}\nmodels:\n  - name: ab\n    strategy: weighted\n    sticky: \"{sticky}\"\n    deployments:\n      - {{ provider: a, model: x, weight: 1 }}\n      - {{ provider: b, model: y, weight: 3 }}\n      - {{ provider: c, model: z, weight: 6 }}\n"
    )
}

async fn served_by(gw: &Gateway, body: &str, headers: &[(&str, &str)]) -> String {
    let r = gw
        .request(
            "POST",
            "/v1/chat/completions",
            Some(body.as_bytes()),
            headers,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.header("x-switchyard-provider").unwrap_or("").to_string()
}

fn chat_as(user: &str) -> String {
    format!(r#"{{"model":"ab","user":"{user}","messages":[{{"role":"user","content":"hi"}}]}}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_keeps_its_deployment_and_users_split_by_weight() {
    let gw = Gateway::start(&config("user"), "").await;
    for user in ["alice", "bob", "carol", "dave"] {
        let first = served_by(&gw, &chat_as(user), &[]).await;
        for _ in 0..99 {
            assert_eq!(
                served_by(&gw, &chat_as(user), &[]).await,
                first,
                "{user} moved"
            );
        }
    }
    let users = 600;
    let mut by: HashMap<String, usize> = HashMap::new();
    for i in 0..users {
        *by.entry(served_by(&gw, &chat_as(&format!("user-{i}")), &[]).await)
            .or_insert(0) += 1;
    }
    for (p, weight) in [("a", 0.1), ("b", 0.3), ("c", 0.6)] {
        let share = by.get(p).copied().unwrap_or(0) as f64 / users as f64;
        assert!(
            (share - weight).abs() <= 0.1 * weight.max(0.3),
            "{p}: {share} of users, weight share {weight} ({by:?})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_names_the_caller() {
    let gw = Gateway::start(&config("header:x-team"), "").await;
    let body = r#"{"model":"ab","messages":[{"role":"user","content":"hi"}]}"#;
    for team in ["red", "green", "blue", "gold", "teal", "plum"] {
        let first = served_by(&gw, body, &[("x-team", team)]).await;
        for _ in 0..20 {
            assert_eq!(served_by(&gw, body, &[("x-team", team)]).await, first);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_of_a_dead_deployment_move_and_the_others_stay() {
    let live = switchyard_benches::upstream::MockUpstream::start(Default::default())
        .await
        .expect("upstream");
    let live2 = switchyard_benches::upstream::MockUpstream::start(Default::default())
        .await
        .expect("upstream");
    let dead = format!("http://{}/v1", refused_addr());
    let cfg = format!(
        "providers:\n{}\n{}\n{}\nmodels:\n  - name: ab\n    strategy: weighted\n    sticky: user\n    retry: {{ attempts: 3, backoff: {{ base: 1ms, max: 2ms }} }}\n    deployments:\n      - {{ provider: a, model: x }}\n      - {{ provider: b, model: y }}\n      - {{ provider: dead, model: z }}\n",
        openai_provider("a", &live.base_url(), ""),
        openai_provider("b", &live2.base_url(), ""),
        openai_provider("dead", &dead, ""),
    );
    let gw = Gateway::start(&cfg, "").await;
    // Every request is answered (failover), and once `dead` is unhealthy its callers settle on a
    // live deployment like everyone else: from then on each user keeps one deployment.
    for i in 0..30 {
        served_by(&gw, &chat_as(&format!("u{i}")), &[]).await;
    }
    let mut first = HashMap::new();
    for i in 0..30 {
        first.insert(i, served_by(&gw, &chat_as(&format!("u{i}")), &[]).await);
    }
    for _ in 0..3 {
        for i in 0..30 {
            assert_eq!(
                served_by(&gw, &chat_as(&format!("u{i}")), &[]).await,
                first[&i],
                "u{i} moved"
            );
        }
    }
    assert!(first.values().all(|p| p != "dead"));
    assert!(first.values().any(|p| p == "a") && first.values().any(|p| p == "b"));
}
