//! Worker threads and their bounded queue.
//!
//! `workers` OS threads (pinned to `cores` when configured) share one bounded queue (`queue`
//! jobs). Each thread owns its model sessions (ONNX Runtime sessions need `&mut` to run), loaded
//! on first use and kept. A request submits with `try_embed` / `try_generate`, which never block:
//! a full queue is a [`Spill`], and so is a job that waited in the queue past `max_wait` (the
//! worker answers it at once without running it), so the router moves on to the next deployment.
//! The request's task awaits the answer on a channel: the async thread is free while the model
//! runs.
//!
//! Fairness: a worker keeps up to [`MAX_ACTIVE_PER_WORKER`] generations in flight and advances
//! them one token each in turn, taking new jobs between rounds, so a long answer does not hold
//! a short one back. A generation whose caller went away (its channel closed) is dropped at the
//! next round.

use super::embed::Embedder;
use super::generate::{GenerateRequest, Generator, Sequence, Step};
use super::session::RunsOn;
use crate::config::Device;
use prometheus::{Histogram, IntCounter, IntGauge};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_adapters::canonical::FinishReason;
use tokio::sync::{mpsc, oneshot};

/// Generations one worker advances in turn (more wait in the queue).
pub const MAX_ACTIVE_PER_WORKER: usize = 8;

/// A model that failed to load is not tried again for this long (its error is answered at once).
const RELOAD_AFTER_FAILURE: Duration = Duration::from_secs(30);

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

/// What a generation job reports, in this order: `Spilled` alone, or `Rejected` alone, or
/// `Started`, any number of `Text`, then `Finished` or `Failed`.
#[derive(Debug, Clone, PartialEq)]
pub enum GenEvent {
    /// Not run here (waited too long, model unavailable): the next deployment should answer.
    Spilled(Spill),
    /// The request cannot be served by this model as written (prompt too long, the chat
    /// template refused it): a 400 for the caller.
    Rejected(String),
    /// The prompt was read; tokens follow.
    Started { prompt_tokens: u64 },
    /// Non-empty text.
    Text(String),
    Finished {
        finish: FinishReason,
        prompt_tokens: u64,
        completion_tokens: u64,
    },
    /// Inference failed after it started.
    Failed(String),
}

enum Job {
    Embed {
        model: PathBuf,
        texts: Vec<String>,
        queued: Instant,
        reply: oneshot::Sender<Result<Embedded, Spill>>,
    },
    Generate {
        model: PathBuf,
        request: Box<GenerateRequest>,
        queued: Instant,
        events: mpsc::UnboundedSender<GenEvent>,
    },
}

impl Job {
    fn queued(&self) -> Instant {
        match self {
            Job::Embed { queued, .. } | Job::Generate { queued, .. } => *queued,
        }
    }

    fn spill(self, why: Spill) {
        match self {
            Job::Embed { reply, .. } => {
                let _ = reply.send(Err(why));
            }
            Job::Generate { events, .. } => {
                let _ = events.send(GenEvent::Spilled(why));
            }
        }
    }
}

/// Metric handles for one pool.
#[derive(Clone)]
pub struct PoolMetrics {
    pub queue_depth: IntGauge,
    pub spilled: IntCounter,
    /// Prompt and generated tokens, and embedded tokens.
    pub tokens: IntCounter,
    /// Time of one decoding step (one generated token after the first).
    pub time_per_token: Histogram,
    /// From submission to the first generated token (queue wait and prompt included).
    pub time_to_first_token: Histogram,
    /// Decoding speed of the last finished generation.
    pub tokens_per_second: prometheus::Gauge,
    /// 1 on the device the pool's sessions run on.
    pub device_cpu: IntGauge,
    pub device_cuda: IntGauge,
}

/// How a pool runs.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub workers: usize,
    pub queue: usize,
    pub max_wait: Duration,
    pub device: Device,
    /// Worker `i` is pinned to `cores[i % len]`; empty: not pinned.
    pub cores: Vec<usize>,
}

