//! The `server`, `telemetry` and log-target sections.

use super::*;

pub(super) fn server_settings(s: &FileServer, errs: &mut Errors) -> ServerSettings {
    if s.listen.is_empty() {
        errs.push("server.listen", "at least one listen address is required");
    }
    for (i, addr) in s.listen.iter().enumerate() {
        if addr.parse::<SocketAddr>().is_err() {
            errs.push(
                format!("server.listen[{i}]"),
                format!("invalid address {addr:?} (expected IP:PORT, e.g. 127.0.0.1:8080)"),
            );
        }
    }
    if let Some(addr) = &s.admin_listen {
        if addr.parse::<SocketAddr>().is_err() {
            errs.push(
                "server.admin_listen",
                format!("invalid address {addr:?} (expected IP:PORT)"),
            );
        } else if s.listen.iter().any(|l| l == addr) {
            errs.push(
                "server.admin_listen",
                "must differ from every server.listen address",
            );
        }
    }
    let tls = s.tls.as_ref().and_then(|t| {
        let mut ok = true;
        if t.listen.parse::<SocketAddr>().is_err() {
            errs.push(
                "server.tls.listen",
                format!("invalid address {:?} (expected IP:PORT)", t.listen),
            );
            ok = false;
        } else if s.listen.contains(&t.listen) || s.admin_listen.as_ref() == Some(&t.listen) {
            errs.push(
                "server.tls.listen",
                "must differ from the plain-text and admin listeners",
            );
            ok = false;
        }
        if let Err(e) = pingora_rustls::load_certs_and_key_files(&t.cert, &t.key)
            .map_err(|e| e.to_string())
            .and_then(|r| r.ok_or_else(|| "no certificate found".to_string()))
        {
            errs.push(
                "server.tls",
                format!("cannot load cert {:?} / key {:?}: {e}", t.cert, t.key),
            );
            ok = false;
        }
        ok.then(|| TlsListener {
            listen: t.listen.clone(),
            cert_path: t.cert.clone(),
            key_path: t.key.clone(),
        })
    });
    let admin_token = s
        .admin_token
        .as_ref()
        .filter(|t| !t.is_empty())
        .map(|t| Secret::new(t.clone()));
    if admin_token.as_ref().is_some_and(|t| t.expose().len() < 16) {
        errs.push("server.admin_token", "must be at least 16 characters");
    }
    let threads = match s.threads {
        Some(Lenient(0)) => {
            errs.push("server.threads", "must be at least 1");
            1
        }
        Some(Lenient(n)) => n,
        None => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
    };
    let max_body_bytes = match s.max_body_bytes {
        Some(Lenient(0)) => {
            errs.push("server.max_body_bytes", "must be greater than 0");
            DEFAULT_MAX_BODY
        }
        Some(Lenient(n)) => n,
        None => DEFAULT_MAX_BODY,
    };
    let max_header_bytes = match s.max_header_bytes {
        Some(Lenient(n)) if n < 1024 => {
            errs.push("server.max_header_bytes", "must be at least 1024");
            DEFAULT_MAX_HEADER
        }
        Some(Lenient(n)) => n,
        None => DEFAULT_MAX_HEADER,
    };
    let grace_period = errs.duration(
        "server.grace_period".into(),
        s.grace_period.as_deref(),
        Duration::from_secs(30),
    );
    let client_timeouts = client_timeouts(s.client_timeouts.as_ref(), errs);
    ServerSettings {
        listen: s.listen.clone(),
        admin_listen: s.admin_listen.clone(),
        threads,
        max_body_bytes,
        max_header_bytes,
        grace_period,
        tls,
        admin_token,
        public_health: s.public_health.map(|p| p.0).unwrap_or(false),
        status_page: s.status_page.map(|p| p.0).unwrap_or(true),
        max_hops: s.max_hops.map(|h| h.0).unwrap_or(8),
        client_timeouts,
        replica_id: replica_id(s.replica_id.as_deref(), errs),
    }
}

/// `server.replica_id`, or the host name (then `localhost` where none can be read).
fn replica_id(given: Option<&str>, errs: &mut Errors) -> String {
    if let Some(id) = given {
        let ok = !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !ok {
            errs.push(
                "server.replica_id",
                "must be 1-64 characters of [A-Za-z0-9._-]",
            );
        }
        return id.to_string();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

pub(super) fn client_timeouts(t: Option<&FileClientTimeouts>, errs: &mut Errors) -> ClientTimeouts {
    let d = ClientTimeouts::default();
    let Some(t) = t else { return d };
    let p = |k: &str| format!("server.client_timeouts.{k}");
    let out = ClientTimeouts {
        header: errs.duration(p("header"), t.header.as_deref(), d.header),
        body: errs.duration(p("body"), t.body.as_deref(), d.body),
        idle: errs.duration(p("idle"), t.idle.as_deref(), d.idle),
    };
    errs.positive(p, &[("header", out.header), ("body", out.body)]);
    // Pingora keeps connections alive for whole seconds (and 0 would mean forever).
    if out.idle < Duration::from_secs(1) || out.idle.subsec_nanos() != 0 {
        errs.push(p("idle"), "must be a whole number of seconds, at least 1s");
    }
    out
}

pub(super) fn log_target(value: Option<&str>, key: &str, errs: &mut Errors) -> AccessLog {
    match value {
        None | Some("stdout") => AccessLog::Stdout,
        Some("off") => AccessLog::Off,
        Some("") => {
            errs.push(key, "must be stdout, off or a file path");
            AccessLog::Off
        }
        Some(path) => AccessLog::File(path.into()),
    }
}

pub(super) fn telemetry(t: Option<&FileTelemetry>, errs: &mut Errors) -> TelemetrySettings {
    TelemetrySettings {
        access_log: log_target(
            t.and_then(|t| t.access_log.as_deref()),
            "telemetry.access_log",
            errs,
        ),
        audit_log: log_target(
            t.and_then(|t| t.audit_log.as_deref()),
            "telemetry.audit_log",
            errs,
        ),
        otlp: t.and_then(|t| t.otlp.as_ref()).and_then(|o| otlp(o, errs)),
    }
}

fn otlp(o: &FileOtlp, errs: &mut Errors) -> Option<OtlpSettings> {
    let ratio = o.sample_ratio.map(|r| r.0).unwrap_or(1.0);
    if !(0.0..=1.0).contains(&ratio) {
        errs.push("telemetry.otlp.sample_ratio", "must be between 0 and 1");
    }
    let endpoint = match super::super::endpoint::parse_endpoint(o.endpoint.trim()) {
        Ok(e) => e,
        Err(msg) => {
            errs.push("telemetry.otlp.endpoint", msg);
            return None;
        }
    };
    let headers = o
        .headers
        .iter()
        .flatten()
        .map(|(k, v)| (k.to_ascii_lowercase(), Secret::new(v.clone())))
        .collect();
    Some(OtlpSettings {
        endpoint,
        sample_ratio: ratio.clamp(0.0, 1.0),
        headers,
    })
}
