//! The configuration file as written (`serde` types mirroring `../shared/CONFIG.md`).
//!
//! These types exist only to be parsed and handed to [`super::validate`]; nothing outside
//! `config/` sees them. Every struct denies unknown keys, so a typo is an error with its path.
//! Sections of the contract that this build does not implement yet are captured as raw values so
//! validation can say so precisely instead of calling them unknown.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_yaml::Value;

/// A value that may be written natively (`threads: 2`) or as a string, which is what a `${VAR}`
/// reference expands to (`threads: "${THREADS:-2}"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lenient<T>(pub T);

impl<'de, T: DeserializeOwned> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let v = match v {
            Value::String(s) => {
                serde_yaml::from_str::<Value>(&s).map_err(serde::de::Error::custom)?
            }
            other => other,
        };
        T::deserialize(v)
            .map(Lenient)
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub server: FileServer,
    #[serde(default)]
    pub providers: Vec<FileProvider>,
    #[serde(default)]
    pub models: Vec<FileModel>,
    #[serde(default)]
    pub routing: Option<FileRouting>,
    #[serde(default)]
    pub telemetry: Option<FileTelemetry>,
    #[serde(default)]
    pub auth: Option<FileAuth>,
    #[serde(default)]
    pub store: Option<FileStore>,
    #[serde(default)]
    pub budgets: Option<Vec<FileBudget>>,
    /// Rate limits per team (Switchyard extension: `auth.api_keys[].limits` covers keys).
    #[serde(default)]
    pub team_limits: Option<std::collections::BTreeMap<String, FileLimits>>,
    /// API paths forwarded to a provider byte for byte (`passthrough[]`).
    #[serde(default)]
    pub passthrough: Option<Vec<FilePassthrough>>,
    /// Signed event webhooks (`events[]`).
    #[serde(default)]
    pub events: Option<Vec<FileEventSink>>,
    /// Stored Responses API conversations (`responses.ttl`).
    #[serde(default)]
    pub responses: Option<FileResponses>,
    /// The response cache's backend and defaults (`cache`).
    #[serde(default)]
    pub cache: Option<FileCache>,
    /// Named content policies (`guardrails[]`), compiled by `crate::guardrails::compile`.
    #[serde(default)]
    pub guardrails: Option<Vec<FileGuardrail>>,
    /// Guardrail names per team, beside `team_limits`.
    #[serde(default)]
    pub team_guardrails: Option<std::collections::BTreeMap<String, Vec<String>>>,
}

/// One `guardrails[]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileGuardrail {
    pub name: String,
    /// `request`, `response` (default both).
    #[serde(default)]
    pub on: Option<Vec<String>>,
    #[serde(default)]
    pub pii: Option<Vec<String>>,
    #[serde(default)]
    pub words: Option<Vec<String>>,
    #[serde(default)]
    pub regex: Option<Vec<String>>,
    /// `redact` (default) | `block` | `flag`.
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub max_input_tokens: Option<Lenient<u64>>,
    #[serde(default)]
    pub max_output_tokens: Option<Lenient<u64>>,
    /// An external policy service asked on each request.
    #[serde(default)]
    pub webhook: Option<FileGuardrailWebhook>,
}

/// `guardrails[].webhook`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileGuardrailWebhook {
    pub url: String,
    /// Default 1s.
    #[serde(default)]
    pub timeout: Option<String>,
    /// `allow` (default) | `block`: what a timeout or an error decides.
    #[serde(default)]
    pub on_error: Option<String>,
}

/// `cache`: the response cache's backend and defaults.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCache {
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub max_bytes: Option<Lenient<u64>>,
    #[serde(default)]
    pub ttl: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub semantic: Option<FileSemantic>,
}

/// `cache.semantic`: near-duplicate prompts hit too.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSemantic {
    #[serde(default)]
    pub embedding_model: Option<String>,
    #[serde(default)]
    pub threshold: Option<Lenient<f64>>,
    #[serde(default)]
    pub max_entries: Option<Lenient<u64>>,
}

/// `models[].cache`: opts a model into the response cache.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileModelCache {
    #[serde(default)]
    pub ttl: Option<String>,
}

