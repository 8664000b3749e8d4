//! A fleet on PostgreSQL (`store.kind: postgres`) with Redis for the hot counters: three real
//! gateways on one throwaway PostgreSQL cluster and one `redis-server`. Keys made, rotated or
//! revoked on one replica reach the others within 2 s; usage is fleet-wide; a shared budget is
//! never overshot; PostgreSQL restarted under load loses no ledger row and doubles none; `kill -9`
//! of a replica in strict durability loses no row of a completed response; `switchyard migrate
//! --from sqlite:PATH` copies an embedded store.

mod common;

use bytes::Bytes;
use common::hooks::Receiver;
use common::redis_server::Redis;
use common::stores::Postgres;
use common::Gateway;
use http_body_util::{BodyExt, Full};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ADMIN: &str = "fleet-admin-token-0123456789";
const KEY: &str = "sk-fleet-test-config-key-0001";
const ASK: &[u8] =
    br#"{"model":"chat","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#;

/// One mock deployment at $1000 per million output tokens: a 5-token answer costs $0.005.
fn config(store: &str) -> String {
    format!(
        "providers:\n  - {{ name: sim, kind: mock }}\nmodels:\n  - name: chat\n    deployments:\n      - {{ provider: sim, model: mock-1, price: {{ input_per_mtok: 0, output_per_mtok: 1000 }} }}\nauth:\n  api_keys:\n    - {{ name: cfg, key: {KEY}, team: t-cfg }}\nbudgets:\n  - {{ scope: team:t-budget, limit: 0.05, period: total }}\nstore: {store}\n"
    )
}

fn pg_store(pg: &Postgres, redis: Option<&Redis>, extra: &str) -> String {
    let redis = redis
        .map(|r| format!(", redis_url: \"{}\"", r.url()))
        .unwrap_or_default();
    format!(
        "{{ kind: postgres, url: \"{}\"{redis}, flush_interval: 50ms{extra} }}",
        pg.url()
    )
}

async fn replica(cfg: &str, id: &str) -> Gateway {
    Gateway::start(
        cfg,
        &format!("  admin_token: {ADMIN}\n  replica_id: {id}\n"),
    )
    .await
}

