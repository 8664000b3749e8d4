//! `POST /v1/messages/count_tokens`: how many input tokens a Messages request would use. The
//! plan's first deployment that can take it answers: an `anthropic` one is asked (its
//! `/v1/messages/count_tokens`, with its key and its model name spliced in, failing over like a
//! chat try), a `local` one counts with its own tokenizer and chat template (the pool's prompt
//! count, the model never run for it), any other kind is counted here with the gateway's
//! estimator ([`crate::governance::estimate::input_tokens`]). The answer says which in
//! `x-switchyard-token-count: exact | estimated`.
//!
//! It is never billed: no admission (see the body steps in `proxy`), no ledger row, no cost
//! header. It owns only this route's choice of deployment; the try and the relay are the chat
//! path's ([`super::attempt`], [`super::relay`]).

use super::attempt::{note_failure, Try};
use super::relay::Answer;
use super::translate::{Inbound, Mode, Prepared};
use super::{Failure, Forwarder};
use crate::clock::now_ms;
use crate::config::ProviderKind;
use crate::errors::{GatewayError, TryFailure};
use crate::ops::telemetry::AttemptOutcome;
use crate::proxy::context::RequestCtx;
use crate::proxy::response_headers as rh;
use crate::routing::router;
use crate::routing::state::{RoutedDeployment, RoutedModel};
use bytes::Bytes;
use pingora_proxy::Session;
use std::time::Instant;
use switchyard_adapters::canonical::{Dialect, TranslateError};
use switchyard_adapters::openai;

/// Where Anthropic counts tokens, below its base URL (handled like `/v1/messages`).
pub const COUNT_TOKENS_PATH: &str = "/v1/messages/count_tokens";

impl Forwarder {
    /// Answers a token count for `model` (see the module doc).
    pub async fn serve_count_tokens(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        model: &RoutedModel,
        inbound: &Inbound<'_>,
    ) -> Result<(), Failure> {
        // Refused before any provider is asked: the caller's 400, whoever would count.
        let estimate = crate::governance::estimate::input_tokens(inbound.body).map_err(
            |(param, message)| {
                let param = (!param.is_empty()).then(|| param.to_string());
                GatewayError::Untranslatable(TranslateError::invalid(message, param))
            },
        )?;
        let facts = inbound.facts;
        let sticky_key = model.config.sticky.as_ref().and_then(|s| {
            crate::routing::sticky::caller_key(
                s,
                ctx.identity.as_deref(),
                &session.req_header().headers,
                inbound.body,
            )
        });
        let input = router::PlanInput {
            body_bytes: inbound.body.len(),
            max_tokens: None,
            seed: ctx.seed(),
            requested_model: &facts.model,
            headers: Some(&session.req_header().headers),
            metadata: facts.metadata,
            prefer_cheapest: false,
            hints: ctx.hints.as_ref(),
            caller: ctx.identity.as_deref(),
            sticky: sticky_key.as_deref(),
        };
        let steps = router::plan(model, &input);
        let routing = &model.config.routing;
        let deadline = ctx.started + routing.deadline;
        for (i, step) in steps.iter().enumerate() {
            let dep = step.deployment;
            let counted = match &dep.provider.config.kind {
                ProviderKind::Http {
                    dialect: Dialect::Anthropic,
                    ..
                } => None,
                #[cfg(feature = "local")]
                ProviderKind::Local(_) => Some(
                    local_count(model, dep, inbound.body, deadline)
                        .await
                        .map_or((estimate, "estimated"), |n| (n, "exact")),
                ),
                _ => Some((estimate, "estimated")),
            };
            if let Some((tokens, how)) = counted {
                return self
                    .write_count(session, ctx, dep, tokens, how)
                    .await
                    .map_err(Failure::Abort);
            }
            if !admissible(ctx, model, dep) {
                continue;
            }
            let upstream_model = &dep.spec(model).model;
            let prepared = Prepared {
                body: openai::rewrite_model(inbound.body, facts, upstream_model),
                path: COUNT_TOKENS_PATH.into(),
                mode: Mode::Observed(Dialect::Anthropic),
                dropped: Vec::new(),
            };
            ctx.tries += 1;
            ctx.mark_try_started();
            let t = Try {
                ctx,
                dep,
                prepared: &prepared,
                stream: false,
                may_retry: i + 1 < steps.len(),
                deadline,
                routing,
            };
            match self.try_within(&t).await {
                Ok(committed) => {
                    dep.provider.metrics.attempt(AttemptOutcome::Ok);
                    let answer = Answer {
                        dep,
                        upstream_model,
                        prepared: &prepared,
                        inbound,
                    };
                    return self.relay(session, ctx, committed, &answer).await;
                }
                Err(e) => {
                    if !note_failure(ctx, model, dep, e) || Instant::now() >= deadline {
                        break;
                    }
                }
            }
        }
        Err(Failure::Respond(GatewayError::NoDeploymentAvailable {
            model: model.config.name.clone(),
            tries: ctx.failures.clone(),
        }))
    }

