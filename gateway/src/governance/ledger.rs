//! The spend ledger: one row per inference request (who, what, which deployment, tokens, cost,
//! status, tags) in SQLite, written off the request path by a dedicated writer thread.
//!
//! The request path only sends a row down a channel ([`Ledger::record`]); the writer commits
//! whatever is queued every `flush_interval` in one transaction, so a crash (even `kill -9`) loses
//! at most the rows of the last interval. In `strict` durability a response's last bytes wait for
//! [`Ledger::record_durable`]: the writer commits at once together with whatever else is queued
//! (group commit) and acknowledges, so no record of a response a caller received in full is lost.
//! Reads (start-up totals, the usage API: [`super::ledger_query`]) use their own connections;
//! they never block writes for long (WAL mode). It owns the ledger table and nothing else.
//!
//! With `store.kind: postgres` the same writer loop hands its batches to
//! [`crate::store::ledger::PgSink`] instead (PostgreSQL, with a local spool while it is away), and
//! the totals are read from there: fleet-wide.

use prometheus::IntGauge;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{params, Connection, OpenFlags};
use smallvec::SmallVec;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

pub use super::ledger_query::{spent_since, usage, GroupBy, ScopeColumn, UsageTotals};

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("spend ledger: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("spend ledger: cannot start the writer thread: {0}")]
    Thread(std::io::Error),
    #[error("spend ledger: the writer stopped")]
    WriterGone,
    #[error("spend ledger: {0}")]
    Postgres(#[from] crate::store::PgError),
    #[error("spend ledger: kept in PostgreSQL, not in a local file")]
    NotLocal,
}

/// The text columns of one request's record, borrowed while [`LedgerRow::new`] packs them.
#[derive(Debug, Clone, Copy, Default)]
pub struct RowText<'a> {
    pub request_id: &'a str,
    /// The caller: a key's name, or `token:<subject>` for a token
    /// ([`switchyard_filters::auth::Identity::subject`]); never the secret.
    pub key: Option<&'a str>,
    pub team: Option<&'a str>,
    pub project: Option<&'a str>,
    pub user: Option<&'a str>,
    pub model: Option<&'a str>,
    pub provider: Option<&'a str>,
    /// The provider's own model name.
    pub deployment: Option<&'a str>,
    /// Tags as a JSON object (from the request's `metadata` or `x-switchyard-tags`).
    pub tags: Option<&'a str>,
    /// The API the request came in by ([`crate::proxy::context::Route::name`]).
    pub endpoint: Option<&'a str>,
}

/// The numeric columns of one request's record.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RowNumbers {
    /// Unix milliseconds when the request finished.
    pub ts_ms: i64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub tokens_cached: u64,
    pub cost_nanos: u64,
    /// Usage was estimated locally (the provider reported none).
    pub estimated: bool,
    pub status: u16,
}

/// Number of text columns in [`RowText`].
const TEXT_COLUMNS: usize = 10;

/// Bytes of text a row holds inline; longer rows (long tags) spill to the heap.
const INLINE_TEXT: usize = 224;

/// One request's record. Its text columns are packed into one buffer held inside the row: a row
/// is built on a request thread and dropped on the writer thread, and a heap block allocated on
/// one thread and freed on another is what allocators serve worst (it showed as the largest
/// difference in a `perf` profile of governance vs none) — a typical row allocates nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerRow {
    pub numbers: RowNumbers,
    /// The text columns back to back, UTF-8 (only `&str`s are packed).
    text: SmallVec<[u8; INLINE_TEXT]>,
    /// End of each text column in `text`; `u32::MAX` for an absent (NULL) one.
    ends: [u32; TEXT_COLUMNS],
}

impl LedgerRow {
    pub fn new(text: &RowText<'_>, numbers: RowNumbers) -> LedgerRow {
        let columns = [
            Some(text.request_id),
            text.key,
            text.team,
            text.project,
            text.user,
            text.model,
            text.provider,
            text.deployment,
            text.tags,
            text.endpoint,
        ];
        let len = columns.iter().flatten().map(|c| c.len()).sum();
        let mut packed = SmallVec::with_capacity(len);
        let mut ends = [u32::MAX; TEXT_COLUMNS];
        for (end, column) in ends.iter_mut().zip(columns) {
            if let Some(c) = column {
                packed.extend_from_slice(c.as_bytes());
                *end = packed.len() as u32;
            }
        }
        LedgerRow {
            numbers,
            text: packed,
            ends,
        }
    }

