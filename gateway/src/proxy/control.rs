//! Control endpoints answered from the live snapshot: `GET /v1/health` (providers, deployments
//! with circuit state, budgets). `GET /v1/models` is pre-rendered in the routing state.

use crate::snapshot::Snapshot;
use bytes::Bytes;
use std::sync::atomic::Ordering;

pub fn health_body(snapshot: &Snapshot) -> (u16, Bytes) {
    let state = &snapshot.state;
    let providers: Vec<serde_json::Value> = state
        .providers
        .iter()
        .map(|p| {
            let h = &p.health;
            let last_error = h.last_error.load();
            serde_json::json!({
                "name": p.name(),
                "kind": p.config.kind.name(),
                "status": if h.is_healthy() { "healthy" } else { "unhealthy" },
                "consecutive_failures": h.consecutive_failures.load(Ordering::Relaxed),
                "last_success_unix_ms": nonzero(h.last_success_ms.load(Ordering::Relaxed)),
                "last_failure_unix_ms": nonzero(h.last_failure_ms.load(Ordering::Relaxed)),
                "last_error": last_error.as_deref(),
            })
        })
        .collect();
    let healthy = state
        .providers
        .iter()
        .filter(|p| p.health.is_healthy())
        .count();
    let (status, overall) = if healthy == state.providers.len() {
        (200, "ok")
    } else if healthy > 0 {
        (200, "degraded")
    } else {
        (503, "down")
    };
    let now = crate::clock::now_ms();
    let models: Vec<serde_json::Value> = state
        .models()
        .map(|m| {
            serde_json::json!({
                "name": m.config.name,
                "strategy": format!("{:?}", m.config.routing.strategy).to_lowercase(),
                "deployments": m.deployments.iter().map(|d| {
                    let spec = d.spec(m);
                    serde_json::json!({
                        "provider": d.provider.name(),
                        "model": spec.model,
                        "circuit": d.runtime.state(now).label(),
                        "consecutive_failures": d.runtime.consecutive_failures(),
                        "error_rate": (d.runtime.error_rate() * 1000.0).round() / 1000.0,
                        "ewma_ttfb_ms": d.runtime.ewma_ttfb().map(|t| t.as_secs_f64() * 1000.0),
                        "available": d.runtime.available(now),
                    })
                }).collect::<Vec<_>>(),
            })
        })
        .collect();
    let now_s = crate::clock::unix_secs_i64();
    let budgets: Vec<serde_json::Value> = snapshot
        .governance
        .budgets
        .iter()
        .map(|b| {
            serde_json::json!({
                "scope": b.settings.scope.to_string(),
                "period": b.settings.period.name(),
                "limit_usd": b.settings.limit_usd,
                "remaining_usd": switchyard_filters::budget::nanos_to_usd(b.account.remaining(now_s)),
                // Past the soft ratio the router prefers the cheapest deployments.
                "state": if b.account.remaining(now_s) == 0 {
                    "exhausted"
                } else if b.account.over_soft(now_s) {
                    "prefer_cheapest"
                } else {
                    "ok"
                },
            })
        })
        .collect();
    let body = serde_json::json!({
        "status": overall,
        "version": env!("CARGO_PKG_VERSION"),
        "providers": providers,
        "models": models,
        "budgets": budgets,
    });
    (
        status,
        Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
    )
}

fn nonzero(v: u64) -> Option<u64> {
    (v != 0).then_some(v)
}
