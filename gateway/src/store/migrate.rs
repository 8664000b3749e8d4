//! Opening the fleet's database at start (migrations applied first) and `switchyard migrate`:
//! apply the migrations without serving, and with `--from sqlite:PATH` copy an embedded store's
//! keys and ledger into PostgreSQL (idempotent: run it twice, nothing is doubled). It owns these
//! two entry points, not the schema ([`super::migrations`]).

use super::{Pg, PgError};
use crate::config::Config;
use std::path::Path;
use std::sync::Arc;

/// Opens `url`'s database for this replica and brings its schema up to date. A database that
/// cannot be reached is not an error: the replica starts on its last known state (keys from the
/// local spool file, ledger rows spooled) and migrates on its first connection. One that answers
/// with an error (credentials, a failed migration) is.
pub fn open(url: &str, replica: &str) -> Result<Arc<Pg>, PgError> {
    let pg = Pg::open(url, replica)?;
    match pg.ping() {
        Ok(()) => Ok(pg),
        Err(e) if e.is_unreachable() => {
            log::warn!("{e}: starting without the database (keys last known, ledger rows spooled until it answers)");
            Ok(pg)
        }
        Err(e) => Err(e),
    }
}

/// What `migrate --from` copied.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Copied {
    pub keys: u64,
    pub ledger_rows: u64,
    /// Ledger rows the database already had (same request id).
    pub ledger_present: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("{0}")]
    Pg(#[from] PgError),
    #[error("cannot read {path}: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    #[error("store.kind must be postgres (with store.url) to migrate")]
    NotPostgres,
    #[error("--from expects sqlite:PATH")]
    From,
}

/// Copies the keys, superseded secrets and ledger of the embedded store at `path` into `pg`.
pub fn copy_sqlite(pg: &Arc<Pg>, path: &Path) -> Result<Copied, MigrateError> {
    let err = |source| MigrateError::Sqlite {
        path: path.display().to_string(),
        source,
    };
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(err)?;
    let has = |table: &str| -> Result<bool, MigrateError> {
        conn.query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [table],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n > 0)
        .map_err(err)
    };
    let mut copied = Copied::default();
    if has("keys")? {
        let (keys, superseded) = crate::identity::store::load_sqlite(&conn).map_err(err)?;
        let p = pg.clone();
        copied.keys = pg.call(async move { super::keys::copy(&p, &keys, &superseded).await })?;
    }
    if has("ledger")? {
        let mut after = 0;
        loop {
            let chunk = crate::governance::ledger::read_rows(&conn, after, 5_000).map_err(err)?;
            let Some(last) = chunk.last().map(|s| s.rowid) else {
                break;
            };
            after = last;
            let rows: Vec<_> = chunk.into_iter().map(|s| s.row).collect();
            let n = rows.len() as u64;
            let p = pg.clone();
            let new = pg.call(async move { super::ledger::insert(&p, &rows, &p.replica).await })?;
            copied.ledger_rows += new;
            copied.ledger_present += n - new;
        }
    }
    Ok(copied)
}

/// `switchyard migrate --conf FILE [--from sqlite:PATH]`.
pub fn command(cfg: &Config, from: Option<&str>) -> Result<String, MigrateError> {
    let url = cfg
        .store
        .postgres_url
        .as_deref()
        .ok_or(MigrateError::NotPostgres)?;
    // Unlike a serving replica's start, `migrate` needs the database now.
    let pg = Pg::open(url, &cfg.server.replica_id)?;
    pg.ping()?;
    let mut out = format!("schema at version {}", super::migrations::latest());
    if let Some(from) = from {
        let path = from.strip_prefix("sqlite:").ok_or(MigrateError::From)?;
        let c = copy_sqlite(&pg, Path::new(path))?;
        out.push_str(&format!(
            "\ncopied {} key(s) and {} ledger row(s) from {path} ({} row(s) were already there)",
            c.keys, c.ledger_rows, c.ledger_present
        ));
    }
    Ok(out)
}
