//! ShareGPT (`ShareGPT_V3_unfiltered_cleaned_split.json`): a JSON array of
//! `{"id", "conversations": [{"from", "value"}, ...]}`.
//!
//! The file is read as a stream, one array element at a time, so a download cut off mid-way
//! still gives every complete conversation before the cut; malformed elements are skipped and
//! counted. Sampling is vLLM's `ShareGPTDataset`: keep conversations with ≥ 2 turns, shuffle
//! them with Python's `random.seed(seed); random.shuffle(...)` (reproduced exactly, so the same
//! seed picks the same conversations as vLLM), then walk them in order: prompt = first turn,
//! output length = token count of the second turn (or `--sharegpt-output-len`), kept when
//! `is_valid_sequence` holds, until `--num-prompts` are found.

use super::{maybe_oversample, DatasetError, DatasetReport, Prompt, SampleRequest};
use crate::pyrand::PyRandom;
use crate::tokenizer::Tokenizer;
use serde::Deserialize;
use std::io::{BufRead, Read};

/// The first two turns of a conversation.
#[derive(Clone, Debug, PartialEq)]
pub struct Conversation {
    pub prompt: String,
    pub completion: String,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    conversations: Option<Vec<Turn>>,
}

#[derive(Deserialize)]
struct Turn {
    #[serde(default)]
    value: Option<serde_json::Value>,
}

/// Splits a JSON array read from `input` into its elements' bytes without holding the file.
struct ArrayElements<R> {
    input: R,
    depth: u32,
    in_string: bool,
    escaped: bool,
    elem: Vec<u8>,
    finished: bool,
}

enum Next {
    Element(Vec<u8>),
    End { truncated: bool },
}

impl<R: BufRead> ArrayElements<R> {
    fn new(input: R) -> Self {
        ArrayElements {
            input,
            depth: 0,
            in_string: false,
            escaped: false,
            elem: Vec::new(),
            finished: false,
        }
    }

    fn next(&mut self) -> Result<Next, String> {
        if self.finished {
            return Ok(Next::End { truncated: false });
        }
        loop {
            let buf = match self.input.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("read error: {e}")),
            };
            if buf.is_empty() {
                self.finished = true;
                let truncated = self.depth > 0;
                return Ok(Next::End { truncated });
            }
            let mut used = 0;
            let mut out = None;
            for &b in buf {
                used += 1;
                if self.depth == 0 {
                    if b.is_ascii_whitespace() || (b == 0xEF || b == 0xBB || b == 0xBF) {
                        continue;
                    }
                    if b == b'[' {
                        self.depth = 1;
                        continue;
                    }
                    return Err("not a JSON array (ShareGPT files are `[{...}, ...]`)".into());
                }
                if self.depth == 1 && !self.in_string {
                    if self.elem.is_empty() && (b.is_ascii_whitespace() || b == b',') {
                        continue;
                    }
                    if b == b']' || b == b',' {
                        if b == b']' {
                            self.depth = 0;
                            self.finished = true;
                        }
                        if !self.elem.is_empty() {
                            out = Some(std::mem::take(&mut self.elem));
                        }
                        if self.finished || out.is_some() {
                            break;
                        }
                        continue;
                    }
                }
                self.elem.push(b);
                if self.in_string {
                    if self.escaped {
                        self.escaped = false;
                    } else if b == b'\\' {
                        self.escaped = true;
                    } else if b == b'"' {
                        self.in_string = false;
                    }
                    continue;
                }
                match b {
                    b'"' => self.in_string = true,
                    b'{' | b'[' => self.depth += 1,
                    b'}' | b']' => {
                        self.depth -= 1;
                        if self.depth == 1 {
                            out = Some(std::mem::take(&mut self.elem));
                            break;
                        }
                    }
                    _ => {}
                }
            }
            self.input.consume(used);
            if let Some(e) = out {
                return Ok(Next::Element(e));
            }
            if self.finished {
                return Ok(Next::End { truncated: false });
            }
        }
    }
}

/// Reads every complete conversation with at least two turns, in file order.
pub fn read_conversations(
    input: impl Read,
    report: &mut DatasetReport,
) -> Result<Vec<Conversation>, DatasetError> {
    let mut elems = ArrayElements::new(std::io::BufReader::with_capacity(1 << 20, input));
    let mut out = Vec::new();
    let mut index = 0usize;
    loop {
        let bytes = match elems.next().map_err(DatasetError::Invalid)? {
            Next::Element(b) => b,
            Next::End { truncated } => {
                report.truncated = truncated;
                return Ok(out);
            }
        };
        index += 1;
        let entry: Entry = match serde_json::from_slice(&bytes) {
            Ok(e) => e,
            Err(e) => {
                report.malformed(format!("entry {index}: {e}"));
                continue;
            }
        };
        report.entries += 1;
        let turns = match entry.conversations {
            Some(t) if t.len() >= 2 => t,
            _ => {
                report.filtered += 1;
                continue;
            }
        };
        let text = |t: &Turn| match &t.value {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        match (text(&turns[0]), text(&turns[1])) {
            (Some(prompt), Some(completion)) => out.push(Conversation { prompt, completion }),
            _ => report.malformed(format!(
                "entry {index}: the first two turns need a string `value`"
            )),
        }
    }
}

/// Options of the ShareGPT sample, named as vLLM's flags.
pub struct ShareGptOptions<'a> {
    pub num_requests: usize,
    pub seed: i64,
    /// `--sharegpt-output-len`: overrides the second turn's length (and its minimum).
    pub output_len: Option<usize>,
    pub request_id_prefix: &'a str,
    pub disable_shuffle: bool,
    pub no_oversample: bool,
}

