//! Workload files, read line by line so that million-request runs never hold them whole.
//!
//! Three JSONL formats, detected per line from its keys:
//! - LLMServingSim (`../shared/data/real-runs/*/workload.jsonl`): `arrival_time_ns` (offset from
//!   the first request), `input_tok_ids`, `output_toks`. Output lengths were pinned in those real
//!   runs (`min_tokens = max_tokens`, `ignore_eos`), so they are here too.
//! - plain: `arrival_s`, `prompt_len` or `prompt_token_ids`, `output_len`, optional
//!   `request_id`, `priority`, `cache_salt`, `tenant` (or `user`, as the OpenAI field: who sent
//!   it, for per-tenant scheduling policies and routers). A `prompt_len` alone gets token ids drawn from the
//!   run's seed and the line number, so such prompts share no prefix.
//! - Mooncake trace (`timestamp` in ms, `input_length`, `output_length`, `hash_ids`): the
//!   prompt is built from its hash ids' token blocks ([`crate::mooncake_trace`]), so requests
//!   share the prefixes the trace records; without `hash_ids` it shares none.

use crate::mooncake_trace::{self, MOONCAKE_HASH_BLOCK_TOKENS};
use llm_emu_core::prompt::{PromptTokens, SyntheticPrompt};
use llm_emu_core::Nanos;
use serde::Deserialize;
use std::io::BufRead;
use std::sync::Arc;
use thiserror::Error;

/// The longest workload line read, in bytes (line ending excluded): 32 MiB. A line holding a
/// 1M-token prompt and its output ids as LLMServingSim writes them (at most 7 bytes per id)
/// stays under 16 MiB. Longer lines are skipped unread with a `file:line` error, so a run never
/// holds more than this of the file, whatever its shape.
pub const MAX_LINE_BYTES: usize = 32 << 20;

/// The latest arrival accepted, in seconds from time 0 (1e9 s, about 31.7 years). Virtual time
/// is whole nanoseconds in a `u64` (up to about 1.8e10 s); this bound leaves that range ten
/// times the room a run needs after its last arrival, so no time saturates.
pub const MAX_ARRIVAL_S: f64 = 1e9;

/// [`MAX_ARRIVAL_S`] in nanoseconds, for `arrival_time_ns`.
const MAX_ARRIVAL_NS: u64 = 1_000_000_000 * 1_000_000_000;

/// The prompt-length bound of a reader not told the engine's `max_model_len`
/// ([`WorkloadReader::with_max_model_len`]): 16M tokens, far beyond any model, small enough
/// that a synthetic prompt of that length (64 MiB of ids) can be allocated.
pub const DEFAULT_MAX_PROMPT_TOKENS: usize = 1 << 24;

/// One request of a workload.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadItem {
    pub request_id: String,
    pub arrival: Nanos,
    /// Given ids, or the rule of a prompt known only by its length ([`synthetic_prompt`]).
    pub prompt_token_ids: PromptTokens,
    pub output_len: u32,
    pub priority: i32,
    pub cache_salt: Option<String>,
    /// Who sent it (a `tenant` or `user` key; see `NewRequest::tenant`).
    pub tenant: Option<Arc<str>>,
}

/// What a [`LineError`] means for the rest of the file.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum LineErrorKind {
    /// This line is left out (counted and reported); the lines after it are read.
    Skipped,
    /// The input could not be read at this point (a directory, an I/O error): nothing more
    /// comes from it, and a run must not pretend it read the whole workload.
    Unreadable,
}

/// A line that could not be used, named `file:line`.
#[derive(Clone, Debug, Error, PartialEq)]
#[error("{source_name}:{line}: {message}")]
pub struct LineError {
    pub source_name: String,
    pub line: usize,
    pub message: String,
    pub kind: LineErrorKind,
}

/// Every key of both formats, read in one pass straight from the line's text (no intermediate
/// JSON tree, so a line costs about its own size); [`WorkloadReader::parse`] then checks that
/// the keys present form one of the two formats.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLine {
    // LLMServingSim.
    arrival_time_ns: Option<u64>,
    input_tok_ids: Option<Vec<u32>>,
    output_toks: Option<u32>,
    input_toks: Option<u32>,
    output_tok_ids: Option<serde::de::IgnoredAny>,
    // Plain.
    arrival_s: Option<f64>,
    prompt_len: Option<u32>,
    prompt_token_ids: Option<Vec<u32>>,
    output_len: Option<u32>,
    request_id: Option<String>,
    priority: Option<i32>,
    cache_salt: Option<String>,
    tenant: Option<String>,
    user: Option<String>,
    // Mooncake trace.
    timestamp: Option<f64>,
    #[serde(default, deserialize_with = "whole_u32")]
    input_length: Option<u32>,
    #[serde(default, deserialize_with = "whole_u32")]
    output_length: Option<u32>,
    hash_ids: Option<Vec<u64>>,
}

