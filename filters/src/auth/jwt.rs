//! OAuth2 / OIDC bearer JWT verification with `ring`.
//!
//! Only asymmetric algorithms from the configured allow-list pass (RS256/384/512, PS256, ES256,
//! ES384, EdDSA): `alg: none` and every HMAC algorithm are refused before any key is looked at, so
//! "HS256 keyed with the public key" can never verify. The key is chosen by `kid` and must be of
//! the algorithm's family. `iss`, `aud`, `exp` (required) and `nbf` are checked with a leeway.
//! Claims map to team / project / user; a token whose subject is its own client (client
//! credentials) is a machine token, any other a user token.

use super::{AuthError, CredentialKind, Identity};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::Deserialize;
use serde_json::Value;

/// Algorithms a deployment may allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    RS256,
    RS384,
    RS512,
    PS256,
    ES256,
    ES384,
    EdDSA,
}

impl Alg {
    pub fn parse(s: &str) -> Option<Alg> {
        Some(match s {
            "RS256" => Alg::RS256,
            "RS384" => Alg::RS384,
            "RS512" => Alg::RS512,
            "PS256" => Alg::PS256,
            "ES256" => Alg::ES256,
            "ES384" => Alg::ES384,
            "EdDSA" => Alg::EdDSA,
            _ => return None,
        })
    }
}

/// Which claims name the caller's scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimMap {
    pub team: Option<String>,
    pub project: Option<String>,
    pub user: String,
}

impl Default for ClaimMap {
    fn default() -> Self {
        ClaimMap {
            team: None,
            project: None,
            user: "sub".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtPolicy {
    pub issuer: String,
    pub audience: String,
    pub algorithms: Vec<Alg>,
    pub leeway_secs: u64,
    pub claims: ClaimMap,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyMaterial {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// Uncompressed point `04 || x || y`.
    P256(Vec<u8>),
    P384(Vec<u8>),
    Ed25519(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwk {
    pub kid: Option<String>,
    key: KeyMaterial,
}

/// The verification keys of an issuer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

#[derive(Deserialize)]
struct RawJwkSet {
    keys: Vec<RawJwk>,
}

fn b64(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()
}

impl JwkSet {
    /// Parses a JWKS document; keys of unsupported types or curves (and encryption keys) are
    /// skipped. Fails only when the document itself is malformed.
    pub fn parse(json: &[u8]) -> Result<JwkSet, String> {
        let raw: RawJwkSet =
            serde_json::from_slice(json).map_err(|e| format!("invalid JWKS: {e}"))?;
        let keys = raw
            .keys
            .into_iter()
            .filter(|k| k.use_.as_deref().is_none_or(|u| u == "sig"))
            .filter_map(|k| {
                let key = match (k.kty.as_str(), k.crv.as_deref()) {
                    ("RSA", _) => KeyMaterial::Rsa {
                        n: b64(k.n.as_deref()?)?,
                        e: b64(k.e.as_deref()?)?,
                    },
                    ("EC", Some(crv @ ("P-256" | "P-384"))) => {
                        let mut point = vec![4u8];
                        point.extend(b64(k.x.as_deref()?)?);
                        point.extend(b64(k.y.as_deref()?)?);
                        if crv == "P-256" {
                            KeyMaterial::P256(point)
                        } else {
                            KeyMaterial::P384(point)
                        }
                    }
                    ("OKP", Some("Ed25519")) => KeyMaterial::Ed25519(b64(k.x.as_deref()?)?),
                    _ => return None,
                };
                Some(Jwk { kid: k.kid, key })
            })
            .collect();
        Ok(JwkSet { keys })
    }

    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}

/// Why a token did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// The token names a key the JWKS does not have (yet): refresh the JWKS and try again.
    #[error("unknown key id {0:?}")]
    UnknownKid(String),
    #[error(transparent)]
    Auth(#[from] AuthError),
}

fn invalid(msg: impl Into<String>) -> JwtError {
    JwtError::Auth(AuthError::InvalidToken(msg.into()))
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

/// A verified token: who it is, and until when the result may be cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub identity: Identity,
    /// Scopes granted (`scope` / `scp`), e.g. for the admin API.
    pub scopes: Vec<String>,
    pub expires_unix: u64,
}

/// Verifies `token` against `jwks` and `policy` at `now_unix`.
pub fn verify(
    token: &str,
    jwks: &JwkSet,
    policy: &JwtPolicy,
    now_unix: u64,
) -> Result<Verified, JwtError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("not a JWT (expected three dot-separated parts)"));
    };
    let header: Header = b64(h)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| invalid("malformed header"))?;
    let alg = Alg::parse(&header.alg)
        .filter(|a| policy.algorithms.contains(a))
        .ok_or_else(|| invalid(format!("algorithm {:?} is not allowed", header.alg)))?;
    let sig = b64(s).ok_or_else(|| invalid("malformed signature"))?;
    let candidates: Vec<&Jwk> = match &header.kid {
        Some(kid) => {
            let found: Vec<&Jwk> = jwks
                .keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .collect();
            if found.is_empty() {
                return Err(JwtError::UnknownKid(kid.clone()));
            }
            found
        }
        None => jwks.keys.iter().collect(),
    };
    let signed = &token.as_bytes()[..h.len() + 1 + p.len()];
    let ok = candidates
        .iter()
        .any(|k| verify_signature(alg, &k.key, signed, &sig));
    if !ok {
        return Err(invalid("signature does not verify"));
    }
    let claims: Value = b64(p)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| invalid("malformed payload"))?;
    check_claims(&claims, policy, now_unix)
}

fn verify_signature(alg: Alg, key: &KeyMaterial, msg: &[u8], sig: &[u8]) -> bool {
    match (alg, key) {
        (Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256, KeyMaterial::Rsa { n, e }) => {
            let params: &signature::RsaParameters = match alg {
                Alg::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                Alg::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                Alg::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                _ => &signature::RSA_PSS_2048_8192_SHA256,
            };
            RsaPublicKeyComponents { n, e }
                .verify(params, msg, sig)
                .is_ok()
        }
        (Alg::ES256, KeyMaterial::P256(point)) => {
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(msg, sig)
                .is_ok()
        }
        (Alg::ES384, KeyMaterial::P384(point)) => {
            UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                .verify(msg, sig)
                .is_ok()
        }
        (Alg::EdDSA, KeyMaterial::Ed25519(x)) => UnparsedPublicKey::new(&signature::ED25519, x)
            .verify(msg, sig)
            .is_ok(),
        _ => false,
    }
}

fn str_claim<'a>(claims: &'a Value, name: &str) -> Option<&'a str> {
    claims.get(name).and_then(Value::as_str)
}

