//! Bodies relayed as they arrive: streams event by event through a [`StreamRelay`] (translated or
//! passed through), and large or unpriced non-stream bodies chunk by chunk. Bounds every read by
//! the idle timeout and what is left of `total`, ends a stream cleanly in the caller's format when
//! the upstream fails mid-way or a budget's cutoff is reached, and notes the usage for metering.

use super::headers::HeadFacts;
use super::Answer;
use crate::clock::unix_secs;
use crate::config::Timeouts;
use crate::forward::attempt::{is_timeout, Committed};
use crate::forward::cutoff::{budget_stop_event, over_cutoff};
use crate::forward::translate::StreamRelay;
use crate::forward::{Failure, Forwarder};
use crate::ops::telemetry::AttemptOutcome;
use crate::proxy::context::RequestCtx;
use crate::proxy::response_headers as rh;
use bytes::{Bytes, BytesMut};
use pingora_error::{Error, ErrorType};
use pingora_proxy::Session;
use std::time::Instant;
use switchyard_adapters::canonical::ErrorKind;
use switchyard_adapters::openai;

/// Why a relayed body ended early: the try's outcome, the kind of error told to the caller, and
/// the reason for the logs.
type Midstream = (AttemptOutcome, ErrorKind, String);

impl Forwarder {
    /// Writes the caller's head, then the body as it arrives.
    pub(super) async fn relay_body(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        committed: Committed,
        resp: http::response::Parts,
        facts: &HeadFacts,
        answer: &Answer<'_, '_>,
    ) -> Result<(), Failure> {
        let Committed {
            mut upstream,
            peer,
            started,
            mut first_chunk,
        } = committed;
        let (dep, inbound) = (answer.dep, answer.inbound);
        let timeouts = dep.provider.config.timeouts;
        session
            .write_response_header(rh::finish(resp), false)
            .await
            .map_err(Failure::Abort)?;
        let _stream_guard = facts.is_stream.then(|| ctx.stream_guard());
        let try_deadline = started + timeouts.total;
        let response_id = format!("{}{}", inbound.caller.id_prefix(), ctx.request_id);
        let mut relay = facts.is_stream.then(|| {
            StreamRelay::new(
                answer.prepared.mode,
                inbound.caller,
                &response_id,
                answer.upstream_model,
                unix_secs(),
                inbound.include_usage(),
            )
        });
        // A non-stream body relayed as it comes: kept to read its usage at the end.
        let keep = facts.success && !inbound.facts.stream;
        let mut kept: Vec<Bytes> = Vec::new();
        let mut midstream: Option<Midstream> = None;
        loop {
            // One read timeout bounds both the idle gap and what is left of `total`, so no timer
            // beyond Pingora's own is armed per chunk.
            let left = try_deadline.saturating_duration_since(Instant::now());
            upstream.set_read_timeout(Some(timeouts.idle.min(left)));
            let next = match first_chunk.take() {
                Some(c) => Ok(Some(c)),
                None => upstream.read_response_body().await,
            };
            let chunk = match next {
                Err(e) => {
                    midstream = Some(midstream_failure(&e, try_deadline, &timeouts));
                    break;
                }
                Ok(None) => break,
                Ok(Some(chunk)) => chunk,
            };
            let out = match relay.as_mut() {
                Some(r) => r.push(chunk),
                None => {
                    if keep {
                        kept.push(chunk.clone());
                    }
                    Some(chunk)
                }
            };
            let Some(out) = out else { continue };
            ctx.mark_first_byte();
            ctx.streamed_events += 1;
            if let Some(r) = relay.as_ref().filter(|r| r.completed()) {
                // This chunk ends the stream: its record is committed first (strict mode).
                ctx.usage = r.usage();
                self.commit_row(ctx).await;
            }
            session
                .write_response_body(Some(out), false)
                .await
                .map_err(Failure::Abort)?;
            if relay.as_ref().is_some_and(|r| !r.completed()) && over_cutoff(ctx, dep) {
                // The budget's cutoff: end the stream cleanly, saying why; the upstream
                // connection is dropped (nothing more is bought).
                ctx.usage = relay.as_ref().and_then(|r| r.usage());
                ctx.error_code = Some("budget_exceeded");
                session
                    .write_response_body(Some(budget_stop_event(inbound.caller)), true)
                    .await
                    .map_err(Failure::Abort)?;
                return Ok(());
            }
        }
        match relay.as_mut() {
            Some(r) => {
                if midstream.is_none() {
                    if let Some(tail) = r.finish() {
                        session
                            .write_response_body(Some(tail), false)
                            .await
                            .map_err(Failure::Abort)?;
                    }
                }
                ctx.usage = r.usage();
                if midstream.is_none() {
                    if let Some(e) = r.provider_error() {
                        // The provider reported an error inside the stream (already relayed to
                        // the caller in its format): it counts against the deployment.
                        dep.provider.metrics.attempt(AttemptOutcome::StreamError);
                        dep.provider.record_failure(&e.message);
                        ctx.error_code = Some("upstream_stream_error");
                        session
                            .write_response_body(None, true)
                            .await
                            .map_err(Failure::Abort)?;
                        return Ok(());
                    }
                }
            }
            None if facts.success => ctx.usage = usage_of(&kept),
            None => {}
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
        }
        session
            .write_response_body(None, true)
            .await
            .map_err(Failure::Abort)?;
        self.complete(ctx, dep, upstream, &peer, started).await;
        Ok(())
    }
}

/// Why a read in the middle of a body failed: the upstream broke, `total` ran out, or it went
/// idle.
fn midstream_failure(e: &Error, try_deadline: Instant, timeouts: &Timeouts) -> Midstream {
    if !is_timeout(e) {
        (
            AttemptOutcome::StreamError,
            ErrorKind::Server,
            format!("upstream failed mid-response: {}", e.etype().as_str()),
        )
    } else if Instant::now() >= try_deadline {
        (
            AttemptOutcome::Timeout,
            ErrorKind::Timeout,
            format!(
                "response exceeded the total timeout of {:?}",
                timeouts.total
            ),
        )
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

/// The usage of a non-stream answer relayed in chunks.
fn usage_of(chunks: &[Bytes]) -> Option<openai::Usage> {
    match chunks {
        [] => None,
        [one] => openai::response_usage(one),
        many => {
            let mut all = BytesMut::with_capacity(many.iter().map(Bytes::len).sum());
            for c in many {
                all.extend_from_slice(c);
            }
            openai::response_usage(&all)
        }
    }
}
