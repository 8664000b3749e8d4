//! A local sentence-embedding model (e.g. all-MiniLM-L6-v2) run with ONNX Runtime.
//!
//! The model is a BERT-style `.onnx` file with a Hugging Face `tokenizer.json` in the same
//! directory. Texts are tokenised (truncated to [`MAX_TOKENS`] tokens), batched in one run padded
//! to the longest text, and the model's `last_hidden_state` is mean-pooled over the attention
//! mask, then L2-normalised (a model that outputs `sentence_embedding` is used as is, and only
//! normalised). Files are read only by [`Embedder::load`]; [`Embedder::embed`] does no I/O.
//!
//! A [`Session`] runs with `&mut self`, so an [`Embedder`] belongs to one worker thread;
//! a pool holds one per worker (each loads its own copy of the weights).

use std::path::{Path, PathBuf};

use ort::environment::Environment;
use ort::session::Session;

use super::session::{self, RunsOn};
use crate::config::Device;
use ort::value::Tensor;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

/// Each text is truncated to this many tokens (including `[CLS]` and `[SEP]`).
pub const MAX_TOKENS: usize = 256;

/// File name of the tokenizer expected beside the model.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

const INPUT_IDS: &str = "input_ids";
const ATTENTION_MASK: &str = "attention_mask";
const TOKEN_TYPE_IDS: &str = "token_type_ids";
const HIDDEN_STATE: &str = "last_hidden_state";
const SENTENCE_EMBEDDING: &str = "sentence_embedding";

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("cannot load tokenizer {}: {message}", path.display())]
    Tokenizer { path: PathBuf, message: String },
    #[error("cannot load ONNX model {}: {source}", path.display())]
    Model { path: PathBuf, source: ort::Error },
    #[error("unsupported embedding model {}: {reason}", path.display())]
    Unsupported { path: PathBuf, reason: String },
    #[error("tokenisation failed: {0}")]
    Tokenize(String),
    #[error("inference failed: {0}")]
    Inference(#[from] ort::Error),
    #[error("model output {name} has shape {shape:?}, expected {expected}")]
    OutputShape {
        name: &'static str,
        shape: Vec<i64>,
        expected: String,
    },
}

/// Which output the embedding is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    /// `[batch, seq, dim]`: mean-pool over the attention mask.
    HiddenState,
    /// `[batch, dim]`: already pooled.
    SentenceEmbedding,
}

impl Output {
    fn name(self) -> &'static str {
        match self {
            Output::HiddenState => HIDDEN_STATE,
            Output::SentenceEmbedding => SENTENCE_EMBEDDING,
        }
    }
}

/// A loaded sentence-embedding model and its tokenizer.
pub struct Embedder {
    session: Session,
    tokenizer: Tokenizer,
    needs_attention_mask: bool,
    needs_token_type_ids: bool,
    output: Output,
    dimensions: usize,
    max_len: usize,
    runs_on: RunsOn,
    cuda_error: Option<String>,
}

impl Embedder {
    /// `model` is the .onnx file; `tokenizer.json` must be in the same directory.
    ///
    /// `intra_threads` is ONNX Runtime's intra-op thread count (1 = run on the caller's thread,
    /// no extra OS thread); spinning is switched off so idle workers leave the cores alone.
    pub fn load(
        env: &Environment,
        model: &Path,
        device: Device,
        intra_threads: usize,
    ) -> Result<Embedder, EmbedError> {
        let tokenizer_path = model
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join(TOKENIZER_FILE);
        let tokenizer = load_tokenizer(&tokenizer_path, MAX_TOKENS)?;

        let opened = session::open(env, model, device, intra_threads).map_err(|source| {
            EmbedError::Model {
                path: model.to_path_buf(),
                source,
            }
        })?;
        let session = opened.session;
        let unsupported = |reason: String| EmbedError::Unsupported {
            path: model.to_path_buf(),
            reason,
        };

        let inputs: Vec<&str> = session.inputs().iter().map(|o| o.name()).collect();
        if !inputs.contains(&INPUT_IDS) {
            return Err(unsupported(format!(
                "no `{INPUT_IDS}` input (inputs: {inputs:?})"
            )));
        }
        if let Some(other) = inputs
            .iter()
            .find(|n| ![INPUT_IDS, ATTENTION_MASK, TOKEN_TYPE_IDS].contains(n))
        {
            return Err(unsupported(format!(
                "unexpected input `{other}` (inputs: {inputs:?})"
            )));
        }
        let needs_attention_mask = inputs.contains(&ATTENTION_MASK);
        let needs_token_type_ids = inputs.contains(&TOKEN_TYPE_IDS);

        let outlet = |name: &str| session.outputs().iter().find(|o| o.name() == name);
        let (output, rank) = match (outlet(SENTENCE_EMBEDDING), outlet(HIDDEN_STATE)) {
            (Some(o), _) => (Output::SentenceEmbedding, o),
            (None, Some(o)) => (Output::HiddenState, o),
            (None, None) => {
                let outputs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
                return Err(unsupported(format!(
                    "neither `{SENTENCE_EMBEDDING}` nor `{HIDDEN_STATE}` among outputs {outputs:?}"
                )));
            }
        };
        // The embedding width is the last dimension, when the model declares it statically.
        let declared = rank
            .dtype()
            .tensor_shape()
            .and_then(|s| s.last().copied())
            .filter(|d| *d > 0)
            .map(|d| d as usize);

        let mut embedder = Embedder {
            session,
            tokenizer,
            needs_attention_mask,
            needs_token_type_ids,
            output,
            dimensions: declared.unwrap_or(0),
            max_len: MAX_TOKENS,
            runs_on: opened.runs_on,
            cuda_error: opened.cuda_error,
        };
        if declared.is_none() {
            // Symbolic width: learn it from one tiny run.
            let (probe, _) = embedder.embed(&["dimension probe".to_string()])?;
            embedder.dimensions = probe.first().map_or(0, Vec::len);
            if embedder.dimensions == 0 {
                return Err(unsupported("the model returned an empty embedding".into()));
            }
        }
        Ok(embedder)
    }

