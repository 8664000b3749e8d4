//! Guardrail detectors: what in a text is personal data, a secret, a listed word or a
//! configured pattern, and its redaction as `[REDACTED:<KIND>]`.
//!
//! A [`Detector`] is compiled once per config load: every PII kind and every configured regex
//! of one guardrail become alternatives of ONE regex (each a named group, so one pass finds
//! them all), the words one Aho-Corasick automaton (ASCII case-insensitive, whole words only).
//! Candidates of kinds with a checksum (cards: Luhn; IBANs: mod-97) or a valid range (SSNs, IP
//! addresses) are kept only when the check passes, so an order number is not a card number.
//! This module owns detection only: which guardrail applies and what is done with a finding is
//! the gateway's (`gateway/src/guardrails/`); nothing here does I/O.

mod checks;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::Regex;

/// What a finding is; its label is what a redaction writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Email,
    Phone,
    CreditCard,
    Ssn,
    Iban,
    IpAddress,
    Secret,
    Word,
    Regex,
}

impl Kind {
    /// The PII kinds by their config names (`guardrails[].pii`).
    pub const PII: [(&'static str, Kind); 7] = [
        ("email", Kind::Email),
        ("phone", Kind::Phone),
        ("credit_card", Kind::CreditCard),
        ("ssn", Kind::Ssn),
        ("iban", Kind::Iban),
        ("ip_address", Kind::IpAddress),
        ("secret", Kind::Secret),
    ];

    /// A PII kind by its config name.
    pub fn pii(name: &str) -> Option<Kind> {
        Kind::PII.iter().find(|(n, _)| *n == name).map(|(_, k)| *k)
    }

    /// `EMAIL`, `CREDIT_CARD`, …: what `[REDACTED:<KIND>]` names.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Email => "EMAIL",
            Kind::Phone => "PHONE",
            Kind::CreditCard => "CREDIT_CARD",
            Kind::Ssn => "SSN",
            Kind::Iban => "IBAN",
            Kind::IpAddress => "IP_ADDRESS",
            Kind::Secret => "SECRET",
            Kind::Word => "WORD",
            Kind::Regex => "REGEX",
        }
    }

    /// The pattern of a PII kind, bounded so a match's length is too (see [`Detector::max_len`]).
    fn pattern(self) -> &'static str {
        match self {
            Kind::Secret => concat!(
                r"\bsk-ant-[A-Za-z0-9_-]{20,}|\bsk-(?:proj-)?[A-Za-z0-9_-]{20,}",
                r"|\bAKIA[0-9A-Z]{16}\b|\bghp_[A-Za-z0-9]{36}\b",
                r"|\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
                r"|-----BEGIN (?:[A-Z]{1,10} )?PRIVATE KEY-----[A-Za-z0-9+/=\s]*",
                r"(?:-----END (?:[A-Z]{1,10} )?PRIVATE KEY-----)?"
            ),
            Kind::Email => {
                r"\b[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,4}\.[A-Za-z]{2,24}\b"
            }
            Kind::Iban => r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b",
            Kind::CreditCard => r"\b\d(?:[ -]?\d){12,18}\b",
            Kind::Ssn => r"\b\d{3}-\d{2}-\d{4}\b",
            Kind::Phone => concat!(
                r"\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}\b",
                r"|(?:\(\d{3}\)[ .-]?|\b\d{3}[ .-])\d{3}[ .-]\d{4}\b"
            ),
            Kind::IpAddress => concat!(
                r"\b\d{1,3}(?:\.\d{1,3}){3}\b",
                r"|\b(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}\b",
                r"|\b(?:[0-9A-Fa-f]{1,4}:){2,6}:(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,5})?"
            ),
            Kind::Word | Kind::Regex => "",
        }
    }

    /// The bytes a stream holds back for this kind: its longest match, or for secrets (whose
    /// keys and tokens have no fixed length) [`SECRET_HOLD_BACK`].
    fn hold_back(self) -> usize {
        match self {
            Kind::Secret => SECRET_HOLD_BACK,
            Kind::Email => 64 + 1 + 5 * 64 + 25,
            Kind::Phone => 32,
            Kind::CreditCard => 40,
            Kind::Iban => 42,
            Kind::Ssn => 11,
            Kind::IpAddress => 39,
            Kind::Word | Kind::Regex => 0,
        }
    }

    /// Whether a candidate of this kind is a real one (checksums, valid ranges).
    fn confirms(self, s: &str) -> bool {
        match self {
            Kind::CreditCard => checks::credit_card(s),
            Kind::Iban => checks::iban(s),
            Kind::Ssn => checks::ssn(s),
            Kind::IpAddress => checks::ip_address(s),
            Kind::Phone => checks::phone(s),
            _ => true,
        }
    }
}

/// A guardrail's detectors as written in its config entry.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    pub pii: Vec<Kind>,
    pub words: Vec<String>,
    pub regex: Vec<String>,
}

/// A configured pattern that does not compile; `index` is its place in `regex`.
#[derive(Debug, thiserror::Error)]
#[error("invalid regex {pattern:?}: {message}")]
pub struct InvalidRegex {
    pub index: usize,
    pub pattern: String,
    pub message: String,
}

/// One match: byte offsets in the scanned text and what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finding {
    pub start: usize,
    pub end: usize,
    pub kind: Kind,
}

/// Bound on a match's length for patterns that have none (`.*`, `+`): a stream holds back at
/// most this many bytes for them, and a longer match split across chunks may be missed.
pub const UNBOUNDED_HOLD_BACK: usize = 1024;

