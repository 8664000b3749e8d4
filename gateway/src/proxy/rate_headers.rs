//! The `x-ratelimit-*` response headers of an admitted request, in OpenAI's names and formats:
//! what the caller's first rate limiter said at admission. It owns the header names and how the
//! values are spelled; it decides nothing (the limiters in `governance` do).
//!
//! Built on every limited request, so it stays cheap: the numbers are kept as numbers until the
//! response is written, a limit's value is made once per limiter and shared, and the changing
//! values share one buffer — six headers cost one allocation (two when the buffer is shared),
//! not twelve strings.

use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};

static REQUESTS: [HeaderName; 3] = [
    HeaderName::from_static("x-ratelimit-limit-requests"),
    HeaderName::from_static("x-ratelimit-remaining-requests"),
    HeaderName::from_static("x-ratelimit-reset-requests"),
];
static TOKENS: [HeaderName; 3] = [
    HeaderName::from_static("x-ratelimit-limit-tokens"),
    HeaderName::from_static("x-ratelimit-remaining-tokens"),
    HeaderName::from_static("x-ratelimit-reset-tokens"),
];

/// One limiter's answer at admission.
#[derive(Debug, Clone)]
pub struct LimitReport {
    /// The limit per minute, as a header value made once per limiter (a clone shares it).
    pub limit: HeaderValue,
    /// Units the limiter would still admit.
    pub remaining: u64,
    /// Nanoseconds until the oldest units the limiter counts leave its window (the next time
    /// `remaining` grows); 0 when nothing is counted.
    pub reset_ns: u64,
}

/// The request and token reports of one admission (either may be absent).
#[derive(Debug, Clone, Default)]
pub struct RateHeaders {
    pub requests: Option<LimitReport>,
    pub tokens: Option<LimitReport>,
}

impl RateHeaders {
    pub fn is_empty(&self) -> bool {
        self.requests.is_none() && self.tokens.is_none()
    }

    /// Adds the headers to a response head. The changing values (remaining, reset) are written
    /// into one buffer that the header values share.
    pub fn write(&self, headers: &mut HeaderMap) {
        let reports = [(&REQUESTS, &self.requests), (&TOKENS, &self.tokens)];
        let mut text = BytesMut::with_capacity(96);
        let mut ends = [0usize; 4];
        for (i, (_, report)) in reports.iter().enumerate() {
            if let Some(r) = report {
                put_number(&mut text, r.remaining);
                ends[2 * i] = text.len();
                put_reset(&mut text, r.reset_ns);
                ends[2 * i + 1] = text.len();
            }
        }
        let text = text.freeze();
        let mut start = 0;
        let mut next = |end: usize| {
            let v = value_of(text.slice(start..end));
            start = end;
            v
        };
        for (i, (names, report)) in reports.into_iter().enumerate() {
            if let Some(r) = report {
                headers.insert(&names[0], r.limit.clone());
                headers.insert(&names[1], next(ends[2 * i]));
                headers.insert(&names[2], next(ends[2 * i + 1]));
            }
        }
    }
}

/// The header value of a per-minute limit.
pub fn limit_value(rate: u64) -> HeaderValue {
    let mut text = BytesMut::with_capacity(20);
    put_number(&mut text, rate);
    value_of(text.freeze())
}

/// Digits and ASCII letters only, so always a valid value; the fallback is never taken.
fn value_of(text: Bytes) -> HeaderValue {
    HeaderValue::from_maybe_shared(text).unwrap_or(HeaderValue::from_static("0"))
}

fn put_number(out: &mut BytesMut, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// A duration in OpenAI's `x-ratelimit-reset-*` style (`850ms`, `12s`, `1m30s`), rounded up.
fn put_reset(out: &mut BytesMut, ns: u64) {
    let ms = ns.div_ceil(1_000_000);
    if ms < 1000 {
        put_number(out, ms);
        out.extend_from_slice(b"ms");
    } else if ms < 60_000 {
        put_number(out, ms.div_ceil(1000));
        out.extend_from_slice(b"s");
    } else {
        let s = ms.div_ceil(1000);
        put_number(out, s / 60);
        out.extend_from_slice(b"m");
        put_number(out, s % 60);
        out.extend_from_slice(b"s");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resets_look_like_openai_s() {
        let s = |ns| {
            let mut b = BytesMut::new();
            put_reset(&mut b, ns);
            String::from_utf8(b.to_vec()).unwrap()
        };
        assert_eq!(s(0), "0ms");
        assert_eq!(s(12_000_000), "12ms");
        assert_eq!(s(11_500_000), "12ms");
        assert_eq!(s(1_500_000_000), "2s");
        assert_eq!(s(90_000_000_000), "1m30s");
        assert_eq!(s(u64::MAX), "307445734m34s");
    }

    #[test]
    fn headers_are_written_in_openai_names() {
        let h = RateHeaders {
            requests: Some(LimitReport {
                limit: limit_value(600),
                remaining: 59,
                reset_ns: 100_000_000,
            }),
            tokens: Some(LimitReport {
                limit: limit_value(150_000),
                remaining: 149_000,
                reset_ns: 2_000_000_000,
            }),
        };
        let mut headers = HeaderMap::new();
        h.write(&mut headers);
        let get = |n: &str| headers.get(n).unwrap().to_str().unwrap().to_string();
        assert_eq!(get("x-ratelimit-limit-requests"), "600");
        assert_eq!(get("x-ratelimit-remaining-requests"), "59");
        assert_eq!(get("x-ratelimit-reset-requests"), "100ms");
        assert_eq!(get("x-ratelimit-limit-tokens"), "150000");
        assert_eq!(get("x-ratelimit-remaining-tokens"), "149000");
        assert_eq!(get("x-ratelimit-reset-tokens"), "2s");
        assert_eq!(headers.len(), 6);
        assert!(RateHeaders::default().is_empty());
        assert_eq!(limit_value(u64::MAX), u64::MAX.to_string().as_str());
        // Only the token limiter: its values are not shifted by the absent request ones.
        let only_tokens = RateHeaders {
            requests: None,
            tokens: h.tokens.clone(),
        };
        let mut headers = HeaderMap::new();
        only_tokens.write(&mut headers);
        assert_eq!(headers.len(), 3);
        assert_eq!(headers["x-ratelimit-remaining-tokens"], "149000");
        assert_eq!(headers["x-ratelimit-reset-tokens"], "2s");
    }
}
