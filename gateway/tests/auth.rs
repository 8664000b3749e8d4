//! Identity: virtual keys, OAuth2/OIDC JWTs against a local JWKS server, the admin API, the
//! store across restarts, the failure limiter — and no secret in any log.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use switchyard_filters::auth::jwt::testing::{sign_hs256, unsigned, TestKey, RSA_A, RSA_B};

const ADMIN: &str = "admin-token-for-tests-0123";
const KEY_OK: &str = "sk-config-key-valid-0001";
const KEY_EXPIRED: &str = "sk-config-key-expired-02";
const KEY_NET: &str = "sk-config-key-10-net-003";
const ISSUER: &str = "https://auth.test/";

/// A JWKS server whose document can be swapped (key rotation) and whose hits are counted.
struct JwksServer {
    port: u16,
    doc: Arc<Mutex<String>>,
    hits: Arc<AtomicUsize>,
    introspections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl JwksServer {
    async fn start(doc: Value) -> JwksServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let doc = Arc::new(Mutex::new(doc.to_string()));
        let hits = Arc::new(AtomicUsize::new(0));
        let introspections = Arc::new(AtomicUsize::new(0));
        let (d, h, n) = (doc.clone(), hits.clone(), introspections.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (d, h, n) = (d.clone(), h.clone(), n.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (d, h, n) = (d.clone(), h.clone(), n.clone());
                        async move { Ok::<_, std::convert::Infallible>(answer(req, &d, &h, &n).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        JwksServer {
            port,
            doc,
            hits,
            introspections,
            task,
        }
    }

    fn set(&self, doc: Value) {
        if let Ok(mut d) = self.doc.lock() {
            *d = doc.to_string();
        }
    }
}

/// The identity provider: the JWKS document, and RFC 7662 introspection that knows one token
/// (and one answered without `aud`, and one it cannot check: 503).
async fn answer(
    req: http::Request<hyper::body::Incoming>,
    doc: &Mutex<String>,
    hits: &AtomicUsize,
    introspections: &AtomicUsize,
) -> http::Response<Full<Bytes>> {
    use http_body_util::BodyExt;
    let introspect = req.uri().path() == "/introspect";
    // base64("gw:s3cret-intro")
    let basic_ok = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        == Some("Basic Z3c6czNjcmV0LWludHJv");
    let form = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut status = 200;
    let body = if introspect {
        introspections.fetch_add(1, Ordering::SeqCst);
        let form = String::from_utf8_lossy(&form);
        let asked = |t: &str| basic_ok && form.contains(&format!("token={t}&"));
        if asked("opaque-good-token") {
            json!({"active": true, "sub": "carol", "client_id": "portal", "aud": "switchyard",
                   "exp": now() + 600, "iss": ISSUER, "team": "team-c"})
            .to_string()
        } else if asked("opaque-no-aud-token") {
            json!({"active": true, "sub": "dave", "exp": now() + 600, "iss": ISSUER}).to_string()
        } else if asked("opaque-flaky-token") {
            status = 503;
            String::new()
        } else {
            json!({"active": false}).to_string()
        }
    } else {
        hits.fetch_add(1, Ordering::SeqCst);
        doc.lock().map(|s| s.clone()).unwrap_or_default()
    };
    http::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("response")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn claims() -> Value {
    json!({"iss": ISSUER, "aud": "switchyard", "sub": "alice", "exp": now() + 600,
           "team": "team-a", "project": "bot"})
}

fn config(jwks_port: u16, store: &std::path::Path, extra_auth: &str) -> String {
    format!(
        r#"providers:
  - name: sim
    kind: mock
models:
  - name: chat
    deployments: [{{ provider: sim, model: mock-1 }}]
  - name: other
    deployments: [{{ provider: sim, model: mock-2 }}]
auth:
  api_keys:
    - {{ name: app, key: "{KEY_OK}", team: team-a, models: [chat] }}
    - {{ name: old-app, key: "{KEY_EXPIRED}", expires: "2020-01-01T00:00:00Z" }}
    - {{ name: internal, key: "{KEY_NET}", ip_allow: ["10.0.0.0/8"] }}
  oauth:
    issuer: "{ISSUER}"
    audience: switchyard
    jwks_url: http://127.0.0.1:{jwks_port}/.well-known/jwks.json
    algorithms: [RS256, ES256]
    claims: {{ team: team, project: project, user: sub }}
    leeway: 5s
    introspection: {{ url: "http://127.0.0.1:{jwks_port}/introspect", client_id: gw, client_secret: s3cret-intro }}
{extra_auth}store:
  kind: sqlite
  path: {}
"#,
        store.display()
    )
}

const CHAT: &[u8] = br#"{"model":"chat","messages":[{"role":"user","content":"hi"}]}"#;

async fn call(gw: &Gateway, bearer: Option<&str>, body: &[u8]) -> Reply {
    let auth = bearer.map(|b| format!("Bearer {b}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    gw.request("POST", "/v1/chat/completions", Some(body), &headers)
        .await
}

fn code(r: &Reply) -> String {
    r.json()["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

struct Setup {
    gw: Gateway,
    jwks: JwksServer,
    rsa: TestKey,
    ec: TestKey,
    _store: tempdir::Dir,
}

mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    pub fn new(tag: &str) -> Dir {
        let p = super::scratch_dir(&format!("sy-auth-{tag}"));
        Dir(p)
    }
}

async fn setup(tag: &str, extra_auth: &str) -> Setup {
    let rsa = TestKey::rsa(RSA_A);
    let ec = TestKey::ec();
    let jwks = JwksServer::start(json!({"keys": [rsa.jwk("rsa-1"), ec.jwk("ec-1")]})).await;
    let store = tempdir::new(tag);
    let gw = Gateway::start(
        &config(jwks.port, &store.0.join("state.db"), extra_auth),
        &format!("  admin_token: \"{ADMIN}\"\n"),
    )
    .await;
    Setup {
        gw,
        jwks,
        rsa,
        ec,
        _store: store,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_keys() {
    let s = setup("keys", "").await;
    let gw = &s.gw;
    assert_eq!(code(&call(gw, None, CHAT).await), "missing_api_key");
    assert_eq!(call(gw, None, CHAT).await.status, 401);
    let ok = call(gw, Some(KEY_OK), CHAT).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    // x-api-key works too (Anthropic style).
    let r = gw
        .request(
            "POST",
            "/v1/chat/completions",
            Some(CHAT),
            &[("x-api-key", KEY_OK)],
        )
        .await;
    assert_eq!(r.status, 200);
    let r = call(gw, Some("sy-not-a-key-at-all-xyz"), CHAT).await;
    assert_eq!((r.status, code(&r)), (401, "invalid_api_key".into()));
    // Shaped like a provider key: never sent to introspection, refused as a key.
    let r = call(gw, Some("sk-not-a-key-at-all-xyz"), CHAT).await;
    assert_eq!((r.status, code(&r)), (401, "invalid_api_key".into()));
    let r = call(gw, Some(KEY_OK), br#"{"model":"other","messages":[]}"#).await;
    assert_eq!((r.status, code(&r)), (403, "model_not_allowed".into()));
    let r = call(gw, Some(KEY_EXPIRED), CHAT).await;
    assert_eq!((r.status, code(&r)), (403, "expired_api_key".into()));
    let r = call(gw, Some(KEY_NET), CHAT).await;
    assert_eq!((r.status, code(&r)), (403, "ip_not_allowed".into()));

    // Runtime keys through the admin API.
    let created = gw
        .admin(
            "POST",
            "/admin/keys",
            Some(ADMIN),
            Some(r#"{"name":"runtime","team":"team-b","models":["chat","other"]}"#),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let secret = created.json()["key"].as_str().expect("key").to_string();
    assert!(secret.starts_with("sy-") && secret.len() >= 3 + 43);
    assert_eq!(call(gw, Some(&secret), CHAT).await.status, 200);
    // Out-of-range times are 400, checked before anything is written: the key is unchanged.
    let absurd = gw
        .admin(
            "POST",
            "/admin/keys/runtime/rotate",
            Some(ADMIN),
            Some(r#"{"grace":"20000years"}"#),
        )
        .await;
    assert_eq!(absurd.status, 400, "{}", absurd.text());
    assert!(absurd.text().contains("grace"), "{}", absurd.text());
    assert_eq!(call(gw, Some(&secret), CHAT).await.status, 200);
    for bad in ["to=253402300800", "from=-1", "to=99999-01-01"] {
        let r = gw
            .admin("GET", &format!("/admin/usage?{bad}"), Some(ADMIN), None)
            .await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
    }
    // Rotation with a grace period: both work, then only the new one.
    let rotated = gw
        .admin(
            "POST",
            "/admin/keys/runtime/rotate",
            Some(ADMIN),
            Some(r#"{"grace":"2s"}"#),
        )
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.text());
    let new_secret = rotated.json()["key"].as_str().expect("key").to_string();
    assert_eq!(
        call(gw, Some(&secret), CHAT).await.status,
        200,
        "old key inside its grace period"
    );
    assert_eq!(call(gw, Some(&new_secret), CHAT).await.status, 200);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let r = call(gw, Some(&secret), CHAT).await;
    assert_eq!((r.status, code(&r)), (401, "rotated_api_key".into()));
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("rotated"));
    assert_eq!(call(gw, Some(&new_secret), CHAT).await.status, 200);
    // Revocation.
    assert_eq!(
        gw.admin("DELETE", "/admin/keys/runtime", Some(ADMIN), None)
            .await
            .status,
        200
    );
    let r = call(gw, Some(&new_secret), CHAT).await;
    assert_eq!((r.status, code(&r)), (401, "revoked_api_key".into()));
    // Config keys are read-only through the API.
    assert_eq!(
        gw.admin("DELETE", "/admin/keys/app", Some(ADMIN), None)
            .await
            .status,
        409
    );

    // The caller travels to the access log; no secret reaches any log.
    let line = gw
        .access_line(|l| l["status"] == 200)
        .await
        .expect("an access log line");
    assert_eq!(line["caller"]["name"], "app");
    assert_eq!(line["caller"]["team"], "team-a");
    assert_eq!(line["caller"]["kind"], "virtual_key");
    // The audit log is written by its own thread: give it a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while !gw.audit_log().contains("model_not_allowed") && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for log in [gw.access_log(), gw.audit_log(), gw.log()] {
        for secret in [KEY_OK, KEY_EXPIRED, KEY_NET, &secret, &new_secret, ADMIN] {
            assert!(!log.contains(secret), "a secret leaked into a log");
        }
    }
    let audit = gw.audit_log();
    assert!(
        audit.contains("\"action\":\"create_key\"") && audit.contains("\"action\":\"rotate_key\"")
    );
    assert!(audit.contains("\"reason\":\"invalid_api_key\""));
    assert!(audit.contains("\"reason\":\"model_not_allowed\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_tokens() {
    let s = setup("jwt", "").await;
    let gw = &s.gw;
    let rs = |c: &Value| s.rsa.sign("RS256", Some("rsa-1"), c);
    let ok = call(gw, Some(&rs(&claims())), CHAT).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(
        call(gw, Some(&s.ec.sign("ES256", Some("ec-1"), &claims())), CHAT)
            .await
            .status,
        200
    );

    let mut c = claims();
    c["exp"] = json!(now() - 60);
    assert_eq!(code(&call(gw, Some(&rs(&c)), CHAT).await), "expired_token");
    let mut c = claims();
    c["nbf"] = json!(now() + 600);
    assert_eq!(code(&call(gw, Some(&rs(&c)), CHAT).await), "invalid_token");
    let mut c = claims();
    c["iss"] = json!("https://evil.test/");
    assert_eq!(call(gw, Some(&rs(&c)), CHAT).await.status, 401);
    let mut c = claims();
    c["aud"] = json!("not-us");
    assert_eq!(call(gw, Some(&rs(&c)), CHAT).await.status, 401);
    assert_eq!(call(gw, Some(&unsigned(&claims())), CHAT).await.status, 401);
    let public_n = s.rsa.jwk("rsa-1")["n"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let hs = sign_hs256(public_n.as_bytes(), Some("rsa-1"), &claims());
    assert_eq!(call(gw, Some(&hs), CHAT).await.status, 401);
    let good = rs(&claims());
    let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
    let mut evil = claims();
    evil["sub"] = json!("mallory");
    parts[1] = base64_url(&evil.to_string());
    assert_eq!(call(gw, Some(&parts.join(".")), CHAT).await.status, 401);

    // Key rotation at the issuer: a token with an unknown kid triggers a JWKS refresh.
    let rotated = TestKey::rsa(RSA_B);
    let before = s.jwks.hits.load(Ordering::SeqCst);
    s.jwks
        .set(json!({"keys": [s.rsa.jwk("rsa-1"), s.ec.jwk("ec-1"), rotated.jwk("rsa-2")]}));
    tokio::time::sleep(Duration::from_millis(5100)).await; // past the on-demand refresh interval
    let r = call(
        gw,
        Some(&rotated.sign("RS256", Some("rsa-2"), &claims())),
        CHAT,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(s.jwks.hits.load(Ordering::SeqCst) > before);

    // Machine token (client credentials) and user token are told apart in the access log.
    let mut m = claims();
    m["sub"] = json!("billing@clients");
    m["azp"] = json!("billing");
    assert_eq!(
        call(gw, Some(&s.ec.sign("ES256", Some("ec-1"), &m)), CHAT)
            .await
            .status,
        200
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let kinds: Vec<String> = gw
        .access_log()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|l| l["caller"]["kind"].as_str().map(str::to_string))
        .collect();
    assert!(
        kinds.iter().any(|k| k == "user_token") && kinds.iter().any(|k| k == "machine_token"),
        "{kinds:?}"
    );
    let logs = [gw.access_log(), gw.audit_log(), gw.log()].concat();
    assert!(
        !logs.contains(&good[good.len() - 20..]),
        "a token leaked into a log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opaque_tokens_are_introspected_and_cached() {
    let s = setup("introspect", "").await;
    let r = call(&s.gw, Some("opaque-good-token"), CHAT).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        call(&s.gw, Some("opaque-good-token"), CHAT).await.status,
        200
    );
    assert_eq!(
        s.jwks.introspections.load(Ordering::SeqCst),
        1,
        "the answer was not cached"
    );
    let r = call(&s.gw, Some("opaque-other-token"), CHAT).await;
    assert_eq!((r.status, code(&r)), (401, "invalid_token".into()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let line =
        s.gw.access_log()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|l| l["status"] == 200)
            .expect("access line");
    assert_eq!(line["caller"]["name"], "carol");
    assert_eq!(line["caller"]["team"], "team-c");
    assert_eq!(line["caller"]["kind"], "user_token");
    assert!(![s.gw.access_log(), s.gw.audit_log(), s.gw.log()]
        .concat()
        .contains("opaque-good-token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_accepts_a_token_with_the_admin_scope() {
    let s = setup("admin-jwt", "").await;
    let mut admin = claims();
    admin["scope"] = json!("openid switchyard:admin");
    let good = s.rsa.sign("RS256", Some("rsa-1"), &admin);
    let r = s.gw.admin("GET", "/admin/keys", Some(&good), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let plain = s.rsa.sign("RS256", Some("rsa-1"), &claims());
    assert_eq!(
        s.gw.admin("GET", "/admin/keys", Some(&plain), None)
            .await
            .status,
        401
    );
    let created =
        s.gw.admin(
            "POST",
            "/admin/keys",
            Some(&good),
            Some(r#"{"name":"by-token"}"#),
        )
        .await;
    assert_eq!(created.status, 201);
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while !s.gw.audit_log().contains("create_key") && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        s.gw.audit_log().contains("\"actor\":\"token:alice\""),
        "{}",
        s.gw.audit_log()
    );
}

fn base64_url(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_needs_its_token_and_keys_survive_a_restart() {
    let rsa = TestKey::rsa(RSA_A);
    let jwks = JwksServer::start(json!({"keys": [rsa.jwk("rsa-1")]})).await;
    let store = tempdir::new("restart");
    let conf = config(jwks.port, &store.0.join("state.db"), "");
    let admin_line = format!("  admin_token: \"{ADMIN}\"\n");
    let secret = {
        let gw = Gateway::start(&conf, &admin_line).await;
        assert_eq!(gw.admin("GET", "/admin/keys", None, None).await.status, 401);
        assert_eq!(
            gw.admin("GET", "/admin/keys", Some("wrong-token-wrong-token"), None)
                .await
                .status,
            401
        );
        let list = gw.admin("GET", "/admin/keys", Some(ADMIN), None).await;
        assert_eq!(list.status, 200);
        assert_eq!(list.json()["keys"].as_array().map(Vec::len), Some(3));
        assert!(!list.text().contains(KEY_OK));
        let r = gw
            .admin(
                "POST",
                "/admin/keys",
                Some(ADMIN),
                Some(r#"{"name":"durable","project":"p1"}"#),
            )
            .await;
        assert_eq!(r.status, 201);
        assert_eq!(r.json()["persistent"], true);
        let bad = gw
            .admin(
                "POST",
                "/admin/keys",
                Some(ADMIN),
                Some(r#"{"name":"x","models":["nope"]}"#),
            )
            .await;
        assert_eq!(bad.status, 400);
        let dup = gw
            .admin(
                "POST",
                "/admin/keys",
                Some(ADMIN),
                Some(r#"{"name":"app"}"#),
            )
            .await;
        assert_eq!(dup.status, 409);
        let projects = gw
            .admin("GET", "/admin/projects", Some(ADMIN), None)
            .await
            .json();
        assert_eq!(projects["projects"][0]["name"], "p1");
        r.json()["key"].as_str().expect("key").to_string()
    };
    let gw = Gateway::start(&conf, &admin_line).await;
    assert_eq!(
        call(&gw, Some(&secret), CHAT).await.status,
        200,
        "runtime key lost on restart"
    );
    let shown = gw
        .admin("GET", "/admin/keys/durable", Some(ADMIN), None)
        .await;
    assert_eq!(shown.status, 200);
    assert_eq!(shown.json()["source"], "store");
    // Reloads keep them too.
    gw.signal("HUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(call(&gw, Some(&secret), CHAT).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_from_one_address_are_slowed_down() {
    let s = setup("limit", "  max_failures_per_minute: 3\n").await;
    for _ in 0..3 {
        assert_eq!(
            call(&s.gw, Some("sk-guess-guess-guess-1"), CHAT)
                .await
                .status,
            401
        );
    }
    let r = call(&s.gw, Some(KEY_OK), CHAT).await;
    assert_eq!((r.status, code(&r)), (429, "too_many_auth_failures".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_models_need_credentials_unless_public() {
    let s = setup("health", "").await;
    assert_eq!(
        s.gw.request("GET", "/v1/models", None, &[]).await.status,
        401
    );
    let bearer = format!("Bearer {KEY_OK}");
    assert_eq!(
        s.gw.request("GET", "/v1/models", None, &[("authorization", &bearer)])
            .await
            .status,
        200
    );
    let rsa = TestKey::rsa(RSA_A);
    let jwks = JwksServer::start(json!({"keys": [rsa.jwk("rsa-1")]})).await;
    let store = tempdir::new("public");
    let gw = Gateway::start(
        &config(jwks.port, &store.0.join("state.db"), ""),
        "  public_health: true\n",
    )
    .await;
    let public = gw.request("GET", "/v1/health", None, &[]).await;
    assert_eq!(public.status, 200);
    // Without a credential: the status, nothing about providers, models or budgets.
    let public = public.json();
    assert_eq!(public["status"], "ok", "{public}");
    assert!(
        public.get("providers").is_none() && public.get("budgets").is_none(),
        "{public}"
    );
    assert_eq!(call(&gw, None, CHAT).await.status, 401);
}

// ---- the failure limiter: per address, exact, bounded (issue 17, point 2) ----

/// One HTTP/1.1 request from the loopback address `from` (127.0.0.0/8 is all loopback on Linux),
/// on a fresh connection; returns the answer's status.
async fn status_from(port: u16, from: std::net::Ipv4Addr, path: &str, bearer: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(std::net::SocketAddr::from((from, 0)))
        .expect("bind a loopback address");
    let mut conn = socket
        .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .expect("connect");
    let (method, body) = if path.starts_with("/admin") {
        ("GET", &b""[..])
    } else {
        ("POST", CHAT)
    };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {bearer}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.expect("write head");
    conn.write_all(body).await.expect("write body");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), async {
        let mut buf = [0u8; 1024];
        while !answer.windows(2).any(|w| w == b"\r\n") {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    });
    read.await
        .unwrap_or_else(|_| panic!("{path} from {from}: no answer within 30 s"));
    let line = String::from_utf8_lossy(&answer);
    line.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {line:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bad_keys_from_many_addresses_locks_out_only_those_addresses() {
    let s = setup("flood", "  max_failures_per_minute: 3\n").await;
    let port = s.gw.port;
    // 2,500 addresses (more than the old shared sketch's 1,024 columns) each send 3 bad keys.
    let addrs: Vec<std::net::Ipv4Addr> = (0..2_500u32)
        .map(|n| std::net::Ipv4Addr::from(0x7f0a_0000 + n))
        .collect();
    let tasks: Vec<_> = addrs
        .chunks(100)
        .map(|chunk| {
            let chunk = chunk.to_vec();
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for a in chunk {
                    for _ in 0..3 {
                        statuses.push(
                            status_from(port, a, "/v1/chat/completions", "sk-guess-000").await,
                        );
                    }
                }
                statuses
            })
        })
        .collect();
    for t in tasks {
        let statuses = t.await.expect("flood task");
        assert!(statuses.iter().all(|&st| st == 401), "{statuses:?}");
    }
    // Every flooding address is now over its limit, even with a valid key...
    for a in addrs.iter().step_by(250) {
        assert_eq!(
            status_from(port, *a, "/v1/chat/completions", KEY_OK).await,
            429
        );
    }
    // ...and no fresh address with a valid key is refused.
    for n in 0..20u32 {
        let fresh = std::net::Ipv4Addr::from(0x7f14_0000 + n);
        assert_eq!(
            status_from(port, fresh, "/v1/chat/completions", KEY_OK).await,
            200,
            "fresh address {fresh}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_admin_tokens_are_limited_per_address() {
    let s = setup("admin-limit", "  max_failures_per_minute: 5\n").await;
    let port = s.gw.admin_port;
    let guesser = std::net::Ipv4Addr::new(127, 30, 0, 1);
    let mut statuses = Vec::new();
    for n in 0..60 {
        statuses.push(
            status_from(
                port,
                guesser,
                "/admin/keys",
                &format!("wrong-admin-token-{n:04}"),
            )
            .await,
        );
    }
    assert_eq!(&statuses[..5], &[401; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|&st| st == 429), "{statuses:?}");
    // The right token from the locked-out address is refused too (a guesser learns nothing)...
    assert_eq!(status_from(port, guesser, "/admin/keys", ADMIN).await, 429);
    // ...but works from any other address.
    let other = std::net::Ipv4Addr::new(127, 30, 0, 2);
    assert_eq!(status_from(port, other, "/admin/keys", ADMIN).await, 200);
    assert!(s.gw.audit_log().contains("too_many_failures"));
}

// ---- identities do not collide (issue 17, point 4) ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_whose_subject_is_a_keys_name_does_not_share_its_limits() {
    const LIMITED: &str = "sk-config-key-limited-04";
    let rsa = TestKey::rsa(RSA_A);
    let jwks = JwksServer::start(json!({"keys": [rsa.jwk("rsa-1")]})).await;
    let store = tempdir::new("collide");
    let cfg = config(jwks.port, &store.0.join("state.db"), "").replace(
        "  api_keys:\n",
        &format!(
            "  api_keys:\n    - {{ name: bot, key: \"{LIMITED}\", limits: {{ requests_per_minute: 2 }} }}\n"
        ),
    );
    let gw = Gateway::start(&cfg, &format!("  admin_token: \"{ADMIN}\"\n")).await;
    let mut as_bot = claims();
    as_bot["sub"] = json!("bot");
    let token = rsa.sign("RS256", Some("rsa-1"), &as_bot);
    for _ in 0..3 {
        let r = call(&gw, Some(&token), CHAT).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // The token used none of the key's allowance: the key gets exactly its two, then is limited
    // as its own.
    for _ in 0..2 {
        let r = call(&gw, Some(LIMITED), CHAT).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let r = call(&gw, Some(LIMITED), CHAT).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.text().contains("key:bot"), "{}", r.text());
    // The access log names each caller with its kind.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = gw.access_log();
    assert!(log.contains("\"kind\":\"user_token\""), "{log}");
    assert!(log.contains("\"kind\":\"virtual_key\""), "{log}");
}

// ---- /v1/health shows a caller only what it may use (issue 17, point 10) ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_shows_a_key_only_its_providers_and_budgets() {
    let rsa = TestKey::rsa(RSA_A);
    let jwks = JwksServer::start(json!({"keys": [rsa.jwk("rsa-1")]})).await;
    let store = tempdir::new("health-view");
    let cfg = config(jwks.port, &store.0.join("state.db"), "")
        .replace(
            "models:\n",
            "  - name: vault\n    kind: mock\nmodels:\n  - name: hidden\n    deployments: [{ provider: vault, model: m-3 }]\n",
        )
        .replace(
            "store:\n",
            "budgets:\n  - { scope: team:team-a, limit: 5, period: daily }\n  - { scope: team:team-b, limit: 7, period: daily }\n  - { scope: provider:sim, limit: 9, period: daily }\n  - { scope: provider:vault, limit: 11, period: daily }\nstore:\n",
        );
    let gw = Gateway::start(&cfg, &format!("  admin_token: \"{ADMIN}\"\n")).await;
    let bearer = format!("Bearer {KEY_OK}");
    let mine = gw
        .request("GET", "/v1/health", None, &[("authorization", &bearer)])
        .await;
    assert_eq!(mine.status, 200, "{}", mine.text());
    let mine = mine.json();
    let names = |v: &Value, list: &str, field: &str| -> Vec<String> {
        v[list]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|x| x[field].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    // The key `app` (team-a) may use `chat` only, served by `sim`.
    assert_eq!(names(&mine, "models", "name"), ["chat"], "{mine}");
    assert_eq!(names(&mine, "providers", "name"), ["sim"], "{mine}");
    assert_eq!(
        names(&mine, "budgets", "scope"),
        ["team:team-a", "provider:sim"],
        "{mine}"
    );
    // The admin listener has the full view.
    let full = gw.admin("GET", "/admin/health", Some(ADMIN), None).await;
    assert_eq!(full.status, 200, "{}", full.text());
    let full = full.json();
    assert_eq!(
        names(&full, "models", "name"),
        ["hidden", "chat", "other"],
        "{full}"
    );
    assert_eq!(
        names(&full, "providers", "name"),
        ["sim", "vault"],
        "{full}"
    );
    assert_eq!(names(&full, "budgets", "scope").len(), 4, "{full}");
    assert_eq!(
        gw.admin("GET", "/admin/health", None, None).await.status,
        401
    );
}

// ---- Key rotation and introspection hardening (security issue, points 1 and 9) ----

/// 2200-01-01T00:00:00Z: an expiry the token's author chose far away.
const YEAR_2200: u64 = 7_258_118_400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_out_signing_key_stops_working_at_once() {
    // A short refresh, so the gateway refetches the JWKS by itself.
    let s = setup("rotation", "    refresh: 1s\n").await;
    let mut far = claims();
    far["exp"] = json!(YEAR_2200);
    let k1_token = s.rsa.sign("RS256", Some("rsa-1"), &far);
    let r = call(&s.gw, Some(&k1_token), CHAT).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Served from the verified-token cache now.
    assert_eq!(call(&s.gw, Some(&k1_token), CHAT).await.status, 200);

    // The issuer rotates: only k2 is published.
    let k2 = TestKey::rsa(RSA_B);
    s.jwks.set(json!({"keys": [k2.jwk("rsa-2")]}));
    let before = s.jwks.hits.load(Ordering::SeqCst);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    // Two fetches: the first may have read the old document while it was being replaced.
    while s.jwks.hits.load(Ordering::SeqCst) < before + 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        s.jwks.hits.load(Ordering::SeqCst) >= before + 2,
        "no refetch"
    );

    let r = call(&s.gw, Some(&k1_token), CHAT).await;
    assert_eq!(
        (r.status, code(&r)),
        (401, "invalid_token".into()),
        "a token of a rotated-out key still passed: {}",
        r.text()
    );
    let r = call(&s.gw, Some(&k2.sign("RS256", Some("rsa-2"), &far)), CHAT).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_never_sees_api_keys_requires_aud_and_caches_refusals() {
    let s = setup("introspect-guard", "").await;
    let asked = || s.jwks.introspections.load(Ordering::SeqCst);
    // Credentials shaped like a virtual key or a provider key never reach the issuer.
    for key in [
        "sk-proj-not-a-token-000000001",
        "sk-ant-api03-not-a-token-0001",
        "sy-not-one-of-ours-000000001",
        "AKIAIOSFODNN7EXAMPLE",
        "AIzaSyNotATokenNotAToken0001",
    ] {
        let r = call(&s.gw, Some(key), CHAT).await;
        assert_eq!(
            (r.status, code(&r)),
            (401, "invalid_api_key".into()),
            "{key}"
        );
        let r =
            s.gw.request(
                "POST",
                "/v1/chat/completions",
                Some(CHAT),
                &[("x-api-key", key)],
            )
            .await;
        assert_eq!(r.status, 401, "{key}");
    }
    assert_eq!(asked(), 0, "an API key was sent to introspection");

    // With an audience configured, an active answer without `aud` is refused.
    let r = call(&s.gw, Some("opaque-no-aud-token"), CHAT).await;
    assert_eq!((r.status, code(&r)), (401, "invalid_token".into()));
    assert!(r.text().contains("audience"), "{}", r.text());
    assert_eq!(asked(), 1);
    // An inactive token is refused too.
    let r = call(&s.gw, Some("opaque-revoked-token"), CHAT).await;
    assert_eq!((r.status, code(&r)), (401, "invalid_token".into()));
    assert_eq!(asked(), 2);
    // Replayed refusals are answered from the negative cache, without asking again.
    for _ in 0..3 {
        for token in ["opaque-no-aud-token", "opaque-revoked-token"] {
            let r = call(&s.gw, Some(token), CHAT).await;
            assert_eq!((r.status, code(&r)), (401, "invalid_token".into()));
        }
    }
    assert_eq!(asked(), 2, "a refused token was introspected again");

    // An issuer that cannot answer is asked again next time (its failure is not cached).
    for _ in 0..2 {
        let r = call(&s.gw, Some("opaque-flaky-token"), CHAT).await;
        assert_eq!(r.status, 401);
    }
    assert_eq!(asked(), 4);
    // A good opaque token still passes.
    let r = call(&s.gw, Some("opaque-good-token"), CHAT).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(asked(), 5);
}
