//! A first look at a request body's strings without parsing it into a tree: the request step
//! asks whether any detector matches any string of the body (keys and non-text fields
//! included, a superset of what it scans), and builds and walks the JSON tree only when one
//! does. A string without escapes is scanned where it lies in the body (no copy); one with
//! escapes is unescaped first, so nothing hides behind `\u0040` or `\n`. It owns this scan only;
//! what a match means is `request`'s.

/// Whether `hit` is true of any JSON string literal of `body`, unescaped. A body that is not
/// well-formed JSON text counts as a hit (the caller's full parse then reports it).
pub(super) fn any_string(body: &[u8], mut hit: impl FnMut(&str) -> bool) -> bool {
    let mut at = 0;
    while let Some(q) = memchr::memchr(b'"', &body[at..]) {
        let start = at + q + 1;
        let mut end = start;
        let mut escaped = false;
        loop {
            match memchr::memchr2(b'"', b'\\', body.get(end..).unwrap_or_default()) {
                None => return true,
                Some(k) if body[end + k] == b'\\' => {
                    escaped = true;
                    end += k + 2;
                }
                Some(k) => {
                    end += k;
                    break;
                }
            }
        }
        let found = if escaped {
            match unescape(&body[start..end]) {
                Some(s) => hit(&s),
                None => true,
            }
        } else {
            std::str::from_utf8(&body[start..end]).map_or(true, &mut hit)
        };
        if found {
            return true;
        }
        at = end + 1;
    }
    false
}

/// The text of a JSON string literal's contents (between its quotes); `None` when an escape is
/// invalid or the text is not UTF-8. By hand: the runs between escapes are copied whole, where
/// serde_json's string parser validates byte by byte (it cost ~5 instructions per byte of a
/// prompt with newlines, on every request a guardrail scans).
fn unescape(raw: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut at = 0;
    while let Some(k) = memchr::memchr(b'\\', &raw[at..]) {
        out.extend_from_slice(&raw[at..at + k]);
        let esc = at + k + 1;
        let (ch, next) = match raw.get(esc)? {
            b'"' => ('"', esc + 1),
            b'\\' => ('\\', esc + 1),
            b'/' => ('/', esc + 1),
            b'b' => ('\u{8}', esc + 1),
            b'f' => ('\u{c}', esc + 1),
            b'n' => ('\n', esc + 1),
            b'r' => ('\r', esc + 1),
            b't' => ('\t', esc + 1),
            b'u' => utf16_escape(raw, esc + 1)?,
            _ => return None,
        };
        let mut buf = [0u8; 4];
        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
        at = next;
    }
    out.extend_from_slice(&raw[at..]);
    String::from_utf8(out).ok()
}

/// The character of `\uXXXX` (its hex digits at `at`), a surrogate pair taking a second
/// `\uXXXX`; and where the text goes on. A lone surrogate is invalid.
fn utf16_escape(raw: &[u8], at: usize) -> Option<(char, usize)> {
    let hex = |i: usize| -> Option<u32> {
        let digits = std::str::from_utf8(raw.get(i..i + 4)?).ok()?;
        u32::from_str_radix(digits, 16).ok()
    };
    let first = hex(at)?;
    if !(0xD800..0xDC00).contains(&first) {
        return char::from_u32(first).map(|c| (c, at + 4));
    }
    if raw.get(at + 4..at + 6)? != b"\\u" {
        return None;
    }
    let second = hex(at + 6)?;
    if !(0xDC00..0xE000).contains(&second) {
        return None;
    }
    let code = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
    char::from_u32(code).map(|c| (c, at + 10))
}

#[cfg(test)]
mod tests {
    use super::{any_string, unescape};

    #[test]
    fn unescaping_matches_serde_json() {
        for lit in [
            r#""plain""#,
            r#""a\nb \"q\" \u0040x \\ \/ \t\r\b\f""#,
            r#""caf\u00e9 \ud83d\ude00 end""#,
            r#""\u20ac\n""#,
        ] {
            let want: String = serde_json::from_str(lit).unwrap();
            assert_eq!(
                unescape(&lit.as_bytes()[1..lit.len() - 1]).as_deref(),
                Some(want.as_str()),
                "{lit}"
            );
        }
        for bad in [
            r#"\x"#,
            r#"\u12"#,
            r#"\ud83d"#,
            r#"\ud83dx"#,
            r#"\ud83d\u0041"#,
            r#"\"#,
        ] {
            assert_eq!(unescape(bad.as_bytes()), None, "{bad}");
        }
    }

    fn strings(body: &str) -> Vec<String> {
        let mut seen = Vec::new();
        any_string(body.as_bytes(), |s| {
            seen.push(s.to_string());
            false
        });
        seen
    }

    #[test]
    fn every_string_is_seen_unescaped() {
        let body =
            r#"{"model":"m","messages":[{"role":"user","content":"a\nb \"q\" \u0040x"}],"n":1}"#;
        assert_eq!(
            strings(body),
            [
                "model",
                "m",
                "messages",
                "role",
                "user",
                "content",
                "a\nb \"q\" @x",
                "n"
            ]
        );
    }

    #[test]
    fn a_hit_stops_the_scan_and_broken_text_counts_as_one() {
        let body = br#"{"a":"x","b":"y"}"#;
        let mut n = 0;
        assert!(any_string(body, |s| {
            n += 1;
            s == "x"
        }));
        assert_eq!(n, 2);
        assert!(any_string(br#"{"a":"unterminated"#, |_| false));
        assert!(any_string(br#"{"a":"bad \"#, |_| false));
    }
}
