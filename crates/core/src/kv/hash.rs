//! Block hashes for prefix caching (vLLM `v1/core/kv_cache_utils.py::hash_block_tokens`).
//!
//! A full block's hash covers its parent's hash, its token ids and its extra keys (here the
//! request's `cache_salt`, on the first block only, as vLLM does). vLLM hashes a pickle with
//! SHA-256; the emulator only needs a stable, collision-resistant hash of the same inputs, so it
//! uses XXH3-128, which is stable across Rust releases (golden files depend on that).

use xxhash_rust::xxh3::{xxh3_128, Xxh3};

/// The hash of one full block of tokens, chained over all blocks before it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockHash(pub u128);

/// The chain's seed: the "parent" of a request's first block.
pub(crate) const NONE_HASH: u128 = 0x6c6c_6d2d_656d_752d_6e6f_6e65_2d68_6173;

/// Bytes of one block's hash input that [`hash_block_tokens`] lays out on the stack: the parent
/// hash (16), 64 tokens (256) and a salt of up to 63 bytes with its tag byte. Longer inputs
/// (blocks of more than 64 tokens, long salts) take the streaming hasher, which gives the same
/// digest.
const STACK_INPUT: usize = 336;

/// The stack buffer for the common input (a parent and 16 tokens, 80 bytes, or a short salt
/// with them): zeroing it is a few stores, where the full [`STACK_INPUT`] buffer takes a
/// `memset` call per block hashed.
const SMALL_STACK_INPUT: usize = 96;

/// Hashes one full block given its parent's hash (`None` for the first block).
///
/// The input is the parent hash (16 bytes, little-endian), each token id (4 bytes,
/// little-endian) and, with a salt, a tag byte 1 and the salt's bytes. XXH3's streaming and
/// one-shot forms give the same digest for the same bytes; the one-shot form over a stack
/// buffer skips the streaming state's setup and buffering (a block of 16 tokens is 80 bytes).
pub fn hash_block_tokens(
    parent: Option<BlockHash>,
    tokens: &[u32],
    cache_salt: Option<&str>,
) -> BlockHash {
    let parent = parent.map_or(NONE_HASH, |p| p.0).to_le_bytes();
    let salt_len = cache_salt.map_or(0, |s| 1 + s.len());
    let len = 16 + tokens.len() * 4 + salt_len;
    if len <= SMALL_STACK_INPUT {
        hash_on_stack::<SMALL_STACK_INPUT>(&parent, tokens, cache_salt, len)
    } else if len <= STACK_INPUT {
        hash_on_stack::<STACK_INPUT>(&parent, tokens, cache_salt, len)
    } else {
        hash_block_tokens_streaming(&parent, tokens, cache_salt)
    }
}

/// [`hash_block_tokens`] over a buffer of `N ≥ len` bytes on the stack.
#[inline(always)]
fn hash_on_stack<const N: usize>(
    parent: &[u8; 16],
    tokens: &[u32],
    cache_salt: Option<&str>,
    len: usize,
) -> BlockHash {
    let mut buf = [0u8; N];
    buf[..16].copy_from_slice(parent);
    for (dst, t) in buf[16..16 + tokens.len() * 4]
        .chunks_exact_mut(4)
        .zip(tokens)
    {
        dst.copy_from_slice(&t.to_le_bytes());
    }
    if let Some(salt) = cache_salt {
        let at = 16 + tokens.len() * 4;
        // A tag byte keeps "no salt" and "empty salt" apart.
        buf[at] = 1;
        buf[at + 1..len].copy_from_slice(salt.as_bytes());
    }
    BlockHash(xxh3_128(&buf[..len]))
}

