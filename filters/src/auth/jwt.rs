//! OAuth2 / OIDC bearer JWT verification with `ring`.
//!
//! Only asymmetric algorithms from the configured allow-list pass (RS256/384/512, PS256, ES256,
//! ES384, EdDSA): `alg: none` and every HMAC algorithm are refused before any key is looked at, so
//! "HS256 keyed with the public key" can never verify. The key is chosen by `kid` and must be of
//! the algorithm's family. A `crit` header is refused (RFC 7515 §4.1.11: this verifier
//! understands no extension). `iss`, `aud`, `exp` (required), `nbf` and `iat` are checked with a
//! leeway; the times are RFC 7519 NumericDates (integers or not), and a time of any other shape
//! (a string, a negative or absurdly large number) is refused, never ignored. Claims map to team /
//! project / user; a token whose subject is its own client (client credentials) is a machine
//! token, any other a user token. [`Verified`] names the key that verified it, so a cache can drop
//! the token when the key leaves the issuer's JWKS.
//!
//! Why `ring` and not the `jsonwebtoken` crate (v9), point by point:
//! - `crit`: jsonwebtoken neither reads nor refuses it, so a token demanding an extension we do
//!   not implement would pass; here any `crit` is refused.
//! - Times: jsonwebtoken rounds a non-integer time to the nearest second (an `nbf` of 100.4
//!   becomes 100, the lenient side) and silently skips a time it cannot parse unless that claim
//!   is listed as required (a string `nbf` is ignored); `iat` is not checked at all. Here `exp`
//!   is floored and `nbf`/`iat` ceiled (the strict side), and a string, negative or absurd time
//!   is refused by name.
//! - Key choice and algorithm families: jsonwebtoken leaves finding the JWK by `kid` and matching
//!   key type to algorithm to the caller, which is most of what this module does anyway; the
//!   signature check itself is one `ring` call either way (jsonwebtoken uses `ring` underneath).
//! - Rotation: the cache needs the identity of the key that verified a token (its `kid`, or a
//!   fingerprint of the key material), which falls out of choosing the key here.
//!
//! So jsonwebtoken would add a dependency without covering the checks above; the signature
//! primitives stay `ring`'s.

use super::{AuthError, CredentialKind, Identity};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::digest;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::Deserialize;
use serde_json::Value;

/// Most characters of caller text (an `alg`, a `crit` list) echoed in an error message.
const ECHO_MAX: usize = 64;

/// Latest NumericDate accepted: 9999-12-31T23:59:59Z. Anything later is not a real expiry.
const MAX_NUMERIC_DATE: u64 = 253_402_300_799;

/// Caller text as echoed in an error: at most [`ECHO_MAX`] characters.
fn echo(s: &str) -> String {
    match s.char_indices().nth(ECHO_MAX) {
        None => s.to_string(),
        Some((cut, _)) => format!("{}…", &s[..cut]),
    }
}

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

impl KeyMaterial {
    /// SHA-256 over the key type and its length-prefixed components.
    fn fingerprint(&self) -> [u8; 32] {
        let mut ctx = digest::Context::new(&digest::SHA256);
        let mut part = |tag: &[u8], bytes: &[u8]| {
            ctx.update(tag);
            ctx.update(&(bytes.len() as u64).to_be_bytes());
            ctx.update(bytes);
        };
        match self {
            KeyMaterial::Rsa { n, e } => {
                part(b"RSA.n", n);
                part(b"RSA.e", e);
            }
            KeyMaterial::P256(point) => part(b"P-256", point),
            KeyMaterial::P384(point) => part(b"P-384", point),
            KeyMaterial::Ed25519(x) => part(b"Ed25519", x),
        }
        <[u8; 32]>::try_from(ctx.finish().as_ref()).unwrap_or_default()
    }
}

/// Which key verified a token: the JWK's `kid` (if it has one) and a fingerprint of its key
/// material, so a key leaving the JWKS is noticed whether or not it had a `kid`, and a `kid`
/// reused for new material does not keep the old key's tokens alive.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyId {
    pub kid: Option<String>,
    pub fingerprint: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwk {
    pub kid: Option<String>,
    key: KeyMaterial,
    fingerprint: [u8; 32],
}

