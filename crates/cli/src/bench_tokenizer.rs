//! Which tokenizer `llm-emu serve` and `llm-emu bench` load: `--tokenizer` (a path, a Hugging
//! Face id in the local cache, or `builtin`), else the one the model name implies, else the
//! embedded Llama-3.1-8B-Instruct tokenizer. A tokenizer the model name implies but that is not
//! there (a name absent from the cache, a made-up name) falls back to the embedded one with a
//! one-line warning, so that a first run with any model name works; one named with
//! `--tokenizer` must be there.

use crate::serve::DEFAULT_MODEL;
use anyhow::{Context, Result};
use llm_emu_bench::tokenizer::Tokenizer;
use llm_emu_text::{TextModel, TokenizerSource};
use std::path::PathBuf;

/// What `--tokenizer builtin` loads, in messages.
pub const BUILTIN_DESCRIPTION: &str = "the embedded meta-llama/Llama-3.1-8B-Instruct tokenizer";

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

/// A loaded tokenizer and where it came from, in words (for the startup log).
pub struct Chosen {
    pub model: TextModel,
    pub description: String,
}

/// The tokenizer of `--tokenizer` (`given`), else the one `model` implies, else the embedded
/// one; `who` prefixes the fallback warning (`llm-emu serve`).
pub fn choose(given: Option<&str>, model: Option<&str>, who: &str) -> Result<Chosen> {
    let describe = |src: &TokenizerSource| match src {
        TokenizerSource::Builtin => BUILTIN_DESCRIPTION.to_string(),
        TokenizerSource::Path(p) => p.display().to_string(),
        TokenizerSource::HfModel(n) => format!("{n} (local Hugging Face cache)"),
    };
    if let Some(id) = given {
        let src = source_of(id);
        let model = TextModel::load(&src).with_context(|| {
            format!(
                "loading the tokenizer `{id}` (--tokenizer takes a tokenizer.json, a folder \
                 holding one, an org/name in the local Hugging Face cache, or `builtin`)"
            )
        })?;
        return Ok(Chosen {
            model,
            description: describe(&src),
        });
    }
    let src = match model {
        None | Some(DEFAULT_MODEL) => TokenizerSource::Builtin,
        Some(name) => source_of(name),
    };
    let (loaded, miss) = TextModel::load_or_builtin(&src)
        .with_context(|| format!("loading the tokenizer ({})", describe(&src)))?;
    let description = match miss {
        None => describe(&src),
        Some(e) => {
            eprintln!(
                "{who}: warning: no tokenizer for `{}` ({e}): using {BUILTIN_DESCRIPTION}; \
                 choose one with --tokenizer PATH|ORG/NAME|builtin",
                model.unwrap_or_default()
            );
            format!("{BUILTIN_DESCRIPTION} (fallback)")
        }
    };
    Ok(Chosen {
        model: loaded,
        description,
    })
}

/// `bench`'s tokenizer, boxed for the benchmark client.
pub fn load_tokenizer(given: Option<&str>, model: &str) -> Result<Box<dyn Tokenizer>> {
    Ok(Box::new(choose(given, Some(model), "llm-emu bench")?.model))
}
