//! Hedged tries (`routing.hedge_after`): the first deployment alone until the hedge delay, then
//! the next one too; the first response header wins and the other try is cancelled. Owns only
//! the race; each side is an ordinary [`Try`].

use super::attempt::{note_failure, Committed, Try, TryError};
use super::translate::Prepared;
use super::Forwarder;
use crate::clock::now_ms;
use crate::ops::telemetry::AttemptOutcome;
use crate::proxy::context::RequestCtx;
use crate::routing::state::{RoutedDeployment, RoutedModel};
use std::time::{Duration, Instant};

/// A hedge: two deployments of `model`, each with its prepared request.
pub(super) struct Hedge<'m> {
    pub model: &'m RoutedModel,
    pub first: (&'m RoutedDeployment, Prepared),
    pub second: (&'m RoutedDeployment, Prepared),
    /// How long the first runs alone.
    pub after: Duration,
    pub stream: bool,
    pub deadline: Instant,
}

/// The outcome of a hedged try.
pub(super) enum Raced<'m> {
    Won(&'m RoutedDeployment, Box<Committed>, Prepared),
    Lost(&'m RoutedDeployment, TryError, Prepared),
}

impl Forwarder {
    /// A hedged try: `first` alone until `after`, then `second` too; the first response header
    /// wins and the other try is cancelled (counted as `hedge_cancelled`). When one fails, the
    /// other is awaited. The loser's failure, if any, is recorded here.
    pub(super) async fn race<'m>(&self, ctx: &mut RequestCtx, hedge: Hedge<'m>) -> Raced<'m> {
        let Hedge {
            model,
            first: (dep_a, rw_a),
            second: (second, rw_b),
            after,
            stream,
            deadline,
        } = hedge;
        let routing = &model.config.routing;
        let (body_a, body_b) = (rw_a.clone(), rw_b.clone());
        let (winner, loser_failure, hedged): (
            Raced<'m>,
            Option<(&RoutedDeployment, TryError)>,
            bool,
        ) = {
            let ctx_view: &RequestCtx = ctx;
            let try_of = |dep, prepared| Try {
                ctx: ctx_view,
                dep,
                prepared,
                stream,
                may_retry: true,
                deadline,
                routing,
            };
            let try_a = try_of(dep_a, &body_a);
            let fut_a = self.try_within(&try_a);
            tokio::pin!(fut_a);
            let early = tokio::select! {
                r = &mut fut_a => Some(r),
                _ = tokio::time::sleep(after) => None,
            };
            match early {
                Some(Ok(c)) => (Raced::Won(dep_a, c, rw_a), None, false),
                Some(Err(e)) => (Raced::Lost(dep_a, e, rw_a), None, false),
                None if second.runtime.acquire(&routing.breaker, now_ms()).is_err() => {
                    match fut_a.await {
                        Ok(c) => (Raced::Won(dep_a, c, rw_a), None, false),
                        Err(e) => (Raced::Lost(dep_a, e, rw_a), None, false),
                    }
                }
                None => {
                    model.metrics.hedges.inc();
                    let try_b = try_of(second, &body_b);
                    let fut_b = self.try_within(&try_b);
                    tokio::pin!(fut_b);
                    tokio::select! {
                        ra = &mut fut_a => match ra {
                            Ok(c) => {
                                second.provider.metrics.attempt(AttemptOutcome::HedgeCancelled);
                                (Raced::Won(dep_a, c, rw_a), None, true)
                            }
                            Err(ea) => match fut_b.await {
                                Ok(c) => (Raced::Won(second, c, rw_b), Some((dep_a, ea)), true),
                                Err(eb) => (Raced::Lost(second, eb, rw_b), Some((dep_a, ea)), true),
                            },
                        },
                        rb = &mut fut_b => match rb {
                            Ok(c) => {
                                dep_a.provider.metrics.attempt(AttemptOutcome::HedgeCancelled);
                                (Raced::Won(second, c, rw_b), None, true)
                            }
                            Err(eb) => match fut_a.await {
                                Ok(c) => (Raced::Won(dep_a, c, rw_a), Some((second, eb)), true),
                                Err(ea) => (Raced::Lost(dep_a, ea, rw_a), Some((second, eb)), true),
                            },
                        },
                    }
                }
            }
        };
        if hedged {
            ctx.tries += 1;
            ctx.mark_try_started();
        }
        if let Some((d, e)) = loser_failure {
            note_failure(ctx, model, d, e);
        }
        winner
    }
}
