//! Text generation with a decoder-only ONNX model in the layout Hugging Face Optimum exports
//! (`optimum-cli export onnx --task text-generation-with-past`): inputs `input_ids`,
//! `attention_mask`, `position_ids` (the last two when declared), `past_key_values.{i}.key|value`
//! (and `use_cache_branch` of merged exports); outputs `logits` and `present.{i}.key|value`.
//!
//! A [`Generator`] is one loaded model (session, tokenizer, chat template, end-of-sequence ids);
//! a [`Sequence`] is one request's state (its KV cache as ONNX Runtime values handed from one
//! step's outputs to the next step's inputs without copying, its sampler, its text so far).
//! [`Generator::step`] advances a sequence by one token, so a worker can interleave several.
//! Files are read only by [`Generator::load`]; no threads, no HTTP.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use ort::environment::Environment;
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, Tensor, TensorElementType, ValueType};
use switchyard_adapters::canonical::{ChatRequest, FinishReason, Message, Part, Role, ToolChoice};
use tokenizers::Tokenizer;

use super::chat_template::{ChatTemplate, TokenizerConfig};
use super::sampling::{Sampler, SamplingParams};
use super::session::{self, RunsOn};
use super::text::{Detokenizer, StopMatcher};
use crate::config::Device;

const INPUT_IDS: &str = "input_ids";
const ATTENTION_MASK: &str = "attention_mask";
const POSITION_IDS: &str = "position_ids";
const USE_CACHE_BRANCH: &str = "use_cache_branch";
const LOGITS: &str = "logits";

/// Context length assumed when neither `config.json` nor `tokenizer_config.json` gives one.
const DEFAULT_CONTEXT: usize = 2048;

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("cannot load tokenizer {}: {message}", path.display())]
    Tokenizer { path: PathBuf, message: String },
    #[error("cannot load ONNX model {}: {source}", path.display())]
    Model { path: PathBuf, source: ort::Error },
    #[error("unsupported generation model {}: {reason}", path.display())]
    Unsupported { path: PathBuf, reason: String },
    #[error("{0}")]
    Config(String),
    #[error("inference failed: {0}")]
    Inference(#[from] ort::Error),
    #[error("{0}")]
    Text(String),
}

/// A request the caller must fix (answered 400, not retried elsewhere).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromptError {
    #[error("the prompt has {tokens} tokens; this model's context is {context}")]
    TooLong { tokens: usize, context: usize },
    #[error("{0}")]
    Template(String),
    #[error("tokenisation failed: {0}")]
    Tokenize(String),
}

/// What a request asks of a local model, taken from the canonical chat request.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    pub messages: Vec<Message>,
    /// `None`: up to the context's end.
    pub max_tokens: Option<u32>,
    pub stop: Vec<String>,
    pub sampling: SamplingParams,
}

impl GenerateRequest {
    /// The request for `req`, or the first field local models cannot honour.
    pub fn from_chat(req: &ChatRequest) -> Result<GenerateRequest, &'static str> {
        if !req.tools.is_empty() {
            return Err("tools");
        }
        // Without tools, "auto" and "none" ask for nothing a local model lacks.
        if matches!(
            req.tool_choice,
            Some(ToolChoice::Required | ToolChoice::Function(_))
        ) {
            return Err("tool_choice");
        }
        if req.n.is_some_and(|n| n > 1) {
            return Err("n");
        }
        if req.logprobs == Some(true) || req.top_logprobs.is_some() {
            return Err("logprobs");
        }
        if req
            .response_format
            .as_ref()
            .is_some_and(|f| !matches!(f, switchyard_adapters::canonical::ResponseFormat::Text))
        {
            return Err("response_format");
        }
        for m in &req.messages {
            for p in &m.content {
                match p {
                    Part::Text(_) => {}
                    Part::Image(_) => return Err("image content"),
                    Part::ToolCall { .. } | Part::ToolResult { .. } => return Err("tool messages"),
                }
            }
            if m.role == Role::Tool {
                return Err("tool messages");
            }
        }
        Ok(GenerateRequest {
            messages: req.messages.clone(),
            max_tokens: req.max_tokens,
            stop: req.stop.clone(),
            sampling: SamplingParams {
                temperature: req.temperature,
                top_p: req.top_p,
                top_k: req.top_k,
                presence_penalty: req.presence_penalty.unwrap_or(0.0),
                frequency_penalty: req.frequency_penalty.unwrap_or(0.0),
                seed: req.seed.map(|s| s as u64),
            },
        })
    }
}

