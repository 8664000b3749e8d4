//! Tools for measuring and testing Switchyard against real local servers.
//!
//! - [`upstream`]: a fast, deterministic OpenAI-compatible mock upstream (HTTP/1.1 and h2c),
//!   used by the gateway's integration tests and by the load bench.
//!
//! The binaries `mock-upstream` and `bare-hop` (the baseline Pingora pass-through proxy) live in
//! `src/bin/`; `load.sh` drives them.

pub mod upstream;
