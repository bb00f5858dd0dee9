//! The tokenizer behind `llm-emu bench`.

use anyhow::{bail, Result};
use llm_emu_bench::tokenizer::Tokenizer;

pub fn load_tokenizer(id: &str) -> Result<Box<dyn Tokenizer>> {
    bail!("no tokenizer available for `{id}` yet")
}
