//! The validated configuration: what the rest of the gateway reads.
//!
//! Built only by [`super::validate`]; every value here has been checked and every default filled
//! in, so callers never re-validate. Secrets are wrapped in [`Secret`], whose `Debug` and
//! `Display` never print the value.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
pub use switchyard_adapters::canonical::Dialect;
use switchyard_filters::auth::jwt::JwtPolicy;
use switchyard_filters::auth::keys::{KeyHash, KeyRecord};

#[derive(Debug)]
pub struct Config {
    pub server: ServerSettings,
    pub providers: Vec<Arc<Provider>>,
    pub models: Vec<Arc<Model>>,
    pub telemetry: TelemetrySettings,
    /// `None`: every caller is accepted (no `auth` section).
    pub auth: Option<AuthSettings>,
    pub store: StoreSettings,
    pub budgets: Vec<BudgetSettings>,
    /// Rate limits by key name (config keys).
    pub key_limits: std::collections::HashMap<String, RateLimits>,
    /// Rate limits by team.
    pub team_limits: std::collections::HashMap<String, RateLimits>,
    /// Probe providers with a health check before accepting traffic.
    pub startup_probe_wait: bool,
    /// `passthrough[]`: path globs forwarded to a provider as they are, in file order (the
    /// first match wins). Empty: no request pays for matching.
    pub passthrough: Vec<PassthroughRoute>,
    /// `events[]`: signed webhooks for what an operator must know. Empty: nothing is raised.
    pub events: Vec<EventSink>,
    /// `responses.ttl`: how long a stored Responses API response is kept.
    pub responses_ttl: Duration,
    /// `guardrails[]` compiled, with where each applies (empty: no request pays for them).
    pub guardrails: Arc<crate::guardrails::Guardrails>,
    /// `cache`: the response cache's backend and defaults (defaults when only `models[].cache`
    /// is set; unused when no model opts in).
    pub cache: CacheSettings,
}

/// `cache`: where cached answers live, how long, and who shares them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSettings {
    /// A `cache` section or a model's `cache` exists: answers say `x-switchyard-cache`.
    pub enabled: bool,
    /// `redis`: entries shared through the store's Redis; otherwise per replica in memory.
    pub redis: bool,
    /// Memory kind: bound on cached bodies and keys, in bytes.
    pub max_bytes: u64,
    /// Default time to live (a model's `cache.ttl` and the caller's header override it).
    pub ttl: Duration,
    pub scope: CacheScope,
    /// `cache.semantic`: near-duplicate prompts hit too.
    pub semantic: Option<SemanticSettings>,
}

/// `cache.semantic`: which public model embeds prompts, and how close is close enough.
#[derive(Debug, Clone, PartialEq)]
pub struct SemanticSettings {
    pub embedding_model: String,
    /// Cosine similarity at or above which a cached answer is served.
    pub threshold: f32,
    /// Bound on the vectors the index holds, all models and scopes together (oldest go first).
    pub max_entries: usize,
}

// The threshold is validated finite (in (0, 1]), so equality is total.
impl Eq for SemanticSettings {}

/// Who shares cached entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheScope {
    Team,
    Key,
    Global,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            enabled: false,
            redis: false,
            max_bytes: 256 * 1024 * 1024,
            ttl: Duration::from_secs(3600),
            scope: CacheScope::Team,
            semantic: None,
        }
    }
}

/// One `events[]` receiver: where, the HMAC secret, and which event types it wants.
#[derive(Debug, Clone)]
pub struct EventSink {
    pub url: String,
    pub endpoint: HttpEndpoint,
    pub secret: Secret,
    pub on: Vec<String>,
}

/// One `passthrough[]` entry, its glob compiled once at load.
#[derive(Debug)]
pub struct PassthroughRoute {
    pub path: crate::passthrough::PathGlob,
    /// An HTTP provider (validation refuses in-process kinds).
    pub provider: Arc<Provider>,
    /// `price.per_request` in nano-dollars (0 without a price).
    pub per_request_nanos: u64,
}

