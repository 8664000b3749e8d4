//! The built-in `mock` provider's forced tool calls: `tool_choice: "required"` (Anthropic
//! `{"type":"any"}`) calls the first tool, a named function (`{"type":"function","function":
//! {"name"}}`, Anthropic `{"type":"tool","name"}`) calls that one, with arguments that are valid
//! JSON filling the parameters schema's required properties with placeholders by type. Pure: it
//! reads the request's `tools` and `tool_choice` and writes nothing.

use super::mock_answer::MockRefusal;
use serde_json::{Map, Value};

/// A tool call the mock answers with.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// JSON text of the arguments object.
    pub arguments: String,
}

impl ToolCall {
    /// Completion tokens of the call (about four characters each, plus the name).
    pub fn tokens(&self) -> u64 {
        1 + (self.arguments.len() as u64).div_ceil(4)
    }
}

/// The tool the request forces, if it forces one. `seed` makes the call id deterministic.
pub fn forced_call(
    tools: Option<&[Value]>,
    tool_choice: Option<&Value>,
    seed: u64,
) -> Result<Option<ToolCall>, MockRefusal> {
    let tools = tools.unwrap_or_default();
    let wanted = match tool_choice {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) if s == "auto" || s == "none" => return Ok(None),
        Some(Value::String(s)) if s == "required" || s == "any" => None,
        Some(Value::Object(o)) => match o.get("type").and_then(Value::as_str) {
            Some("auto" | "none") => return Ok(None),
            Some("any") => None,
            Some("function") => Some(
                o.get("function")
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| refusal("'tool_choice.function.name' must be a string"))?,
            ),
            Some("tool") => Some(
                o.get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| refusal("'tool_choice.name' must be a string"))?,
            ),
            _ => return Err(refusal("'tool_choice' has an unknown type")),
        },
        Some(_) => {
            return Err(refusal(
                "'tool_choice' must be \"auto\", \"none\", \"required\" or a named function",
            ))
        }
    };
    let found = tools.iter().find_map(|t| {
        let (name, schema) = name_and_schema(t)?;
        wanted.is_none_or(|w| w == name).then_some((name, schema))
    });
    let Some((name, schema)) = found else {
        return Err(refusal(&match wanted {
            Some(w) => format!("'tool_choice' names the function '{w}', which is not in 'tools'"),
            None => "'tool_choice' requires a tool call but 'tools' is empty".to_string(),
        }));
    };
    let arguments = placeholder(schema.unwrap_or(&Value::Null), 0);
    let arguments = match arguments {
        Value::Object(_) => arguments,
        _ => Value::Object(Map::new()),
    };
    Ok(Some(ToolCall {
        id: format!(
            "call_{:016x}",
            seed ^ super::mock_answer::fnv1a(name.as_bytes())
        ),
        name: name.to_string(),
        arguments: arguments.to_string(),
    }))
}

fn refusal(message: &str) -> MockRefusal {
    MockRefusal::new(message, "tool_choice")
}

/// A tool's name and parameters schema: OpenAI `{"type":"function","function":{name,
/// parameters}}` or Anthropic `{name, input_schema}`.
fn name_and_schema(tool: &Value) -> Option<(&str, Option<&Value>)> {
    if let Some(f) = tool.get("function") {
        return Some((f.get("name")?.as_str()?, f.get("parameters")));
    }
    Some((tool.get("name")?.as_str()?, tool.get("input_schema")))
}

