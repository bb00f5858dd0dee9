//! Decoding by table for byte-level BPE tokenizers (Llama 3, GPT-2, Qwen…): when the
//! tokenizer's decoder is `ByteLevel` alone, `tokenizers`' `decode(ids)` is the concatenation
//! of each token's bytes (the token's characters mapped back through GPT-2's byte-to-unicode
//! table, or its UTF-8 bytes when a character is outside the table), special tokens left out
//! when asked, read as UTF-8 with invalid sequences replaced by U+FFFD. The table holds those
//! bytes per id, so the incremental detokenizer's two decodes per token are a few copies
//! instead of a vocabulary look-up, a string clone and several allocations per id.

use tokenizers::{DecoderWrapper, Model, Tokenizer};

/// Each id's decoded bytes, built once per tokenizer.
pub(crate) struct ByteTable {
    /// All ids' bytes, one after another: id `i`'s are `bytes[ends[i - 1]..ends[i]]`.
    bytes: Vec<u8>,
    ends: Vec<u32>,
    /// Ids that `skip_special_tokens` leaves out (their token is a special added token).
    special: Vec<bool>,
}

/// GPT-2's `bytes_to_unicode`, reversed: the byte each stand-in character means.
fn char_bytes() -> std::collections::HashMap<char, u8> {
    let mut kept: Vec<u32> = (u32::from(b'!')..=u32::from(b'~'))
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut chars = kept.clone();
    let mut n = 0;
    for b in 0..=255u32 {
        if !kept.contains(&b) {
            kept.push(b);
            chars.push(256 + n);
            n += 1;
        }
    }
    kept.iter()
        .zip(&chars)
        .filter_map(|(&b, &c)| Some((char::from_u32(c)?, b as u8)))
        .collect()
}

impl ByteTable {
    /// The table of `tokenizer`, if its decoder is `ByteLevel` alone (`None` otherwise: then
    /// the library decodes).
    pub(crate) fn new(tokenizer: &Tokenizer) -> Option<ByteTable> {
        if !matches!(tokenizer.get_decoder(), Some(DecoderWrapper::ByteLevel(_))) {
            return None;
        }
        let map = char_bytes();
        let added = tokenizer.get_added_vocabulary();
        let n = tokenizer
            .get_added_tokens_decoder()
            .keys()
            .map(|&id| id as usize + 1)
            .max()
            .unwrap_or(0)
            .max(tokenizer.get_vocab_size(true));
        let mut table = ByteTable {
            bytes: Vec::new(),
            ends: Vec::with_capacity(n),
            special: Vec::with_capacity(n),
        };
        for id in 0..n as u32 {
            let token = added
                .simple_id_to_token(id)
                .or_else(|| tokenizer.get_model().id_to_token(id));
            let mut special = false;
            if let Some(t) = token {
                special = added.is_special_token(&t);
                let mapped: Option<Vec<u8>> = t.chars().map(|c| map.get(&c).copied()).collect();
                match mapped {
                    Some(b) => table.bytes.extend_from_slice(&b),
                    None => table.bytes.extend_from_slice(t.as_bytes()),
                }
            }
            table.ends.push(u32::try_from(table.bytes.len()).ok()?);
            table.special.push(special);
        }
        Some(table)
    }

    fn token(&self, id: u32) -> &[u8] {
        let i = id as usize;
        if i >= self.ends.len() {
            return &[];
        }
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.bytes[start..self.ends[i] as usize]
    }

    /// `tokenizer.decode(ids, skip_special_tokens)`.
    pub(crate) fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> String {
        let mut out = String::with_capacity(ids.len() * 8);
        self.decode_into(ids, skip_special_tokens, &mut out);
        out
    }

    /// [`ByteTable::decode`] into `out`, replacing its text and reusing its buffer.
    pub(crate) fn decode_into(&self, ids: &[u32], skip_special_tokens: bool, out: &mut String) {
        let mut bytes = std::mem::take(out).into_bytes();
        bytes.clear();
        for &id in ids {
            if skip_special_tokens && self.special.get(id as usize).copied().unwrap_or(false) {
                continue;
            }
            bytes.extend_from_slice(self.token(id));
        }
        *out = match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
    }
}

