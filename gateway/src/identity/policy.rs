//! Limits and a budget for keys made at run time (the admin API's `limits` and `budget` fields
//! on `POST /admin/keys`, `switchyard keys create --rpm N --budget USD --period P`): their shape
//! and checks, and the key store's `key_policies` table that keeps them across restarts.
//! Governance enforces them exactly as `auth.api_keys[].limits` and a `budgets[]` entry with
//! scope `key:NAME` ([`crate::governance`] receives them through [`KeyPolicy::rate_limits`] and
//! [`KeyPolicy::budget_settings`]). It owns the policy and its table only; it never decides a
//! request.

use super::store::{KeyStore, StoreError};
use crate::config::{BudgetScope, BudgetSettings, RateLimits};
use rusqlite::params;
use serde::{Deserialize, Serialize};
use switchyard_filters::budget::Period;

/// A runtime key's rate limits (the names of `auth.api_keys[].limits`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u64>,
}

/// A runtime key's spend limit (as a `budgets[]` entry: `limit` in USD, `period`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyBudget {
    pub limit: f64,
    #[serde(default = "monthly")]
    pub period: String,
}

fn monthly() -> String {
    "monthly".into()
}

/// Everything governance enforces for one runtime key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<KeyLimits>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<KeyBudget>,
}

/// The policies of the runtime keys that are not revoked, by key name.
pub type KeyPolicies = Vec<(String, KeyPolicy)>;

impl KeyPolicy {
    pub fn is_empty(&self) -> bool {
        self.rate_limits().is_empty() && self.budget.is_none()
    }

    /// Refuses what governance could not enforce, naming the field.
    pub fn check(&self) -> Result<(), String> {
        if let Some(l) = &self.limits {
            for (field, v) in [
                ("requests_per_minute", l.requests_per_minute),
                ("tokens_per_minute", l.tokens_per_minute),
                ("concurrency", l.concurrency),
            ] {
                if v == Some(0) {
                    return Err(format!("limits.{field} must be at least 1"));
                }
            }
        }
        if let Some(b) = &self.budget {
            if !(b.limit.is_finite() && b.limit >= 0.0) {
                return Err("budget.limit must be a non-negative amount in USD".into());
            }
            if Period::parse(&b.period).is_none() {
                return Err(format!(
                    "budget.period: expected daily, weekly, monthly or total, not `{}`",
                    b.period
                ));
            }
        }
        Ok(())
    }

    pub fn rate_limits(&self) -> RateLimits {
        let l = self.limits.clone().unwrap_or_default();
        RateLimits {
            requests_per_minute: l.requests_per_minute,
            tokens_per_minute: l.tokens_per_minute,
            concurrency: l.concurrency,
        }
    }

    /// The key's budget as a `budgets[]` entry with scope `key:NAME` (soft ratio 0.8, the
    /// config's default; refused at the limit).
    pub fn budget_settings(&self, name: &str) -> Option<BudgetSettings> {
        let b = self.budget.as_ref()?;
        Some(BudgetSettings {
            scope: BudgetScope::Key(name.to_string()),
            limit_usd: b.limit,
            period: Period::parse(&b.period)?,
            soft_ratio: 0.8,
            alert_webhook: None,
            cutoff: false,
        })
    }
}

pub(super) const TABLE: &str =
    "CREATE TABLE IF NOT EXISTS key_policies (name TEXT PRIMARY KEY, policy TEXT NOT NULL)";

impl KeyStore {
    /// Keeps `policy` for the key `name` (replacing any earlier one).
    pub fn set_policy(&self, name: &str, policy: &KeyPolicy) -> Result<(), StoreError> {
        let text = serde_json::to_string(policy).map_err(|_| StoreError::Corrupt(name.into()))?;
        if let Some(pg) = self.pg() {
            let name = name.to_string();
            pg.run(move |p| async move { crate::store::keys::set_policy(&p, &name, &text).await })?;
            return Ok(());
        }
        let Some(conn) = self.conn()? else {
            return Err(StoreError::Poisoned);
        };
        conn.execute(TABLE, [])?;
        conn.execute(
            "INSERT OR REPLACE INTO key_policies (name, policy) VALUES (?1, ?2)",
            params![name, text],
        )?;
        Ok(())
    }

    /// The policies of the keys that are not revoked.
    pub fn policies(&self) -> Result<KeyPolicies, StoreError> {
        let stored = match self.postgres_policies() {
            Some(rows) => rows?,
            None => match self.conn()? {
                Some(conn) => {
                    conn.execute(TABLE, [])?;
                    load_sqlite(&conn)?
                }
                None => return Err(StoreError::Poisoned),
            },
        };
        let mut out = Vec::new();
        for (name, text) in stored {
            let policy =
                serde_json::from_str(&text).map_err(|_| StoreError::Corrupt(name.clone()))?;
            out.push((name, policy));
        }
        Ok(out)
    }
}

/// The policies of the keys that are not revoked, in an embedded store (or a fleet replica's
/// local copy), as (name, JSON).
pub(super) fn load_sqlite(conn: &rusqlite::Connection) -> rusqlite::Result<Vec<(String, String)>> {
    let mut stmt = conn.prepare(
        "SELECT p.name, p.policy FROM key_policies p JOIN keys k ON k.name = p.name
         WHERE k.revoked = 0 ORDER BY p.name",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_is_checked_and_becomes_limits_and_a_key_budget() {
        let p: KeyPolicy = serde_json::from_str(
            r#"{"limits":{"requests_per_minute":5},"budget":{"limit":0.5,"period":"daily"}}"#,
        )
        .unwrap();
        assert!(p.check().is_ok());
        assert_eq!(p.rate_limits().requests_per_minute, Some(5));
        let b = p.budget_settings("bot").unwrap();
        assert_eq!(b.scope, BudgetScope::Key("bot".into()));
        assert_eq!(b.period, Period::Daily);
        let bad: KeyPolicy =
            serde_json::from_str(r#"{"budget":{"limit":1,"period":"hourly"}}"#).unwrap();
        assert!(bad.check().unwrap_err().starts_with("budget.period"));
        let zero: KeyPolicy = serde_json::from_str(r#"{"limits":{"concurrency":0}}"#).unwrap();
        assert!(zero.check().unwrap_err().contains("limits.concurrency"));
        assert!(KeyPolicy::default().is_empty());
    }
}
