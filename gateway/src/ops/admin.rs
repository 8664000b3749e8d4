//! The admin listener (`server.admin_listen`): `GET /metrics` (Prometheus text format) and the key
//! administration API under `/admin/` (documented in `docs/admin-api.md`), authenticated with
//! `server.admin_token`. It never shares a port with the inference API. Every admin action and
//! every refused admin call goes to the audit log, without secrets. The status page's routes
//! (`/`, `/login`, ...) are delegated to [`crate::ops::status_page`].

use crate::clock::{rfc3339, LAST_RFC3339_SECOND};
use crate::identity::{AdminError, Auth, NewKey};
use crate::ops::telemetry::Metrics;
use async_trait::async_trait;
use http::Response;
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use switchyard_filters::auth::keys::{hash_key, KeyRecord};

const MAX_ADMIN_BODY: usize = 64 * 1024;

pub struct AdminApp {
    pub metrics: Arc<Metrics>,
    pub auth: Arc<Auth>,
    pub live: Arc<crate::snapshot::Live>,
    pub spend: Arc<crate::governance::Spend>,
    /// The status page's login sessions.
    pub sessions: crate::ops::status_page::Sessions,
}

fn respond(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len())
        .header("cache-control", "no-store")
        .body(body)
        .unwrap_or_else(|_| Response::new(Vec::new()))
}

fn json_response(status: u16, v: &Value) -> Response<Vec<u8>> {
    respond(
        status,
        "application/json",
        serde_json::to_vec(v).unwrap_or_default(),
    )
}

fn error(status: u16, message: &str, code: &str) -> Response<Vec<u8>> {
    let error_type = match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        409 => "conflict_error",
        _ => "invalid_request_error",
    };
    let body = switchyard_adapters::openai::error_body(message, error_type, None, Some(code));
    respond(status, "application/json", body.to_vec())
}

fn admin_error(e: &AdminError) -> Response<Vec<u8>> {
    match e {
        AdminError::Invalid(m) => error(400, m, "invalid_request"),
        AdminError::NotFound(_) => error(404, &e.to_string(), "key_not_found"),
        AdminError::Conflict(m) => error(409, m, "conflict"),
        AdminError::Store(_) | AdminError::Random => {
            log::error!("admin: {e}");
            error(
                500,
                "the key store failed; see the gateway log",
                "store_error",
            )
        }
    }
}

/// The credential of an `Authorization: Bearer` header.
pub(crate) fn bearer(session: &ServerSession) -> Option<&str> {
    session
        .req_header()
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

/// A key's policy as the admin API shows it (never the secret), with a runtime key's limits
/// and budget from `policies`.
fn key_json(k: &KeyRecord, policies: &crate::identity::policy::KeyPolicies) -> Value {
    let policy = policies.iter().find(|(n, _)| *n == k.name).map(|(_, p)| p);
    json!({
        "limits": policy.and_then(|p| p.limits.as_ref()),
        "budget": policy.and_then(|p| p.budget.as_ref()),
        "name": k.name,
        "team": k.team,
        "project": k.project,
        "models": k.models,
        "expires": k.expires_unix.map(rfc3339),
        "ip_allow": k.ip_allow.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        "metadata": k.metadata,
        "revoked": k.revoked,
        "source": k.source.label(),
        "read_only": k.source == switchyard_filters::auth::keys::KeySource::Config,
        "created": (k.created_unix > 0).then(|| rfc3339(k.created_unix)),
    })
}

pub(crate) async fn read_body(session: &mut ServerSession) -> Result<Vec<u8>, Response<Vec<u8>>> {
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_ADMIN_BODY {
                    return Err(error(413, "request body too large", "request_too_large"));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(_) => {
                return Err(error(
                    400,
                    "could not read the request body",
                    "body_read_error",
                ))
            }
        }
    }
}

