//! [`VocabSampler`]: synthetic output tokens that read as text and end like replies do.

use crate::error::TextError;
use crate::model::TextModel;
use llm_emu_core::modulus::Modulus;
use llm_emu_core::sampler::{SampleContext, TokenSampler};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};
use rand_pcg::Pcg64Mcg;
use std::sync::Arc;

/// How many tokens a reply has when nothing bounds it but EOS.
#[derive(Clone, Debug, PartialEq)]
pub enum OutputLengthDistribution {
    /// Always this many tokens.
    Fixed(u32),
    /// Uniform over `lo..=hi` tokens.
    Uniform { lo: u32, hi: u32 },
    /// exp(N(mu, sigma²)) tokens, rounded, at least 1.
    LogNormal { mu: f64, sigma: f64 },
}

impl Default for OutputLengthDistribution {
    /// ShareGPT reply lengths, approximated as a log-normal with the mean reported for ShareGPT
    /// outputs in the vLLM paper (Kwon et al., SOSP 2023, Fig. 11: 337.99 tokens) and an
    /// assumed σ = 1.0 (not fitted: the ShareGPT dump is not shipped here), so
    /// μ = ln(338) − σ²/2 ≈ 5.323 (median ≈ 205 tokens).
    fn default() -> Self {
        OutputLengthDistribution::LogNormal {
            mu: 338f64.ln() - 0.5,
            sigma: 1.0,
        }
    }
}

impl OutputLengthDistribution {
    /// Checks the parameters; a clear message if they cannot give lengths.
    pub fn validate(&self) -> Result<(), String> {
        match *self {
            OutputLengthDistribution::Fixed(0) => Err("fixed output length must be >= 1".into()),
            OutputLengthDistribution::Uniform { lo, hi } if lo == 0 || lo > hi => Err(format!(
                "uniform output length needs 1 <= lo <= hi (got {lo}..={hi})"
            )),
            OutputLengthDistribution::LogNormal { mu, sigma }
                if !mu.is_finite() || !sigma.is_finite() || sigma < 0.0 =>
            {
                Err(format!(
                    "log-normal output length needs finite mu and sigma >= 0 (got {mu}, {sigma})"
                ))
            }
            _ => Ok(()),
        }
    }

    /// One length draw (>= 1).
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> u32 {
        match *self {
            OutputLengthDistribution::Fixed(n) => n.max(1),
            OutputLengthDistribution::Uniform { lo, hi } => {
                rng.random_range(lo.max(1)..=hi.max(lo.max(1)))
            }
            OutputLengthDistribution::LogNormal { mu, sigma } => {
                let x = LogNormal::new(mu, sigma.max(0.0))
                    .map(|d| d.sample(rng))
                    .unwrap_or(1.0);
                x.round().clamp(1.0, u32::MAX as f64) as u32
            }
        }
    }
}

/// Picks output tokens from the model's readable vocabulary ([`TextModel::readable_token_ids`]:
/// whole ASCII words and a few punctuation marks, so streamed text is legible and never splits
/// a UTF-8 character), and ends a reply with EOS after a length drawn once per request.
///
/// Deterministic: the token at `index` of a request depends only on (seed, request seed,
/// index), so preemption and recomputation replay the same text.
#[derive(Clone, Debug)]
pub struct VocabSampler {
    tokens: Arc<[u32]>,
    /// `tokens.len()`, prepared for a remainder per token.
    num_tokens: Modulus,
    eos: Option<u32>,
    lengths: OutputLengthDistribution,
    seed: u64,
}

impl VocabSampler {
    /// A sampler over `model`'s readable tokens. Fails if the distribution is invalid or the
    /// vocabulary has no readable token.
    pub fn new(
        model: &TextModel,
        lengths: OutputLengthDistribution,
        seed: u64,
    ) -> Result<VocabSampler, TextError> {
        lengths.validate().map_err(TextError::InvalidSampler)?;
        let tokens = model.readable_token_ids();
        if tokens.is_empty() {
            return Err(TextError::InvalidSampler(
                "the tokenizer has no plain-word tokens to sample from".into(),
            ));
        }
        Ok(VocabSampler {
            num_tokens: Modulus::new(tokens.len() as u64),
            tokens,
            eos: model.eos_token_id(),
            lengths,
            seed,
        })
    }

    /// The reply length (tokens, EOS included) drawn for a request.
    pub fn target_length(&self, request_seed: u64) -> u32 {
        let mut rng = Pcg64Mcg::seed_from_u64(mix(self.seed ^ mix(request_seed)));
        self.lengths.sample(&mut rng)
    }
}

/// SplitMix64 finaliser: decorrelates nearby seeds.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl TokenSampler for VocabSampler {
    fn sample(&mut self, ctx: &SampleContext<'_>) -> u32 {
        if let Some(eos) = self.eos {
            let may_stop = !ctx.forbid_stop && !ctx.sampling.ignore_eos;
            // The target length counts the EOS token: index len-1 is EOS.
            if may_stop && ctx.index + 1 >= self.target_length(ctx.request_seed) as usize {
                return eos;
            }
        }
        let h = mix(self.seed ^ mix(ctx.request_seed ^ mix(ctx.index as u64)));
        let n = self.tokens.len();
        let mut i = self.num_tokens.remainder(h) as usize;
        // Readable tokens exclude EOS and added tokens already; a request's own stop token ids
        // may still be among them.
        for _ in 0..n {
            let t = self.tokens[i];
            if !ctx.sampling.is_stop_token(t) {
                return t;
            }
            i = (i + 1) % n;
        }
        self.tokens[0]
    }

    /// Every draw is a hash of the request's seed and index (the target length too).
    fn is_stateless(&self) -> bool {
        true
    }
}
