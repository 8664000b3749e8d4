//! The spend ledger in PostgreSQL: [`PgSink`] writes the ledger writer's batches (one multi-row
//! `INSERT … SELECT FROM UNNEST` per batch, idempotent on the request id), and keeps them in a
//! bounded local spool while the database is away — the spool file (`store.path`, a local ledger
//! table, committed before a strict response's last bytes) or memory — shipping them when it
//! returns. Also the fleet-wide totals behind the usage API and budgets. It owns the `ledger`
//! table's queries in PostgreSQL, not the writer loop (see [`crate::governance::ledger`]).

use super::{Pg, PgError};
use crate::governance::ledger::{self, GroupBy, LedgerRow, UsageTotals};
use prometheus::IntGauge;
use rusqlite::Connection;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Rows kept in memory while PostgreSQL is away and there is no spool file; past it the oldest
/// are dropped (and logged).
pub const MEMORY_SPOOL_ROWS: usize = 100_000;
/// Rows shipped from the spool file per statement.
const SHIP_CHUNK: usize = 2_000;
/// After a failed write, how long the writer spools without trying the database again.
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// Where the ledger writer's batches go with `store.kind: postgres`.
pub struct PgSink {
    pg: Arc<Pg>,
    /// The spool file (a local ledger table), when `store.path` is set.
    file: Option<Connection>,
    memory: VecDeque<LedgerRow>,
    /// Rows waiting in the spool (`switchyard_ledger_spooled_rows`).
    spooled: IntGauge,
    /// No write is tried before this (the database just failed).
    quiet_until: Option<Instant>,
}

impl PgSink {
    pub fn new(pg: Arc<Pg>, file: Option<Connection>, spooled: IntGauge) -> PgSink {
        let mut sink = PgSink {
            pg,
            file,
            memory: VecDeque::new(),
            spooled,
            quiet_until: None,
        };
        sink.count_file();
        sink
    }

    /// Writes `rows` (none: only ships the spool). Returns once they are in PostgreSQL or in the
    /// spool (the file is committed before this returns: what a strict response waits for).
    pub fn commit(&mut self, rows: &[LedgerRow]) {
        let quiet = self.quiet_until.is_some_and(|t| Instant::now() < t);
        if !quiet && self.ship(rows).is_ok() {
            self.quiet_until = None;
            return;
        }
        if !quiet {
            self.quiet_until = Some(Instant::now() + RETRY_AFTER);
        }
        self.spool(rows);
    }

    /// The memory spool, then `rows`, then the spool file, into PostgreSQL.
    fn ship(&mut self, rows: &[LedgerRow]) -> Result<(), PgError> {
        if !self.memory.is_empty() {
            let held: Vec<LedgerRow> = self.memory.iter().cloned().collect();
            self.insert(held)?;
            self.spooled.sub(self.memory.len() as i64);
            self.memory.clear();
        }
        if !rows.is_empty() {
            self.insert(rows.to_vec())?;
        }
        while let Some(conn) = self.file.as_ref() {
            let chunk = ledger::read_rows(conn, 0, SHIP_CHUNK).map_err(spool_error)?;
            let Some(last) = chunk.last().map(|s| s.rowid) else {
                break;
            };
            let n = chunk.len();
            // Each row goes in under the replica that spooled it (a file another process — an
            // upgrade's successor, or a replica wrongly given the same `store.path` — also
            // ships), so the (request id, replica, time) constraint still sees one row.
            let mut runs: Vec<(Option<String>, Vec<LedgerRow>)> = Vec::new();
            for s in chunk {
                match runs.last_mut() {
                    Some((replica, rows)) if *replica == s.replica => rows.push(s.row),
                    _ => runs.push((s.replica, vec![s.row])),
                }
            }
            for (replica, rows) in runs {
                self.insert_as(rows, replica)?;
            }
            // Shipped before deleted: a crash between the two ships them again, which the
            // request-id constraint turns into a no-op.
            conn.execute("DELETE FROM ledger WHERE rowid <= ?1", [last])
                .map_err(spool_error)?;
            self.spooled.sub(n as i64);
            if n < SHIP_CHUNK {
                break;
            }
        }
        Ok(())
    }

