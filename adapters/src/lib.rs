//! Pure schema translation between the formats callers speak and the formats providers speak.
//!
//! This crate owns wire-format knowledge only: it parses, inspects and rewrites bytes. It never
//! performs I/O, never spawns, never reads clocks, and knows nothing of Pingora — so every function
//! here can be unit-tested and benchmarked in isolation.
//!
//! Modules:
//! - [`canonical`]: the format-independent request / response / stream-event / error model.
//! - [`capabilities`]: which provider honours which request field (forward, translate, ignore,
//!   reject) and the pruning that enforces it.
//! - [`openai`]: the OpenAI Chat Completions format (fast-path inspection and in-place rewrite,
//!   usage extraction, stream-chunk classification, error bodies; canonical codecs in
//!   [`openai::translate`]).
//! - [`anthropic`]: the Anthropic Messages format, as a caller format and as a provider.
//! - [`gemini`], [`cloudflare`], [`ollama`], [`bedrock`] (Converse, AWS event streams):
//!   provider formats.
//! - [`embeddings`]: OpenAI `/v1/embeddings` translated for providers with their own embeddings
//!   API (Gemini, Ollama, Cloudflare Workers AI), and the OpenAI answer built from vectors.
//! - [`providers`]: dispatch by dialect and caller format.
//! - [`sse`]: incremental Server-Sent-Events framing over arbitrary byte chunks.
//! - [`structured`]: structured output (`output_config.format`) in the Anthropic format.
//! - [`answer_shape`]: whether an upstream body is an answer of its provider's format at all.

pub mod answer_shape;
pub mod anthropic;
pub mod bedrock;
pub mod canonical;
pub mod capabilities;
pub mod cloudflare;
pub mod embeddings;
pub mod gemini;
pub mod ollama;
pub mod openai;
pub mod providers;
pub mod sse;
pub mod structured;
