//! Test harness: starts the real `switchyard` binary on ephemeral ports with a generated config,
//! and talks to it with hyper clients (HTTP/1.1 and h2c).
#![allow(dead_code)]

pub mod canned;
pub mod hooks;
pub mod redis_server;
pub mod stores;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port (bound then released), never the same one twice in this process.
/// The longest any harness request may take (tests that expect slower answers use their own
/// clients).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// A directory no earlier run left anything in: named by this process, a counter and the clock,
/// and emptied first. A machine's temp dir outlives test runs, so a name built from a port or a
/// pid alone can meet an earlier run's database (a key "already exists").
pub fn scratch_dir(prefix: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("{prefix}-{}-{n}-{nanos}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// An address nothing listens on (connections are refused).
pub fn refused_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let a = l.local_addr().expect("addr");
    drop(l);
    a
}

pub struct Gateway {
    child: Child,
    server_extra: String,
    pub port: u16,
    pub admin_port: u16,
    pub dir: PathBuf,
    client: Client<HttpConnector, Full<Bytes>>,
    h2: Client<HttpConnector, Full<Bytes>>,
}

pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Gateway {
    /// Starts the gateway with `body` (YAML without the `server` section) plus a server section
    /// on fresh ports. `server_extra` lines are added under `server:`.
    pub async fn start(body: &str, server_extra: &str) -> Gateway {
        // A port `free_port` handed out can be taken by another test's server (bound to port 0)
        // before the gateway binds it: the gateway then exits and that server would answer in
        // its place. Such a start is retried on fresh ports.
        for _ in 0..3 {
            if let Some(gw) = Gateway::start_once(body, server_extra).await {
                return gw;
            }
        }
        panic!("switchyard could not start on three pairs of fresh ports");
    }

    async fn start_once(body: &str, server_extra: &str) -> Option<Gateway> {
        let port = free_port();
        let admin_port = free_port();
        let dir = scratch_dir("switchyard-test");
        let conf = config_text(port, admin_port, &dir, server_extra, body);
        let conf_path = dir.join("switchyard.yaml");
        std::fs::write(&conf_path, conf).expect("write conf");
        let log = std::fs::File::create(dir.join("gateway.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .arg("run")
            .arg("--conf")
            .arg(&conf_path)
            .arg("--upgrade-sock")
            .arg(dir.join("upgrade.sock"))
            .stdout(Stdio::from(log.try_clone().expect("clone")))
            .stderr(Stdio::from(log))
            .env("RUST_LOG", "info")
            .spawn()
            .expect("spawn switchyard");
        let client = Client::builder(TokioExecutor::new()).build_http();
        let h2 = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build_http();
        let mut gw = Gateway {
            child,
            server_extra: server_extra.to_string(),
            port,
            admin_port,
            dir,
            client,
            h2,
        };
        gw.wait_ready().await.then_some(gw)
    }

    /// Waits until this gateway answers; false when the port answered for another server (every
    /// Switchyard answer names its config generation) while this process could not bind it.
    async fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("switchyard exited with {status}:\n{}", self.log());
            }
            if let Ok(r) = self
                .try_request(false, "GET", "/v1/health", None, &[])
                .await
            {
                if r.header("x-switchyard-config-generation").is_none() {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return false;
                }
                if matches!(r.status, 200 | 401 | 503) {
                    return true;
                }
            }
            if Instant::now() > deadline {
                panic!("switchyard did not become ready:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Replaces the config file's body (same server section); takes effect on SIGHUP.
    pub fn rewrite_config(&self, body: &str) {
        let text = config_text(
            self.port,
            self.admin_port,
            &self.dir,
            &self.server_extra,
            body,
        );
        let tmp = self.dir.join("switchyard.yaml.tmp");
        std::fs::write(&tmp, text).expect("write conf");
        std::fs::rename(&tmp, self.dir.join("switchyard.yaml")).expect("rename conf");
    }

    /// Writes raw text as the config file.
    pub fn write_raw_config(&self, text: &str) {
        std::fs::write(self.dir.join("switchyard.yaml"), text).expect("write conf");
    }

    /// Starts a second process that takes the listening sockets over (`--upgrade`); it serves
    /// once this one gets SIGQUIT. The caller owns (and must kill) the returned child.
    pub fn start_upgrade(&self) -> Child {
        let log = std::fs::File::create(self.dir.join("gateway-upgraded.log")).expect("log");
        Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .arg("run")
            .arg("--conf")
            .arg(self.dir.join("switchyard.yaml"))
            .arg("--upgrade")
            .arg("--upgrade-sock")
            .arg(self.dir.join("upgrade.sock"))
            .stdout(Stdio::from(log.try_clone().expect("clone")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn upgraded switchyard")
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args(["-s", sig, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -s {sig} failed");
    }

    /// Waits up to `limit` for the process to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The gateway process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The gateway's peak resident memory so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    /// The gateway's resident memory now (`VmRSS`), in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// A `/proc/PID/status` field in KiB (0 when unreadable).
    fn status_kib(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("gateway.log")).unwrap_or_default()
    }

    pub fn audit_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("audit.log")).unwrap_or_default()
    }

    /// A request to the admin listener.
    pub async fn admin(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Reply {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("http://127.0.0.1:{}{path}", self.admin_port));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default().to_string())))
            .expect("request");
        let resp = self.client.request(req).await.expect("admin request");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        }
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn try_request(
        &self,
        h2: bool,
        method: &str,
        path: &str,
        body: Option<Bytes>,
        headers: &[(&str, &str)],
    ) -> Result<Reply, String> {
        let mut req = http::Request::builder().method(method).uri(self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| e.to_string())?;
        let client = if h2 { &self.h2 } else { &self.client };
        // Bounded: a request that never completes fails the test instead of hanging the run.
        let exchange = async {
            let resp = client.request(req).await.map_err(|e| e.to_string())?;
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
            Ok::<_, String>((parts, body))
        };
        let (parts, body) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| {
                format!("{method} {path}: no complete answer within {REQUEST_TIMEOUT:?}")
            })??;
        Ok(Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }

    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        headers: &[(&str, &str)],
    ) -> Reply {
        self.try_request(
            false,
            method,
            path,
            body.map(Bytes::copy_from_slice),
            headers,
        )
        .await
        .unwrap_or_else(|e| panic!("request failed: {e}\n{}", self.log()))
    }

    pub async fn request_h2(&self, method: &str, path: &str, body: Option<&[u8]>) -> Reply {
        self.try_request(true, method, path, body.map(Bytes::copy_from_slice), &[])
            .await
            .unwrap_or_else(|e| panic!("h2 request failed: {e}\n{}", self.log()))
    }

    /// A client sharing nothing with the harness's (for load loops).
    pub fn client(&self) -> Client<HttpConnector, Full<Bytes>> {
        self.client.clone()
    }

    pub async fn post_json(&self, path: &str, body: &[u8]) -> Reply {
        self.request(
            "POST",
            path,
            Some(body),
            &[
                ("content-type", "application/json"),
                ("authorization", "Bearer sk-caller-key"),
            ],
        )
        .await
    }

    /// Starts a request and returns the streaming response (header read, body not yet).
    pub async fn open_stream(&self, body: &[u8]) -> http::Response<Incoming> {
        let req = http::Request::builder()
            .method("POST")
            .uri(self.url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::copy_from_slice(body)))
            .expect("request");
        self.client
            .request(req)
            .await
            .unwrap_or_else(|e| panic!("stream request failed: {e}\n{}", self.log()))
    }

    pub async fn metrics(&self) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.admin_port);
        let req = http::Request::builder()
            .uri(url)
            .body(Full::new(Bytes::new()))
            .expect("request");
        let resp = self.client.request(req).await.expect("metrics");
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        String::from_utf8_lossy(&body).into_owned()
    }

    /// Waits (up to 3 s) until a metric sample reaches `want`: metrics and access-log lines are
    /// recorded in the logging phase, which can finish just after the caller got its last byte.
    pub async fn metric_eventually(&self, series: &str, want: f64) -> Option<f64> {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let v = self.metric(series).await;
            if v.is_some_and(|v| v >= want) || Instant::now() > deadline {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (up to 3 s) for an access-log line matching `pred`.
    pub async fn access_line(
        &self,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let found = self
                .access_log()
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|l| pred(l));
            if found.is_some() || Instant::now() > deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The value of one metric sample line (`name{labels}`), if present.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let text = self.metrics().await;
        text.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }
}

