//! `passthrough[]` end to end: the real gateway in front of a local upstream that records what
//! it received. Bodies byte for byte (a multipart upload, a 200 MB upload streamed with bounded
//! memory, an SSE answer relayed event by event), the query kept, the caller's credential
//! swapped for the provider's, per-request prices in budgets and the ledger, and the routes
//! that are not configured or not authenticated refused.

mod common;

use common::*;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Notify;

const KEY: &str = "sk-caller-key-0123456789";
const PROVIDER_KEY: &str = "sk-up-provider-secret";
const ANTHROPIC_KEY: &str = "sk-ant-provider-secret";

/// Bodies up to this size are kept whole by the recording upstream (larger ones: length, hash).
const KEEP: usize = 16 * 1024 * 1024;

/// One request as the upstream received it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body_len: u64,
    body_hash: u64,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// FNV-1a over a byte stream, fed piece by piece.
fn fnv(mut h: u64, data: &[u8]) -> u64 {
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// A raw HTTP/1.1 upstream: records each request; `/stream/` paths answer two SSE events with a
/// pause between them (until `release` is notified), others a small JSON body.
struct Upstream {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    release: Arc<Notify>,
}

impl Upstream {
    async fn start() -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let release = Arc::new(Notify::new());
        let (s, r) = (seen.clone(), release.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (s, r) = (s.clone(), r.clone());
                tokio::spawn(async move {
                    let mut stream = BufReader::new(stream);
                    while let Some(req) = read_request(&mut stream).await {
                        let streamed = req.target.contains("/stream/");
                        let len = req.body_len;
                        s.lock().unwrap().push(req);
                        if !answer(stream.get_mut(), streamed, len, &r).await {
                            return;
                        }
                    }
                });
            }
        });
        Upstream {
            port,
            seen,
            release,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn last(&self) -> Seen {
        self.seen().pop().expect("the upstream saw no request")
    }
}

async fn read_request(s: &mut BufReader<TcpStream>) -> Option<Seen> {
    let mut line = String::new();
    if s.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        s.read_line(&mut h).await.ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let find = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let mut seen = Seen {
        method,
        target,
        body_len: 0,
        body_hash: FNV_START,
        body: Vec::new(),
        headers: headers.clone(),
    };
    let take = |seen: &mut Seen, data: &[u8]| {
        seen.body_len += data.len() as u64;
        seen.body_hash = fnv(seen.body_hash, data);
        if seen.body.len() + data.len() <= KEEP {
            seen.body.extend_from_slice(data);
        }
    };
    let mut buf = vec![0u8; 64 * 1024];
    if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let mut size = String::new();
            s.read_line(&mut size).await.ok()?;
            let n = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut left = n;
            while left > 0 {
                let want = left.min(buf.len());
                let k = s.read(&mut buf[..want]).await.ok()?;
                if k == 0 {
                    return None;
                }
                take(&mut seen, &buf[..k]);
                left -= k;
            }
            let mut crlf = String::new();
            s.read_line(&mut crlf).await.ok()?;
            if n == 0 {
                break;
            }
        }
    } else {
        let mut left: u64 = find("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while left > 0 {
            let want = (left as usize).min(buf.len());
            let k = s.read(&mut buf[..want]).await.ok()?;
            if k == 0 {
                return None;
            }
            take(&mut seen, &buf[..k]);
            left -= k as u64;
        }
    }
    Some(seen)
}

/// Writes the answer; `false` when the connection is gone.
async fn answer(s: &mut TcpStream, streamed: bool, len: u64, release: &Notify) -> bool {
    if streamed {
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
        let first = b"data: {\"n\":1}\n\n";
        let second = b"data: {\"n\":2}\n\ndata: [DONE]\n\n";
        let chunk = |d: &[u8]| {
            let mut out = format!("{:x}\r\n", d.len()).into_bytes();
            out.extend_from_slice(d);
            out.extend_from_slice(b"\r\n");
            out
        };
        if s.write_all(head.as_bytes()).await.is_err() || s.write_all(&chunk(first)).await.is_err()
        {
            return false;
        }
        // The rest waits until the caller has the first event (or 10 s, then the test fails).
        let _ = tokio::time::timeout(Duration::from_secs(10), release.notified()).await;
        let mut rest = chunk(second);
        rest.extend_from_slice(b"0\r\n\r\n");
        return s.write_all(&rest).await.is_ok();
    }
    let body = format!("{{\"object\":\"file\",\"bytes\":{len}}}");
    let resp = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-upstream-only: yes\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(resp.as_bytes()).await.is_ok()
}

