//! A webhook/collector receiver for tests: records every request (headers the gateway signs
//! with, body, parsed JSON) and answers a status the test can change.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct Delivery {
    pub signature: String,
    pub header_id: String,
    pub body: Vec<u8>,
    pub event: Value,
    pub answered: u16,
    pub path: String,
    pub authorization: String,
}

/// A webhook receiver that records every POST and answers `status` (changeable).
pub struct Receiver {
    pub url: String,
    pub status: Arc<AtomicU16>,
    seen: Arc<Mutex<Vec<Delivery>>>,
}

impl Receiver {
    pub async fn start(status: u16) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let status = Arc::new(AtomicU16::new(status));
        let seen: Arc<Mutex<Vec<Delivery>>> = Arc::default();
        let (st, keep) = (status.clone(), seen.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (st, seen) = (st.clone(), keep.clone());
                let svc = service_fn(move |req: hyper::Request<Incoming>| {
                    let (st, seen) = (st.clone(), seen.clone());
                    async move {
                        let h = |n: &str| {
                            req.headers()
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_string()
                        };
                        let (signature, header_id) =
                            (h("x-switchyard-signature"), h("x-switchyard-event-id"));
                        let authorization = h("authorization");
                        let path = req.uri().path().to_string();
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes().to_vec())
                            .unwrap_or_default();
                        let answered = st.load(Ordering::SeqCst);
                        seen.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(Delivery {
                                signature,
                                header_id,
                                event: serde_json::from_slice(&body).unwrap_or(Value::Null),
                                body,
                                answered,
                                path,
                                authorization,
                            });
                        Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .status(answered)
                                .body(Full::new(Bytes::new()))
                                .expect("response"),
                        )
                    }
                });
                tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(tcp), svc));
            }
        });
        Receiver {
            url: format!("http://127.0.0.1:{}/hook", addr.port()),
            status,
            seen,
        }
    }

    pub fn seen(&self) -> Vec<Delivery> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub async fn wait_for(&self, what: &str, ok: impl Fn(&[Delivery]) -> bool) -> Vec<Delivery> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let seen = self.seen();
            if ok(&seen) {
                return seen;
            }
            assert!(Instant::now() < deadline, "never saw {what}: {seen:#?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
