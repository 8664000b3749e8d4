//! Turning a chat (canonical messages) into the prompt text a local model was trained on.
//!
//! Hugging Face models ship their chat format as a Jinja template (`chat_template` in
//! `tokenizer_config.json`, or a `chat_template.jinja` file); it is rendered here with
//! `minijinja` and its Python-compatibility methods, with the variables `transformers` passes:
//! `messages` (`role`, `content`), `add_generation_prompt`, `bos_token`, `eos_token`, and the
//! `raise_exception` function. A model without a template gets the messages' text joined by
//! newlines (fine for the test model, a guess for anything else — logged at load).
//!
//! Reads files only in [`ChatTemplate::load`]; rendering is pure.

use std::path::Path;

use minijinja::{context, Environment, Error, ErrorKind};
use serde::Serialize;
use switchyard_adapters::canonical::{joined_text, Message, Role};

/// The template's name inside its environment.
const NAME: &str = "chat";

/// A model's chat format.
pub struct ChatTemplate {
    /// `None`: no template shipped; messages are joined by newlines.
    env: Option<Environment<'static>>,
    bos_token: String,
    eos_token: String,
}

/// The special tokens and template read from a model's directory.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TokenizerConfig {
    pub chat_template: Option<String>,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    /// Longest sequence the model accepts (`model_max_length`), when given and plausible.
    pub max_length: Option<usize>,
}

impl TokenizerConfig {
    /// Reads `tokenizer_config.json` (and `chat_template.jinja` when present) from `dir`. Missing
    /// files are not an error: every field is optional.
    pub fn read(dir: &Path) -> Result<TokenizerConfig, String> {
        let mut cfg = TokenizerConfig::default();
        let path = dir.join("tokenizer_config.json");
        if let Ok(text) = std::fs::read_to_string(&path) {
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| format!("{}: invalid JSON: {e}", path.display()))?;
            cfg.chat_template = match v.get("chat_template") {
                Some(serde_json::Value::String(t)) => Some(t.clone()),
                // A list of named templates: take "default".
                Some(serde_json::Value::Array(list)) => list
                    .iter()
                    .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
                    .and_then(|t| t.get("template"))
                    .and_then(|t| t.as_str())
                    .map(str::to_string),
                _ => None,
            };
            cfg.bos_token = special_token(v.get("bos_token"));
            cfg.eos_token = special_token(v.get("eos_token"));
            cfg.max_length = v
                .get("model_max_length")
                .and_then(|m| m.as_f64())
                .filter(|m| *m >= 1.0 && *m < 1e7)
                .map(|m| m as usize);
        }
        if let Ok(t) = std::fs::read_to_string(dir.join("chat_template.jinja")) {
            cfg.chat_template = Some(t);
        }
        Ok(cfg)
    }
}

/// A special token given as a string or as `{"content": "..."}`.
fn special_token(v: Option<&serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

#[derive(Serialize)]
struct TemplateMessage<'a> {
    role: &'a str,
    content: String,
}

impl ChatTemplate {
    /// Compiles the template of `cfg` (an invalid template is an error at load, not per request).
    pub fn new(cfg: &TokenizerConfig) -> Result<ChatTemplate, String> {
        let env = match &cfg.chat_template {
            None => None,
            Some(source) => {
                let mut env = Environment::new();
                env.set_unknown_method_callback(
                    minijinja_contrib::pycompat::unknown_method_callback,
                );
                env.add_function("raise_exception", |msg: String| -> Result<String, Error> {
                    Err(Error::new(ErrorKind::InvalidOperation, msg))
                });
                env.add_template_owned(NAME, source.clone())
                    .map_err(|e| format!("invalid chat template: {e}"))?;
                Some(env)
            }
        };
        Ok(ChatTemplate {
            env,
            bos_token: cfg.bos_token.clone().unwrap_or_default(),
            eos_token: cfg.eos_token.clone().unwrap_or_default(),
        })
    }

