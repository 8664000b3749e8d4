//! Choosing the next token from a model's logits: greedy, or temperature / top-k / top-p
//! sampling from a seeded generator, with OpenAI's presence and frequency penalties.
//!
//! Pure arithmetic on one logits row; it knows nothing of models, tokenizers or threads. The same
//! settings and seed always pick the same tokens from the same logits.

/// How a request wants its tokens picked.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// `None` or ≤ 0: greedy (the most likely token, always).
    pub temperature: Option<f64>,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches `top_p`.
    pub top_p: Option<f64>,
    /// Keep only the `top_k` most likely tokens.
    pub top_k: Option<u32>,
    /// OpenAI `presence_penalty`: subtracted once from every token generated so far.
    pub presence_penalty: f64,
    /// OpenAI `frequency_penalty`: subtracted per occurrence of a token generated so far.
    pub frequency_penalty: f64,
    /// Seed of the generator; `None` draws one.
    pub seed: Option<u64>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: None,
            top_p: None,
            top_k: None,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: None,
        }
    }
}

/// A token picker for one sequence (it owns the sequence's random generator and the counts the
/// penalties need).
pub struct Sampler {
    params: SamplingParams,
    rng: fastrand::Rng,
    /// How often each token id was generated (only kept when a penalty is set).
    counts: Vec<u32>,
    /// Scratch space: (logit, token id) of the candidates, reused between steps.
    candidates: Vec<(f32, u32)>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Sampler {
        let rng = match params.seed {
            Some(seed) => fastrand::Rng::with_seed(seed),
            None => fastrand::Rng::new(),
        };
        Sampler {
            params,
            rng,
            counts: Vec::new(),
            candidates: Vec::new(),
        }
    }

    fn greedy(&self) -> bool {
        self.params.temperature.is_none_or(|t| t <= 0.0)
    }

    fn penalised(&self) -> bool {
        self.params.presence_penalty != 0.0 || self.params.frequency_penalty != 0.0
    }

    /// Picks the next token from one row of logits (`logits.len()` = vocabulary size), and
    /// counts it for the penalties. `None` only for an empty row.
    pub fn pick(&mut self, logits: &[f32]) -> Option<u32> {
        if logits.is_empty() {
            return None;
        }
        let token = if self.penalised() {
            let mut row = logits.to_vec();
            self.apply_penalties(&mut row);
            self.choose(&row)
        } else {
            self.choose(logits)
        };
        if self.penalised() {
            if self.counts.len() < logits.len() {
                self.counts.resize(logits.len(), 0);
            }
            if let Some(c) = self.counts.get_mut(token as usize) {
                *c = c.saturating_add(1);
            }
        }
        Some(token)
    }

    fn apply_penalties(&self, row: &mut [f32]) {
        let (presence, frequency) = (
            self.params.presence_penalty as f32,
            self.params.frequency_penalty as f32,
        );
        for (logit, &count) in row.iter_mut().zip(&self.counts) {
            if count > 0 {
                *logit -= presence + frequency * count as f32;
            }
        }
    }

    fn choose(&mut self, row: &[f32]) -> u32 {
        if self.greedy() {
            return argmax(row);
        }
        let temperature = self.params.temperature.unwrap_or(1.0) as f32;
        self.candidates.clear();
        self.candidates
            .extend(row.iter().enumerate().map(|(i, &l)| (l, i as u32)));
        // Most likely first; NaN logits sort last and never win.
        self.candidates
            .sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        if let Some(k) = self.params.top_k.filter(|k| *k > 0) {
            self.candidates.truncate(k as usize);
        }
        // Softmax at the temperature, in place (the first candidate has the largest logit).
        let max = self.candidates[0].0;
        let mut total = 0.0f32;
        for c in &mut self.candidates {
            let p = if c.0.is_finite() {
                ((c.0 - max) / temperature).exp()
            } else {
                0.0
            };
            c.0 = p;
            total += p;
        }
        if !(total > 0.0 && total.is_finite()) {
            return self.candidates[0].1;
        }
        let mut keep = self.candidates.len();
        if let Some(top_p) = self.params.top_p.filter(|p| *p > 0.0 && *p < 1.0) {
            let goal = top_p as f32 * total;
            let mut sum = 0.0;
            for (i, c) in self.candidates.iter().enumerate() {
                sum += c.0;
                if sum >= goal {
                    keep = i + 1;
                    break;
                }
            }
        }
        let kept = &self.candidates[..keep];
        let kept_total: f32 = kept.iter().map(|c| c.0).sum();
        let mut draw = self.rng.f32() * kept_total;
        for c in kept {
            if draw < c.0 {
                return c.1;
            }
            draw -= c.0;
        }
        kept[kept.len() - 1].1
    }
}