/// vLLM's `ShareGPTDataset.load_data` + `sample`.
pub fn sample(
    mut data: Vec<Conversation>,
    tokenizer: &dyn Tokenizer,
    opts: &ShareGptOptions<'_>,
    report: &mut DatasetReport,
) -> Result<Vec<SampleRequest>, DatasetError> {
    if !opts.disable_shuffle {
        PyRandom::new(opts.seed).shuffle(&mut data);
    }
    let mut samples = Vec::new();
    for c in data {
        if samples.len() >= opts.num_requests {
            break;
        }
        let prompt_len = tokenizer
            .encode(&c.prompt, true)
            .map_err(DatasetError::Tokenizer)?
            .len();
        let output_len = match opts.output_len {
            Some(n) => n,
            None => tokenizer
                .encode(&c.completion, true)
                .map_err(DatasetError::Tokenizer)?
                .len(),
        };
        if !super::is_valid_sequence(prompt_len, output_len, opts.output_len.is_some()) {
            report.filtered += 1;
            continue;
        }
        let id = format!("{}{}", opts.request_id_prefix, samples.len());
        samples.push(SampleRequest {
            user: None,
            prompt: Prompt::Text(c.prompt),
            prompt_len,
            expected_output_len: output_len,
            request_id: id,
            send_at: None,
        });
    }
    maybe_oversample(
        &mut samples,
        opts.num_requests,
        opts.seed,
        opts.request_id_prefix,
        opts.no_oversample,
        report,
    )?;
    Ok(samples)
}

/// Opens and reads a ShareGPT file.
pub fn load(
    path: &std::path::Path,
    report: &mut DatasetReport,
) -> Result<Vec<Conversation>, DatasetError> {
    let f = std::fs::File::open(path).map_err(|e| DatasetError::Io {
        path: path.display().to_string(),
        source: e,
    })?;
    read_conversations(f, report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> (Vec<Conversation>, DatasetReport) {
        let mut r = DatasetReport::default();
        let c = read_conversations(text.as_bytes(), &mut r).unwrap();
        (c, r)
    }

    const GOOD: &str = r#"{"id": "a", "conversations": [{"from": "human", "value": "Hi [there], \"you\" {x}"}, {"from": "gpt", "value": "Hello!"}]}"#;

    #[test]
    fn reads_a_whole_file() {
        let text = format!(
            "[{GOOD}, {{\"id\": \"b\", \"conversations\": [{{\"from\": \"human\", \"value\": \"one turn\"}}]}},\n {GOOD}]"
        );
        let (c, r) = read(&text);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].prompt, "Hi [there], \"you\" {x}");
        assert_eq!(c[0].completion, "Hello!");
        assert_eq!(r.entries, 3);
        assert_eq!(r.filtered, 1);
        assert!(!r.truncated);
    }

    #[test]
    fn a_file_cut_off_mid_entry_gives_the_complete_ones() {
        let text = format!("[{GOOD}, {GOOD}, {}", &GOOD[..40]);
        let (c, r) = read(&text);
        assert_eq!(c.len(), 2);
        assert!(r.truncated);
        assert_eq!(r.malformed, 0);
        // Cut inside a string containing brackets.
        let cut = GOOD.find("[there").unwrap() + 3;
        let (c, r) = read(&format!("[{GOOD},{}", &GOOD[..cut]));
        assert_eq!(c.len(), 1);
        assert!(r.truncated);
    }

    #[test]
    fn malformed_entries_are_skipped_and_counted() {
        let text = format!(
            "[{GOOD}, {{\"conversations\": [{{\"value\": 5}}, {{\"value\": \"x\"}}]}}, {{\"conversations\": 7}}, 12, {GOOD}]"
        );
        let (c, r) = read(&text);
        assert_eq!(c.len(), 2);
        assert_eq!(r.malformed, 3, "{:?}", r.malformed_samples);
        assert!(!r.truncated);
    }

    #[test]
    fn not_an_array_is_an_error() {
        let mut r = DatasetReport::default();
        assert!(read_conversations(&b"{\"a\": 1}"[..], &mut r).is_err());
    }
}
