//! Who is calling: virtual API keys and OAuth2/OIDC bearer tokens, checked on every inference
//! request, plus the key administration behind `/admin/*`.
//!
//! [`Auth`] lives for the whole process (it outlives config reloads): it holds the key index
//! (config keys + runtime keys from the [`store::KeyStore`]), the JWKS and verified-token cache
//! ([`jwks::Jwks`]), the per-address failure limiter, and the audit log. Policy decisions
//! themselves are `switchyard_filters::auth`'s; this module feeds them the clock, the client
//! address and the data.

mod failures;
pub(crate) mod http;
pub use failures::FailureLimiter;
pub use http::call as http_call;
pub mod jwks;
pub mod policy;
pub mod store;

use crate::config::AuthSettings;
use crate::ops::access_log::AccessLogger;
use arc_swap::ArcSwap;
use ring::rand::SystemRandom;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use store::KeyStore;
use switchyard_filters::auth::jwt::{self, JwtError};
use switchyard_filters::auth::keys::{
    generate_key, hash_key, KeyEntry, KeyIndex, KeyRecord, KeySource,
};
use switchyard_filters::auth::{credential, AuthError, Credential, Identity};

/// Longest an introspection answer without `exp` is trusted.
const INTROSPECTION_TTL: Duration = Duration::from_secs(60);
/// Longest any introspection answer is reused.
const INTROSPECTION_MAX_CACHE: Duration = Duration::from_secs(300);

/// A caller-chosen value (a token's `kid`) as echoed in an error or the audit log: at most 64
/// characters, so a huge header cannot make a huge answer or log line.
fn bounded(s: &str) -> String {
    const MAX: usize = 64;
    match s.char_indices().nth(MAX) {
        None => s.to_string(),
        Some((cut, _)) => format!("{}… ({} bytes)", &s[..cut], s.len()),
    }
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The outcome of authenticating a request.
#[derive(Debug)]
pub enum Denied {
    Auth(AuthError),
    /// Too many failed attempts from this address recently.
    TooManyFailures,
}

/// Why an admin operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Invalid(String),
    #[error("no key named `{0}`")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("cannot generate a key")]
    Random,
}

/// What the admin API asks for when creating a key.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    pub name: String,
    #[serde(default)]
    pub team: Option<String>,
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    pub models: Option<Vec<String>>,
    #[serde(default)]
    pub expires: Option<String>,
    #[serde(default)]
    pub ip_allow: Option<Vec<String>>,
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Rate limits for the key, as `auth.api_keys[].limits`.
    #[serde(default)]
    pub limits: Option<policy::KeyLimits>,
    /// A spend limit for the key, as a `budgets[]` entry with scope `key:NAME`.
    #[serde(default)]
    pub budget: Option<policy::KeyBudget>,
}

/// The `auth` section of one config file and the index of the keys it defines: part of the
/// config [`crate::snapshot::Snapshot`], so a request is authorised by the same file that routes
/// it. Runtime keys (the admin API's) are not the file's: they live in [`Auth`].
#[derive(Default)]
pub struct AuthView {
    pub settings: Option<AuthSettings>,
    keys: KeyIndex,
}

impl AuthView {
    pub fn new(settings: Option<AuthSettings>) -> AuthView {
        let mut keys = KeyIndex::default();
        if let Some(s) = &settings {
            for (hash, rec) in &s.keys {
                keys.insert(
                    *hash,
                    KeyEntry {
                        record: Arc::new(rec.clone()),
                        superseded_until: None,
                    },
                );
            }
        }
        AuthView { settings, keys }
    }

    fn key_names(&self) -> impl Iterator<Item = &KeyRecord> {
        self.settings
            .iter()
            .flat_map(|s| s.keys.iter().map(|(_, r)| r))
    }

    /// Whether the JWKS source or token policy differs from `other`'s (verified tokens cached
    /// under the old one must not be served under the new one).
    pub fn oauth_changed(&self, other: &AuthView) -> bool {
        let of = |v: &AuthView| {
            v.settings
                .as_ref()
                .and_then(|s| s.oauth.as_ref())
                .map(|o| (o.jwks.base_url.clone(), o.policy.clone()))
        };
        of(self) != of(other)
    }
}

