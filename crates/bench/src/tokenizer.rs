//! What the benchmark needs from a tokenizer: prompt lengths of the datasets, the random
//! dataset's decode/re-encode round trip, and counting output tokens when a server sends no
//! usage. `llm_emu_text`'s model implements it; tests also use small stand-ins.

use llm_emu_text::{ChatTemplateOptions, TextModel};

/// A tokenizer, with Hugging Face `tokenizers` semantics.
pub trait Tokenizer: Send + Sync {
    /// `tokenizer(text, add_special_tokens=...).input_ids`.
    fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, String>;
    /// `tokenizer.decode(ids)` (special tokens kept, as vLLM's dataset code calls it).
    fn decode(&self, ids: &[u32]) -> Result<String, String>;
    /// `tokenizer.vocab_size`: ids in `[0, vocab_size)` are valid.
    fn vocab_size(&self) -> usize;
    /// Whether `id` is one of `tokenizer.all_special_ids`.
    fn is_special(&self, id: u32) -> bool;
    /// The prompt a one-turn chat `[{"role": "user", "content": user}]` renders to with the
    /// model's chat template and the generation prompt (the custom dataset's default).
    fn apply_chat_template(&self, user: &str) -> Result<String, String>;

    /// `tokenizer.num_special_tokens_to_add()`: what `add_special_tokens` adds to a text.
    fn num_special_tokens_to_add(&self) -> usize {
        self.encode("", true).map(|v| v.len()).unwrap_or(0)
    }
}

impl Tokenizer for TextModel {
    fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, String> {
        TextModel::encode(self, text, add_special_tokens).map_err(|e| e.to_string())
    }
    fn decode(&self, ids: &[u32]) -> Result<String, String> {
        TextModel::decode(self, ids, false).map_err(|e| e.to_string())
    }
    fn vocab_size(&self) -> usize {
        TextModel::vocab_size(self)
    }
    fn is_special(&self, id: u32) -> bool {
        TextModel::is_special(self, id)
    }
    fn apply_chat_template(&self, user: &str) -> Result<String, String> {
        let messages = serde_json::json!([{"role": "user", "content": user}]);
        let opts = ChatTemplateOptions {
            add_generation_prompt: true,
            ..Default::default()
        };
        self.render_chat(&messages, &opts)
            .map_err(|e| e.to_string())
    }
}
