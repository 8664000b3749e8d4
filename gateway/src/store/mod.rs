//! `store.kind: postgres`: the state a fleet of replicas shares — runtime keys, the spend ledger
//! and the usage it answers — in PostgreSQL (budgets, limits and the shared cache stay in the
//! store's Redis, `store.redis_url`).
//!
//! [`Pg`] owns a small runtime of its own (two threads) that drives every database connection, so
//! no Pingora worker ever waits on PostgreSQL's I/O: the request path only queues ledger rows and
//! reads keys from an in-memory index. Callers off the request path (the admin API, the ledger's
//! writer thread, the key listener) hand it a future and wait for the answer with [`Pg::call`].
//! It owns the connection handling and nothing about what is stored (see the sibling modules).

pub mod audit;
pub mod keys;
pub mod ledger;
pub mod listen;
pub mod migrate;
pub mod migrations;
pub mod outbox;
pub mod responses;
pub mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::Client;
use tokio_postgres_rustls::MakeRustlsConnect;

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("postgres: {}", describe(.0))]
    Db(#[from] tokio_postgres::Error),
    #[error("postgres: cannot start its runtime: {0}")]
    Runtime(std::io::Error),
    #[error("postgres: the store's runtime stopped")]
    Gone,
    #[error("postgres: no answer within {}s", QUERY_TIMEOUT.as_secs())]
    Timeout,
    #[error("postgres: {0}")]
    Url(#[from] tls::TlsError),
    #[error("postgres: {0}")]
    Data(String),
}

impl PgError {
    /// Whether the database could not be reached (as opposed to answering with an error: bad
    /// credentials, a failed statement).
    pub fn is_unreachable(&self) -> bool {
        match self {
            PgError::Db(e) => e.as_db_error().is_none(),
            PgError::Timeout => true,
            _ => false,
        }
    }
}

/// A driver error with its causes: tokio-postgres's own text is only "db error" or "error
/// performing TLS handshake"; what an operator needs (the server's message, the certificate
/// problem) is in the chain. Never holds the URL.
fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// How long a connection attempt may take: a replica whose database is away serves from its last
/// known state instead of waiting.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a caller waits for one database call (a writer that gives up spools its rows; the
/// ledger's inserts are idempotent, so a late success doubles nothing).
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Handle to the fleet's database; cheap to share (`Arc`).
pub struct Pg {
    handle: tokio::runtime::Handle,
    config: tokio_postgres::Config,
    /// TLS as the URL's `sslmode` asks (see [`tls`]).
    tls: MakeRustlsConnect,
    /// The shared connection (tokio-postgres pipelines concurrent queries on one), made on first
    /// use and again after it breaks.
    client: tokio::sync::Mutex<Option<Arc<Client>>>,
    /// This replica's id (`server.replica_id`), written in its ledger rows.
    pub replica: String,
    /// Whether this process brought the schema up to date (done by the first connection, which
    /// may come long after the start when the database was away then).
    migrated: std::sync::atomic::AtomicBool,
}

impl Pg {
    /// Starts the store's runtime; connects lazily (a database that is away at start is not an
    /// error: the replica serves from its last known state and the ledger spools).
    pub fn open(url: &str, replica: &str) -> Result<Arc<Pg>, PgError> {
        let tls::Connection { mut config, tls } = tls::parse(url)?;
        config
            .connect_timeout(CONNECT_TIMEOUT)
            .application_name("switchyard")
            .keepalives_idle(Duration::from_secs(30));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("switchyard-pg")
            .enable_all()
            .build()
            .map_err(PgError::Runtime)?;
        let handle = rt.handle().clone();
        std::thread::Builder::new()
            .name("switchyard-pg".into())
            .spawn(move || rt.block_on(std::future::pending::<()>()))
            .map_err(PgError::Runtime)?;
        Ok(Arc::new(Pg {
            handle,
            config,
            tls,
            client: tokio::sync::Mutex::new(None),
            replica: replica.to_string(),
            migrated: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// Runs `f` on the store's runtime and waits for its answer. Never call it from that runtime.
    pub fn call<T, F>(&self, f: F) -> Result<T, PgError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, PgError>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(f.await);
        });
        match rx.recv_timeout(QUERY_TIMEOUT) {
            Ok(r) => r,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(PgError::Timeout),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(PgError::Gone),
        }
    }

    /// [`Pg::call`] with `f` given this handle (the usual shape: one query of a sibling module).
    pub fn run<T, F>(self: &Arc<Self>, f: impl FnOnce(Arc<Pg>) -> F) -> Result<T, PgError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, PgError>> + Send + 'static,
    {
        self.call(f(self.clone()))
    }

    /// The shared connection, connecting when there is none or it broke.
    pub async fn client(&self) -> Result<Arc<Client>, PgError> {
        let mut slot = self.client.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        *slot = None;
        let c = Arc::new(self.connect().await?);
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Connects now (migrating on the first connection), from outside the store's runtime.
    pub fn ping(self: &Arc<Self>) -> Result<(), PgError> {
        self.run(|p| async move { p.client().await.map(|_| ()) })
    }

    /// The connection settings and their TLS (for a connection driven by its owner: LISTEN).
    pub fn config(&self) -> (&tokio_postgres::Config, MakeRustlsConnect) {
        (&self.config, self.tls.clone())
    }

    /// A connection of its own (a transaction), driven on the current runtime. The first one
    /// this process makes applies the schema migrations the database lacks.
    pub async fn connect(&self) -> Result<Client, PgError> {
        use std::sync::atomic::Ordering;
        let mut c = connect(&self.config, self.tls.clone()).await?;
        if !self.migrated.load(Ordering::Acquire) {
            let applied = migrations::apply(&mut c).await?;
            if !applied.is_empty() {
                log::info!("postgres: applied schema migrations {applied:?}");
            }
            self.migrated.store(true, Ordering::Release);
        }
        Ok(c)
    }
}

/// Opens a connection and drives it on the current runtime until it closes.
pub async fn connect(
    config: &tokio_postgres::Config,
    tls: MakeRustlsConnect,
) -> Result<Client, PgError> {
    let (client, connection) = config.connect(tls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            log::warn!("postgres connection closed: {e}");
        }
    });
    Ok(client)
}
