//! Request-shape limits checked before any work is done for a request.

/// A request refused for its shape.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GuardError {
    #[error("request body is {actual} bytes, larger than the limit of {limit} bytes")]
    BodyTooLarge { actual: u64, limit: u64 },
}

/// Limits on the request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimit {
    pub max_bytes: u64,
}

impl BodyLimit {
    /// Checks a size known up front (a `Content-Length`) or reached while reading.
    pub fn check(&self, size: u64) -> Result<(), GuardError> {
        if size > self.max_bytes {
            Err(GuardError::BodyTooLarge {
                actual: size,
                limit: self.max_bytes,
            })
        } else {
            Ok(())
        }
    }

    /// How much to reserve up front for a body that announced `content_length`: the announced
    /// size when it is within the limit (one allocation, no regrowth), else a small default.
    pub fn initial_capacity(&self, content_length: Option<u64>) -> usize {
        match content_length {
            Some(n) if n <= self.max_bytes => usize::try_from(n).unwrap_or(0),
            _ => 16 * 1024,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_is_inclusive() {
        let l = BodyLimit { max_bytes: 10 };
        assert!(l.check(10).is_ok());
        assert_eq!(
            l.check(11),
            Err(GuardError::BodyTooLarge {
                actual: 11,
                limit: 10
            })
        );
    }

    #[test]
    fn capacity_follows_content_length_within_limit() {
        let l = BodyLimit { max_bytes: 100 };
        assert_eq!(l.initial_capacity(Some(42)), 42);
        assert_eq!(l.initial_capacity(Some(1000)), 16 * 1024);
        assert_eq!(l.initial_capacity(None), 16 * 1024);
    }
}
