//! The capability table: for every provider dialect and every request field, whether the field is
//! forwarded as is, translated, ignored (dropped because it cannot change the answer), or
//! unsupported (dropping it would change the answer).
//!
//! [`prune`] applies the table to a canonical request before a provider encoder sees it: an
//! unsupported field is a 400 naming the field and the provider when the model is strict, and is
//! removed and reported (for `x-switchyard-dropped`) when it is not. Encoders may therefore assume
//! every field still present is one they forward or translate. `docs/capabilities.md` is generated
//! from [`markdown`]; a test fails when the file is out of date.

use crate::canonical::{
    ChatRequest, Dialect, Image, Part, ResponseFormat, ToolChoice, TranslateError,
};

/// How a provider handles one request field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Sent under the same name and meaning.
    Forward,
    /// Sent, mapped to the provider's own field (the note says how).
    Translate(&'static str),
    /// Dropped silently: the provider has no such field and its absence cannot change the answer.
    Ignore(&'static str),
    /// The provider cannot honour it: 400 when the model is strict, else dropped and reported.
    Unsupported,
}

/// The request features the table speaks about. Value-dependent entries (`n>1`,
/// `parallel_tool_calls:false`, `temperature>1`) apply only when the request has that value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Temperature,
    TemperatureAboveOne,
    TopP,
    TopK,
    MaxTokens,
    Stop,
    Seed,
    NAboveOne,
    PresencePenalty,
    FrequencyPenalty,
    Logprobs,
    TopLogprobs,
    ResponseFormatJsonObject,
    ResponseFormatJsonSchema,
    Tools,
    ToolChoiceNone,
    ToolChoiceRequired,
    ToolChoiceFunction,
    ParallelToolCallsFalse,
    ImageUrl,
    ImageBase64,
    User,
}

impl Field {
    pub const ALL: [Field; 22] = [
        Field::Temperature,
        Field::TemperatureAboveOne,
        Field::TopP,
        Field::TopK,
        Field::MaxTokens,
        Field::Stop,
        Field::Seed,
        Field::NAboveOne,
        Field::PresencePenalty,
        Field::FrequencyPenalty,
        Field::Logprobs,
        Field::TopLogprobs,
        Field::ResponseFormatJsonObject,
        Field::ResponseFormatJsonSchema,
        Field::Tools,
        Field::ToolChoiceNone,
        Field::ToolChoiceRequired,
        Field::ToolChoiceFunction,
        Field::ParallelToolCallsFalse,
        Field::ImageUrl,
        Field::ImageBase64,
        Field::User,
    ];

    /// The name used in errors, in `x-switchyard-dropped` and in the docs.
    pub fn name(self) -> &'static str {
        match self {
            Field::Temperature => "temperature",
            Field::TemperatureAboveOne => "temperature>1",
            Field::TopP => "top_p",
            Field::TopK => "top_k",
            Field::MaxTokens => "max_tokens",
            Field::Stop => "stop",
            Field::Seed => "seed",
            Field::NAboveOne => "n>1",
            Field::PresencePenalty => "presence_penalty",
            Field::FrequencyPenalty => "frequency_penalty",
            Field::Logprobs => "logprobs",
            Field::TopLogprobs => "top_logprobs",
            Field::ResponseFormatJsonObject => "response_format:json_object",
            Field::ResponseFormatJsonSchema => "response_format:json_schema",
            Field::Tools => "tools",
            Field::ToolChoiceNone => "tool_choice:none",
            Field::ToolChoiceRequired => "tool_choice:required",
            Field::ToolChoiceFunction => "tool_choice:function",
            Field::ParallelToolCallsFalse => "parallel_tool_calls:false",
            Field::ImageUrl => "image:url",
            Field::ImageBase64 => "image:base64",
            Field::User => "user",
        }
    }
}