    /// Text column `i` (in [`RowText`] order); `None` for NULL.
    pub(crate) fn column(&self, i: usize) -> Option<&str> {
        // Always valid: a column is a whole `&str` and starts where the previous one ended.
        std::str::from_utf8(self.column_bytes(i)?).ok()
    }

    /// Text column `i`'s UTF-8 bytes, as SQLite binds them (no second validation per column).
    fn column_bytes(&self, i: usize) -> Option<&[u8]> {
        let end = *self.ends.get(i)?;
        if end == u32::MAX {
            return None;
        }
        let start = self.ends[..i]
            .iter()
            .rev()
            .find(|e| **e != u32::MAX)
            .copied()
            .unwrap_or(0);
        self.text.get(start as usize..end as usize)
    }

    /// Text column `i` bound as SQLite text (packed from `&str`s, so UTF-8).
    fn column_value(&self, i: usize) -> Option<ToSqlOutput<'_>> {
        self.column_bytes(i)
            .map(|b| ToSqlOutput::Borrowed(ValueRef::Text(b)))
    }
}

// Nearly every message is a row, and boxing it would bring back the heap block that crosses
// threads (see `LedgerRow`); the rare `Flush` pays the row's size.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Row(LedgerRow, Option<oneshot::Sender<()>>),
    /// Commit what is queued now and acknowledge (graceful shutdown).
    Flush(oneshot::Sender<()>),
}

/// Handle to the ledger; cheap to share.
pub struct Ledger {
    tx: Sender<Msg>,
    /// Rows sent but not yet committed (also the `switchyard_ledger_pending_rows` gauge).
    pub pending: IntGauge,
    target: Target,
}

/// Where the database lives: a file, a process-private shared in-memory database, or the
/// fleet's PostgreSQL.
#[derive(Clone)]
enum Target {
    File(PathBuf),
    Memory(String),
    Postgres(std::sync::Arc<crate::store::Pg>),
}

impl Target {
    fn open(&self, write: bool) -> Result<Connection, LedgerError> {
        Ok(match self {
            Target::File(p) => {
                if write {
                    Connection::open(p)?
                } else {
                    Connection::open_with_flags(
                        p,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )?
                }
            }
            Target::Memory(name) => Connection::open_with_flags(
                format!("file:{name}?mode=memory&cache=shared"),
                OpenFlags::SQLITE_OPEN_READ_WRITE
                    | OpenFlags::SQLITE_OPEN_CREATE
                    | OpenFlags::SQLITE_OPEN_URI
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?,
            Target::Postgres(_) => return Err(LedgerError::NotLocal),
        })
    }
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS ledger (
    ts_ms INTEGER NOT NULL,
    request_id TEXT NOT NULL,
    key TEXT, team TEXT, project TEXT, user TEXT,
    model TEXT, provider TEXT, deployment TEXT,
    tokens_in INTEGER NOT NULL, tokens_out INTEGER NOT NULL, tokens_cached INTEGER NOT NULL,
    cost_nanos INTEGER NOT NULL, estimated INTEGER NOT NULL,
    status INTEGER NOT NULL, tags TEXT, endpoint TEXT, replica TEXT);
 CREATE INDEX IF NOT EXISTS ledger_ts ON ledger (ts_ms);";

/// Columns added after the first schema, each with its type: a ledger written by an older build
/// gets them (`ALTER TABLE … ADD COLUMN`, never destructive; older rows read NULL).
/// `replica`: the replica that wrote a row into a fleet replica's spool file (NULL in an embedded
/// store's ledger), so that whichever process ships it names its origin.
const ADDED_COLUMNS: &[(&str, &str)] = &[("endpoint", "TEXT"), ("replica", "TEXT")];

/// Brings an existing ledger table up to [`SCHEMA`]'s columns.
fn add_missing_columns(conn: &Connection) -> rusqlite::Result<()> {
    let present: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('ledger')")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for (name, kind) in ADDED_COLUMNS {
        if !present.iter().any(|p| p == name) {
            conn.execute_batch(&format!("ALTER TABLE ledger ADD COLUMN {name} {kind}"))?;
        }
    }
    Ok(())
}

impl Ledger {
    /// Opens (creating) the ledger at `path` — in memory when `None` — and starts the writer.
    pub fn open(
        path: Option<&Path>,
        flush_interval: Duration,
        strict: bool,
        pending: IntGauge,
    ) -> Result<Ledger, LedgerError> {
        let target = match path {
            Some(p) => Target::File(p.to_path_buf()),
            None => {
                // Unique per ledger: two in one process (tests) must not share a database.
                static OPENED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                let n = OPENED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Target::Memory(format!("switchyard-ledger-{}-{n}", std::process::id()))
            }
        };
        let mut conn = open_local(&target, strict)?;
        let sink = move |rows: &[LedgerRow]| {
            if let Err(e) = commit(&mut conn, rows, None) {
                log::error!("spend ledger: {} row(s) not written: {e}", rows.len());
            }
        };
        Ledger::start(target, flush_interval, strict, pending, None, sink)
    }

