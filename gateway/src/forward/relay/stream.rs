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
//! What the upstream has already sent goes out in one downstream write: chunks that were waiting
//! when read are gathered until a read would wait (see [`Forwarder::pump`]), so a burst of events
//! costs one write (and one wake-up of the caller) rather than one per event, and paced events
//! still go out the moment they arrive.

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
use std::future::Future;
use std::task::Poll;
use std::time::Instant;
use switchyard_adapters::canonical::ErrorKind;
use switchyard_adapters::sse::MAX_EVENT_BYTES;

/// Why a relayed body ended early: the try's outcome, the kind of error told to the caller, and
/// the reason for the logs.
pub(super) type Midstream = (AttemptOutcome, ErrorKind, String);

/// How the upstream body's relay loop ended.
enum Pumped {
    /// The upstream body ended, or the provider reported an error in its stream (already
    /// relayed in the caller's format). Carries the relayed bytes not yet written, which go out
    /// with the stream's end.
    Done(Option<Bytes>),
    /// The upstream failed or broke a bound; the caller has not been told yet. Carries the
    /// relayed bytes not yet written, which go out before the caller is told.
    Failed(Midstream, Option<Bytes>),
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
        mut committed: Box<Committed>,
        resp: http::response::Parts,
        facts: HeadFacts,
        answer: &Answer<'_, '_>,
    ) -> Result<(), Failure> {
        // Kept boxed to the end (its session is ~470 bytes: moved out, the future would hold it).
        // Its `whole` is set only for answers read whole, which `relay_whole` writes.
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
            first_chunk: committed.first_chunk.take(),
            started: committed.started,
            upstream: &mut committed.upstream,
            native: native.as_mut().map(|(n, _)| n),
        };
        let (midstream, mut unsent) = match self.pump(pipe, ctx, relay.as_mut(), answer).await? {
            Pumped::CutOff => return Ok(()),
            Pumped::Done(unsent) => (None, unsent),
            Pumped::Failed(m, unsent) => (Some(m), unsent),
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
                        .write_response_body(join(unsent, tail), true)
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
                        .write_response_body(join(unsent, tail), true)
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
                    .write_response_body(join(unsent, Some(ev)), true)
                    .await
                    .map_err(Failure::Abort)?;
                return Ok(());
            }
            if unsent.is_some() {
                session
                    .write_response_body(unsent.take(), false)
                    .await
                    .map_err(Failure::Abort)?;
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
            .write_response_body(join(unsent, tail), true)
            .await
            .map_err(Failure::Abort)?;
        self.complete(ctx, dep, committed);
        Ok(())
    }

    /// Reads the upstream body and writes what it completes, until the body ends, a bound is
    /// broken or a budget's cutoff is reached.
    ///
    /// Coalesced (issue #16): a read is polled once; when it is ready (the upstream's bytes were
    /// already waiting) its output joins what is ready to go out and the next read is tried;
    /// only when a read would wait does what is ready go out, in one write, while that same
    /// read stays pending (it is awaited, never dropped: Pingora's chunked body reader is not
    /// cancel-safe, see `v1/body.rs` `do_read_chunked_body`). Each read is bounded by the
    /// provider's `idle` and what is left of `total` through one timeout around it, in place of
    /// Pingora's own per-read timeout (turned off here): the same one timer when a read waits.
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
            first_chunk,
            started,
            mut native,
        } = pipe;
        let dep = answer.dep;
        let timeouts = dep.provider.config.timeouts;
        let deadline = started + timeouts.total;
        // Bytes of a non-stream body relayed so far (counted only, never held).
        let mut relayed = 0usize;
        let azure = crate::cloud::content_filter::applies(&dep.provider.config.kind);
        // What is ready to go out, written when the next read would wait.
        let mut ready = Ready::default();
        upstream.set_read_timeout(None);
        let mut next = first_chunk.map(|c| Ok(Some(c)));
        loop {
            let read = match next.take() {
                Some(read) => read,
                None => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Ok(Pumped::Failed(over_total(&timeouts), ready.take()));
                    }
                    let wait = timeouts.idle.min(deadline - now);
                    read_or_write(session, upstream, &mut ready, wait).await?
                }
            };
            let chunk = match read {
                Err(e) => {
                    let failure = midstream_failure(&e, deadline, &timeouts);
                    return Ok(Pumped::Failed(failure, ready.take()));
                }
                Ok(None) => return Ok(Pumped::Done(ready.take())),
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
                        let failure = too_large(format!(
                            "upstream response exceeds {MAX_UPSTREAM_BODY} bytes"
                        ));
                        return Ok(Pumped::Failed(failure, ready.take()));
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
                        return Ok(Pumped::Done(join(ready.take(), Some(ev))));
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
                ready.push(out);
                if ready.len() >= COALESCE_LIMIT {
                    // An upstream that never pauses still reaches the caller as it goes.
                    if let Some(out) = ready.take() {
                        session
                            .write_response_body(Some(out), false)
                            .await
                            .map_err(Failure::Abort)?;
                    }
                }
            }
            if filtered {
                // Azure withheld the rest: the caller's content-policy error ends the stream
                // (not the deployment's failure; nothing more is read).
                ctx.usage = relay.as_deref().and_then(StreamRelay::usage);
                ctx.error_code = Some(crate::cloud::content_filter::CODE);
                let event = crate::cloud::content_filter::stream_event(answer.inbound.caller);
                session
                    .write_response_body(join(ready.take(), Some(event)), true)
                    .await
                    .map_err(Failure::Abort)?;
                return Ok(Pumped::CutOff);
            }
            let Some(r) = relay.as_deref_mut() else {
                continue;
            };
            if r.oversized() {
                let failure = too_large(format!(
                    "an upstream stream event exceeds {MAX_EVENT_BYTES} bytes"
                ));
                return Ok(Pumped::Failed(failure, ready.take()));
            }
            if r.provider_error().is_some() {
                // Already told to the caller; nothing after it is worth reading.
                return Ok(Pumped::Done(ready.take()));
            }
            if wrote && !r.completed() && over_cutoff(ctx, dep) {
                // The budget's cutoff: end the stream cleanly, saying why; the upstream
                // connection is dropped (nothing more is bought).
                ctx.usage = r.usage();
                ctx.error_code = Some("budget_exceeded");
                let stop = r.budget_stop(answer.inbound.caller);
                session
                    .write_response_body(join(ready.take(), Some(stop)), true)
                    .await
                    .map_err(Failure::Abort)?;
                return Ok(Pumped::CutOff);
            }
        }
    }
}

