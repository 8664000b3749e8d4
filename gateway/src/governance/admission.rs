//! Admission, the request step of governance: checks the caller's rate limits and reserves the
//! request's most likely cost on every budget that applies to it, locally or through the shared
//! store. What it holds is released when the request settles (see [`super::spend`]) or is
//! dropped. Must not write ledger rows or metrics beyond refusals.
//!
//! Rate limits (sliding windows, see [`super`]): a request takes one unit of its key's and its
//! team's `requests_per_minute` windows and is refused when either is full; `tokens_per_minute`
//! is only checked here and charged when the request settles.

use super::shared::{shared_budget_key, Key, Release, Shared};
use super::{Budget, Governance, Limiter};
use crate::config::BudgetScope;
use crate::governance::redis_store::{Outcome, RedisStoreError, Step, WindowMode};
use crate::proxy::rate_headers::RateHeaders;
use smallvec::SmallVec;
use std::sync::Arc;
use switchyard_filters::auth::Identity;
use switchyard_filters::budget::{self, Reservation};

/// What a refused request is told.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    RateLimited {
        /// `requests_per_minute`, `tokens_per_minute` or `concurrency`.
        limit: &'static str,
        /// `key:<name>` or `team:<name>`.
        subject: String,
        retry_after_secs: u64,
    },
    BudgetExceeded {
        scope: String,
        limit_usd: f64,
        /// Unix seconds; `None` for a total budget.
        resets_at: Option<i64>,
    },
    /// The shared store is unreachable and the config says `fail_closed`.
    StoreUnavailable,
}

impl From<Refusal> for crate::errors::GatewayError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::RateLimited {
                limit,
                subject,
                retry_after_secs,
            } => crate::errors::GatewayError::RateLimited {
                limit,
                subject,
                retry_after_secs,
            },
            Refusal::BudgetExceeded {
                scope,
                limit_usd,
                resets_at,
            } => crate::errors::GatewayError::BudgetExceeded {
                scope,
                limit_usd,
                resets_at,
            },
            Refusal::StoreUnavailable => crate::errors::GatewayError::StoreUnavailable,
        }
    }
}

/// A request admitted by limits and budgets: its reservations and limiter slots, released when it
/// is settled or dropped.
pub struct Admission {
    /// Inline for the usual one or two budgets and limiters (a key's and its team's): admitting
    /// a request allocates nothing.
    pub(super) reservations: SmallVec<[(Arc<Budget>, Reservation); 2]>,
    pub(super) limiters: SmallVec<[Arc<Limiter>; 2]>,
    /// Some budget of the caller is past its soft ratio: route to the cheapest deployment.
    pub prefer_cheapest: bool,
    /// `x-ratelimit-*` headers for the response.
    pub headers: RateHeaders,
    /// Provider budgets to charge when the request settles.
    pub(super) providers: Vec<Arc<Budget>>,
    pub(super) settled: bool,
    /// Set when the request was admitted through the shared (Redis) store.
    pub(super) shared: Option<SharedHold>,
    /// Under an `on_exhaust: cutoff` budget: the most this request may spend (nano-dollars); a
    /// stream is ended when its running cost reaches it.
    pub cutoff_nanos: Option<u64>,
}

/// A step of a shared admission: which subject's (key's or team's) limit it checks.
#[derive(Debug, Clone, Copy)]
enum Planned {
    Requests(usize),
    Tokens(usize),
    Concurrency(usize),
}

impl Planned {
    fn subject(self) -> usize {
        match self {
            Planned::Requests(i) | Planned::Tokens(i) | Planned::Concurrency(i) => i,
        }
    }
}

/// A budget an admission reserves on: (budget, its shared key, period start, expiry seconds).
type BudgetStep<'a> = (&'a Arc<Budget>, Key, i64, Option<u64>);

/// A reservation in the shared store.
pub(super) struct SharedReservation {
    pub(super) budget: Arc<Budget>,
    pub(super) key: Key,
    pub(super) period_start: i64,
    pub(super) amount: u64,
    pub(super) ttl: Option<u64>,
}

/// What a request holds in the shared store.
pub(super) struct SharedHold {
    pub(super) store: Arc<Shared>,
    pub(super) budgets: Vec<SharedReservation>,
    /// Concurrency keys entered.
    pub(super) entered: SmallVec<[Key; 2]>,
    /// Token limiters to charge: (key, rate per minute).
    pub(super) tokens: SmallVec<[(Key, u64); 2]>,
}

