//! Synthetic output tokens: what the emulated model "samples".

use crate::modulus::Modulus;
use crate::request::SamplingParams;

/// What a sampler knows when it picks a request's next token.
#[derive(Copy, Clone, Debug)]
pub struct SampleContext<'a> {
    pub request_id: &'a str,
    /// A stable hash of the request id (computed once per request).
    pub request_seed: u64,
    /// How many tokens were sampled for this request before (in-flight ones included).
    pub index: usize,
    pub sampling: &'a SamplingParams,
    /// vLLM's min-tokens logits processor: EOS and stop token ids may not be produced yet.
    pub forbid_stop: bool,
}

/// Picks output token ids.
pub trait TokenSampler: Send {
    fn sample(&mut self, ctx: &SampleContext<'_>) -> u32;
}

/// Token ids in `[lo, hi)` from a hash of the request id and index: never EOS or special
/// tokens, so outputs run to `max_tokens` (as vLLM does with `ignore_eos` or pinned lengths).
#[derive(Clone, Debug)]
pub struct HashSampler {
    lo: u32,
    hi: u32,
    /// `hi − lo` (at least one), prepared for a remainder per token.
    span: Modulus,
}

impl HashSampler {
    /// Tokens in `[lo, hi)`; an empty range gives `lo`.
    pub fn new(lo: u32, hi: u32) -> HashSampler {
        HashSampler {
            lo,
            hi,
            span: Modulus::new(hi.saturating_sub(lo).max(1) as u64),
        }
    }
}

impl Default for HashSampler {
    fn default() -> Self {
        HashSampler::new(1000, 30000)
    }
}

impl TokenSampler for HashSampler {
    fn sample(&mut self, ctx: &SampleContext<'_>) -> u32 {
        // SplitMix64 of (request seed, index): cheap and well mixed.
        let mut z = ctx
            .request_seed
            .wrapping_add((ctx.index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        let h = z ^ (z >> 31);
        let mut t = self.lo + self.span.remainder(h) as u32;
        if ctx.sampling.is_stop_token(t) {
            t = if t + 1 < self.hi { t + 1 } else { self.lo };
        }
        t
    }
}
