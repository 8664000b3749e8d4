//! Response guardrails on streamed answers, without buffering them: a [`GuardedDecoder`] sits
//! between the provider's stream decoder and the caller's encoder and passes text deltas
//! through a [`TextGuard`], which holds back only the last `hold` bytes of text (the longest
//! match any of the request's detectors can make, see `Detector::max_len`; at most
//! `SECRET_HOLD_BACK` / `UNBOUNDED_HOLD_BACK` for unbounded patterns) so that a match split
//! across chunks is still seen whole, and releases the rest at once. Held text is released
//! before any other event (tool calls, usage, finish), so the caller's framing (OpenAI chunks,
//! Anthropic events, Responses events) is the encoder's, unchanged. A block ends the stream
//! with the caller's error event and nothing after it.
//!
//! Streams that pass bytes through (OpenAI to OpenAI, Anthropic to Anthropic) are switched to
//! the decoded path for a request with response guardrails ([`stream_mode`]); legacy
//! completions and native Responses streams are not guarded (documented limit), nor tool call
//! argument deltas. Actions taken are shared with the relay through a [`GuardRecord`] (the
//! header is already sent: they reach the metric, the access log and the audit log).

use super::{Action, Applied, Guardrail, Phase};
use crate::forward::translate::Mode;
use crate::proxy::context::RequestCtx;
use std::sync::{Arc, Mutex};
use switchyard_adapters::canonical::{
    Dialect, ErrorKind, ProviderError, StreamDecode, StreamEvent,
};
use switchyard_adapters::providers::Caller;
use switchyard_filters::guardrails::{non_overlapping, redact_with, Finding};

/// The decoded mode a guarded stream uses instead of `mode`; `None` when it cannot be guarded.
pub fn stream_mode(mode: Mode, caller: Caller) -> Option<Mode> {
    match (mode, caller) {
        (Mode::OpenAiPassthrough { .. }, Caller::OpenAi) => Some(Mode::Translated(Dialect::OpenAi)),
        (Mode::Observed(d), _) | (Mode::Translated(d), _) => Some(Mode::Translated(d)),
        _ => None,
    }
}

/// What a guarded stream did, read by the relay when it ends.
#[derive(Debug, Default)]
pub struct GuardRecord {
    pub applied: Vec<Applied>,
    pub blocked: bool,
}

/// Shared between the decoder (inside the relay) and the relay loop.
pub type SharedRecord = Arc<Mutex<GuardRecord>>;

/// Moves what a stream's guard did into the request; whether it blocked the answer.
pub fn finish_into(record: &SharedRecord, ctx: &mut RequestCtx) -> bool {
    let mut r = record.lock().unwrap_or_else(|p| p.into_inner());
    ctx.guardrails.append(&mut r.applied);
    if r.blocked {
        ctx.error_code = Some("content_blocked");
    }
    r.blocked
}

/// Text of one stream, held back by at most `hold` bytes.
pub struct TextGuard {
    rails: Vec<Arc<Guardrail>>,
    hold: usize,
    buf: String,
    record: SharedRecord,
}

impl TextGuard {
    pub fn new(rails: Vec<Arc<Guardrail>>, record: SharedRecord) -> TextGuard {
        let hold = rails
            .iter()
            .filter_map(|g| g.detector.as_ref())
            .map(|d| d.max_len())
            .max()
            .unwrap_or(0)
            // One more: a match's `\b` looks at the character after it.
            + 4;
        TextGuard {
            rails,
            hold,
            buf: String::new(),
            record,
        }
    }

    /// Adds text; returns what may go out now, or the blocking guardrail's name.
    pub fn push(&mut self, text: &str) -> Result<String, String> {
        self.buf.push_str(text);
        self.release(false)
    }

    /// Releases all held text (before another event, at the end).
    pub fn flush(&mut self) -> Result<String, String> {
        self.release(true)
    }

    fn note(&self, g: &Arc<Guardrail>, action: Action) {
        let mut r = self.record.lock().unwrap_or_else(|p| p.into_inner());
        if !r
            .applied
            .iter()
            .any(|a| Arc::ptr_eq(&a.guardrail, g) && a.action == action)
        {
            r.applied.push(Applied::new(g, action, Phase::Response));
        }
        if action == Action::Block {
            r.blocked = true;
        }
    }

