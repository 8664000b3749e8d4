//! Opening one ONNX Runtime session for a worker: the execution provider (`device`), the thread
//! settings, and which device the session really runs on.
//!
//! `device: auto` registers the CUDA execution provider and falls back to the CPU when that fails
//! (a CPU-only `onnxruntime` wheel, no driver, no GPU); `device: cuda` makes that failure an
//! error; `device: cpu` never tries. The outcome is returned so the pool can log it and export it.
//! Owns no threads and no models' logic.

use std::path::Path;

use ort::environment::Environment;
use ort::ep::{ExecutionProvider, CUDA};
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::Session;

use crate::config::Device;

/// Where a session runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunsOn {
    Cpu,
    Cuda,
}

impl RunsOn {
    pub fn name(self) -> &'static str {
        match self {
            RunsOn::Cpu => "cpu",
            RunsOn::Cuda => "cuda",
        }
    }
}

/// A session and where it runs; `cuda_error` says why CUDA was not used under `device: auto`.
pub struct Opened {
    pub session: Session,
    pub runs_on: RunsOn,
    pub cuda_error: Option<String>,
}

/// Opens `model`. `intra_threads` is ONNX Runtime's intra-op thread count (1 = run on the
/// calling worker thread, no extra OS thread); spinning is off so idle workers leave the cores
/// alone.
pub fn open(
    env: &Environment,
    model: &Path,
    device: Device,
    intra_threads: usize,
) -> ort::Result<Opened> {
    if device == Device::Cpu {
        let session = builder(env, intra_threads)?.commit_from_file(model)?;
        return Ok(Opened {
            session,
            runs_on: RunsOn::Cpu,
            cuda_error: None,
        });
    }
    let cuda_error = match with_cuda(builder(env, intra_threads)?) {
        Ok(mut b) => match b.commit_from_file(model) {
            Ok(session) => {
                return Ok(Opened {
                    session,
                    runs_on: RunsOn::Cuda,
                    cuda_error: None,
                })
            }
            // The provider registered but the session could not be built on it (e.g. no device).
            Err(e) => e.to_string(),
        },
        Err(e) => e,
    };
    if device == Device::Cuda {
        return Err(ort::Error::new(format!(
            "device: cuda, but the CUDA execution provider is unavailable: {cuda_error}"
        )));
    }
    let session = builder(env, intra_threads)?.commit_from_file(model)?;
    Ok(Opened {
        session,
        runs_on: RunsOn::Cpu,
        cuda_error: Some(cuda_error),
    })
}

fn builder(env: &Environment, intra_threads: usize) -> ort::Result<SessionBuilder> {
    Ok(Session::builder(env)?
        .with_optimization_level(GraphOptimizationLevel::Level3)?
        .with_intra_threads(intra_threads.max(1))?
        .with_intra_op_spinning(false)?)
}

/// Registers the CUDA execution provider, failing (instead of ORT's silent CPU fallback) when the
/// library was built without it or it cannot start.
fn with_cuda(b: SessionBuilder) -> Result<SessionBuilder, String> {
    match CUDA::is_available() {
        Ok(true) => {}
        Ok(false) => {
            return Err(
                "this ONNX Runtime library has no CUDA execution provider (the CPU wheel; \
                 use onnxruntime-gpu)"
                    .into(),
            )
        }
        Err(e) => return Err(e.to_string()),
    }
    b.with_execution_providers([CUDA::default().build().error_on_failure()])
        .map_err(|e| e.to_string())
}