/// The KV cache's shape per layer, read from the model's declared inputs.
#[derive(Debug, Clone)]
struct CacheLayout {
    /// Input and output names per layer: (past key, past value, present key, present value).
    names: Vec<[String; 4]>,
    kv_heads: usize,
    head_dim: usize,
}

/// One loaded generation model.
pub struct Generator {
    session: Session,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    eos: Vec<u32>,
    cache: CacheLayout,
    has_attention_mask: bool,
    has_position_ids: bool,
    has_cache_branch: bool,
    context: usize,
    runs_on: RunsOn,
    cuda_error: Option<String>,
}

/// What one step produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Text to send (possibly empty: a token that completes no character yet, or text held back
    /// while it might begin a stop sequence).
    Text(String),
    /// Generation ended; the text is the last to send.
    Done(String, FinishReason),
}

/// One request's generation state.
pub struct Sequence {
    prompt: Vec<u32>,
    generated: usize,
    /// The token to feed next (`None` before the prompt was run).
    next_input: Option<u32>,
    past: Vec<DynValue>,
    past_len: usize,
    max_tokens: usize,
    sampler: Sampler,
    detok: Detokenizer,
    stops: StopMatcher,
}

impl Sequence {
    pub fn prompt_tokens(&self) -> usize {
        self.prompt.len()
    }
    pub fn generated_tokens(&self) -> usize {
        self.generated
    }
}

impl Generator {
    /// Loads `model` (an .onnx file) with `tokenizer.json` and, when present,
    /// `tokenizer_config.json`, `generation_config.json` and `config.json` from its directory.
    pub fn load(
        env: &Environment,
        model: &Path,
        device: Device,
        intra_threads: usize,
    ) -> Result<Generator, GenerateError> {
        let dir = model.parent().unwrap_or_else(|| Path::new("."));
        let tokenizer_path = dir.join(super::embed::TOKENIZER_FILE);
        let tokenizer =
            Tokenizer::from_file(&tokenizer_path).map_err(|e| GenerateError::Tokenizer {
                path: tokenizer_path.clone(),
                message: e.to_string(),
            })?;
        let tok_cfg = TokenizerConfig::read(dir).map_err(GenerateError::Config)?;
        let template = ChatTemplate::new(&tok_cfg).map_err(|e| {
            GenerateError::Config(format!(
                "{}: {e}",
                dir.join("tokenizer_config.json").display()
            ))
        })?;
        if !template.is_templated() {
            log::warn!(
                "local model {}: no chat template beside it; prompts are the messages' text joined by newlines",
                model.display()
            );
        }
        let model_cfg = read_json(&dir.join("config.json"));
        let gen_cfg = read_json(&dir.join("generation_config.json"));
        let mut eos: Vec<u32> = Vec::new();
        for v in [
            gen_cfg.as_ref().and_then(|c| c.get("eos_token_id")),
            model_cfg.as_ref().and_then(|c| c.get("eos_token_id")),
        ]
        .into_iter()
        .flatten()
        {
            match v {
                serde_json::Value::Number(n) => eos.extend(n.as_u64().map(|n| n as u32)),
                serde_json::Value::Array(a) => {
                    eos.extend(a.iter().filter_map(|n| n.as_u64()).map(|n| n as u32))
                }
                _ => {}
            }
        }
        if let Some(id) = tok_cfg
            .eos_token
            .as_deref()
            .and_then(|t| tokenizer.token_to_id(t))
        {
            eos.push(id);
        }
        eos.sort_unstable();
        eos.dedup();
        let context = model_cfg
            .as_ref()
            .and_then(|c| c.get("max_position_embeddings"))
            .and_then(|m| m.as_u64())
            .map(|m| m as usize)
            .or(tok_cfg.max_length)
            .unwrap_or(DEFAULT_CONTEXT);

        let opened = session::open(env, model, device, intra_threads).map_err(|source| {
            GenerateError::Model {
                path: model.to_path_buf(),
                source,
            }
        })?;
        let unsupported = |reason: String| GenerateError::Unsupported {
            path: model.to_path_buf(),
            reason,
        };
        let session = opened.session;
        let inputs: Vec<&str> = session.inputs().iter().map(|o| o.name()).collect();
        let outputs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        if !inputs.contains(&INPUT_IDS) || !outputs.contains(&LOGITS) {
            return Err(unsupported(format!(
                "needs an `{INPUT_IDS}` input and a `{LOGITS}` output (inputs {inputs:?}, outputs {outputs:?})"
            )));
        }
        let cache = cache_layout(&session).map_err(unsupported)?;
        if eos.is_empty() {
            return Err(GenerateError::Config(format!(
                "{}: no end-of-sequence token (eos_token_id in generation_config.json or config.json, or eos_token in tokenizer_config.json)",
                dir.display()
            )));
        }
        Ok(Generator {
            has_attention_mask: inputs.contains(&ATTENTION_MASK),
            has_position_ids: inputs.contains(&POSITION_IDS),
            has_cache_branch: inputs.contains(&USE_CACHE_BRANCH),
            session,
            tokenizer,
            template,
            eos,
            cache,
            context,
            runs_on: opened.runs_on,
            cuda_error: opened.cuda_error,
        })
    }

