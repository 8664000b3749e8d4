//! A model's deployments as pingora-load-balancing `Backend`s, picked by Pingora's own selection
//! algorithms where a strategy needs nothing from the request: `round_robin` and `weighted`.
//!
//! Each deployment is one `Backend` carrying a [`DeploymentSlot`] (its index in the model) in its
//! extensions. A `Backend`'s identity is its address and weight, and a deployment has no address of
//! its own (two deployments of one provider share the provider's host:port), so every deployment
//! gets a unique Unix-socket *name* as its identity — never connected to; the router reaches the
//! deployment through its provider. `round_robin` is Pingora's `Weighted<RoundRobin>` over
//! weight-1 backends, `weighted` the same algorithm over the configured weights (weighted round
//! robin: exact shares, one lock-free counter). Strategies that need the request (cost, budgets,
//! conditional rules on headers or metadata) or live latency (least_latency) are ordered by
//! `router.rs`; Pingora's `BackendSelection::iter` takes only a hash key.
//!
//! Built once per config (reload builds new ones); owns no I/O and no health state.

use std::collections::BTreeSet;
use std::sync::Arc;

use pingora_core::protocols::l4::socket::SocketAddr;
// `selection::RoundRobin` is `Weighted<algorithms::RoundRobin>`: a weighted table walked by one
// atomic counter.
use pingora_load_balancing::selection::{BackendIter, BackendSelection, RoundRobin};
use pingora_load_balancing::Backend;

/// The `Backend` extension naming the deployment it stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeploymentSlot(pub usize);

/// Pingora's selection over a set of deployments.
pub struct DeploymentSelector {
    selection: Arc<RoundRobin>,
}

impl DeploymentSelector {
    /// A selector over `deployments`: (index in the model, weight). `weighted: false` gives every
    /// deployment weight 1 (plain round robin). `None` when the set is empty.
    pub fn new(deployments: &[(usize, u32)], weighted: bool) -> Option<DeploymentSelector> {
        let backends: BTreeSet<Backend> = deployments
            .iter()
            .filter_map(|&(index, weight)| {
                let weight = if weighted { weight as usize } else { 1 };
                backend(index, weight)
            })
            .collect();
        if backends.is_empty() || backends.iter().all(|b| b.weight == 0) {
            return None;
        }
        Some(DeploymentSelector {
            selection: Arc::new(RoundRobin::build(&backends)),
        })
    }

    /// The deployment to try first (its index in the model).
    pub fn pick(&self) -> Option<usize> {
        let mut iter = self.selection.iter(&[]);
        iter.next()
            .and_then(|b| b.ext.get::<DeploymentSlot>())
            .map(|s| s.0)
    }
}

/// The `Backend` for deployment `index`: its identity is a Unix-socket name unique to the
/// deployment (zero-padded so backends sort in deployment order).
fn backend(index: usize, weight: usize) -> Option<Backend> {
    let name = format!("/switchyard/deployment/{index:05}");
    let addr = std::os::unix::net::SocketAddr::from_pathname(name).ok()?;
    let mut b = Backend {
        addr: SocketAddr::Unix(addr),
        weight,
        ext: Default::default(),
    };
    b.ext.insert(DeploymentSlot(index));
    Some(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn shares(sel: &DeploymentSelector, n: usize) -> HashMap<usize, usize> {
        let mut by = HashMap::new();
        for _ in 0..n {
            *by.entry(sel.pick().unwrap_or(usize::MAX)).or_insert(0) += 1;
        }
        by
    }

    #[test]
    fn two_deployments_of_one_provider_stay_two_backends() {
        // Same provider (same host:port upstream), different models: distinct identities.
        let sel = DeploymentSelector::new(&[(0, 1), (1, 1)], false);
        let by = sel.map(|s| shares(&s, 10)).unwrap_or_default();
        assert_eq!(by.get(&0), Some(&5));
        assert_eq!(by.get(&1), Some(&5));
    }

    #[test]
    fn round_robin_cycles_in_deployment_order() {
        let Some(sel) = DeploymentSelector::new(&[(0, 5), (1, 1), (2, 1)], false) else {
            panic!("empty selector")
        };
        let first: Vec<usize> = (0..6).filter_map(|_| sel.pick()).collect();
        // Weights are ignored by round_robin; the counter starts anywhere but cycles 0 → 1 → 2.
        for w in first.windows(2) {
            assert_eq!(w[1], (w[0] + 1) % 3, "{first:?}");
        }
    }

    #[test]
    fn weighted_gives_exact_shares() {
        let Some(sel) = DeploymentSelector::new(&[(0, 3), (1, 1), (2, 0)], true) else {
            panic!("empty selector")
        };
        let by = shares(&sel, 400);
        assert_eq!(by.get(&0), Some(&300));
        assert_eq!(by.get(&1), Some(&100));
        assert_eq!(by.get(&2), None, "weight 0 is never picked first");
        assert!(DeploymentSelector::new(&[], true).is_none());
        assert!(DeploymentSelector::new(&[(0, 0)], true).is_none());
    }
}