/// One provider's pool.
pub struct Pool {
    tx: SyncSender<Job>,
    depth: Arc<AtomicUsize>,
    metrics: PoolMetrics,
    max_wait: Duration,
}

impl Pool {
    /// Starts the worker threads around a queue of `settings.queue` jobs.
    pub fn start(
        name: &str,
        env: ort::environment::Environment,
        settings: &PoolSettings,
        metrics: PoolMetrics,
    ) -> std::io::Result<Pool> {
        let (tx, rx) = sync_channel::<Job>(settings.queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let depth = Arc::new(AtomicUsize::new(0));
        for w in 0..settings.workers.max(1) {
            let worker = Worker {
                provider: name.to_string(),
                rx: rx.clone(),
                env: env.clone(),
                depth: depth.clone(),
                metrics: metrics.clone(),
                max_wait: settings.max_wait,
                device: settings.device,
                embedders: HashMap::new(),
                generators: HashMap::new(),
                failed: HashMap::new(),
                active: Vec::new(),
            };
            let core =
                (!settings.cores.is_empty()).then(|| settings.cores[w % settings.cores.len()]);
            std::thread::Builder::new()
                .name(format!("{name}-infer-{w}"))
                .spawn(move || {
                    if let Some(id) = core {
                        pin_to(id);
                    }
                    worker.run()
                })?;
        }
        Ok(Pool {
            tx,
            depth,
            metrics,
            max_wait: settings.max_wait,
        })
    }

    /// Queues an embedding job; never blocks. `Err` when the pool cannot take it now.
    pub fn try_embed(
        &self,
        model: PathBuf,
        texts: Vec<String>,
    ) -> Result<oneshot::Receiver<Result<Embedded, Spill>>, Spill> {
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Embed {
            model,
            texts,
            queued: Instant::now(),
            reply,
        })?;
        Ok(answer)
    }

    /// Queues a generation job; never blocks. Its events arrive on the returned channel; dropping
    /// the receiver cancels the generation.
    pub fn try_generate(
        &self,
        model: PathBuf,
        request: GenerateRequest,
    ) -> Result<mpsc::UnboundedReceiver<GenEvent>, Spill> {
        let (events, rx) = mpsc::unbounded_channel();
        self.submit(Job::Generate {
            model,
            request: Box::new(request),
            queued: Instant::now(),
            events,
        })?;
        Ok(rx)
    }

