//! What the server needs from a tokenizer: prompt encoding (with the chat template), decoding,
//! and vLLM's incremental detokenizer with stop strings (`v1/engine/detokenizer.py`). The server
//! sees only [`TextCodec`]; [`ModelText`] is the real one (the `llm-emu-text` crate: Hugging Face
//! tokenizers and chat templates).
//!
//! [`IdText`] is a tokenizer-less stand-in for tests of the HTTP layer: token `t` reads as
//! ` <t>`, and a prompt text is one token per whitespace-separated word.

use serde_json::Value;
use std::sync::Arc;
use thiserror::Error;

/// Why text work failed, kept typed so that the HTTP layer can tell the request's fault from
/// the server's (see `ApiError`'s `From<TextError>`).
#[derive(Debug, Error)]
pub enum TextError {
    /// The text crate's own error (the real tokenizer and chat templates), with its kind.
    #[error(transparent)]
    Model(#[from] llm_emu_text::TextError),
    /// The request's input is not what the codec accepts.
    #[error("{0}")]
    Input(String),
}

/// Chat-template options, as the request gives them.
#[derive(Clone, Debug, Default)]
pub struct ChatOptions {
    pub add_generation_prompt: bool,
    pub continue_final_message: bool,
    pub chat_template: Option<String>,
    pub chat_template_kwargs: Option<Value>,
    pub tools: Option<Value>,
    /// Renders a template the request brought (`None`: in this process, bounded as the
    /// tokenizer's own): the server's template sandbox, when it has one.
    pub request_renderer: Option<Arc<dyn llm_emu_text::TemplateRenderer>>,
}

/// Options of one request's detokenizer: the text crate's, whatever the codec.
pub use llm_emu_text::DetokenizeOptions as DetokOptions;

/// Text that one token adds, and the stop string it completed, if any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DetokStep {
    pub delta: String,
    pub stop_matched: Option<String>,
}

/// One request's incremental detokenizer.
pub trait Detokenizer: Send {
    /// One new token. `stop_terminated`: the engine ended the request on this token because it
    /// is EOS or a stop token id (its text is then left out unless `include_stop_str_in_output`);
    /// `finished`: the request ends with it (nothing is held back).
    fn update(
        &mut self,
        token: u32,
        stop_terminated: bool,
        finished: bool,
    ) -> Result<DetokStep, TextError>;
    /// Text held back (a possible stop-string prefix), released when the request ends without
    /// a further token (an abort).
    fn finish(&mut self) -> String;
}

/// A model's tokenizer as the server uses it.
pub trait TextCodec: Send + Sync {
    fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, TextError>;
    fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, TextError>;
    /// The prompt text the chat template renders for `messages` (a JSON array).
    fn render_chat(&self, messages: &Value, opts: &ChatOptions) -> Result<String, TextError>;
    fn detokenizer(&self, prompt: &[u32], opts: DetokOptions) -> Box<dyn Detokenizer>;
    fn eos_token_id(&self) -> Option<u32>;
    /// generation_config.json's EOS ids other than [`Self::eos_token_id`]: vLLM adds them to a
    /// request's stop token ids unless `ignore_eos`.
    fn generation_eos_ids(&self) -> Vec<u32> {
        Vec::new()
    }
    /// Token ids a prompt may hold are below this (`None`: any).
    fn vocab_size(&self) -> Option<usize> {
        None
    }
    /// A token for synthetic log-probabilities' alternative ranks, chosen by the hash `h`:
    /// a plain word where the tokenizer has them.
    fn alternative_token(&self, h: u64) -> u32 {
        (h % self.vocab_size().unwrap_or(32_000).max(1) as u64) as u32
    }
    /// Each token's string (`/tokenize` with `return_token_strs`).
    fn token_strs(&self, ids: &[u32]) -> Vec<String> {
        ids.iter()
            .map(|&t| self.decode(&[t], false).unwrap_or_default())
            .collect()
    }
}

pub type SharedCodec = Arc<dyn TextCodec>;

/// Tokens past `max_input + 1` that a prompt prefix must reach before the whole prompt is
/// taken to be longer than `max_input`: the prefix ends before a whitespace character, where
/// tokenizers split, so its tokens are the whole prompt's first ones except near the cut.
const PREFIX_MARGIN_TOKENS: usize = 16;

/// Bytes per token assumed for the first prefix tried (English text averages about 4).
const PREFIX_BYTES_PER_TOKEN: usize = 8;

