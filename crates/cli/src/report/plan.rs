//! `plan --output-json`: the answer (the cheapest fleet, its cost per hour and the `llm-emu
//! serve` command that serves it) as facts, then each listed fleet's cost per hour, each
//! fleet's measured/bound ratio per objective against the 1.0 line, and each engine
//! configuration's saturation rate against the target.

use super::page::Section;
use super::svg::bars::BarChart;
use super::svg::line::HLine;
use super::svg::Canvas;
use serde_json::{Map, Value};
use std::path::Path;

fn num(m: &Map<String, Value>, k: &str) -> Option<f64> {
    m.get(k).and_then(Value::as_f64)
}

fn text<'a>(m: &'a Map<String, Value>, k: &str) -> &'a str {
    m.get(k).and_then(Value::as_str).unwrap_or("?")
}

fn objects<'a>(m: &'a Map<String, Value>, k: &str) -> Vec<&'a Map<String, Value>> {
    m.get(k)
        .and_then(Value::as_array)
        .map(|v| v.iter().filter_map(Value::as_object).collect())
        .unwrap_or_default()
}

/// A fleet's short name: `#1 2×h100-sxm tp=1`, with its engine caps and `DP` for data-parallel
/// ranks (replicas behind a router otherwise).
fn fleet_name(f: &Map<String, Value>) -> String {
    let int = |k: &str| f.get(k).and_then(Value::as_u64);
    let mut name = format!(
        "#{} {}×{} tp={}",
        int("rank").unwrap_or(0),
        int("engines").unwrap_or(1),
        text(f, "gpu"),
        int("tensor_parallel_size").unwrap_or(1)
    );
    if let Some(m) = int("max_num_seqs") {
        name += &format!(" seqs={m}");
    }
    if let Some(m) = int("max_num_batched_tokens") {
        name += &format!(" mbt={m}");
    }
    if text(f, "scale_out") == "data-parallel" && int("engines").unwrap_or(1) > 1 {
        name += " DP";
    }
    name
}

/// Each objective's name and how a fleet fares against it as measured/bound, where below 1.0
/// meets it: the latency bounds from `objectives`, and the goodput share (bound/measured, the
/// share being a floor) when the plan asked for one.
fn ratios(
    doc: &Map<String, Value>,
    fleets: &[&Map<String, Value>],
) -> (Vec<String>, Vec<Vec<f64>>) {
    let mut names = Vec::new();
    let mut per_fleet: Vec<Vec<f64>> = vec![Vec::new(); fleets.len()];
    let measured = |f: &Map<String, Value>, k: &str| {
        f.get("margins")
            .and_then(|m| m.get(k))
            .and_then(|m| m.get("measured"))
            .and_then(Value::as_f64)
            .unwrap_or(f64::NAN)
    };
    for o in objects(doc, "objectives") {
        let (key, Some(limit)) = (text(o, "key"), num(o, "limit_ms")) else {
            continue;
        };
        names.push(format!("{key} ≤ {limit} ms"));
        for (v, f) in per_fleet.iter_mut().zip(fleets) {
            v.push(measured(f, key) / limit);
        }
    }
    if let Some(want) = num(doc, "goodput") {
        names.push(format!("goodput ≥ {want}"));
        for (v, f) in per_fleet.iter_mut().zip(fleets) {
            v.push(want / measured(f, "goodput_fraction"));
        }
    }
    (names, per_fleet)
}