fn check_claims(claims: &Value, policy: &JwtPolicy, now: u64) -> Result<Verified, JwtError> {
    if str_claim(claims, "iss") != Some(policy.issuer.as_str()) {
        return Err(invalid("wrong issuer"));
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => *a == policy.audience,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(&policy.audience)),
        _ => false,
    };
    if !aud_ok {
        return Err(invalid("wrong audience"));
    }
    let exp = claims
        .get("exp")
        .and_then(Value::as_u64)
        .ok_or_else(|| invalid("missing exp"))?;
    if now > exp.saturating_add(policy.leeway_secs) {
        return Err(JwtError::Auth(AuthError::TokenExpired));
    }
    if let Some(nbf) = claims.get("nbf").and_then(Value::as_u64) {
        if now.saturating_add(policy.leeway_secs) < nbf {
            return Err(invalid("token not valid yet (nbf)"));
        }
    }
    Ok(Verified {
        identity: identity_from_claims(claims, &policy.claims)?,
        scopes: scopes(claims),
        expires_unix: exp,
    })
}

/// The scopes a token grants (`scope` as a space-separated string, or `scp` as a list).
pub fn scopes(claims: &Value) -> Vec<String> {
    match (claims.get("scope"), claims.get("scp")) {
        (Some(Value::String(s)), _) => s.split_whitespace().map(str::to_string).collect(),
        (_, Some(Value::Array(list))) => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        (_, Some(Value::String(s))) => s.split_whitespace().map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

/// Maps verified claims (a JWT's, or an introspection answer's) to the caller. A token whose
/// subject is its own client (client credentials) is a machine token, any other a user token.
pub fn identity_from_claims(claims: &Value, map: &ClaimMap) -> Result<Identity, JwtError> {
    let client = str_claim(claims, "client_id").or_else(|| str_claim(claims, "azp"));
    let user = str_claim(claims, &map.user);
    let machine = str_claim(claims, "gty") == Some("client-credentials")
        || match (client, user) {
            (Some(c), Some(u)) => u == c || u.strip_suffix("@clients") == Some(c),
            (Some(_), None) => true,
            _ => false,
        };
    let scope = |name: &Option<String>| {
        name.as_deref()
            .and_then(|n| str_claim(claims, n))
            .map(str::to_string)
    };
    let name = if machine {
        client.or(user)
    } else {
        user.or(client)
    }
    .or_else(|| str_claim(claims, "sub"))
    .ok_or_else(|| invalid("token names no subject or client"))?
    .to_string();
    Ok(Identity {
        name,
        team: scope(&map.team),
        project: scope(&map.project),
        user: if machine {
            None
        } else {
            user.map(str::to_string)
        },
        kind: if machine {
            CredentialKind::MachineToken
        } else {
            CredentialKind::UserToken
        },
        models: None,
    })
}

/// Signing helpers for tests (here and in the gateway's integration tests).
#[cfg(any(test, feature = "test-support"))]
pub mod testing {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};

    /// A private key that signs test tokens, with its public JWK.
    pub enum TestKey {
        Rsa(RsaKeyPair),
        Ec(EcdsaKeyPair),
        Ed(Ed25519KeyPair),
    }

    pub const RSA_A: &[u8] = include_bytes!("testdata/rsa2048.der");
    pub const RSA_B: &[u8] = include_bytes!("testdata/rsa2048-b.der");

    impl TestKey {
        pub fn rsa(der: &[u8]) -> TestKey {
            TestKey::Rsa(RsaKeyPair::from_der(der).expect("test RSA key"))
        }

        pub fn ec() -> TestKey {
            let rng = SystemRandom::new();
            let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
            let doc = EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("ec key");
            TestKey::Ec(EcdsaKeyPair::from_pkcs8(alg, doc.as_ref(), &rng).expect("ec key"))
        }

        pub fn ed() -> TestKey {
            let rng = SystemRandom::new();
            let doc = Ed25519KeyPair::generate_pkcs8(&rng).expect("ed key");
            TestKey::Ed(Ed25519KeyPair::from_pkcs8(doc.as_ref()).expect("ed key"))
        }

        /// The public JWK (JSON) under `kid`.
        pub fn jwk(&self, kid: &str) -> Value {
            match self {
                TestKey::Rsa(k) => {
                    let c = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(k.public());
                    serde_json::json!({"kty": "RSA", "kid": kid, "use": "sig",
                        "n": URL_SAFE_NO_PAD.encode(&c.n), "e": URL_SAFE_NO_PAD.encode(&c.e)})
                }
                TestKey::Ec(k) => {
                    let p = k.public_key().as_ref();
                    serde_json::json!({"kty": "EC", "kid": kid, "crv": "P-256",
                        "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..65])})
                }
                TestKey::Ed(k) => serde_json::json!({"kty": "OKP", "kid": kid, "crv": "Ed25519",
                    "x": URL_SAFE_NO_PAD.encode(k.public_key().as_ref())}),
            }
        }

        /// Signs `claims` with header `{"alg": alg, "kid": kid}`.
        pub fn sign(&self, alg: &str, kid: Option<&str>, claims: &Value) -> String {
            let mut header = serde_json::json!({"alg": alg, "typ": "JWT"});
            if let Some(kid) = kid {
                header["kid"] = Value::from(kid);
            }
            let signing_input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header.to_string()),
                URL_SAFE_NO_PAD.encode(claims.to_string())
            );
            let rng = SystemRandom::new();
            let sig = match self {
                TestKey::Rsa(k) => {
                    let pad: &dyn signature::RsaEncoding = match alg {
                        "PS256" => &signature::RSA_PSS_SHA256,
                        "RS384" => &signature::RSA_PKCS1_SHA384,
                        "RS512" => &signature::RSA_PKCS1_SHA512,
                        _ => &signature::RSA_PKCS1_SHA256,
                    };
                    let mut sig = vec![0u8; k.public().modulus_len()];
                    k.sign(pad, &rng, signing_input.as_bytes(), &mut sig)
                        .expect("sign");
                    sig
                }
                TestKey::Ec(k) => k
                    .sign(&rng, signing_input.as_bytes())
                    .expect("sign")
                    .as_ref()
                    .to_vec(),
                TestKey::Ed(k) => k.sign(signing_input.as_bytes()).as_ref().to_vec(),
            };
            format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig))
        }
    }

    /// A token signed with HMAC-SHA256 keyed by `key` (to prove HS256 never passes).
    pub fn sign_hs256(key: &[u8], kid: Option<&str>, claims: &Value) -> String {
        let mut header = serde_json::json!({"alg": "HS256", "typ": "JWT"});
        if let Some(kid) = kid {
            header["kid"] = Value::from(kid);
        }
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
        let tag = ring::hmac::sign(&k, input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// `alg: none`, no signature.
    pub fn unsigned(claims: &Value) -> String {
        format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;

    fn policy() -> JwtPolicy {
        JwtPolicy {
            issuer: "https://auth.example.com/".into(),
            audience: "switchyard".into(),
            algorithms: vec![Alg::RS256, Alg::PS256, Alg::ES256, Alg::EdDSA],
            leeway_secs: 30,
            claims: ClaimMap {
                team: Some("team".into()),
                project: Some("project".into()),
                user: "sub".into(),
            },
        }
    }

    fn claims() -> Value {
        json!({"iss": "https://auth.example.com/", "aud": ["switchyard", "other"], "sub": "alice",
               "exp": NOW + 600, "nbf": NOW - 10, "team": "team-a", "project": "bot"})
    }

    fn jwks(keys: &[(&TestKey, &str)]) -> JwkSet {
        let doc = json!({"keys": keys.iter().map(|(k, kid)| k.jwk(kid)).collect::<Vec<_>>()});
        JwkSet::parse(doc.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn valid_tokens_of_every_family_verify() {
        let rsa = TestKey::rsa(RSA_A);
        let ec = TestKey::ec();
        let ed = TestKey::ed();
        let set = jwks(&[(&rsa, "r1"), (&ec, "e1"), (&ed, "d1")]);
        for (key, alg, kid) in [
            (&rsa, "RS256", "r1"),
            (&rsa, "PS256", "r1"),
            (&ec, "ES256", "e1"),
            (&ed, "EdDSA", "d1"),
        ] {
            let t = key.sign(alg, Some(kid), &claims());
            let v = verify(&t, &set, &policy(), NOW).unwrap_or_else(|e| panic!("{alg}: {e}"));
            assert_eq!(v.identity.name, "alice");
            assert_eq!(v.identity.team.as_deref(), Some("team-a"));
            assert_eq!(v.identity.project.as_deref(), Some("bot"));
            assert_eq!(v.identity.kind, CredentialKind::UserToken);
            assert_eq!(v.expires_unix, NOW + 600);
        }
    }

    #[test]
    fn bad_tokens_are_refused() {
        let rsa = TestKey::rsa(RSA_A);
        let set = jwks(&[(&rsa, "r1")]);
        let p = policy();
        let sign = |c: &Value| rsa.sign("RS256", Some("r1"), c);
        let mut c = claims();
        c["exp"] = json!(NOW - 31);
        assert_eq!(
            verify(&sign(&c), &set, &p, NOW),
            Err(JwtError::Auth(AuthError::TokenExpired))
        );
        c["exp"] = json!(NOW - 29); // inside the leeway
        assert!(verify(&sign(&c), &set, &p, NOW).is_ok());
        let mut c = claims();
        c["nbf"] = json!(NOW + 100);
        assert!(
            matches!(verify(&sign(&c), &set, &p, NOW), Err(JwtError::Auth(AuthError::InvalidToken(m))) if m.contains("nbf"))
        );
        let mut c = claims();
        c["iss"] = json!("https://evil.example.com/");
        assert!(
            matches!(verify(&sign(&c), &set, &p, NOW), Err(JwtError::Auth(AuthError::InvalidToken(m))) if m.contains("issuer"))
        );
        let mut c = claims();
        c["aud"] = json!("someone-else");
        assert!(
            matches!(verify(&sign(&c), &set, &p, NOW), Err(JwtError::Auth(AuthError::InvalidToken(m))) if m.contains("audience"))
        );
        let mut c = claims();
        c.as_object_mut().unwrap().remove("exp");
        assert!(verify(&sign(&c), &set, &p, NOW).is_err());
        // Unknown kid: the caller should refresh the JWKS.
        let other = TestKey::rsa(RSA_B);
        assert_eq!(
            verify(&other.sign("RS256", Some("r2"), &claims()), &set, &p, NOW),
            Err(JwtError::UnknownKid("r2".into()))
        );
        // Same kid, wrong key.
        assert!(verify(&other.sign("RS256", Some("r1"), &claims()), &set, &p, NOW).is_err());
        // alg: none.
        assert!(
            matches!(verify(&unsigned(&claims()), &set, &p, NOW), Err(JwtError::Auth(AuthError::InvalidToken(m))) if m.contains("not allowed"))
        );
        // HS256 keyed with the RSA public key (the classic confusion attack).
        let public_n = rsa.jwk("r1")["n"].as_str().unwrap().to_string();
        let hs = sign_hs256(public_n.as_bytes(), Some("r1"), &claims());
        assert!(verify(&hs, &set, &p, NOW).is_err());
        // Tampered payload: re-encode claims, keep the signature.
        let good = sign(&claims());
        let mut parts: Vec<&str> = good.split('.').collect();
        let mut evil = claims();
        evil["sub"] = json!("mallory");
        let evil_payload = URL_SAFE_NO_PAD.encode(evil.to_string());
        parts[1] = &evil_payload;
        assert!(
            matches!(verify(&parts.join("."), &set, &p, NOW), Err(JwtError::Auth(AuthError::InvalidToken(m))) if m.contains("signature"))
        );
        // An allowed family used with a disallowed algorithm.
        let mut narrow = policy();
        narrow.algorithms = vec![Alg::ES256];
        assert!(verify(&good, &set, &narrow, NOW).is_err());
        assert!(verify("garbage", &set, &p, NOW).is_err());
    }

    #[test]
    fn machine_tokens_are_told_apart() {
        let ec = TestKey::ec();
        let set = jwks(&[(&ec, "e1")]);
        let mut c = claims();
        c["sub"] = json!("billing-service@clients");
        c["azp"] = json!("billing-service");
        let v = verify(&ec.sign("ES256", Some("e1"), &c), &set, &policy(), NOW).unwrap();
        assert_eq!(v.identity.kind, CredentialKind::MachineToken);
        assert_eq!(v.identity.name, "billing-service");
        assert_eq!(v.identity.user, None);
    }

    #[test]
    fn scopes_are_read_from_scope_or_scp() {
        assert_eq!(scopes(&json!({"scope": "a b"})), vec!["a", "b"]);
        assert_eq!(scopes(&json!({"scp": ["x", "y"]})), vec!["x", "y"]);
        assert!(scopes(&json!({})).is_empty());
    }

    #[test]
    fn jwks_parsing_skips_what_it_cannot_use() {
        let doc = br#"{"keys":[{"kty":"oct","k":"abc"},{"kty":"EC","crv":"P-521","x":"AA","y":"AA"},{"kty":"RSA","use":"enc","n":"AQAB","e":"AQAB"},{"kty":"RSA","kid":"ok","n":"AQAB","e":"AQAB"}]}"#;
        let set = JwkSet::parse(doc).unwrap();
        assert_eq!(set.keys.len(), 1);
        assert!(set.has_kid("ok"));
        assert!(JwkSet::parse(b"{}").is_err());
    }
}
