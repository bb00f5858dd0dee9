//! `llm-emu simulate` with data-parallel ranks and replicas behind a router.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tempfile::TempDir;

/// A fresh directory, removed when the returned handle drops (pass or fail).
fn tmp(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("llm-emu-fleet-{name}-"))
        .tempdir()
        .unwrap()
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
    let out = simulate(args, tmp("refused").path());
    assert!(!out.status.success(), "{args:?} ran");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn data_parallel_reports_each_rank() {
    let scratch = tmp("dp");
    let d = scratch.path();
    let out = simulate(&["--data-parallel-size", "2"], d);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (s, records) = outputs(d);
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
    let scratch = tmp("rr");
    let d = scratch.path();
    let out = simulate(&["--replicas", "3", "--router", "round-robin"], d);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (s, mut records) = outputs(d);
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
    let e = refused(&["--data-parallel-size", "2", "--enable-expert-parallel"]);
    assert!(
        e.contains("--enable-expert-parallel") && e.contains("dense model"),
        "{e}"
    );
    // Replicas of DP engines run (`replicas_of_data_parallel_engines_route_to_every_rank`),
    // but must fit the GPUs a replayed run recorded, each flag named.
    let run_scratch = tmp("dp-replicas-gpus");
    let run = run_scratch.path();
    std::fs::write(
        run.join("meta.json"),
        r#"{"hardware": {"device_count": 2}}"#,
    )
    .unwrap();
    let e = refused(&[
        "--like",
        run.to_str().unwrap(),
        "--data-parallel-size",
        "2",
        "--replicas",
        "2",
    ]);
    assert!(
        e.contains("--data-parallel-size 2 x --replicas 2") && e.contains("needs 4 GPUs"),
        "{e}"
    );
}

