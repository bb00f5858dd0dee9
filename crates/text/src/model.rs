//! [`TextModel`]: a loaded tokenizer with its chat templates and special-token facts.

use crate::chat::{ChatTemplateOptions, ChatTemplates};
use crate::detok::{DetokenizeOptions, IncrementalDetokenizer};
use crate::error::TextError;
use crate::files::{TokenizerFiles, TokenizerSource};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use tokenizers::Tokenizer;

/// A tokenizer with what `transformers` keeps next to it. Cheap to clone (an `Arc` inside),
/// `Send + Sync`.
#[derive(Clone)]
pub struct TextModel {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub tokenizer: Tokenizer,
    /// `bos_token`, `eos_token`, `unk_token`, `pad_token` (strings) and
    /// `additional_special_tokens` (a list), as `special_tokens_map` gives them to templates.
    pub special_tokens_map: serde_json::Map<String, Value>,
    pub eos_token_id: Option<u32>,
    pub generation_eos_ids: Vec<u32>,
    pub chat_templates: ChatTemplates,
    pub clean_up_tokenization_spaces: bool,
    /// Added tokens (special or not) by id, with their content: vLLM's `added_token_ids`.
    pub added_tokens: HashMap<u32, String>,
    /// Per id: whether `skip_special_tokens` drops it (the added token's `special` flag).
    pub special: Vec<bool>,
    pub vocab_size: usize,
    /// Token ids whose text is a plain word or punctuation (see [`TextModel::readable_token_ids`]).
    pub readable: OnceLock<Arc<[u32]>>,
    /// Decoding by table, for the incremental detokenizer (built at its first use; `None`
    /// when the tokenizer's decoder is not byte-level alone).
    pub byte_table: OnceLock<Option<crate::byte_table::ByteTable>>,
}

impl std::fmt::Debug for TextModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextModel")
            .field("vocab_size", &self.inner.vocab_size)
            .field("eos_token_id", &self.inner.eos_token_id)
            .finish_non_exhaustive()
    }
}

/// A token entry in tokenizer_config.json: a plain string or an `AddedToken` object.
fn token_content(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

/// `eos_token_id` in generation_config.json: one id or a list of them.
fn id_list(v: Option<&Value>) -> Vec<u32> {
    match v {
        Some(Value::Number(n)) => n.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_u64().map(|x| x as u32))
            .collect(),
        _ => vec![],
    }
}

impl TextModel {
    /// Loads the tokenizer and its side files.
    pub fn load(src: &TokenizerSource) -> Result<TextModel, TextError> {
        let files = TokenizerFiles::read(src)?;
        Self::from_files(files)
    }

    /// Loads `src`; when it names a tokenizer that is not there (a name absent from the local
    /// Hugging Face cache, a name that is not `org/name`, a folder without tokenizer.json), the
    /// embedded tokenizer instead, with the miss returned for the caller to report. Any other
    /// failure (an unreadable or malformed file) is an error.
    pub fn load_or_builtin(
        src: &TokenizerSource,
    ) -> Result<(TextModel, Option<TextError>), TextError> {
        match Self::load(src) {
            Ok(m) => Ok((m, None)),
            Err(e) if e.is_not_found() && *src != TokenizerSource::Builtin => {
                Ok((Self::load(&TokenizerSource::Builtin)?, Some(e)))
            }
            Err(e) => Err(e),
        }
    }

