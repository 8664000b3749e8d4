//! The heads Switchyard writes — responses to its callers, requests to upstreams: the names of
//! its own headers and the helpers that build a head on a plain `http::HeaderMap` before Pingora
//! sends it.
//!
//! Heads are edited as `http::response::Parts` and handed to Pingora as a `ResponseHeader`
//! without a case map. Pingora's case-preserving `insert_header` parses each name and allocates
//! twice per header (the name, and its case copy); a plain map takes the static names below as
//! they are. Header names go out lower-case (standard ones Title-Case), which HTTP allows.
//! It owns no policy: which headers a response carries is decided by the forwarder.

use crate::proxy::context::RequestCtx;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::response::Parts;
use pingora_error::{ErrorType, OrErr};
use pingora_http::ResponseHeader;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static X_UPSTREAM_REQUEST_ID: HeaderName = HeaderName::from_static("x-upstream-request-id");
pub static X_SWITCHYARD_PROVIDER: HeaderName = HeaderName::from_static("x-switchyard-provider");
pub static X_SWITCHYARD_MODEL: HeaderName = HeaderName::from_static("x-switchyard-model");
/// The fallback model that served when the requested one could not (`models[].fallbacks`).
pub static X_SWITCHYARD_FALLBACK: HeaderName = HeaderName::from_static("x-switchyard-fallback");
/// The generation of the config snapshot that answered (see `crate::snapshot`).
pub static X_SWITCHYARD_CONFIG_GENERATION: HeaderName =
    HeaderName::from_static("x-switchyard-config-generation");
pub static X_SWITCHYARD_COST_USD: HeaderName = HeaderName::from_static("x-switchyard-cost-usd");
/// `exact` (counted by the provider) or `estimated` (the gateway's estimate) on token counts.
pub static X_SWITCHYARD_TOKEN_COUNT: HeaderName =
    HeaderName::from_static("x-switchyard-token-count");
/// Lists request fields dropped because the provider cannot honour them (`strict: false`).
pub static X_SWITCHYARD_DROPPED: HeaderName = HeaderName::from_static("x-switchyard-dropped");
/// Counts the Switchyard nodes a request crossed (sent upstream); a mesh loop ends in a 508 at
/// `max_hops`.
pub static X_SWITCHYARD_HOPS: HeaderName = HeaderName::from_static("x-switchyard-hops");
/// The response cache's verdict: `hit`, `miss` or `bypass`.
pub static X_SWITCHYARD_CACHE: HeaderName = HeaderName::from_static("x-switchyard-cache");
/// `name:action:phase` for each guardrail action taken on the request.
pub static X_SWITCHYARD_GUARDRAILS: HeaderName = HeaderName::from_static("x-switchyard-guardrails");
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub static ANTHROPIC_BETA: HeaderName = HeaderName::from_static("anthropic-beta");
pub static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
pub static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
// Request and answer headers the request path reads: a `&str` name is parsed and hashed on
// every lookup (~250 instructions), a static one only hashed.
pub static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
pub static ANTHROPIC_VERSION: HeaderName = HeaderName::from_static("anthropic-version");
pub static X_SWITCHYARD_TAGS: HeaderName = HeaderName::from_static("x-switchyard-tags");
pub static RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");

/// An empty head with `status`, room for `headers` headers.
pub fn head(status: u16, headers: usize) -> pingora_error::Result<Parts> {
    ResponseHeader::build_no_case(status, Some(headers)).map(Parts::from)
}

/// The head as Pingora sends it.
pub fn finish(parts: Parts) -> Box<ResponseHeader> {
    Box::new(ResponseHeader::from(parts))
}

/// A header value from text the gateway produced or accepted (an error, never a panic, if it
/// holds a byte a header cannot).
pub fn value(text: &str) -> pingora_error::Result<HeaderValue> {
    HeaderValue::from_str(text).or_err(ErrorType::InvalidHTTPHeader, "invalid header value")
}

