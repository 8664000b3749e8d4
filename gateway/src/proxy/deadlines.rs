//! How long a caller may take to send its request (`server.client_timeouts`), so that a slow or
//! silent client cannot hold a connection (and its task and buffers) for as long as it likes.
//!
//! Pingora 0.9.1 reads a request head before any hook of [`pingora_proxy::ProxyHttp`] runs, and
//! bounds it only per read (60 s on a fresh HTTP/1 connection, the keep-alive timeout on a reused
//! one): a head trickled a byte at a time never times out, and with h2c on, a plain connection
//! first waits — without any bound — for 24 bytes to tell HTTP/2's preface from HTTP/1. So the
//! inference listener's app is wrapped in [`ClientDeadlines`], which runs Pingora's whole
//! connection handling under a per-connection watch and drops the connection (closing it, with
//! no answer: Pingora offers no way to write one there) when the watch's deadline passes:
//!
//! * **header** — armed at accept: the first request head must be complete within it. A
//!   connection that sends nothing is closed after it, as is one that trickles its head. With
//!   h2c the protocol sniff happens under the same deadline.
//! * **idle** — after each answer (when the request's `logging` runs) the watch is re-armed for
//!   `idle`: a kept-alive connection's next request head must be complete within it (Pingora's
//!   own keep-alive timeout is left unbounded: setting it per request would cost a timer per
//!   request, the watch costs none). A request's own processing (reading its body, waiting on the
//!   upstream, streaming the answer) is never cut by the watch: it is disarmed as soon as a head
//!   is complete ([`head_complete`], the first thing `request_filter` does).
//! * **body** — bounded where the body is read (`proxy::body`): the whole body within `body` of
//!   the gateway starting to read it, else 408 in the caller's format and the connection closed.
//!   A body left unread (an early answer) is drained by Pingora within `body` too.
//!
//! Not bounded here: the TLS handshake (Pingora's own 60 s, before the app runs); HTTP/2
//! connections once detected (by ALPN or the h2c preface): their streams run in tasks of their
//! own, which the watch cannot see, so an h2 connection is left to the h2 layer and
//! `h2_idle_timeout` (set to `idle`); a stream's body there is still bounded by `body`.

use crate::config::ClientTimeouts;
use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::{Stream, ALPN};
use pingora_core::server::ShutdownWatch;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// HTTP/2's connection preface, which an h2c client sends first.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

tokio::task_local! {
    /// The watch of the HTTP/1 connection the current task serves.
    static CONNECTION: Arc<Watch>;
}

/// One connection's deadline for its next request head. Setting it is one atomic store (no lock,
/// no wake-up): the [`Watched`] future serving the connection looks at it after each poll.
struct Watch {
    /// The connection's start, which deadlines count from.
    base: Instant,
    /// Milliseconds after `base` when the connection is dropped unless a head completes first;
    /// [`DISARMED`] while a request is being processed.
    deadline_ms: AtomicU64,
}

const DISARMED: u64 = u64::MAX;

impl Watch {
    fn new(deadline: Instant) -> Watch {
        let base = Instant::now();
        let w = Watch {
            base,
            deadline_ms: AtomicU64::new(DISARMED),
        };
        w.set(Some(deadline));
        w
    }

    fn set(&self, deadline: Option<Instant>) {
        let ms = deadline.map_or(DISARMED, |d| {
            d.saturating_duration_since(self.base).as_millis() as u64
        });
        self.deadline_ms.store(ms, Ordering::Relaxed);
    }

    fn get(&self) -> Option<Instant> {
        match self.deadline_ms.load(Ordering::Relaxed) {
            DISARMED => None,
            ms => Some(self.base + Duration::from_millis(ms)),
        }
    }
}

/// A request head is complete: the connection's watch stops counting until the answer is done.
/// A no-op outside a watched connection (HTTP/2 streams).
pub fn head_complete() {
    let _ = CONNECTION.try_with(|w| w.set(None));
}

/// The answer is done (at `now`): the connection's next request head must be complete within
/// `idle` from then.
pub fn request_done(t: &ClientTimeouts, now: Instant) {
    let _ = CONNECTION.try_with(|w| w.set(Some(now + t.idle)));
}

/// The inference listener's app: Pingora's, run under a per-connection head deadline.
pub struct ClientDeadlines<A> {
    pub inner: Arc<A>,
    pub timeouts: ClientTimeouts,
    /// Whether plain-text connections may speak h2c (then the first bytes are sniffed here too,
    /// under the header deadline, to leave HTTP/2 connections alone).
    pub h2c: bool,
}

/// A connection served under its [`Watch`]: `Err(())` when the watch's deadline passed first.
///
/// Cheaper than a `select!` of the connection and a sleep: the timer is polled only while the
/// watch is armed, and it is not moved on every request — it stays at the deadline it was
/// registered for, and when it fires early (the deadline moved on) it is pushed to the current
/// one; only a deadline earlier than the timer's (`idle` shorter than `header`) resets it at
/// once.
struct Watched<F> {
    serve: Pin<Box<F>>,
    timer: Pin<Box<tokio::time::Sleep>>,
    watch: Arc<Watch>,
}

