//! A small HTTP(S) client for the identity provider (JWKS, token introspection) on Pingora's
//! connector: resolves the host without blocking a worker, bounds the answer's size and the time.

use crate::config::HttpEndpoint;
use bytes::{Bytes, BytesMut};
use pingora_core::connectors::http::Connector;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_http::RequestHeader;
use std::time::Duration;

const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// Sends one request and returns the status and body.
pub async fn call(
    connector: &Connector,
    ep: &HttpEndpoint,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Bytes,
    timeout: Duration,
) -> Result<(u16, Bytes), String> {
    let target = Target { ep, proxy: None };
    call_to(connector, target, method, path, headers, body, timeout).await
}

/// Where a request goes: the endpoint, and the HTTP CONNECT proxy to reach it through (a
/// provider's `proxy`, for its token fetches and health probes).
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub ep: &'a HttpEndpoint,
    pub proxy: Option<&'a crate::cloud::egress::EgressProxy>,
}

/// [`call`] to a [`Target`].
pub async fn call_to(
    connector: &Connector,
    target: Target<'_>,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Bytes,
    timeout: Duration,
) -> Result<(u16, Bytes), String> {
    let exchange = async {
        let ep = target.ep;
        let addr = match target.proxy {
            // The proxy resolves the host; the peer's address only keys its connection pool.
            Some(_) => std::net::SocketAddr::from(([127, 0, 0, 1], ep.port)),
            None => tokio::net::lookup_host((ep.host.as_str(), ep.port))
                .await
                .map_err(|e| format!("cannot resolve {}: {e}", ep.host))?
                .next()
                .ok_or_else(|| format!("{} resolved to no address", ep.host))?,
        };
        let mut peer = HttpPeer::new(addr, ep.tls, ep.sni());
        peer.options.connection_timeout = Some(timeout);
        peer.options.read_timeout = Some(timeout);
        if let Some(proxy) = target.proxy {
            proxy.apply(&mut peer, &ep.host, ep.port)?;
        }
        // Boxed so the ~9 KB connect future is not inlined into every request's authentication
        // future (this path runs only on a JWKS refresh or a token introspection).
        let (mut session, _) = Box::pin(connector.get_http_session(&peer))
            .await
            .map_err(|e| format!("connecting: {}", e.etype().as_str()))?;
        let err = |e: Box<pingora_error::Error>| e.etype().as_str().to_string();
        let mut req =
            RequestHeader::build(method, path.as_bytes(), Some(4 + headers.len())).map_err(err)?;
        req.insert_header("host", &ep.host_header).map_err(err)?;
        req.insert_header(
            "user-agent",
            concat!("switchyard/", env!("CARGO_PKG_VERSION")),
        )
        .map_err(err)?;
        req.insert_header("content-length", body.len().to_string())
            .map_err(err)?;
        for (k, v) in headers {
            req.insert_header(k.to_string(), v).map_err(err)?;
        }
        session
            .write_request_header(Box::new(req))
            .await
            .map_err(err)?;
        if !body.is_empty() {
            session.write_request_body(body, true).await.map_err(err)?;
        }
        session.finish_request_body().await.map_err(err)?;
        session.read_response_header().await.map_err(err)?;
        let status = session
            .response_header()
            .map(|h| h.status.as_u16())
            .unwrap_or(0);
        let mut answer = BytesMut::new();
        while let Some(chunk) = session.read_response_body().await.map_err(err)? {
            if answer.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err("answer too large".into());
            }
            answer.extend_from_slice(&chunk);
        }
        Ok::<_, String>((status, answer.freeze()))
    };
    pingora_timeout::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("timed out after {timeout:?}"))?
}
