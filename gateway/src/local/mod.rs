//! The local inference pool (`kind: local`): ONNX Runtime models run on dedicated OS threads,
//! fed through a bounded queue, so Pingora's async threads never block on inference.
//!
//! - [`runtime`]: loads the ONNX Runtime library once per process (from config or
//!   `ORT_DYLIB_PATH`; never downloaded).
//! - [`embed`]: a sentence-embedding model (mean pooling, L2 normalisation).
//! - [`pool`]: the worker threads, the bounded queue and the spill decision.
//!
//! It owns no HTTP: `forward.rs` submits jobs and writes answers.

pub mod embed;
pub mod pool;
pub mod runtime;
