//! The Pingora [`ProxyHttp`] implementation: wires the request phases to the pieces that do the
//! work, and little else.
//!
//! `request_filter` loads the live config [`Snapshot`] (held by the request to its end), routes by
//! path, runs the snapshot's head steps (authentication, loop guard), answers control endpoints,
//! reads and inspects inference bodies, runs the body steps (model access, tags, admission) and
//! hands the request to [`Forwarder`] (which answers and returns `Ok(true)`: Pingora's own
//! upstream phase is never reached — see `docs/architecture.md`). `logging` runs the response
//! steps ([`logging`]). One file per job: [`routes`], [`body`], [`respond`], [`control`],
//! [`steps`], [`logging`], [`deadlines`] (how long a caller may take to send its request),
//! [`passthrough`] (`passthrough[]` paths: the one kind of route that does use Pingora's upstream
//! phases, to stream bodies), plus the request context and the response-header helpers.

pub mod body;
pub mod context;
pub mod control;
pub mod deadlines;
pub mod logging;
pub mod models;
pub mod passthrough;
pub mod rate_headers;
pub mod respond;
pub mod response_headers;
pub mod responses;
pub mod routes;
pub mod steps;
pub mod trace;

use crate::errors::GatewayError;
use crate::forward::translate::Inbound;
use crate::forward::{Failure, Forwarder};
use crate::governance::Spend;
use crate::identity::{Auth, AuthView, Denied};
use crate::ops::access_log::AccessLogger;
use crate::ops::telemetry::Metrics;
use crate::snapshot::{Live, Snapshot};
use async_trait::async_trait;
use context::{GaugeGuard, InFlight, RequestCtx, Route};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use respond::{write_error, write_json};
use response_headers as rh;
use std::sync::Arc;
use steps::{BodyStep, HeadStep};
use switchyard_adapters::openai;
use switchyard_adapters::providers::Caller;
use switchyard_filters::auth::AuthError;

/// The format the caller speaks on `route` (errors and answers use it).
fn set_caller(session: &Session, ctx: &mut RequestCtx, route: Route) {
    let anthropic_models = matches!(route, Route::Models | Route::Model)
        && session
            .req_header()
            .headers
            .contains_key(&rh::ANTHROPIC_VERSION);
    match route {
        Route::Completions => ctx.caller = Caller::OpenAiCompletions,
        Route::Responses | Route::StoredResponse => ctx.caller = Caller::OpenAiResponses,
        _ => {}
    }
    if matches!(route, Route::Messages | Route::CountTokens) || anthropic_models {
        ctx.caller = Caller::Anthropic;
        ctx.anthropic_beta = session
            .req_header()
            .headers
            .get(&rh::ANTHROPIC_BETA)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
    }
}

/// The gateway's proxy service: process-wide services, and the live snapshot each request loads.
pub struct Gateway {
    pub live: Arc<Live>,
    pub spend: Arc<Spend>,
    pub auth: Arc<Auth>,
    pub metrics: Arc<Metrics>,
    pub forwarder: Forwarder,
    pub access_log: AccessLogger,
    pub in_flight: InFlight,
    /// `server.client_timeouts` as the process started.
    pub client_timeouts: crate::config::ClientTimeouts,
    /// Stored Responses API conversations.
    pub conversations: Arc<crate::responses::Conversations>,
    /// The response cache (its backend as the process started).
    pub cache: Arc<crate::cache::Cache>,
}

