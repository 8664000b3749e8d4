//! The live state one request works against: the validated config plus everything derived from
//! it (model index, provider handles with their health and DNS cache, pre-rendered bodies,
//! pre-resolved metric handles).
//!
//! A request loads one `Arc<State>` at its start and keeps it to its end. Per-provider runtime
//! state (health, resolved addresses) lives in [`ProviderHandle`]s, which a rebuilt state can
//! carry over by provider name. Nothing here does I/O except the resolver's DNS look-ups.

use crate::config::{Config, Deployment, HttpEndpoint, Model, Provider, ProviderKind, Strategy};
use crate::ops::telemetry::{
    DeploymentMetrics, Metrics, ModelMetrics, ProviderMetrics, StatusCounters,
};
use crate::routing::selection::DeploymentSelector;
use arc_swap::ArcSwapOption;
use bytes::Bytes;
use pingora_core::protocols::tls::CaType;
use pingora_core::utils::tls::{parse_x509, WrappedX509};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use switchyard_filters::guard::BodyLimit;

#[cfg(feature = "local")]
use crate::local::pool::{Pool as LocalPool, PoolMetrics as LocalPoolMetrics};

/// Stand-ins for a build without the `local` feature: no pool can exist (the type has no value),
/// so every `local` provider is unavailable, as `check` already says.
#[cfg(not(feature = "local"))]
mod no_local {
    pub enum LocalPool {}
    pub struct LocalPoolMetrics;
}
#[cfg(not(feature = "local"))]
use no_local::{LocalPool, LocalPoolMetrics};

/// Consecutive failed tries after which a provider is reported unhealthy.
const UNHEALTHY_AFTER: u32 = 3;
/// The models by name. Hashed with foldhash (seeded per process), not std's SipHash: every
/// request looks its model up (~400 instructions less); the keys are the config's, so a
/// caller's names can only miss.
type ModelsByName = HashMap<String, Arc<RoutedModel>, foldhash::fast::RandomState>;

/// How long a DNS answer is reused.
const DNS_TTL: Duration = Duration::from_secs(30);

pub struct State {
    pub config: Arc<Config>,
    pub providers: Vec<Arc<ProviderHandle>>,
    by_name: ModelsByName,
    /// `GET /v1/models` body for callers who may use every model, rendered once.
    pub models_body: Bytes,
    /// The `created` time the model list shows (when this config was loaded).
    pub models_created: u64,
    pub body_limit: BodyLimit,
    pub unrouted: StatusCounters,
    /// `passthrough[]` routes' provider handles and metrics, index for index with the config's.
    pub passthrough: crate::passthrough::Routes,
}

impl State {
    /// Derives the live state from a validated config.
    pub fn build(config: Arc<Config>, metrics: &Metrics) -> State {
        Self::rebuild(config, metrics, None)
    }

