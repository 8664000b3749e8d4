//! Property tests: random canonical requests, responses and event streams survive a trip through
//! an encoder and the decoder of the same format, modulo the intended normalisations written down
//! next to each comparison.
//!
//! - Requests: `prune` (strict: false) → `encode_request` for OpenAI and Anthropic → the caller
//!   decoder of that format; every field the capability table forwards or translates survives.
//!   Gemini, Cloudflare and Ollama have no request decoder: their bodies must be JSON holding every
//!   text, tool name and tool-result content, and the sampling fields where the table puts them.
//! - Responses: `Caller::{OpenAi,Anthropic}.encode_response` → the provider response decoder.
//! - Streams: `providers::StreamEncoder` → bytes cut at random places → the provider
//!   `StreamDecoder` of the same format.
//!
//! 64 cases per property (set `PROPTEST_CASES` for more).

use bytes::BytesMut;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Map, Value};
use switchyard_adapters::anthropic::{self, sanitize_id};
use switchyard_adapters::canonical::*;
use switchyard_adapters::capabilities::{prune, support, Field, Support};
use switchyard_adapters::openai;
use switchyard_adapters::providers::{self, Caller, StreamEncoder};

const DEFAULT_MAX_TOKENS: u32 = 4096;

fn opts() -> EncodeOptions<'static> {
    EncodeOptions {
        model: "provider-model",
        default_max_tokens: DEFAULT_MAX_TOKENS,
    }
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(64),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies.

/// Non-empty text with unicode, quotes, backslashes and newlines. No `{`: Gemini sends a tool
/// result that parses as a JSON object as that object, not as text.
fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 ,.!?'\"/éüß中文🙂\n\\\\]{1,12}"
}

fn tool_name() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_]{0,10}"
}

/// Tool ids, with characters Anthropic does not accept (`.`, `:`) now and then.
fn tool_id() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_.:-]{1,10}"
}

/// JSON without floats (`serde_json` float text is not guaranteed to round-trip bit for bit).
fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        text().prop_map(Value::String),
    ]
}

fn json_object() -> impl Strategy<Value = Value> {
    let value = json_leaf().prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,5}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    prop::collection::btree_map("[a-z_]{1,6}", value, 0..4)
        .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>()))
}

/// A simple object schema.
fn schema() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(
        "[a-z_]{1,6}",
        prop::sample::select(vec!["string", "integer", "boolean", "number"]),
        0..4,
    )
    .prop_map(|props| {
        let required: Vec<&String> = props.keys().collect();
        json!({
            "type": "object",
            "properties": props.iter().map(|(k, t)| (k.clone(), json!({"type": t}))).collect::<Map<_, _>>(),
            "required": required,
        })
    })
}

fn tool() -> impl Strategy<Value = Tool> {
    (
        tool_name(),
        prop::option::of(text()),
        prop::option::of(schema()),
    )
        .prop_map(|(name, description, parameters)| Tool {
            name,
            description,
            parameters,
        })
}

/// One call of an assistant turn and its answer.
#[derive(Debug, Clone)]
struct Call {
    id: String,
    name: String,
    arguments: Value,
    result: String,
    is_error: bool,
}

/// A piece of conversation; [`conversation`] turns a list of them into turns in a valid order.
#[derive(Debug, Clone)]
enum Segment {
    System(Vec<String>),
    User(Vec<String>),
    Assistant(Vec<String>),
    /// An assistant turn with calls (and maybe text), then the tool results: in one tool turn, or
    /// one tool turn per result (`split`); then maybe a user turn.
    Calls {
        text: Vec<String>,
        calls: Vec<Call>,
        split: bool,
        then_user: Option<String>,
    },
}

