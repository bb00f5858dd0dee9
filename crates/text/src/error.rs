//! Errors of the text crate.

use std::path::PathBuf;

/// What went wrong while loading a tokenizer, tokenizing, rendering or detokenizing.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    /// A file the tokenizer needs could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// No `tokenizer.json` where one was expected.
    #[error("no tokenizer.json at {0} (give a tokenizer.json file or a directory holding one)")]
    MissingTokenizer(PathBuf),
    /// `tokenizer.json` exists but the `tokenizers` library cannot load it.
    #[error("cannot load tokenizer {path}: {message}")]
    BadTokenizer { path: PathBuf, message: String },
    /// A JSON side file (tokenizer_config.json, generation_config.json, ...) is malformed.
    #[error("malformed {path}: {message}")]
    BadConfig { path: PathBuf, message: String },
    /// The model name is not in the local Hugging Face cache.
    #[error("model {model:?} is not in the local Hugging Face cache (looked in: {searched})")]
    ModelNotCached { model: String, searched: String },
    /// The model name is not of the form `org/name`.
    #[error("bad model name {0:?}: expected \"org/name\"")]
    BadModelName(String),
    /// Encoding or decoding failed inside the tokenizer.
    #[error("tokenizer error: {0}")]
    Tokenizer(String),
    /// A token id outside the vocabulary.
    #[error("token id {id} is outside the vocabulary (size {vocab_size})")]
    UnknownToken { id: u32, vocab_size: usize },
    /// The tokenizer has no chat template and the request gave none.
    #[error("the tokenizer has no chat template and none was given; pass one with chat_template")]
    NoChatTemplate,
    /// A named chat template was asked for that the tokenizer does not have.
    #[error("chat template {0:?} not found")]
    UnknownChatTemplate(String),
    /// The chat template failed to compile or render (including `raise_exception`).
    #[error("chat template error: {0}")]
    Template(String),
    /// Rendering the chat template went past one of the bounds every render runs under
    /// ([`crate::TEMPLATE_FUEL`], [`crate::TEMPLATE_OUTPUT_LIMIT_BYTES`],
    /// [`crate::TEMPLATE_RECURSION_LIMIT`]).
    #[error("chat template rendering stopped: {0}")]
    TemplateLimit(String),
    /// Synthetic-token settings that cannot produce tokens (a bad length distribution, a
    /// vocabulary without plain-word tokens).
    #[error("invalid sampler settings: {0}")]
    InvalidSampler(String),
    /// The messages array is not what the OpenAI chat API accepts.
    #[error("invalid messages: {0}")]
    InvalidMessages(String),
}

impl TextError {
    /// Whether the tokenizer named is simply not there (not cached, not a Hugging Face name,
    /// no tokenizer.json), as opposed to present but unreadable or malformed.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            TextError::ModelNotCached { .. }
                | TextError::BadModelName(_)
                | TextError::MissingTokenizer(_)
        )
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TextError::Io {
            path: path.into(),
            source,
        }
    }
}
