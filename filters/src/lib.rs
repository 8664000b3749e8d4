//! Policy decisions: what a request may do, independent of any I/O framework.
//!
//! Functions here take plain values (sizes, header values, names, a clock reading) and return
//! decisions or typed errors. They never touch sockets, clocks, files or Pingora, so the gateway
//! can call them on its hot path and tests can exercise them alone.
//!
//! - [`auth`]: virtual API keys and OAuth2/OIDC JWTs.
//! - [`budget`]: spend limits per scope and calendar period, with reservations.
//! - [`ratelimit`]: lock-free sliding-window rate limits (N per rolling minute) and concurrency limits.
//! - [`guardrails`]: content detectors (PII, secrets, words, regexes) and redaction.
//! - [`guard`]: request-shape limits (body size).
//! - [`request_id`]: whether a caller-supplied request id may be trusted and echoed.

pub mod auth;
pub mod budget;
pub mod guard;
pub mod guardrails;
pub mod ratelimit;
pub mod request_id;
