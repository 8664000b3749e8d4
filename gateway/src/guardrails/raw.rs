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
            match serde_json::from_slice::<String>(&body[start - 1..=end]) {
                Ok(s) => hit(&s),
                Err(_) => true,
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

#[cfg(test)]
mod tests {
    use super::any_string;

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
