//! The response cache (issue #22): a repeated request to a model that opts in (`models[].cache`)
//! is answered from a stored answer without a provider call. It owns the cache key ([`key`]),
//! the stores ([`memory`], [`redis`]), the lookup before the plan runs ([`lookup`]) and the store once a
//! whole answer went out ([`store_whole`]); `cache` gives the backend and defaults. It must not
//! choose deployments or touch upstream I/O: the forwarder calls [`store_whole`] and nothing else.
//!
//! What is cached: chat completions, `/v1/messages`, `/v1/completions`, `/v1/embeddings` and
//! `/v1/responses` (whole, without `previous_response_id`: a hit answers the first response,
//! stored under its own id) successful answers, stored whole in the caller's format (the route is
//! part of the key, so an entry is only ever replayed to the format that produced it). Chat,
//! Messages, completions and Responses streams are recorded and stored when they end normally,
//! and a streamed request that hits is replayed as SSE ([`stream`]). In-process answers (mock,
//! local pool) are stored when whole. Errors are never cached, and an in-process stream is a
//! miss that is not stored. Near-duplicates: [`semantic`]. Answers say
//! `x-switchyard-cache: hit | miss | bypass` (only where a cache is configured) and `age` on
//! hits. A hit costs 0 in the ledger; what it saved is in the row's tags (`cache_saved_usd`)
//! and `switchyard_cache_saved_usd_total`.

pub mod key;
pub mod memory;
pub mod redis;
pub mod semantic;
pub mod stream;

use crate::config::{CacheScope, CacheSettings};
use crate::forward::Failure;
use crate::ops::telemetry::Metrics;
use crate::proxy::context::{RequestCtx, Route};
use crate::proxy::respond::write_json;
use crate::proxy::response_headers as rh;
use bytes::Bytes;
use pingora_proxy::Session;
use std::sync::Arc;
use std::time::Duration;

/// A cached answer.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The caller's body as it was first answered.
    pub body: Bytes,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// What the answer cost when it was served (USD).
    pub cost_usd: f64,
    /// Unix milliseconds when stored, and when it expires.
    pub stored_ms: u64,
    pub expires_ms: u64,
}

/// The process's cache: the backend chosen at start, and its metrics.
pub struct Cache {
    backend: Backend,
    metrics: Arc<Metrics>,
    /// `cache.semantic`'s vectors (empty without it).
    semantic: semantic::Index,
}

enum Backend {
    Memory(memory::Memory),
    Redis(redis::RedisCache),
}

impl Cache {
    /// The cache for `settings` as the process starts (a reload keeps the backend); `redis_url`
    /// is the store's Redis, used with `kind: redis`.
    pub fn new(settings: &CacheSettings, redis_url: Option<&str>, metrics: Arc<Metrics>) -> Cache {
        let backend = match (settings.redis, redis_url) {
            (true, Some(url)) => Backend::Redis(redis::RedisCache::new(url)),
            _ => Backend::Memory(memory::Memory::new(settings.max_bytes)),
        };
        Cache {
            backend,
            metrics,
            semantic: semantic::Index::default(),
        }
    }

    async fn get(&self, key: &key::Key, now_ms: u64) -> Option<Arc<Entry>> {
        match &self.backend {
            Backend::Memory(m) => m.get(key, now_ms),
            Backend::Redis(r) => r
                .get(key)
                .await
                .filter(|e| e.expires_ms > now_ms)
                .map(Arc::new),
        }
    }

    /// Stores `entry` (in Redis on a task of its own: the caller does not wait for it).
    fn put(self: &Arc<Self>, key: key::Key, entry: Entry, ttl: Duration) {
        match &self.backend {
            Backend::Memory(m) => {
                m.put(key, entry);
                let held = i64::try_from(m.bytes()).unwrap_or(i64::MAX);
                self.metrics.cache_bytes.set(held);
            }
            Backend::Redis(_) => {
                let cache = self.clone();
                tokio::spawn(async move {
                    if let Backend::Redis(r) = &cache.backend {
                        r.put(key, entry, ttl).await;
                    }
                });
            }
        }
    }
}

/// A miss to store once its answer went out whole.
pub struct Pending {
    cache: Arc<Cache>,
    key: key::Key,
    ttl: Duration,
    /// A streamed miss: the events sent so far.
    recorder: Option<stream::Recorder>,
    /// Whether the caller let the cache be looked up (not `no-cache`).
    lookup: bool,
    /// Its prompt's vector, indexed with the answer (`cache.semantic`).
    semantic: Option<semantic::Noted>,
}