    /// Derives a new live state, carrying over from `previous` what must outlive a reload: the
    /// health of providers that still exist under the same name and kind, and their DNS cache
    /// when their endpoint did not change.
    pub fn rebuild(config: Arc<Config>, metrics: &Metrics, previous: Option<&State>) -> State {
        let providers: Vec<Arc<ProviderHandle>> = config
            .providers
            .iter()
            .map(|p| {
                let old = previous.and_then(|s| {
                    s.providers
                        .iter()
                        .find(|h| h.config.name == p.name && h.config.kind.name() == p.kind.name())
                });
                Arc::new(ProviderHandle::new(
                    p.clone(),
                    metrics.provider(&p.name),
                    pool_metrics(metrics, p),
                    old.map(|h| &**h),
                ))
            })
            .collect();
        let handle_of = |p: &Arc<Provider>| {
            providers
                .iter()
                .find(|h| Arc::ptr_eq(&h.config, p))
                .cloned()
                .unwrap_or_else(|| {
                    Arc::new(ProviderHandle::new(
                        p.clone(),
                        metrics.provider(&p.name),
                        pool_metrics(metrics, p),
                        None,
                    ))
                })
        };
        let mut by_name = ModelsByName::default();
        // Models with `candidates` last: their deployments share the candidates' runtime state
        // (breaker, reputation), so those are built first.
        let borrows = |m: &Arc<Model>| m.deployments.iter().any(|d| d.from_model.is_some());
        let ordered = config
            .models
            .iter()
            .filter(|m| !borrows(m))
            .chain(config.models.iter().filter(|m| borrows(m)));
        for m in ordered {
            let routed = Arc::new(RoutedModel {
                deployments: m
                    .deployments
                    .iter()
                    .enumerate()
                    .map(|(i, d)| RoutedDeployment {
                        index: i,
                        served_by: served_by(&d.provider.name, &d.model),
                        provider: handle_of(&d.provider),
                        metrics: metrics.deployment(&m.name, &d.provider.name),
                        runtime: lender(&by_name, d)
                            .or_else(|| previous.and_then(|s| s.by_name.get(&m.name)))
                            .and_then(|old| {
                                old.deployments.iter().find(|od| {
                                    let spec = od.spec(old);
                                    spec.provider.name == d.provider.name && spec.model == d.model
                                })
                            })
                            .map(|od| od.runtime.clone())
                            .unwrap_or_default(),
                    })
                    .collect(),
                selector: selector_for(m.routing.strategy, &m.deployments, 0..m.deployments.len()),
                rule_selectors: m
                    .rules
                    .iter()
                    .map(|r| {
                        selector_for(r.strategy, &m.deployments, r.deployments.iter().copied())
                    })
                    .collect(),
                metrics: metrics.model(&m.name),
                config: m.clone(),
            });
            for d in &routed.deployments {
                d.runtime
                    .reputation
                    .set_half_life(m.routing.reputation_half_life);
            }
            by_name.insert(m.name.clone(), routed.clone());
            for a in &m.aliases {
                by_name.insert(a.clone(), routed.clone());
            }
        }
        let models_created = crate::clock::unix_secs();
        let models_body = render_models(&config, models_created);
        let passthrough = crate::passthrough::Routes::build(&config, &providers, metrics);
        State {
            passthrough,
            body_limit: BodyLimit {
                max_bytes: config.server.max_body_bytes,
            },
            unrouted: metrics.unrouted(),
            config,
            providers,
            by_name,
            models_body,
            models_created,
        }
    }

    /// Every public model, in config order.
    pub fn models(&self) -> impl Iterator<Item = &Arc<RoutedModel>> {
        self.config
            .models
            .iter()
            .filter_map(|m| self.by_name.get(&m.name))
    }

    /// The model a caller's `model` names (public name or alias).
    pub fn model(&self, name: &str) -> Option<&Arc<RoutedModel>> {
        self.by_name.get(name)
    }
}

/// The candidate model a borrowed deployment (`from_model`) comes from, when built already.
fn lender<'a>(by_name: &'a ModelsByName, d: &Deployment) -> Option<&'a Arc<RoutedModel>> {
    d.from_model.as_ref().and_then(|name| by_name.get(name))
}

/// Pingora's selection over `indices` of `deployments` when `strategy` is one it serves.
fn selector_for(
    strategy: Strategy,
    deployments: &[Deployment],
    indices: impl Iterator<Item = usize>,
) -> Option<DeploymentSelector> {
    let weighted = match strategy {
        Strategy::RoundRobin => false,
        Strategy::Weighted => true,
        _ => return None,
    };
    let set: Vec<(usize, u32)> = indices
        .filter_map(|i| deployments.get(i).map(|d| (i, d.weight)))
        .collect();
    DeploymentSelector::new(&set, weighted)
}

fn render_models(config: &Config, created: u64) -> Bytes {
    let data: Vec<serde_json::Value> = config
        .models
        .iter()
        .flat_map(|m| std::iter::once(&m.name).chain(m.aliases.iter()))
        .map(|id| {
            serde_json::json!({"id": id, "object": "model", "created": created, "owned_by": "switchyard"})
        })
        .collect();
    let body = serde_json::json!({"object": "list", "data": data});
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}

