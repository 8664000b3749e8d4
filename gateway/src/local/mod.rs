//! The local inference pool (`kind: local`): ONNX Runtime models run on dedicated OS threads,
//! fed through a bounded queue, so Pingora's async threads never block on inference.
//!
//! - [`runtime`]: loads the ONNX Runtime library once per process (from config or
//!   `ORT_DYLIB_PATH`; never downloaded).
//! - [`session`]: opens a model's session on CUDA or CPU (`device`).
//! - [`embed`]: a sentence-embedding model (mean pooling, L2 normalisation).
//! - [`generate`]: a decoder-only text generation model with a KV cache (Optimum's layout), one
//!   token per step; [`sampling`] picks tokens, [`text`] turns them into text and watches stop
//!   sequences, [`chat_template`] renders the model's chat format.
//! - [`pool`]: the worker threads, the bounded queue, fair interleaving and the spill decision.
//!
//! It owns no HTTP: `forward.rs` submits jobs and writes answers.

pub mod chat_template;
pub mod embed;
pub mod generate;
pub mod pool;
pub mod runtime;
pub mod sampling;
pub mod session;
pub mod text;

#[cfg(test)]
mod test_support;
