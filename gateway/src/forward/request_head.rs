//! The upstream request head for one try: path, host, content headers, the gateway's own
//! (`x-request-id`, hops, `traceparent`) and the provider's credentials, marked sensitive. Built as
//! plain `http` parts with static names (see `proxy::response_headers`): Pingora's
//! case-preserving `insert_header` would parse and allocate each name twice. Must not touch the
//! body or the connection.

use super::attempt::{Try, TryError, Upstream};
use super::translate::Mode;
use crate::config::Secret;
use crate::ops::telemetry::AttemptOutcome;
use crate::proxy::response_headers as rh;
use pingora_http::RequestHeader;
use switchyard_adapters::canonical::Dialect;
use switchyard_adapters::providers;

/// The request head of try `t` to `upstream`.
pub(super) fn build(t: &Try<'_>, upstream: &Upstream<'_>) -> Result<RequestHeader, TryError> {
    let Try {
        ctx,
        prepared,
        stream,
        ..
    } = *t;
    let endpoint = upstream.endpoint;
    let body_len = prepared.body.len();
    fn internal(e: impl std::fmt::Display) -> TryError {
        TryError {
            outcome: AttemptOutcome::ConnectError,
            retry_after: None,
            reason: format!("cannot build the upstream request: {e}"),
        }
    }
    let path = endpoint.path(&prepared.path);
    // Built as plain parts with static names (see `response_headers`): Pingora's
    // case-preserving `insert_header` would parse and allocate each name twice.
    let req = RequestHeader::build_no_case("POST", path.as_bytes(), Some(12)).map_err(internal)?;
    let mut parts = http::request::Parts::from(req);
    let h = &mut parts.headers;
    let static_value = http::HeaderValue::from_static;
    use http::header;
    h.insert(
        header::HOST,
        rh::value(&endpoint.host_header).map_err(internal)?,
    );
    h.insert(header::CONTENT_TYPE, static_value("application/json"));
    rh::set_length(h, body_len);
    h.insert(
        header::ACCEPT,
        static_value(match (stream, upstream.dialect) {
            (true, Dialect::Ollama) => "application/x-ndjson",
            (true, Dialect::Bedrock) => "application/vnd.amazon.eventstream",
            (true, _) => "text/event-stream",
            (false, _) => "application/json",
        }),
    );
    // Bodies are inspected for usage: ask for them uncompressed.
    h.insert(header::ACCEPT_ENCODING, static_value("identity"));
    h.insert(
        header::USER_AGENT,
        static_value(concat!("switchyard/", env!("CARGO_PKG_VERSION"))),
    );
    h.insert(
        &rh::X_REQUEST_ID,
        rh::value(&ctx.request_id).map_err(internal)?,
    );
    h.insert(
        &rh::X_SWITCHYARD_HOPS,
        match ctx.hops {
            // The first hop (nearly every request): no number to format.
            0 => static_value("1"),
            n => http::HeaderValue::from(n + 1),
        },
    );
    if let Some(trace) = &ctx.trace {
        h.insert(
            &rh::TRACEPARENT,
            rh::value(trace.upstream_header()).map_err(internal)?,
        );
    }
    if let Some(cloud) = upstream.cloud {
        let out = crate::cloud::Outgoing {
            token: upstream.token.as_deref(),
            method: "POST",
            path_and_query: &path,
            body: &prepared.body,
        };
        cloud.authorize(&out, h).map_err(internal)?;
    } else {
        let key = upstream.api_key.map(Secret::expose);
        for (name, value) in providers::auth_headers(upstream.dialect, key) {
            // The usual names without parsing them (~175 instructions each).
            let name = match name {
                "authorization" => header::AUTHORIZATION,
                "x-api-key" => rh::X_API_KEY.clone(),
                "anthropic-version" => rh::ANTHROPIC_VERSION.clone(),
                other => header::HeaderName::from_bytes(other.as_bytes()).map_err(internal)?,
            };
            // The string's own buffer becomes the value's (no copy).
            let mut value =
                http::HeaderValue::from_maybe_shared(bytes::Bytes::from(value.into_bytes()))
                    .map_err(internal)?;
            // Credentials: never printed by `Debug`, never indexed by HPACK.
            value.set_sensitive(true);
            h.insert(name, value);
        }
    }
    if let (Mode::Observed(Dialect::Anthropic), Some(beta)) = (prepared.mode, &ctx.anthropic_beta) {
        // Same-format passthrough: the caller's beta features reach Anthropic as asked.
        h.insert(&rh::ANTHROPIC_BETA, rh::value(beta).map_err(internal)?);
    }
    // The provider's `headers`: added, never over the gateway's or the credential's.
    for (name, value) in upstream.headers {
        if !h.contains_key(name) {
            h.insert(name.clone(), value.clone());
        }
    }
    let req = RequestHeader::from(parts);
    Ok(req)
}
