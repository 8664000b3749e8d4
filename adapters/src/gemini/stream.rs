//! The Gemini `streamGenerateContent?alt=sse` stream decoded into canonical stream events, chunk
//! by chunk. The request encoder, the response model and the error decoder are the parent
//! module. No I/O here.

use super::*;

// ---------------------------------------------------------------------------------------------
// Stream
// ---------------------------------------------------------------------------------------------

/// Decodes a `streamGenerateContent?alt=sse` body into canonical stream events.
///
/// Each SSE `data:` payload is a whole `GenerateContentResponse` carrying only new parts. Gemini
/// sends no end marker: [`StreamDecode::finish`] emits `End` when a finish reason was seen and an
/// `Error` otherwise. A raw (not `data:`-prefixed, possibly multi-line) JSON error body inside the
/// stream is recognised too, as the Google SDK does.
#[derive(Debug)]
pub struct StreamDecoder {
    /// Bytes of a line whose terminator has not arrived.
    pub(super) line: Vec<u8>,
    /// The previous chunk ended with `\r`: a leading `\n` belongs to that terminator.
    after_cr: bool,
    /// Bytes of the current event's lines so far (bounded by `max_event`).
    event_bytes: usize,
    /// The current event's `data:` lines joined with `\n`.
    pub(super) data: Vec<u8>,
    has_data: bool,
    /// A raw JSON body being collected line by line, with its bracket-balance scanner state.
    raw: Vec<u8>,
    in_raw: bool,
    raw_depth: usize,
    raw_in_string: bool,
    raw_escape: bool,
    started: bool,
    calls: u32,
    saw_call: bool,
    finished: bool,
    done: bool,
    max_event: usize,
}

impl Default for StreamDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::with_max_event(MAX_EVENT_BYTES)
    }

    pub(super) fn with_max_event(max_event: usize) -> Self {
        StreamDecoder {
            line: Vec::new(),
            after_cr: false,
            event_bytes: 0,
            data: Vec::new(),
            has_data: false,
            raw: Vec::new(),
            in_raw: false,
            raw_depth: 0,
            raw_in_string: false,
            raw_escape: false,
            started: false,
            calls: 0,
            saw_call: false,
            finished: false,
            done: false,
            max_event,
        }
    }

    fn fail(&mut self, err: ProviderError, out: &mut Vec<StreamEvent>) {
        out.push(StreamEvent::Error(err));
        self.done = true;
        self.line = Vec::new();
        self.data = Vec::new();
        self.raw = Vec::new();
    }

    fn too_big(&mut self, out: &mut Vec<StreamEvent>) {
        let msg = format!(
            "gemini stream event exceeds {} bytes without a separator",
            self.max_event
        );
        self.fail(ProviderError::new(ErrorKind::Server, msg), out);
    }

    /// One complete line (terminator removed).
    fn process_line(&mut self, line: &[u8], out: &mut Vec<StreamEvent>) {
        self.event_bytes = self.event_bytes.saturating_add(line.len());
        if self.event_bytes > self.max_event {
            return self.too_big(out);
        }
        if self.in_raw {
            if line.trim_ascii().is_empty() {
                return self.dispatch_raw(out);
            }
            return self.raw_line(line, out);
        }
        if line.is_empty() {
            self.event_bytes = 0;
            if self.has_data {
                self.has_data = false;
                let data = std::mem::take(&mut self.data);
                self.dispatch(&data, out);
                if !self.done {
                    self.data = data;
                    self.data.clear();
                }
            }
            return;
        }
        if matches!(line.trim_ascii_start().first(), Some(b'{' | b'[')) {
            self.in_raw = true;
            return self.raw_line(line, out);
        }
        if line[0] == b':' {
            return;
        }
        if let Some(value) = line.strip_prefix(b"data") {
            let value = match value.first() {
                None => value,
                Some(b':') => value[1..].strip_prefix(b" ").unwrap_or(&value[1..]),
                Some(_) => return, // another field whose name starts with "data"
            };
            if self.has_data {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(value);
            self.has_data = true;
        }
        // Other fields (`event`, `id`, `retry`) carry nothing Gemini uses.
    }

    fn raw_line(&mut self, line: &[u8], out: &mut Vec<StreamEvent>) {
        self.raw.extend_from_slice(line);
        self.raw.push(b'\n');
        for &b in line {
            if self.raw_in_string {
                if self.raw_escape {
                    self.raw_escape = false;
                } else if b == b'\\' {
                    self.raw_escape = true;
                } else if b == b'"' {
                    self.raw_in_string = false;
                }
            } else {
                match b {
                    b'"' => self.raw_in_string = true,
                    b'{' | b'[' => self.raw_depth = self.raw_depth.saturating_add(1),
                    b'}' | b']' => self.raw_depth = self.raw_depth.saturating_sub(1),
                    _ => {}
                }
            }
        }
        if self.raw_depth == 0 {
            self.dispatch_raw(out);
        }
    }

    fn dispatch_raw(&mut self, out: &mut Vec<StreamEvent>) {
        let raw = std::mem::take(&mut self.raw);
        self.in_raw = false;
        self.raw_depth = 0;
        self.raw_in_string = false;
        self.raw_escape = false;
        self.event_bytes = 0;
        self.dispatch(&raw, out);
    }

    /// One event payload: a `GenerateContentResponse`, an error, or an array of them.
    fn dispatch(&mut self, payload: &[u8], out: &mut Vec<StreamEvent>) {
        let p = payload.trim_ascii();
        if p.is_empty() || p == b"[DONE]" {
            return;
        }
        match parse_responses(p) {
            Ok(responses) => {
                for r in responses {
                    self.handle(r, out);
                    if self.done {
                        return;
                    }
                }
            }
            Err(e) => self.fail(malformed("stream event", e), out),
        }
    }

    fn handle(&mut self, r: GResponse, out: &mut Vec<StreamEvent>) {
        if let Some(err) = &r.error {
            let err = error_from_value(error_code(err), err, None);
            return self.fail(err, out);
        }
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: r.response_id,
                model: r.model_version,
            });
        }
        let cand = r.candidates.and_then(|c| c.into_iter().next());
        let has_candidate = cand.is_some();
        let mut finish_reason = None;
        if let Some(cand) = cand {
            if !self.finished {
                for part in cand.content.and_then(|c| c.parts).unwrap_or_default() {
                    self.part(part, out);
                }
            }
            finish_reason = cand.finish_reason.filter(|f| !f.is_empty());
        }
        if let Some(u) = &r.usage_metadata {
            out.push(StreamEvent::Usage(u.to_usage()));
        }
        if self.finished {
            return;
        }
        let finish = match finish_reason {
            Some(f) => Some(map_finish(&f, self.saw_call)),
            None if !has_candidate
                && r.prompt_feedback
                    .as_ref()
                    .is_some_and(|f| f.block_reason.is_some()) =>
            {
                Some(FinishReason::ContentFilter)
            }
            None => None,
        };
        if let Some(f) = finish {
            self.finished = true;
            out.push(StreamEvent::Finish(f));
        }
    }

    fn part(&mut self, part: GPart, out: &mut Vec<StreamEvent>) {
        if let Some(fc) = part.function_call {
            let index = self.calls;
            self.calls = self.calls.saturating_add(1);
            self.saw_call = true;
            let id = fc
                .id
                .filter(|i| !i.is_empty())
                .unwrap_or_else(|| format!("call_{index}"));
            out.push(StreamEvent::ToolCallStart {
                index,
                id,
                name: fc.name.unwrap_or_default(),
            });
            out.push(StreamEvent::ToolCallDelta {
                index,
                arguments: args_text(fc.args.as_ref()),
            });
        } else if let Some(text) = part.text.filter(|t| !t.is_empty()) {
            out.push(if part.thought == Some(true) {
                StreamEvent::ReasoningDelta(text)
            } else {
                StreamEvent::TextDelta(text)
            });
        }
    }
}

