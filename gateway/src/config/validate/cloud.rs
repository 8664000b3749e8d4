//! The cloud-account keys of `providers[]`: `kind: azure` (`api_version`, `api_key` or
//! `entra`), `kind: bedrock` (`region`, `aws_*` credentials), `kind: vertex` (`project`,
//! `location`, `credentials_file`) and the keys any HTTP kind may carry (`headers`, `proxy`). Builds the [`crate::cloud::Cloud`] a
//! provider sends through; must not open connections (tokens are fetched on first use).

use super::*;
use crate::cloud::sigv4::AwsCredentials;
use crate::cloud::token::{TokenCache, TokenEndpoint};
use crate::cloud::vertex::{ServiceAccount, Vertex};
use crate::cloud::{entra, Azure, AzureAuth, Bedrock, Cloud};

/// Keys that only a cloud kind reads: refused on the others.
pub(super) fn reject_cloud_keys(p: &FileProvider, path: &str, errs: &mut Errors) {
    if p.kind != "bedrock" {
        reject_keys(
            p,
            path,
            &p.kind,
            &[
                ("region", p.region.is_some()),
                ("aws_access_key_id", p.aws_access_key_id.is_some()),
                ("aws_secret_access_key", p.aws_secret_access_key.is_some()),
                ("aws_session_token", p.aws_session_token.is_some()),
            ],
            errs,
        );
    }
    if p.kind != "vertex" {
        reject_keys(
            p,
            path,
            &p.kind,
            &[
                ("project", p.project.is_some()),
                ("location", p.location.is_some()),
                ("credentials_file", p.credentials_file.is_some()),
            ],
            errs,
        );
    }
    if p.kind != "azure" {
        reject_keys(
            p,
            path,
            &p.kind,
            &[
                ("api_version", p.api_version.is_some()),
                ("entra", p.entra.is_some()),
            ],
            errs,
        );
    }
}

/// `headers`: valid names and values; the hop-by-hop and framing headers the gateway owns are
/// refused (credential headers are never overridden: the gateway's own win when sending).
pub(super) fn extra_headers(
    p: &FileProvider,
    path: &str,
    errs: &mut Errors,
) -> Vec<(http::HeaderName, http::HeaderValue)> {
    const OWNED: &[&str] = &[
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "upgrade",
        "te",
        "keep-alive",
        "proxy-connection",
    ];
    let mut out = Vec::new();
    for (name, value) in p.headers.iter().flatten() {
        let key = format!("{path}.headers.{name}");
        let Ok(n) = http::HeaderName::from_bytes(name.as_bytes()) else {
            errs.push(key, "not a valid header name");
            continue;
        };
        if OWNED.contains(&n.as_str()) {
            errs.push(key, "is set by the gateway and cannot be configured");
            continue;
        }
        match http::HeaderValue::from_str(value) {
            Ok(v) => out.push((n, v)),
            Err(_) => errs.push(key, "not a valid header value"),
        }
    }
    out
}

/// `proxy`: an HTTP CONNECT proxy URL.
pub(super) fn egress_proxy(
    p: &FileProvider,
    path: &str,
    errs: &mut Errors,
) -> Option<Arc<crate::cloud::egress::EgressProxy>> {
    let url = p.proxy.as_deref()?;
    match crate::cloud::egress::EgressProxy::parse(url) {
        Ok(proxy) => Some(Arc::new(proxy)),
        Err(e) => {
            errs.push(format!("{path}.proxy"), e);
            None
        }
    }
}

