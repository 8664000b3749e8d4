//! OpenTelemetry traces (`telemetry.otlp`): when a request ends, a server span (continuing the
//! caller's `traceparent`) and a client span per upstream try, with the GenAI semantic-convention
//! attributes plus Switchyard's (key, team, cost), are queued — a bounded channel, `try_send`,
//! drops counted in `switchyard_otlp_spans_dropped_total` — and a background [`Shipper`]
//! POSTs them in batches as OTLP/HTTP JSON to `{endpoint}/v1/traces`. Without `telemetry.otlp`
//! (a reload may add it) [`record`] is one config check and the shipper idles. Reads the request
//! context; never writes to it or to the caller.

use crate::proxy::context::{RequestCtx, Route};
use crate::snapshot::{Live, Snapshot};
use async_trait::async_trait;
use pingora_core::connectors::http::Connector;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::mpsc::{channel, error::TrySendError, Receiver, Sender};

/// Spans waiting for the shipper; more are dropped (and counted).
const QUEUE: usize = 8192;
/// Spans per export request.
const BATCH: usize = 512;
/// How often the shipper sends what it has.
const FLUSH_EVERY: Duration = Duration::from_millis(500);
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

struct Queue {
    tx: Sender<Value>,
    dropped: prometheus::IntCounter,
}

static QUEUE_TX: OnceLock<Queue> = OnceLock::new();

/// Installs the span queue (once per process); the receiver goes to the [`Shipper`]. Tokio's
/// channel takes its slots in blocks of 32 as spans come: a gateway without tracing holds none
/// (std's `sync_channel` wrote all 8,192 slots at start, 655 KB resident for nothing).
pub fn install(dropped: prometheus::IntCounter) -> Option<Receiver<Value>> {
    let (tx, rx) = channel(QUEUE);
    QUEUE_TX.set(Queue { tx, dropped }).ok().map(|()| rx)
}

fn attr(key: &str, v: Value) -> Option<Value> {
    let value = match v {
        Value::Null => return None,
        Value::String(s) => json!({"stringValue": s}),
        Value::Bool(b) => json!({"boolValue": b}),
        Value::Number(n) if n.is_f64() => json!({"doubleValue": n}),
        Value::Number(n) => json!({"intValue": n.to_string()}),
        Value::Array(a) => json!({"arrayValue": {"values": a.into_iter()
            .filter_map(|x| attr("", x).map(|v| v["value"].clone())).collect::<Vec<_>>()}}),
        Value::Object(_) => json!({"stringValue": v.to_string()}),
    };
    Some(json!({"key": key, "value": value}))
}

fn attrs(list: Vec<(&str, Value)>) -> Vec<Value> {
    list.into_iter().filter_map(|(k, v)| attr(k, v)).collect()
}

fn operation(route: Route) -> &'static str {
    match route {
        Route::ChatCompletions | Route::Messages => "chat",
        Route::Completions => "text_completion",
        Route::Embeddings => "embeddings",
        other => other.name(),
    }
}

/// Whether this trace is exported: a caller's sampled `traceparent` is followed; a new trace
/// is kept with probability `ratio`, decided from its id (every replica decides alike).
fn sampled(trace: &crate::proxy::trace::TraceContext, ratio: f64) -> bool {
    if trace.parent_id.is_some() {
        return trace.flags().ends_with('1');
    }
    let low = trace
        .trace_id()
        .get(16..)
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or(0);
    (low as f64) < ratio * u64::MAX as f64
}

/// One span; `ids` are (trace, span, parent).
fn span(
    (trace_id, span_id, parent): (&str, &str, Option<&str>),
    name: String,
    kind: u8,
    (start, end): (u64, u64),
    attributes: Vec<Value>,
    error: Option<&str>,
) -> Value {
    let status = match error {
        Some(m) => json!({"code": 2, "message": m}),
        None => json!({"code": 0}),
    };
    json!({
        "traceId": trace_id, "spanId": span_id, "parentSpanId": parent.unwrap_or(""),
        "name": name, "kind": kind,
        "startTimeUnixNano": start.to_string(), "endTimeUnixNano": end.to_string(),
        "attributes": attributes, "status": status,
    })
}

