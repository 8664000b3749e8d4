//! TLS to PostgreSQL, as libpq's URLs ask for it: `sslmode` (`disable`, `prefer` — the default —,
//! `require`, `verify-ca`, `verify-full`), `sslrootcert` (a PEM file of trusted roots, or
//! `system` for the machine's store), `sslcert` and `sslkey` (a client certificate).
//!
//! tokio-postgres knows only `disable`/`prefer`/`require` and none of the file parameters, so this
//! module takes those parameters out of the store's URL, hands tokio-postgres the rest with the
//! mode it knows (`verify-*` are `require` to it), and builds the rustls configuration that
//! enforces what was asked: no check of the server's certificate for `prefer` and `require` (as
//! libpq: encryption against a passive listener), the chain against the roots for `verify-ca`,
//! the chain and the host name for `verify-full`; `require` with a `sslrootcert` verifies the
//! chain, as libpq does. The handshake itself goes through `tokio-postgres-rustls` (which also
//! gives SCRAM's channel binding) on ring, the provider Pingora already links.
//!
//! Differences from libpq, on purpose: `verify-*` without `sslrootcert` trusts the system's roots
//! (libpq would look for `~/.postgresql/root.crt`, a file a service account rarely has); the
//! key-value form of the connection string (`host=… sslmode=…`) takes only tokio-postgres's own
//! parameters. It owns the URL's TLS parameters and the TLS configuration, nothing about when to
//! connect or what is stored.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// Why the store's URL or its TLS files cannot be used. Never carries the URL (it may hold a
/// password).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("not a valid PostgreSQL URL")]
    Url,
    #[error("sslmode `{0}` is not one of disable, prefer, require, verify-ca, verify-full")]
    Mode(String),
    #[error("{param} {path}: {reason}")]
    File {
        param: &'static str,
        path: String,
        reason: String,
    },
    #[error("sslcert and sslkey go together")]
    ClientPair,
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

/// How the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Encryption only (`prefer`, `require`).
    None,
    /// The chain against the roots (`verify-ca`, or `require` with `sslrootcert`).
    Chain,
    /// The chain and the host name (`verify-full`).
    Full,
}

/// The TLS parameters taken out of a store URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    pub mode: Option<String>,
    pub root_cert: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
}

/// A store URL read: the connection settings and the TLS connector they need.
pub struct Connection {
    pub config: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
}

/// Reads `url` (postgres:// or postgresql://, or tokio-postgres's key-value form) and builds the
/// TLS it asks for; the files it names are read now.
pub fn parse(url: &str) -> Result<Connection, TlsError> {
    let (rest, params) = split(url);
    let mut config: tokio_postgres::Config = rest.parse().map_err(|_| TlsError::Url)?;
    let verify = match params.mode.as_deref() {
        None => None,
        Some("disable") => {
            config.ssl_mode(SslMode::Disable);
            None
        }
        Some("prefer") => {
            config.ssl_mode(SslMode::Prefer);
            None
        }
        Some("require") => {
            config.ssl_mode(SslMode::Require);
            Some(if params.root_cert.is_some() {
                Verify::Chain
            } else {
                Verify::None
            })
        }
        Some("verify-ca") => {
            config.ssl_mode(SslMode::Require);
            Some(Verify::Chain)
        }
        Some("verify-full") => {
            config.ssl_mode(SslMode::Require);
            Some(Verify::Full)
        }
        Some(other) => return Err(TlsError::Mode(other.to_string())),
    };
    let tls = client_config(verify.unwrap_or(Verify::None), &params)?;
    Ok(Connection {
        config,
        tls: MakeRustlsConnect::new(tls),
    })
}

