//! A Bedrock runtime mock's view of SigV4: the signature recomputed from the request as AWS
//! does (canonical request from the received method, path, signed headers and body hash), with
//! the test's keys, and the date checked against the clock.

use super::mock::{Answer, Recv};
use ring::{digest, hmac};
use serde_json::json;

pub const ACCESS_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
pub const SECRET_ACCESS_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
pub const SESSION_TOKEN: &str = "FwoGZXIvYXdzEBYaDEXAMPLETOKEN";
pub const REGION: &str = "us-west-2";

fn sha_hex(data: &[u8]) -> String {
    digest::digest(&digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn hmac_sha256(key: &[u8], msg: &str) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), msg.as_bytes())
        .as_ref()
        .to_vec()
}

/// `UnrecognizedClientException`-style refusal.
fn denied(kind: &str, why: &str) -> Answer {
    let mut a = Answer::json(403, json!({"message": why}));
    a.headers.push((
        "x-amzn-errortype",
        format!("{kind}:http://internal.amazon.com/coral/com.amazon.coral.service/"),
    ));
    a
}

/// Checks the request's SigV4 signature as Bedrock would.
pub fn verify(r: &Recv) -> Result<(), Answer> {
    let auth = r.header("authorization").unwrap_or("");
    let Some(rest) = auth.strip_prefix("AWS4-HMAC-SHA256 ") else {
        return Err(denied(
            "UnrecognizedClientException",
            "Missing Authentication Token",
        ));
    };
    let field = |name: &str| {
        rest.split(", ")
            .find_map(|p| p.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
            .unwrap_or("")
            .to_string()
    };
    let (credential, signed, signature) = (
        field("Credential"),
        field("SignedHeaders"),
        field("Signature"),
    );
    let scope: Vec<&str> = credential.split('/').collect();
    if scope.len() != 5 || scope[0] != ACCESS_KEY_ID {
        return Err(denied(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ));
    }
    let amz_date = r.header("x-amz-date").unwrap_or("");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let sent = parse_amz_date(amz_date);
    if scope[1] != amz_date.get(..8).unwrap_or("-")
        || sent.abs_diff(now) > 300
        || scope[2] != REGION
        || scope[3] != "bedrock"
        || scope[4] != "aws4_request"
    {
        return Err(denied(
            "InvalidSignatureException",
            "Signature expired or scope mismatch",
        ));
    }
    let names: Vec<&str> = signed.split(';').collect();
    if !names.contains(&"host")
        || !names.contains(&"x-amz-date")
        || !names.contains(&"x-amz-security-token")
        || r.header("x-amz-security-token") != Some(SESSION_TOKEN)
    {
        return Err(denied(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ));
    }
    let payload = sha_hex(&r.body);
    if r.header("x-amz-content-sha256")
        .is_some_and(|h| h != payload)
    {
        return Err(denied("InvalidSignatureException", "payload hash mismatch"));
    }
    // Non-S3 services: the path's segments are encoded once more for the canonical URI.
    let (path, query) = r.target.split_once('?').unwrap_or((&r.target, ""));
    let canonical_uri: String = path
        .split('/')
        .map(|seg| {
            seg.bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("/");
    let headers: String = names
        .iter()
        .map(|n| format!("{n}:{}\n", r.header(n).unwrap_or("").trim()))
        .collect();
    let canonical = format!(
        "{}\n{canonical_uri}\n{query}\n{headers}\n{signed}\n{payload}",
        r.method
    );
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{}\n{}",
        scope[1..].join("/"),
        sha_hex(canonical.as_bytes())
    );
    let mut key = format!("AWS4{SECRET_ACCESS_KEY}").into_bytes();
    for part in &scope[1..] {
        key = hmac_sha256(&key, part);
    }
    let expected: String = hmac_sha256(&key, &to_sign)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if expected != signature {
        return Err(denied("InvalidSignatureException", "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method."));
    }
    Ok(())
}

/// `20260102T030405Z` → Unix seconds.
fn parse_amz_date(s: &str) -> u64 {
    let n = |a: usize, b: usize| s.get(a..b).and_then(|x| x.parse::<i64>().ok()).unwrap_or(0);
    let (y, m, d) = (n(0, 4), n(4, 6), n(6, 8));
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    (days * 86400 + n(9, 11) * 3600 + n(11, 13) * 60 + n(13, 15)).max(0) as u64
}
