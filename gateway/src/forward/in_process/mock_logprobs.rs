//! The built-in `mock` provider's `logprobs`: one deterministic entry per token of its answer, in
//! OpenAI's shape (`{"token","logprob","bytes","top_logprobs":[..]}`), the token itself first
//! among its `top_logprobs` alternatives. Pure: the mock's answer decides the tokens.

use serde_json::{json, Value};

/// The entries for `tokens` (each word with its leading space after the first), with
/// `top` alternatives each (at most 20).
pub fn entries(tokens: &[String], top: usize) -> Vec<Value> {
    tokens
        .iter()
        .enumerate()
        .map(|(i, token)| {
            let h = super::mock_answer::fnv1a(token.as_bytes()) ^ (i as u64).wrapping_mul(0x9E37);
            // In (-5, 0]: rounded so the same token always shows the same number.
            let logprob = -((h % 5000) as f64) / 1000.0;
            let space = if token.starts_with(' ') { " " } else { "" };
            let mut alternatives = vec![entry(token, logprob)];
            let words = super::mock_answer::VOCABULARY;
            let mut k = (h % words.len() as u64) as usize;
            while alternatives.len() < top.min(words.len()) {
                let alt = format!("{space}{}", words[k % words.len()]);
                k += 1;
                if alternatives.iter().any(|a| a["token"] == alt.as_str()) {
                    continue;
                }
                let lp = logprob - 0.5 * alternatives.len() as f64 - 0.25;
                alternatives.push(entry(&alt, lp));
            }
            alternatives.truncate(top);
            let mut e = entry(token, logprob);
            if let Some(o) = e.as_object_mut() {
                o.insert("top_logprobs".into(), Value::Array(alternatives));
            }
            e
        })
        .collect()
}

fn entry(token: &str, logprob: f64) -> Value {
    json!({"token": token, "logprob": logprob, "bytes": token.as_bytes()})
}

/// The choice's `logprobs` object for `entries`.
pub fn object(entries: Vec<Value>) -> Value {
    json!({"content": entries, "refusal": null})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_entry_per_token_with_the_token_first_among_its_alternatives() {
        let tokens = vec!["gateway".to_string(), " route".to_string()];
        let e = entries(&tokens, 3);
        assert_eq!(e.len(), 2);
        assert_eq!(e[1]["token"], " route");
        assert_eq!(e[1]["bytes"], json!(b" route".to_vec()));
        let top = e[1]["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        assert_eq!(top[0]["token"], " route");
        assert!(top[1]["token"].as_str().unwrap().starts_with(' '));
        let lps: Vec<f64> = top.iter().map(|t| t["logprob"].as_f64().unwrap()).collect();
        assert!(lps.windows(2).all(|w| w[0] > w[1]), "{lps:?}");
        assert_eq!(entries(&tokens, 3), e, "deterministic");
        assert_eq!(entries(&tokens, 0)[0]["top_logprobs"], json!([]));
    }
}
