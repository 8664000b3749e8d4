//! The process-wide ONNX Runtime environment for local inference.
//!
//! `ort` is built with `load-dynamic`: nothing is linked at build time and the ONNX Runtime
//! shared library (`libonnxruntime.so.1.31.1`, fetched by `scripts/fetch-models.sh`) is opened
//! at run time. ONNX Runtime allows one environment per process, ever (a second one cannot be
//! created even after the first is dropped), and one library per process, so [`environment`]
//! loads the library and builds the environment exactly once and caches the outcome — success
//! or failure — for the life of the process. Failures are returned as [`RuntimeError`], never a
//! panic, so the gateway can disable its local routes and keep serving from upstreams.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;

/// The environment variable naming the ONNX Runtime shared library when no path is configured.
pub const DYLIB_ENV: &str = "ORT_DYLIB_PATH";

/// Name given to the ONNX Runtime environment (shows up in ONNX Runtime's own log lines).
const ENV_NAME: &str = "switchyard";

/// Why the ONNX Runtime environment is unavailable. Cloned out of the process-wide cache, so
/// every call after a failure returns the same error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RuntimeError {
    /// Neither a configured path nor `ORT_DYLIB_PATH`.
    #[error(
        "no ONNX Runtime library configured: set a library path or ORT_DYLIB_PATH \
         (scripts/fetch-models.sh fetches target/onnx/lib/libonnxruntime.so.1.31.1)"
    )]
    NoLibrary,
    /// The library could not be opened, lacks the ONNX Runtime API, or has an unsupported version.
    #[error("failed to load ONNX Runtime from {}: {message}", path.display())]
    Load { path: PathBuf, message: String },
    /// The library loaded but the environment could not be created.
    #[error("ONNX Runtime loaded from {}, but creating its environment failed: {message}", path.display())]
    Environment { path: PathBuf, message: String },
}

static ENVIRONMENT: OnceLock<Result<Environment, RuntimeError>> = OnceLock::new();

/// The process-wide ONNX Runtime environment, loading the library on the first call.
///
/// The library is `lib` if given, else the path in `ORT_DYLIB_PATH`. A relative path is tried
/// against the executable's directory first (so a `.so` deployed beside the binary can be named
/// by its file name), then the dynamic loader's usual search. Only the first call's arguments
/// matter: every later call returns a clone of the same environment (a cheap `Arc` clone) or
/// the same error, whatever it is passed.
pub fn environment(lib: Option<&Path>) -> Result<Environment, RuntimeError> {
    ENVIRONMENT
        .get_or_init(|| {
            let env_value = std::env::var_os(DYLIB_ENV);
            let path = resolve_library(lib, env_value.as_deref().map(Path::new))?;
            load(&path)
        })
        .clone()
}

/// The library to load: the configured path, else the environment variable's (empty = unset).
fn resolve_library(lib: Option<&Path>, env_value: Option<&Path>) -> Result<PathBuf, RuntimeError> {
    let non_empty = |p: &&Path| !p.as_os_str().is_empty();
    lib.filter(non_empty)
        .or(env_value.filter(non_empty))
        .map(Path::to_path_buf)
        .ok_or(RuntimeError::NoLibrary)
}

fn load(path: &Path) -> Result<Environment, RuntimeError> {
    let builder = ort::init_from(path).map_err(|e| RuntimeError::Load {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    builder
        .with_name(ENV_NAME)
        .build()
        .map_err(|e| RuntimeError::Environment {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    // `environment()` itself is exercised by the embedder tests: its cache is process-wide, so a
    // test feeding it a bad path here would poison every other test in the binary.
    use super::*;

    #[test]
    fn configured_path_wins_over_the_environment_variable() {
        let got = resolve_library(Some(Path::new("/a/lib.so")), Some(Path::new("/b/lib.so")));
        assert_eq!(got.ok(), Some(PathBuf::from("/a/lib.so")));
        let got = resolve_library(None, Some(Path::new("/b/lib.so")));
        assert_eq!(got.ok(), Some(PathBuf::from("/b/lib.so")));
    }

    #[test]
    fn no_path_is_an_error_that_says_what_to_set() {
        for (lib, var) in [
            (None, None),
            (None, Some(Path::new(""))),
            (Some(Path::new("")), None),
        ] {
            let err = resolve_library(lib, var)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains("ORT_DYLIB_PATH"), "{err}");
        }
    }

    #[test]
    fn load_errors_name_the_path() {
        let err = RuntimeError::Load {
            path: PathBuf::from("/nowhere/libonnxruntime.so"),
            message: "dlopen failed".into(),
        };
        assert!(err.to_string().contains("/nowhere/libonnxruntime.so"));
    }
}
