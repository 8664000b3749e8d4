//! Configuration: YAML file → validated [`Config`].
//!
//! Owns reading the file, `${VAR}` expansion ([`env`]), the file model ([`file`], private to this
//! module), validation ([`validate`]) and the validated model ([`model`]) that the rest of the
//! gateway uses. Errors always carry the key path of what is wrong. It must not start anything:
//! loading a config has no side effects, so `switchyard check` and reloads can call it freely.

pub(crate) mod endpoint;
mod env;
pub(crate) mod file;
mod lines;
pub mod model;
mod validate;
pub(crate) mod validate_auth;

pub use model::*;
pub use validate_auth::{parse_expiry, parse_net, DEFAULT_MAX_FAILURES_PER_MINUTE};

use std::fmt;
use std::path::Path;

/// One problem in a configuration file, with the key path it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// e.g. `models[1].deployments[0].provider`; empty for whole-file problems.
    pub path: String,
    pub message: String,
    /// The line (1-based) where `path`, or its closest written parent, is in the file.
    pub line: Option<usize>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)?;
        } else {
            write!(f, "{}: {}", self.path, self.message)?;
        }
        match self.line {
            Some(line) => write!(f, " (line {line})"),
            None => Ok(()),
        }
    }
}

/// Every problem found in a configuration file.
#[derive(Debug, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

fn single(path: impl Into<String>, message: impl Into<String>) -> ConfigErrors {
    ConfigErrors(vec![ConfigError {
        path: path.into(),
        message: message.into(),
        line: None,
    }])
}

/// Reads and validates the file at `path`, expanding variables from the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| single("", format!("cannot read {}: {e}", path.display())))?;
    parse(&text, &|name| std::env::var(name).ok())
}

/// Parses and validates configuration text, reading variables through `lookup`. Errors show
/// the text as written: a value that came from the environment appears as its `${NAME}`.
pub fn parse(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigErrors> {
    let redactor = env::Redactor::default();
    let recording = redactor.recording(lookup);
    parse_expanded(text, &recording).map_err(|ConfigErrors(errors)| {
        let lines = lines::LineMap::of(text);
        let mut errors: Vec<ConfigError> = errors
            .into_iter()
            .map(|e| ConfigError {
                line: e.line.or_else(|| lines.line(&e.path)),
                path: redactor.redact(&e.path),
                message: redactor.redact(&e.message),
            })
            .collect();
        // In file order (whole-file problems first), as an editor would list them.
        errors.sort_by_key(|e| e.line.unwrap_or(0));
        ConfigErrors(errors)
    })
}

fn parse_expanded(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let mut tree: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|e| single("", format!("invalid YAML: {e}")))?;
    if tree.is_null() {
        return Err(single("", "the file is empty"));
    }
    let mut env_errors = Vec::new();
    env::expand_tree(&mut tree, lookup, &mut env_errors);
    if !env_errors.is_empty() {
        return Err(ConfigErrors(
            env_errors
                .into_iter()
                .map(|e| ConfigError {
                    path: e.path,
                    message: e.message,
                    line: None,
                })
                .collect(),
        ));
    }
    // Every problem is reported, not just the first: an unknown key is removed from the tree and
    // a value of the wrong type replaced by a stand-in of the right one, and parsing resumes. Any
    // other structural error (a missing field) stops there.
    let mut structural = Vec::new();
    let mut repaired: Vec<String> = Vec::new();
    let mut inserted: Vec<String> = Vec::new();
    let file = loop {
        match serde_path_to_error::deserialize::<_, file::FileConfig>(tree.clone()) {
            Ok(f) => break Some(f),
            Err(e) => {
                let path = e.path().to_string();
                let path = if path == "." { String::new() } else { path };
                let segments: Vec<String> = e
                    .path()
                    .iter()
                    .map(|s| match s {
                        serde_path_to_error::Segment::Map { key } => key.clone(),
                        serde_path_to_error::Segment::Seq { index } => format!("[{index}]"),
                        _ => String::new(),
                    })
                    .collect();
                let message = e.into_inner().to_string();
                let unknown = message
                    .strip_prefix("unknown field `")
                    .and_then(|m| m.split('`').next());
                let missing = message
                    .strip_prefix("missing field `")
                    .and_then(|m| m.split('`').next());
                let resumed = if let Some(key) = unknown {
                    remove_key(&mut tree, &segments, key)
                } else if let Some(key) = missing {
                    // A null first; its "invalid type: null" then gets a stand-in, unreported.
                    let at = if path.is_empty() {
                        key.to_string()
                    } else {
                        format!("{path}.{key}")
                    };
                    inserted.push(at);
                    insert_null(&mut tree, &segments, key)
                } else {
                    let retry = repaired.contains(&path);
                    repaired.push(path.clone());
                    !retry
                        && stand_in(&message)
                            .is_some_and(|v| replace_value(&mut tree, &segments, v))
                };
                let stand_in_for_inserted =
                    inserted.contains(&path) && !message.starts_with("missing");
                if !stand_in_for_inserted {
                    structural.push(ConfigError {
                        path,
                        message,
                        line: None,
                    });
                }
                if !resumed || structural.len() >= 100 {
                    break None;
                }
            }
        }
    };
    match (file, structural.is_empty()) {
        (Some(f), true) => validate::validate(f).map_err(ConfigErrors),
        (Some(f), false) => {
            // The rest parsed: report what validation finds too, except about stand-in values.
            if let Err(more) = validate::validate(f) {
                structural.extend(
                    more.into_iter()
                        .filter(|e| !repaired.iter().any(|r| is_within(&e.path, r))),
                );
            }
            Err(ConfigErrors(structural))
        }
        (None, _) => Err(ConfigErrors(structural)),
    }
}