/// Whether a request with `trace` will have its spans exported (tracing on and sampled).
pub fn exported(snapshot: &Snapshot, trace: Option<&crate::proxy::trace::TraceContext>) -> bool {
    match (&snapshot.state.config.telemetry.otlp, trace) {
        (Some(settings), Some(trace)) => sampled(trace, settings.sample_ratio),
        _ => false,
    }
}

/// Queues the spans of a finished inference request (when tracing is on and it is sampled).
pub fn record(snapshot: &Snapshot, ctx: &RequestCtx) {
    let Some(queue) = QUEUE_TX.get() else { return };
    let Some(settings) = &snapshot.state.config.telemetry.otlp else {
        return;
    };
    let Some(trace) = &ctx.trace else { return };
    if !ctx.route.is_inference() || !sampled(trace, settings.sample_ratio) {
        return;
    }
    for s in spans(ctx, trace) {
        if let Err(TrySendError::Full(_)) = queue.tx.try_send(s) {
            queue.dropped.inc();
        }
    }
}

fn spans(ctx: &RequestCtx, trace: &crate::proxy::trace::TraceContext) -> Vec<Value> {
    let now_ns = crate::clock::unix_ms() * 1_000_000;
    let elapsed = ctx.started.elapsed().as_nanos() as u64;
    let start_ns = now_ns.saturating_sub(elapsed);
    let served = match (&ctx.model, ctx.served) {
        (Some(m), Some(i)) => m.deployments.get(i).map(|d| (m, d)),
        _ => None,
    };
    let op = operation(ctx.route);
    let request_model = ctx.model.as_ref().map(|m| m.config.name.clone());
    let cost = match (served, ctx.usage) {
        (Some((m, d)), Some(u)) => Some(crate::governance::cost::cost_usd(&d.spec(m).price, &u)),
        _ => None,
    };
    let error = ctx
        .error_code
        .map(str::to_string)
        .or_else(|| (ctx.status >= 500).then(|| ctx.status.to_string()));
    let who = ctx.identity.as_deref();
    let server_attrs = attrs(vec![
        ("gen_ai.operation.name", json!(op)),
        (
            "gen_ai.provider.name",
            json!(served.map(|(_, d)| d.provider.config.kind.name())),
        ),
        ("gen_ai.request.model", json!(request_model)),
        (
            "gen_ai.response.model",
            json!(served.map(|(m, d)| d.spec(m).model.clone())),
        ),
        (
            "gen_ai.usage.input_tokens",
            json!(ctx.usage.map(|u| u.prompt_tokens)),
        ),
        (
            "gen_ai.usage.output_tokens",
            json!(ctx.usage.map(|u| u.completion_tokens)),
        ),
        (
            "gen_ai.response.finish_reasons",
            json!(ctx.finish_reasons.as_ref().filter(|r| !r.is_empty())),
        ),
        ("error.type", json!(error)),
        ("http.response.status_code", json!(ctx.status)),
        ("switchyard.request_id", json!(ctx.request_id)),
        ("switchyard.key.name", json!(who.map(|i| i.name.clone()))),
        ("switchyard.team", json!(who.and_then(|i| i.team.clone()))),
        ("switchyard.cost_usd", json!(cost)),
        ("switchyard.tries", json!(ctx.tries)),
    ]);
    let name = format!("{op} {}", request_model.as_deref().unwrap_or(""));
    let mut out = vec![span(
        (
            trace.trace_id(),
            trace.span_id(),
            trace.parent_id.as_deref(),
        ),
        name.trim_end().to_string(),
        2,
        (start_ns, now_ns),
        server_attrs,
        error.as_deref(),
    )];
    // One client span per try: failed ones first (in order), then the one that served.
    let marks = &ctx.try_started;
    for i in 0..ctx.tries as usize {
        let at = |j: usize| marks.get(j).map(|d| start_ns + d.as_nanos() as u64);
        let begin = at(i).unwrap_or(start_ns);
        let end = at(i + 1).unwrap_or(now_ns);
        let (provider, model, kind, err) = match ctx.failures.get(i) {
            Some(f) => {
                let kind = ctx.model.as_ref().and_then(|m| {
                    m.deployments
                        .iter()
                        .find(|d| d.provider.name() == f.provider)
                        .map(|d| d.provider.config.kind.name())
                });
                (
                    f.provider.clone(),
                    f.model.clone(),
                    kind,
                    Some(f.reason.clone()),
                )
            }
            None => match served {
                Some((m, d)) => (
                    d.provider.name().to_string(),
                    d.spec(m).model.clone(),
                    Some(d.provider.config.kind.name()),
                    None,
                ),
                None => continue,
            },
        };
        let span_id = format!("{:016x}", crate::proxy::context::random_u64() | 1);
        let client_attrs = attrs(vec![
            ("gen_ai.operation.name", json!(op)),
            ("gen_ai.provider.name", json!(kind)),
            ("gen_ai.request.model", json!(model)),
            ("switchyard.provider", json!(provider)),
            ("error.type", json!(err)),
        ]);
        out.push(span(
            (trace.trace_id(), &span_id, Some(trace.span_id())),
            format!("{op} {model}"),
            3,
            (begin, end.max(begin)),
            client_attrs,
            err.as_deref(),
        ));
    }
    out
}

