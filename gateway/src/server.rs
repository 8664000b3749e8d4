//! Assembles the Pingora [`Server`]: the inference service (an `HttpProxy` over
//! [`crate::proxy::Gateway`], run under the callers' deadlines of [`ClientDeadlines`]) on every
//! `server.listen` address with HTTP/1.1 and h2c, and the admin service on `server.admin_listen`.
//! Also renders the routing table for `switchyard check`.

use crate::config::Config;
use crate::forward::Forwarder;
use crate::identity::jwks::Jwks;
use crate::identity::store::KeyStore;
use crate::identity::AuthView;
use crate::identity::{Auth, JwksRefresher};
use crate::ops::access_log::AccessLogger;
use crate::ops::admin::AdminApp;
use crate::ops::drain::Drain;
use crate::ops::reload::Reloader;
use crate::ops::telemetry::Metrics;
use crate::proxy::context::InFlight;
use crate::proxy::deadlines::ClientDeadlines;
use crate::proxy::Gateway;
use crate::routing::health::HealthChecker;
use crate::routing::state::State;
use crate::snapshot::{Live, Parts};
use pingora_core::apps::HttpServerOptions;
use pingora_core::connectors::http::Connector;
use pingora_core::connectors::ConnectorOptions;
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::Server;
use pingora_core::services::background::background_service;
use pingora_core::services::listening::Service;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the access log: {0}")]
    AccessLog(std::io::Error),
    #[error("cannot set up TLS: {0}")]
    Tls(String),
    #[error("{0}")]
    Store(crate::identity::store::StoreError),
    #[error("{0}")]
    Ledger(crate::governance::ledger::LedgerError),
    #[error("{0}")]
    Responses(crate::responses::store::StoreError),
    #[error("{0}")]
    Postgres(crate::store::PgError),
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

    // `store.kind: postgres`: the fleet's database, its schema brought up to date first.
    let pg = match cfg.store.postgres_url.as_deref() {
        Some(url) => Some(
            crate::store::migrate::open(url, &cfg.server.replica_id)
                .map_err(StartError::Postgres)?,
        ),
        None => None,
    };
    let spend = Arc::new(
        crate::governance::Spend::start(&cfg, &metrics, pg.clone()).map_err(StartError::Ledger)?,
    );
    let store = match &pg {
        Some(pg) => KeyStore::postgres(pg.clone(), cfg.store.sqlite_path.as_deref())
            .map_err(StartError::Store)?,
        None => KeyStore::open(cfg.store.sqlite_path.as_deref()).map_err(StartError::Store)?,
    };
    if !store.persistent && cfg.server.admin_token.is_some() {
        log::warn!("no `store` configured: keys created through the admin API live in memory and are lost on restart");
    }
    let audit = AccessLogger::start(&cfg.telemetry.audit_log, metrics.access_log_dropped.clone())
        .map_err(StartError::AccessLog)?;
    let jwks = Jwks::new(Connector::new(Some(ConnectorOptions::from_server_conf(
        &server.configuration,
    ))));
    let auth = Arc::new(Auth::new(store, jwks, audit).map_err(StartError::Store)?);
    // The one live config snapshot: routing, auth settings and governance (the file's and the
    // runtime keys' limits and budgets), swapped together.
    let keys = auth.key_policies();
    let sources = crate::governance::Sources {
        cfg: &cfg,
        keys: &keys,
    };
    let live = Arc::new(Live::new(Parts {
        state: Arc::new(State::build(cfg.clone(), &metrics)),
        auth: Arc::new(AuthView::new(cfg.auth.clone())),
        governance: Arc::new(spend.governance_for(sources, None)),
    }));
    auth.attach(live.clone());
    if let Some(pg) = &pg {
        // Keys changed on another replica: reload them, and governance when their limits or
        // budgets changed.
        let (keys, governed, spent) = (auth.clone(), live.clone(), spend.clone());
        let reload = move || {
            let before = keys.key_policies();
            keys.reload_keys();
            if *before != *keys.key_policies() {
                crate::ops::admin::republish_key_policies(&governed, &spent, &keys);
            }
        };
        crate::store::listen::start(pg.clone(), Arc::new(reload))
            .map_err(|e| StartError::Postgres(crate::store::PgError::Runtime(e)))?;
    }
    // Every background job on one thread (see `ops::background`).
    let mut background = crate::ops::background::Background::default();
    background.add(JwksRefresher { auth: auth.clone() });
    let reloader = Reloader {
        path: options.conf_path,
        live: live.clone(),
        metrics: metrics.clone(),
        started_with: cfg.server.clone(),
        auth: auth.clone(),
        spend: spend.clone(),
    };
    background.add(reloader);
    // Installed even without `telemetry.otlp`, so a reload can turn tracing on; until then a
    // request pays one config check.
    if let Some(rx) = crate::ops::otlp::install(metrics.otlp_dropped.clone()) {
        background.add_after_ready(crate::ops::otlp::Shipper {
            rx: std::sync::Mutex::new(Some(rx)),
            live: live.clone(),
        });
    }
    crate::ops::events::set_enabled(!cfg.events.is_empty());
    if let Some(rx) = crate::ops::events::install() {
        background.add_after_ready(crate::ops::events::dispatcher::Dispatcher {
            rx: std::sync::Mutex::new(Some(rx)),
            live: live.clone(),
            auth: auth.clone(),
            path: cfg.store.sqlite_path.clone(),
            pg: pg.clone(),
        });
    }
    let options = ConnectorOptions::from_server_conf(&server.configuration);
    let pool = crate::forward::pool::UpstreamPool::new(Some(options.clone()));
    let connector = Connector::new(Some(options));
    let in_flight = InFlight::default();
    background.add_after_ready(Drain {
        in_flight: in_flight.clone(),
        access_log: access_log.clone(),
        spend: spend.clone(),
    });
    let gateway = Gateway {
        live: live.clone(),
        spend: spend.clone(),
        auth: auth.clone(),
        metrics: metrics.clone(),
        forwarder: Forwarder::new(pool, connector, spend.clone()),
        access_log,
        in_flight,
        client_timeouts: cfg.server.client_timeouts,
        conversations: Arc::new(
            match &pg {
                Some(pg) => crate::responses::Conversations::postgres(pg.clone()),
                None => crate::responses::Conversations::open(cfg.store.sqlite_path.as_deref()),
            }
            .map_err(StartError::Responses)?,
        ),
        cache: Arc::new(crate::cache::Cache::new(
            &cfg.cache,
            cfg.store.redis.as_ref().map(|r| r.url.as_str()),
            metrics.clone(),
        )),
    };

    let mut proxy = pingora_proxy::http_proxy(&server.configuration, gateway);
    let mut options = HttpServerOptions::default();
    options.h2c = true;
    options.h2_idle_timeout = Some(cfg.server.client_timeouts.idle);
    proxy.server_options = Some(options);
    let mut inference = Service::new(
        "switchyard inference".to_string(),
        ClientDeadlines {
            inner: Arc::new(proxy),
            timeouts: cfg.server.client_timeouts,
            h2c: true,
        },
    );
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
        live: live.clone(),
        connector: Arc::new(Connector::new(Some(ConnectorOptions::from_server_conf(
            &server.configuration,
        )))),
    };
    for (_, lb) in crate::routing::health::balancers(&checker) {
        background.add(lb);
    }
    background.add(checker);
    let background_handle =
        server.add_service(background_service("switchyard background", background));
    let inference_handle = server.add_service(inference);
    // Serves once the health checker, the reloader and the JWKS refresher are ready.
    inference_handle.add_dependency(&background_handle);

    if let Some(addr) = &cfg.server.admin_listen {
        let mut admin = Service::new(
            "switchyard admin".to_string(),
            AdminApp {
                metrics,
                auth,
                live,
                spend,
                sessions: Default::default(),
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
