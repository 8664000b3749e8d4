//! Whole-body answers: the upstream body is read in full, translated to the caller's format or
//! priced, and written with an exact `Content-Length` and `x-switchyard-cost-usd`. The read is
//! bounded in size ([`MAX_UPSTREAM_BODY`]: longer is a 502 `upstream_body_too_large`) and in time
//! (each read by the provider's `idle`, all of them by what is left of its `total`: a 504). A
//! failure while reading is answered in the caller's format, never as a cut body.

use super::headers::HeadFacts;
use super::stream::{midstream_failure, over_total, Midstream};
use super::Answer;
use crate::clock::unix_secs;
use crate::errors::{GatewayError, TryFailure};
use crate::forward::attempt::Committed;
use crate::forward::translate;
use crate::forward::{cost_value, Failure, Forwarder, MAX_UPSTREAM_BODY};
use crate::ops::telemetry::AttemptOutcome;
use crate::proxy::context::RequestCtx;
use crate::proxy::response_headers as rh;
use bytes::{Bytes, BytesMut};
use pingora_core::protocols::http::client::HttpSession;
use pingora_proxy::Session;
use std::time::Instant;

/// Why an upstream body could not be read whole.
enum Unread {
    /// The upstream broke mid-body.
    Failed(String),
    /// The provider's `idle` or `total` ran out.
    TimedOut(String),
    /// Longer than [`MAX_UPSTREAM_BODY`].
    TooLarge,
}

impl Forwarder {
    /// Reads the answer whole, translates or prices it, and writes it.
    pub(super) async fn relay_whole(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        mut committed: Box<Committed>,
        mut resp: http::response::Parts,
        facts: HeadFacts,
        answer: &Answer<'_, '_>,
    ) -> Result<(), Failure> {
        // Kept boxed to the end (its session is ~470 bytes: moved out, the future would hold it).
        let dep = answer.dep;
        let deadline = committed.started + dep.provider.config.timeouts.total;
        let (raw, decoded) = match committed.whole.take() {
            // Already read (and checked) before the try was committed.
            Some(w) => (w.raw, w.decoded),
            None => match read_whole(
                &mut committed.upstream,
                committed.first_chunk.take(),
                &facts,
                answer,
                deadline,
            )
            .await
            {
                Ok(raw) => (raw, None),
                Err(unread) => return Err(Failure::Respond(unread_error(ctx, answer, unread))),
            },
        };
        let (mut status, mut body) = caller_body(ctx, raw, decoded, &facts, answer);
        if !ctx.response_guardrails.is_empty() && (200..300).contains(&status) {
            let before = body.clone();
            // Boxed: its webhook call is ~3 KB of future that every whole answer's relay carried
            // (and every request's future with it) although most gateways run no guardrail.
            (status, body) = Box::pin(crate::guardrails::answer_step(
                ctx,
                &self.connector,
                answer.inbound.caller,
                status,
                body,
            ))
            .await;
            if let Some(turn) = &answer.inbound.turn {
                if body.as_ptr() != before.as_ptr() || body.len() != before.len() {
                    // The store keeps what the caller was shown (a redacted answer), never the
                    // provider's original; a blocked answer is an error, not a response.
                    match serde_json::from_slice::<serde_json::Value>(&body) {
                        Ok(v) if v.get("object").and_then(|o| o.as_str()) == Some("response") => {
                            turn.replace_finished(&v)
                        }
                        _ => {
                            turn.take_finished();
                        }
                    }
                }
            }
            if !ctx.guardrails.is_empty() {
                let v = crate::guardrails::header_value(&ctx.guardrails);
                rh::set(&mut resp.headers, &rh::X_SWITCHYARD_GUARDRAILS, &v)
                    .map_err(Failure::Abort)?;
            }
        }
        if status != resp.status.as_u16() {
            if let Ok(code) = http::StatusCode::from_u16(status) {
                resp.status = code;
            }
            ctx.status = status;
        }
        let h = &mut resp.headers;
        if facts.translated {
            h.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
        }
        h.remove(http::header::TRANSFER_ENCODING);
        rh::set_length(h, body.len());
        let mut cost = 0.0;
        if let (Some(u), Some(m)) = (ctx.usage, ctx.model.as_ref()) {
            cost = crate::governance::cost::cost_usd(&dep.spec(m).price, &u);
            h.insert(&rh::X_SWITCHYARD_COST_USD, cost_value(cost));
            dep.provider
                .add_tokens(u.prompt_tokens + u.completion_tokens);
        }
        crate::cache::store_whole(ctx, status, &body, cost);
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
        self.complete(ctx, dep, committed);
        Ok(())
    }
}

/// A successful non-stream answer's body, read whole before anything is written to the caller
/// (for [`crate::forward::answer_check`]); `None` when the answer is not one that is read whole
/// (a stream, an error status). A failed read is the caller's error, as [`Forwarder::relay_whole`]
/// answers it.
pub(in crate::forward) async fn read_success_whole(
    ctx: &RequestCtx,
    committed: &mut Committed,
    answer: &Answer<'_, '_>,
) -> Option<Result<Bytes, GatewayError>> {
    let facts = HeadFacts::of(committed.upstream.response_header()?, answer);
    committed.facts = Some(facts);
    if !(facts.read_whole && facts.success) {
        return None;
    }
    let deadline = committed.started + answer.dep.provider.config.timeouts.total;
    let first = committed.first_chunk.take();
    Some(
        read_whole(&mut committed.upstream, first, &facts, answer, deadline)
            .await
            .map_err(|unread| unread_error(ctx, answer, unread)),
    )
}

