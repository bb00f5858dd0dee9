//! Step-cycle packs end to end: `simulate --steps-out` → `profile-pack` → `simulate --profile`.

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
        .prefix(&format!("llm-emu-sc-{name}-"))
        .tempdir()
        .unwrap()
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// A simulate run of 200 synthetic requests at 20/s with extra args; returns its summary.
fn simulate(d: &Path, name: &str, extra: &[&str]) -> Value {
    let out = d.join(format!("summary-{name}.json"));
    ok(bin()
        .args([
            "simulate",
            "--quiet",
            "--synthetic",
            "200",
            "--request-rate",
            "20",
        ])
        .args(extra)
        .arg("--output-json")
        .arg(&out)
        .output()
        .unwrap());
    json(&out)
}

#[test]
fn a_pack_built_from_steps_reproduces_the_run() {
    let scratch = tmp("roundtrip");
    let d = scratch.path();
    let steps = d.join("steps.jsonl");
    let lin = "linear:base_us=6000,per_token_us=25,per_req_us=40";
    let base = simulate(
        d,
        "linear",
        &["--latency", lin, "--steps-out", steps.to_str().unwrap()],
    );
    let pack = d.join("pack.json");
    let built = ok(bin()
        .args([
            "profile-pack",
            "--tt-bucket-width",
            "8",
            "--gpu-model",
            "none",
        ])
        .arg(&steps)
        .arg("--out")
        .arg(&pack)
        .output()
        .unwrap());
    assert!(String::from_utf8_lossy(&built.stderr).contains("steps;"));
    let p = json(&pack);
    assert_eq!(p["profile_type"], "serving_step_cycle_2d");
    assert_eq!(p["bucketing"]["tt_bucket_width"], 8);
    assert!(!p["prefill_2d_distribution"].as_array().unwrap().is_empty());
    assert!(!p["decode_2d_distribution"].as_array().unwrap().is_empty());

    let sc = simulate(d, "pack", &["--profile", pack.to_str().unwrap()]);
    assert!(sc["latency_model"]
        .as_str()
        .unwrap()
        .starts_with("step-cycle:"));
    assert_eq!(sc["completed"], 200);
    // Same workload, step times drawn from the run's own steps: per-token figures agree.
    for k in ["mean_tpot_ms", "mean_itl_ms", "mean_ttft_ms", "duration"] {
        let (a, b) = (base[k].as_f64().unwrap(), sc[k].as_f64().unwrap());
        assert!((a - b).abs() / a < 0.05, "{k}: linear {a} vs pack {b}");
    }
    // --seed feeds the draws: same seed, same run; another seed, other step times.
    let again = simulate(d, "again", &["--profile", pack.to_str().unwrap()]);
    assert_eq!(sc["mean_tpot_ms"], again["mean_tpot_ms"]);
    let spec = format!("step-cycle:path={},seed=0", pack.display());
    let explicit = simulate(d, "explicit", &["--latency", &spec]);
    assert_eq!(sc["mean_tpot_ms"], explicit["mean_tpot_ms"]);
    // The context axis (our extension) builds and runs too.
    let ctx_pack = d.join("ctx.json");
    ok(bin()
        .args(["profile-pack", "--ctx-bucket-width", "4096"])
        .arg(&steps)
        .arg("-o")
        .arg(&ctx_pack)
        .output()
        .unwrap());
    assert_eq!(json(&ctx_pack)["profile_type"], "llm_emu_step_cycle");
    let c = simulate(d, "ctx", &["--profile", ctx_pack.to_str().unwrap()]);
    let a = base["mean_tpot_ms"].as_f64().unwrap();
    assert!((c["mean_tpot_ms"].as_f64().unwrap() - a).abs() / a < 0.05);
}

#[test]
fn the_seed_changes_the_draws_on_a_noisy_pack() {
    let scratch = tmp("seed");
    let d = scratch.path();
    let pack = d.join("noisy.json");
    // Every step 5–15 ms whatever its shape.
    let samples: Vec<f64> = (0..100).map(|i| 5000.0 + 100.0 * i as f64).collect();
    let cell = serde_json::json!({"tt": 0, "conc": 0, "num_samples": 100, "samples": samples});
    let mut cells = vec![];
    for tt in [1u64, 4096] {
        let mut c = cell.clone();
        c["tt"] = tt.into();
        c["conc"] = 2.into();
        cells.push(c);
    }
    let p = serde_json::json!({
        "profile_type": "serving_step_cycle_2d",
        "bucketing": {"tt_bucket_width": 1, "conc_bucket_width": 5},
        "step_cycle_2d_distribution": cells,
    });
    std::fs::write(&pack, p.to_string()).unwrap();
    let run = |seed: &str| {
        simulate(
            d,
            &format!("s{seed}"),
            &["--profile", pack.to_str().unwrap(), "--seed", seed],
        )
    };
    let (a, b) = (run("1"), run("1"));
    assert_eq!(a["mean_itl_ms"], b["mean_itl_ms"]);
    let c = run("2");
    assert_ne!(a["mean_itl_ms"], c["mean_itl_ms"]);
}

#[test]
fn profile_errors_are_clear() {
    let scratch = tmp("errors");
    let d = scratch.path();
    let run = |args: &[&str]| {
        let out = bin()
            .args(["simulate", "--quiet"])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let bad = d.join("bad.json");
    std::fs::write(
        &bad,
        r#"{"profile_type": "serving_step_cycle_2d", "bucketing": {"tt_bu"#,
    )
    .unwrap();
    let e = run(&["--profile", bad.to_str().unwrap()]);
    assert!(e.contains("not valid JSON") && e.contains("EOF"), "{e}");
    let e = run(&[
        "--profile",
        bad.to_str().unwrap(),
        "--latency",
        "linear:base_us=1",
    ]);
    assert!(e.contains("cannot be used with"), "{e}");
    let e = run(&["--profile", d.to_str().unwrap()]);
    assert!(e.contains("not an operator profile"), "{e}");
    let steps = d.join("steps.jsonl");
    std::fs::write(&steps, "{\"total_tokens\": 3, \"step_cycle_us\": \"x\"}\n").unwrap();
    let out = bin()
        .args(["profile-pack", "-o", "/dev/null"])
        .arg(&steps)
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && e.contains("line 1") && e.contains("step_cycle_us"),
        "{e}"
    );
}

#[test]
fn profile_detects_an_operator_profile_directory() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/real-runs/rtxpro6000-llama-3.1-8b/profile");
    if !dir.join("meta.yaml").exists() {
        println!("skipped: {} is absent", dir.display());
        return;
    }
    let scratch = tmp("opdir");
    let d = scratch.path();
    let s = simulate(d, "op", &["--profile", dir.to_str().unwrap()]);
    let m = s["latency_model"].as_str().unwrap();
    assert!(m.starts_with("profile:"), "{m}");
    assert_eq!(s["completed"], 200);
}