#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Keys from the config file (read-only at runtime), by hash.
    pub keys: Vec<(KeyHash, KeyRecord)>,
    pub oauth: Option<OAuthSettings>,
    pub max_failures_per_minute: u32,
}

#[derive(Debug, Clone)]
pub struct OAuthSettings {
    pub policy: JwtPolicy,
    pub jwks: HttpEndpoint,
    /// Path and query of the JWKS document on `jwks`.
    pub jwks_path: String,
    pub refresh: Duration,
    pub introspection: Option<Introspection>,
    /// Scope a token needs for the admin API.
    pub admin_scope: String,
}

/// RFC 7662 token introspection for opaque bearer tokens.
#[derive(Debug, Clone)]
pub struct Introspection {
    pub endpoint: HttpEndpoint,
    pub path: String,
    pub client_id: String,
    pub client_secret: Secret,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSettings {
    /// SQLite file for runtime state; `None` keeps it in memory (lost on restart).
    pub sqlite_path: Option<PathBuf>,
    /// How often the spend ledger commits queued rows.
    pub flush_interval: Duration,
    /// A response's last bytes wait until its ledger row is committed.
    pub strict_durability: bool,
    /// Budgets, reservations and rate limits shared by every gateway on this Redis.
    pub redis: Option<RedisSettings>,
    /// `store.kind: postgres`: keys, the ledger and usage shared by every replica on this
    /// database (`sqlite_path` is then the local spool file).
    pub postgres_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    pub url: String,
    /// While Redis is unreachable: refuse (503) instead of enforcing on this node alone.
    pub fail_closed: bool,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            sqlite_path: None,
            flush_interval: Duration::from_secs(1),
            strict_durability: false,
            redis: None,
            postgres_url: None,
        }
    }
}

/// Who a budget applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BudgetScope {
    Global,
    Team(String),
    Project(String),
    Key(String),
    Provider(String),
}

impl fmt::Display for BudgetScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BudgetScope::Global => write!(f, "global"),
            BudgetScope::Team(n) => write!(f, "team:{n}"),
            BudgetScope::Project(n) => write!(f, "project:{n}"),
            BudgetScope::Key(n) => write!(f, "key:{n}"),
            BudgetScope::Provider(n) => write!(f, "provider:{n}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct BudgetSettings {
    pub scope: BudgetScope,
    pub limit_usd: f64,
    pub period: switchyard_filters::budget::Period,
    pub soft_ratio: f64,
    /// POSTed once per period when the soft ratio is crossed and once at the hard limit.
    pub alert_webhook: Option<HttpEndpoint>,
    /// `on_exhaust: cutoff`: a request may start with what is left and its stream is ended
    /// (with a final event saying why) when its running cost reaches that.
    pub cutoff: bool,
}

/// Per key or team: requests and tokens per minute, requests in flight.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimits {
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    pub concurrency: Option<u64>,
}

impl RateLimits {
    pub fn is_empty(&self) -> bool {
        *self == RateLimits::default()
    }
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Plain-text listeners (HTTP/1.1 and h2c).
    pub listen: Vec<String>,
    /// Listener for `/metrics` (and later the admin API).
    pub admin_listen: Option<String>,
    pub threads: usize,
    pub max_body_bytes: u64,
    /// Request heads larger than this (names, values and the request line) get 431.
    pub max_header_bytes: u64,
    /// How long a graceful shutdown waits for in-flight requests.
    pub grace_period: Duration,
    /// TLS listener (HTTP/1.1 and HTTP/2 by ALPN).
    pub tls: Option<TlsListener>,
    /// Bearer token for the admin API; `None` disables `/admin/*`.
    pub admin_token: Option<Secret>,
    /// `/v1/health` and `/v1/models` answer without credentials.
    pub public_health: bool,
    /// `GET /` on the admin listener serves the status page (`server.status_page`).
    pub status_page: bool,
    /// A request that already crossed this many Switchyard nodes is refused (508).
    pub max_hops: u32,
    /// How long a caller may take to send its request (`server.client_timeouts`).
    pub client_timeouts: ClientTimeouts,
    /// Names this replica in ledger rows, the access log and `/v1/health`.
    pub replica_id: String,
}