/// `kind: azure`: an OpenAI-dialect HTTP provider with Azure's URL layout and credentials.
pub(super) fn azure_kind(p: &FileProvider, path: &str, errs: &mut Errors) -> Option<ProviderKind> {
    let api_version = match p.api_version.as_deref().map(str::trim) {
        Some(v) if !v.is_empty() => v.to_string(),
        _ => {
            errs.push(
                format!("{path}.api_version"),
                "required for kind azure (e.g. \"2024-10-21\")",
            );
            String::new()
        }
    };
    let key = p.api_key.as_deref().filter(|k| !k.is_empty());
    let auth = match (key, &p.entra) {
        (Some(_), Some(_)) => {
            errs.push(
                format!("{path}.entra"),
                "set either api_key or entra, not both",
            );
            None
        }
        (None, None) => {
            errs.push(
                format!("{path}.api_key"),
                "required for kind azure (or entra client credentials)",
            );
            None
        }
        (Some(k), None) => Some(AzureAuth::Key(Secret::new(k.to_string()))),
        (None, Some(e)) => entra_auth(e, &format!("{path}.entra"), proxy_of(p), errs),
    };
    let mut kind = http_kind(Dialect::OpenAi, p, None, path, errs)?;
    if let ProviderKind::Http { api_key, cloud, .. } = &mut kind {
        // The credential lives in the cloud account (sent as Azure expects), never as a bearer.
        *api_key = None;
        *cloud = Some(Arc::new(Cloud::Azure(Azure {
            api_version,
            auth: auth?,
        })));
    }
    Some(kind)
}

/// `kind: bedrock`: Converse at `base_url` (default: the region's runtime endpoint), signed
/// with the provider's AWS credentials.
pub(super) fn bedrock_kind(
    p: &FileProvider,
    path: &str,
    errs: &mut Errors,
) -> Option<ProviderKind> {
    reject_keys(
        p,
        path,
        "bedrock",
        &[("api_key", p.api_key.is_some())],
        errs,
    );
    let region = p.region.as_deref().map(str::trim).filter(|r| !r.is_empty());
    let valid_region = region.filter(|r| {
        r.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    });
    if valid_region.is_none() {
        errs.push(
            format!("{path}.region"),
            match region {
                None => "required for kind bedrock (e.g. us-east-1)",
                Some(_) => "not an AWS region name (e.g. us-east-1)",
            },
        );
    }
    let mut secret = |key: &str, v: &Option<String>| match v.as_deref().filter(|v| !v.is_empty()) {
        Some(v) => Some(v.to_string()),
        None => {
            errs.push(format!("{path}.{key}"), "required for kind bedrock");
            None
        }
    };
    let key_id = secret("aws_access_key_id", &p.aws_access_key_id);
    let secret_key = secret("aws_secret_access_key", &p.aws_secret_access_key);
    let default_url = valid_region.map(|r| format!("https://bedrock-runtime.{r}.amazonaws.com"));
    if default_url.is_none() && p.base_url.is_none() {
        return None;
    }
    let mut kind = http_kind(Dialect::Bedrock, p, default_url, path, errs)?;
    if let ProviderKind::Http { cloud, .. } = &mut kind {
        *cloud = Some(Arc::new(Cloud::Bedrock(Bedrock {
            region: valid_region?.to_string(),
            credentials: AwsCredentials {
                access_key_id: key_id?,
                secret_access_key: Secret::new(secret_key?),
                session_token: p
                    .aws_session_token
                    .as_deref()
                    .filter(|t| !t.is_empty())
                    .map(|t| Secret::new(t.to_string())),
            },
        })));
    }
    Some(kind)
}

/// `kind: vertex`: Gemini and Claude models of one project and location, with a
/// service account's OAuth tokens.
pub(super) fn vertex_kind(p: &FileProvider, path: &str, errs: &mut Errors) -> Option<ProviderKind> {
    reject_keys(p, path, "vertex", &[("api_key", p.api_key.is_some())], errs);
    let mut name = |key: &str, v: &Option<String>| {
        let v = v.as_deref().map(str::trim).filter(|v| !v.is_empty());
        match v {
            Some(v)
                if v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
            {
                Some(v.to_string())
            }
            Some(_) => {
                errs.push(
                    format!("{path}.{key}"),
                    "may hold only letters, digits, - and _",
                );
                None
            }
            None => {
                errs.push(format!("{path}.{key}"), "required for kind vertex");
                None
            }
        }
    };
    let project = name("project", &p.project);
    let location = name("location", &p.location);
    let account = match p.credentials_file.as_deref().filter(|f| !f.is_empty()) {
        None => {
            errs.push(
                format!("{path}.credentials_file"),
                "required for kind vertex",
            );
            None
        }
        Some(file) => match ServiceAccount::load(file) {
            Ok(a) => Some(a),
            Err(e) => {
                errs.push(format!("{path}.credentials_file"), e);
                None
            }
        },
    };
    let default_url = location.as_deref().map(|l| match l {
        "global" => "https://aiplatform.googleapis.com".to_string(),
        l => format!("https://{l}-aiplatform.googleapis.com"),
    });
    if default_url.is_none() && p.base_url.is_none() {
        return None;
    }
    let mut kind = http_kind(Dialect::Gemini, p, default_url, path, errs)?;
    let account = account?;
    let mut endpoint = token_endpoint(
        &account.token_uri,
        &format!("{path}.credentials_file"),
        errs,
    )?;
    endpoint.proxy = proxy_of(p);
    if let ProviderKind::Http { cloud, .. } = &mut kind {
        *cloud = Some(Arc::new(Cloud::Vertex(Vertex {
            project: project?,
            location: location?,
            tokens: Arc::new(TokenCache::new(endpoint, Box::new(account))),
        })));
    }
    Some(kind)
}

