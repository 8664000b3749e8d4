//! Response guardrails on streamed answers, without buffering them: a [`GuardedDecoder`] sits
//! between the provider's stream decoder and the caller's encoder and passes text deltas and
//! tool call argument deltas (OpenAI `tool_calls[].function.arguments`, Anthropic
//! `input_json_delta`, one guard per call) through a [`TextGuard`], which holds back only the
//! last `hold` bytes (the longest match any of the request's detectors can make, see
//! `Detector::max_len`, plus 4; at most `SECRET_HOLD_BACK` (512) for secrets and
//! `UNBOUNDED_HOLD_BACK` (1024) for unbounded configured patterns) so that a match split across
//! chunks is still seen whole, and releases the rest at once. Held text is released before any
//! other event (another call's arguments, usage, finish), so the caller's framing (OpenAI
//! chunks, completions chunks, Anthropic events, Responses events) is the encoder's, unchanged.
//! A block ends the stream with the caller's error event and nothing after it.
//!
//! Streams that pass bytes through (OpenAI to OpenAI, chat or legacy completions; Anthropic to
//! Anthropic) are switched to the decoded path for a request with response guardrails
//! ([`stream_mode`]), and so are the in-process providers' streams ([`open`]). Native Responses
//! streams (`providers[].responses: native`) keep the provider's events, rewritten by
//! [`super::native`]. Webhook guardrails are asked once about the whole text at the
//! end: the stream's last events (usage, finish, end) are held until they answer
//! ([`settle`]), and they can only block. Actions taken are shared with the relay through a
//! [`GuardRecord`] (the header is already sent: they reach the metric, the access log and the
//! audit log).

use super::webhook::{consult, decided, Asker};
use super::{Action, Applied, Guardrail, Phase};
use crate::forward::translate::{Mode, StreamRelay};
use crate::proxy::context::RequestCtx;
use pingora_core::connectors::http::Connector;
use std::sync::{Arc, Mutex};
use switchyard_adapters::canonical::{
    Dialect, ErrorKind, ProviderError, StreamDecode, StreamEvent,
};
use switchyard_adapters::providers::Caller;
use switchyard_filters::guardrails::{non_overlapping, redact_with, Finding};

/// The decoded mode a guarded stream uses instead of `mode`; `None` when it cannot be guarded.
pub fn stream_mode(mode: Mode, caller: Caller) -> Option<Mode> {
    match (mode, caller) {
        (Mode::OpenAiPassthrough { .. }, Caller::OpenAi | Caller::OpenAiCompletions) => {
            Some(Mode::Translated(Dialect::OpenAi))
        }
        (Mode::Observed(d), _) | (Mode::Translated(d), _) => Some(Mode::Translated(d)),
        _ => None,
    }
}

