//! Stored Responses API conversations: who owns a stored response, expanding
//! `previous_response_id` into the new request's input (so any deployment, of any provider,
//! continues the conversation), saving each finished response off the request path, and the
//! read / list / delete endpoints' answers.
//!
//! It owns the conversation state only; the wire format is `switchyard_adapters::openai::
//! responses`, forwarding is [`crate::forward`]. The SQLite table is [`store`].

pub mod store;

use crate::clock::unix_ms;
use crate::errors::GatewayError;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::{ResponseStore, StoreError, StoredResponse};
use switchyard_adapters::openai::responses::{request as rq, Turn};
use switchyard_filters::auth::Identity;

/// Who a stored response belongs to: the caller's team, else its key (or token subject), else
/// everyone (no authentication).
pub fn owner(identity: Option<&Identity>) -> String {
    match identity {
        Some(Identity {
            team: Some(team), ..
        }) => format!("team:{team}"),
        Some(who) => format!("caller:{}", who.name),
        None => "shared".to_string(),
    }
}

/// A create request, ready to forward.
pub struct CreateTurn {
    /// The body to forward: the caller's bytes, or with the stored history expanded into `input`.
    pub body: Bytes,
    pub turn: Arc<Turn>,
    /// The input items of this turn (the history first), as stored.
    pub input: Vec<Value>,
    /// `store` (default true).
    pub store: bool,
    /// `max_output_tokens`: what admission reserves for.
    pub max_output_tokens: Option<u64>,
}

/// The responses store and the writes still in flight to it.
pub struct Conversations {
    store: Arc<ResponseStore>,
    /// Finished responses whose row is not committed yet, so that an immediate next turn finds
    /// them.
    pending: Mutex<HashMap<String, Arc<StoredResponse>>>,
}

fn store_failed(e: StoreError) -> GatewayError {
    log::error!("{e}");
    GatewayError::ResponseStore(e.to_string())
}

fn bad_request(e: switchyard_adapters::canonical::TranslateError) -> GatewayError {
    GatewayError::Untranslatable(e)
}

/// Gives every item an `id` (input items may come without).
fn with_ids(items: &mut [Value], seed: &str) {
    for (i, item) in items.iter_mut().enumerate() {
        if let Some(o) = item.as_object_mut() {
            if !o.get("id").is_some_and(Value::is_string) {
                let prefix = match o.get("type").and_then(Value::as_str) {
                    Some("function_call_output") => "fco",
                    Some("function_call") => "fc",
                    _ => "msg",
                };
                o.insert("id".into(), json!(format!("{prefix}_{seed}_in{i}")));
            }
        }
    }
}

impl Conversations {
    pub fn open(path: Option<&Path>) -> Result<Conversations, StoreError> {
        Ok(Conversations {
            store: Arc::new(ResponseStore::open(path)?),
            pending: Mutex::new(HashMap::new()),
        })
    }

    /// Stored responses in the fleet's PostgreSQL (`store.kind: postgres`).
    pub fn postgres(pg: Arc<crate::store::Pg>) -> Result<Conversations, StoreError> {
        Ok(Conversations {
            store: Arc::new(ResponseStore::postgres(pg)?),
            pending: Mutex::new(HashMap::new()),
        })
    }

    fn pending(&self, id: &str, owner: &str) -> Option<Arc<StoredResponse>> {
        let map = self.pending.lock().ok()?;
        map.get(id).filter(|r| r.owner == owner).cloned()
    }

    /// The caller's unexpired stored response `id`.
    pub async fn lookup(
        &self,
        id: &str,
        owner: &str,
    ) -> Result<Option<Arc<StoredResponse>>, GatewayError> {
        if let Some(r) = self.pending(id, owner) {
            return Ok(Some(r));
        }
        // A response is written just after its answer left: in a fleet, a follow-up that lands
        // on another replica at once may come before the write, so a miss there is asked again.
        let waits: &[u64] = if self.store.is_shared() {
            &[0, 50, 200]
        } else {
            &[0]
        };
        for wait in waits {
            tokio::time::sleep(Duration::from_millis(*wait)).await;
            let (store, id, owner) = (self.store.clone(), id.to_string(), owner.to_string());
            let found = tokio::task::spawn_blocking(move || store.get(&id, &owner, unix_ms()))
                .await
                .map_err(|e| GatewayError::ResponseStore(e.to_string()))?
                .map_err(store_failed)?;
            if let Some(r) = found {
                return Ok(Some(Arc::new(r)));
            }
        }
        Ok(None)
    }

