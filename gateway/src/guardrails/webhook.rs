//! Webhook guardrails: an external policy service asked about a request. Switchyard POSTs
//! `{guardrail, phase, model, key, team, messages | text}` (the request's conversation, or its
//! prompt/input text) and acts on `{action: allow | block | redact, messages | text, reason}`:
//! redact replaces the conversation (or text) with the one answered. Past `timeout`, on a
//! non-2xx status or an unreadable answer, `on_error` decides (allow or block), counted as
//! action `error`. Only guardrails with a `webhook` that apply to the request are asked; it must
//! not touch anything but the request body it is given.

use super::{Action, Applied, Guardrail, Phase};
use crate::errors::GatewayError;
use crate::proxy::context::RequestCtx;
use bytes::Bytes;
use pingora_core::connectors::http::Connector;
use serde_json::{json, Value};
use std::sync::Arc;

/// The body field a webhook sees and may replace: the conversation or the prompt text.
fn subject(doc: &Value) -> Option<(&'static str, &'static str)> {
    for key in ["messages", "input", "prompt"] {
        if let Some(v) = doc.get(key) {
            let is_conversation = v.as_array().is_some_and(|a| a.iter().all(Value::is_object));
            return Some((key, if is_conversation { "messages" } else { "text" }));
        }
    }
    None
}

/// What a webhook decided.
enum Verdict {
    Allow,
    Block,
    Redact(Value),
    Failed(String),
}

/// Asks each of `rails`' webhooks about `doc` (changed in place on a redact). A block, or a
/// failure with `on_error: block`, is the caller's 400 naming the guardrail.
pub async fn webhook_step(
    connector: &Connector,
    rails: &[Arc<Guardrail>],
    model: &str,
    ctx: &mut RequestCtx,
    doc: &mut Value,
    changed: &mut bool,
) -> Result<(), GatewayError> {
    for g in rails.iter().filter(|g| g.on_request) {
        let Some(hook) = &g.webhook else { continue };
        let Some((key, field)) = subject(doc) else {
            continue;
        };
        let who = ctx.identity.as_ref();
        let payload = json!({
            "guardrail": g.name,
            "phase": "request",
            "model": model,
            "key": who.and_then(|w| w.key_name()),
            "team": who.and_then(|w| w.team.as_deref()),
            field: doc[key],
        });
        let verdict = ask(connector, hook, &payload, field).await;
        let action = match verdict {
            Verdict::Allow => continue,
            Verdict::Block => Action::Block,
            Verdict::Redact(v) => {
                doc[key] = v;
                *changed = true;
                Action::Redact
            }
            Verdict::Failed(reason) => {
                log::warn!(
                    "request {}: guardrail {} webhook failed: {reason}",
                    ctx.request_id,
                    g.name
                );
                ctx.guardrails
                    .push(Applied::new(g, Action::Error, Phase::Request));
                if !hook.block_on_error {
                    continue;
                }
                Action::Block
            }
        };
        ctx.guardrails.push(Applied::new(g, action, Phase::Request));
        if action == Action::Block {
            return Err(GatewayError::ContentBlocked {
                guardrail: g.name.clone(),
                phase: "request",
                param: Some(key),
            });
        }
    }
    Ok(())
}

async fn ask(
    connector: &Connector,
    hook: &super::Webhook,
    payload: &Value,
    field: &str,
) -> Verdict {
    let body = Bytes::from(payload.to_string());
    let path = if hook.endpoint.path_prefix.is_empty() {
        "/"
    } else {
        hook.endpoint.path_prefix.as_str()
    };
    let headers = [("content-type", "application/json".to_string())];
    let answer = crate::identity::http::call(
        connector,
        &hook.endpoint,
        "POST",
        path,
        &headers,
        body,
        hook.timeout,
    )
    .await;
    let (status, body) = match answer {
        Ok(a) => a,
        Err(e) => return Verdict::Failed(e),
    };
    if !(200..300).contains(&status) {
        return Verdict::Failed(format!("status {status}"));
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return Verdict::Failed("answer is not JSON".into());
    };
    match v.get("action").and_then(Value::as_str) {
        Some("allow") => Verdict::Allow,
        Some("block") => Verdict::Block,
        Some("redact") => match v.get(field) {
            Some(replacement) => Verdict::Redact(replacement.clone()),
            None => Verdict::Failed(format!("redact without `{field}`")),
        },
        _ => Verdict::Failed("no valid `action`".into()),
    }
}
