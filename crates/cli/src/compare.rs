//! `llm-emu compare A.json B.json`: two result files side by side, B's signed error vs A.

use anyhow::{bail, Context, Result};
use clap::Args;
use llm_emu_bench::compare;
use std::path::PathBuf;

#[derive(Args)]
pub struct CompareArgs {
    /// The reference: a `bench`/`vllm bench serve` result, a `simulate --output-json` summary
    /// or a `validate --json` comparison.
    a: PathBuf,
    /// The file compared with A (same kinds).
    b: PathBuf,
    /// For a validate comparison: read its real-run side instead of the emulated one.
    #[arg(long)]
    validate_real: bool,
    /// Write the comparison as JSON (`{metric: {a, b, err_pct}}`).
    #[arg(long)]
    output_json: Option<PathBuf>,
}

pub fn run(a: CompareArgs) -> Result<()> {
    let load = |p: &PathBuf| -> Result<compare::Metrics> {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        Ok(compare::load(
            &p.display().to_string(),
            &text,
            a.validate_real,
        )?)
    };
    let (ma, mb) = (load(&a.a)?, load(&a.b)?);
    let rows = compare::compare(&ma, &mb);
    if rows.is_empty() {
        bail!(compare::CompareError::NothingInCommon(
            a.a.display().to_string(),
            a.b.display().to_string()
        ));
    }
    println!("A: {} ({})", a.a.display(), ma.kind.describe());
    println!("B: {} ({})", a.b.display(), mb.kind.describe());
    print!("{}", compare::table(&rows, "A", "B"));
    if let Some(p) = &a.output_json {
        let text = serde_json::to_vec_pretty(&compare::to_json(&rows))?;
        llm_emu_sim::report::write_atomic(p, &text)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}
