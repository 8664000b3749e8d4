//! Authentication and authorisation decisions: who is calling, and may they do this.
//!
//! - [`keys`]: virtual API keys, stored as SHA-256 hashes, with expiry, model and IP allow-lists,
//!   revocation and rotation with a grace period.
//! - [`jwt`]: OAuth2 / OIDC bearer JWTs verified with `ring` against a JWKS.
//!
//! Everything here is pure: the gateway supplies the clock, the client address, the key index and
//! the JWKS. Errors name what failed but never carry the secret.

pub mod jwt;
pub mod keys;

use std::fmt;

/// How the caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    VirtualKey,
    /// A JWT without a user (client-credentials grant).
    MachineToken,
    /// A JWT acting for a user.
    UserToken,
}

impl CredentialKind {
    pub fn label(self) -> &'static str {
        match self {
            CredentialKind::VirtualKey => "virtual_key",
            CredentialKind::MachineToken => "machine_token",
            CredentialKind::UserToken => "user_token",
        }
    }
}

/// The authenticated caller; travels with the request to limits, budgets, logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The key's name, or the token's subject / client id. Never the secret.
    pub name: String,
    pub team: Option<String>,
    pub project: Option<String>,
    pub user: Option<String>,
    pub kind: CredentialKind,
    /// Public model names this caller may use; `None` = all.
    pub models: Option<Vec<String>>,
}

impl Identity {
    /// The virtual key's name, for `key:` limits and budgets; `None` for tokens, whose subject
    /// may equal a key's name without sharing its limits.
    pub fn key_name(&self) -> Option<&str> {
        (self.kind == CredentialKind::VirtualKey).then_some(self.name.as_str())
    }

    /// The caller as a ledger and usage subject, its credential kind spelled out where it is
    /// not a virtual key: `team-a-prod` for a key, `token:alice` for a JWT or an introspected
    /// token.
    pub fn subject(&self) -> std::borrow::Cow<'_, str> {
        match self.kind {
            CredentialKind::VirtualKey => std::borrow::Cow::Borrowed(&self.name),
            CredentialKind::MachineToken | CredentialKind::UserToken => {
                std::borrow::Cow::Owned(format!("token:{}", self.name))
            }
        }
    }

    pub fn may_use(&self, model: &str) -> bool {
        self.models
            .as_ref()
            .is_none_or(|m| m.iter().any(|x| x == model))
    }
}

/// Why a request was refused. 401 for who-are-you problems, 403 for not-allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing credentials: send `Authorization: Bearer <key>` or `x-api-key: <key>`")]
    Missing,
    #[error("invalid API key")]
    InvalidKey,
    #[error("API key `{0}` has been revoked")]
    Revoked(String),
    #[error("API key `{0}` was rotated; use the new key")]
    Rotated(String),
    #[error("API key `{0}` expired")]
    Expired(String),
    #[error("invalid token: {0}")]
    InvalidToken(String),
    #[error("token expired")]
    TokenExpired,
    #[error("`{caller}` may not use the model `{model}`")]
    ModelNotAllowed { caller: String, model: String },
    #[error("`{caller}` may not be used from this address")]
    IpNotAllowed { caller: String },
}

impl AuthError {
    pub fn status(&self) -> u16 {
        match self {
            AuthError::ModelNotAllowed { .. }
            | AuthError::IpNotAllowed { .. }
            | AuthError::Expired(_) => 403,
            _ => 401,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing_api_key",
            AuthError::InvalidKey => "invalid_api_key",
            AuthError::Revoked(_) => "revoked_api_key",
            AuthError::Rotated(_) => "rotated_api_key",
            AuthError::Expired(_) => "expired_api_key",
            AuthError::InvalidToken(_) => "invalid_token",
            AuthError::TokenExpired => "expired_token",
            AuthError::ModelNotAllowed { .. } => "model_not_allowed",
            AuthError::IpNotAllowed { .. } => "ip_not_allowed",
        }
    }

    /// Failures that count towards the per-address guessing limiter.
    pub fn is_guess(&self) -> bool {
        matches!(self, AuthError::InvalidKey | AuthError::InvalidToken(_))
    }
}

/// A credential as presented, before it is checked.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential<'a> {
    /// Looks like a JWT (three base64url segments).
    Token(&'a str),
    Key(&'a str),
}

impl fmt::Debug for Credential<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Credential::Token(_) => "Credential::Token([redacted])",
            Credential::Key(_) => "Credential::Key([redacted])",
        })
    }
}

/// Picks the credential from `Authorization: Bearer …` or `x-api-key: …` header values.
pub fn credential<'a>(
    authorization: Option<&'a [u8]>,
    x_api_key: Option<&'a [u8]>,
) -> Option<Credential<'a>> {
    let raw = authorization
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| {
            let v = v.trim();
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .or_else(|| {
            x_api_key
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::trim)
        })
        .filter(|v| !v.is_empty())?;
    if raw.split('.').count() == 3 && !raw.starts_with(keys::KEY_PREFIX) {
        Some(Credential::Token(raw))
    } else {
        Some(Credential::Key(raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_from_either_header() {
        assert_eq!(
            credential(Some(b"Bearer sy-abc"), None),
            Some(Credential::Key("sy-abc"))
        );
        assert_eq!(
            credential(Some(b"bearer  sy-abc "), None),
            Some(Credential::Key("sy-abc"))
        );
        assert_eq!(
            credential(None, Some(b"sy-abc")),
            Some(Credential::Key("sy-abc"))
        );
        assert_eq!(
            credential(Some(b"Bearer a.b.c"), None),
            Some(Credential::Token("a.b.c"))
        );
        assert_eq!(credential(Some(b"Basic xyz"), None), None);
        assert_eq!(credential(None, None), None);
        assert!(!format!("{:?}", credential(None, Some(b"sy-secret"))).contains("secret"));
    }

    #[test]
    fn statuses() {
        assert_eq!(AuthError::InvalidKey.status(), 401);
        assert_eq!(
            AuthError::ModelNotAllowed {
                caller: "a".into(),
                model: "m".into()
            }
            .status(),
            403
        );
    }
}

#[cfg(test)]
mod identity_tests {
    use super::*;

    fn who(kind: CredentialKind) -> Identity {
        Identity {
            name: "bot".into(),
            team: None,
            project: None,
            user: None,
            kind,
            models: None,
        }
    }

    #[test]
    fn only_a_virtual_key_has_a_key_name_and_tokens_say_what_they_are() {
        assert_eq!(who(CredentialKind::VirtualKey).key_name(), Some("bot"));
        assert_eq!(who(CredentialKind::UserToken).key_name(), None);
        assert_eq!(who(CredentialKind::VirtualKey).subject(), "bot");
        assert_eq!(who(CredentialKind::MachineToken).subject(), "token:bot");
        assert_eq!(who(CredentialKind::UserToken).subject(), "token:bot");
    }
}
