//! `llm-emu sweep` end to end: a small grid, determinism over runs and `--jobs`, shards
//! merged, the saturation bisection against a brute-force rate scan, and bad grids.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tempfile::TempDir;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_llm-emu"))
}

/// A fresh directory, removed when the returned handle drops (pass or fail).
fn tmp(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("llm-emu-sweep-{name}-"))
        .tempdir()
        .unwrap()
}

fn sweep(args: &[&str]) -> Output {
    bin()
        .arg("sweep")
        .arg("--quiet")
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "sweep failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn json(p: &Path) -> Value {
    serde_json::from_str(&read(p)).unwrap()
}

/// Two GPUs × two batch caps × two rates of a small synthetic workload.
const GRID: &str = "base:\n  synthetic: 40\n  seed: 7\ngrid:\n  gpu: [h100, h200]\n  \
                    max-num-seqs: [4, 32]\nrates: [2, 40]\n";

#[test]
fn a_small_grid_runs_and_matches_simulate() {
    let scratch = tmp("small");
    let d = scratch.path();
    let grid = d.join("grid.yaml");
    std::fs::write(&grid, GRID).unwrap();
    let out_dir = d.join("out");
    ok(sweep(&[
        "--grid",
        grid.to_str().unwrap(),
        "--output-dir",
        out_dir.to_str().unwrap(),
        "--jobs",
        "2",
    ]));
    let csv = read(&out_dir.join("sweep.csv"));
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 1 + 8, "{csv}");
    let header: Vec<&str> = lines[0].split(',').collect();
    for col in [
        "point",
        "config",
        "gpu",
        "max-num-seqs",
        "request-rate",
        "request_throughput",
        "output_throughput",
        "p99_ttft_ms",
        "mean_tpot_ms",
        "median_itl_ms",
        "p99_e2el_ms",
        "queue_unbounded",
    ] {
        assert!(header.contains(&col), "no column {col} in {header:?}");
    }
    for c in 0..4 {
        let curve = read(&out_dir.join(format!("curves/config-{c:03}.csv")));
        assert_eq!(curve.lines().count(), 3, "{curve}");
        assert!(curve.starts_with("request-rate,request_throughput,"));
    }
    // A point's row carries exactly what `simulate --output-json` reports for its settings.
    let doc = json(&out_dir.join("sweep.json"));
    let row = doc["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["gpu"] == "h200" && r["max-num-seqs"] == 4 && r["request-rate"] == 40)
        .unwrap()
        .clone();
    let summary = d.join("one.json");
    let s = bin()
        .args([
            "simulate",
            "--quiet",
            "--synthetic",
            "40",
            "--seed",
            "7",
            "--gpu",
            "h200",
            "--max-num-seqs",
            "4",
            "--request-rate",
            "40",
            "--output-json",
            summary.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(s.status.success());
    let summary = json(&summary);
    let mut compared = 0;
    for (k, v) in summary.as_object().unwrap() {
        if v.is_object() || v.is_array() {
            continue;
        }
        assert_eq!(&row[k], v, "{k}");
        compared += 1;
    }
    assert!(compared > 20);
}

fn run_grid(d: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let grid = d.join("grid.yaml");
    std::fs::write(&grid, GRID).unwrap();
    let out_dir = d.join(name);
    let mut args = vec![
        "--grid",
        grid.to_str().unwrap(),
        "--output-dir",
        out_dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    ok(sweep(&args));
    out_dir
}

fn outputs(dir: &Path) -> Vec<(String, String)> {
    let mut files = vec![
        "sweep.csv".to_string(),
        "sweep.json".into(),
        "saturation.csv".into(),
    ];
    let mut curves: Vec<String> = std::fs::read_dir(dir.join("curves"))
        .unwrap()
        .map(|e| format!("curves/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    curves.sort();
    files.extend(curves);
    files
        .into_iter()
        .map(|f| {
            let text = read(&dir.join(&f));
            (f, text)
        })
        .collect()
}

#[test]
fn the_same_sweep_gives_the_same_files_whatever_the_jobs() {
    let scratch = tmp("determinism");
    let d = scratch.path();
    let slo = ["--slo-ttft-ms", "p99:400"];
    let a = run_grid(d, "a", &[&["--jobs", "1"], &slo[..]].concat());
    let b = run_grid(d, "b", &[&["--jobs", "1"], &slo[..]].concat());
    let c = run_grid(d, "c", &[&["--jobs", "3"], &slo[..]].concat());
    let (fa, fb, fc) = (outputs(&a), outputs(&b), outputs(&c));
    assert_eq!(fa.len(), 3 + 4);
    assert_eq!(fa, fb, "two runs differ");
    assert_eq!(fa, fc, "--jobs 1 and --jobs 3 differ");
}

#[test]
fn shards_merged_equal_the_whole_sweep() {
    let scratch = tmp("shards");
    let d = scratch.path();
    for extra in [
        &[][..],
        &[
            "--slo-ttft-ms",
            "p99:400",
            "--find-saturation",
            "--bisect-steps",
            "2",
        ][..],
    ] {
        let whole = run_grid(d, "whole", extra);
        let mut dirs = Vec::new();
        for i in 0..3 {
            let shard = format!("{i}/3");
            let name = format!("shard{i}");
            dirs.push(run_grid(
                d,
                &name,
                &[&["--shard", shard.as_str()], extra].concat(),
            ));
        }
        // A shard holds only its part.
        let part = json(&dirs[1].join("sweep.json"));
        assert!(part["rows"].as_array().unwrap().len() < 8);
        assert_eq!(part["meta"]["shard"], "1/3");
        let merged = d.join("merged");
        let mut args = vec!["merge".to_string()];
        args.extend(dirs.iter().rev().map(|p| p.to_str().unwrap().to_string()));
        args.extend(["--output-dir".into(), merged.to_str().unwrap().into()]);
        let out = bin().arg("sweep").args(&args).output().unwrap();
        ok(out);
        assert_eq!(outputs(&whole), outputs(&merged), "extra flags {extra:?}");

        // A missing shard is named.
        let out = bin()
            .args(["sweep", "merge"])
            .args([&dirs[0], &dirs[2]])
            .arg("--output-dir")
            .arg(d.join("partial"))
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("missing shard(s) 1/3"));
        for p in [whole, merged].iter().chain(&dirs) {
            std::fs::remove_dir_all(p).unwrap();
        }
    }
}

/// The rate-scan setting of the bisection test: one configuration whose batch cap makes
/// TTFT climb steeply with the rate.
const SAT_BASE: &str = "base:\n  synthetic: 60\n  gpu: h100\n  max-num-seqs: 4\n";

fn max_rate(dir: &Path) -> Value {
    json(&dir.join("sweep.json"))["saturation"][0]["max_rate_meeting_slos"].clone()
}

#[test]
fn bisection_finds_what_a_brute_force_scan_finds() {
    let scratch = tmp("bisect");
    let d = scratch.path();
    let slo = ["--slo-ttft-ms", "p99:2500"];
    // Bisection between the grid's two rates, 3 steps: a resolution of (4.5 - 0.5) / 8 = 0.5.
    let grid = d.join("bisect.yaml");
    std::fs::write(
        &grid,
        format!("{SAT_BASE}grid:\n  request-rate: [0.5, 4.5]\n"),
    )
    .unwrap();
    let bisected = d.join("bisected");
    ok(sweep(
        &[
            &[
                "--grid",
                grid.to_str().unwrap(),
                "--output-dir",
                bisected.to_str().unwrap(),
                "--find-saturation",
                "--bisect-steps",
                "3",
            ][..],
            &slo[..],
        ]
        .concat(),
    ));
    let doc = json(&bisected.join("sweep.json"));
    assert_eq!(doc["probes"].as_array().unwrap().len(), 3);
    // Every rate on the same resolution, run outright.
    let rates: Vec<String> = (0..=8)
        .map(|k| (0.5 + 0.5 * k as f64).to_string())
        .collect();
    let scan = d.join("scan.yaml");
    std::fs::write(
        &scan,
        format!(
            "{SAT_BASE}rates: [{}]\ngrid:\n  seed: 0\n",
            rates.join(", ")
        ),
    )
    .unwrap();
    let brute = d.join("brute");
    ok(sweep(
        &[
            &[
                "--grid",
                scan.to_str().unwrap(),
                "--output-dir",
                brute.to_str().unwrap(),
            ][..],
            &slo[..],
        ]
        .concat(),
    ));
    let found = max_rate(&bisected).as_f64().unwrap();
    let scanned = max_rate(&brute).as_f64().unwrap();
    assert_eq!(found, scanned);
    // The case is not trivial: the scan passes somewhere and fails somewhere.
    let doc = json(&brute.join("sweep.json"));
    let met: Vec<bool> = doc["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["slo_met"].as_bool().unwrap())
        .collect();
    assert!(met.contains(&true) && met.contains(&false), "{met:?}");
    assert!(found > 0.5 && found < 4.5, "{found}");
}

fn refused(grid: &str, extra: &[&str]) -> String {
    let scratch = tmp("bad");
    let d = scratch.path();
    let p = d.join("g.yaml");
    std::fs::write(&p, grid).unwrap();
    let out_dir = d.join("out");
    let out = sweep(
        &[
            &[
                "--grid",
                p.to_str().unwrap(),
                "--output-dir",
                out_dir.to_str().unwrap(),
            ][..],
            extra,
        ]
        .concat(),
    );
    assert!(!out.status.success(), "accepted: {grid}");
    assert!(!out_dir.exists(), "ran before refusing: {grid}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_grids_are_refused_naming_the_axis_and_value() {
    let e = refused("grid:\n  max-num-seq: [4, 8]\n", &[]);
    assert!(
        e.contains("axis `max-num-seq`") && e.contains("not a `llm-emu simulate` flag"),
        "{e}"
    );
    let e = refused("grid:\n  max_num_seqs: [4, 8]\n", &[]);
    assert!(e.contains("did you mean `max-num-seqs`"), "{e}");
    let e = refused("base:\n  synthetic: 10\ngrid:\n  gpu: [h100, h900]\n", &[]);
    assert!(e.contains("axis `gpu` value \"h900\""), "{e}");
    let e = refused("grid:\n  max-num-seqs: [4, lots]\n", &[]);
    assert!(e.contains("axis `max-num-seqs` value \"lots\""), "{e}");
    let e = refused("grid:\n  gpu: [h100]\nrates: [1, -2]\n", &[]);
    assert!(e.contains("axis `request-rate` value -2"), "{e}");
    let e = refused("grid:\n  output-json: [x.json]\n", &[]);
    assert!(e.contains("the sweep sets this flag itself"), "{e}");
    let e = refused("grid:\n  enforce-eager: [yes]\n", &[]);
    assert!(
        e.contains("enforce-eager") && e.contains("true or false"),
        "{e}"
    );
    let e = refused("grid:\n  gpu: [h100\n", &[]);
    assert!(e.contains("line 2"), "{e}");
    let e = refused("grid:\n  gpu: [h100]\n", &["--slo-ttft-ms", "p95:100"]);
    assert!(e.contains("--slo-ttft-ms"), "{e}");
}

#[test]
fn objectives_no_point_meets_name_the_closest() {
    let scratch = tmp("unmet");
    let d = scratch.path();
    let p = d.join("g.json");
    std::fs::write(
        &p,
        r#"{"base": {"synthetic": 30}, "grid": {"max-num-seqs": [2, 16]}, "rates": [50]}"#,
    )
    .unwrap();
    let out = ok(sweep(&[
        "--grid",
        p.to_str().unwrap(),
        "--output-dir",
        d.join("out").to_str().unwrap(),
        "--slo-ttft-ms",
        "p99:0.001",
    ]));
    assert!(
        out.contains("no point meets the objectives; the closest is point 1 [max-num-seqs=16"),
        "{out}"
    );
}

#[test]
fn a_list_runs_its_points_as_given() {
    let scratch = tmp("list");
    let d = scratch.path();
    let p = d.join("list.yaml");
    std::fs::write(
        &p,
        "base:\n  synthetic: 20\npoints:\n  - gpu: h100\n    max-num-seqs: 4\n  - gpu: h200\nrates: [5]\n",
    )
    .unwrap();
    let out_dir = d.join("out");
    ok(sweep(&[
        "--list",
        p.to_str().unwrap(),
        "--output-dir",
        out_dir.to_str().unwrap(),
    ]));
    let csv = read(&out_dir.join("sweep.csv"));
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(
        lines[0].starts_with("point,config,gpu,max-num-seqs,request-rate,"),
        "{csv}"
    );
    assert!(lines[1].starts_with("0,0,h100,4,5,20,"), "{csv}");
    assert!(lines[2].starts_with("1,1,h200,,5,20,"), "{csv}");
}
