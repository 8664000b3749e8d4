//! The durable key store: runtime keys (created through the admin API) in a SQLite file at
//! `store.path`, so they survive restarts and reloads. Secrets are never stored — only SHA-256
//! hashes. Without a `store` section the database lives in memory (and a warning says so).
//!
//! With `store.kind: postgres` the same rows live in the fleet's database ([`crate::store::keys`]).
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
    #[error("key store: {0}")]
    Postgres(#[from] crate::store::PgError),
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

/// One `keys` row as stored (JSON text for the lists and maps), the same in SQLite and PostgreSQL.
#[derive(Debug, Clone, PartialEq)]
pub struct RawKey {
    pub name: String,
    pub hash: String,
    pub team: Option<String>,
    pub project: Option<String>,
    pub models: Option<String>,
    pub expires: Option<i64>,
    pub ip_allow: Option<String>,
    pub metadata: Option<String>,
    pub revoked: bool,
    pub created: i64,
}

impl RawKey {
    /// The row for a new key.
    pub fn new(hash: &KeyHash, rec: &KeyRecord) -> RawKey {
        let nets: Vec<String> = rec.ip_allow.iter().map(|n| n.to_string()).collect();
        RawKey {
            name: rec.name.clone(),
            hash: hash_hex(hash),
            team: rec.team.clone(),
            project: rec.project.clone(),
            models: rec
                .models
                .as_ref()
                .map(|m| serde_json::to_string(m).unwrap_or_default()),
            expires: rec.expires_unix.map(|e| e as i64),
            ip_allow: Some(serde_json::to_string(&nets).unwrap_or_default()),
            metadata: Some(serde_json::to_string(&rec.metadata).unwrap_or_default()),
            revoked: false,
            created: rec.created_unix as i64,
        }
    }

    /// The key this row stores.
    pub fn decode(self) -> Result<StoredKey, StoreError> {
        let name = self.name;
        let corrupt = || StoreError::Corrupt(name.clone());
        let hash = parse_hash_hex(&self.hash).ok_or_else(corrupt)?;
        let models: Option<Vec<String>> = match self.models {
            Some(m) => Some(serde_json::from_str(&m).map_err(|_| corrupt())?),
            None => None,
        };
        let ip_allow: Vec<String> = match self.ip_allow {
            Some(s) => serde_json::from_str(&s).map_err(|_| corrupt())?,
            None => Vec::new(),
        };
        let ip_allow = ip_allow
            .iter()
            .map(|n| n.parse::<ipnet::IpNet>().map_err(|_| corrupt()))
            .collect::<Result<Vec<_>, _>>()?;
        let metadata = match self.metadata {
            Some(s) => serde_json::from_str(&s).map_err(|_| corrupt())?,
            None => Default::default(),
        };
        Ok(StoredKey {
            hash,
            record: KeyRecord {
                name: name.clone(),
                team: self.team,
                project: self.project,
                models,
                expires_unix: self.expires.map(|e| e.max(0) as u64),
                ip_allow,
                limits: Default::default(),
                metadata,
                revoked: self.revoked,
                source: KeySource::Store,
                created_unix: self.created.max(0) as u64,
            },
        })
    }
}

/// One `superseded` row as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RawSuperseded {
    pub hash: String,
    pub name: String,
    pub valid_until: i64,
}

pub struct KeyStore {
    backend: Backend,
    pub persistent: bool,
}

enum Backend {
    Sqlite(Mutex<Connection>),
    Postgres {
        pg: std::sync::Arc<crate::store::Pg>,
        /// The keys last read from PostgreSQL, kept in the local spool file's `keys` tables: a
        /// replica that starts while the database is away serves them.
        snapshot: Option<Snapshot>,
    },
}

/// The last known keys of a PostgreSQL store, on local disk.
struct Snapshot {
    conn: Mutex<Connection>,
    /// What was last written (a reload that reads the same rows writes nothing).
    saved: Mutex<Option<(Vec<RawKey>, Vec<RawSuperseded>)>>,
    saved_policies: Mutex<Option<Vec<(String, String)>>>,
}