impl<F: Future> Future for Watched<F> {
    type Output = Result<F::Output, ()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(served) = self.serve.as_mut().poll(cx) {
            return Poll::Ready(Ok(served));
        }
        loop {
            let Some(at) = self.watch.get() else {
                // Disarmed: a request is being processed; the timer may still fire (and wake
                // this task once) at its old deadline, which is harmless.
                return Poll::Pending;
            };
            let at_tokio = tokio::time::Instant::from(at);
            if self.timer.deadline() > at_tokio {
                self.timer.as_mut().reset(at_tokio);
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if Instant::now() >= at {
                return Poll::Ready(Err(()));
            }
            self.timer.as_mut().reset(at.into());
        }
    }
}

impl<A> ClientDeadlines<A> {
    /// Whether `stream` will speak HTTP/2; `None` when the connection should be closed (nothing
    /// usable arrived within `within`).
    async fn is_h2(&self, stream: &mut Stream, within: Duration) -> Option<bool> {
        if stream.get_ssl_digest().is_some() {
            return Some(matches!(stream.selected_alpn_proto(), Some(ALPN::H2)));
        }
        if !self.h2c {
            return Some(false);
        }
        let mut buf = [0u8; H2_PREFACE.len()];
        // Pingora's own sniff reads the same bytes again (a peek is rewound).
        match tokio::time::timeout(within, stream.try_peek(&mut buf)).await {
            Ok(Ok(true)) => Some(buf == H2_PREFACE),
            Ok(Ok(false)) => Some(false),
            Ok(Err(_)) | Err(_) => None,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for ClientDeadlines<A> {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let accepted = Instant::now();
        let deadline = accepted + self.timeouts.header;
        if self.is_h2(&mut stream, self.timeouts.header).await? {
            return self.inner.process_new(stream, shutdown).await;
        }
        let watch = Arc::new(Watch::new(deadline));
        let serve = CONNECTION.scope(watch.clone(), self.inner.process_new(stream, shutdown));
        let watched = Watched {
            serve: Box::pin(serve),
            timer: Box::pin(tokio::time::sleep_until(deadline.into())),
            watch,
        };
        match watched.await {
            Ok(served) => served,
            Err(()) => {
                log::debug!(
                    "closing a connection whose request head did not arrive in time ({:?} after accept)",
                    accepted.elapsed()
                );
                None
            }
        }
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watched(watch: &Arc<Watch>, timer_at: Instant) -> Watched<std::future::Pending<()>> {
        Watched {
            serve: Box::pin(std::future::pending()),
            timer: Box::pin(tokio::time::sleep_until(timer_at.into())),
            watch: watch.clone(),
        }
    }

    #[tokio::test]
    async fn the_watch_fires_only_while_armed() {
        let at = Instant::now() + Duration::from_millis(30);
        let w = Arc::new(Watch::new(at));
        let fired = tokio::time::timeout(Duration::from_secs(2), watched(&w, at)).await;
        assert_eq!(fired, Ok(Err(())), "an armed deadline fires");
        w.set(None);
        assert!(
            tokio::time::timeout(Duration::from_millis(80), watched(&w, at))
                .await
                .is_err(),
            "a disarmed watch waits"
        );
        // Re-armed later than its timer: the early timer is pushed, and fires at the deadline.
        let later = Instant::now() + Duration::from_millis(60);
        w.set(Some(later));
        let started = Instant::now();
        let fired = tokio::time::timeout(Duration::from_secs(2), watched(&w, at)).await;
        assert_eq!(fired, Ok(Err(())), "re-armed");
        assert!(Instant::now() >= later, "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_served_connection_ends_as_it_served() {
        let at = Instant::now() + Duration::from_secs(5);
        let w = Arc::new(Watch::new(at));
        let done = Watched {
            serve: Box::pin(async { 7 }),
            timer: Box::pin(tokio::time::sleep_until(at.into())),
            watch: w,
        };
        assert_eq!(done.await, Ok(7));
    }

    #[tokio::test]
    async fn hooks_reach_the_connection_of_the_task() {
        let w = Arc::new(Watch::new(Instant::now()));
        let t = ClientTimeouts::default();
        CONNECTION
            .scope(w.clone(), async {
                head_complete();
            })
            .await;
        assert_eq!(w.get(), None);
        CONNECTION
            .scope(w.clone(), async {
                request_done(&t, Instant::now());
            })
            .await;
        assert!(w
            .get()
            .is_some_and(|d| d > Instant::now() && d <= Instant::now() + t.idle));
        // Outside a watched connection the hooks do nothing.
        head_complete();
        request_done(&t, Instant::now());
    }
}
