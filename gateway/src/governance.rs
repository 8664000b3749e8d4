//! Cost governance at request time: rate limits per key and team, budgets per scope with
//! reservations, and the bookkeeping when a request ends (settling reservations, charging token
//! limits, writing the ledger row, spend metrics).
//!
//! [`Spend`] lives for the process (it owns the [`Ledger`]); the [`Governance`] it serves is
//! rebuilt on every config reload, carrying budget accounts and limiters over by identity so a
//! reload neither forgets spend nor resets a limit. Budget totals are rebuilt from the ledger at
//! start. The decisions themselves are `switchyard_filters::{budget, ratelimit}`: lock-free
//! atomics, nothing shared by all requests is locked.

use crate::config::{BudgetScope, BudgetSettings, Config, RateLimits, RedisSettings};
use crate::ledger::{Ledger, LedgerError, LedgerRow, RowNumbers, RowText, ScopeColumn};
use crate::rate_headers::{limit_value, LimitReport, RateHeaders};
use crate::redis_store::{RedisStore, RedisStoreError};
use crate::telemetry::Metrics;
use arc_swap::ArcSwap;
use http::HeaderValue;
use prometheus::{CounterVec, GaugeVec, IntCounterVec, IntGauge, IntGaugeVec, Opts};
use smallvec::SmallVec;
use std::collections::HashMap;
use std::sync::Arc;
use switchyard_filters::auth::Identity;
use switchyard_filters::budget::{self, BudgetAccount, Reservation};
use switchyard_filters::ratelimit::{Concurrency, Gcra};

/// One subject's limits (a key or a team).
pub struct Limiter {
    pub limits: RateLimits,
    requests: Option<Gcra>,
    tokens: Option<Gcra>,
    concurrency: Option<Concurrency>,
    /// `x-ratelimit-limit-requests` / `-tokens` values, made once.
    requests_limit: HeaderValue,
    tokens_limit: HeaderValue,
}

impl Limiter {
    fn new(limits: RateLimits) -> Self {
        Limiter {
            limits,
            requests: limits.requests_per_minute.map(Gcra::per_minute),
            tokens: limits.tokens_per_minute.map(Gcra::per_minute),
            concurrency: limits.concurrency.map(Concurrency::new),
            requests_limit: limit_value(limits.requests_per_minute.unwrap_or(0)),
            tokens_limit: limit_value(limits.tokens_per_minute.unwrap_or(0)),
        }
    }

    fn report(limit: &HeaderValue, remaining: u64, reset_ns: u64) -> Option<LimitReport> {
        Some(LimitReport {
            limit: limit.clone(),
            remaining,
            reset_ns,
        })
    }
}

/// One configured budget and its running account.
pub struct Budget {
    pub settings: BudgetSettings,
    pub account: Arc<BudgetAccount>,
    remaining: prometheus::Gauge,
    over_soft: prometheus::IntGauge,
    /// Alert state, carried across reloads with the account.
    alerts: Arc<AlertState>,
    notifier: Arc<Notifier>,
}

/// The period (its start) for which each alert was last sent.
#[derive(Debug)]
struct AlertState {
    soft: std::sync::atomic::AtomicI64,
    hard: std::sync::atomic::AtomicI64,
}

impl Default for AlertState {
    fn default() -> Self {
        AlertState {
            soft: std::sync::atomic::AtomicI64::new(i64::MIN),
            hard: std::sync::atomic::AtomicI64::new(i64::MIN),
        }
    }
}

/// Sends budget alert webhooks (off the request path, with retries).
pub struct Notifier {
    connector: pingora_core::connectors::http::Connector,
}

impl Notifier {
    pub fn new() -> Self {
        Notifier {
            connector: pingora_core::connectors::http::Connector::new(None),
        }
    }
}