    fn release(&mut self, all: bool) -> Result<String, String> {
        if self.buf.is_empty() {
            return Ok(String::new());
        }
        let mut found: Vec<(usize, Finding)> = Vec::new();
        for (i, g) in self.rails.iter().enumerate() {
            let Some(det) = &g.detector else { continue };
            for f in det.find(&self.buf) {
                if g.action == Action::Block {
                    self.note(g, Action::Block);
                    self.buf.clear();
                    return Err(g.name.clone());
                }
                found.push((i, f));
            }
        }
        let mut cut = if all {
            self.buf.len()
        } else {
            let mut c = self.buf.len().saturating_sub(self.hold);
            while !self.buf.is_char_boundary(c) {
                c -= 1;
            }
            c
        };
        // A match that runs past the cut is held whole (it may still grow).
        while let Some(start) = found
            .iter()
            .filter(|(_, f)| f.start < cut && f.end > cut)
            .map(|(_, f)| f.start)
            .min()
        {
            cut = start;
        }
        let mut redact = Vec::new();
        for (i, f) in found.iter().filter(|(_, f)| f.end <= cut) {
            let g = &self.rails[*i];
            self.note(g, g.action);
            if g.action == Action::Redact {
                redact.push(*f);
            }
        }
        non_overlapping(&mut redact);
        let out = redact_with(&self.buf[..cut], &redact);
        self.buf.drain(..cut);
        Ok(out)
    }
}

/// A provider stream decoder whose text deltas pass a [`TextGuard`].
pub struct GuardedDecoder {
    inner: Box<dyn StreamDecode>,
    guard: TextGuard,
    scratch: Vec<StreamEvent>,
    blocked: bool,
}

impl GuardedDecoder {
    pub fn new(inner: Box<dyn StreamDecode>, guard: TextGuard) -> GuardedDecoder {
        GuardedDecoder {
            inner,
            guard,
            scratch: Vec::new(),
            blocked: false,
        }
    }

    fn blocked_event(&mut self, name: &str) -> StreamEvent {
        self.blocked = true;
        StreamEvent::Error(ProviderError::new(
            ErrorKind::ContentPolicy,
            format!("the answer was blocked by guardrail `{name}`"),
        ))
    }

    fn filter(&mut self, out: &mut Vec<StreamEvent>) {
        let events: Vec<StreamEvent> = self.scratch.drain(..).collect();
        for ev in events {
            if self.blocked {
                continue;
            }
            let released = match &ev {
                StreamEvent::TextDelta(t) => self.guard.push(t),
                _ => self.guard.flush(),
            };
            match released {
                Ok(text) => {
                    if !text.is_empty() {
                        out.push(StreamEvent::TextDelta(text));
                    }
                    if !matches!(ev, StreamEvent::TextDelta(_)) {
                        out.push(ev);
                    }
                }
                Err(name) => {
                    let e = self.blocked_event(&name);
                    out.push(e);
                }
            }
        }
    }
}

impl StreamDecode for GuardedDecoder {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<StreamEvent>) {
        self.inner.push(chunk, &mut self.scratch);
        self.filter(out);
    }

    fn finish(&mut self, out: &mut Vec<StreamEvent>) {
        self.inner.finish(&mut self.scratch);
        self.filter(out);
        if self.blocked {
            return;
        }
        match self.guard.flush() {
            Ok(t) if !t.is_empty() => out.push(StreamEvent::TextDelta(t)),
            Ok(_) => {}
            Err(name) => {
                let e = self.blocked_event(&name);
                out.push(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_filters::guardrails::{Detector, Kind, Spec};

    fn guard(action: Action) -> (TextGuard, SharedRecord) {
        let g = Arc::new(Guardrail {
            name: "g".into(),
            on_request: false,
            on_response: true,
            detector: Some(
                Detector::new(&Spec {
                    pii: vec![Kind::CreditCard],
                    ..Spec::default()
                })
                .unwrap(),
            ),
            action,
            max_input_tokens: None,
            max_output_tokens: None,
            webhook: None,
        });
        let record = SharedRecord::default();
        (TextGuard::new(vec![g], record.clone()), record)
    }

    #[test]
    fn text_beyond_the_hold_back_goes_out_before_the_end() {
        let (mut g, _) = guard(Action::Redact);
        let long = "word ".repeat(40);
        let first = g.push(&long).unwrap();
        assert!(
            !first.is_empty() && first.len() <= long.len() - 40,
            "{first:?}"
        );
        let rest = g.flush().unwrap();
        assert_eq!(first + &rest, long);
    }

    #[test]
    fn a_match_split_across_pushes_is_redacted_once() {
        let (mut g, record) = guard(Action::Redact);
        let mut out = String::new();
        for part in ["pay 4111 11", "11 1111 1", "111 now"] {
            out += &g.push(part).unwrap();
        }
        out += &g.flush().unwrap();
        assert_eq!(out, "pay [REDACTED:CREDIT_CARD] now");
        assert_eq!(record.lock().unwrap().applied.len(), 1);
    }

    #[test]
    fn a_block_releases_nothing_of_the_match() {
        let (mut g, record) = guard(Action::Block);
        assert_eq!(g.push("pay 4111 1111").unwrap(), "");
        assert_eq!(g.push(" 1111 1111").unwrap_err(), "g");
        assert!(record.lock().unwrap().blocked);
    }
}
