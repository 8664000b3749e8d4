//! The events outbox: one row per (event, receiver) in the store's SQLite file (in memory when
//! `store.path` is unset: then nothing survives a restart), created by a versioned migration
//! recorded in `switchyard_migrations`. Rows stay after delivery (marked), so a once-only event
//! raised again is not sent again; they are pruned after 30 days. Owns this table only.
//!
//! With `store.kind: postgres` the table is the fleet's ([`crate::store::outbox`]): an event
//! raised by every replica (`budget.soft` for a shared budget) is stored — and sent — once, and
//! a replica claims the rows it sends so two never send the same one.

use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::time::Duration;

/// Migrations, in order: (name, SQL). A name is applied once per database.
const MIGRATIONS: [(&str, &str); 1] = [(
    "events_outbox_v1",
    "CREATE TABLE events_outbox (
        event_id TEXT NOT NULL,
        sink_url TEXT NOT NULL,
        type TEXT NOT NULL,
        body BLOB NOT NULL,
        created_ms INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at_ms INTEGER NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        last_error TEXT,
        PRIMARY KEY (event_id, sink_url)
    );
    CREATE INDEX events_outbox_due ON events_outbox (state, next_at_ms);",
)];

/// How long delivered and abandoned rows are kept.
const KEEP: Duration = Duration::from_secs(30 * 86_400);

/// A row to deliver.
#[derive(Debug)]
pub struct Due {
    pub event_id: String,
    pub sink_url: String,
    pub body: Vec<u8>,
    pub created_ms: i64,
    pub attempts: u32,
}

pub struct Outbox {
    conn: Connection,
    /// The fleet's PostgreSQL (then `conn` is an unused in-memory database).
    pg: Option<std::sync::Arc<crate::store::Pg>>,
}

/// Why the outbox could not answer.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    Postgres(#[from] crate::store::PgError),
}

impl Outbox {
    /// The outbox in the fleet's PostgreSQL.
    pub fn postgres(pg: std::sync::Arc<crate::store::Pg>) -> rusqlite::Result<Outbox> {
        Ok(Outbox {
            conn: Connection::open_in_memory()?,
            pg: Some(pg),
        })
    }

