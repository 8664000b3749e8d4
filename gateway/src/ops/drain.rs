//! Graceful shutdown, finished early: once Pingora has stopped accepting (SIGTERM, or SIGQUIT
//! after handing the listeners to an upgraded process), wait for the requests in flight —
//! streams included — to finish, flush the access log and the spend ledger, and exit 0.
//!
//! Pingora alone always sleeps the whole grace period, even with nothing in flight; this service
//! ends the process as soon as the work is done. The grace period (`server.grace_period`) still
//! bounds the wait: Pingora ends the process when it runs out.

use crate::ops::access_log::AccessLogger;
use crate::proxy::context::InFlight;
use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::time::Duration;

pub struct Drain {
    pub in_flight: InFlight,
    pub access_log: AccessLogger,
    pub spend: std::sync::Arc<crate::governance::Spend>,
}

#[async_trait]
impl BackgroundService for Drain {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
        log::info!(
            "shutting down: waiting for {} request(s) in flight",
            self.in_flight.count()
        );
        while self.in_flight.count() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let log = self.access_log.clone();
        let flushed = tokio::task::spawn_blocking(move || log.wait_flushed(Duration::from_secs(2)))
            .await
            .unwrap_or(false);
        if !flushed {
            log::warn!("shutting down: the access log did not flush in time");
        }
        // Every finished request has queued its ledger row by now (rows are queued before a
        // request leaves the in-flight count): commit them, so a clean stop loses none.
        if !self.spend.flush(Duration::from_secs(5)).await {
            log::warn!("shutting down: the spend ledger did not flush in time");
        }
        log::info!("shutdown complete: no request in flight");
        std::process::exit(0);
    }
}
