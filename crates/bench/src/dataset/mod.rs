//! Benchmark datasets, sampled as vLLM's `vllm/benchmarks/datasets.py` samples them.

pub mod custom;
pub mod random;
pub mod sharegpt;
pub mod workload;

use crate::pyrand::PyRandom;
use serde::Serialize;
use thiserror::Error;

/// What is sent as the prompt.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Prompt {
    Text(String),
    /// Token ids, sent as-is to `/v1/completions` (a replayed workload's prompts).
    Tokens(Vec<u32>),
}

/// One request of a benchmark (vLLM's `SampleRequest`).
#[derive(Clone, Debug, PartialEq)]
pub struct SampleRequest {
    pub prompt: Prompt,
    /// Prompt length in tokens, as the dataset counted it (reported as `input_lens`).
    pub prompt_len: usize,
    /// `max_tokens` of the request.
    pub expected_output_len: usize,
    /// Sent as `x-request-id`.
    pub request_id: String,
    /// Seconds after the start at which a replayed workload sends this request.
    pub send_at: Option<f64>,
    /// Sent as the OpenAI `user` field: a workload's `tenant`, a scenario's session.
    pub user: Option<String>,
}

/// How a dataset file was read: every skipped entry is counted, none is silently dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DatasetReport {
    /// Entries parsed.
    pub entries: usize,
    /// Entries that were not valid JSON of the expected shape (skipped).
    pub malformed: usize,
    /// The first few problems, for the user.
    pub malformed_samples: Vec<String>,
    /// The file ended inside an entry (a cut-off download); that entry was ignored.
    pub truncated: bool,
    /// Entries left out by the dataset's own rules (too few turns, lengths out of range).
    pub filtered: usize,
    /// Requests sampled.
    pub sampled: usize,
    /// Of those, copies added to reach `--num-prompts` (vLLM's oversampling).
    pub oversampled: usize,
}

impl DatasetReport {
    const MAX_SAMPLES: usize = 5;

    pub(crate) fn malformed(&mut self, what: String) {
        self.malformed += 1;
        if self.malformed_samples.len() < Self::MAX_SAMPLES {
            self.malformed_samples.push(what);
        }
    }

    /// One line for the user, e.g. `ShareGPT: 94145 entries read, 2 malformed skipped, ...`.
    pub fn summary(&self, name: &str) -> String {
        let mut s = format!("{name}: {} entries read", self.entries);
        if self.malformed > 0 {
            s += &format!(", {} malformed skipped", self.malformed);
        }
        if self.truncated {
            s += ", file cut off mid-entry (partial last entry ignored)";
        }
        s += &format!(
            ", {} filtered out, {} requests sampled",
            self.filtered, self.sampled
        );
        if self.oversampled > 0 {
            s += &format!(" ({} of them oversampled copies)", self.oversampled);
        }
        s
    }
}

#[derive(Debug, Error)]
pub enum DatasetError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
}

/// vLLM's `is_valid_sequence` with its defaults (min 4, prompt ≤ 1024, total ≤ 2048).
pub fn is_valid_sequence(prompt_len: usize, output_len: usize, skip_min_output: bool) -> bool {
    let prompt_too_short = prompt_len < 4;
    let output_too_short = !skip_min_output && output_len < 4;
    let prompt_too_long = prompt_len > 1024;
    let combined_too_long = prompt_len + output_len > 2048;
    !(prompt_too_short || output_too_short || prompt_too_long || combined_too_long)
}

/// vLLM's `maybe_oversample_requests`: when fewer than `num_requests` were sampled, copies
/// picked with `random.seed(seed); random.choice(...)` fill up, renumbered after the rest.
pub fn maybe_oversample(
    requests: &mut Vec<SampleRequest>,
    num_requests: usize,
    seed: i64,
    request_id_prefix: &str,
    no_oversample: bool,
    report: &mut DatasetReport,
) -> Result<(), DatasetError> {
    if !no_oversample && requests.len() < num_requests {
        if requests.is_empty() {
            return Err(DatasetError::Invalid(
                "no usable request in the dataset to sample from".into(),
            ));
        }
        let mut rng = PyRandom::new(seed);
        let have = requests.len();
        for i in 0..num_requests - have {
            let mut r = requests[rng.choice_index(have)].clone();
            r.request_id = format!("{request_id_prefix}{}", have + i);
            requests.push(r);
        }
        report.oversampled = num_requests - have;
    }
    let mut ids: Vec<&str> = requests.iter().map(|r| r.request_id.as_str()).collect();
    ids.sort_unstable();
    if ids.windows(2).any(|w| w[0] == w[1]) {
        return Err(DatasetError::Invalid(
            "duplicate request_id in the sampled requests".into(),
        ));
    }
    report.sampled = requests.len();
    Ok(())
}