    pub fn open(path: Option<&Path>) -> rusqlite::Result<Outbox> {
        let conn = match path {
            Some(p) => Connection::open(p)?,
            None => Connection::open_in_memory()?,
        };
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE IF NOT EXISTS switchyard_migrations (
                name TEXT PRIMARY KEY, applied_unix_ms INTEGER NOT NULL);",
        )?;
        for (name, sql) in MIGRATIONS {
            let applied: Option<i64> = conn
                .query_row(
                    "SELECT applied_unix_ms FROM switchyard_migrations WHERE name = ?1",
                    [name],
                    |r| r.get(0),
                )
                .optional()?;
            if applied.is_none() {
                let tx = conn.unchecked_transaction()?;
                tx.execute_batch(sql)?;
                tx.execute(
                    "INSERT INTO switchyard_migrations (name, applied_unix_ms) VALUES (?1, ?2)",
                    params![name, crate::clock::unix_ms() as i64],
                )?;
                tx.commit()?;
            }
        }
        Ok(Outbox { conn, pg: None })
    }

    /// Stores an event for a receiver, due now; an id already stored is left as it is.
    pub fn insert(
        &self,
        event_id: &str,
        sink_url: &str,
        kind: &str,
        body: &[u8],
        now_ms: i64,
    ) -> Result<bool, OutboxError> {
        if let Some(pg) = &self.pg {
            let row = crate::store::outbox::NewRow {
                event_id: event_id.to_string(),
                sink_url: sink_url.to_string(),
                kind: kind.to_string(),
                body: body.to_vec(),
                now_ms,
            };
            return Ok(
                pg.run(move |p| async move { crate::store::outbox::insert(&p, &row).await })?
            );
        }
        let n = self.conn.execute(
            "INSERT OR IGNORE INTO events_outbox (event_id, sink_url, type, body, created_ms, next_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            params![event_id, sink_url, kind, body, now_ms],
        )?;
        Ok(n > 0)
    }

    /// Pending rows due by `now_ms`, oldest first (in PostgreSQL: claimed by this replica for a
    /// while, so no other sends them meanwhile).
    pub fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<Due>, OutboxError> {
        if let Some(pg) = &self.pg {
            return Ok(pg.run(move |p| async move {
                crate::store::outbox::claim_due(&p, now_ms, limit as i64).await
            })?);
        }
        let mut stmt = self.conn.prepare_cached(
            "SELECT event_id, sink_url, body, created_ms, attempts FROM events_outbox
             WHERE state = 'pending' AND next_at_ms <= ?1 ORDER BY next_at_ms LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![now_ms, limit as i64], |r| {
            Ok(Due {
                event_id: r.get(0)?,
                sink_url: r.get(1)?,
                body: r.get(2)?,
                created_ms: r.get(3)?,
                attempts: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn delivered(&self, d: &Due) -> Result<(), OutboxError> {
        if let Some(pg) = &self.pg {
            let (id, url) = (d.event_id.clone(), d.sink_url.clone());
            return Ok(pg.run(move |p| async move {
                crate::store::outbox::settle(&p, &id, &url, None, None).await
            })?);
        }
        self.conn.execute(
            "UPDATE events_outbox SET state = 'delivered', attempts = attempts + 1, last_error = NULL
             WHERE event_id = ?1 AND sink_url = ?2",
            params![d.event_id, d.sink_url],
        )?;
        Ok(())
    }

    /// A failed try: due again at `next_ms`, or abandoned when `next_ms` is `None`.
    pub fn failed(&self, d: &Due, error: &str, next_ms: Option<i64>) -> Result<(), OutboxError> {
        if let Some(pg) = &self.pg {
            let (id, url, error) = (d.event_id.clone(), d.sink_url.clone(), error.to_string());
            return Ok(pg.run(move |p| async move {
                crate::store::outbox::settle(&p, &id, &url, Some(&error), next_ms).await
            })?);
        }
        self.conn.execute(
            "UPDATE events_outbox SET attempts = attempts + 1, last_error = ?3,
                 next_at_ms = COALESCE(?4, next_at_ms),
                 state = CASE WHEN ?4 IS NULL THEN 'abandoned' ELSE 'pending' END
             WHERE event_id = ?1 AND sink_url = ?2",
            params![d.event_id, d.sink_url, error, next_ms],
        )?;
        Ok(())
    }

    /// Drops finished rows older than [`KEEP`].
    pub fn prune(&self, now_ms: i64) -> Result<usize, OutboxError> {
        let before = now_ms - KEEP.as_millis() as i64;
        if let Some(pg) = &self.pg {
            return Ok(
                pg.run(move |p| async move { crate::store::outbox::prune(&p, before).await })?
            );
        }
        Ok(self.conn.execute(
            "DELETE FROM events_outbox WHERE state <> 'pending' AND created_ms < ?1",
            [before],
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_stored_once_retried_and_marked() {
        let dir = std::env::temp_dir().join(format!("sy-outbox-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("o.db");
        let _ = std::fs::remove_file(&path);
        let o = Outbox::open(Some(&path)).unwrap();
        assert!(o.insert("e1", "http://a", "t", b"{}", 1000).unwrap());
        assert!(!o.insert("e1", "http://a", "t", b"{}", 1001).unwrap());
        let due = o.due(1000, 10).unwrap();
        assert_eq!(due.len(), 1);
        o.failed(&due[0], "500", Some(3000)).unwrap();
        assert!(o.due(2999, 10).unwrap().is_empty());
        let due = o.due(3000, 10).unwrap();
        assert_eq!(due[0].attempts, 1);
        o.delivered(&due[0]).unwrap();
        assert!(o.due(i64::MAX, 10).unwrap().is_empty());
        drop(o);
        // Reopening applies no migration twice and keeps the rows.
        let o = Outbox::open(Some(&path)).unwrap();
        assert!(!o.insert("e1", "http://a", "t", b"{}", 5000).unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
