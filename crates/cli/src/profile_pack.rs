//! `llm-emu profile-pack`: a step-cycle pack from per-step measurements (llm-emu `--steps-out`,
//! the vLLM reference server's `EMU_TRACE`, the vLLM capture plug-in, or LLM-Emu step-cycle
//! traces); with `--merge PACK`, new records folded into an existing pack.

use anyhow::{bail, Context, Result};
use clap::Args;
use llm_emu_perf::latency::step_cycle::build::{PackBuilder, StepSample};
use llm_emu_sim::report::write_atomic;
use serde_json::Value;
use std::io::BufRead;
use std::path::PathBuf;

#[derive(Args)]
pub struct ProfilePackArgs {
    /// JSONL files of step records, one step per line.
    #[arg(required = true)]
    steps: Vec<PathBuf>,
    /// Where to write the pack (JSON).
    #[arg(long, short)]
    out: PathBuf,
    /// Width of total-token buckets (1: one cell per token count; with --merge, the pack's).
    #[arg(long)]
    tt_bucket_width: Option<u64>,
    /// Width of concurrency (scheduled requests) buckets (5; with --merge, the pack's).
    #[arg(long)]
    conc_bucket_width: Option<u64>,
    /// Also key cells by context tokens in buckets of this width (our extended pack type;
    /// with --merge, the pack's).
    #[arg(long)]
    ctx_bucket_width: Option<u64>,
    /// Start from this pack's cells and add the step records to them (`-o` may name the same
    /// file): a pack follows a live server's step log without keeping the old logs. The pack's
    /// bucket widths are kept; widths given that differ are refused.
    #[arg(long, value_name = "PACK")]
    merge: Option<PathBuf>,
    /// GPU name recorded in the pack.
    #[arg(long)]
    gpu_model: Option<String>,
    /// Model name recorded in the pack.
    #[arg(long)]
    model_name: Option<String>,
}

/// Bucket widths (tt, conc, ctx) of a pack's `bucketing` object.
fn pack_widths(pack: &Value) -> Result<(u64, u64, Option<u64>)> {
    let b = pack
        .get("bucketing")
        .context("no `bucketing` object (not a 2-D step-cycle pack)")?;
    let w = |k: &str| b.get(k).and_then(Value::as_u64);
    let tt = w("tt_bucket_width").context("`bucketing.tt_bucket_width` missing")?;
    let conc = w("conc_bucket_width").context("`bucketing.conc_bucket_width` missing")?;
    Ok((tt, conc, w("ctx_bucket_width")))
}

/// The widths to build with: the flags' (or the defaults), or with a pack to merge into, the
/// pack's, refusing flags that differ from them.
fn widths(a: &ProfilePackArgs, pack: Option<&Value>) -> Result<(u64, u64, Option<u64>)> {
    let Some(pack) = pack else {
        return Ok((
            a.tt_bucket_width.unwrap_or(1),
            a.conc_bucket_width.unwrap_or(5),
            a.ctx_bucket_width,
        ));
    };
    let (tt, conc, ctx) = pack_widths(pack)?;
    for (flag, given, have) in [
        ("--tt-bucket-width", a.tt_bucket_width, Some(tt)),
        ("--conc-bucket-width", a.conc_bucket_width, Some(conc)),
        ("--ctx-bucket-width", a.ctx_bucket_width, ctx),
    ] {
        if given.is_some() && given != have {
            bail!(
                "{flag} {} differs from the merged pack's ({}): cells of different widths cannot be merged",
                given.map_or("none".into(), |x| x.to_string()),
                have.map_or("none".into(), |x| x.to_string())
            );
        }
    }
    Ok((tt, conc, ctx))
}

