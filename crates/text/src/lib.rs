//! Text side of llm-emu: tokenizer loading, chat templates, incremental detokenization and
//! synthetic output tokens, each as vLLM 0.19 (with Hugging Face `tokenizers`/`transformers`)
//! does it.
//!
//! - [`TextModel`] loads a tokenizer (a path, the local Hugging Face cache, or the embedded
//!   Llama-3.1-8B-Instruct tokenizer) with its chat template and special-token facts.
//! - [`TextModel::render_chat`] renders an OpenAI `messages` array as `apply_chat_template`
//!   does after vLLM's message parsing.
//! - [`IncrementalDetokenizer`] is vLLM's v1 `FastIncrementalDetokenizer` with stop strings.
//! - [`VocabSampler`] picks readable synthetic output tokens and ends them with EOS at a
//!   length drawn from an [`OutputLengthDistribution`].

mod byte_table;
mod chat;
mod detok;
mod error;
mod files;
mod model;
mod pyjson;
mod sampler;
mod strftime;

pub use chat::{
    python_str_repr, render_template, ChatTemplateOptions, InProcessRenderer, TemplateRenderer,
    TEMPLATE_FUEL, TEMPLATE_OUTPUT_LIMIT_BYTES, TEMPLATE_RECURSION_LIMIT,
};
pub use detok::{DetokenizeOptions, DetokenizeStep, IncrementalDetokenizer};
pub use error::TextError;
pub use files::TokenizerSource;
pub use model::TextModel;
pub use sampler::{OutputLengthDistribution, VocabSampler};
