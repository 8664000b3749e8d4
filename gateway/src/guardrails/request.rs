//! The request step: the guardrails that apply to a request (model's, key's, team's) run on the
//! caller's text before the provider sees it. Text is what a model reads: message `content` and
//! `text` parts, `system`, `prompt`, `input` (embeddings, Responses items, Anthropic tool-use
//! inputs), tool call `arguments`, tool results (`content`, `output`) and `instructions`.
//!
//! The body is parsed only when a guardrail applies, and rewritten only when one redacted or a
//! token cap changed it; otherwise the caller's bytes go on untouched. It must not route,
//! admit or forward.

use super::{Action, Applied, Guardrail, Phase};
use crate::errors::GatewayError;
use crate::ops::access_log::AccessLogger;
use crate::proxy::context::{RequestCtx, Route};
use crate::routing::state::State;
use bytes::Bytes;
use serde_json::Value;
use std::sync::Arc;
use switchyard_adapters::openai::InspectError;
use switchyard_filters::guardrails::redact_with;

/// Keys whose string values (directly or in arrays) are text a model reads.
const TEXT_KEYS: [&str; 8] = [
    "content",
    "text",
    "input",
    "prompt",
    "system",
    "arguments",
    "instructions",
    "output",
];

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Not text (ids, roles, model, base64 images).
    Off,
    /// Strings here and in arrays are text; objects go by their keys.
    Text,
    /// Every string below is text (a tool call's arguments as an object).
    All,
}

/// The top-level field a finding was in, as the error's `param`.
fn param_name(key: &str) -> &'static str {
    match key {
        "input" => "input",
        "prompt" => "prompt",
        "system" => "system",
        "instructions" => "instructions",
        _ => "messages",
    }
}

/// Calls `f(top-level field, text)` for each text string of a request body.
pub(super) fn each_text(doc: &mut Value, f: &mut impl FnMut(&'static str, &mut String)) {
    if let Value::Object(o) = doc {
        for (k, v) in o.iter_mut() {
            let param = param_name(k);
            let mode = child_mode(Mode::Off, k, v);
            walk(v, param, mode, f);
        }
    }
}

fn child_mode(parent: Mode, key: &str, v: &Value) -> Mode {
    if parent == Mode::All || (key == "input" && v.is_object()) {
        Mode::All
    } else if TEXT_KEYS.contains(&key) {
        Mode::Text
    } else {
        Mode::Off
    }
}

fn walk(
    v: &mut Value,
    param: &'static str,
    mode: Mode,
    f: &mut impl FnMut(&'static str, &mut String),
) {
    match v {
        Value::String(s) if mode != Mode::Off => f(param, s),
        Value::Array(a) => a.iter_mut().for_each(|x| walk(x, param, mode, f)),
        Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                let m = child_mode(mode, k, x);
                walk(x, param, m, f);
            }
        }
        _ => {}
    }
}

/// What the request step did: the output-token cap for the reservation, if one applies, and
/// whether `body` was rewritten (redacted or capped) and must be inspected again.
#[derive(Debug, Default)]
pub struct Checked {
    pub cap: Option<u64>,
    pub rewritten: bool,
}

/// Runs the request's guardrails on `body` (rewritten in place when a guardrail redacted or
/// capped it) for the model the caller named (`model_name`, from the caller's inspection). A
/// block or an input over `max_input_tokens` is the caller's 400; blocks are audited (never the
/// text).
pub async fn request_step(
    state: &State,
    ctx: &mut RequestCtx,
    body: &mut Bytes,
    model_name: &str,
    audit: &AccessLogger,
    connector: &pingora_core::connectors::http::Connector,
) -> Result<Checked, GatewayError> {
    let all = &state.config.guardrails;
    if all.is_empty() {
        return Ok(Checked::default());
    }
    let Some(model) = state.model(model_name) else {
        return Ok(Checked::default()); // answered 404 by the caller of this step
    };
    if ctx
        .identity
        .as_ref()
        .is_some_and(|who| !who.may_use(&model.config.name))
    {
        return Ok(Checked::default()); // refused by the model-access step, not here
    }
    let rails = all.applicable(&model.config.name, ctx.identity.as_deref());
    ctx.response_guardrails = rails
        .iter()
        .filter(|g| g.on_response && (g.detector.is_some() || g.webhook.is_some()))
        .cloned()
        .collect();
    if !rails
        .iter()
        .any(|g| g.on_request || g.max_output_tokens.is_some() || g.max_input_tokens.is_some())
    {
        return Ok(Checked::default());
    }
    let cap = rails.iter().filter_map(|g| g.max_output_tokens).min();
    check_input_tokens(&rails, body.len(), ctx)?;
    let hooked = rails.iter().any(|g| g.on_request && g.webhook.is_some());
    let scanned = || {
        super::raw::any_string(body, |s| {
            rails
                .iter()
                .filter(|g| g.on_request)
                .filter_map(|g| g.detector.as_ref())
                .any(|d| !d.find(s).is_empty())
        })
    };
    if cap.is_none() && !hooked && !scanned() {
        // No string matches: the body goes on as the caller sent it, never parsed here.
        return Ok(Checked::default());
    }
    let mut doc: Value =
        serde_json::from_slice(body).map_err(|e| InspectError::Json(e.to_string()))?;
    let mut changed = false;
    for g in rails.iter().filter(|g| g.on_request) {
        // (`max_input_tokens` is checked above whatever `on` says.)
        let Some(param) = scan(g, &mut doc, &mut changed) else {
            continue;
        };
        ctx.guardrails
            .push(Applied::new(g, g.action, Phase::Request));
        if g.action == Action::Block {
            audit_block(audit, ctx, &g.name, &model.config.name, param);
            return Err(GatewayError::ContentBlocked {
                guardrail: g.name.clone(),
                phase: "request",
                param: Some(param),
            });
        }
    }
    let name = model.config.name.clone();
    if hooked {
        let asked =
            super::webhook_step(connector, &rails, &name, ctx, &mut doc, &mut changed).await;
        if let Err(GatewayError::ContentBlocked { guardrail, .. }) = &asked {
            audit_block(audit, ctx, guardrail, &name, "webhook");
        }
        asked?;
    }
    if let Some(cap) = cap {
        changed |= cap_output(&mut doc, cap, ctx.route);
    }
    if changed {
        let out = serde_json::to_vec(&doc).map_err(|e| InspectError::Json(e.to_string()))?;
        *body = Bytes::from(out);
    }
    Ok(Checked {
        cap,
        rewritten: changed,
    })
}

