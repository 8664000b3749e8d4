//! The local ONNX pool end to end: real all-MiniLM-L6-v2 embeddings on worker threads (fetched by
//! `scripts/fetch-models.sh`), spill to the next deployment when the queue is full, and a clear
//! refusal for what local pools do not serve yet.

mod common;

use common::*;
use std::path::PathBuf;
use std::sync::Arc;

fn onnx_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/onnx")
}

fn artefacts() -> (PathBuf, PathBuf) {
    let lib = onnx_dir().join("lib/libonnxruntime.so.1.31.1");
    let model = onnx_dir().join("minilm/model.onnx");
    assert!(
        lib.exists() && model.exists(),
        "{} or {} missing: run scripts/fetch-models.sh",
        lib.display(),
        model.display()
    );
    (lib, model)
}

fn config(lib: &str, model: &std::path::Path, queue: usize) -> String {
    format!(
        "providers:\n  - {{ name: gpu0, kind: local, device: auto, workers: 1, queue: {queue}, max_wait: 5s, library: \"{lib}\" }}\n  - {{ name: sim, kind: mock }}\nmodels:\n  - name: emb\n    deployments:\n      - {{ provider: gpu0, model: \"{}\", priority: 1 }}\n      - {{ provider: sim, model: mock-embed, priority: 2 }}\n  - name: local-chat\n    deployments:\n      - {{ provider: gpu0, model: \"{}\" }}\n",
        model.display(),
        model.display()
    )
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (na * nb)
}

fn vectors(r: &Reply) -> Vec<Vec<f64>> {
    r.json()["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|d| {
            d["embedding"]
                .as_array()
                .expect("embedding")
                .iter()
                .map(|x| x.as_f64().expect("float"))
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_embeddings_have_real_semantics() {
    let (lib, model) = artefacts();
    let gw = Gateway::start(&config(&lib.display().to_string(), &model, 16), "").await;
    let r = gw
        .post_json(
            "/v1/embeddings",
            br#"{"model":"emb","input":["A man is eating food.","A man is eating a piece of bread.","A man is riding a horse."]}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), gw.log());
    assert_eq!(r.header("x-switchyard-provider"), Some("gpu0"));
    let v = vectors(&r);
    assert_eq!(v.len(), 3);
    assert!(v.iter().all(|x| x.len() == 384));
    let (near, far) = (cosine(&v[0], &v[1]), cosine(&v[0], &v[2]));
    assert!(
        near > 0.6 && near > far + 0.2,
        "near {near:.3}, far {far:.3}"
    );
    assert!(r.json()["usage"]["prompt_tokens"].as_u64().unwrap() > 10);
    // Chat completions are not served by local pools in this build: a clear 400, not a stub.
    let r = gw
        .post_json(
            "/v1/chat/completions",
            br#"{"model":"local-chat","messages":[{"role":"user","content":"hi"}]}"#,
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("local"), "{}", r.text());
    assert!(
        gw.metric("switchyard_local_tokens_total{provider=\"gpu0\"}")
            .await
            .unwrap_or(0.0)
            > 10.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_local_queue_spills_to_the_next_deployment() {
    let (lib, model) = artefacts();
    let gw = Arc::new(Gateway::start(&config(&lib.display().to_string(), &model, 1), "").await);
    let long = format!(
        "{{\"model\":\"emb\",\"input\":[{}]}}",
        (0..16)
            .map(|i| format!("\"sentence number {i} about a switchyard full of freight trains\""))
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let (gw, body) = (gw.clone(), long.clone());
        tasks.push(tokio::spawn(async move {
            gw.post_json("/v1/embeddings", body.as_bytes()).await
        }));
    }
    let mut by = std::collections::HashMap::new();
    for t in tasks {
        let r = t.await.expect("task");
        assert_eq!(r.status, 200, "{}", r.text());
        *by.entry(r.header("x-switchyard-provider").unwrap_or("").to_string())
            .or_insert(0) += 1;
    }
    assert!(by.get("gpu0").copied().unwrap_or(0) >= 1, "{by:?}");
    assert!(
        by.get("sim").copied().unwrap_or(0) >= 1,
        "some spilled: {by:?}"
    );
    assert!(
        gw.metric("switchyard_local_spilled_total{provider=\"gpu0\"}")
            .await
            .unwrap_or(0.0)
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_provider_whose_runtime_cannot_load_is_skipped_and_says_why() {
    let (_, model) = artefacts();
    let gw = Gateway::start(&config("/nonexistent/libonnxruntime.so", &model, 4), "").await;
    let r = gw
        .post_json("/v1/embeddings", br#"{"model":"emb","input":"hello"}"#)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-switchyard-provider"), Some("sim"));
    let health = gw.request("GET", "/v1/health", None, &[]).await.json();
    let gpu = health["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "gpu0")
        .expect("gpu0")
        .clone();
    assert_eq!(gpu["status"], "unhealthy", "{health}");
    assert!(
        gpu["last_error"].as_str().unwrap().contains("/nonexistent"),
        "{gpu}"
    );
}
