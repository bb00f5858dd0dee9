//! The tokenizer behind `llm-emu bench`: `llm_emu_text`'s model, resolved from `--tokenizer`
//! (or the model name) as a path, a Hugging Face id in the local cache, or `builtin`.

use anyhow::Result;
use llm_emu_bench::tokenizer::Tokenizer;
use llm_emu_text::{ChatTemplateOptions, TextModel, TokenizerSource};
use std::path::PathBuf;

/// Where `id` names a tokenizer: `builtin`, an existing file or folder, else a Hugging Face id.
pub fn source_of(id: &str) -> TokenizerSource {
    if id == "builtin" {
        TokenizerSource::Builtin
    } else if std::path::Path::new(id).exists() {
        TokenizerSource::Path(PathBuf::from(id))
    } else {
        TokenizerSource::HfModel(id.to_string())
    }
}

struct TextTokenizer(TextModel);

impl Tokenizer for TextTokenizer {
    fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, String> {
        self.0
            .encode(text, add_special_tokens)
            .map_err(|e| e.to_string())
    }
    fn decode(&self, ids: &[u32]) -> Result<String, String> {
        self.0.decode(ids, false).map_err(|e| e.to_string())
    }
    fn vocab_size(&self) -> usize {
        self.0.vocab_size()
    }
    fn is_special(&self, id: u32) -> bool {
        self.0.is_special(id)
    }
    fn apply_chat_template(&self, user: &str) -> Result<String, String> {
        let messages = serde_json::json!([{"role": "user", "content": user}]);
        let opts = ChatTemplateOptions {
            add_generation_prompt: true,
            ..Default::default()
        };
        self.0
            .render_chat(&messages, &opts)
            .map_err(|e| e.to_string())
    }
}

pub fn load_tokenizer(id: &str) -> Result<Box<dyn Tokenizer>> {
    Ok(Box::new(TextTokenizer(TextModel::load(&source_of(id))?)))
}
