//! Shared by the local pool's unit tests: the process-wide ONNX Runtime environment (fetched
//! into `target/onnx` by `scripts/fetch-models.sh`) and the committed test models.

use std::path::PathBuf;

use ort::environment::Environment;

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The ONNX Runtime library: `ORT_DYLIB_PATH`, else the one `scripts/fetch-models.sh` fetched.
pub fn lib_path() -> PathBuf {
    let lib = std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("../target/onnx/lib/libonnxruntime.so.1.31.1"));
    assert!(
        lib.is_file(),
        "ONNX Runtime library {} missing: run scripts/fetch-models.sh (or set ORT_DYLIB_PATH)",
        lib.display()
    );
    lib
}

/// The process's environment (loaded once, whichever test asks first).
pub fn environment() -> Environment {
    super::runtime::environment(Some(&lib_path()))
        .unwrap_or_else(|e| panic!("{e} (run scripts/fetch-models.sh)"))
}

/// The committed tiny generation model (`conf/models/tiny-lm`, made by
/// `scripts/make-tiny-lm.py`).
pub fn tiny_lm() -> PathBuf {
    manifest_dir().join("../conf/models/tiny-lm/model.onnx")
}

/// Its `reference.json` (outputs of Python ONNX Runtime).
pub fn tiny_lm_reference() -> serde_json::Value {
    let path = manifest_dir().join("../conf/models/tiny-lm/reference.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A one-message greedy request.
pub fn request(text: &str) -> super::generate::GenerateRequest {
    use switchyard_adapters::canonical::{Message, Part, Role};
    super::generate::GenerateRequest {
        messages: vec![Message {
            role: Role::User,
            content: vec![Part::Text(text.into())],
        }],
        max_tokens: None,
        stop: Vec::new(),
        sampling: super::sampling::SamplingParams::default(),
    }
}