impl Gateway {
    /// An inference request: body read and inspected, model found, body steps run, then the plan.
    async fn chat(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        snapshot: &Arc<Snapshot>,
    ) -> std::result::Result<(), Failure> {
        let state = &snapshot.state;
        let body = body::read_body(session, state.body_limit, self.client_timeouts.body).await?;
        // Routing hints leave the body here: no provider sees them.
        let (mut body, hints) =
            crate::routing::hints::extract(body, &session.req_header().headers)?;
        ctx.hints = hints;
        let mut turn = None;
        let continued = ctx.route == Route::Responses
            && state.config.cache.enabled
            && crate::cache::continues(&body);
        if ctx.route == Route::Responses {
            let t = self.responses_turn(ctx, body).await?;
            body = t.body.clone();
            turn = Some(t);
        }
        // Inspected once: the guardrail step reads the model from these facts, and only a body
        // it rewrote is inspected again.
        let original = body.clone();
        let inspected = openai::inspect_chat_request(&original).map_err(GatewayError::from)?;
        // The optional steps' futures are boxed, and only built when configured: inline, each
        // (~3-4 KB) made every request's future larger, and each layer above copies it once.
        let checked = if state.config.guardrails.is_empty() {
            crate::guardrails::Checked::default()
        } else {
            Box::pin(crate::guardrails::request_step(
                state,
                ctx,
                &mut body,
                &inspected.model,
                &self.auth.audit,
                self.auth.jwks.connector(),
            ))
            .await?
        };
        let mut facts = if checked.rewritten {
            openai::inspect_chat_request(&body).map_err(GatewayError::from)?
        } else {
            inspected
        };
        if let Some(cap) = checked.cap.filter(|_| ctx.route != Route::Embeddings) {
            facts.max_tokens = Some(facts.max_tokens.map_or(cap, |m| m.min(cap)));
        }
        if let Some(t) = &turn {
            facts.max_tokens = t.max_output_tokens;
        }
        if ctx.route == Route::Completions {
            // OpenAI's documented default for completions: what admission reserves for.
            facts
                .max_tokens
                .get_or_insert(openai::completions::DEFAULT_MAX_TOKENS);
        }
        let mut inbound = Inbound::new(ctx.caller, &body, &facts, ctx.route == Route::Embeddings);
        inbound.turn = turn.as_ref().map(|t| t.turn.clone());
        if ctx.route == Route::Messages {
            // Validate the Messages request up front: a malformed one is the caller's 400, in
            // its own format, whichever deployment would have served it.
            inbound.canonical().map_err(GatewayError::Untranslatable)?;
        }
        let Some(model) = state.model(&facts.model) else {
            return Err(GatewayError::ModelNotFound(facts.model.into_owned()).into());
        };
        let model = model.clone();
        crate::routing::hints::check_task(ctx.hints.as_ref(), &model.config.tasks)?;
        ctx.hinted =
            crate::routing::hinted::for_request(state, &model, ctx.hints.as_ref(), &self.metrics)?;
        if ctx.route == Route::Responses
            && !model
                .deployments
                .iter()
                .any(|d| d.provider.config.responses_native)
        {
            // What no translated deployment can serve is the caller's 400, up front.
            inbound.canonical().map_err(GatewayError::Untranslatable)?;
        }
        ctx.model = Some(model.clone());
        ctx.body_bytes = body.len();
        for step in &snapshot.chains.body {
            match step {
                BodyStep::ModelAccess => {
                    if let Some(who) = &ctx.identity {
                        if !who.may_use(&model.config.name) {
                            return Err(GatewayError::Auth(AuthError::ModelNotAllowed {
                                caller: who.name.clone(),
                                model: model.config.name.clone(),
                            })
                            .into());
                        }
                    }
                }
                BodyStep::Tags => ctx.tags = ledger_tags(session, facts.metadata),
                // Token counting is free at every provider and reserves nothing: it skips
                // admission altogether (no budget hold, and not against `requests_per_minute`,
                // which Anthropic too meters apart from Messages). It is still authenticated,
                // scoped to the caller's models and bounded by the provider's own quota.
                BodyStep::Admission if ctx.route == Route::CountTokens => {}
                BodyStep::Admission => {
                    let estimate = crate::governance::estimate::max_cost_nanos(
                        &model,
                        body.len(),
                        facts.max_tokens,
                        facts.choices,
                    );
                    self.admit(ctx, snapshot, estimate).await?;
                }
            }
        }
        if ctx.route == Route::CountTokens {
            return Box::pin(
                self.forwarder
                    .serve_count_tokens(session, ctx, &model, &inbound),
            )
            .await;
        }
        if state.config.cache.enabled
            && (Box::pin(crate::cache::lookup(
                &self.cache,
                session,
                ctx,
                &body,
                &facts,
                continued,
            ))
            .await?
                || (ctx.cache_pending.is_some()
                    && Box::pin(self.semantic_lookup(session, ctx, &body, &facts)).await?))
        {
            return Ok(());
        }
        let served = self
            .forwarder
            .serve_chat(session, ctx, &model, &inbound)
            .await;
        if let (Ok(()), Some(t)) = (&served, turn) {
            self.responses_done(ctx, t, state.config.responses_ttl);
        }
        served
    }

    /// Admission by limits and budgets with `estimate` (nano-dollars) reserved; a refusal is
    /// counted and returned as the answer.
    async fn admit(
        &self,
        ctx: &mut RequestCtx,
        snapshot: &Snapshot,
        estimate: u64,
    ) -> std::result::Result<(), GatewayError> {
        ctx.estimate_nanos = estimate;
        let admitted = snapshot
            .governance
            .admit_with(
                self.spend.shared.as_ref(),
                ctx.identity.as_deref(),
                estimate,
                crate::clock::now_ns(),
            )
            .await;
        match admitted {
            Ok(a) => {
                ctx.admission = Some(Box::new(a));
                Ok(())
            }
            Err(r) => {
                self.spend.refused(&r);
                Err(GatewayError::from(r))
            }
        }
    }

