//! Structured output and tool calls of a real `llm-emu serve`, checked by the official `openai`
//! SDK (`tests/python/agents_sdk.py`: pydantic `parse`, tools with `tool_choice` required and
//! named, streamed tool calls assembled, every document validated with `jsonschema`, LangChain
//! when installed). The Python interpreter is `$LLM_EMU_PYTHON`, else `python3`; without the
//! `openai`, `pydantic` and `jsonschema` packages the test prints a notice and passes.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn python() -> String {
    std::env::var("LLM_EMU_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

fn has_sdk(py: &str) -> bool {
    Command::new(py)
        .args(["-c", "import openai, pydantic, jsonschema"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Stops the server however the test ends.
struct Serve(std::process::Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn openai_sdk_parses_structured_output_and_tool_calls() {
    let py = python();
    if !has_sdk(&py) {
        eprintln!(
            "skipping: `{py}` lacks openai, pydantic or jsonschema \
             (pip install openai jsonschema; LLM_EMU_PYTHON picks the interpreter)"
        );
        return;
    }
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
            "4096",
            "--latency",
            "linear:base_us=200,per_token_us=1",
            "--enable-auto-tool-choice",
            "--tool-call-parser",
            "hermes",
            "--tool-call-probability",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let serve = Serve(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .rsplit("http://")
        .next()
        .expect("listening line")
        .to_string();
    let out = Command::new(&py)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/agents_sdk.py"
        ))
        .args([format!("http://{addr}/v1"), "emu".to_string()])
        .output()
        .unwrap();
    drop(serve);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("all checks passed"), "{text}");
}
