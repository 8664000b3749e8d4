//! The Pingora [`ProxyHttp`] implementation: wires the request phases to the pieces that do the
//! work, and little else.
//!
//! `request_filter` routes by path, answers control endpoints (`/v1/models`, `/v1/health`), reads
//! and inspects inference bodies, and hands them to [`Forwarder`] (which answers and returns
//! `Ok(true)`: Pingora's own upstream phase is never reached — see `docs/architecture.md`).
//! `logging` turns the request context into metrics and an access-log line.

use crate::access_log::AccessLogger;
use crate::context::{GaugeGuard, InFlight, RequestCtx, Route};
use crate::errors::GatewayError;
use crate::forward::{Failure, Forwarder};
use crate::governance::Spend;
use crate::identity::{Auth, Denied};
use crate::response_headers as rh;
use crate::state::State;
use crate::telemetry::Metrics;
use crate::translate::Inbound;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use switchyard_adapters::openai;
use switchyard_adapters::providers::Caller;
use switchyard_filters::auth::AuthError;
use switchyard_filters::guard::BodyLimit;

pub struct Gateway {
    state: Arc<ArcSwap<State>>,
    spend: Arc<Spend>,
    auth: Arc<Auth>,
    metrics: Arc<Metrics>,
    forwarder: Forwarder,
    access_log: AccessLogger,
    in_flight: InFlight,
}

impl Gateway {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        state: Arc<ArcSwap<State>>,
        spend: Arc<Spend>,
        auth: Arc<Auth>,
        metrics: Arc<Metrics>,
        forwarder: Forwarder,
        access_log: AccessLogger,
        in_flight: InFlight,
    ) -> Self {
        Gateway {
            state,
            spend,
            auth,
            metrics,
            forwarder,
            access_log,
            in_flight,
        }
    }
}

fn route_of(method: &http::Method, path: &str) -> std::result::Result<Route, &'static str> {
    let (route, allow) = match path {
        "/v1/chat/completions" => (Route::ChatCompletions, "POST"),
        "/v1/messages" => (Route::Messages, "POST"),
        "/v1/embeddings" => (Route::Embeddings, "POST"),
        "/v1/ai/infer" => (Route::Infer, "POST"),
        "/v1/models" => (Route::Models, "GET"),
        "/v1/health" => (Route::Health, "GET"),
        _ => return Ok(Route::Unknown),
    };
    let ok = match allow {
        "POST" => method == http::Method::POST,
        _ => method == http::Method::GET || method == http::Method::HEAD,
    };
    if ok {
        Ok(route)
    } else {
        Err(allow)
    }
}

/// Writes a complete JSON response, keeping the connection open.
async fn write_json(
    session: &mut Session,
    ctx: &mut RequestCtx,
    status: u16,
    body: Bytes,
    extra: &[(http::HeaderName, String)],
) -> Result<()> {
    let mut resp = rh::head(status, 12 + extra.len())?;
    let h = &mut resp.headers;
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    rh::set_length(h, body.len());
    rh::add_gateway_headers(h, ctx, None)?;
    for (k, v) in extra {
        h.insert(k, rh::value(v)?);
    }
    ctx.status = status;
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(rh::finish(resp), head_only)
        .await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    ctx.completed = true;
    Ok(())
}

/// Answers a gateway error in OpenAI's format.
async fn write_error(
    session: &mut Session,
    ctx: &mut RequestCtx,
    err: &GatewayError,
) -> Result<()> {
    ctx.error_code = Some(err.code());
    let mut extra: Vec<(http::HeaderName, String)> = Vec::new();
    if let GatewayError::MethodNotAllowed { allow, .. } = err {
        extra.push((
            http::header::ALLOW,
            if *allow == "POST" {
                "POST"
            } else {
                "GET, HEAD"
            }
            .to_string(),
        ));
    }
    if let Some(secs) = err.retry_after_secs() {
        extra.push((http::header::RETRY_AFTER, secs.to_string()));
    }
    if matches!(err, GatewayError::BodyTooLarge(_)) {
        // The rest of an oversized body is not worth draining: close after answering.
        session.set_keepalive(None);
    }
    let body = err.body_for(ctx.caller, &ctx.request_id);
    write_json(session, ctx, err.status(), body, &extra).await
}

