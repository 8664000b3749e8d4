//! Stored Responses API responses in PostgreSQL: the queries behind
//! [`crate::responses::store::ResponseStore`] with `store.kind: postgres`, so a follow-up turn
//! (`previous_response_id`) or a `GET /v1/responses/{id}` may reach any replica. It owns these
//! queries, not the JSON inside a row (the responses store encodes and decodes it).

use super::{Pg, PgError};

/// One row as stored (JSON text for `input` and `response`).
pub struct Row {
    pub id: String,
    pub owner: String,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub input: String,
    pub response: String,
}

/// Stores (or replaces) a response, and sweeps the expired ones.
pub async fn put(pg: &Pg, r: &Row) -> Result<(), PgError> {
    let c = pg.client().await?;
    c.execute(
        "INSERT INTO responses (id, owner, created_ms, expires_ms, input, response)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (id) DO UPDATE SET owner = EXCLUDED.owner, created_ms = EXCLUDED.created_ms,
             expires_ms = EXCLUDED.expires_ms, input = EXCLUDED.input, response = EXCLUDED.response",
        &[&r.id, &r.owner, &r.created_ms, &r.expires_ms, &r.input, &r.response],
    )
    .await?;
    c.execute(
        "DELETE FROM responses WHERE expires_ms <= $1",
        &[&r.created_ms],
    )
    .await?;
    Ok(())
}

pub async fn get(pg: &Pg, id: &str, owner: &str, now_ms: i64) -> Result<Option<Row>, PgError> {
    let row = pg
        .client()
        .await?
        .query_opt(
            "SELECT created_ms, expires_ms, input, response FROM responses
             WHERE id = $1 AND owner = $2 AND expires_ms > $3",
            &[&id, &owner, &now_ms],
        )
        .await?;
    Ok(row.map(|r| Row {
        id: id.to_string(),
        owner: owner.to_string(),
        created_ms: r.get(0),
        expires_ms: r.get(1),
        input: r.get(2),
        response: r.get(3),
    }))
}

pub async fn delete(pg: &Pg, id: &str, owner: &str, now_ms: i64) -> Result<bool, PgError> {
    let n = pg
        .client()
        .await?
        .execute(
            "DELETE FROM responses WHERE id = $1 AND owner = $2 AND expires_ms > $3",
            &[&id, &owner, &now_ms],
        )
        .await?;
    Ok(n > 0)
}

pub async fn rows(pg: &Pg) -> Result<u64, PgError> {
    let r = pg
        .client()
        .await?
        .query_one("SELECT COUNT(*) FROM responses", &[])
        .await?;
    Ok(r.get::<_, i64>(0).max(0) as u64)
}