fn segment() -> impl Strategy<Value = Segment> {
    let texts = || prop::collection::vec(text(), 1..3);
    let call = (tool_id(), tool_name(), json_object(), text(), any::<bool>()).prop_map(
        |(id, name, arguments, result, is_error)| Call {
            id,
            name,
            arguments,
            result,
            is_error,
        },
    );
    prop_oneof![
        1 => texts().prop_map(Segment::System),
        3 => texts().prop_map(Segment::User),
        2 => texts().prop_map(Segment::Assistant),
        3 => (
            prop::collection::vec(text(), 0..2),
            prop::collection::vec(call, 1..4),
            any::<bool>(),
            prop::option::of(text()),
        )
            .prop_map(|(text, calls, split, then_user)| Segment::Calls {
                text,
                calls,
                split,
                then_user,
            }),
    ]
}

fn texts_of(t: &[String]) -> Vec<Part> {
    t.iter().cloned().map(Part::Text).collect()
}

/// Turns in a valid order: system turns anywhere, a user turn first among the others, tool results
/// right after the calls they answer. Call ids get a unique suffix.
fn conversation(first_user: String, segments: Vec<Segment>) -> Vec<Message> {
    let mut out = Vec::new();
    let mut lead = segments
        .iter()
        .take_while(|s| matches!(s, Segment::System(_)));
    for s in lead.by_ref() {
        if let Segment::System(t) = s {
            out.push(Message {
                role: Role::System,
                content: texts_of(t),
            });
        }
    }
    let rest = &segments[out.len()..];
    if !matches!(rest.first(), Some(Segment::User(_))) {
        out.push(Message {
            role: Role::User,
            content: vec![Part::Text(first_user)],
        });
    }
    let mut n = 0;
    for s in rest {
        match s {
            Segment::System(t) | Segment::User(t) | Segment::Assistant(t) => out.push(Message {
                role: match s {
                    Segment::System(_) => Role::System,
                    Segment::User(_) => Role::User,
                    _ => Role::Assistant,
                },
                content: texts_of(t),
            }),
            Segment::Calls {
                text,
                calls,
                split,
                then_user,
            } => {
                let calls: Vec<Call> = calls
                    .iter()
                    .map(|c| {
                        n += 1;
                        Call {
                            id: format!("{}{n}", c.id),
                            ..c.clone()
                        }
                    })
                    .collect();
                let mut content = texts_of(text);
                content.extend(calls.iter().map(|c| Part::ToolCall {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    arguments: c.arguments.to_string(),
                }));
                out.push(Message {
                    role: Role::Assistant,
                    content,
                });
                let results: Vec<Part> = calls
                    .iter()
                    .map(|c| Part::ToolResult {
                        call_id: c.id.clone(),
                        name: Some(c.name.clone()),
                        content: c.result.clone(),
                        is_error: c.is_error,
                    })
                    .collect();
                if *split {
                    out.extend(results.into_iter().map(|r| Message {
                        role: Role::Tool,
                        content: vec![r],
                    }));
                } else {
                    out.push(Message {
                        role: Role::Tool,
                        content: results,
                    });
                }
                if let Some(u) = then_user {
                    out.push(Message {
                        role: Role::User,
                        content: vec![Part::Text(u.clone())],
                    });
                }
            }
        }
    }
    out
}

/// Temperatures in hundredths (0..=2), so the JSON text round-trips exactly.
fn hundredths(max: u32) -> impl Strategy<Value = f64> {
    (0..=max).prop_map(|k| f64::from(k) / 100.0)
}

fn tool_choice() -> impl Strategy<Value = ToolChoice> {
    prop_oneof![
        Just(ToolChoice::Auto),
        Just(ToolChoice::None),
        Just(ToolChoice::Required),
        tool_name().prop_map(ToolChoice::Function),
    ]
}