/// Identity for the whole process (it outlives config reloads): the runtime key store and its
/// index, the JWKS and verified-token cache, the failure limiter and the audit log. The file's
/// settings come from the live snapshot.
pub struct Auth {
    live: std::sync::OnceLock<Arc<crate::snapshot::Live>>,
    store: KeyStore,
    /// Keys created through the admin API (and superseded secrets in their grace period).
    index: ArcSwap<KeyIndex>,
    /// The runtime keys' limits and budgets (read by governance when it is built).
    policies: ArcSwap<policy::KeyPolicies>,
    pub jwks: jwks::Jwks,
    failures: FailureLimiter,
    rng: SystemRandom,
    pub audit: AccessLogger,
}

impl Auth {
    pub fn new(
        store: KeyStore,
        jwks: jwks::Jwks,
        audit: AccessLogger,
    ) -> Result<Auth, store::StoreError> {
        let auth = Auth {
            live: std::sync::OnceLock::new(),
            store,
            index: ArcSwap::from_pointee(KeyIndex::default()),
            policies: ArcSwap::from_pointee(Vec::new()),
            jwks,
            failures: FailureLimiter::default(),
            rng: SystemRandom::new(),
            audit,
        };
        match auth.rebuild_index() {
            // A fleet replica starting while PostgreSQL is away, with no local copy of the keys
            // yet: the file's keys work now, the runtime keys once the database answers.
            Err(store::StoreError::Postgres(e)) if e.is_unreachable() => {
                log::warn!("runtime keys not loaded ({e}): serving the config file's keys until the database answers");
            }
            other => other?,
        }
        Ok(auth)
    }

    /// Connects the process's live snapshot (once, at start), from which the admin API and the
    /// JWKS refresher read the file's settings.
    pub fn attach(&self, live: Arc<crate::snapshot::Live>) {
        let _ = self.live.set(live);
    }

    /// The live file's auth view (an empty one before [`Auth::attach`]).
    pub fn view(&self) -> Arc<AuthView> {
        match self.live.get() {
            Some(l) => l.load().auth.clone(),
            None => Arc::new(AuthView::default()),
        }
    }

    /// Reloads the runtime keys from the store (another replica changed them); on failure the
    /// index keeps its last known state.
    pub fn reload_keys(&self) {
        if let Err(e) = self.rebuild_index() {
            log::warn!("runtime keys not reloaded (serving the last known ones): {e}");
        }
    }

    /// Rebuilds the runtime key index from the store.
    fn rebuild_index(&self) -> Result<(), store::StoreError> {
        let mut index = KeyIndex::default();
        let (keys, superseded) = self.store.load()?;
        let mut by_name = std::collections::HashMap::new();
        for k in keys {
            let rec = Arc::new(k.record);
            by_name.insert(rec.name.clone(), rec.clone());
            index.insert(
                k.hash,
                KeyEntry {
                    record: rec,
                    superseded_until: None,
                },
            );
        }
        for s in superseded {
            if let Some(rec) = by_name.get(&s.name) {
                index.insert(
                    s.hash,
                    KeyEntry {
                        record: rec.clone(),
                        superseded_until: Some(s.valid_until),
                    },
                );
            }
        }
        self.index.store(Arc::new(index));
        self.policies.store(Arc::new(self.store.policies()?));
        Ok(())
    }

    /// The limits and budgets of the runtime keys that are not revoked.
    pub fn key_policies(&self) -> Arc<policy::KeyPolicies> {
        self.policies.load_full()
    }

    /// Authenticates a request from its credential headers. `Ok(None)`: no `auth` section, every
    /// caller is accepted.
    pub async fn authenticate(
        &self,
        view: &AuthView,
        authorization: Option<&[u8]>,
        x_api_key: Option<&[u8]>,
        client: Option<IpAddr>,
    ) -> Result<Option<Arc<Identity>>, Denied> {
        let Some(settings) = view.settings.as_ref() else {
            return Ok(None);
        };
        let now = crate::clock::unix_secs();
        if self
            .failures
            .over(client, settings.max_failures_per_minute, now)
        {
            return Err(Denied::TooManyFailures);
        }
        let result = match credential(authorization, x_api_key) {
            None => Err(AuthError::Missing),
            Some(Credential::Key(secret)) => {
                let checked = match view.keys.check(secret, client, now) {
                    Err(AuthError::InvalidKey) => self.index.load().check(secret, client, now),
                    found => found,
                };
                match checked {
                    // Not one of ours and not shaped like any API key: maybe an opaque token
                    // the issuer can vouch for.
                    Err(AuthError::InvalidKey) if !jwks::key_shaped(secret) => match settings
                        .oauth
                        .as_ref()
                        .and_then(|o| o.introspection.as_ref().map(|i| (o, i)))
                    {
                        // Boxed: an issuer's round trip (~2.6 KB of future) is rare here.
                        Some((oauth, intro)) => {
                            Box::pin(self.introspect(oauth, intro, secret, now))
                                .await
                                .map(Arc::new)
                        }
                        None => Err(AuthError::InvalidKey),
                    },
                    checked => checked,
                }
            }
            Some(Credential::Token(token)) => {
                self.verify_token(settings, token, now).await.map(Arc::new)
            }
        };
        if let Err(e) = &result {
            if e.is_guess() {
                self.failures.fail(client, now);
            }
        }
        result.map(Some).map_err(Denied::Auth)
    }

