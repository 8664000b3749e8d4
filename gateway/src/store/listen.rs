//! Replicas agree on keys: a thread of its own holds a `LISTEN switchyard_keys` connection and
//! reloads this replica's key index on every notification (a key created, rotated or revoked on
//! any replica — or by hand in SQL), on every (re)connection, and every [`REFRESH`] as a safety
//! net. While the database is away the index keeps its last known state. It owns the listening
//! connection, not the index (see [`crate::identity::Auth::reload_keys`]).

use super::Pg;
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::AsyncMessage;

/// A full reload this often even without a notification.
pub const REFRESH: Duration = Duration::from_secs(10);
/// Wait before reconnecting after the connection broke, doubled after each failed attempt up
/// to [`RECONNECT_MAX`].
const RECONNECT: Duration = Duration::from_millis(500);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// Starts the listener thread; `reload` runs on it (it may block on the store).
pub fn start(pg: Arc<Pg>, reload: Arc<dyn Fn() + Send + Sync>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("switchyard-pg-listen".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    log::error!("postgres: the key listener cannot start: {e}");
                    return;
                }
            };
            rt.block_on(run(pg, reload));
        })
        .map(|_| ())
}

async fn run(pg: Arc<Pg>, reload: Arc<dyn Fn() + Send + Sync>) {
    let mut wait = RECONNECT;
    loop {
        let started = tokio::time::Instant::now();
        let result = listen(&pg, &reload).await;
        // A connection that lived a while was healthy: this outage starts the backoff over.
        if started.elapsed() > RECONNECT_MAX {
            wait = RECONNECT;
        }
        match result {
            // One line per outage, not one per attempt.
            Err(e) if wait == RECONNECT => {
                log::warn!("postgres: key notifications paused ({e}); reconnecting")
            }
            Err(e) => log::debug!("postgres: key listener still away ({e})"),
            Ok(()) => {}
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(RECONNECT_MAX);
    }
}

/// One connection's life: LISTEN, reload, then reload on each notification or tick.
async fn listen(pg: &Pg, reload: &Arc<dyn Fn() + Send + Sync>) -> Result<(), super::PgError> {
    let (config, tls) = pg.config();
    let (client, mut connection) = config.connect(tls).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(AsyncMessage::Notification(_)) => {
                    if tx.send(()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    log::warn!("postgres: key listener: {e}");
                    break;
                }
            }
        }
    });
    client.batch_execute("LISTEN switchyard_keys").await?;
    reload();
    let mut tick = tokio::time::interval(REFRESH);
    tick.tick().await;
    loop {
        tokio::select! {
            got = rx.recv() => {
                if got.is_none() {
                    break;
                }
                // Notifications that arrived meanwhile are covered by this one reload.
                while rx.try_recv().is_ok() {}
                reload();
            }
            _ = tick.tick() => reload(),
        }
    }
    driver.abort();
    Ok(())
}
