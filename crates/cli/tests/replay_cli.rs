//! `validate` and `simulate --like` replay a run as it recorded itself: fixture runs in the
//! published layout (`<run>/vllm/{meta.json,requests.jsonl}`, `<run>/config.json`).

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tempfile::TempDir;

/// A fresh directory for one test, removed when the returned handle drops (pass or fail).
fn scratch(tag: &str) -> TempDir {
    let d = tempfile::Builder::new()
        .prefix(&format!("llm-emu-replay-{tag}-"))
        .tempdir()
        .unwrap();
    std::fs::create_dir_all(d.path().join("vllm")).unwrap();
    d
}

/// Four requests (prompt 100, 4 outputs), the workload and the real run's timestamps.
fn write_run(dir: &Path, meta: &Value, cluster: Option<&Value>) {
    let mut workload = String::new();
    let mut requests = String::new();
    for i in 0..4 {
        let t = i as f64 * 0.1;
        workload += &format!("{{\"arrival_s\": {t}, \"prompt_len\": 100, \"output_len\": 4}}\n");
        requests += &format!(
            "{{\"request_id\": \"r{i}\", \"output_toks\": 4, \"queued_ts\": {}, \
             \"first_token_ts\": {}, \"last_token_ts\": {}}}\n",
            100.0 + t,
            100.05 + t,
            100.08 + t
        );
    }
    std::fs::write(dir.join("workload.jsonl"), workload).unwrap();
    std::fs::write(dir.join("vllm/requests.jsonl"), requests).unwrap();
    std::fs::write(dir.join("vllm/meta.json"), meta.to_string()).unwrap();
    if let Some(c) = cluster {
        std::fs::write(dir.join("config.json"), c.to_string()).unwrap();
    }
}

