//! The `store`, `budgets` and rate-limit sections.

use super::*;

/// `cache`: the response cache's backend and defaults.
pub(super) fn cache(
    c: Option<&crate::config::file::FileCache>,
    store: &StoreSettings,
    models: &HashSet<&str>,
    errs: &mut Errors,
) -> crate::config::CacheSettings {
    use crate::config::{CacheScope, CacheSettings};
    let d = CacheSettings::default();
    let Some(c) = c else {
        return d;
    };
    let redis = match c.kind.as_deref() {
        None | Some("memory") => false,
        Some("redis") => {
            if store.redis.is_none() {
                errs.push(
                    "cache.kind",
                    "redis needs the store's Redis (store.kind redis, or store.redis_url)",
                );
            }
            true
        }
        Some(other) => {
            errs.push(
                "cache.kind",
                format!("expected memory or redis, not {other:?}"),
            );
            false
        }
    };
    let scope = match c.scope.as_deref() {
        None | Some("team") => CacheScope::Team,
        Some("key") => CacheScope::Key,
        Some("global") => CacheScope::Global,
        Some(other) => {
            errs.push(
                "cache.scope",
                format!("expected team, key or global, not {other:?}"),
            );
            CacheScope::Team
        }
    };
    let max_bytes = c.max_bytes.as_ref().map(|m| m.0).unwrap_or(d.max_bytes);
    if max_bytes < 1024 {
        errs.push("cache.max_bytes", "must be at least 1024");
    }
    let semantic = c.semantic.as_ref().map(|s| semantic(s, models, errs));
    let ttl = errs.duration("cache.ttl".into(), c.ttl.as_deref(), d.ttl);
    if ttl.is_zero() {
        errs.push("cache.ttl", "must be more than 0");
    }
    CacheSettings {
        enabled: true,
        redis,
        max_bytes,
        ttl,
        scope,
        semantic,
    }
}

/// `cache.semantic`: the embedding model must be one of the file's models.
fn semantic(
    s: &crate::config::file::FileSemantic,
    models: &HashSet<&str>,
    errs: &mut Errors,
) -> crate::config::SemanticSettings {
    let embedding_model = s.embedding_model.clone().unwrap_or_default();
    if embedding_model.is_empty() {
        errs.push(
            "cache.semantic.embedding_model",
            "required: a model that answers /v1/embeddings",
        );
    } else if !models.contains(embedding_model.as_str()) {
        errs.push(
            "cache.semantic.embedding_model",
            format!("unknown model {embedding_model:?}"),
        );
    }
    let threshold = s.threshold.as_ref().map_or(0.95, |t| t.0);
    if !(threshold > 0.0 && threshold <= 1.0) {
        errs.push("cache.semantic.threshold", "must be above 0 and at most 1");
    }
    let max_entries = s.max_entries.as_ref().map_or(10_000, |m| m.0);
    if max_entries == 0 || max_entries > 10_000_000 {
        errs.push(
            "cache.semantic.max_entries",
            "must be between 1 and 10000000",
        );
    }
    crate::config::SemanticSettings {
        embedding_model,
        threshold: threshold as f32,
        max_entries: max_entries as usize,
    }
}

pub(super) fn store(s: Option<&FileStore>, errs: &mut Errors) -> StoreSettings {
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
        postgres_url: None,
    };
    if s.redis_url.is_some() && s.kind != "postgres" {
        errs.push(
            "store.redis_url",
            "applies to kind postgres only (kind redis: url)",
        );
    }
    match s.kind.as_str() {
        "postgres" => postgres_store(s, fail_closed, base, errs),
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
                format!("unknown store kind {k:?} (expected sqlite, redis or postgres)"),
            );
            base
        }
    }
}

/// `store.kind: postgres`: `url` (postgres://), optional `redis_url` for the hot counters and
/// `path` for the local spool file (required with `durability: strict`).
fn postgres_store(
    s: &FileStore,
    fail_closed: bool,
    base: StoreSettings,
    errs: &mut Errors,
) -> StoreSettings {
    let url = match s.url.as_deref() {
        Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
            // The TLS files are read too: a missing root certificate is a config error, not a
            // database that seems away. The message never holds the URL (it may hold a password).
            if let Err(e) = crate::store::tls::parse(u) {
                errs.push("store.url", e.to_string());
            }
            u.to_string()
        }
        Some(_) => {
            // The URL may hold a password: never echoed.
            errs.push("store.url", "expected postgres://user@host:port/database");
            String::new()
        }
        None => {
            errs.push(
                "store.url",
                "required for kind postgres (postgres://user@host:port/database)",
            );
            String::new()
        }
    };
    let redis = match s.redis_url.as_deref() {
        Some(u) if u.starts_with("redis://") || u.starts_with("rediss://") => Some(RedisSettings {
            url: u.to_string(),
            fail_closed,
        }),
        Some(_) => {
            errs.push("store.redis_url", "expected redis://host:port");
            None
        }
        None => {
            if s.on_unavailable.is_some() {
                errs.push("store.on_unavailable", "applies with store.redis_url only");
            }
            None
        }
    };
    let spool = s.path.as_deref().filter(|p| !p.trim().is_empty());
    if base.strict_durability && spool.is_none() {
        errs.push(
            "store.durability",
            "strict needs the local spool file for when PostgreSQL is away: set store.path",
        );
    }
    StoreSettings {
        sqlite_path: spool.map(Into::into),
        redis,
        postgres_url: Some(url),
        ..base
    }
}

pub(super) fn budgets(
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
                errs.unknown_provider(format!("{path}.scope"), n);
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

pub(super) fn limits(l: &FileLimits, path: &str, errs: &mut Errors) -> RateLimits {
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