/// A public model with its deployments bound to provider handles.
pub struct RoutedModel {
    pub config: Arc<Model>,
    pub deployments: Vec<RoutedDeployment>,
    pub metrics: ModelMetrics,
    /// Pingora's selection over the deployments, for `round_robin` and `weighted`.
    pub selector: Option<DeploymentSelector>,
    /// The same for each `conditional` rule's subset (`None` for other strategies).
    pub rule_selectors: Vec<Option<DeploymentSelector>>,
}

pub struct RoutedDeployment {
    /// Index into `config.deployments`.
    pub index: usize,
    pub provider: Arc<ProviderHandle>,
    pub metrics: DeploymentMetrics,
    /// Circuit breaker, Retry-After and latency estimate; survives reloads.
    pub runtime: Arc<crate::routing::breaker::DeploymentRuntime>,
    /// `x-switchyard-provider` and `x-switchyard-model` of its answers, made once ([`served_by`];
    /// `None` when a name is not a valid header value: then checked per answer, as before).
    pub served_by: Option<(http::HeaderValue, http::HeaderValue)>,
}

/// The header values naming `provider` and its upstream `model`.
pub fn served_by(provider: &str, model: &str) -> Option<(http::HeaderValue, http::HeaderValue)> {
    let value = |text: &str| http::HeaderValue::from_str(text).ok();
    Some((value(provider)?, value(model)?))
}

impl RoutedDeployment {
    pub fn spec<'a>(&self, model: &'a RoutedModel) -> &'a Deployment {
        &model.config.deployments[self.index]
    }
}

/// A provider's runtime side: passive health, resolved addresses, metrics.
pub struct ProviderHandle {
    pub config: Arc<Provider>,
    /// Shared with the handle of the same provider in the next state after a reload.
    pub health: Arc<ProviderHealth>,
    /// Requests and tokens this minute against the provider's quota; survives reloads.
    pub quota: Arc<crate::routing::breaker::QuotaTracker>,
    resolver: Option<Arc<Resolver>>,
    /// The provider's own trust anchors, in the form Pingora's connector takes.
    pub ca: Option<Arc<CaType>>,
    pub metrics: ProviderMetrics,
    /// The worker pool of a `local` provider (`None` when it failed to start: the provider is
    /// then unhealthy and its deployments are skipped).
    pub local: Option<Arc<LocalPool>>,
    /// The headers every upstream request to this provider carries (host, content type, user
    /// agent, API key, `headers`), built by `forward::request_head` on the first try and cloned
    /// by every later one. A reload makes a new handle, so it never outlives its config.
    pub upstream_head: OnceLock<http::HeaderMap>,
    /// The first API path asked of this provider and its parsed upstream URI (the same path
    /// comes nearly every time; another is parsed per request). Filled by `forward::request_head`.
    pub upstream_uri: OnceLock<(String, http::Uri)>,
}

