//! A finished request's usage and cost ([`Accounting`], estimated where the provider reported
//! none) and the ledger row made from it; ledger tags from `metadata` and `x-switchyard-tags`.
//! Pure functions of the request context: no I/O.

use crate::governance::ledger::{LedgerRow, RowNumbers, RowText};
use switchyard_filters::auth::Identity;
use switchyard_filters::budget::{self};

/// Ledger tags: the string values of the request's `metadata` object and the `k=v` pairs of an
/// `x-switchyard-tags` header, as one JSON object (`None` when there are none).
pub fn tags(metadata: Option<&str>, header: Option<&str>) -> Option<String> {
    let mut map = serde_json::Map::new();
    if let Some(Ok(serde_json::Value::Object(m))) =
        metadata.map(serde_json::from_str::<serde_json::Value>)
    {
        for (k, v) in m {
            if let serde_json::Value::String(s) = v {
                map.insert(k, serde_json::Value::String(s));
            }
        }
    }
    for pair in header.unwrap_or("").split(',') {
        if let Some((k, v)) = pair.split_once('=') {
            let (k, v) = (k.trim(), v.trim());
            if !k.is_empty() {
                map.insert(k.to_string(), serde_json::Value::String(v.to_string()));
            }
        }
    }
    if map.is_empty() || map.len() > 64 {
        return None;
    }
    serde_json::to_string(&map).ok()
}

/// What a request used and cost, without allocating.
pub struct Accounting<'a> {
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub tokens_cached: u64,
    pub cost_nanos: u64,
    pub estimated: bool,
    /// The serving provider's name.
    pub provider: Option<&'a str>,
}

/// The usage and cost of a finished (or finishing) request. When a deployment served but reported
/// no usage (a cut stream, a provider without usage), tokens are estimated — the prompt from the
/// body size, the completion from the events relayed — and `estimated` says so.
pub fn accounting(ctx: &crate::proxy::context::RequestCtx) -> Accounting<'_> {
    if let Some((provider, cost_nanos)) = crate::passthrough::charge(ctx) {
        // A pass-through request is metered per request (`price.per_request`), never by tokens.
        return Accounting {
            tokens_in: 0,
            tokens_out: 0,
            tokens_cached: 0,
            cost_nanos,
            estimated: false,
            provider: Some(provider),
        };
    }
    let served = match (&ctx.model, ctx.served) {
        (Some(m), Some(i)) => m.deployments.get(i).map(|d| (m, d)),
        _ => None,
    };
    let (usage, estimated) = match (ctx.usage, served) {
        (Some(u), _) => (Some(u), false),
        (None, Some(_)) => {
            let prompt = (ctx.body_bytes / 4) as u64;
            let completion = ctx.streamed_events;
            (
                Some(switchyard_adapters::openai::Usage {
                    prompt_tokens: prompt,
                    completion_tokens: completion,
                    total_tokens: prompt + completion,
                    ..Default::default()
                }),
                true,
            )
        }
        (None, None) => (None, false),
    };
    let cost_nanos = match (served, usage) {
        (Some((m, d)), Some(u)) => {
            budget::usd_to_nanos(crate::governance::cost::cost_usd(&d.spec(m).price, &u))
        }
        _ => 0,
    };
    Accounting {
        tokens_in: usage.map(|u| u.prompt_tokens).unwrap_or(0),
        tokens_out: usage.map(|u| u.completion_tokens).unwrap_or(0),
        tokens_cached: usage.map(|u| u.cached_tokens()).unwrap_or(0),
        cost_nanos,
        estimated,
        provider: served.map(|(_, d)| d.provider.name()),
    }
}

/// The ledger row of a finished (or finishing) request (see [`accounting`]).
pub fn row_for(ctx: &crate::proxy::context::RequestCtx) -> LedgerRow {
    row_with(ctx, &accounting(ctx))
}

/// The ledger row of a request whose accounting is already worked out.
pub(super) fn row_with(
    ctx: &crate::proxy::context::RequestCtx,
    acct: &Accounting<'_>,
) -> LedgerRow {
    let served = match (&ctx.model, ctx.served) {
        (Some(m), Some(i)) => m.deployments.get(i).map(|d| (m, d)),
        _ => None,
    };
    let who = ctx.identity.as_deref();
    let subject = who.map(Identity::subject);
    LedgerRow::new(
        &RowText {
            request_id: &ctx.request_id,
            key: subject.as_deref(),
            team: who.and_then(|i| i.team.as_deref()),
            project: who.and_then(|i| i.project.as_deref()),
            user: who.and_then(|i| i.user.as_deref()),
            model: ctx.model.as_ref().map(|m| m.config.name.as_str()),
            provider: acct.provider,
            deployment: served.map(|(m, d)| d.spec(m).model.as_str()),
            tags: ctx.tags.as_deref(),
            endpoint: Some(ctx.route.name()),
        },
        RowNumbers {
            ts_ms: crate::clock::unix_ms() as i64,
            tokens_in: acct.tokens_in,
            tokens_out: acct.tokens_out,
            tokens_cached: acct.tokens_cached,
            cost_nanos: acct.cost_nanos,
            estimated: acct.estimated,
            status: ctx.status,
        },
    )
}
