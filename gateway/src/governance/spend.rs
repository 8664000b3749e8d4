//! The spend service: lives for the process, owns the [`Ledger`] and the spend metrics, and
//! settles each finished request (its admission released with the real cost, its ledger row
//! queued or — in strict durability — committed before the answer's last bytes). The response
//! steps call it; it never decides whether a request may run.

use super::admission::Refusal;
use super::ledger_row::{accounting, row_with, Accounting};
use super::shared::Shared;
use super::{build, Governance, Notifier};
use crate::config::Config;
use crate::governance::ledger::{Ledger, LedgerError, LedgerRow};
use crate::ops::telemetry::Metrics;
use prometheus::{CounterVec, GaugeVec, IntCounterVec, IntGauge, IntGaugeVec, Opts};
use std::collections::HashMap;
use std::sync::Arc;
use switchyard_filters::budget::{self};

/// Prometheus families for spend, budgets and refusals.
pub(super) struct SpendMetrics {
    pub(super) spend_usd: CounterVec,
    pub(super) tokens: IntCounterVec,
    pub(super) remaining: GaugeVec,
    pub(super) over_soft: IntGaugeVec,
    pub(super) refused: IntCounterVec,
    pub(super) ledger_pending: IntGauge,
    /// Ledger rows waiting in the local spool for PostgreSQL (`store.kind: postgres`).
    pub(super) ledger_spooled: IntGauge,
    pub(super) store_up: IntGauge,
    pub(super) store_errors: prometheus::IntCounter,
}

impl SpendMetrics {
    pub(super) fn new(metrics: &Metrics) -> Self {
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
            ledger_spooled: must(IntGauge::new(
                "switchyard_ledger_spooled_rows",
                "Spend-ledger rows kept in the local spool until PostgreSQL answers again",
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
            Box::new(m.ledger_spooled.clone()),
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
    pub(super) notifier: Arc<Notifier>,
    pub(super) metrics: SpendMetrics,
    pub strict: bool,
    /// The shared store, when `store.kind` is `redis`.
    pub shared: Option<Arc<Shared>>,
}

impl Spend {
    /// Opens the ledger (in `pg`, the fleet's PostgreSQL, when given) and builds the governance,
    /// rebuilding budget totals from the ledger.
    pub fn start(
        cfg: &Config,
        metrics: &Metrics,
        pg: Option<Arc<crate::store::Pg>>,
    ) -> Result<Spend, LedgerError> {
        let m = SpendMetrics::new(metrics);
        let ledger = match (pg, cfg.store.sqlite_path.as_deref()) {
            (Some(pg), spool) => Some(Ledger::open_postgres(
                pg,
                spool,
                cfg.store.flush_interval,
                cfg.store.strict_durability,
                m.ledger_pending.clone(),
                m.ledger_spooled.clone(),
            )?),
            (None, Some(path)) => Some(Ledger::open(
                Some(path),
                cfg.store.flush_interval,
                cfg.store.strict_durability,
                m.ledger_pending.clone(),
            )?),
            (None, None) => None,
        };
        let notifier = Arc::new(Notifier::new());
        let shared = cfg.store.redis.clone().map(|settings| {
            Arc::new(Shared {
                settings,
                store: tokio::sync::OnceCell::new(),
                seeded_day: Default::default(),
                up: m.store_up.clone(),
                errors: m.store_errors.clone(),
                last_warning: Default::default(),
                queue: Default::default(),
            })
        });
        Ok(Spend {
            ledger,
            notifier,
            metrics: m,
            strict: cfg.store.strict_durability,
            shared,
        })
    }

    /// The governance of `cfg`, carrying budget accounts and limiters over from `previous`
    /// (the live one, on a reload) and rebuilding budget totals from the ledger at start.
    pub fn governance_for(
        &self,
        src: super::Sources<'_>,
        previous: Option<&Governance>,
    ) -> Governance {
        build(
            src,
            previous,
            self.ledger.as_ref(),
            &self.metrics,
            &self.notifier,
        )
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
    pub fn finish(&self, ctx: &mut crate::proxy::context::RequestCtx) {
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
            a.settle(cost, tokens, acct.provider, crate::clock::now_ns());
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
    pub(super) fn count(&self, team: &str, model: &str, provider: &str, acct: &Accounting<'_>) {
        struct Handles {
            labels: (String, String, String),
            spend: prometheus::Counter,
            input: prometheus::IntCounter,
            output: prometheus::IntCounter,
        }
        // foldhash, not std's SipHash: ~600 instructions less on every request; the labels are
        // compared on a hit, so a collision costs a refetch, never a wrong counter.
        type Fold = foldhash::fast::FixedState;
        thread_local! {
            static CACHE: std::cell::RefCell<HashMap<u64, Handles, Fold>> =
                std::cell::RefCell::new(HashMap::with_hasher(Fold::default()));
        }
        use std::hash::BuildHasher;
        let key = Fold::default().hash_one((team, model, provider));
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
