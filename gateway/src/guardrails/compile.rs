//! `guardrails[]`, `models[].guardrails`, `auth.api_keys[].guardrails` and `team_guardrails`
//! validated and compiled once per config load, every problem reported with its key path
//! (unknown names, invalid regexes, unknown PII kinds or actions). It must not read anything
//! but the parsed file.

use super::Webhook;
use super::{Action, Guardrail, Guardrails};
use crate::config::file::{FileConfig, FileGuardrail, FileGuardrailWebhook};
use crate::config::ConfigError;
use std::collections::HashMap;
use std::sync::Arc;
use switchyard_filters::guardrails::{Detector, Kind, Spec};

fn err(errs: &mut Vec<ConfigError>, path: String, message: impl Into<String>) {
    errs.push(ConfigError {
        path,
        message: message.into(),
        line: None,
    });
}

/// The file's guardrails compiled, or errors pushed to `errs`.
pub fn compile(file: &FileConfig, errs: &mut Vec<ConfigError>) -> Guardrails {
    let mut out = Guardrails::default();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, g) in file.guardrails.iter().flatten().enumerate() {
        let path = format!("guardrails[{i}]");
        if index.contains_key(g.name.as_str()) {
            err(
                errs,
                format!("{path}.name"),
                format!("duplicate guardrail {:?}", g.name),
            );
            continue;
        }
        if let Some(rail) = one(g, &path, errs) {
            index.insert(&g.name, out.list.len());
            out.list.push(Arc::new(rail));
        }
    }
    let names: Vec<&str> = index.keys().copied().collect();
    let resolve = |list: &[String], path: String, errs: &mut Vec<ConfigError>| {
        list.iter()
            .enumerate()
            .filter_map(|(j, n)| match index.get(n.as_str()) {
                Some(i) => Some(*i),
                None => {
                    let known = if names.is_empty() {
                        "none are defined".to_string()
                    } else {
                        format!("defined: {}", names.join(", "))
                    };
                    err(
                        errs,
                        format!("{path}[{j}]"),
                        format!("unknown guardrail {n:?} ({known})"),
                    );
                    None
                }
            })
            .collect::<Vec<usize>>()
    };
    for (i, m) in file.models.iter().enumerate() {
        if let Some(list) = &m.guardrails {
            let v = resolve(list, format!("models[{i}].guardrails"), errs);
            if !v.is_empty() {
                out.by_model.insert(m.name.clone(), v);
            }
        }
    }
    for (i, k) in file.auth.iter().flat_map(|a| a.api_keys.iter()).enumerate() {
        if let Some(list) = &k.guardrails {
            let v = resolve(list, format!("auth.api_keys[{i}].guardrails"), errs);
            if !v.is_empty() {
                out.by_key.insert(k.name.clone(), v);
            }
        }
    }
    for (team, list) in file.team_guardrails.iter().flatten() {
        let v = resolve(list, format!("team_guardrails.{team}"), errs);
        if !v.is_empty() {
            out.by_team.insert(team.clone(), v);
        }
    }
    out
}

/// One entry compiled; `None` when it has errors (pushed).
fn one(g: &FileGuardrail, path: &str, errs: &mut Vec<ConfigError>) -> Option<Guardrail> {
    let before = errs.len();
    let (mut on_request, mut on_response) = (g.on.is_none(), g.on.is_none());
    for (j, on) in g.on.iter().flatten().enumerate() {
        match on.as_str() {
            "request" => on_request = true,
            "response" => on_response = true,
            other => err(
                errs,
                format!("{path}.on[{j}]"),
                format!("expected request or response, not {other:?}"),
            ),
        }
    }
    let mut pii = Vec::new();
    for (j, p) in g.pii.iter().flatten().enumerate() {
        match Kind::pii(p) {
            Some(k) => pii.push(k),
            None => {
                let known: Vec<&str> = Kind::PII.iter().map(|(n, _)| *n).collect();
                err(
                    errs,
                    format!("{path}.pii[{j}]"),
                    format!(
                        "unknown PII kind {p:?} (expected one of: {})",
                        known.join(", ")
                    ),
                );
            }
        }
    }
    let action = match g.action.as_deref() {
        None | Some("redact") => Action::Redact,
        Some("block") => Action::Block,
        Some("flag") => Action::Flag,
        Some(other) => {
            err(
                errs,
                format!("{path}.action"),
                format!("expected redact, block or flag, not {other:?}"),
            );
            Action::Redact
        }
    };
    let webhook = g
        .webhook
        .as_ref()
        .and_then(|w| webhook(w, &format!("{path}.webhook"), errs));
    let spec = Spec {
        pii,
        words: g.words.clone().unwrap_or_default(),
        regex: g.regex.clone().unwrap_or_default(),
    };
    let detector = if spec.pii.is_empty() && spec.words.is_empty() && spec.regex.is_empty() {
        None
    } else {
        match Detector::new(&spec) {
            Ok(d) => Some(d),
            Err(bad) => {
                for b in bad {
                    err(errs, format!("{path}.regex[{}]", b.index), b.to_string());
                }
                None
            }
        }
    };
    if errs.len() > before {
        return None;
    }
    Some(Guardrail {
        name: g.name.clone(),
        on_request,
        on_response,
        detector,
        action,
        max_input_tokens: g.max_input_tokens.map(|v| v.0),
        max_output_tokens: g.max_output_tokens.map(|v| v.0),
        webhook,
    })
}

fn webhook(w: &FileGuardrailWebhook, path: &str, errs: &mut Vec<ConfigError>) -> Option<Webhook> {
    let endpoint = crate::config::endpoint::parse_endpoint(&w.url)
        .map_err(|e| err(errs, format!("{path}.url"), e))
        .ok();
    let timeout = match w.timeout.as_deref() {
        None => Some(std::time::Duration::from_secs(1)),
        Some(t) => humantime::parse_duration(t.trim())
            .map_err(|e| {
                err(
                    errs,
                    format!("{path}.timeout"),
                    format!("invalid duration {t:?}: {e}"),
                )
            })
            .ok(),
    };
    let block_on_error = match w.on_error.as_deref() {
        None | Some("allow") => Some(false),
        Some("block") => Some(true),
        Some(other) => {
            err(
                errs,
                format!("{path}.on_error"),
                format!("expected allow or block, not {other:?}"),
            );
            None
        }
    };
    Some(Webhook {
        endpoint: endpoint?,
        timeout: timeout?,
        block_on_error: block_on_error?,
    })
}
