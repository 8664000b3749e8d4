//! The plan loop: runs one request's plan ([`crate::routing::router::plan`]) step by step — skip
//! what cannot take the request (a field its provider cannot honour, a spent provider budget, an
//! open circuit, a provider asking to wait), answer in process (mock, local pool) or try an HTTP
//! deployment (hedged when configured), relay the first answer, and when nothing answered say
//! why with the status a client expects. It decides the order of tries, not how one is made.

use super::answer_check::{Rejection, Vetted};
use super::attempt::{note_failure, prepare_for, Try, TryError};
use super::fallback::Bounds;
use super::in_process::InProcess;
use super::race::{Hedge, Raced};
use super::relay::Answer;
use super::translate::{Inbound, Prepared};
use super::{Failure, Forwarder};
use crate::clock::now_ms;
use crate::config::{MockSettings, ProviderKind};
use crate::errors::{GatewayError, TryFailure};
use crate::ops::telemetry::AttemptOutcome;
use crate::proxy::context::RequestCtx;
use crate::routing::breaker::Unavailable;
use crate::routing::router::{self, Step};
use crate::routing::state::{RoutedDeployment, RoutedModel};
use pingora_proxy::Session;
use std::time::Instant;
use switchyard_adapters::canonical::TranslateError;
use switchyard_adapters::providers::Caller;

/// What the plan saw so far, for the answer when no deployment served.
#[derive(Default)]
struct Tally {
    last_outcome: Option<AttemptOutcome>,
    /// The first deployment that could not take the request as written: answered as a 400 when
    /// no deployment could.
    refused: Option<TranslateError>,
    /// Some deployment was actually tried.
    tried: bool,
    /// Some deployment failed or was skipped for another reason (an error, a timeout, an open
    /// circuit, a busy local pool): the answer is then not a rate limit.
    other_failure: bool,
    /// The shortest wait a deployment that answered 429 or was skipped because its provider
    /// asked to wait (Retry-After, quota) needs (milliseconds); `None` when none did.
    shortest_wait_ms: Option<u64>,
    /// Some deployment was skipped because its provider's budget is spent.
    provider_budget: Option<String>,
    /// The last try was a 2xx refused by the answer check (and why): the answer when nothing
    /// is left is then a 502 saying so.
    last_rejection: Option<Rejection>,
    /// A provider refused the request for content policy (its message): the model's plan stops
    /// there (another deployment of it would refuse too) and a fallback model may serve.
    content_policy: Option<String>,
    /// Local deployments whose model refused the request (asked once, not per retry).
    #[cfg_attr(not(feature = "local"), allow(dead_code))]
    local_refused: Vec<usize>,
}

impl Tally {
    /// A deployment asked to wait `ms`.
    fn wait(&mut self, ms: u64) {
        self.shortest_wait_ms = Some(self.shortest_wait_ms.map_or(ms, |w| w.min(ms)));
    }

    /// Every deployment the plan reached answered 429 or was waiting: `Retry-After` seconds.
    fn only_rate_limited(&self) -> Option<u64> {
        let ms = self.shortest_wait_ms.filter(|_| !self.other_failure)?;
        Some(crate::routing::breaker::whole_seconds(
            std::time::Duration::from_millis(ms),
        ))
    }
}

/// The plan being walked: what every step of it shares.
struct Walk<'a, 'b> {
    model: &'a RoutedModel,
    inbound: &'a Inbound<'b>,
    steps: &'a [Step<'a>],
    deadline: Instant,
    /// The prompt's estimated tokens, when a deployment's `context_window` needs it.
    prompt_tokens: Option<u64>,
    /// Fallback models follow: even the last try's failure is not relayed as is.
    fallbacks: bool,
}

/// A step on an HTTP deployment: its place in the plan and its prepared request.
struct HttpStep {
    i: usize,
    prepared: Prepared,
    /// Another step follows that could answer.
    may_retry: bool,
}