    fn from_files(files: TokenizerFiles) -> Result<TextModel, TextError> {
        let tokenizer =
            Tokenizer::from_bytes(&files.tokenizer_json).map_err(|e| TextError::BadTokenizer {
                path: files.origin.clone(),
                message: e.to_string(),
            })?;
        let vocab_size = tokenizer.get_vocab_size(true);
        let mut special = vec![false; vocab_size];
        let mut added_tokens = HashMap::new();
        for (id, tok) in tokenizer.get_added_tokens_decoder() {
            if (id as usize) < special.len() {
                special[id as usize] = tok.special;
            }
            added_tokens.insert(id, tok.content);
        }

        let empty = serde_json::Map::new();
        let config = files
            .tokenizer_config
            .as_ref()
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let stmap = files
            .special_tokens_map
            .as_ref()
            .and_then(Value::as_object)
            .unwrap_or(&empty);

        // transformers: tokenizer_config.json entries win over special_tokens_map.json.
        let mut special_tokens_map = serde_json::Map::new();
        for key in ["bos_token", "eos_token", "unk_token", "pad_token"] {
            if let Some(s) = config
                .get(key)
                .or_else(|| stmap.get(key))
                .and_then(token_content)
            {
                special_tokens_map.insert(key.to_string(), Value::String(s));
            }
        }
        let additional: Vec<Value> = config
            .get("additional_special_tokens")
            .or_else(|| stmap.get("additional_special_tokens"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(token_content)
                    .map(Value::String)
                    .collect()
            })
            .unwrap_or_default();
        if !additional.is_empty() {
            special_tokens_map.insert(
                "additional_special_tokens".into(),
                Value::Array(additional.clone()),
            );
        }
        // HF's `all_special_ids`: the named special tokens count as special too.
        for v in special_tokens_map.values().chain(additional.iter()) {
            if let Some(id) = v.as_str().and_then(|s| tokenizer.token_to_id(s)) {
                if let Some(slot) = special.get_mut(id as usize) {
                    *slot = true;
                }
            }
        }

        let generation_eos_ids = id_list(
            files
                .generation_config
                .as_ref()
                .and_then(|g| g.get("eos_token_id")),
        );
        // vLLM takes EOS from the tokenizer (`tokenizer.eos_token_id`); generation_config's
        // ids become extra stop token ids. Without a tokenizer EOS, generation_config's first.
        let eos_token_id = special_tokens_map
            .get("eos_token")
            .and_then(Value::as_str)
            .and_then(|s| tokenizer.token_to_id(s))
            .or_else(|| generation_eos_ids.first().copied());

        let chat_templates = ChatTemplates::from_config(
            config.get("chat_template"),
            files.chat_template_file,
            &files.origin,
        )?;
        let clean_up_tokenization_spaces = config
            .get("clean_up_tokenization_spaces")
            .and_then(Value::as_bool)
            .unwrap_or(false);

        Ok(TextModel {
            inner: Arc::new(Inner {
                tokenizer,
                special_tokens_map,
                eos_token_id,
                generation_eos_ids,
                chat_templates,
                clean_up_tokenization_spaces,
                added_tokens,
                special,
                vocab_size,
                readable: OnceLock::new(),
                byte_table: OnceLock::new(),
            }),
        })
    }

