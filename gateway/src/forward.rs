//! Executes a routing plan for one chat request: tries deployments in order, exchanges the request
//! with the chosen upstream through Pingora's pooled [`Connector`], and relays the answer to the
//! caller as it arrives.
//!
//! This is "pattern C" from `docs/architecture.md`: the body was read once in `request_filter`,
//! so any size replays to any number of deployments, and a 429/5xx answer or a connect failure
//! moves to the next deployment before a single byte reached the caller. Once the response header
//! has been written to the caller there is no retry. It owns upstream I/O only; what bytes to send
//! comes from `switchyard_adapters`, which deployment from [`crate::router`].

use crate::breaker::{now_ms, Unavailable};
use crate::config::{HttpEndpoint, MockSettings, ProviderKind, RetryOn, Secret};
use crate::context::RequestCtx;
use crate::errors::{GatewayError, TryFailure};
use crate::governance::Spend;
use crate::local::generate::GenerateRequest;
use crate::local::pool::{GenEvent, Spill};
use crate::mock::MockAnswer;
use crate::response_headers as rh;
use crate::router;
use crate::state::{RoutedDeployment, RoutedModel};
use crate::telemetry::AttemptOutcome;
use crate::translate::{self, Inbound, Mode, Prepared, StreamRelay};
use bytes::{Bytes, BytesMut};
use pingora_core::connectors::http::Connector;
use pingora_core::protocols::http::client::HttpSession;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType};
use pingora_http::RequestHeader;
use pingora_proxy::Session;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use switchyard_adapters::canonical::{
    ChatResponse, Dialect, ErrorKind, OutputPart, ProviderError, StreamEvent, TranslateError, Usage,
};
use switchyard_adapters::openai;
use switchyard_adapters::providers::{self, Caller, StreamEncoder};

/// Largest non-stream answer read whole so that `x-switchyard-cost-usd` can be set on it.
const MAX_PRICED_BODY: usize = 4 * 1024 * 1024;

/// Largest non-stream answer (or error body) read whole to be translated to the caller's format.
const MAX_TRANSLATED_BODY: usize = 64 * 1024 * 1024;

/// `x-switchyard-cost-usd`'s value: dollars with eight decimals.
fn cost_value(usd: f64) -> http::HeaderValue {
    rh::value(&format!("{usd:.8}")).unwrap_or(http::HeaderValue::from_static("0"))
}

/// Upstream connections idle longer than this are not reused (below common provider keep-alives).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How a request ended without a normal response.
pub enum Failure {
    /// Nothing was written yet: answer the caller with this error.
    Respond(GatewayError),
    /// The caller's connection failed or the response was already under way: stop.
    Abort(Box<Error>),
}

impl From<GatewayError> for Failure {
    fn from(e: GatewayError) -> Self {
        Failure::Respond(e)
    }
}

/// Why one try did not produce a response to relay.
struct TryError {
    outcome: AttemptOutcome,
    reason: String,
    /// The provider's `Retry-After`, when it sent one.
    retry_after: Option<Duration>,
}

impl TryError {
    fn retryable(&self, on: &RetryOn) -> bool {
        match self.outcome {
            AttemptOutcome::ConnectError => on.connect,
            AttemptOutcome::Timeout => on.timeout,
            AttemptOutcome::Status429 => on.too_many_requests,
            AttemptOutcome::Status5xx => on.server_error,
            _ => false,
        }
    }
}

/// A response whose header has arrived and which will be relayed.
struct Committed {
    upstream: HttpSession,
    peer: HttpPeer,
    started: Instant,
    /// For a successful stream: its first body chunk, read before committing so that a late
    /// first token (past `first_byte`) can still move on to the next deployment.
    first_chunk: Option<Bytes>,
}

/// Runs plans against upstreams. One per process; the connector's pool is shared.
pub struct Forwarder {
    connector: Connector,
    spend: Arc<Spend>,
}

impl Forwarder {
    pub fn new(connector: Connector, spend: Arc<Spend>) -> Self {
        Forwarder { connector, spend }
    }

    /// Strict durability: commits the request's ledger row before the caller gets the response's
    /// last bytes (a no-op in batched mode, where `logging` queues the row).
    async fn commit_row(&self, ctx: &mut RequestCtx) {
        if !self.spend.strict || ctx.ledger_recorded {
            return;
        }
        match self
            .spend
            .record_durable(crate::governance::row_for(ctx))
            .await
        {
            Ok(()) => ctx.ledger_recorded = true,
            Err(e) => log::error!("request {}: {e}", ctx.request_id),
        }
    }