/// What a local deployment is asked: a generation (a chat request), or `None` for embeddings.
#[cfg(feature = "local")]
type LocalChat = Option<crate::local::generate::GenerateRequest>;
/// Without the `local` feature a local deployment is asked nothing.
#[cfg(not(feature = "local"))]
type LocalChat = ();

/// A step that is taken: what its deployment needs, and whether a retryable failure moves on
/// (a later step or a fallback could answer).
struct Go<'a> {
    ready: Ready<'a>,
    may_retry: bool,
}

/// A deployment ready to take the request: what each kind needs to serve it.
enum Ready<'a> {
    Http(Prepared),
    Mock(&'a MockSettings),
    Local(LocalChat),
}

impl<'a> Ready<'a> {
    /// What `dep` needs to serve the request, or the field it cannot honour.
    fn for_deployment(
        inbound: &Inbound<'_>,
        model: &RoutedModel,
        dep: &'a RoutedDeployment,
    ) -> Result<Ready<'a>, TranslateError> {
        match &dep.provider.config.kind {
            ProviderKind::Http { .. } => prepare_for(inbound, model, dep).map(Ready::Http),
            ProviderKind::Mock(settings) => {
                if matches!(
                    inbound.caller,
                    Caller::OpenAiCompletions | Caller::OpenAiResponses
                ) {
                    // A prompt the mock cannot take is a skip, as for any translating provider.
                    inbound.canonical()?;
                }
                Ok(Ready::Mock(settings))
            }
            #[cfg(feature = "local")]
            ProviderKind::Local(_) if !inbound.embeddings => {
                super::in_process::local::local_request(inbound).map(|r| Ready::Local(Some(r)))
            }
            #[cfg(feature = "local")]
            ProviderKind::Local(_) => {
                super::in_process::local::local_embeddings(inbound, model.config.strict)
                    .map(|()| Ready::Local(None))
            }
            #[cfg(not(feature = "local"))]
            ProviderKind::Local(_) => Ok(Ready::Local(())),
        }
    }
}

/// How one step of the plan ended.
enum StepEnd {
    /// The request is answered (or failed for good).
    Done(Result<(), Failure>),
    /// On to the next step.
    Next,
    /// No further step may be taken (not retryable, or the deadline passed).
    Stop,
}

impl Forwarder {
    /// Serves one inference request on `model`'s deployments through its plan.
    pub(super) async fn serve_model(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        model: &RoutedModel,
        inbound: &Inbound<'_>,
        bounds: Bounds,
    ) -> Result<(), Failure> {
        let facts = inbound.facts;
        let sticky_key = model.config.sticky.as_ref().and_then(|s| {
            crate::routing::sticky::caller_key(
                s,
                ctx.identity.as_deref(),
                &session.req_header().headers,
                inbound.body,
            )
        });
        let input = router::PlanInput {
            body_bytes: inbound.body.len(),
            max_tokens: facts.max_tokens,
            seed: ctx.seed(),
            requested_model: &facts.model,
            headers: Some(&session.req_header().headers),
            metadata: facts.metadata,
            prefer_cheapest: ctx.admission.as_ref().is_some_and(|a| a.prefer_cheapest),
            hints: ctx.hints.as_ref(),
            caller: ctx.identity.as_deref(),
            sticky: sticky_key.as_deref(),
        };
        let steps = router::plan(model, &input);
        if steps.is_empty() {
            if let Some(e) = over_cost(model, &input) {
                return Err(e.into());
            }
        }
        let walk = Walk {
            model,
            inbound,
            steps: &steps,
            deadline: bounds.deadline,
            prompt_tokens: bounds.prompt_tokens,
            fallbacks: bounds.fallbacks,
        };
        let mut tally = Tally::default();
        for (i, step) in steps.iter().enumerate() {
            // Each step's waits are awaited here rather than in a `step` future of their own:
            // every layer of futures is copied whole once per request.
            let end = match self.step_ready(ctx, &walk, i, &mut tally) {
                Err(end) => end,
                Ok(Go { ready, may_retry }) => {
                    let backoff = step.backoff;
                    if !backoff.is_zero() {
                        if Instant::now() + backoff >= walk.deadline {
                            break;
                        }
                        tokio::time::sleep(backoff).await;
                    }
                    let target = InProcess {
                        model,
                        dep: step.deployment,
                        inbound,
                        deadline: walk.deadline,
                    };
                    // The in-process providers' futures are boxed (~4 KB each): inline, every
                    // HTTP request's future carried their size.
                    match ready {
                        Ready::Mock(settings) => {
                            ctx.tries += 1;
                            ctx.mark_try_started();
                            StepEnd::Done(
                                Box::pin(self.serve_mock(session, ctx, &target, settings)).await,
                            )
                        }
                        Ready::Local(chat) => {
                            Box::pin(self.step_local(session, ctx, &target, chat, &mut tally)).await
                        }
                        Ready::Http(prepared) => {
                            let http = HttpStep {
                                i,
                                prepared,
                                may_retry,
                            };
                            self.step_http(session, ctx, &walk, http, &mut tally).await
                        }
                    }
                }
            };
            match end {
                StepEnd::Done(r) => return r,
                StepEnd::Next => {}
                StepEnd::Stop => break,
            }
        }
        Err(Failure::Respond(exhausted(ctx, model, tally)))
    }

