//! Model fallbacks (`models[].fallbacks`): when every deployment of the requested model failed,
//! or none could take the request (its prompt exceeds each deployment's `context_window`, a field
//! no provider honours, or a provider refused it for content policy — [`content_refusal`] reads
//! and classifies an error answer before any of it is relayed), the next fallback model's plan
//! runs, in order, within the first model's deadline and the budget already reserved. A caller's
//! `fallbackProviders` hint ([`crate::routing::hinted`]) runs first: the same model on the
//! providers it names. The model that served is the request's model from then on (ledger, access
//! log) and `x-switchyard-fallback` names it. Owns the order of models, not the tries within one
//! ([`super::plan`]).

use super::attempt::Committed;
use super::{Failure, Forwarder};
use crate::errors::GatewayError;
use crate::proxy::context::RequestCtx;
use crate::routing::state::RoutedModel;
use bytes::BytesMut;
use pingora_proxy::Session;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;
use switchyard_adapters::canonical::{Dialect, ErrorKind, ProviderError};
use switchyard_adapters::providers;

use super::translate::Inbound;

/// What the plan of one model is given besides the model.
#[derive(Clone, Copy)]
pub(super) struct Bounds {
    /// The request's deadline (the requested model's, kept across fallbacks).
    pub deadline: Instant,
    /// The prompt's estimated tokens, when some deployment has a `context_window` to check.
    pub prompt_tokens: Option<u64>,
    /// Fallback models may serve: a model's last failed try is not relayed to the caller.
    pub fallbacks: bool,
}

impl Forwarder {
    /// Serves one inference request for `model`: its own plan, then its fallbacks. A model
    /// without fallbacks (nearly every request) runs its plan alone; the walk over fallbacks is
    /// boxed, so its future (~3 KB) is not part of every request's.
    pub async fn serve_chat(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        model: &RoutedModel,
        inbound: &Inbound<'_>,
    ) -> Result<(), Failure> {
        let plain = model.config.fallbacks.is_empty()
            && ctx.hinted.is_none()
            && !model
                .config
                .deployments
                .iter()
                .any(|d| d.context_window.is_some());
        if plain {
            let bounds = Bounds {
                deadline: ctx.started + model.config.routing.deadline,
                prompt_tokens: None,
                fallbacks: false,
            };
            self.serve_model(session, ctx, model, inbound, bounds).await
        } else {
            Box::pin(self.serve_with_fallbacks(session, ctx, model, inbound)).await
        }
    }

    /// [`Self::serve_chat`] for a model with fallbacks, a caller's `fallbackProviders` or a
    /// deployment's `context_window`.
    async fn serve_with_fallbacks(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        model: &RoutedModel,
        inbound: &Inbound<'_>,
    ) -> Result<(), Failure> {
        let state = ctx.snapshot.as_ref().map(|s| s.state.clone());
        let fallbacks: Vec<Arc<RoutedModel>> = match &state {
            Some(state) if !model.config.fallbacks.is_empty() => model
                .config
                .fallbacks
                .iter()
                .filter_map(|name| state.model(name).cloned())
                .filter(|m| {
                    ctx.identity
                        .as_ref()
                        .is_none_or(|who| who.may_use(&m.config.name))
                })
                .collect(),
            _ => Vec::new(),
        };
        let windows = std::iter::once(model)
            .chain(fallbacks.iter().map(|m| &**m))
            .any(|m| {
                m.config
                    .deployments
                    .iter()
                    .any(|d| d.context_window.is_some())
            });
        let hinted = ctx.hinted.clone();
        let bounds = Bounds {
            deadline: ctx.started + model.config.routing.deadline,
            prompt_tokens: windows.then(|| prompt_tokens(inbound.body)),
            fallbacks: !fallbacks.is_empty() || hinted.is_some(),
        };
        let first = self.serve_model(session, ctx, model, inbound, bounds).await;
        let original = match first {
            Err(Failure::Respond(e)) if bounds.fallbacks && falls_back(&e) => e,
            other => return other,
        };
        let requested = ctx.model.clone();
        if let Some(hinted) = hinted.filter(|_| Instant::now() < bounds.deadline) {
            // The caller's `fallbackProviders`: the same model on other providers, before any
            // fallback model (`x-switchyard-provider` says which served).
            log::info!(
                "request {}: model {} could not answer; trying the caller's fallbackProviders",
                ctx.request_id,
                model.config.name
            );
            ctx.model = Some(hinted.clone());
            match self
                .serve_model(session, ctx, &hinted, inbound, bounds)
                .await
            {
                Err(Failure::Respond(e)) if falls_back(&e) => ctx.model = requested.clone(),
                other => return other,
            }
        }
        for fallback in &fallbacks {
            if Instant::now() >= bounds.deadline {
                break;
            }
            log::info!(
                "request {}: model {} could not answer; falling back to {}",
                ctx.request_id,
                model.config.name,
                fallback.config.name
            );
            ctx.model = Some(fallback.clone());
            ctx.fallback = true;
            match self
                .serve_model(session, ctx, fallback, inbound, bounds)
                .await
            {
                Err(Failure::Respond(e)) if falls_back(&e) => {}
                other => return other,
            }
        }
        // No fallback answered: the requested model's own refusal, as without fallbacks.
        ctx.model = requested;
        ctx.fallback = false;
        Err(Failure::Respond(original))
    }
}

