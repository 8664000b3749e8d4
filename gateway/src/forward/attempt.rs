//! One attempt against one HTTP deployment, up to the response header: the per-try value that
//! carries what every step of an attempt needs, the connection (Pingora's pooled connector, one
//! fresh retry when a pooled connection had gone stale), the decision whether a status is an
//! answer or a failure, and the bookkeeping of a failed try (metrics, health, breaker,
//! `Retry-After`). It must not write to the caller: that is the relay's job.

use super::request_head;
use super::translate::{Inbound, Prepared};
use super::{Forwarder, POOL_IDLE_TIMEOUT};
use crate::clock::now_ms;
use crate::cloud::Cloud;
use crate::config::{HttpEndpoint, ProviderKind, RetryOn, RoutingPolicy, Secret};
use crate::errors::TryFailure;
use crate::ops::telemetry::AttemptOutcome;
use crate::proxy::context::RequestCtx;
use crate::routing::state::{RoutedDeployment, RoutedModel};
use bytes::Bytes;
use pingora_core::protocols::http::client::HttpSession;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_adapters::canonical::{Dialect, TranslateError};
use switchyard_adapters::providers::Caller;

/// Request bodies up to this size are written without a write timeout (see [`Forwarder::try_http`]):
/// well under the smallest send buffer Linux gives a TCP socket (`tcp_wmem`'s 16 KiB default)
/// with the head beside it.
const WRITES_NEVER_WAIT: usize = 8 * 1024;

/// What one try needs, carried as one value instead of a row of arguments.
#[derive(Clone, Copy)]
pub(super) struct Try<'a> {
    pub ctx: &'a RequestCtx,
    pub dep: &'a RoutedDeployment,
    pub prepared: &'a Prepared,
    /// The caller asked for a stream.
    pub stream: bool,
    /// There is a next step to take: a retryable status is then a failure, not an answer.
    pub may_retry: bool,
    /// The request's deadline (`routing.deadline` from its start).
    pub deadline: Instant,
    pub routing: &'a RoutingPolicy,
}

impl Try<'_> {
    /// What is left of the request's deadline.
    fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// `timeout`, or what is left of the deadline when that is less.
    fn within(&self, timeout: Duration) -> Duration {
        timeout.min(self.left())
    }

    #[cold]
    fn deadline_reached(&self) -> TryError {
        TryError {
            outcome: AttemptOutcome::Timeout,
            retry_after: None,
            reason: format!("request deadline of {:?} reached", self.routing.deadline),
        }
    }

    /// A wait that failed: the deadline's timeout when it had run out (Pingora's timers fire
    /// on a 10 ms tick), else what [`classify`] makes of it.
    #[cold]
    fn failed(&self, e: &Error, during: &str) -> TryError {
        if is_timeout(e) && self.left() < Duration::from_millis(20) {
            self.deadline_reached()
        } else {
            classify(e, during)
        }
    }
}

/// Why one try did not produce a response to relay.
pub(super) struct TryError {
    pub outcome: AttemptOutcome,
    pub reason: String,
    /// The provider's `Retry-After`, when it sent one.
    pub retry_after: Option<Duration>,
}

impl TryError {
    pub fn retryable(&self, on: &RetryOn) -> bool {
        match self.outcome {
            AttemptOutcome::ConnectError => on.connect,
            AttemptOutcome::Timeout => on.timeout,
            AttemptOutcome::Status429 => on.too_many_requests,
            AttemptOutcome::Status5xx => on.server_error,
            _ => false,
        }
    }
}

/// A response whose header has arrived and which will be relayed. Handed on boxed: it passes
/// through the try, the plan step and the relay, and inline each would copy it.
pub(super) struct Committed {
    pub upstream: HttpSession,
    /// Boxed: a peer is ~670 bytes, and the try's future holds it across its awaits.
    pub peer: Box<HttpPeer>,
    pub started: Instant,
    /// When the answer came: its head, or a stream's first event (time to first byte, and the
    /// one clock reading the answer's bookkeeping shares).
    pub answered: Instant,
    /// For a successful stream: its first body chunk, read before committing so that a late
    /// first token (past `first_byte`) can still move on to the next deployment.
    pub first_chunk: Option<Bytes>,
    /// For a successful non-stream answer: its whole body, read and checked
    /// ([`super::answer_check`]) before committing, so that a 2xx that is not an answer can
    /// still move on to the next deployment.
    pub whole: Option<super::answer_check::Whole>,
    /// What the answer's head says, once worked out (by the read of a whole answer).
    pub facts: Option<super::relay::HeadFacts>,
}

