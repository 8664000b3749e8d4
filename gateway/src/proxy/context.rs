//! Per-request context (`ProxyHttp::CTX`): what one request learnt on its way, read by the
//! `logging` phase for metrics and the access log. Plain data plus two RAII gauges; the config
//! snapshot it holds is loaded once in `request_filter`.

use crate::errors::TryFailure;
use crate::governance::Governance;
use crate::routing::state::RoutedModel;
use crate::snapshot::Snapshot;
use prometheus::IntGauge;
use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_adapters::openai::Usage;

/// Which endpoint a request hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    ChatCompletions,
    /// Anthropic's Messages API (`POST /v1/messages`).
    Messages,
    /// Legacy OpenAI text completions (`POST /v1/completions`).
    Completions,
    /// The OpenAI Responses API (`POST /v1/responses`).
    Responses,
    /// A stored response: `GET`/`DELETE /v1/responses/{id}`, `GET .../input_items`.
    StoredResponse,
    /// Anthropic's token counting (`POST /v1/messages/count_tokens`): metered as a request,
    /// never billed.
    CountTokens,
    /// OpenAI embeddings (`POST /v1/embeddings`).
    Embeddings,
    Infer,
    /// `GET /v1/models`.
    Models,
    /// `GET /v1/models/{id}`.
    Model,
    Health,
    /// A configured `passthrough[]` path, forwarded as is.
    Passthrough,
    Unknown,
}

impl Route {
    pub fn name(self) -> &'static str {
        match self {
            Route::ChatCompletions => "chat_completions",
            Route::Messages => "messages",
            Route::Completions => "completions",
            Route::Responses => "responses",
            Route::StoredResponse => "stored_responses",
            Route::CountTokens => "count_tokens",
            Route::Embeddings => "embeddings",
            Route::Infer => "infer",
            Route::Models => "models",
            Route::Model => "model",
            Route::Health => "health",
            Route::Passthrough => "passthrough",
            Route::Unknown => "unknown",
        }
    }

    pub fn is_inference(self) -> bool {
        matches!(
            self,
            Route::ChatCompletions
                | Route::Messages
                | Route::Completions
                | Route::Responses
                | Route::CountTokens
                | Route::Embeddings
                | Route::Infer
                | Route::Passthrough
        )
    }

    /// Whether the request is billed: spend settled and a ledger row written (token counting
    /// costs nothing at any provider, so it leaves no row).
    pub fn is_billed(self) -> bool {
        self.is_inference() && self != Route::CountTokens
    }
}

/// Counts every request in progress (all routes; the drain on shutdown waits for zero) and, in
/// the same atomic word, every request that ever entered (the allocator's give-back task watches
/// the word, [`crate::ops::giveback`]): one atomic add per request, as before.
#[derive(Clone, Default)]
pub struct InFlight(Arc<std::sync::atomic::AtomicU64>);

/// One request entered: the in-progress count in the low 32 bits, the entered count above.
const ENTER: u64 = (1 << 32) | 1;

impl InFlight {
    pub fn count(&self) -> usize {
        (self.0.load(std::sync::atomic::Ordering::Acquire) & u64::from(u32::MAX)) as usize
    }

    /// A value that changes whenever a request enters or leaves (the entered count and the
    /// in-progress count together).
    pub fn activity(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }

    fn enter(&self) -> InFlightGuard {
        self.0.fetch_add(ENTER, std::sync::atomic::Ordering::AcqRel);
        InFlightGuard(self.0.clone())
    }
}

