//! The durable key store: runtime keys (created through the admin API) in a SQLite file at
//! `store.path`, so they survive restarts and reloads. Secrets are never stored — only SHA-256
//! hashes. Without a `store` section the database lives in memory (and a warning says so).
//!
//! Used from the admin path only (never per request): the request path reads the in-memory index.

use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::Mutex;
use switchyard_filters::auth::keys::{hash_hex, parse_hash_hex, KeyHash, KeyRecord, KeySource};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("key store: corrupt row for key {0:?}")]
    Corrupt(String),
    #[error("key store: the lock was poisoned")]
    Poisoned,
}

/// One stored key: its current hash, policy, and superseded hashes still inside their grace.
pub struct StoredKey {
    pub hash: KeyHash,
    pub record: KeyRecord,
}

pub struct Superseded {
    pub hash: KeyHash,
    pub name: String,
    pub valid_until: u64,
}

pub struct KeyStore {
    conn: Mutex<Connection>,
    pub persistent: bool,
}

impl KeyStore {
    pub fn open(path: Option<&Path>) -> Result<KeyStore, StoreError> {
        let conn = match path {
            Some(p) => Connection::open(p)?,
            None => Connection::open_in_memory()?,
        };
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=FULL;
             CREATE TABLE IF NOT EXISTS keys (
                 name TEXT PRIMARY KEY,
                 hash TEXT NOT NULL UNIQUE,
                 team TEXT, project TEXT,
                 models TEXT, expires INTEGER, ip_allow TEXT, metadata TEXT,
                 revoked INTEGER NOT NULL DEFAULT 0,
                 created INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS superseded (
                 hash TEXT PRIMARY KEY,
                 name TEXT NOT NULL,
                 valid_until INTEGER NOT NULL);",
        )?;
        Ok(KeyStore {
            conn: Mutex::new(conn),
            persistent: path.is_some(),
        })
    }

