//! `simulate --requests-out` JSONL: per-request latency CDFs and, for a fleet, each engine's
//! requests in flight over time.
//!
//! Latencies follow `vllm bench serve` as the run's summary does (times from the request's
//! arrival; [`LatencyStats::record_request`] holds the TPOT rule), so the CDF's median is the
//! summary's `median_ttft_ms`. Only the three latencies per request are kept; the in-flight
//! counts take a second pass over the file with a fixed number of time bins.

use super::lines::{for_each_object, num};
use super::page::Section;
use super::svg::{bars::BarChart, cdf, line::LineChart, Canvas};
use anyhow::Result;
use llm_emu_sim::metrics::LatencyStats;
use std::path::Path;

/// Time bins of the in-flight chart.
const BINS: usize = 600;

/// What the records say, per engine: requests finished and output tokens.
#[derive(Clone, Default)]
struct EngineLoad {
    finished: u64,
    output_tokens: u64,
}

pub fn section(path: &Path) -> Result<Section> {
    let mut stats = LatencyStats::default();
    let (mut total, mut failed) = (0u64, 0u64);
    let mut engines: Vec<EngineLoad> = Vec::new();
    let (mut t0, mut t1) = (f64::INFINITY, f64::NEG_INFINITY);
    for_each_object(path, |_, m| {
        total += 1;
        let arrival = num(m, "arrival_s");
        let done = m.get("error").is_none_or(|e| e.is_null());
        let (Some(a), Some(f), Some(l), true) = (
            arrival,
            num(m, "first_token_s"),
            num(m, "last_token_s"),
            done,
        ) else {
            failed += 1;
            return Ok(());
        };
        let outputs = num(m, "output_len").unwrap_or(0.0) as usize;
        stats.record_request((f - a) * 1e3, (l - a) * 1e3, outputs);
        t0 = t0.min(a);
        t1 = t1.max(l);
        if let Some(e) = num(m, "engine") {
            let e = e as usize;
            if engines.len() <= e {
                engines.resize(e + 1, EngineLoad::default());
            }
            engines[e].finished += 1;
            engines[e].output_tokens += outputs as u64;
        }
        Ok(())
    })?;
    let mut s = Section::new("simulate: per-request records", path);
    s.fact("requests", total.to_string());
    s.fact("finished", (total - failed).to_string());
    s.fact("engines", engines.len().max(1).to_string());
    if total == failed {
        s.note("no request finished: nothing to chart");
        return Ok(s);
    }
    let c = Canvas::default();
    for (name, xs) in [
        ("TTFT", &mut stats.ttft_ms),
        ("TPOT", &mut stats.tpot_ms),
        ("E2E latency", &mut stats.e2el_ms),
    ] {
        xs.sort_by(f64::total_cmp);
        if xs.is_empty() {
            s.note(&format!("no {name} values (every output was one token)"));
            continue;
        }
        s.chart(
            &format!("{name} CDF"),
            cdf::draw(&format!("{name} CDF"), "ms", &[("emulated", xs)], &c),
        );
    }
    if engines.len() > 1 {
        let names: Vec<String> = (0..engines.len()).map(|i| format!("engine {i}")).collect();
        let load = BarChart {
            title: "Requests finished per engine".into(),
            y_label: "requests".into(),
            categories: names.clone(),
            series: vec!["finished".into()],
            values: vec![engines.iter().map(|e| e.finished as f64).collect()],
            hlines: Vec::new(),
        };
        s.chart("Per-replica load: requests finished", load.draw(&c));
        let tokens = BarChart {
            title: "Output tokens per engine".into(),
            y_label: "tokens".into(),
            categories: names,
            series: vec!["output tokens".into()],
            values: vec![engines.iter().map(|e| e.output_tokens as f64).collect()],
            hlines: Vec::new(),
        };
        s.chart("Per-replica load: output tokens", tokens.draw(&c));
        let series = in_flight(path, engines.len(), t0, t1)?;
        let mut chart = LineChart::new("Requests in flight per engine", "time (s)", "requests");
        for (i, pts) in series.into_iter().enumerate() {
            chart = chart.series(&format!("engine {i}"), pts);
        }
        s.chart("Per-replica load over time", chart.draw(&c));
    }
    Ok(s)
}

/// Per engine, the requests in flight (arrived, last token not yet out) during each of
/// [`BINS`] intervals of `[t0, t1]`: a second pass over the file, difference arrays per engine.
fn in_flight(path: &Path, engines: usize, t0: f64, t1: f64) -> Result<Vec<Vec<(f64, f64)>>> {
    let width = ((t1 - t0) / BINS as f64).max(f64::MIN_POSITIVE);
    let bin = |t: f64| (((t - t0) / width).max(0.0) as usize).min(BINS - 1);
    let mut diff = vec![vec![0i64; BINS + 1]; engines];
    for_each_object(path, |_, m| {
        let done = m.get("error").is_none_or(|e| e.is_null());
        if let (Some(e), Some(a), Some(l), true) = (
            num(m, "engine"),
            num(m, "arrival_s"),
            num(m, "last_token_s"),
            done,
        ) {
            if let Some(d) = diff.get_mut(e as usize) {
                d[bin(a)] += 1;
                d[bin(l) + 1] -= 1;
            }
        }
        Ok(())
    })?;
    Ok(diff
        .into_iter()
        .map(|d| {
            let mut level = 0i64;
            d[..BINS]
                .iter()
                .enumerate()
                .map(|(i, x)| {
                    level += x;
                    (t0 + width * i as f64, level as f64)
                })
                .collect()
        })
        .collect())
}
