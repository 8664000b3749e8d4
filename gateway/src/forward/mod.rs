//! Executes a routing plan for one inference request: tries deployments in order, exchanges the
//! request with the chosen upstream through the connection [`pool`], and relays the answer
//! to the caller as it arrives.
//!
//! This is "pattern C" from `docs/architecture.md`: the body was read once in `request_filter`,
//! so any size replays to any number of deployments, and a 429/5xx answer or a connect failure
//! moves to the next deployment before a single byte reached the caller. Once the response header
//! has been written to the caller there is no retry.
//!
//! One file per job: [`fallback`] (the requested model, then its fallback models), [`plan`] (the
//! loop over one model's plan's steps), [`attempt`] (one try up to the
//! response header), [`race`] (hedged tries), [`request_head`] (the upstream request head),
//! [`relay`] (the caller's head, whole bodies, streams), [`in_process`] (mock and local pool),
//! [`cutoff`] (a budget's stream cutoff), [`count_tokens`] (token counting), [`answer_check`]
//! (is a 2xx an answer, and does a strict structured answer validate) and [`translate`] (the
//! request and answer in each format). It owns upstream I/O only: what bytes to send comes from `switchyard_adapters`,
//! which deployment from [`crate::routing`], what a request may spend from
//! [`crate::governance`].

mod answer_check;
mod attempt;
mod count_tokens;
mod cutoff;
mod fallback;
pub mod in_process;
mod plan;
pub mod pool;
mod race;
mod relay;
mod request_head;
pub mod translate;

use crate::errors::GatewayError;
use crate::governance::Spend;
use crate::proxy::context::RequestCtx;
use crate::proxy::response_headers as rh;
use pingora_core::connectors::http::Connector;
use pingora_error::Error;
use std::sync::Arc;
use std::time::Duration;

/// Largest upstream body the gateway takes: a successful non-stream answer (read whole, to be
/// priced or translated), an error body to translate, or any other non-stream body relayed as it
/// comes. A chat completion is at most a few MB (128k output tokens with logprobs), and 64 MiB
/// still holds an embeddings answer for ~2,000 inputs of 1,536 dimensions; anything longer is a
/// broken or hostile upstream, answered 502 `upstream_body_too_large` (or cut, once its head went
/// out) instead of growing memory.
pub(crate) const MAX_UPSTREAM_BODY: usize = 64 * 1024 * 1024;

/// `x-switchyard-cost-usd`'s value: dollars with eight decimals. Written from an integer count
/// of 1e-8 dollars (float formatting cost ~1,100 instructions on every answer); what is not a
/// finite non-negative amount below 10^10 USD is written as the formatter would.
pub(crate) fn cost_value(usd: f64) -> http::HeaderValue {
    if usd == 0.0 {
        // Unpriced deployments (local, mock, self-hosted): no digits to write.
        return http::HeaderValue::from_static("0.00000000");
    }
    if !(0.0..1e10).contains(&usd) {
        return rh::value(&format!("{usd:.8}")).unwrap_or(http::HeaderValue::from_static("0"));
    }
    let units = (usd * 1e8).round() as u64;
    let mut digits = [b'0'; 32];
    let mut end = digits.len();
    let mut n = units;
    let mut written = 0;
    // At least nine digits: eight decimals and a units digit.
    while n > 0 || written < 9 {
        end -= 1;
        digits[end] = b'0' + (n % 10) as u8;
        n /= 10;
        written += 1;
    }
    let int_len = written - 8;
    let mut out = Vec::with_capacity(written + 1);
    out.extend_from_slice(&digits[end..end + int_len]);
    out.push(b'.');
    out.extend_from_slice(&digits[end + int_len..]);
    http::HeaderValue::from_maybe_shared(bytes::Bytes::from(out))
        .unwrap_or(http::HeaderValue::from_static("0"))
}

/// Upstream connections idle longer than this are not reused (below common provider keep-alives).
pub(crate) const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How a request ended without a normal response.
pub enum Failure {
    /// Nothing was written yet: answer the caller with this error.
    Respond(GatewayError),
    /// The caller's connection failed or the response was already under way: stop.
    Abort(Box<Error>),
}

impl From<GatewayError> for Failure {
    fn from(e: GatewayError) -> Self {
        Failure::Respond(e)
    }
}

/// Runs plans against upstreams. One per process; the pools are shared.
pub struct Forwarder {
    /// Connections to the deployments' upstreams.
    pool: pool::UpstreamPool,
    /// Guardrail webhooks' connections.
    connector: Connector,
    spend: Arc<Spend>,
}

impl Forwarder {
    pub fn new(pool: pool::UpstreamPool, connector: Connector, spend: Arc<Spend>) -> Self {
        Forwarder {
            pool,
            connector,
            spend,
        }
    }

    /// Strict durability: commits the request's ledger row before the caller gets the response's
    /// last bytes (a no-op in batched mode, where `logging` queues the row).
    async fn commit_row(&self, ctx: &mut RequestCtx) {
        if !self.spend.strict || ctx.ledger_recorded || !ctx.route.is_billed() {
            return;
        }
        match self
            .spend
            .record_durable(crate::governance::ledger_row::row_for(ctx))
            .await
        {
            Ok(()) => ctx.ledger_recorded = true,
            Err(e) => log::error!("request {}: {e}", ctx.request_id),
        }
    }
}

#[cfg(test)]
mod cost_value_tests {
    use super::cost_value;

    #[test]
    fn eight_decimals_as_the_formatter_writes_them() {
        for usd in [
            0.0,
            0.000_000_01,
            0.000_123_456_78,
            1.5,
            12.345_678_9,
            123_456.0,
            9.999_999_999,
        ] {
            assert_eq!(
                cost_value(usd).to_str().ok(),
                Some(format!("{usd:.8}").as_str()),
                "{usd}"
            );
        }
    }
}