    /// The ledger in the fleet's PostgreSQL, spooling to `spool` (a local ledger file) — or to
    /// memory, bounded — while the database is away.
    pub fn open_postgres(
        pg: std::sync::Arc<crate::store::Pg>,
        spool: Option<&Path>,
        flush_interval: Duration,
        strict: bool,
        pending: IntGauge,
        spooled: IntGauge,
    ) -> Result<Ledger, LedgerError> {
        let spool = match spool {
            Some(p) => Some(open_local(&Target::File(p.to_path_buf()), true)?),
            None => None,
        };
        let mut sink = crate::store::ledger::PgSink::new(pg.clone(), spool, spooled);
        Ledger::start(
            Target::Postgres(pg),
            flush_interval,
            strict,
            pending,
            // Idle, the writer still looks at its spool now and then (rows left by a crash while
            // the database was away, or kept while it was).
            Some(Duration::from_millis(500)),
            move |rows: &[LedgerRow]| sink.commit(rows),
        )
    }

    fn start(
        target: Target,
        flush_interval: Duration,
        strict: bool,
        pending: IntGauge,
        idle: Option<Duration>,
        sink: impl FnMut(&[LedgerRow]) + Send + 'static,
    ) -> Result<Ledger, LedgerError> {
        let (tx, rx) = mpsc::channel();
        let writer_pending = pending.clone();
        let loop_settings = Loop {
            interval: flush_interval,
            strict,
            idle,
        };
        std::thread::Builder::new()
            .name("switchyard-ledger".into())
            .spawn(move || writer(rx, loop_settings, writer_pending, sink))
            .map_err(LedgerError::Thread)?;
        Ok(Ledger {
            tx,
            pending,
            target,
        })
    }

    /// Queues a row (never blocks).
    pub fn record(&self, row: LedgerRow) {
        self.pending.inc();
        if self.tx.send(Msg::Row(row, None)).is_err() {
            self.pending.dec();
            log::error!("spend ledger writer is gone: a row was lost");
        }
    }

    /// Queues a row and waits until it is committed.
    pub async fn record_durable(&self, row: LedgerRow) -> Result<(), LedgerError> {
        let (ack, done) = oneshot::channel();
        self.pending.inc();
        if self.tx.send(Msg::Row(row, Some(ack))).is_err() {
            self.pending.dec();
            return Err(LedgerError::WriterGone);
        }
        done.await.map_err(|_| LedgerError::WriterGone)
    }

    /// Commits everything queued so far; returns once it is on disk (graceful shutdown).
    pub async fn flush(&self) -> Result<(), LedgerError> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Msg::Flush(ack))
            .map_err(|_| LedgerError::WriterGone)?;
        done.await.map_err(|_| LedgerError::WriterGone)
    }

    /// A read connection to a local ledger (not with PostgreSQL: see [`Ledger::usage`]).
    pub fn reader(&self) -> Result<Connection, LedgerError> {
        self.target.open(false)
    }

    /// Totals of the rows with `from_ms <= ts_ms < to_ms`, grouped (fleet-wide on PostgreSQL).
    pub fn usage(
        &self,
        from_ms: i64,
        to_ms: i64,
        group_by: Option<GroupBy>,
    ) -> Result<Vec<UsageTotals>, LedgerError> {
        if let Target::Postgres(pg) = &self.target {
            let p = pg.clone();
            return Ok(pg.call(async move {
                crate::store::ledger::usage(&p, from_ms, to_ms, group_by).await
            })?);
        }
        Ok(usage(&self.reader()?, from_ms, to_ms, group_by)?)
    }

    /// Total cost (nano-dollars) since `since_ms` of the rows matching `scope`.
    pub fn spent_since(&self, scope: ScopeColumn<'_>, since_ms: i64) -> Result<u64, LedgerError> {
        if let Target::Postgres(pg) = &self.target {
            let (p, scope) = (pg.clone(), scope.owned());
            return Ok(pg.call(async move {
                crate::store::ledger::spent_since(&p, scope, since_ms).await
            })?);
        }
        Ok(spent_since(&self.reader()?, scope, since_ms)?)
    }
}

