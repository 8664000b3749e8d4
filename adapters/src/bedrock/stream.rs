//! ConverseStream → canonical [`StreamEvent`]s, event by event as frames complete: the
//! event-stream framing ([`super::eventstream`]) then each event's JSON payload by its
//! `:event-type` (`messageStart`, `contentBlockStart`, `contentBlockDelta`,
//! `contentBlockStop`, `messageStop`, `metadata`); an exception message becomes an `Error`.
//! The stream has no end marker of its own: it ended normally when `messageStop` came.

use super::eventstream::{Framer, Message};
use super::{kind_of_exception, map_stop, map_usage};
use crate::canonical::*;
use serde_json::Value;
use std::collections::HashMap;

#[derive(Debug, Default)]
pub struct StreamDecoder {
    framer: Framer,
    frames: Vec<Result<Message, super::eventstream::FrameError>>,
    started: bool,
    /// `contentBlockIndex` of each tool call → its canonical tool-call index.
    tools: HashMap<u64, u32>,
    stopped: bool,
    done: bool,
}

impl StreamDecoder {
    pub fn new() -> Self {
        StreamDecoder::default()
    }

    fn start(&mut self, out: &mut Vec<StreamEvent>) {
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: None,
                model: None,
            });
        }
    }

    fn fail(&mut self, err: ProviderError, out: &mut Vec<StreamEvent>) {
        self.done = true;
        out.push(StreamEvent::Error(err));
    }

    fn message(&mut self, m: Message, out: &mut Vec<StreamEvent>) {
        let payload: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
        let kind = m.event_type.as_deref().unwrap_or("");
        if m.message_type.as_deref() != Some("event") {
            let message = payload
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_string)
                .or(m.error_message)
                .unwrap_or_else(|| format!("bedrock stream {kind}"));
            let name = m.error_code.as_deref().unwrap_or(kind);
            let mut e = ProviderError::new(kind_of_exception(name, 500), message);
            e.provider_code = Some(name.to_string());
            return self.fail(e, out);
        }
        self.start(out);
        let block = payload["contentBlockIndex"].as_u64().unwrap_or(0);
        match kind {
            "contentBlockStart" => {
                if let Some(u) = payload.pointer("/start/toolUse") {
                    let index = self.tools.len() as u32;
                    self.tools.insert(block, index);
                    out.push(StreamEvent::ToolCallStart {
                        index,
                        id: u["toolUseId"].as_str().unwrap_or_default().to_string(),
                        name: u["name"].as_str().unwrap_or_default().to_string(),
                    });
                }
            }
            "contentBlockDelta" => self.delta(block, &payload["delta"], out),
            "messageStop" if !self.stopped => {
                self.stopped = true;
                let reason = payload["stopReason"].as_str().unwrap_or("end_turn");
                out.push(StreamEvent::Finish(map_stop(reason)));
            }
            "metadata" => {
                if let Some(u) = payload.get("usage") {
                    out.push(StreamEvent::Usage(map_usage(u)));
                }
            }
            _ => {}
        }
    }

    fn delta(&mut self, block: u64, d: &Value, out: &mut Vec<StreamEvent>) {
        fn text(v: Option<&Value>) -> Option<&str> {
            v.and_then(Value::as_str).filter(|s| !s.is_empty())
        }
        if let Some(t) = text(d.get("text")) {
            out.push(StreamEvent::TextDelta(t.to_string()));
        } else if let Some(args) = text(d.pointer("/toolUse/input")) {
            if let Some(&index) = self.tools.get(&block) {
                out.push(StreamEvent::ToolCallDelta {
                    index,
                    arguments: args.to_string(),
                });
            }
        } else if let Some(t) = text(d.pointer("/reasoningContent/text")) {
            out.push(StreamEvent::ReasoningDelta(t.to_string()));
        }
    }
}

impl StreamDecode for StreamDecoder {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<StreamEvent>) {
        if self.done {
            return;
        }
        let mut frames = std::mem::take(&mut self.frames);
        self.framer.push(chunk, &mut frames);
        for f in frames.drain(..) {
            if self.done {
                break;
            }
            match f {
                Ok(m) => self.message(m, out),
                Err(e) => self.fail(
                    ProviderError::new(ErrorKind::Server, format!("bedrock: {e}")),
                    out,
                ),
            }
        }
        self.frames = frames;
    }

    fn finish(&mut self, out: &mut Vec<StreamEvent>) {
        if self.done {
            return;
        }
        self.done = true;
        if self.stopped && self.framer.pending() == 0 {
            out.push(StreamEvent::End);
        } else {
            out.push(StreamEvent::Error(ProviderError::new(
                ErrorKind::Server,
                "bedrock: the stream ended before messageStop",
            )));
        }
    }
}
