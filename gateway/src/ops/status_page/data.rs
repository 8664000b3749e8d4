//! `GET /admin/status`: the one JSON document the status page draws, assembled from what the
//! admin API already computes (the full health view with circuits per deployment, each
//! deployment's reputation score as `/admin/routing` shows it, the budgets, the spend ledger,
//! the cache and guardrail counters when those are configured) plus the pulse ring. Read-only;
//! runs on the admin listener only.

use crate::ops::admin::AdminApp;
use serde_json::{json, Value};

/// How many keys "top keys by spend today" lists.
const TOP_KEYS: usize = 8;

impl AdminApp {
    /// The status document (see `docs/admin-api.md`).
    pub(crate) async fn status_json(&self) -> Value {
        let snapshot = self.live.load();
        let (_, health) =
            crate::proxy::control::health_body(&snapshot, crate::proxy::control::HealthView::Full);
        let health: Value = serde_json::from_slice(&health).unwrap_or(Value::Null);
        let mut providers = health.get("providers").cloned().unwrap_or(json!([]));
        let mut local_pools = Vec::new();
        if let Some(list) = providers.as_array_mut() {
            for p in list {
                if p.get("kind").and_then(Value::as_str) == Some("local") {
                    let name = p.get("name").and_then(Value::as_str).unwrap_or_default();
                    let queue = self.metrics.local_queue(name);
                    local_pools.push(json!({"provider": name, "queue": queue}));
                    p["queue"] = Value::from(queue);
                }
            }
        }
        let mut models = health.get("models").cloned().unwrap_or(json!([]));
        add_scores(
            &mut models,
            &crate::routing::reputation::admin_view(&snapshot.state),
        );
        let config = &snapshot.state.config;
        let cache = config.cache.enabled.then(|| {
            let (hits, misses) = (
                self.metrics.cache_hits.get(),
                self.metrics.cache_misses.get(),
            );
            json!({
                "hits": hits,
                "misses": misses,
                "hit_rate": (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64),
                "saved_usd": self.metrics.cache_saved_usd.get(),
            })
        });
        let guardrails = (!config.guardrails.is_empty()).then(|| {
            self.metrics
                .guardrail_counts()
                .into_iter()
                .map(|(guardrail, action, phase, count)| {
                    json!({"guardrail": guardrail, "action": action, "phase": phase, "count": count})
                })
                .collect::<Vec<_>>()
        });
        let now = crate::clock::unix_secs();
        json!({
            "generated_at": crate::clock::rfc3339(now),
            "generated_unix": now,
            "version": env!("CARGO_PKG_VERSION"),
            "config_generation": snapshot.generation,
            "status": health.get("status").cloned().unwrap_or(Value::Null),
            "providers": providers,
            "models": models,
            "cache": cache,
            "guardrails": guardrails,
            "budgets": self.budget_list().await,
            "traffic": self.metrics.pulse.series(now),
            "local_pools": local_pools,
            "top_keys_today": self.top_keys_today(now as i64),
            "last_errors": self.metrics.pulse.last_errors(),
            "active_requests": self.metrics.active_requests.get(),
        })
    }

    /// Keys by spend since midnight UTC, most first; `null` without a spend ledger.
    fn top_keys_today(&self, now: i64) -> Value {
        use crate::governance::ledger::GroupBy;
        let Some(ledger) = &self.spend.ledger else {
            return Value::Null;
        };
        let (day_start, _) = switchyard_filters::budget::Period::Daily.window(now);
        let rows = ledger
            .usage(day_start * 1000, (now + 1) * 1000, Some(GroupBy::Key))
            .ok();
        let Some(mut rows) = rows else {
            return Value::Null;
        };
        rows.sort_by_key(|r| std::cmp::Reverse(r.cost_nanos));
        rows.iter()
            .take(TOP_KEYS)
            .map(|t| {
                json!({
                    "key": t.group,
                    "requests": t.requests,
                    "cost_usd": switchyard_filters::budget::nanos_to_usd(t.cost_nanos),
                })
            })
            .collect()
    }
}

/// Puts each deployment's reputation `score` (from `/admin/routing`'s view) into the health
/// view's models, matched by model name, provider and upstream model.
fn add_scores(models: &mut Value, routing: &Value) {
    let Some(models) = models.as_array_mut() else {
        return;
    };
    let scored = routing["models"].as_array().map_or(&[][..], Vec::as_slice);
    for m in models {
        let Some(r) = scored.iter().find(|r| r["name"] == m["name"]) else {
            continue;
        };
        let Some(deps) = m.get_mut("deployments").and_then(Value::as_array_mut) else {
            continue;
        };
        for d in deps {
            let score = r["deployments"].as_array().and_then(|list| {
                list.iter()
                    .find(|x| x["provider"] == d["provider"] && x["model"] == d["model"])
                    .map(|x| x["score"].clone())
            });
            if let Some(s) = score {
                d["score"] = s;
            }
        }
    }
}