fn group(keys: &[KeyRecord], by: impl Fn(&KeyRecord) -> Option<&String>, label: &str) -> Value {
    let mut counts: std::collections::BTreeMap<&str, (usize, usize)> = Default::default();
    for k in keys {
        if let Some(g) = by(k) {
            let e = counts.entry(g.as_str()).or_default();
            e.0 += 1;
            if !k.revoked {
                e.1 += 1;
            }
        }
    }
    let list: Vec<Value> = counts
        .into_iter()
        .map(|(name, (keys, active))| json!({"name": name, "keys": keys, "active_keys": active}))
        .collect();
    json!({ label: list })
}

/// Rebuilds governance with the runtime keys' limits and budgets as `auth` has them now (after a
/// key was created or revoked here, or on another replica of a fleet).
pub fn republish_key_policies(
    live: &crate::snapshot::Live,
    spend: &crate::governance::Spend,
    auth: &Auth,
) {
    let keys = auth.key_policies();
    live.republish(|old| crate::snapshot::Parts {
        state: old.state.clone(),
        auth: old.auth.clone(),
        governance: Arc::new(spend.governance_for(
            crate::governance::Sources {
                cfg: &old.state.config,
                keys: &keys,
            },
            Some(&old.governance),
        )),
    });
}

impl AdminApp {
    /// Rebuilds governance with the runtime keys' limits and budgets after a key was created
    /// or revoked (the config file and its generation stay as they are; accounts carry over).
    fn refresh_key_policies(&self) {
        republish_key_policies(&self.live, &self.spend, &self.auth);
    }

    pub(crate) fn audit(
        &self,
        actor: &str,
        action: &str,
        target: Option<&str>,
        client: Option<String>,
        outcome: &str,
    ) {
        self.auth.audit.log(&json!({
            "ts": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            "event": "admin",
            "action": action,
            "target": target,
            "actor": actor,
            "client": client,
            "outcome": outcome,
        }));
        self.auth.audit_to_store(crate::store::audit::Entry {
            actor: actor.to_string(),
            action: action.to_string(),
            target: target.map(str::to_string),
            client,
            outcome: outcome.to_string(),
        });
    }

    /// Who is calling the admin API: `Ok(actor)` for the audit log, or the refusal to send (404
    /// when the admin API is off, 429 for an address that sent too many wrong credentials, 401).
    async fn admin_caller(
        &self,
        session: &ServerSession,
        state: &crate::routing::state::State,
        method: &str,
        path: &str,
    ) -> Result<String, Response<Vec<u8>>> {
        let client = session.client_addr().map(|a| a.to_string());
        let client_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let token = state.config.server.admin_token.as_ref();
        let oauth_admin = self
            .auth
            .view()
            .settings
            .as_ref()
            .is_some_and(|s| s.oauth.is_some());
        if token.is_none() && !oauth_admin {
            return Err(error(
                404,
                "the admin API is disabled: set server.admin_token",
                "admin_disabled",
            ));
        }
        let refuse = |outcome: &str| {
            self.audit(
                "unknown",
                &format!("{method} {path}"),
                None,
                client.clone(),
                outcome,
            );
        };
        if self.auth.admin_locked_out(client_ip) {
            refuse("too_many_failures");
            return Err(error(
                429,
                "too many failed credentials from this address; retry in a minute",
                "too_many_auth_failures",
            ));
        }
        // The status page's session cookie reads (never changes) what the page draws.
        if let (true, Some(t)) = (method == "GET", token) {
            let now = crate::clock::unix_secs();
            let cookie = crate::ops::status_page::cookie(session, crate::ops::status_page::COOKIE);
            if cookie.is_some_and(|c| self.sessions.valid(c, t.expose(), now)) {
                return Ok("status_page_session".to_string());
            }
        }
        let presented = bearer(session);
        // Compare digests, so the comparison time says nothing about the token.
        if let (Some(p), Some(t)) = (presented, token) {
            if hash_key(p) == hash_key(t.expose()) {
                return Ok("admin_token".to_string());
            }
        }
        let jwt = match presented {
            Some(p) if oauth_admin && p.split('.').count() == 3 => {
                self.auth.verify_admin_token(p).await.ok()
            }
            _ => None,
        };
        match jwt {
            Some(name) => Ok(format!("token:{name}")),
            None => {
                if presented.is_some() {
                    self.auth.admin_failed(client_ip);
                }
                refuse("unauthorized");
                Err(error(
                    401,
                    "missing or invalid admin token",
                    "invalid_admin_token",
                ))
            }
        }
    }

