//! `GET /v1/models` and `GET /v1/models/{id}`: the public models (and aliases) a caller may use,
//! in OpenAI's shape, or in Anthropic's when the caller sends `anthropic-version` (as the
//! Anthropic SDKs do). Answered from the snapshot's routing state; owns nothing else. The list
//! for callers who may use every model is rendered once per config (`State::models_body`).

use crate::clock::rfc3339;
use crate::errors::GatewayError;
use crate::routing::state::State;
use bytes::Bytes;
use serde_json::{json, Value};
use switchyard_adapters::providers::Caller;
use switchyard_filters::auth::Identity;

/// The ids a caller may see: every public name and alias of the models it may use, in config
/// order.
fn visible_ids<'s>(
    state: &'s State,
    who: Option<&'s Identity>,
) -> impl Iterator<Item = &'s String> + 's {
    state
        .config
        .models
        .iter()
        .filter(move |m| who.is_none_or(|w| w.may_use(&m.name)))
        .flat_map(|m| std::iter::once(&m.name).chain(m.aliases.iter()))
}

/// One model object in the caller's shape.
fn model_object(id: &str, created: u64, caller: Caller) -> Value {
    match caller {
        Caller::OpenAi | Caller::OpenAiCompletions | Caller::OpenAiResponses => {
            json!({"id": id, "object": "model", "created": created, "owned_by": "switchyard"})
        }
        Caller::Anthropic => json!({
            "type": "model", "id": id, "display_name": id, "created_at": rfc3339(created),
        }),
    }
}

/// `GET /v1/models`.
pub fn list(state: &State, who: Option<&Identity>, caller: Caller) -> Bytes {
    let unrestricted = who.is_none_or(|w| w.models.is_none());
    if unrestricted && caller == Caller::OpenAi {
        return state.models_body.clone();
    }
    let created = state.models_created;
    let ids: Vec<&String> = visible_ids(state, who).collect();
    let data: Vec<Value> = ids
        .iter()
        .map(|id| model_object(id, created, caller))
        .collect();
    let body = match caller {
        Caller::OpenAi | Caller::OpenAiCompletions | Caller::OpenAiResponses => {
            json!({"object": "list", "data": data})
        }
        Caller::Anthropic => json!({
            "data": data,
            "has_more": false,
            "first_id": ids.first(),
            "last_id": ids.last(),
        }),
    };
    Bytes::from(body.to_string())
}

/// `GET /v1/models/{id}`: the model object, or 404 when it does not exist or the caller may not
/// use it (the same answer, so a caller cannot probe for models outside its list).
pub fn one(
    state: &State,
    who: Option<&Identity>,
    caller: Caller,
    path: &str,
) -> Result<Bytes, GatewayError> {
    let raw = path.strip_prefix("/v1/models/").unwrap_or_default();
    let id = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
    match visible_ids(state, who).find(|known| **known == id) {
        Some(known) => Ok(Bytes::from(
            model_object(known, state.models_created, caller).to_string(),
        )),
        None => Err(GatewayError::ModelNotFound(id.into_owned())),
    }
}
