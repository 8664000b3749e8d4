//! The routing plan: which deployments of a model to try, in what order, with what pause.
//!
//! `priority` (the strategy this build has): deployments in `priority` order, healthy providers
//! before ones that failed repeatedly (they stay as a last resort), cycling through the list until
//! `retry.attempts` tries are planned. A deployment tried again waits an exponential backoff with
//! jitter first. The plan is pure data; [`crate::forward`] executes it.

use crate::config::RetryPolicy;
use crate::state::{RoutedDeployment, RoutedModel};
use std::time::Duration;

/// One planned try.
pub struct Step<'a> {
    pub deployment: &'a RoutedDeployment,
    /// Pause before this try (zero on a first visit to a deployment).
    pub backoff: Duration,
}

/// The ordered tries for one request.
pub fn plan(model: &RoutedModel, jitter_seed: u64) -> Vec<Step<'_>> {
    let mut order: Vec<&RoutedDeployment> = model.deployments.iter().collect();
    // Stable: keeps priority order within the healthy and the unhealthy group.
    order.sort_by_key(|d| !d.provider.health.is_healthy());
    let retry = &model.config.routing.retry;
    let n = order.len();
    if n == 0 {
        return Vec::new();
    }
    let mut rng = jitter_seed | 1;
    (0..retry.attempts as usize)
        .map(|i| {
            let round = (i / n) as u32;
            let backoff = if round == 0 {
                Duration::ZERO
            } else {
                rng = xorshift(rng);
                backoff(retry, round, rng)
            };
            Step {
                deployment: order[i % n],
                backoff,
            }
        })
        .collect()
}

/// Exponential backoff for the `round`-th revisit (1-based), with "equal jitter": between half
/// and all of the capped exponential delay.
fn backoff(retry: &RetryPolicy, round: u32, random: u64) -> Duration {
    let exp = retry
        .backoff_base
        .saturating_mul(1u32.checked_shl(round - 1).unwrap_or(u32::MAX));
    let capped = exp.min(retry.backoff_max);
    let half = capped / 2;
    let jitter_fraction = (random % 1000) as u32;
    half + (capped - half) * jitter_fraction / 1000
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{RetryOn, RetryPolicy};

    fn policy(base_ms: u64, max_ms: u64) -> RetryPolicy {
        RetryPolicy {
            attempts: 5,
            backoff_base: Duration::from_millis(base_ms),
            backoff_max: Duration::from_millis(max_ms),
            on: RetryOn {
                connect: true,
                timeout: true,
                too_many_requests: true,
                server_error: true,
            },
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = policy(100, 300);
        for seed in [1u64, 999, 123456789] {
            let b1 = backoff(&p, 1, seed);
            assert!(b1 >= Duration::from_millis(50) && b1 <= Duration::from_millis(100));
            let b2 = backoff(&p, 2, seed);
            assert!(b2 >= Duration::from_millis(100) && b2 <= Duration::from_millis(200));
            let b9 = backoff(&p, 9, seed);
            assert!(b9 >= Duration::from_millis(150) && b9 <= Duration::from_millis(300));
        }
        assert!(backoff(&p, 40, 7) <= Duration::from_millis(300));
    }
}
