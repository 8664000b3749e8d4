//! `bare-hop`: the baseline for the load bench — the thinnest Pingora proxy there is. No body
//! parsing, no header changes: whatever Switchyard costs beyond this is Switchyard's own.
//!
//! With `--llm` it is instead the least any metering LLM gateway on Pingora must do, as a floor
//! to weigh Switchyard's own work against: the request body is held until it is whole and its
//! `model` and `stream` read (serde, as a gateway routing by model must), and each answer chunk
//! is searched for `"usage":`, whose object is parsed (as metering must). Nothing is routed,
//! authenticated, counted or logged.
//!
//! bare-hop --listen 127.0.0.1:18001 --upstream 127.0.0.1:18000 [--threads 1] [--llm]

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use clap::Parser;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::Server;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_proxy::{ProxyHttp, Session};
use std::net::SocketAddr;

/// The allocator Switchyard's binary uses, so the hop is a like-for-like ceiling.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:18001")]
    listen: String,
    #[arg(long, default_value = "127.0.0.1:18000")]
    upstream: SocketAddr,
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Read the request's model and the answer's usage (see the module doc).
    #[arg(long)]
    llm: bool,
}

struct BareHop {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for BareHop {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut (),
    ) -> pingora_core::Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

/// `--llm`: the same hop, reading what routing and metering need (a type of its own, so the
/// plain hop stays exactly the thinnest proxy).
struct LlmHop {
    upstream: SocketAddr,
}

/// What routing by model needs of a chat request.
#[derive(serde::Deserialize)]
struct Inspected<'a> {
    #[serde(borrow)]
    model: std::borrow::Cow<'a, str>,
    #[serde(default)]
    stream: Option<bool>,
}

/// What metering needs of an answer.
#[derive(serde::Deserialize)]
struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
}

/// The request body held until it is whole (`--llm`), and the tokens the answer reported.
#[derive(Default)]
struct Held {
    body: BytesMut,
    tokens: u64,
}

#[async_trait]
impl ProxyHttp for LlmHop {
    type CTX = Held;

    fn new_ctx(&self) -> Held {
        Held::default()
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        held: &mut Held,
    ) -> pingora_core::Result<()> {
        if let Some(chunk) = body.take() {
            held.body.extend_from_slice(&chunk);
        }
        if end_of_stream {
            let whole = held.body.split().freeze();
            // A body that is not a chat request is the caller's error: 400.
            let inspected: Inspected<'_> = serde_json::from_slice(&whole).map_err(|e| {
                pingora_core::Error::explain(
                    pingora_core::ErrorType::HTTPStatus(400),
                    e.to_string(),
                )
            })?;
            std::hint::black_box((&inspected.model, inspected.stream));
            *body = Some(whole);
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        held: &mut Held,
    ) -> pingora_core::Result<Option<std::time::Duration>> {
        if let Some(chunk) = body.as_ref() {
            if let Some(at) = memchr::memmem::find(chunk, b"\"usage\":") {
                let mut de = serde_json::Deserializer::from_slice(&chunk[at + 8..]);
                if let Ok(Some(u)) = <Option<Usage> as serde::Deserialize>::deserialize(&mut de) {
                    held.tokens += u.prompt_tokens + u.completion_tokens;
                }
            }
        }
        Ok(None)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _held: &mut Held,
    ) -> pingora_core::Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn main() {
    let args = Args::parse();
    let pid = std::process::id();
    let tmp = std::env::temp_dir();
    let conf = ServerConf {
        threads: args.threads.max(1),
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        pid_file: tmp
            .join(format!("bare-hop-{pid}.pid"))
            .display()
            .to_string(),
        upgrade_sock: tmp
            .join(format!("bare-hop-{pid}.sock"))
            .display()
            .to_string(),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let upstream = args.upstream;
    if args.llm {
        let mut svc = pingora_proxy::http_proxy_service(&server.configuration, LlmHop { upstream });
        svc.add_tcp(&args.listen);
        server.add_service(svc);
    } else {
        let mut svc =
            pingora_proxy::http_proxy_service(&server.configuration, BareHop { upstream });
        svc.add_tcp(&args.listen);
        server.add_service(svc);
    }
    server.run_forever();
}
