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
    fn splits_prefill_and_decode() {
        let a = AttentionWork::of(&[(1, 99), (10, 0), (1, 9), (0, 50)], None);
        assert_eq!((a.decodes, a.decode_kv_tokens), (2, 110));
        assert_eq!((a.prefill_tokens, a.prefill_kv_tokens), (10, 10));
        assert_eq!(a.prefill_pairs, 55.0);
        let w = AttentionWork::of(&[(1, 99)], Some(32));
        assert_eq!(w.decode_kv_tokens, 32);
    }
}