    /// Reads a create request: its echo fields, and `previous_response_id` expanded into `input`.
    /// An id the caller has no stored response for is a 404 whatever the model's deployments:
    /// an id the gateway did not store for this caller never reaches a provider (a native
    /// provider might know another tenant's id under the gateway's own key). A stored one is
    /// expanded for native deployments too, so the next turn may run on any deployment.
    pub async fn prepare(
        &self,
        body: Bytes,
        owner: &str,
        request_id: &str,
    ) -> Result<CreateTurn, GatewayError> {
        let mut obj = rq::parse_object(&body).map_err(bad_request)?;
        let turn = Turn::new(rq::echo_fields(&obj));
        let store = obj.get("store").and_then(Value::as_bool).unwrap_or(true);
        let max_output_tokens = obj.get("max_output_tokens").and_then(Value::as_u64);
        let mut input = rq::input_items(&obj).map_err(bad_request)?;
        let previous = match obj.get("previous_response_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) => Some(id.clone()),
            Some(_) => {
                return Err(bad_request(
                    switchyard_adapters::canonical::TranslateError::invalid(
                        "`previous_response_id` must be a string",
                        Some("previous_response_id".into()),
                    ),
                ))
            }
        };
        with_ids(&mut input, request_id);
        let prev = match &previous {
            Some(id) => self.lookup(id, owner).await?,
            None => None,
        };
        let (body, input) = match (prev, previous) {
            (Some(prev), _) => {
                let mut items = prev.history();
                items.append(&mut input);
                obj.remove("previous_response_id");
                obj.insert("input".into(), Value::Array(items.clone()));
                let body = serde_json::to_vec(&Value::Object(obj))
                    .map(Bytes::from)
                    .map_err(|e| GatewayError::ResponseStore(e.to_string()))?;
                (body, items)
            }
            (None, Some(id)) => {
                return Err(GatewayError::PreviousResponseNotFound(id));
            }
            // No history: the caller's bytes as they are.
            (None, None) => (body, input),
        };
        Ok(CreateTurn {
            body,
            turn,
            input,
            store,
            max_output_tokens,
        })
    }

    /// Stores the finished response of `turn` (when it finished and `store` is on) without
    /// waiting for the write.
    pub fn save(self: &Arc<Self>, turn: CreateTurn, owner: String, ttl: Duration) {
        if !turn.store {
            return;
        }
        let Some(response) = turn.turn.take_finished() else {
            return;
        };
        let Some(id) = response
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            return;
        };
        let now = unix_ms();
        let rec = Arc::new(StoredResponse {
            id: id.clone(),
            owner,
            created_ms: now,
            expires_ms: now.saturating_add(ttl.as_millis() as u64),
            input: turn.input,
            response,
        });
        if let Ok(mut p) = self.pending.lock() {
            p.insert(id.clone(), rec.clone());
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = this.store.put(&rec) {
                log::error!("response {id} was not stored: {e}");
            }
            if let Ok(mut p) = this.pending.lock() {
                p.remove(&id);
            }
        });
    }

    /// `GET /v1/responses/{id}`.
    pub async fn retrieve(&self, id: &str, owner: &str) -> Result<Value, GatewayError> {
        match self.lookup(id, owner).await? {
            Some(r) => Ok(r.response.clone()),
            None => Err(GatewayError::ResponseNotFound(id.to_string())),
        }
    }

    /// `DELETE /v1/responses/{id}`.
    pub async fn delete(&self, id: &str, owner: &str) -> Result<Value, GatewayError> {
        let pending = self
            .pending
            .lock()
            .ok()
            .and_then(|mut p| p.remove(id).filter(|r| r.owner == owner));
        let (store, key, who) = (self.store.clone(), id.to_string(), owner.to_string());
        let deleted = tokio::task::spawn_blocking(move || store.delete(&key, &who, unix_ms()))
            .await
            .map_err(|e| GatewayError::ResponseStore(e.to_string()))?
            .map_err(store_failed)?;
        if deleted || pending.is_some() {
            Ok(json!({"id": id, "object": "response", "deleted": true}))
        } else {
            Err(GatewayError::ResponseNotFound(id.to_string()))
        }
    }

    /// `GET /v1/responses/{id}/input_items` with its query string.
    pub async fn input_items(
        &self,
        id: &str,
        owner: &str,
        query: Option<&str>,
    ) -> Result<Value, GatewayError> {
        let Some(r) = self.lookup(id, owner).await? else {
            return Err(GatewayError::ResponseNotFound(id.to_string()));
        };
        list_page(&r.input, &ListQuery::parse(query)?)
    }
}