    fn insert(&self, rows: Vec<LedgerRow>) -> Result<(), PgError> {
        self.insert_as(rows, None)
    }

    /// Inserts `rows` as written by `replica` (None: this one).
    fn insert_as(&self, rows: Vec<LedgerRow>, replica: Option<String>) -> Result<(), PgError> {
        let pg = self.pg.clone();
        self.pg.call(async move {
            let replica = replica.as_deref().unwrap_or(&pg.replica);
            insert(&pg, &rows, replica).await.map(|_| ())
        })
    }

    fn spool(&mut self, rows: &[LedgerRow]) {
        if rows.is_empty() {
            return;
        }
        if let Some(conn) = self.file.as_mut() {
            match ledger::commit(conn, rows, Some(&self.pg.replica)) {
                Ok(()) => {
                    self.spooled.add(rows.len() as i64);
                    return;
                }
                Err(e) => log::error!(
                    "spend ledger: the spool file refused {} row(s): {e}",
                    rows.len()
                ),
            }
        }
        let mut dropped = 0usize;
        for r in rows {
            if self.memory.len() >= MEMORY_SPOOL_ROWS {
                self.memory.pop_front();
                dropped += 1;
            } else {
                self.spooled.inc();
            }
            self.memory.push_back(r.clone());
        }
        if dropped > 0 {
            log::error!(
                "spend ledger: the memory spool is full ({MEMORY_SPOOL_ROWS} rows): its {dropped} oldest row(s) were dropped (set store.path for a spool file)"
            );
        }
    }

    fn count_file(&mut self) {
        if let Some(conn) = &self.file {
            let n: i64 = conn
                .query_row("SELECT COUNT(*) FROM ledger", [], |r| r.get(0))
                .unwrap_or(0);
            self.spooled.set(n);
        }
    }
}

fn spool_error(e: rusqlite::Error) -> PgError {
    PgError::Data(format!("spool file: {e}"))
}

/// Inserts `rows`, written by `replica`, in one statement (columns as arrays), skipping rows
/// already present; returns how many were new.
pub async fn insert(pg: &Pg, rows: &[LedgerRow], replica: &str) -> Result<u64, PgError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let c = pg.client().await?;
    let n = rows.len();
    let mut ints: [Vec<i64>; 5] = Default::default();
    let mut text: [Vec<Option<&str>>; 10] = Default::default();
    let mut estimated = Vec::with_capacity(n);
    let mut status = Vec::with_capacity(n);
    for r in rows {
        let m = &r.numbers;
        for (col, v) in ints.iter_mut().zip([
            m.ts_ms,
            m.tokens_in as i64,
            m.tokens_out as i64,
            m.tokens_cached as i64,
            m.cost_nanos as i64,
        ]) {
            col.push(v);
        }
        for (i, col) in text.iter_mut().enumerate() {
            col.push(r.column(i));
        }
        estimated.push(m.estimated);
        status.push(m.status as i32);
    }
    let replica = vec![replica; n];
    let [ts, tin, tout, tcached, cost] = &ints;
    let [rid, key, team, project, user, model, provider, deployment, tags, endpoint] = &text;
    let inserted = c
        .execute(
            "INSERT INTO ledger (ts_ms, request_id, replica, key, team, project, \"user\", model,
                 provider, deployment, tokens_in, tokens_out, tokens_cached, cost_nanos,
                 estimated, status, tags, endpoint)
             SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],
                 $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::bigint[],
                 $12::bigint[], $13::bigint[], $14::bigint[], $15::bool[], $16::int[],
                 $17::text[], $18::text[])
             ON CONFLICT DO NOTHING",
            &[
                ts, rid, &replica, key, team, project, user, model, provider, deployment, tin,
                tout, tcached, cost, &estimated, &status, tags, endpoint,
            ],
        )
        .await?;
    Ok(inserted)
}

