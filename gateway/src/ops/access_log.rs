//! The JSON access log: one object per request, written by a dedicated thread so the request path
//! never waits on stdout or a disk. When the writer falls behind, lines are dropped and counted
//! (`switchyard_access_log_dropped_total`) rather than slowing callers down.
//!
//! Lines carry names (caller, model, deployment), never credentials.

use crate::config::AccessLog;
use prometheus::IntCounter;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{channel, error::TrySendError, Sender};

const QUEUE: usize = 16 * 1024;

#[derive(Clone)]
pub struct AccessLogger {
    tx: Option<Sender<Vec<u8>>>,
    dropped: IntCounter,
    /// Lines queued but not yet written and flushed.
    pending: Arc<AtomicUsize>,
}

impl AccessLogger {
    /// Starts the writer thread for `target` (none for `off`).
    pub fn start(target: &AccessLog, dropped: IntCounter) -> std::io::Result<Self> {
        let sink: Box<dyn Write + Send> = match target {
            AccessLog::Off => {
                return Ok(AccessLogger {
                    tx: None,
                    dropped,
                    pending: Arc::default(),
                })
            }
            AccessLog::Stdout => Box::new(std::io::stdout()),
            AccessLog::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        // Tokio's channel takes its slots in blocks as lines come (std's `sync_channel` wrote all
        // 16,384 at start: 512 KB resident before the first request).
        let (tx, mut rx) = channel::<Vec<u8>>(QUEUE);
        let pending = Arc::new(AtomicUsize::new(0));
        let written = pending.clone();
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                let mut out = std::io::BufWriter::with_capacity(64 * 1024, sink);
                while let Some(line) = rx.blocking_recv() {
                    let _ = out.write_all(&line);
                    let mut n = 1;
                    // Drain what is queued, then flush once.
                    while let Ok(more) = rx.try_recv() {
                        let _ = out.write_all(&more);
                        n += 1;
                    }
                    let _ = out.flush();
                    written.fetch_sub(n, Ordering::AcqRel);
                }
            })?;
        Ok(AccessLogger {
            tx: Some(tx),
            dropped,
            pending,
        })
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues one record (serialized here, written by the thread).
    pub fn log(&self, record: &serde_json::Value) {
        let Some(tx) = &self.tx else { return };
        let mut line = match serde_json::to_vec(record) {
            Ok(l) => l,
            Err(_) => return,
        };
        line.push(b'\n');
        self.pending.fetch_add(1, Ordering::AcqRel);
        match tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Closed(_)) => {
                self.pending.fetch_sub(1, Ordering::AcqRel);
                self.dropped.inc();
            }
        }
    }

    /// Waits (up to `limit`) until every queued line is written and flushed.
    pub fn wait_flushed(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.pending.load(Ordering::Acquire) > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }
}
