//! File model → validated model, collecting every error with its key path.

use super::endpoint::parse_endpoint;
use super::file::*;
use super::model::*;
use super::ConfigError;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

const SUPPORTED_KINDS: &[&str] = &[
    "openai",
    "anthropic",
    "gemini",
    "cloudflare",
    "ollama",
    "local",
    "mock",
];
const LATER_KINDS: &[&str] = &[];
const DEFAULT_MAX_BODY: u64 = 8 * 1024 * 1024;

struct Errors(Vec<ConfigError>);

impl Errors {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError {
            path: path.into(),
            message: message.into(),
        });
    }

    fn duration(&mut self, path: String, value: Option<&str>, default: Duration) -> Duration {
        match value {
            None => default,
            Some(s) => match humantime::parse_duration(s.trim()) {
                Ok(d) => d,
                Err(e) => {
                    self.push(
                        path,
                        format!("invalid duration {s:?}: {e} (use e.g. 250ms, 10s, 5m)"),
                    );
                    default
                }
            },
        }
    }

    /// "must be greater than 0" for each zero duration of `values`, at `path(key)`.
    fn positive(&mut self, path: impl Fn(&str) -> String, values: &[(&str, Duration)]) {
        for (k, v) in values {
            if v.is_zero() {
                self.push(path(k), "must be greater than 0");
            }
        }
    }
}

/// Validates a parsed file. Returns every problem found, not just the first.
pub fn validate(file: FileConfig) -> Result<Config, Vec<ConfigError>> {
    let mut errs = Errors(Vec::new());

    let server = server_settings(&file.server, &mut errs);
    let routing = routing_defaults(file.routing.as_ref(), &mut errs);
    let providers = providers(&file.providers, &mut errs);
    let models = models(&file.models, &providers, &routing, &mut errs);
    let telemetry = telemetry(file.telemetry.as_ref(), &mut errs);
    let model_names: HashSet<&str> = file.models.iter().map(|m| m.name.as_str()).collect();
    let auth = file
        .auth
        .as_ref()
        .map(|a| super::validate_auth::auth(a, &model_names, &mut errs.0));
    let store = store(file.store.as_ref(), &mut errs);
    let budgets = budgets(
        file.budgets.as_deref().unwrap_or_default(),
        &providers,
        &mut errs,
    );
    let key_limits = file
        .auth
        .iter()
        .flat_map(|a| a.api_keys.iter().enumerate())
        .filter_map(|(i, k)| {
            let l = limits(
                k.limits.as_ref()?,
                &format!("auth.api_keys[{i}].limits"),
                &mut errs,
            );
            Some((k.name.clone(), l))
        })
        .collect();
    let team_limits = file
        .team_limits
        .iter()
        .flatten()
        .map(|(team, l)| {
            (
                team.clone(),
                limits(l, &format!("team_limits.{team}"), &mut errs),
            )
        })
        .collect();
    let startup_probe_wait = match file
        .routing
        .as_ref()
        .and_then(|r| r.startup_probe.as_deref())
    {
        None | Some("wait") => true,
        Some("background") => false,
        Some(other) => {
            errs.push(
                "routing.startup_probe",
                format!("expected wait or background, not {other:?}"),
            );
            true
        }
    };

    if errs.0.is_empty() {
        Ok(Config {
            server,
            providers: providers.into_values().collect_sorted(),
            models,
            telemetry,
            auth,
            store,
            budgets,
            key_limits,
            team_limits,
            startup_probe_wait,
        })
    } else {
        Err(errs.0)
    }
}

/// Providers keep their file order for display.
trait CollectSorted {
    fn collect_sorted(self) -> Vec<Arc<Provider>>;
}

impl<I: Iterator<Item = (usize, Arc<Provider>)>> CollectSorted for I {
    fn collect_sorted(self) -> Vec<Arc<Provider>> {
        let mut v: Vec<_> = self.collect();
        v.sort_by_key(|(i, _)| *i);
        v.into_iter().map(|(_, p)| p).collect()
    }
}