/// The table itself.
pub fn support(dialect: Dialect, field: Field) -> Support {
    use Field as F;
    use Support::*;
    match dialect {
        Dialect::OpenAi => match field {
            F::MaxTokens => Translate("`max_completion_tokens` as sent, else `max_tokens`"),
            F::ToolChoiceFunction => Forward,
            _ => Forward,
        },
        Dialect::Anthropic => match field {
            F::Temperature | F::TopP | F::TopK => Forward,
            F::TemperatureAboveOne => Unsupported,
            F::MaxTokens => {
                Translate("`max_tokens` (required: the deployment's `max_tokens` when absent)")
            }
            F::Stop => Translate("`stop_sequences`"),
            F::Tools => Translate("`tools[].input_schema`"),
            F::ToolChoiceNone => Translate("`{type:none}`"),
            F::ToolChoiceRequired => Translate("`{type:any}`"),
            F::ToolChoiceFunction => Translate("`{type:tool,name}`"),
            F::ParallelToolCallsFalse => Translate("`tool_choice.disable_parallel_tool_use`"),
            F::ImageUrl => Translate("image block, `source.type:url`"),
            F::ImageBase64 => Translate("image block, `source.type:base64`"),
            F::User => Translate("`metadata.user_id`"),
            F::ResponseFormatJsonObject => {
                Translate("`output_config.format` json_schema `{type: object}`")
            }
            F::ResponseFormatJsonSchema => Translate("`output_config.format` json_schema"),
            F::Seed
            | F::NAboveOne
            | F::PresencePenalty
            | F::FrequencyPenalty
            | F::Logprobs
            | F::TopLogprobs => Unsupported,
        },
        Dialect::Gemini => match field {
            F::Temperature | F::TemperatureAboveOne => Translate("`generationConfig.temperature`"),
            F::TopP => Translate("`generationConfig.topP`"),
            F::TopK => Translate("`generationConfig.topK`"),
            F::MaxTokens => Translate("`generationConfig.maxOutputTokens`"),
            F::Stop => Translate("`generationConfig.stopSequences`"),
            F::Seed => Translate("`generationConfig.seed`"),
            F::PresencePenalty => Translate("`generationConfig.presencePenalty`"),
            F::FrequencyPenalty => Translate("`generationConfig.frequencyPenalty`"),
            F::ResponseFormatJsonObject => Translate("`responseMimeType: application/json`"),
            F::ResponseFormatJsonSchema => {
                Translate("`responseMimeType: application/json` + `responseJsonSchema`")
            }
            F::Tools => Translate("`tools[].functionDeclarations[].parametersJsonSchema`"),
            F::ToolChoiceNone => Translate("`functionCallingConfig.mode: NONE`"),
            F::ToolChoiceRequired => Translate("`functionCallingConfig.mode: ANY`"),
            F::ToolChoiceFunction => Translate("`mode: ANY` + `allowedFunctionNames: [name]`"),
            F::ImageBase64 => Translate("`inlineData`"),
            F::User => Ignore("no end-user field; does not change the answer"),
            F::NAboveOne
            | F::Logprobs
            | F::TopLogprobs
            | F::ParallelToolCallsFalse
            | F::ImageUrl => Unsupported,
        },
        Dialect::Cloudflare => match field {
            F::Temperature | F::TemperatureAboveOne | F::TopP | F::TopK | F::Seed => Forward,
            F::PresencePenalty | F::FrequencyPenalty => Forward,
            F::MaxTokens => Translate("`max_tokens`"),
            F::ResponseFormatJsonObject | F::ResponseFormatJsonSchema => {
                Translate("`response_format` (models that take it)")
            }
            F::Tools => Translate("`tools` (OpenAI shape)"),
            F::User => Ignore("no end-user field; does not change the answer"),
            F::Stop
            | F::NAboveOne
            | F::Logprobs
            | F::TopLogprobs
            | F::ToolChoiceNone
            | F::ToolChoiceRequired
            | F::ToolChoiceFunction
            | F::ParallelToolCallsFalse
            | F::ImageUrl
            | F::ImageBase64 => Unsupported,
        },
        Dialect::Ollama => match field {
            F::Temperature | F::TemperatureAboveOne => Translate("`options.temperature`"),
            F::TopP => Translate("`options.top_p`"),
            F::TopK => Translate("`options.top_k`"),
            F::MaxTokens => Translate("`options.num_predict`"),
            F::Stop => Translate("`options.stop`"),
            F::Seed => Translate("`options.seed`"),
            F::PresencePenalty => Translate("`options.presence_penalty`"),
            F::FrequencyPenalty => Translate("`options.frequency_penalty`"),
            F::ResponseFormatJsonObject => Translate("`format: \"json\"`"),
            F::ResponseFormatJsonSchema => Translate("`format: <schema>`"),
            F::Tools => Translate("`tools` (OpenAI shape)"),
            F::ToolChoiceNone => Translate("tools left out"),
            F::ImageBase64 => Translate("`messages[].images` (raw base64)"),
            F::User => Ignore("no end-user field; does not change the answer"),
            F::NAboveOne
            | F::Logprobs
            | F::TopLogprobs
            | F::ToolChoiceRequired
            | F::ToolChoiceFunction
            | F::ParallelToolCallsFalse
            | F::ImageUrl => Unsupported,
        },
        Dialect::Bedrock => match field {
            F::Temperature | F::TemperatureAboveOne => Translate("`inferenceConfig.temperature`"),
            F::TopP => Translate("`inferenceConfig.topP`"),
            F::TopK => Translate("`additionalModelRequestFields.top_k` (models that take it)"),
            F::MaxTokens => {
                Translate("`inferenceConfig.maxTokens` (the deployment's `max_tokens` when absent)")
            }
            F::Stop => Translate("`inferenceConfig.stopSequences`"),
            F::Tools => Translate("`toolConfig.tools[].toolSpec.inputSchema.json`"),
            F::ToolChoiceNone => Translate("`toolConfig` left out"),
            F::ToolChoiceRequired => Translate("`toolConfig.toolChoice.any`"),
            F::ToolChoiceFunction => Translate("`toolConfig.toolChoice.tool.name`"),
            F::ImageBase64 => Translate("`image.source.bytes` (png, jpeg, gif, webp)"),
            F::User => Ignore("no end-user field; does not change the answer"),
            F::Seed
            | F::NAboveOne
            | F::PresencePenalty
            | F::FrequencyPenalty
            | F::Logprobs
            | F::TopLogprobs
            | F::ResponseFormatJsonObject
            | F::ResponseFormatJsonSchema
            | F::ParallelToolCallsFalse
            | F::ImageUrl => Unsupported,
        },
    }
}

