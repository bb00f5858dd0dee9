//! `llm-emu profile-pack`: builds a step-cycle pack from measured step records.

use anyhow::{bail, Context, Result};
use clap::Args;
use llm_emu_core::latency::step_cycle::pack::build_pack;
use llm_emu_sim::report::write_atomic;
use serde_json::Value;
use std::io::BufRead;
use std::path::PathBuf;

#[derive(Args)]
pub struct ProfilePackArgs {
    /// JSON lines, one per engine step: `llm-emu simulate --steps-out` lines (`num_tokens`,
    /// `running`, `context_tokens`, `duration_ms`) or `{tt, conc, [ctx], duration_us}` from any
    /// other source (e.g. a real GPU's step log).
    #[arg(long)]
    steps: PathBuf,
    /// Where to write the pack (JSON, written atomically).
    #[arg(long)]
    out: PathBuf,
    /// Bucket width of scheduled tokens per step.
    #[arg(long, default_value_t = 64.0)]
    tt_bucket: f64,
    /// Bucket width of running requests.
    #[arg(long, default_value_t = 8.0)]
    conc_bucket: f64,
    /// Bucket width of context tokens (adds llm-emu's third axis; off by default, giving
    /// LLM-Emu's 2-D format).
    #[arg(long)]
    ctx_bucket: Option<f64>,
}

/// (tt, conc, ctx, µs) from one line of either format.
fn parse_line(v: &Value) -> Option<(u64, u64, u64, f64)> {
    let u = |k: &str| v.get(k).and_then(Value::as_u64);
    let f = |k: &str| v.get(k).and_then(Value::as_f64);
    if let (Some(tt), Some(conc), Some(us)) = (u("tt"), u("conc"), f("duration_us")) {
        return Some((tt, conc, u("ctx").unwrap_or(0), us));
    }
    let (tt, conc, ms) = (u("num_tokens")?, u("running")?, f("duration_ms")?);
    Some((tt, conc, u("context_tokens").unwrap_or(0), ms * 1e3))
}

pub fn run(a: ProfilePackArgs) -> Result<()> {
    for (name, w) in [
        ("--tt-bucket", Some(a.tt_bucket)),
        ("--conc-bucket", Some(a.conc_bucket)),
        ("--ctx-bucket", a.ctx_bucket),
    ] {
        if let Some(w) = w {
            if !(w.is_finite() && w > 0.0) {
                bail!("{name} must be a positive number, got {w}");
            }
        }
    }
    let f =
        std::fs::File::open(&a.steps).with_context(|| format!("opening {}", a.steps.display()))?;
    let mut steps = Vec::new();
    let mut skipped = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", a.steps.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let rec = serde_json::from_str::<Value>(&line)
            .ok()
            .and_then(|v| parse_line(&v))
            .filter(|r| r.3.is_finite() && r.3 > 0.0);
        match rec {
            Some(r) => steps.push(r),
            None => skipped.push(i + 1),
        }
    }
    if !skipped.is_empty() {
        eprintln!(
            "warning: {} line(s) skipped (not a step record with a positive duration), first: {:?}",
            skipped.len(),
            &skipped[..skipped.len().min(5)]
        );
    }
    if steps.is_empty() {
        bail!("{}: no step records", a.steps.display());
    }
    let n = steps.len();
    let pack = build_pack(steps, a.tt_bucket, a.conc_bucket, a.ctx_bucket);
    let cells = pack["prefill_2d_distribution"]
        .as_array()
        .map_or(0, Vec::len);
    write_atomic(&a.out, &serde_json::to_vec(&pack)?)
        .with_context(|| format!("writing {}", a.out.display()))?;
    eprintln!("{n} steps in {cells} cells → {}", a.out.display());
    Ok(())
}
