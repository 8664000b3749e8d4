//! Providers answered inside the process: the built-in `mock` ([`mock`], its answers from
//! [`mock_answer`]) and the local ONNX pool ([`local`], cargo feature `local`). They write to the
//! caller through the same encoders and bookkeeping as a remote provider's answer; what they
//! share — the whole-JSON and stream heads, the served-in-process bookkeeping — is here. No
//! upstream I/O.

#[cfg(feature = "local")]
pub(super) mod local;
pub(super) mod mock;
pub mod mock_answer;
mod mock_logprobs;
mod mock_tools;

use super::{cost_value, Forwarder};
use crate::forward::translate::Inbound;
use crate::ops::telemetry::AttemptOutcome;
use crate::proxy::context::{RequestCtx, Route};
use crate::proxy::response_headers as rh;
use crate::routing::state::{RoutedDeployment, RoutedModel};
use bytes::Bytes;
use pingora_proxy::Session;
use std::time::Instant;
use switchyard_adapters::openai;

/// What an in-process answer is for: the model and deployment, the caller's request and the
/// request's deadline.
pub(super) struct InProcess<'a, 'b> {
    pub model: &'a RoutedModel,
    pub dep: &'a RoutedDeployment,
    pub inbound: &'a Inbound<'b>,
    #[cfg_attr(not(feature = "local"), allow(dead_code))]
    pub deadline: Instant,
}

impl Forwarder {
    /// Writes a whole JSON answer produced in process (mock, local pool): gateway and cost
    /// headers, then — after the strict-mode ledger commit — the body.
    pub(super) async fn write_whole_json(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        dep: &RoutedDeployment,
        spec: &crate::config::Deployment,
        body: Bytes,
    ) -> pingora_error::Result<()> {
        let (status, body) = if ctx.response_guardrails.is_empty() || ctx.route == Route::Embeddings
        {
            (200, body)
        } else {
            let caller = ctx.caller;
            crate::guardrails::answer_step(ctx, &self.connector, caller, 200, body).await
        };
        let mut resp = rh::head(status, 16)?;
        let h = &mut resp.headers;
        rh::add_gateway_headers(
            h,
            ctx,
            Some(rh::ServedBy::Names(dep.provider.name(), &spec.model)),
        )?;
        let mut cost = 0.0;
        if let Some(u) = &ctx.usage {
            cost = crate::governance::cost::cost_usd(&spec.price, u);
            h.insert(&rh::X_SWITCHYARD_COST_USD, cost_value(cost));
        }
        crate::cache::store_whole(ctx, status, &body, cost);
        crate::ops::finish_reasons::note(ctx, &body);
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
}

/// The 200 header of a stream produced in process (mock, local pool): gateway headers, SSE.
pub(super) async fn write_stream_header(
    session: &mut Session,
    ctx: &RequestCtx,
    dep: &RoutedDeployment,
    spec: &crate::config::Deployment,
) -> pingora_error::Result<()> {
    let mut resp = rh::head(200, 16)?;
    let h = &mut resp.headers;
    rh::add_gateway_headers(
        h,
        ctx,
        Some(rh::ServedBy::Names(dep.provider.name(), &spec.model)),
    )?;
    for (name, v) in [
        (http::header::CONTENT_TYPE, "text/event-stream"),
        (http::header::CACHE_CONTROL, "no-cache"),
        (http::header::TRANSFER_ENCODING, "chunked"),
    ] {
        h.insert(name, http::HeaderValue::from_static(v));
    }
    session.write_response_header(rh::finish(resp), false).await
}

/// Bookkeeping for an answer produced in process: the request is served by `dep` with `usage`.
pub(super) fn served_in_process(
    ctx: &mut RequestCtx,
    dep: &RoutedDeployment,
    usage: openai::Usage,
) {
    ctx.status = 200;
    ctx.served = Some(dep.index);
    ctx.usage = Some(usage);
    dep.provider.metrics.attempt(AttemptOutcome::Ok);
    let now = crate::clock::now_ms();
    dep.provider.record_success(now);
    dep.runtime.on_success(now);
}
