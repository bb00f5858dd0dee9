//! Encode / detokenize / sample speed of the text crate, per token, on the built-in Llama 3.1
//! tokenizer: `cargo bench -p llm-emu-text --bench text_throughput`.
//!
//! Plain timing loops (no criterion, to keep the dependency tree small): each figure is the
//! best of 5 runs, in microseconds per token.

use llm_emu_core::request::SamplingParams;
use llm_emu_core::sampler::{SampleContext, TokenSampler};
use llm_emu_text::*;
use std::hint::black_box;
use std::time::Instant;

fn best_of<F: FnMut() -> usize>(runs: usize, mut f: F) -> (f64, usize) {
    let mut best = f64::INFINITY;
    let mut n = 0;
    for _ in 0..runs {
        let t = Instant::now();
        n = f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    (best, n)
}

fn main() {
    let t = Instant::now();
    let m = TextModel::load(&TokenizerSource::Builtin).unwrap();
    println!(
        "load builtin tokenizer: {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let t = Instant::now();
    let readable = m.readable_token_ids().len();
    println!(
        "readable-token scan: {:.1} ms ({readable} tokens)",
        t.elapsed().as_secs_f64() * 1e3
    );

    let para = "The quick brown fox jumps over the lazy dog. Ünïcödé, 日本語 and emoji 😀 \
                appear too; numbers 12345 and code `fn main() {}` as well.\n";
    let text = para.repeat(200);
    let (s, n) = best_of(5, || black_box(m.encode(&text, false).unwrap()).len());
    println!(
        "encode: {:.3} µs/token ({n} tokens, {:.1} MB/s)",
        s * 1e6 / n as f64,
        text.len() as f64 / s / 1e6
    );

    let prompt = m.encode(&para.repeat(20), true).unwrap();
    let out = m.encode(&text, false).unwrap();
    for (label, opts) in [
        ("detokenize", DetokenizeOptions::default()),
        (
            "detokenize + 2 stop strings, streaming",
            DetokenizeOptions {
                stop: vec!["never appears".into(), "###".into()],
                streaming: true,
                ..Default::default()
            },
        ),
    ] {
        let (s, n) = best_of(5, || {
            let mut d = m.detokenizer(&prompt, opts.clone());
            let mut bytes = 0;
            for &t in &out {
                bytes += d.push(t).unwrap().delta.len();
            }
            black_box(bytes);
            out.len()
        });
        println!(
            "{label}: {:.3} µs/token ({n} tokens, prompt {} tokens)",
            s * 1e6 / n as f64,
            prompt.len()
        );
    }

    let (s, n) = best_of(5, || {
        // One short request's worth: the prompt-priming cost is paid per request.
        let mut total = 0;
        for _ in 0..100 {
            let mut d = m.detokenizer(&prompt, DetokenizeOptions::default());
            for &t in &out[..100] {
                black_box(d.push(t).unwrap());
            }
            total += 100;
        }
        total
    });
    println!(
        "detokenize, 100-token requests incl. setup with a {}-token prompt: {:.3} µs/token",
        prompt.len(),
        s * 1e6 / n as f64
    );

    let mut sampler = VocabSampler::new(&m, OutputLengthDistribution::default(), 7).unwrap();
    let sp = SamplingParams {
        max_tokens: 1 << 20,
        eos_token_id: m.eos_token_id(),
        ..Default::default()
    };
    let (s, n) = best_of(5, || {
        let mut acc = 0u64;
        for i in 0..200_000 {
            let ctx = SampleContext {
                request_id: "r",
                request_seed: (i / 1000) as u64,
                index: i % 1000,
                sampling: &sp,
                forbid_stop: false,
            };
            acc = acc.wrapping_add(sampler.sample(&ctx) as u64);
        }
        black_box(acc);
        200_000
    });
    println!("VocabSampler::sample: {:.3} µs/token", s * 1e6 / n as f64);
}
