//! Switchyard's background jobs — the SIGHUP reloader, the JWKS refresher, the health checker and
//! each provider's health-check balancer, the drain, the OTLP shipper and the event dispatcher —
//! run as one Pingora background service: one thread and one runtime for all of them.
//!
//! Pingora gives every background service a thread with its own runtime; seven of them sat idle
//! beside one request thread, each with a stack, a runtime and an allocator heap of its own
//! (about 1 MiB resident between them in a gateway at rest). The jobs are timers and network
//! waits; none needs a core of its own. The service is ready (for the services that depend on it,
//! such as the inference listener) once every job added with [`Background::add`] has said it is
//! ready; the jobs nothing waits for ([`Background::add_after_ready`]: the drain, the OTLP
//! shipper, the event dispatcher, which opens its outbox synchronously) start after that, so
//! that sharing a thread never delays the listeners.
//!
//! Owns only the running of the jobs: what each job does stays in its own module.

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use pingora_core::services::ServiceReadyNotifier;
use std::sync::Arc;

/// A job of the background service.
pub type Job = Arc<dyn BackgroundService + Send + Sync>;

/// The background jobs, run together on one thread.
#[derive(Default)]
pub struct Background {
    /// Started first; the service is ready when all of them are.
    jobs: Vec<Job>,
    /// Started once the service is ready.
    later: Vec<Job>,
}

impl Background {
    /// Adds a job whose readiness the service's dependents wait for; it starts with the service.
    pub fn add(&mut self, job: impl BackgroundService + Send + Sync + 'static) {
        self.jobs.push(Arc::new(job));
    }

    /// Adds a job nothing waits for; it starts once the service is ready.
    pub fn add_after_ready(&mut self, job: impl BackgroundService + Send + Sync + 'static) {
        self.later.push(Arc::new(job));
    }
}

#[async_trait]
impl BackgroundService for Background {
    async fn start_with_ready_notifier(
        &self,
        shutdown: ShutdownWatch,
        ready: ServiceReadyNotifier,
    ) {
        let mut readiness = Vec::with_capacity(self.jobs.len());
        let mut running = Vec::with_capacity(self.jobs.len());
        for job in &self.jobs {
            let (tx, rx) = tokio::sync::watch::channel(false);
            readiness.push(rx);
            let (job, shutdown) = (job.clone(), shutdown.clone());
            running.push(async move {
                job.start_with_ready_notifier(shutdown, ServiceReadyNotifier::new(tx))
                    .await
            });
        }
        let later = self.later.clone();
        let then = async move {
            for mut rx in readiness {
                // A job that stopped without a word counts as ready (Pingora's rule: the
                // notifier says so when dropped).
                let _ = rx.wait_for(|r| *r).await;
            }
            ready.notify_ready();
            futures_util::future::join_all(later.iter().map(|job| {
                // Nothing waits for these: their notifiers speak to no one.
                let (tx, _) = tokio::sync::watch::channel(false);
                job.start_with_ready_notifier(shutdown.clone(), ServiceReadyNotifier::new(tx))
            }))
            .await;
        };
        tokio::join!(futures_util::future::join_all(running), then);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    struct Slow {
        delay: Duration,
        started: Arc<AtomicUsize>,
    }

    #[async_trait]
    impl BackgroundService for Slow {
        async fn start_with_ready_notifier(
            &self,
            mut shutdown: ShutdownWatch,
            ready: ServiceReadyNotifier,
        ) {
            self.started.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            ready.notify_ready();
            let _ = shutdown.changed().await;
        }
    }

    #[tokio::test]
    async fn ready_when_every_job_is_and_stopped_by_the_shutdown() {
        let started = Arc::new(AtomicUsize::new(0));
        let mut bg = Background::default();
        for ms in [10, 80] {
            bg.add(Slow {
                delay: Duration::from_millis(ms),
                started: started.clone(),
            });
        }
        let later = Arc::new(AtomicUsize::new(0));
        bg.add_after_ready(Slow {
            delay: Duration::ZERO,
            started: later.clone(),
        });
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let (tx, mut ready) = tokio::sync::watch::channel(false);
        let t0 = std::time::Instant::now();
        let service = tokio::spawn(async move {
            bg.start_with_ready_notifier(shutdown, ServiceReadyNotifier::new(tx))
                .await
        });
        tokio::time::timeout(Duration::from_secs(5), ready.wait_for(|r| *r))
            .await
            .expect("ready in time")
            .expect("the notifier spoke");
        assert!(
            t0.elapsed() >= Duration::from_millis(80),
            "waits for the slowest job"
        );
        assert_eq!(started.load(Ordering::SeqCst), 2, "both jobs run at once");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            later.load(Ordering::SeqCst),
            1,
            "the later job runs once ready"
        );
        stop.send(true).expect("the service listens");
        tokio::time::timeout(Duration::from_secs(5), service)
            .await
            .expect("stops on shutdown")
            .expect("no panic");
    }
}