impl Pending {
    /// Stores the answer, and indexes its prompt's vector when there is one.
    fn store(self, entry: Entry) {
        if let Some(n) = self.semantic {
            self.cache.semantic.insert(
                n.part,
                self.key.clone(),
                n.vector,
                entry.expires_ms,
                n.max_entries,
            );
        }
        self.cache.put(self.key, entry, self.ttl);
    }
}

/// What the caller asked of the cache in its headers.
struct Control {
    lookup: bool,
    store: bool,
    ttl: Option<Duration>,
}

fn control(headers: &http::HeaderMap) -> Control {
    let mut c = Control {
        lookup: true,
        store: true,
        ttl: None,
    };
    // One pass over the few headers a request has (cheaper than two hashed lookups).
    for (name, v) in headers {
        if name == http::header::CACHE_CONTROL {
            for d in v.to_str().unwrap_or("").split(',') {
                let d = d.trim();
                if d.eq_ignore_ascii_case("no-cache") {
                    c.lookup = false;
                } else if d.eq_ignore_ascii_case("no-store") {
                    c.lookup = false;
                    c.store = false;
                }
            }
        } else if name.as_str() == "x-switchyard-cache-ttl" {
            c.ttl = v
                .to_str()
                .ok()
                .and_then(|v| humantime::parse_duration(v.trim()).ok())
                .filter(|d| !d.is_zero());
        }
    }
    c
}

/// The route's name in the key; `None` for routes whose answers are not cached.
fn route_name(route: Route) -> Option<&'static str> {
    match route {
        Route::ChatCompletions => Some("chat"),
        Route::Messages => Some("messages"),
        Route::Completions => Some("completions"),
        Route::Embeddings => Some("embeddings"),
        Route::Responses => Some("responses"),
        _ => None,
    }
}

/// Whether a Responses request (its body as the caller sent it) continues a stored
/// conversation: such a request is not cached.
pub fn continues(body: &[u8]) -> bool {
    memchr::memmem::find(body, b"\"previous_response_id\"").is_some()
        || memchr::memmem::find(body, b"\"conversation\"").is_some()
}

/// Who shares entries with this caller.
fn scope_id(scope: CacheScope, ctx: &RequestCtx) -> String {
    let who = ctx.identity.as_deref();
    let key = || {
        who.map(|i| format!("key:{}", i.subject()))
            .unwrap_or_default()
    };
    match scope {
        CacheScope::Global => String::new(),
        CacheScope::Key => key(),
        CacheScope::Team => match who.and_then(|i| i.team.as_deref()) {
            Some(t) => format!("team:{t}"),
            None => key(),
        },
    }
}

/// Before the plan: answers a cached request (`Ok(true)`), or notes a miss to store. A model
/// without `cache` costs a field check. `continued`: a Responses turn on a stored conversation
/// (never cached).
pub async fn lookup(
    cache: &Arc<Cache>,
    session: &mut Session,
    ctx: &mut RequestCtx,
    body: &[u8],
    facts: &switchyard_adapters::openai::ChatRequestFacts<'_>,
    continued: bool,
) -> Result<bool, Failure> {
    let (Some(model), Some(snapshot)) = (ctx.model.clone(), ctx.snapshot.clone()) else {
        return Ok(false);
    };
    let settings = &snapshot.state.config.cache;
    if !settings.enabled {
        return Ok(false);
    }
    ctx.cache_status = Some("bypass");
    let (Some(model_ttl), Some(route)) = (model.config.cache, route_name(ctx.route)) else {
        return Ok(false);
    };
    let c = control(&session.req_header().headers);
    if (facts.stream && !stream::streams(ctx.caller)) || !c.store || continued {
        return Ok(false);
    }
    let scope = scope_id(settings.scope, ctx);
    let Some(key) = key::key(route, &model.config.name, &scope, body) else {
        return Ok(false);
    };
    let now = crate::clock::unix_ms();
    if c.lookup {
        if let Some(entry) = cache.get(&key, now).await {
            if answer(cache, session, ctx, facts, &entry, now, "hit").await? {
                return Ok(true);
            }
        }
    }
    cache.metrics.cache_misses.inc();
    ctx.cache_status = Some("miss");
    ctx.cache_pending = Some(Box::new(Pending {
        cache: cache.clone(),
        key,
        ttl: c.ttl.or(model_ttl).unwrap_or(settings.ttl),
        recorder: facts.stream.then(|| stream::Recorder::new(ctx.caller)),
        lookup: c.lookup,
        semantic: None,
    }));
    Ok(false)
}

