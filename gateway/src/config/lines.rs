//! Where each key path of a configuration file is written: `models[0].deployments[1].weight` →
//! its line, so that `switchyard check` and reload errors point at the line to fix.
//!
//! Built from the YAML event stream of `yaml-rust2` (events carry their source position;
//! `serde_yaml`'s value tree, which the rest of [`crate::config`] uses, does not). It only maps
//! paths to lines: it never decides whether a file is valid, and a file it cannot read simply
//! gets no line numbers.

use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Line (1-based) of every key and sequence item of a YAML document, by key path.
#[derive(Debug, Default)]
pub struct LineMap {
    lines: HashMap<String, usize>,
}

impl LineMap {
    /// Maps the first document of `text`; an unreadable file maps nothing.
    pub fn of(text: &str) -> LineMap {
        let mut builder = Builder::default();
        // A syntax error leaves what was mapped before it; serde_yaml reports the error itself.
        let _ = Parser::new_from_str(text).load(&mut builder, false);
        LineMap {
            lines: builder.lines,
        }
    }

    /// The line of `path`, or of its closest enclosing path that is written in the file (a
    /// missing key is reported at its parent).
    pub fn line(&self, path: &str) -> Option<usize> {
        let mut path = path;
        loop {
            if let Some(&line) = self.lines.get(path) {
                return Some(line);
            }
            if path.is_empty() {
                return None;
            }
            path = parent(path);
        }
    }
}

/// `a.b[2].c` → `a.b[2]` → `a.b` → `a` → ``.
fn parent(path: &str) -> &str {
    match path.rfind(['.', '[']) {
        Some(i) => &path[..i],
        None => "",
    }
}

enum Frame {
    Mapping {
        path: String,
        /// The key whose value comes next (`None`: a key comes next).
        key: Option<String>,
    },
    Sequence {
        path: String,
        next: usize,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    lines: HashMap<String, usize>,
}

impl Builder {
    /// The path of the value this event starts, recording its line; `None` when the event is a
    /// mapping key (recorded as the pending key instead).
    fn value_path(&mut self, key_text: Option<&str>, line: usize) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Sequence { path, next }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                self.lines.entry(p.clone()).or_insert(line);
                Some(p)
            }
            Some(Frame::Mapping { path, key }) => match key.take() {
                Some(k) => Some(if path.is_empty() {
                    k
                } else {
                    format!("{path}.{k}")
                }),
                None => {
                    // A key: complex (non-scalar) keys never occur in a config file.
                    let k = key_text.unwrap_or_default().to_string();
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    self.lines.entry(p).or_insert(line);
                    *key = Some(k);
                    None
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line();
        match ev {
            Event::Scalar(text, ..) => {
                self.value_path(Some(&text), line);
            }
            Event::Alias(_) => {
                self.value_path(Some(""), line);
            }
            Event::MappingStart(..) => {
                let path = self.value_path(None, line).unwrap_or_default();
                self.stack.push(Frame::Mapping { path, key: None });
            }
            Event::SequenceStart(..) => {
                let path = self.value_path(None, line).unwrap_or_default();
                self.stack.push(Frame::Sequence { path, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
server:
  listen: [\"127.0.0.1:8080\"]
providers:
  - name: a
    kind: openai
  - name: b
    kind: mock
models:
  - name: chat
    deployments:
      - { provider: a, model: m }
      - provider: b
        weight: lots
";

    #[test]
    fn keys_and_items_map_to_their_lines() {
        let m = LineMap::of(TEXT);
        assert_eq!(m.line("server.listen"), Some(2));
        assert_eq!(m.line("providers[1]"), Some(6));
        assert_eq!(m.line("providers[1].kind"), Some(7));
        assert_eq!(m.line("models[0].deployments[0].model"), Some(11));
        assert_eq!(m.line("models[0].deployments[1].weight"), Some(13));
        // A key that is not written is found at its parent.
        assert_eq!(m.line("models[0].deployments[1].price"), Some(12));
        assert_eq!(m.line("telemetry.otlp"), None);
    }

    #[test]
    fn a_broken_file_maps_what_came_before_the_error() {
        let m = LineMap::of("server:\n  listen: [\"x\"]\nproviders: [\n  - : :\n");
        assert_eq!(m.line("server.listen"), Some(2));
    }
}