/// [`hash_block_tokens`] for inputs larger than its stack buffer: the same bytes, fed in pieces.
fn hash_block_tokens_streaming(
    parent: &[u8; 16],
    tokens: &[u32],
    cache_salt: Option<&str>,
) -> BlockHash {
    let mut h = Xxh3::new();
    h.update(parent);
    let mut buf = [0u8; 256];
    for chunk in tokens.chunks(64) {
        for (i, t) in chunk.iter().enumerate() {
            buf[i * 4..i * 4 + 4].copy_from_slice(&t.to_le_bytes());
        }
        h.update(&buf[..chunk.len() * 4]);
    }
    if let Some(salt) = cache_salt {
        h.update(&[1]);
        h.update(salt.as_bytes());
    }
    BlockHash(h.digest128())
}

/// Hashes the full block that starts at token `start` of a request: the salt enters only the
/// block starting at token 0 (vLLM's `generate_block_hash_extra_keys`).
pub fn hash_request_block(
    parent: Option<BlockHash>,
    start: usize,
    tokens: &[u32],
    cache_salt: Option<&str>,
) -> BlockHash {
    hash_block_tokens(parent, tokens, if start == 0 { cache_salt } else { None })
}

/// Appends the hashes of every block of `tokens` that became full since `hashes` was last
/// extended (vLLM's `request_block_hasher`, called whenever tokens are appended).
pub fn extend_block_hashes(
    hashes: &mut Vec<BlockHash>,
    tokens: &[u32],
    block_size: usize,
    cache_salt: Option<&str>,
) {
    let mut start = hashes.len() * block_size;
    while start + block_size <= tokens.len() {
        let salt = if start == 0 { cache_salt } else { None };
        let h = hash_block_tokens(
            hashes.last().copied(),
            &tokens[start..start + block_size],
            salt,
        );
        hashes.push(h);
        start += block_size;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_depends_on_parent_tokens_and_salt() {
        let a = hash_block_tokens(None, &[1, 2, 3, 4], None);
        assert_eq!(a, hash_block_tokens(None, &[1, 2, 3, 4], None));
        assert_ne!(a, hash_block_tokens(None, &[1, 2, 3, 5], None));
        assert_ne!(a, hash_block_tokens(None, &[1, 2, 3, 4], Some("s")));
        assert_ne!(hash_block_tokens(None, &[1, 2, 3, 4], Some("")), a);
        let b1 = hash_block_tokens(Some(a), &[9, 9, 9, 9], None);
        let b2 = hash_block_tokens(
            Some(hash_block_tokens(None, &[0, 2, 3, 4], None)),
            &[9, 9, 9, 9],
            None,
        );
        assert_ne!(b1, b2);
    }

    #[test]
    fn stack_and_streaming_inputs_hash_alike() {
        // Block sizes and salts on both sides of the stack buffer's size.
        for n in [1usize, 16, 19, 20, 48, 64, 65, 300] {
            let toks: Vec<u32> = (0..n as u32)
                .map(|i| i.wrapping_mul(2_654_435_761))
                .collect();
            let long_salt = "s".repeat(100);
            for salt in [
                None,
                Some(""),
                Some("abc"),
                Some(&long_salt[..63]),
                Some(long_salt.as_str()),
            ] {
                let parent = Some(BlockHash(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210));
                for p in [None, parent] {
                    let bytes = p.map_or(NONE_HASH, |p| p.0).to_le_bytes();
                    assert_eq!(
                        hash_block_tokens(p, &toks, salt),
                        hash_block_tokens_streaming(&bytes, &toks, salt),
                        "{n} tokens, salt {salt:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn extends_only_full_blocks_and_salts_first_block_only() {
        let toks: Vec<u32> = (0..10).collect();
        let mut h = Vec::new();
        extend_block_hashes(&mut h, &toks[..3], 4, Some("x"));
        assert!(h.is_empty());
        extend_block_hashes(&mut h, &toks, 4, Some("x"));
        assert_eq!(h.len(), 2);
        assert_eq!(h[0], hash_block_tokens(None, &toks[0..4], Some("x")));
        assert_eq!(h[1], hash_block_tokens(Some(h[0]), &toks[4..8], None));
    }
}
