//! Switchyard's gateway: everything the `switchyard` binary is made of, as a library so that
//! benches and tools can reach the routing and state code. The binary (`main.rs`) owns only the
//! command line.
//!
//! The folders follow one request (see `docs/architecture.md`):
//!
//! * [`snapshot`] — the one atomically swapped view of a config file (routing, auth settings,
//!   governance) that a request holds from its first phase to its logging;
//! * [`proxy`] — the Pingora phases: routing by path, the request and response step chains,
//!   control endpoints, logging;
//! * [`identity`] — who is calling (keys, JWTs, introspection, the failure limiter);
//! * [`governance`] — rate limits, budgets, the spend service and its ledger;
//! * [`routing`] — the live model index, deployment health and the plan for one request;
//! * [`forward`] — executing a plan: attempts, the relay, in-process providers;
//! * [`cache`] — the response cache: repeats answered without a provider call;
//! * [`passthrough`] — `passthrough[]` paths forwarded to a provider as they are, streamed;
//! * [`responses`] — stored Responses API conversations (`previous_response_id`, read, delete);
//! * [`ops`] — what an operator touches: admin API, metrics, access log, reload, drain;
//! * [`local`] — the local ONNX pool (cargo feature `local`);
//! * [`server`] — assembles all of it into a Pingora `Server`;
//! * [`cli`] — the operator's commands (`keys`, `usage`, `status`) over the admin API.

pub mod cache;
pub mod cli;
pub mod clock;
pub mod cloud;
pub mod config;
pub mod errors;
pub mod forward;
pub mod governance;
pub mod guardrails;
pub mod identity;
#[cfg(feature = "local")]
pub mod local;
pub mod ops;
pub mod passthrough;
pub mod proxy;
pub mod responses;
pub mod routing;
pub mod server;
pub mod snapshot;
pub mod store;