    /// The head is in: the connection's head deadline stops counting, and the rest of the
    /// connection's life is bounded by `server.client_timeouts` (see [`deadlines`]).
    fn bound_connection(&self, session: &mut Session) {
        deadlines::head_complete();
        // Pingora's keep-alive stays unbounded: the connection's watch closes an idle one (a
        // per-request keep-alive timeout would cost a timer per request). A body left unread
        // (an early answer) is drained before the connection is reused, within `body`.
        session.set_total_drain_timeout(Some(self.client_timeouts.body));
    }

    /// Runs the snapshot's head steps; `Err` is the answer.
    async fn head_steps(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
        snapshot: &Snapshot,
    ) -> std::result::Result<(), GatewayError> {
        let route = ctx.route;
        for step in &snapshot.chains.head {
            match step {
                HeadStep::Authenticate => {
                    let needs_auth = match route {
                        // Public listings still show a caller who identifies itself its own view.
                        Route::Models | Route::Model | Route::Health => {
                            let headers = &session.req_header().headers;
                            !snapshot.state.config.server.public_health
                                || headers.contains_key(http::header::AUTHORIZATION)
                                || headers.contains_key(&rh::X_API_KEY)
                        }
                        Route::Unknown => false,
                        _ => true,
                    };
                    if needs_auth {
                        self.authenticate(session, ctx, &snapshot.auth).await?;
                    }
                }
                HeadStep::LoopGuard => {
                    let limit = snapshot.state.config.server.max_hops;
                    if route.is_inference() && ctx.hops >= limit {
                        return Err(GatewayError::LoopDetected {
                            hops: ctx.hops,
                            limit,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes an authentication or authorisation failure to the audit log (never the credential).
    fn audit_denial(&self, session: &Session, ctx: &RequestCtx, err: &GatewayError) {
        self.auth.audit.log(&serde_json::json!({
            "ts": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            "event": "auth_failure",
            "reason": err.code(),
            "message": err.to_string(),
            "caller": ctx.identity.as_deref().map(|i| i.name.as_str()),
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
        view: &AuthView,
    ) -> std::result::Result<(), GatewayError> {
        let headers = &session.req_header().headers;
        let client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let outcome = self
            .auth
            .authenticate(
                view,
                headers
                    .get(http::header::AUTHORIZATION)
                    .map(|v| v.as_bytes()),
                headers.get(&rh::X_API_KEY).map(|v| v.as_bytes()),
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
}

#[async_trait]
impl ProxyHttp for Gateway {
    /// Boxed: Pingora keeps the context in its request future twice (before and after the
    /// call that takes it by value) and moves it between them; a pointer instead of ~1.2 KB makes
    /// that future, which is copied into a box once per request, ~2.4 KB smaller.
    type CTX = Box<RequestCtx>;

    fn new_ctx(&self) -> Box<RequestCtx> {
        crate::ops::giveback::start_once(&self.in_flight);
        Box::new(RequestCtx::new(
            self.metrics.active_streams.clone(),
            &self.in_flight,
        ))
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<bool> {
        self.bound_connection(session);
        let req = session.req_header();
        ctx.request_id = match req.headers.get(&rh::X_REQUEST_ID) {
            Some(v) if switchyard_filters::request_id::is_acceptable(v.as_bytes()) => {
                String::from_utf8_lossy(v.as_bytes()).into_owned()
            }
            _ => context::new_request_id(),
        };
        ctx.trace = Some(trace::TraceContext::from_header(
            req.headers.get(&rh::TRACEPARENT).map(|v| v.as_bytes()),
            context::random_u64,
        ));
        ctx.hops = req
            .headers
            .get(&rh::X_SWITCHYARD_HOPS)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        // One snapshot for the whole request, from here to its logging.
        let snapshot = self.live.load();
        ctx.snapshot = Some(snapshot.clone());
        if crate::ops::otlp::exported(&snapshot, ctx.trace.as_ref()) {
            ctx.finish_reasons = Some(Vec::new());
        }
        let mut route = match routes::route_of(&req.method, req.uri.path()) {
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
        // Only an unknown path is looked up, and only when the file configures pass-through.
        if route == Route::Unknown && !snapshot.state.config.passthrough.is_empty() {
            if let Some(index) =
                crate::passthrough::find(&snapshot.state.config, session.req_header().uri.path())
            {
                route = Route::Passthrough;
                ctx.passthrough = Some(crate::passthrough::Hit {
                    index,
                    upstream_status: None,
                });
                // Errors go in the format the provider's own callers read.
                if matches!(
                    snapshot.state.config.passthrough[index].provider.kind,
                    crate::config::ProviderKind::Http {
                        dialect: crate::config::Dialect::Anthropic,
                        ..
                    }
                ) {
                    ctx.caller = Caller::Anthropic;
                }
            }
        }
        ctx.route = route;
        set_caller(session, ctx, route);
        let limit = snapshot.state.config.server.max_header_bytes;
        let size = head_bytes(session.req_header());
        if size > limit {
            let err = GatewayError::HeadersTooLarge { size, limit };
            session.set_keepalive(None);
            write_error(session, ctx, &err).await?;
            return Ok(true);
        }
        if let Err(err) = self.head_steps(session, ctx, &snapshot).await {
            write_error(session, ctx, &err).await?;
            return Ok(true);
        }
        match route {
            Route::ChatCompletions
            | Route::Messages
            | Route::Completions
            | Route::Responses
            | Route::CountTokens
            | Route::Embeddings
            | Route::Infer => {
                ctx.active = Some(GaugeGuard::new(&self.metrics.active_requests));
                match self.chat(session, ctx, &snapshot).await {
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
            Route::Passthrough => {
                ctx.active = Some(GaugeGuard::new(&self.metrics.active_requests));
                // Boxed: its future (~3.8 KB) would size every request's.
                match Box::pin(self.passthrough_admit(session, ctx, &snapshot)).await {
                    // On to Pingora's upstream phases, which stream both bodies.
                    Ok(()) => return Ok(false),
                    Err(err) => write_error(session, ctx, &err).await?,
                }
            }
            Route::StoredResponse => self.stored_response(session, ctx).await?,
            Route::Models => {
                let body = models::list(&snapshot.state, ctx.identity.as_deref(), ctx.caller);
                write_json(session, ctx, 200, body, &[]).await?;
            }
            Route::Model => {
                let path = session.req_header().uri.path().to_string();
                match models::one(&snapshot.state, ctx.identity.as_deref(), ctx.caller, &path) {
                    Ok(body) => write_json(session, ctx, 200, body, &[]).await?,
                    Err(err) => write_error(session, ctx, &err).await?,
                }
            }
            Route::Health => {
                let view = match (&ctx.identity, snapshot.auth.settings.is_some()) {
                    (Some(who), _) => control::HealthView::Caller(who),
                    (None, false) => control::HealthView::Full,
                    (None, true) => control::HealthView::Public,
                };
                let (status, body) = control::health_body(&snapshot, view);
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
        ctx: &mut Box<RequestCtx>,
    ) -> Result<Box<HttpPeer>> {
        if ctx.passthrough.is_some() {
            return self.passthrough_peer(ctx).await;
        }
        // Every other route answers in request_filter; reaching this phase is a bug (500).
        Err(Error::explain(
            ErrorType::InternalError,
            "no upstream phase: requests are answered in request_filter",
        ))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<()> {
        self.passthrough_request(upstream_request, ctx)
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<()> {
        self.passthrough_response(upstream_response, ctx)
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<Option<std::time::Duration>> {
        // Pass-through bodies go as they came; only the timing is noted.
        if ctx.passthrough.is_none() {
            return Ok(None);
        }
        ctx.mark_first_byte();
        if end_of_stream {
            ctx.completed = true;
        }
        Ok(None)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Box<RequestCtx>,
    ) -> FailToProxy {
        let downstream_gone = e.esource() == &ErrorSource::Downstream;
        let code = if session.response_written().is_some() || downstream_gone {
            0
        } else if ctx.passthrough.is_some() {
            self.passthrough_failed(session, e, ctx).await
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

    fn suppress_error_log(&self, _session: &Session, _ctx: &Box<RequestCtx>, e: &Error) -> bool {
        // A caller hanging up mid-stream is routine, not an error worth a log line each.
        e.esource() == &ErrorSource::Downstream
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Box<RequestCtx>) {
        let done = std::time::Instant::now();
        deadlines::request_done(&self.client_timeouts, done);
        self.finish(session, e, ctx, done);
    }
}

/// Ledger tags from the body's `metadata` (when there is one) and `x-switchyard-tags`.
fn ledger_tags(session: &Session, metadata: Option<&str>) -> Option<String> {
    crate::governance::ledger_row::tags(
        metadata,
        session
            .req_header()
            .headers
            .get(&rh::X_SWITCHYARD_TAGS)
            .and_then(|v| v.to_str().ok()),
    )
}

/// The size of a request head as sent: the request line and every header line.
fn head_bytes(req: &pingora_http::RequestHeader) -> u64 {
    let line = req.method.as_str().len() + req.raw_path().len() + 12;
    let headers: usize = req
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    (line + headers) as u64
}