fn server_settings(s: &FileServer, errs: &mut Errors) -> ServerSettings {
    if s.listen.is_empty() {
        errs.push("server.listen", "at least one listen address is required");
    }
    for (i, addr) in s.listen.iter().enumerate() {
        if addr.parse::<SocketAddr>().is_err() {
            errs.push(
                format!("server.listen[{i}]"),
                format!("invalid address {addr:?} (expected IP:PORT, e.g. 127.0.0.1:8080)"),
            );
        }
    }
    if let Some(addr) = &s.admin_listen {
        if addr.parse::<SocketAddr>().is_err() {
            errs.push(
                "server.admin_listen",
                format!("invalid address {addr:?} (expected IP:PORT)"),
            );
        } else if s.listen.iter().any(|l| l == addr) {
            errs.push(
                "server.admin_listen",
                "must differ from every server.listen address",
            );
        }
    }
    let tls = s.tls.as_ref().and_then(|t| {
        let mut ok = true;
        if t.listen.parse::<SocketAddr>().is_err() {
            errs.push(
                "server.tls.listen",
                format!("invalid address {:?} (expected IP:PORT)", t.listen),
            );
            ok = false;
        } else if s.listen.contains(&t.listen) || s.admin_listen.as_ref() == Some(&t.listen) {
            errs.push(
                "server.tls.listen",
                "must differ from the plain-text and admin listeners",
            );
            ok = false;
        }
        if let Err(e) = pingora_rustls::load_certs_and_key_files(&t.cert, &t.key)
            .map_err(|e| e.to_string())
            .and_then(|r| r.ok_or_else(|| "no certificate found".to_string()))
        {
            errs.push(
                "server.tls",
                format!("cannot load cert {:?} / key {:?}: {e}", t.cert, t.key),
            );
            ok = false;
        }
        ok.then(|| TlsListener {
            listen: t.listen.clone(),
            cert_path: t.cert.clone(),
            key_path: t.key.clone(),
        })
    });
    let admin_token = s
        .admin_token
        .as_ref()
        .filter(|t| !t.is_empty())
        .map(|t| Secret::new(t.clone()));
    if admin_token.as_ref().is_some_and(|t| t.expose().len() < 16) {
        errs.push("server.admin_token", "must be at least 16 characters");
    }
    let threads = match s.threads {
        Some(Lenient(0)) => {
            errs.push("server.threads", "must be at least 1");
            1
        }
        Some(Lenient(n)) => n,
        None => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
    };
    let max_body_bytes = match s.max_body_bytes {
        Some(Lenient(0)) => {
            errs.push("server.max_body_bytes", "must be greater than 0");
            DEFAULT_MAX_BODY
        }
        Some(Lenient(n)) => n,
        None => DEFAULT_MAX_BODY,
    };
    let grace_period = errs.duration(
        "server.grace_period".into(),
        s.grace_period.as_deref(),
        Duration::from_secs(30),
    );
    let client_timeouts = client_timeouts(s.client_timeouts.as_ref(), errs);
    ServerSettings {
        listen: s.listen.clone(),
        admin_listen: s.admin_listen.clone(),
        threads,
        max_body_bytes,
        grace_period,
        tls,
        admin_token,
        public_health: s.public_health.map(|p| p.0).unwrap_or(false),
        max_hops: s.max_hops.map(|h| h.0).unwrap_or(8),
        client_timeouts,
    }
}

fn client_timeouts(t: Option<&FileClientTimeouts>, errs: &mut Errors) -> ClientTimeouts {
    let d = ClientTimeouts::default();
    let Some(t) = t else { return d };
    let p = |k: &str| format!("server.client_timeouts.{k}");
    let out = ClientTimeouts {
        header: errs.duration(p("header"), t.header.as_deref(), d.header),
        body: errs.duration(p("body"), t.body.as_deref(), d.body),
        idle: errs.duration(p("idle"), t.idle.as_deref(), d.idle),
    };
    errs.positive(p, &[("header", out.header), ("body", out.body)]);
    // Pingora keeps connections alive for whole seconds (and 0 would mean forever).
    if out.idle < Duration::from_secs(1) || out.idle.subsec_nanos() != 0 {
        errs.push(p("idle"), "must be a whole number of seconds, at least 1s");
    }
    out
}