impl Default for Notifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Budget {
    /// Sends the soft-ratio alert and the hard-limit alert, each once per period, when
    /// `committed` (spent + reserved) crossed them or a request was refused (`exhausted`).
    fn alert(&self, committed: u64, exhausted: bool, now: i64) {
        let Some(endpoint) = self.settings.alert_webhook.clone() else {
            return;
        };
        let (start, end) = self.settings.period.window(now);
        let mut events = Vec::new();
        if committed >= self.account.soft
            && self
                .alerts
                .soft
                .swap(start, std::sync::atomic::Ordering::AcqRel)
                != start
        {
            events.push("budget_soft_limit");
        }
        if (exhausted || committed >= self.account.limit)
            && self
                .alerts
                .hard
                .swap(start, std::sync::atomic::Ordering::AcqRel)
                != start
        {
            events.push("budget_exhausted");
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        for event in events {
            let body = serde_json::json!({
                "event": event,
                "scope": self.settings.scope.to_string(),
                "period": self.settings.period.name(),
                "limit_usd": self.settings.limit_usd,
                "soft_ratio": self.settings.soft_ratio,
                "committed_usd": budget::nanos_to_usd(committed),
                "resets_at": end,
                "ts": now,
            });
            let endpoint = endpoint.clone();
            let notifier = self.notifier.clone();
            let scope = self.settings.scope.to_string();
            rt.spawn(async move {
                let body = bytes::Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
                let mut wait = std::time::Duration::from_millis(500);
                for attempt in 1..=4 {
                    let outcome = crate::identity::http_call(
                        &notifier.connector,
                        &endpoint,
                        "POST",
                        &endpoint.path(""),
                        &[("content-type", "application/json".to_string())],
                        body.clone(),
                        std::time::Duration::from_secs(5),
                    )
                    .await;
                    match outcome {
                        Ok((status, _)) if (200..300).contains(&status) => return,
                        Ok((status, _)) => log::warn!(
                            "budget alert {event} for {scope}: webhook answered {status} (attempt {attempt})"
                        ),
                        Err(e) => log::warn!(
                            "budget alert {event} for {scope}: {e} (attempt {attempt})"
                        ),
                    }
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                log::error!("budget alert {event} for {scope}: webhook failed 4 times; giving up");
            });
        }
    }
}

impl Budget {
    /// (spent, committed) now: from the shared store when there is one, else this node's account.
    pub async fn totals(&self, shared: Option<&Arc<Shared>>) -> (u64, u64) {
        let now = unix_now();
        if let Some(sh) = shared {
            if let Ok(store) = sh.store().await {
                let (key, start, _) = shared_budget_key(self, now);
                match store.totals(&key, start).await {
                    Ok(t) => return t,
                    Err(e) => sh.failed(&e),
                }
            }
        }
        (self.account.spent(now), self.account.committed(now))
    }
}

impl Budget {
    fn applies_to(&self, who: Option<&Identity>) -> bool {
        match &self.settings.scope {
            BudgetScope::Global => true,
            BudgetScope::Team(t) => who.and_then(|i| i.team.as_deref()) == Some(t),
            BudgetScope::Project(p) => who.and_then(|i| i.project.as_deref()) == Some(p),
            BudgetScope::Key(k) => who.map(|i| i.name.as_str()) == Some(k),
            BudgetScope::Provider(_) => false,
        }
    }

    fn publish(&self, now: i64) {
        self.remaining
            .set(budget::nanos_to_usd(self.account.remaining(now)));
        self.over_soft.set(i64::from(self.account.over_soft(now)));
    }
}

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

/// The live policy for one config.
pub struct Governance {
    pub budgets: Vec<Arc<Budget>>,
    key_limits: HashMap<String, Arc<Limiter>>,
    team_limits: HashMap<String, Arc<Limiter>>,
    /// Whether any budget has a provider scope (if not, routing skips the per-deployment check).
    provider_budgets: bool,
}

/// A request admitted by limits and budgets: its reservations and limiter slots, released when it
/// is settled or dropped.
pub struct Admission {
    /// Inline for the usual one or two budgets and limiters (a key's and its team's): admitting
    /// a request allocates nothing.
    reservations: SmallVec<[(Arc<Budget>, Reservation); 2]>,
    limiters: SmallVec<[Arc<Limiter>; 2]>,
    /// Some budget of the caller is past its soft ratio: route to the cheapest deployment.
    pub prefer_cheapest: bool,
    /// `x-ratelimit-*` headers for the response.
    pub headers: RateHeaders,
    /// Provider budgets to charge when the request settles.
    providers: Vec<Arc<Budget>>,
    settled: bool,
    /// Set when the request was admitted through the shared (Redis) store.
    shared: Option<SharedHold>,
    /// Under an `on_exhaust: cutoff` budget: the most this request may spend (nano-dollars); a
    /// stream is ended when its running cost reaches it.
    pub cutoff_nanos: Option<u64>,
}

/// A reservation in the shared store.
struct SharedReservation {
    budget: Arc<Budget>,
    key: String,
    period_start: i64,
    amount: u64,
    ttl: Option<u64>,
}

/// What a request holds in the shared store.
struct SharedHold {
    store: Arc<Shared>,
    budgets: Vec<SharedReservation>,
    /// Concurrency keys entered.
    entered: Vec<String>,
    /// Token limiters to charge: (key, rate per minute).
    tokens: Vec<(String, u64)>,
}

impl SharedHold {
    /// Settles (or, with `None`, releases) everything in the background: the request's
    /// response is already out, and Redis round trips must not hold its connection.
    fn finish(self, actual: Option<(u64, u64)>) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            let Ok(store) = self.store.store().await else {
                return;
            };
            let (cost, tokens) = actual.unwrap_or((0, 0));
            let now = unix_now();
            for r in &self.budgets {
                let start_now = r.budget.settings.period.window(now).0;
                let (start, reserved) = if start_now == r.period_start {
                    (r.period_start, r.amount)
                } else {
                    (start_now, 0)
                };
                let r = store.settle(&r.key, start, reserved, cost, r.ttl).await;
                if let Err(e) = r {
                    self.store.failed(&e);
                }
            }
            if tokens > 0 {
                for (key, rate) in &self.tokens {
                    if let Err(e) = store.gcra_charge(key, *rate, tokens).await {
                        self.store.failed(&e);
                    }
                }
            }
            for key in &self.entered {
                if let Err(e) = store.exit(key).await {
                    self.store.failed(&e);
                }
            }
        });
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
        let now = unix_now();
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
            let now = unix_now();
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

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Governance {
    /// Whether any limit or budget could apply (if not, requests skip admission entirely).
    pub fn is_empty(&self) -> bool {
        self.budgets.is_empty() && self.key_limits.is_empty() && self.team_limits.is_empty()
    }

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
        match self.admit_shared(shared, who, estimate_nanos).await {
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
    async fn admit_shared(
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
            entered: Vec::new(),
            tokens: Vec::new(),
        };
        let subjects = [
            who.and_then(|i| {
                self.key_limits
                    .get(&i.name)
                    .map(|l| (l, format!("key:{}", i.name)))
            }),
            who.and_then(|i| i.team.as_deref())
                .and_then(|t| self.team_limits.get(t).map(|l| (l, format!("team:{t}")))),
        ];
        for (limiter, subject) in subjects.into_iter().flatten() {
            let first = adm.headers.is_empty();
            let refuse = |limit: &'static str, ns: u64| Refusal::RateLimited {
                limit,
                subject: subject.clone(),
                retry_after_secs: ns.div_ceil(1_000_000_000).max(1),
            };
            if let Some(rate) = limiter.limits.requests_per_minute {
                let o = store
                    .gcra(&format!("{subject}:rpm"), rate, 1, false)
                    .await?;
                if !o.allowed {
                    adm.shared = Some(hold);
                    return Ok(Err(refuse("requests_per_minute", o.retry_after_ns)));
                }
                if first {
                    adm.headers.requests =
                        Limiter::report(&limiter.requests_limit, o.remaining, o.reset_ns);
                }
            }
            if let Some(rate) = limiter.limits.tokens_per_minute {
                let key = format!("{subject}:tpm");
                let o = store.gcra(&key, rate, 1, true).await?;
                if !o.allowed {
                    adm.shared = Some(hold);
                    return Ok(Err(refuse("tokens_per_minute", o.retry_after_ns)));
                }
                if first {
                    adm.headers.tokens =
                        Limiter::report(&limiter.tokens_limit, o.remaining, o.reset_ns);
                }
                hold.tokens.push((key, rate));
            }
            if let Some(limit) = limiter.limits.concurrency {
                if !store.enter(&subject, limit).await? {
                    adm.shared = Some(hold);
                    return Ok(Err(refuse("concurrency", 1_000_000_000)));
                }
                hold.entered.push(subject.clone());
            }
        }
        let now = unix_now();
        for b in self.budgets.iter().filter(|b| b.applies_to(who)) {
            let (key, start, ttl) = shared_budget_key(b, now);
            let mut amount = estimate_nanos;
            let mut outcome = store
                .reserve(&key, start, b.account.limit, amount, ttl)
                .await;
            // A cutoff budget lets the request start with what is left (retried if another
            // gateway took it meanwhile).
            for _ in 0..3 {
                match outcome {
                    Ok(Err(committed)) if b.settings.cutoff && committed < b.account.limit => {
                        amount = b.account.limit - committed;
                        outcome = store
                            .reserve(&key, start, b.account.limit, amount, ttl)
                            .await;
                    }
                    _ => break,
                }
            }
            match outcome {
                Ok(Ok(committed)) => {
                    if b.settings.cutoff {
                        adm.cutoff_nanos = Some(adm.cutoff_nanos.unwrap_or(u64::MAX).min(amount));
                    }
                    b.alert(committed, false, now);
                    adm.prefer_cheapest |= committed >= b.account.soft;
                    b.remaining.set(budget::nanos_to_usd(
                        b.account.limit.saturating_sub(committed),
                    ));
                    b.over_soft.set(i64::from(committed >= b.account.soft));
                    hold.budgets.push(SharedReservation {
                        budget: b.clone(),
                        key,
                        period_start: start,
                        amount,
                        ttl,
                    });
                }
                Ok(Err(committed)) => {
                    b.alert(committed, true, now);
                    adm.shared = Some(hold);
                    return Ok(Err(Refusal::BudgetExceeded {
                        scope: b.settings.scope.to_string(),
                        limit_usd: b.settings.limit_usd,
                        resets_at: b.settings.period.window(now).1,
                    }));
                }
                Err(e) => {
                    adm.shared = Some(hold);
                    return Err(e);
                }
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
            who.and_then(|i| {
                self.key_limits
                    .get(&i.name)
                    .map(|l| (l, "key", i.name.as_str()))
            }),
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
        let now = unix_now();
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

    /// Whether any budget is scoped to a provider.
    pub fn has_provider_budgets(&self) -> bool {
        self.provider_budgets
    }

    fn provider_budgets_list(&self) -> Vec<Arc<Budget>> {
        self.budgets
            .iter()
            .filter(|b| matches!(b.settings.scope, BudgetScope::Provider(_)))
            .cloned()
            .collect()
    }

    /// Whether `provider`'s budget leaves room for `estimate_nanos` (a deployment on a provider
    /// whose budget is spent is skipped like an unavailable one).
    pub fn provider_allows(&self, provider: &str, estimate_nanos: u64) -> bool {
        if !self.provider_budgets {
            return true;
        }
        let now = unix_now();
        self.budgets.iter().all(|b| match &b.settings.scope {
            BudgetScope::Provider(p) if p == provider => {
                b.account.committed(now).saturating_add(estimate_nanos) <= b.account.limit
            }
            _ => true,
        })
    }
}

/// A budget's key in the shared store: (key, period start, expiry seconds).
fn shared_budget_key(b: &Budget, now: i64) -> (String, i64, Option<u64>) {
    let (start, end) = b.settings.period.window(now);
    (
        format!("{}:{}", b.settings.scope, b.settings.period.name()),
        start,
        end.map(|e| (e - now).max(0) as u64 + 86_400),
    )
}

/// The shared (Redis) store: connected on first use from the request path's runtime, and
/// reconnected by the client while Redis is away.
pub struct Shared {
    settings: RedisSettings,
    store: tokio::sync::OnceCell<RedisStore>,
    /// The UTC day (days since the epoch) budgets were last seeded in; periods start on day
    /// boundaries, so seeding once a day covers every new period.
    seeded_day: std::sync::atomic::AtomicI64,
    up: IntGauge,
    errors: prometheus::IntCounter,
    last_warning: std::sync::atomic::AtomicI64,
}

impl Shared {
    async fn store(&self) -> Result<&RedisStore, RedisStoreError> {
        self.store
            .get_or_try_init(|| RedisStore::connect(&self.settings.url, "switchyard:"))
            .await
    }

    /// Seeds budget periods Redis does not know yet with this node's ledger totals (Redis keeps
    /// the larger truth once set: seeding never overwrites).
    async fn seed(&self, store: &RedisStore, gov: &Governance) {
        let now = unix_now();
        let day = now.div_euclid(86_400) + 1;
        if self
            .seeded_day
            .swap(day, std::sync::atomic::Ordering::AcqRel)
            == day
        {
            return;
        }
        for b in &gov.budgets {
            let (key, start, ttl) = shared_budget_key(b, now);
            if let Err(e) = store.seed(&key, start, b.account.spent(now), ttl).await {
                self.failed(&e);
                self.seeded_day
                    .store(0, std::sync::atomic::Ordering::Release);
            }
        }
    }

    fn failed(&self, e: &RedisStoreError) {
        self.errors.inc();
        self.up.set(0);
        // Redis may come back empty (restarted without persistence): seed again once it answers.
        self.seeded_day
            .store(0, std::sync::atomic::Ordering::Release);
        let now = unix_now();
        let last = self.last_warning.load(std::sync::atomic::Ordering::Relaxed);
        if now - last >= 10 {
            self.last_warning
                .store(now, std::sync::atomic::Ordering::Relaxed);
            log::warn!(
                "shared store unavailable ({e}); {}",
                if self.settings.fail_closed {
                    "refusing requests that need it (fail_closed)"
                } else {
                    "enforcing limits and budgets on this node alone (fail_open)"
                }
            );
        }
    }
}

/// Prometheus families for spend, budgets and refusals.
struct SpendMetrics {
    spend_usd: CounterVec,
    tokens: IntCounterVec,
    remaining: GaugeVec,
    over_soft: IntGaugeVec,
    refused: IntCounterVec,
    ledger_pending: IntGauge,
    store_up: IntGauge,
    store_errors: prometheus::IntCounter,
}

impl SpendMetrics {
    fn new(metrics: &Metrics) -> Self {
        let m = SpendMetrics {
            spend_usd: must(CounterVec::new(
                Opts::new(
                    "switchyard_spend_usd_total",
                    "Spend in USD by caller team, public model and provider",
                ),
                &["team", "model", "provider"],
            )),
            tokens: must(IntCounterVec::new(
                Opts::new(
                    "switchyard_spend_tokens_total",
                    "Tokens by caller team, public model, provider and direction",
                ),
                &["team", "model", "provider", "direction"],
            )),
            remaining: must(GaugeVec::new(
                Opts::new(
                    "switchyard_budget_remaining_usd",
                    "What a budget has left in its current period (limit minus spent and reserved)",
                ),
                &["scope", "period"],
            )),
            over_soft: must(IntGaugeVec::new(
                Opts::new(
                    "switchyard_budget_over_soft_ratio",
                    "1 while a budget is past its soft ratio (routing prefers the cheapest deployment)",
                ),
                &["scope", "period"],
            )),
            refused: must(IntCounterVec::new(
                Opts::new(
                    "switchyard_refused_total",
                    "Requests refused by a rate limit or a budget",
                ),
                &["reason", "limit"],
            )),
            ledger_pending: must(IntGauge::new(
                "switchyard_ledger_pending_rows",
                "Spend-ledger rows queued but not yet committed",
            )),
            store_up: must(IntGauge::new(
                "switchyard_store_up",
                "1 while the shared (Redis) store answers; 0 after a failed call (always 1 without one)",
            )),
            store_errors: must(prometheus::IntCounter::new(
                "switchyard_store_errors_total",
                "Failed calls to the shared (Redis) store",
            )),
        };
        m.store_up.set(1);
        for (reason, limit) in [
            ("rate_limit", "requests_per_minute"),
            ("rate_limit", "tokens_per_minute"),
            ("rate_limit", "concurrency"),
            ("budget", "budget"),
            ("store_unavailable", "store"),
        ] {
            m.refused.with_label_values(&[reason, limit]);
        }
        for c in [
            Box::new(m.spend_usd.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.tokens.clone()),
            Box::new(m.remaining.clone()),
            Box::new(m.over_soft.clone()),
            Box::new(m.refused.clone()),
            Box::new(m.ledger_pending.clone()),
            Box::new(m.store_up.clone()),
            Box::new(m.store_errors.clone()),
        ] {
            metrics.register(c);
        }
        m
    }
}

fn must<T>(r: prometheus::Result<T>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("invalid metric definition: {e}"),
    }
}

/// Process-wide spend bookkeeping: the ledger and the live governance.
pub struct Spend {
    /// The spend ledger; `None` without a `store.path` (nothing is recorded, budgets start from
    /// zero at each start, and the usage API says so).
    pub ledger: Option<Ledger>,
    notifier: Arc<Notifier>,
    live: ArcSwap<Governance>,
    metrics: SpendMetrics,
    pub strict: bool,
    /// The shared store, when `store.kind` is `redis`.
    pub shared: Option<Arc<Shared>>,
}

impl Spend {
    /// Opens the ledger and builds the governance, rebuilding budget totals from the ledger.
    pub fn start(cfg: &Config, metrics: &Metrics) -> Result<Spend, LedgerError> {
        let m = SpendMetrics::new(metrics);
        let ledger = match cfg.store.sqlite_path.as_deref() {
            Some(path) => Some(Ledger::open(
                Some(path),
                cfg.store.flush_interval,
                cfg.store.strict_durability,
                m.ledger_pending.clone(),
            )?),
            None => None,
        };
        let notifier = Arc::new(Notifier::new());
        let gov = build(cfg, None, ledger.as_ref(), &m, &notifier);
        let shared = cfg.store.redis.clone().map(|settings| {
            Arc::new(Shared {
                settings,
                store: tokio::sync::OnceCell::new(),
                seeded_day: Default::default(),
                up: m.store_up.clone(),
                errors: m.store_errors.clone(),
                last_warning: Default::default(),
            })
        });
        Ok(Spend {
            ledger,
            notifier,
            live: ArcSwap::from_pointee(gov),
            metrics: m,
            strict: cfg.store.strict_durability,
            shared,
        })
    }

    /// Swaps in the governance of a reloaded config (accounts and limiters carried over).
    pub fn reload(&self, cfg: &Config) {
        let old = self.live.load_full();
        let gov = build(
            cfg,
            Some(&old),
            self.ledger.as_ref(),
            &self.metrics,
            &self.notifier,
        );
        self.live.store(Arc::new(gov));
    }

    pub fn governance(&self) -> Arc<Governance> {
        self.live.load_full()
    }

    /// Counts a refusal.
    pub fn refused(&self, r: &Refusal) {
        let (reason, limit) = match r {
            Refusal::RateLimited { limit, .. } => ("rate_limit", *limit),
            Refusal::BudgetExceeded { .. } => ("budget", "budget"),
            Refusal::StoreUnavailable => ("store_unavailable", "store"),
        };
        self.metrics
            .refused
            .with_label_values(&[reason, limit])
            .inc();
    }

    /// Accounts for a finished request: settles its admission, counts spend metrics and (when
    /// there is a ledger and the row was not written already) queues its ledger row. Builds the
    /// row — a handful of string copies — only when a ledger will keep it.
    pub fn finish(&self, ctx: &mut crate::context::RequestCtx) {
        // Taken out so the accounting can borrow the context while the admission settles.
        let mut admission = ctx.admission.take();
        let acct = accounting(ctx);
        let (cost, tokens) = (acct.cost_nanos, acct.tokens_in + acct.tokens_out);
        if let (Some(m), Some(p)) = (ctx.model.as_ref(), acct.provider) {
            let team = ctx
                .identity
                .as_ref()
                .and_then(|i| i.team.as_deref())
                .unwrap_or("");
            self.count(team, &m.config.name, p, &acct);
        }
        if let Some(a) = admission.as_mut() {
            a.settle(cost, tokens, acct.provider, now_ns());
        }
        drop(admission);
        if !ctx.ledger_recorded {
            if let Some(ledger) = &self.ledger {
                ledger.record(row_with(ctx, &acct));
            }
            ctx.ledger_recorded = true;
        }
    }

    /// Commits the ledger's queued rows (graceful shutdown); gives up after `limit`.
    pub async fn flush(&self, limit: std::time::Duration) -> bool {
        match &self.ledger {
            None => true,
            Some(l) => matches!(tokio::time::timeout(limit, l.flush()).await, Ok(Ok(()))),
        }
    }

    /// Records a finished request and waits until its row is committed (strict durability).
    pub async fn record_durable(&self, row: LedgerRow) -> Result<(), LedgerError> {
        match &self.ledger {
            Some(l) => l.record_durable(row).await,
            None => Ok(()),
        }
    }

    /// Spend metrics for one request. Handles are cached per thread by (team, model, provider),
    /// so the registry's label map (a lock shared by all requests) is read once per combination
    /// per thread, not per request.
    fn count(&self, team: &str, model: &str, provider: &str, acct: &Accounting<'_>) {
        struct Handles {
            labels: (String, String, String),
            spend: prometheus::Counter,
            input: prometheus::IntCounter,
            output: prometheus::IntCounter,
        }
        thread_local! {
            static CACHE: std::cell::RefCell<HashMap<u64, Handles>> =
                std::cell::RefCell::new(HashMap::new());
        }
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (team, model, provider).hash(&mut h);
        let key = h.finish();
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            let hit = c.get(&key).is_some_and(|h| {
                h.labels.0 == team && h.labels.1 == model && h.labels.2 == provider
            });
            if !hit {
                if c.len() > 10_000 {
                    c.clear();
                }
                c.insert(
                    key,
                    Handles {
                        labels: (team.to_string(), model.to_string(), provider.to_string()),
                        spend: self
                            .metrics
                            .spend_usd
                            .with_label_values(&[team, model, provider]),
                        input: self
                            .metrics
                            .tokens
                            .with_label_values(&[team, model, provider, "input"]),
                        output: self
                            .metrics
                            .tokens
                            .with_label_values(&[team, model, provider, "output"]),
                    },
                );
            }
            if let Some(h) = c.get(&key) {
                h.spend.inc_by(budget::nanos_to_usd(acct.cost_nanos));
                h.input.inc_by(acct.tokens_in);
                h.output.inc_by(acct.tokens_out);
            }
        });
    }
}