impl ProviderHandle {
    fn new(
        config: Arc<Provider>,
        metrics: ProviderMetrics,
        pool_metrics: Option<LocalPoolMetrics>,
        previous: Option<&ProviderHandle>,
    ) -> Self {
        let resolver = match &config.kind {
            ProviderKind::Http { endpoint, .. } => Some(
                previous
                    .and_then(|p| p.resolver.clone())
                    .filter(|r| r.host == endpoint.host && r.port == endpoint.port)
                    .unwrap_or_else(|| Arc::new(Resolver::new(endpoint))),
            ),
            ProviderKind::Mock(_) | ProviderKind::Local(_) => None,
        };
        let health: Arc<ProviderHealth> = previous.map(|p| p.health.clone()).unwrap_or_default();
        let local = match (&config.kind, pool_metrics) {
            (ProviderKind::Local(settings), Some(pm)) => {
                let same = previous
                    .filter(|p| matches!(&p.config.kind, ProviderKind::Local(s) if s == settings));
                match same.and_then(|p| p.local.clone()) {
                    Some(pool) => Some(pool),
                    None => start_pool(&config.name, settings, pm, &health),
                }
            }
            _ => None,
        };
        let quota = previous.map(|p| p.quota.clone()).unwrap_or_default();
        let ca = match &config.kind {
            ProviderKind::Http {
                ca: Some(bundle), ..
            } => Some(
                bundle
                    .certs
                    .iter()
                    // Parsed successfully during validation, so `parse_x509` cannot fail here.
                    .map(|der| WrappedX509::new(der.clone(), parse_x509))
                    .collect::<Vec<_>>()
                    .into(),
            ),
            _ => None,
        };
        metrics.up.set(i64::from(health.is_healthy()));
        ProviderHandle {
            config,
            health,
            quota,
            resolver,
            ca,
            metrics,
            local,
            upstream_head: OnceLock::new(),
            upstream_uri: OnceLock::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Counts a request against the provider's quota; false when it is used up.
    /// Whether the provider's quota lets one more request go now. Without a configured quota,
    /// and until the provider once asked for a pause, there is nothing to check: no clock is
    /// read (two reads on every request otherwise).
    pub fn admit(&self) -> bool {
        if self.config.quota.is_none() && !self.quota.ever_blocked() {
            return true;
        }
        let minute = crate::clock::unix_ms() / 60_000;
        self.quota
            .admit(self.config.quota.as_ref(), minute, crate::clock::now_ms())
    }

    /// Counts an answer's tokens against the provider's `tokens_per_minute`, when it has one.
    pub fn add_tokens(&self, n: u64) {
        if self
            .config
            .quota
            .as_ref()
            .is_some_and(|q| q.tokens_per_minute.is_some())
        {
            self.quota.add_tokens(n, crate::clock::unix_ms() / 60_000);
        }
    }

    /// The address to connect to when it is known without a wait: an address literal or a
    /// cached answer still fresh.
    pub fn known_address(&self) -> Option<SocketAddr> {
        self.resolver.as_ref().and_then(|r| r.known())
    }

    /// The address to connect to (DNS answers are cached; look-ups never block a worker).
    pub async fn address(&self) -> Result<SocketAddr, String> {
        match &self.resolver {
            Some(r) => r.resolve().await,
            None => Err("provider has no network address".into()),
        }
    }

    /// A good answer (or probe) at `now` ([`crate::clock::now_ms`]).
    pub fn record_success(&self, now: u64) {
        let before = self.health.consecutive_failures.load(Ordering::Relaxed);
        if before != 0 {
            self.health.consecutive_failures.store(0, Ordering::Relaxed);
            if before >= UNHEALTHY_AFTER {
                crate::ops::events::raise(
                    "provider.up",
                    None,
                    serde_json::json!({"provider": self.name()}),
                );
            }
        }
        self.health.last_success_ms.store(now, Ordering::Relaxed);
        self.metrics.up.set(1);
    }

    pub fn record_failure(&self, reason: &str) {
        let n = self
            .health
            .consecutive_failures
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        self.health
            .last_failure_ms
            .store(crate::clock::unix_ms(), Ordering::Relaxed);
        self.health
            .last_error
            .store(Some(Arc::new(reason.to_string())));
        if n >= UNHEALTHY_AFTER {
            self.metrics.up.set(0);
        }
        if n == UNHEALTHY_AFTER {
            crate::ops::events::raise(
                "provider.down",
                None,
                serde_json::json!({"provider": self.name(), "error": reason}),
            );
        }
    }
}

/// Health learnt from live traffic (active checks join with the routing work).
#[derive(Default)]
pub struct ProviderHealth {
    pub consecutive_failures: AtomicU32,
    /// The last success on the monotonic clock ([`crate::clock::now_ms`], the reading the
    /// answer's bookkeeping already has; shown as Unix time via [`crate::clock::unix_ms_of`]).
    pub last_success_ms: AtomicU64,
    /// The last failure in Unix milliseconds.
    pub last_failure_ms: AtomicU64,
    pub last_error: ArcSwapOption<String>,
}

impl ProviderHealth {
    pub fn is_healthy(&self) -> bool {
        self.consecutive_failures.load(Ordering::Relaxed) < UNHEALTHY_AFTER
    }
}

/// Resolves a provider host asynchronously and caches the answer for [`DNS_TTL`].
struct Resolver {
    host: String,
    port: u16,
    fixed: Option<SocketAddr>,
    cached: ArcSwapOption<(SocketAddr, Instant)>,
}

impl Resolver {
    fn new(endpoint: &HttpEndpoint) -> Self {
        let fixed = endpoint
            .host
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, endpoint.port));
        Resolver {
            host: endpoint.host.clone(),
            port: endpoint.port,
            fixed,
            cached: ArcSwapOption::empty(),
        }
    }

