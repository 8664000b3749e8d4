//! Worker threads and their bounded queue.
//!
//! `workers` OS threads share one bounded queue (`queue` jobs). Each thread owns its model
//! sessions (ONNX Runtime sessions need `&mut` to run), loaded on first use and kept. A request
//! submits with `try_submit`, which never blocks: a full queue is a [`Spill`], and so is a job
//! that waited in the queue past `max_wait` (the worker answers it at once without running it), so
//! the router moves on to the next deployment. The request's task awaits the answer on a oneshot
//! channel: the async thread is free while the model runs.

use super::embed::Embedder;
use prometheus::{IntCounter, IntGauge};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Why a job was not run here (the router moves on to the next deployment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spill {
    /// The queue was full.
    QueueFull,
    /// The job waited longer than `max_wait` before a worker took it.
    Waited(Duration),
    /// The pool cannot run jobs (the runtime or the model failed to load).
    Unavailable(String),
}

impl std::fmt::Display for Spill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Spill::QueueFull => write!(f, "local queue full"),
            Spill::Waited(d) => write!(f, "waited {d:?} in the local queue"),
            Spill::Unavailable(why) => write!(f, "local pool unavailable: {why}"),
        }
    }
}

/// Embeddings and their token count.
pub type Embedded = (Vec<Vec<f32>>, u64);

struct Job {
    model: PathBuf,
    texts: Vec<String>,
    queued: Instant,
    reply: oneshot::Sender<Result<Embedded, Spill>>,
}

/// Metric handles for one pool.
#[derive(Clone)]
pub struct PoolMetrics {
    pub queue_depth: IntGauge,
    pub spilled: IntCounter,
    pub tokens: IntCounter,
}

/// One provider's pool.
pub struct Pool {
    tx: SyncSender<Job>,
    depth: Arc<AtomicUsize>,
    metrics: PoolMetrics,
    max_wait: Duration,
}

impl Pool {
    /// Starts `workers` threads around a queue of `queue` jobs; sessions are built with
    /// `intra_threads` ONNX Runtime threads each.
    pub fn start(
        name: &str,
        env: ort::environment::Environment,
        workers: usize,
        queue: usize,
        max_wait: Duration,
        metrics: PoolMetrics,
    ) -> std::io::Result<Pool> {
        let (tx, rx) = sync_channel::<Job>(queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let depth = Arc::new(AtomicUsize::new(0));
        for w in 0..workers.max(1) {
            let (rx, env, depth, metrics) =
                (rx.clone(), env.clone(), depth.clone(), metrics.clone());
            std::thread::Builder::new()
                .name(format!("{name}-infer-{w}"))
                .spawn(move || worker(rx, env, depth, metrics, max_wait))?;
        }
        Ok(Pool {
            tx,
            depth,
            metrics,
            max_wait,
        })
    }

    /// Queues an embedding job; never blocks. `Err` when the pool cannot take it now.
    pub fn try_submit(
        &self,
        model: PathBuf,
        texts: Vec<String>,
    ) -> Result<oneshot::Receiver<Result<Embedded, Spill>>, Spill> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            model,
            texts,
            queued: Instant::now(),
            reply,
        };
        // Counted before the send: a worker may take the job (and count it out) before
        // `try_send` even returns.
        let d = self.depth.fetch_add(1, Ordering::AcqRel).saturating_add(1);
        self.metrics.queue_depth.set(d as i64);
        match self.tx.try_send(job) {
            Ok(()) => Ok(answer),
            Err(e) => {
                let d = self.depth.fetch_sub(1, Ordering::AcqRel).saturating_sub(1);
                self.metrics.queue_depth.set(d as i64);
                match e {
                    TrySendError::Full(_) => {
                        self.metrics.spilled.inc();
                        Err(Spill::QueueFull)
                    }
                    TrySendError::Disconnected(_) => {
                        Err(Spill::Unavailable("the workers stopped".into()))
                    }
                }
            }
        }
    }

    /// Counts a spill decided after submission (a job that waited too long).
    pub fn spilled(&self) {
        self.metrics.spilled.inc();
    }

    pub fn max_wait(&self) -> Duration {
        self.max_wait
    }
}

fn worker(
    rx: Arc<Mutex<Receiver<Job>>>,
    env: ort::environment::Environment,
    depth: Arc<AtomicUsize>,
    metrics: PoolMetrics,
    max_wait: Duration,
) {
    let mut models: HashMap<PathBuf, Embedder> = HashMap::new();
    loop {
        // The lock is held only while waiting for the next job, by worker threads alone.
        let job = match rx.lock() {
            Ok(r) => match r.recv() {
                Ok(j) => j,
                Err(_) => return,
            },
            Err(_) => return,
        };
        let d = depth.fetch_sub(1, Ordering::AcqRel).saturating_sub(1);
        metrics.queue_depth.set(d as i64);
        let waited = job.queued.elapsed();
        if waited > max_wait {
            let _ = job.reply.send(Err(Spill::Waited(waited)));
            continue;
        }
        let embedder = match models.get_mut(&job.model) {
            Some(e) => e,
            None => match Embedder::load(&env, &job.model, 1) {
                Ok(e) => models.entry(job.model.clone()).or_insert(e),
                Err(e) => {
                    log::error!("local model {}: {e}", job.model.display());
                    let _ = job.reply.send(Err(Spill::Unavailable(e.to_string())));
                    continue;
                }
            },
        };
        let result = embedder
            .embed(&job.texts)
            .map_err(|e| Spill::Unavailable(e.to_string()));
        if let Ok((_, tokens)) = &result {
            metrics.tokens.inc_by(*tokens);
        }
        let _ = job.reply.send(result);
    }
}
