//! A ShareGPT-like synthetic workload, for runs without a workload file and for benchmarks.
//!
//! Prompt and output lengths are log-normal with σ = 1.0 and medians chosen so that the means are
//! about 220 prompt and 200 output tokens, the order of the per-request means that `vllm bench
//! serve --dataset-name sharegpt` reports with a Llama-3 tokenizer; lengths are then clipped to
//! that benchmark's filter (prompt 4–1024 tokens, output ≥ 4, prompt + output ≤ 2048). These are
//! approximations of the dataset's shape, not a fit to it. Arrivals are Poisson at the given
//! rate. Everything is drawn from one seeded PCG stream, so a seed names a workload.

use crate::workload::{synthetic_prompt, WorkloadItem};
use llm_emu_core::Nanos;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp, LogNormal};
use rand_pcg::Pcg64Mcg;

/// Log-normal parameters (of ln tokens) of the prompt lengths.
pub const PROMPT_LN_MU: f64 = 4.89;
/// Log-normal parameters (of ln tokens) of the output lengths.
pub const OUTPUT_LN_MU: f64 = 4.80;
/// Spread of both length distributions (σ of ln tokens).
pub const LEN_LN_SIGMA: f64 = 1.0;

/// An endless-until-`count` stream of synthetic requests.
pub struct SyntheticWorkload {
    rng: Pcg64Mcg,
    seed: u64,
    count: usize,
    emitted: usize,
    clock_s: f64,
    gaps: Option<Exp<f64>>,
    /// Arrival times (s) given from outside ([`SyntheticWorkload::with_arrivals`]), replacing
    /// the Poisson gaps.
    arrivals: Option<Box<dyn Iterator<Item = f64> + Send>>,
    prompt: LogNormal<f64>,
    output: LogNormal<f64>,
}

impl SyntheticWorkload {
    /// `rate` in requests per second; `f64::INFINITY` sends everything at time 0.
    pub fn new(count: usize, rate: f64, seed: u64) -> SyntheticWorkload {
        SyntheticWorkload {
            rng: Pcg64Mcg::seed_from_u64(seed),
            seed,
            count,
            emitted: 0,
            clock_s: 0.0,
            gaps: if rate.is_finite() && rate > 0.0 {
                Some(Exp::new(rate).expect("positive rate"))
            } else {
                None
            },
            arrivals: None,
            prompt: LogNormal::new(PROMPT_LN_MU, LEN_LN_SIGMA).expect("valid"),
            output: LogNormal::new(OUTPUT_LN_MU, LEN_LN_SIGMA).expect("valid"),
        }
    }
}

impl SyntheticWorkload {
    /// The same lengths and prompts, sent at the given times (seconds, non-decreasing); ends
    /// after `count` requests or when the times run out. The scenarios of
    /// [`crate::scenario`] use it.
    pub fn with_arrivals(
        count: usize,
        arrivals: Box<dyn Iterator<Item = f64> + Send>,
        seed: u64,
    ) -> SyntheticWorkload {
        let mut w = SyntheticWorkload::new(count, f64::INFINITY, seed);
        w.arrivals = Some(arrivals);
        w
    }
}

impl Iterator for SyntheticWorkload {
    type Item = WorkloadItem;

    fn next(&mut self) -> Option<WorkloadItem> {
        if self.emitted == self.count {
            return None;
        }
        if let Some(a) = &mut self.arrivals {
            self.clock_s = a.next()?;
        } else if let Some(g) = &self.gaps {
            self.clock_s += g.sample(&mut self.rng);
        }
        let prompt = (self.prompt.sample(&mut self.rng).round() as u32).clamp(4, 1024);
        let output = (self.output.sample(&mut self.rng).round() as u32).clamp(4, 2048 - prompt);
        let _ = self.rng.random::<u32>(); // keep one spare draw per request for future fields
        let i = self.emitted;
        self.emitted += 1;
        Some(WorkloadItem {
            request_id: format!("syn-{i}"),
            arrival: Nanos::from_secs_f64(self.clock_s),
            prompt_token_ids: synthetic_prompt(self.seed, i, prompt),
            output_len: output,
            priority: 0,
            cache_salt: None,
            tenant: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reproducible_and_shaped_like_sharegpt() {
        let a: Vec<_> = SyntheticWorkload::new(2000, 10.0, 3).collect();
        let b: Vec<_> = SyntheticWorkload::new(2000, 10.0, 3).collect();
        assert_eq!(a, b);
        let mean_prompt = a
            .iter()
            .map(|x| x.prompt_token_ids.len() as f64)
            .sum::<f64>()
            / 2000.0;
        let mean_out = a.iter().map(|x| x.output_len as f64).sum::<f64>() / 2000.0;
        assert!((170.0..260.0).contains(&mean_prompt), "{mean_prompt}");
        assert!((150.0..240.0).contains(&mean_out), "{mean_out}");
        assert!(a
            .iter()
            .all(|x| x.prompt_token_ids.len() + x.output_len as usize <= 2048));
        let span = a.last().unwrap().arrival.as_secs_f64();
        assert!((180.0..220.0).contains(&span), "{span}");
        assert!(SyntheticWorkload::new(5, f64::INFINITY, 1).all(|x| x.arrival == Nanos::ZERO));
    }
}
