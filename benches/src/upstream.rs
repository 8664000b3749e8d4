//! A deterministic OpenAI-compatible upstream: `POST /v1/chat/completions` and the legacy
//! `POST /v1/completions` (non-stream and SSE stream, with the usage chunk when
//! `stream_options.include_usage` is set), `GET /v1/models`; and enough of Anthropic's API for
//! translation tests: `POST /v1/messages` (whole and streamed) and `/v1/messages/count_tokens`.
//! It can answer with an error status, delay its first byte and space its stream events, and it
//! records what it received so tests can check what the gateway sent.
//!
//! Anthropic prompt caching, simulated: a Messages request with any `cache_control` block has a
//! cached prefix of [`PROMPT_CACHE_TOKENS`] tokens keyed by its `system` and `tools`; the first
//! request with a prefix reports them as `cache_creation_input_tokens`, later ones as
//! `cache_read_input_tokens` (whole answers and the stream's `message_start`).

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

#[derive(Clone, Debug)]
pub struct MockUpstreamConfig {
    /// Status of every chat answer; a non-2xx status answers `error_body`.
    pub status: u16,
    pub error_body: Option<String>,
    /// Content chunks in a stream.
    pub stream_chunks: usize,
    /// Pause between stream events.
    pub chunk_interval: Duration,
    /// Pause before the response header.
    pub first_byte_delay: Duration,
    /// Keep every request for [`MockUpstream::requests`].
    pub record: bool,
    /// Extra headers on error answers (e.g. `retry-after`).
    pub error_headers: Vec<(String, String)>,
    /// Streams: pause before the first event (the header goes out at once, like real providers).
    pub first_event_delay: Duration,
    /// Streams: after this many events, stop sending but keep the connection open (a stall).
    pub stall_after_events: Option<usize>,
    /// Streams: after this many events, abort the connection (a reset mid-stream).
    pub reset_after_events: Option<usize>,
}

impl Default for MockUpstreamConfig {
    fn default() -> Self {
        MockUpstreamConfig {
            status: 200,
            error_body: None,
            stream_chunks: 3,
            chunk_interval: Duration::ZERO,
            first_byte_delay: Duration::ZERO,
            record: true,
            error_headers: Vec::new(),
            stall_after_events: None,
            reset_after_events: None,
            first_event_delay: Duration::ZERO,
        }
    }
}

#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl RecordedRequest {
    /// A header's value, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub struct MockUpstream {
    pub addr: SocketAddr,
    recorded: Arc<Mutex<Vec<RecordedRequest>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Shared {
    config: MockUpstreamConfig,
    recorded: Arc<Mutex<Vec<RecordedRequest>>>,
    /// Prompt-cache prefixes written so far (their `system` and `tools`, as JSON).
    prompt_cache: Mutex<std::collections::HashSet<String>>,
}

/// Tokens of the simulated cached prefix of a Messages request with `cache_control`.
pub const PROMPT_CACHE_TOKENS: u64 = 1000;

/// (written, read) prompt-cache tokens for an Anthropic request (see the module doc).
fn prompt_cache(shared: &Shared, v: &serde_json::Value) -> (u64, u64) {
    if !v.to_string().contains("\"cache_control\"") {
        return (0, 0);
    }
    let prefix = serde_json::json!([v.get("system"), v.get("tools")]).to_string();
    let mut seen = shared
        .prompt_cache
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if seen.insert(prefix) {
        (PROMPT_CACHE_TOKENS, 0)
    } else {
        (0, PROMPT_CACHE_TOKENS)
    }
}

/// Adds prompt-cache counts to an Anthropic `usage` object.
fn add_cache_usage(usage: &mut serde_json::Value, (written, read): (u64, u64)) {
    if written + read > 0 {
        usage["cache_creation_input_tokens"] = written.into();
        usage["cache_read_input_tokens"] = read.into();
    }
}

