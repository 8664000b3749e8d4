//! The cache key: the request's canonical form — the route, the public model, the scope (team,
//! key or global) and the body with every field that cannot change the answer removed (`user`,
//! `stream`, `stream_options`, `metadata`, the gateway's routing hints) and its object keys
//! sorted, so field order and whitespace do not matter. It reads the body only; it must not touch
//! the request or decide whether a request is cached.
//!
//! The key holds the canonical text itself, so two requests share an entry only when their
//! canonical forms are equal byte for byte (no hash collision can hand one team's answer to
//! another); the memory store indexes it by a per-process seeded foldhash of that text, computed
//! once, and Redis by its SHA-256 ([`Key::digest`]). The canonical text is written while the body
//! is parsed, with no `serde_json::Value` tree in between (the tree and a SHA-256 per request were
//! most of a miss's cost in `benches/cache.sh`).

use ring::digest::{digest, SHA256};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::borrow::Cow;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, OnceLock};

/// Body fields that do not change the answer (or are read from elsewhere, like `model`).
const IGNORED: &[&str] = &[
    "model",
    "user",
    "stream",
    "stream_options",
    "metadata",
    "routingStrategy",
    "task",
    "fallbackProviders",
    "retryAttempts",
    "maxCostPerRequest",
];

/// A cache key: a request's canonical text, with its hash.
#[derive(Clone)]
pub struct Key {
    hash: u64,
    /// In an `Arc<Vec>` so the buffer it was written in is kept, not copied.
    text: Arc<Vec<u8>>,
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.hash == other.hash && self.text == other.text
    }
}

impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl fmt::Debug for Key {
    // The text is a caller's prompt: never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({:016x}, {} bytes)", self.hash, self.text.len())
    }
}

impl Key {
    fn new(text: Vec<u8>) -> Key {
        // Seeded per process, so callers cannot aim requests at one shard or bucket (foldhash:
        // several times cheaper than SipHash per byte; equal hashes still compare the text).
        static SEED: OnceLock<foldhash::quality::RandomState> = OnceLock::new();
        let hash = SEED
            .get_or_init(foldhash::quality::RandomState::default)
            .hash_one(&text[..]);
        Key {
            hash,
            text: Arc::new(text),
        }
    }

    /// A key of `text` as it stands (tests of the stores).
    #[cfg(test)]
    pub fn of(text: &[u8]) -> Key {
        Key::new(text.to_vec())
    }

    /// The seeded hash of the text (which shard of the memory store holds it).
    pub fn spread(&self) -> u64 {
        self.hash
    }

    /// Bytes of canonical text (counted in the memory store's bound).
    pub fn text_len(&self) -> usize {
        self.text.len()
    }

    /// The SHA-256 of the text: the same on every replica (Redis keys).
    pub fn digest(&self) -> [u8; 32] {
        sha256(&self.text)
    }
}

/// `route`, `model` and `scope`, each preceded by its length (so no two triples run together).
fn head(route: &str, model: &str, scope: &str, body_len: usize) -> Vec<u8> {
    let mut text = Vec::with_capacity(64 + body_len);
    for part in [route, model, scope] {
        text.extend_from_slice(&(part.len() as u64).to_le_bytes());
        text.extend_from_slice(part.as_bytes());
    }
    text
}

/// The key of a request to `model` on `route`, shared within `scope`; `None` when the body is not
/// a JSON object.
pub fn key(route: &str, model: &str, scope: &str, body: &[u8]) -> Option<Key> {
    let mut text = head(route, model, scope, body.len());
    let mut de = serde_json::Deserializer::from_slice(body);
    de.deserialize_map(Canon {
        out: &mut text,
        top: true,
    })
    .ok()?;
    de.end().ok()?;
    Some(Key::new(text))
}

/// A digest of a request body already parsed (the semantic index's partitions: the request with
/// its prompt taken out), canonical like [`key`].
pub fn digest_of_map(
    route: &str,
    model: &str,
    scope: &str,
    map: &serde_json::Map<String, Value>,
) -> [u8; 32] {
    sha256(&map_text(route, model, scope, map))
}

/// The canonical text of a parsed request body: what [`key`] writes while parsing it.
fn map_text(
    route: &str,
    model: &str,
    scope: &str,
    map: &serde_json::Map<String, Value>,
) -> Vec<u8> {
    let mut text = head(route, model, scope, 256);
    object_text(&mut text, map, true);
    text
}

fn sha256(text: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, text).as_ref());
    out
}

/// A JSON leaf (string, number, bool, null) as serde_json writes it.
fn leaf<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    // Writing to a Vec cannot fail, and these values always serialise.
    let _ = serde_json::to_writer(&mut *out, v);
}

/// Writes `{"k":v,...}` with members sorted by key (at the top level without the [`IGNORED`]
/// ones).
fn object_text(out: &mut Vec<u8>, map: &serde_json::Map<String, Value>, top: bool) {
    let mut fields: Vec<(&String, &Value)> = map
        .iter()
        .filter(|(k, _)| !(top && IGNORED.contains(&k.as_str())))
        .collect();
    fields.sort_by(|a, b| a.0.cmp(b.0));
    out.push(b'{');
    for (k, v) in fields {
        leaf(out, k);
        out.push(b':');
        canonical_value(out, v);
        out.push(b',');
    }
    out.push(b'}');
}

