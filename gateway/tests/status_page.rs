//! The status page on the admin listener: the login form and its cookie, Bearer access, the
//! strict Content-Security-Policy, and `GET /admin/status` reflecting live traffic, a provider
//! that is down, budgets, top keys and the last errors. (The page itself is driven in a real
//! browser by `tests/python/test_status_page.py`.)

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use std::time::{Duration, Instant};

const ADMIN: &str = "adm-status-0123456789";
const KEY: &str = "sk-status-key-0123456789";

fn config(dead: std::net::SocketAddr, dir: &std::path::Path) -> String {
    format!(
        "providers:\n  - {{ name: sim, kind: mock }}\n  - name: dead\n    kind: openai\n    base_url: http://{dead}\n    api_key: sk-dead-secret\n    health_check: {{ interval: 100ms, timeout: 200ms }}\nmodels:\n  - name: chat\n    deployments:\n      - {{ provider: sim, model: mock-1, price: {{ input_per_mtok: 0, output_per_mtok: 1000 }} }}\n  - name: broken\n    deployments:\n      - {{ provider: dead, model: gpt-x }}\nauth:\n  api_keys:\n    - {{ name: k1, key: {KEY}, team: t1 }}\nbudgets:\n  - {{ scope: global, limit: 500, period: daily }}\n  - {{ scope: key:k1, limit: 100, period: monthly, soft_ratio: 0.5 }}\nstore: {{ kind: sqlite, path: {}, flush_interval: 50ms }}\n",
        dir.join("status.db").display()
    )
}

/// A gateway with the admin token (and `server_extra`), its store in a fresh directory.
async fn start(server_extra: &str) -> Gateway {
    let dir = scratch_dir("sy-status");
    Gateway::start(
        &config(refused_addr(), &dir),
        &format!("  admin_token: {ADMIN}\n{server_extra}"),
    )
    .await
}

/// A request to the admin listener with any headers.
async fn admin_req(
    gw: &Gateway,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("http://127.0.0.1:{}{path}", gw.admin_port));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    let resp = tokio::time::timeout(REQUEST_TIMEOUT, gw.client().request(req))
        .await
        .expect("admin answer in time")
        .expect("admin request");
    let (parts, body) = resp.into_parts();
    Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: body.collect().await.expect("body").to_bytes(),
    }
}

