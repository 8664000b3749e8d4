//! The operator's side of the gateway: the admin API and `/metrics`, Prometheus families, the
//! access and audit logs, SIGHUP reload and graceful drain. Nothing here is on a request's path
//! except the pre-resolved metric handles and the access-log queue.

pub mod access_log;
pub mod admin;
pub mod drain;
pub mod reload;
pub mod telemetry;