    /// Where this model's session runs, and (under `device: auto`) why not on CUDA.
    pub fn runs_on(&self) -> (RunsOn, Option<&str>) {
        (self.runs_on, self.cuda_error.as_deref())
    }

    /// Renders and tokenises the prompt and sets up a sequence (the model has not run yet).
    pub fn start(&self, req: &GenerateRequest) -> Result<Sequence, PromptError> {
        let text = self
            .template
            .render(&req.messages)
            .map_err(PromptError::Template)?;
        // A template already holds the special tokens it wants (as `transformers` does it).
        let encoding = self
            .tokenizer
            .encode(text.as_str(), !self.template.is_templated())
            .map_err(|e| PromptError::Tokenize(e.to_string()))?;
        let prompt = encoding.get_ids().to_vec();
        self.sequence(prompt, req)
    }

    /// A sequence from prompt token ids (used by [`Generator::start`] and by benchmarks).
    pub fn sequence(
        &self,
        prompt: Vec<u32>,
        req: &GenerateRequest,
    ) -> Result<Sequence, PromptError> {
        if prompt.is_empty() {
            return Err(PromptError::Template("the prompt is empty".into()));
        }
        if prompt.len() >= self.context {
            return Err(PromptError::TooLong {
                tokens: prompt.len(),
                context: self.context,
            });
        }
        let room = self.context - prompt.len();
        let max_tokens = req
            .max_tokens
            .map_or(room, |m| (m as usize).min(room))
            .max(1);
        Ok(Sequence {
            detok: Detokenizer::new(&prompt),
            prompt,
            generated: 0,
            next_input: None,
            past: Vec::new(),
            past_len: 0,
            max_tokens,
            sampler: Sampler::new(req.sampling.clone()),
            stops: StopMatcher::new(&req.stop),
        })
    }

    /// Runs the model once for `seq` (the whole prompt the first time, then the last token) and
    /// samples one token.
    pub fn step(&mut self, seq: &mut Sequence) -> Result<Step, GenerateError> {
        let fed: Vec<i64> = match seq.next_input {
            None => seq.prompt.iter().map(|&t| i64::from(t)).collect(),
            Some(t) => vec![i64::from(t)],
        };
        let logits = self.run(seq, &fed)?;
        let token = seq
            .sampler
            .pick(&logits)
            .ok_or_else(|| GenerateError::Text("the model returned empty logits".into()))?;
        seq.generated += 1;
        seq.next_input = Some(token);
        if self.eos.binary_search(&token).is_ok() {
            return self.finish(seq, String::new(), FinishReason::Stop);
        }
        let delta = seq
            .detok
            .push(&self.tokenizer, token)
            .map_err(GenerateError::Text)?;
        let released = seq.stops.push(&delta);
        if let Some(stop) = released.stopped {
            return Ok(Step::Done(
                released.text,
                FinishReason::StopSequence(Some(stop)),
            ));
        }
        if seq.generated >= seq.max_tokens {
            return self.finish(seq, released.text, FinishReason::Length);
        }
        Ok(Step::Text(released.text))
    }

