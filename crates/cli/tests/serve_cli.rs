//! `llm-emu serve` as a process: `--port 0` prints the bound port, it answers, SIGTERM stops it
//! cleanly.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    (status, body)
}

#[test]
fn serve_binds_port_zero_answers_and_stops_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_llm-emu"))
        .args([
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
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .rsplit("http://")
        .next()
        .expect("listening line")
        .to_string();
    assert!(!addr.ends_with(":0"), "a real port: {line}");
    let (st, _) = http(&addr, "GET", "/health", "");
    assert_eq!(st, 200);
    let (st, body) = http(
        &addr,
        "POST",
        "/v1/completions",
        r#"{"model":"emu","prompt":[1,2,3],"max_tokens":4}"#,
    );
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["usage"]["completion_tokens"], 4);
    assert_eq!(v["model"], "emu");
    let (_, models) = http(&addr, "GET", "/v1/models", "");
    let m: serde_json::Value = serde_json::from_str(&models).unwrap();
    assert_eq!(m["data"][0]["max_model_len"], 2048);
    assert_eq!(m["data"][0]["root"], "meta-llama/Llama-3.1-8B-Instruct");

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "clean exit after SIGTERM: {status:?}");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("stopped"), "{err}");
}

#[test]
fn serve_help_explains_the_vllm_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_llm-emu"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--host",
        "--port",
        "--served-model-name",
        "--api-key",
        "--max-model-len",
        "--max-num-seqs",
        "--enable-prefix-caching",
        "--latency",
    ] {
        assert!(help.contains(flag), "{flag} in --help");
    }
}
