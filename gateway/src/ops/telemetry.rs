//! Prometheus metrics: the families, their registration, and pre-resolved per-model,
//! per-deployment and per-provider handles.
//!
//! Label sets are resolved once when the live state is built, so the request path only touches
//! atomics (no label hashing, no registry lock). Labels come from configuration names only — never
//! from what a caller sent — so cardinality is bounded by the config.
//! It owns no I/O: `/metrics` is served by [`crate::ops::admin`].

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Buckets for whole-request and upstream durations (seconds).
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0,
];

/// Status classes used as the `status` label.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn class_index(status: u16) -> usize {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}

/// Outcome of one upstream try, the `outcome` label of `switchyard_upstream_attempts_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Ok,
    ConnectError,
    Timeout,
    Status429,
    Status5xx,
    Status4xx,
    StreamError,
    /// A hedged try that lost the race and was cancelled.
    HedgeCancelled,
}

impl AttemptOutcome {
    pub const ALL: [AttemptOutcome; 8] = [
        AttemptOutcome::Ok,
        AttemptOutcome::ConnectError,
        AttemptOutcome::Timeout,
        AttemptOutcome::Status429,
        AttemptOutcome::Status5xx,
        AttemptOutcome::Status4xx,
        AttemptOutcome::StreamError,
        AttemptOutcome::HedgeCancelled,
    ];

    pub fn label(self) -> &'static str {
        match self {
            AttemptOutcome::Ok => "ok",
            AttemptOutcome::ConnectError => "connect_error",
            AttemptOutcome::Timeout => "timeout",
            AttemptOutcome::Status429 => "status_429",
            AttemptOutcome::Status5xx => "status_5xx",
            AttemptOutcome::Status4xx => "status_4xx",
            AttemptOutcome::StreamError => "stream_error",
            AttemptOutcome::HedgeCancelled => "hedge_cancelled",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// All metric families, registered in one registry.
#[cfg_attr(not(feature = "local"), allow(dead_code))]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    ttfb: HistogramVec,
    upstream_duration: HistogramVec,
    attempts: IntCounterVec,
    tokens: IntCounterVec,
    errors: IntCounterVec,
    provider_up: IntGaugeVec,
    reloads: IntCounterVec,
    callers: IntCounterVec,
    failovers: IntCounterVec,
    retries: IntCounterVec,
    hedges: IntCounterVec,
    circuit_opened: IntCounterVec,
    skips: IntCounterVec,
    local_queue_depth: IntGaugeVec,
    local_spilled: IntCounterVec,
    local_tokens: IntCounterVec,
    local_time_per_token: HistogramVec,
    local_ttft: HistogramVec,
    local_tokens_per_second: GaugeVec,
    local_device: IntGaugeVec,
    passthrough_requests: IntCounterVec,
    passthrough_duration: HistogramVec,
    guardrail_actions: IntCounterVec,
    pub active_requests: IntGauge,
    pub active_streams: IntGauge,
    pub access_log_dropped: IntCounter,
    /// Response cache: answers served from it, requests it could not answer, USD not spent.
    pub cache_hits: IntCounter,
    pub cache_misses: IntCounter,
    pub cache_saved_usd: prometheus::Counter,
    /// Bytes the memory cache accounts for (bodies plus per-entry overhead), after each store.
    pub cache_bytes: IntGauge,
    /// Trace spans dropped because the OTLP export queue was full.
    pub otlp_dropped: IntCounter,
    /// The last 15 minutes at 10-second resolution, for the status page.
    pub pulse: crate::ops::pulse::Pulse,
}

fn must<T>(r: prometheus::Result<T>) -> T {
    // Metric definitions are static; a failure here is a programming error found at start-up.
    match r {
        Ok(v) => v,
        Err(e) => panic!("invalid metric definition: {e}"),
    }
}

/// Creates metric families and registers each as it is made.
struct Families(Registry);

impl Families {
    fn add<C: prometheus::core::Collector + Clone + 'static>(&self, c: C) -> C {
        must(self.0.register(Box::new(c.clone())));
        c
    }

