//! The upstream request head for one try: path, host, content headers, the gateway's own
//! (`x-request-id`, hops, `traceparent`) and the provider's credentials, marked sensitive. Built as
//! plain `http` parts with static names (see `proxy::response_headers`): Pingora's
//! case-preserving `insert_header` would parse and allocate each name twice.
//!
//! What is the same on every request to a provider (host, content type, user agent, the API
//! key's headers, the provider's `headers`) is built once per provider and config generation
//! ([`ProviderHandle::upstream_head`]) and cloned per try, with the parsed URI of its usual path
//! ([`ProviderHandle::upstream_uri`]): a clone copies the entries without hashing a name or
//! parsing a path again (~2,500 instructions a request). Cloud accounts sign each request over
//! its headers, so only their credential-free part is kept. Must not touch the body or the
//! connection.

use super::attempt::{Try, TryError, Upstream};
use super::translate::Mode;
use crate::config::Secret;
use crate::ops::telemetry::AttemptOutcome;
use crate::proxy::response_headers as rh;
use crate::routing::state::ProviderHandle;
use pingora_http::RequestHeader;
use switchyard_adapters::canonical::Dialect;
use switchyard_adapters::providers;

/// The request head of try `t` to `upstream`.
pub(super) fn build(t: &Try<'_>, upstream: &Upstream<'_>) -> Result<Box<RequestHeader>, TryError> {
    let Try {
        ctx,
        prepared,
        stream,
        dep,
        ..
    } = *t;
    let provider = &*dep.provider;
    let mut headers = match provider.upstream_head.get() {
        Some(fixed) => fixed.clone(),
        None => {
            let fixed = fixed_headers(upstream)?;
            let _ = provider.upstream_head.set(fixed.clone());
            fixed
        }
    };
    let h = &mut headers;
    let static_value = http::HeaderValue::from_static;
    let per_request = [
        rh::number(prepared.body.len() as u64),
        static_value(match (stream, upstream.dialect) {
            (true, Dialect::Ollama) => "application/x-ndjson",
            (true, Dialect::Bedrock) => "application/vnd.amazon.eventstream",
            (true, _) => "text/event-stream",
            (false, _) => "application/json",
        }),
        rh::value(&ctx.request_id).map_err(internal)?,
        match ctx.hops {
            // The first hop (nearly every request): no number to format.
            0 => static_value("1"),
            n => rh::number(u64::from(n) + 1),
        },
        match &ctx.trace {
            Some(trace) => rh::value(trace.upstream_header()).map_err(internal)?,
            None => static_value(""),
        },
    ];
    set_leading(h, per_request);
    if ctx.trace.is_none() {
        // No trace to continue (not a proxied request): no `traceparent` of the gateway's.
        h.remove(&rh::TRACEPARENT);
        if upstream.cloud.is_none() {
            provider_headers(h, upstream.headers);
        }
    }
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = http::Method::POST;
    if let Some(cloud) = upstream.cloud {
        let path = upstream.endpoint.path(&prepared.path);
        let out = crate::cloud::Outgoing {
            token: upstream.token.as_deref(),
            method: "POST",
            path_and_query: &path,
            body: &prepared.body,
        };
        cloud.authorize(&out, h).map_err(internal)?;
        parts.uri = parse_path(&path)?;
    } else {
        parts.uri = uri(provider, upstream, &prepared.path)?;
    }
    if let (Mode::Observed(Dialect::Anthropic), Some(beta)) = (prepared.mode, &ctx.anthropic_beta) {
        // Same-format passthrough: the caller's beta features reach Anthropic as asked.
        h.insert(&rh::ANTHROPIC_BETA, rh::value(beta).map_err(internal)?);
    }
    if upstream.cloud.is_some() {
        provider_headers(h, upstream.headers);
    }
    parts.headers = headers;
    // Boxed as Pingora's writer takes it: the try's future holds a pointer, not ~350 bytes.
    Ok(Box::new(RequestHeader::from(parts)))
}

/// What every request to this provider carries: the per-request headers' places
/// ([`PER_REQUEST`]), the host, content headers, the user agent, and (for a provider with an API
/// key rather than a cloud account) the key's headers and the provider's `headers`, which never
/// take the place of the gateway's own.
fn fixed_headers(upstream: &Upstream<'_>) -> Result<http::HeaderMap, TryError> {
    use http::header;
    let static_value = http::HeaderValue::from_static;
    let mut h = http::HeaderMap::with_capacity(16);
    // The per-request headers first, as placeholders that [`set_leading`] fills.
    for name in PER_REQUEST {
        h.insert(name, static_value(""));
    }
    h.insert(
        header::HOST,
        rh::value(&upstream.endpoint.host_header).map_err(internal)?,
    );
    h.insert(header::CONTENT_TYPE, static_value("application/json"));
    // Bodies are inspected for usage: ask for them uncompressed.
    h.insert(header::ACCEPT_ENCODING, static_value("identity"));
    h.insert(
        header::USER_AGENT,
        static_value(concat!("switchyard/", env!("CARGO_PKG_VERSION"))),
    );
    if upstream.cloud.is_none() {
        let key = upstream.api_key.map(Secret::expose);
        for (name, value) in providers::auth_headers(upstream.dialect, key) {
            let name = header::HeaderName::from_bytes(name.as_bytes()).map_err(internal)?;
            let mut value = http::HeaderValue::from_str(&value).map_err(internal)?;
            // Credentials: never printed by `Debug`, never indexed by HPACK.
            value.set_sensitive(true);
            h.insert(name, value);
        }
        provider_headers(&mut h, upstream.headers);
    }
    Ok(h)
}

