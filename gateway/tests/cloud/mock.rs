//! A recording HTTP/1.1 mock for the cloud tests: every request is kept (method, target,
//! headers, body) and answered by the test's handler, which checks credentials the way the
//! real service would.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

/// One request as the mock received it.
#[derive(Debug, Clone)]
pub struct Recv {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Recv {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// The mock's answer to one request.
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

impl Answer {
    pub fn json(status: u16, v: serde_json::Value) -> Answer {
        Answer {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: Bytes::from(v.to_string()),
        }
    }

    pub fn sse(events: &[serde_json::Value], done: bool) -> Answer {
        let mut body = String::new();
        for e in events {
            body.push_str(&format!("data: {e}\n\n"));
        }
        if done {
            body.push_str("data: [DONE]\n\n");
        }
        Answer {
            status: 200,
            content_type: "text/event-stream",
            headers: Vec::new(),
            body: Bytes::from(body),
        }
    }
}

pub type Handler = Arc<dyn Fn(&Recv) -> Answer + Send + Sync>;

pub struct Mock {
    pub base: String,
    pub port: u16,
    seen: Arc<Mutex<Vec<Recv>>>,
}

impl Mock {
    pub async fn start(handler: Handler) -> Mock {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen: Arc<Mutex<Vec<Recv>>> = Arc::default();
        let keep = seen.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (seen, handler) = (keep.clone(), handler.clone());
                let svc = service_fn(move |req: hyper::Request<Incoming>| {
                    let (seen, handler) = (seen.clone(), handler.clone());
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes());
                        let recv = Recv {
                            method: parts.method.to_string(),
                            target: parts
                                .uri
                                .path_and_query()
                                .map(|p| p.to_string())
                                .unwrap_or_default(),
                            headers: parts.headers,
                            body: body.unwrap_or_default(),
                        };
                        let answer = handler(&recv);
                        seen.lock().unwrap_or_else(|e| e.into_inner()).push(recv);
                        let mut resp = hyper::Response::builder()
                            .status(answer.status)
                            .header("content-type", answer.content_type);
                        for (k, v) in answer.headers {
                            resp = resp.header(k, v);
                        }
                        Ok::<_, Infallible>(resp.body(Full::new(answer.body)).expect("response"))
                    }
                });
                tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(tcp), svc));
            }
        });
        Mock {
            base: format!("http://127.0.0.1:{port}"),
            port,
            seen,
        }
    }

    pub fn requests(&self) -> Vec<Recv> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Decodes `application/x-www-form-urlencoded`.
pub fn form(body: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (dec(k), dec(v))
        })
        .collect()
}

/// The `data:` payloads of an SSE body, as JSON (`[DONE]` skipped).
pub fn sse_data(body: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(body)
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect()
}