/// Opens (creating) a local ledger file for writing.
fn open_local(target: &Target, strict: bool) -> Result<Connection, LedgerError> {
    let conn = target.open(true)?;
    conn.execute_batch(if strict {
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
    } else {
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
    })?;
    conn.execute_batch(SCHEMA)?;
    add_missing_columns(&conn)?;
    Ok(conn)
}

/// The writer loop's timing.
struct Loop {
    interval: Duration,
    strict: bool,
    /// With nothing queued, call the sink with no rows this often (`None`: sleep until a row).
    idle: Option<Duration>,
}

/// The writer loop. It blocks only for the first row of a batch; then, in batched mode, it
/// sleeps out the flush interval and drains the queue in one go — senders never wake it per row
/// (a wake-up per request costs more than the insert). A durable row (strict mode) is committed
/// at once together with whatever else is queued: a group commit.
/// How long the writer naps between looks at its queue while a batch fills: short under strict
/// durability (a response waits for its row's commit), longer otherwise (only a shutdown's
/// flush waits for it), so an idle-looking writer does not wake 500 times a second beside the
/// request threads.
fn nap(strict: bool) -> Duration {
    if strict {
        Duration::from_millis(2)
    } else {
        Duration::from_millis(50)
    }
}

fn writer(
    rx: Receiver<Msg>,
    settings: Loop,
    pending: IntGauge,
    mut sink: impl FnMut(&[LedgerRow]),
) {
    let Loop {
        interval,
        strict,
        idle,
    } = settings;
    let mut batch: Vec<LedgerRow> = Vec::new();
    let mut acks: Vec<oneshot::Sender<()>> = Vec::new();
    let take = |m: Msg, batch: &mut Vec<LedgerRow>, acks: &mut Vec<_>| match m {
        Msg::Row(row, ack) => {
            batch.push(row);
            match ack {
                Some(a) => {
                    acks.push(a);
                    true
                }
                None => false,
            }
        }
        Msg::Flush(ack) => {
            acks.push(ack);
            true
        }
    };
    loop {
        let first = match idle {
            None => match rx.recv() {
                Ok(m) => m,
                Err(_) => return,
            },
            Some(tick) => match rx.recv_timeout(tick) {
                Ok(m) => m,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    sink(&[]);
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            },
        };
        let started = Instant::now();
        let mut urgent = take(first, &mut batch, &mut acks);
        let mut closed = false;
        loop {
            // Take everything queued now.
            loop {
                match rx.try_recv() {
                    Ok(m) => urgent |= take(m, &mut batch, &mut acks),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            }
            let left = interval.saturating_sub(started.elapsed());
            if urgent || closed || left.is_zero() {
                break;
            }
            // Nap in steps so a durable row (or a flush) arriving meanwhile waits one step at most.
            std::thread::sleep(left.min(nap(strict)));
        }
        let n = batch.len() as i64;
        sink(&batch);
        pending.sub(n);
        batch.clear();
        for a in acks.drain(..) {
            let _ = a.send(());
        }
        if closed {
            return;
        }
    }
}

/// Rows per multi-row `INSERT`: SQLite's per-statement work (step, reset, the VDBE's set-up) is
/// paid once per chunk instead of once per row. 32 × 18 parameters stay far below SQLite's limit.
const ROWS_PER_INSERT: usize = 32;
/// Columns per row, in the order [`bind_row`] binds them.
const COLUMNS: usize = 18;

/// `INSERT` of `rows` rows.
fn insert_sql(rows: usize) -> String {
    let one = format!("({})", vec!["?"; COLUMNS].join(","));
    format!(
        "INSERT INTO ledger (ts_ms, request_id, key, team, project, user, model, provider,
            deployment, tokens_in, tokens_out, tokens_cached, cost_nanos, estimated, status, tags,
            endpoint, replica)
         VALUES {}",
        vec![one; rows].join(",")
    )
}