    /// Serves one chat completion request for `model` through its plan.
    pub async fn serve_chat(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        model: &RoutedModel,
        inbound: &Inbound<'_>,
    ) -> Result<(), Failure> {
        let (body, facts) = (inbound.body, inbound.facts);
        let routing = &model.config.routing;
        let input = router::PlanInput {
            body_bytes: body.len(),
            max_tokens: facts.max_tokens,
            seed: ctx.seed(),
            requested_model: &facts.model,
            headers: Some(&session.req_header().headers),
            metadata: facts.metadata,
            prefer_cheapest: ctx.admission.as_ref().is_some_and(|a| a.prefer_cheapest),
        };
        let steps = router::plan(model, &input);
        let deadline = ctx.started + routing.deadline;
        let mut last_outcome = AttemptOutcome::ConnectError;
        // The first deployment that could not take the request as written (a field its provider
        // cannot honour): answered as a 400 when no deployment could.
        let mut refused: Option<TranslateError> = None;
        let mut tried = false;
        // Some deployment was skipped because its provider asked to wait (Retry-After, quota).
        let mut rate_limited = false;
        // Some deployment was skipped because its provider's budget is spent.
        let mut provider_budget: Option<String> = None;
        // Local deployments whose model refused the request (asked once, not per retry).
        let mut local_refused: Vec<usize> = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            let dep = step.deployment;
            let spec = dep.spec(model);
            let in_process = matches!(
                dep.provider.config.kind,
                ProviderKind::Mock(_) | ProviderKind::Local(_)
            );
            // A chat request for a local model: what it asks of the model, or why it cannot.
            let local_chat = match &dep.provider.config.kind {
                ProviderKind::Local(_) if !inbound.embeddings => match local_request(inbound) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        skip_refused(ctx, dep, spec, &mut refused, e);
                        continue;
                    }
                },
                _ => None,
            };
            let prepared = match prepare_for(inbound, model, dep) {
                _ if in_process => None,
                Ok(p) => Some(p),
                Err(e) => {
                    skip_refused(ctx, dep, spec, &mut refused, e);
                    continue;
                }
            };
            if let Some(gov) = ctx.governance.as_ref().filter(|g| g.has_provider_budgets()) {
                let estimate = crate::governance::deployment_cost_nanos(
                    model,
                    dep,
                    body.len(),
                    facts.max_tokens,
                );
                if !gov.provider_allows(dep.provider.name(), estimate) {
                    ctx.failures.push(TryFailure {
                        provider: dep.provider.name().to_string(),
                        model: spec.model.clone(),
                        reason: "skipped: the provider's budget is spent".into(),
                    });
                    provider_budget.get_or_insert_with(|| dep.provider.name().to_string());
                    continue;
                }
            }
            let acquired = dep
                .runtime
                .acquire(&routing.breaker, now_ms())
                .and_then(|()| {
                    if dep.provider.admit() {
                        Ok(())
                    } else {
                        Err(Unavailable::Quota)
                    }
                });
            if let Err(why) = acquired {
                rate_limited |= matches!(why, Unavailable::RetryAfter | Unavailable::Quota);
                match why {
                    Unavailable::CircuitOpen => dep.provider.metrics.skipped_circuit_open.inc(),
                    Unavailable::RetryAfter => dep.provider.metrics.skipped_retry_after.inc(),
                    Unavailable::Quota => dep.provider.metrics.skipped_quota.inc(),
                }
                // Skipped without a try: its circuit is open or the provider asked to wait.
                if !ctx
                    .failures
                    .iter()
                    .any(|f| f.provider == dep.provider.name() && f.model == spec.model)
                {
                    ctx.failures.push(TryFailure {
                        provider: dep.provider.name().to_string(),
                        model: spec.model.clone(),
                        reason: match why {
                            Unavailable::CircuitOpen => "skipped: circuit open".into(),
                            Unavailable::RetryAfter => {
                                "skipped: provider asked to retry later".into()
                            }
                            Unavailable::Quota => "skipped: provider quota used up".into(),
                        },
                    });
                }
                continue;
            }
            let now = now_ms();
            let is_last = !steps[i + 1..]
                .iter()
                .any(|s| s.deployment.runtime.available(now));
            if !step.backoff.is_zero() {
                if Instant::now() + step.backoff >= deadline {
                    break;
                }
                tokio::time::sleep(step.backoff).await;
            }
            if let ProviderKind::Mock(settings) = &dep.provider.config.kind {
                ctx.tries += 1;
                return self
                    .serve_mock(session, ctx, model, dep, settings, inbound)
                    .await;
            }
            if let ProviderKind::Local(_) = &dep.provider.config.kind {
                if local_refused.contains(&dep.index) {
                    continue;
                }
                ctx.tries += 1;
                let served = match local_chat {
                    Some(request) => {
                        self.serve_local_chat(session, ctx, model, dep, inbound, request, deadline)
                            .await
                    }
                    None => {
                        self.serve_local(session, ctx, model, dep, inbound, deadline)
                            .await
                    }
                };
                match served {
                    Ok(()) => return Ok(()),
                    Err(LocalMiss::Refused(e)) => {
                        // This model cannot take the request (e.g. the prompt exceeds its
                        // context): another deployment may. Not a try, and not asked again.
                        ctx.tries -= 1;
                        local_refused.push(dep.index);
                        skip_refused(ctx, dep, spec, &mut refused, e);
                        continue;
                    }
                    Err(LocalMiss::Spilled(reason)) => {
                        tried = true;
                        // Not the deployment's fault: it is busy. The next one answers.
                        dep.provider.metrics.skipped_quota.inc();
                        ctx.failures.push(TryFailure {
                            provider: dep.provider.name().to_string(),
                            model: spec.model.clone(),
                            reason: format!("spilled: {reason}"),
                        });
                        continue;
                    }
                    Err(LocalMiss::Failed(f)) => return Err(f),
                }
            }
            let Some(prepared) = prepared else {
                continue;
            };
            ctx.tries += 1;
            tried = true;
            // A hedge partner: the next available deployment in the plan that can take the request.
            let partner = routing.hedge_after.filter(|_| i == 0).and_then(|after| {
                steps[1..]
                    .iter()
                    .map(|s| s.deployment)
                    .filter(|d| {
                        !std::ptr::eq(*d, dep)
                            && d.runtime.available(now_ms())
                            && matches!(d.provider.config.kind, ProviderKind::Http { .. })
                    })
                    .find_map(|d| prepare_for(inbound, model, d).ok().map(|p| (after, d, p)))
            });
            let (attempt, dep, prepared) = match partner {
                None => {
                    let attempt = self
                        .try_within(
                            ctx,
                            dep,
                            &prepared,
                            facts.stream,
                            !is_last,
                            deadline,
                            routing,
                        )
                        .await;
                    (attempt, dep, prepared)
                }
                Some((after, other, other_prepared)) => {
                    // Boxed: a race holds two tries at once, and inline it would double the
                    // size of every request's future (which Pingora moves into a box per request).
                    let raced = Box::pin(self.race(
                        ctx,
                        model,
                        (dep, prepared),
                        (other, other_prepared),
                        after,
                        facts.stream,
                        deadline,
                    ))
                    .await;
                    match raced {
                        Raced::Won(d, committed, rw) => (Ok(*committed), d, rw),
                        Raced::Lost(d, e, rw) => (Err(e), d, rw),
                    }
                }
            };
            let spec = dep.spec(model);
            match attempt {
                Ok(committed) => {
                    dep.provider.metrics.attempt(AttemptOutcome::Ok);
                    if ctx.tries > 1 {
                        model.metrics.failovers.inc();
                    }
                    dep.runtime.observe_ttfb(committed.started.elapsed());
                    return self
                        .relay(
                            session,
                            ctx,
                            dep,
                            &spec.model,
                            committed,
                            &prepared,
                            inbound,
                        )
                        .await;
                }
                Err(e) => {
                    last_outcome = e.outcome;
                    let retry = note_failure(ctx, model, dep, e);
                    if !retry || Instant::now() >= deadline {
                        break;
                    }
                }
            }
        }
        if let (false, Some(e)) = (tried, refused) {
            return Err(Failure::Respond(GatewayError::Untranslatable(e)));
        }
        if let (false, Some(p)) = (tried, provider_budget) {
            let limit_usd = ctx
                .governance
                .as_ref()
                .and_then(|g| {
                    g.budgets.iter().find(|b| {
                        matches!(&b.settings.scope, crate::config::BudgetScope::Provider(n) if *n == p)
                    })
                })
                .map(|b| b.settings.limit_usd)
                .unwrap_or(0.0);
            return Err(Failure::Respond(GatewayError::BudgetExceeded {
                scope: format!("provider:{p}"),
                limit_usd,
                resets_at: None,
            }));
        }
        if !tried && rate_limited {
            // Nothing was sent: every provider that could answer asked to wait. That is a 429
            // for the caller (with a Retry-After), not a gateway failure.
            return Err(Failure::Respond(GatewayError::UpstreamRateLimited {
                model: model.config.name.clone(),
                tries: ctx.failures.clone(),
            }));
        }
        let failures = ctx.failures.clone();
        let name = model.config.name.clone();
        Err(Failure::Respond(
            if last_outcome == AttemptOutcome::Timeout {
                GatewayError::UpstreamTimeout {
                    model: name,
                    tries: failures,
                }
            } else {
                GatewayError::NoDeploymentAvailable {
                    model: name,
                    tries: failures,
                }
            },
        ))
    }

    /// One try, bounded by what is left of the request's deadline.
    #[allow(clippy::too_many_arguments)]
    async fn try_within(
        &self,
        ctx: &RequestCtx,
        dep: &RoutedDeployment,
        prepared: &Prepared,
        stream: bool,
        may_retry: bool,
        deadline: Instant,
        routing: &crate::config::RoutingPolicy,
    ) -> Result<Committed, TryError> {
        let ProviderKind::Http {
            dialect,
            endpoint,
            api_key,
            ..
        } = &dep.provider.config.kind
        else {
            return Err(TryError {
                outcome: AttemptOutcome::ConnectError,
                retry_after: None,
                reason: "not an HTTP provider".into(),
            });
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        pingora_timeout::timeout(
            remaining,
            self.try_http(
                ctx,
                dep,
                Upstream {
                    dialect: *dialect,
                    endpoint,
                    api_key: api_key.as_ref(),
                },
                prepared,
                stream,
                may_retry,
                &routing.retry.on,
            ),
        )
        .await
        .unwrap_or_else(|_| {
            Err(TryError {
                outcome: AttemptOutcome::Timeout,
                retry_after: None,
                reason: format!("request deadline of {:?} reached", routing.deadline),
            })
        })
    }

    /// A hedged try: `first` alone until `after`, then `second` too; the first response header
    /// wins and the other try is cancelled (counted as `hedge_cancelled`). When one fails, the
    /// other is awaited. The loser's failure, if any, is recorded here.
    #[allow(clippy::too_many_arguments)]
    async fn race<'m>(
        &self,
        ctx: &mut RequestCtx,
        model: &'m RoutedModel,
        first: (&'m RoutedDeployment, Prepared),
        second: (&'m RoutedDeployment, Prepared),
        after: Duration,
        stream: bool,
        deadline: Instant,
    ) -> Raced<'m> {
        let routing = &model.config.routing;
        let (dep_a, rw_a) = first;
        let (second, rw_b) = second;
        let (body_a, body_b) = (rw_a.clone(), rw_b.clone());
        let (winner, loser_failure, hedged): (
            Raced<'m>,
            Option<(&RoutedDeployment, TryError)>,
            bool,
        ) = {
            let ctx_view: &RequestCtx = ctx;
            let fut_a = self.try_within(ctx_view, dep_a, &body_a, stream, true, deadline, routing);
            tokio::pin!(fut_a);
            let early = tokio::select! {
                r = &mut fut_a => Some(r),
                _ = tokio::time::sleep(after) => None,
            };
            match early {
                Some(Ok(c)) => (Raced::Won(dep_a, Box::new(c), rw_a), None, false),
                Some(Err(e)) => (Raced::Lost(dep_a, e, rw_a), None, false),
                None if second.runtime.acquire(&routing.breaker, now_ms()).is_err() => {
                    match fut_a.await {
                        Ok(c) => (Raced::Won(dep_a, Box::new(c), rw_a), None, false),
                        Err(e) => (Raced::Lost(dep_a, e, rw_a), None, false),
                    }
                }
                None => {
                    model.metrics.hedges.inc();
                    let fut_b =
                        self.try_within(ctx_view, second, &body_b, stream, true, deadline, routing);
                    tokio::pin!(fut_b);
                    tokio::select! {
                        ra = &mut fut_a => match ra {
                            Ok(c) => {
                                second.provider.metrics.attempt(AttemptOutcome::HedgeCancelled);
                                (Raced::Won(dep_a, Box::new(c), rw_a), None, true)
                            }
                            Err(ea) => match fut_b.await {
                                Ok(c) => (Raced::Won(second, Box::new(c), rw_b), Some((dep_a, ea)), true),
                                Err(eb) => (Raced::Lost(second, eb, rw_b), Some((dep_a, ea)), true),
                            },
                        },
                        rb = &mut fut_b => match rb {
                            Ok(c) => {
                                dep_a.provider.metrics.attempt(AttemptOutcome::HedgeCancelled);
                                (Raced::Won(second, Box::new(c), rw_b), None, true)
                            }
                            Err(eb) => match fut_a.await {
                                Ok(c) => (Raced::Won(dep_a, Box::new(c), rw_a), Some((second, eb)), true),
                                Err(ea) => (Raced::Lost(dep_a, ea, rw_a), Some((second, eb)), true),
                            },
                        },
                    }
                }
            }
        };
        if hedged {
            ctx.tries += 1;
        }
        if let Some((d, e)) = loser_failure {
            note_failure(ctx, model, d, e);
        }
        winner
    }

    /// One try against an HTTP upstream, up to its response header. A retryable status is a
    /// failure only when `may_retry` (there is a next step to take).
    #[allow(clippy::too_many_arguments)]
    async fn try_http(
        &self,
        ctx: &RequestCtx,
        dep: &RoutedDeployment,
        upstream: Upstream<'_>,
        prepared: &Prepared,
        stream: bool,
        may_retry: bool,
        on: &RetryOn,
    ) -> Result<Committed, TryError> {
        let endpoint = upstream.endpoint;
        let body = &prepared.body;
        let timeouts = dep.provider.config.timeouts;
        let addr = dep.provider.address().await.map_err(|reason| TryError {
            outcome: AttemptOutcome::ConnectError,
            retry_after: None,
            reason,
        })?;
        let mut peer = HttpPeer::new(
            addr,
            endpoint.tls,
            if endpoint.tls {
                endpoint.host.clone()
            } else {
                String::new()
            },
        );
        peer.options.connection_timeout = Some(timeouts.connect);
        peer.options.total_connection_timeout = Some(timeouts.connect);
        peer.options.idle_timeout = Some(POOL_IDLE_TIMEOUT);
        peer.options.ca = dep.provider.ca.clone();
        // Streams must show their first event within `first_byte`; a non-stream answer comes
        // whole, so its wait is bounded by `total` instead.
        let header_timeout = if stream {
            timeouts.first_byte
        } else {
            timeouts.total
        };
        let started = Instant::now();
        let mut header = Some(self.request_header(ctx, &upstream, prepared, stream)?);
        // A pooled connection may have been closed by the upstream meanwhile: one fresh retry.
        let mut fresh_retry = true;
        loop {
            // Boxed: Pingora's connect future is ~9 KB (TLS and HTTP/2 set-up states); inline,
            // it made every try's future that big, and each try is moved into its timeout and the
            // request's future into Pingora's box — ~40 KB of copying per request.
            let (mut up, reused) = Box::pin(self.connector.get_http_session(&peer))
                .await
                .map_err(|e| classify(&e, "connecting"))?;
            up.set_write_timeout(Some(timeouts.idle));
            up.set_read_timeout(Some(header_timeout));
            let req = match header.take() {
                Some(h) => h,
                None => self.request_header(ctx, &upstream, prepared, stream)?,
            };
            let sent = async {
                up.write_request_header(Box::new(req)).await?;
                up.write_request_body(body.clone(), true).await?;
                up.finish_request_body().await?;
                up.read_response_header().await
            }
            .await;
            match sent {
                Ok(()) => {}
                Err(e) if reused && fresh_retry && !is_timeout(&e) => {
                    fresh_retry = false;
                    continue;
                }
                Err(e) => return Err(classify(&e, "waiting for the response")),
            }
            let status = up
                .response_header()
                .map(|h| h.status.as_u16())
                .unwrap_or(502);
            if let Some(h) = up.response_header() {
                dep.provider.quota.observe_headers(&h.headers, now_ms());
            }
            if may_retry {
                let outcome = match status {
                    // A loop further down the mesh: retrying elsewhere would only loop again.
                    508 => None,
                    429 if on.too_many_requests => Some(AttemptOutcome::Status429),
                    500..=599 if on.server_error => Some(AttemptOutcome::Status5xx),
                    _ => None,
                };
                if let Some(outcome) = outcome {
                    let headers = up.response_header().map(|h| &h.headers);
                    let retry_after = headers.and_then(|h| {
                        crate::breaker::parse_retry_after(
                            h.get("retry-after").map(|v| v.as_bytes()),
                            h.get("retry-after-ms").map(|v| v.as_bytes()),
                        )
                    });
                    return Err(TryError {
                        outcome,
                        reason: format!("upstream answered {status}"),
                        retry_after,
                    });
                }
            }
            // Providers send a stream's header at once and its first event when the first token
            // is ready: wait for that event (within `first_byte`) before committing.
            let first_chunk = if stream && (200..300).contains(&status) {
                match up.read_response_body().await {
                    Ok(Some(chunk)) => Some(chunk),
                    Ok(None) => None,
                    Err(e) => return Err(classify(&e, "waiting for the first token")),
                }
            } else {
                None
            };
            return Ok(Committed {
                upstream: up,
                peer,
                started,
                first_chunk,
            });
        }
    }

    fn request_header(
        &self,
        ctx: &RequestCtx,
        upstream: &Upstream<'_>,
        prepared: &Prepared,
        stream: bool,
    ) -> Result<RequestHeader, TryError> {
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
        let req =
            RequestHeader::build_no_case("POST", path.as_bytes(), Some(12)).map_err(internal)?;
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
            http::HeaderValue::from(ctx.hops + 1),
        );
        if let Some(trace) = &ctx.trace {
            h.insert(
                &rh::TRACEPARENT,
                rh::value(&trace.upstream_header()).map_err(internal)?,
            );
        }
        let key = upstream.api_key.map(Secret::expose);
        for (name, value) in providers::auth_headers(upstream.dialect, key) {
            let name = header::HeaderName::from_bytes(name.as_bytes()).map_err(internal)?;
            let mut value = rh::value(&value).map_err(internal)?;
            // Credentials: never printed by `Debug`, never indexed by HPACK.
            value.set_sensitive(true);
            h.insert(name, value);
        }
        if let (Mode::Observed(Dialect::Anthropic), Some(beta)) =
            (prepared.mode, &ctx.anthropic_beta)
        {
            // Same-format passthrough: the caller's beta features reach Anthropic as asked.
            h.insert(&rh::ANTHROPIC_BETA, rh::value(beta).map_err(internal)?);
        }
        let req = RequestHeader::from(parts);
        Ok(req)
    }

    /// Writes the committed upstream response to the caller, event by event for streams, in the
    /// caller's format.
    #[allow(clippy::too_many_arguments)]
    async fn relay(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        dep: &RoutedDeployment,
        upstream_model: &str,
        committed: Committed,
        prepared: &Prepared,
        inbound: &Inbound<'_>,
    ) -> Result<(), Failure> {
        let Committed {
            mut upstream,
            peer,
            started,
            mut first_chunk,
        } = committed;
        let stream_requested = inbound.facts.stream;
        let caller = inbound.caller;
        let translated = matches!(prepared.mode, Mode::Translated(_));
        let timeouts = dep.provider.config.timeouts;
        let Some(up_header) = upstream.response_header() else {
            return Err(Failure::Respond(GatewayError::NoDeploymentAvailable {
                model: String::new(),
                tries: Vec::new(),
            }));
        };
        let status = up_header.status.as_u16();
        let success = (200..300).contains(&status);
        let upstream_sse = up_header
            .headers
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        // A translated stream is a stream whatever the provider calls it (Ollama sends NDJSON).
        let is_stream = success
            && if translated {
                stream_requested
            } else {
                upstream_sse
            };
        let has_length = up_header.headers.get("content-length").is_some();
        let retry_after_secs = crate::breaker::parse_retry_after(
            up_header.headers.get("retry-after").map(|v| v.as_bytes()),
            up_header
                .headers
                .get("retry-after-ms")
                .map(|v| v.as_bytes()),
        )
        .map(|d| d.as_secs().max(1));
        // The caller's head is edited as plain parts (see `response_headers`).
        let mut resp = up_header.as_owned_parts();
        let h = &mut resp.headers;
        // Room for what is added below (the gateway's own headers), so the map grows at most once.
        h.reserve(12);
        for name in [
            &http::header::CONNECTION,
            &rh::KEEP_ALIVE,
            &rh::PROXY_CONNECTION,
            &http::header::TRANSFER_ENCODING,
            &http::header::TE,
            &http::header::TRAILER,
            &http::header::UPGRADE,
        ] {
            h.remove(name);
        }
        if let Some(upstream_id) = h.remove(&rh::X_REQUEST_ID) {
            h.insert(&rh::X_UPSTREAM_REQUEST_ID, upstream_id);
        }
        if is_stream || !has_length {
            h.remove(http::header::CONTENT_LENGTH);
            h.insert(
                http::header::TRANSFER_ENCODING,
                http::HeaderValue::from_static("chunked"),
            );
        }
        if is_stream && translated {
            h.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/event-stream"),
            );
            h.insert(
                http::header::CACHE_CONTROL,
                http::HeaderValue::from_static("no-cache"),
            );
        }
        if !prepared.dropped.is_empty() {
            if let Ok(v) = rh::value(&prepared.dropped.join(", ")) {
                h.insert(&rh::X_SWITCHYARD_DROPPED, v);
            }
        }
        // The provider's quota headers describe the gateway's upstream account, not the caller's
        // limits (those are the gateway's own `x-ratelimit-*`, added below).
        let quota_headers: Vec<_> = h
            .keys()
            .filter(|k| {
                let k = k.as_str();
                k.starts_with("x-ratelimit-") || k.starts_with("anthropic-ratelimit-")
            })
            .cloned()
            .collect();
        for name in quota_headers {
            h.remove(&name);
        }
        rh::add_gateway_headers(h, ctx, Some((dep.provider.name(), upstream_model)))
            .map_err(Failure::Abort)?;
        ctx.status = status;
        ctx.served = Some(dep.index);
        ctx.stream = is_stream;
        if success {
            dep.provider.record_success();
        } else {
            ctx.error_code = Some("upstream_status");
        }
        // A 4xx other than 429 is the caller's problem, not the deployment's.
        if status == 429 || status >= 500 {
            if dep.runtime.on_failure(&model_breaker(ctx), now_ms()) {
                dep.provider.metrics.circuit_opened.inc();
            }
        } else {
            dep.runtime.on_success();
        }
        let response_id = format!("{}{}", caller.id_prefix(), ctx.request_id);
        let created = unix_now();
        // A whole, modest, successful non-stream answer is read before its header is sent, so the
        // header can say what it cost; an answer (or error) to translate is always read whole.
        // Anything else streams through as it comes.
        let declared = up_header
            .headers
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let read_whole = !is_stream
            && (translated
                || (success
                    && !stream_requested
                    && declared.is_some_and(|n| n <= MAX_PRICED_BODY)));
        if read_whole {
            upstream.set_read_timeout(Some(timeouts.idle));
            let limit = if translated {
                MAX_TRANSLATED_BODY
            } else {
                MAX_PRICED_BODY
            };
            let mut whole = BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
            if let Some(c) = first_chunk.take() {
                whole.extend_from_slice(&c);
            }
            loop {
                match upstream.read_response_body().await {
                    Ok(Some(chunk)) if whole.len() + chunk.len() <= limit => {
                        whole.extend_from_slice(&chunk)
                    }
                    Ok(None) => break,
                    outcome => {
                        let reason = match outcome {
                            Err(e) => {
                                format!("upstream failed mid-response: {}", e.etype().as_str())
                            }
                            _ => format!("upstream response exceeds {limit} bytes"),
                        };
                        dep.provider.metrics.attempt(AttemptOutcome::StreamError);
                        dep.provider.record_failure(&reason);
                        return Err(Failure::Respond(GatewayError::NoDeploymentAvailable {
                            model: ctx
                                .model
                                .as_ref()
                                .map(|m| m.config.name.clone())
                                .unwrap_or_default(),
                            tries: vec![TryFailure {
                                provider: dep.provider.name().to_string(),
                                model: upstream_model.to_string(),
                                reason,
                            }],
                        }));
                    }
                }
            }
            let raw = whole.freeze();
            let (status, body) = if success {
                match translate::translate_body(
                    prepared.mode,
                    caller,
                    raw,
                    &response_id,
                    upstream_model,
                    created,
                ) {
                    Ok((body, usage)) => {
                        ctx.usage = usage;
                        (status, body)
                    }
                    Err(e) => {
                        // A 2xx carrying an error (or nothing readable): the caller gets the error.
                        dep.provider.record_failure(&e.message);
                        ctx.error_code = Some("upstream_status");
                        let (st, body) = caller.encode_error(&e, &ctx.request_id);
                        (st, Bytes::from(body))
                    }
                }
            } else {
                translate::translate_error(
                    prepared.mode,
                    caller,
                    status,
                    &raw,
                    retry_after_secs,
                    &ctx.request_id,
                )
                .unwrap_or((status, raw))
            };
            if status != resp.status.as_u16() {
                if let Ok(code) = http::StatusCode::from_u16(status) {
                    resp.status = code;
                }
                ctx.status = status;
            }
            let h = &mut resp.headers;
            if translated {
                h.insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
            }
            h.remove(http::header::TRANSFER_ENCODING);
            rh::set_length(h, body.len());
            if let (Some(u), Some(m)) = (ctx.usage, ctx.model.as_ref()) {
                let cost = crate::cost::cost_usd(&dep.spec(m).price, &u);
                h.insert(&rh::X_SWITCHYARD_COST_USD, cost_value(cost));
                dep.provider
                    .add_tokens(u.prompt_tokens + u.completion_tokens);
            }
            session
                .write_response_header(rh::finish(resp), false)
                .await
                .map_err(Failure::Abort)?;
            ctx.mark_first_byte();
            self.commit_row(ctx).await;
            session
                .write_response_body(Some(body), true)
                .await
                .map_err(Failure::Abort)?;
            self.complete(ctx, dep, upstream, &peer, started).await;
            return Ok(());
        }
        session
            .write_response_header(rh::finish(resp), false)
            .await
            .map_err(Failure::Abort)?;
        let _stream_guard = is_stream.then(|| ctx.stream_guard());

        let try_deadline = started + timeouts.total;
        let mut relay = is_stream.then(|| {
            StreamRelay::new(
                prepared.mode,
                caller,
                &response_id,
                upstream_model,
                created,
                inbound.include_usage(),
            )
        });
        let mut kept: Vec<Bytes> = Vec::new();
        let mut midstream_error: Option<(AttemptOutcome, ErrorKind, String)> = None;
        loop {
            // One read timeout bounds both the idle gap and what is left of `total`, so no timer
            // beyond Pingora's own is armed per chunk.
            let left = try_deadline.saturating_duration_since(Instant::now());
            upstream.set_read_timeout(Some(timeouts.idle.min(left)));
            let next = match first_chunk.take() {
                Some(c) => Ok(Some(c)),
                None => upstream.read_response_body().await,
            };
            let chunk = match next {
                Err(e) => {
                    midstream_error = Some(if !is_timeout(&e) {
                        (
                            AttemptOutcome::StreamError,
                            ErrorKind::Server,
                            format!("upstream failed mid-response: {}", e.etype().as_str()),
                        )
                    } else if Instant::now() >= try_deadline {
                        (
                            AttemptOutcome::Timeout,
                            ErrorKind::Timeout,
                            format!(
                                "response exceeded the total timeout of {:?}",
                                timeouts.total
                            ),
                        )
                    } else {
                        (
                            AttemptOutcome::Timeout,
                            ErrorKind::Timeout,
                            format!(
                                "upstream sent nothing for {:?} (idle timeout)",
                                timeouts.idle
                            ),
                        )
                    });
                    break;
                }
                Ok(None) => break,
                Ok(Some(chunk)) => chunk,
            };
            let out = match relay.as_mut() {
                Some(r) => r.push(chunk),
                None => {
                    if success && !stream_requested {
                        kept.push(chunk.clone());
                    }
                    Some(chunk)
                }
            };
            if let Some(out) = out {
                ctx.mark_first_byte();
                ctx.streamed_events += 1;
                if let Some(r) = relay.as_ref().filter(|r| r.completed()) {
                    // This chunk ends the stream: its record is committed first (strict mode).
                    ctx.usage = r.usage();
                    self.commit_row(ctx).await;
                }
                session
                    .write_response_body(Some(out), false)
                    .await
                    .map_err(Failure::Abort)?;
                if relay.as_ref().is_some_and(|r| !r.completed()) && over_cutoff(ctx, dep) {
                    // The budget's cutoff: end the stream cleanly, saying why; the upstream
                    // connection is dropped (nothing more is bought).
                    ctx.usage = relay.as_ref().and_then(|r| r.usage());
                    ctx.error_code = Some("budget_exceeded");
                    session
                        .write_response_body(Some(budget_stop_event(inbound.caller)), true)
                        .await
                        .map_err(Failure::Abort)?;
                    return Ok(());
                }
            }
        }
        if let Some(r) = relay.as_mut() {
            if midstream_error.is_none() {
                if let Some(tail) = r.finish() {
                    session
                        .write_response_body(Some(tail), false)
                        .await
                        .map_err(Failure::Abort)?;
                }
            }
            ctx.usage = r.usage();
            if midstream_error.is_none() {
                if let Some(e) = r.provider_error() {
                    // The provider reported an error inside the stream (already relayed to the
                    // caller in its format): it counts against the deployment.
                    dep.provider.metrics.attempt(AttemptOutcome::StreamError);
                    dep.provider.record_failure(&e.message);
                    ctx.error_code = Some("upstream_stream_error");
                    session
                        .write_response_body(None, true)
                        .await
                        .map_err(Failure::Abort)?;
                    return Ok(());
                }
            }
        } else if success {
            ctx.usage = usage_of(&kept);
        }
        if let Some(u) = ctx.usage {
            dep.provider
                .add_tokens(u.prompt_tokens + u.completion_tokens);
        }
        if let Some((outcome, kind, reason)) = midstream_error {
            dep.provider.metrics.attempt(outcome);
            dep.provider.record_failure(&reason);
            ctx.error_code = Some("upstream_stream_error");
            log::warn!("request {}: {reason}", ctx.request_id);
            if let Some(r) = relay.as_mut() {
                // Tell the caller in its own stream format, then end the stream cleanly.
                let ev = r.fail(kind, &reason);
                session
                    .write_response_body(Some(ev), true)
                    .await
                    .map_err(Failure::Abort)?;
                return Ok(());
            }
            // A body with a length cannot signal an error: drop the connection so the caller
            // sees a truncated response instead of a silently short one.
            return Err(Failure::Abort(Error::explain(
                ErrorType::ReadError,
                "upstream failed mid-response",
            )));
        }
        if success {
            self.commit_row(ctx).await;
        }
        session
            .write_response_body(None, true)
            .await
            .map_err(Failure::Abort)?;
        self.complete(ctx, dep, upstream, &peer, started).await;
        Ok(())
    }

    /// Bookkeeping once a response went out in full: the try's duration, the request marked
    /// complete, and the upstream connection back to the pool when its body was read to the end.
    async fn complete(
        &self,
        ctx: &mut RequestCtx,
        dep: &RoutedDeployment,
        mut upstream: HttpSession,
        peer: &HttpPeer,
        started: Instant,
    ) {
        dep.provider
            .metrics
            .upstream_duration
            .observe(started.elapsed().as_secs_f64());
        ctx.completed = true;
        if upstream.response_done() {
            self.connector
                .release_http_session(upstream, peer, Some(POOL_IDLE_TIMEOUT))
                .await;
        }
    }

    /// Embeddings from the local ONNX pool: the job goes to a worker thread through the bounded
    /// queue; this task waits without blocking its thread. A full queue or a long wait spills.
    async fn serve_local(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        model: &RoutedModel,
        dep: &RoutedDeployment,
        inbound: &Inbound<'_>,
        deadline: Instant,
    ) -> Result<(), LocalMiss> {
        let spec = dep.spec(model);
        let Some(pool) = dep.provider.local.as_ref() else {
            return Err(LocalMiss::Spilled(local_unavailable(dep)));
        };
        let texts = embedding_inputs(inbound.body).map_err(|e| {
            LocalMiss::Failed(Failure::Respond(GatewayError::Untranslatable(
                TranslateError::invalid(e, Some("input".to_string())),
            )))
        })?;
        let started = Instant::now();
        let answer = pool
            .try_embed(std::path::PathBuf::from(&spec.model), texts)
            .map_err(|s| LocalMiss::Spilled(s.to_string()))?;
        let left = deadline.saturating_duration_since(Instant::now());
        let result = match tokio::time::timeout(left, answer).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => return Err(LocalMiss::Spilled("the worker stopped".into())),
            Err(_) => return Err(LocalMiss::Spilled("request deadline reached".into())),
        };
        let (vectors, tokens) = match result {
            Ok(v) => v,
            Err(spill) => {
                if matches!(spill, Spill::Waited(_)) {
                    pool.spilled();
                }
                return Err(LocalMiss::Spilled(spill.to_string()));
            }
        };
        let data: Vec<serde_json::Value> = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| serde_json::json!({"object": "embedding", "index": i, "embedding": v}))
            .collect();
        let body = Bytes::from(
            serde_json::to_vec(&serde_json::json!({
                "object": "list",
                "data": data,
                "model": model.config.name,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }))
            .unwrap_or_default(),
        );
        served_in_process(ctx, dep, embedding_usage(tokens));
        dep.runtime.observe_ttfb(started.elapsed());
        self.write_whole_json(session, ctx, dep, spec, body)
            .await
            .map_err(|e| LocalMiss::Failed(Failure::Abort(e)))
    }

    /// A chat answer from a local generation model: the job goes to a worker thread, whose
    /// tokens come back on a channel as they are produced and go out through the caller's
    /// encoder, as a remote provider's would. Until the first event the job may still spill to
    /// the next deployment; after it, the answer is this deployment's.
    #[allow(clippy::too_many_arguments)]
    async fn serve_local_chat(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        model: &RoutedModel,
        dep: &RoutedDeployment,
        inbound: &Inbound<'_>,
        mut request: GenerateRequest,
        deadline: Instant,
    ) -> Result<(), LocalMiss> {
        let spec = dep.spec(model);
        let Some(pool) = dep.provider.local.as_ref() else {
            return Err(LocalMiss::Spilled(local_unavailable(dep)));
        };
        if request.max_tokens.is_none() {
            request.max_tokens = spec.max_tokens.and_then(|m| u32::try_from(m).ok());
        }
        let started = Instant::now();
        let mut events = pool
            .try_generate(std::path::PathBuf::from(&spec.model), request)
            .map_err(|s| LocalMiss::Spilled(s.to_string()))?;
        let prompt_tokens = match tokio::time::timeout_at(deadline.into(), events.recv()).await {
            Err(_) => return Err(LocalMiss::Spilled("request deadline reached".into())),
            Ok(None) => return Err(LocalMiss::Spilled("the worker stopped".into())),
            Ok(Some(GenEvent::Started { prompt_tokens })) => prompt_tokens,
            Ok(Some(GenEvent::Spilled(spill))) => {
                if matches!(spill, Spill::Waited(_)) {
                    pool.spilled();
                }
                return Err(LocalMiss::Spilled(spill.to_string()));
            }
            Ok(Some(GenEvent::Rejected(why))) => {
                return Err(LocalMiss::Refused(TranslateError::invalid(why, None)))
            }
            Ok(Some(other)) => {
                return Err(LocalMiss::Spilled(format!(
                    "unexpected first event from the local pool: {other:?}"
                )))
            }
        };
        let usage = |completion: u64| openai::Usage {
            prompt_tokens,
            completion_tokens: completion,
            total_tokens: prompt_tokens + completion,
            ..Default::default()
        };
        served_in_process(ctx, dep, usage(0));
        ctx.stream = inbound.facts.stream;
        let caller = inbound.caller;
        let id = format!("{}{}", caller.id_prefix(), ctx.request_id);
        let public_model = model.config.name.as_str();
        let created = unix_now();
        let failed =
            |why: String| LocalMiss::Failed(Failure::Respond(GatewayError::LocalInference(why)));

        if !inbound.facts.stream {
            let mut text = String::new();
            let (finish, completion) = loop {
                match tokio::time::timeout_at(deadline.into(), events.recv()).await {
                    Err(_) => return Err(failed("the request deadline was reached".into())),
                    Ok(None) => return Err(failed("the worker stopped".into())),
                    Ok(Some(GenEvent::Text(t))) => text.push_str(&t),
                    Ok(Some(GenEvent::Finished {
                        finish,
                        completion_tokens,
                        ..
                    })) => break (finish, completion_tokens),
                    Ok(Some(GenEvent::Failed(why))) => return Err(failed(why)),
                    Ok(Some(other)) => return Err(failed(format!("unexpected event {other:?}"))),
                }
            };
            dep.runtime.observe_ttfb(started.elapsed());
            ctx.usage = Some(usage(completion));
            let response = ChatResponse {
                id: id.clone(),
                model: public_model.to_string(),
                content: if text.is_empty() {
                    Vec::new()
                } else {
                    vec![OutputPart::Text(text)]
                },
                finish,
                usage: Some(canonical_usage(prompt_tokens, completion)),
            };
            let body = Bytes::from(caller.encode_response(&response, &id, public_model, created));
            return self
                .write_whole_json(session, ctx, dep, spec, body)
                .await
                .map_err(|e| LocalMiss::Failed(Failure::Abort(e)));
        }

        let abort = |e| LocalMiss::Failed(Failure::Abort(e));
        write_stream_header(session, ctx, dep, spec)
            .await
            .map_err(abort)?;
        let _stream_guard = ctx.stream_guard();
        let mut encoder =
            StreamEncoder::new(caller, &id, public_model, created, inbound.include_usage());
        let mut out = BytesMut::new();
        encoder.push(
            &StreamEvent::Start {
                id: Some(id.clone()),
                model: Some(public_model.to_string()),
            },
            &mut out,
        );
        let mut first = true;
        let mut completion = 0u64;
        loop {
            let Some(event) = events.recv().await else {
                encoder.push(
                    &StreamEvent::Error(ProviderError::new(
                        ErrorKind::Server,
                        "local inference stopped unexpectedly",
                    )),
                    &mut out,
                );
                ctx.error_code = Some("local_inference_failed");
                break;
            };
            let done = match event {
                GenEvent::Text(t) => {
                    completion += 1;
                    encoder.push(&StreamEvent::TextDelta(t), &mut out);
                    false
                }
                GenEvent::Finished {
                    finish,
                    completion_tokens,
                    ..
                } => {
                    completion = completion_tokens;
                    encoder.push(
                        &StreamEvent::Usage(canonical_usage(prompt_tokens, completion)),
                        &mut out,
                    );
                    encoder.push(&StreamEvent::Finish(finish), &mut out);
                    encoder.push(&StreamEvent::End, &mut out);
                    true
                }
                GenEvent::Failed(why) => {
                    encoder.push(
                        &StreamEvent::Error(ProviderError::new(
                            ErrorKind::Server,
                            format!("local inference failed: {why}"),
                        )),
                        &mut out,
                    );
                    ctx.error_code = Some("local_inference_failed");
                    true
                }
                other => {
                    log::error!("local pool: unexpected event {other:?}");
                    false
                }
            };
            ctx.usage = Some(usage(completion));
            if out.is_empty() {
                continue;
            }
            if first {
                first = false;
                dep.runtime.observe_ttfb(started.elapsed());
                ctx.mark_first_byte();
            }
            ctx.streamed_events += 1;
            if done && ctx.error_code.is_none() {
                self.commit_row(ctx).await;
            }
            session
                .write_response_body(Some(out.split().freeze()), false)
                .await
                .map_err(abort)?;
            if done {
                break;
            }
            if over_cutoff(ctx, dep) {
                // Dropping the receiver stops the worker's generation at its next token.
                ctx.error_code = Some("budget_exceeded");
                session
                    .write_response_body(Some(budget_stop_event(caller)), true)
                    .await
                    .map_err(abort)?;
                return Ok(());
            }
        }
        session
            .write_response_body(None, true)
            .await
            .map_err(abort)?;
        ctx.completed = ctx.error_code.is_none();
        Ok(())
    }

    /// Writes a whole JSON answer produced in process (mock, local pool): gateway and cost
    /// headers, then — after the strict-mode ledger commit — the body.
    async fn write_whole_json(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        dep: &RoutedDeployment,
        spec: &crate::config::Deployment,
        body: Bytes,
    ) -> pingora_error::Result<()> {
        let mut resp = rh::head(200, 16)?;
        let h = &mut resp.headers;
        rh::add_gateway_headers(h, ctx, Some((dep.provider.name(), &spec.model)))?;
        if let Some(u) = &ctx.usage {
            let cost = crate::cost::cost_usd(&spec.price, u);
            h.insert(&rh::X_SWITCHYARD_COST_USD, cost_value(cost));
        }
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        rh::set_length(h, body.len());
        session
            .write_response_header(rh::finish(resp), false)
            .await?;
        ctx.mark_first_byte();
        self.commit_row(ctx).await;
        session.write_response_body(Some(body), true).await?;
        ctx.completed = true;
        Ok(())
    }

    /// Answers from the built-in mock provider (OpenAI-format answers, translated for callers
    /// of other formats like any provider's).
    async fn serve_mock(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        model: &RoutedModel,
        dep: &RoutedDeployment,
        settings: &MockSettings,
        inbound: &Inbound<'_>,
    ) -> Result<(), Failure> {
        let spec = dep.spec(model);
        let facts = inbound.facts;
        let caller = inbound.caller;
        if inbound.embeddings {
            let (body, tokens) = crate::mock::embeddings_body(inbound.body, &spec.model)
                .map_err(|e| Failure::Respond(GatewayError::InvalidMockRequest(e)))?;
            if !settings.latency.is_zero() {
                tokio::time::sleep(settings.latency).await;
            }
            served_in_process(ctx, dep, embedding_usage(tokens));
            return self
                .write_whole_json(session, ctx, dep, spec, body)
                .await
                .map_err(Failure::Abort);
        }
        let max_tokens = facts.max_tokens.or(spec.max_tokens);
        let mut answer = MockAnswer::generate(inbound.body, max_tokens)
            .map_err(|e| Failure::Respond(GatewayError::InvalidMockRequest(e)))?;
        if caller != Caller::OpenAi {
            answer.include_usage = true;
        }
        if !settings.latency.is_zero() {
            tokio::time::sleep(settings.latency).await;
        }
        let created = unix_now();
        let id = format!("{}{}", caller.id_prefix(), ctx.request_id);
        served_in_process(ctx, dep, answer.usage_counts());
        ctx.stream = facts.stream;
        // The mock speaks OpenAI; other callers get it through the same translation as a
        // provider's answer.
        let mode = if caller == Caller::OpenAi {
            Mode::OpenAiPassthrough {
                usage_injected: false,
            }
        } else {
            Mode::Translated(Dialect::OpenAi)
        };
        if !facts.stream {
            let raw = answer.completion_body(&id, &spec.model, created);
            let (body, _) = translate::translate_body(mode, caller, raw, &id, &spec.model, created)
                .map_err(|e| Failure::Respond(GatewayError::InvalidMockRequest(e.message)))?;
            return self
                .write_whole_json(session, ctx, dep, spec, body)
                .await
                .map_err(Failure::Abort);
        }
        write_stream_header(session, ctx, dep, spec)
            .await
            .map_err(Failure::Abort)?;
        let _stream_guard = ctx.stream_guard();
        let mut relay = StreamRelay::new(
            mode,
            caller,
            &id,
            &spec.model,
            created,
            inbound.include_usage(),
        );
        let events = answer.stream_events(&id, &spec.model, created, settings.chunks);
        for (i, ev) in events.into_iter().enumerate() {
            if i > 0 && !settings.chunk_interval.is_zero() {
                tokio::time::sleep(settings.chunk_interval).await;
            }
            if let Some(out) = relay.push(ev) {
                ctx.mark_first_byte();
                ctx.streamed_events += 1;
                if relay.completed() {
                    self.commit_row(ctx).await;
                }
                session
                    .write_response_body(Some(out), false)
                    .await
                    .map_err(Failure::Abort)?;
                if !relay.completed() && over_cutoff(ctx, dep) {
                    ctx.usage = None;
                    ctx.error_code = Some("budget_exceeded");
                    session
                        .write_response_body(Some(budget_stop_event(caller)), true)
                        .await
                        .map_err(Failure::Abort)?;
                    return Ok(());
                }
            }
        }
        if let Some(tail) = relay.finish() {
            session
                .write_response_body(Some(tail), false)
                .await
                .map_err(Failure::Abort)?;
        }
        session
            .write_response_body(None, true)
            .await
            .map_err(Failure::Abort)?;
        ctx.completed = true;
        Ok(())
    }
}

