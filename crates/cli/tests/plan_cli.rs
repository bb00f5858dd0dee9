//! `llm-emu plan` end to end: its answer against a brute-force sweep of the same space,
//! determinism over runs and `--jobs`, and bad input.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use tempfile::TempDir;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_llm-emu"))
}

/// A fresh directory, removed when the returned handle drops (pass or fail).
fn tmp(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("llm-emu-plan-{name}-"))
        .tempdir()
        .unwrap()
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(out: Output) -> String {
    assert!(!out.status.success(), "expected a failure");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// The small space both the plan and the brute-force sweep cover.
const REQUESTS: &str = "120";
const SEED: &str = "3";
const RATE: &str = "60";
const TTFT: &str = "200";
const TPOT: &str = "8";
const PRICES: &str = "h100: 2.0\nh200: 4.5\n";
const MAX_GPUS: u64 = 4;

fn plan_args<'a>(prices: &'a str, out: &'a str, jobs: &'a str) -> Vec<&'a str> {
    vec![
        "plan",
        "--synthetic",
        REQUESTS,
        "--seed",
        SEED,
        "--request-rate",
        RATE,
        "--gpus",
        "h100,h200",
        "--tensor-parallel-size",
        "1,2",
        "--scale-out",
        "replicas",
        "--max-gpus",
        "4",
        "--slo",
        "ttft:p99=200ms",
        "--slo",
        "tpot:p99=8ms",
        "--prices",
        prices,
        "--output-json",
        out,
        "--jobs",
        jobs,
        "--top",
        "3",
    ]
}

#[test]
fn the_plan_is_the_cheapest_fleet_a_brute_force_sweep_finds() {
    let scratch = tmp("brute");
    let d = scratch.path();
    let prices = d.join("prices.yaml");
    std::fs::write(&prices, PRICES).unwrap();
    let plan_json = d.join("plan.json");
    let stdout = ok(run(&plan_args(
        prices.to_str().unwrap(),
        plan_json.to_str().unwrap(),
        "2",
    )));
    assert!(stdout.contains("llm-emu serve"), "{stdout}");
    let plan = json(&plan_json);
    let best = &plan["fleets"][0];

    // Every fleet of the space at the target rate.
    let grid = d.join("grid.yaml");
    std::fs::write(
        &grid,
        format!(
            "base:\n  synthetic: {REQUESTS}\n  seed: {SEED}\n  router: round-robin\ngrid:\n  \
             gpu: [h100, h200]\n  tensor-parallel-size: [1, 2]\n  replicas: [1, 2, 3, 4]\n\
             rates: [{RATE}]\n"
        ),
    )
    .unwrap();
    let out_dir = d.join("sweep");
    ok(run(&[
        "sweep",
        "--quiet",
        "--grid",
        grid.to_str().unwrap(),
        "--output-dir",
        out_dir.to_str().unwrap(),
        "--slo-ttft-ms",
        &format!("p99:{TTFT}"),
        "--slo-tpot-ms",
        &format!("p99:{TPOT}"),
    ]));
    let sweep = json(&out_dir.join("sweep.json"));
    let price = |g: &str| if g == "h100" { 2.0 } else { 4.5 };
    let meeting: Vec<(f64, &Value)> = sweep["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["tensor-parallel-size"].as_u64().unwrap() * r["replicas"].as_u64().unwrap()
                <= MAX_GPUS
        })
        .filter(|r| r["slo_met"] == true)
        .map(|r| {
            let gpus =
                r["tensor-parallel-size"].as_u64().unwrap() * r["replicas"].as_u64().unwrap();
            (gpus as f64 * price(r["gpu"].as_str().unwrap()), r)
        })
        .collect();
    let cheapest = meeting
        .iter()
        .map(|(c, _)| *c)
        .fold(f64::INFINITY, f64::min);
    assert!(
        cheapest.is_finite(),
        "no fleet of the space meets the objectives"
    );
    // Not a trivial space: one engine of the cheapest GPU alone does not do.
    assert!(
        !meeting.iter().any(|(_, r)| r["gpu"] == "h100"
            && r["tensor-parallel-size"] == 1
            && r["replicas"] == 1),
        "the objectives are too loose for the test to mean anything"
    );
    assert_eq!(
        best["cost_per_hour"].as_f64().unwrap(),
        cheapest,
        "{plan:#}"
    );
    let gpu_short = |g: &str| g.split('-').next().unwrap().to_string();
    let same = meeting.iter().find(|(c, r)| {
        *c == cheapest
            && r["gpu"].as_str().unwrap() == gpu_short(best["gpu"].as_str().unwrap())
            && r["tensor-parallel-size"] == best["tensor_parallel_size"]
            && r["replicas"] == best["engines"]
    });
    let (_, row) = same.unwrap_or_else(|| panic!("plan's {best:#} is not a cheapest point"));
    // The very same run: the same figures.
    for k in ["p99_ttft_ms", "p99_tpot_ms", "request_throughput"] {
        assert_eq!(best["summary"][k], row[k], "{k}");
    }
    // The serve command names the winner.
    let cmd = best["serve_command"].as_str().unwrap();
    assert!(cmd.starts_with("llm-emu serve "), "{cmd}");
    assert!(
        cmd.contains(&format!("--gpu {}", best["gpu"].as_str().unwrap())),
        "{cmd}"
    );
    let n = best["engines"].as_u64().unwrap();
    assert_eq!(cmd.contains(&format!("--replicas {n}")), n > 1, "{cmd}");
}

