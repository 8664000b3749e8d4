//! Where a request can go: the live model index and provider handles ([`state`]), per-deployment
//! circuit breakers ([`breaker`]), observed reputation ([`reputation`]), per-request hints
//! ([`hints`]) and the deployments a `fallbackProviders` hint adds ([`hinted`]), sticky splits
//! ([`sticky`]), weighted selection ([`selection`]), the ordered plan for one request
//! ([`router`]), active health probes ([`health`]) and the routing table as text ([`table`]).
//! Nothing here does upstream I/O except health probes and DNS look-ups.

pub mod breaker;
pub mod health;
pub mod hinted;
pub mod hints;
pub mod reputation;
pub mod router;
pub mod selection;
pub mod state;
pub mod sticky;
pub mod table;
