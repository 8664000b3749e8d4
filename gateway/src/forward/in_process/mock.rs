//! Answers from the built-in `mock` provider: OpenAI-format answers (from [`super::mock_answer`]),
//! translated for callers of other formats through the same relay as any provider's, with the
//! configured latency and chunk pacing. Budget cutoffs apply as to any stream.

use super::{served_in_process, write_stream_header, InProcess};
use crate::clock::unix_secs as unix_now;
use crate::config::MockSettings;
use crate::errors::GatewayError;
use crate::forward::cutoff::over_cutoff;
use crate::forward::in_process::mock_answer::MockAnswer;
use crate::forward::translate::{self, embedding_usage, Inbound, Mode, StreamRelay};
use crate::forward::{Failure, Forwarder};
use crate::proxy::context::RequestCtx;
use pingora_proxy::Session;
use switchyard_adapters::canonical::{Dialect, EncodeOptions};
use switchyard_adapters::openai::InspectError;
use switchyard_adapters::providers::Caller;

impl Forwarder {
    /// Answers from the built-in mock provider (OpenAI-format answers, translated for callers
    /// of other formats like any provider's).
    pub(in crate::forward) async fn serve_mock(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        target: &InProcess<'_, '_>,
        settings: &MockSettings,
    ) -> Result<(), Failure> {
        let (model, dep, inbound) = (target.model, target.dep, target.inbound);
        let spec = dep.spec(model);
        let facts = inbound.facts;
        let caller = inbound.caller;
        if inbound.embeddings {
            let req = inbound
                .embeddings_request()
                .map_err(|e| Failure::Respond(GatewayError::Untranslatable(e)))?;
            let (body, tokens) =
                crate::forward::in_process::mock_answer::embeddings_body(req, &spec.model);
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
        // `n` choices are answered whole to OpenAI callers; a stream of several choices (or a
        // format without `n`) is refused rather than silently answered with one.
        if facts.choices > 1 && (facts.stream || caller != Caller::OpenAi) {
            return Err(Failure::Respond(GatewayError::InvalidRequest(
                InspectError::OutOfRange("n", "must be 1 for the mock provider's streams"),
            )));
        }
        // The mock reads chat messages: a completions prompt is asked as its chat turn.
        let as_chat;
        let request: &[u8] =
            if matches!(caller, Caller::OpenAiCompletions | Caller::OpenAiResponses) {
                as_chat = completions_as_chat(inbound, &spec.model)?;
                &as_chat
            } else {
                inbound.body
            };
        let mut answer = MockAnswer::generate(request, max_tokens, facts.choices).map_err(|e| {
            Failure::Respond(GatewayError::InvalidMockRequest {
                message: e.message,
                param: e.param,
            })
        })?;
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
            let (body, _) =
                translate::translate_answer(mode, inbound, raw, None, &id, &spec.model, created)
                    .map_err(|e| {
                        Failure::Respond(GatewayError::InvalidMockRequest {
                            message: e.message,
                            param: None,
                        })
                    })?;
            return self
                .write_whole_json(session, ctx, dep, spec, body)
                .await
                .map_err(Failure::Abort);
        }
        write_stream_header(session, ctx, dep, spec)
            .await
            .map_err(Failure::Abort)?;
        let _stream_guard = ctx.stream_guard();
        let guarded = crate::guardrails::stream::stream_mode(mode, caller)
            .filter(|_| !ctx.response_guardrails.is_empty());
        let mode = guarded.unwrap_or(mode);
        let mut relay = StreamRelay::for_inbound(mode, inbound, &id, &spec.model, created);
        let guard = crate::guardrails::stream::open(&mut relay, ctx);
        let events = answer.stream_events(&id, &spec.model, created, settings.chunks);
        for (i, ev) in events.into_iter().enumerate() {
            if i > 0 && !settings.chunk_interval.is_zero() {
                tokio::time::sleep(settings.chunk_interval).await;
            }
            if let Some(out) = relay.push(ev) {
                crate::ops::finish_reasons::note(ctx, &out);
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
                        .write_response_body(Some(relay.budget_stop(caller)), true)
                        .await
                        .map_err(Failure::Abort)?;
                    return Ok(());
                }
            }
        }
        let mut tail = relay.finish();
        if let Some(g) = &guard {
            if let Some(last) = crate::guardrails::stream::settle(g, ctx, &self.connector).await {
                tail = crate::forward::relay::join(tail, relay.emit(last));
            }
            if !crate::guardrails::stream::finish_into(g, ctx) && relay.completed() {
                // The end was held for a webhook: the row is committed now.
                self.commit_row(ctx).await;
            }
        }
        if let Some(tail) = tail {
            crate::ops::finish_reasons::note(ctx, &tail);
            session
                .write_response_body(Some(tail), false)
                .await
                .map_err(Failure::Abort)?;
        }
        session
            .write_response_body(None, true)
            .await
            .map_err(Failure::Abort)?;
        ctx.completed = ctx.error_code.is_none();
        Ok(())
    }
}

/// A completions or Responses request as the OpenAI chat body the mock answers.
fn completions_as_chat(inbound: &Inbound<'_>, model: &str) -> Result<Vec<u8>, Failure> {
    let refused = |e| Failure::Respond(GatewayError::Untranslatable(e));
    let req = inbound.canonical().map_err(refused)?;
    let opts = EncodeOptions {
        model,
        default_max_tokens: translate::FALLBACK_MAX_TOKENS,
    };
    switchyard_adapters::openai::codec::encode_request(req, &opts)
        .map(|e| e.body)
        .map_err(refused)
}
