//! Answers from the local ONNX pool (cargo feature `local`): embeddings and text generation run on
//! the pool's worker threads; this task waits on a channel without blocking its thread. A full
//! queue or a long wait spills to the next deployment; a request the model cannot take is
//! refused so another deployment may. Generated tokens go out through the caller's encoder.

use super::{served_in_process, write_stream_header, InProcess};
use crate::clock::unix_secs as unix_now;
use crate::errors::GatewayError;
use crate::forward::cutoff::{budget_stop_encoded, over_cutoff};
use crate::forward::translate::{embedding_usage, Inbound};
use crate::forward::{Failure, Forwarder};
use crate::local::generate::GenerateRequest;
use crate::local::pool::{GenEvent, Spill};
use crate::proxy::context::RequestCtx;
use crate::routing::state::RoutedDeployment;
use bytes::{Bytes, BytesMut};
use pingora_proxy::Session;
use std::time::Instant;
use switchyard_adapters::canonical::{
    ChatResponse, ErrorKind, OutputPart, ProviderError, StreamEvent, TranslateError, Usage,
};
use switchyard_adapters::providers::StreamEncoder;
use switchyard_adapters::{embeddings, openai};

/// A generation under way: when it started, its prompt's size, the answer's id and time.
struct Generation {
    started: Instant,
    prompt_tokens: u64,
    id: String,
    created: u64,
}

/// OpenAI-shaped usage of a local generation.
fn local_usage(prompt_tokens: u64, completion_tokens: u64) -> openai::Usage {
    openai::Usage {
        prompt_tokens,
        completion_tokens,
        total_tokens: prompt_tokens + completion_tokens,
        ..Default::default()
    }
}

/// Why the local pool did not answer.
pub(in crate::forward) enum LocalMiss {
    /// Busy or unavailable: the next deployment should answer.
    Spilled(String),
    /// The model cannot take this request as written; another deployment may.
    Refused(TranslateError),
    Failed(Failure),
}

impl Forwarder {
    /// Embeddings from the local ONNX pool: the job goes to a worker thread through the bounded
    /// queue; this task waits without blocking its thread. A full queue or a long wait spills.
    pub(in crate::forward) async fn serve_local_embeddings(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        target: &InProcess<'_, '_>,
    ) -> Result<(), LocalMiss> {
        let (model, dep, inbound, deadline) =
            (target.model, target.dep, target.inbound, target.deadline);
        let spec = dep.spec(model);
        let Some(pool) = dep.provider.local.as_ref() else {
            return Err(LocalMiss::Spilled(local_unavailable(dep)));
        };
        let req = inbound
            .embeddings_request()
            .map_err(|e| LocalMiss::Failed(Failure::Respond(GatewayError::Untranslatable(e))))?;
        let (texts, base64) = (req.inputs.clone(), req.base64);
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
        let body = Bytes::from(embeddings::encode_response(
            &vectors,
            &model.config.name,
            tokens,
            base64,
        ));
        served_in_process(ctx, dep, embedding_usage(tokens));
        dep.runtime
            .observe_ttfb(started.elapsed(), crate::clock::now_ms());
        self.write_whole_json(session, ctx, dep, spec, body)
            .await
            .map_err(|e| LocalMiss::Failed(Failure::Abort(e)))
    }

    /// A chat answer from a local generation model: the job goes to a worker thread, whose
    /// tokens come back on a channel as they are produced and go out through the caller's
    /// encoder, as a remote provider's would. Until the first event the job may still spill to
    /// the next deployment; after it, the answer is this deployment's.
    pub(in crate::forward) async fn serve_local_chat(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        target: &InProcess<'_, '_>,
        mut request: GenerateRequest,
    ) -> Result<(), LocalMiss> {
        let (model, dep, inbound, deadline) =
            (target.model, target.dep, target.inbound, target.deadline);
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
        served_in_process(ctx, dep, local_usage(prompt_tokens, 0));
        ctx.stream = inbound.facts.stream;
        let generation = Generation {
            started,
            prompt_tokens,
            id: format!("{}{}", inbound.caller.id_prefix(), ctx.request_id),
            created: unix_now(),
        };
        if inbound.facts.stream {
            self.local_stream(session, ctx, target, events, generation)
                .await
        } else {
            self.local_whole(session, ctx, target, events, generation)
                .await
        }
    }

