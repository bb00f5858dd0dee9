//! `llm-emu serve --data-parallel-size 2 --instance-ports …` as a process: the shared endpoint
//! and each engine's own port answer, the header places a request on its rank, the metrics
//! carry both engine labels, bad flags are refused, and SIGTERM stops every port.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

mod support;

fn http(addr: &str, method: &str, path: &str, headers: &str, body: &str) -> (u16, String) {
    support::http_request(addr, method, path, headers, body, Duration::from_secs(20))
}

fn serve(extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_llm-emu"));
    c.args([
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--served-model-name",
        "emu",
        "--max-model-len",
        "2048",
        "--latency",
        "linear:base_us=500,per_token_us=1",
        "--engine-thread-priority",
        "normal",
    ])
    .args(extra);
    c
}

/// The `http://host:port` of each "listening" line, shared endpoint first.
fn read_addrs(child: &mut std::process::Child, n: usize) -> Vec<String> {
    let mut out = BufReader::new(child.stdout.take().unwrap());
    (0..n)
        .map(|_| {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            line.trim()
                .rsplit("http://")
                .next()
                .expect("listening line")
                .to_string()
        })
        .collect()
}

#[test]
fn a_dp_fleet_serves_on_one_endpoint_and_one_port_per_engine() {
    let mut child = serve(&["--data-parallel-size", "2", "--instance-ports", "0,0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addrs = read_addrs(&mut child, 3);
    let body = r#"{"model":"emu","prompt":[1,2,3],"max_tokens":4}"#;
    let (st, text) = http(
        &addrs[0],
        "POST",
        "/v1/completions",
        "X-data-parallel-rank: 1\r\n",
        body,
    );
    assert_eq!(st, 200, "{text}");
    for addr in &addrs[1..] {
        let (st, text) = http(addr, "POST", "/v1/completions", "", body);
        assert_eq!(st, 200, "{addr}: {text}");
    }
    let (_, metrics) = http(&addrs[0], "GET", "/metrics", "", "");
    let gen = |e: usize| -> f64 {
        let prefix = format!("vllm:generation_tokens_total{{engine=\"{e}\",model_name=\"emu\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("engine {e} in /metrics"))
            .parse()
            .unwrap()
    };
    assert_eq!((gen(0), gen(1)), (4.0, 8.0));
    let (_, own) = http(&addrs[2], "GET", "/metrics", "", "");
    assert!(own.contains("engine=\"1\"") && !own.contains("engine=\"0\""));
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "clean exit after SIGTERM: {status:?}");
    for addr in &addrs {
        assert!(TcpStream::connect(addr).is_err(), "{addr} closed");
    }
}

#[test]
fn instance_ports_must_match_the_engines() {
    let out = serve(&["--data-parallel-size", "2", "--instance-ports", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--instance-ports gives 1 port(s) for 2 engine(s)"),
        "{err}"
    );
    let out = serve(&["--replicas", "2", "--router", "nearest"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown router `nearest`"));
}

/// A per-engine series' value in a `/metrics` text (0 when absent).
fn engine_series(metrics: &str, name: &str, engine: usize) -> f64 {
    let label = format!("engine=\"{engine}\"");
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A cluster config file of `instances` in a fresh folder: the folder (removed when it drops,
/// so keep it bound while the file is used) and the file's path.
fn cluster_file(
    name: &str,
    instances: &[serde_json::Value],
) -> (tempfile::TempDir, std::path::PathBuf) {
    let d = tempfile::Builder::new()
        .prefix(&format!("llm-emu-serve-cluster-{name}-"))
        .tempdir()
        .unwrap();
    let c = serde_json::json!({
        "num_nodes": 1, "link_bw": 16, "link_latency": 20000,
        "nodes": [{"num_instances": instances.len(), "instances": instances}]
    });
    let p = d.path().join("cluster.json");
    std::fs::write(&p, serde_json::to_vec(&c).unwrap()).unwrap();
    (d, p)
}

fn cluster_instance(model: &str, hardware: &str, role: Option<&str>) -> serde_json::Value {
    serde_json::json!({
        "model_name": model, "hardware": hardware,
        "npu_mem": {"mem_size": 80}, "num_npus": 1, "tp_size": 1, "pd_type": role
    })
}

/// Serves `args`, sends `requests` (extra header lines each) to the shared endpoint, and
/// returns the `/metrics` text after they all finished; stops the server.
fn serve_and_send(args: &[&str], requests: &[&str]) -> String {
    let mut child = serve(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = read_addrs(&mut child, 1).remove(0);
    let body = r#"{"model":"emu","prompt":[1,2,3,4,5],"max_tokens":3,"ignore_eos":true}"#;
    for headers in requests {
        let (st, text) = http(&addr, "POST", "/v1/completions", headers, body);
        assert_eq!(st, 200, "{text}");
    }
    let (_, metrics) = http(&addr, "GET", "/metrics", "", "");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    metrics
}

#[test]
fn a_heterogeneous_cluster_is_served_behind_the_router() {
    let (_dir, file) = cluster_file(
        "replicas",
        &[
            cluster_instance("meta-llama/Llama-3.1-8B", "H100", None),
            cluster_instance("Qwen/Qwen3-8B", "A100", None),
        ],
    );
    let m = serve_and_send(
        &[
            "--cluster",
            file.to_str().unwrap(),
            "--router",
            "round-robin",
        ],
        &["", ""],
    );
    let ok = "vllm:request_success_total";
    assert_eq!(
        (engine_series(&m, ok, 0), engine_series(&m, ok, 1)),
        (1.0, 1.0)
    );
}

#[test]
fn a_prefill_decode_cluster_is_served_as_one_stream() {
    let (_dir, file) = cluster_file(
        "pd",
        &[
            cluster_instance("meta-llama/Llama-3.1-8B", "H100", Some("prefill")),
            cluster_instance("meta-llama/Llama-3.1-8B", "H100", Some("decode")),
        ],
    );
    let m = serve_and_send(&["--cluster", file.to_str().unwrap()], &[""]);
    // The prompt on the prefill instance; the client's tokens and the finish on the decode one.
    assert_eq!(engine_series(&m, "vllm:prompt_tokens_total", 0), 5.0);
    assert_eq!(engine_series(&m, "vllm:generation_tokens_total", 0), 0.0);
    assert_eq!(engine_series(&m, "vllm:generation_tokens_total", 1), 3.0);
    assert_eq!(engine_series(&m, "vllm:request_success_total", 1), 1.0);
}

#[test]
fn a_prefill_decode_cluster_of_dp_groups_is_served_rank_by_rank() {
    let side = |role: &str, group: &str| {
        let mut i = cluster_instance("meta-llama/Llama-3.1-8B", "H100", Some(role));
        i["dp_group"] = group.into();
        i
    };
    let (_dir, file) = cluster_file(
        "pd-dp",
        &[
            side("prefill", "P"),
            side("prefill", "P"),
            side("decode", "D"),
            side("decode", "D"),
        ],
    );
    let m = serve_and_send(&["--cluster", file.to_str().unwrap()], &["", ""]);
    // Each side has two API servers (vLLM's default, one per rank), taking requests in turn:
    // the first scans from rank 0, the second from rank 1, each finding both ranks idle. So
    // the first request prefills on engine 0 and decodes on engine 2, the second on 1 and 3.
    for (prefill, decode) in [(0, 2), (1, 3)] {
        assert_eq!(engine_series(&m, "vllm:prompt_tokens_total", prefill), 5.0);
        assert_eq!(
            engine_series(&m, "vllm:generation_tokens_total", prefill),
            0.0
        );
        assert_eq!(
            engine_series(&m, "vllm:generation_tokens_total", decode),
            3.0
        );
        assert_eq!(engine_series(&m, "vllm:request_success_total", decode), 1.0);
    }
}

#[test]
fn pipeline_parallelism_is_refused_by_serve() {
    for flag in ["--pipeline-parallel-size", "-pp"] {
        let out = serve(&[flag, "2"]).output().unwrap();
        assert!(!out.status.success(), "{flag} 2 served");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--pipeline-parallel-size 2") && err.contains("step_with_batch_queue"),
            "{flag}: {err}"
        );
    }
}

#[test]
fn expert_parallel_ranks_are_served_on_a_moe_model() {
    let m = serve_and_send(
        &[
            "--model",
            "Qwen/Qwen3-30B-A3B",
            "--gpu",
            "h100",
            "--data-parallel-size",
            "2",
            "--enable-expert-parallel",
        ],
        &["X-data-parallel-rank: 1\r\n", "X-data-parallel-rank: 1\r\n"],
    );
    let ok = "vllm:request_success_total";
    assert_eq!(
        (engine_series(&m, ok, 0), engine_series(&m, ok, 1)),
        (0.0, 2.0)
    );
    // On a dense model it is refused, naming the flag.
    let out = serve(&["--data-parallel-size", "2", "--enable-expert-parallel"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--enable-expert-parallel") && err.contains("dense model"),
        "{err}"
    );
}

#[test]
fn moe_data_parallel_without_ep_is_served_in_lockstep() {
    let mut child = serve(&[
        "--model",
        "Qwen/Qwen3-30B-A3B",
        "--gpu",
        "h100",
        "--data-parallel-size",
        "2",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let addr = read_addrs(&mut child, 1).remove(0);
    let body = r#"{"model":"emu","prompt":[1,2,3,4,5],"max_tokens":3,"ignore_eos":true}"#;
    for _ in 0..2 {
        let (st, text) = http(
            &addr,
            "POST",
            "/v1/completions",
            "X-data-parallel-rank: 1\r\n",
            body,
        );
        assert_eq!(st, 200, "{text}");
    }
    let (_, metrics) = http(&addr, "GET", "/metrics", "", "");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().unwrap();
    let ok = "vllm:request_success_total";
    assert_eq!(
        (
            engine_series(&metrics, ok, 0),
            engine_series(&metrics, ok, 1)
        ),
        (0.0, 2.0)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("MoE data-parallel lockstep without expert parallelism over 2 ranks"),
        "{err}"
    );
}

#[test]
fn replicas_of_data_parallel_engines_are_served_rank_by_rank() {
    let m = serve_and_send(
        &[
            "--replicas",
            "2",
            "--data-parallel-size",
            "2",
            "--router",
            "round-robin",
        ],
        &["", "", "", ""],
    );
    let ok = "vllm:request_success_total";
    let per: Vec<f64> = (0..4).map(|e| engine_series(&m, ok, e)).collect();
    assert_eq!(per, vec![1.0; 4]);
}