/// `tokenizers`' `step_decode_stream` with [`ByteTable::decode`] as its decode: the same
/// prefix bookkeeping, the same output and the same error.
pub(crate) fn step_decode_stream(
    table: &ByteTable,
    id: u32,
    skip_special_tokens: bool,
    ids: &mut Vec<u32>,
    prefix: &mut String,
    prefix_index: &mut usize,
) -> Result<Option<String>, String> {
    if prefix.is_empty() && !ids.is_empty() {
        let new_prefix = table.decode(ids, skip_special_tokens);
        if !new_prefix.ends_with('\u{FFFD}') {
            *prefix = new_prefix;
            *prefix_index = ids.len();
        }
    }
    ids.push(id);
    let mut string = table.decode(ids, skip_special_tokens);
    if string.len() > prefix.len() && !string.ends_with('\u{FFFD}') {
        if !string.starts_with(prefix.as_str()) {
            return Err(tokenizers::DecodeStreamError::InvalidPrefix {
                token_id: id,
                expected_prefix: prefix.clone(),
                actual_string: string,
            }
            .to_string());
        }
        // The new text is the decoded string past the prefix, kept in the string's own
        // buffer; the next prefix is decoded into the old one's.
        string.drain(..prefix.len());
        let new_prefix_index = ids.len() - *prefix_index;
        ids.drain(..*prefix_index);
        table.decode_into(ids, skip_special_tokens, prefix);
        *prefix_index = new_prefix_index;
        Ok(Some(string))
    } else {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::TokenizerSource;
    use crate::model::TextModel;

    fn builtin() -> TextModel {
        TextModel::load(&TokenizerSource::Builtin).expect("the built-in tokenizer loads")
    }

    /// A small deterministic generator (no dependency on the sampler under test).
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn every_id_decodes_as_the_library_does() {
        let m = builtin();
        let tok = &m.inner.tokenizer;
        let table = ByteTable::new(tok).expect("Llama 3's decoder is byte-level");
        for id in 0..table.ends.len() as u32 + 2 {
            for skip in [false, true] {
                assert_eq!(
                    table.decode(&[id], skip),
                    tok.decode(&[id], skip).expect("decodes"),
                    "id {id}, skip {skip}"
                );
            }
        }
    }

    #[test]
    fn streams_decode_as_the_library_does() {
        let m = builtin();
        let tok = &m.inner.tokenizer;
        let table = ByteTable::new(tok).expect("Llama 3's decoder is byte-level");
        let n = table.ends.len() as u64;
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        // Byte-fragment tokens (the ones that decode to U+FFFD alone) and special tokens, so
        // that held-back and skipped pieces occur often.
        let odd: Vec<u32> = (0..n as u32)
            .filter(|&id| {
                table.special[id as usize]
                    || tok
                        .decode(&[id], false)
                        .expect("decodes")
                        .contains('\u{FFFD}')
            })
            .collect();
        assert!(odd.len() > 100, "{} odd tokens", odd.len());
        for round in 0..400 {
            let skip = round % 2 == 0;
            let prompt: Vec<u32> = (0..round % 7)
                .map(|_| (next(&mut rng) % n) as u32)
                .collect();
            let (mut ids_a, mut prefix_a, mut index_a) = (prompt.clone(), String::new(), 0);
            let (mut ids_b, mut prefix_b, mut index_b) = (prompt, String::new(), 0);
            for _ in 0..40 {
                let r = next(&mut rng);
                let id = if r.is_multiple_of(3) {
                    odd[(r / 3 % odd.len() as u64) as usize]
                } else {
                    (r / 3 % n) as u32
                };
                let a = tokenizers::tokenizer::step_decode_stream(
                    tok,
                    vec![id],
                    skip,
                    &mut ids_a,
                    &mut prefix_a,
                    &mut index_a,
                )
                .map_err(|e| e.to_string());
                let b =
                    step_decode_stream(&table, id, skip, &mut ids_b, &mut prefix_b, &mut index_b);
                assert_eq!(a, b, "round {round}, id {id}");
                assert_eq!((&ids_a, &prefix_a, index_a), (&ids_b, &prefix_b, index_b));
                if a.is_err() {
                    break;
                }
            }
        }
    }
}