/// `text`'s ids when it has at most about `max_input` tokens; when it certainly has more,
/// only a prefix of it is tokenized and its first `max_input + 1` ids come back. That is what
/// vLLM's renderer reports for an over-long prompt (it tokenizes with truncation at
/// `max_input + 1`, `get_encode_kwargs`, and says "at least max_input + 1 input tokens"),
/// without tokenizing all of a 20 MB prompt to say so. Prefixes grow fourfold, so the cost is
/// at most 4/3 of tokenizing the whole text.
pub fn encode_within(
    codec: &dyn TextCodec,
    text: &str,
    add_special_tokens: bool,
    max_input: usize,
) -> Result<Vec<u32>, TextError> {
    let need = max_input
        .saturating_add(1)
        .saturating_add(PREFIX_MARGIN_TOKENS);
    let mut prefix_bytes = need.saturating_mul(PREFIX_BYTES_PER_TOKEN).max(4096);
    loop {
        if prefix_bytes >= text.len() {
            return codec.encode(text, add_special_tokens);
        }
        let cut = prefix_cut(text, prefix_bytes);
        let mut ids = codec.encode(&text[..cut], add_special_tokens)?;
        if ids.len() >= need {
            ids.truncate(max_input + 1);
            return Ok(ids);
        }
        prefix_bytes = prefix_bytes.saturating_mul(4);
    }
}

/// Bytes of text [`encode_in_pieces`] gives the tokenizer at a time. While it encodes, the
/// tokenizers library holds about 110 bytes per byte of text (byte alignments, pre-tokens, the
/// encoding's per-token fields): 670 MiB for 6 MB. A piece of 1 MiB bounds that to about
/// 110 MiB per text job, whatever the text's length.
pub const ENCODE_PIECE_BYTES: usize = 1 << 20;

/// Bytes on each side of a cut that [`cut_is_transparent`] tokenizes.
const CUT_CHECK_BYTES: usize = 64;

/// Cuts that failed the check before [`encode_in_pieces`] stops looking for more.
const MAX_FAILED_CUTS: usize = 8;

/// `codec.encode(text, add_special_tokens)`, with a long text tokenized a piece of about
/// [`ENCODE_PIECE_BYTES`] at a time. A text is cut only where tokenizing changes nothing: before
/// a space between two ASCII letters (where byte-level BPE pre-tokenizers split: the space
/// starts the next word's token), and only when tokenizing 64 bytes on each side of the cut
/// together gives the same ids as tokenizing them apart. A tokenizer for which that check
/// fails (e.g. one that prepends a marker to every text it is given) gets the whole text at
/// once. The special tokens of `add_special_tokens` come with the first piece and must be a
/// prefix (a BOS); a tokenizer that adds one at the end also gets the whole text.
pub fn encode_in_pieces(
    codec: &dyn TextCodec,
    text: &str,
    add_special_tokens: bool,
) -> Result<Vec<u32>, TextError> {
    encode_in_pieces_of(codec, text, add_special_tokens, ENCODE_PIECE_BYTES)
}

fn encode_in_pieces_of(
    codec: &dyn TextCodec,
    text: &str,
    add_special_tokens: bool,
    piece_bytes: usize,
) -> Result<Vec<u32>, TextError> {
    let cuts = piece_cuts(codec, text, piece_bytes)?;
    if cuts.len() <= 2 {
        return codec.encode(text, add_special_tokens);
    }
    let first = &text[..cuts[1]];
    let mut ids = codec.encode(first, add_special_tokens)?;
    if add_special_tokens && !ids.ends_with(&codec.encode(first, false)?) {
        return codec.encode(text, add_special_tokens);
    }
    for piece in cuts[1..].windows(2) {
        ids.extend(codec.encode(&text[piece[0]..piece[1]], false)?);
    }
    Ok(ids)
}

/// Where [`encode_in_pieces_of`] cuts `text`: 0, the cuts, `text.len()`.
fn piece_cuts(
    codec: &dyn TextCodec,
    text: &str,
    piece_bytes: usize,
) -> Result<Vec<usize>, TextError> {
    let bytes = text.as_bytes();
    let mut cuts = vec![0];
    let mut failed = 0;
    let mut at = piece_bytes.max(1);
    while at < bytes.len() && failed < MAX_FAILED_CUTS {
        let Some(space) = (at.max(1)..bytes.len().saturating_sub(1)).find(|&i| {
            bytes[i] == b' '
                && bytes[i - 1].is_ascii_alphabetic()
                && bytes[i + 1].is_ascii_alphabetic()
        }) else {
            break;
        };
        if cut_is_transparent(codec, text, space)? {
            cuts.push(space);
            at = space + piece_bytes;
        } else {
            failed += 1;
            at = space + 1;
        }
    }
    cuts.push(text.len());
    Ok(cuts)
}