pub fn section(path: &Path, doc: &Map<String, Value>) -> Section {
    let mut s = Section::new("plan: the cheapest fleet", path);
    let fleets = objects(doc, "fleets");
    let configs = objects(doc, "configurations");
    let target = num(doc, "target_request_rate");
    s.fact(
        "target",
        target.map_or("the workload file's arrivals".into(), |r| {
            format!("{r} requests/s")
        }),
    );
    let (objective_names, ratios) = ratios(doc, &fleets);
    s.fact("objectives", objective_names.join(", "));
    s.fact(
        "searched",
        format!(
            "{} engine configuration(s), {} simulated run(s)",
            configs.len(),
            doc.get("runs").and_then(Value::as_u64).unwrap_or(0)
        ),
    );
    s.fact("prices", text(doc, "prices_source").to_string());
    match fleets.first() {
        Some(best) => {
            s.fact("cheapest", fleet_name(best));
            s.fact(
                "cost",
                format!(
                    "{:.2} per hour on {} GPU(s)",
                    num(best, "cost_per_hour").unwrap_or(f64::NAN),
                    best.get("gpus").and_then(Value::as_u64).unwrap_or(0)
                ),
            );
            s.fact("serve it", text(best, "serve_command").to_string());
        }
        None => {
            s.note("no fleet meets the objectives");
            if let Some(c) = doc.get("closest").and_then(Value::as_object) {
                s.note(&format!(
                    "closest: {:.2}x the bound ({})",
                    num(c, "worst_ratio").unwrap_or(f64::NAN),
                    text(c, "reason")
                ));
            }
        }
    }
    for c in &configs {
        if let Some(e) = c.get("error").and_then(Value::as_str) {
            s.note(&format!("{}: cannot run ({e})", text(c, "configuration")));
        }
    }
    for k in objects(doc, "skipped") {
        s.note(&format!(
            "{} ({}): skipped, {}",
            text(k, "configuration"),
            text(k, "scale_out"),
            text(k, "reason")
        ));
    }
    // Room under the plot for slanted fleet, objective and configuration names.
    let slanted = Canvas {
        bottom: 96.0,
        ..Canvas::default()
    };
    if !fleets.is_empty() {
        let names: Vec<String> = fleets.iter().map(|f| fleet_name(f)).collect();
        let cost = |f: &Map<String, Value>| num(f, "cost_per_hour").unwrap_or(f64::NAN);
        // The answer and the runners-up as two series, so that the colour says which is which.
        let chart = BarChart {
            title: "Cost per hour of each fleet".into(),
            y_label: "$ per hour".into(),
            categories: names.clone(),
            series: vec![
                "cheapest: the plan's answer".into(),
                "also meets the objectives".into(),
            ],
            values: vec![
                fleets
                    .iter()
                    .enumerate()
                    .map(|(i, f)| if i == 0 { cost(f) } else { f64::NAN })
                    .collect(),
                fleets
                    .iter()
                    .enumerate()
                    .map(|(i, f)| if i == 0 { f64::NAN } else { cost(f) })
                    .collect(),
            ],
            hlines: Vec::new(),
        };
        s.chart(
            "Cost per hour (GPU-hours × price) of the cheapest fleets that meet every objective, \
             cheapest first",
            chart.draw(&slanted),
        );
        let chart = BarChart {
            title: "Each objective: measured / bound".into(),
            y_label: "measured / bound".into(),
            categories: objective_names,
            series: names,
            values: ratios,
            hlines: vec![HLine {
                y: 1.0,
                label: "bound".into(),
            }],
        };
        s.chart(
            "Each fleet's measured statistic over its bound, per objective: below the 1.0 line \
             meets it (goodput: the bound over the measured share)",
            chart.draw(&slanted),
        );
    }
    let rated: Vec<&&Map<String, Value>> = configs
        .iter()
        .filter(|c| num(c, "saturation_rate").is_some() || num(c, "first_failing_rate").is_some())
        .collect();
    if !rated.is_empty() {
        let rate = |k: &str| -> Vec<f64> {
            rated
                .iter()
                .map(|c| num(c, k).unwrap_or(f64::NAN))
                .collect()
        };
        let chart = BarChart {
            title: "One engine of each configuration".into(),
            y_label: "requests/s".into(),
            categories: rated
                .iter()
                .map(|c| text(c, "configuration").to_string())
                .collect(),
            series: vec!["meets the objectives up to".into(), "fails them at".into()],
            values: vec![rate("saturation_rate"), rate("first_failing_rate")],
            hlines: target
                .map(|t| HLine {
                    y: t,
                    label: format!("target {t} req/s"),
                })
                .into_iter()
                .collect(),
        };
        s.chart(
            "Saturation rate of one engine of each configuration (the highest rate searched \
             that meets every objective, at most the target) and the first rate that fails",
            chart.draw(&slanted),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!("an object literal"),
        }
    }

    #[test]
    fn ratios_are_measured_over_bound_and_goodput_inverted() {
        let d = doc(json!({
            "objectives": [{"key": "p99_ttft_ms", "limit_ms": 200.0}],
            "goodput": 0.9,
            "fleets": [{"margins": {
                "p99_ttft_ms": {"measured": 50.0, "margin": 0.75},
                "goodput_fraction": {"measured": 0.95, "margin": 0.05}
            }}]
        }));
        let fleets = objects(&d, "fleets");
        let (names, r) = ratios(&d, &fleets);
        assert_eq!(names, ["p99_ttft_ms ≤ 200 ms", "goodput ≥ 0.9"]);
        assert_eq!(r[0][0], 0.25);
        assert!((r[0][1] - 0.9 / 0.95).abs() < 1e-12);
    }

    #[test]
    fn a_plan_that_met_nothing_says_so_and_draws_only_saturation() {
        let d = doc(json!({
            "format": "llm-emu-plan/1",
            "target_request_rate": 50.0,
            "objectives": [{"key": "p99_ttft_ms", "limit_ms": 1.0}],
            "met": false,
            "fleets": [],
            "closest": {"worst_ratio": 3.5, "reason": "p99_ttft_ms 3.5 > 1"},
            "configurations": [{"configuration": "h100-sxm tp=1", "saturation_rate": null,
                                "first_failing_rate": 1.0}],
            "runs": 4
        }));
        let s = section(Path::new("plan.json"), &d);
        assert!(s.notes.iter().any(|n| n.contains("3.50x")), "{:?}", s.notes);
        assert_eq!(s.charts.len(), 1);
        assert_eq!(s.charts[0].drawn.points, 1);
    }
}