/// A count written as an integer or as a float with no fractional part (`600.0`, as pandas
/// writes an integer column that held a missing value), from 0 to `u32::MAX`.
fn whole_u32<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    crate::whole_number::whole_u64(&n)
        .and_then(|v| u32::try_from(v).ok())
        .map(Some)
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "expected a whole number from 0 to {}, got {n}",
                u32::MAX
            ))
        })
}

impl RawLine {
    /// The plain-format keys present (to refuse a line mixing the formats).
    fn plain_keys(&self) -> Vec<&'static str> {
        [
            ("arrival_s", self.arrival_s.is_some()),
            ("prompt_len", self.prompt_len.is_some()),
            ("prompt_token_ids", self.prompt_token_ids.is_some()),
            ("output_len", self.output_len.is_some()),
            ("request_id", self.request_id.is_some()),
            ("priority", self.priority.is_some()),
            ("cache_salt", self.cache_salt.is_some()),
            ("tenant", self.tenant.is_some()),
            ("user", self.user.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, present)| present.then_some(k))
        .collect()
    }

    /// The Mooncake-trace keys present.
    fn mooncake_keys(&self) -> Vec<&'static str> {
        [
            ("timestamp", self.timestamp.is_some()),
            ("input_length", self.input_length.is_some()),
            ("output_length", self.output_length.is_some()),
            ("hash_ids", self.hash_ids.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, present)| present.then_some(k))
        .collect()
    }

    /// The LLMServingSim-only keys present besides `arrival_time_ns`.
    fn serving_sim_keys(&self) -> Vec<&'static str> {
        [
            ("input_tok_ids", self.input_tok_ids.is_some()),
            ("output_toks", self.output_toks.is_some()),
            ("input_toks", self.input_toks.is_some()),
            ("output_tok_ids", self.output_tok_ids.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, present)| present.then_some(k))
        .collect()
    }
}

/// Token ids for a prompt given only its length: uniform in `[1000, 30000)`, a pure function
/// of (seed, line), so runs are reproducible. Carried as that rule: the ids are drawn only by
/// readers of every id (a client sending them, KV cache events). `line` is the prompt's own:
/// no other prompt of a run has it ([`SyntheticPrompt::unique_key`]; a workload comes from
/// one source, whose lines are numbered once).
pub fn synthetic_prompt(seed: u64, line: usize, len: u32) -> PromptTokens {
    SyntheticPrompt {
        stream: seed,
        key: line as u64,
        len: len as usize,
        unique_key: true,
    }
    .into()
}

/// The ids of [`synthetic_prompt`], drawn now (for prompts built of several pieces).
pub fn synthetic_ids(seed: u64, line: usize, len: u32) -> Arc<[u32]> {
    synthetic_prompt(seed, line, len).to_arc()
}

/// vLLM's check of a decoder prompt's length (`InputProcessor._validate_prompt_len`), with its
/// messages: empty, longer than `max_model_len`, or exactly `max_model_len` (no room for the
/// one output token a generation needs).
pub fn check_prompt_len(prompt_len: usize, max_model_len: usize) -> Result<(), String> {
    if prompt_len == 0 {
        return Err("The decoder prompt cannot be empty".into());
    }
    if prompt_len > max_model_len {
        return Err(format!(
            "The decoder prompt (length {prompt_len}) is longer than the maximum model length of \
             {max_model_len}. Make sure that `max_model_len` is no smaller than the number of \
             text tokens."
        ));
    }
    if prompt_len == max_model_len {
        return Err(format!(
            "The decoder prompt (length {prompt_len}) plus the number of requested output tokens \
             (at least 1) is longer than the maximum model length of {max_model_len}. Make sure \
             that `max_model_len` is no smaller than the number of text tokens (prompt + \
             requested output tokens)."
        ));
    }
    Ok(())
}

/// The output length a workload pins (as `max_tokens`) checked as `vllm serve` checks a
/// request's `max_tokens`: at least 1 (`SamplingParams`), and room for it after the prompt
/// (the frontend's context-length check, with its message). `prompt_len` passed
/// [`check_prompt_len`].
pub fn check_output_len(
    prompt_len: usize,
    output_len: u32,
    max_model_len: usize,
) -> Result<(), String> {
    if output_len == 0 {
        return Err("max_tokens must be at least 1, got 0.".into());
    }
    let total = prompt_len as u64 + u64::from(output_len);
    if total > max_model_len as u64 {
        return Err(format!(
            "This model's maximum context length is {max_model_len} tokens. However, you \
             requested {output_len} output tokens and your prompt contains {prompt_len} input \
             tokens, for a total of {total} tokens. Please reduce the length of the input prompt \
             or the number of requested output tokens."
        ));
    }
    Ok(())
}

/// What one bounded read of a line found.
enum RawRead {
    Eof,
    /// The line is in the buffer (without its `\n`).
    Line,
    /// The line has this many bytes, more than the cap; it was consumed, not stored.
    TooLong(usize),
}

