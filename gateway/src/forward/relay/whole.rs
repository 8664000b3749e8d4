//! Whole-body answers: the upstream body is read in full (bounded), translated to the caller's
//! format or priced, and written with an exact `Content-Length` and `x-switchyard-cost-usd`.
//! A failure while reading is a 502 in the caller's format, never a cut body.

use super::headers::HeadFacts;
use super::Answer;
use crate::clock::unix_secs;
use crate::errors::{GatewayError, TryFailure};
use crate::forward::attempt::Committed;
use crate::forward::translate;
use crate::forward::{cost_value, Failure, Forwarder, MAX_PRICED_BODY, MAX_TRANSLATED_BODY};
use crate::ops::telemetry::AttemptOutcome;
use crate::proxy::context::RequestCtx;
use crate::proxy::response_headers as rh;
use bytes::{Bytes, BytesMut};
use pingora_core::protocols::http::client::HttpSession;
use pingora_proxy::Session;

impl Forwarder {
    /// Reads the answer whole, translates or prices it, and writes it.
    pub(super) async fn relay_whole(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        committed: Committed,
        mut resp: http::response::Parts,
        facts: &HeadFacts,
        answer: &Answer<'_, '_>,
    ) -> Result<(), Failure> {
        let Committed {
            mut upstream,
            peer,
            started,
            first_chunk,
        } = committed;
        let dep = answer.dep;
        let raw = match read_whole(&mut upstream, first_chunk, facts, answer).await {
            Ok(raw) => raw,
            Err(reason) => {
                dep.provider.metrics.attempt(AttemptOutcome::StreamError);
                dep.provider.record_failure(&reason);
                return Err(Failure::Respond(GatewayError::NoDeploymentAvailable {
                    model: ctx
                        .model
                        .as_ref()
                        .map(|m| m.config.name.clone())
                        .unwrap_or_default(),
                    tries: vec![TryFailure {
                        provider: dep.provider.name().to_string(),
                        model: answer.upstream_model.to_string(),
                        reason,
                    }],
                }));
            }
        };
        let (status, body) = caller_body(ctx, raw, facts, answer);
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
        if let (Some(u), Some(m)) = (ctx.usage, ctx.model.as_ref()) {
            let cost = crate::governance::cost::cost_usd(&dep.spec(m).price, &u);
            h.insert(&rh::X_SWITCHYARD_COST_USD, cost_value(cost));
            dep.provider
                .add_tokens(u.prompt_tokens + u.completion_tokens);
        }
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
        self.complete(ctx, dep, upstream, &peer, started).await;
        Ok(())
    }
}

/// Reads the upstream body to its end, up to the limit for its kind (a priced answer or one to
/// translate). `Err`: why it could not be read whole.
async fn read_whole(
    upstream: &mut HttpSession,
    first_chunk: Option<Bytes>,
    facts: &HeadFacts,
    answer: &Answer<'_, '_>,
) -> Result<Bytes, String> {
    let timeouts = answer.dep.provider.config.timeouts;
    upstream.set_read_timeout(Some(timeouts.idle));
    let limit = if facts.translated {
        MAX_TRANSLATED_BODY
    } else {
        MAX_PRICED_BODY
    };
    let mut whole = BytesMut::with_capacity(facts.declared.unwrap_or(0).min(limit));
    if let Some(c) = first_chunk {
        whole.extend_from_slice(&c);
    }
    loop {
        match upstream.read_response_body().await {
            Ok(Some(chunk)) if whole.len() + chunk.len() <= limit => {
                whole.extend_from_slice(&chunk)
            }
            Ok(None) => return Ok(whole.freeze()),
            Err(e) => {
                return Err(format!(
                    "upstream failed mid-response: {}",
                    e.etype().as_str()
                ))
            }
            Ok(Some(_)) => return Err(format!("upstream response exceeds {limit} bytes")),
        }
    }
}

/// The caller's status and body for the upstream's whole `raw` answer: translated (or passed
/// through), with its usage noted; an error mapped into the caller's format.
fn caller_body(
    ctx: &mut RequestCtx,
    raw: Bytes,
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
    let response_id = format!("{}{}", caller.id_prefix(), ctx.request_id);
    match translate::translate_body(
        mode,
        caller,
        raw,
        &response_id,
        answer.upstream_model,
        unix_secs(),
    ) {
        Ok((body, usage)) => {
            ctx.usage = usage;
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
