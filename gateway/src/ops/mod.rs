//! The operator's side of the gateway: the admin API and `/metrics`, Prometheus families, the
//! access and audit logs, SIGHUP reload and graceful drain, the status page and its pulse ring. Nothing here is on a request's path
//! except the pre-resolved metric handles and the access-log queue.

pub mod access_log;
pub mod admin;
pub mod background;
pub mod drain;
pub mod events;
pub mod finish_reasons;
pub mod giveback;
pub mod otlp;
pub mod pulse;
pub mod reload;
pub mod status_page;
pub mod telemetry;