impl Jwk {
    /// This key's identity, as carried by the tokens it verifies.
    pub fn id(&self) -> KeyId {
        KeyId {
            kid: self.kid.clone(),
            fingerprint: self.fingerprint,
        }
    }
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
                Some(Jwk {
                    kid: k.kid,
                    fingerprint: key.fingerprint(),
                    key,
                })
            })
            .collect();
        Ok(JwkSet { keys })
    }

    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// Whether the key `id` (same `kid`, same key material) is in this set.
    pub fn contains(&self, id: &KeyId) -> bool {
        self.keys
            .iter()
            .any(|k| k.fingerprint == id.fingerprint && k.kid == id.kid)
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
    /// `Some(Value::Null)` for `"crit": null` (malformed), `None` when absent.
    #[serde(default, deserialize_with = "present")]
    crit: Option<Value>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// RFC 7515 §4.1.11: `crit` lists extensions the recipient must understand; this verifier
/// understands none, so any well-formed `crit` is refused, and so is a malformed one.
fn check_crit(crit: Option<&Value>) -> Result<(), JwtError> {
    let Some(crit) = crit else {
        return Ok(());
    };
    let names: Option<Vec<&str>> = crit
        .as_array()
        .filter(|list| !list.is_empty())
        .and_then(|list| list.iter().map(Value::as_str).collect());
    Err(match names {
        Some(names) => invalid(format!(
            "unsupported critical header {:?}",
            echo(&names.join(","))
        )),
        None => invalid("malformed crit header (must be a non-empty list of names)"),
    })
}

/// A verified token: who it is, and until when the result may be cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub identity: Identity,
    /// Scopes granted (`scope` / `scp`), e.g. for the admin API.
    pub scopes: Vec<String>,
    /// The token's `exp` (whole seconds, rounded down).
    pub expires_unix: u64,
    /// The key that verified the signature; `None` for an introspection answer.
    pub key: Option<KeyId>,
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
        .ok_or_else(|| invalid(format!("algorithm {:?} is not allowed", echo(&header.alg))))?;
    check_crit(header.crit.as_ref())?;
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
    let signed = token
        .as_bytes()
        .get(..h.len() + 1 + p.len())
        .ok_or_else(|| invalid("not a JWT (expected three dot-separated parts)"))?;
    let key = candidates
        .into_iter()
        .find(|k| verify_signature(alg, &k.key, signed, &sig))
        .ok_or_else(|| invalid("signature does not verify"))?;
    let claims: Value = b64(p)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| invalid("malformed payload"))?;
    let mut verified = check_claims(&claims, policy, now_unix)?;
    verified.key = Some(key.id());
    Ok(verified)
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

/// How a non-integer NumericDate becomes whole seconds: towards the strict side of its check
/// (`exp` down, `nbf` and `iat` up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    Down,
    Up,
}

