//! The JWT parser and verifier (`jwt::verify`) and the JWKS parser (`JwkSet::parse`) on arbitrary
//! bytes: they must never panic, a token that verifies names a key of the set that verified it,
//! and a refusal's message stays short whatever the token holds.
//!
//! The first byte picks what the rest is:
//! - 0: a JWKS document, a newline, then a token verified against that document (and against the
//!   fixed keys);
//! - 1: a header, a newline, then a payload, signed with the fixed Ed25519 key, so the header
//!   (`alg`, `kid`, `crit`) and the claims (`iss`, `aud`, `exp`, `nbf`, `iat`, the identity) are
//!   read behind a valid signature;
//! - anything else: a token verified against the fixed keys.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use switchyard_filters::auth::jwt::testing::{TestKey, RSA_A};
use switchyard_filters::auth::jwt::{self, Alg, ClaimMap, JwkSet, JwtError, JwtPolicy};
use switchyard_filters::auth::AuthError;

const NOW: u64 = 1_800_000_000;

struct Fixture {
    ed: TestKey,
    set: JwkSet,
    policy: JwtPolicy,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let ed = TestKey::ed();
        let rsa = TestKey::rsa(RSA_A);
        let ec = TestKey::ec();
        let mut kidless = ec.jwk("unused");
        if let Some(k) = kidless.as_object_mut() {
            k.remove("kid");
        }
        let doc = format!(
            r#"{{"keys":[{},{},{}]}}"#,
            ed.jwk("ed"),
            rsa.jwk("rsa"),
            kidless
        );
        let set = JwkSet::parse(doc.as_bytes()).expect("the fixed JWKS parses");
        let policy = JwtPolicy {
            issuer: "https://i/".into(),
            audience: "a".into(),
            algorithms: vec![
                Alg::RS256,
                Alg::RS384,
                Alg::RS512,
                Alg::PS256,
                Alg::ES256,
                Alg::ES384,
                Alg::EdDSA,
            ],
            leeway_secs: 60,
            claims: ClaimMap {
                team: Some("team".into()),
                project: Some("project".into()),
                user: "sub".into(),
            },
        };
        Fixture { ed, set, policy }
    })
}

fn check(token: &str, set: &JwkSet, policy: &JwtPolicy) {
    match jwt::verify(token, set, policy, NOW) {
        Ok(v) => {
            let key = v.key.expect("a verified token names its key");
            assert!(set.contains(&key), "verified by a key not in the set");
        }
        Err(JwtError::Auth(AuthError::InvalidToken(m))) => {
            assert!(
                m.len() < 1024,
                "an unbounded refusal message: {} bytes",
                m.len()
            );
        }
        // The gateway bounds the kid it echoes.
        Err(_) => {}
    }
}

fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    match mode {
        0 => {
            let (jwks, token) = split(rest);
            let token = String::from_utf8_lossy(token);
            if let Ok(set) = JwkSet::parse(jwks) {
                check(&token, &set, &f.policy);
            }
            check(&token, &f.set, &f.policy);
        }
        1 => {
            let (header, payload) = split(rest);
            let token = f.ed.sign_raw("EdDSA", header, payload);
            check(&token, &f.set, &f.policy);
        }
        _ => check(&String::from_utf8_lossy(rest), &f.set, &f.policy),
    }
});
