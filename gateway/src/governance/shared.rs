//! The shared (Redis) store of a fleet's limits and budgets: connected on first use, reconnected
//! by the client while Redis is away, with the budget keys each replica agrees on, and the
//! queue that releases what finished requests held ([`Shared::release`]).

use super::{Budget, Governance};
use crate::config::RedisSettings;
use crate::governance::redis_store::{Outcome, RedisStore, RedisStoreError, Step};
use prometheus::IntGauge;
use std::sync::Arc;

/// Releases queued (requests' worth) before new ones are dropped: only while Redis is slower
/// than the requests that finish, and each dropped one only holds a reservation or a
/// concurrency slot until its key expires.
const RELEASE_QUEUE: usize = 65_536;
/// Most requests' admissions, or releases, sent in one script call.
const BATCH: usize = 256;

/// What a finished request gives back (settles, token charges, exits), queued until the next
/// batch goes out.
pub(super) type Release = Step<String>;

/// One request's admission waiting for the next batch.
pub(super) struct AdmitJob {
    steps: Vec<Step<String>>,
    reply: tokio::sync::oneshot::Sender<Result<Vec<Outcome>, String>>,
}

/// A budget's key in the shared store: (key, period start, expiry seconds).
pub(super) fn shared_budget_key(b: &Budget, now: i64) -> (String, i64, Option<u64>) {
    let (start, end) = b.settings.period.window(now);
    (
        format!("{}:{}", b.settings.scope, b.settings.period.name()),
        start,
        end.map(|e| (e - now).max(0) as u64 + 86_400),
    )
}

/// The shared (Redis) store: connected on first use from the request path's runtime, and
/// reconnected by the client while Redis is away.
pub struct Shared {
    pub(super) settings: RedisSettings,
    pub(super) store: tokio::sync::OnceCell<RedisStore>,
    /// The UTC day (days since the epoch) budgets were last seeded in; periods start on day
    /// boundaries, so seeding once a day covers every new period.
    pub(super) seeded_day: std::sync::atomic::AtomicI64,
    pub(super) up: IntGauge,
    pub(super) errors: prometheus::IntCounter,
    pub(super) last_warning: std::sync::atomic::AtomicI64,
    /// Feeds the task that sends releases (started on first use, on the request path's runtime).
    pub(super) releases: std::sync::OnceLock<tokio::sync::mpsc::Sender<Vec<Release>>>,
    /// Feeds the task that sends admissions, likewise.
    pub(super) admissions: std::sync::OnceLock<tokio::sync::mpsc::Sender<AdmitJob>>,
}

impl Shared {
    pub(super) async fn store(&self) -> Result<&RedisStore, RedisStoreError> {
        self.store
            .get_or_try_init(|| RedisStore::connect(&self.settings.url, "switchyard:"))
            .await
    }

    /// Seeds budget periods Redis does not know yet with this node's ledger totals (Redis keeps
    /// the larger truth once set: seeding never overwrites).
    pub(super) async fn seed(&self, store: &RedisStore, gov: &Governance) {
        let now = crate::clock::unix_secs_i64();
        let day = now.div_euclid(86_400) + 1;
        if self
            .seeded_day
            .swap(day, std::sync::atomic::Ordering::AcqRel)
            == day
        {
            return;
        }
        for b in &gov.budgets {
            let (key, start, ttl) = shared_budget_key(b, now);
            if let Err(e) = store.seed(&key, start, b.account.spent(now), ttl).await {
                self.failed(&e);
                self.seeded_day
                    .store(0, std::sync::atomic::Ordering::Release);
            }
        }
    }

    /// Queues what a finished request held. One task sends the queue: each script call carries
    /// every release that arrived while the previous call was out, so under load many requests
    /// share one round trip, and an idle gateway sends each at once. Must run on a runtime.
    pub(super) fn release(self: &Arc<Self>, ops: Vec<Release>) {
        if ops.is_empty() {
            return;
        }
        let tx = self.releases.get_or_init(|| {
            let (tx, rx) = tokio::sync::mpsc::channel(RELEASE_QUEUE);
            tokio::spawn(send_releases(self.clone(), rx));
            tx
        });
        if tx.try_send(ops).is_err() {
            self.errors.inc();
            log::warn!(
                "shared store: the release queue is full; a request's holds expire on their own"
            );
        }
    }

