//! The `passthrough[]` section: each entry's path glob (compiled here, once per load), its
//! provider (an HTTP one: in-process kinds have no API to pass a request to) and its optional
//! per-request price. Must not touch the other sections.

use super::*;
use crate::passthrough::PathGlob;

pub(super) fn passthrough(
    list: &[FilePassthrough],
    providers: &HashMap<String, (usize, Arc<Provider>)>,
    errs: &mut Errors,
) -> Vec<PassthroughRoute> {
    let mut out = Vec::with_capacity(list.len());
    let mut seen = HashSet::new();
    for (i, p) in list.iter().enumerate() {
        let path = format!("passthrough[{i}]");
        let glob = match PathGlob::compile(p.path.trim()) {
            Ok(g) => Some(g),
            Err(msg) => {
                errs.push(format!("{path}.path"), msg);
                None
            }
        };
        if glob.is_some() && !seen.insert(p.path.trim()) {
            errs.push(
                format!("{path}.path"),
                format!("duplicate passthrough path {:?}", p.path),
            );
        }
        let provider = match providers.get(&p.provider) {
            None => {
                errs.push(
                    format!("{path}.provider"),
                    format!("unknown provider {:?}", p.provider),
                );
                None
            }
            Some((_, prov)) if !matches!(prov.kind, ProviderKind::Http { .. }) => {
                errs.push(
                    format!("{path}.provider"),
                    format!(
                        "provider {:?} is of kind {}, which answers in-process and has no API to \
                         pass requests to (use an HTTP provider: openai, anthropic, gemini, \
                         cloudflare or ollama)",
                        p.provider,
                        prov.kind.name()
                    ),
                );
                None
            }
            Some((_, prov)) if matches!(&prov.kind, ProviderKind::Http { cloud: Some(_), .. }) => {
                // Cloud accounts authenticate per request (SigV4, Entra or Google tokens,
                // deployment URLs): a byte-for-byte pass-through would reach them unsigned.
                errs.push(
                    format!("{path}.provider"),
                    format!(
                        "provider {:?} is of kind {}, whose requests are signed or rewritten per                          API; pass-through routes go to openai, anthropic, gemini, cloudflare or                          ollama providers",
                        p.provider,
                        prov.kind.name()
                    ),
                );
                None
            }
            Some((_, prov)) => Some(prov.clone()),
        };
        let per_request_nanos = match p.price.as_ref().map(|pr| pr.per_request.0) {
            None => 0,
            Some(usd) if usd.is_finite() && usd >= 0.0 => {
                switchyard_filters::budget::usd_to_nanos(usd)
            }
            Some(_) => {
                errs.push(
                    format!("{path}.price.per_request"),
                    "must be a non-negative amount (USD)",
                );
                0
            }
        };
        if let (Some(path), Some(provider)) = (glob, provider) {
            out.push(PassthroughRoute {
                path,
                provider,
                per_request_nanos,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    const BASE: &str = r#"
server: { listen: ["127.0.0.1:8080"] }
providers:
  - { name: up, kind: openai, base_url: "http://127.0.0.1:9/v1", api_key: sk-x }
  - { name: sim, kind: mock }
models:
  - { name: chat, deployments: [{ provider: sim, model: m }] }
"#;

    #[test]
    fn routes_compile_with_their_provider_and_price() {
        let text = format!(
            "{BASE}passthrough:\n  - {{ path: /v1/images/*, provider: up, price: {{ per_request: 0.04 }} }}\n  - {{ path: /v1/files/**, provider: up }}\n"
        );
        let c = parse(&text, &|_| None).unwrap();
        assert_eq!(c.passthrough.len(), 2);
        assert_eq!(c.passthrough[0].path.as_str(), "/v1/images/*");
        assert_eq!(c.passthrough[0].provider.name, "up");
        assert_eq!(c.passthrough[0].per_request_nanos, 40_000_000);
        assert_eq!(c.passthrough[1].per_request_nanos, 0);
        assert!(c.passthrough[1].path.matches("/v1/files"));
        assert!(parse(BASE, &|_| None).unwrap().passthrough.is_empty());
    }

    #[test]
    fn cloud_accounts_are_not_pass_through_targets() {
        let text = format!(
            "{BASE}  - {{ name: azure-chat, deployments: [{{ provider: az, model: gpt }}] }}\npassthrough:\n  - {{ path: /v1/images/*, provider: az }}\n"
        )
        .replace(
            "  - { name: sim, kind: mock }\n",
            "  - { name: sim, kind: mock }\n  - { name: az, kind: azure, base_url: \"http://127.0.0.1:9\", api_version: \"2024-10-21\", api_key: k }\n",
        );
        let errs: Vec<String> = match parse(&text, &|_| None) {
            Ok(_) => panic!("expected errors"),
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        };
        assert!(
            errs.iter()
                .any(|e| e.starts_with("passthrough[0].provider: provider \"az\" is of kind azure")),
            "{errs:#?}"
        );
        assert_eq!(errs.len(), 1, "{errs:#?}");
    }

    #[test]
    fn bad_entries_are_reported_with_their_paths() {
        let text = format!(
            "{BASE}passthrough:\n  - {{ path: v1/x, provider: up }}\n  - {{ path: /v1/a**, provider: nope }}\n  - {{ path: /v1/sim/*, provider: sim }}\n  - {{ path: /v1/p, provider: up, price: {{ per_request: -1 }} }}\n  - {{ path: /v1/p, provider: up, colour: red }}\n"
        );
        let errs: Vec<String> = match parse(&text, &|_| None) {
            Ok(_) => panic!("expected errors"),
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        };
        for want in [
            "passthrough[0].path: \"v1/x\" must start with `/`",
            "passthrough[1].path: \"/v1/a**\": `**` must be a whole path segment",
            "passthrough[1].provider: unknown provider \"nope\"",
            "passthrough[2].provider: provider \"sim\" is of kind mock",
            "passthrough[3].price.per_request: must be a non-negative amount",
            "passthrough[4].path: duplicate passthrough path",
            "passthrough[4].colour: unknown field `colour`",
        ] {
            assert!(
                errs.iter().any(|e| e.starts_with(want)),
                "missing {want:?} in {errs:#?}"
            );
        }
    }
}