    async fn verify_token(
        &self,
        settings: &AuthSettings,
        token: &str,
        now: u64,
    ) -> Result<Identity, AuthError> {
        let Some(oauth) = settings.oauth.as_ref() else {
            return Err(AuthError::InvalidToken(
                "bearer tokens are not accepted here".into(),
            ));
        };
        Ok(self.jwks.verify(oauth, token, now).await?.identity)
    }

    /// RFC 7662: asks the issuer whether an opaque token is active; the answer is cached until
    /// the token's `exp` (at most [`INTROSPECTION_TTL`] when it gives none, and at most
    /// [`INTROSPECTION_MAX_CACHE`]), a refusal for [`jwks::REFUSAL_TTL`]; an issuer that cannot
    /// answer is asked again next time. A credential shaped like an API key is never sent.
    async fn introspect(
        &self,
        oauth: &crate::config::OAuthSettings,
        intro: &crate::config::Introspection,
        token: &str,
        now: u64,
    ) -> Result<Identity, AuthError> {
        /// The verdict on the issuer's answer (a refusal is final for this token).
        fn judge(
            claims: &serde_json::Value,
            oauth: &crate::config::OAuthSettings,
            now: u64,
        ) -> Result<jwt::Verified, AuthError> {
            let from_jwt = |e: JwtError| match e {
                JwtError::Auth(a) => a,
                JwtError::UnknownKid(_) => AuthError::InvalidToken("introspection".into()),
            };
            if claims.get("active").and_then(serde_json::Value::as_bool) != Some(true) {
                return Err(AuthError::InvalidToken("token is not active".into()));
            }
            if claims
                .get("iss")
                .is_some_and(|i| i.as_str() != Some(oauth.policy.issuer.as_str()))
            {
                return Err(AuthError::InvalidToken("wrong issuer".into()));
            }
            // With an audience configured the answer must name it (RFC 7662 `aud` is optional,
            // but a token for another audience must not pass for ours).
            let audience = oauth.policy.audience.as_str();
            let aud_ok = audience.is_empty()
                || match claims.get("aud") {
                    Some(serde_json::Value::String(a)) => a == audience,
                    Some(serde_json::Value::Array(l)) => {
                        l.iter().any(|a| a.as_str() == Some(audience))
                    }
                    _ => false,
                };
            if !aud_ok {
                return Err(AuthError::InvalidToken("wrong audience".into()));
            }
            let exp = jwt::numeric_date(claims, "exp", jwt::Round::Down).map_err(from_jwt)?;
            if exp.is_some_and(|e| now > e) {
                return Err(AuthError::TokenExpired);
            }
            Ok(jwt::Verified {
                identity: jwt::identity_from_claims(claims, &oauth.policy.claims)
                    .map_err(from_jwt)?,
                scopes: jwt::scopes(claims),
                // Never past the token's own expiry; re-asked at least every
                // INTROSPECTION_MAX_CACHE so a revocation at the issuer is seen.
                expires_unix: exp
                    .unwrap_or(now + INTROSPECTION_TTL.as_secs())
                    .min(now + INTROSPECTION_MAX_CACHE.as_secs()),
                key: None,
            })
        }

        if jwks::key_shaped(token) {
            return Err(AuthError::InvalidKey);
        }
        if let Some(v) = self.jwks.cached(token, now) {
            return Ok(v.identity);
        }
        if let Some(refusal) = self.jwks.refused(token, now) {
            return Err(refusal);
        }
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            form_encode(&intro.client_id),
            form_encode(intro.client_secret.expose())
        ));
        let body = format!("token={}&token_type_hint=access_token", form_encode(token));
        let answer = http::call(
            self.jwks.connector(),
            &intro.endpoint,
            "POST",
            &intro.path,
            &[
                (
                    "content-type",
                    "application/x-www-form-urlencoded".to_string(),
                ),
                ("accept", "application/json".to_string()),
                ("authorization", format!("Basic {basic}")),
            ],
            bytes::Bytes::from(body),
            Duration::from_secs(5),
        )
        .await;
        let claims: serde_json::Value = match answer {
            Ok((200, body)) => serde_json::from_slice(&body)
                .map_err(|_| AuthError::InvalidToken("introspection answer is not JSON".into()))?,
            Ok((status, _)) => {
                log::warn!("token introspection answered {status}");
                return Err(AuthError::InvalidToken(
                    "the issuer could not check the token".into(),
                ));
            }
            Err(e) => {
                log::warn!("token introspection failed: {e}");
                return Err(AuthError::InvalidToken(
                    "the issuer could not check the token".into(),
                ));
            }
        };
        match judge(&claims, oauth, now) {
            Ok(verified) => {
                self.jwks.remember(token, &verified, now);
                Ok(verified.identity)
            }
            Err(refusal) => {
                self.jwks.remember_refusal(token, &refusal, now);
                Err(refusal)
            }
        }
    }

    /// Checks a bearer JWT for the admin API: valid, and granting the admin scope. Returns the
    /// caller's name for the audit log.
    pub async fn verify_admin_token(&self, token: &str) -> Result<String, AuthError> {
        let view = self.view();
        let oauth = view
            .settings
            .as_ref()
            .and_then(|s| s.oauth.as_ref())
            .ok_or(AuthError::InvalidKey)?;
        let now = crate::clock::unix_secs();
        let verified = self.jwks.verify(oauth, token, now).await?;
        if verified.scopes.contains(&oauth.admin_scope) {
            Ok(verified.identity.name)
        } else {
            Err(AuthError::ModelNotAllowed {
                caller: verified.identity.name,
                model: "admin API".into(),
            })
        }
    }

    /// Whether `client` sent too many wrong credentials (keys, tokens or admin tokens) in the
    /// last minute for the admin API to check another one.
    pub fn admin_locked_out(&self, client: Option<IpAddr>) -> bool {
        let limit = self
            .view()
            .settings
            .as_ref()
            .map_or(crate::config::DEFAULT_MAX_FAILURES_PER_MINUTE, |s| {
                s.max_failures_per_minute
            });
        self.failures.over(client, limit, crate::clock::unix_secs())
    }

    /// Counts a wrong admin credential from `client`.
    pub fn admin_failed(&self, client: Option<IpAddr>) {
        self.failures.fail(client, crate::clock::unix_secs());
    }

    // ---- administration (admin listener only) ----

    fn config_key_names(&self) -> Vec<String> {
        self.view().key_names().map(|r| r.name.clone()).collect()
    }

    /// Every key's policy (config and store), without secrets.
    pub fn list(&self) -> Result<Vec<KeyRecord>, AdminError> {
        let mut out: Vec<KeyRecord> = self.view().key_names().cloned().collect();
        let (keys, _) = self.store.load()?;
        out.extend(keys.into_iter().map(|k| k.record));
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    pub fn get(&self, name: &str) -> Result<KeyRecord, AdminError> {
        self.list()?
            .into_iter()
            .find(|k| k.name == name)
            .ok_or_else(|| AdminError::NotFound(name.to_string()))
    }

    /// Creates a runtime key; returns the secret (shown once) and the record.
    pub fn create(
        &self,
        req: NewKey,
        known_models: &[String],
    ) -> Result<(String, KeyRecord), AdminError> {
        let valid_name = !req.name.is_empty()
            && req.name.len() <= 64
            && req
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !valid_name {
            return Err(AdminError::Invalid(
                "name must be 1-64 characters of [A-Za-z0-9._-]".into(),
            ));
        }
        if self.config_key_names().contains(&req.name)
            || self.list()?.iter().any(|k| k.name == req.name)
        {
            return Err(AdminError::Conflict(format!(
                "a key named `{}` already exists",
                req.name
            )));
        }
        if let Some(models) = &req.models {
            if let Some(m) = models.iter().find(|m| !known_models.contains(m)) {
                return Err(AdminError::Invalid(format!("unknown model `{m}`")));
            }
        }
        let expires_unix = req
            .expires
            .as_deref()
            .map(crate::config::parse_expiry)
            .transpose()
            .map_err(|e| AdminError::Invalid(format!("expires: {e}")))?;
        let mut ip_allow = Vec::new();
        for net in req.ip_allow.iter().flatten() {
            ip_allow.push(crate::config::parse_net(net).ok_or_else(|| {
                AdminError::Invalid(format!("ip_allow: invalid network `{net}`"))
            })?);
        }
        let policy = policy::KeyPolicy {
            limits: req.limits,
            budget: req.budget,
        };
        policy.check().map_err(AdminError::Invalid)?;
        let secret = generate_key(&self.rng).map_err(|_| AdminError::Random)?;
        let record = KeyRecord {
            name: req.name,
            team: req.team,
            project: req.project,
            models: req.models,
            expires_unix,
            ip_allow,
            limits: BTreeMap::new(),
            metadata: req.metadata.unwrap_or_default(),
            revoked: false,
            source: KeySource::Store,
            created_unix: crate::clock::unix_secs(),
        };
        self.store.insert(&hash_key(&secret), &record)?;
        if !policy.is_empty() {
            self.store.set_policy(&record.name, &policy)?;
        }
        self.rebuild_index()?;
        Ok((secret, record))
    }

    pub fn revoke(&self, name: &str) -> Result<(), AdminError> {
        if self.config_key_names().iter().any(|n| n == name) {
            return Err(AdminError::Conflict(format!(
                "`{name}` is defined in the config file; remove it there"
            )));
        }
        if !self.store.revoke(name)? {
            return Err(AdminError::NotFound(name.to_string()));
        }
        self.rebuild_index()?;
        Ok(())
    }

    /// Gives a runtime key a new secret; the old one works for `grace` more.
    pub fn rotate(&self, name: &str, grace: Duration) -> Result<(String, u64), AdminError> {
        if self.config_key_names().iter().any(|n| n == name) {
            return Err(AdminError::Conflict(format!(
                "`{name}` is defined in the config file; rotate it there"
            )));
        }
        let secret = generate_key(&self.rng).map_err(|_| AdminError::Random)?;
        let until = crate::clock::unix_secs() + grace.as_secs();
        if !self.store.rotate(name, &hash_key(&secret), until)? {
            return Err(AdminError::NotFound(name.to_string()));
        }
        self.rebuild_index()?;
        Ok((secret, until))
    }

    /// Records an admin action in the store's audit trail (the fleet's, with PostgreSQL).
    pub fn audit_to_store(&self, entry: crate::store::audit::Entry) {
        if let Err(e) = self.store.audit(entry) {
            log::warn!("audit trail: {e}");
        }
    }

    pub fn store_is_persistent(&self) -> bool {
        self.store.persistent
    }
}

