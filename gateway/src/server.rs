//! Assembles the Pingora [`Server`]: the inference service (an `HttpProxy` over
//! [`crate::proxy::Gateway`]) on every `server.listen` address with HTTP/1.1 and h2c, and the
//! admin service on `server.admin_listen`. Also renders the routing table for `switchyard check`.

use crate::access_log::AccessLogger;
use crate::admin::AdminApp;
use crate::config::{Config, ProviderKind};
use crate::context::InFlight;
use crate::drain::Drain;
use crate::forward::Forwarder;
use crate::health::HealthChecker;
use crate::identity::jwks::Jwks;
use crate::identity::store::KeyStore;
use crate::identity::{Auth, JwksRefresher};
use crate::proxy::Gateway;
use crate::reload::Reloader;
use crate::state::State;
use crate::telemetry::Metrics;
use arc_swap::ArcSwap;
use pingora_core::apps::HttpServerOptions;
use pingora_core::connectors::http::Connector;
use pingora_core::connectors::ConnectorOptions;
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::Server;
use pingora_core::services::background::background_service;
use pingora_core::services::listening::Service;
use std::convert::Infallible;
use std::fmt::Write;
use std::path::PathBuf;
use std::sync::Arc;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the access log: {0}")]
    AccessLog(std::io::Error),
    #[error("cannot set up the inference service")]
    Service,
    #[error("cannot set up TLS: {0}")]
    Tls(String),
    #[error("{0}")]
    Store(crate::identity::store::StoreError),
    #[error("{0}")]
    Ledger(crate::ledger::LedgerError),
}

/// How the process was asked to start.
pub struct RunOptions {
    /// The config file, re-read on SIGHUP.
    pub conf_path: PathBuf,
    /// Take the listening sockets over from a running instance (Pingora graceful upgrade).
    pub upgrade: bool,
    /// Unix socket through which listening sockets are handed over on upgrade.
    pub upgrade_sock: PathBuf,
}

