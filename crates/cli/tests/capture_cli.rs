//! Capturing a pack from vLLM: `profile-plan` workloads read by `simulate`, the capture
//! plug-in's own tests (`plugins/vllm-capture`, run with python3 when it is installed), and the
//! whole round trip on the vLLM reference server (`tools/capture-roundtrip.sh`) when the
//! reference is installed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tempfile::TempDir;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_llm-emu"))
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A fresh directory, removed when the returned handle drops (pass or fail).
fn tmp(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("llm-emu-capture-{name}-"))
        .tempdir()
        .unwrap()
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn a_plan_is_a_workload_simulate_runs_request_for_request() {
    let scratch = tmp("plan");
    let d = scratch.path();
    for (name, extra) in [("lens.jsonl", &[][..]), ("ids.jsonl", &["--token-ids"][..])] {
        let w = d.join(name);
        ok(bin()
            .args(["profile-plan", "-o"])
            .arg(&w)
            .args(["--prompt-lens", "16,300", "--concurrency", "1,3"])
            .args(["--output-len", "5", "--step-ms", "10"])
            .args(extra)
            .output()
            .unwrap());
        let summary = d.join(format!("{name}.summary.json"));
        ok(bin()
            .args(["simulate", "--quiet", "--workload"])
            .arg(&w)
            .arg("--output-json")
            .arg(&summary)
            .output()
            .unwrap());
        let s: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
        // 2 prompt lengths × (1 + 3) requests, each 5 output tokens.
        assert_eq!(s["completed"], 8, "{name}: {s}");
        assert_eq!(s["total_input_tokens"], 4 * 16 + 4 * 300, "{name}: {s}");
        assert_eq!(s["total_output_tokens"], 8 * 5, "{name}: {s}");
    }
}

#[test]
fn bad_plans_are_refused() {
    let scratch = tmp("bad");
    let d = scratch.path();
    for args in [
        &["--prompt-lens", "0"][..],
        &["--concurrency", ""][..],
        &["--output-len", "0"][..],
        &["--step-ms", "-1"][..],
        &["--prompt-lens", "4000", "--max-model-len", "4000"][..],
    ] {
        let out = bin()
            .args(["profile-plan", "-o"])
            .arg(d.join("w.jsonl"))
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} accepted");
    }
}

fn have_python() -> bool {
    Command::new("python3")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn capture_plugin_unit_tests() {
    if !have_python() {
        eprintln!("skipped: no python3 for plugins/vllm-capture's tests");
        return;
    }
    ok(Command::new("python3")
        .args(["-m", "unittest", "discover", "-s", "tests"])
        .current_dir(repo().join("plugins/vllm-capture"))
        .output()
        .unwrap());
}

#[test]
fn capture_round_trip_on_the_vllm_reference() {
    let home = std::env::var_os("VLLM_REF_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/vllm-reference")));
    let Some(home) = home.filter(|h| h.join("venv/bin/vllm").exists()) else {
        eprintln!(
            "skipped: the vLLM reference is not installed (../shared/tools/vllm-reference/setup.sh)"
        );
        return;
    };
    let scratch = tmp("roundtrip");
    let d = scratch.path();
    let out = Command::new("bash")
        .arg(repo().join("tools/capture-roundtrip.sh"))
        .arg(d)
        .env("LLM_EMU", env!("CARGO_BIN_EXE_llm-emu"))
        .env("VLLM_REF_HOME", &home)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    assert!(
        out.status.success(),
        "round trip failed:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("round trip within"), "{text}");
}

/// Step records of a small simulate run, split in two halves.
fn two_step_logs(d: &Path) -> (PathBuf, PathBuf) {
    let steps = d.join("steps.jsonl");
    ok(bin()
        .args([
            "simulate",
            "--quiet",
            "--synthetic",
            "60",
            "--request-rate",
            "20",
        ])
        .arg("--steps-out")
        .arg(&steps)
        .output()
        .unwrap());
    let text = std::fs::read_to_string(&steps).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() > 20, "{} steps", lines.len());
    let (a, b) = lines.split_at(lines.len() / 2);
    let (pa, pb) = (d.join("a.jsonl"), d.join("b.jsonl"));
    std::fs::write(&pa, a.join("\n")).unwrap();
    std::fs::write(&pb, b.join("\n")).unwrap();
    (pa, pb)
}

#[test]
fn merging_records_into_a_pack_equals_building_it_from_all_records() {
    let scratch = tmp("merge");
    let d = scratch.path();
    let (a, b) = two_step_logs(d);
    for widths in [
        &[][..],
        &["--tt-bucket-width", "16", "--ctx-bucket-width", "512"][..],
    ] {
        let pack = |args: &[&str], inputs: &[&Path], out: &str| {
            let p = d.join(out);
            ok(bin()
                .arg("profile-pack")
                .args(inputs)
                .arg("-o")
                .arg(&p)
                .args(args)
                .output()
                .unwrap());
            std::fs::read_to_string(p).unwrap()
        };
        let whole = pack(widths, &[&a, &b], "whole.json");
        pack(widths, &[&a], "half.json");
        // The pack's widths are kept without repeating the flags.
        let merged = pack(
            &["--merge", d.join("half.json").to_str().unwrap()],
            &[&b],
            "merged.json",
        );
        assert_eq!(merged, whole, "widths {widths:?}");
    }
    let refused = bin()
        .arg("profile-pack")
        .arg(&b)
        .arg("-o")
        .arg(d.join("x.json"))
        .args(["--conc-bucket-width", "7", "--merge"])
        .arg(d.join("half.json"))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--conc-bucket-width 7 differs"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}
