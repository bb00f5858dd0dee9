//! Incremental detokenization with stop strings, as vLLM 0.19's v1 detokenizer does it
//! (`vllm/v1/engine/detokenizer.py`: `FastIncrementalDetokenizer` over `tokenizers`'
//! `DecodeStream`, `check_stop_strings`, `get_next_output_text`).
//!
//! Lengths and offsets of output text are in characters (Unicode scalar values), as Python's
//! string indices are; stop strings and the streaming hold-back are measured the same way.

use crate::byte_table::ByteTable;
use crate::error::TextError;
use crate::model::TextModel;

/// Per-request detokenization settings (from the request's sampling parameters).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DetokenizeOptions {
    pub skip_special_tokens: bool,
    pub spaces_between_special_tokens: bool,
    /// Stop strings; the first that appears ends the request.
    pub stop: Vec<String>,
    pub include_stop_str_in_output: bool,
    /// Whether the client streams: then `max(len(stop)) - 1` characters are held back from
    /// deltas until the request finishes, so a stop string is never partly sent.
    pub streaming: bool,
    /// Stop strings are not looked for in the first `min_tokens` outputs' text.
    pub min_tokens: u32,
}

impl Default for DetokenizeOptions {
    /// vLLM's `SamplingParams` defaults.
    fn default() -> Self {
        DetokenizeOptions {
            skip_special_tokens: true,
            spaces_between_special_tokens: true,
            stop: Vec::new(),
            include_stop_str_in_output: false,
            streaming: false,
            min_tokens: 0,
        }
    }
}

/// What one update produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DetokenizeStep {
    /// New text to send (for streaming clients: what vLLM's DELTA output carries).
    pub delta: String,
    /// The stop string that matched; the output text is already truncated as vLLM truncates
    /// it, and the request is finished (`finish_reason = "stop"`, `stop_reason` = this).
    pub stop_matched: Option<String>,
}

/// One request's output detokenizer.
pub struct IncrementalDetokenizer {
    model: TextModel,
    opts: DetokenizeOptions,
    // DecodeStream state (tokenizers' `step_decode_stream`).
    ids: Vec<u32>,
    prefix: String,
    prefix_index: usize,
    /// `spaces_between_special_tokens` as vLLM applies it (forced on with skip_special_tokens).
    spaces_between_special: bool,
    last_special: bool,
    /// `max(len(stop)) - 1` when stop strings are excluded from the output, else 0.
    stop_buffer_length: usize,
    output_text: String,
    /// `output_text`'s length in characters.
    output_chars: usize,
    last_output_offset: usize,
    /// `last_output_offset` as a byte offset into `output_text`.
    last_output_byte: usize,
    num_output_tokens: usize,
    finished: bool,
}

const INVALID_PREFIX: &str = "Invalid prefix encountered";

impl IncrementalDetokenizer {
    pub(crate) fn new(
        model: TextModel,
        prompt_ids: &[u32],
        opts: DetokenizeOptions,
    ) -> IncrementalDetokenizer {
        let stop_buffer_length = if !opts.stop.is_empty() && !opts.include_stop_str_in_output {
            opts.stop
                .iter()
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
                .saturating_sub(1)
        } else {
            0
        };
        let spaces_between_special = opts.skip_special_tokens
            || opts.spaces_between_special_tokens
            || model.inner.added_tokens.is_empty();
        IncrementalDetokenizer {
            // DecodeStream(ids=prompt_token_ids): the prompt primes the stream; out-of-range
            // ids cannot be decoded, so they are left out rather than poisoning every step.
            ids: prompt_ids
                .iter()
                .copied()
                .filter(|&id| (id as usize) < model.vocab_size())
                .collect(),
            prefix: String::new(),
            prefix_index: 0,
            spaces_between_special,
            last_special: false,
            stop_buffer_length,
            output_text: String::new(),
            output_chars: 0,
            last_output_offset: 0,
            last_output_byte: 0,
            num_output_tokens: 0,
            finished: false,
            model,
            opts,
        }
    }

    /// Feed one new output token; returns what vLLM would do: the new text delta and whether
    /// a stop string matched (then the text is already truncated as vLLM truncates it).
    pub fn push(&mut self, token: u32) -> Result<DetokenizeStep, TextError> {
        self.update(&[token], false, false)
    }

    /// vLLM's `update(new_token_ids, stop_terminated)` followed by
    /// `get_next_output_text(finished, delta=True)`.
    ///
    /// `stop_terminated`: the engine finished the request on an EOS/stop token id (the last
    /// of `tokens`); unless `include_stop_str_in_output`, its text is left out. `finished`:
    /// the request ends with this update for any reason (then nothing is held back). A matched
    /// stop string finishes the request too.
    pub fn update(
        &mut self,
        tokens: &[u32],
        stop_terminated: bool,
        finished: bool,
    ) -> Result<DetokenizeStep, TextError> {
        self.model.check_ids(tokens)?;
        let mut stop_matched = None;
        if !tokens.is_empty() {
            let decode = if stop_terminated && !self.opts.include_stop_str_in_output {
                &tokens[..tokens.len() - 1]
            } else {
                tokens
            };
            let min_tokens = self.opts.min_tokens as usize;
            let mut stop_check_offset = self.output_chars;
            for &id in decode {
                self.num_output_tokens += 1;
                let piece = self.decode_next(id)?;
                self.output_chars += piece.chars().count();
                self.output_text.push_str(&piece);
                if min_tokens > 0 && self.num_output_tokens <= min_tokens {
                    stop_check_offset = self.output_chars;
                }
            }
            self.num_output_tokens += tokens.len() - decode.len();

            if !self.opts.stop.is_empty() && self.num_output_tokens > min_tokens {
                if let Some((stop, truncate_to)) =
                    self.check_stop_strings(self.output_chars - stop_check_offset)
                {
                    if let Some(t) = truncate_to {
                        let byte = self.byte_of_char(t);
                        self.output_text.truncate(byte);
                        self.output_chars = t;
                    }
                    stop_matched = Some(stop);
                }
            }
        }
        let finished = finished || stop_matched.is_some();
        let delta = self.next_delta(finished);
        Ok(DetokenizeStep {
            delta,
            stop_matched,
        })
    }