/// Whether key path `path` is `root` or below it.
fn is_within(path: &str, root: &str) -> bool {
    path.strip_prefix(root)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

/// A value of the type a serde "invalid type/value … expected X" message asks for, so that
/// parsing can go on to find the file's other problems (the value itself is never used: the
/// file is refused).
fn stand_in(message: &str) -> Option<serde_yaml::Value> {
    use serde_yaml::Value;
    if !(message.starts_with("invalid type") || message.starts_with("invalid value")) {
        return None;
    }
    let expected = message.rsplit("expected ").next()?;
    let has = |words: &[&str]| words.iter().any(|w| expected.contains(w));
    Some(if has(&["f32", "f64", "float"]) {
        Value::from(1.0)
    } else if has(&["u8", "u16", "u32", "u64", "usize", "i32", "i64", "integer"]) {
        Value::from(1)
    } else if has(&["bool"]) {
        Value::Bool(false)
    } else if has(&["sequence"]) {
        Value::Sequence(Vec::new())
    } else if has(&["map", "struct"]) {
        Value::Mapping(serde_yaml::Mapping::new())
    } else if has(&["string", "char"]) {
        Value::String(String::new())
    } else {
        Value::Null
    })
}

/// Replaces the value at `path` with `value`.
fn replace_value(tree: &mut serde_yaml::Value, path: &[String], value: serde_yaml::Value) -> bool {
    node_at(tree, path).map(|node| *node = value).is_some()
}

/// Adds `key: null` to the mapping at `path`.
fn insert_null(tree: &mut serde_yaml::Value, path: &[String], key: &str) -> bool {
    node_at(tree, path)
        .and_then(|node| node.as_mapping_mut())
        .map(|m| {
            m.insert(
                serde_yaml::Value::String(key.to_string()),
                serde_yaml::Value::Null,
            )
        })
        .is_some()
}

/// Removes mapping key `key` found at `path` (which may or may not end with the key itself).
fn remove_key(tree: &mut serde_yaml::Value, path: &[String], key: &str) -> bool {
    let parent_path = match path.last() {
        Some(last) if last == key => &path[..path.len() - 1],
        _ => path,
    };
    node_at(tree, parent_path)
        .and_then(|node| node.as_mapping_mut())
        .and_then(|m| m.remove(serde_yaml::Value::String(key.to_string())))
        .is_some()
}

/// The node at `path` (mapping keys and `[i]` sequence indexes).
fn node_at<'a>(
    tree: &'a mut serde_yaml::Value,
    path: &[String],
) -> Option<&'a mut serde_yaml::Value> {
    let mut node = tree;
    for seg in path {
        node = if let Some(i) = seg.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            let i = i.parse::<usize>().ok()?;
            node.as_sequence_mut()?.get_mut(i)?
        } else {
            node.as_mapping_mut()?
                .get_mut(serde_yaml::Value::String(seg.clone()))?
        };
    }
    Some(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    const MINIMAL: &str = r#"
server:
  listen: ["127.0.0.1:8080"]
providers:
  - name: sim
    kind: mock
models:
  - name: chat
    deployments:
      - provider: sim
        model: mock-1
"#;

    #[test]
    fn minimal_file_loads_with_defaults() {
        let c = parse(MINIMAL, &no_env).unwrap();
        assert_eq!(c.server.max_body_bytes, 8 * 1024 * 1024);
        assert_eq!(c.models[0].deployments[0].provider.name, "sim");
        assert_eq!(c.models[0].routing.retry.attempts, 3);
        assert_eq!(c.telemetry.access_log, AccessLog::Stdout);
    }

    fn errors_of(text: &str) -> Vec<String> {
        match parse(text, &|n| (n == "SET").then(|| "4".to_string())) {
            Ok(_) => panic!("expected errors"),
            // Lines are checked in `lines` and by the `check` integration test.
            Err(e) => {
                e.0.into_iter()
                    .map(|e| ConfigError { line: None, ..e }.to_string())
                    .collect()
            }
        }
    }

    #[test]
    fn a_semantic_cache_names_a_model_and_a_threshold() {
        let text = format!(
            "{MINIMAL}cache: {{ kind: memory, semantic: {{ embedding_model: chat, threshold: 0.9 }} }}\n"
        );
        let c = parse(&text, &no_env).expect("loads");
        let sem = c.cache.semantic.expect("semantic");
        assert_eq!((sem.embedding_model.as_str(), sem.threshold), ("chat", 0.9));
        assert_eq!(sem.max_entries, 10_000);
        let text = format!(
            "{MINIMAL}cache: {{ semantic: {{ embedding_model: nope, threshold: 1.5, max_entries: 0 }} }}\n"
        );
        let errors = errors_of(&text);
        assert_eq!(errors.len(), 3, "{errors:?}");
        for path in [
            "cache.semantic.embedding_model",
            "cache.semantic.threshold",
            "cache.semantic.max_entries",
        ] {
            assert!(errors.iter().any(|e| e.starts_with(path)), "{errors:?}");
        }
    }

    #[test]
    fn unknown_provider_is_reported_with_its_path() {
        let text = MINIMAL.replace("provider: sim", "provider: opnai");
        assert_eq!(
            errors_of(&text),
            vec![r#"models[0].deployments[0].provider: unknown provider "opnai""#]
        );
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_path() {
        let text = MINIMAL.replace("    model: mock-1", "    model: mock-1\n        modle: x");
        let errs = errors_of(&text);
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("models[0].deployments[0]"), "{errs:?}");
        assert!(errs[0].contains("unknown field `modle`"), "{errs:?}");
    }

    #[test]
    fn every_unknown_key_is_reported_with_validation_errors() {
        let text = MINIMAL
            .replace("    kind: mock", "    kind: mock\n    colour: red")
            .replace(
                "        model: mock-1",
                "        model: mock-1\n        modle: x",
            )
            .replace("  - name: chat", "  - name: chat\n    strategy: fastest");
        let errs = errors_of(&text);
        assert!(
            errs.iter()
                .any(|e| e.starts_with("providers[0]") && e.contains("`colour`")),
            "{errs:#?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("models[0].deployments[0]") && e.contains("`modle`")),
            "{errs:#?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("models[0].strategy: unknown strategy")),
            "{errs:#?}"
        );
    }

    #[test]
    fn every_validation_error_is_reported() {
        let text = r#"
server:
  listen: ["nope"]
  max_body_bytes: 0
providers:
  - name: a
    kind: opnai
  - name: b
    kind: openai
    base_url: ftp://x
    timeouts: { connect: 2 parsecs }
models:
  - name: m
    strategy: fastest
    deployments:
      - provider: zz
        model: x
"#;
        let errs = errors_of(text);
        for want in [
            "server.listen[0]: invalid address",
            "server.max_body_bytes: must be greater than 0",
            "providers[0].kind: unknown provider kind \"opnai\"",
            "providers[1].base_url:",
            "providers[1].timeouts.connect: invalid duration",
            "models[0].strategy: unknown strategy",
            "models[0].deployments[0].provider: unknown provider \"zz\"",
        ] {
            assert!(
                errs.iter().any(|e| e.starts_with(want)),
                "missing {want:?} in {errs:#?}"
            );
        }
    }

    #[test]
    fn client_timeouts_have_defaults_and_are_validated() {
        let c = parse(MINIMAL, &no_env).unwrap();
        assert_eq!(c.server.client_timeouts, ClientTimeouts::default());
        assert_eq!(
            c.server.client_timeouts.header,
            std::time::Duration::from_secs(10)
        );
        let text = MINIMAL.replace(
            "server:\n",
            "server:\n  client_timeouts: { header: 2s, idle: 5s }\n",
        );
        let c = parse(&text, &no_env).unwrap();
        let t = c.server.client_timeouts;
        assert_eq!(t.header, std::time::Duration::from_secs(2));
        assert_eq!(t.body, ClientTimeouts::default().body);
        assert_eq!(t.idle, std::time::Duration::from_secs(5));
        let text = MINIMAL.replace(
            "server:\n",
            "server:\n  client_timeouts: { header: 0s, body: soon, idle: 1500ms, read: 1s }\n",
        );
        let errs = errors_of(&text);
        assert!(
            errs.iter().any(|e| e.contains("unknown field `read`")),
            "{errs:#?}"
        );
        let text = text.replace(", read: 1s", "");
        let errs = errors_of(&text);
        for want in [
            "server.client_timeouts.header: must be greater than 0",
            "server.client_timeouts.body: invalid duration",
            "server.client_timeouts.idle: must be a whole number of seconds",
        ] {
            assert!(
                errs.iter().any(|e| e.starts_with(want)),
                "missing {want:?} in {errs:#?}"
            );
        }
    }

    #[test]
    fn env_references_expand_and_numbers_accept_strings() {
        let text = MINIMAL.replace(
            "server:\n",
            "server:\n  threads: \"${SET}\"\n  max_body_bytes: \"${UNSET:-1024}\"\n",
        );
        let c = parse(&text, &|n| (n == "SET").then(|| "4".to_string())).unwrap();
        assert_eq!(c.server.threads, 4);
        assert_eq!(c.server.max_body_bytes, 1024);
    }

    #[test]
    fn unset_variable_is_an_error_naming_it() {
        let text = MINIMAL.replace("model: mock-1", "model: ${MODEL_NAME}");
        let errs = errors_of(&text);
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("models[0].deployments[0].model:"));
        assert!(errs[0].contains("MODEL_NAME"));
    }

    #[test]
    fn budgets_limits_and_store_are_validated_with_paths() {
        let text = format!(
            "{MINIMAL}budgets:\n  - {{ scope: galaxy, limit: 1, period: daily }}\n  - {{ scope: team:a, limit: -1, period: hourly, soft_ratio: 2 }}\n  - {{ scope: provider:nope, limit: 1, period: total }}\nteam_limits:\n  a: {{ requests_per_minute: 0 }}\nstore: {{ kind: redis, url: http://x, on_unavailable: maybe }}\n"
        );
        let errs = errors_of(&text);
        for want in [
            "budgets[0].scope: expected global, team:<name>",
            "budgets[1].limit: must be a non-negative amount",
            "budgets[1].period: expected daily, weekly, monthly or total",
            "budgets[1].soft_ratio: must be between 0 and 1",
            "budgets[2].scope: unknown provider \"nope\"",
            "team_limits.a.requests_per_minute: must be at least 1",
            "store.url: expected redis://host:port",
            "store.on_unavailable: expected fail_open or fail_closed",
        ] {
            assert!(
                errs.iter().any(|e| e.starts_with(want)),
                "missing {want:?} in {errs:#?}"
            );
        }
        let ok = format!(
            "{MINIMAL}budgets:\n  - {{ scope: global, limit: \"2.5\", period: monthly }}\nstore: {{ kind: redis, url: \"redis://127.0.0.1:6379\", path: /tmp/x.db }}\n"
        );
        let c = parse(&ok, &no_env).unwrap();
        assert_eq!(c.budgets.len(), 1);
        assert_eq!(c.budgets[0].limit_usd, 2.5);
        assert_eq!(c.budgets[0].soft_ratio, 0.8);
        assert!(c.store.redis.is_some());
    }

    #[test]
    fn a_postgres_store_and_the_replica_id_are_validated() {
        let bad = format!(
            "{MINIMAL}store: {{ kind: postgres, url: \"mysql://u:secret@x/db\", redis_url: http://r, durability: strict }}\n"
        );
        let errs = errors_of(&bad);
        for want in [
            "store.url: expected postgres://user@host:port/database",
            "store.redis_url: expected redis://host:port",
            "store.durability: strict needs the local spool file",
        ] {
            assert!(
                errs.iter().any(|e| e.starts_with(want)),
                "missing {want:?} in {errs:#?}"
            );
        }
        assert!(
            !errs.iter().any(|e| e.contains("secret")),
            "the URL is never echoed"
        );
        let stray = format!(
            "{MINIMAL}store: {{ kind: sqlite, path: /tmp/x.db, redis_url: \"redis://r:6379\" }}\n"
        );
        assert!(errors_of(&stray)[0].starts_with("store.redis_url: applies to kind postgres only"));
        let ok = format!(
            "{}store: {{ kind: postgres, url: \"postgres://sy@10.0.0.6:5432/sy\", redis_url: \"redis://10.0.0.5:6379\", path: /tmp/spool.db, durability: strict }}\n",
            MINIMAL.replacen("server:\n", "server:\n  replica_id: gw-7\n", 1)
        );
        let c = parse(&ok, &no_env).unwrap();
        assert_eq!(c.server.replica_id, "gw-7");
        assert_eq!(
            c.store.postgres_url.as_deref(),
            Some("postgres://sy@10.0.0.6:5432/sy")
        );
        assert_eq!(
            c.store.redis.as_ref().map(|r| r.url.as_str()),
            Some("redis://10.0.0.5:6379")
        );
        assert_eq!(
            c.store.sqlite_path.as_deref(),
            Some(std::path::Path::new("/tmp/spool.db"))
        );
        assert!(c.store.strict_durability);
        let bad_id = MINIMAL.replacen("server:\n", "server:\n  replica_id: \"a b\"\n", 1);
        assert!(errors_of(&bad_id)[0].starts_with("server.replica_id: must be 1-64 characters"));
        let default = parse(MINIMAL, &no_env).unwrap();
        assert!(
            !default.server.replica_id.is_empty(),
            "the host name by default"
        );
    }

    #[test]
    fn local_provider_device_and_cores_are_validated() {
        let text = MINIMAL.replace(
            "kind: mock",
            "kind: local\n    device: cuda\n    cores: [2, 3]",
        );
        let c = parse(&text, &|_| None).unwrap();
        match &c.providers[0].kind {
            ProviderKind::Local(s) => {
                assert_eq!(s.device, Device::Cuda);
                assert_eq!(s.cores, vec![2, 3]);
            }
            other => panic!("not local: {other:?}"),
        }
        let text = MINIMAL.replace("kind: mock", "kind: local\n    device: tpu\n    cores: []");
        let errs = errors_of(&text);
        assert!(
            errs.iter()
                .any(|e| e.contains("expected auto, cpu or cuda")),
            "{errs:?}"
        );
        assert!(errs.iter().any(|e| e.contains("cores")), "{errs:?}");
    }

    #[test]
    fn max_header_bytes_defaults_to_64_kib_and_refuses_tiny_values() {
        let c = parse(MINIMAL, &no_env).unwrap();
        assert_eq!(c.server.max_header_bytes, 65536);
        let errs = errors_of(&MINIMAL.replace("server:\n", "server:\n  max_header_bytes: 10\n"));
        assert!(
            errs.iter()
                .any(|e| e.starts_with("server.max_header_bytes: must be at least 1024")),
            "{errs:#?}"
        );
    }

    #[test]
    fn oauth_needs_an_audience_and_a_refresh_of_a_second_or_more() {
        let text = format!(
            "{MINIMAL}auth:\n  oauth:\n    issuer: https://i/\n    audience: \" \"\n    jwks_url: http://127.0.0.1:9/jwks\n    refresh: 0s\n"
        );
        let errs = errors_of(&text);
        for want in [
            "auth.oauth.refresh: must be at least 1s",
            "auth.oauth.audience:",
        ] {
            assert!(
                errs.iter().any(|e| e.starts_with(want)),
                "missing {want:?} in {errs:#?}"
            );
        }
    }

    #[test]
    fn auth_section_is_validated_with_paths() {
        let text = format!(
            "{MINIMAL}auth:\n  api_keys:\n    - name: a\n      key_sha256: nothex\n    - name: b\n      key: sk-long-enough-secret\n      models: [nope]\n      ip_allow: [\"10.0.0.0/33\"]\n      expires: tomorrow\n  oauth:\n    issuer: https://i/\n    audience: sy\n    jwks_url: ftp://x\n    algorithms: [HS256]\n"
        );
        let errs = errors_of(&text);
        for want in [
            "auth.api_keys[0].key_sha256:",
            "auth.api_keys[1].models[0]: unknown model \"nope\"",
            "auth.api_keys[1].ip_allow[0]:",
            "auth.api_keys[1].expires:",
            "auth.oauth.algorithms[0]: algorithm \"HS256\" is not allowed",
            "auth.oauth.jwks_url:",
        ] {
            assert!(
                errs.iter().any(|e| e.starts_with(want)),
                "missing {want:?} in {errs:#?}"
            );
        }
        let ok = format!("{MINIMAL}auth:\n  api_keys:\n    - name: a\n      key_sha256: \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"\n      ip_allow: [10.0.0.0/8, 127.0.0.1]\n      expires: 2027-06-30T00:00:00Z\n");
        let c = parse(&ok, &no_env).unwrap();
        let auth = c.auth.unwrap();
        assert_eq!(auth.keys.len(), 1);
        assert_eq!(auth.keys[0].1.ip_allow.len(), 2);
        assert!(auth.keys[0].1.expires_unix.is_some());
    }

    #[test]
    fn duplicate_names_and_aliases() {
        let text = MINIMAL.replace("  - name: chat\n", "  - name: chat\n    aliases: [chat]\n");
        let errs = errors_of(&text);
        assert!(
            errs[0].starts_with("models[0].aliases[0]: alias \"chat\""),
            "{errs:?}"
        );
    }

    #[test]
    fn priority_orders_deployments() {
        let text = r#"
server: { listen: ["127.0.0.1:1"] }
providers: [{ name: a, kind: mock }, { name: b, kind: mock }]
models:
  - name: m
    deployments:
      - { provider: a, model: x, priority: 2 }
      - { provider: b, model: y, priority: 1 }
"#;
        let c = parse(text, &no_env).unwrap();
        let order: Vec<_> = c.models[0]
            .deployments
            .iter()
            .map(|d| d.provider.name.as_str())
            .collect();
        assert_eq!(order, vec!["b", "a"]);
    }
}
