//! The answer step for whole (non-stream) answers: the request's response guardrails run on
//! the answer's text in the caller's format (message content, text blocks, tool call
//! arguments, Responses output text) after translation and before a byte is written. Redact
//! rewrites the body; block replaces it with an error in the caller's format (never the
//! blocked text); flag records. Webhook guardrails are then asked about the answer's text
//! ([`super::webhook`]). Runs only when a response guardrail applies (the caller checks
//! `ctx.response_guardrails` first). It must not touch the relay's framing or headers.

use super::request::scan;
use super::webhook::{consult, decided, Asker};
use super::{Action, Applied, Guardrail, Phase};
use crate::errors::GatewayError;
use crate::proxy::context::RequestCtx;
use bytes::Bytes;
use pingora_core::connectors::http::Connector;
use serde_json::Value;
use std::sync::Arc;
use switchyard_adapters::providers::Caller;

/// The caller's status and body after the answer's guardrails.
pub async fn answer_step(
    ctx: &mut RequestCtx,
    connector: &Connector,
    caller: Caller,
    status: u16,
    body: Bytes,
) -> (u16, Bytes) {
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
            return blocked(ctx, g, caller);
        }
    }
    let asker = Asker::about_answers(connector, ctx);
    for g in rails.iter().filter(|g| g.webhook.is_some()) {
        let text = Value::String(
            answer_text(&mut doc, caller)
                .iter()
                .map(|s| s.as_str())
                .collect(),
        );
        let verdict = consult(&asker, g, ctx, "text", &text).await;
        let Some(hook) = &g.webhook else { continue };
        let Some((action, replacement)) = decided(verdict, g, hook, Phase::Response, ctx) else {
            continue;
        };
        ctx.guardrails
            .push(Applied::new(g, action, Phase::Response));
        if action == Action::Block {
            return blocked(ctx, g, caller);
        }
        if let Some(Value::String(t)) = replacement {
            let mut slots = answer_text(&mut doc, caller).into_iter();
            if let Some(first) = slots.next() {
                *first = t;
            }
            slots.for_each(String::clear);
            changed = true;
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

/// The caller's error for an answer `g` blocked.
fn blocked(ctx: &mut RequestCtx, g: &Arc<Guardrail>, caller: Caller) -> (u16, Bytes) {
    let e = GatewayError::ContentBlocked {
        guardrail: g.name.clone(),
        phase: "answer",
        param: None,
    };
    ctx.error_code = Some(e.code());
    ctx.status = e.status();
    (e.status(), e.body_for(caller, &ctx.request_id))
}

/// The text parts of a whole answer in `caller`'s format, in order: chat `message.content`,
/// completions `text`, Messages `text` blocks, Responses `output_text` parts.
fn answer_text(doc: &mut Value, caller: Caller) -> Vec<&mut String> {
    fn list<'v>(v: &'v mut Value, key: &str) -> Vec<&'v mut Value> {
        match v.get_mut(key) {
            Some(Value::Array(a)) => a.iter_mut().collect(),
            _ => Vec::new(),
        }
    }
    fn typed(v: &Value, t: &str) -> bool {
        v.get("type").and_then(Value::as_str) == Some(t)
    }
    let mut out = Vec::new();
    match caller {
        Caller::OpenAi => {
            for c in list(doc, "choices") {
                if let Some(Value::String(s)) = c.pointer_mut("/message/content") {
                    out.push(s);
                }
            }
        }
        Caller::OpenAiCompletions => {
            for c in list(doc, "choices") {
                if let Some(Value::String(s)) = c.get_mut("text") {
                    out.push(s);
                }
            }
        }
        Caller::Anthropic => {
            for b in list(doc, "content")
                .into_iter()
                .filter(|b| typed(b, "text"))
            {
                if let Some(Value::String(s)) = b.get_mut("text") {
                    out.push(s);
                }
            }
        }
        Caller::OpenAiResponses => {
            for item in list(doc, "output") {
                for p in list(item, "content")
                    .into_iter()
                    .filter(|p| typed(p, "output_text"))
                {
                    if let Some(Value::String(s)) = p.get_mut("text") {
                        out.push(s);
                    }
                }
            }
        }
    }
    out
}
