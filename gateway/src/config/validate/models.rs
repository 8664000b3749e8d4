//! The `models` section: deployments (path-safe upstream model names), routing policy and
//! conditional rules.

use super::*;

pub(super) fn routing_defaults(r: Option<&FileRouting>, errs: &mut Errors) -> RoutingPolicy {
    let base = RoutingPolicy::default();
    let Some(r) = r else { return base };
    let mut base = base;
    if let Some(rep) = &r.reputation {
        base.reputation_half_life = errs.duration(
            "routing.reputation.half_life".into(),
            rep.half_life.as_deref(),
            base.reputation_half_life,
        );
        if base.reputation_half_life.is_zero() {
            errs.push("routing.reputation.half_life", "must be greater than 0");
        }
    }
    apply_routing(
        base,
        "routing",
        r.strategy.as_deref(),
        r.retry.as_ref(),
        r.deadline.as_deref(),
        r.circuit_breaker.as_ref(),
        errs,
    )
}

pub(super) fn apply_routing(
    base: RoutingPolicy,
    path: &str,
    strategy: Option<&str>,
    retry: Option<&FileRetry>,
    deadline: Option<&str>,
    breaker: Option<&FileBreaker>,
    errs: &mut Errors,
) -> RoutingPolicy {
    let mut out = base;
    if let Some(b) = breaker {
        if let Some(Lenient(f)) = b.failures {
            if f == 0 {
                errs.push(
                    format!("{path}.circuit_breaker.failures"),
                    "must be at least 1",
                );
            } else {
                out.breaker.failures = f;
            }
        }
        out.breaker.open_for = errs.duration(
            format!("{path}.circuit_breaker.open_for"),
            b.open_for.as_deref(),
            out.breaker.open_for,
        );
    }
    match strategy {
        None => {}
        Some("priority") => out.strategy = Strategy::Priority,
        Some("round_robin") => out.strategy = Strategy::RoundRobin,
        Some("weighted") => out.strategy = Strategy::Weighted,
        Some("least_latency") => out.strategy = Strategy::LeastLatency,
        Some("cost") => out.strategy = Strategy::Cost,
        Some("lowest_latency_under_budget") => out.strategy = Strategy::LowestLatencyUnderBudget,
        Some("conditional") => out.strategy = Strategy::Conditional,
        Some("reliability") => out.strategy = Strategy::Reliability,
        Some("quality") => out.strategy = Strategy::Quality,
        Some(s) => errs.unknown_value(
            format!("{path}.strategy"),
            "strategy",
            s,
            &[
                "priority",
                "round_robin",
                "weighted",
                "least_latency",
                "cost",
                "lowest_latency_under_budget",
                "conditional",
                "reliability",
                "quality",
            ],
        ),
    }
    if let Some(r) = retry {
        if let Some(Lenient(a)) = r.attempts {
            if a == 0 {
                errs.push(format!("{path}.retry.attempts"), "must be at least 1");
            } else {
                out.retry.attempts = a;
            }
        }
        if let Some(b) = &r.backoff {
            out.retry.backoff_base = errs.duration(
                format!("{path}.retry.backoff.base"),
                b.base.as_deref(),
                out.retry.backoff_base,
            );
            out.retry.backoff_max = errs.duration(
                format!("{path}.retry.backoff.max"),
                b.max.as_deref(),
                out.retry.backoff_max,
            );
        }
        if let Some(on) = &r.on {
            let mut set = RetryOn {
                connect: false,
                timeout: false,
                too_many_requests: false,
                server_error: false,
            };
            for (i, trigger) in on.iter().enumerate() {
                match trigger.as_str() {
                    "connect" => set.connect = true,
                    "timeout" => set.timeout = true,
                    "429" => set.too_many_requests = true,
                    "5xx" => set.server_error = true,
                    t => errs.push(
                        format!("{path}.retry.on[{i}]"),
                        format!("unknown retry trigger {t:?} (expected connect, timeout, \"429\" or \"5xx\")"),
                    ),
                }
            }
            out.retry.on = set;
        }
    }
    out.deadline = errs.duration(format!("{path}.deadline"), deadline, out.deadline);
    if out.deadline.is_zero() {
        errs.push(format!("{path}.deadline"), "must be greater than 0");
    }
    out
}