/// Streams a workload file; yields items in file order, or the error of each bad line. After
/// an [`LineErrorKind::Unreadable`] error it yields nothing more.
pub struct WorkloadReader<R: BufRead> {
    source_name: String,
    input: R,
    line_no: usize,
    seed: u64,
    max_model_len: usize,
    max_line_bytes: usize,
    hash_block_tokens: usize,
    /// The first Mooncake line's `timestamp` (ms), from which that format's times count.
    mooncake_origin: std::cell::OnceCell<f64>,
    last_arrival: Nanos,
    buf: Vec<u8>,
    done: bool,
}

impl<R: BufRead> WorkloadReader<R> {
    pub fn new(source_name: impl Into<String>, input: R, seed: u64) -> Self {
        WorkloadReader {
            source_name: source_name.into(),
            input,
            line_no: 0,
            seed,
            max_model_len: DEFAULT_MAX_PROMPT_TOKENS,
            max_line_bytes: MAX_LINE_BYTES,
            hash_block_tokens: MOONCAKE_HASH_BLOCK_TOKENS,
            mooncake_origin: std::cell::OnceCell::new(),
            last_arrival: Nanos::ZERO,
            buf: Vec::new(),
            done: false,
        }
    }

    /// Refuses prompts the engine could never hold (vLLM's messages, per line) before their
    /// token ids are made.
    pub fn with_max_model_len(mut self, max_model_len: usize) -> Self {
        self.max_model_len = max_model_len;
        self
    }

    /// Tokens per `hash_ids` entry of Mooncake trace lines (default
    /// [`MOONCAKE_HASH_BLOCK_TOKENS`], the published traces'); at least 1.
    pub fn with_hash_block_tokens(mut self, tokens: usize) -> Self {
        assert!(tokens >= 1, "a hash block holds at least one token");
        self.hash_block_tokens = tokens;
        self
    }

    /// Replaces [`MAX_LINE_BYTES`] (tests use small caps).
    pub fn with_max_line_bytes(mut self, max_line_bytes: usize) -> Self {
        self.max_line_bytes = max_line_bytes;
        self
    }

    fn err(&self, message: impl Into<String>) -> LineError {
        LineError {
            source_name: self.source_name.clone(),
            line: self.line_no,
            message: message.into(),
            kind: LineErrorKind::Skipped,
        }
    }

