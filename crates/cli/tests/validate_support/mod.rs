//! `llm-emu validate` as the CLI tests that replay real runs call it.

use serde_json::Value;
use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

/// Runs `llm-emu validate` on the run in `case` (`case/vllm`, `case/workload.jsonl`) with
/// `extra` flags and `--json`; asserts success and returns (stdout, stderr, the comparison
/// JSON). `tag` names the JSON file, written in a fresh folder that is removed when this
/// returns or fails.
pub fn validate_run<S: AsRef<OsStr>>(
    case: &Path,
    tag: &str,
    extra: &[S],
) -> (String, String, Value) {
    let dir = tempfile::Builder::new()
        .prefix(&format!("llm-emu-validate-{tag}-"))
        .tempdir()
        .unwrap();
    let json = dir.path().join(format!("llm-emu-validate-{tag}.json"));
    let out = Command::new(env!("CARGO_BIN_EXE_llm-emu"))
        .arg("validate")
        .arg("--real")
        .arg(case.join("vllm"))
        .arg("--workload")
        .arg(case.join("workload.jsonl"))
        .args(extra)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let m = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr, m)
}
