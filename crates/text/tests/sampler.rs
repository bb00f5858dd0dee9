//! VocabSampler: deterministic, readable, EOS at a drawn length, never early or when bounded.

use llm_emu_core::request::SamplingParams;
use llm_emu_core::sampler::{SampleContext, TokenSampler};
use llm_emu_text::*;

fn params(m: &TextModel, ignore_eos: bool) -> SamplingParams {
    SamplingParams {
        max_tokens: 100_000,
        ignore_eos,
        eos_token_id: m.eos_token_id(),
        ..Default::default()
    }
}

/// Samples a request until EOS (or `limit` tokens); returns the tokens.
fn run(
    s: &mut VocabSampler,
    sp: &SamplingParams,
    seed: u64,
    forbid_until: usize,
    limit: usize,
) -> Vec<u32> {
    let mut out = Vec::new();
    for index in 0..limit {
        let t = s.sample(&SampleContext {
            request_id: "r",
            request_seed: seed,
            index,
            sampling: sp,
            forbid_stop: index < forbid_until,
        });
        out.push(t);
        if Some(t) == sp.eos_token_id {
            break;
        }
    }
    out
}

#[test]
fn deterministic_readable_and_ends_at_target_length() {
    let m = TextModel::load(&TokenizerSource::Builtin).unwrap();
    let eos = m.eos_token_id().unwrap();
    let mut s = VocabSampler::new(&m, OutputLengthDistribution::default(), 42).unwrap();
    let sp = params(&m, false);
    for seed in 0..20u64 {
        let a = run(&mut s, &sp, seed, 0, 100_000);
        let b = run(&mut s.clone(), &sp, seed, 0, 100_000);
        assert_eq!(a, b, "same seeds, same tokens");
        assert_eq!(
            a.len() as u32,
            s.target_length(seed),
            "EOS is the last of the target length"
        );
        assert_eq!(*a.last().unwrap(), eos);
        let body = &a[..a.len() - 1];
        assert!(body.iter().all(|&t| !m.is_special(t) && t != eos));
        let text = m.decode(body, true).unwrap();
        assert!(!text.contains('\u{fffd}'));
        assert!(
            text.chars()
                .all(|c| c.is_ascii_alphabetic() || " .,!?".contains(c)),
            "{text:?}"
        );
    }
    // A different sampler seed gives different text.
    let mut other = VocabSampler::new(&m, OutputLengthDistribution::default(), 43).unwrap();
    assert_ne!(run(&mut s, &sp, 1, 0, 50), run(&mut other, &sp, 1, 0, 50));
}

#[test]
fn no_eos_when_forbidden_or_ignored() {
    let m = TextModel::load(&TokenizerSource::Builtin).unwrap();
    let eos = m.eos_token_id().unwrap();
    let mut s = VocabSampler::new(&m, OutputLengthDistribution::Fixed(5), 1).unwrap();
    // min_tokens: EOS only once stopping is allowed again.
    let out = run(&mut s, &params(&m, false), 9, 12, 1000);
    assert_eq!(out.len(), 13);
    assert_eq!(out[12], eos);
    // ignore_eos: never EOS (the engine's max_tokens ends it).
    let out = run(&mut s, &params(&m, true), 9, 0, 500);
    assert_eq!(out.len(), 500);
    assert!(!out.contains(&eos));
    // A request's stop token ids are never drawn as ordinary tokens.
    let mut sp = params(&m, true);
    let drawn = run(&mut s, &sp, 3, 0, 200);
    sp.stop_token_ids = drawn.clone();
    let again = run(&mut s, &sp, 3, 0, 200);
    assert!(again.iter().all(|t| !drawn.contains(t)));
}

#[test]
fn default_lengths_follow_the_sharegpt_fit() {
    let m = TextModel::load(&TokenizerSource::Builtin).unwrap();
    let s = VocabSampler::new(&m, OutputLengthDistribution::default(), 5).unwrap();
    let n = 20_000u64;
    let mut lens: Vec<u32> = (0..n).map(|i| s.target_length(i)).collect();
    let mean = lens.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
    lens.sort_unstable();
    let median = lens[lens.len() / 2];
    assert!((mean - 338.0).abs() < 338.0 * 0.06, "mean {mean}");
    assert!((190..=220).contains(&median), "median {median}");
    assert!(lens[0] >= 1);
}

#[test]
fn bad_distributions_are_refused() {
    let m = TextModel::load(&TokenizerSource::Builtin).unwrap();
    for d in [
        OutputLengthDistribution::Fixed(0),
        OutputLengthDistribution::Uniform { lo: 5, hi: 2 },
        OutputLengthDistribution::LogNormal {
            mu: f64::NAN,
            sigma: 1.0,
        },
        OutputLengthDistribution::LogNormal {
            mu: 1.0,
            sigma: -1.0,
        },
    ] {
        assert!(VocabSampler::new(&m, d.clone(), 0).is_err(), "{d:?}");
    }
    let s = VocabSampler::new(&m, OutputLengthDistribution::Uniform { lo: 3, hi: 4 }, 0).unwrap();
    assert!((0..100).all(|i| (3..=4).contains(&s.target_length(i))));
}