pub(super) fn models(
    list: &[FileModel],
    providers: &HashMap<String, (usize, Arc<Provider>)>,
    defaults: &RoutingPolicy,
    errs: &mut Errors,
) -> Vec<Arc<Model>> {
    let mut names: HashSet<&str> = HashSet::new();
    let mut out = Vec::new();
    if list.is_empty() {
        errs.push("models", "at least one model is required");
    }
    for (i, m) in list.iter().enumerate() {
        let path = format!("models[{i}]");
        if m.name.trim().is_empty() {
            errs.push(format!("{path}.name"), "must not be empty");
        } else if !names.insert(&m.name) {
            errs.push(
                format!("{path}.name"),
                format!("model name {:?} is already used", m.name),
            );
        }
        for (j, a) in m.aliases.iter().enumerate() {
            if a.trim().is_empty() {
                errs.push(format!("{path}.aliases[{j}]"), "must not be empty");
            } else if !names.insert(a) {
                errs.push(
                    format!("{path}.aliases[{j}]"),
                    format!("alias {a:?} is already used by another model or alias"),
                );
            }
        }
        let strict = match &m.strict {
            None => true,
            Some(serde_yaml::Value::Bool(b)) => *b,
            Some(_) => {
                errs.push(format!("{path}.strict"), "must be true or false");
                true
            }
        };
        let routing = apply_routing(
            *defaults,
            &path,
            m.strategy.as_deref(),
            m.retry.as_ref(),
            m.deadline.as_deref(),
            m.circuit_breaker.as_ref(),
            errs,
        );
        let mut routing = routing;
        routing.hedge_after = m.hedge_after.as_deref().map(|h| {
            errs.duration(
                format!("{path}.hedge_after"),
                Some(h),
                Duration::from_millis(400),
            )
        });
        if m.deployments.is_empty() && m.candidates.is_none() {
            errs.push(
                format!("{path}.deployments"),
                "at least one deployment is required",
            );
        }
        let mut deployments = Vec::new();
        for (j, d) in m.deployments.iter().enumerate() {
            let dpath = format!("{path}.deployments[{j}]");
            let Some((_, provider)) = providers.get(&d.provider) else {
                errs.unknown_provider(format!("{dpath}.provider"), &d.provider);
                continue;
            };
            if d.model.trim().is_empty() {
                errs.push(format!("{dpath}.model"), "must not be empty");
            } else if let (ProviderKind::Http { .. }, Err(why)) =
                (&provider.kind, path_safe_model(&d.model))
            {
                errs.push(format!("{dpath}.model"), why);
            }
            let price = match &d.price {
                None => Price::default(),
                Some(p) => {
                    let price = Price {
                        input_per_mtok: p.input_per_mtok.0,
                        output_per_mtok: p.output_per_mtok.0,
                        cached_input_per_mtok: p
                            .cached_input_per_mtok
                            .map(|c| c.0)
                            .unwrap_or(p.input_per_mtok.0),
                        cache_write_input_per_mtok: p
                            .cache_write_input_per_mtok
                            .map(|c| c.0)
                            .unwrap_or(p.input_per_mtok.0),
                    };
                    for (k, v) in [
                        ("input_per_mtok", price.input_per_mtok),
                        ("output_per_mtok", price.output_per_mtok),
                        ("cached_input_per_mtok", price.cached_input_per_mtok),
                        (
                            "cache_write_input_per_mtok",
                            price.cache_write_input_per_mtok,
                        ),
                    ] {
                        if !(v.is_finite() && v >= 0.0) {
                            errs.push(format!("{dpath}.price.{k}"), "must be a number >= 0");
                        }
                    }
                    price
                }
            };
            let quality = d.quality.map(|q| q.0).unwrap_or(50.0);
            if !(0.0..=100.0).contains(&quality) {
                errs.push(format!("{dpath}.quality"), "must be a number from 0 to 100");
            }
            let context_window = d.context_window.map(|c| c.0);
            if context_window == Some(0) {
                errs.push(format!("{dpath}.context_window"), "must be at least 1");
            }
            let weight = d.weight.map(|w| w.0).unwrap_or(1);
            if weight == 0 {
                errs.push(format!("{dpath}.weight"), "must be at least 1");
            }
            deployments.push(Deployment {
                provider: provider.clone(),
                model: d.model.clone(),
                price,
                priority: d.priority.map(|p| p.0).unwrap_or(j as i64),
                weight,
                max_tokens: d.max_tokens.map(|m| m.0),
                quality,
                context_window,
                from_model: None,
            });
        }
        // `priority` strategy: lower first, file order breaks ties (stable sort).
        deployments.sort_by_key(|d| d.priority);
        let rules = rules(m, &path, &deployments, &routing, errs);
        let max_cost_per_request = m.max_cost_per_request.map(|c| c.0);
        if routing.strategy == Strategy::LowestLatencyUnderBudget && max_cost_per_request.is_none()
        {
            errs.push(
                format!("{path}.max_cost_per_request"),
                "required by strategy lowest_latency_under_budget (USD per request)",
            );
        }
        if max_cost_per_request.is_some_and(|c| !(c.is_finite() && c > 0.0)) {
            errs.push(
                format!("{path}.max_cost_per_request"),
                "must be a number > 0",
            );
        }
        out.push(Arc::new(Model {
            name: m.name.clone(),
            aliases: m.aliases.clone(),
            deployments,
            routing,
            rules,
            max_cost_per_request,
            strict,
            fallbacks: m.fallbacks.clone().unwrap_or_default(),
            tasks: m.tasks.clone().unwrap_or_default(),
            sticky: m.sticky.as_deref().and_then(|s| sticky(s, &path, errs)),
            cache: m.cache.as_ref().map(|c| {
                c.ttl
                    .as_deref()
                    .map(|t| errs.duration(format!("{path}.cache.ttl"), Some(t), Duration::ZERO))
            }),
            prompt_cache: match m.prompt_cache.as_deref() {
                None | Some("off") => false,
                Some("auto") => true,
                Some(other) => {
                    errs.push(
                        format!("{path}.prompt_cache"),
                        format!("expected auto or off, not {other:?}"),
                    );
                    false
                }
            },
        }));
    }
    super::candidates::borrow(list, &mut out, errs);
    for (i, m) in list.iter().enumerate() {
        for (j, f) in m.fallbacks.iter().flatten().enumerate() {
            let why = if f == &m.name || m.aliases.contains(f) {
                "a model cannot fall back to itself"
            } else if !names.contains(f.as_str()) {
                "no model or alias has this name"
            } else {
                continue;
            };
            errs.push(format!("models[{i}].fallbacks[{j}]"), why);
        }
    }
    out
}

