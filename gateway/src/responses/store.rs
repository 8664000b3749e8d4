//! The `responses` table of the gateway's SQLite store: each stored Responses API response (its
//! input items, the earlier turns' history included, and the `response` object) under its
//! owner, until it expires. Schema changes are numbered migrations recorded in
//! `responses_schema` and only ever add (never drop or rewrite what a previous version stored).
//!
//! With `store.kind: postgres` the same rows live in the fleet's database
//! ([`crate::store::responses`]), so a follow-up turn may land on any replica.
//!
//! Blocking: callers run it off the request path (`spawn_blocking`). It must not touch the other
//! tables of the same database (keys, ledger).

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;
use std::path::Path;
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("responses store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("responses store: a stored row is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("responses store: the connection lock is poisoned")]
    Poisoned,
    #[error("responses store: {0}")]
    Postgres(#[from] crate::store::PgError),
}

/// Numbered migrations, applied in order once each.
const MIGRATIONS: &[&str] = &["CREATE TABLE IF NOT EXISTS responses (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL,
        input TEXT NOT NULL,
        response TEXT NOT NULL);
     CREATE INDEX IF NOT EXISTS responses_expires ON responses (expires_ms);"];

/// One stored response.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    pub id: String,
    pub owner: String,
    pub created_ms: u64,
    pub expires_ms: u64,
    /// Input items: the earlier turns' items and outputs, then this request's input.
    pub input: Vec<Value>,
    /// The `response` object as answered.
    pub response: Value,
}

impl StoredResponse {
    /// The conversation so far, as the input of a following turn: input items then output.
    pub fn history(&self) -> Vec<Value> {
        let mut items = self.input.clone();
        if let Some(out) = self.response.get("output").and_then(Value::as_array) {
            items.extend(out.iter().cloned());
        }
        items
    }
}

pub struct ResponseStore {
    conn: Mutex<Connection>,
    /// `store.kind: postgres`: the rows live there (`conn` then stays an unused in-memory one).
    pg: Option<std::sync::Arc<crate::store::Pg>>,
}

