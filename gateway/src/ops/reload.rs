//! SIGHUP reload: re-read the config file, validate it with the same checks as `switchyard
//! check`, build the new routing state, auth view and governance beside the old ones and publish
//! them in one [`crate::snapshot::Live`] swap.
//!
//! Requests in flight keep the snapshot they loaded; new requests see the new one. An invalid file
//! changes nothing: every error is logged with its key path and the failure is counted in
//! `switchyard_config_reloads_total{result="failure"}`. Settings that cannot change live (listen
//! addresses, threads) are logged as needing a restart. It owns the signal and the swap only.

use crate::config::{self, ServerSettings};
use crate::identity::AuthView;
use crate::ops::telemetry::Metrics;
use crate::routing::state::State;
use crate::snapshot::{Live, Parts};
use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use pingora_core::services::ServiceReadyNotifier;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};

pub struct Reloader {
    pub path: PathBuf,
    pub live: Arc<Live>,
    pub metrics: Arc<Metrics>,
    /// The settings the process started with (listeners cannot change without a restart).
    pub started_with: ServerSettings,
    pub auth: Arc<crate::identity::Auth>,
    pub spend: Arc<crate::governance::Spend>,
}

impl Reloader {
    /// Loads, validates and swaps in the file. Returns whether the new config is live.
    pub fn reload(&self) -> bool {
        let cfg = match config::load(&self.path) {
            Ok(c) => c,
            Err(errors) => {
                for e in &errors.0 {
                    log::error!("reload rejected: {e}");
                }
                log::error!(
                    "reload of {} rejected with {} error(s); the previous configuration keeps serving",
                    self.path.display(),
                    errors.0.len()
                );
                self.metrics.reload(false);
                crate::ops::events::raise(
                    "config.rejected",
                    None,
                    serde_json::json!({
                        "path": self.path.display().to_string(),
                        "errors": errors.0.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
                    }),
                );
                return false;
            }
        };
        for change in restart_only_changes(&self.started_with, &cfg.server) {
            log::warn!("reload: {change} changed; this takes effect only after a restart");
        }
        let published = self.live.publish(|old| {
            let auth = Arc::new(AuthView::new(cfg.auth.clone()));
            if auth.oauth_changed(&old.auth) {
                // Tokens verified under the old JWKS source or policy are not served under the
                // new one.
                self.auth.jwks.clear_cache();
            }
            let keys = self.auth.key_policies();
            let sources = crate::governance::Sources {
                cfg: &cfg,
                keys: &keys,
            };
            let governance = Arc::new(self.spend.governance_for(sources, Some(&old.governance)));
            let state = Arc::new(State::rebuild(
                Arc::new(cfg),
                &self.metrics,
                Some(&old.state),
            ));
            Ok::<_, std::convert::Infallible>(Parts {
                state,
                auth,
                governance,
            })
        });
        let Ok(new) = published;
        self.metrics.reload(true);
        crate::ops::events::set_enabled(!new.state.config.events.is_empty());
        crate::ops::events::raise(
            "config.reloaded",
            None,
            serde_json::json!({
                "path": self.path.display().to_string(),
                "generation": new.generation,
                "models": new.state.config.models.len(),
            }),
        );
        log::info!(
            "reloaded {}: generation {}, {} model(s) now live",
            self.path.display(),
            new.generation,
            new.state.config.models.len()
        );
        true
    }
}

/// Server settings that a reload cannot apply.
fn restart_only_changes(old: &ServerSettings, new: &ServerSettings) -> Vec<&'static str> {
    let mut out = Vec::new();
    if old.listen != new.listen {
        out.push("server.listen");
    }
    if old.admin_listen != new.admin_listen {
        out.push("server.admin_listen");
    }
    if old.threads != new.threads {
        out.push("server.threads");
    }
    if old.grace_period != new.grace_period {
        out.push("server.grace_period");
    }
    if old.tls != new.tls {
        out.push("server.tls");
    }
    if old.client_timeouts != new.client_timeouts {
        out.push("server.client_timeouts");
    }
    out
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start_with_ready_notifier(
        &self,
        mut shutdown: ShutdownWatch,
        ready: ServiceReadyNotifier,
    ) {
        // Installed before the listeners open (they depend on this service): a SIGHUP can then
        // never hit the default action, which would kill the process.
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                log::error!("cannot install the SIGHUP handler, reload is disabled: {e}");
                ready.notify_ready();
                return;
            }
        };
        ready.notify_ready();
        loop {
            tokio::select! {
                got = hup.recv() => {
                    if got.is_none() {
                        return;
                    }
                    log::info!("SIGHUP: reloading {}", self.path.display());
                    self.reload();
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings() -> ServerSettings {
        ServerSettings {
            listen: vec!["127.0.0.1:1".into()],
            admin_listen: None,
            threads: 1,
            max_body_bytes: 10,
            max_header_bytes: 65536,
            grace_period: Duration::from_secs(1),
            tls: None,
            admin_token: None,
            public_health: false,
            status_page: true,
            max_hops: 8,
            client_timeouts: crate::config::ClientTimeouts::default(),
            replica_id: "gw-1".into(),
        }
    }

    #[test]
    fn listener_changes_need_a_restart() {
        let a = settings();
        let mut b = settings();
        assert!(restart_only_changes(&a, &b).is_empty());
        b.listen = vec!["127.0.0.1:2".into()];
        b.max_body_bytes = 20; // applies live
        assert_eq!(restart_only_changes(&a, &b), vec!["server.listen"]);
        let mut c = settings();
        c.client_timeouts.header = Duration::from_secs(3);
        assert_eq!(restart_only_changes(&a, &c), vec!["server.client_timeouts"]);
    }
}