/// The 200 header of a stream produced in process (mock, local pool): gateway headers, SSE.
async fn write_stream_header(
    session: &mut Session,
    ctx: &RequestCtx,
    dep: &RoutedDeployment,
    spec: &crate::config::Deployment,
) -> pingora_error::Result<()> {
    let mut resp = rh::head(200, 16)?;
    let h = &mut resp.headers;
    rh::add_gateway_headers(h, ctx, Some((dep.provider.name(), &spec.model)))?;
    for (name, v) in [
        (http::header::CONTENT_TYPE, "text/event-stream"),
        (http::header::CACHE_CONTROL, "no-cache"),
        (http::header::TRANSFER_ENCODING, "chunked"),
    ] {
        h.insert(name, http::HeaderValue::from_static(v));
    }
    session.write_response_header(rh::finish(resp), false).await
}

/// `on_exhaust: cutoff`: whether a stream's running cost — the prompt estimated from the body
/// plus one output token per event relayed — reached what the request may spend.
fn over_cutoff(ctx: &RequestCtx, dep: &RoutedDeployment) -> bool {
    let (Some(limit), Some(model)) = (
        ctx.admission.as_ref().and_then(|a| a.cutoff_nanos),
        ctx.model.as_ref(),
    ) else {
        return false;
    };
    let price = &dep.spec(model).price;
    // $ per million tokens = nano-dollars per thousandth of a token: × 1000 per token.
    let prompt = (ctx.body_bytes / 4) as f64 * price.input_per_mtok * 1000.0;
    let output = ctx.streamed_events as f64 * price.output_per_mtok * 1000.0;
    prompt + output >= limit as f64
}

