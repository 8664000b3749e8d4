//! The admin listener (`server.admin_listen`): `GET /metrics` in Prometheus text format. It never
//! shares a port with the inference API; the admin API for keys joins here.

use crate::telemetry::Metrics;
use async_trait::async_trait;
use http::Response;
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use std::sync::Arc;

pub struct AdminApp {
    pub metrics: Arc<Metrics>,
}

fn json_error(status: u16, message: &str, code: &str) -> Response<Vec<u8>> {
    let body =
        switchyard_adapters::openai::error_body(message, "invalid_request_error", None, Some(code));
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .body(body.to_vec())
        .unwrap_or_else(|_| Response::new(Vec::new()))
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let path = req.uri.path();
        let method = req.method.as_str();
        match (method, path) {
            ("GET", "/metrics") => {
                let body = self.metrics.render();
                Response::builder()
                    .status(200)
                    .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                    .header("content-length", body.len())
                    .body(body)
                    .unwrap_or_else(|_| Response::new(Vec::new()))
            }
            (_, "/metrics") => json_error(
                405,
                &format!("method {method} is not allowed on /metrics"),
                "method_not_allowed",
            ),
            _ => json_error(
                404,
                &format!("Invalid URL ({method} {path})"),
                "unknown_url",
            ),
        }
    }
}