async fn status_until(
    gw: &Gateway,
    auth: (&str, &str),
    what: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = admin_req(gw, "GET", "/admin/status", &[auth], "").await;
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        if ok(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "never saw {what}: {v:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_form_sets_a_signed_cookie_and_only_the_form_shows_without_it() {
    let gw = start("").await;

    // Without credentials: the form and nothing else, under a strict CSP.
    let r = admin_req(&gw, "GET", "/", &[], "").await;
    assert_eq!(r.status, 200);
    let csp = r.header("content-security-policy").expect("csp");
    assert!(csp.starts_with("default-src 'none'; script-src 'self'; style-src 'self'"));
    assert!(r.text().contains("name=\"token\""), "{}", r.text());
    assert!(!r.text().contains("id=\"providers\""));
    assert!(!r.text().contains("<script"), "the form runs no script");
    assert_eq!(
        admin_req(&gw, "GET", "/admin/status", &[], "").await.status,
        401
    );

    // A wrong token: 401, the form again, no cookie.
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let r = admin_req(&gw, "POST", "/login", &form, "token=wrong").await;
    assert_eq!(r.status, 401);
    assert!(r.header("set-cookie").is_none());

    // The right one: a cookie that is HttpOnly, SameSite=Strict and does not hold the token.
    let r = admin_req(&gw, "POST", "/login", &form, &format!("token={ADMIN}")).await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/"));
    let set = r.header("set-cookie").expect("set-cookie").to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(
        !set.contains(ADMIN),
        "the token itself must not be in the cookie"
    );
    let cookie = set.split(';').next().expect("pair").to_string();

    let r = admin_req(&gw, "GET", "/", &[("cookie", &cookie)], "").await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("id=\"providers\""));
    assert!(r.text().contains("<script src=\"/status.js\""));
    // A forged cookie is the form again.
    // (The last character changed, whatever it was: '0' forged as '0' would be the cookie itself.)
    let last = if cookie.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}{last}", &cookie[..cookie.len() - 1]);
    let r = admin_req(&gw, "GET", "/", &[("cookie", &forged)], "").await;
    assert!(r.text().contains("name=\"token\""));
    // Bearer works as well.
    let bearer = format!("Bearer {ADMIN}");
    let r = admin_req(&gw, "GET", "/", &[("authorization", &bearer)], "").await;
    assert!(r.text().contains("id=\"providers\""));
    // The cookie reads; it never changes anything.
    let r = admin_req(
        &gw,
        "POST",
        "/admin/keys",
        &[("cookie", &cookie)],
        r#"{"name":"x"}"#,
    )
    .await;
    assert_eq!(r.status, 401);
    // The page's assets come from this origin with their types.
    let js = admin_req(&gw, "GET", "/status.js", &[], "").await;
    assert_eq!(js.status, 200);
    assert!(js
        .header("content-type")
        .unwrap_or("")
        .starts_with("text/javascript"));
    assert!(js.text().contains("/admin/status"));
    let css = admin_req(&gw, "GET", "/status.css", &[], "").await;
    assert!(css
        .header("content-type")
        .unwrap_or("")
        .starts_with("text/css"));
    // Logging out clears the cookie.
    let r = admin_req(&gw, "POST", "/logout", &[("cookie", &cookie)], "").await;
    assert_eq!(r.status, 303);
    assert!(r.header("set-cookie").unwrap_or("").contains("Max-Age=0"));
    assert!(gw.audit_log().contains("status_page_login"));
    assert!(!gw.audit_log().contains(ADMIN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_document_shows_traffic_health_budgets_keys_and_errors() {
    let gw = start("").await;
    let auth = format!("Bearer {KEY}");
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    for _ in 0..3 {
        let r = gw
            .request(
                "POST",
                "/v1/chat/completions",
                Some(br#"{"model":"chat","messages":[{"role":"user","content":"hi"}]}"#),
                &headers,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let r = gw
        .request(
            "POST",
            "/v1/chat/completions",
            Some(br#"{"model":"broken","messages":[{"role":"user","content":"hi"}]}"#),
            &headers,
        )
        .await;
    assert!(r.status >= 500, "{}", r.text());

    let bearer = format!("Bearer {ADMIN}");
    let v = status_until(
        &gw,
        ("authorization", &bearer),
        "the dead provider down, k1's spend and all four requests counted",
        |v| {
            // A request is counted when it is logged, just after its answer was sent.
            let counted = v["traffic"]["window"]["requests"] == 4;
            let dead_down = v["providers"].as_array().is_some_and(|l| {
                l.iter()
                    .any(|p| p["name"] == "dead" && p["status"] == "unhealthy")
            });
            let k1 = v["top_keys_today"].as_array().is_some_and(|l| {
                l.iter()
                    .any(|k| k["key"] == "k1" && k["requests"].as_u64() >= Some(3))
            });
            dead_down && k1 && counted
        },
    )
    .await;
    assert_eq!(v["status"], "degraded");
    let sim = v["providers"]
        .as_array()
        .and_then(|l| l.iter().find(|p| p["name"] == "sim"))
        .expect("sim listed");
    assert_eq!(sim["status"], "healthy");
    // The routing table per model, with each deployment's circuit.
    let chat = v["models"]
        .as_array()
        .and_then(|l| l.iter().find(|m| m["name"] == "chat"))
        .expect("chat listed");
    assert_eq!(chat["deployments"][0]["provider"], "sim");
    assert_eq!(chat["deployments"][0]["circuit"], "closed");
    // Traffic: four requests, one failed, in the newest buckets; latency observed.
    let w = &v["traffic"]["window"];
    assert_eq!(w["requests"], 4, "{v:#}");
    assert_eq!(w["errors"], 1);
    assert!(w["latency_p50_ms"].as_f64().is_some());
    assert_eq!(v["traffic"]["rps"].as_array().map(Vec::len), Some(90));
    // Budgets with their period and reset.
    let budgets = v["budgets"].as_array().expect("budgets");
    assert_eq!(budgets.len(), 2);
    assert!(budgets
        .iter()
        .any(|b| b["scope"] == "key:k1" && b["period"] == "monthly"));
    assert!(budgets.iter().all(|b| b["resets_at"].as_i64().is_some()));
    // The failed request is the last error, with its model.
    let errors = v["last_errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["model"], "broken");
    assert!(errors[0]["status"].as_u64().unwrap_or(0) >= 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_can_be_turned_off() {
    let gw = start("  status_page: false\n").await;
    assert_eq!(admin_req(&gw, "GET", "/", &[], "").await.status, 404);
    assert_eq!(
        admin_req(&gw, "GET", "/status.js", &[], "").await.status,
        404
    );
    // The JSON endpoint stays, behind the token.
    let bearer = format!("Bearer {ADMIN}");
    let r = admin_req(
        &gw,
        "GET",
        "/admin/status",
        &[("authorization", &bearer)],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
}