    /// The text held back so far (the request finished without a further update).
    pub fn finish(&mut self) -> String {
        self.next_delta(true)
    }

    /// Full output text so far (held-back characters included).
    pub fn text(&self) -> &str {
        &self.output_text
    }

    /// Output tokens seen (including a stop token left out of the text).
    pub fn num_output_tokens(&self) -> usize {
        self.num_output_tokens
    }

    /// `get_next_output_text(finished, delta=True)`.
    fn next_delta(&mut self, finished: bool) -> String {
        self.finished |= finished;
        let hold = if self.finished || !self.opts.streaming {
            0
        } else {
            self.stop_buffer_length
        };
        let length = self.output_chars.saturating_sub(hold);
        if self.last_output_offset < length {
            let a = self.last_output_byte.min(self.output_text.len());
            let b = self.byte_of_char(length);
            self.last_output_offset = length;
            self.last_output_byte = b;
            self.output_text[a..b].to_string()
        } else {
            String::new()
        }
    }

    /// Byte offset of character `chars` of the output, walking back from the end (callers ask
    /// for positions near the end: cost proportional to the distance, not the text length).
    fn byte_of_char(&self, chars: usize) -> usize {
        if chars >= self.output_chars {
            return self.output_text.len();
        }
        let back = self.output_chars - chars;
        self.output_text
            .char_indices()
            .rev()
            .nth(back - 1)
            .map(|(b, _)| b)
            .unwrap_or(0)
    }

    /// `FastIncrementalDetokenizer.decode_next`.
    fn decode_next(&mut self, id: u32) -> Result<String, TextError> {
        let mut piece = self.protected_step(id)?.unwrap_or_default();
        if !self.spaces_between_special {
            match self.model.inner.added_tokens.get(&id) {
                Some(content) => {
                    if self.last_special {
                        piece = content.clone();
                    }
                    self.last_special = true;
                }
                None => self.last_special = false,
            }
        }
        Ok(piece)
    }

    /// One `DecodeStream.step`; on tokenizers' "invalid prefix" error the stream restarts
    /// empty, as vLLM recovers (vllm-project/vllm#17448).
    fn protected_step(&mut self, id: u32) -> Result<Option<String>, TextError> {
        match self.step(id) {
            Ok(s) => Ok(s),
            Err(e) if e.starts_with(INVALID_PREFIX) => {
                self.ids.clear();
                self.prefix.clear();
                self.prefix_index = 0;
                self.step(id).map_err(TextError::Tokenizer)
            }
            Err(e) => Err(TextError::Tokenizer(e)),
        }
    }

    fn step(&mut self, id: u32) -> Result<Option<String>, String> {
        let inner = &self.model.inner;
        if let Some(table) = inner
            .byte_table
            .get_or_init(|| ByteTable::new(&inner.tokenizer))
        {
            return crate::byte_table::step_decode_stream(
                table,
                id,
                self.opts.skip_special_tokens,
                &mut self.ids,
                &mut self.prefix,
                &mut self.prefix_index,
            );
        }
        tokenizers::tokenizer::step_decode_stream(
            &self.model.inner.tokenizer,
            vec![id],
            self.opts.skip_special_tokens,
            &mut self.ids,
            &mut self.prefix,
            &mut self.prefix_index,
        )
        .map_err(|e| e.to_string())
    }

    /// vLLM's `check_stop_strings`: the first stop string (in the request's order) found in
    /// the text that the new characters could complete; returns it and the character length
    /// to truncate the output to (`None`: keep all).
    fn check_stop_strings(&self, new_chars: usize) -> Option<(String, Option<usize>)> {
        if new_chars == 0 {
            return None;
        }
        for stop in &self.opts.stop {
            let stop_len = stop.chars().count() as i64;
            // Python: output_text.find(stop, 1 - new_char_count - stop_len)
            let start = 1 - new_chars as i64 - stop_len;
            let start = if start >= 0 {
                start as usize
            } else {
                (self.output_chars as i64 + start).max(0) as usize
            };
            if start > self.output_chars {
                continue;
            }
            let from = self.byte_of_char(start);
            let Some(found) = self.output_text[from..].find(stop.as_str()) else {
                continue;
            };
            let mut index = start + self.output_text[from..from + found].chars().count();
            if self.opts.include_stop_str_in_output {
                index += stop_len as usize;
                if index >= self.output_chars {
                    return Some((stop.clone(), None));
                }
            }
            return Some((stop.clone(), Some(index)));
        }
        None
    }
}