fn build(
    cfg: &Config,
    old: Option<&Governance>,
    ledger: Option<&Ledger>,
    m: &SpendMetrics,
    notifier: &Arc<Notifier>,
) -> Governance {
    let now = unix_now();
    let reader = ledger.and_then(|l| l.reader().map_err(|e| log::error!("{e}")).ok());
    let budgets: Vec<Arc<Budget>> = cfg
        .budgets
        .iter()
        .map(|s| {
            let limit = budget::usd_to_nanos(s.limit_usd);
            let carried = old.and_then(|g| {
                g.budgets
                    .iter()
                    .find(|b| b.settings.scope == s.scope && b.settings.period == s.period)
            });
            let spent = match carried {
                Some(b) => b.account.spent(now),
                None => {
                    let since_ms = s.period.window(now).0 * 1000;
                    let col = match &s.scope {
                        BudgetScope::Global => ScopeColumn::All,
                        BudgetScope::Team(t) => ScopeColumn::Team(t),
                        BudgetScope::Project(p) => ScopeColumn::Project(p),
                        BudgetScope::Key(k) => ScopeColumn::Key(k),
                        BudgetScope::Provider(p) => ScopeColumn::Provider(p),
                    };
                    reader
                        .as_ref()
                        .and_then(|c| crate::ledger::spent_since(c, col, since_ms).ok())
                        .unwrap_or(0)
                }
            };
            let account = match carried {
                Some(b) if b.account.limit == limit && b.settings.soft_ratio == s.soft_ratio => {
                    b.account.clone()
                }
                _ => Arc::new(BudgetAccount::new(
                    limit,
                    s.soft_ratio,
                    s.period,
                    spent,
                    now,
                )),
            };
            let labels = [s.scope.to_string(), s.period.name().to_string()];
            let b = Budget {
                settings: s.clone(),
                alerts: carried.map(|b| b.alerts.clone()).unwrap_or_default(),
                notifier: notifier.clone(),
                account,
                remaining: m.remaining.with_label_values(&[&labels[0], &labels[1]]),
                over_soft: m.over_soft.with_label_values(&[&labels[0], &labels[1]]),
            };
            b.publish(now);
            Arc::new(b)
        })
        .collect();
    let carry = |old: Option<&HashMap<String, Arc<Limiter>>>, name: &str, l: &RateLimits| {
        old.and_then(|o| o.get(name))
            .filter(|x| x.limits == *l)
            .cloned()
            .unwrap_or_else(|| Arc::new(Limiter::new(*l)))
    };
    let key_limits = cfg
        .key_limits
        .iter()
        .filter(|(_, l)| !l.is_empty())
        .map(|(k, l)| (k.clone(), carry(old.map(|g| &g.key_limits), k, l)))
        .collect();
    let team_limits = cfg
        .team_limits
        .iter()
        .filter(|(_, l)| !l.is_empty())
        .map(|(t, l)| (t.clone(), carry(old.map(|g| &g.team_limits), t, l)))
        .collect();
    Governance {
        provider_budgets: budgets
            .iter()
            .any(|b| matches!(b.settings.scope, BudgetScope::Provider(_))),
        budgets,
        key_limits,
        team_limits,
    }
}