/// `order`, `limit` and `after` of a list request.
#[derive(Debug, PartialEq)]
pub struct ListQuery {
    pub ascending: bool,
    pub limit: usize,
    pub after: Option<String>,
}

fn invalid_param(message: &str, param: &str) -> GatewayError {
    bad_request(switchyard_adapters::canonical::TranslateError::invalid(
        message,
        Some(param.to_string()),
    ))
}

impl ListQuery {
    pub fn parse(query: Option<&str>) -> Result<ListQuery, GatewayError> {
        let mut q = ListQuery {
            ascending: false,
            limit: 20,
            after: None,
        };
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "order" => {
                    q.ascending = match v {
                        "asc" => true,
                        "desc" => false,
                        _ => return Err(invalid_param("`order` must be asc or desc", "order")),
                    }
                }
                "limit" => {
                    q.limit = v
                        .parse()
                        .ok()
                        .filter(|n| (1..=100).contains(n))
                        .ok_or_else(|| {
                            invalid_param("`limit` must be an integer from 1 to 100", "limit")
                        })?
                }
                "after" => q.after = Some(v.to_string()),
                _ => {}
            }
        }
        Ok(q)
    }
}

/// One page of `items` as an OpenAI list.
pub fn list_page(items: &[Value], q: &ListQuery) -> Result<Value, GatewayError> {
    let ordered: Vec<&Value> = if q.ascending {
        items.iter().collect()
    } else {
        items.iter().rev().collect()
    };
    let start = match &q.after {
        None => 0,
        Some(after) => {
            ordered
                .iter()
                .position(|i| i.get("id").and_then(Value::as_str) == Some(after.as_str()))
                .ok_or_else(|| invalid_param("`after` names no item of this response", "after"))?
                + 1
        }
    };
    let page: Vec<Value> = ordered
        .iter()
        .skip(start)
        .take(q.limit)
        .map(|v| (*v).clone())
        .collect();
    let id_of = |v: Option<&Value>| v.and_then(|i| i.get("id")).cloned().unwrap_or(Value::Null);
    let mut out = Map::new();
    out.insert("object".into(), json!("list"));
    out.insert("first_id".into(), id_of(page.first()));
    out.insert("last_id".into(), id_of(page.last()));
    out.insert("has_more".into(), json!(start + page.len() < ordered.len()));
    out.insert("data".into(), Value::Array(page));
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(n: usize) -> Vec<Value> {
        (0..n).map(|i| json!({"id": format!("i{i}")})).collect()
    }

    #[test]
    fn lists_are_newest_first_and_page_with_after() {
        let all = items(5);
        let q = ListQuery::parse(Some("limit=2")).unwrap();
        let p = list_page(&all, &q).unwrap();
        assert_eq!(p["data"], json!([{"id": "i4"}, {"id": "i3"}]));
        assert_eq!(
            (p["first_id"].clone(), p["last_id"].clone()),
            (json!("i4"), json!("i3"))
        );
        assert_eq!(p["has_more"], true);
        let q = ListQuery::parse(Some("order=asc&after=i2&limit=5")).unwrap();
        let p = list_page(&all, &q).unwrap();
        assert_eq!(p["data"], json!([{"id": "i3"}, {"id": "i4"}]));
        assert_eq!(p["has_more"], false);
        assert!(ListQuery::parse(Some("limit=0")).is_err());
        assert!(ListQuery::parse(Some("order=up")).is_err());
    }
}