#[test]
fn the_same_plan_writes_the_same_file_whatever_the_jobs() {
    let scratch = tmp("determinism");
    let d = scratch.path();
    let prices = d.join("prices.yaml");
    std::fs::write(&prices, PRICES).unwrap();
    let a = d.join("a.json");
    let b = d.join("b.json");
    ok(run(&plan_args(
        prices.to_str().unwrap(),
        a.to_str().unwrap(),
        "1",
    )));
    ok(run(&plan_args(
        prices.to_str().unwrap(),
        b.to_str().unwrap(),
        "2",
    )));
    assert_eq!(
        std::fs::read(&a).unwrap(),
        std::fs::read(&b).unwrap(),
        "plans differ between --jobs 1 and --jobs 2"
    );
}

fn small(extra: &[&str]) -> Output {
    let mut args = vec![
        "plan",
        "--synthetic",
        "30",
        "--request-rate",
        "5",
        "--gpus",
        "h100",
        "--tensor-parallel-size",
        "1",
        "--slo",
        "ttft:p99=2s",
    ];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn bad_input_is_named() {
    let scratch = tmp("bad");
    let d = scratch.path();
    let msg = fails(small(&["--gpus", "h1000"]));
    assert!(
        msg.contains("unknown GPU `h1000`") && msg.contains("h100-sxm"),
        "{msg}"
    );

    let prices = d.join("prices.yaml");
    std::fs::write(&prices, "h100: 2\n").unwrap();
    let msg = fails(small(&[
        "--gpus",
        "h100,h200",
        "--prices",
        prices.to_str().unwrap(),
    ]));
    assert!(msg.contains("no price for h200"), "{msg}");

    std::fs::write(&prices, "h100: free\n").unwrap();
    let msg = fails(small(&["--prices", prices.to_str().unwrap()]));
    assert!(msg.contains("positive number of dollars"), "{msg}");

    let msg = fails(small(&["--slo", "ttft:p95=1s"]));
    assert!(msg.contains("mean, median, p90 or p99"), "{msg}");
    let msg = fails(small(&["--set", "max-num-seq=8"]));
    assert!(
        msg.contains("max-num-seq") && msg.contains("not a `llm-emu simulate` flag"),
        "{msg}"
    );
    let msg = fails(small(&["--scale-out", "pods"]));
    assert!(msg.contains("--scale-out `pods`"), "{msg}");
    let msg = fails(small(&["--router", "random"]));
    assert!(msg.contains("--router"), "{msg}");
    let msg = fails(run(&["plan", "--synthetic", "30", "--slo", "ttft:p99=1s"]));
    assert!(msg.contains("--request-rate"), "{msg}");
    let msg = fails(run(&["plan", "--request-rate", "5", "--gpus", "h100"]));
    assert!(msg.contains("--slo"), "{msg}");
}

#[test]
fn objectives_no_fleet_meets_name_the_closest() {
    let scratch = tmp("unmeetable");
    let d = scratch.path();
    let out = d.join("plan.json");
    let msg = fails(small(&[
        "--slo",
        "ttft:p99=0.01ms",
        "--max-gpus",
        "2",
        "--output-json",
        out.to_str().unwrap(),
    ]));
    assert!(
        msg.contains("no configuration meets the objectives"),
        "{msg}"
    );
    assert!(msg.contains("the closest is [gpu=h100-sxm"), "{msg}");
    let doc = json(&out);
    assert_eq!(doc["met"], false);
    let ratio = doc["closest"]["worst_ratio"].as_f64().unwrap();
    assert!(ratio > 1.0, "{doc:#}");
    assert!(msg.contains(&format!("{ratio:.2}x the bound")), "{msg}");
}