/// Nanoseconds on the process's monotonic clock (for rate limits).
pub fn now_ns() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos() as u64
}

/// The most a request may cost on one deployment (nano-dollars), estimated as in
/// [`max_cost_nanos`].
pub fn deployment_cost_nanos(
    model: &crate::state::RoutedModel,
    dep: &crate::state::RoutedDeployment,
    body_bytes: usize,
    max_tokens: Option<u64>,
) -> u64 {
    let spec = dep.spec(model);
    let prompt = (body_bytes / 4) as u64 + 1;
    let completion = max_tokens
        .or(spec.max_tokens)
        .unwrap_or(u64::from(crate::translate::FALLBACK_MAX_TOKENS));
    let usage = switchyard_adapters::openai::Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
        ..Default::default()
    };
    budget::usd_to_nanos(crate::cost::cost_usd(&spec.price, &usage))
}

/// The most a request may cost on any deployment of its model (nano-dollars): the prompt
/// estimated from the body size (≈ 4 bytes per token, an upper estimate for JSON) plus the
/// caller's max tokens — or the deployment's default, or 4096 — at the output price.
pub fn max_cost_nanos(
    model: &crate::state::RoutedModel,
    body_bytes: usize,
    max_tokens: Option<u64>,
) -> u64 {
    model
        .deployments
        .iter()
        .map(|d| deployment_cost_nanos(model, d, body_bytes, max_tokens))
        .max()
        .unwrap_or(0)
}

