//! Runtime keys in PostgreSQL: the queries behind [`crate::identity::store::KeyStore`] with
//! `store.kind: postgres`. Every change fires `NOTIFY switchyard_keys` (a trigger, migration 2), on
//! which every replica reloads its index ([`super::listen`]). It owns these queries, not the
//! decoding of a row (the identity store does that, the same for SQLite).

use super::{Pg, PgError};
use crate::identity::store::{RawKey, RawSuperseded};

pub async fn load(pg: &Pg) -> Result<(Vec<RawKey>, Vec<RawSuperseded>), PgError> {
    let c = pg.client().await?;
    let keys = c
        .query(
            "SELECT name, hash, team, project, models, expires, ip_allow, metadata, revoked, created FROM keys",
            &[],
        )
        .await?
        .iter()
        .map(|r| RawKey {
            name: r.get(0),
            hash: r.get(1),
            team: r.get(2),
            project: r.get(3),
            models: r.get(4),
            expires: r.get(5),
            ip_allow: r.get(6),
            metadata: r.get(7),
            revoked: r.get(8),
            created: r.get(9),
        })
        .collect();
    let superseded = c
        .query("SELECT hash, name, valid_until FROM superseded", &[])
        .await?
        .iter()
        .map(|r| RawSuperseded {
            hash: r.get(0),
            name: r.get(1),
            valid_until: r.get(2),
        })
        .collect();
    Ok((keys, superseded))
}

/// Inserts a key; a name already taken is an error (as in SQLite), `skip_existing` makes it a
/// no-op instead (copying from an embedded store). Returns whether a row was written.
async fn insert_row(
    c: &tokio_postgres::Client,
    k: &RawKey,
    skip_existing: bool,
) -> Result<bool, PgError> {
    let sql = if skip_existing {
        "INSERT INTO keys (name, hash, team, project, models, expires, ip_allow, metadata, revoked, created)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING"
    } else {
        "INSERT INTO keys (name, hash, team, project, models, expires, ip_allow, metadata, revoked, created)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    };
    let n = c
        .execute(
            sql,
            &[
                &k.name,
                &k.hash,
                &k.team,
                &k.project,
                &k.models,
                &k.expires,
                &k.ip_allow,
                &k.metadata,
                &k.revoked,
                &k.created,
            ],
        )
        .await?;
    Ok(n > 0)
}

pub async fn insert(pg: &Pg, k: &RawKey) -> Result<(), PgError> {
    insert_row(&*pg.client().await?, k, false).await.map(|_| ())
}

/// Copies keys and superseded secrets, keeping any name or hash the database already has;
/// returns how many keys were new.
pub async fn copy(pg: &Pg, keys: &[RawKey], superseded: &[RawSuperseded]) -> Result<u64, PgError> {
    let c = pg.client().await?;
    let mut n = 0;
    for k in keys {
        n += insert_row(&c, k, true).await? as u64;
    }
    for s in superseded {
        c.execute(
            "INSERT INTO superseded (hash, name, valid_until) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
            &[&s.hash, &s.name, &s.valid_until],
        )
        .await?;
    }
    Ok(n)
}

pub async fn revoke(pg: &Pg, name: &str) -> Result<bool, PgError> {
    let c = pg.client().await?;
    let n = c
        .execute("UPDATE keys SET revoked = true WHERE name = $1", &[&name])
        .await?;
    c.execute("DELETE FROM superseded WHERE name = $1", &[&name])
        .await?;
    Ok(n > 0)
}

pub async fn rotate(pg: &Pg, name: &str, hash: &str, valid_until: i64) -> Result<bool, PgError> {
    let mut c = pg.connect().await?;
    let tx = c.transaction().await?;
    let Some(old) = tx
        .query_opt(
            "SELECT hash FROM keys WHERE name = $1 AND NOT revoked FOR UPDATE",
            &[&name],
        )
        .await?
    else {
        return Ok(false);
    };
    let old: String = old.get(0);
    tx.execute(
        "INSERT INTO superseded (hash, name, valid_until) VALUES ($1, $2, $3)
         ON CONFLICT (hash) DO UPDATE SET name = EXCLUDED.name, valid_until = EXCLUDED.valid_until",
        &[&old, &name, &valid_until],
    )
    .await?;
    tx.execute("UPDATE keys SET hash = $1 WHERE name = $2", &[&hash, &name])
        .await?;
    tx.commit().await?;
    Ok(true)
}

/// Keeps a runtime key's policy (limits, budget) as JSON text, replacing any earlier one.
pub async fn set_policy(pg: &Pg, name: &str, policy: &str) -> Result<(), PgError> {
    pg.client()
        .await?
        .execute(
            "INSERT INTO key_policies (name, policy) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET policy = EXCLUDED.policy",
            &[&name, &policy],
        )
        .await?;
    Ok(())
}

/// The policies of the runtime keys that are not revoked, by name.
pub async fn policies(pg: &Pg) -> Result<Vec<(String, String)>, PgError> {
    let rows = pg
        .client()
        .await?
        .query(
            "SELECT p.name, p.policy FROM key_policies p JOIN keys k ON k.name = p.name
             WHERE NOT k.revoked ORDER BY p.name",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