impl MockUpstream {
    /// Serves on a fresh loopback port on the current tokio runtime until dropped.
    pub async fn start(config: MockUpstreamConfig) -> std::io::Result<MockUpstream> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), config).await
    }

    /// Serves on `addr` on the current tokio runtime until dropped.
    pub async fn start_on(
        addr: SocketAddr,
        config: MockUpstreamConfig,
    ) -> std::io::Result<MockUpstream> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::new(Shared {
            config,
            recorded: recorded.clone(),
            prompt_cache: Mutex::default(),
        });
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    // e.g. out of file descriptors: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(shared.clone(), req));
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(MockUpstream {
            addr,
            recorded,
            task,
        })
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.recorded.lock().map(|r| r.clone()).unwrap_or_default()
    }

    pub fn request_count(&self) -> usize {
        self.recorded.lock().map(|r| r.len()).unwrap_or(0)
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
}

const CREATED: u64 = 1_700_000_000;
const ID: &str = "chatcmpl-mock";

/// The exact non-stream body answered for `model`.
pub fn chat_completion_body(model: &str) -> String {
    let model = serde_json::to_string(model).unwrap_or_default();
    format!(
        concat!(
            r#"{{"id":"{id}","object":"chat.completion","created":{created},"model":{model},"#,
            r#""choices":[{{"index":0,"message":{{"role":"assistant","content":"Hello from the mock upstream.","refusal":null}},"logprobs":null,"finish_reason":"stop"}}],"#,
            r#""usage":{{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21}}}}"#
        ),
        id = ID,
        created = CREATED,
        model = model
    )
}

