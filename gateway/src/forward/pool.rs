//! The forwarder's pool of upstream connections: takes an idle pooled connection when there is
//! one and connects only when there is none, then gives a finished exchange's connection back.
//!
//! Pingora's [`Connector::get_http_session`](pingora_core::connectors::http::Connector) builds
//! its whole connect future (TCP, TLS and HTTP/2 set-up states, ~9 KB) even when the pool has a
//! connection: boxed, it was copied into the heap on every try (~8,700 instructions a request
//! under callgrind); inline, it made every request's future that big. Here the pool is asked
//! first ([`TransportConnector::reused_stream`], a small future) and the connect future is built
//! only on a miss. Upstreams are spoken to in HTTP/1.1 only (no peer asks for ALPN h2), which is
//! what the connector did for these peers too.
//!
//! Owns the pool only: which peer to reach and with what options is [`super::attempt`]'s.

use pingora_core::connectors::{ConnectorOptions, TransportConnector};
use pingora_core::protocols::http::client::HttpSession;
use pingora_core::protocols::http::v1::client::HttpSession as Http1Session;
use pingora_core::upstreams::peer::{HttpPeer, Peer};
use pingora_error::Result;
use std::future::Future;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// Idle upstream connections, keyed by peer (address, TLS name, options).
pub struct UpstreamPool {
    transport: TransportConnector,
}

impl UpstreamPool {
    pub fn new(options: Option<ConnectorOptions>) -> Self {
        UpstreamPool {
            transport: TransportConnector::new(options),
        }
    }

    /// A session to `peer` and whether its connection came from the pool.
    pub async fn acquire(&self, peer: &HttpPeer) -> Result<(HttpSession, bool)> {
        if let Some(stream) = self.transport.reused_stream(peer).await {
            let session = Http1Session::new_with_options(stream, peer);
            return Ok((HttpSession::H1(session), true));
        }
        // Boxed: only a miss pays for the connect future.
        let stream = Box::pin(self.transport.new_stream(peer)).await?;
        Ok((
            HttpSession::H1(Http1Session::new_with_options(stream, peer)),
            false,
        ))
    }

    /// Gives a finished exchange's connection back to the pool when it can be reused (its
    /// answer read to the end, keep-alive on both sides); closes it otherwise.
    ///
    /// Not async: Pingora's `reuse` awaits only to shut down a connection that is not kept, and a
    /// kept one is ready at its first poll. It is polled once here; a shutdown that would wait
    /// is dropped, which closes the socket. An async release made every relay's future ~2.5 KB
    /// larger (the session moved into it twice) and boxed `reuse` on every request.
    pub fn release(&self, session: HttpSession, peer: &HttpPeer, idle: Option<Duration>) {
        let HttpSession::H1(mut h1) = session else {
            // Never made here (HTTP/1.1 only); dropping closes it.
            return;
        };
        h1.respect_keepalive();
        if !h1.will_keepalive() {
            return;
        }
        let mut reuse = std::pin::pin!(h1.reuse());
        let mut cx = Context::from_waker(Waker::noop());
        if let Poll::Ready(Some(stream)) = reuse.as_mut().poll(&mut cx) {
            self.transport
                .release_stream(stream, peer.reuse_hash(), idle);
        }
    }
}
