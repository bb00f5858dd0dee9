//! The run's summary (`--output-json`, keys as `vllm bench serve` writes them), the table on
//! stdout, and atomic file output.

use crate::driver::SimResult;
use crate::metrics::LatencyStats;
use llm_emu_core::{EngineConfig, Scheduler};
use serde_json::{Map, Value};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// The summary as a JSON object.
pub fn summary_json(
    res: &mut SimResult,
    sched: &Scheduler,
    cfg: &EngineConfig,
    latency: &str,
) -> Map<String, Value> {
    let mut m = Map::new();
    let dur = res.end.as_secs_f64();
    let per_s = |x: f64| if dur > 0.0 { x / dur } else { 0.0 };
    m.insert("completed".into(), res.completed.into());
    m.insert("failed".into(), res.failed.into());
    if res.aborted > 0 {
        m.insert("timed_out".into(), res.aborted.into());
    }
    m.insert("duration".into(), dur.into());
    m.insert("total_input_tokens".into(), res.total_input_tokens.into());
    m.insert("total_output_tokens".into(), res.total_output_tokens.into());
    m.insert(
        "request_throughput".into(),
        per_s(res.completed as f64).into(),
    );
    m.insert(
        "output_throughput".into(),
        per_s(res.total_output_tokens as f64).into(),
    );
    m.insert(
        "total_token_throughput".into(),
        per_s((res.total_input_tokens + res.total_output_tokens) as f64).into(),
    );
    res.stats.to_json(&mut m);
    m.insert("num_preemptions".into(), sched.num_preemptions().into());
    let p = sched.kv().prefix_cache_stats();
    let rate = if p.queries > 0 {
        p.hits as f64 / p.queries as f64
    } else {
        0.0
    };
    m.insert("prefix_cache_hit_rate".into(), rate.into());
    m.insert("num_steps".into(), res.num_steps.into());
    m.insert(
        "engine_config".into(),
        serde_json::to_value(cfg).expect("config serializes"),
    );
    m.insert("latency_model".into(), latency.into());
    // `fcfs`, or `sjf (not vLLM)`: a result from a policy vLLM lacks says so.
    m.insert(
        "scheduling_policy".into(),
        cfg.scheduling_policy.label().into(),
    );
    m
}

/// The table `vllm bench serve` prints, from the summary.
pub fn print_table(m: &Map<String, Value>, out: &mut impl Write) -> std::io::Result<()> {
    let f = |k: &str| m.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    writeln!(out, "{:=^50}", " Simulation Result ")?;
    writeln!(out, "{:<40}{:<10}", "Successful requests:", f("completed"))?;
    writeln!(out, "{:<40}{:<10}", "Failed requests:", f("failed"))?;
    if m.contains_key("timed_out") {
        writeln!(
            out,
            "{:<40}{:<10}",
            "  of which timed out (client):",
            f("timed_out")
        )?;
    }
    writeln!(
        out,
        "{:<40}{:<10.2}",
        "Benchmark duration (s):",
        f("duration")
    )?;
    writeln!(
        out,
        "{:<40}{:<10}",
        "Total input tokens:",
        f("total_input_tokens")
    )?;
    writeln!(
        out,
        "{:<40}{:<10}",
        "Total generated tokens:",
        f("total_output_tokens")
    )?;
    writeln!(
        out,
        "{:<40}{:<10.2}",
        "Request throughput (req/s):",
        f("request_throughput")
    )?;
    writeln!(
        out,
        "{:<40}{:<10.2}",
        "Output token throughput (tok/s):",
        f("output_throughput")
    )?;
    writeln!(
        out,
        "{:<40}{:<10.2}",
        "Total token throughput (tok/s):",
        f("total_token_throughput")
    )?;
    writeln!(out, "{:<40}{:<10}", "Preemptions:", f("num_preemptions"))?;
    writeln!(
        out,
        "{:<40}{:<10.4}",
        "Prefix cache hit rate:",
        f("prefix_cache_hit_rate")
    )?;
    writeln!(out, "{:<40}{:<10}", "Engine steps:", f("num_steps"))?;
    if let Some(p) = m.get("scheduling_policy").and_then(Value::as_str) {
        writeln!(out, "{:<40}{:<10}", "Scheduling policy:", p)?;
    }
    for (title, key) in [
        ("Time to First Token", "ttft"),
        ("Time per Output Token (excl. 1st token)", "tpot"),
        ("Inter-token Latency", "itl"),
        ("End-to-end Latency", "e2el"),
    ] {
        writeln!(out, "{:-^50}", title)?;
        for (label, stat) in [
            ("Mean", "mean"),
            ("Median", "median"),
            ("P90", "p90"),
            ("P99", "p99"),
        ] {
            writeln!(
                out,
                "{:<40}{:<10.2}",
                format!("{label} {} (ms):", key.to_uppercase()),
                f(&format!("{stat}_{key}_ms"))
            )?;
        }
    }
    writeln!(out, "{}", "=".repeat(50))
}

/// The client-side figures (`--frontend-latency`), under `client_side` in the summary: the same
/// `{stat}_{metric}_ms` keys, with the engine's own figures kept at the top level.
pub fn client_side_json(stats: &mut LatencyStats, frontend: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("frontend_latency".into(), frontend.into());
    stats.to_json(&mut m);
    m
}

/// The client-side section of the table, from the summary's `client_side` object (if any).
pub fn print_client_table(m: &Map<String, Value>, out: &mut impl Write) -> std::io::Result<()> {
    let Some(c) = m.get("client_side").and_then(Value::as_object) else {
        return Ok(());
    };
    let f = |k: &str| c.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    let fe = c
        .get("frontend_latency")
        .and_then(Value::as_str)
        .unwrap_or("?");
    writeln!(out, "{:=^50}", " Client side ")?;
    writeln!(out, "front end: {fe}")?;
    for key in ["ttft", "tpot", "itl", "e2el"] {
        for (label, stat) in [
            ("Mean", "mean"),
            ("Median", "median"),
            ("P90", "p90"),
            ("P99", "p99"),
        ] {
            writeln!(
                out,
                "{:<40}{:<10.2}",
                format!("{label} {} (ms):", key.to_uppercase()),
                f(&format!("{stat}_{key}_ms"))
            )?;
        }
    }
    writeln!(out, "{}", "=".repeat(50))
}

/// A file that appears at its path only once complete: written to a temporary sibling, renamed
/// into place by [`AtomicFile::commit`]. Dropped uncommitted, the temporary file is removed.
pub struct AtomicFile {
    path: PathBuf,
    tmp: PathBuf,
    writer: Option<BufWriter<File>>,
}

impl AtomicFile {
    pub fn create(path: &Path) -> std::io::Result<AtomicFile> {
        let name = path.file_name().ok_or_else(|| {
            std::io::Error::other(format!("{} is not a file path", path.display()))
        })?;
        let tmp = path.with_file_name(format!(
            ".{}.tmp-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        let writer = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        Ok(AtomicFile {
            path: path.to_path_buf(),
            tmp,
            writer: Some(writer),
        })
    }

    /// Flushes, syncs and renames into place.
    pub fn commit(mut self) -> std::io::Result<()> {
        let w = self.writer.take().expect("not yet committed");
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&self.tmp, &self.path)
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writer.as_mut().expect("not yet committed").write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.writer.as_mut().expect("not yet committed").flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.writer.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = AtomicFile::create(path)?;
    f.write_all(bytes)?;
    f.commit()
}
