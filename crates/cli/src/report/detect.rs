//! What an input is, told from its content (not its name): a JSONL file by the keys of its
//! first record, a JSON document by its keys, a CSV by its header, a folder by what it holds.

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

/// The inputs the report reads.
pub enum Input {
    /// `simulate --output-json`.
    Summary(Map<String, Value>),
    /// `simulate --requests-out` (streamed).
    Requests,
    /// `simulate --steps-out` (streamed).
    Steps,
    /// `validate --json`.
    ValidateSummary(Map<String, Value>),
    /// `validate --requests` (streamed).
    ValidatePairs,
    /// A `bench` / `vllm bench serve` result.
    Bench(Map<String, Value>),
    /// A sweep's `sweep.json` (found from its folder or CSVs too), with its path.
    Sweep(PathBuf, Map<String, Value>),
    /// A `plan --output-json` document.
    Plan(Map<String, Value>),
}

/// What the report accepts, for error messages.
pub const EXPECTED: &str = "expected a `simulate --output-json` summary, a `simulate \
--requests-out` or `--steps-out` JSONL file, a `validate --json` or `--requests` output, a \
`bench`/`vllm bench serve` result JSON, a sweep's `sweep.json`, CSV or output folder, or a \
`plan --output-json` document";

fn has(m: &Map<String, Value>, keys: &[&str]) -> bool {
    keys.iter().all(|k| m.contains_key(*k))
}

/// The kind of a JSONL record, if it is one the report reads.
fn line_kind(m: &Map<String, Value>) -> Option<Input> {
    if has(
        m,
        &["request_id", "arrival_s", "first_token_s", "last_token_s"],
    ) {
        Some(Input::Requests)
    } else if has(m, &["start_s", "end_s", "running", "waiting", "kv_usage"]) {
        Some(Input::Steps)
    } else if has(m, &["ttft_ms_real", "ttft_ms_sim"]) {
        Some(Input::ValidatePairs)
    } else {
        None
    }
}

/// The kind of a JSON document, if it is one the report reads.
fn doc_kind(path: &Path, m: Map<String, Value>) -> Result<Input, Map<String, Value>> {
    let format = m
        .get("meta")
        .and_then(|x| x.get("format"))
        .and_then(Value::as_str);
    if format.is_some_and(|f| f.starts_with("llm-emu-sweep")) && m.contains_key("rows") {
        return Ok(Input::Sweep(path.to_path_buf(), m));
    }
    let top_format = m.get("format").and_then(Value::as_str);
    if top_format.is_some_and(|f| f.starts_with("llm-emu-plan")) && m.contains_key("fleets") {
        return Ok(Input::Plan(m));
    }
    if m.keys().any(|k| k.ends_with("_err_pct")) && m.keys().any(|k| k.ends_with("_real")) {
        return Ok(Input::ValidateSummary(m));
    }
    if has(&m, &["completed", "backend"]) || has(&m, &["completed", "endpoint_type"]) {
        return Ok(Input::Bench(m));
    }
    if has(&m, &["completed", "mean_ttft_ms"]) {
        return Ok(Input::Summary(m));
    }
    Err(m)
}

/// A short description of an object's keys, for the error message.
fn keys_of(m: &Map<String, Value>) -> String {
    let mut k: Vec<&str> = m.keys().map(String::as_str).take(6).collect();
    if m.len() > 6 {
        k.push("…");
    }
    format!("a JSON object with keys {}", k.join(", "))
}

/// Reads a sweep's `sweep.json`.
fn sweep_json(p: &Path) -> Result<Input> {
    let text = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
    let v: Value =
        serde_json::from_slice(&text).with_context(|| format!("{}: not JSON", p.display()))?;
    match v {
        Value::Object(m) => doc_kind(p, m).map_err(|m| {
            anyhow::anyhow!(
                "{}: not a sweep's sweep.json ({})",
                p.display(),
                keys_of(&m)
            )
        }),
        _ => bail!("{}: not a sweep's sweep.json", p.display()),
    }
}

/// Tells what `path` is, reading as little as it can: JSONL files are only opened here (their
/// section streams them).
pub fn detect(path: &Path) -> Result<Input> {
    if path.is_dir() {
        let j = path.join("sweep.json");
        if j.is_file() {
            return sweep_json(&j);
        }
        bail!(
            "{}: a folder, but not a sweep's output folder (no sweep.json in it); {EXPECTED}",
            path.display()
        );
    }
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut first = String::new();
    let mut reader = std::io::BufReader::new(file);
    while first.trim().is_empty() {
        first.clear();
        // A first line longer than this is read in full below if it has to be.
        if reader
            .by_ref()
            .take(1 << 20)
            .read_line(&mut first)
            .with_context(|| format!("reading {}", path.display()))?
            == 0
        {
            bail!("{}: empty; {EXPECTED}", path.display());
        }
    }
    let head = first.trim();
    if !head.starts_with('{') {
        let csv_sweep = ["point,config,", "config,", "request-rate,"]
            .iter()
            .any(|h| head.starts_with(h));
        if csv_sweep {
            // sweep.csv and saturation.csv sit beside sweep.json, curves/config-NNN.csv below it.
            let dir = path.parent().unwrap_or(Path::new("."));
            for d in [dir, dir.parent().unwrap_or(dir)] {
                if d.join("sweep.json").is_file() {
                    return sweep_json(&d.join("sweep.json"));
                }
            }
            bail!(
                "{}: a sweep CSV, but its sweep.json (which has the configurations and \
                 saturation) is not beside it; pass sweep.json or the sweep's output folder",
                path.display()
            );
        }
        let shown: String = head.chars().take(40).collect();
        bail!(
            "{}: not JSON, JSONL or a sweep CSV (starts with `{shown}`); {EXPECTED}",
            path.display()
        );
    }
    if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(head) {
        if let Some(k) = line_kind(&m) {
            return Ok(k);
        }
    }
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let v: Value = serde_json::from_slice(&text).with_context(|| {
        format!(
            "{}: neither one JSON document nor JSONL with a record the report reads; {EXPECTED}",
            path.display()
        )
    })?;
    let Value::Object(m) = v else {
        bail!("{}: JSON, but not an object; {EXPECTED}", path.display());
    };
    doc_kind(path, m).map_err(|m| {
        anyhow::anyhow!(
            "{}: not a report input ({}); {EXPECTED}",
            path.display(),
            keys_of(&m)
        )
    })
}
