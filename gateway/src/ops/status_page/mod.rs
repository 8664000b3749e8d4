//! The operator's status page on the admin listener (`server.status_page`): `GET /` (the login
//! form, or the dashboard for a caller holding the admin token), `POST /login` and
//! `POST /logout`, and the page's own script, style sheet and icon, all built into the binary.
//! Every page carries a strict Content-Security-Policy (nothing but this origin's script and
//! style). The login cookie holds a random session id, its expiry and an HMAC over both keyed
//! with a per-process secret and the admin token's digest: never the token, and rotating the
//! token ends every session. The data comes from `GET /admin/status` ([`data`]). Owns no admin
//! action and no other route.

mod data;

use crate::ops::admin::AdminApp;
use http::Response;
use pingora_core::protocols::http::ServerSession;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use switchyard_filters::auth::keys::hash_key;

/// The session cookie's name.
pub const COOKIE: &str = "switchyard_status";
/// How long a login lasts.
const SESSION_SECS: u64 = 12 * 3600;

const DASHBOARD_HTML: &str = include_str!("page.html");
const LOGIN_HTML: &str = include_str!("login.html");
const SCRIPT: &str = include_str!("status.js");
const STYLE: &str = include_str!("status.css");
const ICON: &str = include_str!("icon.svg");

/// `default-src 'none'`: nothing loads but what is named, and only from this origin.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Signs and checks the status page's session cookies.
pub struct Sessions {
    secret: Option<[u8; 32]>,
    rng: SystemRandom,
}