fn providers(list: &[FileProvider], errs: &mut Errors) -> HashMap<String, (usize, Arc<Provider>)> {
    let mut out = HashMap::new();
    for (i, p) in list.iter().enumerate() {
        let path = format!("providers[{i}]");
        if p.name.trim().is_empty() {
            errs.push(format!("{path}.name"), "must not be empty");
            continue;
        }
        if out.contains_key(&p.name) {
            errs.push(
                format!("{path}.name"),
                format!("duplicate provider name {:?}", p.name),
            );
            continue;
        }
        let quota = p.rate_limit.as_ref().map(|r| {
            for (k, v) in [
                ("requests_per_minute", r.requests_per_minute),
                ("tokens_per_minute", r.tokens_per_minute),
            ] {
                if v.is_some_and(|v| v.0 == 0) {
                    errs.push(format!("{path}.rate_limit.{k}"), "must be at least 1");
                }
            }
            Quota {
                requests_per_minute: r.requests_per_minute.map(|v| v.0),
                tokens_per_minute: r.tokens_per_minute.map(|v| v.0),
            }
        });
        let health_check = p.health_check.as_ref().map(|h| HealthCheckSettings {
            interval: errs.duration(
                format!("{path}.health_check.interval"),
                h.interval.as_deref(),
                Duration::from_secs(10),
            ),
            timeout: errs.duration(
                format!("{path}.health_check.timeout"),
                h.timeout.as_deref(),
                Duration::from_secs(2),
            ),
        });
        let timeouts = timeouts(p.timeouts.as_ref(), &path, errs);
        let kind = match p.kind.as_str() {
            "openai" => http_kind(Dialect::OpenAi, p, &path, errs),
            "anthropic" => http_kind(Dialect::Anthropic, p, &path, errs),
            "gemini" => http_kind(Dialect::Gemini, p, &path, errs),
            "cloudflare" => http_kind(Dialect::Cloudflare, p, &path, errs),
            "ollama" => http_kind(Dialect::Ollama, p, &path, errs),
            "mock" => mock_kind(p, &path, errs),
            "local" => local_kind(p, &path, errs),
            k if LATER_KINDS.contains(&k) => {
                errs.push(
                    format!("{path}.kind"),
                    format!(
                        "provider kind {k:?} is not supported by this build yet (supported: {})",
                        SUPPORTED_KINDS.join(", ")
                    ),
                );
                None
            }
            k => {
                errs.push(
                    format!("{path}.kind"),
                    format!(
                        "unknown provider kind {k:?} (expected one of: {})",
                        SUPPORTED_KINDS
                            .iter()
                            .chain(LATER_KINDS)
                            .copied()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                None
            }
        };
        if let Some(kind) = kind {
            out.insert(
                p.name.clone(),
                (
                    i,
                    Arc::new(Provider {
                        name: p.name.clone(),
                        kind,
                        timeouts,
                        quota,
                        health_check,
                    }),
                ),
            );
        }
    }
    out
}

fn reject_keys(p: &FileProvider, path: &str, kind: &str, keys: &[(&str, bool)], errs: &mut Errors) {
    let _ = p;
    for (key, present) in keys {
        if *present {
            errs.push(
                format!("{path}.{key}"),
                format!("does not apply to kind {kind}"),
            );
        }
    }
}

fn http_kind(
    dialect: Dialect,
    p: &FileProvider,
    path: &str,
    errs: &mut Errors,
) -> Option<ProviderKind> {
    reject_keys(
        p,
        path,
        dialect.name(),
        &[
            ("latency", p.latency.is_some()),
            ("chunks", p.chunks.is_some()),
            ("chunk_interval", p.chunk_interval.is_some()),
            ("device", p.device.is_some()),
            ("workers", p.workers.is_some()),
            ("queue", p.queue.is_some()),
            ("cores", p.cores.is_some()),
        ],
        errs,
    );
    let Some(url) = &p.base_url else {
        errs.push(
            format!("{path}.base_url"),
            format!("required for kind {}", dialect.name()),
        );
        return None;
    };
    let endpoint = match parse_endpoint(url) {
        Ok(e) => e,
        Err(msg) => {
            errs.push(format!("{path}.base_url"), msg);
            return None;
        }
    };
    let api_key = p
        .api_key
        .as_ref()
        .filter(|k| !k.is_empty())
        .map(|k| Secret::new(k.clone()));
    let ca = match &p.ca_file {
        None => None,
        Some(_) if !endpoint.tls => {
            errs.push(
                format!("{path}.ca_file"),
                "only applies to an https:// base_url",
            );
            None
        }
        Some(file) => match load_ca_bundle(file) {
            Ok(b) => Some(b),
            Err(e) => {
                errs.push(format!("{path}.ca_file"), e);
                None
            }
        },
    };
    Some(ProviderKind::Http {
        dialect,
        endpoint,
        api_key,
        ca,
    })
}

fn local_kind(p: &FileProvider, path: &str, errs: &mut Errors) -> Option<ProviderKind> {
    if cfg!(not(feature = "local")) {
        errs.push(
            format!("{path}.kind"),
            "local inference is not in this build (it was built without the `local` cargo feature)",
        );
    }
    reject_keys(
        p,
        path,
        "local",
        &[
            ("base_url", p.base_url.is_some()),
            ("api_key", p.api_key.is_some()),
            ("ca_file", p.ca_file.is_some()),
            ("latency", p.latency.is_some()),
            ("chunks", p.chunks.is_some()),
            ("chunk_interval", p.chunk_interval.is_some()),
        ],
        errs,
    );
    let count =
        |key: &str, v: Option<&serde_yaml::Value>, default: usize, errs: &mut Errors| match v {
            None => default,
            Some(v) => match v
                .as_u64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            {
                Some(n) if (1..=1024).contains(&n) => n as usize,
                _ => {
                    errs.push(
                        format!("{path}.{key}"),
                        "must be a whole number from 1 to 1024",
                    );
                    default
                }
            },
        };
    let workers = count("workers", p.workers.as_ref(), 1, errs);
    let queue = count("queue", p.queue.as_ref(), 64, errs);
    let device = match p.device.as_ref().map(|d| d.as_str().unwrap_or("")) {
        None | Some("auto") => Device::Auto,
        Some("cpu") => Device::Cpu,
        Some("cuda") => Device::Cuda,
        Some(other) => {
            errs.push(
                format!("{path}.device"),
                format!("expected auto, cpu or cuda, not {other:?}"),
            );
            Device::Auto
        }
    };
    let cores = match p.cores.as_ref() {
        None => Vec::new(),
        Some(v) => {
            let list: Option<Vec<usize>> = v.as_sequence().and_then(|items| {
                items
                    .iter()
                    .map(|i| i.as_u64().filter(|n| *n < 4096).map(|n| n as usize))
                    .collect()
            });
            match list {
                Some(l) if !l.is_empty() => l,
                _ => {
                    errs.push(
                        format!("{path}.cores"),
                        "must be a non-empty list of CPU core numbers, e.g. [2, 3]",
                    );
                    Vec::new()
                }
            }
        }
    };
    let max_wait = errs.duration(
        format!("{path}.max_wait"),
        p.max_wait.as_deref(),
        Duration::from_secs(2),
    );
    Some(ProviderKind::Local(LocalSettings {
        workers,
        queue,
        max_wait,
        library: p
            .library
            .as_deref()
            .filter(|l| !l.is_empty())
            .map(Into::into),
        device,
        cores,
    }))
}

fn mock_kind(p: &FileProvider, path: &str, errs: &mut Errors) -> Option<ProviderKind> {
    reject_keys(
        p,
        path,
        "mock",
        &[
            ("base_url", p.base_url.is_some()),
            ("api_key", p.api_key.is_some()),
            ("ca_file", p.ca_file.is_some()),
            ("device", p.device.is_some()),
            ("workers", p.workers.is_some()),
            ("queue", p.queue.is_some()),
            ("max_wait", p.max_wait.is_some()),
            ("library", p.library.is_some()),
            ("cores", p.cores.is_some()),
        ],
        errs,
    );
    let latency = errs.duration(
        format!("{path}.latency"),
        p.latency.as_deref(),
        Duration::ZERO,
    );
    let chunk_interval = errs.duration(
        format!("{path}.chunk_interval"),
        p.chunk_interval.as_deref(),
        Duration::ZERO,
    );
    let chunks = match p.chunks {
        Some(Lenient(0)) => {
            errs.push(format!("{path}.chunks"), "must be at least 1");
            1
        }
        Some(Lenient(n)) => n,
        None => 8,
    };
    Some(ProviderKind::Mock(MockSettings {
        latency,
        chunks,
        chunk_interval,
    }))
}

/// Reads a PEM CA bundle, checking that every certificate parses.
fn load_ca_bundle(file: &str) -> Result<CaBundle, String> {
    let data = std::fs::read(file).map_err(|e| format!("cannot read {file:?}: {e}"))?;
    let mut certs = Vec::new();
    for item in rustls_pemfile::certs(&mut data.as_slice()) {
        let der = item.map_err(|e| format!("invalid PEM in {file:?}: {e}"))?;
        x509_parser::parse_x509_certificate(der.as_ref())
            .map_err(|e| format!("invalid certificate in {file:?}: {e}"))?;
        certs.push(der.to_vec());
    }
    if certs.is_empty() {
        return Err(format!("no certificate found in {file:?}"));
    }
    Ok(CaBundle {
        path: file.to_string(),
        certs,
    })
}

fn timeouts(t: Option<&FileTimeouts>, path: &str, errs: &mut Errors) -> Timeouts {
    let d = Timeouts::default();
    let Some(t) = t else { return d };
    let p = |k: &str| format!("{path}.timeouts.{k}");
    let out = Timeouts {
        connect: errs.duration(p("connect"), t.connect.as_deref(), d.connect),
        first_byte: errs.duration(p("first_byte"), t.first_byte.as_deref(), d.first_byte),
        idle: errs.duration(p("idle"), t.idle.as_deref(), d.idle),
        total: errs.duration(p("total"), t.total.as_deref(), d.total),
    };
    errs.positive(
        p,
        &[
            ("connect", out.connect),
            ("first_byte", out.first_byte),
            ("idle", out.idle),
            ("total", out.total),
        ],
    );
    out
}

fn routing_defaults(r: Option<&FileRouting>, errs: &mut Errors) -> RoutingPolicy {
    let base = RoutingPolicy::default();
    let Some(r) = r else { return base };
    apply_routing(
        base,
        "routing",
        r.strategy.as_deref(),
        r.retry.as_ref(),
        r.deadline.as_deref(),
        r.circuit_breaker.as_ref(),
        errs,
    )
}

fn apply_routing(
    base: RoutingPolicy,
    path: &str,
    strategy: Option<&str>,
    retry: Option<&FileRetry>,
    deadline: Option<&str>,
    breaker: Option<&FileBreaker>,
    errs: &mut Errors,
) -> RoutingPolicy {
    let mut out = base;
    if let Some(b) = breaker {
        if let Some(Lenient(f)) = b.failures {
            if f == 0 {
                errs.push(
                    format!("{path}.circuit_breaker.failures"),
                    "must be at least 1",
                );
            } else {
                out.breaker.failures = f;
            }
        }
        out.breaker.open_for = errs.duration(
            format!("{path}.circuit_breaker.open_for"),
            b.open_for.as_deref(),
            out.breaker.open_for,
        );
    }
    match strategy {
        None => {}
        Some("priority") => out.strategy = Strategy::Priority,
        Some("round_robin") => out.strategy = Strategy::RoundRobin,
        Some("weighted") => out.strategy = Strategy::Weighted,
        Some("least_latency") => out.strategy = Strategy::LeastLatency,
        Some("cost") => out.strategy = Strategy::Cost,
        Some("lowest_latency_under_budget") => out.strategy = Strategy::LowestLatencyUnderBudget,
        Some("conditional") => out.strategy = Strategy::Conditional,
        Some(s) => errs.push(
            format!("{path}.strategy"),
            format!("unknown strategy {s:?} (expected one of: priority, round_robin, weighted, least_latency, cost, lowest_latency_under_budget, conditional)"),
        ),
    }
    if let Some(r) = retry {
        if let Some(Lenient(a)) = r.attempts {
            if a == 0 {
                errs.push(format!("{path}.retry.attempts"), "must be at least 1");
            } else {
                out.retry.attempts = a;
            }
        }
        if let Some(b) = &r.backoff {
            out.retry.backoff_base = errs.duration(
                format!("{path}.retry.backoff.base"),
                b.base.as_deref(),
                out.retry.backoff_base,
            );
            out.retry.backoff_max = errs.duration(
                format!("{path}.retry.backoff.max"),
                b.max.as_deref(),
                out.retry.backoff_max,
            );
        }
        if let Some(on) = &r.on {
            let mut set = RetryOn {
                connect: false,
                timeout: false,
                too_many_requests: false,
                server_error: false,
            };
            for (i, trigger) in on.iter().enumerate() {
                match trigger.as_str() {
                    "connect" => set.connect = true,
                    "timeout" => set.timeout = true,
                    "429" => set.too_many_requests = true,
                    "5xx" => set.server_error = true,
                    t => errs.push(
                        format!("{path}.retry.on[{i}]"),
                        format!("unknown retry trigger {t:?} (expected connect, timeout, \"429\" or \"5xx\")"),
                    ),
                }
            }
            out.retry.on = set;
        }
    }
    out.deadline = errs.duration(format!("{path}.deadline"), deadline, out.deadline);
    if out.deadline.is_zero() {
        errs.push(format!("{path}.deadline"), "must be greater than 0");
    }
    out
}

fn models(
    list: &[FileModel],
    providers: &HashMap<String, (usize, Arc<Provider>)>,
    defaults: &RoutingPolicy,
    errs: &mut Errors,
) -> Vec<Arc<Model>> {
    let mut names: HashSet<&str> = HashSet::new();
    let mut out = Vec::new();
    if list.is_empty() {
        errs.push("models", "at least one model is required");
    }
    for (i, m) in list.iter().enumerate() {
        let path = format!("models[{i}]");
        if m.name.trim().is_empty() {
            errs.push(format!("{path}.name"), "must not be empty");
        } else if !names.insert(&m.name) {
            errs.push(
                format!("{path}.name"),
                format!("model name {:?} is already used", m.name),
            );
        }
        for (j, a) in m.aliases.iter().enumerate() {
            if a.trim().is_empty() {
                errs.push(format!("{path}.aliases[{j}]"), "must not be empty");
            } else if !names.insert(a) {
                errs.push(
                    format!("{path}.aliases[{j}]"),
                    format!("alias {a:?} is already used by another model or alias"),
                );
            }
        }
        let strict = match &m.strict {
            None => true,
            Some(serde_yaml::Value::Bool(b)) => *b,
            Some(_) => {
                errs.push(format!("{path}.strict"), "must be true or false");
                true
            }
        };
        let routing = apply_routing(
            *defaults,
            &path,
            m.strategy.as_deref(),
            m.retry.as_ref(),
            m.deadline.as_deref(),
            m.circuit_breaker.as_ref(),
            errs,
        );
        let mut routing = routing;
        routing.hedge_after = m.hedge_after.as_deref().map(|h| {
            errs.duration(
                format!("{path}.hedge_after"),
                Some(h),
                Duration::from_millis(400),
            )
        });
        if m.deployments.is_empty() {
            errs.push(
                format!("{path}.deployments"),
                "at least one deployment is required",
            );
        }
        let mut deployments = Vec::new();
        for (j, d) in m.deployments.iter().enumerate() {
            let dpath = format!("{path}.deployments[{j}]");
            let Some((_, provider)) = providers.get(&d.provider) else {
                errs.push(
                    format!("{dpath}.provider"),
                    format!("unknown provider {:?}", d.provider),
                );
                continue;
            };
            if d.model.trim().is_empty() {
                errs.push(format!("{dpath}.model"), "must not be empty");
            } else if let (ProviderKind::Http { .. }, Err(why)) =
                (&provider.kind, path_safe_model(&d.model))
            {
                errs.push(format!("{dpath}.model"), why);
            }
            let price = match &d.price {
                None => Price::default(),
                Some(p) => {
                    let price = Price {
                        input_per_mtok: p.input_per_mtok.0,
                        output_per_mtok: p.output_per_mtok.0,
                        cached_input_per_mtok: p
                            .cached_input_per_mtok
                            .map(|c| c.0)
                            .unwrap_or(p.input_per_mtok.0),
                    };
                    for (k, v) in [
                        ("input_per_mtok", price.input_per_mtok),
                        ("output_per_mtok", price.output_per_mtok),
                        ("cached_input_per_mtok", price.cached_input_per_mtok),
                    ] {
                        if !(v.is_finite() && v >= 0.0) {
                            errs.push(format!("{dpath}.price.{k}"), "must be a number >= 0");
                        }
                    }
                    price
                }
            };
            let weight = d.weight.map(|w| w.0).unwrap_or(1);
            if weight == 0 {
                errs.push(format!("{dpath}.weight"), "must be at least 1");
            }
            deployments.push(Deployment {
                provider: provider.clone(),
                model: d.model.clone(),
                price,
                priority: d.priority.map(|p| p.0).unwrap_or(j as i64),
                weight,
                max_tokens: d.max_tokens.map(|m| m.0),
            });
        }
        // `priority` strategy: lower first, file order breaks ties (stable sort).
        deployments.sort_by_key(|d| d.priority);
        let rules = rules(m, &path, &deployments, &routing, errs);
        let max_cost_per_request = m.max_cost_per_request.map(|c| c.0);
        if routing.strategy == Strategy::LowestLatencyUnderBudget && max_cost_per_request.is_none()
        {
            errs.push(
                format!("{path}.max_cost_per_request"),
                "required by strategy lowest_latency_under_budget (USD per request)",
            );
        }
        if max_cost_per_request.is_some_and(|c| !(c.is_finite() && c > 0.0)) {
            errs.push(
                format!("{path}.max_cost_per_request"),
                "must be a number > 0",
            );
        }
        out.push(Arc::new(Model {
            name: m.name.clone(),
            aliases: m.aliases.clone(),
            deployments,
            routing,
            rules,
            max_cost_per_request,
            strict,
        }));
    }
    out
}

fn log_target(value: Option<&str>, key: &str, errs: &mut Errors) -> AccessLog {
    match value {
        None | Some("stdout") => AccessLog::Stdout,
        Some("off") => AccessLog::Off,
        Some("") => {
            errs.push(key, "must be stdout, off or a file path");
            AccessLog::Off
        }
        Some(path) => AccessLog::File(path.into()),
    }
}

fn rules(
    m: &FileModel,
    path: &str,
    deployments: &[Deployment],
    routing: &RoutingPolicy,
    errs: &mut Errors,
) -> Vec<Rule> {
    let conditional = routing.strategy == Strategy::Conditional;
    let Some(list) = &m.rules else {
        if conditional {
            errs.push(format!("{path}.rules"), "required by strategy conditional");
        }
        return Vec::new();
    };
    if !conditional {
        errs.push(
            format!("{path}.rules"),
            "only applies to strategy conditional",
        );
        return Vec::new();
    }
    let mut out = Vec::new();
    for (i, r) in list.iter().enumerate() {
        let rpath = format!("{path}.rules[{i}]");
        let when = r.when.as_ref().and_then(|w| {
            let set = [w.header.is_some(), w.metadata.is_some(), w.model.is_some()]
                .iter()
                .filter(|x| **x)
                .count();
            if set != 1 {
                errs.push(
                    format!("{rpath}.when"),
                    "give exactly one of header, metadata or model",
                );
                return None;
            }
            if let Some(model) = &w.model {
                if w.equals.is_some() {
                    errs.push(
                        format!("{rpath}.when.equals"),
                        "does not apply to a model condition",
                    );
                }
                return Some(Condition::Model(model.clone()));
            }
            let Some(value) = w.equals.clone() else {
                errs.push(
                    format!("{rpath}.when.equals"),
                    "required with header or metadata",
                );
                return None;
            };
            match (&w.header, &w.metadata) {
                (Some(h), _) => Some(Condition::Header {
                    name: h.to_ascii_lowercase(),
                    value,
                }),
                (_, Some(k)) => Some(Condition::Metadata {
                    key: k.clone(),
                    value,
                }),
                _ => None,
            }
        });
        let picked: Vec<usize> = match &r.deployments {
            None => (0..deployments.len()).collect(),
            Some(names) => {
                let mut idx = Vec::new();
                for (j, n) in names.iter().enumerate() {
                    let found: Vec<usize> = deployments
                        .iter()
                        .enumerate()
                        .filter(|(_, d)| d.provider.name == *n)
                        .map(|(k, _)| k)
                        .collect();
                    if found.is_empty() {
                        errs.push(
                            format!("{rpath}.deployments[{j}]"),
                            format!("no deployment of this model uses provider {n:?}"),
                        );
                    }
                    idx.extend(found);
                }
                idx
            }
        };
        let strategy = match r.strategy.as_deref() {
            None | Some("priority") => Strategy::Priority,
            Some("round_robin") => Strategy::RoundRobin,
            Some("weighted") => Strategy::Weighted,
            Some("least_latency") => Strategy::LeastLatency,
            Some("cost") => Strategy::Cost,
            Some(s) => {
                errs.push(
                    format!("{rpath}.strategy"),
                    format!("{s:?} is not allowed in a rule (priority, round_robin, weighted, least_latency, cost)"),
                );
                Strategy::Priority
            }
        };
        out.push(Rule {
            when,
            deployments: picked,
            strategy,
        });
    }
    out
}

fn telemetry(t: Option<&FileTelemetry>, errs: &mut Errors) -> TelemetrySettings {
    TelemetrySettings {
        access_log: log_target(
            t.and_then(|t| t.access_log.as_deref()),
            "telemetry.access_log",
            errs,
        ),
        audit_log: log_target(
            t.and_then(|t| t.audit_log.as_deref()),
            "telemetry.audit_log",
            errs,
        ),
    }
}

fn store(s: Option<&FileStore>, errs: &mut Errors) -> StoreSettings {
    let Some(s) = s else {
        return StoreSettings::default();
    };
    let flush_interval = errs.duration(
        "store.flush_interval".into(),
        s.flush_interval.as_deref(),
        Duration::from_secs(1),
    );
    if flush_interval.is_zero() || flush_interval > Duration::from_secs(60) {
        errs.push("store.flush_interval", "must be between 1ms and 60s");
    }
    let strict_durability = match s.durability.as_deref() {
        None | Some("batched") => false,
        Some("strict") => true,
        Some(other) => {
            errs.push(
                "store.durability",
                format!("expected batched or strict, not {other:?}"),
            );
            false
        }
    };
    let fail_closed = match s.on_unavailable.as_deref() {
        None | Some("fail_open") => false,
        Some("fail_closed") => true,
        Some(other) => {
            errs.push(
                "store.on_unavailable",
                format!("expected fail_open or fail_closed, not {other:?}"),
            );
            false
        }
    };
    let base = StoreSettings {
        sqlite_path: None,
        flush_interval,
        strict_durability,
        redis: None,
    };
    match s.kind.as_str() {
        "sqlite" => {
            if s.url.is_some() {
                errs.push("store.url", "does not apply to kind sqlite (use path)");
            }
            if s.on_unavailable.is_some() {
                errs.push("store.on_unavailable", "applies to kind redis only");
            }
            match s.path.as_deref() {
                Some(p) if !p.trim().is_empty() => StoreSettings {
                    sqlite_path: Some(p.into()),
                    ..base
                },
                _ => {
                    errs.push("store.path", "required for kind sqlite");
                    base
                }
            }
        }
        "redis" if strict_durability && s.path.is_none() => {
            errs.push(
                "store.durability",
                "strict needs the local ledger file: set store.path",
            );
            base
        }
        "redis" => {
            let url = match s.url.as_deref() {
                Some(u) if u.starts_with("redis://") || u.starts_with("rediss://") => u.to_string(),
                Some(u) => {
                    errs.push(
                        "store.url",
                        format!("expected redis://host:port, not {u:?}"),
                    );
                    String::new()
                }
                None => {
                    errs.push("store.url", "required for kind redis (redis://host:port)");
                    String::new()
                }
            };
            StoreSettings {
                // The spend ledger stays a local file (optional `path`); totals are shared.
                sqlite_path: s
                    .path
                    .as_deref()
                    .filter(|p| !p.trim().is_empty())
                    .map(Into::into),
                redis: Some(RedisSettings { url, fail_closed }),
                ..base
            }
        }
        k => {
            errs.push(
                "store.kind",
                format!("unknown store kind {k:?} (expected sqlite or redis)"),
            );
            base
        }
    }
}

fn budgets(
    list: &[FileBudget],
    providers: &HashMap<String, (usize, Arc<Provider>)>,
    errs: &mut Errors,
) -> Vec<BudgetSettings> {
    let mut out = Vec::with_capacity(list.len());
    let mut seen = HashSet::new();
    for (i, b) in list.iter().enumerate() {
        let path = format!("budgets[{i}]");
        let scope = match b.scope.split_once(':') {
            None if b.scope == "global" => Some(BudgetScope::Global),
            Some(("team", n)) if !n.is_empty() => Some(BudgetScope::Team(n.into())),
            Some(("project", n)) if !n.is_empty() => Some(BudgetScope::Project(n.into())),
            Some(("key", n)) if !n.is_empty() => Some(BudgetScope::Key(n.into())),
            Some(("provider", n)) if providers.contains_key(n) => {
                Some(BudgetScope::Provider(n.into()))
            }
            Some(("provider", n)) => {
                errs.push(format!("{path}.scope"), format!("unknown provider {n:?}"));
                None
            }
            _ => {
                errs.push(
                    format!("{path}.scope"),
                    format!(
                        "expected global, team:<name>, project:<name>, key:<name> or provider:<name>, not {:?}",
                        b.scope
                    ),
                );
                None
            }
        };
        let period = switchyard_filters::budget::Period::parse(&b.period).unwrap_or_else(|| {
            errs.push(
                format!("{path}.period"),
                format!(
                    "expected daily, weekly, monthly or total, not {:?}",
                    b.period
                ),
            );
            switchyard_filters::budget::Period::Total
        });
        let Lenient(limit_usd) = b.limit;
        if !(limit_usd.is_finite() && limit_usd >= 0.0) {
            errs.push(
                format!("{path}.limit"),
                "must be a non-negative amount in USD",
            );
        }
        let soft_ratio = b.soft_ratio.map(|Lenient(r)| r).unwrap_or(0.8);
        if !(0.0..=1.0).contains(&soft_ratio) {
            errs.push(format!("{path}.soft_ratio"), "must be between 0 and 1");
        }
        let cutoff = match b.on_exhaust.as_deref() {
            None | Some("reject") => false,
            Some("cutoff") => true,
            Some(other) => {
                errs.push(
                    format!("{path}.on_exhaust"),
                    format!("expected reject or cutoff, not {other:?}"),
                );
                false
            }
        };
        let alert_webhook = b
            .alert_webhook
            .as_deref()
            .and_then(|u| match parse_endpoint(u) {
                Ok(e) => Some(e),
                Err(msg) => {
                    errs.push(format!("{path}.alert_webhook"), msg);
                    None
                }
            });
        if let Some(scope) = scope {
            if !seen.insert((scope.clone(), period)) {
                errs.push(
                    format!("{path}.scope"),
                    format!("{scope} already has a {} budget", period.name()),
                );
            }
            out.push(BudgetSettings {
                scope,
                limit_usd,
                period,
                soft_ratio,
                alert_webhook,
                cutoff,
            });
        }
    }
    out
}

fn limits(l: &FileLimits, path: &str, errs: &mut Errors) -> RateLimits {
    let mut positive = |key: &str, v: Option<Lenient<u64>>| match v {
        Some(Lenient(0)) => {
            errs.push(
                format!("{path}.{key}"),
                "must be at least 1 (omit it for no limit)",
            );
            None
        }
        Some(Lenient(n)) => Some(n),
        None => None,
    };
    RateLimits {
        requests_per_minute: positive("requests_per_minute", l.requests_per_minute),
        tokens_per_minute: positive("tokens_per_minute", l.tokens_per_minute),
        concurrency: positive("concurrency", l.concurrency),
    }
}

/// An upstream model name goes into URL paths (Gemini, Cloudflare, Azure): it may hold `/`
/// (`@cf/meta/llama-3-8b`, `org/model`) but nothing that changes the URL's meaning or the request
/// line — no whitespace or control character (CR/LF), no `?`, `#`, `%` or `\\`, and no `.` or `..`
/// segment.
fn path_safe_model(model: &str) -> Result<(), String> {
    if let Some(c) = model
        .chars()
        .find(|c| c.is_control() || c.is_whitespace() || matches!(c, '?' | '#' | '%' | '\\'))
    {
        return Err(format!(
            "must be usable in a URL path: {c:?} is not allowed"
        ));
    }
    if model.split('/').any(|seg| seg == "." || seg == "..") {
        return Err("must be usable in a URL path: no `.` or `..` segments".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_model_names_are_path_safe() {
        assert!(path_safe_model("gpt-4o").is_ok());
        assert!(path_safe_model("@cf/meta/llama-3-8b-instruct").is_ok());
        assert!(path_safe_model("org/model.v2:latest").is_ok());
        for bad in [
            "../../admin?x=1#",
            "a\r\nb",
            "a b",
            "x/../y",
            "m%2e",
            "a\\b",
            "./m",
        ] {
            assert!(path_safe_model(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn endpoint_parsing() {
        let e = parse_endpoint("https://api.openai.com/v1/").unwrap();
        assert!(e.tls);
        assert_eq!((e.host.as_str(), e.port), ("api.openai.com", 443));
        assert_eq!(e.path_prefix, "/v1");
        assert_eq!(e.host_header, "api.openai.com");
        assert_eq!(e.path("/chat/completions"), "/v1/chat/completions");
        let e = parse_endpoint("http://127.0.0.1:8000").unwrap();
        assert_eq!(e.path("/chat/completions"), "/chat/completions");
        assert_eq!(e.host_header, "127.0.0.1:8000");
        let e = parse_endpoint("http://[::1]:9000/v1").unwrap();
        assert_eq!(e.host, "::1");
        assert!(parse_endpoint("ftp://x").is_err());
        assert!(parse_endpoint("https://user:pw@x/v1").is_err());
        assert!(parse_endpoint("not a url").is_err());
    }
}