/// The final stream event when a budget cut the stream off, in the caller's format.
fn budget_stop_event(caller: Caller) -> Bytes {
    let message = "the budget is exhausted: the stream was ended (on_exhaust: cutoff)";
    match caller {
        Caller::OpenAi => openai::stream_error_event(message, "budget_exceeded", "budget_exceeded"),
        Caller::Anthropic => {
            switchyard_adapters::anthropic::stream_error_event("billing_error", message)
        }
    }
}

/// Bookkeeping for an answer produced in process: the request is served by `dep` with `usage`.
fn served_in_process(ctx: &mut RequestCtx, dep: &RoutedDeployment, usage: openai::Usage) {
    ctx.status = 200;
    ctx.served = Some(dep.index);
    ctx.usage = Some(usage);
    dep.provider.metrics.attempt(AttemptOutcome::Ok);
    dep.provider.record_success();
    dep.runtime.on_success();
}

/// Usage of an embeddings answer: prompt tokens only.
fn embedding_usage(tokens: u64) -> openai::Usage {
    openai::Usage {
        prompt_tokens: tokens,
        total_tokens: tokens,
        ..Default::default()
    }
}

/// Why the local pool did not answer.
enum LocalMiss {
    /// Busy or unavailable: the next deployment should answer.
    Spilled(String),
    /// The model cannot take this request as written; another deployment may.
    Refused(TranslateError),
    Failed(Failure),
}