    async fn admin(
        &self,
        session: &mut ServerSession,
        method: &str,
        path: &str,
    ) -> Response<Vec<u8>> {
        let client = session.client_addr().map(|a| a.to_string());
        let state = self.live.load().state.clone();
        let actor = match self.admin_caller(session, &state, method, path).await {
            Ok(actor) => actor,
            Err(refusal) => return refusal,
        };
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(2).collect();
        let known_models: Vec<String> =
            state.config.models.iter().map(|m| m.name.clone()).collect();
        match (method, segments.as_slice()) {
            ("GET", ["usage"]) => self.usage(session.req_header().uri.query().unwrap_or("")),
            ("GET", ["budgets"]) => self.budgets().await,
            ("GET", ["routing"]) => {
                json_response(200, &crate::routing::reputation::admin_view(&state))
            }
            ("GET", ["status"]) => json_response(200, &self.status_json().await),
            ("GET", ["health"]) => {
                let (status, body) = crate::proxy::control::health_body(
                    &self.live.load(),
                    crate::proxy::control::HealthView::Full,
                );
                respond(status, "application/json", body.to_vec())
            }
            (_, ["usage"] | ["budgets"] | ["health"] | ["status"]) => error(
                405,
                &format!("method {method} is not allowed on {path}"),
                "method_not_allowed",
            ),
            ("GET", ["keys"]) => match self.auth.list() {
                Ok(keys) => json_response(
                    200,
                    &json!({"keys": keys
                        .iter()
                        .map(|k| key_json(k, &self.auth.key_policies()))
                        .collect::<Vec<_>>()}),
                ),
                Err(e) => admin_error(&e),
            },
            ("POST", ["keys"]) => {
                let body = match read_body(session).await {
                    Ok(b) => b,
                    Err(r) => return r,
                };
                let req: NewKey = match serde_json::from_slice(&body) {
                    Ok(r) => r,
                    Err(e) => return error(400, &format!("invalid JSON: {e}"), "invalid_json"),
                };
                let name = req.name.clone();
                match self.auth.create(req, &known_models) {
                    Ok((secret, rec)) => {
                        self.audit(&actor, "create_key", Some(&name), client, "ok");
                        self.refresh_key_policies();
                        let mut v = key_json(&rec, &self.auth.key_policies());
                        v["key"] = Value::from(secret);
                        v["persistent"] = Value::from(self.auth.store_is_persistent());
                        json_response(201, &v)
                    }
                    Err(e) => {
                        self.audit(&actor, "create_key", Some(&name), client, "error");
                        admin_error(&e)
                    }
                }
            }
            ("GET", ["keys", name]) => match self.auth.get(name) {
                Ok(k) => json_response(200, &key_json(&k, &self.auth.key_policies())),
                Err(e) => admin_error(&e),
            },
            ("DELETE", ["keys", name]) => match self.auth.revoke(name) {
                Ok(()) => {
                    self.audit(&actor, "revoke_key", Some(name), client, "ok");
                    self.refresh_key_policies();
                    json_response(200, &json!({"name": name, "revoked": true}))
                }
                Err(e) => {
                    self.audit(&actor, "revoke_key", Some(name), client, "error");
                    admin_error(&e)
                }
            },
            ("POST", ["keys", name, "rotate"]) => {
                let body = match read_body(session).await {
                    Ok(b) => b,
                    Err(r) => return r,
                };
                let grace = rotation_grace(&body);
                let grace = match grace {
                    Ok(g) => g,
                    Err(m) => return error(400, &m, "invalid_request"),
                };
                match self.auth.rotate(name, grace) {
                    Ok((secret, until)) => {
                        self.audit(&actor, "rotate_key", Some(name), client, "ok");
                        json_response(
                            200,
                            &json!({
                                "name": name,
                                "key": secret,
                                "previous_key_valid_until": rfc3339(until),
                            }),
                        )
                    }
                    Err(e) => {
                        self.audit(&actor, "rotate_key", Some(name), client, "error");
                        admin_error(&e)
                    }
                }
            }
            ("GET", ["teams"]) => match self.auth.list() {
                Ok(keys) => json_response(200, &group(&keys, |k| k.team.as_ref(), "teams")),
                Err(e) => admin_error(&e),
            },
            ("GET", ["projects"]) => match self.auth.list() {
                Ok(keys) => json_response(200, &group(&keys, |k| k.project.as_ref(), "projects")),
                Err(e) => admin_error(&e),
            },
            (_, ["keys"] | ["keys", _] | ["keys", _, "rotate"] | ["teams"] | ["projects"]) => {
                error(
                    405,
                    &format!("method {method} is not allowed on {path}"),
                    "method_not_allowed",
                )
            }
            _ => error(
                404,
                &format!("Invalid URL ({method} {path})"),
                "unknown_url",
            ),
        }
    }
}