impl SharedHold {
    /// Settles (or, with `None`, releases) everything through the shared store's release queue:
    /// the request's response is already out, and Redis round trips must not hold its
    /// connection.
    pub(super) fn finish(self, actual: Option<(u64, u64)>) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let (cost, tokens) = actual.unwrap_or((0, 0));
        let now = crate::clock::unix_secs_i64();
        let mut ops =
            Vec::with_capacity(self.budgets.len() + self.tokens.len() + self.entered.len());
        for r in self.budgets {
            let start_now = r.budget.settings.period.window(now).0;
            let (period_start, reserved) = if start_now == r.period_start {
                (r.period_start, r.amount)
            } else {
                (start_now, 0)
            };
            ops.push(Release::Settle {
                key: r.key,
                period_start,
                reserved,
                actual: cost,
                ttl_secs: r.ttl,
            });
        }
        if tokens > 0 {
            for (key, rate) in self.tokens {
                ops.push(Release::Window {
                    key,
                    limit_per_minute: rate,
                    cost: tokens,
                    mode: WindowMode::Charge,
                });
            }
        }
        for key in self.entered {
            ops.push(Release::Exit { key, count: 1 });
        }
        self.store.release(ops);
    }
}

impl Admission {
    /// An admission with nothing to release (no limits, no budgets apply).
    pub fn none() -> Self {
        Admission {
            reservations: SmallVec::new(),
            limiters: SmallVec::new(),
            prefer_cheapest: false,
            headers: RateHeaders::default(),
            providers: Vec::new(),
            settled: false,
            shared: None,
            cutoff_nanos: None,
        }
    }

    /// Replaces the reservations by the actual cost and charges token limits.
    pub fn settle(&mut self, cost_nanos: u64, tokens: u64, provider: Option<&str>, now_ns: u64) {
        if let Some(hold) = self.shared.take() {
            hold.finish(Some((cost_nanos, tokens)));
        }
        let now = crate::clock::unix_secs_i64();
        for (b, r) in self.reservations.drain(..) {
            b.account.settle(r, cost_nanos, now);
            b.publish(now);
        }
        if let Some(p) = provider {
            for b in &self.providers {
                if matches!(&b.settings.scope, BudgetScope::Provider(n) if n == p) {
                    b.account.record(cost_nanos, now);
                    b.publish(now);
                }
            }
        }
        for l in &self.limiters {
            if let (Some(t), true) = (&l.tokens, tokens > 0) {
                t.charge(tokens, now_ns);
            }
        }
        self.settled = true;
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(hold) = self.shared.take() {
            hold.finish(None);
        }
        if !self.settled {
            let now = crate::clock::unix_secs_i64();
            for (b, r) in self.reservations.drain(..) {
                b.account.settle(r, 0, now);
            }
        }
        for l in &self.limiters {
            if let Some(c) = &l.concurrency {
                c.exit();
            }
        }
    }
}

impl Governance {
    /// Admits through the shared store when one is configured (falling back to this node's own
    /// accounts while it is unreachable, unless `fail_closed`), else locally.
    pub async fn admit_with(
        &self,
        shared: Option<&Arc<Shared>>,
        who: Option<&Identity>,
        estimate_nanos: u64,
        now_ns: u64,
    ) -> Result<Admission, Refusal> {
        let Some(shared) = shared else {
            return self.admit(who, estimate_nanos, now_ns);
        };
        // Boxed: the Redis round trip's future (~3.6 KB) would otherwise be carried by every
        // request's future, with or without a fleet store.
        match Box::pin(self.admit_shared(shared, who, estimate_nanos)).await {
            Ok(r) => {
                shared.up.set(1);
                r
            }
            Err(e) => {
                shared.failed(&e);
                if shared.settings.fail_closed {
                    Err(Refusal::StoreUnavailable)
                } else {
                    self.admit(who, estimate_nanos, now_ns)
                }
            }
        }
    }