/// Fetches the JWKS before the listeners open, then every `refresh` interval.
pub struct JwksRefresher {
    pub auth: Arc<Auth>,
}

#[async_trait::async_trait]
impl pingora_core::services::background::BackgroundService for JwksRefresher {
    async fn start_with_ready_notifier(
        &self,
        mut shutdown: pingora_core::server::ShutdownWatch,
        ready: pingora_core::services::ServiceReadyNotifier,
    ) {
        let mut ready = Some(ready);
        loop {
            let view = self.auth.view();
            let oauth = view.settings.as_ref().and_then(|s| s.oauth.clone());
            let wait = match &oauth {
                Some(o) => {
                    match self.auth.jwks.fetch(o).await {
                        Ok(n) => log::info!("JWKS loaded from {} ({n} keys)", o.jwks.base_url),
                        Err(e) => log::error!(
                            "JWKS fetch from {} failed: {e}; tokens fail until it succeeds",
                            o.jwks.base_url
                        ),
                    }
                    o.refresh
                }
                None => Duration::from_secs(5),
            };
            if let Some(r) = ready.take() {
                r.notify_ready();
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod bounded_tests {
    #[test]
    fn long_values_are_cut_at_a_character_boundary() {
        assert_eq!(super::bounded("k1"), "k1");
        let long = "é".repeat(10_000);
        let b = super::bounded(&long);
        assert!(
            b.len() < 200 && b.starts_with("éé") && b.ends_with("(20000 bytes)"),
            "{b}"
        );
    }
}