/// Whether a model's plan ended in a way another model may mend: every deployment failed or
/// none could take the request. Not the caller's limits or budgets.
fn falls_back(e: &GatewayError) -> bool {
    matches!(
        e,
        GatewayError::NoDeploymentAvailable { .. }
            | GatewayError::UpstreamTimeout { .. }
            | GatewayError::UpstreamRateLimited { .. }
            | GatewayError::Untranslatable(_)
            | GatewayError::BadUpstreamResponse { .. }
            | GatewayError::InvalidStructuredOutput { .. }
            | GatewayError::ContentPolicy { .. }
    )
}

/// Statuses a provider refuses a prompt for content policy with (OpenAI and Azure OpenAI 400
/// `content_filter` / `content_policy_violation`; others 400, 403 or 422).
const POLICY_STATUSES: [u16; 3] = [400, 403, 422];

/// The most of an error body read to classify it (refusals are small JSON objects).
const MAX_POLICY_BODY: usize = 64 * 1024;

/// Whether a committed error answer is a content-policy refusal, read before any of it reaches
/// the caller (only where a fallback model could take the request). Its body is read (bounded by
/// [`MAX_POLICY_BODY`] and the provider's `idle`) and decoded in the provider's format; when it
/// is not a refusal, the bytes read go back as the answer's first chunk, so the relay writes them
/// as they came.
pub(super) async fn content_refusal(
    committed: &mut Committed,
    dialect: Dialect,
    idle: Duration,
) -> Option<ProviderError> {
    let status = committed.upstream.response_header()?.status.as_u16();
    if !POLICY_STATUSES.contains(&status) {
        return None;
    }
    let mut body = BytesMut::new();
    let mut complete = false;
    committed.upstream.set_read_timeout(Some(idle));
    while body.len() < MAX_POLICY_BODY {
        match committed.upstream.read_response_body().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => {
                complete = true;
                break;
            }
            // Left to the relay, which answers a broken body as it does any.
            Err(_) => break,
        }
    }
    let body = body.freeze();
    let refusal = complete
        .then(|| providers::decode_error(dialect, status, &body, None))
        .filter(|e| e.kind == ErrorKind::ContentPolicy);
    if refusal.is_none() && !body.is_empty() {
        committed.first_chunk = Some(body);
    }
    refusal
}

/// The prompt's tokens, estimated as `count_tokens` does for providers that cannot count (text
/// at ≈ 4 bytes a token); a body without `messages` (a completions prompt) by its size.
fn prompt_tokens(body: &[u8]) -> u64 {
    crate::governance::estimate::input_tokens(body).unwrap_or((body.len() / 4) as u64)
}