async fn ask(gw: &Gateway, key: &str, request_id: Option<&str>) -> u16 {
    let auth = format!("Bearer {key}");
    let mut headers = vec![("authorization", auth.as_str())];
    if let Some(id) = request_id {
        headers.push(("x-request-id", id));
    }
    let mut req = http::Request::builder()
        .method("POST")
        .uri(gw.url("/v1/chat/completions"))
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let Ok(req) = req.body(Full::new(Bytes::from_static(ASK))) else {
        return 0;
    };
    // A refused or cut connection (a killed replica) is 0; a 200 counts only once its whole
    // body has arrived.
    let fut = async {
        let resp = gw.client().request(req).await.ok()?;
        let status = resp.status().as_u16();
        resp.into_body().collect().await.ok()?;
        Some(status)
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .ok()
        .flatten()
        .unwrap_or(0)
}

/// Polls `gw` with `key` until it answers `want`; returns how long that took.
async fn until_status(gw: &Gateway, key: &str, want: u16, limit: Duration) -> Duration {
    let t0 = Instant::now();
    loop {
        let got = ask(gw, key, None).await;
        if got == want {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < limit,
            "replica on port {} still answers {got}, not {want}, after {limit:?}",
            gw.port
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn create_key(gw: &Gateway, body: &str) -> String {
    let r = gw
        .admin("POST", "/admin/keys", Some(ADMIN), Some(body))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["key"].as_str().expect("key").to_string()
}

async fn usage_requests(gw: &Gateway) -> serde_json::Value {
    let r = gw
        .admin("GET", "/admin/usage?group_by=team", Some(ADMIN), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["totals"].clone()
}

async fn count(pg: &Postgres, sql: &str) -> u64 {
    pg.query(sql).await[0].parse().expect("a count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_agree_on_keys_usage_and_a_shared_budget() {
    let pg = Postgres::start();
    let redis = Redis::start();
    let hooks = Receiver::start(200).await;
    let cfg = format!(
        "{}events:\n  - url: {}\n    secret: fleet-events-secret\n    on: [budget.soft, budget.exhausted]\n",
        config(&pg_store(&pg, Some(&redis), "")),
        hooks.url
    );
    let a = Arc::new(replica(&cfg, "gw-a").await);
    let b = Arc::new(replica(&cfg, "gw-b").await);
    let c = Arc::new(replica(&cfg, "gw-c").await);
    for (gw, id) in [(&a, "gw-a"), (&b, "gw-b"), (&c, "gw-c")] {
        let h = gw
            .request(
                "GET",
                "/v1/health",
                None,
                &[("authorization", &format!("Bearer {KEY}"))],
            )
            .await;
        assert_eq!(h.json()["replica_id"], id, "{}", h.text());
    }
    assert_eq!(
        pg.query("SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_migrations")
            .await,
        vec!["1,2,3,4,5,6"]
    );

    // A key made on A is accepted by B and C within 2 s.
    let secret = create_key(&a, r#"{"name":"fleet-1","team":"t-keys"}"#).await;
    assert_eq!(ask(&a, &secret, None).await, 200);
    for gw in [&b, &c] {
        until_status(gw, &secret, 200, Duration::from_secs(2)).await;
    }
    // Rotated on C (no grace): the new secret works on A and B within 2 s, the old one stops.
    let r = c
        .admin(
            "POST",
            "/admin/keys/fleet-1/rotate",
            Some(ADMIN),
            Some(r#"{"grace":"0s"}"#),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let rotated = r.json()["key"].as_str().expect("key").to_string();
    for gw in [&a, &b] {
        until_status(gw, &rotated, 200, Duration::from_secs(2)).await;
        until_status(gw, &secret, 401, Duration::from_secs(2)).await;
    }
    // Revoked on B: refused by A and C within 2 s.
    let r = b
        .admin("DELETE", "/admin/keys/fleet-1", Some(ADMIN), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    for gw in [&a, &c] {
        until_status(gw, &rotated, 401, Duration::from_secs(2)).await;
    }
    // One audit trail for the fleet, each action under the replica that took it.
    assert_eq!(
        pg.query(
            "SELECT string_agg(action || '@' || replica || ':' || outcome, ',' ORDER BY id)
             FROM audit_log WHERE target = 'fleet-1'"
        )
        .await,
        vec!["create_key@gw-a:ok,rotate_key@gw-c:ok,revoke_key@gw-b:ok"]
    );
    // A runtime key's own budget, set on A, is enforced by B and C once they heard of it.
    let capped = create_key(
        &a,
        r#"{"name":"fleet-capped","budget":{"limit":0.01,"period":"total"}}"#,
    )
    .await;
    for gw in [&b, &c] {
        until_status(gw, &capped, 200, Duration::from_secs(2)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut refused_on = Vec::new();
    for i in 0..6 {
        let gw = if i % 2 == 0 { &b } else { &c };
        if ask(gw, &capped, None).await == 429 {
            refused_on.push(gw.port);
        }
    }
    assert!(
        refused_on.contains(&b.port) && refused_on.contains(&c.port),
        "the key's $0.01 budget holds on B and C: {refused_on:?}"
    );
    // Every replica lists the same runtime keys.
    for gw in [&a, &b, &c] {
        let list = gw
            .admin("GET", "/admin/keys", Some(ADMIN), None)
            .await
            .json();
        let k = list["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .find(|k| k["name"] == "fleet-1")
            .cloned()
            .expect("fleet-1 listed");
        assert_eq!(k["revoked"], true, "{k}");
    }

    // A shared budget: $0.05 fits ten $0.005 answers, wherever 30 concurrent requests land.
    let budget_key = create_key(&a, r#"{"name":"fleet-budget","team":"t-budget"}"#).await;
    for gw in [&b, &c] {
        until_status(gw, &budget_key, 200, Duration::from_secs(2)).await;
    }
    // Those two checks spent $0.01 of it.
    let mut tasks = Vec::new();
    for i in 0..30 {
        let gw = [&a, &b, &c][i % 3].clone();
        let k = budget_key.clone();
        tasks.push(tokio::spawn(async move { ask(&gw, &k, None).await }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.expect("task"));
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(ok, 8, "$0.05 - $0.01 leaves eight answers: {statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );

    // The shared budget's events come once for the fleet, not once per replica.
    hooks
        .wait_for("budget.exhausted", |s| {
            s.iter().any(|d| {
                d.event["type"] == "budget.exhausted" && d.event["data"]["scope"] == "team:t-budget"
            })
        })
        .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let seen = hooks.seen();
    for kind in ["budget.soft", "budget.exhausted"] {
        let n = seen
            .iter()
            .filter(|d| d.event["type"] == kind && d.event["data"]["scope"] == "team:t-budget")
            .count();
        assert_eq!(n, 1, "{kind} once for the fleet: {seen:#?}");
    }

    // Usage is fleet-wide: the same totals on every replica, rows from all three replicas.
    // 32 requests in team t-budget (refusals are ledger rows too), $0.05 spent.
    let want = 32u64;
    let deadline = Instant::now() + Duration::from_secs(5);
    let totals = loop {
        let all = [
            usage_requests(&a).await,
            usage_requests(&b).await,
            usage_requests(&c).await,
        ];
        let budget_team = all[0]
            .as_array()
            .and_then(|t| t.iter().find(|g| g["group"] == "t-budget"))
            .map(|g| (g["requests"].as_u64(), g["cost_usd"].as_f64()));
        if budget_team == Some((Some(want), Some(0.05))) && all[0] == all[1] && all[1] == all[2] {
            break all[0].clone();
        }
        assert!(
            Instant::now() < deadline,
            "usage differs or is short: {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let keys_team = totals
        .as_array()
        .and_then(|t| t.iter().find(|g| g["group"] == "t-keys"))
        .expect("t-keys row");
    assert!(keys_team["requests"].as_u64().unwrap_or(0) >= 5, "{totals}");
    assert_eq!(
        count(&pg, "SELECT COUNT(DISTINCT replica) FROM ledger").await,
        3,
        "every replica writes rows under its own id"
    );
    // A response stored on A is found on B, and continued there (a follow-up may land anywhere).
    let auth = format!("Bearer {KEY}");
    let first = a
        .request(
            "POST",
            "/v1/responses",
            Some(br#"{"model":"chat","input":"hello","max_output_tokens":5}"#),
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
        )
        .await;
    assert_eq!(first.status, 200, "{}", first.text());
    let id = first.json()["id"].as_str().expect("id").to_string();
    let got = b
        .request(
            "GET",
            &format!("/v1/responses/{id}"),
            None,
            &[("authorization", &auth)],
        )
        .await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.json()["id"], id.as_str());
    let next = format!(
        r#"{{"model":"chat","input":"again","previous_response_id":"{id}","max_output_tokens":5}}"#
    );
    let second = c
        .request(
            "POST",
            "/v1/responses",
            Some(next.as_bytes()),
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
        )
        .await;
    assert_eq!(second.status, 200, "{}", second.text());
    let access = a.access_log();
    assert!(access.contains("\"replica_id\":\"gw-a\""), "{access}");
}

/// Sends requests with fresh ids from `workers` tasks until `stop`; returns the ids answered 200.
fn load(
    gateways: Vec<Arc<Gateway>>,
    key: &str,
    workers: usize,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<String>>> {
    (0..workers)
        .map(|w| {
            let (gateways, key, stop) = (gateways.clone(), key.to_string(), stop.clone());
            tokio::spawn(async move {
                let mut ok = Vec::new();
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let id = format!("load-{w}-{i}");
                    let gw = &gateways[i % gateways.len()];
                    i += 1;
                    if ask(gw, &key, Some(&id)).await == 200 {
                        ok.push(id);
                    }
                }
                ok
            })
        })
        .collect()
}

async fn answered(tasks: Vec<tokio::task::JoinHandle<Vec<String>>>) -> Vec<String> {
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("load task"));
    }
    all
}

/// Waits until the ledger holds every id of `ids` (each once); returns the row count.
/// Waits (10 s at most) until `gw` holds at least `rows` ledger rows in its spool.
async fn until_spooled(gw: &Gateway, rows: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while gw.metric("switchyard_ledger_spooled_rows").await < Some(rows) {
        assert!(Instant::now() < deadline, "the rows were not spooled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn ledger_has(pg: &Postgres, ids: &[String], limit: Duration) {
    let want: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let deadline = Instant::now() + limit;
    loop {
        let rows = pg
            .query("SELECT request_id FROM ledger WHERE request_id LIKE 'load-%'")
            .await;
        let got: HashSet<&str> = rows.iter().map(String::as_str).collect();
        assert_eq!(got.len(), rows.len(), "a row was written twice");
        let missing: Vec<&&str> = want.iter().filter(|i| !got.contains(**i)).collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} answered requests have no ledger row, e.g. {:?}",
            missing.len(),
            want.len(),
            missing.iter().take(5).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restarted_under_load_loses_no_row_and_doubles_none() {
    let pg = Postgres::start();
    // A spools to a file of its own, B (no store.path) to memory.
    let spool = pg.dir().join("spool-gw-a.db");
    let with_file = config(&pg_store(
        &pg,
        None,
        &format!(", path: \"{}\"", spool.display()),
    ));
    let a = Arc::new(replica(&with_file, "gw-a").await);
    let b = Arc::new(replica(&config(&pg_store(&pg, None, "")), "gw-b").await);
    // A runtime key made before the outage keeps working through it (last known state).
    let key = create_key(&a, r#"{"name":"through-outage"}"#).await;
    until_status(&b, &key, 200, Duration::from_secs(2)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let tasks = load(vec![a.clone(), b.clone()], &key, 4, stop.clone());
    tokio::time::sleep(Duration::from_millis(400)).await;
    pg.down();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // Still served while the database is away, on both, with a key from the last known state.
    for gw in [&a, &b] {
        let n = ask(gw, &key, None).await;
        assert_eq!(
            n, 200,
            "served from the last known keys while PostgreSQL is down"
        );
    }
    for gw in [&a, &b] {
        let spooled = gw.metric("switchyard_ledger_spooled_rows").await;
        assert!(spooled.unwrap_or(0.0) > 0.0, "{spooled:?}");
    }
    pg.up();
    tokio::time::sleep(Duration::from_millis(600)).await;
    stop.store(true, Ordering::Relaxed);
    let ids = answered(tasks).await;
    assert!(ids.len() > 20, "too little load: {}", ids.len());
    ledger_has(&pg, &ids, Duration::from_secs(10)).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    for gw in [&a, &b] {
        while gw.metric("switchyard_ledger_spooled_rows").await != Some(0.0) {
            assert!(Instant::now() < deadline, "the spool did not drain");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A replica (re)started while PostgreSQL is down serves the runtime keys and key limits it
/// last read (kept in its spool file) and spools its ledger rows; one with no spool file serves
/// the config file's keys. Killed with rows in its spool file, its next start (the database
/// back) ships them, and the runtime keys reach the second replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_starts_while_postgres_is_down_on_its_last_known_keys() {
    let pg = Postgres::start();
    let spool = common::scratch_dir("sy-fleet-cold").join("spool.db");
    let with_file = config(&pg_store(
        &pg,
        None,
        &format!(", path: \"{}\"", spool.display()),
    ));
    let a = replica(&with_file, "gw-a").await;
    let key = create_key(
        &a,
        r#"{"name":"cold-start","limits":{"requests_per_minute":3}}"#,
    )
    .await;
    assert_eq!(ask(&a, &key, None).await, 200);
    drop(a);
    pg.down();

    let a = replica(&with_file, "gw-a").await;
    let b = replica(&config(&pg_store(&pg, None, "")), "gw-b").await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let id = format!("load-cold-{i}");
        assert_eq!(ask(&a, &key, Some(&id)).await, 200, "request {i}");
        ids.push(id);
    }
    assert_eq!(
        ask(&a, &key, None).await,
        429,
        "the key's limit came back with it"
    );
    assert_eq!(ask(&b, KEY, None).await, 200, "the file's keys work");
    assert_eq!(
        ask(&b, &key, None).await,
        401,
        "b never knew the runtime key"
    );
    // The writer spools once its attempt to reach the database gives up.
    until_spooled(&a, 3.0).await;

    // Killed (SIGKILL) with its rows in the spool file: the next start ships them.
    drop(a);
    pg.up();
    let _a = replica(&with_file, "gw-a").await;
    ledger_has(&pg, &ids, Duration::from_secs(15)).await;
    until_status(&b, &key, 200, Duration::from_secs(15)).await;
}

/// Two replicas wrongly given one `store.path` (or an upgrade's old and new process, which share
/// it on purpose) both ship the file: each row goes in under the replica that spooled it, so the
/// (request id, replica, time) constraint still sees one row.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_sharing_one_spool_file_ship_each_row_once_under_its_own_replica() {
    let pg = Postgres::start();
    let spool = common::scratch_dir("sy-fleet-shared").join("spool.db");
    let cfg = config(&pg_store(
        &pg,
        None,
        &format!(", path: \"{}\"", spool.display()),
    ));
    // A starts on the database (the schema is made), B while it is away.
    let a = replica(&cfg, "gw-a").await;
    pg.down();
    let b = replica(&cfg, "gw-b").await;
    let mut ids = Vec::new();
    for i in 0..10 {
        for (gw, name) in [(&a, "a"), (&b, "b")] {
            let id = format!("load-shared-{name}-{i}");
            assert_eq!(ask(gw, KEY, Some(&id)).await, 200, "{id}");
            ids.push(id);
        }
    }
    for gw in [&a, &b] {
        until_spooled(gw, 10.0).await;
    }
    pg.up();
    ledger_has(&pg, &ids, Duration::from_secs(15)).await;
    // Both writers have looked at the file again (every 500 ms) before the rows are counted.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        count(
            &pg,
            "SELECT COUNT(*) FROM ledger WHERE request_id LIKE 'load-shared-%'"
        )
        .await,
        20
    );
    for name in ["a", "b"] {
        assert_eq!(
            count(
                &pg,
                &format!(
                    "SELECT COUNT(*) FROM ledger WHERE request_id LIKE 'load-shared-{name}-%' \
                     AND replica = 'gw-{name}'"
                )
            )
            .await,
            10,
            "rows of gw-{name} under another replica"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_a_strict_replica_under_load_loses_no_row_of_a_completed_response() {
    let pg = Postgres::start();
    let mut replicas = Vec::new();
    for id in ["gw-a", "gw-b", "gw-c"] {
        let spool = pg.dir().join(format!("spool-{id}.db"));
        let cfg = config(&pg_store(
            &pg,
            None,
            &format!(", durability: strict, path: \"{}\"", spool.display()),
        ));
        replicas.push(Arc::new(replica(&cfg, id).await));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = load(replicas.clone(), KEY, 6, stop.clone());
    tokio::time::sleep(Duration::from_millis(700)).await;
    replicas[2].signal("KILL");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let ids = answered(tasks).await;
    assert!(ids.len() > 20, "too little load: {}", ids.len());
    // Strict: a response's last bytes left after its row was committed, so every answered id is
    // there at once (no waiting for a flush).
    ledger_has(&pg, &ids, Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_from_sqlite_copies_keys_and_ledger_once() {
    let pg = Postgres::start();
    let db = pg.dir().join("embedded.db");
    let embedded = config(&format!(
        "{{ kind: sqlite, path: \"{}\", flush_interval: 10ms }}",
        db.display()
    ));
    let secret = {
        let mut gw = replica(&embedded, "solo").await;
        let secret = create_key(&gw, r#"{"name":"from-sqlite","team":"t-old"}"#).await;
        for i in 0..3 {
            assert_eq!(ask(&gw, &secret, Some(&format!("old-{i}"))).await, 200);
        }
        // A graceful shutdown flushes the ledger.
        gw.signal("TERM");
        assert!(
            gw.wait_exit(Duration::from_secs(10)).is_some(),
            "did not stop"
        );
        secret
    };
    let conf = pg.dir().join("fleet.yaml");
    std::fs::write(
        &conf,
        format!(
            "server:\n  listen: [\"127.0.0.1:1\"]\n  replica_id: migrator\n{}",
            config(&pg_store(&pg, None, ""))
        ),
    )
    .expect("conf");
    let run = |from: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["migrate", "--conf"])
            .arg(&conf)
            .args(["--from", from])
            .output()
            .expect("switchyard migrate")
    };
    let first = run(&format!("sqlite:{}", db.display()));
    let out = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(out.contains("copied 1 key(s) and 3 ledger row(s)"), "{out}");
    let again = run(&format!("sqlite:{}", db.display()));
    let out = String::from_utf8_lossy(&again.stdout);
    assert!(out.contains("copied 0 key(s) and 0 ledger row(s)"), "{out}");
    assert!(out.contains("(3 row(s) were already there)"), "{out}");
    assert_eq!(
        count(
            &pg,
            "SELECT COUNT(*) FROM ledger WHERE request_id LIKE 'old-%' AND team = 't-old'"
        )
        .await,
        3
    );
    let bad = run("postgres:elsewhere");
    assert!(!bad.status.success());
    // A fleet replica on the database accepts the copied key.
    let gw = replica(&config(&pg_store(&pg, None, "")), "gw-new").await;
    assert_eq!(ask(&gw, &secret, None).await, 200);
}