/// The gateway's headers that differ per request, in the order they lead the fixed head.
const PER_REQUEST: [&http::HeaderName; 5] = [
    &http::header::CONTENT_LENGTH,
    &http::header::ACCEPT,
    &rh::X_REQUEST_ID,
    &rh::X_SWITCHYARD_HOPS,
    &rh::TRACEPARENT,
];

/// Writes `values` over the placeholders that lead a clone of the fixed head, by position: no
/// name is hashed or probed (five inserts into the clone cost ~1,500 instructions). A map that
/// does not lead with [`PER_REQUEST`] (never built so) gets them inserted instead.
fn set_leading(h: &mut http::HeaderMap, values: [http::HeaderValue; 5]) {
    let leads = h
        .iter()
        .take(PER_REQUEST.len())
        .map(|(name, _)| name)
        .eq(PER_REQUEST);
    if leads {
        for (slot, value) in h.values_mut().zip(values) {
            *slot = value;
        }
    } else {
        for (name, value) in PER_REQUEST.into_iter().zip(values) {
            h.insert(name, value);
        }
    }
}

/// The provider's `headers`: added, never over the gateway's or the credential's.
fn provider_headers(h: &mut http::HeaderMap, headers: &[(http::HeaderName, http::HeaderValue)]) {
    for (name, value) in headers {
        if !h.contains_key(name) {
            h.insert(name.clone(), value.clone());
        }
    }
}

/// The request URI for `api_path` at this provider: the parse of the first path asked for is
/// kept (a provider is nearly always asked one path) and cloned when it is asked again.
fn uri(
    provider: &ProviderHandle,
    upstream: &Upstream<'_>,
    api_path: &str,
) -> Result<http::Uri, TryError> {
    if let Some((path, uri)) = provider.upstream_uri.get() {
        if path == api_path {
            return Ok(uri.clone());
        }
    }
    let parsed = parse_path(&upstream.endpoint.path(api_path))?;
    let _ = provider
        .upstream_uri
        .set((api_path.to_string(), parsed.clone()));
    Ok(parsed)
}

/// `path` as Pingora reads a request target (its fragment dropped).
fn parse_path(path: &str) -> Result<http::Uri, TryError> {
    let head = RequestHeader::build_no_case("POST", path.as_bytes(), Some(0)).map_err(internal)?;
    Ok(http::request::Parts::from(head).uri)
}

#[cold]
fn internal(e: impl std::fmt::Display) -> TryError {
    TryError {
        outcome: AttemptOutcome::ConnectError,
        retry_after: None,
        reason: format!("cannot build the upstream request: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HttpEndpoint;
    use http::{HeaderMap, HeaderName, HeaderValue};

    fn endpoint() -> HttpEndpoint {
        HttpEndpoint {
            base_url: "http://up:8080/v1".into(),
            tls: false,
            host: "up".into(),
            port: 8080,
            path_prefix: "/v1".into(),
            host_header: "up:8080".into(),
        }
    }

    fn values(h: &HeaderMap, name: &str) -> Vec<String> {
        h.get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn the_provider_headers_never_take_the_gateway_s_place() {
        let endpoint = endpoint();
        let key = Secret::new("sk-up".into());
        let custom: Vec<(HeaderName, HeaderValue)> = [
            ("accept", "text/plain"),
            ("x-request-id", "spoofed"),
            ("authorization", "Bearer other"),
            ("x-team", "a"),
            ("x-team", "b"),
        ]
        .into_iter()
        .map(|(n, v)| (HeaderName::from_static(n), HeaderValue::from_static(v)))
        .collect();
        let upstream = Upstream {
            dialect: Dialect::OpenAi,
            endpoint: &endpoint,
            api_key: Some(&key),
            headers: &custom,
            cloud: None,
            token: None,
            proxy: None,
        };
        let Ok(mut h) = fixed_headers(&upstream) else {
            panic!("the fixed head could not be built")
        };
        let leading: Vec<&HeaderName> = h.keys().take(PER_REQUEST.len()).collect();
        assert_eq!(leading, PER_REQUEST);
        let per_request = [
            HeaderValue::from(42usize),
            HeaderValue::from_static("application/json"),
            HeaderValue::from_static("req-1"),
            HeaderValue::from_static("1"),
            HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        ];
        set_leading(&mut h, per_request);
        assert_eq!(values(&h, "content-length"), ["42"]);
        assert_eq!(values(&h, "accept"), ["application/json"]);
        assert_eq!(values(&h, "x-request-id"), ["req-1"]);
        assert_eq!(values(&h, "x-switchyard-hops"), ["1"]);
        assert_eq!(values(&h, "authorization"), ["Bearer sk-up"]);
        assert!(h.get("authorization").unwrap().is_sensitive());
        // The first value of a name the gateway does not set, as before the template.
        assert_eq!(values(&h, "x-team"), ["a"]);
        assert_eq!(values(&h, "host"), ["up:8080"]);
        assert_eq!(values(&h, "accept-encoding"), ["identity"]);
    }

    #[test]
    fn a_map_not_led_by_the_per_request_names_gets_them_inserted() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("up"));
        set_leading(
            &mut h,
            [
                HeaderValue::from(7usize),
                HeaderValue::from_static("text/event-stream"),
                HeaderValue::from_static("req-2"),
                HeaderValue::from_static("2"),
                HeaderValue::from_static(""),
            ],
        );
        assert_eq!(values(&h, "host"), ["up"]);
        assert_eq!(values(&h, "content-length"), ["7"]);
        assert_eq!(values(&h, "accept"), ["text/event-stream"]);
        assert_eq!(values(&h, "x-request-id"), ["req-2"]);
        assert_eq!(values(&h, "x-switchyard-hops"), ["2"]);
    }
}
