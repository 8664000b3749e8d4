//! A local upstream answering every request with one canned status, content type and body, and
//! keeping each POST's path and body; and the SSE helpers tests build canned streams with and read
//! answers by.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

pub struct Canned {
    pub base: String,
    seen: Arc<Mutex<Vec<(String, Bytes)>>>,
}

impl Canned {
    pub async fn start(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Canned {
        Canned::start_with_headers(status, content_type, body, &[]).await
    }

    /// [`Canned::start`], the answer also carrying `headers` (a name may come more than once).
    pub async fn start_with_headers(
        status: u16,
        content_type: &'static str,
        body: impl Into<Bytes>,
        headers: &'static [(&'static str, &'static str)],
    ) -> Canned {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen: Arc<Mutex<Vec<(String, Bytes)>>> = Arc::default();
        let (keep, body) = (seen.clone(), body.into());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (seen, body) = (keep.clone(), body.clone());
                let svc = service_fn(move |req: hyper::Request<Incoming>| {
                    let (seen, body) = (seen.clone(), body.clone());
                    async move {
                        let path = req.uri().to_string();
                        let post = req.method() == hyper::Method::POST;
                        let sent = req.into_body().collect().await.map(|b| b.to_bytes());
                        if post {
                            seen.lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push((path, sent.unwrap_or_default()));
                        }
                        let mut resp = hyper::Response::builder()
                            .status(status)
                            .header("content-type", content_type);
                        for (name, value) in headers {
                            resp = resp.header(*name, *value);
                        }
                        let resp = resp.body(Full::new(body)).expect("response");
                        Ok::<_, Infallible>(resp)
                    }
                });
                tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(tcp), svc));
            }
        });
        Canned {
            base: format!("http://127.0.0.1:{}", addr.port()),
            seen,
        }
    }

    /// Each POST's path and JSON body (`null` when not JSON).
    pub fn requests(&self) -> Vec<(String, Value)> {
        self.raw()
            .into_iter()
            .map(|(p, b)| (p, serde_json::from_slice(&b).unwrap_or(Value::Null)))
            .collect()
    }

    /// Each POST's path and body bytes.
    pub fn raw(&self) -> Vec<(String, Bytes)> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A stream of named events (`event: <type>` then `data: <json>`), as OpenAI's Responses API and
/// Anthropic's Messages API send them, from each event's JSON (its `type` names it).
pub fn sse_stream(events: &[&str]) -> String {
    events
        .iter()
        .map(|d| {
            let v: Value = serde_json::from_str(d).expect("event JSON");
            format!("event: {}\ndata: {d}\n\n", v["type"].as_str().unwrap_or(""))
        })
        .collect()
}

/// The `(event, data)` pairs of an SSE body (`event` empty when an event has no name).
pub fn sse_events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let event = e
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or("");
            let data = e
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap_or("null");
            let v: Value = serde_json::from_str(data).unwrap_or_else(|err| panic!("{err}: {data}"));
            (event.to_string(), v)
        })
        .collect()
}