/// Answers a request from `entry` (`Ok(false)`: a stream this entry cannot be replayed as).
async fn answer(
    cache: &Cache,
    session: &mut Session,
    ctx: &mut RequestCtx,
    facts: &switchyard_adapters::openai::ChatRequestFacts<'_>,
    entry: &Entry,
    now_ms: u64,
    verdict: &'static str,
) -> Result<bool, Failure> {
    let sse = if facts.stream {
        let usage = facts.include_usage.unwrap_or(false);
        stream::replay(ctx.caller, &entry.body, usage, crate::clock::unix_secs())
    } else {
        None
    };
    if facts.stream && sse.is_none() {
        return Ok(false);
    }
    serve_hit(cache, session, ctx, entry, now_ms, sse, verdict).await?;
    Ok(true)
}

/// Writes a cached answer: its body and usage as first answered, cost 0, `age` in seconds.
async fn serve_hit(
    cache: &Cache,
    session: &mut Session,
    ctx: &mut RequestCtx,
    entry: &Entry,
    now_ms: u64,
    sse: Option<Bytes>,
    verdict: &'static str,
) -> Result<(), Failure> {
    cache.metrics.cache_hits.inc();
    cache
        .metrics
        .cache_saved_usd
        .inc_by(entry.cost_usd.max(0.0));
    ctx.cache_status = Some(verdict);
    ctx.usage = Some(switchyard_adapters::openai::Usage {
        prompt_tokens: entry.prompt_tokens,
        completion_tokens: entry.completion_tokens,
        total_tokens: entry.prompt_tokens + entry.completion_tokens,
        ..Default::default()
    });
    ctx.tags = saved_tags(ctx.tags.as_deref(), entry.cost_usd);
    let age = now_ms.saturating_sub(entry.stored_ms) / 1000;
    let extra = [
        (http::header::AGE, age.to_string()),
        (rh::X_SWITCHYARD_COST_USD.clone(), format!("{:.8}", 0.0)),
    ];
    match sse {
        None => write_json(session, ctx, 200, entry.body.clone(), &extra).await,
        Some(events) => write_sse(session, ctx, events, &extra).await,
    }
    .map_err(Failure::Abort)
}

/// Writes a whole replayed stream.
async fn write_sse(
    session: &mut Session,
    ctx: &mut RequestCtx,
    events: Bytes,
    extra: &[(http::HeaderName, String)],
) -> pingora_error::Result<()> {
    let mut resp = rh::head(200, 12 + extra.len())?;
    let h = &mut resp.headers;
    for (name, v) in [
        (http::header::CONTENT_TYPE, "text/event-stream"),
        (http::header::CACHE_CONTROL, "no-cache"),
    ] {
        h.insert(name, http::HeaderValue::from_static(v));
    }
    rh::set_length(h, events.len());
    rh::add_gateway_headers(h, ctx, None)?;
    for (k, v) in extra {
        h.insert(k, rh::value(v)?);
    }
    ctx.status = 200;
    ctx.stream = true;
    session
        .write_response_header(rh::finish(resp), false)
        .await?;
    ctx.mark_first_byte();
    session.write_response_body(Some(events), true).await?;
    ctx.completed = true;
    Ok(())
}

/// Notes bytes of a streamed miss as they go to the caller (nothing without one); once they
/// carry the stream's end marker the answer is stored, before the caller can ask again.
pub fn record(ctx: &mut RequestCtx, chunk: &[u8]) {
    if let Some(r) = ctx.cache_pending.as_mut().and_then(|p| p.recorder.as_mut()) {
        r.push(chunk);
        if r.ended() {
            store_stream(ctx);
        }
    }
}

/// A streamed miss ended normally (its end marker went out): stores the answer it carried, as a
/// whole answer in the caller's format. Not called for a cut, failed or stopped stream, whose
/// pending entry is dropped with the request.
pub fn store_stream(ctx: &mut RequestCtx) {
    let Some(mut p) = ctx.cache_pending.take() else {
        return;
    };
    let Some(rec) = p.recorder.take() else {
        return;
    };
    if ctx.error_code.is_some() || !(200..300).contains(&ctx.status) {
        return;
    }
    let relayed = ctx.usage.map(|u| switchyard_adapters::canonical::Usage {
        input_tokens: u.prompt_tokens,
        output_tokens: u.completion_tokens,
        ..Default::default()
    });
    let Some(body) = rec.finish(relayed, crate::clock::unix_secs()) else {
        return;
    };
    let acct = crate::governance::ledger_row::accounting(ctx);
    let cost = acct.cost_nanos as f64 / 1e9;
    let now = crate::clock::unix_ms();
    let expires_ms = now.saturating_add(p.ttl.as_millis() as u64);
    p.store(Entry {
        body,
        prompt_tokens: acct.tokens_in,
        completion_tokens: acct.tokens_out,
        cost_usd: cost,
        stored_ms: now,
        expires_ms,
    });
}

