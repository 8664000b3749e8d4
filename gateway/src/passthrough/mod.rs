//! Pass-through routes (`passthrough[]`): API paths the gateway does not interpret (files,
//! images, audio, batches...) forwarded to one provider with method, headers, body and answer
//! left as they are. Owns matching a request path against the compiled globs ([`glob`]), the
//! upstream path (base URL + request path, the version segment not doubled), the upstream head
//! (the caller's credential out, the provider's in) and the per-route runtime handles (provider,
//! metrics). It must not read or rewrite a body: bodies stream through Pingora's own proxy
//! phases (wired in `proxy::passthrough`), chunk by chunk, never buffered.

pub mod glob;

pub use glob::PathGlob;

use crate::config::{Config, HttpEndpoint, PassthroughRoute, ProviderKind, Secret};
use crate::ops::telemetry::{Metrics, PassthroughMetrics};
use crate::proxy::context::RequestCtx;
use crate::proxy::response_headers as rh;
use crate::routing::state::ProviderHandle;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_http::RequestHeader;
use std::sync::Arc;
use switchyard_adapters::canonical::Dialect;
use switchyard_adapters::providers;

/// Headers that carry a caller's credential: never sent upstream.
const CALLER_CREDENTIALS: [&str; 5] = [
    "authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "proxy-authorization",
];

/// How long an idle pooled pass-through connection is kept.
const POOL_IDLE: std::time::Duration = std::time::Duration::from_secs(30);

/// The route a request matched, and what its upstream answered.
#[derive(Debug, Clone, Copy)]
pub struct Hit {
    /// Index into `config.passthrough` (and [`Routes`]).
    pub index: usize,
    /// The upstream's status, once its response header arrived.
    pub upstream_status: Option<u16>,
}

/// The index of the first route whose glob matches `path`. A path with a `.` or `..` segment
/// (also percent-encoded) matches nothing: it could climb out of the configured prefix on the
/// provider's side, with the provider's key.
pub fn find(config: &Config, path: &str) -> Option<usize> {
    if has_dot_segment(path) {
        return None;
    }
    config.passthrough.iter().position(|r| r.path.matches(path))
}

fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|seg| {
        // Counts the dots of a segment made only of `.` and `%2e` (no allocation).
        let (s, mut i, mut dots) = (seg.as_bytes(), 0, 0);
        while i < s.len() {
            if s[i] == b'.' {
                i += 1;
            } else if s[i..].len() >= 3
                && s[i] == b'%'
                && s[i + 1] == b'2'
                && s[i + 2] | 0x20 == b'e'
            {
                i += 3;
            } else {
                return false;
            }
            dots += 1;
        }
        matches!(dots, 1 | 2)
    })
}

/// The upstream path for `path` below the base URL's `prefix`: the longest end of the prefix
/// that the path starts with (whole segments) is not repeated, so base `/v1` and path
/// `/v1/images/x` give `/v1/images/x`, base `/openai/v1` and `/v1/files` give
/// `/openai/v1/files`, base `/ai` and `/v1/x` give `/ai/v1/x`.
pub fn upstream_path(prefix: &str, path: &str) -> String {
    let starts = prefix.match_indices('/').map(|(i, _)| i);
    for k in starts {
        let tail = &prefix[k..];
        let overlaps =
            path.starts_with(tail) && matches!(path.as_bytes().get(tail.len()), None | Some(b'/'));
        if overlaps {
            return format!("{}{path}", &prefix[..k]);
        }
    }
    format!("{prefix}{path}")
}

/// The per-route runtime of one snapshot: the provider's live handle (its DNS cache, CA) and
/// the route's metric handles, index for index with `config.passthrough`.
#[derive(Default)]
pub struct Routes(Vec<RouteRuntime>);

pub struct RouteRuntime {
    pub provider: Arc<ProviderHandle>,
    pub metrics: PassthroughMetrics,
}

impl Routes {
    /// Handles for `config`'s routes, sharing the state's provider handles.
    pub fn build(config: &Config, providers: &[Arc<ProviderHandle>], metrics: &Metrics) -> Routes {
        Routes(
            config
                .passthrough
                .iter()
                .filter_map(|r| {
                    let provider = providers
                        .iter()
                        .find(|h| Arc::ptr_eq(&h.config, &r.provider))?
                        .clone();
                    Some(RouteRuntime {
                        metrics: metrics.passthrough(r.path.as_str(), &r.provider.name),
                        provider,
                    })
                })
                .collect(),
        )
    }

    pub fn get(&self, index: usize) -> Option<&RouteRuntime> {
        self.0.get(index)
    }
}

/// The provider's wire details of a route (always an HTTP provider: validation refuses others).
pub struct Target<'a> {
    pub dialect: Dialect,
    pub endpoint: &'a HttpEndpoint,
    pub api_key: Option<&'a Secret>,
}

