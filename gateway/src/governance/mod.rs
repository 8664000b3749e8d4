//! Cost governance at request time: rate limits per key and team, budgets per scope with
//! reservations, and the bookkeeping when a request ends.
//!
//! [`Governance`] is the live policy of one config file (limiters, budget accounts), published in
//! the config [`crate::snapshot::Snapshot`] and rebuilt on every reload, carrying budget accounts
//! and limiters over by identity so a reload neither forgets spend nor resets a limit. One file
//! per job: [`admission`] (the request step that admits or refuses), [`spend`] (the process-wide
//! service that settles, meters and records), [`ledger_row`] (what one request used and cost, as
//! a ledger row), [`estimate`] (the most a request may cost), [`shared`] (the Redis store),
//! [`ledger`] (SQLite). The decisions themselves are `switchyard_filters::{budget, ratelimit}`:
//! lock-free atomics, nothing shared by all requests is locked. Nothing here knows Pingora.
//!
//! Rate limits mean what they say: `requests_per_minute: N` admits `N` requests sent back to
//! back, refuses the next with a `retry-after` (whole seconds, until enough of the oldest
//! admitted requests have left the window), and never admits more than `N` in any rolling 60 s
//! — a sliding window of per-second counts ([`switchyard_filters::ratelimit::SlidingWindow`]
//! here, the same algorithm in a Lua script on Redis's clock with a shared store).
//! `tokens_per_minute` is checked before the request (refused while the window already holds
//! `N` tokens) and charged with the real usage once the answer is in.

pub mod admission;
pub mod cost;
pub mod estimate;
pub mod ledger;
pub mod ledger_query;
pub mod ledger_row;
pub mod redis_store;
pub mod shared;
pub mod spend;

pub use admission::{Admission, Refusal};
pub use shared::Shared;
pub use spend::Spend;

use crate::config::{BudgetScope, BudgetSettings, Config, RateLimits};
use crate::governance::ledger::{Ledger, ScopeColumn};
use crate::proxy::rate_headers::{limit_value, LimitReport};
use http::HeaderValue;
use shared::shared_budget_key;
use spend::SpendMetrics;
use std::collections::HashMap;
use std::sync::Arc;
use switchyard_filters::auth::Identity;
use switchyard_filters::budget::{self, BudgetAccount};
use switchyard_filters::ratelimit::{Concurrency, SlidingWindow};

/// One subject's limits (a key or a team).
pub struct Limiter {
    pub limits: RateLimits,
    requests: Option<SlidingWindow>,
    tokens: Option<SlidingWindow>,
    concurrency: Option<Concurrency>,
    /// `x-ratelimit-limit-requests` / `-tokens` values, made once.
    requests_limit: HeaderValue,
    tokens_limit: HeaderValue,
    /// Its counters' names in the shared store, made once.
    shared: SharedKeys,
}

/// A limiter's counters in the shared store: `{subject}` (concurrency), `{subject}:rpm` and
/// `{subject}:tpm`, where the subject is `key:<name>` or `team:<name>`. Made with the limiter so
/// that an admission through Redis formats no key.
struct SharedKeys {
    subject: Arc<str>,
    requests: Arc<str>,
    tokens: Arc<str>,
}