impl Default for Sessions {
    fn default() -> Self {
        let rng = SystemRandom::new();
        let mut secret = [0u8; 32];
        let secret = match rng.fill(&mut secret) {
            Ok(()) => Some(secret),
            Err(_) => {
                log::error!("status page: no randomness for session cookies; logins are refused (Bearer still works)");
                None
            }
        };
        Sessions { secret, rng }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Sessions {
    fn key(&self, admin_token: &str) -> Option<hmac::Key> {
        let secret = self.secret?;
        let mut material = secret.to_vec();
        material.extend_from_slice(&hash_key(admin_token));
        Some(hmac::Key::new(hmac::HMAC_SHA256, &material))
    }

    /// A new cookie value `<expiry>.<id>.<tag>`, or `None` without randomness.
    fn issue(&self, admin_token: &str, now: u64) -> Option<String> {
        let key = self.key(admin_token)?;
        let mut id = [0u8; 16];
        self.rng.fill(&mut id).ok()?;
        let payload = format!("{}.{}", now + SESSION_SECS, hex(&id));
        let tag = hmac::sign(&key, payload.as_bytes());
        Some(format!("{payload}.{}", hex(tag.as_ref())))
    }

    /// Whether `value` is a cookie this process issued for this admin token and not expired
    /// (the tag compared in constant time).
    pub fn valid(&self, value: &str, admin_token: &str, now: u64) -> bool {
        let Some(key) = self.key(admin_token) else {
            return false;
        };
        let Some((payload, tag)) = value.rsplit_once('.') else {
            return false;
        };
        let Some(expiry) = payload
            .split('.')
            .next()
            .and_then(|e| e.parse::<u64>().ok())
        else {
            return false;
        };
        let Some(tag) = unhex(tag) else { return false };
        expiry > now && hmac::verify(&key, payload.as_bytes(), &tag).is_ok()
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(session: &'a ServerSession, name: &str) -> Option<&'a str> {
    session
        .req_header()
        .headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn page(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len())
        .header("cache-control", "no-store")
        .header("content-security-policy", CSP)
        .header("x-content-type-options", "nosniff")
        .header("x-frame-options", "DENY")
        .header("referrer-policy", "no-referrer")
        .body(body)
        .unwrap_or_else(|_| Response::new(Vec::new()))
}

fn login_form(status: u16, message: &str) -> Response<Vec<u8>> {
    let html = LOGIN_HTML.replace("<!--MESSAGE-->", message);
    page(status, "text/html; charset=utf-8", html.into_bytes())
}

fn redirect_home(set_cookie: &str) -> Response<Vec<u8>> {
    Response::builder()
        .status(303)
        .header("location", "/")
        .header("set-cookie", set_cookie)
        .header("content-length", 0)
        .header("cache-control", "no-store")
        .body(Vec::new())
        .unwrap_or_else(|_| Response::new(Vec::new()))
}

/// The `token` field of an `application/x-www-form-urlencoded` login body.
fn form_token(body: &[u8]) -> Option<String> {
    let body = std::str::from_utf8(body).ok()?;
    body.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "token").then(|| {
            let v = v.replace('+', " ");
            percent_encoding::percent_decode_str(&v)
                .decode_utf8_lossy()
                .trim()
                .to_string()
        })
    })
}

impl AdminApp {
    /// Whether the caller holds the admin token (Bearer) or a valid session cookie.
    pub(crate) fn page_authorized(&self, session: &ServerSession, admin_token: &str) -> bool {
        let bearer = crate::ops::admin::bearer(session);
        if bearer.is_some_and(|b| hash_key(b) == hash_key(admin_token)) {
            return true;
        }
        cookie(session, COOKIE).is_some_and(|c| {
            self.sessions
                .valid(c, admin_token, crate::clock::unix_secs())
        })
    }

    /// Serves the status page's routes; `None` for any other path.
    pub(crate) async fn status_page(
        &self,
        session: &mut ServerSession,
        method: &str,
        path: &str,
    ) -> Option<Response<Vec<u8>>> {
        let asset = match path {
            "/status.js" => Some(("text/javascript; charset=utf-8", SCRIPT)),
            "/status.css" => Some(("text/css; charset=utf-8", STYLE)),
            "/favicon.svg" | "/favicon.ico" => Some(("image/svg+xml", ICON)),
            "/" | "/login" | "/logout" => None,
            _ => return None,
        };
        let state = self.live.load().state.clone();
        if !state.config.server.status_page {
            return None;
        }
        let Some(token) = state.config.server.admin_token.clone() else {
            return Some(login_form(
                404,
                "<p class=\"err\">The admin API is disabled: set server.admin_token.</p>",
            ));
        };
        if let Some((content_type, body)) = asset {
            return Some(page(200, content_type, body.as_bytes().to_vec()));
        }
        Some(match (method, path) {
            ("GET" | "HEAD", "/") => {
                if self.page_authorized(session, token.expose()) {
                    page(
                        200,
                        "text/html; charset=utf-8",
                        DASHBOARD_HTML.as_bytes().to_vec(),
                    )
                } else {
                    login_form(200, "")
                }
            }
            ("POST", "/login") => self.login(session, token.expose()).await,
            ("POST", "/logout") => redirect_home(&format!(
                "{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
            )),
            _ => login_form(405, "<p class=\"err\">Method not allowed.</p>"),
        })
    }

    async fn login(&self, session: &mut ServerSession, admin_token: &str) -> Response<Vec<u8>> {
        let client = session.client_addr().map(|a| a.to_string());
        let client_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        if self.auth.admin_locked_out(client_ip) {
            self.audit(
                "unknown",
                "status_page_login",
                None,
                client,
                "too_many_failures",
            );
            return login_form(
                429,
                "<p class=\"err\">Too many failed logins from this address; retry in a minute.</p>",
            );
        }
        let body = match crate::ops::admin::read_body(session).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        let presented = form_token(&body).unwrap_or_default();
        if presented.is_empty() || hash_key(&presented) != hash_key(admin_token) {
            self.auth.admin_failed(client_ip);
            self.audit("unknown", "status_page_login", None, client, "unauthorized");
            return login_form(401, "<p class=\"err\">That is not the admin token.</p>");
        }
        let Some(value) = self.sessions.issue(admin_token, crate::clock::unix_secs()) else {
            return login_form(
                500,
                "<p class=\"err\">No session could be made; use Authorization: Bearer.</p>",
            );
        };
        self.audit("admin_token", "status_page_login", None, client, "ok");
        redirect_home(&format!(
            "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECS}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_signed_expire_and_end_with_the_token() {
        let s = Sessions::default();
        let c = s.issue("tok", 1000).unwrap();
        assert!(!c.contains("tok"));
        assert!(s.valid(&c, "tok", 1001));
        assert!(!s.valid(&c, "other-token", 1001));
        assert!(!s.valid(&c, "tok", 1000 + SESSION_SECS));
        let forged = c.replacen(&(1000 + SESSION_SECS).to_string(), "99999999999", 1);
        assert!(!s.valid(&forged, "tok", 1001));
        assert!(!Sessions::default().valid(&c, "tok", 1001));
    }

    #[test]
    fn the_login_form_token_is_url_decoded() {
        assert_eq!(form_token(b"token=a%2Bb+c").as_deref(), Some("a+b c"));
        assert_eq!(form_token(b"x=1&token=t").as_deref(), Some("t"));
        assert_eq!(form_token(b"x=1"), None);
    }
}