    fn counters(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.add(must(IntCounterVec::new(Opts::new(name, help), labels)))
    }

    fn gauges(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.add(must(IntGaugeVec::new(Opts::new(name, help), labels)))
    }

    fn histograms(&self, name: &str, help: &str, buckets: &[f64], labels: &[&str]) -> HistogramVec {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.add(must(HistogramVec::new(opts, labels)))
    }
}

const TIME_PER_TOKEN_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];
const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

impl Metrics {
    /// Creates and registers every family. Called once at start-up.
    pub fn new() -> Self {
        let f = Families(Registry::new());
        f.gauges("switchyard_build_info", "Build information", &["version"])
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let p = &["provider"][..];
        let m = &["model"][..];
        let metrics = Metrics {
            guardrail_actions: f.counters(
                "switchyard_guardrail_actions_total",
                "Guardrail actions taken, by guardrail, action (redact, block, flag) and phase",
                &["guardrail", "action", "phase"],
            ),
            requests: f.counters(
                "switchyard_requests_total",
                "Inference requests by public model, serving provider and status class",
                &["model", "provider", "status"],
            ),
            duration: f.histograms(
                "switchyard_request_duration_seconds",
                "Whole-request duration as seen by the gateway",
                DURATION_BUCKETS,
                m,
            ),
            ttfb: f.histograms(
                "switchyard_time_to_first_byte_seconds",
                "Time from request start to the first response body byte sent to the caller",
                DURATION_BUCKETS,
                &["model", "provider"],
            ),
            upstream_duration: f.histograms(
                "switchyard_upstream_duration_seconds",
                "Duration of the successful upstream try, connect to last byte",
                DURATION_BUCKETS,
                p,
            ),
            attempts: f.counters(
                "switchyard_upstream_attempts_total",
                "Upstream tries by provider and outcome",
                &["provider", "outcome"],
            ),
            tokens: f.counters(
                "switchyard_tokens_total",
                "Tokens reported by providers, by public model, provider and direction",
                &["model", "provider", "direction"],
            ),
            errors: f.counters(
                "switchyard_errors_total",
                "Errors answered to callers, by kind",
                &["kind"],
            ),
            provider_up: f.gauges(
                "switchyard_provider_up",
                "1 when the provider answered its last tries, 0 after repeated failures",
                p,
            ),
            reloads: f.counters(
                "switchyard_config_reloads_total",
                "Configuration reloads (SIGHUP) by result",
                &["result"],
            ),
            callers: f.counters(
                "switchyard_caller_requests_total",
                "Inference requests by the caller's team and credential kind",
                &["team", "credential"],
            ),
            failovers: f.counters(
                "switchyard_failovers_total",
                "Requests answered by a later deployment after earlier tries failed",
                m,
            ),
            retries: f.counters(
                "switchyard_retries_total",
                "Upstream tries beyond the first for a request, by public model",
                m,
            ),
            hedges: f.counters(
                "switchyard_hedges_total",
                "Hedged tries started because the first deployment had not answered by hedge_after",
                m,
            ),
            circuit_opened: f.counters(
                "switchyard_circuit_opened_total",
                "Times a deployment's circuit breaker opened (or re-opened after a failed probe)",
                p,
            ),
            skips: f.counters(
                "switchyard_routing_skips_total",
                "Deployments skipped without a try, by reason (circuit_open, retry_after)",
                &["provider", "reason"],
            ),
            local_queue_depth: f.gauges(
                "switchyard_local_queue_depth",
                "Jobs waiting for a worker of a local inference pool",
                p,
            ),
            local_spilled: f.counters(
                "switchyard_local_spilled_total",
                "Requests a local pool could not take (queue full, waited too long) and left to the next deployment",
                p,
            ),
            local_tokens: f.counters(
                "switchyard_local_tokens_total",
                "Tokens processed by a local inference pool",
                p,
            ),
            local_time_per_token: f.histograms(
                "switchyard_local_time_per_token_seconds",
                "Time a local pool took to generate one token after the first",
                TIME_PER_TOKEN_BUCKETS,
                p,
            ),
            local_ttft: f.histograms(
                "switchyard_local_time_to_first_token_seconds",
                "From queueing a generation on a local pool to its first token (queue wait and prompt included)",
                TTFT_BUCKETS,
                p,
            ),
            local_tokens_per_second: f.add(must(GaugeVec::new(
                Opts::new(
                    "switchyard_local_tokens_per_second",
                    "Decoding speed of the last generation a local pool finished",
                ),
                p,
            ))),
            local_device: f.gauges(
                "switchyard_local_device",
                "1 for the device (cpu or cuda) a local pool's models run on",
                &["provider", "device"],
            ),
            passthrough_requests: f.counters(
                "switchyard_passthrough_requests_total",
                "Pass-through requests by configured path pattern, provider and status class",
                &["path", "provider", "status"],
            ),
            passthrough_duration: f.histograms(
                "switchyard_passthrough_duration_seconds",
                "Whole pass-through request duration, by configured path pattern and provider",
                DURATION_BUCKETS,
                &["path", "provider"],
            ),
            active_requests: f.add(must(IntGauge::new(
                "switchyard_active_requests",
                "Inference requests in progress",
            ))),
            active_streams: f.add(must(IntGauge::new(
                "switchyard_active_streams",
                "Streaming responses in progress",
            ))),
            access_log_dropped: f.add(must(IntCounter::new(
                "switchyard_access_log_dropped_total",
                "Access-log lines dropped because the writer fell behind",
            ))),
            cache_hits: f.add(must(IntCounter::new(
                "switchyard_cache_hits_total",
                "Requests answered from the response cache",
            ))),
            cache_misses: f.add(must(IntCounter::new(
                "switchyard_cache_misses_total",
                "Cacheable requests the response cache could not answer",
            ))),
            cache_saved_usd: f.add(must(prometheus::Counter::new(
                "switchyard_cache_saved_usd_total",
                "What cache hits would have cost at the serving deployment's price (USD)",
            ))),
            cache_bytes: f.add(must(IntGauge::new(
                "switchyard_cache_bytes",
                "Bytes held by the memory response cache (bodies plus per-entry overhead)",
            ))),
            otlp_dropped: f.add(must(IntCounter::new(
                "switchyard_otlp_spans_dropped_total",
                "Trace spans dropped because the OTLP export queue was full (collector away or slow)",
            ))),
            registry: f.0,
            pulse: Default::default(),
        };
        // Series that exist from the start (a dashboard sees 0, not "no data").
        for result in ["success", "failure"] {
            metrics.reloads.with_label_values(&[result]);
        }
        metrics.callers.with_label_values(&["", "anonymous"]);
        metrics.register(Box::new(crate::routing::reputation::score_family().clone()));
        metrics
    }