    /// Whether step `i` of the plan is taken, and with what: a deployment that cannot take the
    /// request, or may not be tried now, is noted and skipped (`Err(StepEnd::Next)`).
    fn step_ready<'w>(
        &self,
        ctx: &mut RequestCtx,
        walk: &Walk<'w, '_>,
        i: usize,
        tally: &mut Tally,
    ) -> Result<Go<'w>, StepEnd> {
        let (model, inbound, steps) = (walk.model, walk.inbound, walk.steps);
        let dep = steps[i].deployment;
        // What the deployment needs, worked out before it is admitted: a request it cannot take
        // costs no breaker probe and no quota.
        if let Err(e) = fits(dep.spec(model), walk.prompt_tokens) {
            skip_refused(ctx, dep, model, tally, e);
            return Err(StepEnd::Next);
        }
        let ready = match Ready::for_deployment(inbound, model, dep) {
            Ok(r) => r,
            Err(e) => {
                skip_refused(ctx, dep, model, tally, e);
                return Err(StepEnd::Next);
            }
        };
        // One clock reading for the step's checks (the breaker's, the next steps' availability).
        let now = now_ms();
        if !self.admissible(ctx, model, dep, inbound, tally, now) {
            return Err(StepEnd::Next);
        }
        let is_last = !steps[i + 1..]
            .iter()
            .any(|s| s.deployment.runtime.available(now));
        Ok(Go {
            ready,
            may_retry: !is_last || walk.fallbacks,
        })
    }

    /// Whether `dep` may be tried now: its provider's budget allows the request's estimate, its
    /// circuit is closed (or half-open with a probe free) and its provider's quota is not spent.
    /// A skip is noted in the request's tries. `now`: [`now_ms`] at the step.
    fn admissible(
        &self,
        ctx: &mut RequestCtx,
        model: &RoutedModel,
        dep: &RoutedDeployment,
        inbound: &Inbound<'_>,
        tally: &mut Tally,
        now: u64,
    ) -> bool {
        let spec = dep.spec(model);
        if let Some(gov) = ctx.governance().filter(|g| g.has_provider_budgets()) {
            let estimate = crate::governance::estimate::deployment_cost_nanos(
                model,
                dep,
                inbound.body.len(),
                inbound.facts.max_tokens,
                inbound.facts.choices,
            );
            if !gov.provider_allows(dep.provider.name(), estimate) {
                ctx.failures.push(TryFailure {
                    provider: dep.provider.name().to_string(),
                    model: spec.model.clone(),
                    reason: "skipped: the provider's budget is spent".into(),
                });
                tally
                    .provider_budget
                    .get_or_insert_with(|| dep.provider.name().to_string());
                tally.other_failure = true;
                return false;
            }
        }
        let acquired = dep
            .runtime
            .acquire(&model.config.routing.breaker, now)
            .and_then(|()| {
                if dep.provider.admit() {
                    Ok(())
                } else {
                    Err(Unavailable::Quota)
                }
            });
        let Err(why) = acquired else {
            return true;
        };
        match why {
            Unavailable::RetryAfter => tally.wait(dep.runtime.wait_left_ms(now)),
            Unavailable::Quota => {
                tally.wait(dep.provider.quota.wait_ms(crate::clock::unix_ms(), now))
            }
            Unavailable::CircuitOpen => tally.other_failure = true,
        }
        let (counter, reason) = match why {
            Unavailable::CircuitOpen => (
                &dep.provider.metrics.skipped_circuit_open,
                "skipped: circuit open",
            ),
            Unavailable::RetryAfter => (
                &dep.provider.metrics.skipped_retry_after,
                "skipped: provider asked to retry later",
            ),
            Unavailable::Quota => (
                &dep.provider.metrics.skipped_quota,
                "skipped: provider quota used up",
            ),
        };
        counter.inc();
        // Skipped without a try: noted once per deployment.
        if !ctx
            .failures
            .iter()
            .any(|f| f.provider == dep.provider.name() && f.model == spec.model)
        {
            ctx.failures.push(TryFailure {
                provider: dep.provider.name().to_string(),
                model: spec.model.clone(),
                reason: reason.into(),
            });
        }
        false
    }

    /// A local deployment: chat or embeddings on the pool; a spill moves on.
    #[cfg(feature = "local")]
    async fn step_local(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        target: &InProcess<'_, '_>,
        chat: LocalChat,
        tally: &mut Tally,
    ) -> StepEnd {
        use super::in_process::local::LocalMiss;
        let dep = target.dep;
        if tally.local_refused.contains(&dep.index) {
            return StepEnd::Next;
        }
        ctx.tries += 1;
        ctx.mark_try_started();
        let served = match chat {
            Some(request) => self.serve_local_chat(session, ctx, target, request).await,
            None => self.serve_local_embeddings(session, ctx, target).await,
        };
        match served {
            Ok(()) => StepEnd::Done(Ok(())),
            Err(LocalMiss::Refused(e)) => {
                // This model cannot take the request (e.g. the prompt exceeds its context):
                // another deployment may. Not a try, and not asked again.
                ctx.tries -= 1;
                tally.local_refused.push(dep.index);
                skip_refused(ctx, dep, target.model, tally, e);
                StepEnd::Next
            }
            Err(LocalMiss::Spilled(reason)) => {
                tally.tried = true;
                tally.other_failure = true;
                // Not the deployment's fault: it is busy. The next one answers.
                dep.provider.metrics.skipped_quota.inc();
                ctx.failures.push(TryFailure {
                    provider: dep.provider.name().to_string(),
                    model: dep.spec(target.model).model.clone(),
                    reason: format!("spilled: {reason}"),
                });
                StepEnd::Next
            }
            Err(LocalMiss::Failed(f)) => StepEnd::Done(Err(f)),
        }
    }

    /// Without the `local` feature a local deployment cannot serve (`check` refuses such a
    /// config; this covers a config loaded by other means).
    #[cfg(not(feature = "local"))]
    async fn step_local(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
        target: &InProcess<'_, '_>,
        _chat: LocalChat,
        _tally: &mut Tally,
    ) -> StepEnd {
        ctx.failures.push(TryFailure {
            provider: target.dep.provider.name().to_string(),
            model: target.dep.spec(target.model).model.clone(),
            reason: "skipped: this build has no local inference".into(),
        });
        StepEnd::Next
    }

    /// An HTTP deployment: one try (or a hedged pair), relayed when it answers.
    async fn step_http(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        walk: &Walk<'_, '_>,
        http: HttpStep,
        tally: &mut Tally,
    ) -> StepEnd {
        let (model, inbound, steps) = (walk.model, walk.inbound, walk.steps);
        let HttpStep {
            i,
            prepared,
            may_retry,
        } = http;
        let dep = steps[i].deployment;
        let routing = &model.config.routing;
        let stream = inbound.facts.stream;
        ctx.tries += 1;
        ctx.mark_try_started();
        tally.tried = true;
        // A hedge partner: the next available deployment in the plan that can take the request.
        let partner = routing.hedge_after.filter(|_| i == 0).and_then(|after| {
            steps[1..]
                .iter()
                .map(|s| s.deployment)
                .filter(|d| {
                    !std::ptr::eq(*d, dep)
                        && d.runtime.available(now_ms())
                        && matches!(d.provider.config.kind, ProviderKind::Http { .. })
                })
                .find_map(|d| prepare_for(inbound, model, d).ok().map(|p| (after, d, p)))
        });
        let (attempt, dep, prepared) = match partner {
            None => {
                let t = Try {
                    ctx,
                    dep,
                    prepared: &prepared,
                    stream,
                    may_retry,
                    deadline: walk.deadline,
                    routing,
                };
                let attempt = self.try_within(&t).await;
                (attempt, dep, prepared)
            }
            Some((after, other, other_prepared)) => {
                let hedge = Hedge {
                    model,
                    first: (dep, prepared),
                    second: (other, other_prepared),
                    after,
                    stream,
                    deadline: walk.deadline,
                };
                // Boxed: a race holds two tries at once, and inline it would double the size of
                // every request's future (which Pingora moves into a box per request).
                match Box::pin(self.race(ctx, hedge)).await {
                    Raced::Won(d, committed, p) => (Ok(committed), d, p),
                    Raced::Lost(d, e, p) => (Err(e), d, p),
                }
            }
        };
        match attempt {
            Ok(committed) => {
                let answer = Answer {
                    dep,
                    upstream_model: &dep.spec(model).model,
                    prepared: &prepared,
                    inbound,
                };
                let committed = match self.vet(ctx, committed, &answer, walk.fallbacks).await {
                    Vetted::Ready(c) => c,
                    Vetted::Failed(f) => return StepEnd::Done(Err(f)),
                    Vetted::Rejected(Rejection::ContentPolicy, e) => {
                        // The caller's prompt, not the deployment's failure: no health, breaker
                        // or reputation count, and no other deployment of this model.
                        dep.provider.metrics.attempt(e.outcome);
                        ctx.failures.push(crate::errors::TryFailure {
                            provider: dep.provider.name().to_string(),
                            model: dep.spec(model).model.clone(),
                            reason: e.reason.clone(),
                        });
                        tally.content_policy = Some(e.reason);
                        return StepEnd::Stop;
                    }
                    Vetted::Rejected(why, e) => {
                        let end = failed_try(ctx, model, dep, e, walk.deadline, tally);
                        tally.last_rejection = Some(why);
                        return end;
                    }
                };
                dep.provider.metrics.attempt(AttemptOutcome::Ok);
                if ctx.tries > 1 {
                    model.metrics.failovers.inc();
                }
                dep.runtime.observe_ttfb(
                    committed
                        .answered
                        .saturating_duration_since(committed.started),
                    crate::clock::ms_at(committed.answered),
                );
                StepEnd::Done(self.relay(session, ctx, committed, &answer).await)
            }
            Err(e) => failed_try(ctx, model, dep, e, walk.deadline, tally),
        }
    }
}