/// Index of the largest logit (the first one on ties; NaN never wins).
pub fn argmax(row: &[f32]) -> u32 {
    let mut best: Option<(usize, f32)> = None;
    for (i, &v) in row.iter().enumerate() {
        if !v.is_nan() && best.is_none_or(|(_, b)| v > b) {
            best = Some((i, v));
        }
    }
    best.map_or(0, |(i, _)| i as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(temperature: Option<f64>, top_p: Option<f64>, seed: u64) -> Sampler {
        Sampler::new(SamplingParams {
            temperature,
            top_p,
            seed: Some(seed),
            ..SamplingParams::default()
        })
    }

    #[test]
    fn greedy_takes_the_largest_logit() {
        let mut s = Sampler::new(SamplingParams::default());
        assert_eq!(s.pick(&[0.1, 3.0, -1.0, 2.9]), Some(1));
        assert_eq!(s.pick(&[]), None);
        assert_eq!(argmax(&[f32::NAN, 1.0, 0.5]), 1);
        // Temperature 0 is greedy too (OpenAI's convention).
        let mut s = sampler(Some(0.0), None, 1);
        assert_eq!(s.pick(&[0.0, 0.0, 5.0]), Some(2));
    }

    #[test]
    fn the_same_seed_draws_the_same_tokens() {
        let logits: Vec<f32> = (0..50).map(|i| (i % 7) as f32 * 0.3).collect();
        let draw = |seed| {
            let mut s = sampler(Some(1.5), None, seed);
            (0..40)
                .map(|_| s.pick(&logits).unwrap_or(0))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(42), draw(42));
        assert_ne!(draw(42), draw(43));
    }

    #[test]
    fn sampling_follows_the_softmax() {
        // Two tokens with logits ln 3 and 0: probabilities 0.75 / 0.25 at temperature 1.
        let logits = [3f32.ln(), 0.0];
        let mut s = sampler(Some(1.0), None, 7);
        let n = 20_000;
        let firsts = (0..n).filter(|_| s.pick(&logits) == Some(0)).count();
        let share = firsts as f64 / n as f64;
        assert!((share - 0.75).abs() < 0.02, "{share}");
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        // Probabilities ≈ 0.88 / 0.12 / ~0: top_p 0.5 leaves only the first token.
        let logits = [4.0, 2.0, -10.0];
        let mut s = sampler(Some(1.0), Some(0.5), 3);
        assert!((0..500).all(|_| s.pick(&logits) == Some(0)));
        // top_k 1 is greedy whatever the temperature.
        let mut s = Sampler::new(SamplingParams {
            temperature: Some(5.0),
            top_k: Some(1),
            seed: Some(1),
            ..SamplingParams::default()
        });
        assert!((0..200).all(|_| s.pick(&[0.0, 0.1, 0.05]) == Some(1)));
    }

    #[test]
    fn penalties_discourage_repeats() {
        let mut s = Sampler::new(SamplingParams {
            frequency_penalty: 1.0,
            ..SamplingParams::default()
        });
        // Greedy with a frequency penalty: 0 wins until it was picked enough times.
        let logits = [2.5, 1.0, 0.0];
        let picks: Vec<u32> = (0..4).map(|_| s.pick(&logits).unwrap_or(9)).collect();
        assert_eq!(picks, vec![0, 0, 1, 0]);
    }
}