    /// Limits and budgets in Redis: every gateway on it enforces the same numbers. The outer
    /// `Err` is a store failure; the inner result is the decision.
    pub(super) async fn admit_shared(
        &self,
        shared: &Arc<Shared>,
        who: Option<&Identity>,
        estimate_nanos: u64,
    ) -> Result<Result<Admission, Refusal>, RedisStoreError> {
        let store = shared.store().await?;
        shared.seed(store, self).await;
        let mut adm = Admission::none();
        let mut hold = SharedHold {
            store: shared.clone(),
            budgets: Vec::new(),
            entered: SmallVec::new(),
            tokens: SmallVec::new(),
        };
        let subjects: SmallVec<[&Arc<Limiter>; 2]> = [
            who.and_then(Identity::key_name)
                .and_then(|k| self.key_limits.get(k)),
            who.and_then(|i| i.team.as_deref())
                .and_then(|t| self.team_limits.get(t)),
        ]
        .into_iter()
        .flatten()
        .collect();
        let now = crate::clock::unix_secs_i64();
        let budgets: SmallVec<[BudgetStep<'_>; 2]> = self
            .budgets
            .iter()
            .filter(|b| b.applies_to(who))
            .map(|b| {
                let (key, start, ttl) = shared_budget_key(b, now);
                (b, key, start, ttl)
            })
            .collect();
        // The whole admission in one round trip: per subject its request window, token check
        // and concurrency, then every budget; the script stops at the first refusal. The keys
        // were made with the limiters and budgets.
        let mut plan: SmallVec<[Planned; 6]> = SmallVec::new();
        let mut steps: Vec<Step<Key>> = Vec::with_capacity(subjects.len() * 3 + budgets.len());
        for (i, limiter) in subjects.iter().enumerate() {
            let (limits, keys) = (&limiter.limits, &limiter.shared);
            if let Some(limit) = limits.requests_per_minute {
                plan.push(Planned::Requests(i));
                steps.push(Step::Window {
                    key: keys.requests.clone(),
                    limit_per_minute: limit,
                    cost: 1,
                    mode: WindowMode::Acquire,
                });
            }
            if let Some(limit) = limits.tokens_per_minute {
                plan.push(Planned::Tokens(i));
                steps.push(Step::Window {
                    key: keys.tokens.clone(),
                    limit_per_minute: limit,
                    cost: 1,
                    mode: WindowMode::Check,
                });
            }
            if let Some(limit) = limits.concurrency {
                plan.push(Planned::Concurrency(i));
                steps.push(Step::Enter {
                    key: keys.subject.clone(),
                    limit,
                });
            }
        }
        steps.extend(budgets.iter().map(|(b, key, start, ttl)| Step::Reserve {
            key: key.clone(),
            period_start: *start,
            limit: b.account.limit,
            amount: estimate_nanos,
            ttl_secs: *ttl,
            cutoff: b.settings.cutoff,
        }));
        let outcomes = shared.admit(steps).await?;
        let (mut current, mut first) = (None, true);
        for (n, outcome) in outcomes.into_iter().enumerate() {
            let Some(what) = plan.get(n) else {
                // A budget's reservation.
                let Some((b, key, start, ttl)) = budgets.get(n - plan.len()) else {
                    break;
                };
                match outcome {
                    Outcome::Reserved(Ok((committed, amount))) => {
                        if b.settings.cutoff {
                            adm.cutoff_nanos =
                                Some(adm.cutoff_nanos.unwrap_or(u64::MAX).min(amount));
                        }
                        b.alert(committed, false, now);
                        adm.prefer_cheapest |= committed >= b.account.soft;
                        b.remaining.set(budget::nanos_to_usd(
                            b.account.limit.saturating_sub(committed),
                        ));
                        b.over_soft.set(i64::from(committed >= b.account.soft));
                        hold.budgets.push(SharedReservation {
                            budget: (*b).clone(),
                            key: key.clone(),
                            period_start: *start,
                            amount,
                            ttl: *ttl,
                        });
                    }
                    Outcome::Reserved(Err(committed)) => {
                        b.alert(committed, true, now);
                        adm.shared = Some(hold);
                        return Ok(Err(Refusal::BudgetExceeded {
                            scope: b.settings.scope.to_string(),
                            limit_usd: b.settings.limit_usd,
                            resets_at: b.settings.period.window(now).1,
                        }));
                    }
                    _ => {}
                }
                continue;
            };
            let i = what.subject();
            let limiter = subjects[i];
            // The headers report the first subject that reports one (the key's, else the team's).
            if current != Some(i) {
                current = Some(i);
                first = adm.headers.is_empty();
            }
            let refuse = |limit: &'static str, ns: u64| Refusal::RateLimited {
                limit,
                subject: limiter.shared.subject.to_string(),
                retry_after_secs: ns.div_ceil(1_000_000_000).max(1),
            };
            match (what, outcome) {
                (Planned::Requests(_), Outcome::Window(o)) => {
                    if !o.allowed {
                        adm.shared = Some(hold);
                        return Ok(Err(refuse("requests_per_minute", o.retry_after_ns)));
                    }
                    if first {
                        adm.headers.requests =
                            Limiter::report(&limiter.requests_limit, o.remaining, o.reset_ns);
                    }
                }
                (Planned::Tokens(_), Outcome::Window(o)) => {
                    if !o.allowed {
                        adm.shared = Some(hold);
                        return Ok(Err(refuse("tokens_per_minute", o.retry_after_ns)));
                    }
                    if first {
                        adm.headers.tokens =
                            Limiter::report(&limiter.tokens_limit, o.remaining, o.reset_ns);
                    }
                    let rate = limiter.limits.tokens_per_minute.unwrap_or(0);
                    hold.tokens.push((limiter.shared.tokens.clone(), rate));
                }
                (Planned::Concurrency(_), Outcome::Entered(entered)) => {
                    if !entered {
                        adm.shared = Some(hold);
                        return Ok(Err(refuse("concurrency", 1_000_000_000)));
                    }
                    hold.entered.push(limiter.shared.subject.clone());
                }
                _ => {}
            }
        }
        adm.providers = self.provider_budgets_list();
        adm.shared = Some(hold);
        Ok(Ok(adm))
    }