fn validate(dir: &Path, extra: &[&str]) -> (Output, Option<Value>) {
    let json = dir.join("cmp.json");
    let out = Command::new(env!("CARGO_BIN_EXE_llm-emu"))
        .arg("validate")
        .arg("--real")
        .arg(dir.join("vllm"))
        .arg("--workload")
        .arg(dir.join("workload.jsonl"))
        .arg("--json")
        .arg(&json)
        .args(extra)
        .output()
        .unwrap();
    let m = std::fs::read_to_string(&json)
        .ok()
        .map(|t| serde_json::from_str(&t).unwrap());
    (out, m)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A fast latency model, so the tests do not depend on a profile.
const LINEAR: &[&str] = &["--latency", "linear:base_us=5000,per_token_us=10"];

/// A run on a 24 GB RTX 4090 as LLMServingSim's bench records it: vLLM allocated 2,588 blocks.
fn rtx4090_meta() -> Value {
    json!({
        "schema_version": 1,
        "model": "meta-llama/Llama-3.1-8B",
        "vllm_version": "0.19.0",
        "engine_kwargs": {
            "model": "meta-llama/Llama-3.1-8B", "tensor_parallel_size": 1,
            "data_parallel_size": 1, "enable_expert_parallel": false, "max_num_seqs": 128,
            "max_num_batched_tokens": 2048, "max_model_len": 8192, "dtype": "bfloat16",
            "kv_cache_dtype": "auto", "seed": 42
        },
        "num_requests": 4,
        "kv_cache": {
            "num_gpu_blocks": 2588, "num_cpu_blocks": null, "block_size": 16,
            "gpu_memory_utilization": 0.9, "enable_prefix_caching": true,
            "kv_cache_memory_bytes": null, "num_kv_tokens": 41408
        },
        "hardware": {
            "torch_version": "2.10.0", "cuda_version": "12.9", "device_count": 1,
            "device_name": "NVIDIA GeForce RTX 4090",
            "device_total_memory_bytes": 25386352640u64, "device_capability": "8.9"
        }
    })
}

#[test]
fn a_24gb_gpu_run_replays_its_recorded_block_count_and_gpu() {
    let scratch_dir = scratch("4090");
    let dir = scratch_dir.path();
    write_run(dir, &rtx4090_meta(), None);
    let (out, m) = validate(dir, LINEAR);
    assert!(out.status.success(), "{}", stderr(&out));
    let e = &m.unwrap()["engine"];
    assert_eq!(e["num_gpu_blocks"], 2588, "{e}");
    assert_eq!(e["gpu"], "rtx-4090");
    assert_eq!(e["max_num_seqs"], 128);
    assert_eq!(e["max_model_len"], 8192);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("2588 KV blocks"), "{stdout}");
    // The derived count differs: said in one line.
    let err = stderr(&out);
    assert!(
        err.contains("KV blocks: the run recorded 2588 (meta.json kv_cache.num_gpu_blocks)"),
        "{err}"
    );
    // Every key of this record is read: nothing is listed as ignored.
    assert!(!err.contains("not modelled (ignored)"), "{err}");
    // A flag given on the command line still wins, said in one line.
    let (out, m) = validate(
        dir,
        &[LINEAR, &["--num-gpu-blocks-override", "1000"]].concat(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(m.unwrap()["engine"]["num_gpu_blocks"], 1000);
    assert!(
        stderr(&out).contains(
            "given on the command line, replacing what the run recorded: \
             --num-gpu-blocks-override 1000 (recorded 2588"
        ),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_what_if_of_another_gpu_or_memory_sizes_the_kv_blocks_anew() {
    let scratch_dir = scratch("whatif");
    let dir = scratch_dir.path();
    write_run(dir, &rtx4090_meta(), None);
    // The 4090's 2,588 blocks are not the H100's: sized for 80 GB, and said.
    for (extra, sized) in [
        (&["--gpu", "h100"][..], "--gpu"),
        (&["--gpu-memory-gib", "48"][..], "--gpu-memory-gib"),
        (
            &["--gpu-memory-utilization", "0.8"][..],
            "--gpu-memory-utilization",
        ),
        (&["--kv-cache-dtype", "fp8"][..], "--kv-cache-dtype"),
    ] {
        let (out, m) = validate(dir, &[LINEAR, extra].concat());
        let err = stderr(&out);
        assert!(out.status.success(), "{extra:?}: {err}");
        let blocks = m.unwrap()["engine"]["num_gpu_blocks"].as_u64().unwrap();
        assert_ne!(blocks, 2588, "{extra:?}");
        assert!(
            err.contains(&format!(
                "(2588 KV blocks) was sized for the run's own setup, which {sized} replaces"
            )),
            "{extra:?}: {err}"
        );
    }
    // 80 GB hold more than 24 GB; a lower utilization holds fewer.
    let blocks = |extra: &[&str]| {
        validate(dir, &[LINEAR, extra].concat()).1.unwrap()["engine"]["num_gpu_blocks"]
            .as_u64()
            .unwrap()
    };
    assert!(blocks(&["--gpu", "h100"]) > 20_000);
    assert!(blocks(&["--gpu-memory-utilization", "0.8"]) < 2588);
    // The override keeps the recorded count; the recorded GPU named again changes nothing.
    assert_eq!(
        blocks(&["--gpu", "h100", "--num-gpu-blocks-override", "2588"]),
        2588
    );
    let (out, m) = validate(dir, &[LINEAR, &["--gpu", "rtx-4090"]].concat());
    assert_eq!(m.unwrap()["engine"]["num_gpu_blocks"], 2588);
    assert!(!stderr(&out).contains("sized anew"), "{}", stderr(&out));
}

#[test]
fn a_what_if_of_the_same_setup_keeps_the_recorded_blocks_and_another_resizes_them() {
    let scratch_dir = scratch("whatif-same");
    let dir = scratch_dir.path();
    write_run(dir, &rtx4090_meta(), None);
    let blocks = |extra: &[&str]| {
        let (out, m) = validate(dir, &[LINEAR, extra].concat());
        assert!(out.status.success(), "{extra:?}: {}", stderr(&out));
        let n = m.unwrap()["engine"]["num_gpu_blocks"].as_u64().unwrap();
        (n, stderr(&out))
    };
    // `auto` is the model's 16-bit format; the Instruct release has the same weights.
    for same in [
        &["--kv-cache-dtype", "bfloat16"][..],
        &["--model", "meta-llama/Llama-3.1-8B-Instruct"][..],
    ] {
        let (n, err) = blocks(same);
        assert_eq!(n, 2588, "{same:?}: {err}");
        assert!(!err.contains("sized anew"), "{same:?}: {err}");
    }
    // FP8 weights and another batch limit change what vLLM's profile run leaves for the KV
    // cache: sized anew, each said.
    for (other, flag) in [
        (&["--quantization", "fp8"][..], "--quantization"),
        (&["--max-num-seqs", "16"][..], "--max-num-seqs"),
    ] {
        let (n, err) = blocks(other);
        assert_ne!(n, 2588, "{other:?}");
        assert!(err.contains(&format!("which {flag} replaces")), "{err}");
    }
    // A KV format given is a replaced fact too, named with the others.
    let (_, err) = blocks(&["--kv-cache-dtype", "fp8"]);
    assert!(
        err.contains("replacing what the run recorded: --kv-cache-dtype fp8 (recorded auto"),
        "{err}"
    );
}

/// A DP2 + EP2 run of Qwen3-30B-A3B as the peer records it: meta.json's data-parallel facts
/// and a cluster config of two instances in one `dp_group`.
fn moe_dp2_run(dir: &Path) {
    let meta = json!({
        "schema_version": 1, "model": "Qwen/Qwen3-30B-A3B", "vllm_version": "0.19.0",
        "engine_kwargs": {
            "model": "Qwen/Qwen3-30B-A3B", "tensor_parallel_size": 1, "data_parallel_size": 2,
            "enable_expert_parallel": true, "max_num_seqs": 128, "max_num_batched_tokens": 2048,
            "max_model_len": 8192, "dtype": "bfloat16", "kv_cache_dtype": "auto", "seed": 42
        },
        "num_requests": 4
    });
    let inst = json!({"model_name": "Qwen/Qwen3-30B-A3B", "hardware": "RTXPRO6000",
                      "npu_mem": {"mem_size": 96, "mem_util": 0.9}, "num_npus": 1,
                      "tp_size": 1, "ep_size": 2, "dp_group": "A", "pd_type": null});
    let cluster = json!({"num_nodes": 1, "link_bw": 16, "link_latency": 20000,
        "nodes": [{"num_instances": 2, "instances": [inst.clone(), inst]}]});
    write_run(dir, &meta, Some(&cluster));
}

#[test]
fn a_replayed_fleet_takes_the_flags_given() {
    let scratch_dir = scratch("dp-flags");
    let dir = scratch_dir.path();
    moe_dp2_run(dir);
    let engine = |extra: &[&str]| {
        let (out, m) = validate(dir, &[LINEAR, extra].concat());
        assert!(out.status.success(), "{extra:?}: {}", stderr(&out));
        m.unwrap()["engine"].clone()
    };
    let shape = |e: &Value| {
        (
            e["engines"].as_u64().unwrap(),
            e["data_parallel_size"].as_u64().unwrap(),
            e["expert_parallel_size"].as_u64().unwrap(),
            e["replicas"].as_u64().unwrap(),
        )
    };
    let recorded = engine(&[]);
    assert_eq!(shape(&recorded), (2, 2, 2, 1), "{recorded}");
    assert_eq!(recorded["gpu"], "rtx-pro-6000");
    // Each GPU holds half the experts: more KV blocks than one GPU holding them all.
    let alone = Command::new(env!("CARGO_BIN_EXE_llm-emu"))
        .args([
            "simulate",
            "--model",
            "Qwen/Qwen3-30B-A3B",
            "--max-model-len",
            "8192",
        ])
        .args(["--synthetic", "1", "--quiet", "--output-json"])
        .arg(dir.join("alone.json"))
        .output()
        .unwrap();
    assert!(alone.status.success(), "{}", stderr(&alone));
    let alone: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("alone.json")).unwrap()).unwrap();
    let one_gpu = alone["engine_config"]["num_gpu_blocks"].as_u64().unwrap();
    let per_rank = recorded["num_gpu_blocks"].as_u64().unwrap();
    assert!(per_rank > one_gpu * 3 / 2, "{per_rank} vs {one_gpu}");
    // Flags that change what the instances say are honoured, the fleet kept.
    let h100 = engine(&["--gpu", "h100"]);
    assert_eq!(h100["gpu"], "h100-sxm", "{h100}");
    assert_eq!(shape(&h100), (2, 2, 2, 1));
    let tight = engine(&["--gpu-memory-utilization", "0.7"]);
    assert!(tight["num_gpu_blocks"].as_u64() < recorded["num_gpu_blocks"].as_u64());
    // Fleet flags fill from the record what they leave: the EP of a wider group, the
    // group of each replica.
    assert_eq!(shape(&engine(&["--data-parallel-size", "4"])), (4, 4, 4, 1));
    assert_eq!(shape(&engine(&["--replicas", "2"])), (4, 2, 2, 2));
}

#[test]
fn capture_sizes_asked_in_engine_kwargs_reach_the_engine() {
    let scratch_dir = scratch("cgs");
    let dir = scratch_dir.path();
    let sizes = |edit: &dyn Fn(&mut Value)| {
        let mut meta = rtx4090_meta();
        edit(&mut meta);
        write_run(dir, &meta, None);
        let (out, m) = validate(dir, LINEAR);
        assert!(out.status.success(), "{}", stderr(&out));
        m.unwrap()["engine"]["cudagraph_capture_sizes"].clone()
    };
    // vLLM 0.19's --max-cudagraph-capture-size: its rule up to 64.
    let s = sizes(&|m| m["engine_kwargs"]["max_cudagraph_capture_size"] = json!(64));
    assert_eq!(s.as_array().unwrap().last(), Some(&json!(64)), "{s}");
    // vLLM 0.11's --cuda-graph-sizes 40: every multiple of 8 up to 40.
    let s = sizes(&|m| {
        m["vllm_version"] = json!("0.11.0");
        m["engine_kwargs"]["cuda_graph_sizes"] = json!([40]);
    });
    assert_eq!(s, json!([1, 2, 4, 8, 16, 24, 32, 40]));
    // A compilation_config asking for no graphs.
    let s = sizes(&|m| {
        m["engine_kwargs"]["compilation_config"] = json!({"cudagraph_mode": "NONE"});
    });
    assert_eq!(s, json!([]));
}

#[test]
fn resolved_config_wins_and_capture_sizes_are_replayed() {
    let scratch_dir = scratch("resolved");
    let dir = scratch_dir.path();
    let mut meta = rtx4090_meta();
    meta["resolved_config"] = json!({
        "scheduler_config": {
            "max_num_seqs": 64, "max_num_batched_tokens": 1024, "enable_chunked_prefill": true,
            "async_scheduling": false, "policy": "fcfs", "long_prefill_token_threshold": 0,
            "scheduler_reserve_full_isl": true, "max_num_partial_prefills": 1,
            "stream_interval": 1
        },
        "cache_config": {
            "block_size": 16, "num_gpu_blocks": 2588, "gpu_memory_utilization": 0.9,
            "enable_prefix_caching": false, "cache_dtype": "auto", "num_cpu_blocks": null
        },
        "compilation_config": {
            "cudagraph_capture_sizes": [1, 2, 4, 8, 16, 32], "cudagraph_mode": [2, 1]
        },
        "parallel_config": {
            "tensor_parallel_size": 1, "pipeline_parallel_size": 1, "data_parallel_size": 1
        },
        "model_config": { "enforce_eager": false, "max_model_len": 8192 },
        "observability_config": { "collect_detailed_traces": null }
    });
    // What was asked differs from what vLLM resolved: the resolved value wins, with a note.
    meta["kv_cache"]["enable_prefix_caching"] = json!(false);
    write_run(dir, &meta, None);
    let (out, m) = validate(dir, LINEAR);
    assert!(out.status.success(), "{}", stderr(&out));
    let e = &m.unwrap()["engine"];
    assert_eq!(e["max_num_seqs"], 64, "{e}");
    assert_eq!(e["max_num_batched_tokens"], 1024);
    assert_eq!(e["async_scheduling"], false);
    assert_eq!(e["enable_prefix_caching"], false);
    assert_eq!(e["cudagraph_capture_sizes"], json!([1, 2, 4, 8, 16, 32]));
    let err = stderr(&out);
    assert!(err.contains("using 64, what vLLM ran with"), "{err}");
    assert!(
        err.contains("CUDA-graph capture sizes: the run recorded 6 sizes"),
        "{err}"
    );
    assert!(
        err.contains("resolved_config sections not modelled (ignored): observability_config"),
        "{err}"
    );
    // cudagraph_mode NONE: no graphs at all.
    meta["resolved_config"]["compilation_config"]["cudagraph_mode"] = json!(0);
    write_run(dir, &meta, None);
    let (out, m) = validate(dir, LINEAR);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(m.unwrap()["engine"]["cudagraph_capture_sizes"], json!([]));
}

/// A TP2 profile made of the shared TP1 tables (only the all-reduce term matters here).
fn tp2_profile(dir: &Path) -> Option<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/real-runs/rtxpro6000-llama-3.1-8b/profile");
    if !src.exists() {
        println!("skipped: {} is absent", src.display());
        return None;
    }
    let p = dir.join("profile");
    std::fs::create_dir_all(p.join("tp2")).unwrap();
    std::fs::copy(src.join("meta.yaml"), p.join("meta.yaml")).unwrap();
    for f in [
        "dense.csv",
        "per_sequence.csv",
        "attention.csv",
        "skew_fit.csv",
    ] {
        std::fs::copy(src.join("tp1").join(f), p.join("tp2").join(f)).unwrap();
    }
    Some(p)
}

fn cluster(tp: u64, hardware: &str) -> Value {
    json!({
        "num_nodes": 1, "link_bw": 16, "link_latency": 20000,
        "nodes": [{
            "num_instances": 1,
            "cpu_mem": {"mem_size": 512, "mem_bw": 256, "mem_latency": 0},
            "instances": [{
                "model_name": "meta-llama/Llama-3.1-8B", "hardware": hardware,
                "npu_mem": {"mem_size": 96, "mem_bw": 1597, "mem_latency": 0, "mem_util": 0.9},
                "num_npus": tp, "tp_size": tp, "pd_type": null
            }]
        }]
    })
}

#[test]
fn a_tp2_run_prices_all_reduces_with_its_cluster_link() {
    let scratch_dir = scratch("tp2");
    let dir = scratch_dir.path();
    let Some(profile) = tp2_profile(dir) else {
        return;
    };
    let meta = json!({
        "model": "meta-llama/Llama-3.1-8B", "vllm_version": "0.19.0", "num_requests": 4,
        "engine_kwargs": {"model": "meta-llama/Llama-3.1-8B", "tensor_parallel_size": 2,
                          "data_parallel_size": 1, "max_num_seqs": 128,
                          "max_num_batched_tokens": 2048},
        "kv_cache": {"num_gpu_blocks": 60000, "block_size": 16},
        "hardware": {"device_count": 2,
                     "device_name": "NVIDIA RTX PRO 6000 Blackwell Server Edition"}
    });
    write_run(dir, &meta, Some(&cluster(2, "RTXPRO6000")));
    let p = profile.display().to_string();
    let (out, m) = validate(dir, &["--profile", &p]);
    assert!(out.status.success(), "{}", stderr(&out));
    let e = &m.unwrap()["engine"];
    assert_eq!(e["tensor_parallel_size"], 2);
    let lat = e["latency"].as_str().unwrap();
    // link_bw 16 (ASTRA-sim's GB/s of 2³⁰ B: 17.18 GB/s), link_latency 20000 ns = 20 µs per
    // hop, not the datasheet's PCIe link.
    assert!(
        lat.contains("ring all-reduce at 17.18 GB/s, 20.0 µs per hop")
            && lat.contains("config.json link_bw, link_latency"),
        "{lat}"
    );
    // The cluster config's TP disagreeing with meta.json's is a contradiction.
    write_run(dir, &meta, Some(&cluster(4, "RTXPRO6000")));
    let (out, _) = validate(dir, &["--profile", &p]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("contradicting facts")
            && stderr(&out).contains("cluster config has tp_size = 4"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_recorded_link_far_below_nvlink_is_replayed_and_said() {
    // LLMServingSim's example cluster configs carry link_bw 16 whatever the GPUs.
    let scratch_dir = scratch("nvlink");
    let dir = scratch_dir.path();
    let meta = json!({
        "model": "meta-llama/Llama-3.1-8B", "vllm_version": "0.19.0", "num_requests": 4,
        "engine_kwargs": {"model": "meta-llama/Llama-3.1-8B", "tensor_parallel_size": 2,
                          "max_num_seqs": 128, "max_num_batched_tokens": 2048},
        "hardware": {"device_count": 2, "device_name": "NVIDIA H100 80GB HBM3",
                     "device_total_memory_bytes": 85899345920u64}
    });
    write_run(dir, &meta, Some(&cluster(2, "H100")));
    let (out, _) = validate(dir, LINEAR);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is under a quarter of the h100-sxm's NVLink (450 GB/s"),
        "{}",
        stderr(&out)
    );
}

/// A change to a fixture's meta.json.
type Edit = Box<dyn Fn(&mut Value)>;

#[test]
fn bad_records_are_clear_errors() {
    let scratch_dir = scratch("bad");
    let dir = scratch_dir.path();
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "unknown GPU",
            Box::new(|m| m["hardware"]["device_name"] = json!("NVIDIA Quantum Q1")),
            "`NVIDIA Quantum Q1` is not a GPU llm-emu knows (known: h100-sxm",
        ),
        (
            "data parallel",
            Box::new(|m| m["engine_kwargs"]["data_parallel_size"] = json!(2)),
            // Data parallelism is replayed as a fleet, which needs a GPU per rank.
            "--data-parallel-size 2 x --replicas 1 x --tensor-parallel-size 1 needs 2 GPUs, but \
             the run has 1 (meta.json hardware.device_count)",
        ),
        (
            "pipeline parallel",
            Box::new(|m| {
                m["resolved_config"] = json!({"parallel_config": {"pipeline_parallel_size": 2}})
            }),
            "pipeline parallelism is not modelled",
        ),
        (
            "CPU KV offload",
            Box::new(|m| m["kv_cache"]["num_cpu_blocks"] = json!(4096)),
            "CPU KV-cache offload is not modelled",
        ),
        (
            "more blocks than the GPU holds",
            Box::new(|m| {
                m["kv_cache"]["num_gpu_blocks"] = json!(36147);
                m["kv_cache"]["num_kv_tokens"] = json!(36147 * 16);
            }),
            "contradicting facts: meta.json kv_cache.num_gpu_blocks = 36147 KV blocks",
        ),
        (
            "too few blocks for max_model_len",
            Box::new(|m| {
                m["kv_cache"]["num_gpu_blocks"] = json!(100);
                m["kv_cache"]["num_kv_tokens"] = json!(1600);
            }),
            "contradicting facts: meta.json kv_cache.num_gpu_blocks = 100 KV blocks, but vLLM \
             would not have started with max_model_len 8192",
        ),
        (
            "tokens not blocks × block size",
            Box::new(|m| m["kv_cache"]["num_kv_tokens"] = json!(1000)),
            "contradicting facts: meta.json kv_cache.num_kv_tokens = 1000 is not 2588",
        ),
        (
            "two records of the block count",
            Box::new(|m| m["resolved_config"] = json!({"cache_config": {"num_gpu_blocks": 3000}})),
            "contradicting facts: KV blocks: meta.json kv_cache.num_gpu_blocks = 2588 but \
             meta.json resolved_config.cache_config.num_gpu_blocks = 3000",
        ),
        (
            "memory of another GPU",
            Box::new(|m| m["hardware"]["device_total_memory_bytes"] = json!(85899345920u64)),
            "contradicting facts: meta.json hardware.device_name says NVIDIA GeForce RTX 4090",
        ),
    ];
    for (what, edit, want) in cases {
        let mut meta = rtx4090_meta();
        edit(&mut meta);
        write_run(dir, &meta, None);
        let (out, _) = validate(dir, LINEAR);
        assert!(!out.status.success(), "{what}: accepted");
        assert!(stderr(&out).contains(want), "{what}: {}", stderr(&out));
    }
}

#[test]
fn an_unknown_gpu_replays_as_the_gpu_the_flag_names() {
    let scratch_dir = scratch("unknowngpu");
    let dir = scratch_dir.path();
    let mut meta = rtx4090_meta();
    meta["hardware"]["device_name"] = json!("NVIDIA GeForce RTX 4090 D");
    write_run(dir, &meta, None);
    let (refused, _) = validate(dir, LINEAR);
    assert!(!refused.status.success(), "accepted without --gpu");
    let (out, m) = validate(dir, &[LINEAR, &["--gpu", "rtx-4090"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "note: meta.json hardware.device_name `NVIDIA GeForce RTX 4090 D` is not a GPU \
             llm-emu knows: emulated as --gpu rtx-4090"
        ),
        "{}",
        stderr(&out)
    );
    // The other recorded facts still hold: the recorded block count, not one sized anew.
    let m = m.expect("comparison written");
    assert_eq!(m["engine"]["num_gpu_blocks"], 2588, "{}", m["engine"]);
}

#[test]
fn a_recorded_fp8_quantization_sizes_the_weights_in_fp8() {
    // 6,600 blocks fit a 24 GB GPU beside Llama-3.1-8B only with its linear layers in FP8.
    let scratch_dir = scratch("fp8");
    let dir = scratch_dir.path();
    let mut meta = rtx4090_meta();
    meta["kv_cache"]["num_gpu_blocks"] = json!(6600);
    meta["kv_cache"]["num_kv_tokens"] = json!(6600 * 16);
    write_run(dir, &meta, None);
    let (bf16, _) = validate(dir, LINEAR);
    assert!(
        stderr(&bf16).contains("contradicting facts"),
        "{}",
        stderr(&bf16)
    );
    meta["engine_kwargs"]["quantization"] = json!("fp8");
    write_run(dir, &meta, None);
    let (out, m) = validate(dir, LINEAR);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out)
            .contains("meta.json engine_kwargs.quantization = fp8: linear-layer weights in FP8"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        m.expect("comparison written")["engine"]["num_gpu_blocks"],
        6600
    );
}

#[test]
fn a_profile_of_another_gpu_is_named_in_a_warning() {
    let scratch_dir = scratch("othergpu");
    let dir = scratch_dir.path();
    write_run(dir, &rtx4090_meta(), None);
    // The built-in profile was measured on the RTX PRO 6000, the run is on an RTX 4090.
    let (out, _) = validate(
        dir,
        &["--latency", "profile:dir=builtin:rtxpro6000-llama-3.1-8b"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(
            "warning: the latency profile was measured on the NVIDIA RTX PRO 6000 \
             Blackwell Server Edition but the engine emulates the NVIDIA GeForce RTX 4090"
        ),
        "{err}"
    );
}

#[test]
fn simulate_like_takes_the_same_facts() {
    let scratch_dir = scratch("like");
    let dir = scratch_dir.path();
    write_run(dir, &rtx4090_meta(), None);
    let json = dir.join("summary.json");
    let out = Command::new(env!("CARGO_BIN_EXE_llm-emu"))
        .arg("simulate")
        .arg("--like")
        .arg(dir)
        .arg("--workload")
        .arg(dir.join("workload.jsonl"))
        .args(LINEAR)
        .arg("--quiet")
        .arg("--output-json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let ec = &summary["engine_config"];
    assert_eq!(ec["num_gpu_blocks"], 2588, "{ec}");
    // The GPU, TP degree and model emulated, as validate's `engine` names them.
    assert_eq!(ec["gpu"], "rtx-4090", "{ec}");
    assert_eq!(ec["tensor_parallel_size"], 1, "{ec}");
    assert_eq!(ec["model"], "meta-llama/Llama-3.1-8B", "{ec}");
    let (_, m) = validate(dir, LINEAR);
    let e = &m.unwrap()["engine"];
    assert_eq!(
        (
            &e["engines"],
            &e["data_parallel_size"],
            &e["expert_parallel_size"]
        ),
        (&json!(1), &json!(1), &json!(1)),
        "{e}"
    );
}

/// A run that left its batch limits unset: its engine was built with `AsyncLLM` (the engine
/// context), whose defaults are `SchedulerConfig`'s 2048 tokens / 128 sequences, not the API
/// server's 8192 / 1024 for a 96 GB GPU; `performance_mode` throughput doubles them, and
/// interactivity captures every CUDA-graph size up to 32.
#[test]
fn unset_batch_limits_get_the_engine_context_defaults_and_the_performance_mode() {
    let meta = |mode: &str| {
        json!({
            "schema_version": 1,
            "model": "meta-llama/Llama-3.1-8B",
            "vllm_version": "0.19.0",
            "engine_kwargs": {
                "model": "meta-llama/Llama-3.1-8B", "tensor_parallel_size": 1,
                "max_num_seqs": null, "max_num_batched_tokens": null, "max_model_len": 8192
            },
            "num_requests": 4,
            "hardware": {"device_count": 1,
                         "device_name": "NVIDIA RTX PRO 6000 Blackwell Server Edition"},
            "resolved_config": {"performance_mode": mode}
        })
    };
    let limits = |m: &Value| {
        (
            m["engine"]["max_num_seqs"].as_u64(),
            m["engine"]["max_num_batched_tokens"].as_u64(),
        )
    };
    let d = scratch("engine-context");
    write_run(d.path(), &meta("balanced"), None);
    let (out, m) = validate(d.path(), LINEAR);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("max_num_seqs 128 (an engine built directly"),
        "{err}"
    );
    assert!(!err.contains("performance_mode"), "{err}");
    let m = m.unwrap();
    assert_eq!(limits(&m), (Some(128), Some(2048)), "{m}");

    let d = scratch("throughput");
    write_run(d.path(), &meta("throughput"), None);
    let (out, m) = validate(d.path(), LINEAR);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(limits(&m.unwrap()), (Some(256), Some(4096)));

    let d = scratch("interactivity");
    write_run(d.path(), &meta("interactivity"), None);
    let (out, m) = validate(d.path(), LINEAR);
    assert!(out.status.success(), "{}", stderr(&out));
    let sizes: Vec<u64> = m.unwrap()["engine"]["cudagraph_capture_sizes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    assert_eq!(&sizes[..33], &(1..=32).chain([40]).collect::<Vec<_>>()[..]);
    assert_eq!(sizes.last(), Some(&256));

    let d = scratch("bad-mode");
    write_run(d.path(), &meta("fast"), None);
    let (out, _) = validate(d.path(), LINEAR);
    let err = stderr(&out);
    assert!(
        !out.status.success() && err.contains("not a performance mode"),
        "{err}"
    );
}

/// `max_model_len` -1 (vLLM 0.19) fits the length to the KV cache once sized: 2,588 blocks of
/// 16 on the RTX 4090 run hold 41,408 tokens, below Llama-3.1-8B's 131,072; with a resolved
/// length recorded, that length is used.
#[test]
fn max_model_len_minus_one_is_fitted_to_the_kv_cache() {
    let d = scratch("auto-fit");
    let mut meta = rtx4090_meta();
    meta["engine_kwargs"]["max_model_len"] = json!(-1);
    write_run(d.path(), &meta, None);
    let (out, m) = validate(d.path(), LINEAR);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("max_model_len -1: fitted to the KV cache's 41408 tokens"),
        "{err}"
    );
    assert_eq!(m.unwrap()["engine"]["max_model_len"], 41408);

    let d = scratch("auto-fit-resolved");
    meta["resolved_config"] = json!({"model_config": {"max_model_len": 20000}});
    write_run(d.path(), &meta, None);
    let (out, m) = validate(d.path(), LINEAR);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("= -1 asked vLLM to fit the length"), "{err}");
    assert_eq!(m.unwrap()["engine"]["max_model_len"], 20000);
}