pub struct InFlightGuard(Arc<std::sync::atomic::AtomicU64>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Keeps a gauge incremented while alive.
pub struct GaugeGuard(IntGauge);

impl GaugeGuard {
    pub fn new(g: &IntGauge) -> Self {
        g.inc();
        GaugeGuard(g.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

pub struct RequestCtx {
    pub started: Instant,
    pub request_id: String,
    pub trace: Option<crate::proxy::trace::TraceContext>,
    /// The answer's finish reasons, collected only when the trace is exported (`None`: not
    /// looked for); see [`crate::ops::finish_reasons`].
    pub finish_reasons: Option<Vec<String>>,
    /// Switchyard nodes this request already crossed (`x-switchyard-hops`).
    pub hops: u32,
    /// The API format the caller speaks (errors are answered in it).
    pub caller: switchyard_adapters::providers::Caller,
    /// The caller's `anthropic-beta` header, passed on when an Anthropic caller reaches Anthropic.
    pub anthropic_beta: Option<String>,
    /// Limits and budget reservations held by this request (settled in `logging`).
    /// Boxed: ~400 bytes that every request's context (moved into Pingora's request future, and
    /// kept there twice) carried even where nothing is governed.
    pub admission: Option<Box<crate::governance::Admission>>,
    /// The most this request may cost (nano-dollars), as reserved.
    pub estimate_nanos: u64,
    /// Request body size (the prompt estimate when a provider reports no usage).
    pub body_bytes: usize,
    /// Stream events relayed (the completion estimate when a cut stream reports no usage).
    pub streamed_events: u64,
    /// Ledger tags (a JSON object) from the request's `metadata` or `x-switchyard-tags`.
    pub tags: Option<String>,
    /// The ledger row was already written (strict durability writes it before the last bytes).
    pub ledger_recorded: bool,
    /// The authenticated caller (`None` without an `auth` section).
    pub identity: Option<Arc<switchyard_filters::auth::Identity>>,
    /// Guardrail actions taken (`x-switchyard-guardrails`, metric, access log).
    pub guardrails: Vec<crate::guardrails::Applied>,
    /// Guardrails that look at this request's answer (empty: the answer is not parsed).
    pub response_guardrails: Vec<Arc<crate::guardrails::Guardrail>>,
    pub route: Route,
    /// The `passthrough[]` route matched (only with [`Route::Passthrough`]).
    pub passthrough: Option<crate::passthrough::Hit>,
    /// The config snapshot the request runs under, from its first phase to its logging.
    pub snapshot: Option<Arc<Snapshot>>,
    pub model: Option<Arc<RoutedModel>>,
    /// Index of the deployment that answered, in `model.deployments`.
    pub served: Option<usize>,
    /// `model` is a fallback of the requested model (`x-switchyard-fallback` names it).
    pub fallback: bool,
    /// Routing hints the caller gave (body fields or headers), if any.
    pub hints: Option<crate::routing::hints::Hints>,
    /// The deployments a `fallbackProviders` hint adds after the model's own.
    pub hinted: Option<Arc<RoutedModel>>,
    pub status: u16,
    pub stream: bool,
    pub first_byte: Option<Duration>,
    pub usage: Option<Usage>,
    pub tries: u32,
    /// When each try started (since `started`), for the exported trace's client spans (empty
    /// when the trace is not exported; see [`RequestCtx::mark_try_started`]).
    pub try_started: smallvec::SmallVec<[Duration; 4]>,
    pub failures: Vec<TryFailure>,
    /// The OpenAI error code answered, when the request failed.
    pub error_code: Option<&'static str>,
    /// The response was written in full.
    pub completed: bool,
    pub active: Option<GaugeGuard>,
    /// `x-switchyard-cache`'s value (`None`: no cache configured, no header).
    pub cache_status: Option<&'static str>,
    /// A cache miss: where its answer is stored once it ends well.
    pub cache_pending: Option<Box<crate::cache::Pending>>,
    active_streams: IntGauge,
    _in_flight: InFlightGuard,
}

thread_local! {
    static ID_STATE: Cell<(u64, u64)> = Cell::new((seed_u64(), 0));
}

/// A random 64-bit value (per-thread generator seeded from the OS's hasher keys; not for secrets).
pub fn random_u64() -> u64 {
    thread_local! {
        static RNG: Cell<u64> = Cell::new(seed_u64());
    }
    RNG.with(|r| {
        // xorshift64*
        let mut x = r.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        r.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    })
}

fn seed_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// A new request id: a random per-thread prefix and a per-thread counter (no shared state).
pub fn new_request_id() -> String {
    ID_STATE.with(|s| {
        let (prefix, n) = s.get();
        s.set((prefix, n.wrapping_add(1)));
        let mut id = String::with_capacity(32);
        super::trace::push_hex16(&mut id, prefix);
        super::trace::push_hex16(&mut id, n);
        id
    })
}

impl RequestCtx {
    pub fn new(active_streams: IntGauge, in_flight: &InFlight) -> Self {
        RequestCtx {
            started: Instant::now(),
            request_id: String::new(),
            trace: None,
            finish_reasons: None,
            hops: 0,
            caller: switchyard_adapters::providers::Caller::OpenAi,
            anthropic_beta: None,
            admission: None,
            estimate_nanos: 0,
            body_bytes: 0,
            streamed_events: 0,
            tags: None,
            ledger_recorded: false,
            identity: None,
            guardrails: Vec::new(),
            response_guardrails: Vec::new(),
            route: Route::Unknown,
            passthrough: None,
            snapshot: None,
            model: None,
            served: None,
            status: 0,
            stream: false,
            first_byte: None,
            usage: None,
            tries: 0,
            fallback: false,
            hints: None,
            hinted: None,
            failures: Vec::new(),
            try_started: Default::default(),
            error_code: None,
            completed: false,
            active: None,
            cache_status: None,
            cache_pending: None,
            active_streams,
            _in_flight: in_flight.enter(),
        }
    }

    /// Notes that a try starts now, for the exported trace's client spans. The answer's finish
    /// reasons are collected exactly when the trace is exported: without one this reads no
    /// clock.
    pub fn mark_try_started(&mut self) {
        if self.finish_reasons.is_some() {
            self.try_started.push(self.started.elapsed());
        }
    }

    /// Records the time of the first response body byte (once).
    pub fn mark_first_byte(&mut self) {
        if self.first_byte.is_none() {
            self.first_byte = Some(self.started.elapsed());
        }
    }

    /// Counts this request as an active stream while the guard lives.
    pub fn stream_guard(&self) -> GaugeGuard {
        GaugeGuard::new(&self.active_streams)
    }

    /// The governance the request runs under, when its config has any limit or budget.
    pub fn governance(&self) -> Option<&Governance> {
        self.snapshot
            .as_deref()
            .map(|s| &*s.governance)
            .filter(|g| !g.is_empty())
    }

    /// The generation of the config snapshot the request runs under (0 before it has one).
    pub fn generation(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |s| s.generation)
    }

    /// Seed for the plan's backoff jitter.
    pub fn seed(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.request_id.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_unique_and_safe() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(switchyard_filters::request_id::is_acceptable(a.as_bytes()));
    }
}