/// Ledger tags: the string values of the request's `metadata` object and the `k=v` pairs of an
/// `x-switchyard-tags` header, as one JSON object (`None` when there are none).
pub fn tags(metadata: Option<&str>, header: Option<&str>) -> Option<String> {
    let mut map = serde_json::Map::new();
    if let Some(Ok(serde_json::Value::Object(m))) =
        metadata.map(serde_json::from_str::<serde_json::Value>)
    {
        for (k, v) in m {
            if let serde_json::Value::String(s) = v {
                map.insert(k, serde_json::Value::String(s));
            }
        }
    }
    for pair in header.unwrap_or("").split(',') {
        if let Some((k, v)) = pair.split_once('=') {
            let (k, v) = (k.trim(), v.trim());
            if !k.is_empty() {
                map.insert(k.to_string(), serde_json::Value::String(v.to_string()));
            }
        }
    }
    if map.is_empty() || map.len() > 64 {
        return None;
    }
    serde_json::to_string(&map).ok()
}

/// What a request used and cost, without allocating.
pub struct Accounting<'a> {
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub tokens_cached: u64,
    pub cost_nanos: u64,
    pub estimated: bool,
    /// The serving provider's name.
    pub provider: Option<&'a str>,
}

/// The usage and cost of a finished (or finishing) request. When a deployment served but reported
/// no usage (a cut stream, a provider without usage), tokens are estimated — the prompt from the
/// body size, the completion from the events relayed — and `estimated` says so.
pub fn accounting(ctx: &crate::context::RequestCtx) -> Accounting<'_> {
    let served = match (&ctx.model, ctx.served) {
        (Some(m), Some(i)) => m.deployments.get(i).map(|d| (m, d)),
        _ => None,
    };
    let (usage, estimated) = match (ctx.usage, served) {
        (Some(u), _) => (Some(u), false),
        (None, Some(_)) => {
            let prompt = (ctx.body_bytes / 4) as u64;
            let completion = ctx.streamed_events;
            (
                Some(switchyard_adapters::openai::Usage {
                    prompt_tokens: prompt,
                    completion_tokens: completion,
                    total_tokens: prompt + completion,
                    ..Default::default()
                }),
                true,
            )
        }
        (None, None) => (None, false),
    };
    let cost_nanos = match (served, usage) {
        (Some((m, d)), Some(u)) => {
            budget::usd_to_nanos(crate::cost::cost_usd(&d.spec(m).price, &u))
        }
        _ => 0,
    };
    Accounting {
        tokens_in: usage.map(|u| u.prompt_tokens).unwrap_or(0),
        tokens_out: usage.map(|u| u.completion_tokens).unwrap_or(0),
        tokens_cached: usage.map(|u| u.cached_tokens()).unwrap_or(0),
        cost_nanos,
        estimated,
        provider: served.map(|(_, d)| d.provider.name()),
    }
}