/// A request block in the audit log: which guardrail and where, never the matched text.
fn audit_block(audit: &AccessLogger, ctx: &RequestCtx, guardrail: &str, model: &str, param: &str) {
    audit.log(&serde_json::json!({
        "ts": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        "event": "guardrail_block",
        "guardrail": guardrail,
        "phase": "request",
        "param": param,
        "caller": ctx.identity.as_deref().map(|i| i.name.as_str()),
        "model": model,
        "request_id": ctx.request_id,
        "outcome": "denied",
    }));
}

/// Runs one guardrail's detector over a body's text, redacting in place when its action says
/// so (`changed` set). The top-level field of its first match, if any.
pub(super) fn scan(g: &Guardrail, doc: &mut Value, changed: &mut bool) -> Option<&'static str> {
    let det = g.detector.as_ref()?;
    let mut param = None;
    each_text(doc, &mut |field, s| {
        let found = det.find(s);
        if found.is_empty() {
            return;
        }
        param.get_or_insert(field);
        if g.action == Action::Redact {
            *s = redact_with(s, &found);
            *changed = true;
        }
    });
    param
}

/// Refuses a request whose estimated input is over a guardrail's `max_input_tokens`: the
/// estimate admission reserves for ([`crate::governance::estimate::prompt_tokens`] of the
/// body's size), so a request admitted is one the guardrail measured the same way.
fn check_input_tokens(
    rails: &[Arc<Guardrail>],
    body_bytes: usize,
    ctx: &mut RequestCtx,
) -> Result<(), GatewayError> {
    let Some(limit) = rails.iter().filter_map(|g| g.max_input_tokens).min() else {
        return Ok(());
    };
    let estimate = crate::governance::estimate::prompt_tokens(body_bytes);
    if estimate <= limit {
        return Ok(());
    }
    let Some(g) = rails.iter().find(|g| g.max_input_tokens == Some(limit)) else {
        return Ok(());
    };
    ctx.guardrails
        .push(Applied::new(g, Action::Block, Phase::Request));
    Err(GatewayError::GuardrailInputTokens {
        guardrail: g.name.clone(),
        estimate,
        limit,
    })
}

/// Lowers the max-tokens fields the caller sent to `cap`, or sets the route's own field when it
/// sent none. Whether the body changed.
fn cap_output(doc: &mut Value, cap: u64, route: Route) -> bool {
    let Value::Object(o) = doc else { return false };
    if route == Route::Embeddings {
        return false;
    }
    let mut changed = false;
    let mut present = false;
    for key in ["max_tokens", "max_completion_tokens", "max_output_tokens"] {
        if let Some(v) = o.get_mut(key) {
            if let Some(n) = v.as_u64() {
                present = true;
                if n > cap {
                    *v = Value::from(cap);
                    changed = true;
                }
            }
        }
    }
    if !present {
        let key = if route == Route::Responses {
            "max_output_tokens"
        } else {
            "max_tokens"
        };
        o.insert(key.into(), Value::from(cap));
        changed = true;
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_fields_are_walked_and_others_not() {
        let mut doc: Value = serde_json::json!({
            "model": "m@x.io",
            "system": "sys",
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "hello"}]},
                {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                    "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "result"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "n",
                    "input": {"city": "Paris"}}]}
            ]
        });
        let mut seen = Vec::new();
        each_text(&mut doc, &mut |p, s| seen.push((p, s.clone())));
        let texts: Vec<&str> = seen.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(texts, ["sys", "hello", "{\"a\":1}", "result", "Paris"]);
        assert_eq!(seen[0].0, "system");
        assert_eq!(seen[1].0, "messages");
    }

    #[test]
    fn output_cap_lowers_or_sets() {
        let mut doc = serde_json::json!({"max_tokens": 9000});
        assert!(cap_output(&mut doc, 100, Route::ChatCompletions));
        assert_eq!(doc["max_tokens"], 100);
        let mut doc = serde_json::json!({"max_tokens": 10});
        assert!(!cap_output(&mut doc, 100, Route::ChatCompletions));
        let mut doc = serde_json::json!({});
        assert!(cap_output(&mut doc, 100, Route::Responses));
        assert_eq!(doc["max_output_tokens"], 100);
    }
}
