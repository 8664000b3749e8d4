//! The step chains a request and its answer pass, composed per config file the way River
//! composes its filters and modifiers: a feature adds a step (a variant here and its function in
//! its own module) rather than a branch inside the relay. A chain holds only the steps its file
//! configures, so a feature that is not configured costs one slice length check.
//!
//! * **head steps** run on the request head, before any body is read (authentication, the
//!   loop guard);
//! * **body steps** run once the body is inspected and the model known (model access, ledger
//!   tags, admission by limits and budgets; guardrails and the cache lookup go here);
//! * **response steps** run when the request ends, in `logging` (settling spend and the ledger
//!   row, metering; guardrails and the cache store go here).
//!
//! Steps are plain enums (static dispatch, no allocation per request); what each does lives with
//! its concept (`identity`, `governance`, `ops`), wired in [`super::Gateway`].

use crate::snapshot::Parts;

/// A step on the request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadStep {
    /// Who is calling: a virtual key, a JWT or an introspected token (`auth`).
    Authenticate,
    /// Refuses a request that crossed too many Switchyards (`server.max_hops`).
    LoopGuard,
}

/// A step once the body is inspected and the model known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyStep {
    /// The caller's credential may use the model (`auth.keys[].models`, token policy).
    ModelAccess,
    /// Ledger tags from `metadata` and `x-switchyard-tags` (only with a ledger).
    Tags,
    /// Rate limits and budget reservations (`limits`, `budgets`).
    Admission,
}

/// A step when the request ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseStep {
    /// Settles the admission with the real cost, counts spend and queues the ledger row.
    Settle,
    /// Request, token and latency metrics.
    Meter,
    /// One JSON access-log line.
    AccessLog,
}

/// The chains of one config file.
#[derive(Debug, Clone, Default)]
pub struct Chains {
    pub head: Vec<HeadStep>,
    pub body: Vec<BodyStep>,
    pub response: Vec<ResponseStep>,
}

impl Chains {
    /// The chains for a config's parts: only what it configures.
    pub fn build(parts: &Parts) -> Chains {
        let cfg = &parts.state.config;
        let auth = parts.auth.settings.is_some();
        let mut head = Vec::new();
        if auth {
            head.push(HeadStep::Authenticate);
        }
        head.push(HeadStep::LoopGuard);
        let mut body = Vec::new();
        if auth {
            body.push(BodyStep::ModelAccess);
        }
        if cfg.store.sqlite_path.is_some() {
            body.push(BodyStep::Tags);
        }
        if !parts.governance.is_empty() {
            body.push(BodyStep::Admission);
        }
        let mut response = vec![ResponseStep::Settle, ResponseStep::Meter];
        if cfg.telemetry.access_log != crate::config::AccessLog::Off {
            response.push(ResponseStep::AccessLog);
        }
        Chains {
            head,
            body,
            response,
        }
    }
}