/// Where one try goes: the provider's format, address and credential.
pub(super) struct Upstream<'a> {
    pub dialect: Dialect,
    pub endpoint: &'a HttpEndpoint,
    pub api_key: Option<&'a Secret>,
    /// The provider's `headers`.
    pub headers: &'a [(http::HeaderName, http::HeaderValue)],
    /// A cloud account's credentials (instead of `api_key`).
    pub cloud: Option<&'a Cloud>,
    /// The cloud credential fetched for this try (a cached bearer token).
    pub token: Option<Arc<Secret>>,
    /// The provider's egress proxy.
    pub proxy: Option<&'a crate::cloud::egress::EgressProxy>,
}

impl Forwarder {
    /// One try against an HTTP upstream, up to its response header, bounded by what is left of
    /// the request's deadline: each of its waits (the credential, the address, the connection,
    /// each write and the response head) gets the smaller of its own timeout and what is left
    /// ([`Try::within`]), so no timer of the try's own runs beside them (a Pingora timer costs
    /// ~850 instructions to register; the waits that end at once, a cached address or a pooled
    /// connection, register none). A retryable status is a failure only when `may_retry` (there
    /// is a next step to take).
    ///
    /// One async function, not two: each layer of futures is copied whole once per request.
    pub(super) async fn try_within(&self, t: &Try<'_>) -> Result<Box<Committed>, TryError> {
        let mut upstream = upstream_of(t)?;
        if let Some(c) = upstream.cloud {
            // Boxed: a credential's future is ~2.4 KB that every try carried otherwise.
            upstream.token = Box::pin(pingora_timeout::timeout(t.left(), c.credential()))
                .await
                .map_err(|_| t.deadline_reached())?
                .map_err(|e| TryError {
                    outcome: AttemptOutcome::ConnectError,
                    retry_after: None,
                    reason: format!("cannot get a {} credential: {e}", c.kind()),
                })?;
        }
        let Try {
            dep,
            prepared,
            stream,
            ..
        } = *t;
        let body = &prepared.body;
        let timeouts = dep.provider.config.timeouts;
        let addr = match (upstream.proxy, dep.provider.known_address()) {
            // The proxy resolves the provider's name; the address only keys the pool.
            (Some(_), _) => std::net::SocketAddr::from(([0, 0, 0, 0], upstream.endpoint.port)),
            // An address literal or a fresh cached answer: no wait, so no timeout to arm.
            (None, Some(addr)) => addr,
            (None, None) => Box::pin(pingora_timeout::timeout(t.left(), dep.provider.address()))
                .await
                .map_err(|_| t.deadline_reached())?
                .map_err(|reason| TryError {
                    outcome: AttemptOutcome::ConnectError,
                    retry_after: None,
                    reason,
                })?,
        };
        let mut peer = peer_for(t, &upstream, addr)?;
        // Streams must show their first event within `first_byte`; a non-stream answer comes
        // whole, so its wait is bounded by `total` instead.
        let header_timeout = if stream {
            timeouts.first_byte
        } else {
            timeouts.total
        };
        let started = Instant::now();
        let mut header = Some(request_head::build(t, &upstream)?);
        // A head and a body this small go into the connection's send buffer at once (an idle
        // connection's is empty; a closed one fails at once): no write can wait, so none needs
        // a timeout (each costs a timer check). The wait for the answer is bounded either way.
        let writes_may_wait = body.len() > WRITES_NEVER_WAIT;
        // A pooled connection may have been closed by the upstream meanwhile: one fresh retry.
        let mut fresh_retry = true;
        // The clock as last read: timeouts are cut to what is left of the deadline from it (a
        // read costs ~30 ns; a reused connection's writes take microseconds, not worth another).
        let mut now = started;
        let left = |now: Instant| t.deadline.saturating_duration_since(now);
        loop {
            // Only a new connection waits here (a proxy's CONNECT included): within what is left.
            let connect = timeouts.connect.min(left(now));
            peer.options.connection_timeout = Some(connect);
            peer.options.total_connection_timeout = Some(connect);
            let (mut up, reused) = self
                .pool
                .acquire(&peer)
                .await
                .map_err(|e| t.failed(&e, "connecting"))?;
            if !reused {
                now = Instant::now();
            }
            let req = match header.take() {
                Some(h) => h,
                None => request_head::build(t, &upstream)?,
            };
            let sent = async {
                if writes_may_wait {
                    up.set_write_timeout(Some(t.within(timeouts.idle)));
                }
                up.write_request_header(req).await?;
                if writes_may_wait {
                    up.set_write_timeout(Some(t.within(timeouts.idle)));
                }
                up.write_request_body(body.clone(), true).await?;
                up.finish_request_body().await?;
                // Writes that may have waited moved the clock on: read it again.
                let read_left = if writes_may_wait { t.left() } else { left(now) };
                up.set_read_timeout(Some(header_timeout.min(read_left)));
                up.read_response_header().await
            }
            .await;
            match sent {
                Ok(()) => {}
                Err(e) if reused && fresh_retry && !is_timeout(&e) => {
                    fresh_retry = false;
                    now = Instant::now();
                    continue;
                }
                Err(e) => return Err(t.failed(&e, "waiting for the response")),
            }
            let status = up
                .response_header()
                .map(|h| h.status.as_u16())
                .unwrap_or(502);
            if let Some(h) = up.response_header() {
                if let Some(failure) = read_head(t, &upstream, h, status) {
                    return Err(failure);
                }
            }
            // Providers send a stream's header at once and its first event when the first token
            // is ready: wait for that event (within `first_byte`) before committing.
            let mut answered = Instant::now();
            let first_chunk = if stream && (200..300).contains(&status) {
                up.set_read_timeout(Some(header_timeout.min(left(answered))));
                let chunk = match up.read_response_body().await {
                    Ok(Some(chunk)) => Some(chunk),
                    Ok(None) => None,
                    Err(e) => return Err(t.failed(&e, "waiting for the first token")),
                };
                answered = Instant::now();
                chunk
            } else {
                None
            };
            return Ok(Box::new(Committed {
                upstream: up,
                peer,
                started,
                answered,
                first_chunk,
                whole: None,
                facts: None,
            }));
        }
    }
}