/// The exact SSE events streamed for `model`, the last one `data: [DONE]`.
pub fn stream_events(model: &str, chunks: usize, include_usage: bool) -> Vec<String> {
    let model = serde_json::to_string(model).unwrap_or_default();
    let usage_null = if include_usage {
        r#","usage":null"#
    } else {
        ""
    };
    let chunk = |delta: &str, finish: &str| {
        format!(
            r#"data: {{"id":"{ID}","object":"chat.completion.chunk","created":{CREATED},"model":{model},"choices":[{{"index":0,"delta":{delta},"logprobs":null,"finish_reason":{finish}}}]{usage_null}}}"#
        ) + "\n\n"
    };
    let mut out = vec![chunk(r#"{"role":"assistant","content":""}"#, "null")];
    for i in 0..chunks {
        out.push(chunk(&format!(r#"{{"content":"word{i} "}}"#), "null"));
    }
    out.push(chunk("{}", r#""stop""#));
    if include_usage {
        out.push(format!(
            r#"data: {{"id":"{ID}","object":"chat.completion.chunk","created":{CREATED},"model":{model},"choices":[],"usage":{{"prompt_tokens":9,"completion_tokens":{chunks},"total_tokens":{}}}}}"#,
            9 + chunks
        ) + "\n\n");
    }
    out.push("data: [DONE]\n\n".to_string());
    out
}

/// The exact non-stream legacy completion answered for `model`: OpenAI's documented example.
pub fn text_completion_body(model: &str) -> String {
    let model = serde_json::to_string(model).unwrap_or_default();
    format!(
        concat!(
            r#"{{"id":"cmpl-mock","object":"text_completion","created":{created},"model":{model},"#,
            r#""system_fingerprint":"fp_44709d6fcb","#,
            r#""choices":[{{"text":"\n\nThis is indeed a test","index":0,"logprobs":null,"finish_reason":"length"}}],"#,
            r#""usage":{{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}}}"#
        ),
        created = CREATED,
        model = model
    )
}

/// The exact SSE events of a streamed legacy completion for `model`, the last `data: [DONE]`.
pub fn completion_stream_events(model: &str, chunks: usize, include_usage: bool) -> Vec<String> {
    let model = serde_json::to_string(model).unwrap_or_default();
    let usage_null = if include_usage {
        r#","usage":null"#
    } else {
        ""
    };
    let chunk = |text: &str, finish: &str| {
        format!(
            r#"data: {{"id":"cmpl-mock","object":"text_completion","created":{CREATED},"model":{model},"choices":[{{"text":"{text}","index":0,"logprobs":null,"finish_reason":{finish}}}]{usage_null}}}"#
        ) + "\n\n"
    };
    let mut out: Vec<String> = (0..chunks)
        .map(|i| chunk(&format!("word{i} "), "null"))
        .collect();
    out.push(chunk("", r#""stop""#));
    if include_usage {
        out.push(format!(
            r#"data: {{"id":"cmpl-mock","object":"text_completion","created":{CREATED},"model":{model},"choices":[],"usage":{{"prompt_tokens":5,"completion_tokens":{chunks},"total_tokens":{}}}}}"#,
            5 + chunks
        ) + "\n\n");
    }
    out.push("data: [DONE]\n\n".to_string());
    out
}

/// Anthropic's documented count_tokens answer.
pub const COUNT_TOKENS_BODY: &str = r#"{"input_tokens":14}"#;

/// The exact Messages answer for `model` (the shape of Anthropic's documented example).
pub fn anthropic_message_body(model: &str) -> String {
    serde_json::json!({
        "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": "Hi! My name is Claude."}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": {"input_tokens": 10, "output_tokens": 8},
    })
    .to_string()
}

/// A streamed Messages answer for `model`: `chunks` text deltas between Anthropic's documented
/// framing events.
pub fn anthropic_stream_events(model: &str, chunks: usize) -> Vec<String> {
    let ev = |name: &str, data: serde_json::Value| format!("event: {name}\ndata: {data}\n\n");
    let mut out = vec![
        ev(
            "message_start",
            serde_json::json!({"type": "message_start", "message": {
                "id": "msg_mock", "type": "message", "role": "assistant", "model": model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 10, "output_tokens": 1}}}),
        ),
        ev(
            "content_block_start",
            serde_json::json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}),
        ),
    ];
    for i in 0..chunks {
        out.push(ev(
            "content_block_delta",
            serde_json::json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": format!("word{i} ")}}),
        ));
    }
    out.push(ev(
        "content_block_stop",
        serde_json::json!({"type": "content_block_stop", "index": 0}),
    ));
    out.push(ev(
        "message_delta",
        serde_json::json!({"type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"output_tokens": chunks}}),
    ));
    out.push(ev(
        "message_stop",
        serde_json::json!({"type": "message_stop"}),
    ));
    out
}

type Body = BoxBody<Bytes, std::io::Error>;

fn full(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let body: Bytes = body.into();
    let mut resp = Response::new(Full::new(body).map_err(|never| match never {}).boxed());
    *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
    if let Ok(v) = content_type.parse() {
        resp.headers_mut().insert("content-type", v);
    }
    resp
}

fn error_json(message: &str) -> String {
    serde_json::json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}})
        .to_string()
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let cfg = &shared.config;
    if cfg.record {
        let rec = RecordedRequest {
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            headers: parts
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: body.clone(),
        };
        if let Ok(mut r) = shared.recorded.lock() {
            r.push(rec);
        }
    }
    match (parts.method.as_str(), parts.uri.path()) {
        ("GET", "/v1/models" | "/models") => Ok(full(
            200,
            "application/json",
            r#"{"object":"list","data":[{"id":"mock-model","object":"model","created":1700000000,"owned_by":"mock"}]}"#,
        )),
        ("POST", "/v1/chat/completions" | "/chat/completions") => {
            Ok(answer(cfg, &body, Format::Chat).await)
        }
        ("POST", "/v1/completions" | "/completions") => {
            Ok(answer(cfg, &body, Format::Completions).await)
        }
        ("POST", "/v1/messages") => Ok(answer_messages(&shared, &body).await),
        ("POST", "/v1/messages/count_tokens") => Ok(answer(cfg, &body, Format::CountTokens).await),
        _ => Ok(full(404, "application/json", error_json("unknown path"))),
    }
}

/// A Messages answer, with simulated prompt-cache usage.
async fn answer_messages(shared: &Shared, body: &[u8]) -> Response<Body> {
    let cache = serde_json::from_slice::<serde_json::Value>(body)
        .map(|v| prompt_cache(shared, &v))
        .unwrap_or((0, 0));
    let resp = answer(&shared.config, body, Format::Anthropic).await;
    if cache == (0, 0) || resp.status() != 200 {
        return resp;
    }
    let (parts, b) = resp.into_parts();
    let Ok(bytes) = b.collect().await.map(|b| b.to_bytes()) else {
        return full(500, "application/json", error_json("mock body"));
    };
    let text = String::from_utf8_lossy(&bytes);
    let patched = if let Ok(mut v) = serde_json::from_str::<serde_json::Value>(&text) {
        add_cache_usage(&mut v["usage"], cache);
        v.to_string()
    } else {
        // A stream: the usage of `message_start`.
        text.split_inclusive("\n\n")
            .map(|ev| match ev.split_once("data: ") {
                Some((head, data)) if head.contains("message_start") => {
                    let mut v: serde_json::Value =
                        serde_json::from_str(data.trim()).unwrap_or_default();
                    add_cache_usage(&mut v["message"]["usage"], cache);
                    format!("{head}data: {v}\n\n")
                }
                _ => ev.to_string(),
            })
            .collect()
    };
    let mut out = full(200, "", patched);
    *out.headers_mut() = parts.headers;
    out.headers_mut().remove("content-length");
    out
}

/// Which API an answer is in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Chat,
    Completions,
    Anthropic,
    CountTokens,
}

async fn answer(cfg: &MockUpstreamConfig, body: &[u8], format: Format) -> Response<Body> {
    if !cfg.first_byte_delay.is_zero() {
        tokio::time::sleep(cfg.first_byte_delay).await;
    }
    if !(200..300).contains(&cfg.status) {
        let body = cfg.error_body.clone().unwrap_or_else(|| {
            r#"{"error":{"message":"mock upstream error","type":"server_error","param":null,"code":null}}"#.to_string()
        });
        let mut resp = full(cfg.status, "application/json", body);
        for (k, v) in &cfg.error_headers {
            if let (Ok(k), Ok(v)) = (
                hyper::header::HeaderName::from_bytes(k.as_bytes()),
                hyper::header::HeaderValue::from_str(v),
            ) {
                resp.headers_mut().insert(k, v);
            }
        }
        return resp;
    }
    let v: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return full(
                400,
                "application/json",
                error_json(&format!("invalid JSON: {e}")),
            )
        }
    };
    let model = v["model"].as_str().unwrap_or("unknown");
    if v["stream"].as_bool() != Some(true) {
        let body = match format {
            Format::Chat => chat_completion_body(model),
            Format::Completions => text_completion_body(model),
            Format::Anthropic => anthropic_message_body(model),
            Format::CountTokens => COUNT_TOKENS_BODY.to_string(),
        };
        return full(200, "application/json", body);
    }
    let include_usage = v["stream_options"]["include_usage"].as_bool() == Some(true);
    let events = match format {
        Format::Completions => completion_stream_events(model, cfg.stream_chunks, include_usage),
        Format::Anthropic => anthropic_stream_events(model, cfg.stream_chunks),
        _ => stream_events(model, cfg.stream_chunks, include_usage),
    };
    let interval = cfg.chunk_interval;
    let (stall, reset) = (cfg.stall_after_events, cfg.reset_after_events);
    let first_event_delay = cfg.first_event_delay;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
    tokio::spawn(async move {
        if !first_event_delay.is_zero() {
            tokio::time::sleep(first_event_delay).await;
        }
        for (i, ev) in events.into_iter().enumerate() {
            if i > 0 && !interval.is_zero() {
                tokio::time::sleep(interval).await;
            }
            if stall == Some(i) {
                // Hold the connection open, sending nothing, until the peer gives up.
                tx.closed().await;
                return;
            }
            if reset == Some(i) {
                let _ = tx
                    .send(Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "injected reset",
                    )))
                    .await;
                return;
            }
            if tx.send(Ok(Frame::data(Bytes::from(ev)))).await.is_err() {
                return;
            }
        }
    });
    let mut resp = Response::new(ChannelBody(rx).boxed());
    resp.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("text/event-stream"),
    );
    resp.headers_mut().insert(
        "cache-control",
        hyper::header::HeaderValue::from_static("no-cache"),
    );
    resp
}