/// The ledger row of a finished (or finishing) request (see [`accounting`]).
pub fn row_for(ctx: &crate::context::RequestCtx) -> LedgerRow {
    row_with(ctx, &accounting(ctx))
}

/// The ledger row of a request whose accounting is already worked out.
fn row_with(ctx: &crate::context::RequestCtx, acct: &Accounting<'_>) -> LedgerRow {
    let served = match (&ctx.model, ctx.served) {
        (Some(m), Some(i)) => m.deployments.get(i).map(|d| (m, d)),
        _ => None,
    };
    let who = ctx.identity.as_ref();
    LedgerRow::new(
        &RowText {
            request_id: &ctx.request_id,
            key: who.map(|i| i.name.as_str()),
            team: who.and_then(|i| i.team.as_deref()),
            project: who.and_then(|i| i.project.as_deref()),
            user: who.and_then(|i| i.user.as_deref()),
            model: ctx.model.as_ref().map(|m| m.config.name.as_str()),
            provider: served.map(|(_, d)| d.provider.name()),
            deployment: served.map(|(m, d)| d.spec(m).model.as_str()),
            tags: ctx.tags.as_deref(),
        },
        RowNumbers {
            ts_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
            tokens_in: acct.tokens_in,
            tokens_out: acct.tokens_out,
            tokens_cached: acct.tokens_cached,
            cost_nanos: acct.cost_nanos,
            estimated: acct.estimated,
            status: ctx.status,
        },
    )
}