    /// Token ids of `text`, as `tokenizer(text, add_special_tokens=...)["input_ids"]`
    /// (with `add_special_tokens` the post-processor adds e.g. Llama's BOS).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, TextError> {
        self.inner
            .tokenizer
            .encode_fast(text, add_special_tokens)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| TextError::Tokenizer(e.to_string()))
    }

    /// Text of `ids`, as `tokenizer.decode(ids, skip_special_tokens=...)`: the tokenizer's
    /// decoder, then the `clean_up_tokenization_spaces` rewrite if the tokenizer config asks.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, TextError> {
        self.check_ids(ids)?;
        let text = self
            .inner
            .tokenizer
            .decode(ids, skip_special_tokens)
            .map_err(|e| TextError::Tokenizer(e.to_string()))?;
        Ok(if self.inner.clean_up_tokenization_spaces {
            clean_up_tokenization(&text)
        } else {
            text
        })
    }

    pub(crate) fn check_ids(&self, ids: &[u32]) -> Result<(), TextError> {
        match ids.iter().find(|&&id| id as usize >= self.inner.vocab_size) {
            Some(&id) => Err(TextError::UnknownToken {
                id,
                vocab_size: self.inner.vocab_size,
            }),
            None => Ok(()),
        }
    }

    /// The prompt text of a chat, as vLLM renders it (`apply_chat_template(tokenize=False)`).
    /// Tokenize it with `encode(.., false)`: vLLM's chat endpoint defaults
    /// `add_special_tokens` to false because templates write BOS themselves.
    pub fn render_chat(
        &self,
        messages: &Value,
        opts: &ChatTemplateOptions,
    ) -> Result<String, TextError> {
        crate::chat::render(self, messages, opts, &crate::chat::InProcessRenderer)
    }

    /// [`Self::render_chat`], with a template the request brought (`chat_template` that is not
    /// one of the tokenizer's named templates) rendered by `request_renderer`: a server may
    /// run such a template in a process of its own.
    pub fn render_chat_with(
        &self,
        messages: &Value,
        opts: &ChatTemplateOptions,
        request_renderer: &dyn crate::chat::TemplateRenderer,
    ) -> Result<String, TextError> {
        crate::chat::render(self, messages, opts, request_renderer)
    }

    /// The EOS token id vLLM uses (`tokenizer.eos_token_id`).
    pub fn eos_token_id(&self) -> Option<u32> {
        self.inner.eos_token_id
    }

    /// generation_config.json's `eos_token_id` list (vLLM adds these to each request's
    /// stop token ids); empty if there is no generation_config.json.
    pub fn generation_eos_token_ids(&self) -> &[u32] {
        &self.inner.generation_eos_ids
    }

    /// Vocabulary size with added tokens (`len(tokenizer)`).
    pub fn vocab_size(&self) -> usize {
        self.inner.vocab_size
    }

    /// Whether `skip_special_tokens` drops `id` (an added token marked special, or one of the
    /// named special tokens).
    pub fn is_special(&self, id: u32) -> bool {
        self.inner
            .special
            .get(id as usize)
            .copied()
            .unwrap_or(false)
    }

    /// The string of one token in the vocabulary (`convert_ids_to_tokens`).
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.tokenizer.id_to_token(id)
    }

    /// The id of a token string, if it is in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.tokenizer.token_to_id(token)
    }

    /// `special_tokens_map` as templates see it (`bos_token`, `eos_token`, ...).
    pub fn special_tokens_map(&self) -> &serde_json::Map<String, Value> {
        &self.inner.special_tokens_map
    }

    /// Whether the tokenizer came with a chat template.
    pub fn has_chat_template(&self) -> bool {
        self.inner.chat_templates.has_default()
    }

    /// A detokenizer for one request's output, primed with its prompt as vLLM primes it.
    pub fn detokenizer(
        &self,
        prompt_ids: &[u32],
        opts: DetokenizeOptions,
    ) -> IncrementalDetokenizer {
        IncrementalDetokenizer::new(self.clone(), prompt_ids, opts)
    }

    /// Builds what the first streamed reply would otherwise build on its way (the byte table
    /// of the incremental detokenizer: about 0.1 s of CPU for a 128k vocabulary), so that no
    /// request pays for it. Idempotent; a reply that comes first waits for it.
    pub fn warm_up(&self) {
        self.inner
            .byte_table
            .get_or_init(|| crate::byte_table::ByteTable::new(&self.inner.tokenizer));
    }

    /// Ids of tokens that decode, on their own, to a plain word (ASCII letters, optionally
    /// after one leading space) or a common punctuation mark: never added/special tokens,
    /// never byte-fallback pieces of a multi-byte character. Computed once per model.
    pub fn readable_token_ids(&self) -> Arc<[u32]> {
        self.inner
            .readable
            .get_or_init(|| {
                let base = self.inner.tokenizer.get_vocab_size(false) as u32;
                (0..base)
                    .filter(|&id| {
                        !self.inner.added_tokens.contains_key(&id)
                            && Some(id) != self.inner.eos_token_id
                            && self
                                .inner
                                .tokenizer
                                .decode(&[id], false)
                                .map(|t| is_readable(&t))
                                .unwrap_or(false)
                    })
                    .collect()
            })
            .clone()
    }
}

/// A word of ASCII letters with at most one leading space, or `.`, `,`, `!`, `?`.
fn is_readable(t: &str) -> bool {
    let word = t.strip_prefix(' ').unwrap_or(t);
    (!word.is_empty() && word.len() <= 12 && word.bytes().all(|b| b.is_ascii_alphabetic()))
        || matches!(t, "." | "," | "!" | "?")
}

/// transformers' `clean_up_tokenization`: removes the spaces a word-level decode leaves before
/// punctuation and English contractions.
pub(crate) fn clean_up_tokenization(s: &str) -> String {
    s.replace(" .", ".")
        .replace(" ?", "?")
        .replace(" !", "!")
        .replace(" ,", ",")
        .replace(" ' ", "'")
        .replace(" n't", "n't")
        .replace(" 'm", "'m")
        .replace(" 's", "'s")
        .replace(" 've", "'ve")
        .replace(" 're", "'re")
}
