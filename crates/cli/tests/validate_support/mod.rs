//! `llm-emu validate` as the CLI tests that replay real runs call it.

use serde_json::Value;
use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

/// Runs `llm-emu validate` on the run in `case` (`case/vllm`, `case/workload.jsonl`) with
/// `extra` flags and `--json`; asserts success and returns (stdout, stderr, the comparison
/// JSON). `tag` names the JSON file, so that tests running at once do not share one.
pub fn validate_run<S: AsRef<OsStr>>(
    case: &Path,
    tag: &str,
    extra: &[S],
) -> (String, String, Value) {
    let json = std::env::temp_dir().join(format!(
        "llm-emu-validate-{tag}-{}.json",
        std::process::id()
    ));
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
    let _ = std::fs::remove_file(&json);
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr, m)
}
