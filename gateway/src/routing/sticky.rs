//! Sticky splits (`models[].sticky: user | key | header:<name>`): a caller is kept on one
//! deployment while that deployment is healthy, by weighted rendezvous hashing over the
//! deployments' weights — so a weighted split becomes a stable A/B assignment, and when a
//! deployment fails only its own callers move. Owns the caller's key and the pick; the rest of the
//! plan's order is `router.rs`'s.

use crate::config::Sticky;
use crate::routing::state::{RoutedDeployment, RoutedModel};
use std::hash::{Hash, Hasher};
use switchyard_filters::auth::Identity;

/// The text naming the caller for `sticky`, when the request carries one.
pub fn caller_key(
    sticky: &Sticky,
    identity: Option<&Identity>,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Option<String> {
    match sticky {
        Sticky::Key => identity.map(|who| who.name.clone()),
        Sticky::Header(name) => headers
            .get(name.as_str())
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        Sticky::User => identity
            .and_then(|who| who.user.clone())
            .or_else(|| body_user(body)),
    }
}

/// The body's `user` (OpenAI) or `metadata.user_id` (Anthropic).
fn body_user(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Meta {
        user_id: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Fields {
        user: Option<String>,
        metadata: Option<Meta>,
    }
    let f: Fields = serde_json::from_slice(body).ok()?;
    f.user.or(f.metadata.and_then(|m| m.user_id))
}

/// Position in `order` of the deployment `key` sticks to: the highest `weight / -ln(u)` where
/// `u` is the key's hash with the deployment, uniform in (0, 1) — each deployment wins with
/// probability ∝ its weight. Only healthy, available deployments compete (all, when none is).
pub fn pick(
    model: &RoutedModel,
    order: &[&RoutedDeployment],
    key: &str,
    now: u64,
) -> Option<usize> {
    let healthy =
        |d: &&RoutedDeployment| d.provider.health.is_healthy() && d.runtime.available(now);
    let any_healthy = order.iter().any(healthy);
    order
        .iter()
        .enumerate()
        .filter(|(_, d)| !any_healthy || healthy(d))
        .map(|(i, d)| {
            let spec = d.spec(model);
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (key, spec.provider.name.as_str(), spec.model.as_str()).hash(&mut h);
            let u = ((h.finish() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            (i, f64::from(spec.weight.max(1)) / -u.ln())
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
}
