//! A budget's `on_exhaust: cutoff` on a stream in flight: whether the stream's running cost
//! reached what the request may spend, and the final event that says so in the caller's format
//! (a Responses stream's own `response.failed` / `error`, never a chat-style error chunk).
//! Reads the request's admission only; decides nothing else.

use crate::proxy::context::RequestCtx;
use crate::routing::state::RoutedDeployment;
use bytes::{Bytes, BytesMut};
use switchyard_adapters::openai;
use switchyard_adapters::openai::responses::Turn;
use switchyard_adapters::providers::{Caller, StreamEncoder};

/// `on_exhaust: cutoff`: whether a stream's running cost — the prompt estimated from the body
/// plus one output token per event relayed — reached what the request may spend.
pub(crate) fn over_cutoff(ctx: &RequestCtx, dep: &RoutedDeployment) -> bool {
    let (Some(limit), Some(model)) = (
        ctx.admission.as_ref().and_then(|a| a.cutoff_nanos),
        ctx.model.as_ref(),
    ) else {
        return false;
    };
    let price = &dep.spec(model).price;
    // $ per million tokens = nano-dollars per thousandth of a token: × 1000 per token.
    let prompt = (ctx.body_bytes / 4) as f64 * price.input_per_mtok * 1000.0;
    let output = ctx.streamed_events as f64 * price.output_per_mtok * 1000.0;
    prompt + output >= limit as f64
}

const BUDGET_STOP: &str = "the budget is exhausted: the stream was ended (on_exhaust: cutoff)";

/// The final event of a stream a budget cut off, from its encoder: a Responses stream ends with
/// `response.failed` (code `budget_exceeded`); the other formats with [`budget_stop_event`].
pub(crate) fn budget_stop_encoded(caller: Caller, encoder: &mut StreamEncoder) -> Bytes {
    let mut out = BytesMut::new();
    if encoder.fail_with(&mut out, "budget_exceeded", BUDGET_STOP) {
        out.freeze()
    } else {
        budget_stop_event(caller)
    }
}

/// A native Responses stream cut off by a budget: OpenAI's `error` event, numbered after the
/// provider's events relayed so far.
pub(crate) fn budget_stop_native(turn: Option<&Turn>) -> Bytes {
    let seq = turn.map_or(0, Turn::next_sequence_number);
    openai::responses::native::error_event("budget_exceeded", BUDGET_STOP, seq)
}

/// The final stream event when a budget cut the stream off, in the caller's format.
pub(crate) fn budget_stop_event(caller: Caller) -> Bytes {
    let message = BUDGET_STOP;
    match caller {
        Caller::OpenAi | Caller::OpenAiCompletions | Caller::OpenAiResponses => {
            openai::stream_error_event(message, "budget_exceeded", "budget_exceeded")
        }
        Caller::Anthropic => {
            switchyard_adapters::anthropic::stream_error_event("billing_error", message)
        }
    }
}
