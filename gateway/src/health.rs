//! Active health checks, as a Pingora background service: every provider with a `health_check`
//! is probed at its interval (openai kind: an authenticated `GET {base_url}/models`, the cheapest
//! call every OpenAI-compatible server has), and the result feeds the same provider health that
//! live traffic updates (passive checks). With `routing.startup_probe: wait` (the default) the
//! first round runs before the listeners open, and the live routing table is logged.

use crate::config::ProviderKind;
use crate::state::{ProviderHandle, State};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::connectors::http::Connector;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use pingora_core::services::ServiceReadyNotifier;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct HealthChecker {
    pub live: Arc<ArcSwap<State>>,
    pub connector: Connector,
}

impl HealthChecker {
    /// Probes one provider; `Ok` when it answered 2xx.
    async fn probe(&self, p: &ProviderHandle) -> Result<(), String> {
        let (
            ProviderKind::OpenAi {
                endpoint, api_key, ..
            },
            Some(hc),
        ) = (&p.config.kind, p.config.health_check)
        else {
            return Ok(());
        };
        let mut headers = vec![("accept", "application/json".to_string())];
        if let Some(k) = api_key {
            headers.push(("authorization", format!("Bearer {}", k.expose())));
        }
        let (status, _) = crate::identity::http_call(
            &self.connector,
            endpoint,
            "GET",
            &endpoint.path("/models"),
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
            Ok(()) => p.record_success(),
            Err(e) => {
                log::warn!("provider {}: {e}", p.name());
                p.record_failure(&format!("health check: {e}"));
            }
        }
    }

    async fn round(&self, due: &mut HashMap<String, Instant>, force: bool) {
        let state = self.live.load_full();
        let now = Instant::now();
        for p in &state.providers {
            let Some(hc) = p.config.health_check else {
                continue;
            };
            let next = due.get(p.name()).copied();
            if force || next.is_none_or(|t| now >= t) {
                self.check(p).await;
                due.insert(p.name().to_string(), now + hc.interval);
            }
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
        let mut due = HashMap::new();
        let wait = self.live.load().config.startup_probe_wait;
        if wait {
            self.round(&mut due, true).await;
        }
        let state = self.live.load_full();
        for line in crate::server::routing_table(&state.config).lines() {
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
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => self.round(&mut due, false).await,
                _ = shutdown.changed() => return,
            }
        }
    }
}