    pub(super) fn conn(&self) -> Result<std::sync::MutexGuard<'_, Connection>, StoreError> {
        self.conn.lock().map_err(|_| StoreError::Poisoned)
    }

    pub fn load(&self) -> Result<(Vec<StoredKey>, Vec<Superseded>), StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT name, hash, team, project, models, expires, ip_allow, metadata, revoked, created FROM keys",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, Option<i64>>(5)?,
                r.get::<_, Option<String>>(6)?,
                r.get::<_, Option<String>>(7)?,
                r.get::<_, i64>(8)?,
                r.get::<_, i64>(9)?,
            ))
        })?;
        let mut keys = Vec::new();
        for row in rows {
            let (name, hash, team, project, models, expires, ip_allow, metadata, revoked, created) =
                row?;
            let corrupt = || StoreError::Corrupt(name.clone());
            let hash = parse_hash_hex(&hash).ok_or_else(corrupt)?;
            let models: Option<Vec<String>> = match models {
                Some(m) => Some(serde_json::from_str(&m).map_err(|_| corrupt())?),
                None => None,
            };
            let ip_allow: Vec<String> = match ip_allow {
                Some(s) => serde_json::from_str(&s).map_err(|_| corrupt())?,
                None => Vec::new(),
            };
            let ip_allow = ip_allow
                .iter()
                .map(|n| n.parse::<ipnet::IpNet>().map_err(|_| corrupt()))
                .collect::<Result<Vec<_>, _>>()?;
            let metadata = match metadata {
                Some(s) => serde_json::from_str(&s).map_err(|_| corrupt())?,
                None => Default::default(),
            };
            keys.push(StoredKey {
                hash,
                record: KeyRecord {
                    name: name.clone(),
                    team,
                    project,
                    models,
                    expires_unix: expires.map(|e| e.max(0) as u64),
                    ip_allow,
                    limits: Default::default(),
                    metadata,
                    revoked: revoked != 0,
                    source: KeySource::Store,
                    created_unix: created.max(0) as u64,
                },
            });
        }
        let mut stmt = conn.prepare("SELECT hash, name, valid_until FROM superseded")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        let mut superseded = Vec::new();
        for row in rows {
            let (hash, name, until) = row?;
            let hash = parse_hash_hex(&hash).ok_or_else(|| StoreError::Corrupt(name.clone()))?;
            superseded.push(Superseded {
                hash,
                name,
                valid_until: until.max(0) as u64,
            });
        }
        Ok((keys, superseded))
    }

    pub fn insert(&self, hash: &KeyHash, rec: &KeyRecord) -> Result<(), StoreError> {
        let conn = self.conn()?;
        let models = rec
            .models
            .as_ref()
            .map(|m| serde_json::to_string(m).unwrap_or_default());
        let nets: Vec<String> = rec.ip_allow.iter().map(|n| n.to_string()).collect();
        conn.execute(
            "INSERT INTO keys (name, hash, team, project, models, expires, ip_allow, metadata, revoked, created)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?9)",
            params![
                rec.name,
                hash_hex(hash),
                rec.team,
                rec.project,
                models,
                rec.expires_unix.map(|e| e as i64),
                serde_json::to_string(&nets).unwrap_or_default(),
                serde_json::to_string(&rec.metadata).unwrap_or_default(),
                rec.created_unix as i64,
            ],
        )?;
        Ok(())
    }

    /// Marks a key revoked. Returns false when no such stored key exists.
    pub fn revoke(&self, name: &str) -> Result<bool, StoreError> {
        let conn = self.conn()?;
        let n = conn.execute("UPDATE keys SET revoked = 1 WHERE name = ?1", params![name])?;
        conn.execute("DELETE FROM superseded WHERE name = ?1", params![name])?;
        Ok(n > 0)
    }

    /// Gives `name` a new hash; the old one stays valid until `valid_until`.
    pub fn rotate(
        &self,
        name: &str,
        new_hash: &KeyHash,
        valid_until: u64,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        let old: Option<String> = tx
            .query_row(
                "SELECT hash FROM keys WHERE name = ?1 AND revoked = 0",
                params![name],
                |r| r.get(0),
            )
            .optional()?;
        let Some(old) = old else {
            return Ok(false);
        };
        tx.execute(
            "INSERT OR REPLACE INTO superseded (hash, name, valid_until) VALUES (?1, ?2, ?3)",
            params![old, name, valid_until as i64],
        )?;
        tx.execute(
            "UPDATE keys SET hash = ?1 WHERE name = ?2",
            params![hash_hex(new_hash), name],
        )?;
        tx.commit()?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_filters::auth::keys::hash_key;

    fn rec(name: &str) -> KeyRecord {
        KeyRecord {
            name: name.into(),
            team: Some("t".into()),
            project: None,
            models: Some(vec!["chat".into()]),
            expires_unix: Some(99),
            ip_allow: vec!["10.0.0.0/8".parse().unwrap()],
            limits: Default::default(),
            metadata: [("owner".to_string(), "me".to_string())].into(),
            revoked: false,
            source: KeySource::Store,
            created_unix: 5,
        }
    }

    #[test]
    fn keys_round_trip_and_rotate() {
        let dir = std::env::temp_dir().join(format!("sy-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.db");
        {
            let s = KeyStore::open(Some(&path)).unwrap();
            s.insert(&hash_key("a-secret"), &rec("a")).unwrap();
            assert!(s.rotate("a", &hash_key("a-secret-2"), 1234).unwrap());
            assert!(!s.rotate("nope", &hash_key("x"), 1).unwrap());
            s.insert(&hash_key("b-secret"), &rec("b")).unwrap();
            assert!(s.revoke("b").unwrap());
            assert!(
                s.insert(&hash_key("other"), &rec("a")).is_err(),
                "names are unique"
            );
        }
        let s = KeyStore::open(Some(&path)).unwrap();
        let (keys, superseded) = s.load().unwrap();
        assert_eq!(keys.len(), 2);
        let a = keys.iter().find(|k| k.record.name == "a").unwrap();
        assert_eq!(a.hash, hash_key("a-secret-2"));
        assert_eq!(a.record, rec("a"));
        assert!(
            keys.iter()
                .find(|k| k.record.name == "b")
                .unwrap()
                .record
                .revoked
        );
        assert_eq!(superseded.len(), 1);
        assert_eq!(superseded[0].hash, hash_key("a-secret"));
        assert_eq!(superseded[0].valid_until, 1234);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