/// `server.client_timeouts`: how long a caller may take to send its request, so a slow or silent
/// one cannot hold a connection (see `crate::proxy::deadlines` for what each bounds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientTimeouts {
    /// From a connection's accept to the end of its first request head.
    pub header: Duration,
    /// For a whole request body, from when the gateway starts reading it (right after the head
    /// is checked).
    pub body: Duration,
    /// A kept-alive connection with no new request is closed after this (whole seconds).
    pub idle: Duration,
}

impl Default for ClientTimeouts {
    fn default() -> Self {
        ClientTimeouts {
            header: Duration::from_secs(10),
            body: Duration::from_secs(30),
            idle: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsListener {
    pub listen: String,
    pub cert_path: String,
    pub key_path: String,
}

/// Extra trust anchors for one provider (DER certificates read from a PEM file).
#[derive(Clone, PartialEq, Eq)]
pub struct CaBundle {
    pub path: String,
    pub certs: Vec<Vec<u8>>,
}

impl fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CaBundle({}, {} certificate(s))",
            self.path,
            self.certs.len()
        )
    }
}

/// A credential from the configuration. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }
    /// The secret itself, for the one place that sends it upstream.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    pub timeouts: Timeouts,
    /// The provider's own quota, tracked so a deployment at quota is skipped.
    pub quota: Option<Quota>,
    /// Active health check (openai kind: an authenticated `GET {base_url}/models`).
    pub health_check: Option<HealthCheckSettings>,
    /// `responses: native`: Responses API requests go to `{base_url}/responses` as they are.
    pub responses_native: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthCheckSettings {
    pub interval: Duration,
    pub timeout: Duration,
}

#[derive(Debug)]
pub enum ProviderKind {
    /// An HTTP provider speaking `dialect` (`openai` also covers any OpenAI-compatible API:
    /// vLLM, Ollama `/v1`, Groq, another Switchyard node).
    Http {
        dialect: Dialect,
        endpoint: HttpEndpoint,
        api_key: Option<Secret>,
        /// Trust these CAs (instead of the system store) for this provider's certificate.
        ca: Option<CaBundle>,
        /// `headers`: sent on every request, never over the gateway's or the credential's.
        headers: Vec<(http::HeaderName, http::HeaderValue)>,
        /// A cloud account (`kind: azure`, `bedrock`, `vertex`): URL layout and credentials.
        cloud: Option<Arc<crate::cloud::Cloud>>,
        /// `proxy`: egress through an HTTP CONNECT proxy.
        proxy: Option<Arc<crate::cloud::egress::EgressProxy>>,
    },
    /// The built-in deterministic provider.
    Mock(MockSettings),
    /// ONNX Runtime models on dedicated worker threads inside the gateway.
    Local(LocalSettings),
}

/// `kind: local`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSettings {
    /// Dedicated OS threads, each owning its model sessions.
    pub workers: usize,
    /// Jobs waiting for a worker; a full queue makes the deployment unavailable (spill).
    pub queue: usize,
    /// A job that waited longer than this is spilled to the next deployment.
    pub max_wait: Duration,
    /// The ONNX Runtime shared library (`None`: `ORT_DYLIB_PATH`).
    pub library: Option<PathBuf>,
    /// Where sessions run.
    pub device: Device,
    /// CPU cores the workers are pinned to (worker `i` on `cores[i % len]`); empty: not pinned.
    pub cores: Vec<usize>,
}

/// `device` of a local provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// The CUDA execution provider when it loads, else the CPU (logged either way).
    #[default]
    Auto,
    Cpu,
    /// CUDA or nothing: a session that cannot run on CUDA fails to load.
    Cuda,
}

impl Device {
    pub fn name(self) -> &'static str {
        match self {
            Device::Auto => "auto",
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
        }
    }
}

impl ProviderKind {
    pub fn name(&self) -> &'static str {
        match self {
            ProviderKind::Http { cloud: Some(c), .. } => c.kind(),
            ProviderKind::Http { dialect, .. } => dialect.name(),
            ProviderKind::Mock(_) => "mock",
            ProviderKind::Local(_) => "local",
        }
    }
}

