//! Validation of the `auth` section: virtual keys from the file and the OAuth2/OIDC settings.

use super::file::{FileApiKey, FileAuth, FileOAuth};
use super::model::{AuthSettings, OAuthSettings};
use super::ConfigError;
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, UNIX_EPOCH};
use switchyard_filters::auth::jwt::{Alg, ClaimMap, JwtPolicy};
use switchyard_filters::auth::keys::{hash_key, parse_hash_hex, KeyRecord, KeySource};

fn push(errs: &mut Vec<ConfigError>, path: String, message: impl Into<String>) {
    errs.push(ConfigError {
        path,
        message: message.into(),
        line: None,
    });
}

pub fn auth(a: &FileAuth, models: &HashSet<&str>, errs: &mut Vec<ConfigError>) -> AuthSettings {
    let mut keys = Vec::new();
    let mut names = HashSet::new();
    for (i, k) in a.api_keys.iter().enumerate() {
        let path = format!("auth.api_keys[{i}]");
        if k.name.trim().is_empty() {
            push(errs, format!("{path}.name"), "must not be empty");
        } else if !names.insert(k.name.as_str()) {
            push(
                errs,
                format!("{path}.name"),
                format!("duplicate key name {:?}", k.name),
            );
        }
        if let Some(entry) = api_key(k, &path, models, errs) {
            keys.push(entry);
        }
    }
    let oauth = a.oauth.as_ref().and_then(|o| oauth(o, errs));
    let max_failures_per_minute = match a.max_failures_per_minute {
        Some(super::file::Lenient(0)) => {
            push(
                errs,
                "auth.max_failures_per_minute".into(),
                "must be at least 1",
            );
            DEFAULT_MAX_FAILURES_PER_MINUTE
        }
        Some(n) => n.0,
        None => DEFAULT_MAX_FAILURES_PER_MINUTE,
    };
    AuthSettings {
        keys,
        oauth,
        max_failures_per_minute,
    }
}

/// `auth.max_failures_per_minute` when not set (also the admin API's limit without `auth`).
pub const DEFAULT_MAX_FAILURES_PER_MINUTE: u32 = 30;

fn api_key(
    k: &FileApiKey,
    path: &str,
    models: &HashSet<&str>,
    errs: &mut Vec<ConfigError>,
) -> Option<([u8; 32], KeyRecord)> {
    let hash = match (&k.key_sha256, &k.key) {
        (Some(h), None) => match parse_hash_hex(h) {
            Some(h) => Some(h),
            None => {
                push(
                    errs,
                    format!("{path}.key_sha256"),
                    "must be 64 hexadecimal digits (the key's SHA-256)",
                );
                None
            }
        },
        (None, Some(secret)) if secret.len() >= 16 => Some(hash_key(secret)),
        (None, Some(_)) => {
            push(
                errs,
                format!("{path}.key"),
                "must be at least 16 characters",
            );
            None
        }
        (Some(_), Some(_)) => {
            push(
                errs,
                path.to_string(),
                "give either key_sha256 or key, not both",
            );
            None
        }
        (None, None) => {
            push(
                errs,
                path.to_string(),
                "needs key_sha256 (preferred) or key",
            );
            None
        }
    };
    if let Some(list) = &k.models {
        for (j, m) in list.iter().enumerate() {
            if !models.contains(m.as_str()) {
                push(
                    errs,
                    format!("{path}.models[{j}]"),
                    format!("unknown model {m:?}"),
                );
            }
        }
    }
    let expires_unix = k.expires.as_deref().and_then(|e| match parse_expiry(e) {
        Ok(t) => Some(t),
        Err(msg) => {
            push(errs, format!("{path}.expires"), msg);
            None
        }
    });
    let mut ip_allow = Vec::new();
    for (j, net) in k.ip_allow.iter().flatten().enumerate() {
        match parse_net(net) {
            Some(n) => ip_allow.push(n),
            None => push(
                errs,
                format!("{path}.ip_allow[{j}]"),
                format!("invalid network {net:?} (expected CIDR like 10.0.0.0/8 or an address)"),
            ),
        }
    }
    let hash = hash?;
    Some((
        hash,
        KeyRecord {
            name: k.name.clone(),
            team: k.team.clone(),
            project: k.project.clone(),
            models: k.models.clone(),
            expires_unix,
            ip_allow,
            limits: BTreeMap::new(),
            metadata: k.metadata.clone().unwrap_or_default(),
            revoked: false,
            source: KeySource::Config,
            created_unix: 0,
        },
    ))
}

