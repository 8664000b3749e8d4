//! The local ONNX pool end to end: real all-MiniLM-L6-v2 embeddings on worker threads (fetched by
//! `scripts/fetch-models.sh`), text generation with the committed tiny LM (`conf/models/tiny-lm`,
//! whose greedy answer is known: "Hello" → "pqrstuvwxyz") in both caller formats, streamed and
//! not, spill to the next deployment when the queue is full, and clear refusals.

#![cfg(feature = "local")]

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

fn tiny_lm() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../conf/models/tiny-lm/model.onnx")
}

/// `emb` (local, then mock), `local-chat` (the tiny LM only), `chat` (the tiny LM, then mock).
fn config(lib: &str, model: &std::path::Path, queue: usize) -> String {
    format!(
        "providers:\n  - {{ name: gpu0, kind: local, device: auto, workers: 1, queue: {queue}, max_wait: 5s, library: \"{lib}\" }}\n  - {{ name: sim, kind: mock }}\nmodels:\n  - name: emb\n    deployments:\n      - {{ provider: gpu0, model: \"{}\", priority: 1 }}\n      - {{ provider: sim, model: mock-embed, priority: 2 }}\n  - name: local-chat\n    deployments:\n      - {{ provider: gpu0, model: \"{lm}\" }}\n  - name: chat\n    deployments:\n      - {{ provider: gpu0, model: \"{lm}\", priority: 1 }}\n      - {{ provider: sim, model: mock-chat, priority: 2 }}\n",
        model.display(),
        lm = tiny_lm().display(),
    )
}

/// Sends `n` copies of a request at once; counts who answered each (all must succeed).
async fn answered_by(
    gw: &Arc<Gateway>,
    path: &'static str,
    body: &str,
    n: usize,
) -> std::collections::HashMap<String, usize> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (gw, body) = (gw.clone(), body.to_string());
        tasks.push(tokio::spawn(async move {
            gw.post_json(path, body.as_bytes()).await
        }));
    }
    let mut by = std::collections::HashMap::new();
    for t in tasks {
        let r = t.await.expect("task");
        assert_eq!(r.status, 200, "{}", r.text());
        *by.entry(r.header("x-switchyard-provider").unwrap_or("").to_string())
            .or_insert(0) += 1;
    }
    by
}

