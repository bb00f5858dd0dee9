//! `simulate --output-json` (and a fleet's, with its `instances`): the headline figures, the
//! latency percentiles, and each instance's load.

use super::page::Section;
use super::svg::{bars::BarChart, Canvas};
use serde_json::{Map, Value};
use std::path::Path;

/// The latency metrics of `vllm bench serve`'s keys, with their names on the page.
pub const METRICS: [(&str, &str); 3] =
    [("ttft", "TTFT"), ("tpot", "TPOT"), ("e2el", "E2E latency")];
/// The statistics charted per metric, as the keys spell them.
const STATS: [&str; 4] = ["mean", "median", "p90", "p99"];

/// `m[key]` for the fact table: numbers with 2 decimals, strings as they are.
pub fn shown(m: &Map<String, Value>, key: &str) -> Option<String> {
    match m.get(key)? {
        Value::Number(n) if n.is_f64() => n.as_f64().map(|x| format!("{x:.2}")),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Facts copied from `m` where present.
pub fn facts(s: &mut Section, m: &Map<String, Value>, keys: &[&str]) {
    for k in keys {
        if let Some(v) = shown(m, k) {
            s.fact(k, v);
        }
    }
}

/// A bar chart per metric of its mean/median/p90/p99 (`{stat}_{metric}_ms` keys).
pub fn percentile_bars(s: &mut Section, m: &Map<String, Value>, c: &Canvas) {
    for (key, name) in METRICS {
        let values: Vec<f64> = STATS
            .iter()
            .map(|st| {
                m.get(&format!("{st}_{key}_ms"))
                    .and_then(Value::as_f64)
                    .unwrap_or(f64::NAN)
            })
            .collect();
        if values.iter().all(|v| !v.is_finite()) {
            continue;
        }
        let chart = BarChart {
            title: format!("{name} statistics"),
            y_label: "ms".into(),
            categories: STATS.iter().map(|s| s.to_string()).collect(),
            series: vec![name.into()],
            values: vec![values],
            hlines: Vec::new(),
        };
        s.chart(&format!("{name}: mean, median, p90, p99"), chart.draw(c));
    }
}

pub fn section(path: &Path, m: &Map<String, Value>) -> Section {
    let mut s = Section::new("simulate: summary", path);
    facts(
        &mut s,
        m,
        &[
            "completed",
            "failed",
            "duration",
            "request_throughput",
            "output_throughput",
            "mean_ttft_ms",
            "p99_ttft_ms",
            "mean_tpot_ms",
            "p99_tpot_ms",
            "mean_e2el_ms",
            "p99_e2el_ms",
            "num_preemptions",
            "prefix_cache_hit_rate",
            "scheduling_policy",
            "latency_model",
        ],
    );
    let c = Canvas::default();
    percentile_bars(&mut s, m, &c);
    let instances = m
        .get("instances")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if let Some(f) = m.get("fleet") {
        s.fact("fleet", f.to_string());
    }
    if instances.len() > 1 {
        let names: Vec<String> = instances
            .iter()
            .enumerate()
            .map(|(i, x)| {
                let idx = x.get("engine_index").and_then(Value::as_u64);
                format!("engine {}", idx.map_or(i as u64, |v| v))
            })
            .collect();
        for (key, title, unit) in [
            ("completed", "Requests completed per instance", "requests"),
            (
                "total_output_tokens",
                "Output tokens per instance",
                "tokens",
            ),
            ("num_steps", "Engine steps per instance", "steps"),
            ("num_preemptions", "Preemptions per instance", "preemptions"),
        ] {
            let values: Vec<f64> = instances
                .iter()
                .map(|x| x.get(key).and_then(Value::as_f64).unwrap_or(f64::NAN))
                .collect();
            if values.iter().all(|v| !v.is_finite()) {
                continue;
            }
            let chart = BarChart {
                title: title.into(),
                y_label: unit.into(),
                categories: names.clone(),
                series: vec![key.into()],
                values: vec![values],
                hlines: Vec::new(),
            };
            s.chart(&format!("Per-replica load: {key}"), chart.draw(&c));
        }
    }
    s
}
