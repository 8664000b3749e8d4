//! Control endpoints answered from the live snapshot: `GET /v1/health` (providers, deployments
//! with circuit state, budgets) as one caller may see it, and the full view for the admin
//! listener's `GET /admin/health`. `GET /v1/models` is pre-rendered in the routing state.

use crate::routing::state::ProviderHandle;
use crate::snapshot::Snapshot;
use bytes::Bytes;
use std::sync::atomic::Ordering;
use switchyard_filters::auth::Identity;

/// Who is looking at the health document, which decides how much of it they see.
#[derive(Clone, Copy)]
pub enum HealthView<'a> {
    /// Everything: the admin listener, or a gateway without an `auth` section (open to all).
    Full,
    /// An authenticated caller: the models it may use, the providers serving them, and the
    /// budgets that apply to it or to those providers.
    Caller(&'a Identity),
    /// `server.public_health` without a credential: the overall status and version only.
    Public,
}

impl HealthView<'_> {
    fn shows_model(&self, name: &str) -> bool {
        match self {
            HealthView::Full => true,
            HealthView::Caller(who) => who.may_use(name),
            HealthView::Public => false,
        }
    }
}

pub fn health_body(snapshot: &Snapshot, view: HealthView<'_>) -> (u16, Bytes) {
    let state = &snapshot.state;
    let visible_models: Vec<_> = state
        .models()
        .filter(|m| view.shows_model(&m.config.name))
        .collect();
    // The providers behind what the caller may use (all of them for the full and public views,
    // whose overall status is the gateway's).
    let providers_seen: Vec<&ProviderHandle> = state
        .providers
        .iter()
        .filter(|p| {
            matches!(view, HealthView::Full | HealthView::Public)
                || visible_models
                    .iter()
                    .any(|m| m.deployments.iter().any(|d| d.provider.name() == p.name()))
        })
        .map(|p| p.as_ref())
        .collect();
    let providers: Vec<serde_json::Value> = providers_seen
        .iter()
        .map(|p| {
            let h = &p.health;
            let last_error = h.last_error.load();
            serde_json::json!({
                "name": p.name(),
                "kind": p.config.kind.name(),
                "status": if h.is_healthy() { "healthy" } else { "unhealthy" },
                "consecutive_failures": h.consecutive_failures.load(Ordering::Relaxed),
                "last_success_unix_ms": nonzero(h.last_success_ms.load(Ordering::Relaxed))
                    .map(crate::clock::unix_ms_of),
                "last_failure_unix_ms": nonzero(h.last_failure_ms.load(Ordering::Relaxed)),
                "last_error": last_error.as_deref(),
            })
        })
        .collect();
    let healthy = providers_seen
        .iter()
        .filter(|p| p.health.is_healthy())
        .count();
    let (status, overall) = if healthy == providers_seen.len() {
        (200, "ok")
    } else if healthy > 0 {
        (200, "degraded")
    } else {
        (503, "down")
    };
    let now = crate::clock::now_ms();
    if matches!(view, HealthView::Public) {
        let body = serde_json::json!({
            "status": overall,
            "version": env!("CARGO_PKG_VERSION"),
            "replica_id": state.config.server.replica_id,
        });
        return (status, Bytes::from(body.to_string()));
    }
    let models: Vec<serde_json::Value> = visible_models
        .iter()
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
        .filter(|b| match view {
            HealthView::Full => true,
            HealthView::Caller(who) => b.visible_to(who, |p| {
                providers_seen.iter().any(|seen| seen.name() == p)
            }),
            HealthView::Public => false,
        })
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
        "replica_id": state.config.server.replica_id,
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
