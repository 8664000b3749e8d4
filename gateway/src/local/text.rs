//! From generated token ids to the text a caller sees: incremental detokenisation (text is
//! released only once it is whole — never half a UTF-8 character or a byte-level fragment) and
//! stop sequences (text that might begin a stop sequence is held back until it is known not to).
//!
//! Pure: the tokenizer is passed in; no model, no I/O.

use tokenizers::Tokenizer;

/// How many prompt tokens seed the detokeniser, so the first generated token decodes with its
/// real left context (leading spaces of SentencePiece and byte-level vocabularies).
const CONTEXT_TOKENS: usize = 5;

/// Turns token ids into text deltas as they are generated.
///
/// Decodes a short window (`ids[prefix..]`) and releases what it adds over the already released
/// part (`ids[prefix..read]`); a window ending in U+FFFD is an incomplete character and waits for
/// the next token.
pub struct Detokenizer {
    ids: Vec<u32>,
    prefix: usize,
    read: usize,
}

impl Detokenizer {
    /// Starts after `prompt` (its last few ids are the decoding context).
    pub fn new(prompt: &[u32]) -> Detokenizer {
        let tail = &prompt[prompt.len().saturating_sub(CONTEXT_TOKENS)..];
        Detokenizer {
            ids: tail.to_vec(),
            prefix: 0,
            read: tail.len(),
        }
    }

    /// Adds one generated id; returns the text it completes (empty when it completes none yet).
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> Result<String, String> {
        self.ids.push(id);
        let decode = |ids: &[u32]| tokenizer.decode(ids, true).map_err(|e| e.to_string());
        let before = decode(&self.ids[self.prefix..self.read])?;
        let now = decode(&self.ids[self.prefix..])?;
        if now.len() <= before.len() || now.ends_with('\u{FFFD}') {
            return Ok(String::new());
        }
        let delta = match now.get(before.len()..) {
            // The window's text grew at its end: release the new part.
            Some(d) if now.starts_with(&before) => d.to_string(),
            // Decoding the longer window changed earlier text (rare normalisation effects): release
            // what is new by character count rather than send garbled bytes.
            _ => now.chars().skip(before.chars().count()).collect(),
        };
        self.prefix = self.read;
        self.read = self.ids.len();
        // Keep the window short: only ids from `prefix` on are ever decoded again.
        if self.prefix > 64 {
            self.ids.drain(..self.prefix);
            self.read -= self.prefix;
            self.prefix = 0;
        }
        Ok(delta)
    }

    /// Generation ended: whatever is still held (an incomplete character at the very end is
    /// released as U+FFFD rather than lost).
    pub fn flush(&mut self, tokenizer: &Tokenizer) -> Result<String, String> {
        if self.read == self.ids.len() {
            return Ok(String::new());
        }
        let decode = |ids: &[u32]| tokenizer.decode(ids, true).map_err(|e| e.to_string());
        let before = decode(&self.ids[self.prefix..self.read])?;
        let now = decode(&self.ids[self.prefix..])?;
        self.read = self.ids.len();
        Ok(now.chars().skip(before.chars().count()).collect())
    }
}

/// What [`StopMatcher::push`] releases.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Released {
    /// Text safe to send.
    pub text: String,
    /// The stop sequence that matched (generation ends; the sequence itself is not sent).
    pub stopped: Option<String>,
}

/// Watches generated text for stop sequences, holding back any suffix that could still grow
/// into one.
pub struct StopMatcher {
    stops: Vec<String>,
    pending: String,
}

impl StopMatcher {
    pub fn new(stops: &[String]) -> StopMatcher {
        StopMatcher {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            pending: String::new(),
        }
    }

    /// Feeds a text delta.
    pub fn push(&mut self, delta: &str) -> Released {
        if self.stops.is_empty() {
            return Released {
                text: delta.to_string(),
                stopped: None,
            };
        }
        self.pending.push_str(delta);
        // The earliest match wins (the longer sequence when two start at the same place).
        let found = self
            .stops
            .iter()
            .filter_map(|s| self.pending.find(s.as_str()).map(|at| (at, s)))
            .min_by(|a, b| a.0.cmp(&b.0).then(b.1.len().cmp(&a.1.len())));
        if let Some((at, stop)) = found {
            let text = self.pending[..at].to_string();
            let stopped = Some(stop.clone());
            self.pending.clear();
            return Released { text, stopped };
        }
        let held = self.held_back();
        let cut = self.pending.len() - held;
        let text = self.pending[..cut].to_string();
        self.pending.drain(..cut);
        Released {
            text,
            stopped: None,
        }
    }

    /// The longest suffix of the pending text that is a proper prefix of some stop sequence.
    fn held_back(&self) -> usize {
        let mut longest = 0;
        for stop in &self.stops {
            for (end, _) in stop.char_indices().skip(1) {
                let prefix = &stop[..end];
                if end > longest && self.pending.ends_with(prefix) {
                    longest = end;
                }
            }
        }
        longest
    }

    /// Generation ended without a match: the text held back is sent after all.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(stops: &[&str], deltas: &[&str]) -> (String, Option<String>) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut m = StopMatcher::new(&stops);
        let mut out = String::new();
        for d in deltas {
            let r = m.push(d);
            out.push_str(&r.text);
            if r.stopped.is_some() {
                return (out, r.stopped);
            }
        }
        out.push_str(&m.finish());
        (out, None)
    }

    #[test]
    fn a_stop_sequence_split_across_deltas_is_caught() {
        let (text, stop) = feed(&["END"], &["hello E", "N", "D and more"]);
        assert_eq!(text, "hello ");
        assert_eq!(stop.as_deref(), Some("END"));
    }

    #[test]
    fn held_back_text_is_released_when_it_stops_matching() {
        let stops = vec!["END".to_string()];
        let mut m = StopMatcher::new(&stops);
        assert_eq!(m.push("abcE").text, "abc");
        assert_eq!(m.push("N").text, "");
        assert_eq!(m.push("x").text, "ENx");
        assert_eq!(m.finish(), "");
        let (text, stop) = feed(&["END"], &["tail E"]);
        assert_eq!((text.as_str(), stop), ("tail E", None));
    }

    #[test]
    fn the_earliest_of_several_stops_wins() {
        let (text, stop) = feed(&["xyz", "b"], &["aaxyzb"]);
        assert_eq!((text.as_str(), stop.as_deref()), ("aa", Some("xyz")));
        let (text, _) = feed(&[], &["no ", "stops"]);
        assert_eq!(text, "no stops");
        // Multi-byte characters are never split when holding back.
        let (text, stop) = feed(&["éé"], &["caf", "é", "!"]);
        assert_eq!((text.as_str(), stop), ("café!", None));
    }
}
