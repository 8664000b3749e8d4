//! The events dispatcher, a background service: moves raised events into the outbox (one row
//! per receiver that wants the type), delivers due rows signed, retries failures with
//! exponential backoff (1 s doubling, at most an hour apart) until 24 hours after the event, and
//! raises `key.expiring` for keys that expire within 7 days. Reads the live config for the
//! receivers; never touches a request.

use super::outbox::{Due, Outbox};
use super::Raised;
use crate::config::EventSink;
use crate::identity::Auth;
use crate::snapshot::Live;
use async_trait::async_trait;
use pingora_core::connectors::http::Connector;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use serde_json::json;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc::Receiver;

const TICK: Duration = Duration::from_millis(100);
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY_GAP: Duration = Duration::from_secs(3600);
/// How long an event is retried before it is abandoned.
const GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3600);
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// `key.expiring` is raised this long before a key expires.
const EXPIRY_NOTICE: u64 = 7 * 86_400;
const KEY_SCAN_EVERY_MS: u64 = 60_000;

pub struct Dispatcher {
    pub rx: Mutex<Option<Receiver<Raised>>>,
    pub live: Arc<Live>,
    pub auth: Arc<Auth>,
    /// The store's SQLite file (`None`: in memory).
    pub path: Option<PathBuf>,
    /// `store.kind: postgres`: the outbox is the fleet's, in PostgreSQL.
    pub pg: Option<Arc<crate::store::Pg>>,
}

/// When a row that failed `attempts` times (this one included) is due again, or `None` once
/// it is past [`GIVE_UP_AFTER`].
fn next_try(created_ms: i64, attempts: u32, now_ms: i64) -> Option<i64> {
    let gap = FIRST_RETRY
        .saturating_mul(1u32 << attempts.saturating_sub(1).min(20))
        .min(MAX_RETRY_GAP);
    let at = now_ms + gap.as_millis() as i64;
    (at - created_ms <= GIVE_UP_AFTER.as_millis() as i64).then_some(at)
}

fn body_of(ev: &Raised) -> Vec<u8> {
    let time =
        humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(ev.time_ms))
            .to_string();
    serde_json::to_vec(&json!({"id": ev.id, "type": ev.kind, "time": time, "data": ev.data}))
        .unwrap_or_default()
}

fn store(outbox: &Mutex<Outbox>, sinks: &[EventSink], ev: &Raised) {
    let body = body_of(ev);
    let Ok(o) = outbox.lock() else { return };
    for sink in sinks.iter().filter(|s| s.on.iter().any(|t| t == ev.kind)) {
        if let Err(e) = o.insert(&ev.id, &sink.url, ev.kind, &body, ev.time_ms as i64) {
            log::error!("events: could not store {} {}: {e}", ev.kind, ev.id);
        }
    }
}

async fn send(connector: &Connector, sink: &EventSink, d: &Due) -> Result<(), String> {
    let headers = [
        ("content-type", "application/json".to_string()),
        (
            "x-switchyard-signature",
            super::signature(sink.secret.expose(), &d.body),
        ),
        ("x-switchyard-event-id", d.event_id.clone()),
    ];
    let (status, _) = crate::identity::http_call(
        connector,
        &sink.endpoint,
        "POST",
        &sink.endpoint.path(""),
        &headers,
        bytes::Bytes::from(d.body.clone()),
        SEND_TIMEOUT,
    )
    .await?;
    match status {
        200..=299 => Ok(()),
        s => Err(format!("receiver answered {s}")),
    }
}

impl Dispatcher {
    async fn deliver(&self, outbox: &Mutex<Outbox>, sinks: &[EventSink], connector: &Connector) {
        let now = crate::clock::unix_ms() as i64;
        let due = match outbox.lock().map(|o| o.due(now, 32)) {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => return log::error!("events: outbox: {e}"),
            Err(_) => return,
        };
        for d in due {
            let outcome = match sinks.iter().find(|s| s.url == d.sink_url) {
                Some(sink) => send(connector, sink, &d).await,
                None => Err("the receiver is no longer configured".to_string()),
            };
            let now = crate::clock::unix_ms() as i64;
            let next = match &outcome {
                Ok(()) => None,
                Err(_) if !sinks.iter().any(|s| s.url == d.sink_url) => None,
                Err(_) => next_try(d.created_ms, d.attempts + 1, now),
            };
            let Ok(o) = outbox.lock() else { return };
            let written = match &outcome {
                Ok(()) => o.delivered(&d),
                Err(e) => {
                    log::warn!(
                        "events: {} to {} failed (try {}): {e}{}",
                        d.event_id,
                        d.sink_url,
                        d.attempts + 1,
                        if next.is_none() { "; giving up" } else { "" }
                    );
                    o.failed(&d, e, next)
                }
            };
            if let Err(e) = written {
                log::error!("events: outbox: {e}");
            }
        }
    }

    /// Raises `key.expiring` (once per key and expiry) for keys expiring within 7 days.
    fn scan_keys(&self) {
        let now = crate::clock::unix_secs();
        let Ok(keys) = self.auth.list() else { return };
        for k in keys.iter().filter(|k| !k.revoked) {
            let Some(exp) = k.expires_unix else { continue };
            if exp > now && exp - now <= EXPIRY_NOTICE {
                super::raise(
                    "key.expiring",
                    Some(format!("{}:{exp}", k.name)),
                    json!({"key": k.name, "team": k.team, "expires": crate::clock::rfc3339(exp)}),
                );
            }
        }
    }
}

#[async_trait]
impl BackgroundService for Dispatcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let taken = self.rx.lock().ok().and_then(|mut r| r.take());
        let Some(mut rx) = taken else { return };
        let opened = match &self.pg {
            Some(pg) => Outbox::postgres(pg.clone()),
            None => Outbox::open(self.path.as_deref()),
        };
        let outbox = match opened {
            Ok(o) => Mutex::new(o),
            Err(e) => {
                return log::error!("events: cannot open the outbox: {e}; no events are sent")
            }
        };
        let connector = Connector::new(None);
        let mut next_scan = 0u64;
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(TICK) => {}
            }
            let cfg = self.live.load().state.config.clone();
            super::set_enabled(!cfg.events.is_empty());
            while let Ok(ev) = rx.try_recv() {
                store(&outbox, &cfg.events, &ev);
            }
            let now = crate::clock::unix_ms();
            if now >= next_scan && !cfg.events.is_empty() {
                next_scan = now + KEY_SCAN_EVERY_MS;
                self.scan_keys();
                if let Ok(o) = outbox.lock() {
                    let _ = o.prune(now as i64);
                }
            }
            self.deliver(&outbox, &cfg.events, &connector).await;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn retries_back_off_and_stop_after_a_day() {
        let hour = 3_600_000;
        assert_eq!(super::next_try(0, 1, 0), Some(1000));
        assert_eq!(super::next_try(0, 3, 10_000), Some(14_000));
        assert_eq!(super::next_try(0, 30, 10_000), Some(10_000 + hour));
        assert_eq!(super::next_try(0, 30, 23 * hour + 1), None);
    }
}
