//! `llm-emu simulate` on a Mooncake trace (`timestamp`, `input_length`, `output_length`,
//! `hash_ids`): the first 1,000 requests of the published conversation trace
//! (`tests/fixtures/mooncake/`).

use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn trace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/mooncake/conversation_trace.first1000.jsonl")
}

/// The prompt tokens vLLM's prefix cache would serve from earlier requests if it never evicted
/// and every request were scheduled whole in turn, worked out from the hash ids alone: the
/// longest run of leading hash blocks an earlier request listed (a last, partial block counting
/// the tokens both hold), in whole KV blocks of `block_size`, and at most the prompt less one
/// token (vLLM computes at least the last prompt token).
fn hits_implied_by_hash_ids(path: &Path, hash_block: usize, block_size: usize) -> (u64, u64) {
    // (parent node, hash id) -> (node, most tokens an earlier request held in that block)
    let mut nodes: HashMap<(usize, u64), (usize, usize)> = HashMap::new();
    let (mut hits, mut prompt) = (0u64, 0u64);
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        let len = r["input_length"].as_u64().unwrap() as usize;
        let ids: Vec<u64> = r["hash_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_u64().unwrap())
            .collect();
        let held = |i: usize| {
            if i + 1 == ids.len() {
                len - i * hash_block
            } else {
                hash_block
            }
        };
        let (mut common, mut parent) = (0, 0);
        for (i, &h) in ids.iter().enumerate() {
            let Some(&(node, have)) = nodes.get(&(parent, h)) else {
                break;
            };
            let shared = have.min(held(i));
            common = i * hash_block + shared;
            if shared < hash_block {
                break;
            }
            parent = node;
        }
        hits += (common / block_size * block_size).min((len - 1) / block_size * block_size) as u64;
        prompt += len as u64;
        let mut parent = 0;
        for (i, &h) in ids.iter().enumerate() {
            let next = nodes.len() + 1;
            let e = nodes.entry((parent, h)).or_insert((next, 0));
            e.1 = e.1.max(held(i));
            parent = e.0;
        }
    }
    (hits, prompt)
}

/// With a cache that never evicts, a token budget that schedules every prompt whole and short
/// steps (each request done before most others arrive), the engine's prefix-cache hits are
/// exactly those the trace's hash ids imply: the prompts built from hash ids share exactly the
/// blocks the trace says, vLLM's block hashing finds them, and nothing else matches.
///
/// The workload is the fixture's requests of at most 4,096 prompt tokens (298 of them, with
/// their timestamps and hash ids) asking for one output token each: a pool that holds them all
/// is then 40,000 blocks, which keeps a debug build's invariant checks after every pool
/// operation quick. Measured on the whole fixture with 1,000,000 blocks (release build), the
/// engine's hit rate equals the implied one as well: 2,962,688 of 13,732,944 prompt tokens.
#[test]
fn prefix_hits_on_a_mooncake_trace_are_the_ones_its_hash_ids_imply() {
    let dir = tempfile::tempdir().unwrap();
    let workload = dir.path().join("short.jsonl");
    let mut lines = String::new();
    for line in std::fs::read_to_string(trace()).unwrap().lines() {
        let mut r: Value = serde_json::from_str(line).unwrap();
        if r["input_length"].as_u64().unwrap() <= 4096 {
            r["output_length"] = 1.into();
            lines += &format!("{r}\n");
        }
    }
    std::fs::write(&workload, lines).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_llm-emu"))
        .args(["simulate", "--quiet", "--workload"])
        .arg(&workload)
        .args([
            "--num-gpu-blocks-override",
            "40000",
            "--max-num-batched-tokens",
            "8192",
            "--latency",
            "linear:base_us=1000,per_token_us=0",
            "--output-json",
        ])
        .arg(dir.path().join("s.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("s.json")).unwrap()).unwrap();
    let (hits, prompt) = hits_implied_by_hash_ids(&workload, 512, 16);
    assert_eq!(s["completed"], 298);
    assert_eq!(s["total_input_tokens"].as_u64(), Some(prompt));
    assert!(
        hits > prompt / 10,
        "the trace shares prefixes: {hits} of {prompt}"
    );
    let rate = s["prefix_cache_hit_rate"].as_f64().unwrap();
    let implied = hits as f64 / prompt as f64;
    assert!(
        (rate - implied).abs() < 1e-12,
        "engine hit rate {rate} against {implied} implied by the hash ids ({hits} of {prompt} tokens)"
    );
}

/// Read as blocks of 16 tokens, the same hash ids describe other prompts: a line whose
/// `input_length` does not fit is refused by name, and the rest run.
#[test]
fn a_hash_block_size_that_does_not_fit_the_lengths_names_the_lines() {
    let out = Command::new(env!("CARGO_BIN_EXE_llm-emu"))
        .args([
            "simulate",
            "--quiet",
            "--hash-block-size",
            "16",
            "--workload",
        ])
        .arg(trace())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("conversation_trace.first1000.jsonl:1: input_length 6758 does not fit 14 hash_ids of 16 tokens"),
        "{err}"
    );
}

/// `plan` reads a Mooncake trace in other blocks with its own `--hash-block-size`.
#[test]
fn plan_reads_a_mooncake_trace_with_its_hash_block_size() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("t.jsonl");
    std::fs::write(
        &w,
        concat!(
            "{\"timestamp\": 5000, \"input_length\": 40, \"output_length\": 4, \"hash_ids\": [0, 1, 2]}\n",
            "{\"timestamp\": 5100, \"input_length\": 35, \"output_length\": 4, \"hash_ids\": [0, 1, 3]}\n",
        ),
    )
    .unwrap();
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_llm-emu"))
            .args(["plan", "--gpus", "h100", "--tensor-parallel-size", "1"])
            .args(["--slo", "ttft:p99=5000ms", "--workload"])
            .arg(&w)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&["--hash-block-size", "16"]);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 x h100-sxm tp=1"), "{text}");
    // At the default 512 tokens per hash id, neither line fits its hash ids.
    let out = run(&[]);
    assert!(!out.status.success());
}
