//! Prompts of a Mooncake trace line (`timestamp`, `input_length`, `output_length`,
//! `hash_ids`), the format of the Mooncake FAST'25 traces (kvcache-ai/Mooncake,
//! `FAST25-release/traces/`) that NVIDIA Dynamo's mocker and AIPerf replay.
//!
//! A trace carries no text: each entry of `hash_ids` stands for one block of
//! [`MOONCAKE_HASH_BLOCK_TOKENS`] prompt tokens, and two requests share a prefix exactly where
//! their `hash_ids` share one. The last block holds what is left of `input_length`, 1 to a
//! block's worth of tokens. The replaying clients build a prompt by giving every hash id one
//! block of tokens, drawn once and reused wherever the id appears (AIPerf's
//! `PromptGenerator._build_token_sequence`), so the server's prefix cache sees the shared
//! prefixes the trace recorded. Here each hash id's tokens are a pure function of (seed, hash
//! id, position in the block), so no table of ids is kept: the same id gives the same tokens in
//! every request and every run with the same seed, and the last, partial block is the first
//! tokens of its id's block.

use llm_emu_core::prompt::{HashIdPrompt, PromptTokens};

/// Tokens per `hash_ids` entry in the published Mooncake traces (their README: "The block size
/// is 512 tokens"), and the default of AIPerf and of Dynamo's trace tools.
pub const MOONCAKE_HASH_BLOCK_TOKENS: usize = 512;

/// Separates hash-id token streams from the line-numbered synthetic prompts
/// ([`crate::workload::synthetic_prompt`]), so that a file mixing both formats cannot share a
/// prefix by accident ("mooncake" in ASCII).
const HASH_ID_STREAM: u64 = 0x6d6f_6f6e_6361_6b65;

/// How many tokens the last hash block of a prompt holds, or why `hash_ids` cannot describe a
/// prompt of `input_length` tokens in blocks of `block_tokens`: every block but the last must
/// be full and the last must hold 1 to `block_tokens` tokens (AIPerf's check, with the same
/// meaning). `hash_ids_len` is at least 1.
pub fn last_block_tokens(
    input_length: usize,
    hash_ids_len: usize,
    block_tokens: usize,
) -> Result<usize, String> {
    debug_assert!(hash_ids_len >= 1 && block_tokens >= 1);
    let full = (hash_ids_len - 1).saturating_mul(block_tokens);
    match input_length.checked_sub(full) {
        Some(last) if (1..=block_tokens).contains(&last) => Ok(last),
        _ => Err(format!(
            "input_length {input_length} does not fit {hash_ids_len} hash_ids of {block_tokens} \
             tokens each: the last block would hold {} tokens, not 1 to {block_tokens} \
             (--hash-block-size sets the tokens per hash id; the Mooncake traces use {})",
            input_length as i128 - full as i128,
            MOONCAKE_HASH_BLOCK_TOKENS
        )),
    }
}