/// A try that failed: noted everywhere it counts; whether the plan goes on.
fn failed_try(
    ctx: &mut RequestCtx,
    model: &RoutedModel,
    dep: &RoutedDeployment,
    e: TryError,
    deadline: Instant,
    tally: &mut Tally,
) -> StepEnd {
    tally.last_outcome = Some(e.outcome);
    tally.last_rejection = None;
    if e.outcome == AttemptOutcome::Status429 {
        let wait = e
            .retry_after
            .unwrap_or(crate::routing::breaker::DEFAULT_RATE_LIMIT_WAIT);
        tally.wait(wait.as_millis() as u64);
    } else {
        tally.other_failure = true;
    }
    let retry = note_failure(ctx, model, dep, e);
    if !retry || Instant::now() >= deadline {
        StepEnd::Stop
    } else {
        StepEnd::Next
    }
}

/// The caller's `maxCostPerRequest` left no deployment: a 400 naming the limit.
fn over_cost(model: &RoutedModel, input: &router::PlanInput<'_>) -> Option<GatewayError> {
    let cap = input.hints.and_then(|h| h.max_cost_usd)?;
    let cheapest = model
        .deployments
        .iter()
        .map(|d| router::expected_cost(d.spec(model), input))
        .min_by(f64::total_cmp)?;
    (cheapest > cap).then(|| GatewayError::RoutingHint {
        message: format!(
            "no deployment of `{}` fits maxCostPerRequest ${cap}: the cheapest would cost up to ${cheapest:.6} for this request",
            model.config.name
        ),
        param: "maxCostPerRequest",
        code: "max_cost_exceeded",
    })
}

