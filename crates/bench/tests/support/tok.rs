//! A word-level stand-in tokenizer: ids 0..1000 are the words `w0`..`w999` (0 special), any
//! other word maps into that range by its bytes.

#![allow(dead_code)]

use llm_emu_bench::tokenizer::Tokenizer;

pub struct WordTokenizer;

impl Tokenizer for WordTokenizer {
    fn encode(&self, text: &str, _add_special_tokens: bool) -> Result<Vec<u32>, String> {
        Ok(text
            .split_whitespace()
            .map(
                |w| match w.strip_prefix('w').and_then(|n| n.parse::<u32>().ok()) {
                    Some(n) if n < 1000 => n,
                    _ => {
                        w.bytes()
                            .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32))
                            % 999
                            + 1
                    }
                },
            )
            .collect())
    }
    fn decode(&self, ids: &[u32]) -> Result<String, String> {
        Ok(ids
            .iter()
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" "))
    }
    fn vocab_size(&self) -> usize {
        1000
    }
    fn is_special(&self, id: u32) -> bool {
        id == 0
    }
    fn apply_chat_template(&self, user: &str) -> Result<String, String> {
        Ok(format!("user: {user} assistant:"))
    }
}
