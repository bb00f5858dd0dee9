//! Workload files, read line by line so that million-request runs never hold them whole.
//!
//! Two JSONL formats, detected per line from its keys:
//! - LLMServingSim (`../shared/data/real-runs/*/workload.jsonl`): `arrival_time_ns` (offset from
//!   the first request), `input_tok_ids`, `output_toks`. Output lengths were pinned in those real
//!   runs (`min_tokens = max_tokens`, `ignore_eos`), so they are here too.
//! - plain: `arrival_s`, `prompt_len` or `prompt_token_ids`, `output_len`, optional
//!   `request_id`, `priority`, `cache_salt`. A `prompt_len` alone gets token ids drawn from the
//!   run's seed and the line number, so such prompts share no prefix.

use llm_emu_core::Nanos;
use serde::Deserialize;
use std::io::BufRead;
use std::sync::Arc;
use thiserror::Error;

/// One request of a workload.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadItem {
    pub request_id: String,
    pub arrival: Nanos,
    pub prompt_token_ids: Arc<[u32]>,
    pub output_len: u32,
    pub priority: i32,
    pub cache_salt: Option<String>,
}

/// A line that could not be used; the run goes on without it.
#[derive(Clone, Debug, Error, PartialEq)]
#[error("{source_name}:{line}: {message}")]
pub struct LineError {
    pub source_name: String,
    pub line: usize,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServingSimLine {
    arrival_time_ns: u64,
    input_tok_ids: Vec<u32>,
    output_toks: u32,
    #[serde(default)]
    input_toks: Option<u32>,
    #[serde(default)]
    #[allow(dead_code)]
    output_tok_ids: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlainLine {
    arrival_s: f64,
    #[serde(default)]
    prompt_len: Option<u32>,
    #[serde(default)]
    prompt_token_ids: Option<Vec<u32>>,
    output_len: u32,
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    priority: i32,
    #[serde(default)]
    cache_salt: Option<String>,
}

/// Token ids for a prompt given only its length: uniform in `[1000, 30000)`, a pure function
/// of (seed, line), so runs are reproducible.
pub fn synthetic_prompt(seed: u64, line: usize, len: u32) -> Arc<[u32]> {
    (0..len)
        .map(|i| {
            let h = splitmix3(seed, line as u64, i as u64);
            1000 + (h % 29000) as u32
        })
        .collect()
}

/// SplitMix64 over the three inputs: a tiny, stable mixer.
fn splitmix3(a: u64, b: u64, c: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ c.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Streams a workload file; yields items in file order, or the error of each bad line.
pub struct WorkloadReader<R: BufRead> {
    source_name: String,
    input: R,
    line_no: usize,
    seed: u64,
    last_arrival: Nanos,
    buf: String,
}

impl<R: BufRead> WorkloadReader<R> {
    pub fn new(source_name: impl Into<String>, input: R, seed: u64) -> Self {
        WorkloadReader {
            source_name: source_name.into(),
            input,
            line_no: 0,
            seed,
            last_arrival: Nanos::ZERO,
            buf: String::new(),
        }
    }

    fn err(&self, message: impl Into<String>) -> LineError {
        LineError {
            source_name: self.source_name.clone(),
            line: self.line_no,
            message: message.into(),
        }
    }

    fn parse(&self, text: &str) -> Result<WorkloadItem, LineError> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| self.err(format!("not valid JSON ({e}); truncated line?")))?;
        let index = self.line_no - 1;
        let item = if value.get("arrival_time_ns").is_some() {
            let l: ServingSimLine = serde_json::from_value(value)
                .map_err(|e| self.err(format!("LLMServingSim line: {e}")))?;
            if let Some(n) = l.input_toks {
                if n as usize != l.input_tok_ids.len() {
                    return Err(self.err(format!(
                        "input_toks is {n} but input_tok_ids has {} ids",
                        l.input_tok_ids.len()
                    )));
                }
            }
            WorkloadItem {
                request_id: format!("req-{index}"),
                arrival: Nanos(l.arrival_time_ns),
                prompt_token_ids: l.input_tok_ids.into(),
                output_len: l.output_toks,
                priority: 0,
                cache_salt: None,
            }
        } else {
            let l: PlainLine = serde_json::from_value(value)
                .map_err(|e| self.err(format!("plain workload line: {e}")))?;
            if !l.arrival_s.is_finite() || l.arrival_s < 0.0 {
                return Err(self.err(format!(
                    "arrival_s must be a finite number >= 0, got {}",
                    l.arrival_s
                )));
            }
            let prompt: Arc<[u32]> = match (l.prompt_token_ids, l.prompt_len) {
                (Some(ids), None) => ids.into(),
                (None, Some(n)) => synthetic_prompt(self.seed, index, n),
                (Some(ids), Some(n)) if ids.len() == n as usize => ids.into(),
                (Some(ids), Some(n)) => {
                    return Err(self.err(format!(
                        "prompt_len is {n} but prompt_token_ids has {} ids",
                        ids.len()
                    )))
                }
                (None, None) => return Err(self.err("needs `prompt_len` or `prompt_token_ids`")),
            };
            WorkloadItem {
                request_id: l.request_id.unwrap_or_else(|| format!("req-{index}")),
                arrival: Nanos::from_secs_f64(l.arrival_s),
                prompt_token_ids: prompt,
                output_len: l.output_len,
                priority: l.priority,
                cache_salt: l.cache_salt,
            }
        };
        if item.arrival < self.last_arrival {
            return Err(self.err(format!(
                "arrival {:.9} s is earlier than the previous line's {:.9} s: arrivals must not decrease",
                item.arrival.as_secs_f64(),
                self.last_arrival.as_secs_f64()
            )));
        }
        Ok(item)
    }
}

impl WorkloadReader<std::io::BufReader<std::fs::File>> {
    /// Opens a workload file for streaming; lines are named after `path` in errors.
    pub fn open(path: &std::path::Path, seed: u64) -> std::io::Result<Self> {
        let f = std::fs::File::open(path)?;
        Ok(WorkloadReader::new(
            path.display().to_string(),
            std::io::BufReader::with_capacity(1 << 20, f),
            seed,
        ))
    }
}

impl<R: BufRead> Iterator for WorkloadReader<R> {
    type Item = Result<WorkloadItem, LineError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.buf.clear();
            self.line_no += 1;
            match self.input.read_line(&mut self.buf) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => return Some(Err(self.err(format!("read error: {e}")))),
            }
            let text = self.buf.trim();
            if text.is_empty() {
                continue;
            }
            let parsed = self.parse(text);
            if let Ok(item) = &parsed {
                self.last_arrival = item.arrival;
            }
            return Some(parsed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Vec<Result<WorkloadItem, LineError>> {
        WorkloadReader::new("w.jsonl", text.as_bytes(), 1).collect()
    }

    #[test]
    fn reads_both_formats() {
        let items = read(concat!(
            "{\"input_toks\": 3, \"output_toks\": 5, \"arrival_time_ns\": 100, \"input_tok_ids\": [1,2,3], \"output_tok_ids\": [9]}\n",
            "\n",
            "{\"arrival_s\": 0.5, \"prompt_len\": 4, \"output_len\": 2, \"priority\": -1}\n",
            "{\"arrival_s\": 0.5, \"prompt_token_ids\": [7, 8], \"output_len\": 1, \"request_id\": \"x\", \"cache_salt\": \"s\"}\n",
        ));
        let items: Vec<WorkloadItem> = items.into_iter().map(Result::unwrap).collect();
        assert_eq!(items[0].arrival, Nanos(100));
        assert_eq!(&*items[0].prompt_token_ids, &[1, 2, 3]);
        assert_eq!(items[0].output_len, 5);
        assert_eq!(items[1].request_id, "req-2");
        assert_eq!(items[1].prompt_token_ids.len(), 4);
        assert_eq!(items[1].priority, -1);
        assert_eq!(items[1].arrival, Nanos(500_000_000));
        assert_eq!(items[2].request_id, "x");
        assert_eq!(items[2].cache_salt.as_deref(), Some("s"));
        // Synthetic prompts are reproducible and differ by line.
        assert_eq!(synthetic_prompt(1, 2, 4), items[1].prompt_token_ids);
        assert_ne!(synthetic_prompt(1, 3, 4), items[1].prompt_token_ids);
    }

    #[test]
    fn bad_lines_name_the_line_and_do_not_stop_the_rest() {
        let items = read(concat!(
            "{\"arrival_s\": 1.0, \"prompt_len\": 4, \"output_len\": 2}\n",
            "{\"arrival_s\": 0.5, \"prompt_len\": 4, \"output_len\": 2}\n",
            "{\"arrival_s\": 2.0, \"output_len\": 2}\n",
            "{\"arrival_s\": 2.0, \"prompt_len\": -4, \"output_len\": 2}\n",
            "{\"arrival_s\": 2.0, \"prompt_len\": 4, \"output_len\": 2, \"colour\": 1}\n",
            "{\"arrival_s\": 3.0, \"prompt_len\": 4, \"output_len\": 2}\n",
            "{\"arrival_s\": 4.0, \"prompt_l",
        ));
        assert!(items[0].is_ok());
        let e = items[1].as_ref().unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().starts_with("w.jsonl:2: arrival"), "{e}");
        assert!(items[2]
            .as_ref()
            .unwrap_err()
            .message
            .contains("prompt_len"));
        assert!(items[3].is_err());
        assert!(items[4].as_ref().unwrap_err().message.contains("colour"));
        assert!(items[5].is_ok());
        assert!(items[6].as_ref().unwrap_err().message.contains("truncated"));
        assert_eq!(items.len(), 7);
    }
}
