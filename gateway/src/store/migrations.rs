//! The PostgreSQL schema as versioned, additive migrations, applied at start and by
//! `switchyard migrate`. A migration is never edited or removed once released: a change is a new
//! version (`ALTER TABLE … ADD COLUMN`, a new table or index), so an older replica keeps running
//! beside a newer one during a rolling upgrade. Replicas starting together serialise on an
//! advisory lock. It owns `schema_migrations` and the DDL, nothing else.

use super::PgError;
use tokio_postgres::Client;

/// `(version, what it adds, SQL)`, in order.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "runtime keys, superseded secrets, the spend ledger",
        "CREATE TABLE keys (
             name TEXT PRIMARY KEY,
             hash TEXT NOT NULL UNIQUE,
             team TEXT, project TEXT,
             models TEXT, expires BIGINT, ip_allow TEXT, metadata TEXT,
             revoked BOOLEAN NOT NULL DEFAULT false,
             created BIGINT NOT NULL);
         CREATE TABLE superseded (
             hash TEXT PRIMARY KEY,
             name TEXT NOT NULL,
             valid_until BIGINT NOT NULL);
         CREATE TABLE ledger (
             ts_ms BIGINT NOT NULL,
             request_id TEXT NOT NULL,
             replica TEXT NOT NULL DEFAULT '',
             key TEXT, team TEXT, project TEXT, \"user\" TEXT,
             model TEXT, provider TEXT, deployment TEXT,
             tokens_in BIGINT NOT NULL, tokens_out BIGINT NOT NULL, tokens_cached BIGINT NOT NULL,
             cost_nanos BIGINT NOT NULL, estimated BOOLEAN NOT NULL,
             status INTEGER NOT NULL, tags TEXT, endpoint TEXT,
             CONSTRAINT ledger_once UNIQUE (request_id, replica, ts_ms));
         CREATE INDEX ledger_ts ON ledger (ts_ms);",
    ),
    (
        2,
        "key changes notify every replica (LISTEN switchyard_keys)",
        "CREATE FUNCTION switchyard_keys_changed() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN PERFORM pg_notify('switchyard_keys', TG_TABLE_NAME); RETURN NULL; END $$;
         CREATE TRIGGER keys_changed AFTER INSERT OR UPDATE OR DELETE ON keys
             FOR EACH STATEMENT EXECUTE FUNCTION switchyard_keys_changed();
         CREATE TRIGGER superseded_changed AFTER INSERT OR UPDATE OR DELETE ON superseded
             FOR EACH STATEMENT EXECUTE FUNCTION switchyard_keys_changed();",
    ),
    (
        3,
        "stored Responses API responses",
        "CREATE TABLE responses (
             id TEXT PRIMARY KEY,
             owner TEXT NOT NULL,
             created_ms BIGINT NOT NULL,
             expires_ms BIGINT NOT NULL,
             input TEXT NOT NULL,
             response TEXT NOT NULL);
         CREATE INDEX responses_expires ON responses (expires_ms);",
    ),
    (
        4,
        "the events outbox, one for the fleet",
        "CREATE TABLE events_outbox (
             event_id TEXT NOT NULL,
             sink_url TEXT NOT NULL,
             type TEXT NOT NULL,
             body BYTEA NOT NULL,
             created_ms BIGINT NOT NULL,
             attempts INTEGER NOT NULL DEFAULT 0,
             next_at_ms BIGINT NOT NULL,
             state TEXT NOT NULL DEFAULT 'pending',
             last_error TEXT,
             PRIMARY KEY (event_id, sink_url));
         CREATE INDEX events_outbox_due ON events_outbox (state, next_at_ms);",
    ),
    (
        5,
        "the admin API's audit trail",
        "CREATE TABLE audit_log (
             id BIGSERIAL PRIMARY KEY,
             ts TIMESTAMPTZ NOT NULL DEFAULT now(),
             replica TEXT NOT NULL,
             actor TEXT NOT NULL,
             action TEXT NOT NULL,
             target TEXT,
             client TEXT,
             outcome TEXT NOT NULL);
         CREATE INDEX audit_log_ts ON audit_log (ts);",
    ),
    (
        6,
        "runtime keys' limits and budgets",
        "CREATE TABLE key_policies (name TEXT PRIMARY KEY, policy TEXT NOT NULL);
         CREATE TRIGGER key_policies_changed AFTER INSERT OR UPDATE OR DELETE ON key_policies
             FOR EACH STATEMENT EXECUTE FUNCTION switchyard_keys_changed();",
    ),
];

/// Any number: the advisory lock replicas take while they migrate.
const LOCK: i64 = 0x5377_6974_6368;

/// Applies the migrations this database lacks, in one transaction; returns their versions.
pub async fn apply(client: &mut Client) -> Result<Vec<i32>, PgError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY,
             name TEXT NOT NULL,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .await?;
    let present: Vec<i32> = tx
        .query("SELECT version FROM schema_migrations", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        if present.contains(version) {
            continue;
        }
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await?;
        applied.push(*version);
    }
    if let Some(newer) = present.iter().filter(|v| **v > latest()).max() {
        log::warn!(
            "postgres: the schema is at version {newer}, newer than this build's {} (migrations are additive: running on)",
            latest()
        );
    }
    tx.commit().await?;
    Ok(applied)
}

/// The newest version this build knows.
pub fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}