/// The `grace` of a rotation request body (`{"grace": "1h"}`; an hour when absent), at most
/// [`MAX_GRACE`].
fn rotation_grace(body: &[u8]) -> Result<Duration, String> {
    const DEFAULT: Duration = Duration::from_secs(3600);
    if body.is_empty() {
        return Ok(DEFAULT);
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let Some(g) = v.get("grace").and_then(Value::as_str) else {
        return Ok(DEFAULT);
    };
    let d = humantime::parse_duration(g).map_err(|e| format!("grace: {e}"))?;
    if d > MAX_GRACE {
        return Err(format!(
            "grace: `{g}` is longer than the most allowed ({})",
            humantime::format_duration(MAX_GRACE)
        ));
    }
    Ok(d)
}

/// Parses a `from`/`to` bound: RFC 3339, a date (`2026-11-01`), or Unix seconds.
fn parse_instant(s: &str) -> Option<i64> {
    let s = s.trim();
    let secs = match s.parse::<i64>() {
        Ok(n) => n,
        Err(_) => {
            let t = humantime::parse_rfc3339_weak(s)
                .or_else(|_| humantime::parse_rfc3339_weak(&format!("{s}T00:00:00Z")))
                .ok()?;
            t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() as i64
        }
    };
    // Only instants RFC 3339 can write back (1970 to 9999) are accepted.
    (0..=LAST_RFC3339_SECOND as i64)
        .contains(&secs)
        .then_some(secs)
}

/// The longest grace a rotated-out secret keeps working.
const MAX_GRACE: Duration = Duration::from_secs(365 * 86_400);

impl AdminApp {
    /// `GET /admin/usage?from=&to=&group_by=`: totals from the spend ledger, and a forecast of
    /// the current month.
    fn usage(&self, query: &str) -> Response<Vec<u8>> {
        use crate::governance::ledger::GroupBy;
        let mut from = None;
        let mut to = None;
        let mut group_by = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = v
                .replace("%3A", ":")
                .replace("%3a", ":")
                .replace("%2B", "+");
            match k {
                "from" => match parse_instant(&v) {
                    Some(t) => from = Some(t),
                    None => return error(400, &format!("invalid `from`: `{v}` (RFC 3339, a date or Unix seconds)"), "invalid_request"),
                },
                "to" => match parse_instant(&v) {
                    Some(t) => to = Some(t),
                    None => return error(400, &format!("invalid `to`: `{v}` (RFC 3339, a date or Unix seconds)"), "invalid_request"),
                },
                "group_by" => match GroupBy::parse(&v) {
                    Some(g) => group_by = Some(g),
                    None => return error(400, &format!("invalid `group_by`: `{v}` (key, team, project, model, provider, deployment, endpoint or tag)"), "invalid_request"),
                },
                other => return error(400, &format!("unknown parameter `{other}`"), "invalid_request"),
            }
        }
        let now = crate::clock::unix_secs_i64();
        let (month_start, month_end) = switchyard_filters::budget::Period::Monthly.window(now);
        let month_end = month_end.unwrap_or(now);
        let from = from.unwrap_or(month_start);
        let to = to.unwrap_or(now + 1);
        let Some(ledger) = &self.spend.ledger else {
            return error(
                404,
                "no spend ledger: set `store.path` (kind sqlite, or a local file with kind redis)",
                "ledger_disabled",
            );
        };
        let totals = match ledger.usage(from * 1000, to * 1000, group_by) {
            Ok(t) => t,
            Err(e) => return error(500, &e.to_string(), "ledger_unavailable"),
        };
        let month = ledger
            .usage(month_start * 1000, (now + 1) * 1000, None)
            .ok()
            .and_then(|v| v.into_iter().next());
        let month_so_far = month.map(|m| m.cost_nanos).unwrap_or(0);
        let elapsed = (now - month_start).max(1) as f64;
        let span = (month_end - month_start).max(1) as f64;
        let usd = switchyard_filters::budget::nanos_to_usd;
        let rows: Vec<Value> = totals
            .iter()
            .map(|t| {
                json!({
                    "group": t.group,
                    "requests": t.requests,
                    "prompt_tokens": t.tokens_in,
                    "completion_tokens": t.tokens_out,
                    "cost_usd": usd(t.cost_nanos),
                })
            })
            .collect();
        json_response(
            200,
            &json!({
                "from": rfc3339(from.max(0) as u64),
                "to": rfc3339(to.max(0) as u64),
                "group_by": query.split('&').find_map(|p| p.strip_prefix("group_by=")),
                "totals": rows,
                "forecast": {
                    "month_to_date_usd": usd(month_so_far),
                    "projected_month_usd": usd(month_so_far) * span / elapsed,
                },
            }),
        )
    }

    /// `GET /admin/budgets`: every budget's limit, spend, reservations and state.
    async fn budgets(&self) -> Response<Vec<u8>> {
        json_response(200, &json!({ "budgets": self.budget_list().await }))
    }

    /// Every budget's limit, spend, reservations and state (`/admin/budgets`, `/admin/status`).
    pub(crate) async fn budget_list(&self) -> Vec<Value> {
        let now = crate::clock::unix_secs_i64();
        let usd = switchyard_filters::budget::nanos_to_usd;
        let gov = self.live.load().governance.clone();
        let mut list: Vec<Value> = Vec::with_capacity(gov.budgets.len());
        for b in &gov.budgets {
            let a = &b.account;
            let (spent, committed) = b.totals(self.spend.shared.as_ref()).await;
            list.push(json!({
                "scope": b.settings.scope.to_string(),
                "period": b.settings.period.name(),
                "limit_usd": b.settings.limit_usd,
                "spent_usd": usd(spent),
                "reserved_usd": usd(committed.saturating_sub(spent)),
                "remaining_usd": usd(a.limit.saturating_sub(committed)),
                "soft_ratio": b.settings.soft_ratio,
                "over_soft_ratio": committed >= a.soft,
                "resets_at": b.settings.period.window(now).1,
                "shared": self.spend.shared.is_some(),
            }));
        }
        list
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let path = req.uri.path().to_string();
        let method = req.method.as_str().to_string();
        match (method.as_str(), path.as_str()) {
            ("GET", "/metrics") => {
                crate::routing::reputation::publish(&self.live.load().state);
                respond(
                    200,
                    "text/plain; version=0.0.4; charset=utf-8",
                    self.metrics.render(),
                )
            }
            (_, "/metrics") => error(
                405,
                &format!("method {method} is not allowed on /metrics"),
                "method_not_allowed",
            ),
            (_, p) if p == "/admin" || p.starts_with("/admin/") => {
                self.admin(session, &method, &path).await
            }
            _ => match self.status_page(session, &method, &path).await {
                Some(page) => page,
                None => error(
                    404,
                    &format!("Invalid URL ({method} {path})"),
                    "unknown_url",
                ),
            },
        }
    }
}