/// Whether the prompt fits the deployment's `context_window` (a 400 on `messages` when none fits).
fn fits(
    spec: &crate::config::Deployment,
    prompt_tokens: Option<u64>,
) -> Result<(), TranslateError> {
    match (spec.context_window, prompt_tokens) {
        (Some(window), Some(tokens)) if tokens > window => Err(TranslateError::invalid(
            format!(
                "the prompt (about {tokens} tokens) exceeds the context window of {}/{} ({window} tokens)",
                spec.provider.name, spec.model
            ),
            Some("messages".to_string()),
        )),
        _ => Ok(()),
    }
}

/// A deployment that cannot take the request as written (not a failure of the deployment):
/// noted in the tries, and the first such reason kept for a 400 when no deployment could.
fn skip_refused(
    ctx: &mut RequestCtx,
    dep: &RoutedDeployment,
    model: &RoutedModel,
    tally: &mut Tally,
    e: TranslateError,
) {
    ctx.failures.push(TryFailure {
        provider: dep.provider.name().to_string(),
        model: dep.spec(model).model.clone(),
        reason: format!("skipped: {e}"),
    });
    tally.refused.get_or_insert(e);
}

/// The answer when no deployment served: the caller's 400 when none could take the request as
/// written, a budget or rate-limit refusal when those kept every deployment out, else 504 / 502.
fn exhausted(ctx: &RequestCtx, model: &RoutedModel, tally: Tally) -> GatewayError {
    let rate_limited = tally.only_rate_limited();
    if let (false, Some(e)) = (tally.tried, tally.refused) {
        return GatewayError::Untranslatable(e);
    }
    if let (false, Some(p)) = (tally.tried, &tally.provider_budget) {
        let limit_usd = ctx
            .governance()
            .and_then(|g| g.provider_budget_limit(p))
            .unwrap_or(0.0);
        return GatewayError::BudgetExceeded {
            scope: format!("provider:{p}"),
            limit_usd,
            resets_at: None,
        };
    }
    if let Some(retry_after_secs) = rate_limited {
        // Every deployment reached answered 429 or was waiting for its provider: a rate limit
        // for the caller too, with the shortest wait, not a gateway failure.
        return GatewayError::UpstreamRateLimited {
            model: model.config.name.clone(),
            tries: ctx.failures.clone(),
            retry_after_secs,
        };
    }
    if let Some(message) = tally.content_policy {
        return GatewayError::ContentPolicy {
            model: model.config.name.clone(),
            message,
        };
    }
    let (model, tries) = (model.config.name.clone(), ctx.failures.clone());
    match tally.last_rejection {
        Some(Rejection::BadResponse) => return GatewayError::BadUpstreamResponse { model, tries },
        Some(Rejection::InvalidStructured) => {
            return GatewayError::InvalidStructuredOutput { model, tries }
        }
        Some(Rejection::ContentPolicy) | None => {}
    }
    if tally.last_outcome == Some(AttemptOutcome::Timeout) {
        GatewayError::UpstreamTimeout { model, tries }
    } else {
        GatewayError::NoDeploymentAvailable { model, tries }
    }
}