    /// A local generation answered whole: its text collected, then one answer in the caller's
    /// format.
    async fn local_whole(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        target: &InProcess<'_, '_>,
        mut events: tokio::sync::mpsc::UnboundedReceiver<GenEvent>,
        generation: Generation,
    ) -> Result<(), LocalMiss> {
        let (model, dep, deadline) = (target.model, target.dep, target.deadline);
        let spec = dep.spec(model);
        let Generation {
            started,
            prompt_tokens,
            id,
            created,
        } = generation;
        let caller = target.inbound.caller;
        let public_model = model.config.name.as_str();
        let usage = |completion: u64| local_usage(prompt_tokens, completion);
        let failed =
            |why: String| LocalMiss::Failed(Failure::Respond(GatewayError::LocalInference(why)));
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
        dep.runtime
            .observe_ttfb(started.elapsed(), crate::clock::now_ms());
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

    /// A local generation streamed: each token through the caller's encoder as it comes.
    async fn local_stream(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        target: &InProcess<'_, '_>,
        mut events: tokio::sync::mpsc::UnboundedReceiver<GenEvent>,
        generation: Generation,
    ) -> Result<(), LocalMiss> {
        let (model, dep) = (target.model, target.dep);
        let spec = dep.spec(model);
        let Generation {
            started,
            prompt_tokens,
            id,
            created,
        } = generation;
        let caller = target.inbound.caller;
        let public_model = model.config.name.as_str();
        let usage = |completion: u64| local_usage(prompt_tokens, completion);
        let abort = |e| LocalMiss::Failed(Failure::Abort(e));
        write_stream_header(session, ctx, dep, spec)
            .await
            .map_err(abort)?;
        let _stream_guard = ctx.stream_guard();
        let mut encoder = StreamEncoder::new(
            caller,
            &id,
            public_model,
            created,
            target.inbound.include_usage(),
        );
        let mut out = BytesMut::new();
        let mut guard = crate::guardrails::stream::EventGuard::open(ctx);
        let mut guarded = Vec::new();
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
                    guarded_push(guard.as_mut(), StreamEvent::TextDelta(t), &mut guarded);
                    false
                }
                GenEvent::Finished {
                    finish,
                    completion_tokens,
                    ..
                } => {
                    completion = completion_tokens;
                    let usage = canonical_usage(prompt_tokens, completion);
                    for ev in [
                        StreamEvent::Usage(usage),
                        StreamEvent::Finish(finish),
                        StreamEvent::End,
                    ] {
                        guarded_push(guard.as_mut(), ev, &mut guarded);
                    }
                    if let Some(g) = guard.as_mut() {
                        g.finish(&mut guarded);
                        let record = g.record.clone();
                        let last = crate::guardrails::stream::settle(&record, ctx, &self.connector);
                        guarded.extend(last.await.unwrap_or_default());
                    }
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
            let mut done = done;
            for ev in guarded.drain(..) {
                encoder.push(&ev, &mut out);
                if matches!(ev, StreamEvent::Error(_)) {
                    // A guardrail blocked the answer: nothing more goes out.
                    done = true;
                    ctx.error_code = Some("content_blocked");
                }
            }
            ctx.usage = Some(usage(completion));
            if out.is_empty() {
                continue;
            }
            if first {
                first = false;
                dep.runtime
                    .observe_ttfb(started.elapsed(), crate::clock::now_ms());
                ctx.mark_first_byte();
            }
            ctx.streamed_events += 1;
            if done && ctx.error_code.is_none() {
                self.commit_row(ctx).await;
            }
            crate::ops::finish_reasons::note(ctx, &out);
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
                    .write_response_body(Some(budget_stop_encoded(caller, &mut encoder)), true)
                    .await
                    .map_err(abort)?;
                return Ok(());
            }
        }
        if let Some(g) = &guard {
            crate::guardrails::stream::finish_into(&g.record, ctx);
        }
        session
            .write_response_body(None, true)
            .await
            .map_err(abort)?;
        ctx.completed = ctx.error_code.is_none();
        Ok(())
    }
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
pub(in crate::forward) fn local_request(
    inbound: &Inbound<'_>,
) -> Result<GenerateRequest, TranslateError> {
    let req = inbound.canonical()?;
    GenerateRequest::from_chat(req).map_err(|field| TranslateError::Unsupported {
        field: field.into(),
        provider: "local",
    })
}

/// Whether the local pool can take the embeddings request: text inputs, and no `dimensions`
/// (a local model's vectors have its own size) unless the model is not `strict`, which ignores it.
pub(in crate::forward) fn local_embeddings(
    inbound: &Inbound<'_>,
    strict: bool,
) -> Result<(), TranslateError> {
    let req = inbound.embeddings_request()?;
    if req.dimensions.is_some() && strict {
        return Err(TranslateError::Unsupported {
            field: "dimensions".into(),
            provider: "local",
        });
    }
    Ok(())
}

/// An event of a local stream on its way to the encoder: through the response guardrails when
/// they apply (which may hold it back or release held text first).
fn guarded_push(
    guard: Option<&mut crate::guardrails::stream::EventGuard>,
    ev: StreamEvent,
    out: &mut Vec<StreamEvent>,
) {
    match guard {
        Some(g) => g.push(ev, out),
        None => out.push(ev),
    }
}