    /// The last step's text: `text`, then what the detokeniser and the stop matcher still held
    /// (which may yet complete a stop sequence).
    fn finish(
        &self,
        seq: &mut Sequence,
        mut text: String,
        finish: FinishReason,
    ) -> Result<Step, GenerateError> {
        let tail = seq
            .detok
            .flush(&self.tokenizer)
            .map_err(GenerateError::Text)?;
        let released = seq.stops.push(&tail);
        text.push_str(&released.text);
        if let Some(stop) = released.stopped {
            return Ok(Step::Done(text, FinishReason::StopSequence(Some(stop))));
        }
        text.push_str(&seq.stops.finish());
        Ok(Step::Done(text, finish))
    }

    /// One model run: feeds `fed` after the cached past; returns the last position's logits and
    /// keeps the new cache in `seq`.
    fn run(&mut self, seq: &mut Sequence, fed: &[i64]) -> Result<Vec<f32>, GenerateError> {
        let (past_len, n) = (seq.past_len, fed.len());
        let total = past_len + n;
        let mut inputs: Vec<(Cow<'static, str>, SessionInputValue<'static>)> =
            Vec::with_capacity(4 + 2 * self.cache.names.len());
        inputs.push((
            INPUT_IDS.into(),
            Tensor::from_array(([1usize, n], fed.to_vec()))?.into(),
        ));
        if self.has_attention_mask {
            inputs.push((
                ATTENTION_MASK.into(),
                Tensor::from_array(([1usize, total], vec![1i64; total]))?.into(),
            ));
        }
        if self.has_position_ids {
            let positions: Vec<i64> = (past_len as i64..total as i64).collect();
            inputs.push((
                POSITION_IDS.into(),
                Tensor::from_array(([1usize, n], positions))?.into(),
            ));
        }
        if self.has_cache_branch {
            inputs.push((
                USE_CACHE_BRANCH.into(),
                Tensor::from_array(([1usize], vec![past_len > 0]))?.into(),
            ));
        }
        let mut past = std::mem::take(&mut seq.past).into_iter();
        for names in &self.cache.names {
            for name in &names[..2] {
                let value: SessionInputValue<'static> = match past.next() {
                    Some(v) => v.into(),
                    None => Tensor::from_array((
                        [1usize, self.cache.kv_heads, 0, self.cache.head_dim],
                        Vec::<f32>::new(),
                    ))?
                    .into(),
                };
                inputs.push((Cow::Owned(name.clone()), value));
            }
        }
        let mut outputs = self.session.run(inputs)?;
        let (shape, data) = outputs[LOGITS].try_extract_tensor::<f32>()?;
        let (rows, vocab) = match **shape {
            [1, s, v] if s as usize == n && v > 0 => (s as usize, v as usize),
            // Some exports return only the last position.
            [1, 1, v] if v > 0 => (1, v as usize),
            ref other => {
                return Err(GenerateError::Text(format!(
                    "logits have shape {other:?}, expected [1, {n}, vocab]"
                )))
            }
        };
        let last = data[(rows - 1) * vocab..rows * vocab].to_vec();
        let mut present = Vec::with_capacity(2 * self.cache.names.len());
        for names in &self.cache.names {
            for name in &names[2..] {
                present.push(outputs.remove(name.as_str()).ok_or_else(|| {
                    GenerateError::Text(format!("the model returned no `{name}`"))
                })?);
            }
        }
        drop(outputs);
        seq.past = present;
        seq.past_len = total;
        Ok(last)
    }
}