/// Reads the whole request body, refusing it as soon as it passes the limit.
async fn read_body(session: &mut Session, limit: BodyLimit) -> std::result::Result<Bytes, Failure> {
    let announced = session
        .req_header()
        .headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(n) = announced {
        limit.check(n).map_err(GatewayError::from)?;
    }
    let expects_continue = session
        .req_header()
        .headers
        .get("expect")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue {
        session
            .write_continue_response()
            .await
            .map_err(Failure::Abort)?;
    }
    let mut first: Option<Bytes> = None;
    let mut buf: Option<BytesMut> = None;
    let mut total: u64 = 0;
    loop {
        let chunk = session
            .read_request_body()
            .await
            .map_err(|e| GatewayError::BodyRead(e.etype().as_str().to_string()))?;
        let Some(chunk) = chunk else { break };
        total += chunk.len() as u64;
        limit.check(total).map_err(GatewayError::from)?;
        match (&mut buf, first.take()) {
            (Some(b), _) => b.extend_from_slice(&chunk),
            (None, None) => first = Some(chunk),
            (None, Some(f)) => {
                let mut b = BytesMut::with_capacity(
                    limit.initial_capacity(announced).max(f.len() + chunk.len()),
                );
                b.extend_from_slice(&f);
                b.extend_from_slice(&chunk);
                buf = Some(b);
            }
        }
    }
    Ok(match (buf, first) {
        (Some(b), _) => b.freeze(),
        (None, Some(f)) => f,
        (None, None) => Bytes::new(),
    })
}

impl Gateway {
    async fn chat(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        state: &Arc<State>,
    ) -> std::result::Result<(), Failure> {
        let body = read_body(session, state.body_limit).await?;
        let facts = openai::inspect_chat_request(&body).map_err(GatewayError::from)?;
        let inbound = Inbound::new(ctx.caller, &body, &facts, ctx.route == Route::Embeddings);
        if ctx.caller == Caller::Anthropic {
            // Validate the Messages request up front: a malformed one is the caller's 400, in
            // its own format, whichever deployment would have served it.
            inbound.canonical().map_err(GatewayError::Untranslatable)?;
        }
        let Some(model) = state.model(&facts.model) else {
            return Err(GatewayError::ModelNotFound(facts.model.into_owned()).into());
        };
        let model = model.clone();
        if let Some(who) = &ctx.identity {
            if !who.may_use(&model.config.name) {
                return Err(GatewayError::Auth(AuthError::ModelNotAllowed {
                    caller: who.name.clone(),
                    model: model.config.name.clone(),
                })
                .into());
            }
        }
        ctx.model = Some(model.clone());
        ctx.body_bytes = body.len();
        if self.spend.ledger.is_some() {
            // Tags only go to the ledger: without one, the metadata is not parsed for them.
            ctx.tags = crate::governance::tags(
                facts.metadata,
                session
                    .req_header()
                    .headers
                    .get("x-switchyard-tags")
                    .and_then(|v| v.to_str().ok()),
            );
        }
        let gov = self.spend.governance();
        if !gov.is_empty() {
            let estimate = crate::governance::max_cost_nanos(&model, body.len(), facts.max_tokens);
            ctx.estimate_nanos = estimate;
            let admitted = gov
                .admit_with(
                    self.spend.shared.as_ref(),
                    ctx.identity.as_ref(),
                    estimate,
                    crate::governance::now_ns(),
                )
                .await;
            match admitted {
                Ok(a) => ctx.admission = Some(a),
                Err(r) => {
                    self.spend.refused(&r);
                    return Err(GatewayError::from(r).into());
                }
            }
            ctx.governance = Some(gov);
        }
        self.forwarder
            .serve_chat(session, ctx, &model, &inbound)
            .await
    }