/// The `data:` payloads of an SSE body, parsed (`[DONE]` left out).
fn sse_events(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}")))
        .collect()
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
    let by = answered_by(&gw, "/v1/embeddings", &long, 12).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_generation_answers_both_formats_with_the_known_greedy_text() {
    let (lib, model) = artefacts();
    let gw = Gateway::start(&config(&lib.display().to_string(), &model, 16), "").await;
    let r = gw
        .post_json(
            "/v1/chat/completions",
            br#"{"model":"local-chat","messages":[{"role":"user","content":"Hello"}]}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), gw.log());
    assert_eq!(r.header("x-switchyard-provider"), Some("gpu0"));
    assert_eq!(r.header("x-switchyard-cost-usd"), Some("0.00000000"));
    let j = r.json();
    assert_eq!(j["object"], "chat.completion");
    assert_eq!(j["model"], "local-chat");
    assert_eq!(j["choices"][0]["message"]["content"], "pqrstuvwxyz");
    assert_eq!(j["choices"][0]["finish_reason"], "stop");
    // 5 prompt bytes; 11 letters and the end-of-sequence token.
    assert_eq!(j["usage"]["prompt_tokens"], 5);
    assert_eq!(j["usage"]["completion_tokens"], 12);

    // max_tokens and stop sequences, OpenAI's names.
    let r = gw
        .post_json(
            "/v1/chat/completions",
            br#"{"model":"local-chat","max_tokens":4,"messages":[{"role":"user","content":"Hello"}]}"#,
        )
        .await;
    let j = r.json();
    assert_eq!(j["choices"][0]["message"]["content"], "pqrs", "{j}");
    assert_eq!(j["choices"][0]["finish_reason"], "length");
    let r = gw
        .post_json(
            "/v1/chat/completions",
            br#"{"model":"local-chat","stop":["uv"],"messages":[{"role":"user","content":"Hello"}]}"#,
        )
        .await;
    assert_eq!(r.json()["choices"][0]["message"]["content"], "pqrst");

    // The Anthropic Messages API, with its stop_sequences.
    let r = gw
        .request(
            "POST",
            "/v1/messages",
            Some(br#"{"model":"local-chat","max_tokens":64,"system":"","stop_sequences":["wx"],"messages":[{"role":"user","content":"Hello"}]}"#),
            &[("content-type", "application/json"), ("x-api-key", "sk-caller-key"), ("anthropic-version", "2023-06-01")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["type"], "message");
    assert_eq!(j["content"][0]["text"], "pqrstuv", "{j}");
    assert_eq!(j["stop_reason"], "stop_sequence");
    assert_eq!(j["stop_sequence"], "wx");
    assert_eq!(j["usage"]["input_tokens"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_generation_streams_token_by_token_in_both_formats() {
    let (lib, model) = artefacts();
    let gw = Gateway::start(&config(&lib.display().to_string(), &model, 16), "").await;
    let r = gw
        .post_json(
            "/v1/chat/completions",
            br#"{"model":"local-chat","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Hello"}]}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    assert!(
        r.text().trim_end().ends_with("data: [DONE]"),
        "{}",
        r.text()
    );
    let events = sse_events(&r.text());
    let deltas: Vec<&str> = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .filter(|c| !c.is_empty())
        .collect();
    // One chunk per generated character: tokens go out as they are produced.
    assert_eq!(deltas.len(), 11, "{deltas:?}");
    assert_eq!(deltas.concat(), "pqrstuvwxyz");
    assert!(events
        .iter()
        .any(|e| e["choices"][0]["finish_reason"] == "stop"));
    let usage = events
        .iter()
        .find(|e| e["usage"].is_object())
        .expect("usage chunk");
    assert_eq!(usage["usage"]["completion_tokens"], 12);

    let r = gw
        .request(
            "POST",
            "/v1/messages",
            Some(br#"{"model":"local-chat","max_tokens":3,"stream":true,"messages":[{"role":"user","content":"Hello"}]}"#),
            &[("content-type", "application/json"), ("x-api-key", "sk-caller-key")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let events = sse_events(&r.text());
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(types.first(), Some(&"message_start"));
    assert_eq!(types.last(), Some(&"message_stop"));
    let text: String = events
        .iter()
        .filter(|e| e["type"] == "content_block_delta")
        .filter_map(|e| e["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, "pqr");
    let delta = events
        .iter()
        .find(|e| e["type"] == "message_delta")
        .expect("message_delta");
    assert_eq!(delta["delta"]["stop_reason"], "max_tokens");
    assert_eq!(delta["usage"]["output_tokens"], 3);

    // Per-token metrics and the device the model runs on (no GPU here: cpu).
    assert!(
        gw.metric_eventually(
            "switchyard_local_time_per_token_seconds_count{provider=\"gpu0\"}",
            10.0
        )
        .await
        .unwrap_or(0.0)
            >= 10.0
    );
    assert_eq!(
        gw.metric("switchyard_local_device{device=\"cpu\",provider=\"gpu0\"}")
            .await,
        Some(1.0)
    );
    assert!(
        gw.metric("switchyard_local_tokens_per_second{provider=\"gpu0\"}")
            .await
            .unwrap_or(0.0)
            > 0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_generation_streams_and_answers_pass_the_response_guardrails() {
    let (lib, model) = artefacts();
    // "rstuv" spans five one-character chunks of the known answer "pqrstuvwxyz".
    let conf = config(&lib.display().to_string(), &model, 16).replace(
        "  - name: local-chat\n    deployments:",
        "  - name: local-chat\n    guardrails: [out]\n    deployments:",
    ) + "guardrails:\n  - name: out\n    on: [response]\n    regex: [\"rstuv\"]\n";
    let gw = Gateway::start(&conf, "").await;
    let r = gw
        .post_json(
            "/v1/chat/completions",
            br#"{"model":"local-chat","stream":true,"messages":[{"role":"user","content":"Hello"}]}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    let said: String = sse_events(&text)
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(said, "pq[REDACTED:REGEX]wxyz");
    let r = gw
        .post_json(
            "/v1/chat/completions",
            br#"{"model":"local-chat","messages":[{"role":"user","content":"Hello"}]}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        "pq[REDACTED:REGEX]wxyz"
    );
    assert_eq!(
        r.header("x-switchyard-guardrails"),
        Some("out:redact:response")
    );
    assert!(
        gw.access_line(|l| l["guardrails"] == "out:redact:response" && l["stream"] == true)
            .await
            .is_some(),
        "{}",
        gw.access_log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_local_models_cannot_do_goes_elsewhere_or_gets_a_clear_400() {
    let (lib, model) = artefacts();
    let gw = Gateway::start(&config(&lib.display().to_string(), &model, 16), "").await;
    let tools =
        r#""tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]"#;
    // Only the local model: a 400 naming the field and the provider kind.
    let body = format!(
        r#"{{"model":"local-chat",{tools},"messages":[{{"role":"user","content":"Hello"}}]}}"#
    );
    let r = gw.post_json("/v1/chat/completions", body.as_bytes()).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        r.json()["error"]["code"],
        "unsupported_field",
        "{}",
        r.text()
    );
    assert!(
        r.text().contains("tools") && r.text().contains("local"),
        "{}",
        r.text()
    );
    // With a cloud deployment behind it, the request goes there.
    let body =
        format!(r#"{{"model":"chat",{tools},"messages":[{{"role":"user","content":"Hello"}}]}}"#);
    let r = gw.post_json("/v1/chat/completions", body.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-switchyard-provider"), Some("sim"));
    // A prompt beyond the model's 512-token context: the next deployment, or a 400.
    let long = "x".repeat(600);
    let body = format!(r#"{{"model":"chat","messages":[{{"role":"user","content":"{long}"}}]}}"#);
    let r = gw.post_json("/v1/chat/completions", body.as_bytes()).await;
    assert_eq!(
        r.header("x-switchyard-provider"),
        Some("sim"),
        "{}",
        r.text()
    );
    let body =
        format!(r#"{{"model":"local-chat","messages":[{{"role":"user","content":"{long}"}}]}}"#);
    let r = gw.post_json("/v1/chat/completions", body.as_bytes()).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("context"), "{}", r.text());
    // The same refusal in Anthropic's format.
    let body = format!(
        r#"{{"model":"local-chat","max_tokens":5,"messages":[{{"role":"user","content":"{long}"}}]}}"#
    );
    let r = gw
        .request(
            "POST",
            "/v1/messages",
            Some(body.as_bytes()),
            &[
                ("content-type", "application/json"),
                ("x-api-key", "sk-caller-key"),
            ],
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["type"], "error", "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_local_generation_spills_to_the_cloud() {
    let (lib, model) = artefacts();
    let gw = Arc::new(Gateway::start(&config(&lib.display().to_string(), &model, 1), "").await);
    // Long answers (every byte value from 0x80 to 'z') keep the single worker busy.
    let body = r#"{"model":"chat","messages":[{"role":"user","content":"\u0080"}]}"#;
    let by = answered_by(&gw, "/v1/chat/completions", body, 16).await;
    assert!(by.get("gpu0").copied().unwrap_or(0) >= 1, "{by:?}");
    assert!(
        by.get("sim").copied().unwrap_or(0) >= 1,
        "some spilled: {by:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_cuda_without_a_cuda_runtime_spills_and_says_why() {
    // The CPU onnxruntime wheel has no CUDA execution provider: `device: auto` runs on the CPU
    // (the other tests), `device: cuda` refuses to load the model and the next deployment answers.
    let (lib, model) = artefacts();
    let text =
        config(&lib.display().to_string(), &model, 4).replace("device: auto", "device: cuda");
    let gw = Gateway::start(&text, "").await;
    let r = gw
        .post_json(
            "/v1/chat/completions",
            br#"{"model":"chat","messages":[{"role":"user","content":"Hello"}]}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-switchyard-provider"), Some("sim"));
    assert!(
        gw.log().contains("CUDA execution provider"),
        "the log says why: {}",
        gw.log()
    );
    let r = gw
        .post_json(
            "/v1/chat/completions",
            br#"{"model":"local-chat","messages":[{"role":"user","content":"Hello"}]}"#,
        )
        .await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("cuda"), "{}", r.text());
}

/// One HTTP/1.1 exchange on a fresh connection: (status, body).
async fn exchange(port: u16, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(REQUEST_TIMEOUT, conn.read_to_end(&mut answer))
        .await
        .expect("answer in time")
        .expect("read");
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or_default())
}

/// `conf/local.yaml`, as the README tells a user to run it (from the repository root, only the
/// listen addresses and the runtime library set from the environment), serves both its models.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conf_local_yaml_serves_local_chat_and_embeddings() {
    let (lib, _) = artefacts();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let (port, admin) = (free_port(), free_port());
    /// Stops the gateway however the test ends.
    struct Running(std::process::Child);
    impl Drop for Running {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _gateway = Running(
        std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["run", "--conf", "conf/local.yaml"])
            .current_dir(&root)
            .env("SWITCHYARD_LISTEN", format!("127.0.0.1:{port}"))
            .env("SWITCHYARD_ADMIN_LISTEN", format!("127.0.0.1:{admin}"))
            .env("ORT_DYLIB_PATH", &lib)
            .env_remove("SWITCHYARD_MINILM_DIR")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start switchyard"),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(std::time::Instant::now() < deadline, "never listened");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (status, j) = exchange(
        port,
        "POST",
        "/v1/embeddings",
        r#"{"model":"text-embedding-3-small","input":["a gateway","a proxy"]}"#,
    )
    .await;
    assert_eq!(status, 200, "{j}");
    let data = j["data"].as_array().expect("data");
    assert_eq!(data.len(), 2);
    assert_eq!(data[0]["embedding"].as_array().map(Vec::len), Some(384));
    let (status, j) = exchange(
        port,
        "POST",
        "/v1/chat/completions",
        r#"{"model":"local-chat","messages":[{"role":"user","content":"Hello"}]}"#,
    )
    .await;
    assert_eq!(status, 200, "{j}");
    assert_eq!(j["choices"][0]["message"]["content"], "pqrstuvwxyz");
}