    /// Registers a family owned elsewhere (e.g. spend metrics).
    pub fn register(&self, c: Box<dyn prometheus::core::Collector>) {
        must(self.registry.register(c));
    }

    /// The Prometheus text exposition of every family.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        let families = self.registry.gather();
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            log::error!("cannot encode metrics: {e}");
        }
        out
    }

    /// Handles for requests that were not routed to any model.
    pub fn unrouted(&self) -> StatusCounters {
        StatusCounters::new(&self.requests, "", "")
    }

    /// Handles for one `passthrough[]` route (labels from the config: its pattern, provider).
    pub fn passthrough(&self, path: &str, provider: &str) -> PassthroughMetrics {
        PassthroughMetrics {
            requests: StatusCounters::new(&self.passthrough_requests, path, provider),
            duration: self
                .passthrough_duration
                .with_label_values(&[path, provider]),
        }
    }

    pub fn model(&self, model: &str) -> ModelMetrics {
        ModelMetrics {
            failovers: self.failovers.with_label_values(&[model]),
            hedges: self.hedges.with_label_values(&[model]),
            retries: self.retries.with_label_values(&[model]),
            duration: self.duration.with_label_values(&[model]),
            unserved: StatusCounters::new(&self.requests, model, ""),
        }
    }

    pub fn deployment(&self, model: &str, provider: &str) -> DeploymentMetrics {
        DeploymentMetrics {
            requests: StatusCounters::new(&self.requests, model, provider),
            ttfb: self.ttfb.with_label_values(&[model, provider]),
            prompt_tokens: self.tokens.with_label_values(&[model, provider, "prompt"]),
            completion_tokens: self
                .tokens
                .with_label_values(&[model, provider, "completion"]),
            cached_tokens: self.tokens.with_label_values(&[model, provider, "cached"]),
        }
    }

    pub fn provider(&self, provider: &str) -> ProviderMetrics {
        ProviderMetrics {
            attempts: AttemptOutcome::ALL
                .map(|o| self.attempts.with_label_values(&[provider, o.label()])),
            upstream_duration: self.upstream_duration.with_label_values(&[provider]),
            up: self.provider_up.with_label_values(&[provider]),
            circuit_opened: self.circuit_opened.with_label_values(&[provider]),
            skipped_circuit_open: self.skips.with_label_values(&[provider, "circuit_open"]),
            skipped_retry_after: self.skips.with_label_values(&[provider, "retry_after"]),
            skipped_quota: self.skips.with_label_values(&[provider, "quota"]),
        }
    }

    /// Handles for a local inference pool.
    #[cfg(feature = "local")]
    pub fn local_pool(&self, provider: &str) -> crate::local::pool::PoolMetrics {
        crate::local::pool::PoolMetrics {
            queue_depth: self.local_queue_depth.with_label_values(&[provider]),
            spilled: self.local_spilled.with_label_values(&[provider]),
            tokens: self.local_tokens.with_label_values(&[provider]),
            time_per_token: self.local_time_per_token.with_label_values(&[provider]),
            time_to_first_token: self.local_ttft.with_label_values(&[provider]),
            tokens_per_second: self.local_tokens_per_second.with_label_values(&[provider]),
            device_cpu: self.local_device.with_label_values(&[provider, "cpu"]),
            device_cuda: self.local_device.with_label_values(&[provider, "cuda"]),
        }
    }

    /// Counts one guardrail action (a rare event: the label lookup is not cached).
    pub fn guardrail(&self, guardrail: &str, action: &str, phase: &str) {
        self.guardrail_actions
            .with_label_values(&[guardrail, action, phase])
            .inc();
    }

    /// Every guardrail action counted so far: (guardrail, action, phase, count), for the
    /// status page (the same numbers as `switchyard_guardrail_actions_total`).
    pub fn guardrail_counts(&self) -> Vec<(String, String, String, u64)> {
        use prometheus::core::Collector;
        let mut out = Vec::new();
        for family in self.guardrail_actions.collect() {
            for m in family.get_metric() {
                let label = |name: &str| {
                    m.get_label()
                        .iter()
                        .find(|l| l.name() == name)
                        .map(|l| l.value().to_string())
                        .unwrap_or_default()
                };
                let count = m.get_counter().get_value() as u64;
                out.push((label("guardrail"), label("action"), label("phase"), count));
            }
        }
        out.sort();
        out
    }

    /// Counts an inference request for a caller's team and credential kind. Handles are cached
    /// per thread, so the shared label map is read once per (team, kind) per thread.
    pub fn caller(&self, team: &str, credential: &'static str) {
        type Handles = std::collections::HashMap<
            String,
            Vec<(&'static str, IntCounter)>,
            foldhash::fast::RandomState,
        >;
        thread_local! {
            static HANDLES: std::cell::RefCell<Handles> = std::cell::RefCell::new(Handles::default());
        }
        HANDLES.with(|h| {
            let mut h = h.borrow_mut();
            if let Some(c) = h
                .get(team)
                .and_then(|kinds| kinds.iter().find(|(k, _)| *k == credential))
            {
                c.1.inc();
                return;
            }
            if h.len() > 10_000 {
                h.clear();
            }
            let c = self.callers.with_label_values(&[team, credential]);
            c.inc();
            h.entry(team.to_string()).or_default().push((credential, c));
        });
    }

    /// Counts a configuration reload by result.
    pub fn reload(&self, success: bool) {
        self.reloads
            .with_label_values(&[if success { "success" } else { "failure" }])
            .inc();
    }

    /// Creates a zero series for each error kind, so dashboards see them before the first one.
    pub fn init_error_kinds(&self, kinds: &[&str]) {
        for k in kinds {
            self.errors.with_label_values(&[k]);
        }
    }

    /// Counts an error answered to a caller (rare path: label lookup is fine here).
    /// Jobs waiting for a worker of local pool `provider` (the status page's view of the gauge).
    pub fn local_queue(&self, provider: &str) -> i64 {
        self.local_queue_depth.with_label_values(&[provider]).get()
    }

    pub fn error(&self, kind: &str) {
        self.errors.with_label_values(&[kind]).inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// `switchyard_requests_total` children for one (model, provider), by status class.
#[derive(Clone)]
pub struct StatusCounters([IntCounter; 5]);

impl StatusCounters {
    fn new(family: &IntCounterVec, model: &str, provider: &str) -> Self {
        StatusCounters(STATUS_CLASSES.map(|c| family.with_label_values(&[model, provider, c])))
    }

    pub fn observe(&self, status: u16) {
        self.0[class_index(status)].inc();
    }
}

#[derive(Clone)]
pub struct ModelMetrics {
    pub failovers: IntCounter,
    pub hedges: IntCounter,
    pub retries: IntCounter,
    pub duration: Histogram,
    /// Requests for this model that no deployment served (errors before or after all tries).
    pub unserved: StatusCounters,
}

/// `switchyard_passthrough_*` children for one `passthrough[]` route.
#[derive(Clone)]
pub struct PassthroughMetrics {
    pub requests: StatusCounters,
    pub duration: Histogram,
}

#[derive(Clone)]
pub struct DeploymentMetrics {
    pub requests: StatusCounters,
    pub ttfb: Histogram,
    pub prompt_tokens: IntCounter,
    pub completion_tokens: IntCounter,
    pub cached_tokens: IntCounter,
}

#[derive(Clone)]
pub struct ProviderMetrics {
    attempts: [IntCounter; 8],
    pub upstream_duration: Histogram,
    pub up: IntGauge,
    pub circuit_opened: IntCounter,
    pub skipped_circuit_open: IntCounter,
    pub skipped_retry_after: IntCounter,
    pub skipped_quota: IntCounter,
}

impl ProviderMetrics {
    pub fn attempt(&self, outcome: AttemptOutcome) {
        self.attempts[outcome.index()].inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_registered_families() {
        let m = Metrics::new();
        let d = m.deployment("chat", "sim");
        d.requests.observe(200);
        d.prompt_tokens.inc_by(5);
        m.provider("sim").attempt(AttemptOutcome::Timeout);
        let text = String::from_utf8(m.render()).unwrap();
        assert!(text.contains(
            "switchyard_requests_total{model=\"chat\",provider=\"sim\",status=\"2xx\"} 1"
        ));
        assert!(text.contains(
            "switchyard_tokens_total{direction=\"prompt\",model=\"chat\",provider=\"sim\"} 5"
        ));
        assert!(text.contains(
            "switchyard_upstream_attempts_total{outcome=\"timeout\",provider=\"sim\"} 1"
        ));
        assert!(text.contains("switchyard_build_info"));
    }
}
