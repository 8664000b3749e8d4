//! Caller-supplied request ids: accepted only when they are safe to log and echo.

/// Longest caller request id that is kept.
pub const MAX_LEN: usize = 128;

/// True when `id` may be used as the request id: 1 to [`MAX_LEN`] characters of
/// `[A-Za-z0-9._:-]`, so it can never inject anything into logs or headers.
pub fn is_acceptable(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_uuid_like_ids() {
        assert!(is_acceptable(b"3f2b6c1e-8a4d-4c1f-9a5e-0b1c2d3e4f50"));
        assert!(is_acceptable(b"req_123.abc:x"));
    }

    #[test]
    fn rejects_unsafe_ids() {
        assert!(!is_acceptable(b""));
        assert!(!is_acceptable(b"a b"));
        assert!(!is_acceptable(b"x\r\ny"));
        assert!(!is_acceptable(b"{\"json\":1}"));
        assert!(!is_acceptable(&[b'a'; MAX_LEN + 1]));
    }
}
