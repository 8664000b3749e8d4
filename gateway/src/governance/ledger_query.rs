//! Reads of the spend ledger's table: what a budget scope spent since a time (start-up totals)
//! and the usage API's grouped totals. SQL only, on a connection the caller opens
//! ([`super::ledger::Ledger::reader`]); the fleet store answers the same questions from
//! PostgreSQL (`crate::store::ledger`). Must not write: rows are written by the ledger's writer.

use rusqlite::{params, Connection};

/// What a budget scope matches in the ledger.
#[derive(Debug, Clone, Copy)]
pub enum ScopeColumn<'a> {
    All,
    Team(&'a str),
    Project(&'a str),
    Key(&'a str),
    Provider(&'a str),
}

impl ScopeColumn<'_> {
    /// The column a scope filters on and the value it must hold (`None`: every row).
    pub fn filter(&self) -> Option<(&'static str, &str)> {
        match self {
            ScopeColumn::All => None,
            ScopeColumn::Team(t) => Some(("team", t)),
            ScopeColumn::Project(p) => Some(("project", p)),
            ScopeColumn::Key(k) => Some(("key", k)),
            ScopeColumn::Provider(p) => Some(("provider", p)),
        }
    }

    /// The same scope, owning its value (to cross into the store's runtime).
    pub fn owned(&self) -> Option<(&'static str, String)> {
        self.filter().map(|(c, v)| (c, v.to_string()))
    }
}

/// Total cost (nano-dollars) of the rows since `since_ms` matching `scope`.
pub fn spent_since(
    conn: &Connection,
    scope: ScopeColumn<'_>,
    since_ms: i64,
) -> rusqlite::Result<u64> {
    const SUM: &str = "SELECT COALESCE(SUM(cost_nanos),0) FROM ledger WHERE ts_ms >= ?1";
    let total: i64 = match scope.filter() {
        None => conn.query_row(SUM, params![since_ms], |r| r.get(0))?,
        // The column is one of the scope's fixed names, never caller text.
        Some((column, value)) => conn.query_row(
            &format!("{SUM} AND {column} = ?2"),
            params![since_ms, value],
            |r| r.get(0),
        )?,
    };
    Ok(total.max(0) as u64)
}

/// How the usage API groups rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Key,
    Team,
    Project,
    Model,
    Provider,
    Tag,
    /// The API the request came in by (`chat_completions`, `messages`, `responses`, …).
    Endpoint,
    /// `provider/upstream model`: one group per deployment (a sticky A/B split's arms).
    Deployment,
}

impl GroupBy {
    /// The SQL expression rows are grouped by (the same in SQLite and PostgreSQL); tags are
    /// grouped through their JSON instead (each backend its own way).
    pub fn column(self) -> &'static str {
        match self {
            GroupBy::Key => "key",
            GroupBy::Team => "team",
            GroupBy::Project => "project",
            GroupBy::Model => "model",
            GroupBy::Endpoint => "endpoint",
            GroupBy::Deployment => "provider || '/' || deployment",
            GroupBy::Provider | GroupBy::Tag => "provider",
        }
    }

    pub fn parse(s: &str) -> Option<GroupBy> {
        Some(match s {
            "key" => GroupBy::Key,
            "team" => GroupBy::Team,
            "project" => GroupBy::Project,
            "model" => GroupBy::Model,
            "provider" => GroupBy::Provider,
            "tag" => GroupBy::Tag,
            "endpoint" => GroupBy::Endpoint,
            "deployment" => GroupBy::Deployment,
            _ => return None,
        })
    }
}

/// One group's totals.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageTotals {
    pub group: Option<String>,
    pub requests: u64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cost_nanos: u64,
}

/// Totals of the rows with `from_ms <= ts_ms < to_ms`, grouped.
pub fn usage(
    conn: &Connection,
    from_ms: i64,
    to_ms: i64,
    group_by: Option<GroupBy>,
) -> rusqlite::Result<Vec<UsageTotals>> {
    let sql = match group_by {
        None => "SELECT NULL, COUNT(*), COALESCE(SUM(tokens_in),0), COALESCE(SUM(tokens_out),0),
                 COALESCE(SUM(cost_nanos),0) FROM ledger WHERE ts_ms >= ?1 AND ts_ms < ?2"
            .to_string(),
        Some(GroupBy::Tag) => "SELECT t.key || '=' || t.value, COUNT(*), SUM(l.tokens_in),
                 SUM(l.tokens_out), SUM(l.cost_nanos)
                 FROM ledger l, json_each(CASE WHEN json_valid(l.tags) THEN l.tags ELSE '{}' END) t
                 WHERE l.ts_ms >= ?1 AND l.ts_ms < ?2 GROUP BY 1 ORDER BY 5 DESC"
            .to_string(),
        Some(g) => format!(
            "SELECT {}, COUNT(*), SUM(tokens_in), SUM(tokens_out), SUM(cost_nanos)
             FROM ledger WHERE ts_ms >= ?1 AND ts_ms < ?2 GROUP BY 1 ORDER BY 5 DESC",
            g.column()
        ),
    };
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params![from_ms, to_ms], |r| {
        Ok(UsageTotals {
            group: r.get(0)?,
            requests: r.get::<_, i64>(1)?.max(0) as u64,
            tokens_in: r.get::<_, i64>(2)?.max(0) as u64,
            tokens_out: r.get::<_, i64>(3)?.max(0) as u64,
            cost_nanos: r.get::<_, i64>(4)?.max(0) as u64,
        })
    })?;
    rows.collect()
}