/// How a provider handles a caller field with no canonical slot (kept in `ChatRequest::extra`).
/// Responses API fields no chat API has: a Responses request translated for a chat deployment
/// carries them as extras (when set to a non-default value), and no dialect can honour them.
pub const RESPONSES_ONLY: &[&str] = &[
    "include",
    "truncation",
    "top_logprobs",
    "max_tool_calls",
    "prompt",
];

pub fn extra_support(dialect: Dialect, name: &str) -> Support {
    if RESPONSES_ONLY.contains(&name) {
        return Support::Unsupported;
    }
    if dialect == Dialect::OpenAi {
        return Support::Forward;
    }
    match name {
        "metadata" | "store" | "service_tier" | "prompt_cache_key" | "safety_identifier"
        | "cache_control" => Support::Ignore("bookkeeping only; does not change the answer"),
        _ => Support::Unsupported,
    }
}

/// The table's fields present in `req` (value-dependent ones only with that value).
pub fn fields_in(req: &ChatRequest) -> Vec<Field> {
    let mut out = Vec::new();
    let mut add = |present: bool, f: Field| {
        if present {
            out.push(f)
        }
    };
    add(req.temperature.is_some(), Field::Temperature);
    add(
        req.temperature.is_some_and(|t| t > 1.0),
        Field::TemperatureAboveOne,
    );
    add(req.top_p.is_some(), Field::TopP);
    add(req.top_k.is_some(), Field::TopK);
    add(req.max_tokens.is_some(), Field::MaxTokens);
    add(!req.stop.is_empty(), Field::Stop);
    add(req.seed.is_some(), Field::Seed);
    add(req.n.is_some_and(|n| n > 1), Field::NAboveOne);
    add(req.presence_penalty.is_some(), Field::PresencePenalty);
    add(req.frequency_penalty.is_some(), Field::FrequencyPenalty);
    add(req.logprobs == Some(true), Field::Logprobs);
    add(req.top_logprobs.is_some(), Field::TopLogprobs);
    add(
        matches!(req.response_format, Some(ResponseFormat::JsonObject)),
        Field::ResponseFormatJsonObject,
    );
    add(
        matches!(req.response_format, Some(ResponseFormat::JsonSchema { .. })),
        Field::ResponseFormatJsonSchema,
    );
    add(!req.tools.is_empty(), Field::Tools);
    add(
        matches!(req.tool_choice, Some(ToolChoice::None)),
        Field::ToolChoiceNone,
    );
    add(
        matches!(req.tool_choice, Some(ToolChoice::Required)),
        Field::ToolChoiceRequired,
    );
    add(
        matches!(req.tool_choice, Some(ToolChoice::Function(_))),
        Field::ToolChoiceFunction,
    );
    add(
        req.parallel_tool_calls == Some(false),
        Field::ParallelToolCallsFalse,
    );
    let images = |want_url: bool| {
        req.messages.iter().any(|m| {
            m.content.iter().any(|p| {
                matches!(p, Part::Image(Image::Url(_))) == want_url && matches!(p, Part::Image(_))
            })
        })
    };
    add(images(true), Field::ImageUrl);
    add(images(false), Field::ImageBase64);
    add(req.user.is_some(), Field::User);
    out
}