impl Snapshot {
    /// Replaces the snapshot with `keys` and `superseded` unless they are what it holds.
    fn save(&self, keys: &[RawKey], superseded: &[RawSuperseded]) -> Result<(), StoreError> {
        let mut saved = self.saved.lock().map_err(|_| StoreError::Poisoned)?;
        if saved
            .as_ref()
            .is_some_and(|(k, s)| k.as_slice() == keys && s.as_slice() == superseded)
        {
            return Ok(());
        }
        let mut conn = self.conn.lock().map_err(|_| StoreError::Poisoned)?;
        let tx = conn.transaction()?;
        tx.execute_batch("DELETE FROM keys; DELETE FROM superseded;")?;
        for k in keys {
            insert_sqlite(&tx, k)?;
        }
        for s in superseded {
            tx.execute(
                "INSERT OR REPLACE INTO superseded (hash, name, valid_until) VALUES (?1, ?2, ?3)",
                params![s.hash, s.name, s.valid_until],
            )?;
        }
        tx.commit()?;
        *saved = Some((keys.to_vec(), superseded.to_vec()));
        Ok(())
    }

    fn load(&self) -> Result<(Vec<RawKey>, Vec<RawSuperseded>), StoreError> {
        let conn = self.conn.lock().map_err(|_| StoreError::Poisoned)?;
        Ok(load_sqlite(&conn)?)
    }

    /// Replaces the snapshot's key policies (name, JSON) unless they are what it holds.
    fn save_policies(&self, rows: &[(String, String)]) -> Result<(), StoreError> {
        let mut saved = self
            .saved_policies
            .lock()
            .map_err(|_| StoreError::Poisoned)?;
        if saved.as_deref() == Some(rows) {
            return Ok(());
        }
        let mut conn = self.conn.lock().map_err(|_| StoreError::Poisoned)?;
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM key_policies", [])?;
        for (name, policy) in rows {
            tx.execute(
                "INSERT INTO key_policies (name, policy) VALUES (?1, ?2)",
                params![name, policy],
            )?;
        }
        tx.commit()?;
        *saved = Some(rows.to_vec());
        Ok(())
    }

    fn load_policies(&self) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.conn.lock().map_err(|_| StoreError::Poisoned)?;
        Ok(super::policy::load_sqlite(&conn)?)
    }
}

const SQLITE_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS keys (
         name TEXT PRIMARY KEY,
         hash TEXT NOT NULL UNIQUE,
         team TEXT, project TEXT,
         models TEXT, expires INTEGER, ip_allow TEXT, metadata TEXT,
         revoked INTEGER NOT NULL DEFAULT 0,
         created INTEGER NOT NULL);
     CREATE TABLE IF NOT EXISTS superseded (
         hash TEXT PRIMARY KEY,
         name TEXT NOT NULL,
         valid_until INTEGER NOT NULL);";

impl KeyStore {
    pub fn open(path: Option<&Path>) -> Result<KeyStore, StoreError> {
        Ok(KeyStore {
            backend: Backend::Sqlite(Mutex::new(open_sqlite(path)?)),
            persistent: path.is_some(),
        })
    }

    /// The keys of the fleet's PostgreSQL (`store.kind: postgres`); `snapshot`: the local spool
    /// file, where the keys last read are kept for a start while the database is away.
    pub fn postgres(
        pg: std::sync::Arc<crate::store::Pg>,
        snapshot: Option<&Path>,
    ) -> Result<KeyStore, StoreError> {
        let snapshot = match snapshot {
            Some(path) => Some(Snapshot {
                conn: Mutex::new(open_sqlite(Some(path))?),
                saved: Mutex::new(None),
                saved_policies: Mutex::new(None),
            }),
            None => None,
        };
        Ok(KeyStore {
            backend: Backend::Postgres { pg, snapshot },
            persistent: true,
        })
    }