/// The KV cache layout: `past_key_values.{i}.key|value` inputs (float32, `[batch, kv_heads,
/// past, head_dim]` with static heads and head size) and their `present.{i}.key|value` outputs.
fn cache_layout(session: &Session) -> Result<CacheLayout, String> {
    let mut layers = 0;
    while session
        .inputs()
        .iter()
        .any(|i| i.name() == format!("past_key_values.{layers}.key"))
    {
        layers += 1;
    }
    if layers == 0 {
        return Err(
            "no `past_key_values.0.key` input: export with a KV cache (Optimum task text-generation-with-past)"
                .into(),
        );
    }
    let first = "past_key_values.0.key".to_string();
    let (kv_heads, head_dim) = session
        .inputs()
        .iter()
        .find(|i| i.name() == first)
        .and_then(|i| match i.dtype() {
            ValueType::Tensor { ty, shape, .. } => Some((*ty, shape.to_vec())),
            _ => None,
        })
        .map(|(ty, shape)| match (ty, shape.as_slice()) {
            (TensorElementType::Float32, [_, h, _, d]) if *h > 0 && *d > 0 => {
                Ok((*h as usize, *d as usize))
            }
            (TensorElementType::Float32, shape) => Err(format!(
                "`{first}` has shape {shape:?}; needs static heads and head size ([batch, heads, past, head_dim])"
            )),
            (ty, _) => Err(format!(
                "`{first}` is {ty:?}; only float32 KV caches are supported (export with --dtype fp32)"
            )),
        })
        .unwrap_or_else(|| Err(format!("`{first}` is not a tensor")))?;
    let outputs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
    let mut names = Vec::with_capacity(layers);
    for i in 0..layers {
        let set = [
            format!("past_key_values.{i}.key"),
            format!("past_key_values.{i}.value"),
            format!("present.{i}.key"),
            format!("present.{i}.value"),
        ];
        if !session.inputs().iter().any(|x| x.name() == set[1]) {
            return Err(format!("no `{}` input", set[1]));
        }
        for out in &set[2..] {
            if !outputs.contains(&out.as_str()) {
                return Err(format!("no `{out}` output (outputs {outputs:?})"));
            }
        }
        names.push(set);
    }
    Ok(CacheLayout {
        names,
        kv_heads,
        head_dim,
    })
}