/// Where try `t` goes: its provider's format, address and credential (a cloud account's token
/// is fetched by the try).
fn upstream_of<'a>(t: &Try<'a>) -> Result<Upstream<'a>, TryError> {
    let ProviderKind::Http {
        dialect,
        endpoint,
        api_key,
        headers,
        cloud,
        proxy,
        ..
    } = &t.dep.provider.config.kind
    else {
        return Err(TryError {
            outcome: AttemptOutcome::ConnectError,
            retry_after: None,
            reason: "not an HTTP provider".into(),
        });
    };
    Ok(Upstream {
        dialect: *dialect,
        endpoint,
        api_key: api_key.as_ref(),
        headers,
        cloud: cloud.as_deref(),
        token: None,
        proxy: proxy.as_deref(),
    })
}

/// The pool's peer for `upstream` at `addr`: TLS name, CA, idle timeout and egress proxy.
fn peer_for(
    t: &Try<'_>,
    upstream: &Upstream<'_>,
    addr: std::net::SocketAddr,
) -> Result<Box<HttpPeer>, TryError> {
    let endpoint = upstream.endpoint;
    let mut peer = Box::new(HttpPeer::new(addr, endpoint.tls, endpoint.sni()));
    peer.options.idle_timeout = Some(POOL_IDLE_TIMEOUT);
    peer.options.ca = t.dep.provider.ca.clone();
    if let Some(proxy) = upstream.proxy {
        proxy
            .apply(&mut peer, &endpoint.host, endpoint.port)
            .map_err(|reason| TryError {
                outcome: AttemptOutcome::ConnectError,
                retry_after: None,
                reason,
            })?;
    }
    Ok(peer)
}

/// What the upstream's response head tells before the answer is taken: the provider's quota
/// headers observed, a cloud credential refusal logged, and — when there is a next step — a
/// retryable status as the try's failure (with its `Retry-After`).
fn read_head(
    t: &Try<'_>,
    upstream: &Upstream<'_>,
    h: &pingora_http::ResponseHeader,
    status: u16,
) -> Option<TryError> {
    let dep = t.dep;
    dep.provider.quota.observe_headers(&h.headers, now_ms);
    if let (Some(cloud), 401 | 403) = (upstream.cloud, status) {
        // The gateway's credential problem, not the caller's: said in the log.
        let kind = h
            .headers
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok());
        log::error!(
            "provider {} ({}) refused the gateway's credentials: HTTP {status} {}",
            dep.provider.name(),
            cloud.kind(),
            kind.unwrap_or("")
        );
    }
    if !t.may_retry {
        return None;
    }
    let on = &t.routing.retry.on;
    let outcome = match status {
        // A loop further down the mesh: retrying elsewhere would only loop again.
        508 => None,
        429 if on.too_many_requests => Some(AttemptOutcome::Status429),
        500..=599 if on.server_error => Some(AttemptOutcome::Status5xx),
        _ => None,
    }?;
    let retry_after = crate::routing::breaker::parse_retry_after(
        h.headers
            .get(http::header::RETRY_AFTER)
            .map(|v| v.as_bytes()),
        h.headers
            .get(&crate::proxy::response_headers::RETRY_AFTER_MS)
            .map(|v| v.as_bytes()),
    );
    Some(TryError {
        outcome,
        reason: format!("upstream answered {status}"),
        retry_after,
    })
}

