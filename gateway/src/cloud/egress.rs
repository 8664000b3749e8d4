//! `proxy:` on any HTTP provider: egress through an HTTP CONNECT proxy
//! (`http://[user:pass@]host:port`), TLS to the provider inside the tunnel. Pingora 0.9.1's
//! `HttpPeer::proxy` speaks CONNECT (and then TLS, when the peer is https) but reaches the proxy
//! only over a Unix socket (`Proxy::next_hop`), so each configured proxy gets a local bridge: a
//! Unix socket in the temp dir whose connections are piped to the proxy's TCP address. Bridges
//! are shared by proxy address across reloads. Owns the bridge and the peer's proxy settings;
//! must not touch requests (the CONNECT itself is Pingora's).

use base64::Engine;
use pingora_core::upstreams::peer::{HttpPeer, Proxy};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// A configured egress proxy.
pub struct EgressProxy {
    /// `host:port` of the proxy.
    pub address: String,
    /// `Proxy-Authorization: Basic …` when the URL has credentials.
    authorization: Option<Vec<u8>>,
}

impl std::fmt::Debug for EgressProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressProxy")
            .field("address", &self.address)
            .field("authenticated", &self.authorization.is_some())
            .finish()
    }
}

impl EgressProxy {
    /// Parses `http://[user:pass@]host:port` (errors never quote the credentials).
    pub fn parse(url: &str) -> Result<EgressProxy, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or("must be an http:// URL (http://[user:pass@]host:port)")?;
        let rest = rest.trim_end_matches('/');
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        if hostport.is_empty() || hostport.contains('/') || hostport.contains('?') {
            return Err("must be http://[user:pass@]host:port, with no path".into());
        }
        let address = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0) => {
                hostport.to_string()
            }
            _ => return Err("needs a host and a port (e.g. http://proxy.internal:3128)".into()),
        };
        let authorization = userinfo.map(|u| {
            let decoded = percent_encoding::percent_decode_str(u).decode_utf8_lossy();
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(decoded.as_bytes())
            )
            .into_bytes()
        });
        Ok(EgressProxy {
            address,
            authorization,
        })
    }

    /// Sends `peer` (to `host:port`) through this proxy: CONNECT `host:port` over the bridge.
    pub fn apply(&self, peer: &mut HttpPeer, host: &str, port: u16) -> Result<(), String> {
        let next_hop = bridge(&self.address)?;
        let mut headers = BTreeMap::new();
        if let Some(a) = &self.authorization {
            headers.insert("proxy-authorization".to_string(), a.clone());
        }
        peer.proxy = Some(Proxy {
            next_hop: next_hop.into_boxed_path(),
            host: host.to_string(),
            port,
            headers,
        });
        Ok(())
    }
}

/// The Unix socket bridged to the proxy at `address`, started on first use.
fn bridge(address: &str) -> Result<PathBuf, String> {
    static BRIDGES: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
    let mut map = BRIDGES.lock().unwrap_or_else(|e| e.into_inner());
    let map = map.get_or_insert_with(HashMap::new);
    if let Some(path) = map.get(address) {
        return Ok(path.clone());
    }
    let path = std::env::temp_dir().join(format!(
        "switchyard-egress-{}-{}.sock",
        std::process::id(),
        map.len()
    ));
    let _ = std::fs::remove_file(&path);
    let std_listener = std::os::unix::net::UnixListener::bind(&path)
        .map_err(|e| format!("cannot bind the egress bridge {}: {e}", path.display()))?;
    std_listener
        .set_nonblocking(true)
        .map_err(|e| e.to_string())?;
    let target: Arc<str> = address.into();
    // Its own thread and runtime: the bridge outlives any one Pingora service runtime.
    std::thread::Builder::new()
        .name("egress-bridge".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return log::error!("egress bridge runtime: {e}"),
            };
            rt.block_on(async move {
                let listener = match tokio::net::UnixListener::from_std(std_listener) {
                    Ok(l) => l,
                    Err(e) => return log::error!("egress bridge: {e}"),
                };
                while let Ok((mut local, _)) = listener.accept().await {
                    let target = target.clone();
                    tokio::spawn(async move {
                        match tokio::net::TcpStream::connect(&*target).await {
                            Ok(mut remote) => {
                                let _ =
                                    tokio::io::copy_bidirectional(&mut local, &mut remote).await;
                            }
                            Err(e) => log::warn!("egress proxy {target} unreachable: {e}"),
                        }
                    });
                }
            });
        })
        .map_err(|e| format!("cannot start the egress bridge: {e}"))?;
    map.insert(address.to_string(), path.clone());
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls() {
        let p = EgressProxy::parse("http://proxy.internal:3128").unwrap();
        assert_eq!(p.address, "proxy.internal:3128");
        assert!(p.authorization.is_none());
        let p = EgressProxy::parse("http://us%40er:p%3Ass@10.0.0.1:8080/").unwrap();
        assert_eq!(p.address, "10.0.0.1:8080");
        assert_eq!(
            p.authorization.as_deref(),
            Some(&b"Basic dXNAZXI6cDpzcw=="[..])
        );
        assert!(!format!("{p:?}").contains("dXN"));
        for bad in [
            "https://p:1",
            "http://p",
            "http://p:0",
            "http://p:1/x",
            "socks5://p:1",
        ] {
            assert!(EgressProxy::parse(bad).is_err(), "{bad}");
        }
    }
}