fn read_json(path: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(path).ok()?;
    match serde_json::from_str(&text) {
        Ok(v) => Some(v),
        Err(e) => {
            log::warn!("{}: ignored, invalid JSON: {e}", path.display());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{environment, request, tiny_lm, tiny_lm_reference};
    use super::*;
    use std::sync::{Mutex, MutexGuard, OnceLock};

    fn generator() -> MutexGuard<'static, Generator> {
        static GENERATOR: OnceLock<Mutex<Generator>> = OnceLock::new();
        GENERATOR
            .get_or_init(|| {
                let g = Generator::load(&environment(), &tiny_lm(), Device::Cpu, 1)
                    .unwrap_or_else(|e| panic!("{e}"));
                Mutex::new(g)
            })
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn ids(v: &serde_json::Value) -> Vec<u32> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_u64())
                    .map(|x| x as u32)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn floats(v: &serde_json::Value) -> Vec<f32> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_f64())
                    .map(|x| x as f32)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn close(got: &[f32], want: &[f32]) -> bool {
        got.len() >= want.len() && got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-4)
    }

    /// Generates to the end, returning the text and the finish reason.
    fn generate(g: &mut Generator, req: &GenerateRequest) -> (String, FinishReason, Sequence) {
        let mut seq = g.start(req).unwrap_or_else(|e| panic!("{e}"));
        let mut text = String::new();
        for _ in 0..1000 {
            match g.step(&mut seq).unwrap_or_else(|e| panic!("{e}")) {
                Step::Text(t) => text.push_str(&t),
                Step::Done(t, finish) => {
                    text.push_str(&t);
                    return (text, finish, seq);
                }
            }
        }
        panic!("no end after 1000 steps: {text:?}")
    }

    #[test]
    fn the_kv_cache_reproduces_the_reference_logits() {
        // Prefill of the whole prompt, then one token at a time through the cache: every logit
        // row must equal Python ONNX Runtime's (a wrong cache, mask or position shifts them).
        let reference = tiny_lm_reference();
        let mut g = generator();
        for case in reference["cases"].as_array().into_iter().flatten() {
            let prompt = ids(&case["prompt_ids"]);
            let mut seq = g
                .sequence(prompt.clone(), &request("unused"))
                .unwrap_or_else(|e| panic!("{e}"));
            let fed: Vec<i64> = prompt.iter().map(|&t| i64::from(t)).collect();
            let logits = g.run(&mut seq, &fed).unwrap_or_else(|e| panic!("{e}"));
            let want = floats(&case["last_logits_first8"]);
            assert!(close(&logits, &want), "{:?} vs {want:?}", &logits[..8]);
            assert_eq!(
                super::super::sampling::argmax(&logits),
                case["last_logits_argmax"].as_u64().unwrap_or(0) as u32
            );
            let greedy = ids(&case["greedy_ids"]);
            for (step, want) in case["step_logits_first8"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let logits = g
                    .run(&mut seq, &[i64::from(greedy[step])])
                    .unwrap_or_else(|e| panic!("{e}"));
                let want = floats(want);
                assert!(
                    close(&logits, &want),
                    "step {step}: {:?} vs {want:?}",
                    &logits[..8]
                );
            }
        }
    }

    #[test]
    fn greedy_decoding_matches_the_reference_answers() {
        let reference = tiny_lm_reference();
        let mut g = generator();
        for case in reference["cases"].as_array().into_iter().flatten() {
            let prompt = case["prompt"].as_str().unwrap_or_default();
            let (text, finish, seq) = generate(&mut g, &request(prompt));
            assert_eq!(text, case["greedy_text"].as_str().unwrap_or_default());
            assert_eq!(finish, FinishReason::Stop);
            assert_eq!(seq.prompt_tokens(), ids(&case["prompt_ids"]).len());
            // Every generated token is counted, the end-of-sequence one included.
            assert_eq!(seq.generated_tokens(), ids(&case["greedy_ids"]).len());
        }
    }

    #[test]
    fn max_tokens_and_stop_sequences_end_generation() {
        let mut g = generator();
        let mut req = request("Hello");
        req.max_tokens = Some(5);
        let (text, finish, _) = generate(&mut g, &req);
        assert_eq!((text.as_str(), finish), ("pqrst", FinishReason::Length));

        let mut req = request("Hello");
        req.stop = vec!["uv".into(), "zz".into()];
        let (text, finish, _) = generate(&mut g, &req);
        assert_eq!(text, "pqrst");
        assert_eq!(finish, FinishReason::StopSequence(Some("uv".into())));
    }

    #[test]
    fn sampling_is_reproducible_with_a_seed() {
        let mut g = generator();
        let sampled = |g: &mut Generator, seed: u64, temperature: f64, top_p: Option<f64>| {
            let mut req = request("abc");
            req.max_tokens = Some(12);
            req.sampling = SamplingParams {
                temperature: Some(temperature),
                top_p,
                seed: Some(seed),
                ..SamplingParams::default()
            };
            generate(g, &req).0
        };
        // Temperature 20 flattens the oracle's peak: the text depends on the seed alone.
        let a = sampled(&mut g, 7, 20.0, None);
        assert_eq!(a, sampled(&mut g, 7, 20.0, None));
        assert_ne!(a, sampled(&mut g, 8, 20.0, None));
        // At temperature 1 the oracle's token holds ~99 % of the mass: top_p 0.5 keeps only it.
        assert_eq!(sampled(&mut g, 1, 1.0, Some(0.5)), "defghijklmno");
        assert_eq!(sampled(&mut g, 2, 1.0, Some(0.5)), "defghijklmno");
    }

    #[test]
    fn text_held_for_an_incomplete_character_is_flushed_at_the_end() {
        // From U+0080 (bytes C2 80) the oracle continues with lone continuation bytes 81, 82, …:
        // never valid UTF-8, so held while generating, and released (as U+FFFD) at the end.
        let mut g = generator();
        let mut req = request("\u{80}");
        req.max_tokens = Some(3);
        let (text, finish, _) = generate(&mut g, &req);
        assert_eq!(finish, FinishReason::Length);
        assert!(
            !text.is_empty() && text.chars().all(|c| c == '\u{FFFD}'),
            "{text:?}"
        );
    }

    #[test]
    fn a_prompt_longer_than_the_context_is_refused() {
        let g = generator();
        let long = "x".repeat(600);
        match g.start(&request(&long)) {
            Err(PromptError::TooLong { tokens, context }) => {
                assert_eq!((tokens, context), (600, 512));
            }
            other => panic!("{:?}", other.err()),
        }
    }

    #[test]
    fn requests_local_models_cannot_honour_name_the_field() {
        let mut req = ChatRequest {
            messages: request("x").messages,
            ..ChatRequest::default()
        };
        assert!(GenerateRequest::from_chat(&req).is_ok());
        req.n = Some(2);
        assert_eq!(GenerateRequest::from_chat(&req).err(), Some("n"));
        req.n = None;
        req.tool_choice = Some(ToolChoice::None);
        assert!(GenerateRequest::from_chat(&req).is_ok());
        req.tool_choice = Some(ToolChoice::Required);
        assert_eq!(GenerateRequest::from_chat(&req).err(), Some("tool_choice"));
        req.tool_choice = None;
        req.tools.push(switchyard_adapters::canonical::Tool {
            name: "f".into(),
            description: None,
            parameters: None,
        });
        assert_eq!(GenerateRequest::from_chat(&req).err(), Some("tools"));
    }
}