/// The upstream request for one deployment of `model`.
pub(super) fn prepare_for(
    inbound: &Inbound<'_>,
    model: &RoutedModel,
    dep: &RoutedDeployment,
) -> Result<Prepared, TranslateError> {
    let ProviderKind::Http { dialect, cloud, .. } = &dep.provider.config.kind else {
        return Err(TranslateError::invalid("not an HTTP provider", None));
    };
    let spec = dep.spec(model);
    if inbound.caller == Caller::OpenAiResponses && dep.provider.config.responses_native {
        return Ok(inbound.prepare_native_responses(&spec.model));
    }
    let dialect = cloud
        .as_deref()
        .map_or(*dialect, |c| c.dialect_for(&spec.model, *dialect));
    let mut prepared =
        inbound.prepare(dialect, &spec.model, spec.max_tokens, model.config.strict)?;
    if model.config.prompt_cache && dialect == Dialect::Anthropic && !inbound.embeddings {
        if let Some(body) =
            switchyard_adapters::anthropic::prompt_cache::add_breakpoints(&prepared.body)
        {
            prepared.body = body.into();
        }
    }
    if let Some(cloud) = cloud {
        prepared.path = cloud.api_path(&prepared.path, &spec.model, inbound.facts.stream);
        if let Some(body) = cloud
            .adapt_body(&spec.model, &prepared.path, &prepared.body)
            .map_err(|e| TranslateError::invalid(e, None))?
        {
            prepared.body = body;
        }
    }
    Ok(prepared)
}

/// Records a failed try everywhere it counts (metrics, provider health, breaker, Retry-After,
/// the request's failure list). Returns whether the failure allows another try.
#[cold]
pub(super) fn note_failure(
    ctx: &mut RequestCtx,
    model: &RoutedModel,
    dep: &RoutedDeployment,
    e: TryError,
) -> bool {
    let routing = &model.config.routing;
    let spec = dep.spec(model);
    dep.provider.metrics.attempt(e.outcome);
    let opened = if e.outcome == AttemptOutcome::Status429 {
        // A rate limit is a wait, not a failure: no health or breaker count.
        dep.runtime.rate_limited(e.retry_after, now_ms());
        false
    } else {
        dep.provider.record_failure(&e.reason);
        if let Some(wait) = e.retry_after {
            dep.runtime.retry_after(wait, now_ms());
        }
        dep.runtime.on_failure(&routing.breaker, now_ms())
    };
    if opened {
        dep.provider.metrics.circuit_opened.inc();
        crate::ops::events::circuit_opened(dep.provider.name(), &spec.model);
        log::warn!(
            "circuit opened for {}/{} for {:?}",
            dep.provider.name(),
            spec.model,
            routing.breaker.open_for
        );
    }
    log::warn!(
        "request {} try {} on {}/{} failed: {}",
        ctx.request_id,
        ctx.tries,
        dep.provider.name(),
        spec.model,
        e.reason
    );
    let retry = e.retryable(&routing.retry.on);
    ctx.failures.push(TryFailure {
        provider: dep.provider.name().to_string(),
        model: spec.model.clone(),
        reason: e.reason,
    });
    retry
}

/// The breaker policy of the request's model (the default when no model is set).
pub(super) fn model_breaker(ctx: &RequestCtx) -> crate::config::BreakerPolicy {
    ctx.model
        .as_ref()
        .map(|m| m.config.routing.breaker)
        .unwrap_or_else(|| crate::config::RoutingPolicy::default().breaker)
}

pub(super) fn is_timeout(e: &Error) -> bool {
    matches!(
        e.etype(),
        ErrorType::ReadTimedout | ErrorType::WriteTimedout | ErrorType::ConnectTimedout
    )
}

#[cold]
pub(super) fn classify(e: &Error, during: &str) -> TryError {
    let outcome = if is_timeout(e) {
        AttemptOutcome::Timeout
    } else {
        AttemptOutcome::ConnectError
    };
    TryError {
        outcome,
        retry_after: None,
        reason: format!("{during}: {}", e.etype().as_str()),
    }
}
