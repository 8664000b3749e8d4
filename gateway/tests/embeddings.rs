//! `/v1/embeddings` on every provider that has them, end to end: the real gateway against local
//! upstreams speaking Gemini (`embedContent` / `batchEmbedContents`), Ollama (`/api/embed`) and
//! Cloudflare Workers AI (`/ai/run/{model}`) — translation both ways, `encoding_format: base64`,
//! `dimensions`, failover and metering. Also the built-in mock provider's logprobs, tool choice
//! and embeddings options, and the audit of caller-visible errors (real `param` names, no Rust
//! debug syntax in messages).

mod common;

use base64::Engine;
use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// What a scripted upstream received.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    headers: http::HeaderMap,
    body: Value,
}

type Script = fn(&str, &Value) -> (u16, Value);

/// A local upstream answering every request with `script(path, body)`, recording what it got.
struct Scripted {
    addr: std::net::SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Scripted {
    async fn start(script: Script) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let log = log.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let bytes = body.collect().await.map(|b| b.to_bytes());
                            let body: Value = bytes
                                .ok()
                                .and_then(|b| serde_json::from_slice(&b).ok())
                                .unwrap_or(Value::Null);
                            let path = parts
                                .uri
                                .path_and_query()
                                .map_or("/".into(), |p| p.to_string());
                            let (status, answer) = script(&path, &body);
                            log.lock().unwrap().push(Seen {
                                path,
                                headers: parts.headers,
                                body,
                            });
                            let resp = http::Response::builder()
                                .status(status)
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(answer.to_string())))
                                .unwrap();
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Scripted { addr, seen, task }
    }

    fn url(&self, suffix: &str) -> String {
        format!("http://{}{suffix}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// A deterministic vector for a text: [words, characters, 0.5].
fn vector(text: &str) -> Value {
    json!([
        text.split_whitespace().count() as f64,
        text.len() as f64,
        0.5
    ])
}

fn texts_of_gemini(requests: &[Value]) -> Vec<String> {
    requests
        .iter()
        .map(|r| {
            r["content"]["parts"][0]["text"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

/// Gemini: `embedContent` and `batchEmbedContents` (values cut to `outputDimensionality`).
fn gemini(path: &str, body: &Value) -> (u16, Value) {
    let cut = |t: &str, r: &Value| {
        let mut v = vector(t).as_array().unwrap().clone();
        if let Some(d) = r["outputDimensionality"].as_u64() {
            v.resize(d as usize, json!(0.25));
        }
        json!({"values": v})
    };
    if path.starts_with("/v1beta/models/fail-503:") {
        return (
            503,
            json!({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}),
        );
    }
    if path.starts_with("/v1beta/models/garbled-200:") {
        // A 200 that is not an embeddings answer (the vectors are not where the API puts them).
        return (200, json!({"candidates": []}));
    }
    if path.ends_with(":embedContent") {
        let t = texts_of_gemini(std::slice::from_ref(body));
        return (200, json!({"embedding": cut(&t[0], body)}));
    }
    if path.ends_with(":batchEmbedContents") {
        let reqs = body["requests"].as_array().cloned().unwrap_or_default();
        let out: Vec<Value> = reqs
            .iter()
            .map(|r| cut(&texts_of_gemini(std::slice::from_ref(r))[0], r))
            .collect();
        return (200, json!({"embeddings": out}));
    }
    (
        404,
        json!({"error": {"code": 404, "message": "no route", "status": "NOT_FOUND"}}),
    )
}

/// Ollama `/api/embed`: `input` string or array; `prompt_eval_count` = words.
fn ollama(path: &str, body: &Value) -> (u16, Value) {
    if path != "/api/embed" {
        return (404, json!({"error": "not found"}));
    }
    let inputs: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|v| v.as_str().unwrap_or("").to_string())
            .collect(),
        _ => return (400, json!({"error": "invalid input"})),
    };
    let words: usize = inputs.iter().map(|t| t.split_whitespace().count()).sum();
    let vectors: Vec<Value> = inputs
        .iter()
        .map(|t| {
            let mut v = vector(t).as_array().unwrap().clone();
            if let Some(d) = body["dimensions"].as_u64() {
                v.resize(d as usize, json!(0.25));
            }
            Value::Array(v)
        })
        .collect();
    (
        200,
        json!({"model": body["model"], "embeddings": vectors, "total_duration": 14143917,
               "load_duration": 1019500, "prompt_eval_count": words}),
    )
}

/// Cloudflare `/ai/run/{model}` for embedding models: `{"text": [..]}`.
fn cloudflare(path: &str, body: &Value) -> (u16, Value) {
    if !path.starts_with("/client/v4/accounts/acc/ai/run/@cf/") {
        return (
            404,
            json!({"result": null, "success": false, "errors": [{"code": 7003, "message": "No route"}], "messages": []}),
        );
    }
    let texts: Vec<String> = match &body["text"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|v| v.as_str().unwrap_or("").to_string())
            .collect(),
        _ => {
            return (
                400,
                json!({"result": null, "success": false, "errors": [{"code": 5004, "message": "invalid data"}], "messages": []}),
            )
        }
    };
    let data: Vec<Value> = texts.iter().map(|t| vector(t)).collect();
    (
        200,
        json!({"result": {"shape": [data.len(), 3], "data": data, "pooling": "mean"},
               "success": true, "errors": [], "messages": []}),
    )
}

struct Upstreams {
    gemini: Scripted,
    ollama: Scripted,
    cloudflare: Scripted,
}

async fn upstreams() -> Upstreams {
    Upstreams {
        gemini: Scripted::start(gemini).await,
        ollama: Scripted::start(ollama).await,
        cloudflare: Scripted::start(cloudflare).await,
    }
}

/// One model per provider kind (`g`, `o`, `cf`, `ant`), a failover model (`g-then-o`), and a
/// priced one (`priced`).
fn config(u: &Upstreams, anthropic_url: &str) -> String {
    format!(
        "providers:
  - name: gem
    kind: gemini
    base_url: {}
    api_key: sk-gem-secret
  - name: oll
    kind: ollama
    base_url: {}
  - name: cf
    kind: cloudflare
    base_url: {}
    api_key: sk-cf-secret
  - name: claude
    kind: anthropic
    base_url: {anthropic_url}
    api_key: sk-ant-secret
models:
  - name: g
    deployments: [{{ provider: gem, model: text-embedding-004 }}]
  - name: o
    deployments: [{{ provider: oll, model: all-minilm }}]
  - name: cf
    deployments: [{{ provider: cf, model: \"@cf/baai/bge-base-en-v1.5\" }}]
  - name: cf-loose
    strict: false
    deployments: [{{ provider: cf, model: \"@cf/baai/bge-base-en-v1.5\" }}]
  - name: ant
    deployments: [{{ provider: claude, model: claude-up }}]
  - name: ant-then-o
    strategy: priority
    deployments:
      - {{ provider: claude, model: claude-up, priority: 1 }}
      - {{ provider: oll, model: all-minilm, priority: 2 }}
  - name: g-then-o
    strategy: priority
    deployments:
      - {{ provider: gem, model: fail-503, priority: 1 }}
      - {{ provider: oll, model: all-minilm, priority: 2 }}
  - name: garbled-then-o
    deployments:
      - {{ provider: gem, model: garbled-200, priority: 1 }}
      - {{ provider: oll, model: all-minilm, priority: 2 }}
  - name: garbled
    deployments: [{{ provider: gem, model: garbled-200 }}]
  - name: priced
    deployments: [{{ provider: gem, model: text-embedding-004, price: {{ input_per_mtok: 1000, output_per_mtok: 0 }} }}]
",
        u.gemini.url("/v1beta"),
        u.ollama.url(""),
        u.cloudflare.url("/client/v4/accounts/acc/ai"),
    )
}

async fn gateway(u: &Upstreams) -> Gateway {
    Gateway::start(&config(u, &refused_url()), "").await
}

fn refused_url() -> String {
    format!("http://{}", refused_addr())
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn decode_b64(v: &Value) -> Vec<f32> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap_or_else(|| panic!("not base64 text: {v}")))
        .unwrap();
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_embeds_one_input_and_a_batch_with_dimensions() {
    let u = upstreams().await;
    let gw = gateway(&u).await;
    let r = gw
        .post_json(
            "/v1/embeddings",
            br#"{"model":"g","input":"one two three"}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "text-embedding-004");
    assert_eq!(v["data"][0]["object"], "embedding");
    assert_eq!(v["data"][0]["index"], 0);
    assert_eq!(floats(&v["data"][0]["embedding"]), vec![3.0, 13.0, 0.5]);
    // Gemini counts no tokens: the estimate (13 characters, about 4 per token) is the usage.
    assert_eq!(v["usage"], json!({"prompt_tokens": 4, "total_tokens": 4}));
    let r = gw
        .post_json(
            "/v1/embeddings",
            br#"{"model":"g","input":["a b","c d e f"],"dimensions":5}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(
        floats(&v["data"][1]["embedding"]),
        vec![4.0, 7.0, 0.5, 0.25, 0.25]
    );
    assert_eq!(v["data"][1]["index"], 1);
    let seen = u.gemini.seen();
    assert_eq!(
        seen[0].path,
        "/v1beta/models/text-embedding-004:embedContent"
    );
    assert_eq!(seen[0].headers["x-goog-api-key"], "sk-gem-secret");
    assert_eq!(seen[0].body["content"]["parts"][0]["text"], "one two three");
    assert_eq!(
        seen[1].path,
        "/v1beta/models/text-embedding-004:batchEmbedContents"
    );
    assert_eq!(
        seen[1].body["requests"][1]["model"],
        "models/text-embedding-004"
    );
    assert_eq!(seen[1].body["requests"][1]["outputDimensionality"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ollama_embeds_with_its_own_token_count_and_dimensions() {
    let u = upstreams().await;
    let gw = gateway(&u).await;
    let r = gw
        .post_json(
            "/v1/embeddings",
            br#"{"model":"o","input":["why is the sky blue","hi"],"dimensions":4}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(
        floats(&v["data"][0]["embedding"]),
        vec![5.0, 19.0, 0.5, 0.25]
    );
    assert_eq!(v["usage"]["prompt_tokens"], 6, "Ollama's prompt_eval_count");
    let seen = u.ollama.seen();
    assert_eq!(seen[0].path, "/api/embed");
    assert_eq!(
        seen[0].body,
        json!({"model": "all-minilm", "input": ["why is the sky blue", "hi"], "dimensions": 4})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudflare_embeds_and_refuses_dimensions_by_name() {
    let u = upstreams().await;
    let gw = gateway(&u).await;
    let r = gw
        .post_json("/v1/embeddings", br#"{"model":"cf","input":["x y"]}"#)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        floats(&r.json()["data"][0]["embedding"]),
        vec![2.0, 3.0, 0.5]
    );
    let seen = u.cloudflare.seen();
    assert_eq!(
        seen[0].path,
        "/client/v4/accounts/acc/ai/run/@cf/baai/bge-base-en-v1.5"
    );
    assert_eq!(seen[0].body, json!({"text": ["x y"]}));
    assert_eq!(seen[0].headers["authorization"], "Bearer sk-cf-secret");
    // Fixed-size models: `dimensions` is refused before anything is sent...
    let r = gw
        .post_json(
            "/v1/embeddings",
            br#"{"model":"cf","input":"x","dimensions":8}"#,
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"]["param"], "dimensions");
    assert_eq!(u.cloudflare.seen().len(), 1);
    // ...or dropped, and said so, when the model is not strict.
    let r = gw
        .post_json(
            "/v1/embeddings",
            br#"{"model":"cf-loose","input":"x","dimensions":8}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-switchyard-dropped"), Some("dimensions"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base64_is_little_endian_f32_for_every_translated_provider() {
    let u = upstreams().await;
    let gw = gateway(&u).await;
    for model in ["g", "o", "cf"] {
        let body = format!(r#"{{"model":"{model}","input":["a b c"],"encoding_format":"base64"}}"#);
        let r = gw.post_json("/v1/embeddings", body.as_bytes()).await;
        assert_eq!(r.status, 200, "{model}: {}", r.text());
        let v = r.json();
        assert_eq!(
            decode_b64(&v["data"][0]["embedding"]),
            vec![3.0, 5.0, 0.5],
            "{model}"
        );
    }
    let r = gw
        .post_json(
            "/v1/embeddings",
            br#"{"model":"g","input":"a","encoding_format":"hex"}"#,
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "encoding_format");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_provider_fails_over_and_anthropic_is_skipped() {
    let u = upstreams().await;
    let gw = gateway(&u).await;
    let r = gw
        .post_json("/v1/embeddings", br#"{"model":"g-then-o","input":"one"}"#)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-switchyard-provider"), Some("oll"));
    assert_eq!(
        u.gemini.seen()[0].path,
        "/v1beta/models/fail-503:embedContent"
    );
    // Anthropic has no embeddings: skipped without a try, the next deployment serves.
    let r = gw
        .post_json("/v1/embeddings", br#"{"model":"ant-then-o","input":"one"}"#)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // None left: the existing 400, naming the field to change.
    let r = gw
        .post_json("/v1/embeddings", br#"{"model":"ant","input":"one"}"#)
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    let e = r.json();
    assert_eq!(e["error"]["param"], "model");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("anthropic") && msg.contains("embeddings"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_that_is_not_an_embeddings_answer_fails_over() {
    let u = upstreams().await;
    let gw = gateway(&u).await;
    let r = gw
        .post_json(
            "/v1/embeddings",
            br#"{"model":"garbled-then-o","input":"one"}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-switchyard-provider"), Some("oll"));
    let r = gw
        .post_json("/v1/embeddings", br#"{"model":"garbled","input":"one"}"#)
        .await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "bad_upstream_response");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn translated_embeddings_are_metered() {
    let u = upstreams().await;
    let gw = gateway(&u).await;
    // 16 characters: 4 estimated tokens at $1,000 per million = $0.004.
    let r = gw
        .post_json(
            "/v1/embeddings",
            br#"{"model":"priced","input":"sixteen chars ok"}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-switchyard-cost-usd"), Some("0.00400000"));
    let line = gw
        .access_line(|l| l["model"] == "priced")
        .await
        .expect("access log line");
    assert_eq!(line["status"], 200);
    assert_eq!(line["prompt_tokens"], 4, "{line}");
    assert_eq!(line["cost_usd"], 0.004, "{line}");
}

// ------------------------------------ the mock provider ------------------------------------

const MOCK: &str = "providers:
  - name: sim
    kind: mock
    chunks: 2
models:
  - name: chat
    deployments: [{ provider: sim, model: mock-1 }]
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mock_honours_embeddings_base64_and_dimensions() {
    let gw = Gateway::start(MOCK, "").await;
    let floats_body = gw
        .post_json(
            "/v1/embeddings",
            br#"{"model":"chat","input":"hello there","dimensions":5}"#,
        )
        .await
        .json();
    let f = floats(&floats_body["data"][0]["embedding"]);
    assert_eq!(f.len(), 5);
    let norm: f64 = f.iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "unit vector: {norm}");
    let b = gw
        .post_json(
            "/v1/embeddings",
            br#"{"model":"chat","input":"hello there","dimensions":5,"encoding_format":"base64"}"#,
        )
        .await
        .json();
    let decoded = decode_b64(&b["data"][0]["embedding"]);
    assert_eq!(decoded.len(), 5);
    for (x, y) in decoded.iter().zip(&f) {
        assert!((f64::from(*x) - y).abs() < 1e-6, "{x} vs {y}");
    }
    let r = gw
        .post_json(
            "/v1/embeddings",
            br#"{"model":"chat","input":"x","dimensions":-1}"#,
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "dimensions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mock_answers_logprobs_per_token_stream_and_not() {
    let gw = Gateway::start(MOCK, "").await;
    let body = br#"{"model":"chat","logprobs":true,"top_logprobs":2,"messages":[{"role":"user","content":"hi"}]}"#;
    let v = gw.post_json("/v1/chat/completions", body).await.json();
    let content = v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    let lp = v["choices"][0]["logprobs"]["content"]
        .as_array()
        .unwrap()
        .clone();
    let joined: String = lp.iter().map(|t| t["token"].as_str().unwrap()).collect();
    assert_eq!(joined, content, "one logprob entry per token of the answer");
    for t in &lp {
        assert!(t["logprob"].as_f64().unwrap() <= 0.0);
        assert_eq!(t["top_logprobs"].as_array().unwrap().len(), 2);
        assert_eq!(t["top_logprobs"][0]["token"], t["token"]);
        let bytes: Vec<u8> = t["bytes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_u64().unwrap() as u8)
            .collect();
        assert_eq!(bytes, t["token"].as_str().unwrap().as_bytes());
    }
    let again = gw.post_json("/v1/chat/completions", body).await.json();
    assert_eq!(
        again["choices"][0]["logprobs"], v["choices"][0]["logprobs"],
        "deterministic"
    );
    // The stream carries the same entries, chunk by chunk.
    let stream = br#"{"model":"chat","stream":true,"logprobs":true,"top_logprobs":2,"messages":[{"role":"user","content":"hi"}]}"#;
    let text = gw.post_json("/v1/chat/completions", stream).await.text();
    let mut streamed = Vec::new();
    for line in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
        if line == "[DONE]" {
            continue;
        }
        let c: Value = serde_json::from_str(line).unwrap();
        if let Some(entries) = c["choices"][0]["logprobs"]["content"].as_array() {
            streamed.extend(entries.iter().cloned());
        }
    }
    assert_eq!(streamed, lp);
    // Without logprobs, none; top_logprobs out of range is refused by name.
    let plain = gw
        .post_json(
            "/v1/chat/completions",
            br#"{"model":"chat","messages":[{"role":"user","content":"hi"}]}"#,
        )
        .await
        .json();
    assert_eq!(plain["choices"][0]["logprobs"], Value::Null);
    let r = gw
        .post_json("/v1/chat/completions", br#"{"model":"chat","logprobs":true,"top_logprobs":21,"messages":[{"role":"user","content":"hi"}]}"#)
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "top_logprobs");
}

const WEATHER_TOOLS: &str = r#""tools":[{"type":"function","function":{"name":"noop","parameters":{"type":"object","properties":{}}}},{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"},"unit":{"type":"string","enum":["c","f"]},"opts":{"type":"object","properties":{"hourly":{"type":"boolean"}},"required":["hourly"]}},"required":["city","days","unit","opts"]}}}]"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mock_calls_the_tool_it_is_told_to() {
    let gw = Gateway::start(MOCK, "").await;
    let named = format!(
        r#"{{"model":"chat",{WEATHER_TOOLS},"tool_choice":{{"type":"function","function":{{"name":"get_weather"}}}},"messages":[{{"role":"user","content":"weather?"}}]}}"#
    );
    let v = gw
        .post_json("/v1/chat/completions", named.as_bytes())
        .await
        .json();
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert!(args["city"].is_string());
    assert!(args["days"].is_i64());
    assert_eq!(args["unit"], "c", "an enum's first value");
    assert_eq!(args["opts"]["hourly"], false);
    // "required": the first tool; a stream carries the same call.
    let required = format!(
        r#"{{"model":"chat","stream":true,{WEATHER_TOOLS},"tool_choice":"required","messages":[{{"role":"user","content":"weather?"}}]}}"#
    );
    let text = gw
        .post_json("/v1/chat/completions", required.as_bytes())
        .await
        .text();
    let (mut name, mut arguments, mut finish) = (String::new(), String::new(), String::new());
    for line in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
        if line == "[DONE]" {
            continue;
        }
        let c: Value = serde_json::from_str(line).unwrap();
        let ch = &c["choices"][0];
        if let Some(tc) = ch["delta"]["tool_calls"].get(0) {
            name.push_str(tc["function"]["name"].as_str().unwrap_or(""));
            arguments.push_str(tc["function"]["arguments"].as_str().unwrap_or(""));
        }
        if let Some(f) = ch["finish_reason"].as_str() {
            finish = f.to_string();
        }
    }
    assert_eq!((name.as_str(), finish.as_str()), ("noop", "tool_calls"));
    assert_eq!(
        serde_json::from_str::<Value>(&arguments).unwrap(),
        json!({})
    );
    // A function that is not among the tools is refused by name.
    let unknown = format!(
        r#"{{"model":"chat",{WEATHER_TOOLS},"tool_choice":{{"type":"function","function":{{"name":"nope"}}}},"messages":[{{"role":"user","content":"x"}}]}}"#
    );
    let r = gw
        .post_json("/v1/chat/completions", unknown.as_bytes())
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"]["param"], "tool_choice");
}

// ------------------------------------- the error audit -------------------------------------

/// Every caller-visible error names the real field and shows no Rust debug syntax.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_name_the_real_field_without_debug_syntax() {
    let gw = Gateway::start(MOCK, "").await;
    let openai_cases: &[(&str, &[u8], Option<&str>)] = &[
        ("/v1/chat/completions", br#"{"messages":[]}"#, Some("model")),
        ("/v1/chat/completions", br#"{"model":7,"messages":[]}"#, Some("model")),
        ("/v1/chat/completions", br#"{"model":"nope","messages":[]}"#, Some("model")),
        ("/v1/chat/completions", br#"{"model":"chat","stream":"yes","messages":[]}"#, Some("stream")),
        ("/v1/chat/completions", br#"{"model":"chat","n":0,"messages":[{"role":"user","content":"x"}]}"#, Some("n")),
        ("/v1/chat/completions", br#"{"model":"chat","n":2,"stream":true,"messages":[{"role":"user","content":"x"}]}"#, Some("n")),
        ("/v1/chat/completions", br#"{"model":"chat","messages":[]}"#, Some("messages")),
        ("/v1/chat/completions", br#"{"model":"chat","top_logprobs":3,"messages":[{"role":"user","content":"x"}]}"#, Some("top_logprobs")),
        ("/v1/chat/completions", br#"{"model":"chat","tool_choice":"required","messages":[{"role":"user","content":"x"}]}"#, Some("tool_choice")),
        ("/v1/embeddings", br#"{"model":"chat"}"#, Some("input")),
        ("/v1/embeddings", br#"{"model":"chat","input":["a",[1]]}"#, Some("input[1]")),
        ("/v1/embeddings", br#"{"model":"chat","input":"a","encoding_format":"f16"}"#, Some("encoding_format")),
        ("/v1/embeddings", br#"{"model":"chat","input":"a","dimensions":0}"#, Some("dimensions")),
    ];
    for (path, body, param) in openai_cases {
        let r = gw.post_json(path, body).await;
        let shown = String::from_utf8_lossy(body);
        assert!(
            (400..500).contains(&r.status),
            "{shown}: {} {}",
            r.status,
            r.text()
        );
        let e = r.json();
        assert_eq!(e["error"]["param"].as_str(), *param, "{shown}: {e}");
        no_debug_syntax(e["error"]["message"].as_str().unwrap(), &shown);
    }
    // Through translation (an OpenAI caller to an Anthropic deployment that is never reached:
    // the request is refused while it is translated).
    let translated = Gateway::start(&translating_config(), "").await;
    let translated_cases: &[(&[u8], &str)] = &[
        (br#"{"model":"ant","n":2,"messages":[{"role":"user","content":"x"}]}"#, "n"),
        (br#"{"model":"ant","messages":[{"role":"user","content":"x"},{"role":"assistant","content":"y"},{"role":"user","content":[{"type":"input_audio","input_audio":{}}]}]}"#, "messages[2].content[0].type"),
        (br#"{"model":"ant","messages":[{"role":"wizard","content":"x"}]}"#, "messages[0].role"),
        (br#"{"model":"ant","tools":[{"type":"function"}],"messages":[{"role":"user","content":"x"}]}"#, "tools[0].function"),
        (br#"{"model":"ant","tools":[{"type":"code_interpreter"}],"messages":[{"role":"user","content":"x"}]}"#, "tools[0].type"),
        (br#"{"model":"ant","messages":[{"role":"tool","content":"x"}]}"#, "messages[0].tool_call_id"),
        (br#"{"model":"ant","messages":[{"role":"user","content":"x"},{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{not json"}}]}]}"#, "messages[1].tool_calls[0].function.arguments"),
    ];
    for (body, param) in translated_cases {
        let r = translated.post_json("/v1/chat/completions", body).await;
        let shown = String::from_utf8_lossy(body);
        assert_eq!(r.status, 400, "{shown}: {}", r.text());
        let e = r.json();
        assert_eq!(e["error"]["param"].as_str(), Some(*param), "{shown}: {e}");
        no_debug_syntax(e["error"]["message"].as_str().unwrap(), &shown);
    }
    // Anthropic callers: the same audit of messages (Anthropic errors carry no `param`; the
    // message names the place).
    let anthropic_cases: &[(&[u8], &str)] = &[
        (br#"{"model":"chat","max_tokens":5}"#, "messages"),
        (br#"{"model":"chat","max_tokens":"x","messages":[{"role":"user","content":"hi"}]}"#, "max_tokens"),
        (br#"{"model":"chat","max_tokens":5,"messages":[{"role":"wizard","content":"hi"}]}"#, "messages.0.role"),
        (br#"{"model":"chat","max_tokens":5,"messages":[{"role":"user","content":[{"type":"document","source":{}}]}]}"#, "`document`"),
        (br#"{"model":"chat","max_tokens":5,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"image"}]}]}]}"#, "`image`"),
    ];
    for (body, names) in anthropic_cases {
        let r = gw.post_json("/v1/messages", body).await;
        let shown = String::from_utf8_lossy(body);
        assert_eq!(r.status, 400, "{shown}: {}", r.text());
        let e = r.json();
        assert_eq!(e["type"], "error", "{shown}: {e}");
        let message = e["error"]["message"].as_str().unwrap();
        assert!(message.contains(names), "{shown}: {message}");
        no_debug_syntax(message, &shown);
    }
}

/// A model `ant` served only by an Anthropic deployment (never reached in these tests).
fn translating_config() -> String {
    format!(
        "providers:\n  - name: claude\n    kind: anthropic\n    base_url: {}\n    api_key: sk-ant-secret\nmodels:\n  - name: ant\n    deployments: [{{ provider: claude, model: claude-up }}]\n",
        refused_url()
    )
}

fn no_debug_syntax(message: &str, case: &str) {
    for bad in ["Some(", "None", "\\\"", "{ ", " }"] {
        assert!(
            !message.contains(bad),
            "{case}: message shows `{bad}`: {message}"
        );
    }
}
