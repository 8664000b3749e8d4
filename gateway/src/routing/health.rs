//! Active health checks on pingora-load-balancing: every provider with a `health_check` gets its
//! own `LoadBalancer` (a Pingora background service) whose `ServiceDiscovery` resolves the
//! provider's current address asynchronously and whose `HealthCheck` is the provider's probe
//! (openai kind: an authenticated `GET {base_url}/models`, the cheapest call every
//! OpenAI-compatible server has) at the configured interval. Results feed the same provider health
//! that live traffic updates (passive checks). One balancer per provider, because Pingora's
//! `Backend` is identified by address: two providers on one host must not merge.
//!
//! [`HealthChecker`] itself runs the startup round: with `routing.startup_probe: wait` (the
//! default) every checked provider is probed before the listeners open, and the live routing
//! table is logged.

use crate::config::ProviderKind;
use crate::routing::state::ProviderHandle;
use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::connectors::http::Connector;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use pingora_core::services::ServiceReadyNotifier;
use pingora_load_balancing::discovery::ServiceDiscovery;
use pingora_load_balancing::health_check::HealthCheck;
use pingora_load_balancing::selection::RoundRobin;
use pingora_load_balancing::{Backend, Backends, LoadBalancer};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use switchyard_adapters::providers;

#[derive(Clone)]
pub struct HealthChecker {
    pub live: Arc<crate::snapshot::Live>,
    pub connector: Arc<Connector>,
}

impl HealthChecker {
    /// Probes one provider; `Ok` when it answered 2xx.
    pub async fn probe(&self, p: &ProviderHandle) -> Result<(), String> {
        let (
            ProviderKind::Http {
                dialect,
                endpoint,
                api_key,
                cloud,
                proxy,
                ..
            },
            Some(hc),
        ) = (&p.config.kind, p.config.health_check)
        else {
            return Ok(());
        };
        let mut headers = vec![("accept", "application/json".to_string())];
        let probe = match cloud {
            Some(c) => {
                let Some(path) = c.probe_path() else {
                    return Ok(());
                };
                headers.extend(
                    c.auth_pairs(&endpoint.host_header, &endpoint.path(&path))
                        .await?,
                );
                path
            }
            None => {
                headers.extend(providers::auth_headers(
                    *dialect,
                    api_key.as_ref().map(|k| k.expose()),
                ));
                providers::probe_path(*dialect).to_string()
            }
        };
        let target = crate::identity::http::Target {
            ep: endpoint,
            proxy: proxy.as_deref(),
        };
        let (status, _) = crate::identity::http::call_to(
            &self.connector,
            target,
            "GET",
            &endpoint.path(&probe),
            &headers,
            Bytes::new(),
            hc.timeout,
        )
        .await?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(format!("health check answered {status}"))
        }
    }

    async fn check(&self, p: &ProviderHandle) {
        match self.probe(p).await {
            Ok(()) => p.record_success(crate::clock::now_ms()),
            Err(e) => {
                log::warn!("provider {}: {e}", p.name());
                p.record_failure(&format!("health check: {e}"));
            }
        }
    }

    /// Probes every provider that has a health check once.
    async fn round(&self) {
        let state = self.live.load().state.clone();
        for p in state
            .providers
            .iter()
            .filter(|p| p.config.health_check.is_some())
        {
            self.check(p).await;
        }
    }
}

#[async_trait]
impl BackgroundService for HealthChecker {
    async fn start_with_ready_notifier(
        &self,
        mut shutdown: ShutdownWatch,
        ready: ServiceReadyNotifier,
    ) {
        let wait = self.live.load().state.config.startup_probe_wait;
        if wait {
            self.round().await;
        }
        let state = self.live.load().state.clone();
        for line in crate::routing::table::routing_table(&state.config).lines() {
            log::info!("{line}");
        }
        for p in &state.providers {
            log::info!(
                "provider {} [{}]: {}",
                p.name(),
                p.config.kind.name(),
                if p.config.health_check.is_none() {
                    "no active check (passive only)"
                } else if !wait {
                    "probing in the background"
                } else if p.health.is_healthy() {
                    "healthy"
                } else {
                    "unhealthy"
                }
            );
        }
        ready.notify_ready();
        if !wait {
            self.round().await;
        }
        // Periodic checks are the per-provider load balancers' (see `balancers`).
        let _ = shutdown.changed().await;
    }
}

/// Resolves a provider's current address (the provider may change on reload).
struct ProviderDiscovery {
    live: Arc<crate::snapshot::Live>,
    provider: String,
}

#[async_trait]
impl ServiceDiscovery for ProviderDiscovery {
    async fn discover(&self) -> pingora_error::Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        let state = self.live.load().state.clone();
        let mut set = BTreeSet::new();
        if let Some(p) = state.providers.iter().find(|p| p.name() == self.provider) {
            match p.address().await {
                Ok(addr) => {
                    if let Ok(b) = Backend::new(&addr.to_string()) {
                        set.insert(b);
                    }
                }
                Err(e) => log::warn!("health check of {}: {e}", self.provider),
            }
        }
        Ok((set, HashMap::new()))
    }
}

/// The provider's probe as a pingora-load-balancing `HealthCheck`.
struct ProviderProbe {
    checker: HealthChecker,
    provider: String,
}

#[async_trait]
impl HealthCheck for ProviderProbe {
    async fn check(&self, _target: &Backend) -> pingora_error::Result<()> {
        let state = self.checker.live.load().state.clone();
        let Some(p) = state.providers.iter().find(|p| p.name() == self.provider) else {
            return Ok(());
        };
        match self.checker.probe(p).await {
            Ok(()) => {
                p.record_success(crate::clock::now_ms());
                Ok(())
            }
            Err(e) => {
                log::warn!("provider {}: {e}", p.name());
                p.record_failure(&format!("health check: {e}"));
                Err(pingora_error::Error::explain(
                    pingora_error::ErrorType::ConnectError,
                    e,
                ))
            }
        }
    }

    fn health_threshold(&self, _success: bool) -> usize {
        1
    }
}

/// One `LoadBalancer` per provider with a `health_check`, to run as Pingora background services.
/// Providers added by a later reload get theirs at the next restart (logged).
pub fn balancers(checker: &HealthChecker) -> Vec<(String, LoadBalancer<RoundRobin>)> {
    let state = checker.live.load().state.clone();
    state
        .providers
        .iter()
        .filter_map(|p| p.config.health_check.map(|hc| (p.name().to_string(), hc)))
        .map(|(name, hc)| {
            let discovery = ProviderDiscovery {
                live: checker.live.clone(),
                provider: name.clone(),
            };
            let mut backends = Backends::new(Box::new(discovery));
            backends.set_health_check(Box::new(ProviderProbe {
                checker: checker.clone(),
                provider: name.clone(),
            }));
            let mut lb = LoadBalancer::<RoundRobin>::from_backends(backends);
            lb.health_check_frequency = Some(hc.interval);
            // Re-resolve the provider's address now and then (DNS, reloads).
            lb.update_frequency = Some(Duration::from_secs(30));
            (name, lb)
        })
        .collect()
}
