//! Signed event webhooks (`events[]`): what an operator must know — budgets crossing their soft
//! ratio or running out, providers going down and up, circuits opening, keys about to expire,
//! reloads accepted or rejected — POSTed as `{id, type, time, data}` with
//! `x-switchyard-signature: sha256=<hex HMAC-SHA256 of the body>`.
//!
//! [`raise`] is what the rest of the gateway calls: with no `events[]` configured it is one
//! atomic load; otherwise the event goes down a bounded channel (never a wait on a request
//! path) to the [`dispatcher`], which writes it to the durable outbox in the store's SQLite
//! file ([`outbox`]) and delivers it at least once, retrying with exponential backoff for up to
//! 24 hours under the same id. Owns no other webhook: budgets' `alert_webhook` stays where it is.

pub mod dispatcher;
pub mod outbox;

use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use tokio::sync::mpsc::{channel, error::TrySendError, Receiver, Sender};

/// Events waiting for the dispatcher before new ones are dropped (and logged).
const QUEUE: usize = 4096;

/// One raised event, before it is written to the outbox.
#[derive(Debug, Clone)]
pub struct Raised {
    /// Stable across retries and restarts; for once-only events (a budget per period, a key's
    /// expiry) derived from what it is about, so raising it twice stores it once.
    pub id: String,
    pub kind: &'static str,
    pub time_ms: u64,
    pub data: Value,
}

static SENDER: OnceLock<Sender<Raised>> = OnceLock::new();
/// Whether any `events[]` receiver is configured (kept current by reloads).
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Installs the process's event channel; the receiver goes to the dispatcher. A second call
/// (tests building two servers in one process) gets `None`.
pub fn install() -> Option<Receiver<Raised>> {
    // Tokio's channel takes its slots in blocks as events come (std's `sync_channel` wrote all
    // 4,096 at start: 524 KB resident in a gateway without events).
    let (tx, rx) = channel(QUEUE);
    SENDER.set(tx).ok().map(|()| rx)
}

/// Turns raising on or off (from the config's `events[]`).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether any `events[]` receiver is configured.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// A fresh random event id.
pub fn new_id() -> String {
    crate::proxy::context::new_request_id()
}

/// Raises event `kind` with `data`; `once` names what makes it unique (then it is stored and
/// sent once however often it is raised), `None` for a new event each time.
pub fn raise(kind: &'static str, once: Option<String>, data: Value) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let Some(tx) = SENDER.get() else { return };
    let id = match once {
        Some(key) => format!("{kind}:{key}"),
        None => new_id(),
    };
    let ev = Raised {
        id,
        kind,
        time_ms: crate::clock::unix_ms(),
        data,
    };
    match tx.try_send(ev) {
        Ok(()) => {}
        Err(TrySendError::Full(ev)) => {
            log::error!("events: queue full; dropped {} {}", ev.kind, ev.id)
        }
        Err(TrySendError::Closed(_)) => {}
    }
}

/// Raises `circuit.open` for a deployment whose breaker just opened.
pub fn circuit_opened(provider: &str, model: &str) {
    raise(
        "circuit.open",
        None,
        serde_json::json!({"provider": provider, "model": model}),
    );
}

/// `x-switchyard-signature` for `body`: `sha256=<hex HMAC-SHA256(body, secret)>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_signature_is_hmac_sha256_in_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            super::signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
