//! The shared (Redis) store of a fleet's limits and budgets: connected on first use, reconnected
//! by the client while Redis is away, with the budget keys each replica agrees on, and the one
//! queue through which requests are admitted ([`Shared::admit`]) and what finished requests held
//! is released ([`Shared::release`]): each script call carries everything queued while the
//! previous one was out, releases first.

use super::{Budget, Governance};
use crate::config::RedisSettings;
use crate::governance::redis_store::{Outcome, RedisStore, RedisStoreError, Step, WindowMode};
use prometheus::IntGauge;
use std::sync::Arc;

/// Requests' admissions and releases queued before new ones are refused (an admission: an error,
/// handled as Redis away; a release: dropped, its reservation or concurrency slot held until its
/// key expires): only while Redis is slower than the requests.
const QUEUE: usize = 65_536;
/// Most requests' admissions and releases sent in one script call.
const BATCH: usize = 256;

/// A counter's name in the shared store, made once with its limiter or budget.
pub(super) type Key = Arc<str>;

/// What a finished request gives back (settles, token charges, exits), queued until the next
/// batch goes out.
pub(super) type Release = Step<Key>;

/// What waits for the next script call.
pub(super) enum Job {
    /// One request's admission, answered with its outcomes.
    Admit {
        steps: Vec<Step<Key>>,
        reply: tokio::sync::oneshot::Sender<Result<Vec<Outcome>, String>>,
    },
    /// What one finished request held.
    Release(Vec<Release>),
}