/// The provider's `proxy`, for its token fetches (an invalid URL is reported by
/// [`egress_proxy`]).
fn proxy_of(p: &FileProvider) -> Option<Arc<crate::cloud::egress::EgressProxy>> {
    let url = p.proxy.as_deref()?;
    crate::cloud::egress::EgressProxy::parse(url)
        .ok()
        .map(Arc::new)
}

fn entra_auth(
    e: &FileEntra,
    path: &str,
    proxy: Option<Arc<crate::cloud::egress::EgressProxy>>,
    errs: &mut Errors,
) -> Option<AzureAuth> {
    let mut ok = true;
    for (key, v) in [
        ("client_id", &e.client_id),
        ("client_secret", &e.client_secret),
    ] {
        if v.trim().is_empty() {
            errs.push(format!("{path}.{key}"), "must not be empty");
            ok = false;
        }
    }
    let tenant = e.tenant_id.as_deref().filter(|t| !t.trim().is_empty());
    let url = match (&e.token_url, tenant) {
        (Some(u), _) => u.clone(),
        (None, Some(t)) => entra::default_token_url(t),
        (None, None) => {
            errs.push(
                format!("{path}.tenant_id"),
                "required (or token_url) for Entra client credentials",
            );
            return None;
        }
    };
    let mut endpoint = token_endpoint(&url, &format!("{path}.token_url"), errs)?;
    endpoint.proxy = proxy;
    ok.then(|| {
        AzureAuth::Entra(Arc::new(TokenCache::new(
            endpoint,
            Box::new(entra::ClientCredentials {
                client_id: e.client_id.clone(),
                client_secret: Secret::new(e.client_secret.clone()),
            }),
        )))
    })
}