/// The config file; `{SELF_PORT}` in `body` becomes the gateway's own port (mesh loop tests).
fn config_text(
    port: u16,
    admin_port: u16,
    dir: &std::path::Path,
    server_extra: &str,
    body: &str,
) -> String {
    let body = body.replace("{SELF_PORT}", &port.to_string());
    format!(
        "server:\n  listen: [\"127.0.0.1:{port}\"]\n  admin_listen: \"127.0.0.1:{admin_port}\"\n  threads: 1\n  grace_period: 5s\n{server_extra}\n{body}\ntelemetry:\n  access_log: {}\n  audit_log: {}\n",
        dir.join("access.log").display(),
        dir.join("audit.log").display()
    )
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Reads the next body frame with data, with a timeout; `None` at end of body.
pub async fn next_data(body: &mut Incoming, timeout: Duration) -> Option<Bytes> {
    loop {
        let frame = tokio::time::timeout(timeout, body.frame())
            .await
            .expect("timed out waiting for a stream frame")?;
        let frame = frame.expect("frame error");
        if let Ok(data) = frame.into_data() {
            if !data.is_empty() {
                return Some(data);
            }
        }
    }
}

/// A provider block for an OpenAI-compatible upstream.
pub fn openai_provider(name: &str, base_url: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    kind: openai\n    base_url: {base_url}\n    api_key: sk-{name}-secret\n{extra}"
    )
}