/// A deployment that cannot take the request as written (not a failure of the deployment):
/// noted in the tries, and the first such reason kept for a 400 when no deployment could.
fn skip_refused(
    ctx: &mut RequestCtx,
    dep: &RoutedDeployment,
    spec: &crate::config::Deployment,
    refused: &mut Option<TranslateError>,
    e: TranslateError,
) {
    ctx.failures.push(TryFailure {
        provider: dep.provider.name().to_string(),
        model: spec.model.clone(),
        reason: format!("skipped: {e}"),
    });
    refused.get_or_insert(e);
}

/// Why a local deployment has no running pool.
fn local_unavailable(dep: &RoutedDeployment) -> String {
    dep.provider
        .health
        .last_error
        .load()
        .as_deref()
        .cloned()
        .unwrap_or_else(|| "the local pool is not running".into())
}

/// Canonical usage of a local generation.
fn canonical_usage(prompt_tokens: u64, completion_tokens: u64) -> Usage {
    Usage {
        input_tokens: prompt_tokens,
        output_tokens: completion_tokens,
        ..Default::default()
    }
}

/// What a chat request asks of a local model, or the field no local model honours.
fn local_request(inbound: &Inbound<'_>) -> Result<GenerateRequest, TranslateError> {
    let req = inbound.canonical()?;
    GenerateRequest::from_chat(req).map_err(|field| TranslateError::Unsupported {
        field: field.into(),
        provider: "local",
    })
}