impl<'a> Target<'a> {
    pub fn of(route: &'a PassthroughRoute) -> Option<Target<'a>> {
        match &route.provider.kind {
            ProviderKind::Http {
                dialect,
                endpoint,
                api_key,
                ..
            } => Some(Target {
                dialect: *dialect,
                endpoint,
                api_key: api_key.as_ref(),
            }),
            _ => None,
        }
    }
}

/// The route a request runs under (from its snapshot) and its runtime handles.
pub fn route_of(ctx: &RequestCtx) -> Option<(&PassthroughRoute, &RouteRuntime)> {
    let hit = ctx.passthrough?;
    let state = &ctx.snapshot.as_deref()?.state;
    Some((
        state.config.passthrough.get(hit.index)?,
        state.passthrough.get(hit.index)?,
    ))
}

/// What a finished request costs: the route's `per_request` price when the provider answered
/// with a success (1xx-3xx), else 0; with the provider's name. `None` for other routes.
pub fn charge(ctx: &RequestCtx) -> Option<(&str, u64)> {
    let (route, _) = route_of(ctx)?;
    let answered = ctx
        .passthrough
        .and_then(|h| h.upstream_status)
        .is_some_and(|s| s < 400);
    Some((
        route.provider.name.as_str(),
        if answered { route.per_request_nanos } else { 0 },
    ))
}

/// The peer to connect to for `route`, at `addr` (resolved by the provider's handle).
pub fn peer(
    target: &Target<'_>,
    handle: &ProviderHandle,
    addr: std::net::SocketAddr,
) -> Box<HttpPeer> {
    let endpoint = target.endpoint;
    let mut peer = Box::new(HttpPeer::new(addr, endpoint.tls, endpoint.sni()));
    let t = handle.config.timeouts;
    peer.options.connection_timeout = Some(t.connect);
    peer.options.total_connection_timeout = Some(t.connect);
    // One bound per read, as Pingora offers only one: the answer's head may take as long as a
    // whole try (`total`: an image or a transcription is slow), and so may any gap in a stream.
    // Reads are re-armed for every request-body chunk sent, so a long upload never trips it.
    peer.options.read_timeout = Some(t.total);
    peer.options.write_timeout = Some(t.idle);
    peer.options.idle_timeout = Some(POOL_IDLE);
    peer.options.ca = handle.ca.clone();
    peer
}

/// Rewrites the caller's head into the provider's: the upstream path (query kept as sent), the
/// provider's `Host`, the caller's credentials removed and the provider's injected the way its
/// kind expects (an Anthropic caller's `anthropic-version` is kept), the gateway's request id,
/// hop count and trace context added. Everything else goes as the caller sent it.
pub fn rewrite_head(
    req: &mut RequestHeader,
    target: &Target<'_>,
    ctx: &RequestCtx,
) -> pingora_error::Result<()> {
    let raw = req.raw_path().to_vec();
    let (path, query) = match raw.iter().position(|&b| b == b'?') {
        Some(q) => (&raw[..q], Some(&raw[q..])),
        None => (&raw[..], None),
    };
    let path = String::from_utf8_lossy(path);
    let mut target_path = upstream_path(&target.endpoint.path_prefix, &path).into_bytes();
    if let Some(q) = query {
        target_path.extend_from_slice(q);
    }
    req.set_raw_path(&target_path)?;
    for name in CALLER_CREDENTIALS {
        req.remove_header(name);
    }
    req.insert_header(http::header::HOST, rh::value(&target.endpoint.host_header)?)?;
    let keep_version = req.headers.contains_key("anthropic-version");
    for (name, value) in providers::auth_headers(target.dialect, target.api_key.map(Secret::expose))
    {
        if name == "anthropic-version" && keep_version {
            continue;
        }
        let mut value = rh::value(&value)?;
        // Credentials: never printed by `Debug`, never indexed by HPACK.
        value.set_sensitive(true);
        req.insert_header(name, value)?;
    }
    req.insert_header(rh::X_REQUEST_ID.clone(), rh::value(&ctx.request_id)?)?;
    req.insert_header(
        rh::X_SWITCHYARD_HOPS.clone(),
        http::HeaderValue::from(ctx.hops + 1),
    )?;
    if let Some(trace) = &ctx.trace {
        req.insert_header(rh::TRACEPARENT.clone(), rh::value(trace.upstream_header())?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_segment_is_not_doubled() {
        assert_eq!(upstream_path("/v1", "/v1/images/x"), "/v1/images/x");
        assert_eq!(upstream_path("/v1", "/v1"), "/v1");
        assert_eq!(upstream_path("/openai/v1", "/v1/files"), "/openai/v1/files");
        assert_eq!(upstream_path("", "/v1/files"), "/v1/files");
        assert_eq!(upstream_path("/ai", "/v1/x"), "/ai/v1/x");
        assert_eq!(upstream_path("/v1beta", "/v1beta/files"), "/v1beta/files");
        // Segments, not characters: `/v1` is no prefix of `/v1beta`.
        assert_eq!(upstream_path("/v1", "/v1beta/x"), "/v1/v1beta/x");
        assert_eq!(upstream_path("/v1", "/v2/x"), "/v1/v2/x");
    }

    #[test]
    fn dot_segments_never_match() {
        for p in [
            "/v1/files/../admin",
            "/v1/files/./x",
            "/v1/files/%2e%2e/x",
            "/v1/files/%2E./x",
        ] {
            assert!(has_dot_segment(p), "{p}");
        }
        assert!(!has_dot_segment("/v1/files/a.b/..c"));
        assert!(!has_dot_segment("/v1/files/.../%2e%2e%2e/x%2e"));
    }
}