/// An OAuth token endpoint URL, parsed (errors under `key`).
pub(super) fn token_endpoint(url: &str, key: &str, errs: &mut Errors) -> Option<TokenEndpoint> {
    match parse_endpoint(url) {
        Ok(endpoint) => {
            let path = if endpoint.path_prefix.is_empty() {
                "/".to_string()
            } else {
                endpoint.path_prefix.clone()
            };
            Some(TokenEndpoint {
                endpoint,
                path,
                proxy: None,
            })
        }
        Err(msg) => {
            errs.push(key.to_string(), msg);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{parse, ProviderKind};

    fn conf(provider: &str) -> String {
        format!(
            "server:\n  listen: [\"127.0.0.1:8080\"]\nproviders:\n  - name: az\n{provider}models:\n  - name: chat\n    deployments:\n      - provider: az\n        model: gpt4o\n"
        )
    }

    fn errors(provider: &str) -> Vec<String> {
        match parse(&conf(provider), &|_| None) {
            Ok(_) => Vec::new(),
            Err(e) => {
                e.0.into_iter()
                    .map(|e| format!("{}: {}", e.path, e.message))
                    .collect()
            }
        }
    }

    #[test]
    fn azure_keys_are_checked_with_their_paths() {
        let base = "    kind: azure\n    base_url: https://r.openai.azure.com\n";
        assert_eq!(
            errors(&format!("{base}    api_key: k\n")),
            vec!["providers[0].api_version: required for kind azure (e.g. \"2024-10-21\")"]
        );
        assert_eq!(
            errors(&format!("{base}    api_version: \"2024-10-21\"\n")),
            vec!["providers[0].api_key: required for kind azure (or entra client credentials)"]
        );
        assert_eq!(
            errors(&format!(
                "{base}    api_version: v\n    entra: {{ client_id: a, client_secret: b }}\n"
            )),
            vec!["providers[0].entra.tenant_id: required (or token_url) for Entra client credentials"]
        );
        assert_eq!(
            errors(&format!(
                "{base}    api_version: v\n    api_key: k\n    entra: {{ tenant_id: t, client_id: a, client_secret: b }}\n"
            )),
            vec!["providers[0].entra: set either api_key or entra, not both"]
        );
        assert_eq!(
            errors(
                "    kind: openai\n    base_url: https://api.openai.com/v1\n    api_version: v\n    headers: { Host: x, \"bad name\": y }\n"
            ),
            vec![
                "providers[0].api_version: does not apply to kind openai",
                "providers[0].headers.Host: is set by the gateway and cannot be configured",
                "providers[0].headers.bad name: not a valid header name",
            ]
        );
    }

    #[test]
    fn bedrock_keys_are_checked_with_their_paths() {
        assert_eq!(
            errors("    kind: bedrock\n    aws_access_key_id: AKID\n    health_check: { interval: 5s }\n"),
            vec![
                "providers[0].region: required for kind bedrock (e.g. us-east-1)",
                "providers[0].aws_secret_access_key: required for kind bedrock",
            ]
        );
        let c = parse(
            &conf("    kind: bedrock\n    region: eu-west-1\n    aws_access_key_id: AKID\n    aws_secret_access_key: s\n    aws_session_token: \"\"\n"),
            &|_| None,
        )
        .unwrap();
        let ProviderKind::Http {
            endpoint, cloud, ..
        } = &c.providers[0].kind
        else {
            panic!("an HTTP provider");
        };
        assert_eq!(
            endpoint.base_url,
            "https://bedrock-runtime.eu-west-1.amazonaws.com"
        );
        assert_eq!(cloud.as_ref().unwrap().kind(), "bedrock");
        assert_eq!(
            errors("    kind: openai\n    base_url: https://x\n    region: us-east-1\n"),
            vec!["providers[0].region: does not apply to kind openai"]
        );
    }

    #[test]
    fn vertex_keys_are_checked_with_their_paths() {
        let errs = errors(
            "    kind: vertex\n    project: p\n    credentials_file: /nonexistent/sa.json\n",
        );
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert_eq!(errs[0], "providers[0].location: required for kind vertex");
        assert!(
            errs[1]
                .starts_with("providers[0].credentials_file: cannot read \"/nonexistent/sa.json\""),
            "{errs:?}"
        );
        let dir = std::env::temp_dir().join(format!("sy-vertex-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("bad.json");
        std::fs::write(&bad, r#"{"type":"service_account","client_email":"a@b","private_key":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}"#).unwrap();
        let errs = errors(&format!(
            "    kind: vertex\n    project: p\n    location: us-east5\n    credentials_file: {}\n",
            bad.display()
        ));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("providers[0].credentials_file: "),
            "{errs:?}"
        );
        assert!(!errs[0].contains("AAAA"), "the key is never quoted");
    }

    #[test]
    fn azure_provider_loads() {
        let c = parse(
            &conf("    kind: azure\n    base_url: https://r.openai.azure.com\n    api_version: \"2024-10-21\"\n    entra: { tenant_id: t1, client_id: a, client_secret: b }\n    headers: { x-team: blue }\n"),
            &|_| None,
        )
        .unwrap();
        let p = &c.providers[0];
        assert_eq!(p.kind.name(), "azure");
        let ProviderKind::Http {
            api_key,
            headers,
            cloud,
            ..
        } = &p.kind
        else {
            panic!("an HTTP provider");
        };
        assert!(api_key.is_none());
        assert_eq!(headers[0].0, "x-team");
        let cloud = cloud.as_ref().unwrap();
        assert_eq!(
            cloud.api_path("/chat/completions", "gpt4o", false),
            "/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21"
        );
        assert!(format!("{cloud:?}").contains("login.microsoftonline.com"));
        assert!(!format!("{cloud:?}").contains("client_secret: \"b\""));
    }
}
