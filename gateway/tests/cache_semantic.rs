//! The semantic cache end to end (issue #22 point 6) on the local pool's real
//! all-MiniLM-L6-v2 embeddings (fetched by `scripts/fetch-models.sh`; the test skips with a
//! message when the ONNX Runtime library or the model is absent): a paraphrase of a cached
//! question is answered from the cache (`x-switchyard-cache: semantic-hit`), a different question
//! is not, another team never gets the entry, and each embedding call is billed to its caller
//! like any embeddings request (ledger rows on the embedding model).

#![cfg(feature = "local")]

mod common;

use common::*;
use std::path::PathBuf;
use std::time::Duration;

const K1: &str = "sk-semantic-key-one";
const K2: &str = "sk-semantic-key-two";
const K3: &str = "sk-semantic-key-three";

fn artefacts() -> Option<(PathBuf, PathBuf)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/onnx");
    let (lib, model) = (
        dir.join("lib/libonnxruntime.so.1.31.1"),
        dir.join("minilm/model.onnx"),
    );
    if lib.exists() && model.exists() {
        Some((lib, model))
    } else {
        eprintln!(
            "skipped: {} or {} missing (run scripts/fetch-models.sh)",
            lib.display(),
            model.display()
        );
        None
    }
}

fn config(lib: &std::path::Path, model: &std::path::Path, db: &std::path::Path) -> String {
    format!(
        "providers:\n  - {{ name: gpu0, kind: local, device: auto, workers: 1, queue: 16, max_wait: 5s, library: \"{}\" }}\n  - {{ name: sim, kind: mock }}\nmodels:\n  - name: emb\n    deployments:\n      - {{ provider: gpu0, model: \"{}\", price: {{ input_per_mtok: 100, output_per_mtok: 0 }} }}\n  - name: chat\n    cache: {{ ttl: 10m }}\n    deployments:\n      - {{ provider: sim, model: mock-chat, price: {{ input_per_mtok: 1000, output_per_mtok: 2000 }} }}\ncache:\n  semantic: {{ embedding_model: emb, threshold: 0.8 }}\nauth:\n  api_keys:\n    - {{ name: k1, key: {K1}, team: t1 }}\n    - {{ name: k2, key: {K2}, team: t1 }}\n    - {{ name: k3, key: {K3}, team: t2 }}\nstore: {{ kind: sqlite, path: {}, flush_interval: 50ms }}\n",
        lib.display(),
        model.display(),
        db.display()
    )
}

fn question(text: &str) -> String {
    serde_json::json!({
        "model": "chat",
        "messages": [
            {"role": "system", "content": "Answer in one sentence."},
            {"role": "user", "content": text}
        ]
    })
    .to_string()
}

async fn ask(gw: &Gateway, key: &str, text: &str) -> Reply {
    let auth = format!("Bearer {key}");
    let r = gw
        .request(
            "POST",
            "/v1/chat/completions",
            Some(question(text).as_bytes()),
            &[
                ("content-type", "application/json"),
                ("authorization", &auth),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), gw.log());
    r
}

/// Ledger rows of the embedding model, each (request id, key, cost in nano-dollars).
async fn embedding_rows(db: &std::path::Path, want: usize) -> Vec<(String, String, i64)> {
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        let rows: Vec<(String, String, i64)> = rusqlite::Connection::open(db)
            .and_then(|c| {
                let mut q = c.prepare(
                    "SELECT request_id, key, cost_nanos FROM ledger WHERE model = 'emb' ORDER BY ts_ms",
                )?;
                let rows = q
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<rusqlite::Result<Vec<_>>>();
                rows
            })
            .unwrap_or_default();
        if rows.len() >= want || std::time::Instant::now() > deadline {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paraphrase_hits_a_different_question_and_another_team_miss() {
    let Some((lib, model)) = artefacts() else {
        return;
    };
    let dir = scratch_dir("sy-semantic");
    let db = dir.join("ledger.db");
    let gw = Gateway::start(&config(&lib, &model, &db), "").await;

    let first = ask(&gw, K1, "What is the capital city of France?").await;
    assert_eq!(first.header("x-switchyard-cache"), Some("miss"));

    // Same team, other words: the stored answer, as it was first served.
    let hit = ask(&gw, K2, "What's France's capital city?").await;
    assert_eq!(
        hit.header("x-switchyard-cache"),
        Some("semantic-hit"),
        "{}",
        gw.log()
    );
    assert_eq!(hit.body, first.body);
    assert_eq!(hit.header("x-switchyard-cost-usd"), Some("0.00000000"));
    assert!(hit.header("age").is_some());

    // Streamed, a near-duplicate is replayed as SSE: the same text as the stored answer.
    let mut streamed: serde_json::Value =
        serde_json::from_str(&question("What's the capital city of France?")).expect("json");
    streamed["stream"] = true.into();
    let auth = format!("Bearer {K1}");
    let s = gw
        .request(
            "POST",
            "/v1/chat/completions",
            Some(streamed.to_string().as_bytes()),
            &[
                ("content-type", "application/json"),
                ("authorization", &auth),
            ],
        )
        .await;
    assert_eq!(s.header("x-switchyard-cache"), Some("semantic-hit"));
    let text: String = s
        .text()
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(text, first.json()["choices"][0]["message"]["content"]);

    // Another question is another answer.
    let other = ask(&gw, K1, "How do I bake sourdough bread at home?").await;
    assert_eq!(other.header("x-switchyard-cache"), Some("miss"));
    assert_ne!(other.json()["id"], first.json()["id"]);

    // Another team never gets t1's entry, exact or near.
    let t2 = ask(&gw, K3, "What is the capital city of France?").await;
    assert_eq!(t2.header("x-switchyard-cache"), Some("miss"));
    let t2 = ask(&gw, K3, "What's France's capital city?").await;
    assert_eq!(t2.header("x-switchyard-cache"), Some("semantic-hit"));
    assert_ne!(t2.json()["id"], first.json()["id"], "t2's own entry");

    // An exact repeat is an exact hit: no embedding call for it.
    let exact = ask(&gw, K2, "What is the capital city of France?").await;
    assert_eq!(exact.header("x-switchyard-cache"), Some("hit"));

    // Six embedding calls (every exact miss), each billed to the caller who asked.
    let rows = embedding_rows(&db, 6).await;
    assert_eq!(rows.len(), 6, "{rows:?}");
    let keys: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(keys, ["k1", "k2", "k1", "k1", "k3", "k3"]);
    assert!(
        rows.iter().all(|r| r.0.ends_with(".embed") && r.2 > 0),
        "{rows:?}"
    );
    assert_eq!(
        gw.metric_eventually("switchyard_cache_hits_total", 4.0)
            .await,
        Some(4.0)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