#[test]
fn data_parallel_times_tensor_parallel_must_fit_the_recorded_gpus() {
    let run_scratch = tmp("gpus");
    let run = run_scratch.path();
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
    let scratch = tmp("gpus-ok");
    let d = scratch.path();
    let out = simulate(&["--like", run, "--data-parallel-size", "2"], d);
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

/// A file in a fresh folder, used as its path; the folder is removed when this drops.
struct TmpFile {
    _dir: TempDir,
    path: PathBuf,
}

impl std::ops::Deref for TmpFile {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

/// A cluster config of `instances` (each a JSON object) on one node.
fn cluster_file(name: &str, instances: &[Value]) -> TmpFile {
    let dir = tmp(name);
    let c = serde_json::json!({
        "num_nodes": 1, "link_bw": 16, "link_latency": 20000,
        "nodes": [{"num_instances": instances.len(), "instances": instances}]
    });
    let path = dir.path().join("config.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
    TmpFile { _dir: dir, path }
}

fn instance(model: &str, hardware: &str, extra: Value) -> Value {
    let mut v = serde_json::json!({
        "model_name": model, "hardware": hardware,
        "npu_mem": {"mem_size": 96, "mem_bw": 1597, "mem_latency": 0},
        "num_npus": 1, "tp_size": 1, "pd_type": null
    });
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

#[test]
fn a_heterogeneous_cluster_runs_each_instance_as_described() {
    let none = serde_json::json!({});
    let file = cluster_file(
        "hetero",
        &[
            instance("meta-llama/Llama-3.1-8B", "RTXPRO6000", none.clone()),
            instance(
                "Qwen/Qwen3-8B",
                "H100",
                serde_json::json!({"max_num_seqs": 8}),
            ),
        ],
    );
    let scratch = tmp("hetero-out");
    let d = scratch.path();
    let out = simulate(
        &[
            "--cluster",
            file.to_str().unwrap(),
            "--router",
            "least-loaded",
        ],
        d,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (s, records) = outputs(d);
    assert_eq!(s["completed"], 200);
    assert_eq!(s["fleet"]["kind"], "cluster");
    assert_eq!(s["fleet"]["topology"], "replicas");
    assert_eq!(s["fleet"]["router"], "least-loaded");
    assert_eq!(s["instances"].as_array().unwrap().len(), 2);
    for i in 0..2 {
        assert!(
            records.iter().any(|r| r["engine"] == i),
            "instance {i} ran nothing"
        );
    }
}

#[test]
fn bad_clusters_are_refused_naming_the_field() {
    let none = serde_json::json!({});
    let cases: Vec<(Vec<Value>, &str)> = vec![
        (
            vec![instance("no-such/Model-1B", "RTXPRO6000", none.clone())],
            "nodes[0].instances[0].model_name",
        ),
        (
            vec![instance("meta-llama/Llama-3.1-8B", "TPU-v9", none.clone())],
            "nodes[0].instances[0].hardware",
        ),
        (
            vec![
                instance(
                    "meta-llama/Llama-3.1-8B",
                    "RTXPRO6000",
                    serde_json::json!({"dp_group": "A", "ep_size": 2}),
                ),
                instance(
                    "meta-llama/Llama-3.1-8B",
                    "RTXPRO6000",
                    serde_json::json!({"dp_group": "A", "ep_size": 2}),
                ),
            ],
            "dense model",
        ),
        (
            vec![instance(
                "meta-llama/Llama-3.1-8B",
                "RTXPRO6000",
                serde_json::json!({"pd_type": "prefill"}),
            )],
            "without a decode instance",
        ),
        (
            vec![instance(
                "meta-llama/Llama-3.1-8B",
                "RTXPRO6000",
                serde_json::json!({"tp_size": 2}),
            )],
            "nodes[0].instances[0].num_npus",
        ),
    ];
    for (i, (instances, want)) in cases.into_iter().enumerate() {
        let file = cluster_file(&format!("bad{i}"), &instances);
        let e = refused(&["--cluster", file.to_str().unwrap()]);
        assert!(e.contains(want), "case {i}: want `{want}` in: {e}");
    }
    let file = cluster_file(
        "bad-router",
        &[instance("meta-llama/Llama-3.1-8B", "RTXPRO6000", none)],
    );
    let e = refused(&["--cluster", file.to_str().unwrap(), "--router", "nearest"]);
    assert!(e.contains("--router") && e.contains("nearest"), "{e}");
}

#[test]
fn expert_parallel_ranks_step_in_lockstep_on_a_moe_model() {
    let scratch = tmp("ep");
    let d = scratch.path();
    let out = simulate(
        &[
            "--model",
            "Qwen/Qwen3-30B-A3B",
            "--gpu",
            "h100",
            "--data-parallel-size",
            "2",
            "--enable-expert-parallel",
        ],
        d,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (s, _) = outputs(d);
    assert_eq!(s["completed"], 200);
    assert_eq!(s["fleet"]["kind"], "expert-parallel");
    assert_eq!(s["fleet"]["expert_parallel_size"], 2);
    assert_eq!(s["instances"].as_array().unwrap().len(), 2);
    assert!(
        s["latency_model"]
            .as_str()
            .unwrap_or("")
            .contains("lockstep")
            || serde_json::to_string(&s).unwrap().contains("lockstep"),
        "the latency model says it runs in lockstep: {s}"
    );
}

/// vLLM 0.19 runs a MoE model's DP ranks in lockstep without `--enable-expert-parallel` too,
/// each expert's width split over DP × TP; from the flags and from a cluster file's `dp_group`
/// with `ep_size` 1 alike.
#[test]
fn moe_data_parallel_without_ep_steps_in_lockstep() {
    let lockstep = "MoE data-parallel lockstep without expert parallelism";
    let scratch = tmp("moe-dp");
    let d = scratch.path();
    let out = simulate(
        &[
            "--model",
            "Qwen/Qwen3-30B-A3B",
            "--gpu",
            "h100",
            "--data-parallel-size",
            "2",
        ],
        d,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (s, records) = outputs(d);
    assert_eq!(s["completed"], 200);
    assert_eq!(s["fleet"]["kind"], "data-parallel");
    assert_eq!(s["instances"].as_array().unwrap().len(), 2);
    let text = serde_json::to_string(&s).unwrap();
    assert!(text.contains(lockstep), "{s}");
    // The roofline (the default here) runs the routed experts on the gathered batch.
    assert!(
        text.contains("each expert's width split over 2 GPUs"),
        "{s}"
    );
    for e in [0, 1] {
        assert!(records.iter().any(|r| r["engine"] == e), "rank {e} answers");
    }
    // A dense model's ranks stay independent.
    let scratch = tmp("dense-dp");
    let d = scratch.path();
    let out = simulate(&["--data-parallel-size", "2"], d);
    assert!(out.status.success());
    let (s, _) = outputs(d);
    assert!(
        !serde_json::to_string(&s).unwrap().contains("lockstep"),
        "{s}"
    );
    // A cluster file's dp_group of the MoE model, ep_size 1.
    let qwen = || {
        instance(
            "Qwen/Qwen3-30B-A3B",
            "H100",
            serde_json::json!({"dp_group": "A", "ep_size": 1}),
        )
    };
    let file = cluster_file("moe-group", &[qwen(), qwen()]);
    let scratch = tmp("moe-group-run");
    let d = scratch.path();
    let out = simulate(&["--cluster", file.to_str().unwrap()], d);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (s, _) = outputs(d);
    assert_eq!(s["completed"], 200);
    assert!(serde_json::to_string(&s).unwrap().contains(lockstep), "{s}");
}

/// A recorded run in the shared layout: `RUN/vllm/{meta.json,requests.jsonl}`,
/// `RUN/workload.jsonl` and, when given, `RUN/config.json`; removed when the returned handle
/// drops.
fn recorded_run(name: &str, meta: &Value, cluster: Option<&Value>) -> TempDir {
    let run = tmp(name);
    let dir = run.path();
    std::fs::create_dir_all(dir.join("vllm")).unwrap();
    let (mut workload, mut requests) = (String::new(), String::new());
    for i in 0..6 {
        let t = i as f64 * 0.05;
        workload += &format!("{{\"arrival_s\": {t}, \"prompt_len\": 200, \"output_len\": 8}}\n");
        requests += &format!(
            "{{\"request_id\": \"r{i}\", \"output_toks\": 8, \"queued_ts\": {}, \
             \"first_token_ts\": {}, \"last_token_ts\": {}}}\n",
            100.0 + t,
            100.03 + t,
            100.09 + t
        );
    }
    std::fs::write(dir.join("workload.jsonl"), workload).unwrap();
    std::fs::write(dir.join("vllm/requests.jsonl"), requests).unwrap();
    std::fs::write(dir.join("vllm/meta.json"), meta.to_string()).unwrap();
    if let Some(c) = cluster {
        std::fs::write(dir.join("config.json"), c.to_string()).unwrap();
    }
    run
}

fn validate(dir: &std::path::Path) -> (Output, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_llm-emu"))
        .arg("validate")
        .arg("--real")
        .arg(dir.join("vllm"))
        .arg("--workload")
        .arg(dir.join("workload.jsonl"))
        .arg("--json")
        .arg(dir.join("cmp.json"))
        .output()
        .unwrap();
    let m = std::fs::read_to_string(dir.join("cmp.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    (out, m)
}

#[test]
fn a_moe_run_recorded_with_dp2_and_ep_replays_with_no_flags() {
    let meta = serde_json::json!({
        "model": "Qwen/Qwen3-30B-A3B-Instruct-2507",
        "vllm_version": "0.19.0",
        "engine_kwargs": {
            "model": "Qwen/Qwen3-30B-A3B-Instruct-2507", "tensor_parallel_size": 1,
            "data_parallel_size": 2, "enable_expert_parallel": true, "max_model_len": 8192
        },
        "num_requests": 6,
        "hardware": {"device_count": 2, "device_name": "NVIDIA H100 80GB HBM3"}
    });
    let run = recorded_run("dp2ep", &meta, None);
    let (out, m) = validate(run.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(
            "data_parallel_size = 2 with expert parallelism: replayed as a data-parallel fleet"
        ),
        "{err}"
    );
    assert!(m["ttft_mean_sim"].as_f64().is_some_and(|t| t > 0.0), "{m}");
}

#[test]
fn a_moe_run_recorded_with_dp2_without_ep_replays_in_lockstep() {
    let meta = serde_json::json!({
        "model": "Qwen/Qwen3-30B-A3B-Instruct-2507",
        "vllm_version": "0.19.0",
        "engine_kwargs": {
            "model": "Qwen/Qwen3-30B-A3B-Instruct-2507", "tensor_parallel_size": 1,
            "data_parallel_size": 2, "enable_expert_parallel": false, "max_model_len": 8192
        },
        "num_requests": 6,
        "hardware": {"device_count": 2, "device_name": "NVIDIA H100 80GB HBM3"}
    });
    let run = recorded_run("dp2noep", &meta, None);
    let (out, m) = validate(run.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("data_parallel_size = 2: replayed as a data-parallel fleet"),
        "{err}"
    );
    let latency = m["engine"]["latency"].as_str().unwrap_or("");
    assert!(
        latency.contains("MoE data-parallel lockstep without expert parallelism"),
        "{m}"
    );
    assert!(m["ttft_mean_sim"].as_f64().is_some_and(|t| t > 0.0), "{m}");
}

/// vLLM's EP size is DP × TP: a TP2 engine with `enable_expert_parallel` places 64 whole
/// experts on each GPU and runs no all-to-all (one DP rank); at TP 1 the flag changes nothing.
#[test]
fn a_moe_run_recorded_with_tp2_and_ep_replays_the_experts_split_over_its_gpus() {
    let meta = |tp: u64| {
        serde_json::json!({
            "model": "Qwen/Qwen3-30B-A3B-Instruct-2507",
            "vllm_version": "0.19.0",
            "engine_kwargs": {
                "model": "Qwen/Qwen3-30B-A3B-Instruct-2507", "tensor_parallel_size": tp,
                "data_parallel_size": 1, "enable_expert_parallel": true, "max_model_len": 8192
            },
            "num_requests": 6,
            "hardware": {"device_count": tp, "device_name": "NVIDIA H100 80GB HBM3"}
        })
    };
    let run = recorded_run("tp2ep", &meta(2), None);
    let (out, m) = validate(run.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("recorded enable_expert_parallel: replayed with the MoE model's experts"),
        "{err}"
    );
    let latency = m["engine"]["latency"].as_str().unwrap_or("");
    assert!(
        latency.contains("experts over ep=2")
            && latency.contains("expert-parallel lockstep over 1 ranks, no all-to-all"),
        "{m}"
    );
    assert!(m["ttft_mean_sim"].as_f64().is_some_and(|t| t > 0.0), "{m}");

    let run = recorded_run("tp1ep", &meta(1), None);
    let (out, m) = validate(run.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let latency = m["engine"]["latency"].as_str().unwrap_or("");
    assert!(
        !latency.contains("lockstep") && !latency.contains("ep="),
        "{m}"
    );

    // A dense model: vLLM has no experts to spread and runs as without.
    let mut dense = meta(2);
    dense["model"] = serde_json::json!("meta-llama/Llama-3.1-8B");
    dense["engine_kwargs"]["model"] = serde_json::json!("meta-llama/Llama-3.1-8B");
    let run = recorded_run("tp2ep-dense", &dense, None);
    let (out, m) = validate(run.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("enable_expert_parallel on a dense model"),
        "{err}"
    );
    assert!(
        !m["engine"]["latency"]
            .as_str()
            .unwrap_or("")
            .contains("lockstep"),
        "{m}"
    );
}

#[test]
fn validate_replays_the_fleet_of_a_cluster_config_beside_the_run() {
    let meta = serde_json::json!({
        "model": "meta-llama/Llama-3.1-8B",
        "vllm_version": "0.19.0",
        "num_requests": 6,
        "hardware": {"device_count": 2, "device_name": "NVIDIA RTX PRO 6000 Blackwell Server Edition"}
    });
    let none = serde_json::json!({});
    let cluster = serde_json::json!({
        "num_nodes": 1, "link_bw": 16, "link_latency": 20000,
        "nodes": [{"num_instances": 2, "instances": [
            instance("meta-llama/Llama-3.1-8B", "RTXPRO6000", none.clone()),
            instance("meta-llama/Llama-3.1-8B", "RTXPRO6000", none),
        ]}]
    });
    let run = recorded_run("cluster-beside", &meta, Some(&cluster));
    let (out, m) = validate(run.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("the fleet of") && err.contains("config.json"),
        "{err}"
    );
    assert!(m["ttft_mean_sim"].as_f64().is_some_and(|t| t > 0.0), "{m}");
}

/// The instances' runtime fields fill what the run did not record, and do not override what
/// it did: meta.json's `max_num_seqs` 32 wins over the instances' 64 (said), and the
/// instances' `mem_util` 0.5, which meta.json does not record, is used and not listed among
/// vLLM's defaults.
#[test]
fn a_replayed_fleet_keeps_the_recorded_limits_over_its_instances() {
    let meta = serde_json::json!({
        "model": "meta-llama/Llama-3.1-8B",
        "vllm_version": "0.19.0",
        "engine_kwargs": {"max_num_seqs": 32},
        "num_requests": 6,
        "hardware": {"device_count": 2, "device_name": "NVIDIA RTX PRO 6000 Blackwell Server Edition"}
    });
    let fields = serde_json::json!({"max_num_seqs": 64});
    let mut cluster = serde_json::json!({
        "num_nodes": 1, "link_bw": 16, "link_latency": 20000,
        "nodes": [{"num_instances": 2, "instances": [
            instance("meta-llama/Llama-3.1-8B", "RTXPRO6000", fields.clone()),
            instance("meta-llama/Llama-3.1-8B", "RTXPRO6000", fields),
        ]}]
    });
    for i in 0..2 {
        cluster["nodes"][0]["instances"][i]["npu_mem"]["mem_util"] = serde_json::json!(0.5);
    }
    let run = recorded_run("cluster-limits", &meta, Some(&cluster));
    let (out, m) = validate(run.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(
            "cluster config `nodes[0].instances[1].max_num_seqs` = 64 but meta.json \
             engine_kwargs.max_num_seqs = 32: using the latter"
        ),
        "{err}"
    );
    let defaults = err
        .lines()
        .find(|l| l.contains("defaults used"))
        .unwrap_or_default();
    assert!(
        !defaults.contains("gpu_memory_utilization") && !defaults.contains("max_num_seqs 128"),
        "{defaults}"
    );
    assert_eq!(m["engine"]["max_num_seqs"], 32, "{m}");
}

/// A replayed fleet's instance memory far from its GPU's is a contradiction (an absurd one
/// would otherwise size billions of KV blocks); a family label (`RTXPRO6000`) beside the
/// run's driver name of its Max-Q variant emulates the Max-Q.
#[test]
fn a_replayed_fleet_checks_instance_memory_and_takes_the_driver_s_gpu() {
    let meta = |device: &str| {
        serde_json::json!({
            "model": "meta-llama/Llama-3.1-8B",
            "vllm_version": "0.19.0",
            "engine_kwargs": {"max_num_seqs": 32, "max_num_batched_tokens": 2048},
            "num_requests": 6,
            "hardware": {"device_count": 2, "device_name": device}
        })
    };
    let cluster = |mem: f64| {
        let mut c = serde_json::json!({
            "num_nodes": 1, "link_bw": 16, "link_latency": 20000,
            "nodes": [{"num_instances": 2, "instances": [
                instance("meta-llama/Llama-3.1-8B", "RTXPRO6000", serde_json::json!({})),
                instance("meta-llama/Llama-3.1-8B", "RTXPRO6000", serde_json::json!({})),
            ]}]
        });
        for i in 0..2 {
            c["nodes"][0]["instances"][i]["npu_mem"]["mem_size"] = serde_json::json!(mem);
        }
        c
    };
    let server = "NVIDIA RTX PRO 6000 Blackwell Server Edition";
    let run = recorded_run("fleet-mem", &meta(server), Some(&cluster(1e12)));
    let (out, _) = validate(run.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("npu_mem.mem_size` = 1000000000000 GiB"),
        "{err}"
    );

    let max_q = "NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition";
    let run = recorded_run("fleet-max-q", &meta(max_q), Some(&cluster(96.0)));
    let (out, m) = validate(run.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("names the family of"), "{err}");
    assert_eq!(m["engine"]["gpu"], "rtx-pro-6000-max-q", "{m}");
}

#[test]
fn a_prefill_decode_cluster_answers_every_request_from_a_decode_instance() {
    let file = cluster_file(
        "pd",
        &[
            instance(
                "meta-llama/Llama-3.1-8B",
                "RTXPRO6000",
                serde_json::json!({"pd_type": "prefill", "max_num_seqs": 32}),
            ),
            instance(
                "meta-llama/Llama-3.1-8B",
                "RTXPRO6000",
                serde_json::json!({"pd_type": "decode"}),
            ),
        ],
    );
    let scratch = tmp("pd-out");
    let d = scratch.path();
    let out = simulate(&["--cluster", file.to_str().unwrap()], d);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (s, records) = outputs(d);
    assert_eq!(s["completed"], 200);
    assert_eq!(s["fleet"]["topology"], "prefill-decode");
    assert!(records.iter().all(|r| r["engine"] == 1), "decode answers");
    let inst = s["instances"].as_array().unwrap();
    assert!(
        inst[0]["num_steps"].as_u64().unwrap() > 0,
        "prefill ran steps: {inst:?}"
    );
}

#[test]
fn replicas_of_data_parallel_engines_route_to_every_rank() {
    let scratch = tmp("dp-replicas");
    let d = scratch.path();
    let out = simulate(
        &[
            "--replicas",
            "2",
            "--data-parallel-size",
            "2",
            "--router",
            "round-robin",
        ],
        d,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (s, records) = outputs(d);
    assert_eq!(s["completed"], 200);
    assert_eq!(s["fleet"]["kind"], "replicas-of-data-parallel");
    assert_eq!(s["fleet"]["replicas"], 2);
    assert_eq!(s["fleet"]["data_parallel_size"], 2);
    let instances = s["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 4);
    // Round robin over the 4 ranks: 50 requests each.
    for i in instances {
        assert_eq!(i["completed"], 50, "{i}");
    }
    let mut per_engine = [0; 4];
    for r in &records {
        per_engine[r["engine"].as_u64().unwrap() as usize] += 1;
    }
    assert_eq!(per_engine, [50; 4]);
}

#[test]
fn replicas_of_expert_parallel_groups_run_on_a_moe_model() {
    let scratch = tmp("ep-replicas");
    let d = scratch.path();
    let out = simulate(
        &[
            "--model",
            "Qwen/Qwen3-30B-A3B",
            "--gpu",
            "h100",
            "--replicas",
            "2",
            "--data-parallel-size",
            "2",
            "--enable-expert-parallel",
        ],
        d,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (s, _) = outputs(d);
    assert_eq!(s["completed"], 200);
    assert_eq!(s["fleet"]["kind"], "replicas-of-data-parallel");
    assert_eq!(s["fleet"]["expert_parallel_size"], 2);
    assert_eq!(s["instances"].as_array().unwrap().len(), 4);
    // On a dense model it is refused, naming the flag.
    let e = refused(&[
        "--replicas",
        "2",
        "--data-parallel-size",
        "2",
        "--enable-expert-parallel",
    ]);
    assert!(e.contains("--enable-expert-parallel"), "{e}");
}

#[test]
fn several_dp_groups_in_a_cluster_are_replicas_of_dp_engines() {
    let g = |name: &str| {
        instance(
            "meta-llama/Llama-3.1-8B",
            "H100",
            serde_json::json!({"dp_group": name}),
        )
    };
    let file = cluster_file("dp-groups", &[g("A"), g("A"), g("B"), g("B")]);
    let scratch = tmp("dp-groups-out");
    let d = scratch.path();
    let out = simulate(
        &[
            "--cluster",
            file.to_str().unwrap(),
            "--router",
            "round-robin",
        ],
        d,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (s, _) = outputs(d);
    assert_eq!(s["completed"], 200);
    assert_eq!(s["fleet"]["topology"], "data-parallel-groups");
    let instances = s["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 4);
    for i in instances {
        assert_eq!(i["completed"], 50, "{i}");
    }
    // A group's members are listed together.
    let file = cluster_file("dp-groups-split", &[g("A"), g("B"), g("A")]);
    let e = refused(&["--cluster", file.to_str().unwrap()]);
    assert!(
        e.contains("nodes[0].instances[2].dp_group") && e.contains("together"),
        "{e}"
    );
    // Every instance in a group once one is.
    let loose = instance("meta-llama/Llama-3.1-8B", "H100", serde_json::json!({}));
    let file = cluster_file("dp-groups-loose", &[g("A"), loose]);
    let e = refused(&["--cluster", file.to_str().unwrap()]);
    assert!(e.contains("nodes[0].instances[1].dp_group"), "{e}");
}

/// Two prefill instances in dp_group `P`, two decode instances in dp_group `D`.
fn dp_pd_cluster(name: &str) -> TmpFile {
    let side = |role: &str, group: &str| {
        instance(
            "meta-llama/Llama-3.1-8B",
            "RTXPRO6000",
            serde_json::json!({"pd_type": role, "dp_group": group}),
        )
    };
    cluster_file(
        name,
        &[
            side("prefill", "P"),
            side("prefill", "P"),
            side("decode", "D"),
            side("decode", "D"),
        ],
    )
}

#[test]
fn a_prefill_decode_cluster_of_dp_groups_balances_each_side() {
    let file = dp_pd_cluster("pd-dp");
    let scratch = tmp("pd-dp-out");
    let d = scratch.path();
    let out = simulate(&["--cluster", file.to_str().unwrap()], d);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (s, records) = outputs(d);
    assert_eq!(s["completed"], 200);
    assert_eq!(s["fleet"]["topology"], "prefill-decode");
    assert_eq!(s["fleet"]["prefill_placement"], "vllm-dp");
    assert_eq!(s["fleet"]["decode_placement"], "vllm-dp");
    assert_eq!(s["fleet"]["router"], Value::Null);
    // Every request answered by a decode rank, both ranks used; both prefill ranks stepped.
    assert!(records.iter().all(|r| r["engine"] == 2 || r["engine"] == 3));
    for e in [2, 3] {
        assert!(records.iter().any(|r| r["engine"] == e), "rank {e} idle");
    }
    let inst = s["instances"].as_array().unwrap();
    for p in 0..2 {
        assert!(
            inst[p]["num_steps"].as_u64().unwrap() > 0,
            "prefill rank {p} ran nothing: {inst:?}"
        );
    }
}

/// The `Engines:` line of `simulate`'s header for `args` (20 synthetic requests).
fn engines_line(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_llm-emu"))
        .args(["simulate", "--synthetic", "20"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find(|l| l.starts_with("Engines:"))
        .unwrap_or_else(|| panic!("no Engines: line in {text}"))
        .trim_start_matches("Engines:")
        .trim()
        .to_string()
}

#[test]
fn every_fleet_s_header_names_what_places_its_requests() {
    let llama = |extra: Value| instance("meta-llama/Llama-3.1-8B", "RTXPRO6000", extra);
    let group = |g: &str| llama(serde_json::json!({"dp_group": g}));
    let dp = cluster_file("label-dp", &[group("A"), group("A")]);
    let groups = cluster_file("label-groups", &[group("A"), group("A"), group("B")]);
    let single = cluster_file("label-one", &[llama(serde_json::json!({}))]);
    let reps = cluster_file(
        "label-reps",
        &[llama(serde_json::json!({})), llama(serde_json::json!({}))],
    );
    let pd = cluster_file(
        "label-pd",
        &[
            llama(serde_json::json!({"pd_type": "prefill"})),
            llama(serde_json::json!({"pd_type": "decode"})),
        ],
    );
    let pd_dp = dp_pd_cluster("label-pd-dp");
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![], "one engine"),
        (
            vec!["--data-parallel-size".into(), "2".into()],
            "data parallel: 2 ranks, 2 API server(s), vLLM's DP load balancer",
        ),
        (
            vec![
                "--replicas".into(),
                "2".into(),
                "--router".into(),
                "least-loaded".into(),
            ],
            "2 replicas behind a least-loaded router",
        ),
        (
            vec![
                "--replicas".into(),
                "2".into(),
                "--data-parallel-size".into(),
                "2".into(),
            ],
            "2 replicas of 2 data-parallel ranks behind a round-robin router",
        ),
        (
            vec!["--cluster".into(), path(&dp)],
            "cluster file: dp_group `A` of 2 data-parallel ranks, vLLM's DP load balancer",
        ),
        (
            vec![
                "--cluster".into(),
                path(&groups),
                "--router".into(),
                "session".into(),
            ],
            "cluster file: 2 dp_groups (3 ranks) behind a session router",
        ),
        (
            vec!["--cluster".into(), path(&single)],
            "cluster file: one instance",
        ),
        (
            vec!["--cluster".into(), path(&reps)],
            "cluster file: 2 replicas behind a round-robin router",
        ),
        (
            vec![
                "--cluster".into(),
                path(&pd),
                "--router".into(),
                "prefix-aware".into(),
            ],
            "cluster file: prefill/decode; prefill: 1 instance(s), a round-robin router; \
             decode: 1 instance(s), a prefix-aware router",
        ),
        (
            vec!["--cluster".into(), path(&pd_dp)],
            "cluster file: prefill/decode; prefill: dp_group `P` of 2 ranks, vLLM's DP load \
             balancer; decode: dp_group `D` of 2 ranks, vLLM's DP load balancer",
        ),
    ];
    for (args, want) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(engines_line(&args), want, "{args:?}");
    }
}

#[test]
fn a_dp_cluster_s_output_json_names_the_balancer_not_a_router() {
    let group = |g: &str| {
        instance(
            "meta-llama/Llama-3.1-8B",
            "RTXPRO6000",
            serde_json::json!({"dp_group": g}),
        )
    };
    let file = cluster_file("json-dp", &[group("A"), group("A")]);
    let scratch = tmp("json-dp-out");
    let d = scratch.path();
    let out = simulate(&["--cluster", file.to_str().unwrap()], d);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (s, _) = outputs(d);
    assert_eq!(s["fleet"]["topology"], "data-parallel");
    assert_eq!(s["fleet"]["router"], Value::Null);
    assert_eq!(s["fleet"]["balancer"], "vllm-dp");
    let scratch = tmp("json-flag-dp-out");
    let d = scratch.path();
    assert!(simulate(&["--data-parallel-size", "2"], d).status.success());
    assert_eq!(outputs(d).0["fleet"]["balancer"], "vllm-dp");
}

#[test]
fn pipeline_parallelism_is_refused_with_the_reason() {
    let e = refused(&["--pipeline-parallel-size", "2"]);
    assert!(
        e.contains("--pipeline-parallel-size 2")
            && e.contains("not modelled")
            && e.contains("step_with_batch_queue"),
        "{e}"
    );
    let e = refused(&["--pipeline-parallel-size", "0"]);
    assert!(
        e.contains("--pipeline-parallel-size must be at least 1"),
        "{e}"
    );
    let file = cluster_file(
        "pp",
        &[instance(
            "meta-llama/Llama-3.1-8B",
            "RTXPRO6000",
            serde_json::json!({"pp_size": 2, "num_npus": 2}),
        )],
    );
    let e = refused(&["--cluster", file.to_str().unwrap()]);
    assert!(
        e.contains("nodes[0].instances[0].pp_size") && e.contains("step_with_batch_queue"),
        "{e}"
    );
    // PP 1 is no pipeline: it runs.
    let scratch = tmp("pp1");
    let d = scratch.path();
    let out = simulate(&["--pipeline-parallel-size", "1"], d);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