/// Appends `rows`, written by `replica` (a fleet replica's spool; `None` in an embedded store).
pub(crate) fn commit(
    conn: &mut Connection,
    rows: &[LedgerRow],
    replica: Option<&str>,
) -> rusqlite::Result<()> {
    static MANY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static ONE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let tx = conn.transaction()?;
    {
        let mut chunks = rows.chunks_exact(ROWS_PER_INSERT);
        if rows.len() >= ROWS_PER_INSERT {
            let mut stmt = tx.prepare_cached(MANY.get_or_init(|| insert_sql(ROWS_PER_INSERT)))?;
            for chunk in &mut chunks {
                for (i, r) in chunk.iter().enumerate() {
                    bind_row(&mut stmt, i * COLUMNS, r, replica)?;
                }
                stmt.raw_execute()?;
            }
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut stmt = tx.prepare_cached(ONE.get_or_init(|| insert_sql(1)))?;
            for r in rest {
                bind_row(&mut stmt, 0, r, replica)?;
                stmt.raw_execute()?;
            }
        }
    }
    tx.commit()
}

/// Binds one row's columns at parameters `base + 1 ..= base + COLUMNS`.
fn bind_row(
    stmt: &mut rusqlite::CachedStatement<'_>,
    base: usize,
    r: &LedgerRow,
    replica: Option<&str>,
) -> rusqlite::Result<()> {
    let n = &r.numbers;
    stmt.raw_bind_parameter(base + 1, n.ts_ms)?;
    stmt.raw_bind_parameter(
        base + 2,
        r.column_value(0)
            .unwrap_or(ToSqlOutput::Borrowed(ValueRef::Text(b""))),
    )?;
    for (i, column) in (1..=7).enumerate() {
        stmt.raw_bind_parameter(base + 3 + i, r.column_value(column))?;
    }
    stmt.raw_bind_parameter(base + 10, n.tokens_in as i64)?;
    stmt.raw_bind_parameter(base + 11, n.tokens_out as i64)?;
    stmt.raw_bind_parameter(base + 12, n.tokens_cached as i64)?;
    stmt.raw_bind_parameter(base + 13, n.cost_nanos as i64)?;
    stmt.raw_bind_parameter(base + 14, n.estimated)?;
    stmt.raw_bind_parameter(base + 15, n.status)?;
    stmt.raw_bind_parameter(base + 16, r.column_value(8))?;
    stmt.raw_bind_parameter(base + 17, r.column_value(9))?;
    stmt.raw_bind_parameter(base + 18, replica)?;
    Ok(())
}

/// A row read back from a local ledger.
pub(crate) struct StoredRow {
    pub rowid: i64,
    pub row: LedgerRow,
    /// The replica that spooled it (None: an embedded store's row, or one spooled before the
    /// column existed).
    pub replica: Option<String>,
}

