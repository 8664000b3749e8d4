//! A budget's `on_exhaust: cutoff` on a stream in flight: whether the stream's running cost
//! reached what the request may spend, and the final event that says so in the caller's format.
//! Reads the request's admission only; decides nothing else.

use crate::proxy::context::RequestCtx;
use crate::routing::state::RoutedDeployment;
use bytes::Bytes;
use switchyard_adapters::openai;
use switchyard_adapters::providers::Caller;

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

/// The final stream event when a budget cut the stream off, in the caller's format.
pub(crate) fn budget_stop_event(caller: Caller) -> Bytes {
    let message = "the budget is exhausted: the stream was ended (on_exhaust: cutoff)";
    match caller {
        Caller::OpenAi | Caller::OpenAiCompletions | Caller::OpenAiResponses => {
            openai::stream_error_event(message, "budget_exceeded", "budget_exceeded")
        }
        Caller::Anthropic => {
            switchyard_adapters::anthropic::stream_error_event("billing_error", message)
        }
    }
}
