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

impl<'a> SampleContext<'a> {
    /// The context of a request's token `index`, with vLLM's min-tokens rule for it: stop
    /// tokens are forbidden while fewer than `min_tokens` were sampled before.
    #[inline]
    pub fn for_token(
        request_id: &'a str,
        request_seed: u64,
        index: usize,
        sampling: &'a SamplingParams,
    ) -> Self {
        SampleContext {
            request_id,
            request_seed,
            index,
            sampling,
            forbid_stop: index < sampling.min_tokens as usize,
        }
    }

    /// The context of the request's token `by` places after this one's.
    #[inline]
    pub fn ahead(&self, by: usize) -> Self {
        SampleContext::for_token(
            self.request_id,
            self.request_seed,
            self.index + by,
            self.sampling,
        )
    }
}

/// Picks output token ids.
pub trait TokenSampler: Send {
    fn sample(&mut self, ctx: &SampleContext<'_>) -> u32;

    /// The request's next `out.len()` tokens from `ctx` on ([`SampleContext::ahead`]), as
    /// that many calls of [`Self::sample`] draw them; for a stateless sampler
    /// ([`Self::is_stateless`]), which may draw them together.
    fn sample_ahead(&mut self, ctx: &SampleContext<'_>, out: &mut [u32]) {
        for (k, t) in out.iter_mut().enumerate() {
            *t = self.sample(&ctx.ahead(k));
        }
    }

    /// Whether each token is a function of its [`SampleContext`] alone, whatever was drawn
    /// before: then the engine may draw a request's tokens of several steps together
    /// (decode runs) in another order than step by step. `false` unless a sampler says so.
    fn is_stateless(&self) -> bool {
        false
    }

    /// For a stateless sampler ([`Self::is_stateless`]): a copy that draws the same tokens.
    /// The scheduler keeps it to draw, when a request is preempted, the tokens a decode run
    /// counted without drawing ([`crate::Request::has_undrawn_outputs`]). `None` (the
    /// default): every token is drawn when it is sampled.
    fn stateless_copy(&self) -> Option<Box<dyn TokenSampler>> {
        None
    }
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

impl HashSampler {
    /// The token drawn for `index` before the stop-token rule.
    #[inline(always)]
    fn draw(&self, request_seed: u64, index: usize) -> u32 {
        // SplitMix64 of (request seed, index): cheap and well mixed.
        let mut z =
            request_seed.wrapping_add((index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        let h = z ^ (z >> 31);
        self.lo + self.span.remainder(h) as u32
    }

    /// A stop token moves to the next id (EOS and stop ids are never drawn).
    #[inline(always)]
    fn avoid_stop(&self, t: u32, ctx: &SampleContext<'_>) -> u32 {
        if ctx.sampling.is_stop_token(t) {
            if t + 1 < self.hi {
                t + 1
            } else {
                self.lo
            }
        } else {
            t
        }
    }
}

impl TokenSampler for HashSampler {
    fn sample(&mut self, ctx: &SampleContext<'_>) -> u32 {
        self.avoid_stop(self.draw(ctx.request_seed, ctx.index), ctx)
    }

    /// The draws of consecutive indices are independent: one loop, the stop-token rule only
    /// where the request has stop tokens.
    fn sample_ahead(&mut self, ctx: &SampleContext<'_>, out: &mut [u32]) {
        for (k, t) in out.iter_mut().enumerate() {
            *t = self.draw(ctx.request_seed, ctx.index + k);
        }
        let s = ctx.sampling;
        if s.eos_token_id.is_some() || !s.stop_token_ids.is_empty() {
            for t in out.iter_mut() {
                *t = self.avoid_stop(*t, ctx);
            }
        }
    }

    fn is_stateless(&self) -> bool {
        true
    }

    fn stateless_copy(&self) -> Option<Box<dyn TokenSampler>> {
        Some(Box::new(self.clone()))
    }
}