/// The prompt of `hash_ids` for a prompt of `input_length` tokens: each id's block of
/// `block_tokens` tokens in order, the last cut to what is left, carried as that rule
/// ([`HashIdPrompt`]: the ids are drawn only when read). The ids are uniform in
/// `[1000, 30000)`, as the line-numbered synthetic prompts' are. Errors as
/// [`last_block_tokens`]; `hash_ids` must not be empty.
pub fn hash_id_prompt(
    seed: u64,
    hash_ids: &[u64],
    input_length: usize,
    block_tokens: usize,
) -> Result<PromptTokens, String> {
    last_block_tokens(input_length, hash_ids.len(), block_tokens)?;
    Ok(HashIdPrompt {
        stream: seed ^ HASH_ID_STREAM,
        ids: hash_ids.into(),
        block_tokens,
        len: input_length,
    }
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_hash_id_is_a_shared_block_and_the_last_block_is_its_ids_first_tokens() {
        let a = hash_id_prompt(7, &[0, 1, 2], 2 * 4 + 3, 4)
            .unwrap()
            .to_arc();
        let b = hash_id_prompt(7, &[0, 1, 9, 2], 3 * 4 + 4, 4)
            .unwrap()
            .to_arc();
        assert_eq!(a.len(), 11);
        assert_eq!(b.len(), 16);
        assert_eq!(a[..8], b[..8], "ids 0 and 1 are the same blocks");
        assert_ne!(a[8..11], b[8..11], "id 2 is not id 9");
        assert_eq!(
            a[8..11],
            b[12..15],
            "the last block is the first tokens of id 2's block"
        );
        assert!(a.iter().all(|t| (1000..30000).contains(t)));
        // Another seed, other tokens; the same seed, the same tokens.
        assert_ne!(hash_id_prompt(8, &[0, 1, 2], 11, 4).unwrap(), a);
        assert_eq!(hash_id_prompt(7, &[0, 1, 2], 11, 4).unwrap(), a);
    }

    #[test]
    fn hash_ids_must_cover_the_length_with_a_non_empty_last_block() {
        assert_eq!(last_block_tokens(6758, 14, 512), Ok(102));
        assert_eq!(last_block_tokens(512, 1, 512), Ok(512));
        assert_eq!(last_block_tokens(1, 1, 512), Ok(1));
        for (len, n) in [(513, 1), (512, 2), (100, 3)] {
            let e = last_block_tokens(len, n, 512).unwrap_err();
            assert!(e.contains(&format!("input_length {len}")), "{e}");
            assert!(e.contains("--hash-block-size"), "{e}");
        }
        assert!(last_block_tokens(100, 3, 512)
            .unwrap_err()
            .contains("would hold -924 tokens"));
        // No overflow on absurd counts.
        assert!(last_block_tokens(10, usize::MAX, usize::MAX).is_err());
    }

    #[test]
    fn hash_id_blocks_do_not_repeat_line_numbered_prompts() {
        let by_line = crate::workload::synthetic_ids(7, 0, 16);
        let by_id = hash_id_prompt(7, &[0], 16, 16).unwrap();
        assert_ne!(by_id, by_line);
    }

    /// Engine blocks of any size hash equal exactly where the tokens they cover come from the
    /// same hash ids at the same positions, whether they align with the hash blocks or not.
    #[test]
    fn block_hashes_follow_the_hash_ids() {
        let hashes = |ids: &[u64], len: usize, bs: usize| {
            let mut h = Vec::new();
            hash_id_prompt(7, ids, len, 8)
                .unwrap()
                .extend_block_hashes(&mut h, bs, None);
            h
        };
        // Shared ids 0, 1, then 2 against 9: with engine blocks of 8 the first two agree;
        // of 4, the first four; of 5 (across the hash blocks' edges), the first three (tokens
        // 0..15 are ids 0 and 1), and block 3 (tokens 15..20, id 1 then id 2 or 9) differs.
        let (a, b) = (&[0u64, 1, 2][..], &[0u64, 1, 9][..]);
        for (bs, same) in [(8, 2), (4, 4), (5, 3), (16, 1)] {
            let (x, y) = (hashes(a, 24, bs), hashes(b, 24, bs));
            assert_eq!(x.len(), 24 / bs);
            assert_eq!(x[..same], y[..same], "block size {bs}");
            assert!(
                x[same..].iter().zip(&y[same..]).all(|(p, q)| p != q),
                "block size {bs}"
            );
        }
        // The same tokens given as ids share no hash with the rule's (another domain).
        let ids = hash_id_prompt(7, a, 24, 8).unwrap().to_arc();
        let mut given = Vec::new();
        PromptTokens::from(ids).extend_block_hashes(&mut given, 8, None);
        assert!(given.iter().zip(&hashes(a, 24, 8)).all(|(p, q)| p != q));
    }
}