/// Whether tokenizing the text around byte `cut` in one piece gives the ids of its two sides.
fn cut_is_transparent(codec: &dyn TextCodec, text: &str, cut: usize) -> Result<bool, TextError> {
    let mut lo = cut.saturating_sub(CUT_CHECK_BYTES);
    while !text.is_char_boundary(lo) {
        lo -= 1;
    }
    let mut hi = (cut + CUT_CHECK_BYTES).min(text.len());
    while !text.is_char_boundary(hi) {
        hi += 1;
    }
    let mut apart = codec.encode(&text[lo..cut], false)?;
    apart.extend(codec.encode(&text[cut..hi], false)?);
    Ok(codec.encode(&text[lo..hi], false)? == apart)
}

/// Where to cut `text` near `at` bytes: before the last whitespace character at or before it
/// (in its second half), else at a character boundary.
fn prefix_cut(text: &str, at: usize) -> usize {
    let mut end = at.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let head = &text[..end];
    match head.rfind(char::is_whitespace) {
        Some(ws) if ws > end / 2 => ws,
        _ => end,
    }
}

/// The tokenizer-less stand-in (see the module doc).
#[derive(Clone, Debug, Default)]
pub struct IdText;

impl IdText {
    fn word_id(w: &str) -> u32 {
        if let Some(n) = w
            .strip_prefix('<')
            .and_then(|s| s.strip_suffix('>'))
            .and_then(|s| s.parse::<u32>().ok())
        {
            return n;
        }
        (xxhash(w.as_bytes()) % 30000) as u32 + 1000
    }
}

fn xxhash(b: &[u8]) -> u64 {
    // FNV-1a: enough to spread words over ids.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &x in b {
        h ^= x as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

impl TextCodec for IdText {
    fn encode(&self, text: &str, _add_special_tokens: bool) -> Result<Vec<u32>, TextError> {
        Ok(text.split_whitespace().map(IdText::word_id).collect())
    }

    fn decode(&self, ids: &[u32], _skip: bool) -> Result<String, TextError> {
        Ok(ids.iter().map(|t| format!(" <{t}>")).collect())
    }

    fn render_chat(&self, messages: &Value, opts: &ChatOptions) -> Result<String, TextError> {
        let list = messages
            .as_array()
            .ok_or_else(|| TextError::Input("messages must be a list".into()))?;
        let mut out = String::new();
        for m in list {
            let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
            let content = match m.get("content") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(parts)) => parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("\n"),
                _ => String::new(),
            };
            out.push_str(&format!("{role}: {content}\n"));
        }
        if opts.add_generation_prompt {
            out.push_str("assistant:");
        }
        Ok(out)
    }

    fn detokenizer(&self, _prompt: &[u32], opts: DetokOptions) -> Box<dyn Detokenizer> {
        Box::new(IdDetok {
            text: String::new(),
            emitted: 0,
            opts,
        })
    }

    fn eos_token_id(&self) -> Option<u32> {
        None
    }
}

/// Stop strings over the decoded text, as vLLM's `check_stop_strings`: search the new text (and
/// the stop length before it), truncate at the match unless `include_stop_str_in_output`.
struct IdDetok {
    text: String,
    emitted: usize,
    opts: DetokOptions,
}

impl Detokenizer for IdDetok {
    fn update(
        &mut self,
        token: u32,
        _stop_terminated: bool,
        finished: bool,
    ) -> Result<DetokStep, TextError> {
        let new = format!(" <{token}>");
        let before = self.text.len();
        self.text.push_str(&new);
        let mut stop_matched = None;
        for s in &self.opts.stop {
            if s.is_empty() {
                continue;
            }
            let from = before.saturating_sub(s.len() - 1);
            let from = (0..=from)
                .rev()
                .find(|&i| self.text.is_char_boundary(i))
                .unwrap_or(0);
            if let Some(pos) = self.text[from..].find(s.as_str()) {
                let at = from + pos;
                let end = if self.opts.include_stop_str_in_output {
                    at + s.len()
                } else {
                    at
                };
                self.text.truncate(end);
                stop_matched = Some(s.clone());
                break;
            }
        }
        let hold = if self.opts.streaming
            && !finished
            && stop_matched.is_none()
            && !self.opts.stop.is_empty()
        {
            self.opts
                .stop
                .iter()
                .map(|s| s.len().saturating_sub(1))
                .max()
                .unwrap_or(0)
        } else {
            0
        };
        let mut upto = self.text.len().saturating_sub(hold).max(self.emitted);
        while !self.text.is_char_boundary(upto) {
            upto -= 1;
        }
        let delta = self.text[self.emitted.min(upto)..upto].to_string();
        self.emitted = upto.max(self.emitted);
        Ok(DetokStep {
            delta,
            stop_matched,
        })
    }