    /// Writes an authentication or authorisation failure to the audit log (never the credential).
    fn audit_denial(&self, session: &Session, ctx: &RequestCtx, err: &GatewayError) {
        self.auth.audit.log(&serde_json::json!({
            "ts": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            "event": "auth_failure",
            "reason": err.code(),
            "message": err.to_string(),
            "caller": ctx.identity.as_ref().map(|i| i.name.as_str()),
            "client": session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip().to_string()),
            "path": session.req_header().uri.path(),
            "request_id": ctx.request_id,
            "outcome": "denied",
        }));
    }

    /// Authenticates the caller; failures are audited (never with the credential).
    async fn authenticate(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
    ) -> std::result::Result<(), GatewayError> {
        let headers = &session.req_header().headers;
        let client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let outcome = self
            .auth
            .authenticate(
                headers.get("authorization").map(|v| v.as_bytes()),
                headers.get("x-api-key").map(|v| v.as_bytes()),
                client,
            )
            .await;
        match outcome {
            Ok(identity) => {
                ctx.identity = identity;
                Ok(())
            }
            Err(denied) => {
                let err = match denied {
                    Denied::Auth(e) => GatewayError::Auth(e),
                    Denied::TooManyFailures => GatewayError::TooManyAuthFailures,
                };
                self.audit_denial(session, ctx, &err);
                Err(err)
            }
        }
    }

    fn health_body(state: &State, spend: &Spend) -> (u16, Bytes) {
        let providers: Vec<serde_json::Value> = state
            .providers
            .iter()
            .map(|p| {
                let h = &p.health;
                let last_error = h.last_error.load();
                serde_json::json!({
                    "name": p.name(),
                    "kind": p.config.kind.name(),
                    "status": if h.is_healthy() { "healthy" } else { "unhealthy" },
                    "consecutive_failures": h.consecutive_failures.load(Ordering::Relaxed),
                    "last_success_unix_ms": nonzero(h.last_success_ms.load(Ordering::Relaxed)),
                    "last_failure_unix_ms": nonzero(h.last_failure_ms.load(Ordering::Relaxed)),
                    "last_error": last_error.as_deref(),
                })
            })
            .collect();
        let healthy = state
            .providers
            .iter()
            .filter(|p| p.health.is_healthy())
            .count();
        let (status, overall) = if healthy == state.providers.len() {
            (200, "ok")
        } else if healthy > 0 {
            (200, "degraded")
        } else {
            (503, "down")
        };
        let now = crate::breaker::now_ms();
        let models: Vec<serde_json::Value> = state
            .models()
            .map(|m| {
                serde_json::json!({
                    "name": m.config.name,
                    "strategy": format!("{:?}", m.config.routing.strategy).to_lowercase(),
                    "deployments": m.deployments.iter().map(|d| {
                        let spec = d.spec(m);
                        serde_json::json!({
                            "provider": d.provider.name(),
                            "model": spec.model,
                            "circuit": d.runtime.state(now).label(),
                            "consecutive_failures": d.runtime.consecutive_failures(),
                            "error_rate": (d.runtime.error_rate() * 1000.0).round() / 1000.0,
                            "ewma_ttfb_ms": d.runtime.ewma_ttfb().map(|t| t.as_secs_f64() * 1000.0),
                            "available": d.runtime.available(now),
                        })
                    }).collect::<Vec<_>>(),
                })
            })
            .collect();
        let now_s = crate::governance::unix_now();
        let budgets: Vec<serde_json::Value> = spend
            .governance()
            .budgets
            .iter()
            .map(|b| {
                serde_json::json!({
                    "scope": b.settings.scope.to_string(),
                    "period": b.settings.period.name(),
                    "limit_usd": b.settings.limit_usd,
                    "remaining_usd": switchyard_filters::budget::nanos_to_usd(b.account.remaining(now_s)),
                    // Past the soft ratio the router prefers the cheapest deployments.
                    "state": if b.account.remaining(now_s) == 0 {
                        "exhausted"
                    } else if b.account.over_soft(now_s) {
                        "prefer_cheapest"
                    } else {
                        "ok"
                    },
                })
            })
            .collect();
        let body = serde_json::json!({
            "status": overall,
            "version": env!("CARGO_PKG_VERSION"),
            "providers": providers,
            "models": models,
            "budgets": budgets,
        });
        (
            status,
            Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
        )
    }
}