    pub(super) fn conn(&self) -> Result<Option<std::sync::MutexGuard<'_, Connection>>, StoreError> {
        match &self.backend {
            Backend::Sqlite(c) => c.lock().map(Some).map_err(|_| StoreError::Poisoned),
            Backend::Postgres { .. } => Ok(None),
        }
    }

    pub(super) fn pg(&self) -> Option<&std::sync::Arc<crate::store::Pg>> {
        match &self.backend {
            Backend::Postgres { pg, .. } => Some(pg),
            Backend::Sqlite(_) => None,
        }
    }

    /// The rows of a PostgreSQL store, saved to its snapshot; while the database is away, the
    /// snapshot's (the keys this replica last knew).
    fn load_postgres(
        pg: &std::sync::Arc<crate::store::Pg>,
        snapshot: Option<&Snapshot>,
    ) -> Result<(Vec<RawKey>, Vec<RawSuperseded>), StoreError> {
        let p = pg.clone();
        match pg.call(async move { crate::store::keys::load(&p).await }) {
            Ok((keys, superseded)) => {
                if let Some(s) = snapshot {
                    if let Err(e) = s.save(&keys, &superseded) {
                        log::warn!("the local copy of the keys was not updated: {e}");
                    }
                }
                Ok((keys, superseded))
            }
            Err(e) => match snapshot {
                Some(s) => {
                    log::warn!("{e}: serving the keys last read from it (the local spool file)");
                    s.load()
                }
                None => Err(e.into()),
            },
        }
    }

    /// The key policies (name, JSON) of a PostgreSQL store, saved to its snapshot like the
    /// keys and read from it while the database is away; `None` for an embedded store.
    pub(super) fn postgres_policies(&self) -> Option<Result<Vec<(String, String)>, StoreError>> {
        let Backend::Postgres { pg, snapshot } = &self.backend else {
            return None;
        };
        let p = pg.clone();
        Some(
            match pg.call(async move { crate::store::keys::policies(&p).await }) {
                Ok(rows) => {
                    if let Some(s) = snapshot {
                        if let Err(e) = s.save_policies(&rows) {
                            log::warn!("the local copy of the key policies was not updated: {e}");
                        }
                    }
                    Ok(rows)
                }
                Err(e) => match snapshot {
                    Some(s) => s.load_policies(),
                    None => Err(e.into()),
                },
            },
        )
    }

    pub fn load(&self) -> Result<(Vec<StoredKey>, Vec<Superseded>), StoreError> {
        let (keys, superseded) = match &self.backend {
            Backend::Postgres { pg, snapshot } => Self::load_postgres(pg, snapshot.as_ref())?,
            Backend::Sqlite(c) => load_sqlite(&*c.lock().map_err(|_| StoreError::Poisoned)?)?,
        };
        let keys = keys
            .into_iter()
            .map(RawKey::decode)
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = Vec::with_capacity(superseded.len());
        for s in superseded {
            let hash =
                parse_hash_hex(&s.hash).ok_or_else(|| StoreError::Corrupt(s.name.clone()))?;
            out.push(Superseded {
                hash,
                name: s.name,
                valid_until: s.valid_until.max(0) as u64,
            });
        }
        Ok((keys, out))
    }

    pub fn insert(&self, hash: &KeyHash, rec: &KeyRecord) -> Result<(), StoreError> {
        let raw = RawKey::new(hash, rec);
        if let Some(pg) = self.pg() {
            let p = pg.clone();
            return Ok(pg.call(async move { crate::store::keys::insert(&p, &raw).await })?);
        }
        let Some(conn) = self.conn()? else {
            return Err(StoreError::Poisoned);
        };
        insert_sqlite(&conn, &raw)?;
        Ok(())
    }

    /// Records an admin action in the fleet's audit trail (PostgreSQL only: the embedded store's
    /// trail is the audit log file).
    pub fn audit(&self, entry: crate::store::audit::Entry) -> Result<(), StoreError> {
        if let Some(pg) = self.pg() {
            pg.run(move |p| async move { crate::store::audit::insert(&p, &entry).await })?;
        }
        Ok(())
    }

    /// Marks a key revoked. Returns false when no such stored key exists.
    pub fn revoke(&self, name: &str) -> Result<bool, StoreError> {
        if let Some(pg) = self.pg() {
            let (p, name) = (pg.clone(), name.to_string());
            return Ok(pg.call(async move { crate::store::keys::revoke(&p, &name).await })?);
        }
        let Some(conn) = self.conn()? else {
            return Err(StoreError::Poisoned);
        };
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
        if let Some(pg) = self.pg() {
            let (p, name, hash) = (pg.clone(), name.to_string(), hash_hex(new_hash));
            return Ok(pg.call(async move {
                crate::store::keys::rotate(&p, &name, &hash, valid_until as i64).await
            })?);
        }
        let Some(mut conn) = self.conn()? else {
            return Err(StoreError::Poisoned);
        };
        // Immediate: the write lock is taken (waiting up to rusqlite's 5 s busy timeout) before
        // the read. A deferred transaction that reads first fails at once with SQLITE_BUSY when
        // another connection to the file (the ledger writer) committed in between: no busy
        // handler can mend a stale read snapshot.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
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

/// An embedded store's connection (in memory without a path), its tables created.
fn open_sqlite(path: Option<&Path>) -> Result<Connection, StoreError> {
    let conn = match path {
        Some(p) => Connection::open(p)?,
        None => Connection::open_in_memory()?,
    };
    conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")?;
    conn.execute_batch(SQLITE_SCHEMA)?;
    conn.execute(super::policy::TABLE, [])?;
    Ok(conn)
}

/// Every key and superseded secret of an embedded store (also what `switchyard migrate --from
/// sqlite:PATH` copies).
pub fn load_sqlite(conn: &Connection) -> rusqlite::Result<(Vec<RawKey>, Vec<RawSuperseded>)> {
    let mut stmt = conn.prepare(
        "SELECT name, hash, team, project, models, expires, ip_allow, metadata, revoked, created FROM keys",
    )?;
    let keys = stmt
        .query_map([], |r| {
            Ok(RawKey {
                name: r.get(0)?,
                hash: r.get(1)?,
                team: r.get(2)?,
                project: r.get(3)?,
                models: r.get(4)?,
                expires: r.get(5)?,
                ip_allow: r.get(6)?,
                metadata: r.get(7)?,
                revoked: r.get::<_, i64>(8)? != 0,
                created: r.get(9)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut stmt = conn.prepare("SELECT hash, name, valid_until FROM superseded")?;
    let superseded = stmt
        .query_map([], |r| {
            Ok(RawSuperseded {
                hash: r.get(0)?,
                name: r.get(1)?,
                valid_until: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok((keys, superseded))
}

fn insert_sqlite(conn: &Connection, k: &RawKey) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO keys (name, hash, team, project, models, expires, ip_allow, metadata, revoked, created)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            k.name, k.hash, k.team, k.project, k.models, k.expires, k.ip_allow, k.metadata,
            k.revoked as i64, k.created,
        ],
    )?;
    Ok(())
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

    /// A directory of this process's own and an absent `state.db` path in it.
    fn fresh_db(tag: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("{tag}{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.db");
        let _ = std::fs::remove_file(&path);
        (dir, path)
    }

    #[test]
    fn keys_round_trip_and_rotate() {
        let (dir, path) = fresh_db("sy-store-");
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

    /// The ledger writer commits to the same file between a rotation's read and its writes: the
    /// rotation waits for the lock instead of failing with SQLITE_BUSY (seen as a 500 in CI).
    #[test]
    fn rotation_survives_another_writer_on_the_same_file() {
        let (dir, path) = fresh_db("sy-store-busy-");
        let s = KeyStore::open(Some(&path)).unwrap();
        s.insert(&hash_key("a-secret"), &rec("a")).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (started, writing) = std::sync::mpsc::channel();
        let writer = {
            let (path, stop) = (path.clone(), stop.clone());
            std::thread::spawn(move || {
                let conn = Connection::open(&path).unwrap();
                conn.execute_batch("CREATE TABLE IF NOT EXISTS other (n INTEGER)")
                    .unwrap();
                started.send(()).unwrap();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // Holds the write lock a while, as a batch of ledger rows does, then leaves
                    // a gap as the ledger's flush interval does (a writer that never lets go
                    // would starve any other, whose busy handler sleeps between its checks).
                    conn.execute_batch("BEGIN IMMEDIATE; INSERT INTO other (n) VALUES (1)")
                        .unwrap();
                    std::thread::sleep(std::time::Duration::from_micros(500));
                    conn.execute_batch("COMMIT").unwrap();
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
            })
        };
        writing.recv().unwrap();
        for i in 0..500 {
            let hash = hash_key(&format!("a-secret-{i}"));
            assert!(s.rotate("a", &hash, 1234).unwrap(), "rotation {i}");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
