//! File model → validated model, collecting every error with its key path. One submodule per
//! part of the file: `server` (with telemetry), `providers`, `models` (deployments, routing,
//! rules), `governance` (store, budgets, limits); the `auth` section is `validate_auth`'s.

use super::endpoint::parse_endpoint;
use super::file::*;
use super::model::*;
use super::ConfigError;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

mod candidates;
mod cloud;
mod events;
mod governance;
mod models;
mod passthrough;
mod providers;
mod server;

use cloud::*;
use governance::*;
use models::*;
use providers::*;
use server::*;

const DEFAULT_MAX_BODY: u64 = 8 * 1024 * 1024;
/// `server.max_header_bytes` when not set: 64 KiB, the order of Envoy's 60 KiB.
const DEFAULT_MAX_HEADER: u64 = 64 * 1024;

/// Problems found so far. `declared_providers` holds every provider name written in the file, even
/// those refused for another reason, so that a model naming one is not reported again as a
/// reference to an unknown provider.
struct Errors(Vec<ConfigError>, HashSet<String>);

/// `: did you mean "x"?` when one of `options` is within two edits of `value` (a typo), else
/// nothing.
fn did_you_mean<'a>(value: &str, options: impl Iterator<Item = &'a str>) -> String {
    options
        .map(|o| (strsim::damerau_levenshtein(value, o), o))
        .filter(|&(d, o)| d <= 2 && d < o.len())
        .min()
        .map(|(_, o)| format!(": did you mean {o:?}?"))
        .unwrap_or_default()
}

impl Errors {
    /// A reference to provider `name` that is not among the valid ones: reported unless the file
    /// declares it (its own error was reported where it is declared).
    fn unknown_provider(&mut self, path: String, name: &str) {
        if !self.1.contains(name) {
            let hint = did_you_mean(name, self.1.iter().map(String::as_str));
            self.push(path, format!("unknown provider {name:?}{hint}"));
        }
    }

    /// `value` is none of `options`: says so, with the closest option when one is near.
    fn unknown_value(&mut self, path: String, what: &str, value: &str, options: &[&str]) {
        let hint = did_you_mean(value, options.iter().copied());
        self.push(
            path,
            format!(
                "unknown {what} {value:?}{hint} (expected one of: {})",
                options.join(", ")
            ),
        );
    }

    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError {
            path: path.into(),
            message: message.into(),
            line: None,
        });
    }

    fn duration(&mut self, path: String, value: Option<&str>, default: Duration) -> Duration {
        match value {
            None => default,
            Some(s) => match humantime::parse_duration(s.trim()) {
                Ok(d) => d,
                Err(e) => {
                    self.push(
                        path,
                        format!("invalid duration {s:?}: {e} (use e.g. 250ms, 10s, 5m)"),
                    );
                    default
                }
            },
        }
    }

    /// "must be greater than 0" for each zero duration of `values`, at `path(key)`.
    fn positive(&mut self, path: impl Fn(&str) -> String, values: &[(&str, Duration)]) {
        for (k, v) in values {
            if v.is_zero() {
                self.push(path(k), "must be greater than 0");
            }
        }
    }
}

