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
