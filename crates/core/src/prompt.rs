//! A request's prompt token ids: given, or synthetic and defined by a rule.
//!
//! Workloads that record only a prompt's length (a trace line's `prompt_len`, the built-in
//! synthetic workload) get token ids that are a pure function of a stream (the seed), a key
//! (the line) and a position ([`synthetic_token`]). Such a prompt is carried as that rule, not
//! as its ids: nothing in a simulation reads a synthetic prompt's ids but its block hashes,
//! and those follow from the rule alone ([`SyntheticPrompt::block_hash`]). A million
//! requests of 857 tokens on average would otherwise draw, store, hash and free 857 million
//! ids.
//!
//! Prefix caching sees the same sharing either way: two synthetic prompts of one stream and
//! key agree on their common length and differ elsewhere (the ids are 29,000-valued draws, so
//! a block of 16 is one of 2²³⁶), and their block hashes are equal exactly on the blocks both
//! hold whole. A synthetic prompt's blocks are hashed in their own domain (a keyed XXH3-128
//! of the stream, key and block index, chained as vLLM chains block hashes), so they never
//! equal the hash of a block of given ids.
//!
//! A Mooncake trace's prompt is a rule too ([`HashIdPrompt`]): each hash id stands for a block
//! of synthetic tokens of that id, so two prompts agree exactly where their hash ids do, and a
//! block's hash follows from the hash ids (and positions) its tokens come from.

use std::borrow::Cow;
use std::sync::Arc;

use xxhash_rust::xxh3::{xxh3_128_with_seed, Xxh3};

use crate::kv::hash::{extend_block_hashes, BlockHash, NONE_HASH};

/// A request's prompt: its token ids, or the rule that defines them.
#[derive(Clone, Debug)]
pub enum PromptTokens {
    /// Every id (shared, not copied).
    Ids(Arc<[u32]>),
    /// Ids defined by [`synthetic_token`]; never stored unless asked for.
    Synthetic(SyntheticPrompt),
    /// Ids defined by hash ids, each a block of [`synthetic_token`]s; never stored unless
    /// asked for.
    HashIds(HashIdPrompt),
}

/// `len` token ids in blocks of `block_tokens`, block `k` being
/// `synthetic_token(stream, ids[k], 0..block_tokens)` (a Mooncake trace's `hash_ids`; the last
/// block cut to what is left). Two such prompts of one stream agree exactly where their hash
/// ids do, so their block hashes follow from the ids: a block's hash covers the (hash id,
/// first position, end) runs its tokens come from, chained as usual.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashIdPrompt {
    pub stream: u64,
    pub ids: Arc<[u64]>,
    /// Tokens per hash id (≥ 1); every block but the last is whole.
    pub block_tokens: usize,
    pub len: usize,
}

/// `len` token ids `synthetic_token(stream, key, 0..len)`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SyntheticPrompt {
    pub stream: u64,
    pub key: u64,
    pub len: usize,
    /// The source vouches that no other prompt of the run has this stream and key (a trace's
    /// line number): then no other request can hold a block of this request's tokens, prompt
    /// or outputs, and the engine defers caching them until the request is preempted, the one
    /// event after which a lookup (its own) can find them ([`crate::Request`]'s
    /// `defers_caching`). Not part of the ids or of the block hashes.
    pub unique_key: bool,
}

/// One synthetic token id, uniform in `[1000, 30000)`: a pure function of a stream (the seed),
/// a key (a line, a hash id) and a position.
#[inline]
pub fn synthetic_token(stream: u64, key: u64, pos: u64) -> u32 {
    1000 + (splitmix3(stream, key, pos) % 29000) as u32
}