/// One `events[]` receiver.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEventSink {
    pub url: String,
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub on: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileResponses {
    /// How long a stored response is kept (default 30 days).
    #[serde(default)]
    pub ttl: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePassthrough {
    pub path: String,
    pub provider: String,
    #[serde(default)]
    pub price: Option<FilePassthroughPrice>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePassthroughPrice {
    pub per_request: Lenient<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileBudget {
    pub scope: String,
    pub limit: Lenient<f64>,
    pub period: String,
    #[serde(default)]
    pub soft_ratio: Option<Lenient<f64>>,
    #[serde(default)]
    pub on_exhaust: Option<String>,
    #[serde(default)]
    pub alert_webhook: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLimits {
    #[serde(default)]
    pub requests_per_minute: Option<Lenient<u64>>,
    #[serde(default)]
    pub tokens_per_minute: Option<Lenient<u64>>,
    #[serde(default)]
    pub concurrency: Option<Lenient<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAuth {
    #[serde(default)]
    pub api_keys: Vec<FileApiKey>,
    #[serde(default)]
    pub oauth: Option<FileOAuth>,
    /// Failed authentications per client address per minute before it is slowed down
    /// (Switchyard extension; default 30).
    #[serde(default)]
    pub max_failures_per_minute: Option<Lenient<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileApiKey {
    pub name: String,
    #[serde(default)]
    pub key_sha256: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub team: Option<String>,
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    pub models: Option<Vec<String>>,
    #[serde(default)]
    pub expires: Option<String>,
    /// Client networks (CIDR) the key may be used from (Switchyard extension).
    #[serde(default)]
    pub ip_allow: Option<Vec<String>>,
    #[serde(default)]
    pub metadata: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default)]
    pub limits: Option<FileLimits>,
    /// Guardrail names applied on top of the model's.
    #[serde(default)]
    pub guardrails: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileOAuth {
    pub issuer: String,
    pub audience: String,
    pub jwks_url: String,
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    #[serde(default)]
    pub claims: Option<FileClaims>,
    /// Clock leeway for exp/nbf (Switchyard extension; default 60s).
    #[serde(default)]
    pub leeway: Option<String>,
    /// JWKS refresh interval (Switchyard extension; default 10m).
    #[serde(default)]
    pub refresh: Option<String>,
    /// RFC 7662 introspection for opaque tokens.
    #[serde(default)]
    pub introspection: Option<FileIntrospection>,
    /// Scope that lets a token use the admin API (Switchyard extension; default switchyard:admin).
    #[serde(default)]
    pub admin_scope: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileIntrospection {
    pub url: String,
    pub client_id: String,
    pub client_secret: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileClaims {
    #[serde(default)]
    pub team: Option<String>,
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileStore {
    pub kind: String,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    /// Spend ledger: how often queued rows are committed (default 1s).
    #[serde(default)]
    pub flush_interval: Option<String>,
    /// Spend ledger: `batched` (default) or `strict` (a response's last bytes wait for its row).
    #[serde(default)]
    pub durability: Option<String>,
    /// Redis store: `fail_open` (default: enforce on this node alone) or `fail_closed` (refuse
    /// with 503) while Redis is unreachable.
    #[serde(default)]
    pub on_unavailable: Option<String>,
    /// PostgreSQL store: the Redis for budgets, limits and the shared cache.
    #[serde(default)]
    pub redis_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileServer {
    #[serde(default)]
    pub listen: Vec<String>,
    #[serde(default)]
    pub admin_listen: Option<String>,
    #[serde(default)]
    pub admin_token: Option<String>,
    /// Names this replica in ledger rows, the access log and `/v1/health` (default: host name).
    #[serde(default)]
    pub replica_id: Option<String>,
    #[serde(default)]
    pub threads: Option<Lenient<usize>>,
    #[serde(default)]
    pub max_body_bytes: Option<Lenient<u64>>,
    #[serde(default)]
    pub max_header_bytes: Option<Lenient<u64>>,
    #[serde(default)]
    pub public_health: Option<Lenient<bool>>,
    /// `GET /` on the admin listener serves the operator's status page (default true).
    #[serde(default)]
    pub status_page: Option<Lenient<bool>>,
    /// Most Switchyard hops a request may take through a mesh of nodes (Switchyard extension).
    #[serde(default)]
    pub max_hops: Option<Lenient<u32>>,
    /// How long a graceful shutdown waits for in-flight requests (Switchyard extension).
    #[serde(default)]
    pub grace_period: Option<String>,
    #[serde(default)]
    pub tls: Option<FileTls>,
    /// How long a caller may take to send its request (Switchyard extension).
    #[serde(default)]
    pub client_timeouts: Option<FileClientTimeouts>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileClientTimeouts {
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub idle: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTls {
    pub listen: String,
    pub cert: String,
    pub key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileProvider {
    pub name: String,
    pub kind: String,
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub api_key: Option<String>,
    #[serde(default)]
    pub timeouts: Option<FileTimeouts>,
    /// PEM CA bundle that signs an internal HTTPS endpoint (Switchyard extension).
    #[serde(default)]
    pub ca_file: Option<String>,
    // kind: mock
    #[serde(default)]
    pub latency: Option<String>,
    #[serde(default)]
    pub chunks: Option<Lenient<usize>>,
    #[serde(default)]
    pub chunk_interval: Option<String>,
    // Contract keys owned by later work.
    #[serde(default)]
    pub rate_limit: Option<FileRateLimit>,
    #[serde(default)]
    pub health_check: Option<FileHealthCheck>,
    #[serde(default)]
    pub device: Option<Value>,
    #[serde(default)]
    pub workers: Option<Value>,
    #[serde(default)]
    pub queue: Option<Value>,
    /// `kind: local`: the longest a job may wait in the queue before it spills (default 2s).
    #[serde(default)]
    pub max_wait: Option<String>,
    /// `kind: local`: path of the ONNX Runtime library (default: `ORT_DYLIB_PATH`).
    #[serde(default)]
    pub library: Option<String>,
    /// `kind: local`: CPU cores to pin the worker threads to (extension).
    #[serde(default)]
    pub cores: Option<Value>,
    /// Extra headers sent on every request (any HTTP kind).
    #[serde(default)]
    pub headers: Option<std::collections::BTreeMap<String, String>>,
    /// Egress through an HTTP CONNECT proxy, `http://[user:pass@]host:port` (any HTTP kind).
    #[serde(default)]
    pub proxy: Option<String>,
    /// `kind: azure`: the `?api-version=` of every call.
    #[serde(default)]
    pub api_version: Option<String>,
    /// `kind: azure`: Entra ID client credentials instead of `api_key`.
    #[serde(default)]
    pub entra: Option<FileEntra>,
    /// `kind: bedrock`: the AWS region (signing scope, default `base_url`).
    #[serde(default)]
    pub region: Option<String>,
    /// `kind: bedrock`: static AWS credentials.
    #[serde(default)]
    pub aws_access_key_id: Option<String>,
    #[serde(default)]
    pub aws_secret_access_key: Option<String>,
    /// `kind: bedrock`: the session token of temporary credentials (empty: none).
    #[serde(default)]
    pub aws_session_token: Option<String>,
    /// `kind: vertex`: the Google Cloud project.
    #[serde(default)]
    pub project: Option<String>,
    /// `kind: vertex`: the region (e.g. `europe-west4`, or `global`).
    #[serde(default)]
    pub location: Option<String>,
    /// `kind: vertex`: the service-account JSON key file.
    #[serde(default)]
    pub credentials_file: Option<String>,
    /// `native`: `POST /v1/responses` goes to this provider's `/responses` as is; `chat`
    /// (default): translated like chat.
    #[serde(default)]
    pub responses: Option<String>,
}

/// `entra:` of a `kind: azure` provider.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntra {
    #[serde(default)]
    pub tenant_id: Option<String>,
    pub client_id: String,
    pub client_secret: String,
    /// Default: `https://login.microsoftonline.com/{tenant_id}/oauth2/v2.0/token`.
    #[serde(default)]
    pub token_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRateLimit {
    #[serde(default)]
    pub requests_per_minute: Option<Lenient<u64>>,
    #[serde(default)]
    pub tokens_per_minute: Option<Lenient<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHealthCheck {
    #[serde(default)]
    pub interval: Option<String>,
    #[serde(default)]
    pub timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTimeouts {
    #[serde(default)]
    pub connect: Option<String>,
    #[serde(default)]
    pub first_byte: Option<String>,
    #[serde(default)]
    pub idle: Option<String>,
    #[serde(default)]
    pub total: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileModel {
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub strategy: Option<String>,
    #[serde(default)]
    pub retry: Option<FileRetry>,
    #[serde(default)]
    pub deadline: Option<String>,
    #[serde(default)]
    pub deployments: Vec<FileDeployment>,
    /// `conditional` strategy: ordered rules, the first match wins.
    #[serde(default)]
    pub rules: Option<Vec<FileRule>>,
    /// `lowest_latency_under_budget`: most a single request may be expected to cost (USD).
    #[serde(default)]
    pub max_cost_per_request: Option<Lenient<f64>>,
    // Contract keys owned by later work.
    #[serde(default)]
    pub strict: Option<Value>,
    #[serde(default)]
    pub hedge_after: Option<String>,
    #[serde(default)]
    pub circuit_breaker: Option<FileBreaker>,
    /// Guardrail names applied to every request for this model.
    #[serde(default)]
    pub guardrails: Option<Vec<String>>,
    /// Other public models tried, in order, when every deployment of this one failed or none
    /// could take the request.
    #[serde(default)]
    pub fallbacks: Option<Vec<String>>,
    /// `model: "auto"`-style models: route across these models' deployments.
    #[serde(default)]
    pub candidates: Option<Vec<String>>,
    /// Body `task` → the candidates it narrows to.
    #[serde(default)]
    pub tasks: Option<std::collections::BTreeMap<String, Vec<String>>>,
    /// `user | key | header:<name>`: a caller keeps its deployment while it is healthy.
    #[serde(default)]
    pub sticky: Option<String>,
    /// Opts this model into the response cache (`cache: { ttl }`).
    #[serde(default)]
    pub cache: Option<FileModelCache>,
    /// `auto`: cache breakpoints added for Anthropic deployments; `off` (default).
    #[serde(default)]
    pub prompt_cache: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRule {
    /// No `when`: always matches (a default rule).
    #[serde(default)]
    pub when: Option<FileWhen>,
    /// Provider names selecting a subset of the model's deployments (default: all).
    #[serde(default)]
    pub deployments: Option<Vec<String>>,
    #[serde(default)]
    pub strategy: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileWhen {
    /// A request header's name (with `equals`).
    #[serde(default)]
    pub header: Option<String>,
    /// A key of the request body's `metadata` object (with `equals`).
    #[serde(default)]
    pub metadata: Option<String>,
    /// The model name the caller used (a public name or an alias).
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub equals: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDeployment {
    pub provider: String,
    pub model: String,
    #[serde(default)]
    pub price: Option<FilePrice>,
    #[serde(default)]
    pub weight: Option<Lenient<u32>>,
    #[serde(default)]
    pub priority: Option<Lenient<i64>>,
    #[serde(default)]
    pub max_tokens: Option<Lenient<u64>>,
    /// 0..100: ranks deployments for strategy `quality`.
    #[serde(default)]
    pub quality: Option<Lenient<f64>>,
    /// Tokens: a request whose prompt cannot fit skips this deployment.
    #[serde(default)]
    pub context_window: Option<Lenient<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePrice {
    pub input_per_mtok: Lenient<f64>,
    pub output_per_mtok: Lenient<f64>,
    #[serde(default)]
    pub cached_input_per_mtok: Option<Lenient<f64>>,
    #[serde(default)]
    pub cache_write_input_per_mtok: Option<Lenient<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRouting {
    /// `wait` (default): probe providers that have a health_check before accepting traffic;
    /// `background`: accept at once and probe meanwhile (Switchyard extension).
    #[serde(default)]
    pub startup_probe: Option<String>,
    #[serde(default)]
    pub strategy: Option<String>,
    #[serde(default)]
    pub retry: Option<FileRetry>,
    #[serde(default)]
    pub deadline: Option<String>,
    #[serde(default)]
    pub circuit_breaker: Option<FileBreaker>,
    /// The reputation score's decaying window (strategy `reliability`).
    #[serde(default)]
    pub reputation: Option<FileReputation>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileReputation {
    /// How long until an observation counts half (default 30s).
    #[serde(default)]
    pub half_life: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileBreaker {
    #[serde(default)]
    pub failures: Option<Lenient<u32>>,
    #[serde(default)]
    pub open_for: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRetry {
    #[serde(default)]
    pub attempts: Option<Lenient<u32>>,
    #[serde(default)]
    pub backoff: Option<FileBackoff>,
    #[serde(default)]
    pub on: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileBackoff {
    #[serde(default)]
    pub base: Option<String>,
    #[serde(default)]
    pub max: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTelemetry {
    #[serde(default)]
    pub access_log: Option<String>,
    /// Admin actions and authentication failures, one JSON object a line (Switchyard extension).
    #[serde(default)]
    pub audit_log: Option<String>,
    /// OpenTelemetry traces over OTLP/HTTP JSON (Switchyard extension).
    #[serde(default)]
    pub otlp: Option<FileOtlp>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileOtlp {
    pub endpoint: String,
    #[serde(default)]
    pub sample_ratio: Option<Lenient<f64>>,
    #[serde(default)]
    pub headers: Option<std::collections::BTreeMap<String, String>>,
}