    /// Checks limits, then reserves `estimate_nanos` on every budget that applies to the caller.
    pub fn admit(
        &self,
        who: Option<&Identity>,
        estimate_nanos: u64,
        now_ns: u64,
    ) -> Result<Admission, Refusal> {
        let mut adm = Admission::none();
        // (limiter, subject kind, subject name); the subject is spelled out only on a refusal.
        let subjects = [
            who.and_then(Identity::key_name)
                .and_then(|k| self.key_limits.get(k).map(|l| (l, "key", k))),
            who.and_then(|i| i.team.as_deref())
                .and_then(|t| self.team_limits.get(t).map(|l| (l, "team", t))),
        ];
        for (limiter, kind, name) in subjects.into_iter().flatten() {
            let refuse = |limit: &'static str, ns: u64| Refusal::RateLimited {
                limit,
                subject: format!("{kind}:{name}"),
                retry_after_secs: ns.div_ceil(1_000_000_000).max(1),
            };
            let first = adm.headers.is_empty();
            if let Some(g) = &limiter.requests {
                let ok = g
                    .acquire(1, now_ns)
                    .map_err(|d| refuse("requests_per_minute", d.retry_after_ns))?;
                if first {
                    adm.headers.requests =
                        Limiter::report(&limiter.requests_limit, ok.remaining, ok.reset_ns);
                }
            }
            if let Some(g) = &limiter.tokens {
                let ok = g
                    .check(now_ns)
                    .map_err(|d| refuse("tokens_per_minute", d.retry_after_ns))?;
                if first {
                    adm.headers.tokens =
                        Limiter::report(&limiter.tokens_limit, ok.remaining, ok.reset_ns);
                }
            }
            if let Some(c) = &limiter.concurrency {
                if !c.try_enter() {
                    return Err(refuse("concurrency", 1_000_000_000));
                }
            }
            adm.limiters.push(limiter.clone());
        }
        let now = crate::clock::unix_secs_i64();
        for b in self.budgets.iter().filter(|b| b.applies_to(who)) {
            let reserved = if b.settings.cutoff {
                b.account.reserve_up_to(estimate_nanos, now)
            } else {
                b.account.reserve(estimate_nanos, now)
            };
            match reserved {
                Ok(r) => {
                    if b.settings.cutoff {
                        adm.cutoff_nanos = Some(adm.cutoff_nanos.unwrap_or(u64::MAX).min(r.amount));
                    }
                    // (The remaining-budget gauge is published when the request settles.)
                    let committed = b.account.committed(now);
                    adm.prefer_cheapest |= committed >= b.account.soft;
                    b.alert(committed, false, now);
                    adm.reservations.push((b.clone(), r));
                }
                Err(e) => {
                    b.alert(e.committed, true, now);
                    return Err(Refusal::BudgetExceeded {
                        scope: b.settings.scope.to_string(),
                        limit_usd: budget::nanos_to_usd(e.limit),
                        resets_at: e.resets_at,
                    });
                }
            }
        }
        if self.provider_budgets {
            adm.providers = self.provider_budgets_list();
        }
        Ok(adm)
    }
}
