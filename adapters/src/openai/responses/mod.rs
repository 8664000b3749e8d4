//! The OpenAI Responses API (`POST /v1/responses`) as a caller format: requests decoded into the
//! canonical [`crate::canonical::ChatRequest`] ([`request`]), canonical answers encoded as
//! `response` objects ([`response`]) and canonical stream events as Responses stream events
//! ([`stream`]).
//!
//! It owns only the Responses wire format: it reuses the chat codec's request decoder (a Responses
//! request is rewritten as the Chat Completions request that means the same) and must not change
//! the chat codecs' behaviour. Stored conversations (`previous_response_id`) are the gateway's
//! business: by the time a request reaches [`request::decode_request`] its history is already
//! expanded into `input`. No I/O here.

pub mod native;
pub mod replay;
pub mod request;
pub mod response;
pub mod stream;

use serde_json::{Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub use request::decode_request;
pub use response::encode_response;
pub use stream::StreamEncoder;

/// What one Responses request adds to its answer beyond the canonical response: the request
/// fields the `response` object echoes, and a slot that receives the finished `response` object
/// (so the gateway can store it) once the answer is complete.
#[derive(Debug, Default)]
pub struct Turn {
    /// Echoed request fields (`instructions`, `tools`, `text`, `metadata`, ...).
    pub echo: Map<String, Value>,
    /// The finished `response` object, set by the encoders when the answer completes.
    pub finished: Mutex<Option<Value>>,
    /// Events of a native stream relayed so far: the `sequence_number` an event the gateway
    /// appends (its own `error`) takes.
    events: AtomicU64,
}

impl Turn {
    pub fn new(echo: Map<String, Value>) -> Arc<Turn> {
        Arc::new(Turn {
            echo,
            ..Turn::default()
        })
    }

    /// Records the finished response (the first one wins).
    pub fn finish(&self, response: &Value) {
        if let Ok(mut slot) = self.finished.lock() {
            if slot.is_none() {
                *slot = Some(response.clone());
            }
        }
    }

    /// Replaces the finished response with what the caller was sent after the response
    /// guardrails rewrote it (a redacted answer), whether or not [`Turn::finish`] ran first: the
    /// store must never keep text the caller was not shown.
    pub fn replace_finished(&self, response: &Value) {
        if let Ok(mut slot) = self.finished.lock() {
            *slot = Some(response.clone());
        }
    }

    /// Counts one event of a native stream.
    pub fn note_event(&self) {
        self.events.fetch_add(1, Ordering::Relaxed);
    }

    /// The next `sequence_number` of a native stream.
    pub fn next_sequence_number(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// The finished response, when the answer completed.
    pub fn take_finished(&self) -> Option<Value> {
        self.finished.lock().ok().and_then(|mut s| s.take())
    }
}

/// The part of a response id after `resp_`: item ids are derived from it.
pub(crate) fn id_seed(id: &str) -> &str {
    id.strip_prefix("resp_").unwrap_or(id)
}
