//! `llm-emu simulate` with data-parallel ranks and replicas behind a router.

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("llm-emu-fleet-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn simulate(args: &[&str], d: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_llm-emu"))
        .args([
            "simulate",
            "--quiet",
            "--synthetic",
            "200",
            "--request-rate",
            "40",
        ])
        .args(args)
        .arg("--output-json")
        .arg(d.join("s.json"))
        .arg("--requests-out")
        .arg(d.join("r.jsonl"))
        .output()
        .unwrap()
}

fn outputs(d: &std::path::Path) -> (Value, Vec<Value>) {
    let s = serde_json::from_str(&std::fs::read_to_string(d.join("s.json")).unwrap()).unwrap();
    let r = std::fs::read_to_string(d.join("r.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (s, r)
}

fn refused(args: &[&str]) -> String {
    let out = simulate(args, &tmp("refused"));
    assert!(!out.status.success(), "{args:?} ran");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn data_parallel_reports_each_rank() {
    let d = tmp("dp");
    let out = simulate(&["--data-parallel-size", "2"], &d);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (s, records) = outputs(&d);
    assert_eq!(s["completed"], 200);
    assert_eq!(s["fleet"]["kind"], "data-parallel");
    assert_eq!(s["fleet"]["api_server_count"], 2);
    let inst = s["instances"].as_array().unwrap();
    assert_eq!(inst.len(), 2);
    for (i, e) in inst.iter().enumerate() {
        let on_rank = records.iter().filter(|r| r["engine"] == i).count() as u64;
        assert!(on_rank > 0, "rank {i} ran nothing");
        assert_eq!(e["completed"].as_u64(), Some(on_rank));
    }
    let tokens: u64 = inst
        .iter()
        .map(|e| e["total_output_tokens"].as_u64().unwrap())
        .sum();
    assert_eq!(Some(tokens), s["total_output_tokens"].as_u64());
}

#[test]
fn round_robin_replicas_name_each_request_s_instance_in_turn() {
    let d = tmp("rr");
    let out = simulate(&["--replicas", "3", "--router", "round-robin"], &d);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (s, mut records) = outputs(&d);
    assert_eq!(s["fleet"]["router"], "round-robin");
    assert_eq!(s["instances"].as_array().unwrap().len(), 3);
    records.sort_by(|a, b| {
        a["arrival_s"]
            .as_f64()
            .unwrap()
            .total_cmp(&b["arrival_s"].as_f64().unwrap())
    });
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r["engine"], i % 3, "{r}");
    }
}

#[test]
fn bad_fleets_are_refused_naming_the_flag() {
    assert!(refused(&["--replicas", "2", "--router", "random"]).contains("unknown router `random`"));
    assert!(refused(&["--replicas", "0"]).contains("--replicas must be at least 1"));
    assert!(refused(&["--data-parallel-size", "0"]).contains("--data-parallel-size"));
    assert!(
        refused(&["--data-parallel-size", "2", "--enable-expert-parallel"])
            .contains("not modelled yet")
    );
    assert!(refused(&["--data-parallel-size", "2", "--replicas", "2"]).contains("--replicas 2"));
}

#[test]
fn data_parallel_times_tensor_parallel_must_fit_the_recorded_gpus() {
    let run = tmp("gpus");
    std::fs::write(
        run.join("meta.json"),
        r#"{"hardware": {"device_count": 2}}"#,
    )
    .unwrap();
    let run = run.to_str().unwrap();
    let err = refused(&[
        "--like",
        run,
        "--data-parallel-size",
        "2",
        "--tensor-parallel-size",
        "2",
    ]);
    assert!(err.contains("needs 4 GPUs, but the run has 2"), "{err}");
    let d = tmp("gpus-ok");
    let out = simulate(&["--like", run, "--data-parallel-size", "2"], &d);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_table_lists_each_instance() {
    let out = Command::new(env!("CARGO_BIN_EXE_llm-emu"))
        .args(["simulate", "--synthetic", "50", "--replicas", "2"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let table: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.contains("Per instance"))
        .collect();
    assert!(table.len() >= 4, "{text}");
    assert!(
        table[2].starts_with('0') && table[3].starts_with('1'),
        "{text}"
    );
}