/// The oldest `limit` rows of a local ledger with their `rowid`s (a spool's rows to ship, or an
/// embedded store's ledger to copy), after `after_rowid`.
pub(crate) fn read_rows(
    conn: &Connection,
    after_rowid: i64,
    limit: usize,
) -> rusqlite::Result<Vec<StoredRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT rowid, ts_ms, request_id, key, team, project, user, model, provider, deployment,
                tokens_in, tokens_out, tokens_cached, cost_nanos, estimated, status, tags, endpoint,
                replica
         FROM ledger WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![after_rowid, limit as i64], |r| {
        let text: [Option<String>; TEXT_COLUMNS] = [
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
            r.get(7)?,
            r.get(8)?,
            r.get(9)?,
            r.get(16)?,
            r.get(17)?,
        ];
        let c = |i: usize| text[i].as_deref();
        let row = LedgerRow::new(
            &RowText {
                request_id: c(0).unwrap_or(""),
                key: c(1),
                team: c(2),
                project: c(3),
                user: c(4),
                model: c(5),
                provider: c(6),
                deployment: c(7),
                tags: c(8),
                endpoint: c(9),
            },
            RowNumbers {
                ts_ms: r.get(1)?,
                tokens_in: r.get::<_, i64>(10)?.max(0) as u64,
                tokens_out: r.get::<_, i64>(11)?.max(0) as u64,
                tokens_cached: r.get::<_, i64>(12)?.max(0) as u64,
                cost_nanos: r.get::<_, i64>(13)?.max(0) as u64,
                estimated: r.get::<_, i64>(14)? != 0,
                status: r.get::<_, i64>(15)?.clamp(0, u16::MAX as i64) as u16,
            },
        );
        Ok(StoredRow {
            rowid: r.get(0)?,
            row,
            replica: r.get(18)?,
        })
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauge() -> IntGauge {
        IntGauge::new("pending", "rows").unwrap()
    }

    fn row(i: i64, team: &str, cost: u64) -> LedgerRow {
        let id = format!("r{i}");
        LedgerRow::new(
            &RowText {
                request_id: &id,
                key: Some("k"),
                team: Some(team),
                model: Some("chat"),
                provider: Some("p"),
                deployment: Some(if team == "a" { "m-a" } else { "m-b" }),
                tags: Some(r#"{"app":"x"}"#),
                ..Default::default()
            },
            RowNumbers {
                ts_ms: 1_000 + i,
                tokens_in: 10,
                tokens_out: 5,
                cost_nanos: cost,
                status: 200,
                ..Default::default()
            },
        )
    }

    #[test]
    fn a_ledger_from_an_older_build_gains_the_new_columns() {
        let dir =
            std::env::temp_dir().join(format!("switchyard-ledger-old-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("old.db");
        let _ = std::fs::remove_file(&path);
        {
            let old = Connection::open(&path).unwrap();
            old.execute_batch(
                "CREATE TABLE ledger (ts_ms INTEGER NOT NULL, request_id TEXT NOT NULL,
                 key TEXT, team TEXT, project TEXT, user TEXT, model TEXT, provider TEXT,
                 deployment TEXT, tokens_in INTEGER NOT NULL, tokens_out INTEGER NOT NULL,
                 tokens_cached INTEGER NOT NULL, cost_nanos INTEGER NOT NULL,
                 estimated INTEGER NOT NULL, status INTEGER NOT NULL, tags TEXT);
                 INSERT INTO ledger VALUES (1, 'old', NULL, NULL, NULL, NULL, 'chat', 'p', NULL,
                 1, 1, 0, 7, 0, 200, NULL);",
            )
            .unwrap();
        }
        let l = Ledger::open(Some(&path), Duration::from_millis(10), true, gauge()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(l.record_durable(LedgerRow::new(
            &RowText {
                request_id: "new",
                endpoint: Some("responses"),
                ..Default::default()
            },
            RowNumbers::default(),
        )))
        .unwrap();
        let by = usage(&l.reader().unwrap(), 0, i64::MAX, Some(GroupBy::Endpoint)).unwrap();
        let mut groups: Vec<Option<String>> = by.into_iter().map(|t| t.group).collect();
        groups.sort();
        assert_eq!(groups, vec![None, Some("responses".to_string())]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn packed_text_columns_come_back_with_their_nulls() {
        let r = LedgerRow::new(
            &RowText {
                request_id: "req-1",
                team: Some(""),
                user: Some("ünï"),
                tags: Some("{}"),
                endpoint: Some("responses"),
                ..Default::default()
            },
            RowNumbers::default(),
        );
        let cols: Vec<Option<&str>> = (0..TEXT_COLUMNS).map(|i| r.column(i)).collect();
        assert_eq!(
            cols,
            vec![
                Some("req-1"),
                None,
                Some(""),
                None,
                Some("ünï"),
                None,
                None,
                None,
                Some("{}"),
                Some("responses")
            ]
        );
        assert_eq!(r.column(TEXT_COLUMNS), None);
    }

    #[test]
    fn a_row_longer_than_its_inline_space_keeps_every_column() {
        let tags = format!(r#"{{"note":"{}"}}"#, "é".repeat(INLINE_TEXT));
        let text = RowText {
            request_id: "req-long",
            key: Some("k"),
            model: Some("chat"),
            tags: Some(&tags),
            ..Default::default()
        };
        let r = LedgerRow::new(&text, RowNumbers::default());
        assert!(r.text.spilled(), "the test must cover the heap case");
        assert_eq!(r.column(0), Some("req-long"));
        assert_eq!(r.column(1), Some("k"));
        assert_eq!(r.column(5), Some("chat"));
        assert_eq!(r.column(8), Some(tags.as_str()));
        let short = LedgerRow::new(&RowText { tags: None, ..text }, RowNumbers::default());
        assert!(!short.text.spilled(), "a typical row allocates nothing");
    }

    #[tokio::test]
    async fn rows_reach_the_table_and_totals_add_up() {
        let dir = std::env::temp_dir().join(format!("sy-ledger-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let l = Ledger::open(Some(&dir), Duration::from_millis(20), false, gauge()).unwrap();
        for i in 0..10 {
            l.record(row(i, if i % 2 == 0 { "a" } else { "b" }, 100));
        }
        l.record_durable(row(10, "a", 50)).await.unwrap();
        let c = l.reader().unwrap();
        assert_eq!(spent_since(&c, ScopeColumn::All, 0).unwrap(), 1050);
        assert_eq!(spent_since(&c, ScopeColumn::Team("a"), 0).unwrap(), 550);
        assert_eq!(spent_since(&c, ScopeColumn::Team("a"), 1_005).unwrap(), 250);
        let by_team = usage(&c, 0, i64::MAX, Some(GroupBy::Team)).unwrap();
        assert_eq!(by_team[0].group.as_deref(), Some("a"));
        assert_eq!(by_team[0].requests, 6);
        let by_tag = usage(&c, 0, i64::MAX, Some(GroupBy::Tag)).unwrap();
        assert_eq!(by_tag[0].group.as_deref(), Some("app=x"));
        assert_eq!(by_tag[0].requests, 11);
        let by_deployment = usage(&c, 0, i64::MAX, Some(GroupBy::Deployment)).unwrap();
        assert_eq!(by_deployment[0].group.as_deref(), Some("p/m-a"));
        assert_eq!(by_deployment[0].requests, 6);
        assert_eq!(by_deployment[1].group.as_deref(), Some("p/m-b"));
        assert_eq!(l.pending.get(), 0);
        let _ = std::fs::remove_file(&dir);
    }

    #[tokio::test]
    async fn batches_larger_than_one_insert_keep_every_row_and_column() {
        // 75 rows in one flush: two 32-row INSERTs and 11 single-row ones.
        let l = Ledger::open(None, Duration::from_millis(200), false, gauge()).unwrap();
        for i in 0..74 {
            l.record(row(i, if i % 3 == 0 { "a" } else { "b" }, i as u64));
        }
        let odd = LedgerRow::new(
            &RowText {
                request_id: "odd",
                user: Some("u"),
                deployment: Some("gpt-x"),
                ..Default::default()
            },
            RowNumbers {
                ts_ms: 5,
                tokens_in: 1,
                tokens_out: 2,
                tokens_cached: 3,
                cost_nanos: 4,
                estimated: true,
                status: 503,
            },
        );
        l.record_durable(odd).await.unwrap();
        let c = l.reader().unwrap();
        assert_eq!(usage(&c, 0, i64::MAX, None).unwrap()[0].requests, 75);
        assert_eq!(
            spent_since(&c, ScopeColumn::All, 0).unwrap(),
            (0..74).sum::<u64>() + 4
        );
        assert_eq!(
            spent_since(&c, ScopeColumn::Team("a"), 0).unwrap(),
            (0..74).filter(|i| i % 3 == 0).sum::<u64>()
        );
        let got: String = c
            .query_row(
                "SELECT printf('%d|%s|%s|%s|%d|%d|%d|%d|%d', ts_ms, IFNULL(key, 'NULL'), user,
                        deployment, tokens_in, tokens_out, tokens_cached, estimated, status)
                 FROM ledger WHERE request_id = 'odd'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(got, "5|NULL|u|gpt-x|1|2|3|1|503");
        let tags: String = c
            .query_row(
                "SELECT tags FROM ledger WHERE request_id = 'r40'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tags, r#"{"app":"x"}"#);
        assert_eq!(l.pending.get(), 0);
    }

    #[tokio::test]
    async fn in_memory_ledger_is_readable() {
        let l = Ledger::open(None, Duration::from_millis(5), false, gauge()).unwrap();
        l.record_durable(row(1, "a", 7)).await.unwrap();
        let c = l.reader().unwrap();
        assert_eq!(spent_since(&c, ScopeColumn::Key("k"), 0).unwrap(), 7);
    }
}
