//! The path globs of `passthrough[].path`, compiled once per config load and matched against a
//! request's path. Pure: no I/O, no allocation when matching a path of up to 256 bytes.
//!
//! Written by hand rather than with `globset`: the contract's `*` stops at `/` (globset's only
//! does with `literal_separator`), a pattern ending in `/**` must also match the bare prefix
//! (`/v1/files/**` covers `/v1/files`; globset's `foo/**` does not match `foo`), and globset
//! gives `?`, `[...]` and `{a,b}` meanings the contract does not define (here they are plain
//! characters). The whole matcher is a few dozen lines.

use std::fmt;

/// One piece of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// Bytes that must appear as written.
    Literal(Box<[u8]>),
    /// `*`: any run of bytes without `/`.
    Star,
    /// `**`: any run of bytes, `/` included.
    AnyRest,
}

/// A compiled `passthrough[].path` pattern.
#[derive(Clone, PartialEq, Eq)]
pub struct PathGlob {
    text: String,
    tokens: Box<[Token]>,
    /// The pattern ends in `/**`: the path without that tail (`/v1/files`) matches too.
    bare_prefix: Option<Box<[u8]>>,
}

impl fmt::Debug for PathGlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PathGlob({:?})", self.text)
    }
}

impl PathGlob {
    /// Compiles `pattern`; the error says what is wrong with it.
    pub fn compile(pattern: &str) -> Result<PathGlob, String> {
        if !pattern.starts_with('/') {
            return Err(format!("{pattern:?} must start with `/`"));
        }
        if let Some(c) = pattern
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#'))
        {
            return Err(format!(
                "{pattern:?} holds {c:?}: a path glob matches the path only (no query, fragment \
                 or spaces)"
            ));
        }
        let mut tokens = Vec::new();
        let mut literal = Vec::new();
        let bytes = pattern.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] != b'*' {
                literal.push(bytes[i]);
                i += 1;
                continue;
            }
            let run = bytes[i..].iter().take_while(|&&b| b == b'*').count();
            if !literal.is_empty() {
                tokens.push(Token::Literal(std::mem::take(&mut literal).into()));
            }
            match run {
                1 => tokens.push(Token::Star),
                2 => {
                    let whole_segment =
                        bytes[i - 1] == b'/' && bytes.get(i + 2).is_none_or(|&b| b == b'/');
                    if !whole_segment {
                        return Err(format!(
                            "{pattern:?}: `**` must be a whole path segment (as in `/v1/files/**`)"
                        ));
                    }
                    tokens.push(Token::AnyRest);
                }
                _ => return Err(format!("{pattern:?}: `{}` is not a glob", "*".repeat(run))),
            }
            i += run;
        }
        if !literal.is_empty() {
            tokens.push(Token::Literal(literal.into()));
        }
        let bare_prefix = pattern
            .strip_suffix("/**")
            .filter(|p| !p.is_empty() && !p.contains('*'))
            .map(|p| p.as_bytes().into());
        Ok(PathGlob {
            text: pattern.to_string(),
            tokens: tokens.into(),
            bare_prefix,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `path` (a request path, without its query) matches.
    pub fn matches(&self, path: &str) -> bool {
        let path = path.as_bytes();
        if self.bare_prefix.as_deref() == Some(path) {
            return true;
        }
        // `reach[j]`: the tokens seen so far can consume exactly `path[..j]`. One pass per
        // token: O(tokens × path), no backtracking blow-up whatever the pattern.
        const INLINE: usize = 257;
        let mut inline = [[false; INLINE]; 2];
        let mut heap;
        let (cur, next): (&mut [bool], &mut [bool]) = if path.len() < INLINE {
            let [a, b] = &mut inline;
            (&mut a[..=path.len()], &mut b[..=path.len()])
        } else {
            heap = vec![false; 2 * (path.len() + 1)];
            heap.split_at_mut(path.len() + 1)
        };
        cur[0] = true;
        let (mut cur, mut next) = (cur, next);
        for token in self.tokens.iter() {
            next.fill(false);
            match token {
                Token::Literal(lit) => {
                    for j in 0..cur.len() {
                        if cur[j] && path[j..].starts_with(lit) {
                            next[j + lit.len()] = true;
                        }
                    }
                }
                Token::Star | Token::AnyRest => {
                    let crosses = matches!(token, Token::AnyRest);
                    let mut open = false;
                    for j in 0..cur.len() {
                        open |= cur[j];
                        next[j] = open;
                        if j < path.len() && path[j] == b'/' && !crosses {
                            open = false;
                        }
                    }
                }
            }
            std::mem::swap(&mut cur, &mut next);
        }
        cur[path.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(p: &str) -> PathGlob {
        PathGlob::compile(p).unwrap()
    }

    #[test]
    fn star_stays_within_one_segment() {
        let g = glob("/v1/images/*");
        assert!(g.matches("/v1/images/generations"));
        assert!(g.matches("/v1/images/"));
        assert!(!g.matches("/v1/images"));
        assert!(!g.matches("/v1/images/a/b"));
        assert!(!g.matches("/v1/imagesx/a"));
        let g = glob("/v1/*/content");
        assert!(g.matches("/v1/file-1/content"));
        assert!(!g.matches("/v1/a/b/content"));
        let g = glob("/v1/files/file-*.json");
        assert!(g.matches("/v1/files/file-12.json"));
        assert!(!g.matches("/v1/files/file-1/2.json"));
    }

    #[test]
    fn double_star_takes_any_rest_and_the_bare_prefix() {
        let g = glob("/v1/files/**");
        for p in [
            "/v1/files",
            "/v1/files/",
            "/v1/files/abc",
            "/v1/files/abc/content",
        ] {
            assert!(g.matches(p), "{p}");
        }
        assert!(!g.matches("/v1/filesx"));
        assert!(!g.matches("/v1/file"));
        let g = glob("/v1/**/content");
        assert!(g.matches("/v1/a/b/content"));
        assert!(!g.matches("/v1/a/b/other"));
        assert!(glob("/**").matches("/anything/at/all"));
    }

    #[test]
    fn literal_patterns_match_exactly() {
        let g = glob("/v1/audio/speech");
        assert!(g.matches("/v1/audio/speech"));
        assert!(!g.matches("/v1/audio/speech/"));
        assert!(!g.matches("/v1/audio"));
        // Other glob languages' metacharacters are plain characters here.
        assert!(glob("/v1/[a]").matches("/v1/[a]"));
        assert!(!glob("/v1/[a]").matches("/v1/a"));
    }

    #[test]
    fn long_paths_match_without_the_inline_buffer() {
        let long = format!("/v1/files/{}", "x".repeat(1000));
        assert!(glob("/v1/files/*").matches(&long));
        assert!(!glob("/v1/files/*/y").matches(&long));
    }

    #[test]
    fn bad_patterns_say_why() {
        for (bad, why) in [
            ("v1/files", "must start with `/`"),
            ("/v1/files?x=1", "no query"),
            ("/v1/a b", "no query"),
            ("/v1/***", "is not a glob"),
            ("/v1/a**", "whole path segment"),
            ("/v1/**b", "whole path segment"),
        ] {
            let e = PathGlob::compile(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