/// Adds every sample of a pack's prefill and decode tables to `b`, as steps of the cell's
/// (bucket-centre) shape: a centre falls in its own bucket, so each sample lands in the cell it
/// came from. Returns the samples added.
fn add_pack(b: &mut PackBuilder, pack: &Value) -> Result<usize> {
    if pack
        .get("alpha_kv")
        .and_then(Value::as_f64)
        .is_some_and(|x| x > 0.0)
    {
        bail!("packs keyed by tt_eff (`alpha_kv` > 0) cannot be merged with step records");
    }
    let mut n = 0;
    let mut split = false;
    for (table, prefill) in [
        ("prefill_2d_distribution", true),
        ("decode_2d_distribution", false),
    ] {
        let Some(cells) = pack.get(table).and_then(Value::as_array) else {
            continue;
        };
        split |= !cells.is_empty();
        for (i, c) in cells.iter().enumerate() {
            let at = || format!("{table}[{i}]");
            let key = |k: &str| c.get(k).and_then(Value::as_u64);
            let samples = c
                .get("samples")
                .and_then(Value::as_array)
                .with_context(|| format!("{}: `samples` missing", at()))?;
            for x in samples {
                let s = StepSample {
                    tt: key("tt").with_context(|| format!("{}: `tt`", at()))?,
                    conc: key("conc").with_context(|| format!("{}: `conc`", at()))?,
                    ctx: key("ctx"),
                    prefill,
                    duration_us: x
                        .as_f64()
                        .filter(|d| d.is_finite() && *d > 0.0)
                        .with_context(|| format!("{}: a sample is not a positive number", at()))?,
                };
                b.add(&s).with_context(at)?;
                n += 1;
            }
        }
    }
    if !split {
        bail!("the pack has no prefill or decode table to merge into");
    }
    Ok(n)
}

pub fn run(a: ProfilePackArgs) -> Result<()> {
    let base = match &a.merge {
        Some(p) => {
            let text = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            let v: Value = serde_json::from_slice(&text)
                .with_context(|| format!("{}: not a JSON pack", p.display()))?;
            Some(v)
        }
        None => None,
    };
    let (tt_w, conc_w, ctx_w) = widths(&a, base.as_ref()).with_context(|| {
        a.merge
            .as_ref()
            .map_or(String::new(), |p| p.display().to_string())
    })?;
    let mut b = PackBuilder::new(tt_w, conc_w, ctx_w)?;
    let merged = match (&base, &a.merge) {
        (Some(v), Some(p)) => add_pack(&mut b, v).with_context(|| p.display().to_string())?,
        _ => 0,
    };
    let str_key = |k: &str| {
        base.as_ref()
            .and_then(|v| v.get(k))
            .and_then(Value::as_str)
            .filter(|s| *s != "unknown")
            .map(str::to_owned)
    };
    let gpu_model = a.gpu_model.clone().or_else(|| str_key("gpu_model"));
    let model_name = a.model_name.clone().or_else(|| str_key("model_name"));
    for path in &a.steps {
        let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
            let line = line.with_context(|| format!("reading {}", path.display()))?;
            if line.trim().is_empty() {
                continue;
            }
            let at = || format!("{}: line {}", path.display(), i + 1);
            let v: serde_json::Value = serde_json::from_str(&line).with_context(at)?;
            if let Some(s) = StepSample::from_json(&v).with_context(at)? {
                b.add(&s).with_context(at)?;
            }
        }
    }
    let n = b.len() - merged;
    let pack = b.finish(gpu_model, model_name)?;
    let cells: Vec<usize> = pack.tables().iter().map(|t| t.len()).collect();
    write_atomic(&a.out, &serde_json::to_vec_pretty(&pack)?)
        .with_context(|| format!("writing {}", a.out.display()))?;
    let from = if a.merge.is_some() {
        format!(" added to {merged} samples of the merged pack")
    } else {
        String::new()
    };
    eprintln!(
        "{}: {n} steps{from}; {} prefill, {} decode, {} all-steps cells",
        a.out.display(),
        cells[0],
        cells[1],
        cells[2]
    );
    Ok(())
}