impl StreamDecode for StreamDecoder {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<StreamEvent>) {
        if self.done || chunk.is_empty() {
            return;
        }
        let mut pos = 0;
        if self.after_cr {
            self.after_cr = false;
            if chunk[0] == b'\n' {
                pos = 1;
            }
        }
        while pos < chunk.len() {
            let rest = &chunk[pos..];
            let Some(p) = memchr::memchr2(b'\n', b'\r', rest) else {
                self.line.extend_from_slice(rest);
                if self.event_bytes.saturating_add(self.line.len()) > self.max_event {
                    self.too_big(out);
                }
                return;
            };
            if self.line.is_empty() {
                self.process_line(&rest[..p], out);
            } else {
                self.line.extend_from_slice(&rest[..p]);
                let line = std::mem::take(&mut self.line);
                self.process_line(&line, out);
                if !self.done {
                    self.line = line;
                    self.line.clear();
                }
            }
            if self.done {
                return;
            }
            let was_cr = rest[p] == b'\r';
            pos += p + 1;
            if was_cr {
                match chunk.get(pos) {
                    Some(b'\n') => pos += 1,
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<StreamEvent>) {
        if self.done {
            return;
        }
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, out);
        }
        if !self.done {
            if self.in_raw {
                self.dispatch_raw(out);
            } else if self.has_data {
                self.has_data = false;
                let data = std::mem::take(&mut self.data);
                self.dispatch(&data, out);
            }
        }
        if self.done {
            return;
        }
        self.done = true;
        out.push(if self.finished {
            StreamEvent::End
        } else {
            StreamEvent::Error(ProviderError::new(
                ErrorKind::Server,
                "stream ended before completion",
            ))
        });
    }
}
