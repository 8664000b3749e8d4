//! Pure schema translation between the formats callers speak and the formats providers speak.
//!
//! This crate owns wire-format knowledge only: it parses, inspects and rewrites bytes. It never
//! performs I/O, never spawns, never reads clocks, and knows nothing of Pingora — so every function
//! here can be unit-tested and benchmarked in isolation.
//!
//! Modules:
//! - [`openai`]: the OpenAI Chat Completions format (fast-path inspection and in-place rewrite,
//!   usage extraction, stream-chunk classification, error bodies).
//! - [`sse`]: incremental Server-Sent-Events framing over arbitrary byte chunks.

pub mod openai;
pub mod sse;