/// The next upstream body read, within `wait`. When the read has to wait for the upstream, what
/// is `ready` goes out first, in one write, while the read stays pending (it is awaited, never
/// dropped).
async fn read_or_write(
    session: &mut Session,
    upstream: &mut HttpSession,
    ready: &mut Ready,
    wait: std::time::Duration,
) -> Result<pingora_error::Result<Option<Bytes>>, Failure> {
    let mut read = std::pin::pin!(pingora_timeout::timeout(
        wait,
        upstream.read_response_body()
    ));
    let polled = std::future::poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await;
    let done = match polled {
        Poll::Ready(done) => done,
        Poll::Pending => {
            if let Some(out) = ready.take() {
                session
                    .write_response_body(Some(out), false)
                    .await
                    .map_err(Failure::Abort)?;
            }
            read.await
        }
    };
    Ok(done
        .unwrap_or_else(|_| Error::e_explain(ErrorType::ReadTimedout, "reading the upstream body")))
}

/// Relayed bytes past this size go out at once, however many more are waiting.
const COALESCE_LIMIT: usize = 16 * 1024;

/// Relayed bytes ready to go out in one write: one chunk as it came (no copy), or several
/// gathered into one buffer.
#[derive(Default)]
struct Ready {
    one: Option<Bytes>,
    many: bytes::BytesMut,
}

impl Ready {
    fn push(&mut self, out: Bytes) {
        if !self.many.is_empty() {
            self.many.extend_from_slice(&out);
            return;
        }
        match self.one.take() {
            None => self.one = Some(out),
            Some(first) => {
                self.many.reserve(first.len() + out.len());
                self.many.extend_from_slice(&first);
                self.many.extend_from_slice(&out);
            }
        }
    }

    fn len(&self) -> usize {
        self.one.as_ref().map_or(self.many.len(), Bytes::len)
    }

    fn take(&mut self) -> Option<Bytes> {
        if self.many.is_empty() {
            self.one.take()
        } else {
            Some(self.many.split().freeze())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_bytes_go_out_in_the_order_they_came() {
        let mut ready = Ready::default();
        assert_eq!(ready.take(), None);
        ready.push(Bytes::from_static(b"data: 1\n\n"));
        assert_eq!(ready.len(), 9);
        assert_eq!(ready.take(), Some(Bytes::from_static(b"data: 1\n\n")));
        assert_eq!(ready.take(), None);
        for n in 2..5 {
            ready.push(Bytes::from(format!("data: {n}\n\n")));
        }
        assert_eq!(ready.len(), 27);
        assert_eq!(
            ready.take(),
            Some(Bytes::from_static(b"data: 2\n\ndata: 3\n\ndata: 4\n\n"))
        );
        assert_eq!(ready.len(), 0);
        ready.push(Bytes::from_static(b"x"));
        ready.push(Bytes::from_static(b"y"));
        assert_eq!(ready.take(), Some(Bytes::from_static(b"xy")));
        assert_eq!(ready.take(), None);
    }
}
