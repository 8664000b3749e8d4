//! The response steps, run in Pingora's `logging` phase when a request ends however it ended:
//! settling spend (admission released with the real cost, the ledger row), metering
//! (pre-resolved Prometheus handles: atomics only) and the access-log line (queued to a writer
//! thread). Reads the request context; never writes to the caller.

use super::context::RequestCtx;
use super::steps::ResponseStep;
use super::Gateway;
use crate::routing::state::{RoutedDeployment, RoutedModel};
use crate::snapshot::Snapshot;
use pingora_error::{Error, ErrorSource};
use pingora_proxy::Session;
use std::sync::Arc;

impl Gateway {
    /// Runs the snapshot's response chain for a finished request.
    /// `done`: when the answer ended (the one clock reading the steps share).
    pub(super) fn finish(
        &self,
        session: &Session,
        e: Option<&Error>,
        ctx: &mut RequestCtx,
        done: std::time::Instant,
    ) {
        let elapsed = done.saturating_duration_since(ctx.started);
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
        let Some(snapshot) = ctx.snapshot.clone() else {
            return;
        };
        for step in &snapshot.chains.response {
            match step {
                ResponseStep::Settle => {
                    // Every inference request releases what it reserved and leaves a ledger row
                    // (strict durability may have written it already).
                    if ctx.route.is_billed() {
                        self.spend.finish(ctx);
                    }
                }
                ResponseStep::Meter => self.meter(&snapshot, ctx, elapsed),
                ResponseStep::AccessLog => self.access_line(session, &snapshot, ctx, elapsed),
            }
        }
        crate::ops::otlp::record(&snapshot, ctx);
    }

    fn meter(&self, snapshot: &Snapshot, ctx: &RequestCtx, elapsed: std::time::Duration) {
        for a in &ctx.guardrails {
            self.metrics
                .guardrail(&a.guardrail.name, a.action.label(), a.phase.label());
            if a.action == crate::guardrails::Action::Block
                && a.phase == crate::guardrails::Phase::Response
            {
                // Request blocks are audited where they happen; answers' here (never the text).
                self.auth.audit.log(&serde_json::json!({
                    "ts": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
                    "event": "guardrail_block",
                    "guardrail": a.guardrail.name,
                    "phase": "response",
                    "caller": ctx.identity.as_deref().map(|i| i.name.as_str()),
                    "request_id": ctx.request_id,
                    "outcome": "denied",
                }));
            }
        }
        if let Some(m) = &ctx.model {
            if ctx.tries > 1 {
                m.metrics.retries.inc_by(u64::from(ctx.tries - 1));
            }
        }
        if !ctx.route.is_inference() {
            return;
        }
        self.pulse(ctx, elapsed);
        match &ctx.identity {
            Some(who) => self
                .metrics
                .caller(who.team.as_deref().unwrap_or(""), who.kind.label()),
            None => self.metrics.caller("", "anonymous"),
        }
        if let Some((_, route)) = crate::passthrough::route_of(ctx) {
            route.metrics.requests.observe(ctx.status);
            route.metrics.duration.observe(elapsed.as_secs_f64());
            return;
        }
        match (&ctx.model, served(ctx)) {
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
            (None, None) => snapshot.state.unrouted.observe(ctx.status),
        }
    }

    /// Feeds the status page's ring (atomics only) and, for a failed request, its last errors.
    fn pulse(&self, ctx: &RequestCtx, elapsed: std::time::Duration) {
        let now_ms = crate::clock::unix_ms();
        let failed = ctx.status >= 500 || ctx.status == 429;
        let pulse = &self.metrics.pulse;
        pulse.record(now_ms / 1000, failed, elapsed, ctx.first_byte);
        if ctx.status >= 400 || ctx.error_code.is_some() {
            let served = served(ctx);
            pulse.error(crate::ops::pulse::ErrorEntry {
                time_ms: now_ms,
                status: ctx.status,
                code: ctx.error_code.unwrap_or("upstream_error").to_string(),
                model: ctx.model.as_ref().map(|m| m.config.name.clone()),
                provider: served.map(|(_, d)| d.provider.name().to_string()),
                request_id: ctx.request_id.clone(),
            });
        }
    }

    fn access_line(
        &self,
        session: &Session,
        snapshot: &Snapshot,
        ctx: &RequestCtx,
        elapsed: std::time::Duration,
    ) {
        if !self.access_log.enabled() {
            return;
        }
        let req = session.req_header();
        let served = served(ctx);
        let passthrough = crate::passthrough::charge(ctx);
        let cost = match (served, ctx.usage, passthrough) {
            (Some((m, d)), Some(u), _) => {
                Some(crate::governance::cost::cost_usd(&d.spec(m).price, &u))
            }
            (_, _, Some((_, nanos))) => Some(switchyard_filters::budget::nanos_to_usd(nanos)),
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
                passthrough.map(|(provider, _)| provider),
                None,
            ),
        };
        let record = serde_json::json!({
            "ts": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            "request_id": ctx.request_id,
            "trace_id": ctx.trace.as_ref().map(|t| t.trace_id()),
            "span_id": ctx.trace.as_ref().map(|t| t.span_id()),
            "parent_span_id": ctx.trace.as_ref().and_then(|t| t.parent_id.as_deref()),
            "caller": ctx.identity.as_deref().map(|i| serde_json::json!({
                "name": i.name, "team": i.team, "project": i.project, "user": i.user, "kind": i.kind.label(),
            })),
            "cost_usd": cost,
            "client": session.client_addr().map(|a| a.to_string()),
            "method": req.method.as_str(),
            "path": req.uri.path(),
            "route": ctx.route.name(),
            "replica_id": snapshot.state.config.server.replica_id,
            "config_generation": snapshot.generation,
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
            "guardrails": (!ctx.guardrails.is_empty()).then(|| crate::guardrails::header_value(&ctx.guardrails)),
        });
        self.access_log.log(&record);
    }
}

/// The model and deployment that served the request, if one did.
fn served(ctx: &RequestCtx) -> Option<(&Arc<RoutedModel>, &RoutedDeployment)> {
    match (&ctx.model, ctx.served) {
        (Some(m), Some(i)) => m.deployments.get(i).map(|d| (m, d)),
        _ => None,
    }
}
