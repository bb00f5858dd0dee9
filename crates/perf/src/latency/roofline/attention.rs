//! How much attention work a batch does in one layer: query–key pairs (FLOPs) and KV tokens
//! read (bytes), for prefill chunks and decodes, with or without a sliding window.

/// Attention work of one layer kind for a batch, split as vLLM's varlen kernels see it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AttentionWork {
    /// New tokens of requests scheduled with more than one token.
    pub prefill_tokens: u64,
    /// Causal query–key pairs of those tokens (each sees its context and itself, capped at
    /// the window).
    pub prefill_pairs: f64,
    /// KV tokens those requests read (context + new, capped at the window).
    pub prefill_kv_tokens: u64,
    /// Requests scheduled with exactly one token.
    pub decodes: u64,
    /// KV tokens the decodes read (context + the new token, capped at the window).
    pub decode_kv_tokens: u64,
}

/// Query rows one thread block of FlashAttention-2's split-KV kernel computes at once
/// (`kBlockM` of `run_mha_fwd_splitkv_dispatch`, flash-attention `csrc/flash_attn/src/
/// flash_fwd_launch_template.h`); vLLM's paged KV cache always runs that kernel.
pub const FA2_QUERY_TILE_ROWS: u64 = 64;

/// Query rows FlashAttention-2's tensor cores compute per decode request and KV head: the
/// tile is computed whole, whatever number of its rows hold a query.
///
/// A batch of decodes only (`mixed` false) with grouped-query attention (`group` query heads
/// per KV head, above 1) and no sliding window is run with the group's query heads packed
/// into the query-length axis (`seqlenq_ngroups_swapped` of `mha_varlen_fwd`): one tile of
/// `⌈group / 64⌉ · 64` rows per KV head. With a prefill in the batch (or a window, or one
/// query head per KV head) every query head of a decode is its own sequence of one row: one
/// 64-row tile per query head, `group · 64` rows per KV head.
pub fn fa2_decode_tile_rows(mixed: bool, group: u64, window: bool) -> u64 {
    let group = group.max(1);
    if !mixed && group > 1 && !window {
        group.div_ceil(FA2_QUERY_TILE_ROWS) * FA2_QUERY_TILE_ROWS
    } else {
        group * FA2_QUERY_TILE_ROWS
    }
}

/// Σ_{j=1..q} min(c + j, w): the keys the `q` new tokens of a request with `c` computed
/// tokens attend to under a window of `w` (unbounded when `None`).
pub fn causal_pairs(q: u64, c: u64, window: Option<u64>) -> f64 {
    let (q, c) = (q as f64, c as f64);
    let full = |n: f64| n * c + n * (n + 1.0) / 2.0;
    match window {
        None => full(q),
        Some(w) => {
            let w = w as f64;
            let within = (w - c).clamp(0.0, q);
            full(within) + (q - within) * w
        }
    }
}

impl AttentionWork {
    /// Sums the batch's `(new tokens, computed before)` pairs for a layer with `window`.
    pub fn of(requests: &[(u64, u64)], window: Option<u64>) -> AttentionWork {
        let cap = |n: u64| window.map_or(n, |w| n.min(w));
        let mut a = AttentionWork::default();
        for &(q, c) in requests {
            match q {
                0 => {}
                1 => {
                    a.decodes += 1;
                    a.decode_kv_tokens += cap(c + 1);
                }
                _ => {
                    a.prefill_tokens += q;
                    a.prefill_pairs += causal_pairs(q, c, window);
                    a.prefill_kv_tokens += cap(c + q);
                }
            }
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_match_a_direct_count() {
        for (q, c, w) in [
            (5, 0, None),
            (5, 3, None),
            (7, 2, Some(4)),
            (3, 10, Some(4)),
            (9, 0, Some(4)),
        ] {
            let direct: u64 = (1..=q)
                .map(|j| w.map_or(c + j, |w: u64| (c + j).min(w)))
                .sum();
            assert_eq!(causal_pairs(q, c, w), direct as f64, "{q} {c} {w:?}");
        }
    }

    #[test]
    fn decode_tiles_pack_the_group_only_without_a_prefill() {
        // Llama-3.1-8B at TP 1: 32 query heads over 8 KV heads, a group of 4.
        assert_eq!(fa2_decode_tile_rows(false, 4, false), 64);
        assert_eq!(fa2_decode_tile_rows(true, 4, false), 256);
        // A window or plain multi-head attention: one tile per query head.
        assert_eq!(fa2_decode_tile_rows(false, 4, true), 256);
        assert_eq!(fa2_decode_tile_rows(false, 1, false), 64);
        // A group wider than a tile takes two.
        assert_eq!(fa2_decode_tile_rows(false, 65, false), 128);
        assert_eq!(fa2_decode_tile_rows(true, 0, false), 64);
    }

    #[test]
    fn splits_prefill_and_decode() {
        let a = AttentionWork::of(&[(1, 99), (10, 0), (1, 9), (0, 50)], None);
        assert_eq!((a.decodes, a.decode_kv_tokens), (2, 110));
        assert_eq!((a.prefill_tokens, a.prefill_kv_tokens), (10, 10));
        assert_eq!(a.prefill_pairs, 55.0);
        let w = AttentionWork::of(&[(1, 99)], Some(32));
        assert_eq!(w.decode_kv_tokens, 32);
    }
}