/// Applies the table: removes what `dialect` ignores or cannot honour. With `strict`, the first
/// unsupported field is an error; otherwise the names of the dropped unsupported fields are
/// returned (ignored fields are not reported: they cannot change the answer).
pub fn prune(
    req: &mut ChatRequest,
    dialect: Dialect,
    strict: bool,
) -> Result<Vec<String>, TranslateError> {
    let mut dropped = Vec::new();
    for field in fields_in(req) {
        match support(dialect, field) {
            Support::Forward | Support::Translate(_) => {}
            Support::Ignore(_) => remove(req, field),
            Support::Unsupported => {
                if strict {
                    return Err(TranslateError::Unsupported {
                        field: field.name().to_string(),
                        provider: dialect.name(),
                    });
                }
                remove(req, field);
                dropped.push(field.name().to_string());
            }
        }
    }
    let mut kept = Vec::with_capacity(req.extra.len());
    for (name, value) in std::mem::take(&mut req.extra) {
        match extra_support(dialect, &name) {
            Support::Forward | Support::Translate(_) => kept.push((name, value)),
            Support::Ignore(_) => {}
            Support::Unsupported => {
                if strict {
                    return Err(TranslateError::Unsupported {
                        field: name,
                        provider: dialect.name(),
                    });
                }
                dropped.push(name);
            }
        }
    }
    req.extra = kept;
    Ok(dropped)
}

fn remove(req: &mut ChatRequest, field: Field) {
    match field {
        Field::Temperature => req.temperature = None,
        Field::TemperatureAboveOne => req.temperature = Some(1.0),
        Field::TopP => req.top_p = None,
        Field::TopK => req.top_k = None,
        Field::MaxTokens => req.max_tokens = None,
        Field::Stop => req.stop.clear(),
        Field::Seed => req.seed = None,
        Field::NAboveOne => req.n = None,
        Field::PresencePenalty => req.presence_penalty = None,
        Field::FrequencyPenalty => req.frequency_penalty = None,
        Field::Logprobs => req.logprobs = None,
        Field::TopLogprobs => req.top_logprobs = None,
        Field::ResponseFormatJsonObject | Field::ResponseFormatJsonSchema => {
            req.response_format = None
        }
        Field::Tools => {
            req.tools.clear();
            req.tool_choice = None;
        }
        Field::ToolChoiceNone => {
            // A provider that cannot say "none" honours it best by not seeing the tools.
            req.tools.clear();
            req.tool_choice = None;
        }
        Field::ToolChoiceRequired | Field::ToolChoiceFunction => req.tool_choice = None,
        Field::ParallelToolCallsFalse => req.parallel_tool_calls = None,
        Field::ImageUrl | Field::ImageBase64 => {
            let url = field == Field::ImageUrl;
            for m in &mut req.messages {
                m.content
                    .retain(|p| !matches!(p, Part::Image(i) if matches!(i, Image::Url(_)) == url));
            }
        }
        Field::User => req.user = None,
    }
}

