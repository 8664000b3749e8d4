//! Bodies relayed as they arrive: streams event by event through a [`StreamRelay`] (translated or
//! passed through), and non-stream bodies that are not read whole (an untranslated error body,
//! an answer the upstream sent without SSE to a stream request) chunk by chunk. Ends a stream
//! cleanly in the caller's format when the upstream fails mid-way or a budget's cutoff is reached,
//! and notes the usage for metering.
//!
//! Bounds, so a broken upstream cannot take memory or time without bound:
//! * time: every read by the provider's `idle` and what is left of its `total`, and `total`
//!   checked before each read too (a read that finds data waiting never times out, so an
//!   upstream that never pauses would otherwise outlast it);
//! * memory: a stream event by [`MAX_EVENT_BYTES`] (the pass-through framer and the translating
//!   decoders hold at most that; an oversized event ends the stream with the caller's error
//!   event), a non-stream body by [`MAX_UPSTREAM_BODY`] (counted, not held: past it the body is
//!   cut).
//!
//! Each upstream chunk is written as soon as it is read (one downstream write per chunk): see
//! [`Forwarder::pump`] for why reads are not coalesced.

use super::headers::HeadFacts;
use super::Answer;
use crate::clock::unix_secs;
use crate::config::Timeouts;
use crate::forward::attempt::{is_timeout, Committed};
use crate::forward::cutoff::over_cutoff;
use crate::forward::translate::{Mode, StreamRelay};
use crate::forward::{Failure, Forwarder, MAX_UPSTREAM_BODY};
use crate::guardrails::native::NativeGuard;
use crate::ops::telemetry::AttemptOutcome;
use crate::proxy::context::RequestCtx;
use crate::proxy::response_headers as rh;
use bytes::Bytes;
use pingora_core::protocols::http::client::HttpSession;
use pingora_error::{Error, ErrorType};
use pingora_proxy::Session;
use std::time::Instant;
use switchyard_adapters::canonical::ErrorKind;
use switchyard_adapters::sse::MAX_EVENT_BYTES;

/// Why a relayed body ended early: the try's outcome, the kind of error told to the caller, and
/// the reason for the logs.
pub(super) type Midstream = (AttemptOutcome, ErrorKind, String);

/// How the upstream body's relay loop ended.
enum Pumped {
    /// The upstream body ended, or the provider reported an error in its stream (already
    /// relayed in the caller's format).
    Done,
    /// The upstream failed or broke a bound; the caller has not been told yet.
    Failed(Midstream),
    /// A budget's cutoff ended the stream; the caller's response is complete.
    CutOff,
}

/// What the relay loop reads from and writes through.
struct Pipe<'s, 'u> {
    session: &'s mut Session,
    upstream: &'u mut HttpSession,
    first_chunk: Option<Bytes>,
    started: Instant,
    /// Response guardrails on a native Responses stream (its events rewritten).
    native: Option<&'u mut NativeGuard>,
}

