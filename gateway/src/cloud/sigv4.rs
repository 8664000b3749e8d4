//! AWS Signature Version 4 for Bedrock requests (service `bedrock`), hand-written on `ring`'s
//! HMAC-SHA256 and SHA-256: the `aws-sigv4` crate would bring the AWS SDK's runtime crates
//! (`aws-smithy-*`, `aws-credential-types`) for ~100 lines of documented algorithm, and `ring`
//! is already linked. Owns the canonical request, the string to sign and the signing key; it
//! adds `x-amz-date`, `x-amz-content-sha256`, `x-amz-security-token` (session credentials) and
//! `authorization` to a request head and touches nothing else.

use crate::config::Secret;
use http::{HeaderMap, HeaderName, HeaderValue};
use ring::{digest, hmac};

/// Static AWS credentials of one provider.
#[derive(Debug)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
}

static X_AMZ_DATE: HeaderName = HeaderName::from_static("x-amz-date");
static X_AMZ_CONTENT_SHA256: HeaderName = HeaderName::from_static("x-amz-content-sha256");
static X_AMZ_SECURITY_TOKEN: HeaderName = HeaderName::from_static("x-amz-security-token");

/// The headers signed when present (the gateway's own; configured extras are not signed).
const SIGNED: &[&str] = &[
    "content-type",
    "host",
    "x-amz-content-sha256",
    "x-amz-date",
    "x-amz-security-token",
];

/// What one signature covers.
pub struct Request<'a> {
    pub method: &'a str,
    /// Path and query as sent (already percent-encoded).
    pub path_and_query: &'a str,
    pub body: &'a [u8],
    pub region: &'a str,
    pub service: &'a str,
    /// `YYYYMMDD'T'HHMMSS'Z'`.
    pub amz_date: &'a str,
}

/// Signs `req` into `h` (which must already carry `host` and `content-type`).
pub fn sign(creds: &AwsCredentials, req: &Request<'_>, h: &mut HeaderMap) -> Result<(), String> {
    let value = |s: &str| HeaderValue::from_str(s).map_err(|_| "invalid header value".to_string());
    let payload_hash = hex(digest::digest(&digest::SHA256, req.body).as_ref());
    h.insert(X_AMZ_DATE.clone(), value(req.amz_date)?);
    h.insert(X_AMZ_CONTENT_SHA256.clone(), value(&payload_hash)?);
    if let Some(t) = &creds.session_token {
        let mut v = value(t.expose())?;
        v.set_sensitive(true);
        h.insert(X_AMZ_SECURITY_TOKEN.clone(), v);
    }
    let headers: Vec<(&str, String)> = SIGNED
        .iter()
        .filter_map(|name| {
            let v = h.get(*name)?.to_str().ok()?;
            Some((*name, v.trim().to_string()))
        })
        .collect();
    let (signed_headers, signature) = signature(creds, req, &headers, &payload_hash);
    let date = req.amz_date.get(..8).unwrap_or_default();
    let mut auth = value(&format!(
        "AWS4-HMAC-SHA256 Credential={}/{date}/{}/{}/aws4_request, SignedHeaders={signed_headers}, Signature={signature}",
        creds.access_key_id, req.region, req.service
    ))?;
    auth.set_sensitive(true);
    h.insert(http::header::AUTHORIZATION, auth);
    Ok(())
}

/// (signed header names, hex signature) for lowercase `headers` sorted by name.
pub fn signature(
    creds: &AwsCredentials,
    req: &Request<'_>,
    headers: &[(&str, String)],
    payload_hash: &str,
) -> (String, String) {
    let (path, query) = req
        .path_and_query
        .split_once('?')
        .unwrap_or((req.path_and_query, ""));
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed_headers = headers
        .iter()
        .map(|(k, _)| *k)
        .collect::<Vec<_>>()
        .join(";");
    let canonical = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{payload_hash}",
        req.method,
        uri_encode(path, false),
        canonical_query(query)
    );
    let date = req.amz_date.get(..8).unwrap_or_default();
    let scope = format!("{date}/{}/{}/aws4_request", req.region, req.service);
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
        req.amz_date,
        hex(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
    );
    let mut key = format!("AWS4{}", creds.secret_access_key.expose()).into_bytes();
    for part in [date, req.region, req.service, "aws4_request"] {
        key = mac(&key, part.as_bytes());
    }
    (signed_headers, hex(&mac(&key, to_sign.as_bytes())))
}

