//! `validate` outputs: the comparison JSON (`--json`: `{metric}_{stat}_{real,sim,err_pct}`)
//! and the per-request pairs (`--requests` JSONL: `{ttft,tpot,e2el}_ms_{real,sim}`).

use super::lines::{for_each_object, num};
use super::page::Section;
use super::summary::METRICS;
use super::svg::{bars::BarChart, cdf, scatter, Canvas};
use anyhow::Result;
use serde_json::{Map, Value};
use std::path::Path;

/// The statistics a comparison may hold, in the order they are charted.
const STATS: [&str; 6] = ["mean", "median", "p90", "p95", "p99", "std"];

/// The comparison JSON: the error of every figure, and real against emulated per metric.
pub fn summary_section(path: &Path, m: &Map<String, Value>) -> Section {
    let mut s = Section::new("validate: real against emulated", path);
    let c = Canvas::default();
    let f = |k: String| m.get(&k).and_then(Value::as_f64);
    // Every figure with both sides, in the file's key order.
    let bases: Vec<&str> = m
        .keys()
        .filter_map(|k| k.strip_suffix("_err_pct"))
        .filter(|b| f(format!("{b}_real")).is_some() && f(format!("{b}_sim")).is_some())
        .collect();
    for b in &bases {
        if let (Some(r), Some(e), err) = (
            f(format!("{b}_real")),
            f(format!("{b}_sim")),
            f(format!("{b}_err_pct")),
        ) {
            let err = err.map_or("-".into(), |x| format!("{x:+.2}%"));
            s.fact(b, format!("real {r:.2}, emulated {e:.2}, error {err}"));
        }
    }
    let errors = BarChart {
        title: "Emulated against real: error per figure".into(),
        y_label: "error (%)".into(),
        categories: bases.iter().map(|b| b.to_string()).collect(),
        series: vec!["error %".into()],
        values: vec![bases
            .iter()
            .map(|b| f(format!("{b}_err_pct")).unwrap_or(f64::NAN))
            .collect()],
        hlines: Vec::new(),
    };
    // Room under the plot for the slanted figure names.
    let slanted = Canvas {
        bottom: 96.0,
        ..Canvas::default()
    };
    s.chart(
        "Error of each figure (emulated − real) / real",
        errors.draw(&slanted),
    );
    let metrics: Vec<&str> = {
        let mut v: Vec<&str> = bases
            .iter()
            .filter_map(|b| {
                STATS
                    .iter()
                    .find_map(|st| b.strip_suffix(&format!("_{st}")))
            })
            .collect();
        v.dedup();
        v
    };
    for metric in metrics {
        let stats: Vec<&str> = STATS
            .iter()
            .copied()
            .filter(|st| bases.contains(&format!("{metric}_{st}").as_str()))
            .collect();
        let side = |sfx: &str| -> Vec<f64> {
            stats
                .iter()
                .map(|st| f(format!("{metric}_{st}_{sfx}")).unwrap_or(f64::NAN))
                .collect()
        };
        let name = METRICS
            .iter()
            .find(|(k, _)| *k == metric)
            .map_or(metric.to_uppercase(), |(_, n)| n.to_string());
        let chart = BarChart {
            title: format!("{name}: real and emulated"),
            y_label: "ms".into(),
            categories: stats.iter().map(|s| s.to_string()).collect(),
            series: vec!["real".into(), "emulated".into()],
            values: vec![side("real"), side("sim")],
            hlines: Vec::new(),
        };
        s.chart(
            &format!("{name} statistics, real and emulated"),
            chart.draw(&c),
        );
    }
    s
}

/// The per-request pairs: a real-against-emulated scatter and both CDFs per metric.
pub fn pairs_section(path: &Path) -> Result<Section> {
    let mut pairs: [Vec<(f64, f64)>; 3] = Default::default();
    let mut n = 0u64;
    for_each_object(path, |_, m| {
        n += 1;
        for (i, (key, _)) in METRICS.iter().enumerate() {
            if let (Some(r), Some(e)) = (
                num(m, &format!("{key}_ms_real")),
                num(m, &format!("{key}_ms_sim")),
            ) {
                pairs[i].push((r, e));
            }
        }
        Ok(())
    })?;
    let mut s = Section::new("validate: per-request pairs", path);
    s.fact("requests", n.to_string());
    let c = Canvas::default();
    for (i, (_, name)) in METRICS.iter().enumerate() {
        let p = &pairs[i];
        if p.is_empty() {
            s.note(&format!("no {name} pairs"));
            continue;
        }
        s.chart(
            &format!("{name} per request: real (x) against emulated (y); the dashed line is y = x"),
            scatter::draw(
                &format!("{name} per request"),
                "real (ms)",
                "emulated (ms)",
                p,
                &c,
            ),
        );
        let mut real: Vec<f64> = p.iter().map(|x| x.0).collect();
        let mut emu: Vec<f64> = p.iter().map(|x| x.1).collect();
        real.sort_by(f64::total_cmp);
        emu.sort_by(f64::total_cmp);
        s.chart(
            &format!("{name} CDF, real and emulated"),
            cdf::draw(
                &format!("{name} CDF"),
                "ms",
                &[("real", &real), ("emulated", &emu)],
                &c,
            ),
        );
    }
    Ok(s)
}
