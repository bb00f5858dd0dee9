//! Side-by-side comparison of two result files: `llm-emu bench` / `vllm bench serve` results,
//! `llm-emu simulate --output-json` summaries, and `llm-emu validate --json` comparisons (whose
//! `<metric>_<stat>_sim` or `_real` values are read as one side).
//!
//! Every file is mapped onto the bench result's key names (`mean_ttft_ms`, `p99_itl_ms`,
//! `output_throughput`, ...); the metrics present in both files are compared with the signed
//! error of B against A in percent.

use serde_json::{Map, Value};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CompareError {
    #[error("{path}: {msg}")]
    Bad { path: String, msg: String },
    #[error("{0} and {1} have no metric in common")]
    NothingInCommon(String, String),
}

/// What a file turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// `vllm bench serve` / `llm-emu bench` result.
    Bench,
    /// `llm-emu simulate --output-json`.
    Simulate,
    /// `llm-emu validate --json`, one of its two sides.
    Validate { real: bool },
}

impl FileKind {
    pub fn describe(self) -> &'static str {
        match self {
            FileKind::Bench => "bench result",
            FileKind::Simulate => "simulate summary",
            FileKind::Validate { real: true } => "validate (real side)",
            FileKind::Validate { real: false } => "validate (emulated side)",
        }
    }
}

/// Metrics of one file under bench key names.
pub struct Metrics {
    pub kind: FileKind,
    pub values: Vec<(String, f64)>,
}

/// The scalar metrics compared, in table order (plus any `p<N>_…_ms` found).
const SCALARS: [&str; 10] = [
    "completed",
    "failed",
    "duration",
    "total_input_tokens",
    "total_output_tokens",
    "request_throughput",
    "request_goodput",
    "output_throughput",
    "total_token_throughput",
    "max_output_tokens_per_s",
];
const LATENCIES: [&str; 4] = ["ttft", "tpot", "itl", "e2el"];

fn is_stat_key(k: &str) -> Option<(usize, usize)> {
    // (latency index, stat order) of `{stat}_{metric}_ms`.
    let body = k.strip_suffix("_ms")?;
    let (stat, metric) = body.split_once('_')?;
    let li = LATENCIES.iter().position(|m| *m == metric)?;
    let order = match stat {
        "mean" => 0,
        "median" => 1,
        "std" => 2,
        p if p.starts_with('p') && p[1..].parse::<f64>().is_ok() => {
            3 + (p[1..].parse::<f64>().unwrap_or(0.0) * 100.0) as usize
        }
        _ => return None,
    };
    Some((li, order))
}

/// Reads a result file's metrics. `validate_real` picks the real side of a validate file.
pub fn load(path: &str, text: &str, validate_real: bool) -> Result<Metrics, CompareError> {
    let bad = |msg: String| CompareError::Bad {
        path: path.to_string(),
        msg,
    };
    let v: Value = serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| bad("not a JSON object".into()))?;
    let kind = if obj
        .keys()
        .any(|k| k.ends_with("_sim") || k.ends_with("_real"))
    {
        FileKind::Validate {
            real: validate_real,
        }
    } else if obj.contains_key("num_steps") || obj.contains_key("engine_config") {
        FileKind::Simulate
    } else if obj.contains_key("completed") || obj.contains_key("duration") {
        FileKind::Bench
    } else {
        return Err(bad(
            "neither a bench result, a simulate summary nor a validate comparison".into(),
        ));
    };
    let values = match kind {
        FileKind::Validate { real } => from_validate(obj, if real { "real" } else { "sim" }),
        _ => from_bench_like(obj),
    };
    if values.is_empty() {
        return Err(bad("no numeric metric found".into()));
    }
    Ok(Metrics { kind, values })
}

fn from_bench_like(obj: &Map<String, Value>) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = SCALARS
        .iter()
        .filter_map(|k| Some((k.to_string(), obj.get(*k)?.as_f64()?)))
        .collect();
    let mut stats: Vec<((usize, usize), String, f64)> = obj
        .iter()
        .filter_map(|(k, v)| Some((is_stat_key(k)?, k.clone(), v.as_f64()?)))
        .collect();
    stats.sort_by_key(|a| a.0);
    out.extend(stats.into_iter().map(|(_, k, v)| (k, v)));
    out
}

fn from_validate(obj: &Map<String, Value>, side: &str) -> Vec<(String, f64)> {
    let mut stats = Vec::new();
    for (mi, metric) in LATENCIES.iter().enumerate() {
        for stat in ["mean", "median", "p90", "p95", "p99"] {
            if let Some(x) = obj
                .get(&format!("{metric}_{stat}_{side}"))
                .and_then(Value::as_f64)
            {
                let key = format!("{stat}_{metric}_ms");
                let order = is_stat_key(&key).map(|o| o.1).unwrap_or(0);
                stats.push(((mi, order), key, x));
            }
        }
    }
    stats.sort_by_key(|a| a.0);
    let mut out = Vec::new();
    if let Some(x) = obj
        .get(&format!("output_throughput_{side}"))
        .and_then(Value::as_f64)
    {
        out.push(("output_throughput".to_string(), x));
    }
    out.extend(stats.into_iter().map(|(_, k, v)| (k, v)));
    out
}

