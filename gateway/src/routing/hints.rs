//! Per-request routing hints: body fields `routingStrategy`, `task`, `retryAttempts`,
//! `maxCostPerRequest`, `fallbackProviders`, and headers `x-switchyard-strategy`,
//! `x-switchyard-max-cost`, `x-switchyard-fallback-providers` (a header wins over the body
//! field). Body hints are removed before any provider sees the request; a body that names none of
//! them is not parsed here and goes on byte for byte (one multi-pattern scan: an Aho-Corasick
//! automaton over the quoted keys, built once — separate substring searches cost ~4,000
//! instructions on every request).
//! Owns the parsing only: the plan ([`crate::routing::router`]) applies them.

use crate::config::Strategy;
use crate::errors::GatewayError;
use bytes::Bytes;
use serde_json::{Map, Value};

/// What the caller asked of routing for this request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hints {
    pub strategy: Option<Strategy>,
    /// Narrows a candidates model's candidates through its `tasks`.
    pub task: Option<String>,
    /// Tries for this request (capped by the model's `retry.attempts`).
    pub retry_attempts: Option<u32>,
    /// USD: deployments whose expected cost for this request exceeds it are skipped.
    pub max_cost_usd: Option<f64>,
    /// Provider names or kinds tried after the model's own deployments
    /// ([`crate::routing::hinted`]).
    pub fallback_providers: Vec<String>,
}

/// The hint fields as JSON keys (quoted): a body holding none of them is not parsed.
const FIELDS: [&str; 5] = [
    "\"routingStrategy\"",
    "\"task\"",
    "\"retryAttempts\"",
    "\"maxCostPerRequest\"",
    "\"fallbackProviders\"",
];

/// One searcher per field in [`FIELDS`], built on first use. Five SIMD substring scans cost
/// ~600 instructions on a short chat body where one Aho-Corasick automaton over the five cost
/// ~2,200 (its prefilter stops at every quote: JSON is full of them).
fn fields() -> &'static [memchr::memmem::Finder<'static>] {
    static FINDERS: std::sync::OnceLock<Vec<memchr::memmem::Finder<'static>>> =
        std::sync::OnceLock::new();
    FINDERS.get_or_init(|| {
        FIELDS
            .iter()
            .map(|f| memchr::memmem::Finder::new(f.as_bytes()))
            .collect()
    })
}

/// Hint headers, named once (a `&str` name is parsed and hashed on every lookup).
static STRATEGY_HEADER: http::HeaderName = http::HeaderName::from_static("x-switchyard-strategy");
static MAX_COST_HEADER: http::HeaderName = http::HeaderName::from_static("x-switchyard-max-cost");
static FALLBACK_PROVIDERS_HEADER: http::HeaderName =
    http::HeaderName::from_static("x-switchyard-fallback-providers");

fn invalid(message: String, param: &'static str) -> GatewayError {
    GatewayError::RoutingHint {
        message,
        param,
        code: "invalid_routing_hint",
    }
}

/// A strategy by the name a caller gives: `cheapest`, `fastest`, or any configured strategy name.
pub fn strategy(name: &str) -> Option<Strategy> {
    Some(match name {
        "cheapest" | "cost" => Strategy::Cost,
        "fastest" | "least_latency" => Strategy::LeastLatency,
        "quality" => Strategy::Quality,
        "reliability" => Strategy::Reliability,
        "priority" => Strategy::Priority,
        "round_robin" => Strategy::RoundRobin,
        "weighted" => Strategy::Weighted,
        "lowest_latency_under_budget" => Strategy::LowestLatencyUnderBudget,
        _ => return None,
    })
}

fn parse_strategy(name: &str, param: &'static str) -> Result<Strategy, GatewayError> {
    strategy(name).ok_or_else(|| {
        invalid(
            format!("unknown routing strategy {name:?} (cheapest, fastest, quality, reliability, priority, round_robin, weighted, least_latency, cost)"),
            param,
        )
    })
}

fn parse_cost(v: f64, param: &'static str) -> Result<f64, GatewayError> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(invalid(
            format!("{param} must be a number of USD > 0"),
            param,
        ))
    }
}

/// The request's hints, and its body without the hint fields (the same bytes when it had none).
pub fn extract(
    body: Bytes,
    headers: &http::HeaderMap,
) -> Result<(Bytes, Option<Hints>), GatewayError> {
    let mut hints = Hints::default();
    let mut body = body;
    if fields().iter().any(|f| f.find(&body[..]).is_some()) {
        if let Ok(mut map) = serde_json::from_slice::<Map<String, Value>>(&body) {
            if from_body(&mut map, &mut hints)? {
                body = Bytes::from(serde_json::to_vec(&map).unwrap_or_else(|_| body.to_vec()));
            }
        }
    }
    from_headers(headers, &mut hints)?;
    Ok((body, (hints != Hints::default()).then_some(hints)))
}

