//! The tokenizer behind `llm-emu bench`: `llm_emu_text`'s model, resolved from `--tokenizer`
//! (or the model name) as a path, a Hugging Face id in the local cache, or `builtin`.

use anyhow::Result;
use llm_emu_bench::tokenizer::Tokenizer;
use llm_emu_text::{TextModel, TokenizerSource};
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

pub fn load_tokenizer(id: &str) -> Result<Box<dyn Tokenizer>> {
    Ok(Box::new(TextModel::load(&source_of(id))?))
}