/// Total cost since `since_ms` of the rows where `scope`'s column holds its value (all rows
/// for `None`).
pub async fn spent_since(
    pg: &Pg,
    scope: Option<(&'static str, String)>,
    since_ms: i64,
) -> Result<u64, PgError> {
    let c = pg.client().await?;
    let row = match &scope {
        None => {
            c.query_one(
                "SELECT COALESCE(SUM(cost_nanos), 0)::bigint FROM ledger WHERE ts_ms >= $1",
                &[&since_ms],
            )
            .await?
        }
        Some((column, value)) => {
            // `column` is one of four fixed names (ScopeColumn::filter), never caller text.
            let sql = format!(
                "SELECT COALESCE(SUM(cost_nanos), 0)::bigint FROM ledger
                 WHERE ts_ms >= $1 AND {column} = $2"
            );
            c.query_one(&sql, &[&since_ms, value]).await?
        }
    };
    Ok(row.get::<_, i64>(0).max(0) as u64)
}

/// The usage API's totals, fleet-wide (the same query as the embedded ledger's).
pub async fn usage(
    pg: &Pg,
    from_ms: i64,
    to_ms: i64,
    group_by: Option<GroupBy>,
) -> Result<Vec<UsageTotals>, PgError> {
    const SUMS: &str = "COUNT(*)::bigint, COALESCE(SUM(tokens_in), 0)::bigint,
        COALESCE(SUM(tokens_out), 0)::bigint, COALESCE(SUM(cost_nanos), 0)::bigint";
    let sql = match group_by {
        None => format!("SELECT NULL::text, {SUMS} FROM ledger WHERE ts_ms >= $1 AND ts_ms < $2"),
        Some(GroupBy::Tag) => format!(
            "SELECT t.key || '=' || t.value, {SUMS}
             FROM ledger l, jsonb_each_text(CASE WHEN l.tags LIKE '{{%' THEN l.tags::jsonb
                                                 ELSE '{{}}'::jsonb END) t
             WHERE l.ts_ms >= $1 AND l.ts_ms < $2 GROUP BY 1 ORDER BY 5 DESC"
        ),
        Some(g) => format!(
            "SELECT {}, {SUMS} FROM ledger WHERE ts_ms >= $1 AND ts_ms < $2
             GROUP BY 1 ORDER BY 5 DESC",
            g.column()
        ),
    };
    let rows = pg.client().await?.query(&sql, &[&from_ms, &to_ms]).await?;
    Ok(rows
        .iter()
        .map(|r| UsageTotals {
            group: r.get(0),
            requests: r.get::<_, i64>(1).max(0) as u64,
            tokens_in: r.get::<_, i64>(2).max(0) as u64,
            tokens_out: r.get::<_, i64>(3).max(0) as u64,
            cost_nanos: r.get::<_, i64>(4).max(0) as u64,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::governance::ledger::{RowNumbers, RowText};

    fn row(i: usize) -> LedgerRow {
        let id = format!("r{i}");
        LedgerRow::new(
            &RowText {
                request_id: &id,
                ..Default::default()
            },
            RowNumbers::default(),
        )
    }

    #[test]
    fn the_memory_spool_keeps_the_newest_rows_up_to_its_bound() {
        // Nothing listens on port 1: every write is refused and spooled.
        let pg = Pg::open("postgres://sy@127.0.0.1:1/sy", "r1").expect("opens");
        let gauge = IntGauge::new("spooled", "rows").expect("gauge");
        let mut sink = PgSink::new(pg, None, gauge.clone());
        let rows: Vec<LedgerRow> = (0..MEMORY_SPOOL_ROWS + 25).map(row).collect();
        sink.commit(&rows[..10]);
        assert_eq!(gauge.get(), 10);
        sink.commit(&rows[10..]);
        assert_eq!(sink.memory.len(), MEMORY_SPOOL_ROWS);
        assert_eq!(gauge.get(), MEMORY_SPOOL_ROWS as i64);
        assert_eq!(sink.memory.front().and_then(|r| r.column(0)), Some("r25"));
        let newest = format!("r{}", MEMORY_SPOOL_ROWS + 24);
        assert_eq!(
            sink.memory.back().and_then(|r| r.column(0)),
            Some(newest.as_str())
        );
    }
}