fn nonzero(v: u64) -> Option<u64> {
    (v != 0).then_some(v)
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new(self.metrics.active_streams.clone(), &self.in_flight)
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let req = session.req_header();
        ctx.request_id = match req.headers.get("x-request-id") {
            Some(v) if switchyard_filters::request_id::is_acceptable(v.as_bytes()) => {
                String::from_utf8_lossy(v.as_bytes()).into_owned()
            }
            _ => crate::context::new_request_id(),
        };
        ctx.trace = Some(crate::trace::TraceContext::from_header(
            req.headers.get("traceparent").map(|v| v.as_bytes()),
            crate::context::random_u64,
        ));
        ctx.hops = req
            .headers
            .get(&rh::X_SWITCHYARD_HOPS)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let state = self.state.load_full();
        ctx.state = Some(state.clone());
        let route = route_of(&req.method, req.uri.path());
        let route = match route {
            Ok(r) => r,
            Err(allow) => {
                let err = GatewayError::MethodNotAllowed {
                    method: req.method.to_string(),
                    path: req.uri.path().to_string(),
                    allow,
                };
                write_error(session, ctx, &err).await?;
                return Ok(true);
            }
        };
        ctx.route = route;
        if route == Route::Messages {
            ctx.caller = Caller::Anthropic;
            ctx.anthropic_beta = session
                .req_header()
                .headers
                .get("anthropic-beta")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
        }
        let needs_auth = match route {
            Route::ChatCompletions | Route::Messages | Route::Embeddings | Route::Infer => true,
            Route::Models | Route::Health => !state.config.server.public_health,
            Route::Unknown => false,
        };
        if needs_auth {
            if let Err(err) = self.authenticate(session, ctx).await {
                write_error(session, ctx, &err).await?;
                return Ok(true);
            }
        }
        if route.is_inference() && ctx.hops >= state.config.server.max_hops {
            let err = GatewayError::LoopDetected {
                hops: ctx.hops,
                limit: state.config.server.max_hops,
            };
            write_error(session, ctx, &err).await?;
            return Ok(true);
        }
        match route {
            Route::ChatCompletions | Route::Messages | Route::Embeddings | Route::Infer => {
                ctx.active = Some(GaugeGuard::new(&self.metrics.active_requests));
                match self.chat(session, ctx, &state).await {
                    Ok(()) => {}
                    Err(Failure::Respond(err)) => {
                        if matches!(err, GatewayError::Auth(_)) {
                            self.audit_denial(session, ctx, &err);
                        }
                        if session.response_written().is_some() {
                            return Err(Error::explain(ErrorType::InternalError, err.to_string()));
                        }
                        write_error(session, ctx, &err).await?;
                    }
                    Err(Failure::Abort(e)) => return Err(e),
                }
            }
            Route::Models => {
                write_json(session, ctx, 200, state.models_body.clone(), &[]).await?;
            }
            Route::Health => {
                let (status, body) = Self::health_body(&state, &self.spend);
                write_json(
                    session,
                    ctx,
                    status,
                    body,
                    &[(http::header::CACHE_CONTROL, "no-store".to_string())],
                )
                .await?;
            }
            Route::Unknown => {
                let req = session.req_header();
                let err = GatewayError::UnknownRoute {
                    method: req.method.to_string(),
                    path: req.uri.path().to_string(),
                };
                write_error(session, ctx, &err).await?;
            }
        }
        Ok(true)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        // Every route answers in request_filter; reaching this phase is a bug, answered as 500.
        Err(Error::explain(
            ErrorType::InternalError,
            "no upstream phase: requests are answered in request_filter",
        ))
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let downstream_gone = e.esource() == &ErrorSource::Downstream;
        let code = if session.response_written().is_some() || downstream_gone {
            0
        } else {
            let body = openai::error_body(
                "internal gateway error",
                "server_error",
                None,
                Some("internal_error"),
            );
            ctx.error_code = Some("internal_error");
            match write_json(session, ctx, 500, body, &[]).await {
                Ok(()) => 500,
                Err(_) => 0,
            }
        };
        if ctx.status == 0 {
            ctx.status = if code == 0 { 499 } else { code };
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, e: &Error) -> bool {
        // A caller hanging up mid-stream is routine, not an error worth a log line each.
        e.esource() == &ErrorSource::Downstream
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let elapsed = ctx.started.elapsed();
        if e.is_some() && !ctx.completed && ctx.error_code.is_none() {
            ctx.error_code = Some(
                if e.is_some_and(|e| e.esource() == &ErrorSource::Downstream) {
                    "client_disconnected"
                } else {
                    "aborted"
                },
            );
        }
        if e.is_some() && ctx.status == 0 {
            ctx.status = 499;
        }
        if let Some(code) = ctx.error_code {
            self.metrics.error(code);
        }
        if ctx.route.is_inference() {
            // Every inference request releases what it reserved and leaves a ledger row (strict
            // durability may have written it already, before the response's last bytes).
            self.spend.finish(ctx);
        }
        let Some(state) = ctx.state.as_ref() else {
            return;
        };
        let served = match (&ctx.model, ctx.served) {
            (Some(m), Some(i)) => m.deployments.get(i).map(|d| (m, d)),
            _ => None,
        };
        if let Some(m) = &ctx.model {
            if ctx.tries > 1 {
                m.metrics.retries.inc_by(u64::from(ctx.tries - 1));
            }
        }
        if ctx.route.is_inference() {
            match &ctx.identity {
                Some(who) => self
                    .metrics
                    .caller(who.team.as_deref().unwrap_or(""), who.kind.label()),
                None => self.metrics.caller("", "anonymous"),
            }
            match (&ctx.model, served) {
                (_, Some((m, d))) => {
                    d.metrics.requests.observe(ctx.status);
                    m.metrics.duration.observe(elapsed.as_secs_f64());
                    if let Some(t) = ctx.first_byte {
                        d.metrics.ttfb.observe(t.as_secs_f64());
                    }
                    if let Some(u) = ctx.usage {
                        d.metrics.prompt_tokens.inc_by(u.prompt_tokens);
                        d.metrics.completion_tokens.inc_by(u.completion_tokens);
                        d.metrics.cached_tokens.inc_by(u.cached_tokens());
                    }
                }
                (Some(m), None) => {
                    m.metrics.unserved.observe(ctx.status);
                    m.metrics.duration.observe(elapsed.as_secs_f64());
                }
                (None, None) => state.unrouted.observe(ctx.status),
            }
        }
        if !self.access_log.enabled() {
            return;
        }
        let req = session.req_header();
        let cost = match (served, ctx.usage) {
            (Some((m, d)), Some(u)) => Some(crate::cost::cost_usd(&d.spec(m).price, &u)),
            _ => None,
        };
        let (model, provider, upstream_model) = match served {
            Some((m, d)) => (
                Some(m.config.name.as_str()),
                Some(d.provider.name()),
                Some(d.spec(m).model.as_str()),
            ),
            None => (
                ctx.model.as_ref().map(|m| m.config.name.as_str()),
                None,
                None,
            ),
        };
        let record = serde_json::json!({
            "ts": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            "request_id": ctx.request_id,
            "trace_id": ctx.trace.as_ref().map(|t| t.trace_id.as_str()),
            "span_id": ctx.trace.as_ref().map(|t| t.span_id.as_str()),
            "parent_span_id": ctx.trace.as_ref().and_then(|t| t.parent_id.as_deref()),
            "caller": ctx.identity.as_ref().map(|i| serde_json::json!({
                "name": i.name, "team": i.team, "project": i.project, "user": i.user, "kind": i.kind.label(),
            })),
            "cost_usd": cost,
            "client": session.client_addr().map(|a| a.to_string()),
            "method": req.method.as_str(),
            "path": req.uri.path(),
            "route": ctx.route.name(),
            "model": model,
            "provider": provider,
            "upstream_model": upstream_model,
            "status": ctx.status,
            "stream": ctx.stream,
            "latency_ms": elapsed.as_secs_f64() * 1000.0,
            "ttfb_ms": ctx.first_byte.map(|t| t.as_secs_f64() * 1000.0),
            "prompt_tokens": ctx.usage.map(|u| u.prompt_tokens),
            "completion_tokens": ctx.usage.map(|u| u.completion_tokens),
            "tries": ctx.tries,
            "failed_tries": ctx.failures.iter().map(|f| format!("{}/{}: {}", f.provider, f.model, f.reason)).collect::<Vec<_>>(),
            "error": ctx.error_code,
        });
        self.access_log.log(&record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_methods() {
        assert_eq!(
            route_of(&http::Method::POST, "/v1/chat/completions"),
            Ok(Route::ChatCompletions)
        );
        assert_eq!(
            route_of(&http::Method::POST, "/v1/ai/infer"),
            Ok(Route::Infer)
        );
        assert_eq!(
            route_of(&http::Method::GET, "/v1/chat/completions"),
            Err("POST")
        );
        assert_eq!(
            route_of(&http::Method::GET, "/v1/models"),
            Ok(Route::Models)
        );
        assert_eq!(route_of(&http::Method::POST, "/v1/models"), Err("GET"));
        assert_eq!(route_of(&http::Method::GET, "/nope"), Ok(Route::Unknown));
    }
}