/// An RFC 3339 timestamp (`2027-06-30T00:00:00Z`) as unix seconds.
pub fn parse_expiry(s: &str) -> Result<u64, String> {
    humantime::parse_rfc3339_weak(s.trim())
        .map(|t| {
            t.duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        })
        .map_err(|err| {
            format!("invalid timestamp {s:?}: {err} (use RFC 3339, e.g. 2027-06-30T00:00:00Z)")
        })
}

/// A CIDR network, or a single address as a /32 or /128.
pub fn parse_net(s: &str) -> Option<ipnet::IpNet> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

fn duration(
    value: Option<&str>,
    path: &str,
    default: Duration,
    errs: &mut Vec<ConfigError>,
) -> Duration {
    match value {
        None => default,
        Some(s) => humantime::parse_duration(s.trim()).unwrap_or_else(|e| {
            push(
                errs,
                path.to_string(),
                format!("invalid duration {s:?}: {e}"),
            );
            default
        }),
    }
}

fn oauth(o: &FileOAuth, errs: &mut Vec<ConfigError>) -> Option<OAuthSettings> {
    let introspection =
        o.introspection
            .as_ref()
            .and_then(|i| match super::endpoint::parse_endpoint(&i.url) {
                Ok(endpoint) => Some(super::model::Introspection {
                    path: if endpoint.path_prefix.is_empty() {
                        "/".into()
                    } else {
                        endpoint.path_prefix.clone()
                    },
                    endpoint,
                    client_id: i.client_id.clone(),
                    client_secret: super::model::Secret::new(i.client_secret.clone()),
                }),
                Err(e) => {
                    push(errs, "auth.oauth.introspection.url".into(), e);
                    None
                }
            });
    let mut algorithms = Vec::new();
    for (i, a) in o
        .algorithms
        .clone()
        .unwrap_or_else(|| vec!["RS256".into(), "ES256".into()])
        .iter()
        .enumerate()
    {
        match Alg::parse(a) {
            Some(alg) => algorithms.push(alg),
            None => push(
                errs,
                format!("auth.oauth.algorithms[{i}]"),
                format!("algorithm {a:?} is not allowed (choose from RS256, RS384, RS512, PS256, ES256, ES384, EdDSA; HMAC and none never are)"),
            ),
        }
    }
    let claims = o.claims.as_ref();
    let policy = JwtPolicy {
        issuer: o.issuer.clone(),
        audience: o.audience.clone(),
        algorithms,
        leeway_secs: duration(
            o.leeway.as_deref(),
            "auth.oauth.leeway",
            Duration::from_secs(60),
            errs,
        )
        .as_secs(),
        claims: ClaimMap {
            team: claims.and_then(|c| c.team.clone()),
            project: claims.and_then(|c| c.project.clone()),
            user: claims
                .and_then(|c| c.user.clone())
                .unwrap_or_else(|| "sub".into()),
        },
    };
    let refresh = duration(
        o.refresh.as_deref(),
        "auth.oauth.refresh",
        Duration::from_secs(600),
        errs,
    );
    if refresh < Duration::from_secs(1) {
        // Zero would make the refresher fetch the issuer's JWKS in a tight loop.
        push(errs, "auth.oauth.refresh".into(), "must be at least 1s");
    }
    if o.audience.trim().is_empty() {
        push(
            errs,
            "auth.oauth.audience".into(),
            "must name this gateway's audience (tokens for any audience are never accepted)",
        );
    }
    match super::endpoint::parse_endpoint(&o.jwks_url) {
        Ok(endpoint) => Some(OAuthSettings {
            jwks_path: if endpoint.path_prefix.is_empty() {
                "/".into()
            } else {
                endpoint.path_prefix.clone()
            },
            jwks: endpoint,
            policy,
            refresh,
            introspection,
            admin_scope: o
                .admin_scope
                .clone()
                .unwrap_or_else(|| "switchyard:admin".into()),
        }),
        Err(e) => {
            push(errs, "auth.oauth.jwks_url".into(), e);
            None
        }
    }
}