/// Writes a parsed `v` with object keys sorted (the same text [`Canon`] writes while parsing).
fn canonical_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Object(map) => object_text(out, map, false),
        Value::Array(items) => {
            out.push(b'[');
            for v in items {
                canonical_value(out, v);
                out.push(b',');
            }
            out.push(b']');
        }
        other => leaf(out, other),
    }
}

/// Writes the canonical text of the value being parsed into `out`: objects as `{"k":v,...}`
/// with members sorted by key (at the top level without the [`IGNORED`] ones), arrays as
/// `[v,...]`, leaves as serde_json writes them.
struct Canon<'a> {
    out: &'a mut Vec<u8>,
    top: bool,
}

impl<'de> DeserializeSeed<'de> for Canon<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// An object key, borrowed from the body unless it had escapes.
struct KeyText<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for KeyText<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeyText<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<KeyText<'de>, E> {
                Ok(KeyText(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<KeyText<'de>, E> {
                Ok(KeyText(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Visitor<'de> for Canon<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        leaf(self.out, &v);
        Ok(())
    }

    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        leaf(self.out, &v);
        Ok(())
    }

    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        leaf(self.out, &v);
        Ok(())
    }

    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        // As a parsed `Value` writes it (a non-finite number cannot come from JSON).
        leaf(self.out, &Value::from(v));
        Ok(())
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        leaf(self.out, v);
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.out.push(b'[');
        while seq
            .next_element_seed(Canon {
                out: &mut *self.out,
                top: false,
            })?
            .is_some()
        {
            self.out.push(b',');
        }
        self.out.push(b']');
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // Members are written as they come (`"k":v,`), then put in key order when they were
        // not in it.
        self.out.push(b'{');
        let start = self.out.len();
        // Inline for the usual handful of members: a message object allocates nothing here.
        let mut members: smallvec::SmallVec<[(KeyText<'de>, usize, usize); 8]> =
            smallvec::SmallVec::new();
        while let Some(k) = map.next_key::<KeyText<'de>>()? {
            if self.top && IGNORED.contains(&k.0.as_ref()) {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let from = self.out.len();
            leaf(self.out, k.0.as_ref());
            self.out.push(b':');
            map.next_value_seed(Canon {
                out: &mut *self.out,
                top: false,
            })?;
            self.out.push(b',');
            members.push((k, from, self.out.len()));
        }
        if !members.windows(2).all(|w| w[0].0 .0 <= w[1].0 .0) {
            members.sort_by(|a, b| a.0 .0.cmp(&b.0 .0));
            let written: smallvec::SmallVec<[u8; 256]> =
                smallvec::SmallVec::from_slice(&self.out[start..]);
            self.out.truncate(start);
            for (_, from, to) in &members {
                self.out
                    .extend_from_slice(&written[from - start..to - start]);
            }
        }
        self.out.push(b'}');
        Ok(())
    }
}

/// Hex text of a digest (Redis keys).
pub fn hex(digest: &[u8; 32]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_whitespace_and_ignored_fields_do_not_change_the_key() {
        let a = br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.5}"#;
        let b = br#"{ "temperature": 0.5, "stream": true, "user": "u1", "metadata": {"a":"b"},
            "messages": [ {"content": "hi", "role": "user"} ], "model": "alias" }"#;
        assert_eq!(key("chat", "m", "team:a", a), key("chat", "m", "team:a", b));
    }

    #[test]
    fn answer_changing_fields_scope_route_and_model_change_the_key() {
        let a = br#"{"messages":[{"role":"user","content":"hi"}],"temperature":0.5}"#;
        let k = key("chat", "m", "team:a", a);
        assert!(k.is_some());
        let other_temp = br#"{"messages":[{"role":"user","content":"hi"}],"temperature":0.6}"#;
        assert_ne!(k, key("chat", "m", "team:a", other_temp));
        let other_msg = br#"{"messages":[{"role":"user","content":"ho"}],"temperature":0.5}"#;
        assert_ne!(k, key("chat", "m", "team:a", other_msg));
        assert_ne!(k, key("chat", "m", "team:b", a));
        assert_ne!(k, key("messages", "m", "team:a", a));
        assert_ne!(k, key("chat", "m2", "team:a", a));
        // A nested "model" or "user" is part of the answer (only top-level fields are ignored).
        let nested =
            br#"{"messages":[{"role":"user","content":"hi","user":"x"}],"temperature":0.5}"#;
        assert_ne!(k, key("chat", "m", "team:a", nested));
        assert_eq!(key("chat", "m", "", b"[1]"), None);
        assert_eq!(key("chat", "m", "", b"{\"a\":1} x"), None);
        assert_eq!(key("chat", "m", "", b"{\"a\":"), None);
    }

    #[test]
    fn the_text_is_what_a_parsed_value_canonicalises_to() {
        // Escapes, numbers written differently, nesting, unicode: the same canonical text as
        // the parsed-tree writer the semantic index uses.
        let body = br#"{"b":[1,2.50,-3,1e3,{"z":null,"a\u0041":"x\"y\u00e9"}],"a":{"y":true,"x":false},"model":"m"}"#;
        let k = key("r", "m", "s", body).expect("an object");
        let map: serde_json::Map<String, Value> = serde_json::from_slice(body).unwrap();
        let text = map_text("r", "m", "s", &map);
        assert_eq!(
            &k.text[..],
            &text[..],
            "{}",
            String::from_utf8_lossy(&k.text)
        );
        assert_eq!(k.digest(), Key::new(text).digest());
    }
}