    /// A count made in the gateway: `how` is `exact` (a local tokenizer) or `estimated`.
    async fn write_count(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        dep: &RoutedDeployment,
        tokens: u64,
        how: &'static str,
    ) -> pingora_error::Result<()> {
        let body = Bytes::from(serde_json::json!({ "input_tokens": tokens }).to_string());
        ctx.status = 200;
        ctx.served = Some(dep.index);
        let spec = ctx.model.as_ref().map(|m| dep.spec(m).model.clone());
        let mut resp = rh::head(200, 16)?;
        let h = &mut resp.headers;
        rh::add_gateway_headers(
            h,
            ctx,
            spec.as_deref()
                .map(|m| rh::ServedBy::Names(dep.provider.name(), m)),
        )?;
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        h.insert(
            &rh::X_SWITCHYARD_TOKEN_COUNT,
            http::HeaderValue::from_static(how),
        );
        rh::set_length(h, body.len());
        session
            .write_response_header(rh::finish(resp), false)
            .await?;
        ctx.mark_first_byte();
        session.write_response_body(Some(body), true).await?;
        ctx.completed = true;
        Ok(())
    }
}

/// Whether an Anthropic deployment may be asked now (circuit closed or probing, provider quota
/// left); a skip is noted in the request's tries.
fn admissible(ctx: &mut RequestCtx, model: &RoutedModel, dep: &RoutedDeployment) -> bool {
    let ok = dep
        .runtime
        .acquire(&model.config.routing.breaker, now_ms())
        .is_ok()
        && dep.provider.admit();
    if !ok {
        ctx.failures.push(TryFailure {
            provider: dep.provider.name().to_string(),
            model: dep.spec(model).model.clone(),
            reason: "skipped: circuit open or provider quota used up".into(),
        });
    }
    ok
}

/// The prompt tokens a local model would see for this Messages request (its chat template
/// applied, its tokenizer run): the pool's `Started` count. The job is dropped at once, so the
/// model does not generate for it (a worker that already took it runs at most one step).
/// `None` when the pool cannot say (not running, busy, a request it refuses): estimated then.
#[cfg(feature = "local")]
async fn local_count(
    model: &RoutedModel,
    dep: &RoutedDeployment,
    body: &[u8],
    deadline: Instant,
) -> Option<u64> {
    use crate::local::generate::GenerateRequest;
    use crate::local::pool::GenEvent;
    let pool = dep.provider.local.as_ref()?;
    // A count request is a Messages request without `max_tokens`: decoded with one.
    let mut v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.as_object_mut()?
        .insert("max_tokens".into(), serde_json::json!(1));
    let chat = switchyard_adapters::anthropic::decode_request(v.to_string().as_bytes()).ok()?;
    let request = GenerateRequest::from_chat(&chat).ok()?;
    let path = std::path::PathBuf::from(&dep.spec(model).model);
    let mut events = pool.try_generate(path, request).ok()?;
    match tokio::time::timeout_at(deadline.into(), events.recv()).await {
        Ok(Some(GenEvent::Started { prompt_tokens })) => Some(prompt_tokens),
        _ => None,
    }
}