    /// Reads the next line into `buf`, storing at most `max_line_bytes` of it.
    fn read_raw_line(&mut self) -> std::io::Result<RawRead> {
        self.buf.clear();
        let (mut total, mut any) = (0usize, false);
        loop {
            let chunk = match self.input.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                break;
            }
            any = true;
            let (take, newline) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (i, true),
                None => (chunk.len(), false),
            };
            if total + take <= self.max_line_bytes {
                self.buf.extend_from_slice(&chunk[..take]);
            } else {
                self.buf.clear();
            }
            total += take;
            self.input.consume(take + usize::from(newline));
            if newline {
                break;
            }
        }
        Ok(match (any, total > self.max_line_bytes) {
            (false, _) => RawRead::Eof,
            (true, true) => RawRead::TooLong(total),
            (true, false) => RawRead::Line,
        })
    }

    fn parse(&self, text: &str) -> Result<WorkloadItem, LineError> {
        let l: RawLine = serde_json::from_str(text).map_err(|e| {
            if e.is_syntax() || e.is_eof() {
                self.err(format!("not valid JSON ({e}); truncated line?"))
            } else if text.contains("\"arrival_time_ns\"") {
                self.err(format!("LLMServingSim line: {e}"))
            } else if ["\"hash_ids\"", "\"input_length\"", "\"timestamp\""]
                .iter()
                .any(|k| text.contains(k))
            {
                self.err(format!("Mooncake trace line: {e}"))
            } else {
                self.err(format!("plain workload line: {e}"))
            }
        })?;
        let index = self.line_no - 1;
        let item = if let Some(arrival_ns) = l.arrival_time_ns {
            let mixed: Vec<String> = [
                ("plain-format", l.plain_keys()),
                ("Mooncake trace", l.mooncake_keys()),
            ]
            .into_iter()
            .filter(|(_, keys)| !keys.is_empty())
            .map(|(format, keys)| format!("{format} keys: {}", keys.join(", ")))
            .collect();
            if !mixed.is_empty() {
                return Err(self.err(format!(
                    "LLMServingSim line (it has `arrival_time_ns`) also has {}",
                    mixed.join(" and ")
                )));
            }
            if arrival_ns > MAX_ARRIVAL_NS {
                return Err(self.err(format!(
                    "arrival_time_ns must be at most {MAX_ARRIVAL_NS} ({MAX_ARRIVAL_S:e} s), got \
                     {arrival_ns}"
                )));
            }
            let ids = l
                .input_tok_ids
                .ok_or_else(|| self.err("LLMServingSim line: missing field `input_tok_ids`"))?;
            let output_len = l
                .output_toks
                .ok_or_else(|| self.err("LLMServingSim line: missing field `output_toks`"))?;
            if let Some(n) = l.input_toks {
                if n as usize != ids.len() {
                    return Err(self.err(format!(
                        "input_toks is {n} but input_tok_ids has {} ids",
                        ids.len()
                    )));
                }
            }
            check_prompt_len(ids.len(), self.max_model_len).map_err(|m| self.err(m))?;
            WorkloadItem {
                request_id: format!("req-{index}"),
                arrival: Nanos(arrival_ns),
                prompt_token_ids: ids.into(),
                output_len,
                priority: 0,
                cache_salt: None,
                tenant: None,
            }
        } else if !l.mooncake_keys().is_empty() {
            self.mooncake_item(l, index)?
        } else {
            let other = l.serving_sim_keys();
            if !other.is_empty() {
                return Err(self.err(format!(
                    "plain workload line has LLMServingSim keys ({}) but no `arrival_time_ns`",
                    other.join(", ")
                )));
            }
            let arrival_s = l
                .arrival_s
                .ok_or_else(|| self.err("plain workload line: missing field `arrival_s`"))?;
            let output_len = l
                .output_len
                .ok_or_else(|| self.err("plain workload line: missing field `output_len`"))?;
            if !arrival_s.is_finite() || !(0.0..=MAX_ARRIVAL_S).contains(&arrival_s) {
                return Err(self.err(format!(
                    "arrival_s must be a finite number in [0, {MAX_ARRIVAL_S:e}] s, got {arrival_s:?}"
                )));
            }
            let prompt_len = match (&l.prompt_token_ids, l.prompt_len) {
                (Some(ids), None) => ids.len(),
                (None, Some(n)) => n as usize,
                (Some(ids), Some(n)) if ids.len() == n as usize => ids.len(),
                (Some(ids), Some(n)) => {
                    return Err(self.err(format!(
                        "prompt_len is {n} but prompt_token_ids has {} ids",
                        ids.len()
                    )))
                }
                (None, None) => return Err(self.err("needs `prompt_len` or `prompt_token_ids`")),
            };
            // Before any synthetic ids are made: a length is only a number until here.
            check_prompt_len(prompt_len, self.max_model_len).map_err(|m| self.err(m))?;
            let tenant = match (l.tenant, l.user) {
                (Some(t), Some(u)) if t != u => {
                    return Err(self.err(format!(
                        "`tenant` ({t:?}) and `user` ({u:?}) differ: give one of them"
                    )))
                }
                (t, u) => t.or(u).map(Arc::from),
            };
            let prompt: PromptTokens = match l.prompt_token_ids {
                Some(ids) => ids.into(),
                None => synthetic_prompt(self.seed, index, prompt_len as u32),
            };
            WorkloadItem {
                request_id: l.request_id.unwrap_or_else(|| format!("req-{index}")),
                arrival: Nanos::from_secs_f64(arrival_s),
                prompt_token_ids: prompt,
                output_len,
                priority: l.priority.unwrap_or(0),
                cache_salt: l.cache_salt,
                tenant,
            }
        };
        check_output_len(
            item.prompt_token_ids.len(),
            item.output_len,
            self.max_model_len,
        )
        .map_err(|m| self.err(m))?;
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

impl<R: BufRead> WorkloadReader<R> {
    /// A Mooncake trace line (it has at least one of the format's keys and no
    /// `arrival_time_ns`).
    fn mooncake_item(&self, l: RawLine, index: usize) -> Result<WorkloadItem, LineError> {
        let mut other = l.plain_keys();
        other.extend(l.serving_sim_keys());
        if !other.is_empty() {
            return Err(self.err(format!(
                "Mooncake trace line (it has {}) also has keys of another format: {}",
                l.mooncake_keys().join(", "),
                other.join(", ")
            )));
        }
        let missing = |k: &str| self.err(format!("Mooncake trace line: missing field `{k}`"));
        let timestamp_ms = l.timestamp.ok_or_else(|| missing("timestamp"))?;
        let input_length = l.input_length.ok_or_else(|| missing("input_length"))? as usize;
        let output_len = l.output_length.ok_or_else(|| missing("output_length"))?;
        if !timestamp_ms.is_finite() || timestamp_ms < 0.0 {
            return Err(self.err(format!(
                "timestamp must be a finite number of milliseconds, at least 0, got \
                 {timestamp_ms:?}"
            )));
        }
        // The format's timestamps count from the trace's first request: a slice of a trace
        // (or one stamped in epoch milliseconds) starts when its first line does.
        let origin = *self.mooncake_origin.get_or_init(|| timestamp_ms);
        let since_first = timestamp_ms - origin;
        if since_first < 0.0 {
            return Err(self.err(format!(
                "timestamp {timestamp_ms:?} ms is earlier than the first line's {origin:?} ms: \
                 timestamps must not decrease"
            )));
        }
        let max_ms = MAX_ARRIVAL_S * 1e3;
        if since_first > max_ms {
            return Err(self.err(format!(
                "timestamp {timestamp_ms:?} is more than {max_ms:e} ms after the first \
                 line's {origin:?}"
            )));
        }
        // Before any ids are made: a length is only a number until here.
        check_prompt_len(input_length, self.max_model_len).map_err(|m| self.err(m))?;
        let prompt = match l.hash_ids.as_deref() {
            None | Some([]) => synthetic_prompt(self.seed, index, input_length as u32),
            Some(ids) => {
                mooncake_trace::hash_id_prompt(self.seed, ids, input_length, self.hash_block_tokens)
                    .map_err(|m| self.err(m))?
            }
        };
        Ok(WorkloadItem {
            request_id: format!("req-{index}"),
            // Milliseconds to nanoseconds in one rounding (whole milliseconds stay exact).
            arrival: Nanos((since_first * 1e6).round() as u64),
            prompt_token_ids: prompt,
            output_len,
            priority: 0,
            cache_salt: None,
            tenant: None,
        })
    }
}

impl WorkloadReader<std::io::BufReader<std::fs::File>> {
    /// Opens a workload file for streaming; lines are named after `path` in errors. A path
    /// that is not a regular file (a directory, a FIFO…) is refused here, before any read.
    pub fn open(path: &std::path::Path, seed: u64) -> std::io::Result<Self> {
        let f = std::fs::File::open(path)?;
        let meta = f.metadata()?;
        if meta.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::IsADirectory,
                "is a directory, not a workload file",
            ));
        }
        if !meta.is_file() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "is not a regular file",
            ));
        }
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
        while !self.done {
            self.line_no += 1;
            let too_long = match self.read_raw_line() {
                Ok(RawRead::Eof) => {
                    self.done = true;
                    return None;
                }
                Ok(RawRead::Line) => None,
                Ok(RawRead::TooLong(n)) => Some(n),
                Err(e) => {
                    self.done = true;
                    return Some(Err(LineError {
                        kind: LineErrorKind::Unreadable,
                        ..self.err(format!("read error: {e}"))
                    }));
                }
            };
            if let Some(n) = too_long {
                return Some(Err(self.err(format!(
                    "line of {n} bytes is longer than the limit of {} bytes; skipped unread",
                    self.max_line_bytes
                ))));
            }
            let bytes = match self.line_no {
                1 => self
                    .buf
                    .strip_prefix(llm_emu_perf::text_file::UTF8_BOM.as_bytes())
                    .unwrap_or(&self.buf[..]),
                _ => &self.buf[..],
            };
            let text = match std::str::from_utf8(bytes) {
                Ok(t) => t.trim(),
                Err(e) => {
                    return Some(Err(self.err(format!(
                        "not UTF-8 text (invalid byte at offset {})",
                        e.valid_up_to()
                    ))))
                }
            };
            if text.is_empty() {
                continue;
            }
            let parsed = self.parse(text);
            if let Ok(item) = &parsed {
                self.last_arrival = item.arrival;
            }
            return Some(parsed);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Vec<Result<WorkloadItem, LineError>> {
        WorkloadReader::new("w.jsonl", text.as_bytes(), 1).collect()
    }

    #[test]
    fn a_tenant_comes_from_tenant_or_user() {
        let items = read(concat!(
            "{\"arrival_s\": 0, \"prompt_len\": 2, \"output_len\": 1, \"tenant\": \"a\"}\n",
            "{\"arrival_s\": 0, \"prompt_len\": 2, \"output_len\": 1, \"user\": \"b\"}\n",
            "{\"arrival_s\": 0, \"prompt_len\": 2, \"output_len\": 1, \"tenant\": \"c\", \"user\": \"c\"}\n",
            "{\"arrival_s\": 0, \"prompt_len\": 2, \"output_len\": 1, \"tenant\": \"c\", \"user\": \"d\"}\n",
            "{\"arrival_s\": 0, \"prompt_len\": 2, \"output_len\": 1}\n",
        ));
        let tenant = |i: usize| {
            items[i]
                .as_ref()
                .unwrap()
                .tenant
                .as_deref()
                .map(str::to_string)
        };
        assert_eq!(tenant(0).as_deref(), Some("a"));
        assert_eq!(tenant(1).as_deref(), Some("b"));
        assert_eq!(tenant(2).as_deref(), Some("c"));
        let e = items[3].as_ref().unwrap_err();
        assert!(e.to_string().contains("differ"), "{e}");
        assert_eq!(tenant(4), None);
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
        assert_eq!(*items[0].prompt_token_ids.ids(), [1, 2, 3]);
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
    fn reads_mooncake_trace_lines_with_their_shared_prefixes() {
        let text = concat!(
            "{\"timestamp\": 0, \"input_length\": 1100, \"output_length\": 5, \"hash_ids\": [0, 1, 2]}\n",
            "{\"timestamp\": 3052, \"input_length\": 1030, \"output_length\": 7, \"hash_ids\": [0, 1, 3]}\n",
            "{\"timestamp\": 3052.5, \"input_length\": 20, \"output_length\": 1}\n",
            "{\"timestamp\": 4000, \"input_length\": 20, \"output_length\": 1, \"hash_ids\": []}\n",
            "{\"timestamp\": 4000, \"input_length\": 600.0, \"output_length\": 2.0, \"hash_ids\": [0, 1]}\n",
        );
        let items: Vec<WorkloadItem> = read(text).into_iter().map(Result::unwrap).collect();
        assert_eq!(items[0].arrival, Nanos(0));
        assert_eq!(items[1].arrival, Nanos(3_052_000_000));
        assert_eq!(items[2].arrival, Nanos(3_052_500_000));
        assert_eq!(items[1].request_id, "req-1");
        assert_eq!(items[1].output_len, 7);
        let (a, b) = (
            items[0].prompt_token_ids.ids(),
            items[1].prompt_token_ids.ids(),
        );
        assert_eq!((a.len(), b.len()), (1100, 1030));
        assert_eq!(
            a[..1024],
            b[..1024],
            "hash ids 0 and 1: 1,024 shared tokens"
        );
        assert_ne!(a[1024..1030], b[1024..1030]);
        // Whole numbers written as floats are whole numbers.
        assert_eq!(items[4].prompt_token_ids.len(), 600);
        assert_eq!(items[4].output_len, 2);
        // Without hash ids (or with none), a line's prompt shares nothing, as a `prompt_len`.
        assert_eq!(items[2].prompt_token_ids, synthetic_prompt(1, 2, 20));
        assert_eq!(items[3].prompt_token_ids, synthetic_prompt(1, 3, 20));
        // Another block size: the same ids stand for blocks of that many tokens.
        let e = WorkloadReader::new("w", text.as_bytes(), 1)
            .with_hash_block_tokens(16)
            .next()
            .unwrap()
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("does not fit 3 hash_ids of 16 tokens"),
            "{e}"
        );
        let line = "{\"timestamp\": 0, \"input_length\": 40, \"output_length\": 1, \"hash_ids\": [0, 1, 2]}";
        let small = WorkloadReader::new("w", line.as_bytes(), 1)
            .with_hash_block_tokens(16)
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(small.prompt_token_ids.len(), 40);
        assert_eq!(
            small.prompt_token_ids.ids()[..16],
            a[..16],
            "hash id 0 begins alike"
        );
        assert_eq!(
            small.prompt_token_ids.ids()[16..32],
            a[512..528],
            "hash id 1 begins alike"
        );
    }

    #[test]
    fn mooncake_timestamps_count_from_the_first_line() {
        let items = read(concat!(
            "{\"timestamp\": 1700000000000, \"input_length\": 10, \"output_length\": 1}\n",
            "{\"timestamp\": 1700000001500.5, \"input_length\": 10, \"output_length\": 1}\n",
            "{\"timestamp\": 1699999999999, \"input_length\": 10, \"output_length\": 1}\n",
            "{\"timestamp\": 1e300, \"input_length\": 10, \"output_length\": 1}\n",
        ));
        assert_eq!(items[0].as_ref().unwrap().arrival, Nanos(0));
        assert_eq!(items[1].as_ref().unwrap().arrival, Nanos(1_500_500_000));
        let e = items[2].as_ref().unwrap_err().to_string();
        assert!(
            e.contains("earlier than the first line's 1700000000000.0 ms"),
            "{e}"
        );
        let e = items[3].as_ref().unwrap_err().to_string();
        assert!(
            e.contains("more than 1e12 ms after the first line's"),
            "{e}"
        );
    }

    #[test]
    fn bad_mooncake_lines_are_named() {
        let items = read(concat!(
            "{\"timestamp\": 0, \"input_length\": 1100, \"output_length\": 5, \"hash_ids\": [0, 1]}\n",
            "{\"timestamp\": 0, \"input_length\": 10, \"hash_ids\": [0]}\n",
            "{\"input_length\": 10, \"output_length\": 1}\n",
            "{\"timestamp\": -1, \"input_length\": 10, \"output_length\": 1}\n",
            "{\"timestamp\": 0, \"input_length\": 10, \"output_length\": 1, \"prompt_len\": 10}\n",
            "{\"timestamp\": 0, \"input_length\": -10, \"output_length\": 1}\n",
            "{\"timestamp\": 0, \"input_length\": 10, \"output_length\": 1, \"input_text\": \"hi\"}\n",
            "{\"timestamp\": 0, \"input_length\": 0, \"output_length\": 1, \"hash_ids\": [0]}\n",
            "{\"timestamp\": 0, \"input_length\": 10, \"output_length\": 1, \"hash_ids\": [-1]}\n",
            "{\"timestamp\": 0, \"input_length\": 10.5, \"output_length\": 1}\n",
            "{\"arrival_time_ns\": 0, \"input_tok_ids\": [1], \"output_toks\": 1, \"hash_ids\": [0]}\n",
        ));
        let msg = |i: usize| items[i].as_ref().unwrap_err().to_string();
        assert!(
            msg(0).contains("w.jsonl:1: input_length 1100 does not fit 2 hash_ids"),
            "{}",
            msg(0)
        );
        assert!(
            msg(1).contains("missing field `output_length`"),
            "{}",
            msg(1)
        );
        assert!(msg(2).contains("missing field `timestamp`"), "{}", msg(2));
        assert!(
            msg(3).contains("timestamp must be a finite number"),
            "{}",
            msg(3)
        );
        assert!(
            msg(4).contains("also has keys of another format: prompt_len"),
            "{}",
            msg(4)
        );
        assert!(
            msg(5).starts_with("w.jsonl:6: Mooncake trace line:"),
            "{}",
            msg(5)
        );
        assert!(msg(6).contains("unknown field `input_text`"), "{}", msg(6));
        assert!(msg(7).contains("cannot be empty"), "{}", msg(7));
        assert!(
            msg(8).starts_with("w.jsonl:9: Mooncake trace line:"),
            "{}",
            msg(8)
        );
        assert!(
            msg(9).contains("expected a whole number from 0 to 4294967295, got 10.5"),
            "{}",
            msg(9)
        );
        assert!(
            msg(10).contains("(it has `arrival_time_ns`) also has Mooncake trace keys: hash_ids"),
            "{}",
            msg(10)
        );
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

    /// A source whose every read fails, as reading a directory does (EISDIR).
    struct FailingReader;

    impl std::io::Read for FailingReader {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::new(
                std::io::ErrorKind::IsADirectory,
                "Is a directory",
            ))
        }
    }

    #[test]
    fn an_unreadable_input_is_one_error_then_the_end() {
        // Used to yield a fresh error for every line number, forever.
        let input = std::io::BufReader::new(FailingReader);
        let items: Vec<_> = WorkloadReader::new("d", input, 1).take(10).collect();
        assert_eq!(items.len(), 1);
        let e = items[0].as_ref().unwrap_err();
        assert_eq!(e.kind, LineErrorKind::Unreadable);
        assert!(e.to_string().starts_with("d:1: read error"), "{e}");
    }

    #[test]
    fn a_directory_is_refused_when_opened() {
        let dir = std::env::temp_dir();
        let e = WorkloadReader::open(&dir, 1).err().expect("a directory");
        assert_eq!(e.kind(), std::io::ErrorKind::IsADirectory);
        assert!(e.to_string().contains("is a directory"), "{e}");
    }

    #[test]
    fn absurd_prompt_lengths_are_refused_before_any_allocation() {
        // prompt_len 4294967295 used to build a 17 GB prompt and abort.
        let items: Vec<_> = WorkloadReader::new(
            "w.jsonl",
            concat!(
                "{\"arrival_s\": 0, \"prompt_len\": 4294967295, \"output_len\": 1}\n",
                "{\"arrival_s\": 0, \"prompt_len\": 4096, \"output_len\": 1}\n",
                "{\"arrival_s\": 0, \"prompt_len\": 4097, \"output_len\": 1}\n",
                "{\"arrival_s\": 0, \"prompt_len\": 4095, \"output_len\": 1}\n",
            )
            .as_bytes(),
            1,
        )
        .with_max_model_len(4096)
        .collect();
        let msg = |i: usize| items[i].as_ref().unwrap_err().to_string();
        assert_eq!(
            msg(0),
            "w.jsonl:1: The decoder prompt (length 4294967295) is longer than the maximum model \
             length of 4096. Make sure that `max_model_len` is no smaller than the number of text \
             tokens."
        );
        assert!(msg(1).starts_with("w.jsonl:2: The decoder prompt (length 4096) plus the number of requested output tokens (at least 1)"), "{}", msg(1));
        assert!(msg(2).starts_with("w.jsonl:3: The decoder prompt (length 4097) is longer"));
        assert_eq!(items[3].as_ref().unwrap().prompt_token_ids.len(), 4095);
        let items: Vec<_> = WorkloadReader::new(
            "w.jsonl",
            "{\"arrival_s\": 0, \"prompt_len\": 96, \"output_len\": 4294967295}\n".as_bytes(),
            1,
        )
        .with_max_model_len(4096)
        .collect();
        assert_eq!(
            items[0].as_ref().unwrap_err().to_string(),
            "w.jsonl:1: This model's maximum context length is 4096 tokens. However, you requested \
             4294967295 output tokens and your prompt contains 96 input tokens, for a total of \
             4294967391 tokens. Please reduce the length of the input prompt or the number of \
             requested output tokens."
        );
        // Without an engine limit, the default bound still holds.
        let items = read("{\"arrival_s\": 0, \"prompt_len\": 4294967295, \"output_len\": 1}\n");
        assert!(items[0]
            .as_ref()
            .unwrap_err()
            .message
            .contains("maximum model length of 16777216"));
    }

    #[test]
    fn empty_prompts_and_zero_outputs_are_named_by_line() {
        // Used to reach the engine and be reported by request id only.
        let items = read(concat!(
            "{\"arrival_s\": 0, \"prompt_len\": 0, \"output_len\": 1, \"request_id\": \"a\"}\n",
            "{\"arrival_s\": 0, \"prompt_token_ids\": [], \"output_len\": 1}\n",
            "{\"arrival_time_ns\": 0, \"input_tok_ids\": [], \"output_toks\": 1}\n",
            "{\"arrival_s\": 0, \"prompt_len\": 3, \"output_len\": 0}\n",
        ));
        for (i, line) in [(0, 1), (1, 2), (2, 3)] {
            assert_eq!(
                items[i].as_ref().unwrap_err().to_string(),
                format!("w.jsonl:{line}: The decoder prompt cannot be empty")
            );
        }
        assert_eq!(
            items[3].as_ref().unwrap_err().to_string(),
            "w.jsonl:4: max_tokens must be at least 1, got 0."
        );
    }

    #[test]
    fn overlong_lines_are_skipped_unread_and_the_next_line_is_read() {
        let long = format!(
            "{{\"arrival_s\": 0, \"prompt_token_ids\": [{}1], \"output_len\": 1}}\n",
            "1, ".repeat(100)
        );
        let text =
            format!("{long}{{\"arrival_s\": 1, \"prompt_len\": 2, \"output_len\": 1}}\n{long}");
        let items: Vec<_> = WorkloadReader::new("w.jsonl", text.as_bytes(), 1)
            .with_max_line_bytes(200)
            .collect();
        assert_eq!(items.len(), 3);
        let e = items[0].as_ref().unwrap_err().to_string();
        assert!(
            e.starts_with("w.jsonl:1: line of 358 bytes is longer than the limit of 200 bytes"),
            "{e}"
        );
        assert_eq!(items[1].as_ref().unwrap().prompt_token_ids.len(), 2);
        // The last line, without a final newline, is measured too.
        assert!(items[2]
            .as_ref()
            .unwrap_err()
            .to_string()
            .starts_with("w.jsonl:3: line of 358"));
        // A reader with the default cap reads the same line.
        assert!(read(&long)[0].is_ok());
    }

    #[test]
    fn a_byte_order_mark_is_stripped() {
        let items = read("\u{feff}{\"arrival_s\": 0, \"prompt_len\": 2, \"output_len\": 1}\r\n");
        assert_eq!(items.len(), 1);
        assert!(items[0].is_ok(), "{:?}", items[0]);
        // Only at the start of the file.
        let items = read("{\"arrival_s\": 0, \"prompt_len\": 2, \"output_len\": 1}\n\u{feff}{}\n");
        assert!(items[1]
            .as_ref()
            .unwrap_err()
            .message
            .contains("not valid JSON"));
    }

    #[test]
    fn arrivals_must_be_finite_non_negative_and_bounded() {
        // 1e300 s used to saturate to u64::MAX ns silently.
        let items = read(concat!(
            "{\"arrival_s\": 1e300, \"prompt_len\": 2, \"output_len\": 1}\n",
            "{\"arrival_s\": -1, \"prompt_len\": 2, \"output_len\": 1}\n",
            "{\"arrival_s\": 1000000000.5, \"prompt_len\": 2, \"output_len\": 1}\n",
            "{\"arrival_time_ns\": 18446744073709551615, \"input_tok_ids\": [1], \"output_toks\": 1}\n",
            "{\"arrival_s\": 1000000000, \"prompt_len\": 2, \"output_len\": 1}\n",
        ));
        for (i, item) in items[..4].iter().enumerate() {
            let e = item.as_ref().unwrap_err();
            assert_eq!(e.line, i + 1);
            assert!(e.message.contains("1e9"), "{e}");
        }
        assert!(items[0]
            .as_ref()
            .unwrap_err()
            .message
            .ends_with("got 1e300"));
        assert_eq!(items[4].as_ref().unwrap().arrival, Nanos(MAX_ARRIVAL_NS));
    }

    #[test]
    fn non_utf8_and_mixed_format_lines_are_skipped_alone() {
        let mut bytes =
            b"{\"arrival_s\": 0, \"prompt_len\": 2, \"output_len\": 1, \"cache_salt\": \"\xff\"}\n"
                .to_vec();
        bytes.extend_from_slice(
            b"{\"arrival_time_ns\": 0, \"input_tok_ids\": [1], \"output_toks\": 1, \"arrival_s\": 0}\n",
        );
        bytes.extend_from_slice(b"{\"arrival_s\": 0, \"input_tok_ids\": [1], \"output_len\": 1}\n");
        bytes.extend_from_slice(b"[1, 2]\n");
        bytes.extend_from_slice(b"{\"arrival_s\": 0, \"prompt_len\": 2, \"output_len\": 1}\n");
        let items: Vec<_> = WorkloadReader::new("w.jsonl", &bytes[..], 1).collect();
        assert_eq!(items.len(), 5);
        assert!(items[0].as_ref().unwrap_err().message.contains("not UTF-8"));
        assert!(items[1]
            .as_ref()
            .unwrap_err()
            .message
            .contains("also has plain-format keys: arrival_s"));
        assert!(items[2]
            .as_ref()
            .unwrap_err()
            .message
            .contains("input_tok_ids"));
        assert!(items[3]
            .as_ref()
            .unwrap_err()
            .message
            .contains("plain workload line"));
        assert!(items[4].is_ok());
        assert!(items[..4]
            .iter()
            .all(|r| r.as_ref().unwrap_err().kind == LineErrorKind::Skipped));
    }
}
