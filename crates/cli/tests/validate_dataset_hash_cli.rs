//! `llm-emu validate` checks the workload it is given against the SHA-256 the run recorded for
//! the file it served (`meta.json`'s `dataset_hash`): a truncated copy fails with both hashes
//! named instead of a bare pairing error, and the file the run served passes without a note.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use tempfile::TempDir;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/real-runs/rtx4090-llama-3.1-8b")
}

/// A copy of the stored RTX 4090 run in a fresh folder, with `workload` as its workload and
/// `meta.json`'s `dataset_hash` set to `hash_of`'s SHA-256. The folder is removed when the
/// returned handle drops, whether the test passes or fails.
fn copy_run(tag: &str, workload: &[u8], hash_of: &[u8]) -> TempDir {
    let src = fixture();
    let run = tempfile::Builder::new()
        .prefix(&format!("llm-emu-dataset-hash-{tag}-"))
        .tempdir()
        .unwrap();
    let dir = run.path();
    std::fs::create_dir_all(dir.join("vllm")).unwrap();
    std::fs::copy(src.join("config.json"), dir.join("config.json")).unwrap();
    std::fs::copy(
        src.join("vllm/requests.jsonl"),
        dir.join("vllm/requests.jsonl"),
    )
    .unwrap();
    let mut meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("vllm/meta.json")).unwrap())
            .unwrap();
    let hex: String = Sha256::digest(hash_of)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    meta["dataset_hash"] = hex.into();
    std::fs::write(
        dir.join("vllm/meta.json"),
        serde_json::to_vec(&meta).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("workload.jsonl"), workload).unwrap();
    run
}

fn validate(dir: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_llm-emu"))
        .arg("validate")
        .arg("--real")
        .arg(dir.join("vllm"))
        .arg("--workload")
        .arg(dir.join("workload.jsonl"))
        .arg("--profile")
        .arg(fixture().join("profile"))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_file_the_run_served_passes_and_a_truncated_copy_is_named() {
    let full = std::fs::read(fixture().join("workload.jsonl")).unwrap();
    let run = copy_run("match", &full, &full);
    let dir = run.path();
    let (ok, stderr) = validate(dir);
    assert!(ok, "{stderr}");
    assert!(
        !stderr.contains("is not the file the run served"),
        "{stderr}"
    );
    drop(run);

    // The last line cut off half-way, as an interrupted download leaves it.
    let cut = full.len() - 200;
    let run = copy_run("truncated", &full[..cut], &full);
    let dir = run.path();
    let (ok, stderr) = validate(dir);
    assert!(!ok, "a truncated workload replayed: {stderr}");
    let want: String = Sha256::digest(&full)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(
        stderr.contains("is not the file the run served"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&want),
        "the recorded hash is not named: {stderr}"
    );
}