/// A value satisfying `schema` as far as a placeholder can: enums and consts their first value,
/// objects their required properties, arrays their minimum length, numbers their minimum.
fn placeholder(schema: &Value, depth: usize) -> Value {
    if depth > 8 {
        return Value::Null;
    }
    if let Some(c) = schema.get("const") {
        return c.clone();
    }
    if let Some(first) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(first) = schema
            .get(key)
            .and_then(Value::as_array)
            .and_then(|e| e.first())
        {
            return placeholder(first, depth + 1);
        }
    }
    let ty = match schema.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if schema.get("properties").is_some() => "object",
        _ => "object",
    };
    let minimum = schema.get("minimum").and_then(Value::as_f64);
    match ty {
        "string" => Value::String("placeholder".into()),
        "integer" => Value::from(minimum.map_or(1, |m| m.ceil() as i64)),
        "number" => Value::from(minimum.unwrap_or(1.0)),
        "boolean" => Value::Bool(false),
        "null" => Value::Null,
        "array" => {
            let n = schema.get("minItems").and_then(Value::as_u64).unwrap_or(0) as usize;
            let item = schema.get("items").unwrap_or(&Value::Null);
            Value::Array(
                (0..n.min(16))
                    .map(|_| placeholder(item, depth + 1))
                    .collect(),
            )
        }
        _ => {
            let mut out = Map::new();
            let props = schema.get("properties");
            for name in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                let sub = props.and_then(|p| p.get(name)).unwrap_or(&Value::Null);
                out.insert(name.to_string(), placeholder(sub, depth + 1));
            }
            Value::Object(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tools() -> Vec<Value> {
        vec![
            json!({"type": "function", "function": {"name": "first"}}),
            json!({"type": "function", "function": {"name": "get_weather", "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "unit": {"enum": ["c", "f"]},
                    "days": {"type": ["integer", "null"], "minimum": 3},
                    "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
                    "nested": {"type": "object", "properties": {"on": {"type": "boolean"}},
                               "required": ["on"]},
                    "optional": {"type": "string"}
                },
                "required": ["city", "unit", "days", "tags", "nested"]
            }}}),
        ]
    }

    #[test]
    fn a_named_function_gets_arguments_for_its_required_properties() {
        let choice = json!({"type": "function", "function": {"name": "get_weather"}});
        let call = forced_call(Some(&tools()), Some(&choice), 7)
            .unwrap()
            .unwrap();
        assert_eq!(call.name, "get_weather");
        let args: Value = serde_json::from_str(&call.arguments).unwrap();
        assert_eq!(
            args,
            json!({"city": "placeholder", "unit": "c", "days": 3,
                   "tags": ["placeholder", "placeholder"], "nested": {"on": false}})
        );
        let again = forced_call(Some(&tools()), Some(&choice), 7)
            .unwrap()
            .unwrap();
        assert_eq!(call, again);
    }

    #[test]
    fn required_and_any_call_the_first_tool_and_auto_calls_none() {
        for choice in [json!("required"), json!({"type": "any"})] {
            let call = forced_call(Some(&tools()), Some(&choice), 1)
                .unwrap()
                .unwrap();
            assert_eq!(
                (call.name.as_str(), call.arguments.as_str()),
                ("first", "{}")
            );
        }
        assert_eq!(
            forced_call(Some(&tools()), Some(&json!("auto")), 1).unwrap(),
            None
        );
        assert_eq!(forced_call(Some(&tools()), None, 1).unwrap(), None);
        let anthropic = [json!({"name": "lookup", "input_schema": {"type": "object",
            "properties": {"q": {"type": "string"}}, "required": ["q"]}})];
        let call = forced_call(
            Some(&anthropic),
            Some(&json!({"type": "tool", "name": "lookup"})),
            1,
        )
        .unwrap()
        .unwrap();
        assert_eq!(call.arguments, r#"{"q":"placeholder"}"#);
    }

    #[test]
    fn impossible_choices_are_refused_naming_tool_choice() {
        let e = forced_call(None, Some(&json!("required")), 1).unwrap_err();
        assert_eq!(e.param, Some("tool_choice"));
        let e = forced_call(
            Some(&tools()),
            Some(&json!({"type": "function", "function": {"name": "nope"}})),
            1,
        )
        .unwrap_err();
        assert!(e.message.contains("'nope'"), "{}", e.message);
        assert!(forced_call(Some(&tools()), Some(&json!(3)), 1).is_err());
    }
}
