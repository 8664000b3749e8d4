//! `${NAME}` and `${NAME:-default}` expansion in every string of the parsed YAML tree.
//!
//! Expansion runs on the tree (not the raw text), so a value can never break the YAML around it
//! and every error carries the key path of the string that referenced the variable.

use serde_yaml::Value;
use std::cell::RefCell;

/// The environment values a file's references expanded to, so that no error about the expanded
/// text (a bad URL, a bad duration, a wrong type) shows a secret: [`Redactor::redact`] puts the
/// reference as written (`${GEMINI_API_KEY}`) back in its place.
#[derive(Default)]
pub struct Redactor {
    /// (value, `${NAME}`), longest value first.
    values: RefCell<Vec<(String, String)>>,
}

/// Values shorter than this are not redacted (a `2` or `on` is no secret, and replacing it
/// everywhere would make messages unreadable).
const MIN_REDACTED_LEN: usize = 4;

impl Redactor {
    /// A lookup that reads variables through `lookup` and remembers what each expanded to.
    pub fn recording<'a>(
        &'a self,
        lookup: &'a dyn Fn(&str) -> Option<String>,
    ) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            let value = lookup(name)?;
            if value.len() >= MIN_REDACTED_LEN {
                let mut values = self.values.borrow_mut();
                if !values.iter().any(|(v, _)| *v == value) {
                    values.push((value.clone(), format!("${{{name}}}")));
                    values.sort_by_key(|v| std::cmp::Reverse(v.0.len()));
                }
            }
            Some(value)
        }
    }

    /// `text` with every expanded value replaced by the reference that produced it.
    pub fn redact(&self, text: &str) -> String {
        let values = self.values.borrow();
        let mut out = text.to_string();
        for (value, reference) in values.iter() {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), reference);
            }
        }
        out
    }
}

/// A reference that could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvError {
    pub path: String,
    pub message: String,
}

/// Expands references in every string of `value`, reading variables through `lookup`.
pub fn expand_tree(
    value: &mut Value,
    lookup: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<EnvError>,
) {
    walk(value, String::new(), lookup, errors);
}

fn walk(
    value: &mut Value,
    path: String,
    lookup: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<EnvError>,
) {
    match value {
        Value::String(s) if s.contains("${") => match expand_str(s, lookup) {
            Ok(v) => *s = v,
            Err(message) => errors.push(EnvError { path, message }),
        },
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, format!("{path}[{i}]"), lookup, errors);
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let key = match k {
                    Value::String(s) => s.clone(),
                    other => serde_yaml::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                };
                let child = if path.is_empty() {
                    key
                } else {
                    format!("{path}.{key}")
                };
                walk(v, child, lookup, errors);
            }
        }
        Value::Tagged(t) => walk(&mut t.value, path, lookup, errors),
        _ => {}
    }
}

/// Expands one string. `$${` is a literal `${`.
pub fn expand_str(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find("${") {
        if rest[..pos].ends_with('$') {
            out.push_str(&rest[..pos - 1]);
            out.push_str("${");
            rest = &rest[pos + 2..];
            continue;
        }
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated variable reference in {s:?}"))?;
        let expr = &after[..end];
        let (name, default) = match expr.find(":-") {
            Some(i) => (&expr[..i], Some(&expr[i + 2..])),
            None => (expr, None),
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("invalid variable name {name:?}"));
        }
        match (lookup(name), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => return Err(format!("environment variable {name} is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "KEY" => Some("sk-123".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_plain_and_default() {
        assert_eq!(expand_str("a ${KEY} b", &env).unwrap(), "a sk-123 b");
        assert_eq!(expand_str("${MISSING:-x}", &env).unwrap(), "x");
        assert_eq!(expand_str("${KEY:-x}", &env).unwrap(), "sk-123");
        assert_eq!(expand_str("${EMPTY:-x}", &env).unwrap(), "");
        assert_eq!(expand_str("$${KEY}", &env).unwrap(), "${KEY}");
        assert_eq!(expand_str("no refs", &env).unwrap(), "no refs");
    }

    #[test]
    fn errors_name_the_variable() {
        assert!(expand_str("${MISSING}", &env)
            .unwrap_err()
            .contains("MISSING"));
        assert!(expand_str("${KEY", &env)
            .unwrap_err()
            .contains("unterminated"));
        assert!(expand_str("${BAD-NAME}", &env)
            .unwrap_err()
            .contains("invalid"));
    }

    #[test]
    fn the_redactor_puts_references_back_in_place_of_their_values() {
        let redactor = Redactor::default();
        let lookup = |n: &str| match n {
            "GEMINI_API_KEY" => Some("AIzaSECRET-value-123".to_string()),
            "PORT" => Some("80".to_string()),
            _ => None,
        };
        let recording = redactor.recording(&lookup);
        let url = expand_str("https://g/?key=${GEMINI_API_KEY}&p=${PORT}", &recording).unwrap();
        assert_eq!(url, "https://g/?key=AIzaSECRET-value-123&p=80");
        assert_eq!(
            redactor.redact(&format!("URL {url:?} must not have a query string")),
            "URL \"https://g/?key=${GEMINI_API_KEY}&p=80\" must not have a query string"
        );
    }

    #[test]
    fn tree_errors_carry_paths() {
        let mut v: Value =
            serde_yaml::from_str("providers:\n  - name: a\n    api_key: ${NOPE}\n").unwrap();
        let mut errors = Vec::new();
        expand_tree(&mut v, &env, &mut errors);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "providers[0].api_key");
    }
}
