//! Relays a committed upstream answer to the caller: the caller's response head from the
//! upstream's ([`headers`]), then either the whole body — read first so its head can carry the
//! cost, or translated to the caller's format — ([`whole`]) or the body as it arrives, event by
//! event for streams ([`stream`]). Once the head is written there is no retry. It must not choose
//! deployments or retry: that is the plan's job.

mod headers;
mod stream;
pub(in crate::forward) use stream::join;
mod whole;

pub(super) use headers::HeadFacts;
pub(super) use whole::read_success_whole;

use super::attempt::{model_breaker, Committed};
use super::translate::{Inbound, Prepared};
use super::{Failure, Forwarder, POOL_IDLE_TIMEOUT};
use crate::errors::GatewayError;
use crate::proxy::context::RequestCtx;
use crate::routing::state::RoutedDeployment;
use pingora_proxy::Session;
use std::time::Instant;

/// What is being answered: the deployment that answered, under which upstream model name, the
/// request that was sent and the caller's.
pub(super) struct Answer<'a, 'b> {
    pub dep: &'a RoutedDeployment,
    pub upstream_model: &'a str,
    pub prepared: &'a Prepared,
    pub inbound: &'a Inbound<'b>,
}

impl Forwarder {
    /// Writes the committed upstream response to the caller, event by event for streams, in the
    /// caller's format.
    pub(super) async fn relay(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        committed: Box<Committed>,
        answer: &Answer<'_, '_>,
    ) -> Result<(), Failure> {
        let (facts, head) = answer_head(ctx, &committed, answer)?;
        if facts.read_whole {
            self.relay_whole(session, ctx, committed, head, facts, answer)
                .await
        } else {
            // Boxed: the body loop's future (~2.7 KB) is only for streams and bodies relayed as
            // they come; inline, every whole answer's future (and each layer above) carried it.
            Box::pin(self.relay_body(session, ctx, committed, head, facts, answer)).await
        }
    }

    /// Bookkeeping once a response went out in full: the try's duration, the request marked
    /// complete, and the upstream connection back to the pool when its body was read to the end.
    fn complete(&self, ctx: &mut RequestCtx, dep: &RoutedDeployment, committed: Box<Committed>) {
        let Committed {
            mut upstream,
            peer,
            started,
            ..
        } = *committed;
        let now = Instant::now();
        let took = now.saturating_duration_since(started);
        dep.provider
            .metrics
            .upstream_duration
            .observe(took.as_secs_f64());
        if (200..300).contains(&ctx.status) {
            dep.runtime.observe_total(took, crate::clock::ms_at(now));
        }
        ctx.completed = true;
        if upstream.response_done() {
            self.pool.release(upstream, &peer, Some(POOL_IDLE_TIMEOUT));
        }
    }
}

/// What the committed answer's head says ([`headers::HeadFacts`]) and the caller's head made
/// from it, with the deployment's health told what the status was.
fn answer_head(
    ctx: &mut RequestCtx,
    committed: &Committed,
    answer: &Answer<'_, '_>,
) -> Result<(headers::HeadFacts, http::response::Parts), Failure> {
    let Some(up_header) = committed.upstream.response_header() else {
        return Err(Failure::Respond(GatewayError::NoDeploymentAvailable {
            model: String::new(),
            tries: Vec::new(),
        }));
    };
    // Worked out once: a successful non-stream answer's were when its body was read.
    let facts = committed
        .facts
        .unwrap_or_else(|| headers::HeadFacts::of(up_header, answer));
    let head = headers::caller_head(up_header, &facts, ctx, answer)?;
    account_head(
        ctx,
        answer.dep,
        &facts,
        crate::clock::ms_at(committed.answered),
    );
    Ok((facts, head))
}

/// What the answer's head says about the deployment and the request: who served, with what
/// status, and the deployment's health (a 4xx other than 429 is the caller's problem, not the
/// deployment's). `now` is when the answer came ([`crate::clock::now_ms`]).
fn account_head(
    ctx: &mut RequestCtx,
    dep: &RoutedDeployment,
    facts: &headers::HeadFacts,
    now: u64,
) {
    ctx.status = facts.status;
    ctx.served = Some(dep.index);
    ctx.stream = facts.is_stream;
    if facts.success {
        dep.provider.record_success(now);
    } else {
        ctx.error_code = Some("upstream_status");
    }
    if facts.status == 429 {
        // Relayed as the provider sent it; for the deployment only a wait.
        dep.runtime.rate_limited(facts.retry_after, now);
    } else if facts.status >= 500 {
        if dep.runtime.on_failure(&model_breaker(ctx), now) {
            dep.provider.metrics.circuit_opened.inc();
            if let Some(m) = &ctx.model {
                crate::ops::events::circuit_opened(dep.provider.name(), &dep.spec(m).model);
            }
        }
    } else {
        dep.runtime.on_success(now);
    }
}