    /// One L2-normalised vector per text (batching them in one run, padding to the longest), and
    /// the total token count (real tokens, including `[CLS]`/`[SEP]`, after truncation).
    pub fn embed(&mut self, texts: &[String]) -> Result<(Vec<Vec<f32>>, u64), EmbedError> {
        if texts.is_empty() {
            return Ok((Vec::new(), 0));
        }
        let encodings = self
            .tokenizer
            .encode_batch(texts.iter().map(String::as_str).collect::<Vec<_>>(), true)
            .map_err(|e| EmbedError::Tokenize(e.to_string()))?;
        let batch = encodings.len();
        let seq = encodings
            .iter()
            .map(|e| e.get_ids().len())
            .max()
            .unwrap_or(0)
            .min(self.max_len)
            .max(1);

        // Row-major [batch, seq]; BatchLongest padding already made every row `seq` long, but
        // build the tensors defensively from whatever lengths came back.
        let mut ids = vec![0i64; batch * seq];
        let mut mask = vec![0i64; batch * seq];
        let mut types = vec![0i64; batch * seq];
        for (row, enc) in encodings.iter().enumerate() {
            let base = row * seq;
            for (j, ((&id, &m), &t)) in enc
                .get_ids()
                .iter()
                .zip(enc.get_attention_mask())
                .zip(enc.get_type_ids())
                .take(seq)
                .enumerate()
            {
                ids[base + j] = i64::from(id);
                mask[base + j] = i64::from(m);
                types[base + j] = i64::from(t);
            }
        }
        let tokens: u64 = mask.iter().map(|&m| m as u64).sum();

        let mut inputs = vec![(INPUT_IDS, Tensor::from_array(([batch, seq], ids))?)];
        if self.needs_attention_mask {
            inputs.push((
                ATTENTION_MASK,
                Tensor::from_array(([batch, seq], mask.clone()))?,
            ));
        }
        if self.needs_token_type_ids {
            inputs.push((TOKEN_TYPE_IDS, Tensor::from_array(([batch, seq], types))?));
        }

        let output = self.output;
        let outputs = self.session.run(inputs)?;
        let (shape, data) = outputs[output.name()].try_extract_tensor::<f32>()?;
        let shape: Vec<i64> = shape.to_vec();

        let mut vectors = match output {
            Output::SentenceEmbedding => {
                let dim = match shape.as_slice() {
                    [b, d] if *b as usize == batch && *d > 0 => *d as usize,
                    _ => return Err(shape_error(output, shape, format!("[{batch}, dim]"))),
                };
                data.chunks_exact(dim)
                    .map(<[f32]>::to_vec)
                    .collect::<Vec<_>>()
            }
            Output::HiddenState => {
                let dim = match shape.as_slice() {
                    [b, s, d] if *b as usize == batch && *s as usize == seq && *d > 0 => {
                        *d as usize
                    }
                    _ => return Err(shape_error(output, shape, format!("[{batch}, {seq}, dim]"))),
                };
                mean_pool(data, &mask, batch, seq, dim)
            }
        };
        drop(outputs);

        for v in &mut vectors {
            l2_normalise(v);
        }
        if self.dimensions != 0 && vectors.first().is_some_and(|v| v.len() != self.dimensions) {
            let got = vectors.first().map_or(0, Vec::len);
            return Err(EmbedError::OutputShape {
                name: output.name(),
                shape: vec![batch as i64, got as i64],
                expected: format!("[{batch}, {}]", self.dimensions),
            });
        }
        Ok((vectors, tokens))
    }

    /// Where this model's session runs, and (under `device: auto`) why not on CUDA.
    pub fn runs_on(&self) -> (RunsOn, Option<&str>) {
        (self.runs_on, self.cuda_error.as_deref())
    }

    /// Length of every vector [`Embedder::embed`] returns (384 for MiniLM-L6).
    pub fn dimensions(&self) -> usize {
        self.dimensions
    }
}

fn shape_error(output: Output, shape: Vec<i64>, expected: String) -> EmbedError {
    EmbedError::OutputShape {
        name: output.name(),
        shape,
        expected,
    }
}