/// A budget's key in the shared store: (key, period start, expiry seconds).
pub(super) fn shared_budget_key(b: &Budget, now: i64) -> (Key, i64, Option<u64>) {
    let (start, end) = b.settings.period.window(now);
    (
        b.shared_name.clone(),
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
    /// Feeds the task that sends admissions and releases (started on first use, on the request
    /// path's runtime).
    pub(super) queue: std::sync::OnceLock<tokio::sync::mpsc::Sender<Job>>,
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

    /// The queue's sender, starting its task on first use. Must run on a runtime.
    fn queue(self: &Arc<Self>) -> &tokio::sync::mpsc::Sender<Job> {
        self.queue.get_or_init(|| {
            let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
            tokio::spawn(send_jobs(self.clone(), rx));
            tx
        })
    }

    /// Queues what a finished request held; it goes with the next call (an idle gateway sends
    /// it at once). Must run on a runtime.
    pub(super) fn release(self: &Arc<Self>, ops: Vec<Release>) {
        if ops.is_empty() {
            return;
        }
        if self.queue().try_send(Job::Release(ops)).is_err() {
            self.errors.inc();
            log::warn!(
                "shared store: the queue is full; a finished request's holds expire on their own"
            );
        }
    }

    /// Runs one request's admission `steps` (stopping at its first refusal) and answers their
    /// outcomes. Under load many requests share one round trip; an idle gateway sends each at
    /// once.
    pub(super) async fn admit(
        self: &Arc<Self>,
        steps: Vec<Step<Key>>,
    ) -> Result<Vec<Outcome>, RedisStoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.queue()
            .try_send(Job::Admit { steps, reply })
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

/// Sends queued jobs until the gateway stops: each call carries the releases that arrived as one
/// group (they never refuse), first, so that what they free is there for the admissions, then
/// one group per admission.
async fn send_jobs(shared: Arc<Shared>, mut rx: tokio::sync::mpsc::Receiver<Job>) {
    while let Some(jobs) = next_batch(&mut rx, BATCH).await {
        let mut released: Vec<Release> = Vec::new();
        let mut admissions = Vec::new();
        for job in jobs {
            match job {
                Job::Release(steps) => released.extend(steps),
                Job::Admit { steps, reply } => admissions.push((steps, reply)),
            }
        }
        let released = merge(released);
        let mut groups: Vec<&[Step<Key>]> = Vec::with_capacity(admissions.len() + 1);
        groups.push(&released);
        groups.extend(admissions.iter().map(|(steps, _)| steps.as_slice()));
        let answered = match shared.store().await {
            Ok(store) => store.groups(&groups).await,
            Err(e) => Err(e),
        };
        match answered {
            Ok(outcomes) => {
                for ((_, reply), out) in admissions.into_iter().zip(outcomes.into_iter().skip(1)) {
                    let _ = reply.send(Ok(out));
                }
            }
            Err(e) => {
                // An admission's caller reports the failure (with its fail-open or -closed
                // answer); releases alone have no caller.
                if admissions.is_empty() {
                    shared.failed(&e);
                }
                let e = e.to_string();
                for (_, reply) in admissions {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// How far back [`merge`] looks for a release of the same counter (a batch of many distinct keys
/// costs at most this many comparisons a release; a counter missed is only sent twice).
const MERGE_LOOKBACK: usize = 32;

/// A batch's releases with one step per counter where they can be added up: a key's exits
/// counted, its token charges summed, a budget period's settles summed. The counters end where
/// the separate steps would have left them (a settle's floor at zero aside: it only matters when
/// Redis lost its state, and then either order is a guess).
fn merge(releases: Vec<Release>) -> Vec<Release> {
    let mut out: Vec<Release> = Vec::with_capacity(releases.len().min(16));
    'next: for r in releases {
        let seen = out.len().saturating_sub(MERGE_LOOKBACK);
        for o in out[seen..].iter_mut().rev() {
            match (o, &r) {
                (Step::Exit { key, count }, Step::Exit { key: k, count: n }) if key == k => {
                    *count += n;
                    continue 'next;
                }
                (
                    Step::Window {
                        key,
                        limit_per_minute,
                        cost,
                        mode: WindowMode::Charge,
                    },
                    Step::Window {
                        key: k,
                        limit_per_minute: l,
                        cost: c,
                        mode: WindowMode::Charge,
                    },
                ) if key == k => {
                    *cost = cost.saturating_add(*c);
                    *limit_per_minute = *l;
                    continue 'next;
                }
                (
                    Step::Settle {
                        key,
                        period_start,
                        reserved,
                        actual,
                        ttl_secs,
                    },
                    Step::Settle {
                        key: k,
                        period_start: p,
                        reserved: r,
                        actual: a,
                        ttl_secs: t,
                    },
                ) if key == k && period_start == p => {
                    *reserved = reserved.saturating_add(*r);
                    *actual = actual.saturating_add(*a);
                    *ttl_secs = (*ttl_secs).max(*t);
                    continue 'next;
                }
                _ => {}
            }
        }
        out.push(r);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_of_releases_sends_one_step_per_counter() {
        let k = |s: &str| -> Key { s.into() };
        let request = |cost: u64, tokens: u64| {
            [
                Step::Settle {
                    key: k("team:t:monthly"),
                    period_start: 100,
                    reserved: 10,
                    actual: cost,
                    ttl_secs: Some(5),
                },
                Step::Window {
                    key: k("key:a:tpm"),
                    limit_per_minute: 1000,
                    cost: tokens,
                    mode: WindowMode::Charge,
                },
                Step::Exit {
                    key: k("key:a"),
                    count: 1,
                },
            ]
        };
        let mut all: Vec<Release> = Vec::new();
        all.extend(request(3, 7));
        all.extend(request(4, 8));
        // A settle into the next period and another key's exit stay apart.
        all.push(Step::Settle {
            key: k("team:t:monthly"),
            period_start: 200,
            reserved: 0,
            actual: 1,
            ttl_secs: Some(9),
        });
        all.push(Step::Exit {
            key: k("key:b"),
            count: 1,
        });
        all.extend(request(5, 9));
        let merged = merge(all);
        assert_eq!(merged.len(), 5, "{merged:?}");
        assert!(matches!(
            &merged[0],
            Step::Settle {
                period_start: 100,
                reserved: 30,
                actual: 12,
                ttl_secs: Some(5),
                ..
            }
        ));
        assert!(matches!(&merged[1], Step::Window { cost: 24, .. }));
        assert!(matches!(&merged[2], Step::Exit { key, count: 3 } if &**key == "key:a"));
        assert!(matches!(
            &merged[3],
            Step::Settle {
                period_start: 200,
                actual: 1,
                ..
            }
        ));
        assert!(matches!(&merged[4], Step::Exit { key, count: 1 } if &**key == "key:b"));
    }
}