/// What a guarded stream did, read by the relay when it ends.
#[derive(Debug, Default)]
pub struct GuardRecord {
    pub applied: Vec<Applied>,
    pub blocked: bool,
    /// Webhook guardrails apply: the text is kept and the last events held for them.
    pub asks: bool,
    /// The text that went out (after redaction), for the webhooks.
    pub text: String,
    /// The stream's last events (usage, finish, end), held until the webhooks answer.
    pub held: Vec<StreamEvent>,
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
            // A few more: a match's `\b` looks at the character after it.
            .map_or(0, |n| n + 4);
        TextGuard {
            rails,
            hold,
            buf: String::new(),
            record,
        }
    }

    /// A guard for another text of the same stream (a tool call's arguments).
    pub(super) fn another(&self) -> TextGuard {
        TextGuard {
            rails: self.rails.clone(),
            hold: self.hold,
            buf: String::new(),
            record: self.record.clone(),
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

/// A provider stream decoder whose text and tool call argument deltas pass [`TextGuard`]s.
pub struct GuardedDecoder {
    inner: Box<dyn StreamDecode>,
    guard: TextGuard,
    /// One guard per tool call (canonical index), created at its first argument delta.
    calls: Vec<(u32, TextGuard)>,
    scratch: Vec<StreamEvent>,
    blocked: bool,
    /// Hold the last events for the webhooks ([`GuardRecord::asks`]).
    asks: bool,
}

impl GuardedDecoder {
    pub fn new(inner: Box<dyn StreamDecode>, guard: TextGuard) -> GuardedDecoder {
        let asks = guard.record.lock().map(|r| r.asks).unwrap_or(false);
        GuardedDecoder {
            inner,
            guard,
            calls: Vec::new(),
            scratch: Vec::new(),
            blocked: false,
            asks,
        }
    }

    fn blocked_event(&mut self, name: &str) -> StreamEvent {
        self.blocked = true;
        StreamEvent::Error(ProviderError::new(
            ErrorKind::ContentPolicy,
            format!("the answer was blocked by guardrail `{name}`"),
        ))
    }

    /// Releases everything held except the arguments of call `keep`, in order: text, then each
    /// call's arguments.
    fn flush_all(&mut self, keep: Option<u32>, out: &mut Vec<StreamEvent>) -> Result<(), String> {
        let text = self.guard.flush()?;
        self.text_out(text, out);
        for (index, g) in self.calls.iter_mut().filter(|(i, _)| Some(*i) != keep) {
            let arguments = g.flush()?;
            if !arguments.is_empty() {
                out.push(StreamEvent::ToolCallDelta {
                    index: *index,
                    arguments,
                });
            }
        }
        Ok(())
    }

    fn text_out(&mut self, text: String, out: &mut Vec<StreamEvent>) {
        if text.is_empty() {
            return;
        }
        if self.asks {
            let mut r = self.guard.record.lock().unwrap_or_else(|p| p.into_inner());
            r.text.push_str(&text);
        }
        out.push(StreamEvent::TextDelta(text));
    }

    /// One event through the guards: what it releases, then itself (unless held or a delta).
    fn one(&mut self, ev: StreamEvent, out: &mut Vec<StreamEvent>) -> Result<(), String> {
        match ev {
            StreamEvent::TextDelta(t) => {
                let released = self.guard.push(&t)?;
                self.text_out(released, out);
            }
            StreamEvent::ToolCallDelta { index, arguments } => {
                self.flush_all(Some(index), out)?;
                let at = match self.calls.iter().position(|(i, _)| *i == index) {
                    Some(at) => at,
                    None => {
                        self.calls.push((index, self.guard.another()));
                        self.calls.len() - 1
                    }
                };
                let arguments = self.calls[at].1.push(&arguments)?;
                if !arguments.is_empty() {
                    out.push(StreamEvent::ToolCallDelta { index, arguments });
                }
            }
            ev => {
                self.flush_all(None, out)?;
                let last = matches!(
                    ev,
                    StreamEvent::Usage(_) | StreamEvent::Finish(_) | StreamEvent::End
                );
                if self.asks && last {
                    let mut r = self.guard.record.lock().unwrap_or_else(|p| p.into_inner());
                    r.held.push(ev);
                } else {
                    out.push(ev);
                }
            }
        }
        Ok(())
    }

    fn filter(&mut self, out: &mut Vec<StreamEvent>) {
        let events: Vec<StreamEvent> = self.scratch.drain(..).collect();
        for ev in events {
            if self.blocked {
                continue;
            }
            if let Err(name) = self.one(ev, out) {
                let e = self.blocked_event(&name);
                out.push(e);
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
        if let Err(name) = self.flush_all(None, out) {
            let e = self.blocked_event(&name);
            out.push(e);
        }
    }
}

/// Puts the request's response guardrails between `relay`'s decoder and encoder; `None` when
/// none apply or the relay passes bytes through (open it in [`stream_mode`]'s mode first).
pub fn open(relay: &mut StreamRelay, ctx: &RequestCtx) -> Option<SharedRecord> {
    open_with(relay, ctx)
}

/// Where a [`GuardedDecoder`] goes: a relay's decoder, or kept by an [`EventGuard`].
trait Wrap {
    fn wrap(&mut self, guarded: impl FnOnce(Box<dyn StreamDecode>) -> GuardedDecoder) -> bool;
}

impl Wrap for StreamRelay {
    fn wrap(&mut self, guarded: impl FnOnce(Box<dyn StreamDecode>) -> GuardedDecoder) -> bool {
        self.wrap_decoder(|inner| Box::new(guarded(inner)))
    }
}

/// The decoder of an [`EventGuard`], fed events directly (its inner decoder decodes nothing).
struct NoRelay(Option<GuardedDecoder>);

impl Wrap for NoRelay {
    fn wrap(&mut self, guarded: impl FnOnce(Box<dyn StreamDecode>) -> GuardedDecoder) -> bool {
        self.0 = Some(guarded(Box::new(Silent)));
        true
    }
}

/// Decodes nothing: an [`EventGuard`]'s events come already decoded.
struct Silent;

impl StreamDecode for Silent {
    fn push(&mut self, _: &[u8], _: &mut Vec<StreamEvent>) {}
    fn finish(&mut self, _: &mut Vec<StreamEvent>) {}
}

fn open_with(target: &mut impl Wrap, ctx: &RequestCtx) -> Option<SharedRecord> {
    if ctx.response_guardrails.is_empty() {
        return None;
    }
    let record = SharedRecord::new(Mutex::new(GuardRecord {
        asks: ctx.response_guardrails.iter().any(|g| g.webhook.is_some()),
        ..GuardRecord::default()
    }));
    let guard = TextGuard::new(ctx.response_guardrails.clone(), record.clone());
    target
        .wrap(|inner| GuardedDecoder::new(inner, guard))
        .then_some(record)
}

/// The end of a guarded stream whose webhooks were not asked yet: asks each about the whole
/// text, then returns the stream's last events to encode — the held ones, or the caller's error
/// event when one blocks (a redact answer counts as a block: the text has gone). `None` when
/// there is nothing to ask (no webhook, the stream already blocked or failed).
pub async fn settle(
    record: &SharedRecord,
    ctx: &mut RequestCtx,
    connector: &Connector,
) -> Option<Vec<StreamEvent>> {
    let (text, held) = {
        let mut r = record.lock().unwrap_or_else(|p| p.into_inner());
        if !r.asks || r.blocked || r.held.is_empty() {
            return None;
        }
        (std::mem::take(&mut r.text), std::mem::take(&mut r.held))
    };
    let asker = Asker::about_answers(connector, ctx);
    let text = serde_json::Value::String(text);
    let rails = ctx.response_guardrails.clone();
    for g in rails.iter().filter(|g| g.webhook.is_some()) {
        let verdict = consult(&asker, g, ctx, "text", &text).await;
        let Some(hook) = &g.webhook else { continue };
        if decided(verdict, g, hook, Phase::Response, ctx).is_some() {
            let mut r = record.lock().unwrap_or_else(|p| p.into_inner());
            r.applied
                .push(Applied::new(g, Action::Block, Phase::Response));
            r.blocked = true;
            return Some(vec![StreamEvent::Error(ProviderError::new(
                ErrorKind::ContentPolicy,
                format!("the answer was blocked by guardrail `{}`", g.name),
            ))]);
        }
    }
    Some(held)
}

/// Guards a stream of events made in process (the local pool): [`open`] without a relay.
pub struct EventGuard {
    decoder: GuardedDecoder,
    pub record: SharedRecord,
}

impl EventGuard {
    /// `None` when no response guardrail applies.
    pub fn open(ctx: &RequestCtx) -> Option<EventGuard> {
        let mut relay = NoRelay(None);
        let record = open_with(&mut relay, ctx)?;
        let decoder = relay.0?;
        Some(EventGuard { decoder, record })
    }

    /// One event through the guards: the events to encode now.
    pub fn push(&mut self, ev: StreamEvent, out: &mut Vec<StreamEvent>) {
        self.decoder.scratch.push(ev);
        self.decoder.filter(out);
    }

    /// The stream ended: what was held.
    pub fn finish(&mut self, out: &mut Vec<StreamEvent>) {
        self.decoder.finish(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_adapters::canonical::FinishReason;

    fn guard(action: Action) -> (TextGuard, SharedRecord) {
        let g = crate::guardrails::card_rail(action);
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

    /// A decoder that hands out canned events, one batch per push.
    struct Canned(Vec<Vec<StreamEvent>>);

    impl StreamDecode for Canned {
        fn push(&mut self, _: &[u8], out: &mut Vec<StreamEvent>) {
            if !self.0.is_empty() {
                out.extend(self.0.remove(0));
            }
        }
        fn finish(&mut self, _: &mut Vec<StreamEvent>) {}
    }

    fn call(index: u32, arguments: &str) -> StreamEvent {
        StreamEvent::ToolCallDelta {
            index,
            arguments: arguments.into(),
        }
    }

    #[test]
    fn each_tool_calls_arguments_are_guarded_and_released_before_the_next_call() {
        let (g, record) = guard(Action::Redact);
        let batches = vec![
            vec![call(0, "{\"card\":\"4111 1111 ")],
            vec![call(0, "1111 1111\"}")],
            vec![StreamEvent::ToolCallStart {
                index: 1,
                id: "c1".into(),
                name: "f".into(),
            }],
            vec![call(1, "{}"), StreamEvent::Finish(FinishReason::ToolCalls)],
        ];
        let mut d = GuardedDecoder::new(Box::new(Canned(batches)), g);
        let mut out = Vec::new();
        for _ in 0..4 {
            d.push(b"", &mut out);
        }
        d.finish(&mut out);
        let args = |i: u32| -> String {
            out.iter()
                .filter_map(|e| match e {
                    StreamEvent::ToolCallDelta { index, arguments } if *index == i => {
                        Some(arguments.as_str())
                    }
                    _ => None,
                })
                .collect()
        };
        assert_eq!(args(0), "{\"card\":\"[REDACTED:CREDIT_CARD]\"}");
        assert_eq!(args(1), "{}");
        // Call 0's arguments all went out before call 1 started.
        let start = out
            .iter()
            .position(|e| matches!(e, StreamEvent::ToolCallStart { .. }))
            .unwrap();
        let last0 = out
            .iter()
            .rposition(|e| matches!(e, StreamEvent::ToolCallDelta { index: 0, .. }))
            .unwrap();
        assert!(last0 < start, "{out:?}");
        assert!(matches!(out.last(), Some(StreamEvent::Finish(_))));
        assert_eq!(record.lock().unwrap().applied.len(), 1);
    }

    #[test]
    fn a_block_in_tool_arguments_ends_with_an_error_and_nothing_after() {
        let (g, record) = guard(Action::Block);
        let batches = vec![vec![
            call(0, "{\"card\":\"4111 1111 1111 1111\"}"),
            StreamEvent::Finish(FinishReason::ToolCalls),
            StreamEvent::End,
        ]];
        let mut d = GuardedDecoder::new(Box::new(Canned(batches)), g);
        let mut out = Vec::new();
        d.push(b"", &mut out);
        d.finish(&mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(matches!(&out[0], StreamEvent::Error(e) if e.message.contains("`g`")));
        assert!(record.lock().unwrap().blocked);
    }

    #[test]
    fn a_block_releases_nothing_of_the_match() {
        let (mut g, record) = guard(Action::Block);
        assert_eq!(g.push("pay 4111 1111").unwrap(), "");
        assert_eq!(g.push(" 1111 1111").unwrap_err(), "g");
        assert!(record.lock().unwrap().blocked);
    }
}
