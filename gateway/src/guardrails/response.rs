//! The answer step for whole (non-stream) answers: the request's response guardrails run on
//! the answer's text in the caller's format (message content, text blocks, tool call
//! arguments, Responses output text) after translation and before a byte is written. Redact
//! rewrites the body; block replaces it with an error in the caller's format (never the
//! blocked text); flag records. Runs only when a response guardrail applies (the relay checks
//! `ctx.response_guardrails` first). It must not touch the relay's framing or headers.

use super::request::scan;
use super::{Action, Applied, Phase};
use crate::errors::GatewayError;
use crate::proxy::context::RequestCtx;
use bytes::Bytes;
use serde_json::Value;
use switchyard_adapters::providers::Caller;

/// The caller's status and body after the answer's guardrails.
pub fn answer_step(ctx: &mut RequestCtx, caller: Caller, status: u16, body: Bytes) -> (u16, Bytes) {
    let Ok(mut doc) = serde_json::from_slice::<Value>(&body) else {
        return (status, body);
    };
    let mut changed = false;
    let rails = ctx.response_guardrails.clone();
    for g in &rails {
        if scan(g, &mut doc, &mut changed).is_none() {
            continue;
        }
        ctx.guardrails
            .push(Applied::new(g, g.action, Phase::Response));
        if g.action == Action::Block {
            let e = GatewayError::ContentBlocked {
                guardrail: g.name.clone(),
                phase: "answer",
                param: None,
            };
            ctx.error_code = Some(e.code());
            ctx.status = e.status();
            return (e.status(), e.body_for(caller, &ctx.request_id));
        }
    }
    if !changed {
        return (status, body);
    }
    match serde_json::to_vec(&doc) {
        Ok(b) => (status, Bytes::from(b)),
        Err(_) => (status, body),
    }
}