    /// Whether the model shipped a template (its output already holds any special tokens).
    pub fn is_templated(&self) -> bool {
        self.env.is_some()
    }

    /// The prompt for `messages`, ending where the assistant's answer begins.
    pub fn render(&self, messages: &[Message]) -> Result<String, String> {
        let Some(env) = &self.env else {
            let texts: Vec<String> = messages.iter().map(|m| joined_text(&m.content)).collect();
            return Ok(texts.join("\n"));
        };
        let messages: Vec<TemplateMessage> = messages
            .iter()
            .map(|m| TemplateMessage {
                role: match m.role {
                    Role::System => "system",
                    Role::User => "user",
                    Role::Assistant => "assistant",
                    Role::Tool => "tool",
                },
                content: joined_text(&m.content),
            })
            .collect();
        let template = env.get_template(NAME).map_err(|e| e.to_string())?;
        template
            .render(context! {
                messages => messages,
                add_generation_prompt => true,
                bos_token => self.bos_token,
                eos_token => self.eos_token,
            })
            .map_err(|e| format!("chat template: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_adapters::canonical::Part;

    fn msg(role: Role, text: &str) -> Message {
        Message {
            role,
            content: vec![Part::Text(text.into())],
        }
    }

    /// The ChatML template Qwen2 models ship (abridged to its message loop).
    const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] | trim + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn renders_a_chatml_template_with_a_generation_prompt() {
        let cfg = TokenizerConfig {
            chat_template: Some(CHATML.into()),
            ..Default::default()
        };
        let t = ChatTemplate::new(&cfg).map_err(|e| e.to_string());
        let prompt = t
            .and_then(|t| t.render(&[msg(Role::System, "Be brief."), msg(Role::User, " Hi ")]))
            .unwrap_or_else(|e| e);
        assert_eq!(
            prompt,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn python_string_methods_and_raise_exception_work() {
        let cfg = TokenizerConfig {
            chat_template: Some(
                "{% if messages[0]['role'] != 'user' %}{{ raise_exception('user first') }}{% endif %}{{ bos_token }}{{ messages[0]['content'].strip().upper() }}".into(),
            ),
            bos_token: Some("<s>".into()),
            ..Default::default()
        };
        let t = ChatTemplate::new(&cfg).map_err(|e| e.to_string());
        let Ok(t) = t else {
            panic!("template did not compile: {t:?}", t = t.err())
        };
        assert_eq!(
            t.render(&[msg(Role::User, "  hey ")]).as_deref(),
            Ok("<s>HEY")
        );
        let err = t
            .render(&[msg(Role::Assistant, "x")])
            .err()
            .unwrap_or_default();
        assert!(err.contains("user first"), "{err}");
    }

    #[test]
    fn no_template_joins_the_texts() {
        let t = ChatTemplate::new(&TokenizerConfig::default());
        let prompt = t.and_then(|t| t.render(&[msg(Role::User, "a"), msg(Role::User, "b")]));
        assert_eq!(prompt.as_deref(), Ok("a\nb"));
        assert!(ChatTemplate::new(&TokenizerConfig {
            chat_template: Some("{% for %}".into()),
            ..Default::default()
        })
        .is_err());
    }

    #[test]
    fn special_tokens_come_as_strings_or_objects() {
        let dir = std::env::temp_dir().join(format!("sy-template-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let written = std::fs::write(
            dir.join("tokenizer_config.json"),
            r#"{"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>", "model_max_length": 1000000000000000019884624838656, "chat_template": "x"}"#,
        );
        assert!(written.is_ok());
        let cfg = TokenizerConfig::read(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        let cfg = cfg.unwrap_or_default();
        assert_eq!(cfg.bos_token.as_deref(), Some("<s>"));
        assert_eq!(cfg.eos_token.as_deref(), Some("</s>"));
        assert_eq!(cfg.max_length, None);
        assert_eq!(cfg.chat_template.as_deref(), Some("x"));
    }
}