/// A response body fed frame by frame from a channel (one HTTP chunk per event); an `Err`
/// frame aborts the connection.
struct ChannelBody(tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, std::io::Error>>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.0.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;
    use hyper_util::client::legacy::{connect::HttpConnector, Client};

    fn event_json(ev: &str) -> serde_json::Value {
        let data = ev
            .strip_prefix("data: ")
            .and_then(|e| e.strip_suffix("\n\n"))
            .unwrap();
        serde_json::from_str(data).unwrap()
    }

    #[test]
    fn stream_events_have_the_documented_shape() {
        let evs = stream_events("m", 2, true);
        assert_eq!(evs.len(), 1 + 2 + 1 + 1 + 1);
        assert_eq!(evs.last().unwrap(), "data: [DONE]\n\n");
        let chunks: Vec<_> = evs[..evs.len() - 1].iter().map(|e| event_json(e)).collect();
        for v in &chunks {
            assert_eq!(v["id"], "chatcmpl-mock");
            assert_eq!(v["object"], "chat.completion.chunk");
            assert_eq!(v["created"], 1_700_000_000);
            assert_eq!(v["model"], "m");
        }
        let delta = |i: usize| &chunks[i]["choices"][0]["delta"];
        assert_eq!(
            *delta(0),
            serde_json::json!({"role": "assistant", "content": ""})
        );
        assert_eq!(*delta(1), serde_json::json!({"content": "word0 "}));
        assert_eq!(*delta(2), serde_json::json!({"content": "word1 "}));
        assert_eq!(*delta(3), serde_json::json!({}));
        for (i, v) in chunks[..4].iter().enumerate() {
            let finish = if i == 3 {
                "stop".into()
            } else {
                serde_json::Value::Null
            };
            assert_eq!(v["choices"][0]["finish_reason"], finish);
            // OpenAI sends "usage": null in every chunk but the usage chunk.
            assert_eq!(v.get("usage"), Some(&serde_json::Value::Null));
        }
        let usage = &chunks[4];
        assert_eq!(usage["choices"], serde_json::json!([]));
        assert_eq!(
            usage["usage"],
            serde_json::json!({"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11})
        );
    }

    #[test]
    fn without_include_usage_no_chunk_mentions_usage() {
        let evs = stream_events("m", 3, false);
        assert_eq!(evs.len(), 1 + 3 + 1 + 1);
        assert!(!evs.concat().contains("usage"));
        assert_eq!(stream_events("m", 0, false).len(), 3);
    }

    #[test]
    fn chat_completion_body_is_openai_shaped_and_escapes_the_model() {
        let body: serde_json::Value = serde_json::from_str(&chat_completion_body("x\"y")).unwrap();
        assert_eq!(body["model"], "x\"y");
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(body["choices"][0]["message"]["role"], "assistant");
        assert_eq!(body["choices"][0]["finish_reason"], "stop");
        assert_eq!(body["usage"]["total_tokens"], 21);
    }

    struct Answer {
        status: u16,
        headers: hyper::HeaderMap,
        body: Bytes,
    }

    async fn send(
        client: &Client<HttpConnector, Full<Bytes>>,
        method: &str,
        url: String,
        body: &str,
    ) -> Answer {
        let req = Request::builder()
            .method(method)
            .uri(url)
            .header("content-type", "application/json")
            .header("x-test", "yes")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let resp = client.request(req).await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body,
        }
    }

    fn http1() -> Client<HttpConnector, Full<Bytes>> {
        Client::builder(TokioExecutor::new()).build_http()
    }

    #[tokio::test]
    async fn answers_a_chat_completion_over_http1_and_records_it() {
        let up = MockUpstream::start(MockUpstreamConfig::default())
            .await
            .unwrap();
        assert_eq!(
            up.base_url(),
            format!("http://127.0.0.1:{}/v1", up.addr.port())
        );
        let req_body = r#"{"model":"gpt-x","messages":[{"role":"user","content":"hi"}]}"#;
        let url = format!("{}/chat/completions", up.base_url());
        let a = send(&http1(), "POST", url, req_body).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.headers["content-type"], "application/json");
        let expected = chat_completion_body("gpt-x");
        assert_eq!(a.headers["content-length"], expected.len().to_string());
        assert_eq!(a.body, expected.as_bytes());
        assert_eq!(up.request_count(), 1);
        let rec = &up.requests()[0];
        assert_eq!(rec.method, "POST");
        assert_eq!(rec.path, "/v1/chat/completions");
        assert_eq!(rec.header("X-Test"), Some("yes"));
        assert_eq!(rec.body, req_body.as_bytes());
    }

    #[tokio::test]
    async fn speaks_h2c_on_the_same_port() {
        let up = MockUpstream::start(MockUpstreamConfig::default())
            .await
            .unwrap();
        let h2: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build_http();
        let url = format!("http://{}/chat/completions", up.addr);
        let a = send(&h2, "POST", url, r#"{"model":"m"}"#).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.body, chat_completion_body("m").as_bytes());
        assert_eq!(up.requests()[0].path, "/chat/completions");
    }

    #[tokio::test]
    async fn streams_the_documented_events() {
        let up = MockUpstream::start(MockUpstreamConfig {
            stream_chunks: 4,
            chunk_interval: Duration::from_millis(1),
            ..MockUpstreamConfig::default()
        })
        .await
        .unwrap();
        let url = format!("{}/chat/completions", up.base_url());
        let body = r#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#;
        let a = send(&http1(), "POST", url, body).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.headers["content-type"], "text/event-stream");
        assert_eq!(a.headers["transfer-encoding"], "chunked");
        assert_eq!(a.body, stream_events("m", 4, true).concat().as_bytes());
    }

    #[tokio::test]
    async fn errors_unknown_paths_and_models() {
        let failing = MockUpstream::start(MockUpstreamConfig {
            status: 503,
            record: false,
            ..MockUpstreamConfig::default()
        })
        .await
        .unwrap();
        let client = http1();
        let url = format!("{}/chat/completions", failing.base_url());
        let a = send(&client, "POST", url, r#"{"model":"m"}"#).await;
        assert_eq!(a.status, 503);
        assert_eq!(a.headers["content-type"], "application/json");
        let err: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(err["error"]["type"], "server_error");
        assert_eq!(failing.request_count(), 0, "record: false keeps nothing");

        let up = MockUpstream::start(MockUpstreamConfig::default())
            .await
            .unwrap();
        let url = format!("{}/chat/completions", up.base_url());
        let a = send(&client, "POST", url, "{not json").await;
        assert_eq!(a.status, 400);
        let err: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        assert!(err["error"]["message"].is_string());

        let a = send(&client, "GET", format!("{}/nope", up.base_url()), "").await;
        assert_eq!(a.status, 404);

        let a = send(&client, "GET", format!("{}/models", up.base_url()), "").await;
        assert_eq!(a.status, 200);
        let list: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(list["object"], "list");
        assert_eq!(list["data"][0]["id"], "mock-model");
        assert_eq!(up.request_count(), 3);
    }
}