impl ResponseStore {
    /// Opens (creating and migrating) the table at `path`, in memory when `None`.
    pub fn open(path: Option<&Path>) -> Result<ResponseStore, StoreError> {
        let mut conn = match path {
            Some(p) => Connection::open(p)?,
            None => Connection::open_in_memory()?,
        };
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let tx = conn.transaction()?;
        tx.execute_batch("CREATE TABLE IF NOT EXISTS responses_schema (version INTEGER NOT NULL)")?;
        let version: i64 = tx.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM responses_schema",
            [],
            |r| r.get(0),
        )?;
        for (i, sql) in MIGRATIONS.iter().enumerate() {
            let v = i as i64 + 1;
            if v > version {
                tx.execute_batch(sql)?;
                tx.execute("INSERT INTO responses_schema (version) VALUES (?1)", [v])?;
            }
        }
        tx.commit()?;
        Ok(ResponseStore {
            conn: Mutex::new(conn),
            pg: None,
        })
    }

    /// The responses in the fleet's PostgreSQL.
    pub fn postgres(pg: std::sync::Arc<crate::store::Pg>) -> Result<ResponseStore, StoreError> {
        Ok(ResponseStore {
            conn: Mutex::new(Connection::open_in_memory()?),
            pg: Some(pg),
        })
    }

    /// Whether other replicas write here too (PostgreSQL).
    pub fn is_shared(&self) -> bool {
        self.pg.is_some()
    }

    fn conn(&self) -> Result<std::sync::MutexGuard<'_, Connection>, StoreError> {
        self.conn.lock().map_err(|_| StoreError::Poisoned)
    }

    /// Stores (or replaces) a response, and sweeps the expired ones.
    pub fn put(&self, r: &StoredResponse) -> Result<(), StoreError> {
        if let Some(pg) = &self.pg {
            let row = crate::store::responses::Row {
                id: r.id.clone(),
                owner: r.owner.clone(),
                created_ms: r.created_ms as i64,
                expires_ms: r.expires_ms as i64,
                input: serde_json::to_string(&r.input)?,
                response: serde_json::to_string(&r.response)?,
            };
            return Ok(
                pg.run(move |p| async move { crate::store::responses::put(&p, &row).await })?
            );
        }
        let conn = self.conn()?;
        conn.execute(
            "INSERT OR REPLACE INTO responses (id, owner, created_ms, expires_ms, input, response)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                r.id,
                r.owner,
                r.created_ms as i64,
                r.expires_ms as i64,
                serde_json::to_string(&r.input)?,
                serde_json::to_string(&r.response)?,
            ],
        )?;
        conn.execute(
            "DELETE FROM responses WHERE expires_ms <= ?1",
            [r.created_ms as i64],
        )?;
        Ok(())
    }

    /// The caller's unexpired response `id`.
    pub fn get(
        &self,
        id: &str,
        owner: &str,
        now_ms: u64,
    ) -> Result<Option<StoredResponse>, StoreError> {
        if let Some(pg) = &self.pg {
            let (i, o) = (id.to_string(), owner.to_string());
            let found = pg.run(move |p| async move {
                crate::store::responses::get(&p, &i, &o, now_ms as i64).await
            })?;
            let Some(r) = found else {
                return Ok(None);
            };
            return Ok(Some(StoredResponse {
                id: r.id,
                owner: r.owner,
                created_ms: r.created_ms.max(0) as u64,
                expires_ms: r.expires_ms.max(0) as u64,
                input: serde_json::from_str(&r.input)?,
                response: serde_json::from_str(&r.response)?,
            }));
        }
        let conn = self.conn()?;
        let row = conn
            .query_row(
                "SELECT created_ms, expires_ms, input, response FROM responses
                 WHERE id = ?1 AND owner = ?2 AND expires_ms > ?3",
                params![id, owner, now_ms as i64],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                    ))
                },
            )
            .optional()?;
        let Some((created, expires, input, response)) = row else {
            return Ok(None);
        };
        Ok(Some(StoredResponse {
            id: id.to_string(),
            owner: owner.to_string(),
            created_ms: created as u64,
            expires_ms: expires as u64,
            input: serde_json::from_str(&input)?,
            response: serde_json::from_str(&response)?,
        }))
    }

    /// Deletes the caller's response `id`; whether there was one.
    pub fn delete(&self, id: &str, owner: &str, now_ms: u64) -> Result<bool, StoreError> {
        if let Some(pg) = &self.pg {
            let (i, o) = (id.to_string(), owner.to_string());
            return Ok(pg.run(move |p| async move {
                crate::store::responses::delete(&p, &i, &o, now_ms as i64).await
            })?);
        }
        let n = self.conn()?.execute(
            "DELETE FROM responses WHERE id = ?1 AND owner = ?2 AND expires_ms > ?3",
            params![id, owner, now_ms as i64],
        )?;
        Ok(n > 0)
    }

    /// Rows still in the table (expired ones included until swept).
    pub fn rows(&self) -> Result<u64, StoreError> {
        if let Some(pg) = &self.pg {
            return Ok(pg.run(|p| async move { crate::store::responses::rows(&p).await })?);
        }
        let n: i64 = self
            .conn()?
            .query_row("SELECT COUNT(*) FROM responses", [], |r| r.get(0))?;
        Ok(n as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(id: &str, owner: &str, created: u64, expires: u64) -> StoredResponse {
        StoredResponse {
            id: id.into(),
            owner: owner.into(),
            created_ms: created,
            expires_ms: expires,
            input: vec![json!({"type": "message", "role": "user", "content": "hi"})],
            response: json!({"id": id, "output": [{"type": "message", "content": []}]}),
        }
    }

    #[test]
    fn rows_belong_to_their_owner_and_expire() {
        let s = ResponseStore::open(None).unwrap();
        s.put(&rec("resp_a", "team:a", 10, 100)).unwrap();
        assert!(s.get("resp_a", "team:b", 20).unwrap().is_none());
        let got = s.get("resp_a", "team:a", 20).unwrap().unwrap();
        assert_eq!(got.history().len(), 2);
        assert!(s.get("resp_a", "team:a", 100).unwrap().is_none());
        // A later write sweeps the expired row.
        s.put(&rec("resp_b", "team:a", 200, 300)).unwrap();
        assert_eq!(s.rows().unwrap(), 1);
        assert!(!s.delete("resp_b", "team:b", 210).unwrap());
        assert!(s.delete("resp_b", "team:a", 210).unwrap());
        assert_eq!(s.rows().unwrap(), 0);
    }

    #[test]
    fn reopening_keeps_rows_and_applies_each_migration_once() {
        let dir = std::env::temp_dir().join(format!("sy-responses-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.db");
        let _ = std::fs::remove_file(&path);
        ResponseStore::open(Some(&path))
            .unwrap()
            .put(&rec("resp_a", "o", 1, u64::MAX >> 2))
            .unwrap();
        let s = ResponseStore::open(Some(&path)).unwrap();
        assert!(s.get("resp_a", "o", 2).unwrap().is_some());
        let versions: i64 = s
            .conn()
            .unwrap()
            .query_row("SELECT COUNT(*) FROM responses_schema", [], |r| r.get(0))
            .unwrap();
        assert_eq!(versions, MIGRATIONS.len() as i64);
        drop(s);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