/// Sends queued spans in batches to `{endpoint}/v1/traces`.
pub struct Shipper {
    pub rx: Mutex<Option<Receiver<Value>>>,
    pub live: Arc<Live>,
}

impl Shipper {
    async fn export(&self, connector: &Connector, spans: Vec<Value>) {
        let cfg = self.live.load().state.config.clone();
        let Some(settings) = &cfg.telemetry.otlp else {
            return;
        };
        let n = spans.len();
        let body = json!({"resourceSpans": [{
            "resource": {"attributes": attrs(vec![
                ("service.name", json!("switchyard")),
                ("service.version", json!(env!("CARGO_PKG_VERSION"))),
            ])},
            "scopeSpans": [{"scope": {"name": "switchyard", "version": env!("CARGO_PKG_VERSION")},
                            "spans": spans}],
        }]});
        let mut headers = vec![("content-type", "application/json".to_string())];
        headers.extend(
            settings
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.expose().to_string())),
        );
        let outcome = crate::identity::http_call(
            connector,
            &settings.endpoint,
            "POST",
            &settings.endpoint.path("/v1/traces"),
            &headers,
            bytes::Bytes::from(body.to_string()),
            EXPORT_TIMEOUT,
        )
        .await;
        match outcome {
            Ok((200..=299, _)) => {}
            Ok((status, _)) => log::warn!("otlp: collector answered {status}; {n} span(s) lost"),
            Err(e) => log::warn!("otlp: {e}; {n} span(s) lost"),
        }
    }
}

#[async_trait]
impl BackgroundService for Shipper {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let taken = self.rx.lock().ok().and_then(|mut r| r.take());
        let Some(mut rx) = taken else { return };
        let connector = Connector::new(None);
        loop {
            let stop = tokio::select! {
                _ = shutdown.changed() => true,
                _ = tokio::time::sleep(FLUSH_EVERY) => false,
            };
            loop {
                let batch: Vec<Value> = std::iter::from_fn(|| rx.try_recv().ok())
                    .take(BATCH)
                    .collect();
                if batch.is_empty() {
                    break;
                }
                self.export(&connector, batch).await;
            }
            if stop {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::trace::TraceContext;

    #[test]
    fn sampling_follows_the_caller_or_the_ratio() {
        let t = |parent: Option<&str>, flags: &str, id: &str| {
            TraceContext::of(id, parent, "00f067aa0ba902b7", flags)
        };
        let low = "4bf92f3577b34da60000000000000001";
        let high = "4bf92f3577b34da6ffffffffffffff00";
        assert!(sampled(&t(Some("a"), "01", high), 0.0));
        assert!(!sampled(&t(Some("a"), "00", low), 1.0));
        assert!(sampled(&t(None, "01", low), 0.5));
        assert!(!sampled(&t(None, "01", high), 0.5));
        assert!(!sampled(&t(None, "01", low), 0.0));
    }

    #[test]
    fn attributes_use_otlp_json_value_types() {
        let a = attrs(vec![
            ("s", json!("x")),
            ("i", json!(3)),
            ("f", json!(0.5)),
            ("l", json!(["stop"])),
            ("none", Value::Null),
        ]);
        assert_eq!(a.len(), 4);
        assert_eq!(a[1]["value"]["intValue"], "3");
        assert_eq!(a[2]["value"]["doubleValue"], 0.5);
        assert_eq!(
            a[3]["value"]["arrayValue"]["values"][0]["stringValue"],
            "stop"
        );
    }
}
