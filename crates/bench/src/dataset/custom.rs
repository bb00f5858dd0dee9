//! vLLM's `CustomDataset`: JSONL lines `{"prompt": "...", "output_tokens": 10}`.
//!
//! As vLLM: shuffled with Python's `random.seed(seed)` unless `--disable-shuffle`, the prompt
//! wrapped in the model's chat template unless `--skip-chat-template`, output length from
//! `--custom-output-len` (default 256) or, when that is -1, from each line's `output_tokens`.
//! Unlike vLLM (pandas refuses the whole file), a malformed line is skipped and counted.

use super::{maybe_oversample, DatasetError, DatasetReport, Prompt, SampleRequest};
use crate::pyrand::PyRandom;
use crate::tokenizer::Tokenizer;
use serde::Deserialize;
use std::io::BufRead;

#[derive(Deserialize)]
struct Line {
    prompt: String,
    #[serde(default)]
    output_tokens: Option<serde_json::Value>,
}

/// One usable line.
#[derive(Clone, Debug, PartialEq)]
pub struct CustomItem {
    pub prompt: String,
    pub output_tokens: Option<usize>,
}

fn parse_output_tokens(v: &serde_json::Value) -> Option<usize> {
    match v {
        serde_json::Value::Number(n) => n
            .as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                    .map(|f| f as u64)
            })
            .map(|n| n as usize),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Reads the JSONL lines, counting and skipping bad ones.
pub fn read(input: impl BufRead, report: &mut DatasetReport) -> Vec<CustomItem> {
    let mut out = Vec::new();
    for (i, line) in input.split(b'\n').enumerate() {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                report.malformed(format!("line {}: read error: {e}", i + 1));
                break;
            }
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let parsed: Line = match serde_json::from_slice(&line) {
            Ok(p) => p,
            Err(e) => {
                report.malformed(format!("line {}: {e}", i + 1));
                continue;
            }
        };
        let output_tokens = match &parsed.output_tokens {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => match parse_output_tokens(v) {
                Some(n) => Some(n),
                None => {
                    report.malformed(format!(
                        "line {}: output_tokens must be a non-negative integer, got {v}",
                        i + 1
                    ));
                    continue;
                }
            },
        };
        report.entries += 1;
        out.push(CustomItem {
            prompt: parsed.prompt,
            output_tokens,
        });
    }
    out
}

pub struct CustomOptions<'a> {
    pub num_requests: usize,
    pub seed: i64,
    /// `--custom-output-len`; -1 means "from the file".
    pub output_len: i64,
    pub skip_chat_template: bool,
    pub request_id_prefix: &'a str,
    pub disable_shuffle: bool,
    pub no_oversample: bool,
}

pub fn sample(
    mut data: Vec<CustomItem>,
    tok: &dyn Tokenizer,
    o: &CustomOptions<'_>,
    report: &mut DatasetReport,
) -> Result<Vec<SampleRequest>, DatasetError> {
    if !o.disable_shuffle {
        PyRandom::new(o.seed).shuffle(&mut data);
    }
    let num_requests = if o.num_requests == 0 {
        data.len()
    } else {
        o.num_requests
    };
    let mut out = Vec::new();
    for (i, item) in data.into_iter().enumerate() {
        if out.len() >= num_requests {
            break;
        }
        let output_len = if o.output_len == -1 {
            match item.output_tokens {
                Some(n) => n,
                None => {
                    report.filtered += 1;
                    continue;
                }
            }
        } else {
            usize::try_from(o.output_len).map_err(|_| {
                DatasetError::Invalid(format!(
                    "--custom-output-len must be -1 or ≥ 0, got {}",
                    o.output_len
                ))
            })?
        };
        let prompt = if o.skip_chat_template {
            item.prompt
        } else {
            tok.apply_chat_template(&item.prompt)
                .map_err(DatasetError::Tokenizer)?
        };
        let prompt_len = tok
            .encode(&prompt, true)
            .map_err(DatasetError::Tokenizer)?
            .len();
        out.push(SampleRequest {
            user: None,
            prompt: Prompt::Text(prompt),
            prompt_len,
            expected_output_len: output_len,
            request_id: format!("{}{i}", o.request_id_prefix),
            send_at: None,
        });
    }
    if o.output_len == -1 && out.is_empty() && report.filtered > 0 {
        return Err(DatasetError::Invalid(
            "with --custom-output-len -1 every line needs `output_tokens`".into(),
        ));
    }
    maybe_oversample(
        &mut out,
        num_requests,
        o.seed,
        o.request_id_prefix,
        o.no_oversample,
        report,
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_lines_are_counted_not_fatal() {
        let text = "{\"prompt\": \"a\", \"output_tokens\": 5}\n\n{\"prompt\": 3}\nnot json\n{\"prompt\": \"b\", \"output_tokens\": \"7\"}\n{\"prompt\": \"c\", \"output_tokens\": -2}\n{\"prompt\": \"d\"}\n{\"prompt\": \"e\", \"output_";
        let mut r = DatasetReport::default();
        let items = read(text.as_bytes(), &mut r);
        assert_eq!(
            items.iter().map(|i| i.prompt.as_str()).collect::<Vec<_>>(),
            ["a", "b", "d"]
        );
        assert_eq!(items[0].output_tokens, Some(5));
        assert_eq!(items[1].output_tokens, Some(7));
        assert_eq!(items[2].output_tokens, None);
        assert_eq!(r.malformed, 4, "{:?}", r.malformed_samples);
    }
}