/// Hold-back for secrets on a stream: API keys and most JWTs are shorter; a longer token or a
/// PEM block split across chunks farther than this from its start is redacted only up to the
/// chunk boundary (documented limit).
pub const SECRET_HOLD_BACK: usize = 512;

/// One guardrail's detectors, compiled.
#[derive(Debug)]
pub struct Detector {
    regex: Option<Regex>,
    /// Capture group index → kind, for each alternative of `regex`.
    groups: Vec<(usize, Kind)>,
    words: Option<AhoCorasick>,
    max_len: usize,
}

impl Detector {
    /// Compiles a spec; every invalid configured regex is reported.
    pub fn new(spec: &Spec) -> Result<Detector, Vec<InvalidRegex>> {
        let mut bad = Vec::new();
        let mut alts = Vec::new();
        let mut max_len = 0usize;
        for k in &spec.pii {
            alts.push((format!("p{}", alts.len()), *k, k.pattern().to_string()));
        }
        for (index, pattern) in spec.regex.iter().enumerate() {
            match regex_syntax::parse(pattern) {
                Ok(hir) => {
                    let len = hir.properties().maximum_len();
                    max_len = max_len.max(len.unwrap_or(UNBOUNDED_HOLD_BACK));
                    alts.push((format!("p{}", alts.len()), Kind::Regex, pattern.clone()));
                }
                Err(e) => bad.push(InvalidRegex {
                    index,
                    pattern: pattern.clone(),
                    message: e.to_string(),
                }),
            }
        }
        if !bad.is_empty() {
            return Err(bad);
        }
        let regex = if alts.is_empty() {
            None
        } else {
            let joined = alts
                .iter()
                .map(|(name, _, p)| format!("(?P<{name}>{p})"))
                .collect::<Vec<_>>()
                .join("|");
            for k in &spec.pii {
                max_len = max_len.max(k.hold_back());
            }
            let re = Regex::new(&joined).map_err(|e| {
                vec![InvalidRegex {
                    index: 0,
                    pattern: joined.clone(),
                    message: e.to_string(),
                }]
            })?;
            Some(re)
        };
        let groups = match &regex {
            Some(re) => alts
                .iter()
                .filter_map(|(name, k, _)| {
                    let i = re.capture_names().position(|n| n == Some(name.as_str()))?;
                    Some((i, *k))
                })
                .collect(),
            None => Vec::new(),
        };
        let words = if spec.words.is_empty() {
            None
        } else {
            max_len = max_len.max(spec.words.iter().map(String::len).max().unwrap_or(0));
            AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::LeftmostLongest)
                .build(&spec.words)
                .ok()
        };
        Ok(Detector {
            regex,
            groups,
            words,
            max_len,
        })
    }

    /// The longest match any detector can make, in bytes: what a stream must hold back so a
    /// match split across chunks is still seen whole.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Every finding in `text`, in order, none overlapping (the earliest, then longest, wins).
    pub fn find(&self, text: &str) -> Vec<Finding> {
        let mut out = Vec::new();
        if let Some(re) = &self.regex {
            if re.is_match(text) {
                for caps in re.captures_iter(text) {
                    let Some((m, kind)) = self
                        .groups
                        .iter()
                        .find_map(|(i, k)| caps.get(*i).map(|m| (m, *k)))
                    else {
                        continue;
                    };
                    if kind.confirms(m.as_str()) {
                        out.push(Finding {
                            start: m.start(),
                            end: m.end(),
                            kind,
                        });
                    }
                }
            }
        }
        if let Some(ac) = &self.words {
            for m in ac.find_iter(text) {
                if whole_word(text, m.start(), m.end()) {
                    out.push(Finding {
                        start: m.start(),
                        end: m.end(),
                        kind: Kind::Word,
                    });
                }
            }
        }
        non_overlapping(&mut out);
        out
    }

    /// `text` with each finding replaced by `[REDACTED:<KIND>]`; `None` when nothing matched
    /// (nothing allocated).
    pub fn redact(&self, text: &str) -> Option<(String, Vec<Finding>)> {
        let found = self.find(text);
        if found.is_empty() {
            return None;
        }
        Some((redact_with(text, &found), found))
    }
}

/// Orders `found` and drops findings that overlap an earlier one (the earliest, then longest,
/// wins).
pub fn non_overlapping(found: &mut Vec<Finding>) {
    if found.len() < 2 {
        return;
    }
    found.sort_by_key(|f| (f.start, std::cmp::Reverse(f.end)));
    let mut end = 0;
    found.retain(|f| {
        let keep = f.start >= end;
        if keep {
            end = f.end;
        }
        keep
    });
}

/// `text` with `found` (ordered, not overlapping) replaced by `[REDACTED:<KIND>]`.
pub fn redact_with(text: &str, found: &[Finding]) -> String {
    let mut out = String::with_capacity(text.len() + 16 * found.len());
    let mut at = 0;
    for f in found {
        out.push_str(&text[at..f.start]);
        out.push_str("[REDACTED:");
        out.push_str(f.kind.label());
        out.push(']');
        at = f.end;
    }
    out.push_str(&text[at..]);
    out
}

fn whole_word(text: &str, start: usize, end: usize) -> bool {
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    !text[..start].chars().next_back().is_some_and(is_word)
        && !text[end..].chars().next().is_some_and(is_word)
}

#[cfg(test)]
mod tests;