/// The NumericDate claim `name` (RFC 7519 §2: seconds since 1970, an integer or not) in whole
/// seconds; `Ok(None)` when absent. A value of another type (a string, a bool, null), a negative
/// one, or one past year 9999 is refused, naming the claim.
pub fn numeric_date(claims: &Value, name: &str, round: Round) -> Result<Option<u64>, JwtError> {
    let Some(value) = claims.get(name) else {
        return Ok(None);
    };
    let secs = match value {
        Value::Number(n) => match (n.as_u64(), n.as_f64()) {
            (Some(whole), _) => Some(whole),
            (None, Some(f)) if f.is_finite() && f >= 0.0 && f <= MAX_NUMERIC_DATE as f64 => {
                Some(match round {
                    Round::Down => f.floor() as u64,
                    Round::Up => f.ceil() as u64,
                })
            }
            _ => None,
        },
        _ => None,
    };
    match secs {
        Some(s) if s <= MAX_NUMERIC_DATE => Ok(Some(s)),
        _ => Err(invalid(format!(
            "{name} is not a NumericDate (seconds since 1970, up to year 9999)"
        ))),
    }
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
    let exp = numeric_date(claims, "exp", Round::Down)?.ok_or_else(|| invalid("missing exp"))?;
    let nbf = numeric_date(claims, "nbf", Round::Up)?;
    let iat = numeric_date(claims, "iat", Round::Up)?;
    let leeway = policy.leeway_secs;
    if now > exp.saturating_add(leeway) {
        return Err(JwtError::Auth(AuthError::TokenExpired));
    }
    if nbf.is_some_and(|nbf| now.saturating_add(leeway) < nbf) {
        return Err(invalid("token not valid yet (nbf)"));
    }
    if iat.is_some_and(|iat| now.saturating_add(leeway) < iat) {
        return Err(invalid("token issued in the future (iat)"));
    }
    Ok(Verified {
        identity: identity_from_claims(claims, &policy.claims)?,
        scopes: scopes(claims),
        expires_unix: exp,
        key: None,
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
            self.sign_raw(
                alg,
                header.to_string().as_bytes(),
                claims.to_string().as_bytes(),
            )
        }

        /// Signs any header and payload bytes (`alg` picks the RSA padding); for tests of
        /// malformed headers and claims that still carry a valid signature, and for fuzzing.
        pub fn sign_raw(&self, alg: &str, header: &[u8], payload: &[u8]) -> String {
            let signing_input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header),
                URL_SAFE_NO_PAD.encode(payload)
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

    /// A token with this exact header, validly signed by `key` (RS256).
    fn with_header(key: &TestKey, header: Value, c: &Value) -> String {
        key.sign_raw(
            "RS256",
            header.to_string().as_bytes(),
            c.to_string().as_bytes(),
        )
    }

    /// The message of an `InvalidToken` refusal.
    fn refusal(r: Result<Verified, JwtError>) -> String {
        match r {
            Err(JwtError::Auth(AuthError::InvalidToken(m))) => m,
            other => panic!("expected InvalidToken, got {other:?}"),
        }
    }

    #[test]
    fn critical_headers_are_refused() {
        let rsa = TestKey::rsa(RSA_A);
        let set = jwks(&[(&rsa, "r1")]);
        let p = policy();
        let plain = with_header(&rsa, json!({"alg": "RS256", "kid": "r1"}), &claims());
        assert!(verify(&plain, &set, &p, NOW).is_ok());
        let crit = json!({"alg": "RS256", "kid": "r1", "crit": ["b64"], "b64": false});
        let m = refusal(verify(&with_header(&rsa, crit, &claims()), &set, &p, NOW));
        assert!(
            m.contains("unsupported critical header") && m.contains("b64"),
            "{m}"
        );
        // The caller's names are echoed at most 64 characters.
        let long = json!({"alg": "RS256", "kid": "r1", "crit": ["x".repeat(10_000)]});
        let m = refusal(verify(&with_header(&rsa, long, &claims()), &set, &p, NOW));
        assert!(
            m.contains("unsupported critical header") && m.len() < 150,
            "{m}"
        );
        for bad in [
            json!([]),
            json!("b64"),
            json!([1]),
            json!(["b64", 2]),
            json!(null),
            json!({"b64": true}),
        ] {
            let h = json!({"alg": "RS256", "kid": "r1", "crit": bad.clone()});
            let m = refusal(verify(&with_header(&rsa, h, &claims()), &set, &p, NOW));
            assert!(m.contains("malformed crit"), "{bad}: {m}");
        }
    }

    #[test]
    fn fractional_times_are_rounded_to_the_strict_side() {
        let rsa = TestKey::rsa(RSA_A);
        let set = jwks(&[(&rsa, "r1")]);
        let mut p = policy();
        p.leeway_secs = 0;
        let check = |exp: Value, nbf: Value, iat: Value| {
            let mut c = claims();
            c["exp"] = exp;
            c["nbf"] = nbf;
            c["iat"] = iat;
            verify(&rsa.sign("RS256", Some("r1"), &c), &set, &p, NOW)
        };
        let now = NOW as f64;
        // exp is floored: half a second left is still valid, and cached until NOW.
        let v = check(json!(now + 0.5), json!(now - 0.75), json!(now - 10.5)).unwrap();
        assert_eq!(v.expires_unix, NOW);
        assert_eq!(
            check(json!(now - 0.5), json!(now - 10.0), json!(now - 10.0)),
            Err(JwtError::Auth(AuthError::TokenExpired))
        );
        // nbf and iat are ceiled: a quarter second in the future is the future.
        let m = refusal(check(
            json!(now + 60.0),
            json!(now + 0.25),
            json!(now - 1.0),
        ));
        assert!(m.contains("nbf"), "{m}");
        let m = refusal(check(
            json!(now + 60.0),
            json!(now - 1.0),
            json!(now + 0.25),
        ));
        assert!(m.contains("iat"), "{m}");
        // A far but real expiry (year 2200), written as a float.
        let v = check(json!(7_258_118_400.5), json!(now), json!(now)).unwrap();
        assert_eq!(v.expires_unix, 7_258_118_400);
    }

    #[test]
    fn times_of_the_wrong_shape_are_refused_by_name() {
        let rsa = TestKey::rsa(RSA_A);
        let set = jwks(&[(&rsa, "r1")]);
        for claim in ["exp", "nbf", "iat"] {
            for bad in [
                json!((NOW + 600).to_string()),
                json!(true),
                json!(null),
                json!(-5),
                json!(-0.5),
                json!(1e300),
                json!(253_402_300_800u64),
                json!(u64::MAX),
                json!([NOW]),
                json!({"t": NOW}),
            ] {
                let mut c = claims();
                c[claim] = bad.clone();
                let t = rsa.sign("RS256", Some("r1"), &c);
                let m = refusal(verify(&t, &set, &policy(), NOW));
                assert!(
                    m.starts_with(claim) && m.contains("NumericDate"),
                    "{claim}={bad}: {m}"
                );
            }
        }
    }

    #[test]
    fn a_future_iat_is_refused_beyond_the_leeway() {
        let rsa = TestKey::rsa(RSA_A);
        let set = jwks(&[(&rsa, "r1")]);
        let at = |iat: u64| {
            let mut c = claims();
            c["iat"] = json!(iat);
            verify(&rsa.sign("RS256", Some("r1"), &c), &set, &policy(), NOW)
        };
        assert!(at(NOW - 100).is_ok());
        assert!(at(NOW + 29).is_ok(), "inside the 30 s leeway");
        let m = refusal(at(NOW + 31));
        assert!(m.contains("iat"), "{m}");
    }

    #[test]
    fn verified_names_the_key_that_verified_it() {
        let rsa = TestKey::rsa(RSA_A);
        let ed = TestKey::ed();
        let mut anonymous = ed.jwk("unused");
        anonymous.as_object_mut().unwrap().remove("kid");
        let doc = json!({"keys": [rsa.jwk("r1"), anonymous]});
        let set = JwkSet::parse(doc.to_string().as_bytes()).unwrap();

        let v = verify(
            &rsa.sign("RS256", Some("r1"), &claims()),
            &set,
            &policy(),
            NOW,
        )
        .unwrap();
        let key = v.key.expect("a key id");
        assert_eq!(key.kid.as_deref(), Some("r1"));
        assert_eq!(key, set.keys[0].id());
        assert!(set.contains(&key));
        // The same kid on other key material is another key.
        let reused = jwks(&[(&TestKey::rsa(RSA_B), "r1")]);
        assert!(!reused.contains(&key));

        // A JWK without a kid is known by its fingerprint.
        let v = verify(&ed.sign("EdDSA", None, &claims()), &set, &policy(), NOW).unwrap();
        let key = v.key.expect("a key id");
        assert_eq!(key.kid, None);
        assert_eq!(key, set.keys[1].id());
        assert_ne!(key.fingerprint, set.keys[0].id().fingerprint);
        assert!(set.contains(&key));
        assert!(!jwks(&[(&rsa, "r1")]).contains(&key));
    }

    #[test]
    fn long_algorithm_names_are_echoed_bounded() {
        let rsa = TestKey::rsa(RSA_A);
        let set = jwks(&[(&rsa, "r1")]);
        let t = with_header(&rsa, json!({"alg": "A".repeat(5000)}), &claims());
        let m = refusal(verify(&t, &set, &policy(), NOW));
        assert!(m.contains("not allowed") && m.len() < 150, "{m}");
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