impl Limiter {
    /// `subject`: `key:<name>` or `team:<name>` (refusals name it; the shared store's keys
    /// start with it).
    fn new(limits: RateLimits, subject: String) -> Self {
        Limiter {
            shared: SharedKeys {
                requests: format!("{subject}:rpm").into(),
                tokens: format!("{subject}:tpm").into(),
                subject: subject.into(),
            },
            limits,
            requests: limits.requests_per_minute.map(SlidingWindow::per_minute),
            tokens: limits.tokens_per_minute.map(SlidingWindow::per_minute),
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
    /// Its name in the shared store, `{scope}:{period}` (the period's start follows), made once.
    shared_name: Arc<str>,
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
        let endpoint = self.settings.alert_webhook.clone();
        if endpoint.is_none() && !crate::ops::events::enabled() {
            return;
        }
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
        for event in events {
            // `events[]`: once per scope and period (the id says which), from the outbox.
            let kind = match event {
                "budget_soft_limit" => "budget.soft",
                _ => "budget.exhausted",
            };
            crate::ops::events::raise(
                kind,
                Some(format!(
                    "{}:{}:{start}",
                    self.settings.scope,
                    self.settings.period.name()
                )),
                serde_json::json!({
                    "scope": self.settings.scope.to_string(),
                    "period": self.settings.period.name(),
                    "limit_usd": self.settings.limit_usd,
                    "committed_usd": budget::nanos_to_usd(committed),
                    "resets_at": end,
                }),
            );
            let (Some(endpoint), Ok(rt)) = (&endpoint, tokio::runtime::Handle::try_current())
            else {
                continue;
            };
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
        let now = crate::clock::unix_secs_i64();
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
    /// Whether a caller may see this budget in `/v1/health`: it applies to the caller, or it is
    /// the budget of a provider serving a model the caller may use (`serves_caller`).
    pub fn visible_to(&self, who: &Identity, serves_caller: impl Fn(&str) -> bool) -> bool {
        match &self.settings.scope {
            BudgetScope::Provider(p) => serves_caller(p),
            _ => self.applies_to(Some(who)),
        }
    }

    fn applies_to(&self, who: Option<&Identity>) -> bool {
        match &self.settings.scope {
            BudgetScope::Global => true,
            BudgetScope::Team(t) => who.and_then(|i| i.team.as_deref()) == Some(t),
            BudgetScope::Project(p) => who.and_then(|i| i.project.as_deref()) == Some(p),
            BudgetScope::Key(k) => who.and_then(Identity::key_name) == Some(k),
            BudgetScope::Provider(_) => false,
        }
    }

    fn publish(&self, now: i64) {
        self.remaining
            .set(budget::nanos_to_usd(self.account.remaining(now)));
        self.over_soft.set(i64::from(self.account.over_soft(now)));
    }
}

/// Limiters by key or team name. Hashed with foldhash (seeded per process), not std's SipHash:
/// every limited request looks one up.
type LimitersByName = HashMap<String, Arc<Limiter>, foldhash::fast::RandomState>;

/// The live policy for one config.
pub struct Governance {
    pub budgets: Vec<Arc<Budget>>,
    key_limits: LimitersByName,
    team_limits: LimitersByName,
    /// Whether any budget has a provider scope (if not, routing skips the per-deployment check).
    provider_budgets: bool,
}

impl Governance {
    /// Whether any limit or budget could apply (if not, requests skip admission entirely).
    pub fn is_empty(&self) -> bool {
        self.budgets.is_empty() && self.key_limits.is_empty() && self.team_limits.is_empty()
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

    /// The limit of the budget scoped to `provider`, if any (for the caller's refusal).
    pub fn provider_budget_limit(&self, provider: &str) -> Option<f64> {
        self.budgets
            .iter()
            .find(|b| matches!(&b.settings.scope, BudgetScope::Provider(n) if n == provider))
            .map(|b| b.settings.limit_usd)
    }

    /// Whether `provider`'s budget leaves room for `estimate_nanos` (a deployment on a provider
    /// whose budget is spent is skipped like an unavailable one).
    pub fn provider_allows(&self, provider: &str, estimate_nanos: u64) -> bool {
        if !self.provider_budgets {
            return true;
        }
        let now = crate::clock::unix_secs_i64();
        self.budgets.iter().all(|b| match &b.settings.scope {
            BudgetScope::Provider(p) if p == provider => {
                b.account.committed(now).saturating_add(estimate_nanos) <= b.account.limit
            }
            _ => true,
        })
    }
}

/// What governance is built from: the config file and the runtime keys' limits and budgets
/// (the admin API's, [`crate::identity::policy`]).
pub struct Sources<'a> {
    pub cfg: &'a Config,
    pub keys: &'a crate::identity::policy::KeyPolicies,
}

fn build(
    src: Sources<'_>,
    old: Option<&Governance>,
    ledger: Option<&Ledger>,
    m: &SpendMetrics,
    notifier: &Arc<Notifier>,
) -> Governance {
    let cfg = src.cfg;
    let now = crate::clock::unix_secs_i64();
    let key_budgets: Vec<BudgetSettings> = src
        .keys
        .iter()
        .filter_map(|(name, p)| p.budget_settings(name))
        .collect();
    let budgets: Vec<Arc<Budget>> = cfg
        .budgets
        .iter()
        .chain(&key_budgets)
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
                    ledger
                        .and_then(|l| {
                            l.spent_since(col, since_ms)
                                .map_err(|e| log::error!("{e}"))
                                .ok()
                        })
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
                shared_name: format!("{}:{}", s.scope, s.period.name()).into(),
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
    let carry = |old: Option<&LimitersByName>, kind: &str, name: &str, l: &RateLimits| {
        old.and_then(|o| o.get(name))
            .filter(|x| x.limits == *l)
            .cloned()
            .unwrap_or_else(|| Arc::new(Limiter::new(*l, format!("{kind}:{name}"))))
    };
    let runtime_limits: Vec<(String, RateLimits)> = src
        .keys
        .iter()
        .map(|(name, p)| (name.clone(), p.rate_limits()))
        .collect();
    let key_limits = cfg
        .key_limits
        .iter()
        .chain(runtime_limits.iter().map(|(k, l)| (k, l)))
        .filter(|(_, l)| !l.is_empty())
        .map(|(k, l)| (k.clone(), carry(old.map(|g| &g.key_limits), "key", k, l)))
        .collect();
    let team_limits = cfg
        .team_limits
        .iter()
        .filter(|(_, l)| !l.is_empty())
        .map(|(t, l)| (t.clone(), carry(old.map(|g| &g.team_limits), "team", t, l)))
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
