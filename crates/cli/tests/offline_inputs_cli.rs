//! `llm-emu simulate` and `validate` on workloads that are not what they should be: every
//! problem is a clear error naming `file:line` or a counted skip, and a run that ran nothing
//! or could not read its input exits non-zero.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// A fresh directory, removed when the returned handle drops (pass or fail).
fn tmp(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("llm-emu-inputs-{name}-"))
        .tempdir()
        .unwrap()
}

/// Runs `llm-emu args…`, killing it after `limit` (so a run that never ends fails the test
/// instead of hanging it). The limit is generous: each of these runs takes well under a second
/// when correct, and spun forever before.
fn run(args: &[&str], paths: &[&Path], limit: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_llm-emu"))
        .args(args)
        .args(paths)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > limit {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "llm-emu {args:?} still running after {limit:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn simulate(workload: &Path) -> Output {
    run(
        &["simulate", "--max-model-len", "4096", "--workload"],
        &[workload],
        Duration::from_secs(120),
    )
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const GOOD: &str = "{\"arrival_s\": 0.0, \"prompt_len\": 100, \"output_len\": 10}\n";

#[test]
fn a_directory_workload_is_a_quick_clear_error() {
    let scratch = tmp("dir");
    let d = scratch.path();
    let out = simulate(d);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("opening workload") && err.contains("is a directory"),
        "{err}"
    );
}

#[test]
fn validate_refuses_a_directory_workload_quickly() {
    let case = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/real-runs/rtxpro6000-llama-3.1-8b");
    if !case.exists() {
        println!("skipped: {} is absent", case.display());
        return;
    }
    let scratch = tmp("vdir");
    let d = scratch.path();
    let out = run(
        &["validate", "--real"],
        &[&case.join("vllm"), Path::new("--workload"), d],
        Duration::from_secs(120),
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("is a directory"), "{}", stderr(&out));
}

#[test]
fn a_missing_workload_is_an_error() {
    let out = simulate(Path::new("/nonexistent/llm-emu/w.jsonl"));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("opening workload"));
}

#[test]
fn an_empty_or_all_bad_workload_ran_nothing_and_says_so() {
    let scratch = tmp("empty");
    let d = scratch.path();
    for (name, text) in [
        ("empty.jsonl", ""),
        ("blank.jsonl", "\n\n   \n"),
        (
            "bad.jsonl",
            "not json\n{\"arrival_s\": -1, \"prompt_len\": 3, \"output_len\": 1}\n",
        ),
    ] {
        let w = d.join(name);
        std::fs::write(&w, text).unwrap();
        let out = simulate(&w);
        assert!(!out.status.success(), "{name}: exit 0 having run nothing");
        assert!(
            stderr(&out).contains("nothing ran"),
            "{name}: {}",
            stderr(&out)
        );
    }
    // The skipped lines are counted and named.
    let out = simulate(&d.join("bad.jsonl"));
    let err = stderr(&out);
    assert!(err.contains("2 unusable workload line(s) skipped"), "{err}");
    assert!(
        err.contains("bad.jsonl:1: not valid JSON") && err.contains("bad.jsonl:2: arrival_s"),
        "{err}"
    );
}

#[test]
fn a_huge_prompt_len_fails_that_request_only() {
    let scratch = tmp("huge");
    let d = scratch.path();
    let w = d.join("w.jsonl");
    std::fs::write(
        &w,
        concat!(
            "{\"arrival_s\": 0.0, \"prompt_len\": 100, \"output_len\": 10}\n",
            "{\"arrival_s\": 0.1, \"prompt_len\": 4294967295, \"output_len\": 10}\n",
            "{\"arrival_s\": 0.2, \"prompt_len\": 100, \"output_len\": 4294967295}\n",
            "{\"arrival_s\": 0.3, \"prompt_len\": 100, \"output_len\": 10}\n",
        ),
    )
    .unwrap();
    let out = simulate(&w);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(
            "w.jsonl:2: The decoder prompt (length 4294967295) is longer than the maximum model \
             length of 4096."
        ),
        "{err}"
    );
    assert!(
        err.contains(
            "w.jsonl:3: This model's maximum context length is 4096 tokens. However, you \
             requested 4294967295 output tokens"
        ),
        "{err}"
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("Successful requests:                    2"),
        "{table}"
    );
}

#[test]
fn zero_length_prompts_are_reported_by_file_and_line() {
    let scratch = tmp("zero");
    let d = scratch.path();
    let w = d.join("w.jsonl");
    std::fs::write(
        &w,
        format!("{GOOD}{{\"arrival_s\": 0.1, \"prompt_token_ids\": [], \"output_len\": 10, \"request_id\": \"r1\"}}\n"),
    )
    .unwrap();
    let out = simulate(&w);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("w.jsonl:2: The decoder prompt cannot be empty"),
        "{err}"
    );
}

#[test]
fn a_byte_order_mark_does_not_cost_the_first_request() {
    let scratch = tmp("bom");
    let d = scratch.path();
    let w = d.join("w.jsonl");
    std::fs::write(&w, format!("\u{feff}{GOOD}{GOOD}")).unwrap();
    let out = simulate(&w);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("failed"), "{err}");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("Successful requests:                    2"),
        "{table}"
    );
}

#[test]
fn an_overlong_line_is_skipped_with_its_line_and_memory_stays_bounded() {
    // 33 MiB on one line, over the 32 MiB cap (docs/hardening.md).
    let scratch = tmp("long");
    let d = scratch.path();
    let w = d.join("w.jsonl");
    let mut text = String::with_capacity(34 << 20);
    text.push_str(GOOD);
    text.push_str("{\"arrival_s\": 0.1, \"prompt_len\": 3, \"output_len\": 1, \"request_id\": \"");
    text.extend(std::iter::repeat_n('x', 33 << 20));
    text.push_str("\"}\n");
    text.push_str(GOOD.replace("0.0", "0.2").as_str());
    std::fs::write(&w, &text).unwrap();
    drop(text);
    let out = simulate(&w);
    let _ = std::fs::remove_file(&w);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(
            "w.jsonl:2: line of 34603078 bytes is longer than the limit of 33554432 bytes"
        ),
        "{err}"
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("Successful requests:                    2"),
        "{table}"
    );
}