/// SplitMix64 over the three inputs: a tiny, stable mixer.
#[inline]
fn splitmix3(a: u64, b: u64, c: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ c.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Appends the hashes of full blocks `hashes.len()..full`, each chained on the one before
/// (`block_hash(parent, index)`).
fn extend_chain(
    hashes: &mut Vec<BlockHash>,
    full: usize,
    block_hash: impl Fn(Option<BlockHash>, usize) -> BlockHash,
) {
    for index in hashes.len()..full {
        let h = block_hash(hashes.last().copied(), index);
        hashes.push(h);
    }
}

/// The XXH3 seed of synthetic blocks' hashes: a domain of their own, apart from the hashes of
/// given ids (unseeded XXH3-128).
const SYNTHETIC_BLOCK_SEED: u64 = 0x7379_6e74_6865_7469;

/// The XXH3 seed of hash-id prompts' block hashes: a third domain.
const HASH_ID_BLOCK_SEED: u64 = 0x6861_7368_2d69_6473;

impl HashIdPrompt {
    /// Token `pos` (< `len`).
    #[inline]
    pub fn token(&self, pos: usize) -> u32 {
        debug_assert!(pos < self.len);
        let id = self.ids[pos / self.block_tokens];
        synthetic_token(self.stream, id, (pos % self.block_tokens) as u64)
    }

    /// The hash of full block `index` of `block_size` tokens, chained on its parent's: over
    /// the stream and the (hash id, first position, end) runs the block's tokens come from;
    /// the salt enters the first block only.
    pub fn block_hash(
        &self,
        parent: Option<BlockHash>,
        index: usize,
        block_size: usize,
        cache_salt: Option<&str>,
    ) -> BlockHash {
        // Parent, stream and up to four runs on the stack, hashed in one call; more runs (engine
        // blocks wider than three hash blocks) or a salt take the streaming hasher, which
        // gives the same digest for the same bytes.
        let mut buf = [0u8; 24 + 4 * 24];
        buf[..16].copy_from_slice(&parent.map_or(NONE_HASH, |p| p.0).to_le_bytes());
        buf[16..24].copy_from_slice(&self.stream.to_le_bytes());
        let mut used = 24;
        let mut stream: Option<Xxh3> = None;
        let (start, end) = (index * block_size, (index + 1) * block_size);
        let mut pos = start;
        while pos < end {
            let k = pos / self.block_tokens;
            let run_end = ((k + 1) * self.block_tokens).min(end);
            let mut run = [0u8; 24];
            run[..8].copy_from_slice(&self.ids[k].to_le_bytes());
            run[8..16].copy_from_slice(&((pos - k * self.block_tokens) as u64).to_le_bytes());
            run[16..].copy_from_slice(&((run_end - k * self.block_tokens) as u64).to_le_bytes());
            match &mut stream {
                Some(h) => h.update(&run),
                None if used + 24 <= buf.len() => {
                    buf[used..used + 24].copy_from_slice(&run);
                    used += 24;
                }
                None => {
                    let mut h = Xxh3::with_seed(HASH_ID_BLOCK_SEED);
                    h.update(&buf[..used]);
                    h.update(&run);
                    stream = Some(h);
                }
            }
            pos = run_end;
        }
        match (cache_salt.filter(|_| index == 0), stream) {
            (None, None) => BlockHash(xxh3_128_with_seed(&buf[..used], HASH_ID_BLOCK_SEED)),
            (salt, stream) => {
                let mut h = stream.unwrap_or_else(|| {
                    let mut h = Xxh3::with_seed(HASH_ID_BLOCK_SEED);
                    h.update(&buf[..used]);
                    h
                });
                if let Some(salt) = salt {
                    h.update(&[1]);
                    h.update(salt.as_bytes());
                }
                BlockHash(h.digest128())
            }
        }
    }
}

impl SyntheticPrompt {
    /// Token `pos` (< `len`).
    #[inline]
    pub fn token(&self, pos: usize) -> u32 {
        debug_assert!(pos < self.len);
        synthetic_token(self.stream, self.key, pos as u64)
    }

    /// The hash of full block `index` (tokens `index·block_size ..`), chained on its parent's
    /// (`None` for the first block). The salt enters the first block only, as with given ids
    /// (vLLM's `generate_block_hash_extra_keys`); the chain carries it on.
    pub fn block_hash(
        &self,
        parent: Option<BlockHash>,
        index: usize,
        block_size: usize,
        cache_salt: Option<&str>,
    ) -> BlockHash {
        let parent = parent.map_or(NONE_HASH, |p| p.0);
        let mut buf = [0u8; 48];
        buf[..16].copy_from_slice(&parent.to_le_bytes());
        buf[16..24].copy_from_slice(&self.stream.to_le_bytes());
        buf[24..32].copy_from_slice(&self.key.to_le_bytes());
        buf[32..40].copy_from_slice(&(index as u64).to_le_bytes());
        buf[40..48].copy_from_slice(&(block_size as u64).to_le_bytes());
        match cache_salt.filter(|_| index == 0) {
            None => BlockHash(xxh3_128_with_seed(&buf, SYNTHETIC_BLOCK_SEED)),
            Some(salt) => {
                // A tag byte keeps "no salt" and "empty salt" apart, as for given ids.
                let mut v = Vec::with_capacity(buf.len() + 1 + salt.len());
                v.extend_from_slice(&buf);
                v.push(1);
                v.extend_from_slice(salt.as_bytes());
                BlockHash(xxh3_128_with_seed(&v, SYNTHETIC_BLOCK_SEED))
            }
        }
    }
}

impl PromptTokens {
    /// Whether this is a synthetic prompt whose key no other prompt of the run has
    /// ([`SyntheticPrompt::unique_key`]).
    pub fn has_unique_key(&self) -> bool {
        matches!(self, PromptTokens::Synthetic(s) if s.unique_key)
    }

    pub fn len(&self) -> usize {
        match self {
            PromptTokens::Ids(ids) => ids.len(),
            PromptTokens::Synthetic(s) => s.len,
            PromptTokens::HashIds(h) => h.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every id: borrowed when given, drawn when synthetic.
    pub fn ids(&self) -> Cow<'_, [u32]> {
        match self {
            PromptTokens::Ids(ids) => Cow::Borrowed(ids),
            rule => Cow::Owned(rule.draw().collect()),
        }
    }

    /// Every id as a shared slice (drawn when by rule).
    pub fn to_arc(&self) -> Arc<[u32]> {
        match self {
            PromptTokens::Ids(ids) => ids.clone(),
            rule => rule.draw().collect(),
        }
    }

    /// Every id in order, each drawn by [`Self::token`].
    fn draw(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len()).map(|i| self.token(i))
    }

    /// Token `pos` (< `len`).
    pub fn token(&self, pos: usize) -> u32 {
        match self {
            PromptTokens::Ids(ids) => ids[pos],
            PromptTokens::Synthetic(s) => s.token(pos),
            PromptTokens::HashIds(h) => h.token(pos),
        }
    }

    /// Appends the hashes of the full blocks after the `hashes.len()` already there: over the
    /// ids when given ([`extend_block_hashes`]), by the rule when synthetic.
    pub fn extend_block_hashes(
        &self,
        hashes: &mut Vec<BlockHash>,
        block_size: usize,
        cache_salt: Option<&str>,
    ) {
        match self {
            PromptTokens::Ids(ids) => extend_block_hashes(hashes, ids, block_size, cache_salt),
            PromptTokens::Synthetic(s) => extend_chain(hashes, s.len / block_size, |parent, i| {
                s.block_hash(parent, i, block_size, cache_salt)
            }),
            PromptTokens::HashIds(h) => extend_chain(hashes, h.len / block_size, |parent, i| {
                h.block_hash(parent, i, block_size, cache_salt)
            }),
        }
    }
}

impl From<Arc<[u32]>> for PromptTokens {
    fn from(ids: Arc<[u32]>) -> Self {
        PromptTokens::Ids(ids)
    }
}

impl From<Vec<u32>> for PromptTokens {
    fn from(ids: Vec<u32>) -> Self {
        PromptTokens::Ids(ids.into())
    }
}

impl From<&[u32]> for PromptTokens {
    fn from(ids: &[u32]) -> Self {
        PromptTokens::Ids(ids.into())
    }
}

impl From<SyntheticPrompt> for PromptTokens {
    fn from(s: SyntheticPrompt) -> Self {
        PromptTokens::Synthetic(s)
    }
}

impl From<HashIdPrompt> for PromptTokens {
    fn from(h: HashIdPrompt) -> Self {
        PromptTokens::HashIds(h)
    }
}

/// Equal when the ids are (a prompt by rule and given ids compare by content).
impl PartialEq for PromptTokens {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (PromptTokens::Synthetic(a), PromptTokens::Synthetic(b))
                if (a.stream, a.key, a.len) == (b.stream, b.key, b.len) =>
            {
                true
            }
            _ => self.len() == other.len() && self.ids() == other.ids(),
        }
    }
}

