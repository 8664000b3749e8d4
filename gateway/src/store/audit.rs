//! The admin API's audit trail in PostgreSQL (`store.kind: postgres`): every key created, rotated
//! or revoked — and every refusal of such a call — one row in `audit_log`, whichever replica
//! took it, beside the per-replica audit log file. It owns this table only.

use super::{Pg, PgError};

/// One admin action.
pub struct Entry {
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub client: Option<String>,
    pub outcome: String,
}

pub async fn insert(pg: &Pg, e: &Entry) -> Result<(), PgError> {
    pg.client()
        .await?
        .execute(
            "INSERT INTO audit_log (replica, actor, action, target, client, outcome)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &pg.replica,
                &e.actor,
                &e.action,
                &e.target,
                &e.client,
                &e.outcome,
            ],
        )
        .await?;
    Ok(())
}