fn mac(key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
        .as_ref()
        .to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SigV4's URI encoding: unreserved characters kept, everything else `%XX`; `/` kept in paths.
/// Paths are encoded once more on top of their sent form, as every service but S3 expects.
fn uri_encode(s: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (b == b'/' && !encode_slash)
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The query's pairs, decoded then re-encoded and sorted.
fn canonical_query(q: &str) -> String {
    let mut pairs: Vec<(String, String)> = q
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (uri_encode(&dec(k), true), uri_encode(&dec(v), true))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// `x-amz-date` for a Unix time.
pub fn amz_date(unix_secs: u64) -> String {
    crate::clock::rfc3339(unix_secs).replace(['-', ':'], "")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> AwsCredentials {
        AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into()),
            session_token: None,
        }
    }

    /// AWS's SigV4 test suite, `get-vanilla`.
    #[test]
    fn aws_test_suite_get_vanilla() {
        let req = Request {
            method: "GET",
            path_and_query: "/",
            body: b"",
            region: "us-east-1",
            service: "service",
            amz_date: "20150830T123600Z",
        };
        let empty = hex(digest::digest(&digest::SHA256, b"").as_ref());
        let (signed, sig) = signature(
            &example(),
            &req,
            &[
                ("host", "example.amazonaws.com".into()),
                ("x-amz-date", "20150830T123600Z".into()),
            ],
            &empty,
        );
        assert_eq!(signed, "host;x-amz-date");
        assert_eq!(
            sig,
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    /// AWS's SigV4 test suite, `get-vanilla-query-order-key-case`.
    #[test]
    fn aws_test_suite_query_order() {
        let req = Request {
            method: "GET",
            path_and_query: "/?Param2=value2&Param1=value1",
            body: b"",
            region: "us-east-1",
            service: "service",
            amz_date: "20150830T123600Z",
        };
        let empty = hex(digest::digest(&digest::SHA256, b"").as_ref());
        let (_, sig) = signature(
            &example(),
            &req,
            &[
                ("host", "example.amazonaws.com".into()),
                ("x-amz-date", "20150830T123600Z".into()),
            ],
            &empty,
        );
        assert_eq!(
            sig,
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
        );
    }

    #[test]
    fn signs_a_bedrock_request_head() {
        let mut creds = example();
        creds.session_token = Some(Secret::new("FwoGZXIvYXdzEXAMPLE".into()));
        let mut h = HeaderMap::new();
        h.insert(
            "host",
            HeaderValue::from_static("bedrock-runtime.us-east-1.amazonaws.com"),
        );
        h.insert("content-type", HeaderValue::from_static("application/json"));
        let req = Request {
            method: "POST",
            path_and_query: "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse",
            body: b"{}",
            region: "us-east-1",
            service: "bedrock",
            amz_date: &amz_date(1_440_938_160),
        };
        sign(&creds, &req, &mut h).unwrap();
        assert_eq!(h["x-amz-date"], "20150830T123600Z");
        assert!(h["x-amz-security-token"].is_sensitive());
        let auth = h["authorization"].to_str().unwrap();
        assert!(auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/bedrock/aws4_request, \
             SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token, Signature="
        ), "{auth}");
        assert!(h["authorization"].is_sensitive());
        assert_eq!(
            uri_encode(req.path_and_query, false),
            "/model/anthropic.claude-3-haiku-20240307-v1%253A0/converse"
        );
    }
}
