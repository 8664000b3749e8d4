//! Webhook guardrails: an external policy service asked about a request or an answer.
//! Switchyard POSTs `{guardrail, phase, model, key, team, messages | text}` and acts on
//! `{action: allow | block | redact, messages | text, reason}`.
//!
//! * request phase: the request's conversation (`messages`), or its prompt/input (`text`);
//!   redact replaces it with the one answered;
//! * response phase, whole answers: the answer's text (`text`, its text parts joined); redact
//!   puts the answered text in the first text part and empties the others; block answers the
//!   caller's error instead;
//! * response phase, streamed answers: the text has already gone out, so the webhook is asked
//!   once about the whole text at the end (the stream's last events — finish, usage, end marker —
//!   are held until it answers) and can only block, with the caller's final error event;
//!   a redact answer there is counted as a block (the text cannot be taken back).
//!
//! Past `timeout`, on a non-2xx status or an unreadable answer, `on_error` decides (allow or
//! block), counted as action `error`. Only guardrails with a `webhook` that apply to the request
//! are asked; it must not touch anything but the body or text it is given.

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
pub(super) enum Verdict {
    Allow,
    Block,
    Redact(Value),
    Failed(String),
}

/// Who asks a webhook, about which model, in which phase.
pub(super) struct Asker<'a> {
    pub connector: &'a Connector,
    pub model: String,
    pub phase: Phase,
}

impl<'a> Asker<'a> {
    /// Asks about the answers of `ctx`'s model.
    pub fn about_answers(connector: &'a Connector, ctx: &RequestCtx) -> Asker<'a> {
        Asker {
            connector,
            model: ctx
                .model
                .as_ref()
                .map_or_else(String::new, |m| m.config.name.clone()),
            phase: Phase::Response,
        }
    }
}

/// Asks `g`'s webhook (allow when it has none) about `subject` (`field` = `messages` or `text`).
pub(super) async fn consult(
    asker: &Asker<'_>,
    g: &Guardrail,
    ctx: &RequestCtx,
    field: &str,
    subject: &Value,
) -> Verdict {
    let Some(hook) = &g.webhook else {
        return Verdict::Allow;
    };
    let (model, phase) = (asker.model.as_str(), asker.phase);
    let who = ctx.identity.as_deref();
    let payload = json!({
        "guardrail": g.name,
        "phase": phase.label(),
        "model": model,
        "key": who.and_then(|w| w.key_name()),
        "team": who.and_then(|w| w.team.as_deref()),
        field: subject,
    });
    let verdict = ask(asker.connector, hook, &payload, field).await;
    if let Verdict::Failed(reason) = &verdict {
        log::warn!(
            "request {}: guardrail {} webhook failed ({}): {reason}",
            ctx.request_id,
            g.name,
            phase.label()
        );
    }
    verdict
}

/// What a verdict means once `on_error` has decided a failure (the failure is recorded):
/// `None` to let it through, else the action taken and the replacement of a redact.
pub(super) fn decided(
    verdict: Verdict,
    g: &Arc<Guardrail>,
    hook: &super::Webhook,
    phase: Phase,
    ctx: &mut RequestCtx,
) -> Option<(Action, Option<Value>)> {
    match verdict {
        Verdict::Allow => None,
        Verdict::Block => Some((Action::Block, None)),
        Verdict::Redact(v) => Some((Action::Redact, Some(v))),
        Verdict::Failed(_) => {
            ctx.guardrails.push(Applied::new(g, Action::Error, phase));
            hook.block_on_error.then_some((Action::Block, None))
        }
    }
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
    let asker = Asker {
        connector,
        model: model.to_string(),
        phase: Phase::Request,
    };
    for g in rails.iter().filter(|g| g.on_request) {
        let Some(hook) = &g.webhook else { continue };
        let Some((key, field)) = subject(doc) else {
            continue;
        };
        let verdict = consult(&asker, g, ctx, field, &doc[key]).await;
        let Some((action, replacement)) = decided(verdict, g, hook, Phase::Request, ctx) else {
            continue;
        };
        if let Some(v) = replacement {
            doc[key] = v;
            *changed = true;
        }
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
