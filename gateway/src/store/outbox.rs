//! The events outbox in PostgreSQL: the queries behind [`crate::ops::events::outbox::Outbox`] with
//! `store.kind: postgres`. One table for the fleet, keyed by (event id, receiver): an event every
//! replica raises under the same id (`budget.soft` of a shared budget, once per period) is
//! stored once; a replica claims the due rows it is about to send (`FOR UPDATE SKIP LOCKED`, then
//! pushed [`CLAIM`] ahead) so no other sends them meanwhile, and a replica that dies mid-send
//! leaves them to the others once the claim runs out. It owns these queries only.

use super::{Pg, PgError};
use crate::ops::events::outbox::Due;

/// How long a claimed row is left to the replica that claimed it.
const CLAIM_MS: i64 = 30_000;

/// An event for one receiver, due now.
pub struct NewRow {
    pub event_id: String,
    pub sink_url: String,
    pub kind: String,
    pub body: Vec<u8>,
    pub now_ms: i64,
}

/// Stores a row; an id already stored (by any replica) is left as it is. Whether it was new.
pub async fn insert(pg: &Pg, r: &NewRow) -> Result<bool, PgError> {
    let n = pg
        .client()
        .await?
        .execute(
            "INSERT INTO events_outbox (event_id, sink_url, type, body, created_ms, next_at_ms)
             VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT DO NOTHING",
            &[&r.event_id, &r.sink_url, &r.kind, &r.body, &r.now_ms],
        )
        .await?;
    Ok(n > 0)
}

/// Claims up to `limit` pending rows due by `now_ms`, oldest first.
pub async fn claim_due(pg: &Pg, now_ms: i64, limit: i64) -> Result<Vec<Due>, PgError> {
    let rows = pg
        .client()
        .await?
        .query(
            "UPDATE events_outbox o SET next_at_ms = $1 + $3
             FROM (SELECT event_id, sink_url FROM events_outbox
                   WHERE state = 'pending' AND next_at_ms <= $1
                   ORDER BY next_at_ms LIMIT $2 FOR UPDATE SKIP LOCKED) due
             WHERE o.event_id = due.event_id AND o.sink_url = due.sink_url
             RETURNING o.event_id, o.sink_url, o.body, o.created_ms, o.attempts",
            &[&now_ms, &limit, &CLAIM_MS],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Due {
            event_id: r.get(0),
            sink_url: r.get(1),
            body: r.get(2),
            created_ms: r.get(3),
            attempts: r.get::<_, i32>(4).max(0) as u32,
        })
        .collect())
}

/// Records a try: delivered (`error` `None`), due again at `next_ms`, or abandoned (`next_ms`
/// `None`).
pub async fn settle(
    pg: &Pg,
    event_id: &str,
    sink_url: &str,
    error: Option<&str>,
    next_ms: Option<i64>,
) -> Result<(), PgError> {
    let c = pg.client().await?;
    match error {
        None => {
            c.execute(
                "UPDATE events_outbox SET state = 'delivered', attempts = attempts + 1,
                     last_error = NULL WHERE event_id = $1 AND sink_url = $2",
                &[&event_id, &sink_url],
            )
            .await?
        }
        Some(e) => {
            c.execute(
                "UPDATE events_outbox SET attempts = attempts + 1, last_error = $3,
                     next_at_ms = COALESCE($4, next_at_ms),
                     state = CASE WHEN $4::bigint IS NULL THEN 'abandoned' ELSE 'pending' END
                 WHERE event_id = $1 AND sink_url = $2",
                &[&event_id, &sink_url, &e, &next_ms],
            )
            .await?
        }
    };
    Ok(())
}

/// Drops finished rows created before `before_ms`.
pub async fn prune(pg: &Pg, before_ms: i64) -> Result<usize, PgError> {
    let n = pg
        .client()
        .await?
        .execute(
            "DELETE FROM events_outbox WHERE state <> 'pending' AND created_ms < $1",
            &[&before_ms],
        )
        .await?;
    Ok(n as usize)
}
