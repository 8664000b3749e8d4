//! The `fallbackProviders` hint (body field, or header `x-switchyard-fallback-providers`): provider
//! names or kinds tried, in the order given, after the model's own deployments failed (and before
//! its fallback models). Built per request, only for requests that carry the hint, as a model of
//! the same public name whose deployments are one per named provider the model has no deployment
//! on (a provider it already has is tried among its own).
//!
//! Which upstream model a provider is asked for, in order:
//! 1. a deployment elsewhere in the config on that provider serving one of this model's upstream
//!    model names (its price and limits too, and its breaker and reputation are shared);
//! 2. the upstream model name of this model's first deployment of that provider's kind (its price
//!    and limits copied);
//! 3. the public model name (price and limits of the model's first deployment, as an estimate).
//!
//! Owns the choice of deployments only: the plan ([`crate::routing::router`]) orders them by
//! priority (the hint's order) and [`crate::forward`] tries them.

use crate::config::{Deployment, Model, Price, Provider, Strategy};
use crate::errors::GatewayError;
use crate::ops::telemetry::Metrics;
use crate::routing::breaker::DeploymentRuntime;
use crate::routing::hints::Hints;
use crate::routing::state::{RoutedDeployment, RoutedModel, State};
use std::sync::Arc;

/// The providers `names` designate (a provider name, else every provider of that kind), in the
/// order given, without duplicates and without those `model` already has a deployment on.
fn providers<'a>(
    state: &'a State,
    model: &RoutedModel,
    names: &[String],
) -> Result<Vec<&'a Arc<crate::routing::state::ProviderHandle>>, GatewayError> {
    let mut out: Vec<&Arc<crate::routing::state::ProviderHandle>> = Vec::new();
    for name in names {
        let by_name: Vec<_> = state
            .providers
            .iter()
            .filter(|h| &h.config.name == name)
            .collect();
        let found = if by_name.is_empty() {
            state
                .providers
                .iter()
                .filter(|h| h.config.kind.name() == name)
                .collect()
        } else {
            by_name
        };
        if found.is_empty() {
            return Err(GatewayError::RoutingHint {
                message: format!(
                    "fallbackProviders: no provider is named {name:?} or of that kind"
                ),
                param: "fallbackProviders",
                code: "unknown_provider",
            });
        }
        for h in found {
            let own = model
                .config
                .deployments
                .iter()
                .any(|d| d.provider.name == h.config.name);
            if !own && !out.iter().any(|o| Arc::ptr_eq(o, h)) {
                out.push(h);
            }
        }
    }
    Ok(out)
}

/// The deployment on `provider` for `model` (see the module doc for the choice of upstream model).
fn deployment_on(
    state: &State,
    model: &Model,
    provider: &Arc<Provider>,
    priority: i64,
) -> Deployment {
    let own: Vec<&str> = model.deployments.iter().map(|d| d.model.as_str()).collect();
    let same = state
        .models()
        .flat_map(|m| m.config.deployments.iter())
        .find(|d| d.provider.name == provider.name && own.contains(&d.model.as_str()));
    let of_kind = model
        .deployments
        .iter()
        .find(|d| d.provider.kind.name() == provider.kind.name());
    let (template, upstream) = match (same, of_kind) {
        (Some(d), _) | (None, Some(d)) => (Some(d), d.model.clone()),
        (None, None) => (model.deployments.first(), model.name.clone()),
    };
    Deployment {
        provider: provider.clone(),
        model: upstream,
        price: template.map_or(Price::default(), |t| t.price),
        priority,
        weight: 1,
        max_tokens: template.and_then(|t| t.max_tokens),
        quality: template.map_or(50.0, |t| t.quality),
        context_window: template.and_then(|t| t.context_window),
        from_model: None,
    }
}

/// The breaker and reputation of an existing deployment on the same provider and upstream model,
/// else fresh ones.
fn runtime_for(state: &State, d: &Deployment, model: &Model) -> Arc<DeploymentRuntime> {
    state
        .models()
        .flat_map(|m| m.deployments.iter().map(move |rd| (m, rd)))
        .find(|(m, rd)| {
            let spec = rd.spec(m);
            spec.provider.name == d.provider.name && spec.model == d.model
        })
        .map(|(_, rd)| rd.runtime.clone())
        .unwrap_or_else(|| {
            let r = Arc::new(DeploymentRuntime::default());
            r.reputation
                .set_half_life(model.routing.reputation_half_life);
            r
        })
}

/// The model of this request's `fallbackProviders` hint: `None` without the hint, or when every
/// provider it names already serves the model. An unknown name is the caller's 400.
pub fn for_request(
    state: &State,
    model: &RoutedModel,
    hints: Option<&Hints>,
    metrics: &Metrics,
) -> Result<Option<Arc<RoutedModel>>, GatewayError> {
    let Some(names) = hints
        .map(|h| &h.fallback_providers)
        .filter(|n| !n.is_empty())
    else {
        return Ok(None);
    };
    let handles = providers(state, model, names)?;
    if handles.is_empty() {
        return Ok(None);
    }
    let base = &model.config;
    let deployments: Vec<Deployment> = handles
        .iter()
        .enumerate()
        .map(|(i, h)| deployment_on(state, base, &h.config, i as i64))
        .collect();
    let routed: Vec<RoutedDeployment> = handles
        .iter()
        .zip(&deployments)
        .enumerate()
        .map(|(i, (h, d))| RoutedDeployment {
            index: i,
            served_by: crate::routing::state::served_by(&h.config.name, &d.model),
            provider: (*h).clone(),
            metrics: metrics.deployment(&base.name, &h.config.name),
            runtime: runtime_for(state, d, base),
        })
        .collect();
    let mut routing = base.routing;
    routing.strategy = Strategy::Priority;
    let config = Arc::new(Model {
        name: base.name.clone(),
        aliases: Vec::new(),
        deployments,
        routing,
        rules: Vec::new(),
        max_cost_per_request: base.max_cost_per_request,
        strict: base.strict,
        fallbacks: Vec::new(),
        tasks: Default::default(),
        sticky: None,
        cache: None,
        prompt_cache: base.prompt_cache,
    });
    Ok(Some(Arc::new(RoutedModel {
        config,
        deployments: routed,
        metrics: model.metrics.clone(),
        selector: None,
        rule_selectors: Vec::new(),
    })))
}