/// One compared metric.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub metric: String,
    pub a: f64,
    pub b: f64,
    /// (B − A)/A in percent; `None` when A is 0.
    pub err_pct: Option<f64>,
}

/// The metrics both files have, in A's order.
pub fn compare(a: &Metrics, b: &Metrics) -> Vec<Row> {
    a.values
        .iter()
        .filter_map(|(k, va)| {
            let vb = b.values.iter().find(|(kb, _)| kb == k)?.1;
            let err_pct = (*va != 0.0).then(|| (vb - va) / va * 100.0);
            Some(Row {
                metric: k.clone(),
                a: *va,
                b: vb,
                err_pct,
            })
        })
        .collect()
}

/// The table: metric, A, B, B vs A.
pub fn table(rows: &[Row], a_name: &str, b_name: &str) -> String {
    let w = rows
        .iter()
        .map(|r| r.metric.len())
        .max()
        .unwrap_or(6)
        .max(6)
        + 2;
    let mut s = format!(
        "{:<w$}{:>16}{:>16}{:>12}\n",
        "metric", a_name, b_name, "B vs A"
    );
    for r in rows {
        let err = match r.err_pct {
            Some(e) => format!("{e:+.2}%"),
            None if r.b == r.a => "0".into(),
            None => "n/a".into(),
        };
        s += &format!("{:<w$}{:>16.3}{:>16.3}{:>12}\n", r.metric, r.a, r.b, err);
    }
    s
}

/// The comparison as JSON: `{metric: {"a", "b", "err_pct"}}`.
pub fn to_json(rows: &[Row]) -> Value {
    let mut m = Map::new();
    for r in rows {
        m.insert(
            r.metric.clone(),
            serde_json::json!({"a": r.a, "b": r.b, "err_pct": r.err_pct}),
        );
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_against_simulate_and_validate() {
        let bench = r#"{"date": "20260101-000000", "completed": 10, "duration": 2.0,
            "output_throughput": 100.0, "mean_ttft_ms": 20.0, "p99_ttft_ms": 40.0,
            "median_tpot_ms": 5.0, "ttfts": [1, 2]}"#;
        let sim = r#"{"completed": 10, "duration": 2.2, "output_throughput": 90.0,
            "mean_ttft_ms": 22.0, "p99_ttft_ms": 40.0, "p90_ttft_ms": 30.0,
            "num_steps": 50, "engine_config": {}}"#;
        let a = load("a.json", bench, false).unwrap();
        let b = load("b.json", sim, false).unwrap();
        assert_eq!(a.kind, FileKind::Bench);
        assert_eq!(b.kind, FileKind::Simulate);
        let rows = compare(&a, &b);
        let names: Vec<&str> = rows.iter().map(|r| r.metric.as_str()).collect();
        assert_eq!(
            names,
            [
                "completed",
                "duration",
                "output_throughput",
                "mean_ttft_ms",
                "p99_ttft_ms"
            ]
        );
        let d = &rows[1];
        assert!((d.err_pct.unwrap() - 10.0).abs() < 1e-9);
        assert!((rows[2].err_pct.unwrap() + 10.0).abs() < 1e-9);
        let t = table(&rows, "A", "B");
        assert!(t.contains("+10.00%") && t.contains("-10.00%"), "{t}");

        let val = r#"{"ttft_mean_real": 10.0, "ttft_mean_sim": 11.0, "ttft_mean_err_pct": 10.0,
            "tpot_p99_real": 4.0, "tpot_p99_sim": 5.0, "output_throughput_real": 80.0,
            "output_throughput_sim": 88.0}"#;
        let v = load("v.json", val, false).unwrap();
        assert_eq!(v.kind, FileKind::Validate { real: false });
        let rows = compare(&a, &v);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].metric, "output_throughput");
        assert_eq!(rows[0].b, 88.0);
        assert_eq!(rows[1].b, 11.0);
        let real = load("v.json", val, true).unwrap();
        assert_eq!(compare(&a, &real)[1].b, 10.0);
    }

    #[test]
    fn bad_files_are_errors() {
        assert!(load("x", "[1]", false).is_err());
        assert!(load("x", "{\"a\": 1}", false).is_err());
        assert!(load("x", "{\"completed\": ", false).is_err());
        let a = load("a", r#"{"completed": 1}"#, false).unwrap();
        let b = load("b", r#"{"mean_ttft_ms": 1, "duration": 1}"#, false).unwrap();
        assert!(compare(&a, &b).is_empty());
    }
}