    fn finish(&mut self) -> String {
        let rest = self.text[self.emitted.min(self.text.len())..].to_string();
        self.emitted = self.text.len();
        rest
    }
}

/// The real tokenizer: a model's `tokenizer.json`, chat template and special tokens.
pub struct ModelText(pub llm_emu_text::TextModel);

impl TextCodec for ModelText {
    fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, TextError> {
        self.0
            .encode(text, add_special_tokens)
            .map_err(TextError::Model)
    }

    fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, TextError> {
        self.0
            .decode(ids, skip_special_tokens)
            .map_err(TextError::Model)
    }

    fn render_chat(&self, messages: &Value, opts: &ChatOptions) -> Result<String, TextError> {
        let kwargs = match &opts.chat_template_kwargs {
            None | Some(Value::Null) => serde_json::Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(other) => {
                return Err(TextError::Input(format!(
                    "chat_template_kwargs must be an object, got {other}"
                )))
            }
        };
        let o = llm_emu_text::ChatTemplateOptions {
            add_generation_prompt: opts.add_generation_prompt,
            continue_final_message: opts.continue_final_message,
            chat_template: opts.chat_template.clone(),
            chat_template_kwargs: kwargs,
            tools: opts.tools.clone(),
        };
        match &opts.request_renderer {
            Some(r) => self.0.render_chat_with(messages, &o, r.as_ref()),
            None => self.0.render_chat(messages, &o),
        }
        .map_err(TextError::Model)
    }

    fn detokenizer(&self, prompt: &[u32], opts: DetokOptions) -> Box<dyn Detokenizer> {
        Box::new(ModelDetok(self.0.detokenizer(prompt, opts)))
    }

    fn eos_token_id(&self) -> Option<u32> {
        self.0.eos_token_id()
    }

    fn vocab_size(&self) -> Option<usize> {
        Some(self.0.vocab_size())
    }

    fn generation_eos_ids(&self) -> Vec<u32> {
        let eos = self.0.eos_token_id();
        self.0
            .generation_eos_token_ids()
            .iter()
            .copied()
            .filter(|&t| Some(t) != eos)
            .collect()
    }

    fn token_strs(&self, ids: &[u32]) -> Vec<String> {
        ids.iter()
            .map(|&t| self.0.id_to_token(t).unwrap_or_default())
            .collect()
    }

    fn alternative_token(&self, h: u64) -> u32 {
        let words = self.0.readable_token_ids();
        if words.is_empty() {
            return (h % self.0.vocab_size().max(1) as u64) as u32;
        }
        words[(h % words.len() as u64) as usize]
    }
}

struct ModelDetok(llm_emu_text::IncrementalDetokenizer);

impl Detokenizer for ModelDetok {
    fn update(
        &mut self,
        token: u32,
        stop_terminated: bool,
        finished: bool,
    ) -> Result<DetokStep, TextError> {
        let s = self
            .0
            .update(&[token], stop_terminated, finished)
            .map_err(TextError::Model)?;
        Ok(DetokStep {
            delta: s.delta,
            stop_matched: s.stop_matched,
        })
    }

