//! The `events[]` section: each receiver's URL, its HMAC secret (required: an unsigned event
//! could be forged) and the event types it wants (default all). Must not touch other sections.

use super::*;

/// Every event type the gateway raises.
pub const EVENT_TYPES: [&str; 8] = [
    "budget.soft",
    "budget.exhausted",
    "provider.down",
    "provider.up",
    "circuit.open",
    "key.expiring",
    "config.reloaded",
    "config.rejected",
];

pub(super) fn events(list: &[FileEventSink], errs: &mut Errors) -> Vec<EventSink> {
    let mut out = Vec::with_capacity(list.len());
    for (i, e) in list.iter().enumerate() {
        let path = format!("events[{i}]");
        let endpoint = match super::super::endpoint::parse_endpoint(e.url.trim()) {
            Ok(ep) => Some(ep),
            Err(msg) => {
                errs.push(format!("{path}.url"), msg);
                None
            }
        };
        let secret = e.secret.as_deref().map(str::trim).unwrap_or_default();
        if secret.is_empty() {
            errs.push(
                format!("{path}.secret"),
                "required: every event is signed with it (x-switchyard-signature)",
            );
        }
        let on: Vec<String> = match &e.on {
            None => EVENT_TYPES.iter().map(|t| t.to_string()).collect(),
            Some(list) => list.iter().map(|t| t.trim().to_string()).collect(),
        };
        for (j, t) in on.iter().enumerate() {
            if !EVENT_TYPES.contains(&t.as_str()) {
                errs.push(
                    format!("{path}.on[{j}]"),
                    format!(
                        "unknown event type `{t}` (one of {})",
                        EVENT_TYPES.join(", ")
                    ),
                );
            }
        }
        if let (Some(endpoint), false) = (endpoint, secret.is_empty()) {
            out.push(EventSink {
                url: e.url.trim().to_string(),
                endpoint,
                secret: Secret::new(secret.to_string()),
                on,
            });
        }
    }
    out
}
