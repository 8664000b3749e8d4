//! The JSON access log: one object per request, written by a dedicated thread so the request path
//! never waits on stdout or a disk. When the writer falls behind, lines are dropped and counted
//! (`switchyard_access_log_dropped_total`) rather than slowing callers down.
//!
//! Lines carry names (caller, model, deployment), never credentials.

use crate::config::AccessLog;
use prometheus::IntCounter;
use std::io::Write;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};

const QUEUE: usize = 16 * 1024;

#[derive(Clone)]
pub struct AccessLogger {
    tx: Option<SyncSender<Vec<u8>>>,
    dropped: IntCounter,
}

impl AccessLogger {
    /// Starts the writer thread for `target` (none for `off`).
    pub fn start(target: &AccessLog, dropped: IntCounter) -> std::io::Result<Self> {
        let sink: Box<dyn Write + Send> = match target {
            AccessLog::Off => return Ok(AccessLogger { tx: None, dropped }),
            AccessLog::Stdout => Box::new(std::io::stdout()),
            AccessLog::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                let mut out = std::io::BufWriter::with_capacity(64 * 1024, sink);
                while let Ok(line) = rx.recv() {
                    let _ = out.write_all(&line);
                    // Drain what is queued, then flush once.
                    while let Ok(more) = rx.try_recv() {
                        let _ = out.write_all(&more);
                    }
                    let _ = out.flush();
                }
            })?;
        Ok(AccessLogger {
            tx: Some(tx),
            dropped,
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
        match tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => self.dropped.inc(),
        }
    }
}