/// Takes `sslmode`, `sslrootcert`, `sslcert` and `sslkey` out of a URL's query (percent-decoded);
/// the rest of the URL is returned as it was. A key-value connection string is returned whole.
pub fn split(url: &str) -> (String, Params) {
    let mut params = Params::default();
    let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
    let Some((base, query)) = url.split_once('?').filter(|_| is_url) else {
        return (url.to_string(), params);
    };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let value = || {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        };
        match k {
            "sslmode" => params.mode = Some(value()),
            "sslrootcert" => params.root_cert = Some(value()),
            "sslcert" => params.cert = Some(value()),
            "sslkey" => params.key = Some(value()),
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (rest, params)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_config(verify: Verify, params: &Params) -> Result<rustls::ClientConfig, TlsError> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let verifier: Arc<dyn ServerCertVerifier> = match verify {
        Verify::None => Arc::new(Unverified(provider.clone())),
        Verify::Chain | Verify::Full => {
            let roots = Arc::new(roots(params.root_cert.as_deref())?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
            if verify == Verify::Full {
                webpki
            } else {
                Arc::new(AnyName(webpki))
            }
        }
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match (&params.cert, &params.key) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => {
            let chain = certs("sslcert", cert)?;
            let key = private_key(key)?;
            Ok(builder.with_client_auth_cert(chain, key)?)
        }
        _ => Err(TlsError::ClientPair),
    }
}

fn file_error(param: &'static str, path: &str, reason: impl ToString) -> TlsError {
    TlsError::File {
        param,
        path: path.to_string(),
        reason: reason.to_string(),
    }
}

fn certs(param: &'static str, path: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|e| file_error(param, path, e))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(param, path, e))?;
    if certs.is_empty() {
        return Err(file_error(param, path, "no PEM certificate in it"));
    }
    Ok(certs)
}

fn private_key(path: &str) -> Result<rustls::pki_types::PrivateKeyDer<'static>, TlsError> {
    let pem = std::fs::read(path).map_err(|e| file_error("sslkey", path, e))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| file_error("sslkey", path, e))?
        .ok_or_else(|| file_error("sslkey", path, "no PEM private key in it"))
}

/// The roots of `sslrootcert`: a PEM file, or the system's store when `system` or absent.
fn roots(root_cert: Option<&str>) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    match root_cert {
        Some(path) if path != "system" => {
            for cert in certs("sslrootcert", path)? {
                store
                    .add(cert)
                    .map_err(|e| file_error("sslrootcert", path, e))?;
            }
        }
        _ => {
            let system = rustls_native_certs::load_native_certs()
                .map_err(|e| file_error("sslrootcert", "system", e))?;
            let (added, _ignored) = store.add_parsable_certificates(system);
            if added == 0 {
                return Err(file_error("sslrootcert", "system", "no usable root"));
            }
        }
    }
    Ok(store)
}

/// `verify-ca`: the chain must lead to a trusted root; the name in it is not compared.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain first and the name last: a name error means the chain held.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` / `require`: any certificate (the handshake's signatures are still checked).
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_parameters_leave_the_url_and_the_rest_stays() {
        let (rest, p) = split(
            "postgres://sy@db:5432/sy?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Fca%20one.pem",
        );
        assert_eq!(rest, "postgres://sy@db:5432/sy?application_name=x");
        assert_eq!(p.mode.as_deref(), Some("verify-full"));
        assert_eq!(p.root_cert.as_deref(), Some("/etc/ca one.pem"));
        let (rest, p) = split("postgres://sy@db/sy?sslmode=require");
        assert_eq!(
            (rest.as_str(), p.mode.as_deref()),
            ("postgres://sy@db/sy", Some("require"))
        );
        let (rest, p) = split("host=db sslmode=require");
        assert_eq!(
            (rest.as_str(), p),
            ("host=db sslmode=require", Params::default())
        );
    }

    #[test]
    fn modes_map_onto_what_tokio_postgres_knows() {
        let c = parse("postgres://sy@db/sy?sslmode=require").unwrap();
        assert_eq!(c.config.get_ssl_mode(), SslMode::Require);
        let c = parse("postgres://sy@db/sy?sslmode=disable").unwrap();
        assert_eq!(c.config.get_ssl_mode(), SslMode::Disable);
        let c = parse("postgres://sy@db/sy").unwrap();
        assert_eq!(c.config.get_ssl_mode(), SslMode::Prefer);
        assert!(matches!(
            parse("postgres://sy@db/sy?sslmode=allow-all"),
            Err(TlsError::Mode(_))
        ));
        let missing = parse("postgres://sy@db/sy?sslmode=verify-full&sslrootcert=/nonexistent.pem");
        assert!(
            matches!(
                &missing,
                Err(TlsError::File {
                    param: "sslrootcert",
                    ..
                })
            ),
            "{:?}",
            missing.err()
        );
        assert!(matches!(
            parse("postgres://sy@db/sy?sslmode=require&sslcert=/a.pem"),
            Err(TlsError::ClientPair)
        ));
    }
}
