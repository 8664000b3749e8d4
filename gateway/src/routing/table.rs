//! The routing table as text (`switchyard check` prints it, the startup probe logs it): public
//! model → deployments → provider. Reads the validated config only.

use crate::config::{Config, ProviderKind};
use std::fmt::Write;

/// The routing table `switchyard check` prints: public model → deployments → provider.
pub fn routing_table(cfg: &Config) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "listen: {}", cfg.server.listen.join(", "));
    let _ = writeln!(
        out,
        "admin:  {}",
        cfg.server.admin_listen.as_deref().unwrap_or("off")
    );
    for m in &cfg.models {
        let r = &m.routing;
        let aliases = if m.aliases.is_empty() {
            String::new()
        } else {
            format!(" (aliases: {})", m.aliases.join(", "))
        };
        let _ = writeln!(
            out,
            "model {}{aliases}  strategy={:?} attempts={} deadline={:?}",
            m.name, r.strategy, r.retry.attempts, r.deadline
        );
        for (i, d) in m.deployments.iter().enumerate() {
            let p = &d.provider;
            let target = match &p.kind {
                ProviderKind::Http {
                    dialect, endpoint, ..
                } => format!(
                    "{} (POST {})",
                    endpoint.base_url,
                    endpoint.path(switchyard_adapters::providers::chat_path(*dialect))
                ),
                ProviderKind::Mock(_) => "built-in".to_string(),
                ProviderKind::Local(l) => format!(
                    "local ONNX pool ({} worker(s), queue {})",
                    l.workers, l.queue
                ),
            };
            let _ = writeln!(
                out,
                "  {}. {} [{}] {} -> {}  priority={} weight={} price/Mtok: in ${} out ${} cached ${}",
                i + 1,
                p.name,
                p.kind.name(),
                target,
                d.model,
                d.priority,
                d.weight,
                d.price.input_per_mtok,
                d.price.output_per_mtok,
                d.price.cached_input_per_mtok
            );
        }
    }
    for r in &cfg.passthrough {
        let base = match &r.provider.kind {
            ProviderKind::Http { endpoint, .. } => endpoint.base_url.as_str(),
            _ => "",
        };
        let _ = writeln!(
            out,
            "passthrough {} -> {} [{}] {}  price/request: ${}",
            r.path.as_str(),
            r.provider.name,
            r.provider.kind.name(),
            base,
            switchyard_filters::budget::nanos_to_usd(r.per_request_nanos)
        );
    }
    out
}
