//! `llm-emu profile-pack` and `--profile` format detection, end to end.

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_llm-emu"))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("llm-emu-sc-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn steps_become_a_pack_that_drives_simulate() {
    let d = tmp("ok");
    let steps = d.join("steps.jsonl");
    let out = bin()
        .args([
            "simulate",
            "--synthetic",
            "300",
            "--request-rate",
            "20",
            "--quiet",
        ])
        .arg("--steps-out")
        .arg(&steps)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pack = d.join("pack.json");
    let out = bin()
        .args(["profile-pack", "--steps"])
        .arg(&steps)
        .arg("--out")
        .arg(&pack)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p: Value = serde_json::from_str(&std::fs::read_to_string(&pack).unwrap()).unwrap();
    assert_eq!(p["profile_type"], "serving_step_cycle_2d");
    let summary = d.join("s.json");
    let out = bin()
        .args([
            "simulate",
            "--synthetic",
            "300",
            "--request-rate",
            "20",
            "--quiet",
        ])
        .arg("--profile")
        .arg(&pack)
        .arg("--output-json")
        .arg(&summary)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert!(
        s["latency_model"]
            .as_str()
            .unwrap()
            .starts_with("step-cycle:"),
        "{}",
        s["latency_model"]
    );
    assert_eq!(s["completed"], 300);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn unrecognised_profiles_and_conflicts_are_errors() {
    let d = tmp("bad");
    let json = d.join("other.json");
    std::fs::write(&json, r#"{"profile_type": "something_else"}"#).unwrap();
    for (args, want) in [
        (
            vec!["--profile".to_string(), d.display().to_string()],
            "without meta.yaml",
        ),
        (
            vec!["--profile".to_string(), json.display().to_string()],
            "not a recognised profile",
        ),
        (
            vec![
                "--profile".to_string(),
                json.display().to_string(),
                "--latency".to_string(),
                "roofline".to_string(),
            ],
            "cannot be used with",
        ),
    ] {
        let out = bin()
            .args(["simulate", "--synthetic", "10", "--quiet"])
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(want),
            "{args:?}: {err}"
        );
    }
    std::fs::remove_dir_all(&d).unwrap();
}