    fn finish(&mut self) -> String {
        self.0.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts how much text each call was given, to check that a long prompt is not all read.
    struct Counting(std::sync::Mutex<Vec<usize>>);

    impl TextCodec for Counting {
        fn encode(&self, text: &str, add: bool) -> Result<Vec<u32>, TextError> {
            self.0.lock().unwrap().push(text.len());
            IdText.encode(text, add)
        }
        fn decode(&self, ids: &[u32], skip: bool) -> Result<String, TextError> {
            IdText.decode(ids, skip)
        }
        fn render_chat(&self, m: &Value, o: &ChatOptions) -> Result<String, TextError> {
            IdText.render_chat(m, o)
        }
        fn detokenizer(&self, p: &[u32], o: DetokOptions) -> Box<dyn Detokenizer> {
            IdText.detokenizer(p, o)
        }
        fn eos_token_id(&self) -> Option<u32> {
            None
        }
    }

    fn llama() -> ModelText {
        ModelText(llm_emu_text::TextModel::load(&llm_emu_text::TokenizerSource::Builtin).unwrap())
    }

    #[test]
    fn a_text_tokenized_in_pieces_gives_the_ids_of_the_whole() {
        let codec = llama();
        let text = "The fox's den, 12345 metres away!  Twice  spaced\n\nnew lines\tand tabs, \
                    naïve café ünïcode 日本語 text; punctuation... (brackets) [x] {y} 'quoted' \
                    words don't can't it'll we've I'm they're Hello World again ";
        let text = text.repeat(40);
        for add in [false, true] {
            let whole = codec.encode(&text, add).unwrap();
            let cuts = piece_cuts(&codec, &text, 300).unwrap();
            assert!(cuts.len() > 10, "{} cuts", cuts.len());
            assert_eq!(encode_in_pieces_of(&codec, &text, add, 300).unwrap(), whole);
        }
        // No place to cut: one piece.
        let dense = "x".repeat(5000);
        assert_eq!(piece_cuts(&codec, &dense, 300).unwrap(), vec![0, 5000]);
        assert_eq!(
            encode_in_pieces_of(&codec, &dense, true, 300).unwrap(),
            codec.encode(&dense, true).unwrap()
        );
    }

    /// A tokenizer that marks the start of every text it is given cannot be cut.
    struct Marking;

    impl TextCodec for Marking {
        fn encode(&self, text: &str, add: bool) -> Result<Vec<u32>, TextError> {
            let mut ids = vec![999];
            ids.extend(IdText.encode(text, add)?);
            Ok(ids)
        }
        fn decode(&self, ids: &[u32], skip: bool) -> Result<String, TextError> {
            IdText.decode(ids, skip)
        }
        fn render_chat(&self, m: &Value, o: &ChatOptions) -> Result<String, TextError> {
            IdText.render_chat(m, o)
        }
        fn detokenizer(&self, p: &[u32], o: DetokOptions) -> Box<dyn Detokenizer> {
            IdText.detokenizer(p, o)
        }
        fn eos_token_id(&self) -> Option<u32> {
            None
        }
    }

    #[test]
    fn a_tokenizer_that_is_not_local_gets_the_whole_text() {
        let text = "alpha beta gamma ".repeat(200);
        assert_eq!(
            piece_cuts(&Marking, &text, 100).unwrap(),
            vec![0, text.len()]
        );
        assert_eq!(
            encode_in_pieces_of(&Marking, &text, false, 100).unwrap(),
            Marking.encode(&text, false).unwrap()
        );
    }

    #[test]
    fn a_prompt_within_the_context_is_tokenized_whole() {
        let c = Counting(Default::default());
        let text = "a b c ".repeat(300);
        let ids = encode_within(&c, &text, false, 1000).unwrap();
        assert_eq!(ids.len(), 900);
        assert_eq!(*c.0.lock().unwrap(), vec![text.len()]);
    }

    #[test]
    fn a_prompt_past_the_context_gives_max_input_plus_one_ids_from_a_prefix() {
        let c = Counting(Default::default());
        let text = "word ".repeat(1_000_000);
        let ids = encode_within(&c, &text, false, 100).unwrap();
        assert_eq!(ids.len(), 101);
        assert_eq!(ids, IdText.encode(&text[..505], false).unwrap()[..101]);
        let read: usize = c.0.lock().unwrap().iter().sum();
        assert!(read <= 4096, "read {read} bytes");
    }

    #[test]
    fn long_tokens_make_the_prefix_grow_until_it_decides() {
        // Each "token" is 999 bytes: the first prefixes hold too few tokens.
        let c = Counting(Default::default());
        let word = "x".repeat(999);
        let text = format!("{word} ").repeat(2000);
        let ids = encode_within(&c, &text, false, 100).unwrap();
        assert_eq!(ids.len(), 101);
        assert!(c.0.lock().unwrap().len() > 1);
        // Exactly at the limit: whole text, all tokens.
        let text = format!("{word} ").repeat(100);
        assert_eq!(encode_within(&c, &text, false, 100).unwrap().len(), 100);
    }
}
