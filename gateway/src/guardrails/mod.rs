//! Guardrails: named content policies (`guardrails[]`) attached to models, keys and teams, and
//! what the gateway does with them.
//!
//! * [`compile`]: the config entries compiled once per load (detectors from
//!   `switchyard_filters::guardrails`), with where each applies;
//! * [`request`]: the request step — scans the caller's text (messages, prompts, inputs, tool
//!   arguments and results), redacts, blocks or flags, and applies the token caps; [`raw`]
//!   first asks whether any string of the body matches at all, so a clean body is never parsed
//!   into a tree;
//! * [`response`]: the same on a whole (non-stream) answer in the caller's format;
//! * [`stream`]: the same on a streamed answer, holding back only what a match needs;
//!   [`native`] on a native Responses stream's own events;
//! * [`webhook`]: an external policy service asked about a request or an answer (`webhook`).
//!
//! Hold-back bound on streams: a streamed answer holds back at most the longest match its
//! detectors can make plus 4 bytes (emails 410, cards 40, IBANs 42, phones 32; secrets
//! `SECRET_HOLD_BACK` = 512; configured unbounded regexes `UNBOUNDED_HOLD_BACK` = 1024), per text
//! and per tool call; a longer secret or match split across chunks is redacted only up to where
//! the hold-back reached (documented in docs/).
//!
//! It owns the policy only; detection is the filters crate's, the body is parsed here only when
//! a guardrail applies to the request (no guardrail: one emptiness check). It must not touch
//! routing, admission or the relay.

mod compile;
pub mod native;
mod raw;
mod request;
mod response;
pub mod stream;
mod webhook;

pub use compile::compile;
pub use request::{request_step, Checked};
pub use response::answer_step;
pub use webhook::webhook_step;

use std::collections::HashMap;
use std::sync::Arc;
use switchyard_filters::auth::Identity;
use switchyard_filters::guardrails::Detector;

/// What a guardrail does with a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Redact,
    Block,
    Flag,
    /// A webhook timed out or failed (counted; `on_error` decided).
    Error,
}

impl Action {
    pub fn label(self) -> &'static str {
        match self {
            Action::Redact => "redact",
            Action::Block => "block",
            Action::Flag => "flag",
            Action::Error => "error",
        }
    }
}

/// Where a guardrail acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Request,
    Response,
}

impl Phase {
    pub fn label(self) -> &'static str {
        match self {
            Phase::Request => "request",
            Phase::Response => "response",
        }
    }
}

/// One `guardrails[]` entry, compiled.
#[derive(Debug)]
pub struct Guardrail {
    pub name: String,
    pub on_request: bool,
    pub on_response: bool,
    /// `None`: no `pii`, `words` or `regex` (a token cap only).
    pub detector: Option<Detector>,
    pub action: Action,
    pub max_input_tokens: Option<u64>,
    pub max_output_tokens: Option<u64>,
    /// An external policy service asked on each request (`webhook`).
    pub webhook: Option<Webhook>,
}

/// `guardrails[].webhook`, validated.
#[derive(Debug)]
pub struct Webhook {
    pub endpoint: crate::config::HttpEndpoint,
    pub timeout: std::time::Duration,
    /// `on_error: block`: a timeout or an error refuses the request.
    pub block_on_error: bool,
}

/// One action taken on a request, for the metric, the header and the access log.
#[derive(Debug, Clone)]
pub struct Applied {
    pub guardrail: Arc<Guardrail>,
    pub action: Action,
    pub phase: Phase,
}

impl Applied {
    pub fn new(guardrail: &Arc<Guardrail>, action: Action, phase: Phase) -> Applied {
        Applied {
            guardrail: guardrail.clone(),
            action,
            phase,
        }
    }
}

/// Every guardrail of a config and where it applies (indices into `list`).
#[derive(Debug, Default)]
pub struct Guardrails {
    list: Vec<Arc<Guardrail>>,
    by_model: HashMap<String, Vec<usize>>,
    by_key: HashMap<String, Vec<usize>>,
    by_team: HashMap<String, Vec<usize>>,
}

impl Guardrails {
    /// No guardrail is attached anywhere: requests skip the step.
    pub fn is_empty(&self) -> bool {
        self.by_model.is_empty() && self.by_key.is_empty() && self.by_team.is_empty()
    }

    /// The guardrails that apply to a request for `model` by `who`: the model's first, then the
    /// key's, then the team's, each once.
    pub fn applicable(&self, model: &str, who: Option<&Identity>) -> Vec<Arc<Guardrail>> {
        let key = who.and_then(Identity::key_name);
        let team = who.and_then(|w| w.team.as_deref());
        let mut seen: Vec<usize> = Vec::new();
        let lists = [
            self.by_model.get(model),
            key.and_then(|k| self.by_key.get(k)),
            team.and_then(|t| self.by_team.get(t)),
        ];
        for i in lists.into_iter().flatten().flatten() {
            if !seen.contains(i) {
                seen.push(*i);
            }
        }
        seen.into_iter().map(|i| self.list[i].clone()).collect()
    }
}

/// `x-switchyard-guardrails`: `name:action:phase` for each action taken, comma-separated.
pub fn header_value(applied: &[Applied]) -> String {
    applied
        .iter()
        .map(|a| {
            format!(
                "{}:{}:{}",
                a.guardrail.name,
                a.action.label(),
                a.phase.label()
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A response guardrail that finds credit cards and does `action` (unit tests' fixture).
#[cfg(test)]
pub(crate) fn card_rail(action: Action) -> Arc<Guardrail> {
    use switchyard_filters::guardrails::{Kind, Spec};
    let spec = Spec {
        pii: vec![Kind::CreditCard],
        ..Spec::default()
    };
    Arc::new(Guardrail {
        name: "g".into(),
        on_request: false,
        on_response: true,
        detector: Detector::new(&spec).ok(),
        action,
        max_input_tokens: None,
        max_output_tokens: None,
        webhook: None,
    })
}