impl PartialEq<Arc<[u32]>> for PromptTokens {
    fn eq(&self, other: &Arc<[u32]>) -> bool {
        *self == **other
    }
}

impl PartialEq<[u32]> for PromptTokens {
    fn eq(&self, other: &[u32]) -> bool {
        self.len() == other.len() && *self.ids() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synth(key: u64, len: usize) -> SyntheticPrompt {
        SyntheticPrompt {
            stream: 7,
            key,
            len,
            unique_key: false,
        }
    }

    fn hashes(p: &PromptTokens, bs: usize, salt: Option<&str>) -> Vec<BlockHash> {
        let mut h = Vec::new();
        p.extend_block_hashes(&mut h, bs, salt);
        h
    }

    #[test]
    fn synthetic_ids_are_the_rule_and_compare_by_content() {
        let s = synth(3, 40);
        let p = PromptTokens::from(s);
        let given = PromptTokens::Ids(p.to_arc());
        assert_eq!(p.len(), 40);
        assert_eq!(p, given);
        assert_eq!(given, p);
        assert_eq!(p.token(17), synthetic_token(7, 3, 17));
        assert_ne!(p, PromptTokens::from(synth(4, 40)));
        assert_ne!(p, PromptTokens::from(synth(3, 41)));
        assert!(p.ids().iter().all(|&t| (1000..30000).contains(&t)));
    }

    #[test]
    fn synthetic_blocks_share_exactly_the_common_whole_blocks() {
        let a = hashes(&synth(1, 50).into(), 16, None);
        let b = hashes(&synth(1, 37).into(), 16, None);
        let c = hashes(&synth(2, 50).into(), 16, None);
        assert_eq!(a.len(), 3);
        assert_eq!(b.len(), 2);
        assert_eq!(&a[..2], &b[..]);
        assert!(a.iter().zip(&c).all(|(x, y)| x != y));
        // Another block size, another salt: other hashes.
        let a8 = hashes(&synth(1, 50).into(), 8, None);
        assert_ne!(a8[0], a[0]);
        let salted = hashes(&synth(1, 50).into(), 16, Some("t"));
        assert!(a.iter().zip(&salted).all(|(x, y)| x != y));
        assert_ne!(salted, hashes(&synth(1, 50).into(), 16, Some("")));
        // Never the hash of the same ids given.
        let given = PromptTokens::from(synth(1, 50)).to_arc();
        let ids = hashes(&PromptTokens::Ids(given), 16, None);
        assert!(a.iter().zip(&ids).all(|(x, y)| x != y));
    }

    #[test]
    fn extending_hashes_continues_the_chain() {
        let p: PromptTokens = synth(9, 64).into();
        let whole = hashes(&p, 16, Some("s"));
        let mut part = whole[..2].to_vec();
        p.extend_block_hashes(&mut part, 16, Some("s"));
        assert_eq!(part, whole);
    }

    /// Blocks spanning more hash blocks than the stack buffer holds (streaming), and salts:
    /// equal ids give equal hashes, another id another hash.
    #[test]
    fn hash_id_blocks_hash_alike_on_and_off_the_stack() {
        let p = |ids: &[u64], len| -> PromptTokens {
            HashIdPrompt {
                stream: 3,
                ids: ids.into(),
                block_tokens: 2,
                len,
            }
            .into()
        };
        let ids: Vec<u64> = (0..20).collect();
        let mut other = ids.clone();
        other[12] = 99; // tokens 24..26: engine block 1 of 16
        for salt in [None, Some("s")] {
            let a = hashes(&p(&ids, 40), 16, salt);
            let b = hashes(&p(&ids[..17], 33), 16, salt);
            let c = hashes(&p(&other, 40), 16, salt);
            assert_eq!(a.len(), 2);
            assert_eq!(a, b);
            assert_eq!(a[0], c[0]);
            assert_ne!(a[1], c[1]);
            // Within the stack buffer (4 runs of 2 tokens in a block of 8) too.
            let (a8, c8) = (
                hashes(&p(&ids, 40), 8, salt),
                hashes(&p(&other, 40), 8, salt),
            );
            assert_eq!(a8[..3], c8[..3]);
            assert_ne!(a8[3], c8[3]);
        }
        assert_ne!(
            hashes(&p(&ids, 40), 16, None)[0],
            hashes(&p(&ids, 40), 16, Some("s"))[0]
        );
    }
}