/// Sets `name` to `text` in `headers`.
pub fn set(headers: &mut HeaderMap, name: &HeaderName, text: &str) -> pingora_error::Result<()> {
    headers.insert(name, value(text)?);
    Ok(())
}

/// Sets `content-length`.
pub fn set_length(headers: &mut HeaderMap, len: usize) {
    headers.insert(http::header::CONTENT_LENGTH, number(len as u64));
}

/// `n` as a header value in one allocation of its exact size: `HeaderValue::from(n)` writes
/// into a 20-byte buffer and then shrinks it (two allocations; three numbers go out on every
/// request).
pub fn number(n: u64) -> HeaderValue {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    // Digits are always a valid value; the fallback only keeps this free of a panic.
    HeaderValue::from_bytes(&digits[at..]).unwrap_or_else(|_| HeaderValue::from(n))
}

/// Who served an answer, for `x-switchyard-provider` and `x-switchyard-model`.
#[derive(Clone, Copy)]
pub enum ServedBy<'a> {
    /// The provider's name and the upstream model, validated and copied per answer.
    Names(&'a str, &'a str),
    /// The same as values made once with the routing state (a clone shares their bytes).
    Values(&'a (HeaderValue, HeaderValue)),
}

/// The headers every answer carries: the request id, the caller's `x-ratelimit-*` when a limit
/// applies, and which provider and model served it.
pub fn add_gateway_headers(
    headers: &mut HeaderMap,
    ctx: &RequestCtx,
    served_by: Option<ServedBy<'_>>,
) -> pingora_error::Result<()> {
    set(headers, &X_REQUEST_ID, &ctx.request_id)?;
    headers.insert(&X_SWITCHYARD_CONFIG_GENERATION, number(ctx.generation()));
    if let Some(a) = &ctx.admission {
        a.headers.write(headers);
    }
    if let Some(verdict) = ctx.cache_status {
        headers.insert(&X_SWITCHYARD_CACHE, HeaderValue::from_static(verdict));
    }
    if !ctx.guardrails.is_empty() {
        let v = crate::guardrails::header_value(&ctx.guardrails);
        set(headers, &X_SWITCHYARD_GUARDRAILS, &v)?;
    }
    match served_by {
        Some(ServedBy::Names(provider, model)) => {
            set(headers, &X_SWITCHYARD_PROVIDER, provider)?;
            set(headers, &X_SWITCHYARD_MODEL, model)?;
        }
        Some(ServedBy::Values((provider, model))) => {
            headers.insert(&X_SWITCHYARD_PROVIDER, provider.clone());
            headers.insert(&X_SWITCHYARD_MODEL, model.clone());
        }
        None => {}
    }
    if let Some(m) = ctx.model.as_ref().filter(|_| ctx.fallback) {
        set(headers, &X_SWITCHYARD_FALLBACK, &m.config.name)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_as_http_writes_them() {
        for n in [0, 7, 10, 42, 999, 1_000_000, u64::MAX] {
            assert_eq!(number(n), HeaderValue::from(n), "{n}");
        }
    }

    #[test]
    fn a_head_built_here_goes_out_as_set() {
        let mut h = head(201, 4).unwrap();
        set(&mut h.headers, &X_SWITCHYARD_MODEL, "gpt-4o").unwrap();
        set_length(&mut h.headers, 42);
        assert!(set(&mut h.headers, &X_SWITCHYARD_PROVIDER, "bad\nvalue").is_err());
        let resp = finish(h);
        assert!(!resp.has_case());
        let mut wire = Vec::new();
        resp.header_to_h1_wire(&mut wire);
        let wire = String::from_utf8(wire).unwrap();
        assert!(wire.contains("x-switchyard-model: gpt-4o\r\n"), "{wire}");
        assert!(wire.contains("Content-Length: 42\r\n"), "{wire}");
        assert!(!wire.contains("provider"));
        assert_eq!(resp.status.as_u16(), 201);
    }
}