/// The ledger row's tags with the hit and what it saved added (the row's cost stays 0).
fn saved_tags(tags: Option<&str>, saved_usd: f64) -> Option<String> {
    let mut map = tags
        .and_then(|t| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(t).ok())
        .unwrap_or_default();
    map.insert("cache".into(), "hit".into());
    map.insert("cache_saved_usd".into(), format!("{saved_usd:.8}").into());
    serde_json::to_string(&map).ok()
}

/// After a whole answer: stores it when the request was a miss and the answer a success.
pub fn store_whole(ctx: &mut RequestCtx, status: u16, body: &Bytes, cost_usd: f64) {
    let Some(p) = ctx.cache_pending.take() else {
        return;
    };
    if !(200..300).contains(&status) || ctx.error_code.is_some() {
        return;
    }
    let usage = ctx.usage.unwrap_or_default();
    let now = crate::clock::unix_ms();
    let expires_ms = now.saturating_add(p.ttl.as_millis() as u64);
    p.store(Entry {
        body: body.clone(),
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
        cost_usd,
        stored_ms: now,
        expires_ms,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_control_headers() {
        let mut h = http::HeaderMap::new();
        let c = control(&h);
        assert!(c.lookup && c.store && c.ttl.is_none());
        h.insert("cache-control", "no-cache".parse().unwrap());
        h.insert("x-switchyard-cache-ttl", "60s".parse().unwrap());
        let c = control(&h);
        assert!(!c.lookup && c.store);
        assert_eq!(c.ttl, Some(Duration::from_secs(60)));
        h.insert("cache-control", "max-age=0, No-Store".parse().unwrap());
        let c = control(&h);
        assert!(!c.lookup && !c.store);
    }

    const FILE: &str = "server:\n  listen: [\"127.0.0.1:8080\"]\nproviders:\n  - { name: sim, kind: mock }\nmodels:\n  - { name: a, cache: { ttl: 90s }, deployments: [{ provider: sim, model: m }] }\n  - { name: b, cache: {}, deployments: [{ provider: sim, model: m }] }\n  - { name: c, deployments: [{ provider: sim, model: m }] }\n";

    fn parse(extra: &str) -> Result<crate::config::Config, String> {
        crate::config::parse(&format!("{FILE}{extra}"), &|_| None).map_err(|e| e.to_string())
    }

    #[test]
    fn config_opts_models_in_with_defaults_and_validates_the_section() {
        let c = parse("").expect("loads");
        assert!(c.cache.enabled && !c.cache.redis);
        assert_eq!(c.cache.scope, CacheScope::Team);
        assert_eq!(c.cache.max_bytes, 256 * 1024 * 1024);
        assert_eq!(c.models[0].cache, Some(Some(Duration::from_secs(90))));
        assert_eq!(c.models[1].cache, Some(None));
        assert_eq!(c.models[2].cache, None);
        let c = parse("cache: { kind: memory, max_bytes: 4096, ttl: 5m, scope: global }\n")
            .expect("loads");
        assert_eq!(c.cache.scope, CacheScope::Global);
        assert_eq!(
            (c.cache.max_bytes, c.cache.ttl),
            (4096, Duration::from_secs(300))
        );
        let e = parse("cache: { kind: disk, scope: everyone, ttl: soon }\n").unwrap_err();
        for path in ["cache.kind", "cache.scope", "cache.ttl"] {
            assert!(e.contains(path), "{e}");
        }
        let e = parse("cache: { kind: redis }\n").unwrap_err();
        assert!(e.contains("store's Redis"), "{e}");
    }

    #[test]
    fn saved_cost_joins_existing_tags() {
        let t = saved_tags(Some(r#"{"team":"x"}"#), 0.25).unwrap();
        let v: serde_json::Value = serde_json::from_str(&t).unwrap();
        assert_eq!(v["team"], "x");
        assert_eq!(v["cache"], "hit");
        assert_eq!(v["cache_saved_usd"], "0.25000000");
    }
}
