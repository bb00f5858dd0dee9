//! `llm-emu profile-plan`: a capture workload. Sent to a real vLLM server with `llm-emu bench
//! --dataset-name workload` while the capture plug-in (`plugins/vllm-capture`) records its
//! steps, it makes the step shapes a step-cycle pack is keyed by: prefill chunks of each prompt
//! length, batches of each concurrency, and decode steps whose context grows from
//! concurrency × prompt length to concurrency × (prompt length + output length).
//!
//! The plan is a sequence of phases, one per (prompt length, concurrency) pair: `concurrency`
//! requests of `prompt_len` tokens arriving together, each generating `output_len` tokens.
//! Phases are spaced by an estimate of their duration so that one has drained before the next
//! arrives; a phase that overlaps the next only adds mixed shapes, it does not spoil the pack.

use anyhow::{bail, Context, Result};
use clap::Args;
use llm_emu_sim::report::write_atomic;
use llm_emu_sim::workload::synthetic_ids;
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(Args)]
pub struct ProfilePlanArgs {
    /// Where to write the workload (plain JSONL: `arrival_s`, `prompt_len`, `output_len`,
    /// `request_id`).
    #[arg(long, short)]
    out: PathBuf,
    /// Prompt lengths, tokens.
    #[arg(long, value_delimiter = ',', default_value = "32,128,512,2048")]
    prompt_lens: Vec<u32>,
    /// Concurrencies: requests arriving together in one phase.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16,32,64")]
    concurrency: Vec<u32>,
    /// Output tokens per request (decode steps per phase).
    #[arg(long, default_value_t = 64)]
    output_len: u32,
    /// Phases per (prompt length, concurrency) pair: more samples per cell.
    #[arg(long, default_value_t = 1)]
    repeats: u32,
    /// Expected step time on the target, ms; spaces the phases (an overestimate only makes the
    /// capture longer).
    #[arg(long, default_value_t = 30.0)]
    step_ms: f64,
    /// The server's `--max-num-batched-tokens`: how many prefill steps a phase needs.
    #[arg(long, default_value_t = 8192)]
    max_num_batched_tokens: u32,
    /// The server's `--max-model-len`: prompt + output lengths above it are refused.
    #[arg(long)]
    max_model_len: Option<u32>,
    /// Write each prompt's token ids (`prompt_token_ids`) instead of its length, for clients
    /// that send the file as it is; the ids are those `simulate` and `bench` draw for a
    /// `prompt_len` line (uniform in [1000, 30000), no shared prefixes).
    #[arg(long)]
    token_ids: bool,
    /// Seed of the token ids written with `--token-ids`.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// One phase of the plan: `concurrency` requests of `prompt_len` tokens arriving at `start_s`.
#[derive(Clone, Debug, PartialEq)]
pub struct Phase {
    pub start_s: f64,
    pub prompt_len: u32,
    pub concurrency: u32,
}

/// How the phases are laid out.
#[derive(Clone, Debug)]
pub struct PlanShape {
    pub prompt_lens: Vec<u32>,
    pub concurrency: Vec<u32>,
    pub output_len: u32,
    pub repeats: u32,
    /// Expected step time, seconds.
    pub step_s: f64,
    pub max_num_batched_tokens: u32,
}

/// Seconds a phase is expected to take: its prefill steps (the whole burst's prompt tokens in
/// chunks of the token budget) and its decode steps, each `step_s`, with half again as margin
/// and a quarter second for the client and server to settle.
pub fn phase_duration_s(shape: &PlanShape, prompt_len: u32, concurrency: u32) -> f64 {
    let prompt_tokens = u64::from(prompt_len) * u64::from(concurrency);
    let budget = u64::from(shape.max_num_batched_tokens.max(1));
    let prefill_steps = prompt_tokens.div_ceil(budget);
    let steps = prefill_steps + u64::from(shape.output_len);
    steps as f64 * shape.step_s * 1.5 + 0.25
}

/// The phases in order: prompt lengths outermost, concurrencies inside, repeats innermost.
pub fn phases(shape: &PlanShape) -> Vec<Phase> {
    let mut out = Vec::new();
    let mut t = 0.0;
    for &p in &shape.prompt_lens {
        for &c in &shape.concurrency {
            for _ in 0..shape.repeats {
                out.push(Phase {
                    start_s: t,
                    prompt_len: p,
                    concurrency: c,
                });
                t += phase_duration_s(shape, p, c);
            }
        }
    }
    out
}

/// The workload lines of the phases (plain format, one request per line). With
/// `token_ids_seed`, each prompt is written as token ids drawn for its line number.
pub fn workload_jsonl(phases: &[Phase], output_len: u32, token_ids_seed: Option<u64>) -> String {
    let mut s = String::new();
    let mut line = 0usize;
    for (k, ph) in phases.iter().enumerate() {
        for i in 0..ph.concurrency {
            let prompt = match token_ids_seed {
                Some(seed) => {
                    let ids = synthetic_ids(seed, line, ph.prompt_len);
                    let ids: Vec<String> = ids.iter().map(u32::to_string).collect();
                    format!("\"prompt_token_ids\":[{}]", ids.join(","))
                }
                None => format!("\"prompt_len\":{}", ph.prompt_len),
            };
            // Arrival times rounded to the microsecond so the file reads back the same.
            let _ = writeln!(
                s,
                "{{\"arrival_s\":{:.6},{prompt},\"output_len\":{},\"request_id\":\"plan-{k}-p{}-c{}-{i}\"}}",
                ph.start_s, output_len, ph.prompt_len, ph.concurrency
            );
            line += 1;
        }
    }
    s
}

fn check(a: &ProfilePlanArgs) -> Result<()> {
    if a.prompt_lens.is_empty() || a.prompt_lens.contains(&0) {
        bail!("--prompt-lens: give at least one length, each at least 1");
    }
    if a.concurrency.is_empty() || a.concurrency.contains(&0) {
        bail!("--concurrency: give at least one value, each at least 1");
    }
    if a.output_len == 0 {
        bail!("--output-len must be at least 1");
    }
    if a.repeats == 0 {
        bail!("--repeats must be at least 1");
    }
    if !(a.step_ms.is_finite() && a.step_ms > 0.0) {
        bail!("--step-ms must be a positive number, got {}", a.step_ms);
    }
    if let Some(m) = a.max_model_len {
        if let Some(p) = a
            .prompt_lens
            .iter()
            .find(|&&p| u64::from(p) + u64::from(a.output_len) > u64::from(m))
        {
            bail!(
                "--prompt-lens: {p} + --output-len {} is above --max-model-len {m}",
                a.output_len
            );
        }
    }
    Ok(())
}

pub fn run(a: ProfilePlanArgs) -> Result<()> {
    check(&a)?;
    let shape = PlanShape {
        prompt_lens: a.prompt_lens.clone(),
        concurrency: a.concurrency.clone(),
        output_len: a.output_len,
        repeats: a.repeats,
        step_s: a.step_ms / 1000.0,
        max_num_batched_tokens: a.max_num_batched_tokens,
    };
    let ph = phases(&shape);
    let text = workload_jsonl(&ph, a.output_len, a.token_ids.then_some(a.seed));
    write_atomic(&a.out, text.as_bytes())
        .with_context(|| format!("writing {}", a.out.display()))?;
    let requests: u64 = ph.iter().map(|p| u64::from(p.concurrency)).sum();
    let end = ph
        .last()
        .map(|p| p.start_s + phase_duration_s(&shape, p.prompt_len, p.concurrency))
        .unwrap_or(0.0);
    eprintln!(
        "{}: {} phases, {requests} requests, about {end:.0} s at {} ms per step",
        a.out.display(),
        ph.len(),
        a.step_ms
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> PlanShape {
        PlanShape {
            prompt_lens: vec![16, 1000],
            concurrency: vec![1, 4],
            output_len: 10,
            repeats: 2,
            step_s: 0.01,
            max_num_batched_tokens: 2048,
        }
    }

    #[test]
    fn every_pair_gets_its_phases_in_order_without_overlap() {
        let s = shape();
        let ph = phases(&s);
        assert_eq!(ph.len(), 2 * 2 * 2);
        let pairs: Vec<(u32, u32)> = ph.iter().map(|p| (p.prompt_len, p.concurrency)).collect();
        assert_eq!(
            pairs,
            [
                (16, 1),
                (16, 1),
                (16, 4),
                (16, 4),
                (1000, 1),
                (1000, 1),
                (1000, 4),
                (1000, 4)
            ]
        );
        for w in ph.windows(2) {
            let d = phase_duration_s(&s, w[0].prompt_len, w[0].concurrency);
            assert!((w[1].start_s - w[0].start_s - d).abs() < 1e-9);
        }
    }

    #[test]
    fn duration_counts_chunked_prefill_steps() {
        let s = shape();
        // 4000 prompt tokens in chunks of 2048: 2 prefill steps + 10 decode steps.
        let d = phase_duration_s(&s, 1000, 4);
        assert!((d - (12.0 * 0.01 * 1.5 + 0.25)).abs() < 1e-9, "{d}");
        // 16 tokens: one prefill step.
        let d = phase_duration_s(&s, 16, 1);
        assert!((d - (11.0 * 0.01 * 1.5 + 0.25)).abs() < 1e-9, "{d}");
    }

    #[test]
    fn lines_are_one_request_each_with_unique_ids() {
        let s = shape();
        let text = workload_jsonl(&phases(&s), s.output_len, None);
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(lines.len(), 2 * (1 + 4) * 2);
        let ids: std::collections::BTreeSet<&str> = lines
            .iter()
            .map(|v| v["request_id"].as_str().expect("id"))
            .collect();
        assert_eq!(ids.len(), lines.len());
        assert!(lines.iter().all(|v| v["output_len"] == 10));
        let burst = lines
            .iter()
            .filter(|v| v["prompt_len"] == 1000 && v["arrival_s"] == lines[12]["arrival_s"])
            .count();
        assert_eq!(burst, 4);
    }

    #[test]
    fn token_ids_have_the_planned_lengths_and_differ_between_requests() {
        let s = shape();
        let text = workload_jsonl(&phases(&s), s.output_len, Some(7));
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert!(lines.iter().all(|v| v.get("prompt_len").is_none()));
        let lens: Vec<usize> = lines
            .iter()
            .map(|v| v["prompt_token_ids"].as_array().expect("ids").len())
            .collect();
        assert_eq!(&lens[..2], &[16, 16]);
        assert_eq!(lens[12], 1000);
        assert_ne!(lines[0]["prompt_token_ids"], lines[1]["prompt_token_ids"]);
    }
}
