//! The shared (Redis) store of a fleet's limits and budgets: connected on first use, reconnected
//! by the client while Redis is away, with the budget keys each replica agrees on.

use super::{Budget, Governance};
use crate::config::RedisSettings;
use crate::governance::redis_store::{RedisStore, RedisStoreError};
use prometheus::IntGauge;

/// A budget's key in the shared store: (key, period start, expiry seconds).
pub(super) fn shared_budget_key(b: &Budget, now: i64) -> (String, i64, Option<u64>) {
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
    pub(super) settings: RedisSettings,
    pub(super) store: tokio::sync::OnceCell<RedisStore>,
    /// The UTC day (days since the epoch) budgets were last seeded in; periods start on day
    /// boundaries, so seeding once a day covers every new period.
    pub(super) seeded_day: std::sync::atomic::AtomicI64,
    pub(super) up: IntGauge,
    pub(super) errors: prometheus::IntCounter,
    pub(super) last_warning: std::sync::atomic::AtomicI64,
}

impl Shared {
    pub(super) async fn store(&self) -> Result<&RedisStore, RedisStoreError> {
        self.store
            .get_or_try_init(|| RedisStore::connect(&self.settings.url, "switchyard:"))
            .await
    }

    /// Seeds budget periods Redis does not know yet with this node's ledger totals (Redis keeps
    /// the larger truth once set: seeding never overwrites).
    pub(super) async fn seed(&self, store: &RedisStore, gov: &Governance) {
        let now = crate::clock::unix_secs_i64();
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

    pub(super) fn failed(&self, e: &RedisStoreError) {
        self.errors.inc();
        self.up.set(0);
        // Redis may come back empty (restarted without persistence): seed again once it answers.
        self.seeded_day
            .store(0, std::sync::atomic::Ordering::Release);
        let now = crate::clock::unix_secs_i64();
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
