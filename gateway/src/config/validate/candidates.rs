//! Models with `candidates` (callers send e.g. `model: "auto"`): their deployments are the
//! candidates' own, borrowed in candidate order (each marked with the model it came from, so
//! routing can keep a caller to the models it may use and a body `task` can narrow them through
//! `tasks`). Validates that candidates and task lists name models that have deployments of their
//! own. Owns nothing about how a request is routed.

use super::*;

/// Fills each candidates model's deployments from its candidates (`out` is index for index with
/// `list`).
pub(super) fn borrow(list: &[FileModel], out: &mut [Arc<Model>], errs: &mut Errors) {
    for (i, m) in list.iter().enumerate() {
        let Some(candidates) = &m.candidates else {
            if m.tasks.is_some() {
                errs.push(
                    format!("models[{i}].tasks"),
                    "only applies to a model with candidates",
                );
            }
            continue;
        };
        let path = format!("models[{i}]");
        if candidates.is_empty() {
            errs.push(format!("{path}.candidates"), "list at least one model");
        }
        if !m.deployments.is_empty() {
            errs.push(
                format!("{path}.deployments"),
                "a model with candidates borrows their deployments; give one or the other",
            );
        }
        let own = |name: &str| {
            list.iter()
                .position(|f| f.name == name && f.candidates.is_none())
        };
        let mut borrowed = Vec::new();
        for (j, c) in candidates.iter().enumerate() {
            match own(c) {
                Some(k) => borrowed.extend(out.get(k).iter().flat_map(|src| {
                    src.deployments.iter().map(|d| Deployment {
                        from_model: Some(c.clone()),
                        ..d.clone()
                    })
                })),
                None => errs.push(
                    format!("{path}.candidates[{j}]"),
                    "must name a model with deployments of its own",
                ),
            }
        }
        for (task, names) in m.tasks.iter().flatten() {
            for (j, n) in names.iter().enumerate() {
                if !candidates.contains(n) {
                    errs.push(
                        format!("{path}.tasks.{task}[{j}]"),
                        "must be one of the model's candidates",
                    );
                }
            }
        }
        for (p, d) in borrowed.iter_mut().enumerate() {
            d.priority = p as i64;
        }
        if let Some(model) = out.get_mut(i).and_then(Arc::get_mut) {
            model.deployments = borrowed;
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{parse, Sticky};

    /// The paths of the errors in a config with `models`.
    fn errors(models: &str) -> Vec<String> {
        let text = format!(
            "server: {{ listen: [\"127.0.0.1:1\"] }}\nproviders: [{{name: a, kind: mock}}]\nmodels:\n{models}"
        );
        match parse(&text, &|_| None) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.into_iter().map(|e| e.path).collect(),
        }
    }

    #[test]
    fn candidates_borrow_deployments_and_are_checked() {
        let text = "server: { listen: [\"127.0.0.1:1\"] }\nproviders: [{name: a, kind: mock}]\nmodels:\n  - name: auto\n    candidates: [x, y]\n    tasks: { t: [y] }\n  - { name: x, deployments: [{provider: a, model: x1}, {provider: a, model: x2}] }\n  - { name: y, sticky: \"header:X-Team\", deployments: [{provider: a, model: y1}] }\n";
        let cfg = parse(text, &|_| None).map_err(|e| e.to_string()).unwrap();
        let auto = &cfg.models[0];
        let borrowed: Vec<(&str, Option<&str>, i64)> = auto
            .deployments
            .iter()
            .map(|d| (d.model.as_str(), d.from_model.as_deref(), d.priority))
            .collect();
        assert_eq!(
            borrowed,
            vec![
                ("x1", Some("x"), 0),
                ("x2", Some("x"), 1),
                ("y1", Some("y"), 2)
            ]
        );
        assert_eq!(cfg.models[2].sticky, Some(Sticky::Header("x-team".into())));
        assert_eq!(
            errors("  - { name: auto, candidates: [nope, auto], tasks: { t: [x] } }\n  - { name: x, deployments: [{provider: a, model: x1}] }\n"),
            vec!["models[0].candidates[0]", "models[0].candidates[1]", "models[0].tasks.t[0]"]
        );
    }

    #[test]
    fn fallbacks_and_sticky_are_checked() {
        assert_eq!(
            errors("  - { name: chat, fallbacks: [nope, chat], sticky: cookie, deployments: [{provider: a, model: x}] }\n"),
            vec!["models[0].sticky", "models[0].fallbacks[0]", "models[0].fallbacks[1]"]
        );
    }
}