    /// Runs one request's admission `steps` (stopping at its first refusal) and answers their
    /// outcomes. Admissions that arrive while a call is out go together in the next one: under
    /// load many requests share one round trip, and an idle gateway sends each at once.
    pub(super) async fn admit(
        self: &Arc<Self>,
        steps: Vec<Step<String>>,
    ) -> Result<Vec<Outcome>, RedisStoreError> {
        let tx = self.admissions.get_or_init(|| {
            let (tx, rx) = tokio::sync::mpsc::channel(RELEASE_QUEUE);
            tokio::spawn(send_admissions(self.clone(), rx));
            tx
        });
        let (reply, answer) = tokio::sync::oneshot::channel();
        tx.try_send(AdmitJob { steps, reply })
            .map_err(|_| RedisStoreError::Shared("the admission queue is full".into()))?;
        match answer.await {
            Ok(Ok(outcomes)) => Ok(outcomes),
            Ok(Err(e)) => Err(RedisStoreError::Shared(e)),
            Err(_) => Err(RedisStoreError::Shared(
                "the admission sender stopped".into(),
            )),
        }
    }

    pub(super) fn failed(&self, e: &RedisStoreError) {
        self.errors.inc();
        self.up.set(0);
        // Redis may come back empty (restarted without persistence): seed again once it answers.
        self.seeded_day
            .store(0, std::sync::atomic::Ordering::Release);
        let now = crate::clock::unix_secs_i64();
        let last = self.last_warning.load(std::sync::atomic::Ordering::Relaxed);
        if now - last >= 10 {
            self.last_warning
                .store(now, std::sync::atomic::Ordering::Relaxed);
            log::warn!(
                "shared store unavailable ({e}); {}",
                if self.settings.fail_closed {
                    "refusing requests that need it (fail_closed)"
                } else {
                    "enforcing limits and budgets on this node alone (fail_open)"
                }
            );
        }
    }
}

/// Waits for one queued item, then takes whatever else is queued now, up to `max` in all.
async fn next_batch<T>(rx: &mut tokio::sync::mpsc::Receiver<T>, max: usize) -> Option<Vec<T>> {
    let mut batch = vec![rx.recv().await?];
    while batch.len() < max {
        match rx.try_recv() {
            Ok(more) => batch.push(more),
            Err(_) => break,
        }
    }
    Some(batch)
}

/// Sends queued releases in batches until the gateway stops.
async fn send_releases(shared: Arc<Shared>, mut rx: tokio::sync::mpsc::Receiver<Vec<Release>>) {
    while let Some(requests) = next_batch(&mut rx, BATCH).await {
        let steps: Vec<Release> = requests.into_iter().flatten().collect();
        match shared.store().await {
            Ok(store) => {
                if let Err(e) = store.steps(&steps).await {
                    shared.failed(&e);
                }
            }
            Err(e) => shared.failed(&e),
        }
    }
}

/// Sends queued admissions in batches (one group per request) until the gateway stops.
async fn send_admissions(shared: Arc<Shared>, mut rx: tokio::sync::mpsc::Receiver<AdmitJob>) {
    while let Some(jobs) = next_batch(&mut rx, BATCH).await {
        let answered = match shared.store().await {
            Ok(store) => {
                let groups: Vec<&[Step<String>]> =
                    jobs.iter().map(|j| j.steps.as_slice()).collect();
                store.groups(&groups).await
            }
            Err(e) => Err(e),
        };
        match answered {
            Ok(outcomes) => {
                for (job, out) in jobs.into_iter().zip(outcomes) {
                    let _ = job.reply.send(Ok(out));
                }
            }
            Err(e) => {
                let e = e.to_string();
                for job in jobs {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }
}