/// Takes the hint fields out of `map`; true when one was there.
fn from_body(map: &mut Map<String, Value>, hints: &mut Hints) -> Result<bool, GatewayError> {
    let mut found = false;
    if let Some(v) = map.shift_remove("routingStrategy") {
        found = true;
        let name = v
            .as_str()
            .ok_or_else(|| invalid("routingStrategy must be a string".into(), "routingStrategy"))?;
        hints.strategy = Some(parse_strategy(name, "routingStrategy")?);
    }
    if let Some(v) = map.shift_remove("task") {
        found = true;
        let task = v
            .as_str()
            .ok_or_else(|| invalid("task must be a string".into(), "task"))?;
        hints.task = Some(task.to_string());
    }
    if let Some(v) = map.shift_remove("retryAttempts") {
        found = true;
        let n = v
            .as_u64()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| {
                invalid(
                    "retryAttempts must be an integer from 1 to 100".into(),
                    "retryAttempts",
                )
            })?;
        hints.retry_attempts = Some(n as u32);
    }
    if let Some(v) = map.shift_remove("maxCostPerRequest") {
        found = true;
        let usd = v.as_f64().ok_or_else(|| {
            invalid(
                "maxCostPerRequest must be a number of USD".into(),
                "maxCostPerRequest",
            )
        })?;
        hints.max_cost_usd = Some(parse_cost(usd, "maxCostPerRequest")?);
    }
    if let Some(v) = map.shift_remove("fallbackProviders") {
        found = true;
        hints.fallback_providers = provider_list(&v)?;
    }
    Ok(found)
}

/// `fallbackProviders`: an array of names (or one comma-separated string).
fn provider_list(v: &Value) -> Result<Vec<String>, GatewayError> {
    let bad = || {
        invalid(
            "fallbackProviders must be an array of provider names or kinds".into(),
            "fallbackProviders",
        )
    };
    match v {
        Value::String(s) => Ok(split_names(s)),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(|s| s.trim().to_string()).ok_or_else(bad))
            .filter(|r| r.as_ref().map_or(true, |s| !s.is_empty()))
            .collect(),
        _ => Err(bad()),
    }
}

fn split_names(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}

/// A `task` the model's `tasks` map does not name is the caller's 400, listing the known ones
/// (silently routing it to every candidate would hide a typo).
pub fn check_task(
    hints: Option<&Hints>,
    tasks: &std::collections::BTreeMap<String, Vec<String>>,
) -> Result<(), GatewayError> {
    let Some(task) = hints.and_then(|h| h.task.as_deref()) else {
        return Ok(());
    };
    if tasks.contains_key(task) {
        return Ok(());
    }
    let known: Vec<&str> = tasks.keys().map(String::as_str).collect();
    let message = if known.is_empty() {
        format!("unknown task {task:?}: this model has no tasks")
    } else {
        format!("unknown task {task:?} (known tasks: {})", known.join(", "))
    };
    Err(GatewayError::RoutingHint {
        message,
        param: "task",
        code: "unknown_task",
    })
}

fn from_headers(headers: &http::HeaderMap, hints: &mut Hints) -> Result<(), GatewayError> {
    // One pass over the names (a handful) instead of three lookups by name (~600 instructions).
    if !headers
        .keys()
        .any(|k| k.as_str().starts_with("x-switchyard-"))
    {
        return Ok(());
    }
    let text = |name: &http::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(name) = text(&STRATEGY_HEADER) {
        hints.strategy = Some(parse_strategy(name, "x-switchyard-strategy")?);
    }
    if let Some(v) = text(&MAX_COST_HEADER) {
        let usd = v.parse::<f64>().map_err(|_| {
            invalid(
                "x-switchyard-max-cost must be a number of USD".into(),
                "x-switchyard-max-cost",
            )
        })?;
        hints.max_cost_usd = Some(parse_cost(usd, "x-switchyard-max-cost")?);
    }
    if let Some(v) = text(&FALLBACK_PROVIDERS_HEADER) {
        hints.fallback_providers = split_names(v);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_without_hints_goes_on_byte_for_byte() {
        let raw = Bytes::from_static(br#"{"model":"m",  "messages":[]}"#);
        let (body, hints) = extract(raw.clone(), &http::HeaderMap::new()).unwrap();
        assert_eq!(body, raw);
        assert!(body.as_ptr() == raw.as_ptr(), "copied");
        assert_eq!(hints, None);
    }

    #[test]
    fn body_hints_are_taken_out_and_headers_win() {
        let raw = Bytes::from_static(
            br#"{"model":"auto","routingStrategy":"cheapest","task":"summarize","retryAttempts":2,"maxCostPerRequest":0.5,"messages":[]}"#,
        );
        let mut h = http::HeaderMap::new();
        h.insert("x-switchyard-strategy", "fastest".parse().unwrap());
        let (body, hints) = extract(raw, &h).unwrap();
        assert_eq!(&body[..], br#"{"model":"auto","messages":[]}"#);
        let hints = hints.unwrap();
        assert_eq!(hints.strategy, Some(Strategy::LeastLatency));
        assert_eq!(hints.task.as_deref(), Some("summarize"));
        assert_eq!(hints.retry_attempts, Some(2));
        assert_eq!(hints.max_cost_usd, Some(0.5));
    }

    #[test]
    fn a_hint_word_inside_a_message_changes_nothing() {
        let raw = Bytes::from_static(
            br#"{"model":"m","messages":[{"role":"user","content":"my task"}]}"#,
        );
        let (body, hints) = extract(raw.clone(), &http::HeaderMap::new()).unwrap();
        assert_eq!(body, raw);
        assert_eq!(hints, None);
    }

    #[test]
    fn bad_hints_name_their_field() {
        for (body, param) in [
            (
                &br#"{"routingStrategy":"fastest-ever"}"#[..],
                "routingStrategy",
            ),
            (br#"{"retryAttempts":0}"#, "retryAttempts"),
            (br#"{"maxCostPerRequest":-1}"#, "maxCostPerRequest"),
        ] {
            match extract(Bytes::from_static(body), &http::HeaderMap::new()) {
                Err(GatewayError::RoutingHint { param: p, .. }) => assert_eq!(p, param),
                other => panic!("{other:?}"),
            }
        }
    }
}
