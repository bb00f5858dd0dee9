//! `simulate --max-concurrency` and concurrency as a sweep axis (curves over concurrency).

use serde_json::Value;
use std::process::{Command, Output};
use tempfile::TempDir;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_llm-emu"))
}

/// A fresh directory, removed when the returned handle drops (pass or fail).
fn tmp(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("llm-emu-conc-{name}-"))
        .tempdir()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn simulate(d: &std::path::Path, name: &str, extra: &[&str]) -> Value {
    let out = d.join(format!("{name}.json"));
    let reqs = d.join(format!("{name}.jsonl"));
    let mut args = vec![
        "simulate",
        "--quiet",
        "--synthetic",
        "40",
        "--request-rate",
        "inf",
        "--gpu",
        "h100",
        "--output-json",
        out.to_str().unwrap(),
        "--requests-out",
        reqs.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    ok(bin().args(&args).output().unwrap());
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let recs: Vec<Value> = std::fs::read_to_string(&reqs)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    v["records"] = recs.into();
    v
}

/// The most requests between their send and their last token at any send time.
fn most_in_flight(recs: &[Value]) -> usize {
    let span = |r: &Value| {
        (
            r["arrival_s"].as_f64().unwrap(),
            r["last_token_s"].as_f64().unwrap(),
        )
    };
    recs.iter()
        .map(|r| {
            let t = span(r).0;
            recs.iter()
                .filter(|o| span(o).0 <= t && span(o).1 > t)
                .count()
        })
        .max()
        .unwrap()
}

#[test]
fn the_client_keeps_at_most_n_requests_in_flight() {
    let scratch = tmp("simulate");
    let d = scratch.path();
    let free = simulate(d, "free", &[]);
    let capped = simulate(d, "capped", &["--max-concurrency", "4"]);
    assert_eq!(capped["max_concurrency"], 4);
    assert!(free.get("max_concurrency").is_none());
    assert_eq!(capped["completed"], 40);
    let recs = capped["records"].as_array().unwrap();
    assert!(most_in_flight(recs) <= 4, "{}", most_in_flight(recs));
    assert!(most_in_flight(free["records"].as_array().unwrap()) > 4);
    // Latencies count from the send: capped requests wait before it, not after, so their TTFT
    // is far below the everything-at-once run's, and the run lasts longer.
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap();
    assert!(f(&capped, "mean_ttft_ms") < f(&free, "mean_ttft_ms"));
    assert!(f(&capped, "duration") > f(&free, "duration"));
    let msg = bin()
        .args([
            "simulate",
            "--quiet",
            "--synthetic",
            "5",
            "--max-concurrency",
            "0",
        ])
        .output()
        .unwrap();
    assert!(!msg.status.success());
    assert!(String::from_utf8_lossy(&msg.stderr).contains("--max-concurrency must be at least 1"));
}

#[test]
fn a_sweep_over_concurrencies_draws_curves_over_concurrency() {
    let scratch = tmp("sweep");
    let d = scratch.path();
    let grid = d.join("grid.yaml");
    std::fs::write(
        &grid,
        "base:\n  synthetic: 40\n  request-rate: inf\ngrid:\n  gpu: [h100]\n\
         concurrencies: [1, 4, 16]\n",
    )
    .unwrap();
    let out = d.join("out");
    ok(bin()
        .args([
            "sweep",
            "--quiet",
            "--grid",
            grid.to_str().unwrap(),
            "--output-dir",
            out.to_str().unwrap(),
            "--slo-ttft-ms",
            "p99:1000000",
            "--find-saturation",
        ])
        .output()
        .unwrap());
    let curve = std::fs::read_to_string(out.join("curves/config-000.csv")).unwrap();
    assert!(
        curve.starts_with("max-concurrency,request_throughput,"),
        "{curve}"
    );
    assert_eq!(curve.lines().count(), 4, "{curve}");
    let sat = std::fs::read_to_string(out.join("saturation.csv")).unwrap();
    assert!(sat.contains("max_concurrency_meeting_slos"), "{sat}");
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("sweep.json")).unwrap()).unwrap();
    assert_eq!(doc["meta"]["curve"], "max-concurrency");
    let rows = doc["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    // More requests in flight: more throughput, longer first tokens.
    let f = |i: usize, k: &str| rows[i][k].as_f64().unwrap();
    assert!(f(2, "request_throughput") > f(0, "request_throughput"));
    assert!(f(2, "p99_ttft_ms") > f(0, "p99_ttft_ms"));
    for (i, c) in [1, 4, 16].iter().enumerate() {
        assert_eq!(rows[i]["max-concurrency"], *c);
        assert_eq!(rows[i]["max_concurrency"], *c);
    }
    // A bisection over concurrency probes whole request counts only.
    let grid2 = d.join("grid2.yaml");
    std::fs::write(
        &grid2,
        "base:\n  synthetic: 40\n  request-rate: inf\n  gpu: h100\ngrid:\n  \
         max-concurrency: [1, 40]\n",
    )
    .unwrap();
    // A bound between concurrency 1's TTFT and 16's: 1 meets it, 40 does not.
    let bound = (f(0, "p99_ttft_ms") + f(2, "p99_ttft_ms")) / 2.0;
    let out2 = d.join("out2");
    ok(bin()
        .args([
            "sweep",
            "--quiet",
            "--grid",
            grid2.to_str().unwrap(),
            "--output-dir",
            out2.to_str().unwrap(),
            "--slo-ttft-ms",
            &format!("p99:{bound}"),
            "--find-saturation",
        ])
        .output()
        .unwrap());
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(out2.join("sweep.json")).unwrap()).unwrap();
    let probes = doc["probes"].as_array().unwrap();
    assert!(!probes.is_empty(), "{doc:#}");
    for p in probes {
        assert!(p["max-concurrency"].is_u64(), "{p}");
    }
    let s = &doc["saturation"][0];
    let lo = s["max_concurrency_meeting_slos"].as_u64().unwrap();
    let hi = s["first_failing_concurrency"].as_u64().unwrap();
    assert_eq!(hi, lo + 1, "{s}");
}