fn request() -> impl Strategy<Value = ChatRequest> {
    let messages = (text(), prop::collection::vec(segment(), 0..6))
        .prop_map(|(first, segs)| conversation(first, segs));
    let sampling = (
        prop::option::of(1..100_000u32),
        prop::option::of(hundredths(200)),
        prop::option::of(hundredths(100)),
        prop::option::of(1..200u32),
        prop::collection::vec(text(), 0..3),
        prop::option::of(any::<i64>()),
    );
    let rest = (
        prop::collection::vec(tool(), 0..3),
        prop::option::of(tool_choice()),
        prop::option::of("[a-z0-9-]{1,12}"),
        any::<bool>(),
    );
    (messages, sampling, rest).prop_map(
        |(
            messages,
            (max_tokens, temperature, top_p, top_k, stop, seed),
            (tools, tool_choice, user, stream),
        )| {
            ChatRequest {
                model: "public-model".into(),
                messages,
                stream,
                max_tokens,
                temperature,
                top_p,
                top_k,
                stop,
                seed,
                tools,
                tool_choice,
                user,
                ..Default::default()
            }
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Request helpers.

fn kept(dialect: Dialect, field: Field) -> bool {
    matches!(
        support(dialect, field),
        Support::Forward | Support::Translate(_)
    )
}

/// `prune` keeps every field the table forwards or translates.
fn assert_prune_keeps(dialect: Dialect, orig: &ChatRequest, pruned: &ChatRequest) {
    if kept(dialect, Field::MaxTokens) {
        assert_eq!(pruned.max_tokens, orig.max_tokens);
    }
    if kept(dialect, Field::Temperature) && kept(dialect, Field::TemperatureAboveOne) {
        assert_eq!(pruned.temperature, orig.temperature);
    }
    if kept(dialect, Field::TopP) {
        assert_eq!(pruned.top_p, orig.top_p);
    }
    if kept(dialect, Field::TopK) {
        assert_eq!(pruned.top_k, orig.top_k);
    }
    if kept(dialect, Field::Stop) {
        assert_eq!(pruned.stop, orig.stop);
    }
    if kept(dialect, Field::Seed) {
        assert_eq!(pruned.seed, orig.seed);
    }
    if kept(dialect, Field::Tools)
        && (orig.tool_choice != Some(ToolChoice::None) || kept(dialect, Field::ToolChoiceNone))
    {
        assert_eq!(pruned.tools, orig.tools);
    }
    assert_eq!(
        pruned.messages, orig.messages,
        "no images: messages untouched"
    );
}

fn encode(dialect: Dialect, orig: &ChatRequest) -> (ChatRequest, Vec<u8>) {
    let mut pruned = orig.clone();
    prune(&mut pruned, dialect, false).expect("lenient prune never fails");
    assert_prune_keeps(dialect, orig, &pruned);
    let enc = providers::encode_request(dialect, &pruned, &opts())
        .unwrap_or_else(|e| panic!("{dialect:?} encode failed: {e}"));
    (pruned, enc.body)
}

fn args_value(arguments: &str) -> Value {
    serde_json::from_str(arguments).unwrap_or_else(|e| panic!("arguments {arguments:?}: {e}"))
}

/// A message part as compared: tool arguments as JSON values, result names and (for OpenAI)
/// `is_error` left out.
#[derive(Debug, Clone, PartialEq)]
enum Item {
    Text(String),
    Call {
        id: String,
        name: String,
        arguments: Value,
    },
    Result {
        call_id: String,
        content: String,
        is_error: bool,
    },
}

fn item(p: &Part, keep_is_error: bool, id: &dyn Fn(&str) -> String) -> Item {
    match p {
        Part::Text(t) => Item::Text(t.clone()),
        Part::ToolCall {
            id: i,
            name,
            arguments,
        } => Item::Call {
            id: id(i),
            name: name.clone(),
            arguments: args_value(arguments),
        },
        Part::ToolResult {
            call_id,
            content,
            is_error,
            ..
        } => Item::Result {
            call_id: id(call_id),
            content: content.clone(),
            is_error: *is_error && keep_is_error,
        },
        Part::Image(_) => unreachable!("no images generated"),
    }
}

/// The OpenAI view of a conversation. Intended normalisations of the OpenAI encoder:
/// - the text parts of a system turn are joined with "\n\n" into one;
/// - the text parts of an assistant turn are concatenated into one (`content` is a string);
/// - every tool result is a `tool` message of its own (a tool turn with N results becomes N);
/// - tool results carry no `is_error` (OpenAI has no such field).
fn openai_view(messages: &[Message]) -> Vec<(Role, Vec<Item>)> {
    let id = |s: &str| s.to_string();
    let mut out = Vec::new();
    for m in messages {
        match m.role {
            Role::System => out.push((
                Role::System,
                vec![Item::Text(
                    system_text(std::slice::from_ref(m)).unwrap_or_default(),
                )],
            )),
            Role::User => out.push((
                Role::User,
                m.content.iter().map(|p| item(p, false, &id)).collect(),
            )),
            Role::Assistant => {
                let text = joined_text(&m.content);
                let mut items: Vec<Item> = Vec::new();
                if !text.is_empty() {
                    items.push(Item::Text(text));
                }
                items.extend(
                    m.content
                        .iter()
                        .filter(|p| matches!(p, Part::ToolCall { .. }))
                        .map(|p| item(p, false, &id)),
                );
                out.push((Role::Assistant, items));
            }
            Role::Tool => out.extend(
                m.content
                    .iter()
                    .map(|p| (Role::Tool, vec![item(p, false, &id)])),
            ),
        }
    }
    out
}

/// The Anthropic view of a conversation. Intended normalisations of the Anthropic encoder:
/// - system turns are hoisted out of `messages` into `system`, joined with "\n\n" (compared
///   separately, through `system_text`);
/// - user and tool turns are both `user` turns, and consecutive turns of the same role merge into
///   one (the decoder splits a merged user turn back into one tool turn with all its results,
///   followed by one user turn with its text, so results come first within a merged group);
/// - tool ids are sanitized to `[A-Za-z0-9_-]` (on the call and on its result alike).
fn anthropic_view(messages: &[Message]) -> Vec<(bool, Vec<Item>)> {
    let id = |s: &str| sanitize_id(s);
    let mut merged: Vec<(bool, Vec<Item>)> = Vec::new();
    for m in messages {
        let assistant = match m.role {
            Role::System => continue,
            Role::Assistant => true,
            Role::User | Role::Tool => false,
        };
        let items: Vec<Item> = m.content.iter().map(|p| item(p, true, &id)).collect();
        match merged.last_mut() {
            Some((a, group)) if *a == assistant => group.extend(items),
            _ => merged.push((assistant, items)),
        }
    }
    for (assistant, group) in &mut merged {
        if !*assistant {
            let (mut results, texts): (Vec<Item>, Vec<Item>) = group
                .drain(..)
                .partition(|i| matches!(i, Item::Result { .. }));
            results.extend(texts);
            *group = results;
        }
    }
    merged
}

/// Every string value anywhere in a JSON document.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

fn field_or_null<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    let mut cur = v;
    for k in path {
        match cur.get(k) {
            Some(x) => cur = x,
            None => return &Value::Null,
        }
    }
    cur
}

fn json_opt<T>(v: Option<T>) -> Value
where
    Value: From<T>,
{
    v.map(Value::from).unwrap_or(Value::Null)
}

// ---------------------------------------------------------------------------------------------
// Request properties.

fn check_openai(orig: &ChatRequest) {
    let (pruned, body) = encode(Dialect::OpenAi, orig);
    let back = openai::codec::decode_request(&body).expect("decodes its own encoding");
    assert_eq!(
        back.model, "provider-model",
        "the provider's model name is sent"
    );
    assert_eq!(openai_view(&back.messages), openai_view(&pruned.messages));
    // Everything is forwarded to OpenAI (max_tokens translated to `max_tokens`).
    assert_eq!(back.max_tokens, pruned.max_tokens);
    assert_eq!(back.temperature, pruned.temperature);
    assert_eq!(back.top_p, pruned.top_p);
    assert_eq!(back.top_k, pruned.top_k);
    assert_eq!(back.stop, pruned.stop);
    assert_eq!(back.seed, pruned.seed);
    assert_eq!(back.tools, pruned.tools);
    assert_eq!(back.tool_choice, pruned.tool_choice);
    assert_eq!(back.user, pruned.user);
    assert_eq!(back.stream, pruned.stream);
    // Intended: a stream always asks for usage (the gateway meters it).
    assert_eq!(back.include_usage, pruned.stream);
}

fn check_anthropic(orig: &ChatRequest) {
    let (pruned, body) = encode(Dialect::Anthropic, orig);
    let back = anthropic::decode_request(&body).expect("decodes its own encoding");
    assert_eq!(back.model, "provider-model");
    assert_eq!(system_text(&back.messages), system_text(&pruned.messages));
    assert_eq!(
        anthropic_view(&back.messages),
        anthropic_view(&pruned.messages)
    );
    // Intended: `max_tokens` is required by Anthropic; the deployment's default fills it.
    assert_eq!(
        back.max_tokens,
        Some(pruned.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS))
    );
    // Temperatures above 1 are unsupported and pruned (strict: false) to 1.
    assert_eq!(
        back.temperature,
        orig.temperature.map(|t| t.min(1.0)),
        "temperature"
    );
    assert_eq!(back.temperature, pruned.temperature);
    assert_eq!(back.top_p, pruned.top_p);
    assert_eq!(back.top_k, pruned.top_k);
    assert_eq!(back.stop, pruned.stop);
    assert_eq!(back.seed, None, "seed is unsupported and pruned");
    // Intended: a tool without parameters gets the empty object schema as `input_schema`.
    let tools: Vec<Tool> = pruned
        .tools
        .iter()
        .map(|t| Tool {
            parameters: Some(
                t.parameters
                    .clone()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            ),
            ..t.clone()
        })
        .collect();
    assert_eq!(back.tools, tools);
    assert_eq!(back.tool_choice, pruned.tool_choice);
    assert_eq!(back.user, pruned.user);
    assert_eq!(back.stream, pruned.stream);
}

/// Gemini, Cloudflare, Ollama: no request decoder; the body must be JSON holding every text, tool
/// name and tool-result content, and the sampling fields where the table translates them.
fn check_other(dialect: Dialect, orig: &ChatRequest) {
    let (pruned, body) = encode(dialect, orig);
    let v: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{dialect:?} body is not JSON: {e}"));
    let mut all = Vec::new();
    strings(&v, &mut all);
    let has = |needle: &str| all.iter().any(|s| s.contains(needle));
    for m in &pruned.messages {
        for p in &m.content {
            match p {
                Part::Text(t) => assert!(has(t), "{dialect:?} lost text {t:?}: {v}"),
                Part::ToolCall { name, .. } => {
                    assert!(has(name), "{dialect:?} lost call name {name:?}: {v}")
                }
                Part::ToolResult { content, .. } => {
                    assert!(has(content), "{dialect:?} lost result {content:?}: {v}")
                }
                Part::Image(_) => {}
            }
        }
    }
    // Ollama translates `tool_choice: none` by leaving the tools out.
    let tools_sent = !(dialect == Dialect::Ollama && pruned.tool_choice == Some(ToolChoice::None));
    let mut tool_strings = Vec::new();
    strings(v.get("tools").unwrap_or(&Value::Null), &mut tool_strings);
    for t in &pruned.tools {
        assert_eq!(
            tool_strings.contains(&t.name),
            tools_sent,
            "{dialect:?} tool {:?}: {v}",
            t.name
        );
    }
    if !tools_sent {
        assert!(
            v.get("tools").is_none(),
            "{dialect:?}: tools not left out: {v}"
        );
    }
    let (prefix, max_key, stop_key, top_p_key, top_k_key): (&[&str], _, _, _, _) = match dialect {
        Dialect::Gemini => (
            &["generationConfig"],
            "maxOutputTokens",
            "stopSequences",
            "topP",
            "topK",
        ),
        Dialect::Ollama => (&["options"], "num_predict", "stop", "top_p", "top_k"),
        Dialect::Cloudflare => (&[], "max_tokens", "stop", "top_p", "top_k"),
        _ => unreachable!(),
    };
    let at = |key: &str| {
        let mut path = prefix.to_vec();
        path.push(key);
        field_or_null(&v, &path).clone()
    };
    let expect_max = match dialect {
        // Intended: Cloudflare always sends `max_tokens` (the deployment's default when absent).
        Dialect::Cloudflare => Some(pruned.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)),
        _ => pruned.max_tokens,
    };
    assert!(kept(dialect, Field::MaxTokens));
    assert_eq!(
        at(max_key),
        json_opt(expect_max),
        "{dialect:?} max_tokens: {v}"
    );
    assert!(kept(dialect, Field::Temperature));
    assert_eq!(
        at("temperature"),
        json_opt(orig.temperature),
        "{dialect:?}: {v}"
    );
    assert_eq!(at(top_p_key), json_opt(orig.top_p), "{dialect:?}: {v}");
    assert_eq!(at(top_k_key), json_opt(orig.top_k), "{dialect:?}: {v}");
    assert_eq!(at("seed"), json_opt(orig.seed), "{dialect:?}: {v}");
    let stop = if kept(dialect, Field::Stop) && !orig.stop.is_empty() {
        json!(orig.stop)
    } else {
        Value::Null
    };
    assert_eq!(at(stop_key), stop, "{dialect:?} stop: {v}");
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn request_round_trips_through_openai(req in request()) {
        check_openai(&req);
    }

    #[test]
    fn request_round_trips_through_anthropic(req in request()) {
        check_anthropic(&req);
    }

    #[test]
    fn request_encodes_for_gemini_cloudflare_ollama(req in request()) {
        for d in [Dialect::Gemini, Dialect::Cloudflare, Dialect::Ollama] {
            check_other(d, &req);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Responses.

fn finish() -> impl Strategy<Value = FinishReason> {
    prop_oneof![
        Just(FinishReason::Stop),
        prop::option::of(text()).prop_map(FinishReason::StopSequence),
        Just(FinishReason::Length),
        Just(FinishReason::ToolCalls),
        Just(FinishReason::ContentFilter),
        "[a-z_]{1,8}".prop_map(FinishReason::Other),
    ]
}

/// Normalised usage: the prompt count includes cache reads and writes.
fn usage() -> impl Strategy<Value = Usage> {
    (
        0..1_000_000u64,
        0..1_000_000u64,
        0..1_000u64,
        0..1_000u64,
        0..1_000u64,
    )
        .prop_map(|(base, output, cr, cw, reasoning)| Usage {
            input_tokens: base + cr + cw,
            output_tokens: output + reasoning,
            cache_read_tokens: cr,
            cache_write_tokens: cw,
            reasoning_tokens: reasoning,
        })
}

fn output_part() -> impl Strategy<Value = OutputPart> {
    prop_oneof![
        3 => text().prop_map(OutputPart::Text),
        1 => text().prop_map(OutputPart::Reasoning),
        2 => (tool_id(), tool_name(), json_object()).prop_map(|(id, name, args)| OutputPart::ToolCall {
            id,
            name,
            arguments: args.to_string(),
        }),
    ]
}

fn response() -> impl Strategy<Value = ChatResponse> {
    (
        prop::collection::vec(output_part(), 0..5),
        finish(),
        prop::option::of(usage()),
    )
        .prop_map(|(content, finish, usage)| ChatResponse {
            id: "ignored".into(),
            model: "ignored".into(),
            content,
            finish,
            usage,
        })
}

/// (text, reasoning, calls as (id, name, arguments)) of a response.
type Summary = (String, String, Vec<(String, String, Value)>);

fn summary(parts: &[OutputPart], id: &dyn Fn(&str) -> String) -> Summary {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for p in parts {
        match p {
            OutputPart::Text(t) => text.push_str(t),
            OutputPart::Reasoning(t) => reasoning.push_str(t),
            OutputPart::ToolCall {
                id: i,
                name,
                arguments,
            } => calls.push((id(i), name.clone(), args_value(arguments))),
        }
    }
    (text, reasoning, calls)
}

/// OpenAI has one finish reason for a stop sequence, a natural stop and unknown reasons.
fn openai_finish(f: &FinishReason) -> FinishReason {
    match f {
        FinishReason::StopSequence(_) | FinishReason::Other(_) => FinishReason::Stop,
        f => f.clone(),
    }
}

/// Anthropic has no `other` stop reason: unknown reasons end the turn.
fn anthropic_finish(f: &FinishReason) -> FinishReason {
    match f {
        FinishReason::Other(_) => FinishReason::Stop,
        f => f.clone(),
    }
}

/// OpenAI usage carries no cache writes.
fn openai_usage(u: Usage) -> Usage {
    Usage {
        cache_write_tokens: 0,
        ..u
    }
}

/// Anthropic usage carries no reasoning count.
fn anthropic_usage(u: Usage) -> Usage {
    Usage {
        reasoning_tokens: 0,
        ..u
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn response_round_trips_through_openai(resp in response()) {
        let body = Caller::OpenAi.encode_response(&resp, "chatcmpl-1", "m", 7);
        let back = openai::codec::decode_response(&body).expect("decodes");
        let same = |s: &str| s.to_string();
        prop_assert_eq!(summary(&back.content, &same), summary(&resp.content, &same));
        prop_assert_eq!(back.id, "chatcmpl-1");
        prop_assert_eq!(back.finish, openai_finish(&resp.finish));
        prop_assert_eq!(back.usage, resp.usage.map(openai_usage));
    }

    #[test]
    fn response_round_trips_through_anthropic(resp in response()) {
        let body = Caller::Anthropic.encode_response(&resp, "msg_1", "m", 7);
        let back = anthropic::decode_response(&body).expect("decodes");
        let (text, _, calls) = summary(&resp.content, &|s| sanitize_id(s));
        // Intended: reasoning from another provider is not passed to Anthropic callers (thinking
        // blocks need Anthropic's signature); tool ids are sanitized.
        prop_assert_eq!(summary(&back.content, &|s| s.to_string()), (text, String::new(), calls));
        prop_assert_eq!(back.finish, anthropic_finish(&resp.finish));
        // Intended: Anthropic always sends usage (zeros when unknown).
        prop_assert_eq!(back.usage, Some(anthropic_usage(resp.usage.unwrap_or_default())));
    }
}

// ---------------------------------------------------------------------------------------------
// Streams.

/// A stream as the encoders see it: text, reasoning and whole tool calls (start, then argument
/// fragments), then maybe usage and a finish reason, then `End`.
fn events() -> impl Strategy<Value = Vec<StreamEvent>> {
    #[derive(Debug, Clone)]
    enum Piece {
        Text(String),
        Reasoning(String),
        Call(String, String, Vec<String>),
        Usage(Usage),
    }
    let piece = prop_oneof![
        3 => text().prop_map(Piece::Text),
        1 => text().prop_map(Piece::Reasoning),
        2 => (tool_id(), tool_name(), prop::collection::vec(text(), 0..4))
            .prop_map(|(id, name, frags)| Piece::Call(id, name, frags)),
        1 => usage().prop_map(Piece::Usage),
    ];
    (
        prop::collection::vec(piece, 0..10),
        prop::option::of(finish()),
    )
        .prop_map(|(pieces, finish)| {
            let mut out = vec![StreamEvent::Start {
                id: Some("up".into()),
                model: Some("up-model".into()),
            }];
            let mut index = 0;
            for p in pieces {
                match p {
                    Piece::Text(t) => out.push(StreamEvent::TextDelta(t)),
                    Piece::Reasoning(t) => out.push(StreamEvent::ReasoningDelta(t)),
                    Piece::Usage(u) => out.push(StreamEvent::Usage(u)),
                    Piece::Call(id, name, frags) => {
                        out.push(StreamEvent::ToolCallStart { index, id, name });
                        out.extend(
                            frags
                                .into_iter()
                                .map(|arguments| StreamEvent::ToolCallDelta { index, arguments }),
                        );
                        index += 1;
                    }
                }
            }
            out.extend(finish.map(StreamEvent::Finish));
            out.push(StreamEvent::End);
            out
        })
}

/// What a stream says: text, reasoning, calls (id, name, joined arguments), finish, last usage,
/// whether it ended normally.
#[derive(Debug, PartialEq)]
struct StreamSummary {
    text: String,
    reasoning: String,
    calls: Vec<(String, String, String)>,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
    ended: bool,
}

fn stream_summary(events: &[StreamEvent]) -> StreamSummary {
    let mut s = StreamSummary {
        text: String::new(),
        reasoning: String::new(),
        calls: Vec::new(),
        finish: None,
        usage: None,
        ended: false,
    };
    for e in events {
        match e {
            StreamEvent::TextDelta(t) => s.text.push_str(t),
            StreamEvent::ReasoningDelta(t) => s.reasoning.push_str(t),
            StreamEvent::ToolCallStart { index, id, name } => {
                assert_eq!(*index as usize, s.calls.len(), "tool indexes count from 0");
                s.calls.push((id.clone(), name.clone(), String::new()));
            }
            StreamEvent::ToolCallDelta { index, arguments } => {
                s.calls[*index as usize].2.push_str(arguments)
            }
            StreamEvent::Usage(u) => s.usage = Some(*u),
            StreamEvent::Finish(f) => {
                assert!(s.finish.is_none(), "one Finish");
                s.finish = Some(f.clone());
            }
            StreamEvent::End => s.ended = true,
            StreamEvent::Error(e) => panic!("unexpected error event: {e:?}"),
            StreamEvent::Start { .. } => {}
        }
    }
    s
}

/// Encodes `events` for `caller`, cuts the bytes at `cuts`, decodes them with `dec`.
fn stream_trip(
    caller: Caller,
    events: &[StreamEvent],
    cuts: &[Index],
    mut dec: Box<dyn StreamDecode>,
) -> Vec<StreamEvent> {
    let mut enc = StreamEncoder::new(caller, "resp-1", "m", 7, true);
    let mut bytes = BytesMut::new();
    for e in events {
        enc.push(e, &mut bytes);
    }
    let mut at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
    at.sort_unstable();
    let mut out = Vec::new();
    let mut prev = 0;
    for c in at {
        dec.push(&bytes[prev..c], &mut out);
        prev = c;
    }
    dec.push(&bytes[prev..], &mut out);
    dec.finish(&mut out);
    assert!(
        matches!(out.first(), Some(StreamEvent::Start { .. })),
        "{out:?}"
    );
    out
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn stream_round_trips_through_openai(
        evs in events(),
        cuts in prop::collection::vec(any::<Index>(), 0..12),
    ) {
        let back = stream_trip(
            Caller::OpenAi,
            &evs,
            &cuts,
            Box::new(openai::codec::StreamDecoder::new()),
        );
        let want = stream_summary(&evs);
        let expected = StreamSummary {
            // Intended: without a finish reason the stream ends with `stop`.
            finish: Some(openai_finish(want.finish.as_ref().unwrap_or(&FinishReason::Stop))),
            // Intended: with include_usage the last chunk always carries usage (zeros if unknown).
            usage: Some(openai_usage(want.usage.unwrap_or_default())),
            ..want
        };
        prop_assert_eq!(stream_summary(&back), expected);
    }

    #[test]
    fn stream_round_trips_through_anthropic(
        evs in events(),
        cuts in prop::collection::vec(any::<Index>(), 0..12),
    ) {
        let back = stream_trip(
            Caller::Anthropic,
            &evs,
            &cuts,
            Box::new(anthropic::StreamDecoder::new()),
        );
        let want = stream_summary(&evs);
        let expected = StreamSummary {
            // Intended: reasoning is not passed to Anthropic callers; tool ids are sanitized.
            reasoning: String::new(),
            calls: want
                .calls
                .iter()
                .map(|(id, name, args)| (sanitize_id(id), name.clone(), args.clone()))
                .collect(),
            finish: Some(anthropic_finish(want.finish.as_ref().unwrap_or(&FinishReason::Stop))),
            usage: Some(anthropic_usage(want.usage.unwrap_or_default())),
            ..want
        };
        prop_assert_eq!(stream_summary(&back), expected);
    }
}
