//! `llm-emu report`: one self-contained HTML page of charts from the files the other commands
//! write (`simulate`'s summary, per-request and per-step files, `validate`'s comparison and
//! pairs, `bench` results, `sweep` output, a `plan`), each input's kind told from its content. See
//! docs/report.md.

mod bench;
mod detect;
mod downsample;
mod lines;
mod page;
mod plan;
mod png;
mod requests;
mod steps;
mod summary;
pub mod svg;
mod sweep;
mod validate;

use anyhow::{Context, Result};
use clap::Args;
use detect::Input;
use page::Section;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct ReportArgs {
    /// Files to chart: `simulate --output-json`, `--requests-out`, `--steps-out`; `validate
    /// --json`, `--requests`; a `bench` result JSON; a sweep's `sweep.json`, CSV or output
    /// folder; `plan --output-json`.
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<PathBuf>,
    /// The HTML file to write.
    #[arg(long, short)]
    output: PathBuf,
    /// Also write a PNG screenshot of the page into this folder (`<output stem>.png`), taken
    /// with headless Chromium.
    #[arg(long, value_name = "DIR")]
    png: Option<PathBuf>,
    /// The page's title.
    #[arg(long, default_value = "llm-emu report")]
    title: String,
}

/// The section of one input.
fn section(path: &Path) -> Result<Section> {
    Ok(match detect::detect(path)? {
        Input::Summary(m) => summary::section(path, &m),
        Input::Requests => requests::section(path)?,
        Input::Steps => steps::section(path)?,
        Input::ValidateSummary(m) => validate::summary_section(path, &m),
        Input::ValidatePairs => validate::pairs_section(path)?,
        Input::Bench(m) => bench::section(path, &m),
        Input::Sweep(p, m) => sweep::section(&p, &m),
        Input::Plan(m) => plan::section(path, &m),
    })
}

pub fn run(a: ReportArgs) -> Result<()> {
    let sections = a
        .inputs
        .iter()
        .map(|p| section(p))
        .collect::<Result<Vec<_>>>()?;
    let html = page::render(&a.title, &sections);
    llm_emu_sim::report::write_atomic(&a.output, html.as_bytes())
        .with_context(|| format!("writing {}", a.output.display()))?;
    let charts: usize = sections.iter().map(|s| s.charts.len()).sum();
    eprintln!(
        "report: {} input(s), {charts} chart(s) → {} ({} KiB)",
        sections.len(),
        a.output.display(),
        html.len().div_ceil(1024)
    );
    if let Some(dir) = &a.png {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let stem = a
            .output
            .file_stem()
            .map_or("report".into(), |s| s.to_string_lossy().into_owned());
        let png = dir.join(format!("{stem}.png"));
        png::screenshot(&a.output, &png, page::height(&sections))?;
        eprintln!("report: screenshot → {}", png.display());
    }
    Ok(())
}