fn load_tokenizer(path: &Path, max_len: usize) -> Result<Tokenizer, EmbedError> {
    let err = |message: String| EmbedError::Tokenizer {
        path: path.to_path_buf(),
        message,
    };
    let mut tokenizer = Tokenizer::from_file(path).map_err(|e| err(e.to_string()))?;
    // The shipped file pads every text to a fixed 128; pad only to the batch's longest instead.
    let pad = tokenizer.get_padding().cloned().unwrap_or_default();
    tokenizer.with_padding(Some(PaddingParams {
        strategy: PaddingStrategy::BatchLongest,
        pad_to_multiple_of: None,
        ..pad
    }));
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: max_len,
            ..Default::default()
        }))
        .map_err(|e| err(e.to_string()))?;
    Ok(tokenizer)
}

/// Mean of each row's hidden states over the positions whose mask is 1.
fn mean_pool(hidden: &[f32], mask: &[i64], batch: usize, seq: usize, dim: usize) -> Vec<Vec<f32>> {
    (0..batch)
        .map(|b| {
            let mut sum = vec![0f32; dim];
            let mut count = 0f32;
            for s in 0..seq {
                if mask[b * seq + s] == 0 {
                    continue;
                }
                count += 1.0;
                let row = &hidden[(b * seq + s) * dim..(b * seq + s + 1) * dim];
                for (acc, x) in sum.iter_mut().zip(row) {
                    *acc += x;
                }
            }
            let count = count.max(1e-9);
            sum.iter_mut().for_each(|x| *x /= count);
            sum
        })
        .collect()
}

fn l2_normalise(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Mutex, OnceLock};

    fn manifest_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    fn model_path() -> PathBuf {
        let dir = std::env::var_os("SWITCHYARD_MINILM_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| manifest_dir().join("../target/onnx/minilm"));
        let model = dir.join("model.onnx");
        assert!(
            model.is_file() && dir.join(TOKENIZER_FILE).is_file(),
            "MiniLM model/tokenizer missing in {}: run scripts/fetch-models.sh \
             (or set SWITCHYARD_MINILM_DIR)",
            dir.display()
        );
        model
    }

    /// One embedder shared by the tests (one environment per process; loading takes a while).
    fn embedder() -> std::sync::MutexGuard<'static, Embedder> {
        static EMBEDDER: OnceLock<Mutex<Embedder>> = OnceLock::new();
        EMBEDDER
            .get_or_init(|| {
                let env = super::super::test_support::environment();
                let model = model_path();
                let e = Embedder::load(&env, &model, crate::config::Device::Cpu, 1)
                    .unwrap_or_else(|e| panic!("{e}"));
                Mutex::new(e)
            })
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn embed(texts: &[&str]) -> (Vec<Vec<f32>>, u64) {
        let texts: Vec<String> = texts.iter().map(|s| s.to_string()).collect();
        embedder().embed(&texts).unwrap_or_else(|e| panic!("{e}"))
    }

    fn cos(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn vectors_have_384_unit_norm_dimensions() {
        assert_eq!(embedder().dimensions(), 384);
        let (v, tokens) = embed(&[
            "Hello, world.",
            "A much longer sentence about switchyards and trains.",
        ]);
        assert_eq!(v.len(), 2);
        assert!(tokens > 4, "{tokens}");
        for x in &v {
            assert_eq!(x.len(), 384);
            let norm = x.iter().map(|f| f * f).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
        }
        assert_eq!(embed(&[]).0.len(), 0);
    }

    #[test]
    fn similar_sentences_are_closer() {
        let (v, _) = embed(&[
            "A man is eating food.",
            "A man is eating a piece of bread.",
            "A man is riding a horse.",
        ]);
        let near = cos(&v[0], &v[1]);
        let far = cos(&v[0], &v[2]);
        eprintln!("cos(food, bread) = {near:.4}, cos(food, horse) = {far:.4}");
        assert!(near > 0.6, "cos(food, bread) = {near}");
        assert!(
            near > far + 0.2,
            "cos(food, bread) = {near}, cos(food, horse) = {far}"
        );
    }

    #[test]
    fn batching_does_not_change_results() {
        let texts = [
            "A man is eating food.",
            "The quick brown fox jumps over the lazy dog, twice, and then runs away.",
            "A man is eating food.",
            "Hi",
        ];
        let (batch, batch_tokens) = embed(&texts);
        assert_eq!(
            batch[0], batch[2],
            "the same text twice in one batch must give identical vectors"
        );
        let mut single_tokens = 0;
        for (text, b) in texts.iter().zip(&batch) {
            let (one, t) = embed(&[text]);
            single_tokens += t;
            let diff = one[0]
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            eprintln!("max |batch - single| for {text:?}: {diff:e}");
            assert!(diff < 1e-5, "{text:?}: batch and single differ by {diff}");
        }
        assert_eq!(batch_tokens, single_tokens);
    }

    #[test]
    fn long_texts_are_truncated() {
        let long = "word ".repeat(1000);
        let (v, tokens) = embed(&[&long]);
        assert_eq!(v[0].len(), 384);
        assert_eq!(tokens, MAX_TOKENS as u64);
    }
}
