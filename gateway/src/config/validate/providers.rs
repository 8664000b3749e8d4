//! The `providers` section: each provider's kind, endpoint, credentials, timeouts and trust
//! anchors.

use super::*;

pub(super) const SUPPORTED_KINDS: &[&str] = &[
    "openai",
    "anthropic",
    "gemini",
    "cloudflare",
    "ollama",
    "azure",
    "bedrock",
    "vertex",
    "local",
    "mock",
];

pub(super) const LATER_KINDS: &[&str] = &[];

pub(super) fn providers(
    list: &[FileProvider],
    errs: &mut Errors,
) -> HashMap<String, (usize, Arc<Provider>)> {
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
        reject_cloud_keys(p, &path, errs);
        let kind = match p.kind.as_str() {
            "openai" => http_kind(Dialect::OpenAi, p, None, &path, errs),
            "anthropic" => http_kind(Dialect::Anthropic, p, None, &path, errs),
            "gemini" => http_kind(Dialect::Gemini, p, None, &path, errs),
            "cloudflare" => http_kind(Dialect::Cloudflare, p, None, &path, errs),
            "ollama" => http_kind(Dialect::Ollama, p, None, &path, errs),
            "azure" => azure_kind(p, &path, errs),
            "bedrock" => bedrock_kind(p, &path, errs),
            "vertex" => vertex_kind(p, &path, errs),
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
                let kinds: Vec<&str> = SUPPORTED_KINDS.iter().chain(LATER_KINDS).copied().collect();
                errs.unknown_value(format!("{path}.kind"), "provider kind", k, &kinds);
                None
            }
        };
        let responses_native = match p.responses.as_deref() {
            None | Some("chat") => false,
            Some("native") if p.kind == "openai" => true,
            Some("native") => {
                errs.push(
                    format!("{path}.responses"),
                    "`native` needs an OpenAI-compatible provider (kind: openai)",
                );
                false
            }
            Some(other) => {
                errs.unknown_value(
                    format!("{path}.responses"),
                    "responses mode",
                    other,
                    &["chat", "native"],
                );
                false
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
                        responses_native,
                    }),
                ),
            );
        }
    }
    out
}

pub(super) fn reject_keys(
    p: &FileProvider,
    path: &str,
    kind: &str,
    keys: &[(&str, bool)],
    errs: &mut Errors,
) {
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

pub(super) fn http_kind(
    dialect: Dialect,
    p: &FileProvider,
    default_url: Option<String>,
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
    let Some(url) = p.base_url.clone().or(default_url) else {
        errs.push(
            format!("{path}.base_url"),
            format!("required for kind {}", dialect.name()),
        );
        return None;
    };
    let endpoint = match parse_endpoint(&url) {
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
    let headers = extra_headers(p, path, errs);
    let proxy = egress_proxy(p, path, errs);
    Some(ProviderKind::Http {
        dialect,
        endpoint,
        api_key,
        ca,
        headers,
        cloud: None,
        proxy,
    })
}

pub(super) fn local_kind(p: &FileProvider, path: &str, errs: &mut Errors) -> Option<ProviderKind> {
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
            ("headers", p.headers.is_some()),
            ("proxy", p.proxy.is_some()),
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

pub(super) fn mock_kind(p: &FileProvider, path: &str, errs: &mut Errors) -> Option<ProviderKind> {
    reject_keys(
        p,
        path,
        "mock",
        &[
            ("base_url", p.base_url.is_some()),
            ("headers", p.headers.is_some()),
            ("proxy", p.proxy.is_some()),
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
pub(super) fn load_ca_bundle(file: &str) -> Result<CaBundle, String> {
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

pub(super) fn timeouts(t: Option<&FileTimeouts>, path: &str, errs: &mut Errors) -> Timeouts {
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

#[cfg(test)]
mod responses_tests {
    const FILE: &str = "server:\n  listen: [\"127.0.0.1:8080\"]\nproviders:\n  - { name: o, kind: openai, base_url: \"http://127.0.0.1:9/v1\", responses: native }\n  - { name: sim, kind: mock }\nmodels:\n  - name: chat\n    deployments:\n      - { provider: o, model: x }\nresponses: { ttl: 90s }\n";

    #[test]
    fn responses_native_and_ttl_are_read_and_checked() {
        let c = crate::config::parse(FILE, &|_| None).unwrap();
        assert!(c.providers[0].responses_native);
        assert!(!c.providers[1].responses_native);
        assert_eq!(c.responses_ttl, std::time::Duration::from_secs(90));
        let default = FILE.replace("responses: { ttl: 90s }\n", "");
        let c = crate::config::parse(&default, &|_| None).unwrap();
        assert_eq!(
            c.responses_ttl,
            std::time::Duration::from_secs(30 * 24 * 3600)
        );
        for (from, to, path) in [
            (
                "kind: mock }",
                "kind: mock, responses: native }",
                "providers[1].responses",
            ),
            (
                "responses: native }",
                "responses: nativ }",
                "providers[0].responses",
            ),
            ("ttl: 90s", "ttl: soon", "responses.ttl"),
        ] {
            let errs = crate::config::parse(&FILE.replace(from, to), &|_| None).unwrap_err();
            let text = format!("{errs:?}");
            assert!(text.contains(path), "{path}: {text}");
        }
    }
}
