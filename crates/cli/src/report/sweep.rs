//! `sweep` output (`sweep.json`, or the folder holding it): a throughput–latency curve per
//! configuration, the offered rate against throughput, and each configuration's saturation
//! rate marked on its curve.

use super::page::Section;
use super::svg::line::{HLine, LineChart, Marker};
use super::svg::Canvas;
use serde_json::{Map, Value};
use std::path::Path;

/// One configuration's points, in rate order.
struct Config {
    name: String,
    rows: Vec<Map<String, Value>>,
    /// `max_rate_meeting_slos` from the saturation table.
    saturation: Option<f64>,
}

fn rate(row: &Map<String, Value>) -> f64 {
    match row.get("request-rate") {
        Some(Value::String(s)) => s.parse().unwrap_or(f64::NAN),
        Some(v) => v.as_f64().unwrap_or(f64::NAN),
        None => f64::NAN,
    }
}

fn get(row: &Map<String, Value>, k: &str) -> f64 {
    row.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN)
}

/// `y` at `x` on the polyline `pts` (ascending x), linearly interpolated; `None` outside it.
fn interpolate(pts: &[(f64, f64)], x: f64) -> Option<f64> {
    pts.windows(2)
        .find_map(|w| {
            let ((x0, y0), (x1, y1)) = (w[0], w[1]);
            (x0 <= x && x <= x1).then(|| {
                if x1 == x0 {
                    y1
                } else {
                    y0 + (y1 - y0) * (x - x0) / (x1 - x0)
                }
            })
        })
        .or_else(|| pts.iter().find(|p| p.0 == x).map(|p| p.1))
}

pub fn section(path: &Path, doc: &Map<String, Value>) -> Section {
    let mut s = Section::new("sweep: throughput and latency", path);
    let meta = doc.get("meta").and_then(Value::as_object);
    let rows = doc
        .get("rows")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let saturation = doc
        .get("saturation")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let slos: Vec<(String, f64)> = meta
        .and_then(|m| m.get("slos"))
        .and_then(Value::as_array)
        .map(|v| {
            v.iter()
                .filter_map(|o| {
                    Some((
                        o.get("key")?.as_str()?.to_string(),
                        o.get("limit_ms")?.as_f64()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    s.fact("points", rows.len().to_string());
    for (k, v) in &slos {
        s.fact("objective", format!("{k} ≤ {v} ms"));
    }
    let mut configs: Vec<Config> = Vec::new();
    for r in rows.iter().filter_map(Value::as_object) {
        let Some(ci) = r.get("config").and_then(Value::as_u64) else {
            continue;
        };
        let ci = ci as usize;
        while configs.len() <= ci {
            configs.push(Config {
                name: format!("config {}", configs.len()),
                rows: Vec::new(),
                saturation: None,
            });
        }
        configs[ci].rows.push(r.clone());
    }
    for sat in saturation.iter().filter_map(Value::as_object) {
        let Some(c) = sat
            .get("config")
            .and_then(Value::as_u64)
            .and_then(|i| configs.get_mut(i as usize))
        else {
            continue;
        };
        if let Some(set) = sat.get("settings").and_then(Value::as_object) {
            let words: Vec<String> = set
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().map_or(v.to_string(), String::from)))
                .collect();
            if !words.is_empty() {
                c.name = words.join(" ");
            }
        }
        c.saturation = sat.get("max_rate_meeting_slos").and_then(Value::as_f64);
        if let Some(note) = sat.get("note").and_then(Value::as_str) {
            s.fact(&c.name, note.to_string());
        }
    }
    for c in &mut configs {
        c.rows.sort_by(|a, b| rate(a).total_cmp(&rate(b)));
    }
    let canvas = Canvas::default();
    let mut offered = LineChart::new(
        "Output throughput against offered rate",
        "offered rate (req/s)",
        "output tokens/s",
    );
    offered.dots = true;
    for (i, c) in configs.iter().enumerate() {
        let pts: Vec<(f64, f64)> = c
            .rows
            .iter()
            .map(|r| (rate(r), get(r, "output_throughput")))
            .collect();
        if let Some(x) = c.saturation {
            if let Some(y) = interpolate(&pts, x) {
                offered.markers.push(Marker {
                    series: i,
                    x,
                    y,
                    label: format!("{}: saturation at {x} req/s", c.name),
                });
            }
        }
        offered = offered.series(&c.name, pts);
    }
    s.chart(
        "Output throughput against the offered rate; rings mark each configuration's saturation rate",
        offered.draw(&canvas),
    );
    for (metric, name) in [("ttft", "TTFT"), ("tpot", "TPOT")] {
        // The objective's statistic where there is one, else p99.
        let slo = slos
            .iter()
            .find(|(k, _)| k.ends_with(&format!("_{metric}_ms")));
        let key = slo.map_or(format!("p99_{metric}_ms"), |(k, _)| k.clone());
        let mut chart = LineChart::new(
            &format!("{key} against throughput"),
            "request throughput (req/s)",
            &format!("{key} (ms)"),
        );
        chart.dots = true;
        if let Some((_, limit)) = slo {
            chart.hlines.push(HLine {
                y: *limit,
                label: format!("objective {limit} ms"),
            });
        }
        for (i, c) in configs.iter().enumerate() {
            let pts: Vec<(f64, f64)> = c
                .rows
                .iter()
                .map(|r| (get(r, "request_throughput"), get(r, &key)))
                .collect();
            // The last point at or below the saturation rate: the configuration's operating limit.
            let at = c.saturation.and_then(|sat| {
                c.rows
                    .iter()
                    .zip(&pts)
                    .rfind(|(r, _)| rate(r) <= sat)
                    .map(|(_, p)| *p)
            });
            if let Some((x, y)) = at {
                chart.markers.push(Marker {
                    series: i,
                    x,
                    y,
                    label: format!("{}: last point meeting the objectives", c.name),
                });
            }
            chart = chart.series(&c.name, pts);
        }
        s.chart(
            &format!("Throughput–latency curve ({name}); rings mark the last point within the objectives"),
            chart.draw(&canvas),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::interpolate;

    #[test]
    fn interpolates_between_rates() {
        let pts = [(1.0, 10.0), (3.0, 30.0)];
        assert_eq!(interpolate(&pts, 2.0), Some(20.0));
        assert_eq!(interpolate(&pts, 3.0), Some(30.0));
        assert_eq!(interpolate(&pts, 4.0), None);
        assert_eq!(interpolate(&[(2.0, 5.0)], 2.0), Some(5.0));
    }
}