/// `docs/capabilities.md`, generated from the table.
pub fn markdown() -> String {
    let mut out = String::from(
        "# Provider capabilities\n\n\
         Generated from `adapters/src/capabilities.rs` by `cargo test -p switchyard-adapters` \
         (set `UPDATE_CAPABILITIES=1` to rewrite this file); a test fails when it is out of date.\n\n\
         For each request field (OpenAI names; the Anthropic ingress maps onto the same fields) and \
         each provider `kind`:\n\n\
         - **forward** — sent under the same name;\n\
         - **translate** — sent as the provider's own field (how, below the table);\n\
         - **ignore** — dropped silently because it cannot change the answer;\n\
         - **reject** — the provider cannot honour it: a 400 naming the field and the provider when \
         the model is `strict` (the default); with `strict: false` it is dropped and named in the \
         `x-switchyard-dropped` response header.\n\n\
         Fields outside the table with no canonical meaning (e.g. `logit_bias`, `reasoning_effort`) \
         are forwarded to `openai` deployments and rejected by the others, except bookkeeping fields \
         (`metadata`, `store`, `service_tier`, `prompt_cache_key`, `safety_identifier`, \
         `cache_control`), which are ignored. Responses API fields no chat API has (`include`, \
         `truncation` other than `disabled`, `top_logprobs`, `max_tool_calls`, `prompt`) are \
         rejected by every translated deployment (`responses: native` ones get them as is).\n\n\
         Cloud kinds use their dialect's column: `azure` is `openai` (bodies pass through), \
         `bedrock` has its own (Converse), `vertex` is `gemini` for Gemini models and \
         `anthropic` for Claude models.\n\n",
    );
    out.push_str("| field |");
    for d in Dialect::ALL {
        out.push_str(&format!(" {} |", d.name()));
    }
    out.push_str("\n|---|");
    for _ in Dialect::ALL {
        out.push_str("---|");
    }
    out.push('\n');
    for f in Field::ALL {
        out.push_str(&format!("| `{}` |", f.name()));
        for d in Dialect::ALL {
            let cell = match support(d, f) {
                Support::Forward => "forward",
                Support::Translate(_) => "translate",
                Support::Ignore(_) => "ignore",
                Support::Unsupported => "**reject**",
            };
            out.push_str(&format!(" {cell} |"));
        }
        out.push('\n');
    }
    out.push_str("\n## How fields are translated\n\n");
    for d in Dialect::ALL {
        let notes: Vec<String> = Field::ALL
            .iter()
            .filter_map(|&f| match support(d, f) {
                Support::Translate(n) => Some(format!("- `{}` → {n}", f.name())),
                Support::Ignore(n) => Some(format!("- `{}` ignored: {n}", f.name())),
                _ => None,
            })
            .collect();
        if notes.is_empty() {
            continue;
        }
        out.push_str(&format!("### {}\n\n{}\n\n", d.name(), notes.join("\n")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::{Message, Role};

    fn req() -> ChatRequest {
        ChatRequest {
            model: "m".into(),
            messages: vec![Message {
                role: Role::User,
                content: vec![Part::Text("hi".into())],
            }],
            ..Default::default()
        }
    }

    #[test]
    fn strict_rejects_naming_field_and_provider() {
        let mut r = req();
        r.n = Some(2);
        let e = prune(&mut r, Dialect::Anthropic, true).unwrap_err();
        assert_eq!(
            e,
            TranslateError::Unsupported {
                field: "n>1".into(),
                provider: "anthropic"
            }
        );
    }

    #[test]
    fn lenient_drops_and_reports() {
        let mut r = req();
        r.n = Some(2);
        r.seed = Some(1);
        r.user = Some("u".into());
        r.extra.push(("logit_bias".into(), serde_json::json!({})));
        r.extra.push(("metadata".into(), serde_json::json!({})));
        let dropped = prune(&mut r, Dialect::Gemini, false).unwrap();
        assert_eq!(dropped, vec!["n>1".to_string(), "logit_bias".to_string()]);
        assert_eq!(r.n, None);
        assert_eq!(r.seed, Some(1), "gemini translates seed");
        assert_eq!(r.user, None, "ignored silently");
        assert!(r.extra.is_empty());
    }

    #[test]
    fn n_of_one_is_not_n_above_one() {
        let mut r = req();
        r.n = Some(1);
        assert!(prune(&mut r, Dialect::Anthropic, true).unwrap().is_empty());
    }

    #[test]
    fn openai_forwards_everything() {
        let mut r = req();
        r.n = Some(3);
        r.logprobs = Some(true);
        r.extra
            .push(("logit_bias".into(), serde_json::json!({"1": 2})));
        assert!(prune(&mut r, Dialect::OpenAi, true).unwrap().is_empty());
        assert_eq!(r.extra.len(), 1);
    }

    #[test]
    fn docs_are_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/capabilities.md");
        let want = markdown();
        if std::env::var_os("UPDATE_CAPABILITIES").is_some() {
            std::fs::write(path, &want).unwrap();
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            have == want,
            "docs/capabilities.md is out of date: run `UPDATE_CAPABILITIES=1 cargo test -p switchyard-adapters docs_are_current`"
        );
    }
}
