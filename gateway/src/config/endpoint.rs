//! Upstream URLs (`base_url`, `jwks_url`, introspection URLs) parsed into an [`HttpEndpoint`]:
//! scheme, host, port, path prefix. Shared by the provider and auth validators, so neither imports
//! the other.

use super::model::HttpEndpoint;

/// Parses `http(s)://host[:port][/prefix]`.
pub(crate) fn parse_endpoint(url: &str) -> Result<HttpEndpoint, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("invalid URL {url:?}: {e}"))?;
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(format!("URL {url:?} must start with http:// or https://")),
    };
    let authority = uri
        .authority()
        .ok_or_else(|| format!("URL {url:?} has no host"))?;
    if authority.as_str().contains('@') {
        return Err("credentials in the URL are not allowed; use api_key".into());
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("URL {url:?} has no host"));
    }
    if uri.query().is_some() {
        return Err(format!("URL {url:?} must not have a query string"));
    }
    let default_port = if tls { 443 } else { 80 };
    let port = authority.port_u16().unwrap_or(default_port);
    let host_header = if port == default_port {
        authority.host().to_string()
    } else {
        format!("{}:{port}", authority.host())
    };
    let path_prefix = uri.path().trim_end_matches('/').to_string();
    Ok(HttpEndpoint {
        base_url: url.to_string(),
        tls,
        host: host.to_string(),
        port,
        path_prefix,
        host_header,
    })
}
