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
