//! Per-request output rules layered over the engine's token sampler: a scripted document (the
//! token ids of a structured output or tool call, then EOS), the prompt repeated (echo mode),
//! and a request `seed` in place of the request id's hash.
//!
//! The rules live in a registry keyed by engine request id, written by the frontend before it
//! submits a request and cleared when the request's submission ends. The engine's own rules
//! (max_tokens, min_tokens, ignore_eos, stop token ids) still decide where a request ends: a
//! script only chooses which token ids it sees.

use llm_emu_core::sampler::{SampleContext, TokenSampler};
use rustc_hash::FxHashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// What comes after a script's tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterScript {
    /// EOS (the model's grammar admits nothing else once the document is complete); the
    /// inner sampler where the model has no EOS.
    Eos,
    /// The tokens again, cyclically; EOS and stop tokens where the inner sampler ends the
    /// request (echo mode keeps the engine's reply lengths).
    Cycle,
}

/// One engine request's rules.
#[derive(Clone, Debug)]
pub struct Script {
    /// Token ids to emit in order (empty: the inner sampler's).
    pub tokens: Arc<[u32]>,
    pub after: AfterScript,
    /// Replaces the request id's hash as the inner sampler's request seed.
    pub seed: Option<u64>,
}

/// The registry the frontend writes and the sampler reads.
#[derive(Default)]
pub struct Scripts {
    map: Mutex<FxHashMap<String, Arc<Script>>>,
    /// Entries in `map`: the sampler skips the lock while no request has a script.
    live: AtomicUsize,
}

impl Scripts {
    pub fn new() -> Arc<Scripts> {
        Arc::new(Scripts::default())
    }

    /// Sets the rules of engine request `id` (before it is submitted).
    pub fn insert(&self, id: &str, script: Script) {
        if let Ok(mut m) = self.map.lock() {
            if m.insert(id.to_string(), Arc::new(script)).is_none() {
                self.live.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Clears the rules of engine request `id` (once its submission ends).
    pub fn remove(&self, id: &str) {
        if self.live.load(Ordering::Relaxed) == 0 {
            return;
        }
        if let Ok(mut m) = self.map.lock() {
            if m.remove(id).is_some() {
                self.live.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    fn get(&self, id: &str) -> Option<Arc<Script>> {
        if self.live.load(Ordering::Relaxed) == 0 {
            return None;
        }
        self.map.lock().ok()?.get(id).cloned()
    }

    /// Requests with rules now.
    pub fn len(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The engine's sampler with the registry's rules applied.
pub struct ScriptedSampler {
    inner: Box<dyn TokenSampler>,
    scripts: Arc<Scripts>,
}

impl ScriptedSampler {
    pub fn new(inner: Box<dyn TokenSampler>, scripts: Arc<Scripts>) -> ScriptedSampler {
        ScriptedSampler { inner, scripts }
    }
}

impl TokenSampler for ScriptedSampler {
    fn sample(&mut self, ctx: &SampleContext<'_>) -> u32 {
        let Some(script) = self.scripts.get(ctx.request_id) else {
            return self.inner.sample(ctx);
        };
        let mut ctx = *ctx;
        if let Some(seed) = script.seed {
            ctx.request_seed = seed;
        }
        let tokens = &script.tokens;
        if tokens.is_empty() {
            return self.inner.sample(&ctx);
        }
        match script.after {
            AfterScript::Eos => match tokens.get(ctx.index) {
                Some(&t) => t,
                None => match ctx.sampling.eos_token_id {
                    Some(eos) => eos,
                    None => self.inner.sample(&ctx),
                },
            },
            AfterScript::Cycle => {
                let t = self.inner.sample(&ctx);
                if ctx.sampling.is_stop_token(t) {
                    t
                } else {
                    tokens[ctx.index % tokens.len()]
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llm_emu_core::sampler::HashSampler;
    use llm_emu_core::SamplingParams;

    fn ctx<'a>(id: &'a str, index: usize, sampling: &'a SamplingParams) -> SampleContext<'a> {
        SampleContext {
            request_id: id,
            request_seed: 11,
            index,
            sampling,
            forbid_stop: false,
        }
    }

    #[test]
    fn script_then_eos_and_unscripted_requests_untouched() {
        let scripts = Scripts::new();
        let mut s = ScriptedSampler::new(Box::new(HashSampler::default()), scripts.clone());
        let mut plain = HashSampler::default();
        let sp = SamplingParams {
            max_tokens: 10,
            eos_token_id: Some(2),
            ..Default::default()
        };
        scripts.insert(
            "a",
            Script {
                tokens: vec![7, 8].into(),
                after: AfterScript::Eos,
                seed: None,
            },
        );
        let got: Vec<u32> = (0..4).map(|i| s.sample(&ctx("a", i, &sp))).collect();
        assert_eq!(got, [7, 8, 2, 2]);
        assert_eq!(s.sample(&ctx("b", 0, &sp)), plain.sample(&ctx("b", 0, &sp)));
        scripts.remove("a");
        assert!(scripts.is_empty());
        assert_eq!(s.sample(&ctx("a", 0, &sp)), plain.sample(&ctx("a", 0, &sp)));
    }
}