/// The inputs of an OpenAI embeddings body: a string or an array of strings.
fn embedding_inputs(body: &[u8]) -> Result<Vec<String>, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    match v.get("input") {
        Some(serde_json::Value::String(s)) => Ok(vec![s.clone()]),
        Some(serde_json::Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|i| {
                i.as_str().map(str::to_string).ok_or_else(|| {
                    "'input' must be a string or an array of strings for local models".to_string()
                })
            })
            .collect(),
        _ => Err("'input' must be a non-empty string or array of strings".into()),
    }
}

/// The outcome of a hedged try.
enum Raced<'m> {
    Won(&'m RoutedDeployment, Box<Committed>, Prepared),
    Lost(&'m RoutedDeployment, TryError, Prepared),
}

/// Where one try goes: the provider's format, address and credential.
struct Upstream<'a> {
    dialect: Dialect,
    endpoint: &'a HttpEndpoint,
    api_key: Option<&'a Secret>,
}

/// The upstream request for one deployment of `model`.
fn prepare_for(
    inbound: &Inbound<'_>,
    model: &RoutedModel,
    dep: &RoutedDeployment,
) -> Result<Prepared, TranslateError> {
    let ProviderKind::Http { dialect, .. } = &dep.provider.config.kind else {
        return Err(TranslateError::invalid("not an HTTP provider", None));
    };
    let spec = dep.spec(model);
    inbound.prepare(*dialect, &spec.model, spec.max_tokens, model.config.strict)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Records a failed try everywhere it counts (metrics, provider health, breaker, Retry-After,
/// the request's failure list). Returns whether the failure allows another try.
fn note_failure(
    ctx: &mut RequestCtx,
    model: &RoutedModel,
    dep: &RoutedDeployment,
    e: TryError,
) -> bool {
    let routing = &model.config.routing;
    let spec = dep.spec(model);
    dep.provider.metrics.attempt(e.outcome);
    dep.provider.record_failure(&e.reason);
    if let Some(wait) = e.retry_after {
        dep.runtime.retry_after(wait, now_ms());
    }
    if dep.runtime.on_failure(&routing.breaker, now_ms()) {
        dep.provider.metrics.circuit_opened.inc();
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
fn model_breaker(ctx: &RequestCtx) -> crate::config::BreakerPolicy {
    ctx.model
        .as_ref()
        .map(|m| m.config.routing.breaker)
        .unwrap_or_else(|| crate::config::RoutingPolicy::default().breaker)
}

fn usage_of(chunks: &[Bytes]) -> Option<openai::Usage> {
    match chunks {
        [] => None,
        [one] => openai::response_usage(one),
        many => {
            let mut all = BytesMut::with_capacity(many.iter().map(Bytes::len).sum());
            for c in many {
                all.extend_from_slice(c);
            }
            openai::response_usage(&all)
        }
    }
}

fn is_timeout(e: &Error) -> bool {
    matches!(
        e.etype(),
        ErrorType::ReadTimedout | ErrorType::WriteTimedout | ErrorType::ConnectTimedout
    )
}

fn classify(e: &Error, during: &str) -> TryError {
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