pub(super) fn rules(
    m: &FileModel,
    path: &str,
    deployments: &[Deployment],
    routing: &RoutingPolicy,
    errs: &mut Errors,
) -> Vec<Rule> {
    let conditional = routing.strategy == Strategy::Conditional;
    let Some(list) = &m.rules else {
        if conditional {
            errs.push(format!("{path}.rules"), "required by strategy conditional");
        }
        return Vec::new();
    };
    if !conditional {
        errs.push(
            format!("{path}.rules"),
            "only applies to strategy conditional",
        );
        return Vec::new();
    }
    let mut out = Vec::new();
    for (i, r) in list.iter().enumerate() {
        let rpath = format!("{path}.rules[{i}]");
        let when = r.when.as_ref().and_then(|w| {
            let set = [w.header.is_some(), w.metadata.is_some(), w.model.is_some()]
                .iter()
                .filter(|x| **x)
                .count();
            if set != 1 {
                errs.push(
                    format!("{rpath}.when"),
                    "give exactly one of header, metadata or model",
                );
                return None;
            }
            if let Some(model) = &w.model {
                if w.equals.is_some() {
                    errs.push(
                        format!("{rpath}.when.equals"),
                        "does not apply to a model condition",
                    );
                }
                return Some(Condition::Model(model.clone()));
            }
            let Some(value) = w.equals.clone() else {
                errs.push(
                    format!("{rpath}.when.equals"),
                    "required with header or metadata",
                );
                return None;
            };
            match (&w.header, &w.metadata) {
                (Some(h), _) => Some(Condition::Header {
                    name: h.to_ascii_lowercase(),
                    value,
                }),
                (_, Some(k)) => Some(Condition::Metadata {
                    key: k.clone(),
                    value,
                }),
                _ => None,
            }
        });
        let picked: Vec<usize> = match &r.deployments {
            None => (0..deployments.len()).collect(),
            Some(names) => {
                let mut idx = Vec::new();
                for (j, n) in names.iter().enumerate() {
                    let found: Vec<usize> = deployments
                        .iter()
                        .enumerate()
                        .filter(|(_, d)| d.provider.name == *n)
                        .map(|(k, _)| k)
                        .collect();
                    if found.is_empty() {
                        errs.push(
                            format!("{rpath}.deployments[{j}]"),
                            format!("no deployment of this model uses provider {n:?}"),
                        );
                    }
                    idx.extend(found);
                }
                idx
            }
        };
        let strategy = match r.strategy.as_deref() {
            None | Some("priority") => Strategy::Priority,
            Some("round_robin") => Strategy::RoundRobin,
            Some("weighted") => Strategy::Weighted,
            Some("least_latency") => Strategy::LeastLatency,
            Some("cost") => Strategy::Cost,
            Some(s) => {
                errs.push(
                    format!("{rpath}.strategy"),
                    format!("{s:?} is not allowed in a rule (priority, round_robin, weighted, least_latency, cost)"),
                );
                Strategy::Priority
            }
        };
        out.push(Rule {
            when,
            deployments: picked,
            strategy,
        });
    }
    out
}