/// Where an HTTP provider lives, parsed once from its `base_url`.
#[derive(Debug, Clone)]
pub struct HttpEndpoint {
    /// The URL as configured (without credentials), for display.
    pub base_url: String,
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing slash, e.g. `/v1`.
    pub path_prefix: String,
    /// Value for the upstream `Host` header (`host` or `host:port` when the port is not default).
    pub host_header: String,
}

impl HttpEndpoint {
    /// The name a connection's TLS handshake asks for (SNI, certificate check): the host for
    /// `https`, none for plain HTTP.
    pub fn sni(&self) -> String {
        if self.tls {
            self.host.clone()
        } else {
            String::new()
        }
    }

    /// The full upstream path for an API path such as `/chat/completions`.
    pub fn path(&self, api_path: &str) -> String {
        let mut p = String::with_capacity(self.path_prefix.len() + api_path.len());
        p.push_str(&self.path_prefix);
        p.push_str(api_path);
        p
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP (and TLS) connection set-up.
    pub connect: Duration,
    /// Time to the first byte of a streamed response (time to first token).
    pub first_byte: Duration,
    /// Longest gap between two reads of a response body.
    pub idle: Duration,
    /// One whole try, from connecting to the last byte; also bounds a non-stream wait.
    pub total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            first_byte: Duration::from_secs(30),
            idle: Duration::from_secs(30),
            total: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MockSettings {
    /// Delay before the first byte of every answer.
    pub latency: Duration,
    /// Content chunks in a streamed answer.
    pub chunks: usize,
    /// Delay between streamed chunks.
    pub chunk_interval: Duration,
}

#[derive(Debug)]
pub struct Model {
    pub name: String,
    pub aliases: Vec<String>,
    pub deployments: Vec<Deployment>,
    pub routing: RoutingPolicy,
    /// `conditional` strategy's rules.
    pub rules: Vec<Rule>,
    /// `lowest_latency_under_budget`'s per-request cap (USD).
    pub max_cost_per_request: Option<f64>,
    /// Refuse (400) request fields a deployment's provider cannot honour; when false they are
    /// dropped and listed in `x-switchyard-dropped`.
    pub strict: bool,
    /// Other public models tried, in order, when every deployment of this one failed or none
    /// could take the request (validated: existing models, not this one).
    pub fallbacks: Vec<String>,
    /// Body `task` → the candidate models it narrows to (models with `candidates`).
    pub tasks: std::collections::BTreeMap<String, Vec<String>>,
    /// What keeps a caller on one deployment (consistent hashing over the weights).
    pub sticky: Option<Sticky>,
    /// `models[].cache`: answers are cached; `Some(None)` takes `cache.ttl`.
    pub cache: Option<Option<Duration>>,
    /// `prompt_cache: auto`: Anthropic requests get cache breakpoints (system, tools, last
    /// turns) unless the caller placed its own.
    pub prompt_cache: bool,
}

/// `sticky`: what names a caller for a sticky split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sticky {
    /// The end user: the caller's `user` (token or key), else the body's `user` or
    /// `metadata.user_id`.
    User,
    /// The API key (or token subject) that authenticated the request.
    Key,
    /// A request header's value (lower-case name).
    Header(String),
}

#[derive(Debug, Clone)]
pub struct Deployment {
    pub provider: Arc<Provider>,
    /// The provider's own model name.
    pub model: String,
    pub price: Price,
    pub priority: i64,
    pub weight: u32,
    /// Default max tokens when the caller gives none.
    pub max_tokens: Option<u64>,
    /// 0..100 (default 50): ranks deployments for strategy `quality`.
    pub quality: f64,
    /// Tokens: a request whose estimated prompt exceeds it skips this deployment.
    pub context_window: Option<u64>,
    /// The candidate model this deployment is borrowed from (models with `candidates`).
    pub from_model: Option<String>,
}

/// USD per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    pub cached_input_per_mtok: f64,
    /// Prompt tokens written to the provider's prompt cache (Anthropic's
    /// `cache_creation_input_tokens`); the input price when not given.
    pub cache_write_input_per_mtok: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Ordered failover by `priority` (lower first; ties keep file order).
    Priority,
    /// Each request starts at the next deployment.
    RoundRobin,
    /// The first deployment is drawn with probability proportional to `weight`.
    Weighted,
    /// Power of two choices on the EWMA of time to first byte.
    LeastLatency,
    /// The lowest expected cost for this request (prompt estimate + max tokens, by price).
    Cost,
    /// The fastest deployment whose expected cost stays under `max_cost_per_request`.
    LowestLatencyUnderBudget,
    /// The first matching rule picks the deployments and the strategy.
    Conditional,
    /// Drawn by observed reputation score (most traffic to the best, the others still probed).
    Reliability,
    /// Highest deployment `quality` first.
    Quality,
}