/// Validates a parsed file. Returns every problem found, not just the first.
pub fn validate(file: FileConfig) -> Result<Config, Vec<ConfigError>> {
    let mut errs = Errors(
        Vec::new(),
        file.providers.iter().map(|p| p.name.clone()).collect(),
    );

    let server = server_settings(&file.server, &mut errs);
    let routing = routing_defaults(file.routing.as_ref(), &mut errs);
    let providers = providers(&file.providers, &mut errs);
    let models = models(&file.models, &providers, &routing, &mut errs);
    let telemetry = telemetry(file.telemetry.as_ref(), &mut errs);
    let passthrough = passthrough::passthrough(
        file.passthrough.as_deref().unwrap_or_default(),
        &providers,
        &mut errs,
    );
    let events = events::events(file.events.as_deref().unwrap_or_default(), &mut errs);
    let model_names: HashSet<&str> = file.models.iter().map(|m| m.name.as_str()).collect();
    let auth = file
        .auth
        .as_ref()
        .map(|a| super::validate_auth::auth(a, &model_names, &mut errs.0));
    let store = store(file.store.as_ref(), &mut errs);
    let responses_ttl = errs.duration(
        "responses.ttl".into(),
        file.responses.as_ref().and_then(|r| r.ttl.as_deref()),
        Duration::from_secs(30 * 24 * 3600),
    );
    let mut cache = governance::cache(file.cache.as_ref(), &store, &model_names, &mut errs);
    cache.enabled |= file.models.iter().any(|m| m.cache.is_some());
    let budgets = budgets(
        file.budgets.as_deref().unwrap_or_default(),
        &providers,
        &mut errs,
    );
    let key_limits = file
        .auth
        .iter()
        .flat_map(|a| a.api_keys.iter().enumerate())
        .filter_map(|(i, k)| {
            let l = limits(
                k.limits.as_ref()?,
                &format!("auth.api_keys[{i}].limits"),
                &mut errs,
            );
            Some((k.name.clone(), l))
        })
        .collect();
    let team_limits = file
        .team_limits
        .iter()
        .flatten()
        .map(|(team, l)| {
            (
                team.clone(),
                limits(l, &format!("team_limits.{team}"), &mut errs),
            )
        })
        .collect();
    let guardrails = crate::guardrails::compile(&file, &mut errs.0);
    let startup_probe_wait = match file
        .routing
        .as_ref()
        .and_then(|r| r.startup_probe.as_deref())
    {
        None | Some("wait") => true,
        Some("background") => false,
        Some(other) => {
            errs.push(
                "routing.startup_probe",
                format!("expected wait or background, not {other:?}"),
            );
            true
        }
    };

    if errs.0.is_empty() {
        Ok(Config {
            server,
            providers: providers.into_values().collect_sorted(),
            models,
            telemetry,
            auth,
            store,
            budgets,
            key_limits,
            team_limits,
            startup_probe_wait,
            passthrough,
            events,
            responses_ttl,
            cache,
            guardrails: Arc::new(guardrails),
        })
    } else {
        Err(errs.0)
    }
}

/// Providers keep their file order for display.
trait CollectSorted {
    fn collect_sorted(self) -> Vec<Arc<Provider>>;
}

impl<I: Iterator<Item = (usize, Arc<Provider>)>> CollectSorted for I {
    fn collect_sorted(self) -> Vec<Arc<Provider>> {
        let mut v: Vec<_> = self.collect();
        v.sort_by_key(|(i, _)| *i);
        v.into_iter().map(|(_, p)| p).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_model_names_are_path_safe() {
        assert!(path_safe_model("gpt-4o").is_ok());
        assert!(path_safe_model("@cf/meta/llama-3-8b-instruct").is_ok());
        assert!(path_safe_model("org/model.v2:latest").is_ok());
        for bad in [
            "../../admin?x=1#",
            "a\r\nb",
            "a b",
            "x/../y",
            "m%2e",
            "a\\b",
            "./m",
        ] {
            assert!(path_safe_model(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn endpoint_parsing() {
        let e = parse_endpoint("https://api.openai.com/v1/").unwrap();
        assert!(e.tls);
        assert_eq!((e.host.as_str(), e.port), ("api.openai.com", 443));
        assert_eq!(e.path_prefix, "/v1");
        assert_eq!(e.host_header, "api.openai.com");
        assert_eq!(e.path("/chat/completions"), "/v1/chat/completions");
        let e = parse_endpoint("http://127.0.0.1:8000").unwrap();
        assert_eq!(e.path("/chat/completions"), "/chat/completions");
        assert_eq!(e.host_header, "127.0.0.1:8000");
        let e = parse_endpoint("http://[::1]:9000/v1").unwrap();
        assert_eq!(e.host, "::1");
        assert!(parse_endpoint("ftp://x").is_err());
        assert!(parse_endpoint("https://user:pw@x/v1").is_err());
        assert!(parse_endpoint("not a url").is_err());
    }
}