/// An upstream model name goes into URL paths (Gemini, Cloudflare, Azure): it may hold `/`
/// (`@cf/meta/llama-3-8b`, `org/model`) but nothing that changes the URL's meaning or the request
/// line — no whitespace or control character (CR/LF), no `?`, `#`, `%` or `\\`, and no `.` or `..`
/// segment.
pub(super) fn path_safe_model(model: &str) -> Result<(), String> {
    if let Some(c) = model
        .chars()
        .find(|c| c.is_control() || c.is_whitespace() || matches!(c, '?' | '#' | '%' | '\\'))
    {
        return Err(format!(
            "must be usable in a URL path: {c:?} is not allowed"
        ));
    }
    if model.split('/').any(|seg| seg == "." || seg == "..") {
        return Err("must be usable in a URL path: no `.` or `..` segments".into());
    }
    Ok(())
}

/// `sticky: user | key | header:<name>`.
fn sticky(text: &str, path: &str, errs: &mut Errors) -> Option<Sticky> {
    match text.trim() {
        "user" => Some(Sticky::User),
        "key" => Some(Sticky::Key),
        t => match t.strip_prefix("header:").map(str::trim) {
            Some(name) if http::HeaderName::from_bytes(name.as_bytes()).is_ok() => {
                Some(Sticky::Header(name.to_ascii_lowercase()))
            }
            _ => {
                errs.push(
                    format!("{path}.sticky"),
                    format!("expected user, key or header:<name>, got {t:?}"),
                );
                None
            }
        },
    }
}