impl Strategy {
    /// The name the config file uses.
    pub fn label(self) -> &'static str {
        match self {
            Strategy::Priority => "priority",
            Strategy::RoundRobin => "round_robin",
            Strategy::Weighted => "weighted",
            Strategy::LeastLatency => "least_latency",
            Strategy::Cost => "cost",
            Strategy::LowestLatencyUnderBudget => "lowest_latency_under_budget",
            Strategy::Conditional => "conditional",
            Strategy::Reliability => "reliability",
            Strategy::Quality => "quality",
        }
    }
}

/// A `conditional` rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub when: Option<Condition>,
    /// Indices into the model's (priority-sorted) deployments.
    pub deployments: Vec<usize>,
    pub strategy: Strategy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// Header name (lowercase) equals value.
    Header { name: String, value: String },
    /// `metadata[key]` equals value.
    Metadata { key: String, value: String },
    /// The model name the caller used.
    Model(String),
}

/// Per-deployment circuit breaker: open after `failures` consecutive failures, half-open (one
/// probe) after `open_for`, closed again on a success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    pub failures: u32,
    pub open_for: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoutingPolicy {
    /// With no response header from the first deployment by then, race the next one too.
    pub hedge_after: Option<Duration>,
    pub strategy: Strategy,
    pub breaker: BreakerPolicy,
    pub retry: RetryPolicy,
    /// Bound on all tries together, up to the first response byte.
    pub deadline: Duration,
    /// Half-life of the observations behind a deployment's reputation score.
    pub reputation_half_life: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total tries across deployments.
    pub attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub on: RetryOn,
}

/// Which failures move a request on to its next try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryOn {
    pub connect: bool,
    pub timeout: bool,
    pub too_many_requests: bool,
    pub server_error: bool,
}

impl Default for RoutingPolicy {
    fn default() -> Self {
        RoutingPolicy {
            hedge_after: None,
            strategy: Strategy::Priority,
            breaker: BreakerPolicy {
                failures: 5,
                open_for: Duration::from_secs(30),
            },
            retry: RetryPolicy {
                attempts: 3,
                backoff_base: Duration::from_millis(100),
                backoff_max: Duration::from_secs(2),
                on: RetryOn {
                    connect: true,
                    timeout: true,
                    too_many_requests: true,
                    server_error: true,
                },
            },
            deadline: Duration::from_secs(120),
            reputation_half_life: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLog {
    Stdout,
    Off,
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct TelemetrySettings {
    pub access_log: AccessLog,
    pub audit_log: AccessLog,
    /// `telemetry.otlp`: spans exported to `{endpoint}/v1/traces`; `None` costs nothing.
    pub otlp: Option<OtlpSettings>,
}

/// Where and how much to trace (`telemetry.otlp`).
#[derive(Debug, Clone)]
pub struct OtlpSettings {
    pub endpoint: HttpEndpoint,
    /// New traces sampled (0..=1); a caller's sampled `traceparent` is always followed.
    pub sample_ratio: f64,
    /// Extra headers on every export (values may be secrets: never logged).
    pub headers: Vec<(String, Secret)>,
}
