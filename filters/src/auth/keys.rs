//! Virtual API keys: generated as `sy-` + base62 of 32 random bytes, stored and looked up only as
//! SHA-256 hashes, each with its policy (models, expiry, IP allow-list, limits, metadata).
//!
//! Rotation gives a key a new secret; the old hash stays valid until its grace period ends and is
//! then refused with a message saying it was rotated.

use super::{AuthError, CredentialKind, Identity};
use ipnet::IpNet;
use ring::digest;
use ring::rand::SecureRandom;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

pub const KEY_PREFIX: &str = "sy-";
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A key's SHA-256.
pub type KeyHash = [u8; 32];

pub fn hash_key(secret: &str) -> KeyHash {
    let d = digest::digest(&digest::SHA256, secret.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

pub fn hash_hex(hash: &KeyHash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses a 64-digit hex SHA-256 (as written in `key_sha256`).
pub fn parse_hash_hex(hex: &str) -> Option<KeyHash> {
    let hex = hex.trim();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in hex.as_bytes().chunks(2).enumerate() {
        let s = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// A new secret: `sy-` followed by 32 random bytes in base62 (43 characters).
pub fn generate_key(rng: &dyn SecureRandom) -> Result<String, ring::error::Unspecified> {
    let mut bytes = [0u8; 32];
    rng.fill(&mut bytes)?;
    // Big-endian base-62 conversion of the 256-bit number.
    let mut digits = Vec::with_capacity(44);
    let mut n = bytes.to_vec();
    while n.iter().any(|b| *b != 0) {
        let mut rem = 0u32;
        for b in n.iter_mut() {
            let acc = (rem << 8) | u32::from(*b);
            *b = (acc / 62) as u8;
            rem = acc % 62;
        }
        digits.push(BASE62[rem as usize]);
    }
    while digits.len() < 43 {
        digits.push(b'0');
    }
    digits.reverse();
    Ok(format!("{KEY_PREFIX}{}", String::from_utf8_lossy(&digits)))
}

/// Where a key was defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// `auth.api_keys` in the config file: read-only at runtime.
    Config,
    /// Created through the admin API and kept in the store.
    Store,
}

impl KeySource {
    pub fn label(self) -> &'static str {
        match self {
            KeySource::Config => "config",
            KeySource::Store => "store",
        }
    }
}

/// A key's policy. Never holds the secret.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    pub name: String,
    pub team: Option<String>,
    pub project: Option<String>,
    /// Allowed public model names; `None` = all.
    pub models: Option<Vec<String>>,
    /// Unix seconds after which the key is refused.
    pub expires_unix: Option<u64>,
    /// Client networks the key may be used from; empty = anywhere.
    pub ip_allow: Vec<IpNet>,
    /// Limits, enforced by the cost-governance policy (kept here so they travel with the key).
    pub limits: BTreeMap<String, f64>,
    pub metadata: BTreeMap<String, String>,
    pub revoked: bool,
    pub source: KeySource,
    pub created_unix: u64,
}

impl KeyRecord {
    pub fn identity(&self) -> Identity {
        Identity {
            name: self.name.clone(),
            team: self.team.clone(),
            project: self.project.clone(),
            user: None,
            kind: CredentialKind::VirtualKey,
            models: self.models.clone(),
        }
    }
}

/// One hash's entry: the key it belongs to, and until when it works if it was rotated away.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    pub record: Arc<KeyRecord>,
    /// Set on a superseded secret: valid until this unix time, then `Rotated`.
    pub superseded_until: Option<u64>,
}

/// One hash's entry and the identity its key gives a caller, made once when the index is built
/// (a request shares it: no name, team or model list copied per request).
#[derive(Debug, Clone)]
struct Indexed {
    entry: KeyEntry,
    identity: Arc<Identity>,
}

/// The lookup table from key hash to key. Built off the request path and swapped in whole.
#[derive(Debug, Default, Clone)]
pub struct KeyIndex {
    /// Hashed with foldhash (seeded per process), not std's SipHash: every keyed request looks
    /// its digest up.
    by_hash: HashMap<KeyHash, Indexed, foldhash::fast::RandomState>,
}

impl KeyIndex {
    pub fn insert(&mut self, hash: KeyHash, entry: KeyEntry) {
        let identity = Arc::new(entry.record.identity());
        self.by_hash.insert(hash, Indexed { entry, identity });
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// Checks a presented secret from `client` at `now_unix`; the caller's identity if it may
    /// pass.
    pub fn check(
        &self,
        secret: &str,
        client: Option<IpAddr>,
        now_unix: u64,
    ) -> Result<Arc<Identity>, AuthError> {
        let Indexed { entry, identity } = self
            .by_hash
            .get(&hash_key(secret))
            .ok_or(AuthError::InvalidKey)?;
        let rec = &entry.record;
        if entry.superseded_until.is_some_and(|t| now_unix > t) {
            return Err(AuthError::Rotated(rec.name.clone()));
        }
        if rec.revoked {
            return Err(AuthError::Revoked(rec.name.clone()));
        }
        if rec.expires_unix.is_some_and(|t| now_unix >= t) {
            return Err(AuthError::Expired(rec.name.clone()));
        }
        if !rec.ip_allow.is_empty()
            && !client.is_some_and(|ip| rec.ip_allow.iter().any(|n| n.contains(&ip)))
        {
            return Err(AuthError::IpNotAllowed {
                caller: rec.name.clone(),
            });
        }
        Ok(identity.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str) -> KeyRecord {
        KeyRecord {
            name: name.into(),
            team: Some("t".into()),
            project: None,
            models: Some(vec!["chat".into()]),
            expires_unix: Some(2000),
            ip_allow: vec![
                "10.0.0.0/8".parse().unwrap(),
                "127.0.0.1/32".parse().unwrap(),
            ],
            limits: BTreeMap::new(),
            metadata: BTreeMap::new(),
            revoked: false,
            source: KeySource::Store,
            created_unix: 1,
        }
    }

    #[test]
    fn generated_keys_are_prefixed_base62_and_distinct() {
        let rng = ring::rand::SystemRandom::new();
        let a = generate_key(&rng).unwrap();
        let b = generate_key(&rng).unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("sy-"));
        assert_eq!(a.len(), 3 + 43);
        assert!(a[3..].bytes().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn sha256_matches_the_documented_example() {
        // CONFIG.md's example hash is sha256("test").
        assert_eq!(
            hash_hex(&hash_key("test")),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
        assert_eq!(
            parse_hash_hex(&hash_hex(&hash_key("x"))),
            Some(hash_key("x"))
        );
        assert_eq!(parse_hash_hex("zz"), None);
    }

    #[test]
    fn checks_in_order() {
        let mut idx = KeyIndex::default();
        let rec = Arc::new(record("app"));
        idx.insert(
            hash_key("sy-new"),
            KeyEntry {
                record: rec.clone(),
                superseded_until: None,
            },
        );
        idx.insert(
            hash_key("sy-old"),
            KeyEntry {
                record: rec.clone(),
                superseded_until: Some(1500),
            },
        );
        let local = Some("127.0.0.1".parse().unwrap());
        assert_eq!(
            idx.check("sy-new", local, 1000),
            Ok(Arc::new(rec.identity()))
        );
        assert!(
            idx.check("sy-old", local, 1400).is_ok(),
            "inside the grace period"
        );
        assert_eq!(
            idx.check("sy-old", local, 1600),
            Err(AuthError::Rotated("app".into()))
        );
        assert_eq!(
            idx.check("sy-nope", local, 1000),
            Err(AuthError::InvalidKey)
        );
        assert_eq!(
            idx.check("sy-new", local, 2000),
            Err(AuthError::Expired("app".into()))
        );
        assert_eq!(
            idx.check("sy-new", Some("192.168.1.1".parse().unwrap()), 1000),
            Err(AuthError::IpNotAllowed {
                caller: "app".into()
            })
        );
        assert!(idx
            .check("sy-new", Some("10.1.2.3".parse().unwrap()), 1000)
            .is_ok());
        let mut revoked = record("gone");
        revoked.revoked = true;
        idx.insert(
            hash_key("sy-gone"),
            KeyEntry {
                record: Arc::new(revoked),
                superseded_until: None,
            },
        );
        assert_eq!(
            idx.check("sy-gone", local, 1000),
            Err(AuthError::Revoked("gone".into()))
        );
        let who = rec.identity();
        assert!(who.may_use("chat") && !who.may_use("other"));
    }
}
