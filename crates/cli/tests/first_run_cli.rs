//! A first run as a new user makes it: any model name serves (the embedded tokenizer stands in,
//! with a warning), `--model` works as in vLLM, the log says what vLLM's says (served names,
//! tokenizer, API key, KV capacity, the periodic stats line, an access line per request),
//! `bench` against that server needs no flags, and errors are said once and plainly.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// An empty Hugging Face cache: no model name is ever found in it. Removed when dropped.
fn empty_hf_cache() -> TempDir {
    tempfile::Builder::new()
        .prefix("llm-emu-first-run-hf-")
        .tempdir()
        .unwrap()
}

/// The binary, with `empty` (from [`empty_hf_cache`]) as its Hugging Face cache.
fn bin(empty: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_llm-emu"));
    c.env("HF_HUB_CACHE", empty)
        .env("VLLM_LOG_STATS_INTERVAL", "0.3");
    c
}

/// A running `llm-emu serve` with its stderr lines arriving on a channel.
struct Served {
    child: Child,
    addr: String,
    lines: Receiver<String>,
    seen: Vec<String>,
    /// The server's Hugging Face cache; dropped (removed) after the server is stopped.
    hf: TempDir,
}

impl Served {
    fn start(args: &[&str]) -> Served {
        let hf = empty_hf_cache();
        let mut child = bin(hf.path())
            .args(["serve", "--host", "127.0.0.1", "--port", "0"])
            .args(["--max-model-len", "2048", "--latency", "linear:base_us=500"])
            .args(args)
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
            .unwrap_or_default()
            .to_string();
        assert!(!addr.is_empty(), "no listening line: {line:?}");
        let (tx, lines) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        Served {
            child,
            addr,
            lines,
            seen: Vec::new(),
            hf,
        }
    }

    /// Waits up to `limit` for a stderr line containing `needle`; the line.
    fn wait_for(&mut self, needle: &str, limit: Duration) -> Option<String> {
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return Some(l.clone());
        }
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if let Ok(l) = self.lines.recv_timeout(Duration::from_millis(50)) {
                self.seen.push(l.clone());
                if l.contains(needle) {
                    return Some(l);
                }
            }
        }
        None
    }

    fn log(&self) -> String {
        self.seen.join("\n")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

mod support;
use support::http;

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

const SHORT: Duration = Duration::from_secs(10);

#[test]
fn any_model_name_serves_and_bench_needs_no_flags() {
    let mut s = Served::start(&["my/model"]);
    let warn = s.wait_for("warning: no tokenizer for `my/model`", SHORT);
    assert!(warn.is_some(), "{}", s.log());
    assert!(warn.unwrap().contains("--tokenizer"));
    for needle in [
        "served as `my/model`",
        "tokenizer: the embedded meta-llama/Llama-3.1-8B-Instruct tokenizer",
        "API key: none required",
        "GPU KV cache size: ",
        "Maximum concurrency for 2,048 tokens per request: ",
    ] {
        assert!(s.wait_for(needle, SHORT).is_some(), "{needle}: {}", s.log());
    }
    let (st, models) = http(&s.addr, "GET", "/v1/models", "");
    assert_eq!(st, 200);
    assert!(models.contains("\"id\":\"my/model\""), "{models}");
    let access = s.wait_for("\"GET /v1/models HTTP/1.1\" 200 OK", SHORT);
    let access = access.unwrap_or_else(|| panic!("no access line: {}", s.log()));
    assert!(access.starts_with("INFO:     127.0.0.1:"), "{access}");

    // The server's model name is in no cache: bench falls back the same way and runs.
    let out = bin(s.hf.path())
        .args(["bench", "--base-url", &format!("http://{}", s.addr)])
        .args(["--num-prompts", "8", "--random-input-len", "32"])
        .args(["--random-output-len", "8", "--disable-tqdm"])
        .output()
        .unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("Successful requests:                     8"),
        "{t}"
    );
    assert!(t.contains("warning: no tokenizer for `my/model`"), "{t}");
    // The requests show in the periodic stats line, as vLLM's LoggingStatLogger writes it.
    let stats = s.wait_for("Engine 000: Avg prompt throughput: ", SHORT);
    let stats = stats.unwrap_or_else(|| panic!("no stats line: {}", s.log()));
    for part in [
        "tokens/s, Running: ",
        " reqs, Waiting: ",
        "GPU KV cache usage: ",
    ] {
        assert!(stats.contains(part), "{stats}");
    }
    assert!(
        s.wait_for("\"POST /v1/completions HTTP/1.1\" 200 OK", SHORT)
            .is_some(),
        "{}",
        s.log()
    );
}

