//! `simulate --steps-out` JSONL: requests running and waiting, and KV cache usage, over the
//! run's (virtual) time, each series downsampled to at most [`BUCKETS`] × 2 points with its
//! extremes kept ([`MinMax`]). A fleet's file interleaves its engines' steps; the curves then
//! show the envelope of all engines.

use super::downsample::MinMax;
use super::lines::{for_each_object, num};
use super::page::Section;
use super::svg::{line::LineChart, Canvas};
use anyhow::{bail, Result};
use std::path::Path;

/// Buckets per series: at most 2,000 points each.
pub const BUCKETS: usize = 1000;

pub fn section(path: &Path) -> Result<Section> {
    let mut running = MinMax::new(BUCKETS);
    let mut waiting = MinMax::new(BUCKETS);
    let mut kv = MinMax::new(BUCKETS);
    let mut tokens = MinMax::new(BUCKETS);
    let mut steps = 0u64;
    let (mut first, mut last) = (f64::INFINITY, f64::NEG_INFINITY);
    for_each_object(path, |_, m| {
        let Some(t) = num(m, "start_s").or_else(|| num(m, "time_s")) else {
            bail!("no `start_s`: not a --steps-out line");
        };
        steps += 1;
        first = first.min(t);
        last = last.max(t);
        if let Some(v) = num(m, "running") {
            running.push(t, v);
        }
        if let Some(v) = num(m, "waiting") {
            waiting.push(t, v);
        }
        if let Some(v) = num(m, "kv_usage") {
            kv.push(t, v * 100.0);
        }
        if let Some(v) = num(m, "num_tokens") {
            tokens.push(t, v);
        }
        Ok(())
    })?;
    let mut s = Section::new("simulate: engine steps", path);
    s.fact("steps", steps.to_string());
    if steps == 0 {
        s.note("no steps: nothing to chart");
        return Ok(s);
    }
    s.fact("time span (s)", format!("{first:.3} – {last:.3}"));
    let c = Canvas::default();
    let queue = LineChart::new("Requests running and waiting", "time (s)", "requests")
        .series("running", running.points())
        .series("waiting", waiting.points());
    s.chart("Requests running and waiting over time", queue.draw(&c));
    let usage = LineChart::new("KV cache usage", "time (s)", "% of KV blocks")
        .series("KV usage", kv.points());
    s.chart("KV cache usage over time", usage.draw(&c));
    let batch = LineChart::new("Tokens scheduled per step", "time (s)", "tokens")
        .series("tokens", tokens.points());
    s.chart("Tokens per step over time", batch.draw(&c));
    Ok(s)
}
