//! Policy decisions: what a request may do, independent of any I/O framework.
//!
//! Functions here take plain values (sizes, header values, names, a clock reading) and return
//! decisions or typed errors. They never touch sockets, clocks, files or Pingora, so the gateway
//! can call them on its hot path and tests can exercise them alone. Rate limits and budgets join
//! this crate as their own modules.
//!
//! - [`auth`]: virtual API keys and OAuth2/OIDC JWTs.
//! - [`guard`]: request-shape limits (body size).
//! - [`request_id`]: whether a caller-supplied request id may be trusted and echoed.

pub mod auth;
pub mod guard;
pub mod request_id;