#[test]
fn model_flag_tokenizer_builtin_and_quiet_logs() {
    let mut s = Served::start(&[
        "--model",
        "Qwen/Qwen3-8B",
        "--tokenizer",
        "builtin",
        "--api-key",
        "k",
        "--disable-uvicorn-access-log",
        "--disable-log-stats",
    ]);
    assert!(
        s.wait_for("served as `Qwen/Qwen3-8B`", SHORT).is_some(),
        "{}",
        s.log()
    );
    assert!(s.wait_for("API key: required", SHORT).is_some());
    assert!(s.wait_for("Maximum concurrency", SHORT).is_some());
    let (st, _) = http(&s.addr, "GET", "/health", "");
    assert_eq!(st, 200);
    let body = r#"{"model":"Qwen/Qwen3-8B","prompt":"hi","max_tokens":3}"#;
    let (st, _) = http(&s.addr, "POST", "/v1/completions", body);
    assert_eq!(st, 401, "the API key is required");
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        s.wait_for("HTTP/1.1\"", Duration::from_millis(200))
            .is_none(),
        "{}",
        s.log()
    );
    assert!(s
        .wait_for("Engine 000:", Duration::from_millis(200))
        .is_none());
    assert!(
        s.wait_for("no tokenizer for", Duration::ZERO).is_none(),
        "builtin asked for"
    );
}

#[test]
fn errors_are_plain_and_said_once() {
    let hf = empty_hf_cache();
    // Two different models.
    let out = bin(hf.path())
        .args(["serve", "a/b", "--model", "c/d"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).contains("the model is given twice"),
        "{}",
        text(&out)
    );
    // A vLLM option llm-emu lacks, for serve and for bench.
    for (args, flag) in [
        (
            vec!["serve", "--speculative-config", "{}"],
            "--speculative-config",
        ),
        (
            vec!["bench", "--ramp-up-strategy", "linear"],
            "--ramp-up-strategy",
        ),
    ] {
        let out = bin(hf.path()).args(&args).output().unwrap();
        let t = text(&out);
        assert_eq!(out.status.code(), Some(2), "{t}");
        assert!(
            t.contains(&format!("{flag} is a `vllm")) && t.contains("does not support"),
            "{t}"
        );
        assert!(!t.contains("similar argument"), "{t}");
    }
    // A taken port: the OS error once.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = bin(hf.path())
        .args(["serve", "--host", "127.0.0.1", "--port", &port])
        .output()
        .unwrap();
    let t = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success());
    let err = t
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_default();
    assert!(err.contains("cannot listen on"), "{t}");
    assert_eq!(err.matches("(os error").count(), 1, "{err}");
    // Ignored vLLM options are said to be ignored.
    let out = bin(hf.path())
        .args([
            "serve",
            "--dtype",
            "bfloat16",
            "--trust-remote-code",
            "--port",
            &port,
        ])
        .args(["--host", "127.0.0.1"])
        .output()
        .unwrap();
    let t = text(&out);
    assert!(t.contains("`--dtype bfloat16` is a vLLM option"), "{t}");
    assert!(t.contains("`--trust-remote-code` is a vLLM option"), "{t}");
}

#[test]
fn simulate_says_what_it_simulated_and_fails_when_nothing_ran() {
    let hf = empty_hf_cache();
    let out = bin(hf.path())
        .args(["simulate", "--synthetic", "30", "--gpu", "h100"])
        .args([
            "--latency",
            "linear:base_us=1000",
            "--model",
            "Qwen/Qwen3-8B",
        ])
        .output()
        .unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    for needle in [
        "Model:                                  Qwen/Qwen3-8B",
        "GPU:                                    h100-sxm, TP 1",
        "Latency model:                          linear",
        "KV cache:                               ",
        "Workload:                               30 synthetic",
        "Wall time (s):",
        "Speed-up over real time:",
    ] {
        assert!(t.contains(needle), "{needle}: {t}");
    }
    let out = bin(hf.path())
        .args([
            "simulate",
            "--synthetic",
            "5",
            "--max-model-len",
            "16",
            "--quiet",
        ])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "every request failed: {}",
        text(&out)
    );
}