    /// The address literal, or the cached answer while it is fresh.
    fn known(&self) -> Option<SocketAddr> {
        if self.fixed.is_some() {
            return self.fixed;
        }
        self.cached
            .load()
            .as_ref()
            .filter(|c| c.1.elapsed() < DNS_TTL)
            .map(|c| c.0)
    }

    async fn resolve(&self) -> Result<SocketAddr, String> {
        if let Some(addr) = self.known() {
            return Ok(addr);
        }
        let mut addrs = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("cannot resolve {}: {e}", self.host))?;
        let addr = addrs
            .next()
            .ok_or_else(|| format!("{} resolved to no address", self.host))?;
        self.cached.store(Some(Arc::new((addr, Instant::now()))));
        Ok(addr)
    }
}

#[cfg(feature = "local")]
fn pool_metrics(metrics: &Metrics, p: &Provider) -> Option<LocalPoolMetrics> {
    matches!(p.kind, ProviderKind::Local(_)).then(|| metrics.local_pool(&p.name))
}

#[cfg(not(feature = "local"))]
fn pool_metrics(_: &Metrics, p: &Provider) -> Option<LocalPoolMetrics> {
    matches!(p.kind, ProviderKind::Local(_)).then_some(LocalPoolMetrics)
}

/// Without the `local` feature no pool starts: the provider is unhealthy and says why.
#[cfg(not(feature = "local"))]
fn start_pool(
    name: &str,
    _: &crate::config::LocalSettings,
    _: LocalPoolMetrics,
    health: &ProviderHealth,
) -> Option<Arc<LocalPool>> {
    mark_unavailable(
        name,
        health,
        "this build has no local inference (built without the `local` feature)".into(),
    );
    None
}

/// Marks a provider that cannot serve at all unhealthy at once, with the reason.
fn mark_unavailable(name: &str, health: &ProviderHealth, e: String) {
    log::error!("local provider {name} is unavailable: {e}");
    health
        .consecutive_failures
        .store(UNHEALTHY_AFTER, Ordering::Relaxed);
    health
        .last_failure_ms
        .store(crate::clock::unix_ms(), Ordering::Relaxed);
    health
        .last_error
        .store(Some(Arc::new(format!("local pool: {e}"))));
}

#[cfg(feature = "local")]
/// Loads ONNX Runtime (once per process) and starts a local provider's workers. On failure the
/// provider is marked unhealthy with the reason, and its deployments are skipped.
fn start_pool(
    name: &str,
    settings: &crate::config::LocalSettings,
    metrics: LocalPoolMetrics,
    health: &ProviderHealth,
) -> Option<Arc<LocalPool>> {
    let pool_settings = crate::local::pool::PoolSettings {
        workers: settings.workers,
        queue: settings.queue,
        max_wait: settings.max_wait,
        device: settings.device,
        cores: settings.cores.clone(),
    };
    let started = crate::local::runtime::environment(settings.library.as_deref())
        .map_err(|e| e.to_string())
        .and_then(|env| {
            LocalPool::start(name, env, &pool_settings, metrics)
                .map_err(|e| format!("cannot start worker threads: {e}"))
        });
    match started {
        Ok(pool) => {
            log::info!(
                "local provider {name}: ONNX Runtime loaded, {} worker(s), queue {}, device {} (each model logs where it runs when it loads)",
                settings.workers,
                settings.queue,
                settings.device.name(),
            );
            Some(Arc::new(pool))
        }
        Err(e) => {
            // Unhealthy at once (not after a few failed tries): it cannot serve at all.
            mark_unavailable(name, health, e);
            None
        }
    }
}
