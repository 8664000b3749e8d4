//! The caller's response head, made from the upstream's: hop-by-hop headers and the provider's
//! own quota headers removed, the upstream's request id kept under another name, framing fixed
//! for streams and translated bodies, and the gateway's headers added. Edited as plain `http`
//! parts (see `proxy::response_headers`). Must not read or write bodies.

use super::Answer;
use crate::forward::Failure;
use crate::proxy::context::{RequestCtx, Route};
use crate::proxy::response_headers as rh;
use pingora_http::ResponseHeader;

/// What the upstream's head says about how to relay its body.
#[derive(Clone, Copy)]
pub(in crate::forward) struct HeadFacts {
    pub status: u16,
    pub success: bool,
    /// The answer goes out as a stream (SSE to the caller).
    pub is_stream: bool,
    /// The body is translated from the provider's format to the caller's.
    pub translated: bool,
    /// The upstream's `Content-Length`.
    pub declared: Option<usize>,
    /// The body is read whole before the caller's head is written.
    pub read_whole: bool,
    /// The upstream's `Retry-After` (or `retry-after-ms`); `None` for a success.
    pub retry_after: Option<std::time::Duration>,
    /// The same in whole seconds, rounded up (at least 1), for translated errors.
    pub retry_after_secs: Option<u64>,
}

impl HeadFacts {
    pub fn of(up: &ResponseHeader, answer: &Answer<'_, '_>) -> HeadFacts {
        let stream_requested = answer.inbound.facts.stream;
        let translated = answer.prepared.mode.translated();
        let status = up.status.as_u16();
        let success = (200..300).contains(&status);
        let upstream_sse = up
            .headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        // A translated stream is a stream whatever the provider calls it (Ollama sends NDJSON).
        let is_stream = success
            && if translated {
                stream_requested
            } else {
                upstream_sse
            };
        let declared = up
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        // A successful non-stream answer is read whole (up to `MAX_UPSTREAM_BODY`) before its
        // header is sent, so the header can say what it cost and one too large is a clean 502;
        // an answer (or error) to translate is always read whole. Anything else (an untranslated
        // error body, a stream the upstream answered without SSE) streams through as it comes.
        let read_whole = !is_stream && (translated || (success && !stream_requested));
        // Only an error is retried after a wait: a success's head is not searched for one (two
        // lookups, ~350 instructions, on every answer).
        let retry_after = if success {
            None
        } else {
            crate::routing::breaker::parse_retry_after(
                up.headers
                    .get(http::header::RETRY_AFTER)
                    .map(|v| v.as_bytes()),
                up.headers.get(&rh::RETRY_AFTER_MS).map(|v| v.as_bytes()),
            )
        };
        let retry_after_secs = retry_after.map(crate::routing::breaker::whole_seconds);
        HeadFacts {
            status,
            success,
            is_stream,
            translated,
            declared,
            read_whole,
            retry_after,
            retry_after_secs,
        }
    }
}

/// Hop-by-hop headers, never relayed.
const HOP_BY_HOP: [&http::HeaderName; 7] = [
    &http::header::CONNECTION,
    &rh::KEEP_ALIVE,
    &rh::PROXY_CONNECTION,
    &http::header::TRANSFER_ENCODING,
    &http::header::TE,
    &http::header::TRAILER,
    &http::header::UPGRADE,
];

/// The caller's head for the upstream's `up`.
pub(super) fn caller_head(
    up: &ResponseHeader,
    facts: &HeadFacts,
    ctx: &RequestCtx,
    answer: &Answer<'_, '_>,
) -> Result<http::response::Parts, Failure> {
    // One pass copies the upstream's headers into a map sized for them and the gateway's own
    // (a clone of the upstream's map, then room for those, allocated it twice and re-inserted
    // every entry), leaving out on the way what the caller must not see (a removal by name
    // hashes and probes even when the name is absent). The provider's quota headers describe
    // the gateway's upstream account, not the caller's limits (those are the gateway's own
    // `x-ratelimit-*`, added below). A provider's cookies are the gateway's session with it,
    // never the caller's. Its request id is kept under another name.
    let mut headers = http::HeaderMap::with_capacity(up.headers.len() + 12);
    for (name, value) in up.headers.iter() {
        if HOP_BY_HOP.contains(&name)
            || name == http::header::SET_COOKIE
            || crate::routing::breaker::is_quota_header(name.as_str())
        {
            continue;
        }
        if name == rh::X_REQUEST_ID {
            headers.insert(&rh::X_UPSTREAM_REQUEST_ID, value.clone());
        } else {
            headers.append(name.clone(), value.clone());
        }
    }
    let (mut resp, ()) = http::Response::new(()).into_parts();
    resp.status = up.status;
    resp.version = up.version;
    resp.headers = headers;
    let h = &mut resp.headers;
    if facts.is_stream || facts.declared.is_none() {
        h.remove(http::header::CONTENT_LENGTH);
        h.insert(
            http::header::TRANSFER_ENCODING,
            http::HeaderValue::from_static("chunked"),
        );
    }
    if facts.is_stream && facts.translated {
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/event-stream"),
        );
        h.insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-cache"),
        );
    }
    if !answer.prepared.dropped.is_empty() {
        if let Ok(v) = rh::value(&answer.prepared.dropped.join(", ")) {
            h.insert(&rh::X_SWITCHYARD_DROPPED, v);
        }
    }
    if ctx.route == Route::CountTokens && facts.success {
        h.insert(
            &rh::X_SWITCHYARD_TOKEN_COUNT,
            http::HeaderValue::from_static("exact"),
        );
    }
    let served_by = match &answer.dep.served_by {
        Some(values) if values.1.as_bytes() == answer.upstream_model.as_bytes() => {
            rh::ServedBy::Values(values)
        }
        _ => rh::ServedBy::Names(answer.dep.provider.name(), answer.upstream_model),
    };
    rh::add_gateway_headers(h, ctx, Some(served_by)).map_err(Failure::Abort)?;
    Ok(resp)
}