    fn submit(&self, job: Job) -> Result<(), Spill> {
        // Counted before the send: a worker may take the job (and count it out) before
        // `try_send` even returns.
        let d = self.depth.fetch_add(1, Ordering::AcqRel).saturating_add(1);
        self.metrics.queue_depth.set(d as i64);
        match self.tx.try_send(job) {
            Ok(()) => Ok(()),
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

fn pin_to(id: usize) {
    let ok = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.id == id)
        .is_some_and(core_affinity::set_for_current);
    if ok {
        log::info!("local worker pinned to core {id}");
    } else {
        log::warn!("local worker: cannot pin to core {id} (not among this process's cores)");
    }
}

/// A generation in flight on a worker.
struct Active {
    model: PathBuf,
    seq: Sequence,
    events: mpsc::UnboundedSender<GenEvent>,
    queued: Instant,
    first_token: Option<Instant>,
}

/// One worker thread's state: its sessions and the generations it advances.
struct Worker {
    provider: String,
    rx: Arc<Mutex<Receiver<Job>>>,
    env: ort::environment::Environment,
    depth: Arc<AtomicUsize>,
    metrics: PoolMetrics,
    max_wait: Duration,
    device: Device,
    embedders: HashMap<PathBuf, Embedder>,
    generators: HashMap<PathBuf, Generator>,
    /// Models that failed to load: when, and why.
    failed: HashMap<PathBuf, (Instant, String)>,
    active: Vec<Active>,
}

impl Worker {
    fn run(mut self) {
        loop {
            if self.active.is_empty() {
                // Idle: wait for work. The lock is held only while waiting, by worker threads.
                let job = match self.rx.lock() {
                    Ok(r) => match r.recv() {
                        Ok(j) => j,
                        Err(_) => return,
                    },
                    Err(_) => return,
                };
                self.take(job);
            }
            // Between rounds, take what is queued (never blocking: another worker may be the one
            // waiting on the queue).
            while self.active.len() < MAX_ACTIVE_PER_WORKER {
                let next = match self.rx.try_lock() {
                    Ok(r) => r.try_recv(),
                    Err(_) => break,
                };
                match next {
                    Ok(job) => self.take(job),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        if self.active.is_empty() {
                            return;
                        }
                        break;
                    }
                }
            }
            self.round();
        }
    }

    /// A job leaves the queue: spilled if it waited too long, else run (embeddings) or started
    /// (generation).
    fn take(&mut self, job: Job) {
        let d = self.depth.fetch_sub(1, Ordering::AcqRel).saturating_sub(1);
        self.metrics.queue_depth.set(d as i64);
        let waited = job.queued().elapsed();
        if waited > self.max_wait {
            job.spill(Spill::Waited(waited));
            return;
        }
        match job {
            Job::Embed {
                model,
                texts,
                reply,
                ..
            } => {
                let result = self.embed(&model, &texts);
                if let Ok((_, tokens)) = &result {
                    self.metrics.tokens.inc_by(*tokens);
                }
                let _ = reply.send(result);
            }
            Job::Generate {
                model,
                request,
                queued,
                events,
            } => {
                let generator = match self.generator(&model) {
                    Ok(g) => g,
                    Err(why) => {
                        let _ = events.send(GenEvent::Spilled(Spill::Unavailable(why)));
                        return;
                    }
                };
                match generator.start(&request) {
                    Ok(seq) => {
                        let prompt_tokens = seq.prompt_tokens() as u64;
                        self.metrics.tokens.inc_by(prompt_tokens);
                        if events.send(GenEvent::Started { prompt_tokens }).is_ok() {
                            self.active.push(Active {
                                model,
                                seq,
                                events,
                                queued,
                                first_token: None,
                            });
                        }
                    }
                    Err(e) => {
                        let _ = events.send(GenEvent::Rejected(e.to_string()));
                    }
                }
            }
        }
    }

    fn embed(&mut self, model: &PathBuf, texts: &[String]) -> Result<Embedded, Spill> {
        if !self.embedders.contains_key(model) {
            self.recently_failed(model).map_err(Spill::Unavailable)?;
            let e = Embedder::load(&self.env, model, self.device, 1)
                .map_err(|e| Spill::Unavailable(self.load_failed(model, e.to_string())))?;
            self.loaded(model, e.runs_on());
            self.embedders.insert(model.clone(), e);
        }
        let Some(embedder) = self.embedders.get_mut(model) else {
            return Err(Spill::Unavailable("model not loaded".into()));
        };
        embedder
            .embed(texts)
            .map_err(|e| Spill::Unavailable(e.to_string()))
    }

    fn generator(&mut self, model: &PathBuf) -> Result<&mut Generator, String> {
        if !self.generators.contains_key(model) {
            self.recently_failed(model)?;
            let g = Generator::load(&self.env, model, self.device, 1)
                .map_err(|e| self.load_failed(model, e.to_string()))?;
            self.loaded(model, g.runs_on());
            self.generators.insert(model.clone(), g);
        }
        self.generators
            .get_mut(model)
            .ok_or_else(|| "model not loaded".to_string())
    }

    /// The error of a load that failed less than [`RELOAD_AFTER_FAILURE`] ago.
    fn recently_failed(&self, model: &std::path::Path) -> Result<(), String> {
        match self.failed.get(model) {
            Some((at, why)) if at.elapsed() < RELOAD_AFTER_FAILURE => Err(why.clone()),
            _ => Ok(()),
        }
    }

    fn load_failed(&mut self, model: &std::path::Path, why: String) -> String {
        log::error!(
            "local provider {}: model {}: {why} (not retried for {:?})",
            self.provider,
            model.display(),
            RELOAD_AFTER_FAILURE
        );
        self.failed
            .insert(model.to_path_buf(), (Instant::now(), why.clone()));
        why
    }

    /// Logs and exports where a newly loaded model runs.
    fn loaded(&self, model: &std::path::Path, (runs_on, cuda_error): (RunsOn, Option<&str>)) {
        match (runs_on, cuda_error) {
            (RunsOn::Cuda, _) => log::info!(
                "local provider {}: {} runs on CUDA",
                self.provider,
                model.display()
            ),
            (RunsOn::Cpu, Some(why)) => log::info!(
                "local provider {}: {} runs on CPU (device {}: CUDA unavailable: {why})",
                self.provider,
                model.display(),
                self.device.name()
            ),
            (RunsOn::Cpu, None) => log::info!(
                "local provider {}: {} runs on CPU",
                self.provider,
                model.display()
            ),
        }
        let on = match runs_on {
            RunsOn::Cpu => &self.metrics.device_cpu,
            RunsOn::Cuda => &self.metrics.device_cuda,
        };
        on.set(1);
    }

    /// Advances every active generation by one token.
    fn round(&mut self) {
        let mut i = 0;
        while i < self.active.len() {
            if self.advance(i) {
                i += 1;
            } else {
                self.active.swap_remove(i);
            }
        }
    }

    /// One token for `active[i]`; `false` when it is over (finished, failed or abandoned).
    fn advance(&mut self, i: usize) -> bool {
        let a = &mut self.active[i];
        if a.events.is_closed() {
            return false;
        }
        let Some(generator) = self.generators.get_mut(&a.model) else {
            let _ = a.events.send(GenEvent::Failed("model unloaded".into()));
            return false;
        };
        let started = Instant::now();
        let step = generator.step(&mut a.seq);
        let now = Instant::now();
        match a.first_token {
            None => {
                a.first_token = Some(now);
                self.metrics
                    .time_to_first_token
                    .observe((now - a.queued).as_secs_f64());
            }
            Some(_) => self
                .metrics
                .time_per_token
                .observe((now - started).as_secs_f64()),
        }
        match step {
            Ok(Step::Text(text)) => {
                self.metrics.tokens.inc();
                text.is_empty() || a.events.send(GenEvent::Text(text)).is_ok()
            }
            Ok(Step::Done(text, finish)) => {
                self.metrics.tokens.inc();
                if !text.is_empty() {
                    let _ = a.events.send(GenEvent::Text(text));
                }
                let generated = a.seq.generated_tokens();
                if let Some(first) = a.first_token.filter(|_| generated > 1) {
                    let secs = (now - first).as_secs_f64();
                    if secs > 0.0 {
                        self.metrics
                            .tokens_per_second
                            .set((generated - 1) as f64 / secs);
                    }
                }
                let _ = a.events.send(GenEvent::Finished {
                    finish,
                    prompt_tokens: a.seq.prompt_tokens() as u64,
                    completion_tokens: generated as u64,
                });
                false
            }
            Err(e) => {
                log::error!("local model {}: {e}", a.model.display());
                let _ = a.events.send(GenEvent::Failed(e.to_string()));
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{environment, request, tiny_lm};
    use super::*;
    use prometheus::{Gauge, HistogramOpts};

    fn metrics() -> PoolMetrics {
        let h = |n: &str| {
            Histogram::with_opts(HistogramOpts::new(n, "test")).unwrap_or_else(|e| panic!("{e}"))
        };
        let g = |n: &str| IntGauge::new(n, "test").unwrap_or_else(|e| panic!("{e}"));
        PoolMetrics {
            queue_depth: g("q"),
            spilled: IntCounter::new("s", "test").unwrap_or_else(|e| panic!("{e}")),
            tokens: IntCounter::new("t", "test").unwrap_or_else(|e| panic!("{e}")),
            time_per_token: h("tpt"),
            time_to_first_token: h("ttft"),
            tokens_per_second: Gauge::new("tps", "test").unwrap_or_else(|e| panic!("{e}")),
            device_cpu: g("cpu"),
            device_cuda: g("cuda"),
        }
    }

    fn pool(workers: usize, queue: usize) -> Pool {
        let settings = PoolSettings {
            workers,
            queue,
            max_wait: Duration::from_secs(5),
            device: Device::Auto,
            cores: Vec::new(),
        };
        Pool::start("test", environment(), &settings, metrics()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Reads a job's events to the end: (text, finish, completion tokens).
    async fn collect(
        mut rx: mpsc::UnboundedReceiver<GenEvent>,
    ) -> (String, Option<FinishReason>, u64) {
        let mut text = String::new();
        while let Some(ev) = rx.recv().await {
            match ev {
                GenEvent::Text(t) => text.push_str(&t),
                GenEvent::Finished {
                    finish,
                    completion_tokens,
                    ..
                } => return (text, Some(finish), completion_tokens),
                GenEvent::Started { .. } => {}
                other => panic!("{other:?}"),
            }
        }
        (text, None, 0)
    }

    #[tokio::test]
    async fn a_short_generation_is_not_held_back_by_a_long_one() {
        // One worker. The long answer counts from U+0080 (bytes 0xC2 0x80) through every byte value
        // up to 'z' (~250 tokens); the short one is "z" then the end. Interleaving one token per
        // generation per round lets the short one finish first.
        let pool = pool(1, 8);
        let long = pool
            .try_generate(tiny_lm(), request("\u{80}"))
            .unwrap_or_else(|e| panic!("{e}"));
        let short = pool
            .try_generate(tiny_lm(), request("xy"))
            .unwrap_or_else(|e| panic!("{e}"));
        let long = tokio::spawn(async move {
            let r = collect(long).await;
            (r, Instant::now())
        });
        let (short_text, short_finish, _) = collect(short).await;
        let short_done = Instant::now();
        let ((long_text, long_finish, long_tokens), long_done) =
            long.await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(short_text, "z");
        assert_eq!(short_finish, Some(FinishReason::Stop));
        assert_eq!(long_finish, Some(FinishReason::Stop));
        assert!(long_tokens > 200, "{long_tokens}");
        assert!(long_text.ends_with("xyz"), "{long_text:?}");
        assert!(
            short_done < long_done,
            "the short answer waited for the long one"
        );
    }

    #[tokio::test]
    async fn a_full_queue_and_a_closed_receiver_are_handled() {
        let pool = pool(1, 1);
        // Keep the worker busy, then fill the single queue slot: the next submission spills.
        let mut busy = Vec::new();
        let mut spilled = 0;
        for _ in 0..12 {
            match pool.try_generate(tiny_lm(), request("\u{80}")) {
                Ok(rx) => busy.push(rx),
                Err(Spill::QueueFull) => spilled += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(spilled > 0, "nothing spilled");
        // Abandon them all (callers gone): the worker drops them and serves the next job.
        drop(busy);
        let mut rx = None;
        for _ in 0..200 {
            match pool.try_generate(tiny_lm(), request("xy")) {
                Ok(r) => {
                    rx = Some(r);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
        let (text, finish, tokens) =
            collect(rx.unwrap_or_else(|| panic!("queue never freed"))).await;
        assert_eq!(
            (text.as_str(), finish, tokens),
            ("z", Some(FinishReason::Stop), 2)
        );
    }
}