impl Forwarder {
    /// Writes the caller's head, then the body as it arrives.
    pub(super) async fn relay_body(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        committed: Box<Committed>,
        resp: http::response::Parts,
        facts: &HeadFacts,
        answer: &Answer<'_, '_>,
    ) -> Result<(), Failure> {
        let Committed {
            mut upstream,
            peer,
            started,
            first_chunk,
            // Set only for answers read whole, which `relay_whole` writes.
            whole: _,
        } = *committed;
        let (dep, inbound) = (answer.dep, answer.inbound);
        session
            .write_response_header(rh::finish(resp), false)
            .await
            .map_err(Failure::Abort)?;
        let _stream_guard = facts.is_stream.then(|| ctx.stream_guard());
        let response_id = format!("{}{}", inbound.caller.id_prefix(), ctx.request_id);
        let guarded = facts.is_stream && facts.success && !ctx.response_guardrails.is_empty();
        let mode = answer.prepared.mode;
        let guarded_mode = guarded
            .then(|| crate::guardrails::stream::stream_mode(mode, inbound.caller))
            .flatten();
        let mut relay = facts.is_stream.then(|| {
            StreamRelay::for_inbound(
                guarded_mode.unwrap_or(mode),
                inbound,
                &response_id,
                answer.upstream_model,
                unix_secs(),
            )
        });
        let mut native = (guarded && mode == Mode::ResponsesNative)
            .then(|| NativeGuard::open(ctx, inbound.turn.clone()))
            .flatten();
        let guard = match (guarded_mode, relay.as_mut()) {
            (Some(_), Some(r)) => crate::guardrails::stream::open(r, ctx),
            _ => native.as_ref().map(|(_, record)| record.clone()),
        };
        let pipe = Pipe {
            session,
            upstream: &mut upstream,
            first_chunk,
            started,
            native: native.as_mut().map(|(n, _)| n),
        };
        let midstream = match self.pump(pipe, ctx, relay.as_mut(), answer).await? {
            Pumped::CutOff => return Ok(()),
            Pumped::Done => None,
            Pumped::Failed(m) => Some(m),
        };
        // The stream's last events (the translator's tail) go out with its end: one write.
        let mut tail = None;
        if let Some(r) = relay.as_mut() {
            if midstream.is_none() {
                tail = r.finish();
                if let Some((n, record)) = native.as_mut() {
                    // Blocked: the error event went out, nothing after it.
                    tail = tail
                        .filter(|_| !crate::guardrails::native::blocked(record))
                        .and_then(|t| n.rewrite(t).ok());
                }
                if let Some(g) = &guard {
                    // Boxed, as the whole answer's step: ~3 KB every stream carried otherwise.
                    if let Some(last) =
                        Box::pin(crate::guardrails::stream::settle(g, ctx, &self.connector)).await
                    {
                        tail = join(tail, r.emit(last));
                    }
                }
            }
            if let Some(t) = &tail {
                crate::ops::finish_reasons::note(ctx, t);
            }
            ctx.usage = r.usage();
            if let Some(g) = &guard {
                if crate::guardrails::stream::finish_into(g, ctx) {
                    // A guardrail ended the stream with the caller's error event: not the
                    // provider's failure.
                    session
                        .write_response_body(tail, true)
                        .await
                        .map_err(Failure::Abort)?;
                    return Ok(());
                }
            }
            if midstream.is_none() {
                if let Some(e) = r.provider_error() {
                    // The provider reported an error inside the stream (already relayed to the
                    // caller in its format): it counts against the deployment.
                    dep.provider.metrics.attempt(AttemptOutcome::StreamError);
                    dep.provider.record_failure(&e.message);
                    ctx.error_code = Some("upstream_stream_error");
                    session
                        .write_response_body(tail, true)
                        .await
                        .map_err(Failure::Abort)?;
                    return Ok(());
                }
            }
        }
        if let Some(u) = ctx.usage {
            dep.provider
                .add_tokens(u.prompt_tokens + u.completion_tokens);
        }
        if let Some((outcome, kind, reason)) = midstream {
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
        if facts.success {
            self.commit_row(ctx).await;
            if let Some(t) = &tail {
                crate::cache::record(ctx, t);
            }
            crate::cache::store_stream(ctx);
        }
        session
            .write_response_body(tail, true)
            .await
            .map_err(Failure::Abort)?;
        self.complete(ctx, dep, upstream, &peer, started).await;
        Ok(())
    }

    /// Reads the upstream body and writes what each chunk completes, until the body ends, a
    /// bound is broken or a budget's cutoff is reached.
    ///
    /// Not coalesced (issue #16): Pingora writes each chunked body write with its own flush, so
    /// several frames already read could go out as one write, but only by polling the next read
    /// and dropping it when nothing is waiting. Pingora's client body reader is not cancel-safe:
    /// for a chunk head split across reads, `v1/body.rs` `do_read_chunked_body` compacts the
    /// partial head in its buffer (`copy_within` + `truncate`) before awaiting the socket and
    /// updates its parse state only after, so a read dropped there would corrupt the body (and
    /// HTTP/2 reads would need their own audit). Keeping the pending read alive across the write
    /// instead is sound, but it holds `upstream` borrowed, so the per-read timeout (idle and
    /// what is left of `total`) could no longer be set on it and would need a timer of its own
    /// per chunk; without a measurement showing per-frame writes matter, it is left as it is.
    async fn pump(
        &self,
        pipe: Pipe<'_, '_>,
        ctx: &mut RequestCtx,
        mut relay: Option<&mut StreamRelay>,
        answer: &Answer<'_, '_>,
    ) -> Result<Pumped, Failure> {
        let Pipe {
            session,
            upstream,
            mut first_chunk,
            started,
            mut native,
        } = pipe;
        let dep = answer.dep;
        let timeouts = dep.provider.config.timeouts;
        let deadline = started + timeouts.total;
        // Bytes of a non-stream body relayed so far (counted only, never held).
        let mut relayed = 0usize;
        let azure = crate::cloud::content_filter::applies(&dep.provider.config.kind);
        loop {
            // One read timeout bounds both the idle gap and what is left of `total`, so no timer
            // beyond Pingora's own is armed per chunk.
            let now = Instant::now();
            if now >= deadline {
                return Ok(Pumped::Failed(over_total(&timeouts)));
            }
            upstream.set_read_timeout(Some(timeouts.idle.min(deadline - now)));
            let next = match first_chunk.take() {
                Some(c) => Ok(Some(c)),
                None => upstream.read_response_body().await,
            };
            let chunk = match next {
                Err(e) => return Ok(Pumped::Failed(midstream_failure(&e, deadline, &timeouts))),
                Ok(None) => return Ok(Pumped::Done),
                Ok(Some(chunk)) => chunk,
            };
            // Azure's filtered event and what follows it are replaced by the caller's error.
            let cut = azure
                .then(|| crate::cloud::content_filter::event_start(&chunk))
                .flatten();
            let filtered = cut.is_some();
            let chunk = match cut {
                Some(at) => chunk.slice(..at),
                None => chunk,
            };
            let out = match relay.as_deref_mut() {
                Some(r) => r.push(chunk),
                None => {
                    relayed += chunk.len();
                    if relayed > MAX_UPSTREAM_BODY {
                        return Ok(Pumped::Failed(too_large(format!(
                            "upstream response exceeds {MAX_UPSTREAM_BODY} bytes"
                        ))));
                    }
                    Some(chunk)
                }
            };
            let out = match (out, native.as_deref_mut(), relay.as_deref_mut()) {
                (Some(o), Some(n), Some(r)) => match n.rewrite(o) {
                    Ok(o) => Some(o),
                    Err(name) => {
                        let why = format!("the answer was blocked by guardrail `{name}`");
                        let ev = r.fail(ErrorKind::ContentPolicy, &why);
                        session
                            .write_response_body(Some(ev), false)
                            .await
                            .map_err(Failure::Abort)?;
                        return Ok(Pumped::Done);
                    }
                },
                (o, _, _) => o,
            };
            let out = out.filter(|o| !o.is_empty());
            let wrote = out.is_some();
            if let Some(out) = out {
                ctx.mark_first_byte();
                ctx.streamed_events += 1;
                if let Some(r) = relay.as_deref().filter(|r| r.completed()) {
                    // This chunk ends the stream: its record is committed first (strict mode).
                    ctx.usage = r.usage();
                    self.commit_row(ctx).await;
                }
                crate::cache::record(ctx, &out);
                crate::ops::finish_reasons::note(ctx, &out);
                session
                    .write_response_body(Some(out), false)
                    .await
                    .map_err(Failure::Abort)?;
            }
            if filtered {
                // Azure withheld the rest: the caller's content-policy error ends the stream
                // (not the deployment's failure; nothing more is read).
                ctx.usage = relay.as_deref().and_then(StreamRelay::usage);
                ctx.error_code = Some(crate::cloud::content_filter::CODE);
                let event = crate::cloud::content_filter::stream_event(answer.inbound.caller);
                session
                    .write_response_body(Some(event), true)
                    .await
                    .map_err(Failure::Abort)?;
                return Ok(Pumped::CutOff);
            }
            let Some(r) = relay.as_deref_mut() else {
                continue;
            };
            if r.oversized() {
                return Ok(Pumped::Failed(too_large(format!(
                    "an upstream stream event exceeds {MAX_EVENT_BYTES} bytes"
                ))));
            }
            if r.provider_error().is_some() {
                // Already told to the caller; nothing after it is worth reading.
                return Ok(Pumped::Done);
            }
            if wrote && !r.completed() && over_cutoff(ctx, dep) {
                // The budget's cutoff: end the stream cleanly, saying why; the upstream
                // connection is dropped (nothing more is bought).
                ctx.usage = r.usage();
                ctx.error_code = Some("budget_exceeded");
                session
                    .write_response_body(Some(r.budget_stop(answer.inbound.caller)), true)
                    .await
                    .map_err(Failure::Abort)?;
                return Ok(Pumped::CutOff);
            }
        }
    }
}

/// Two optional pieces of a stream's end, in order.
pub(in crate::forward) fn join(a: Option<Bytes>, b: Option<Bytes>) -> Option<Bytes> {
    match (a, b) {
        (Some(a), Some(b)) => {
            let mut out = bytes::BytesMut::with_capacity(a.len() + b.len());
            out.extend_from_slice(&a);
            out.extend_from_slice(&b);
            Some(out.freeze())
        }
        (a, b) => a.or(b),
    }
}

/// The upstream broke a size bound.
fn too_large(reason: String) -> Midstream {
    (AttemptOutcome::StreamError, ErrorKind::Server, reason)
}

/// The try's `total` ran out.
#[cold]
pub(super) fn over_total(timeouts: &Timeouts) -> Midstream {
    (
        AttemptOutcome::Timeout,
        ErrorKind::Timeout,
        format!(
            "response exceeded the total timeout of {:?}",
            timeouts.total
        ),
    )
}

/// Why a read in the middle of a body failed: the upstream broke, `total` ran out, or it went
/// idle.
#[cold]
pub(super) fn midstream_failure(e: &Error, deadline: Instant, timeouts: &Timeouts) -> Midstream {
    if !is_timeout(e) {
        (
            AttemptOutcome::StreamError,
            ErrorKind::Server,
            format!("upstream failed mid-response: {}", e.etype().as_str()),
        )
    } else if Instant::now() >= deadline {
        over_total(timeouts)
    } else {
        (
            AttemptOutcome::Timeout,
            ErrorKind::Timeout,
            format!(
                "upstream sent nothing for {:?} (idle timeout)",
                timeouts.idle
            ),
        )
    }
}