fn config(up: &Upstream, dir: &std::path::Path, extra: &str) -> String {
    format!(
        "providers:
  - {{ name: up, kind: openai, base_url: \"http://127.0.0.1:{p}/v1\", api_key: {PROVIDER_KEY} }}
  - {{ name: claude, kind: anthropic, base_url: \"http://127.0.0.1:{p}\", api_key: {ANTHROPIC_KEY} }}
  - {{ name: sim, kind: mock }}
models:
  - name: chat
    deployments: [{{ provider: sim, model: m }}]
passthrough:
  - {{ path: /v1/files/**, provider: up }}
  - {{ path: /v1/images/*, provider: up, price: {{ per_request: 0.04 }} }}
  - {{ path: /v1/stream/*, provider: up }}
  - {{ path: /v1/messages/batches/**, provider: claude }}
auth:
  api_keys:
    - {{ name: caller, key: {KEY}, team: t1 }}
store: {{ kind: sqlite, path: \"{db}\", flush_interval: 50ms }}
{extra}",
        p = up.port,
        db = dir.join("ledger.db").display(),
    )
}

async fn start(extra: &str) -> (Gateway, Upstream, std::path::PathBuf) {
    let up = Upstream::start().await;
    let dir = scratch_dir("switchyard-passthrough");
    let gw = Gateway::start(&config(&up, &dir, extra), "").await;
    (gw, up, dir)
}

fn bearer() -> String {
    format!("Bearer {KEY}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multipart_upload_reaches_the_provider_byte_for_byte_with_its_key() {
    let (gw, up, _dir) = start("").await;
    let boundary = "----switchyard7MA4YWxkTrZu0gW";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"data.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend((0..=255u8).cycle().take(300_000));
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let r = gw
        .request(
            "POST",
            "/v1/files?purpose=batch&name=a%20b",
            Some(&body),
            &[
                ("authorization", &bearer()),
                ("x-api-key", "caller-second-credential"),
                ("api-key", "caller-azure-style-credential"),
                ("content-type", &content_type),
                ("openai-organization", "org-caller"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), gw.log());
    assert_eq!(r.json()["bytes"], body.len());
    // The provider's own headers come back, with the gateway's request id.
    assert_eq!(r.header("x-upstream-only"), Some("yes"));
    assert!(r.header("x-request-id").is_some_and(|v| !v.is_empty()));
    assert_eq!(r.header("x-switchyard-provider"), Some("up"));
    let seen = up.last();
    assert_eq!(seen.method, "POST");
    // The base URL's /v1 is not doubled, and the query arrives as sent.
    assert_eq!(seen.target, "/v1/files?purpose=batch&name=a%20b");
    assert!(seen.body == body, "the upstream got a different body");
    assert_eq!(seen.header("content-type"), Some(content_type.as_str()));
    assert_eq!(seen.header("openai-organization"), Some("org-caller"));
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {PROVIDER_KEY}").as_str())
    );
    assert_eq!(seen.header("x-api-key"), None);
    assert_eq!(seen.header("api-key"), None);
    assert_eq!(
        seen.header("host"),
        Some(format!("127.0.0.1:{}", up.port).as_str())
    );
    assert_eq!(seen.header("x-switchyard-hops"), Some("1"));
    let all = format!("{:?}", up.seen());
    assert!(!all.contains(KEY), "the caller's key went upstream");
    // Logged as a passthrough request served by `up`, at no cost (no price configured).
    let line = gw
        .access_line(|l| l["route"] == "passthrough")
        .await
        .expect("access line");
    assert_eq!(line["provider"], "up", "{line}");
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["path"], "/v1/files", "{line}");
    assert!(!gw.access_log().contains(KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anthropic_provider_gets_its_key_and_the_callers_version() {
    let (gw, up, _dir) = start("").await;
    let r = gw
        .request(
            "GET",
            "/v1/messages/batches/msgbatch_1/results",
            None,
            &[
                ("x-api-key", KEY),
                ("anthropic-version", "2023-01-01"),
                ("anthropic-beta", "message-batches-2024-09-24"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.target, "/v1/messages/batches/msgbatch_1/results");
    assert_eq!(seen.header("x-api-key"), Some(ANTHROPIC_KEY));
    assert_eq!(seen.header("anthropic-version"), Some("2023-01-01"));
    assert_eq!(
        seen.header("anthropic-beta"),
        Some("message-batches-2024-09-24")
    );
    assert_eq!(seen.header("authorization"), None);
    // Without the caller's version, the provider's default is sent.
    let r = gw
        .request(
            "GET",
            "/v1/messages/batches",
            None,
            &[("authorization", &bearer())],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(seen.header("x-api-key"), Some(ANTHROPIC_KEY));
    assert_eq!(seen.header("authorization"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sse_answer_is_relayed_event_by_event() {
    let (gw, up, _dir) = start("").await;
    let req = http::Request::builder()
        .method("POST")
        .uri(gw.url("/v1/stream/events?x=1"))
        .header("authorization", bearer())
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"{\"stream\":true}",
        )))
        .expect("request");
    let started = Instant::now();
    let resp = tokio::time::timeout(Duration::from_secs(10), gw.client().request(req))
        .await
        .expect("the answer's head came")
        .expect("response");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    let mut body = resp.into_body();
    // The first event arrives while the upstream still holds the rest back.
    let first = next_data(&mut body, Duration::from_secs(5))
        .await
        .expect("first event");
    assert_eq!(&first[..], b"data: {\"n\":1}\n\n");
    assert!(started.elapsed() < Duration::from_secs(5));
    up.release.notify_one();
    let mut rest = Vec::new();
    while let Some(d) = next_data(&mut body, Duration::from_secs(5)).await {
        rest.extend_from_slice(&d);
    }
    assert_eq!(&rest[..], b"data: {\"n\":2}\n\ndata: [DONE]\n\n");
    let seen = up.last();
    assert_eq!(seen.target, "/v1/stream/events?x=1");
    assert_eq!(seen.body, b"{\"stream\":true}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mb_upload_streams_through_with_bounded_memory() {
    const MIB: usize = 1024 * 1024;
    const TOTAL: usize = 200 * MIB;
    let (gw, up, _dir) = start("").await;
    // Let the gateway settle (its first requests allocate pools and caches).
    let warm = gw
        .request("GET", "/v1/files", None, &[("authorization", &bearer())])
        .await;
    assert_eq!(warm.status, 200);
    let rss_before = gw.peak_rss_kib();
    let mut s = TcpStream::connect(("127.0.0.1", gw.port))
        .await
        .expect("connect");
    let head = format!(
        "POST /v1/files/upload HTTP/1.1\r\nhost: gw\r\nauthorization: {}\r\ncontent-type: application/octet-stream\r\ncontent-length: {TOTAL}\r\n\r\n",
        bearer()
    );
    s.write_all(head.as_bytes()).await.expect("head");
    let piece: Vec<u8> = (0..MIB).map(|i| (i.wrapping_mul(31) + 7) as u8).collect();
    let mut hash = FNV_START;
    let started = Instant::now();
    for _ in 0..TOTAL / MIB {
        s.write_all(&piece).await.expect("upload");
        hash = fnv(hash, &piece);
    }
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(120), async {
        let mut buf = [0u8; 4096];
        loop {
            let n = s.read(&mut buf).await.expect("read");
            answer.extend_from_slice(&buf[..n]);
            if n == 0 || answer.ends_with(b"}") {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer after {:?}", started.elapsed());
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}\n{}", gw.log());
    assert!(answer.contains(&format!("\"bytes\":{TOTAL}")), "{answer}");
    let seen = up.last();
    assert_eq!(seen.target, "/v1/files/upload");
    assert_eq!(seen.body_len, TOTAL as u64);
    assert_eq!(seen.body_hash, hash, "the upstream got different bytes");
    let grown = gw.peak_rss_kib().saturating_sub(rss_before);
    eprintln!(
        "200 MB upload: peak RSS grew by {grown} KiB in {:?}",
        started.elapsed()
    );
    assert!(
        grown < 64 * 1024,
        "peak RSS grew by {grown} KiB for a {TOTAL}-byte upload"
    );
}

fn ledger_row(db: &std::path::Path, request_id: &str) -> Option<(i64, Option<String>, i64)> {
    let conn = rusqlite::Connection::open(db).ok()?;
    conn.query_row(
        "SELECT cost_nanos, provider, status FROM ledger WHERE request_id = ?1",
        [request_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .ok()
}

async fn ledger_row_eventually(
    db: &std::path::Path,
    request_id: &str,
) -> (i64, Option<String>, i64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(row) = ledger_row(db, request_id) {
            return row;
        }
        assert!(Instant::now() < deadline, "no ledger row for {request_id}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_request_price_is_reserved_charged_and_refused_when_spent() {
    let (gw, up, dir) =
        start("budgets:\n  - { scope: key:caller, limit: 0.10, period: total }\n").await;
    let db = dir.join("ledger.db");
    let auth = bearer();
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let ask = br#"{"prompt":"a lighthouse","size":"256x256"}"#;
    for _ in 0..2 {
        let r = gw
            .request("POST", "/v1/images/generations", Some(ask), &headers)
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let id = r.header("x-request-id").expect("request id").to_string();
        let (cost, provider, status) = ledger_row_eventually(&db, &id).await;
        assert_eq!(cost, 40_000_000, "$0.04 in nano-dollars");
        assert_eq!(provider.as_deref(), Some("up"));
        assert_eq!(status, 200);
    }
    // $0.08 spent of $0.10: the next $0.04 does not fit, and the provider never sees it.
    let r = gw
        .request("POST", "/v1/images/generations", Some(ask), &headers)
        .await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "budget_exceeded");
    let images = up
        .seen()
        .iter()
        .filter(|s| s.target == "/v1/images/generations")
        .count();
    assert_eq!(images, 2);
    // A route without a price leaves a row at no cost.
    let r = gw
        .request("GET", "/v1/files/file-1", None, &[("authorization", &auth)])
        .await;
    assert_eq!(r.status, 200);
    let id = r.header("x-request-id").expect("request id").to_string();
    let (cost, provider, _) = ledger_row_eventually(&db, &id).await;
    assert_eq!((cost, provider.as_deref()), (0, Some("up")));
    let line = gw
        .access_line(|l| l["route"] == "passthrough" && l["cost_usd"] == 0.04)
        .await
        .expect("access line with the price");
    assert_eq!(line["provider"], "up");
    let served = gw
        .metric_eventually(
            "switchyard_passthrough_requests_total{path=\"/v1/images/*\",provider=\"up\",status=\"2xx\"}",
            2.0,
        )
        .await;
    assert_eq!(served, Some(2.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfigured_and_unauthenticated_requests_never_reach_the_provider() {
    let (gw, up, _dir) = start("").await;
    let auth = bearer();
    for path in [
        "/v1/assistants",
        "/v1/images/a/b",
        "/v1/files/../assistants",
        "/v1/files/%2e%2e/assistants",
    ] {
        let r = gw
            .request("GET", path, None, &[("authorization", &auth)])
            .await;
        assert_eq!(r.status, 404, "{path}: {}", r.text());
        assert_eq!(r.json()["error"]["code"], "unknown_url", "{path}");
    }
    let r = gw.request("POST", "/v1/files", Some(b"x"), &[]).await;
    assert_eq!(r.status, 401, "{}", r.text());
    let r = gw
        .request(
            "POST",
            "/v1/files",
            Some(b"x"),
            &[("authorization", "Bearer sk-not-a-key-at-all")],
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.text());
    // An Anthropic route answers in Anthropic's error format.
    let r = gw.request("GET", "/v1/messages/batches", None, &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["type"], "error", "{}", r.text());
    assert!(up.seen().is_empty(), "{:?}", up.seen());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_provider_is_a_502_in_the_callers_format() {
    let dead = refused_addr();
    let conf = format!(
        "providers:
  - {{ name: gone, kind: openai, base_url: \"http://{dead}/v1\", api_key: sk-x }}
  - {{ name: sim, kind: mock }}
models:
  - name: chat
    deployments: [{{ provider: sim, model: m }}]
passthrough:
  - {{ path: /v1/files/**, provider: gone, price: {{ per_request: 1 }} }}
budgets:
  - {{ scope: global, limit: 1.5, period: total }}
"
    );
    let gw = Gateway::start(&conf, "").await;
    for _ in 0..2 {
        let r = gw.request("POST", "/v1/files", Some(b"abc"), &[]).await;
        assert_eq!(r.status, 502, "{}", r.text());
        assert_eq!(r.json()["error"]["code"], "upstream_unavailable");
        assert_eq!(r.json()["error"]["type"], "upstream_error");
    }
    // The second $1 reservation fitted the $1.50 budget (a 502, not a 429): the first one was
    // released uncharged.
}