/// Starts serving; returns only on a start-up failure (shutdown exits the process).
pub fn run(cfg: Config, options: RunOptions) -> Result<Infallible, StartError> {
    let cfg = Arc::new(cfg);
    let metrics = Arc::new(Metrics::new());
    metrics.init_error_kinds(crate::errors::CODES);
    let access_log = AccessLogger::start(
        &cfg.telemetry.access_log,
        metrics.access_log_dropped.clone(),
    )
    .map_err(StartError::AccessLog)?;

    let conf = ServerConf {
        threads: cfg.server.threads,
        grace_period_seconds: Some(cfg.server.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(5),
        upgrade_sock: options.upgrade_sock.display().to_string(),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade: options.upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(opt), conf);
    server.bootstrap();

    let state = Arc::new(ArcSwap::from_pointee(State::build(cfg.clone(), &metrics)));
    let spend =
        Arc::new(crate::governance::Spend::start(&cfg, &metrics).map_err(StartError::Ledger)?);
    let store = KeyStore::open(cfg.store.sqlite_path.as_deref()).map_err(StartError::Store)?;
    if !store.persistent && cfg.server.admin_token.is_some() {
        log::warn!("no `store` configured: keys created through the admin API live in memory and are lost on restart");
    }
    let audit = AccessLogger::start(&cfg.telemetry.audit_log, metrics.access_log_dropped.clone())
        .map_err(StartError::AccessLog)?;
    let jwks = Jwks::new(Connector::new(Some(ConnectorOptions::from_server_conf(
        &server.configuration,
    ))));
    let auth =
        Arc::new(Auth::new(cfg.auth.clone(), store, jwks, audit).map_err(StartError::Store)?);
    let jwks_handle = server.add_service(background_service(
        "switchyard jwks",
        JwksRefresher { auth: auth.clone() },
    ));
    let reloader = Reloader {
        path: options.conf_path,
        live: state.clone(),
        metrics: metrics.clone(),
        started_with: cfg.server.clone(),
        auth: auth.clone(),
        spend: spend.clone(),
    };
    let reload_handle = server.add_service(background_service("switchyard reload", reloader));
    let connector = Connector::new(Some(ConnectorOptions::from_server_conf(
        &server.configuration,
    )));
    let in_flight = InFlight::default();
    server.add_service(background_service(
        "switchyard drain",
        Drain {
            in_flight: in_flight.clone(),
            access_log: access_log.clone(),
            spend: spend.clone(),
        },
    ));
    let gateway = Gateway::new(
        state.clone(),
        spend.clone(),
        auth.clone(),
        metrics.clone(),
        Forwarder::new(connector, spend.clone()),
        access_log,
        in_flight,
    );

    let mut inference = pingora_proxy::http_proxy_service_with_name(
        &server.configuration,
        gateway,
        "switchyard inference",
    );
    let mut options = HttpServerOptions::default();
    options.h2c = true;
    options.h2_idle_timeout = Some(std::time::Duration::from_secs(300));
    inference
        .app_logic_mut()
        .ok_or(StartError::Service)?
        .server_options = Some(options);
    for addr in &cfg.server.listen {
        inference.add_tcp(addr);
    }
    if let Some(tls) = &cfg.server.tls {
        let mut settings = TlsSettings::intermediate(&tls.cert_path, &tls.key_path)
            .map_err(|e| StartError::Tls(e.to_string()))?;
        settings.enable_h2();
        inference.add_tls_with_settings(&tls.listen, None, settings);
    }
    let checker = HealthChecker {
        live: state.clone(),
        connector: Arc::new(Connector::new(Some(ConnectorOptions::from_server_conf(
            &server.configuration,
        )))),
    };
    for (name, lb) in crate::health::balancers(&checker) {
        server.add_service(background_service(&format!("switchyard health {name}"), lb));
    }
    let health_handle = server.add_service(background_service("switchyard health", checker));
    let inference_handle = server.add_service(inference);
    inference_handle.add_dependency(&health_handle);
    inference_handle.add_dependency(&reload_handle);
    inference_handle.add_dependency(&jwks_handle);

    if let Some(addr) = &cfg.server.admin_listen {
        let mut admin = Service::new(
            "switchyard admin".to_string(),
            AdminApp {
                metrics,
                auth,
                state,
                spend,
            },
        );
        admin.add_tcp(addr);
        server.add_service(admin);
    }
    log::info!(
        "switchyard {} serving {} model(s) on {:?} (admin: {})",
        env!("CARGO_PKG_VERSION"),
        cfg.models.len(),
        cfg.server.listen,
        cfg.server.admin_listen.as_deref().unwrap_or("off"),
    );
    server.run_forever()
}

/// The routing table `switchyard check` prints: public model → deployments → provider.
pub fn routing_table(cfg: &Config) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "listen: {}", cfg.server.listen.join(", "));
    let _ = writeln!(
        out,
        "admin:  {}",
        cfg.server.admin_listen.as_deref().unwrap_or("off")
    );
    for m in &cfg.models {
        let r = &m.routing;
        let aliases = if m.aliases.is_empty() {
            String::new()
        } else {
            format!(" (aliases: {})", m.aliases.join(", "))
        };
        let _ = writeln!(
            out,
            "model {}{aliases}  strategy={:?} attempts={} deadline={:?}",
            m.name, r.strategy, r.retry.attempts, r.deadline
        );
        for (i, d) in m.deployments.iter().enumerate() {
            let p = &d.provider;
            let target = match &p.kind {
                ProviderKind::Http {
                    dialect, endpoint, ..
                } => format!(
                    "{} (POST {})",
                    endpoint.base_url,
                    endpoint.path(switchyard_adapters::providers::chat_path(*dialect))
                ),
                ProviderKind::Mock(_) => "built-in".to_string(),
                ProviderKind::Local(l) => format!(
                    "local ONNX pool ({} worker(s), queue {})",
                    l.workers, l.queue
                ),
            };
            let _ = writeln!(
                out,
                "  {}. {} [{}] {} -> {}  priority={} weight={} price/Mtok: in ${} out ${} cached ${}",
                i + 1,
                p.name,
                p.kind.name(),
                target,
                d.model,
                d.priority,
                d.weight,
                d.price.input_per_mtok,
                d.price.output_per_mtok,
                d.price.cached_input_per_mtok
            );
        }
    }
    out
}