/// A failed read, as the relay of a stream describes it.
#[cold]
fn unread((outcome, _, reason): Midstream) -> Unread {
    match outcome {
        AttemptOutcome::Timeout => Unread::TimedOut(reason),
        _ => Unread::Failed(reason),
    }
}

/// The failed try's bookkeeping, and the caller's error for it.
#[cold]
fn unread_error(ctx: &RequestCtx, answer: &Answer<'_, '_>, unread: Unread) -> GatewayError {
    let dep = answer.dep;
    let model = ctx
        .model
        .as_ref()
        .map(|m| m.config.name.clone())
        .unwrap_or_default();
    let (outcome, reason) = match &unread {
        Unread::Failed(r) => (AttemptOutcome::StreamError, r.clone()),
        Unread::TimedOut(r) => (AttemptOutcome::Timeout, r.clone()),
        Unread::TooLarge => (
            AttemptOutcome::StreamError,
            format!("upstream response exceeds {MAX_UPSTREAM_BODY} bytes"),
        ),
    };
    dep.provider.metrics.attempt(outcome);
    dep.provider.record_failure(&reason);
    log::warn!("request {}: {reason}", ctx.request_id);
    let tries = vec![TryFailure {
        provider: dep.provider.name().to_string(),
        model: answer.upstream_model.to_string(),
        reason,
    }];
    match unread {
        Unread::Failed(_) => GatewayError::NoDeploymentAvailable { model, tries },
        Unread::TimedOut(_) => GatewayError::UpstreamTimeout { model, tries },
        Unread::TooLarge => GatewayError::UpstreamBodyTooLarge {
            model,
            provider: dep.provider.name().to_string(),
            upstream_model: answer.upstream_model.to_string(),
            limit: MAX_UPSTREAM_BODY,
        },
    }
}

/// Reads the upstream body to its end, up to [`MAX_UPSTREAM_BODY`] and `deadline` (the try's
/// `total`); every read also within the provider's `idle`. A body whose `Content-Length` is
/// already over the limit is refused without reading it.
async fn read_whole(
    upstream: &mut HttpSession,
    first_chunk: Option<Bytes>,
    facts: &HeadFacts,
    answer: &Answer<'_, '_>,
    deadline: Instant,
) -> Result<Bytes, Unread> {
    let timeouts = answer.dep.provider.config.timeouts;
    let limit = MAX_UPSTREAM_BODY;
    if facts.declared.is_some_and(|n| n > limit) {
        return Err(Unread::TooLarge);
    }
    let mut whole = BytesMut::with_capacity(facts.declared.unwrap_or(0));
    if let Some(c) = first_chunk {
        whole.extend_from_slice(&c);
    }
    loop {
        // Checked before every read: a read that finds data waiting never times out, so an
        // upstream that keeps sending could otherwise outlast `total`.
        let now = Instant::now();
        if now >= deadline {
            return Err(unread(over_total(&timeouts)));
        }
        upstream.set_read_timeout(Some(timeouts.idle.min(deadline - now)));
        match upstream.read_response_body().await {
            Ok(Some(chunk)) if whole.len() + chunk.len() <= limit => {
                whole.extend_from_slice(&chunk);
                // A body of announced length is complete with its last byte: asking again
                // would only be told so, after a clock read and a timeout armed for nothing.
                if upstream.response_done() {
                    return Ok(whole.freeze());
                }
            }
            Ok(Some(_)) => return Err(Unread::TooLarge),
            Ok(None) => return Ok(whole.freeze()),
            Err(e) => return Err(unread(midstream_failure(&e, deadline, &timeouts))),
        }
    }
}

/// The caller's status and body for the upstream's whole `raw` answer: translated (or passed
/// through), with its usage noted; an error mapped into the caller's format.
fn caller_body(
    ctx: &mut RequestCtx,
    raw: Bytes,
    decoded: Option<translate::Decoded>,
    facts: &HeadFacts,
    answer: &Answer<'_, '_>,
) -> (u16, Bytes) {
    let caller = answer.inbound.caller;
    let mode = answer.prepared.mode;
    if !facts.success {
        return translate::translate_error(
            mode,
            caller,
            facts.status,
            &raw,
            facts.retry_after_secs,
            &ctx.request_id,
        )
        .unwrap_or((facts.status, raw));
    }
    let filtered = crate::cloud::content_filter::applies(&answer.dep.provider.config.kind)
        && crate::cloud::content_filter::filtered(&raw);
    // Only a translated answer is written anew, with an id and a `created` time (a passed-through
    // one keeps the provider's): no formatting and no wall-clock read for the others.
    let (response_id, created) = if mode.translated() {
        (
            format!("{}{}", caller.id_prefix(), ctx.request_id),
            unix_secs(),
        )
    } else {
        (String::new(), 0)
    };
    match translate::translate_answer(
        mode,
        answer.inbound,
        raw,
        decoded,
        &response_id,
        answer.upstream_model,
        created,
    ) {
        Ok((_, usage)) if filtered => {
            // Azure withheld the output: the caller's content-policy error (the prompt was
            // still billed, so the usage is kept).
            ctx.usage = usage;
            ctx.error_code = Some(crate::cloud::content_filter::CODE);
            crate::cloud::content_filter::error(caller, &ctx.request_id)
        }
        Ok((body, usage)) => {
            ctx.usage = usage;
            crate::ops::finish_reasons::note(ctx, &body);
            (facts.status, body)
        }
        Err(e) => {
            // A 2xx carrying an error (or nothing readable): the caller gets the error.
            answer.dep.provider.record_failure(&e.message);
            ctx.error_code = Some("upstream_status");
            let (st, body) = caller.encode_error(&e, &ctx.request_id);
            (st, Bytes::from(body))
        }
    }
}
