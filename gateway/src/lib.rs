//! Switchyard's gateway: everything the `switchyard` binary is made of, as a library so that
//! benches and tools can reach the routing and state code. The binary (`main.rs`) owns only the
//! command line.

pub mod access_log;
pub mod admin;
pub mod breaker;
pub mod config;
pub mod context;
pub mod cost;
pub mod drain;
pub mod errors;
pub mod forward;
pub mod governance;
pub mod health;
pub mod identity;
pub mod ledger;
pub mod local;
pub mod mock;
pub mod proxy;
pub mod rate_headers;
pub mod redis_store;
pub mod reload;
pub mod response_headers;
pub mod router;
pub mod selection;
pub mod server;
pub mod state;
pub mod telemetry;
pub mod trace;
pub mod translate;
