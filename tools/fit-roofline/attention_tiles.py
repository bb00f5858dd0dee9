#!/usr/bin/env python3
"""Checks the roofline's FlashAttention-2 query-tile term for decode attention against
LLMServingSim's attention microbenchmarks (never against a run's requests).

usage: tools/fit-roofline/attention_tiles.py FIT_PROFILE_TP1_DIR GPU [CHECK_PROFILE_TP1_DIR GPU ...]
  e.g. /work/runs/rtxpro6000-llama-3.1-8b/profile/tp1 rtx-pro-6000 \
       /work/runs/rtx4090-llama-3.1-8b/profile/tp1 rtx-4090
Standard library only. Llama-3.1-8B at TP 1 (32 query heads, 8 KV heads of 128), as profiled.

The term (crates/perf/src/latency/roofline/attention.rs, `attn_tiles=on`): FlashAttention-2's
split-KV kernel (the one vLLM's paged KV cache runs) computes query tiles of kBlockM = 64 rows
whole. A decode-only batch packs each KV head's 4 query heads into one tile
(`seqlenq_ngroups_swapped`): 64 rows per KV head, memory-bound. With a prefill in the batch each
decode query head is a sequence of one row in a tile of its own: 64 rows per query head, so
decode attention does 64x its useful FLOPs and becomes compute-bound. The tiles are priced at
the attention kernel's FLOP rate (attn_eff x BF16 peak); no new constant.

What this script measures, per profile (attention.csv rows with both a prefill chunk and at
least 16 decodes, whose decode part takes >= 100 us):
  implied tile efficiency  the decode tiles' FLOPs / (measured time - the same prefill measured
                           alone) / the BF16 peak: the rate the padded tiles really reach.
                           Fitted on the first profile (median), checked on the others against
                           the a-priori attn_eff the roofline uses.
  roofline / measured      of every mixed row and every decode-only row (time >= 100 us), with
                           and without the term, at the a-priori efficiencies.
"""
import csv
import statistics
import sys

# crates/perf/src/gpu.rs: dense BF16 TFLOP/s, GB/s. crates/perf/src/latency/roofline.rs defaults.
GPUS = {"rtx-pro-6000": (503.8, 1597.0), "rtx-4090": (165.2, 1008.0)}
ATTN_EFF, MEM_EFF, KERNEL_US = 0.45, 0.85, 2.0
HEADS, KV_HEADS, HEAD_DIM, TILE = 32, 8, 128, 64
KV_TOKEN_BYTES = 2 * KV_HEADS * HEAD_DIM * 2


def kernel_us(flops, bytes_, peak, bw):
    return max(flops / (peak * 1e6 * ATTN_EFF), bytes_ / (bw * 1e3 * MEM_EFF)) + KERNEL_US


def decode_flops(n, kv, mixed, tiles):
    kv_tokens = n * (kv + 1)
    if not tiles:
        return 4 * HEADS * HEAD_DIM * kv_tokens
    group = HEADS // KV_HEADS
    rows = group * TILE if mixed else -(-group // TILE) * TILE
    return 4 * KV_HEADS * HEAD_DIM * rows * kv_tokens


def roofline_us(pc, kp, n, kv, peak, bw, tiles):
    t = 0.0
    if pc > 0:
        pairs = pc * kp + pc * (pc + 1) / 2
        t += kernel_us(4 * HEADS * HEAD_DIM * pairs,
                       (kp + pc) * KV_TOKEN_BYTES + pc * 2 * HEADS * HEAD_DIM * 2, peak, bw)
    if n > 0:
        t += kernel_us(decode_flops(n, kv, pc > 0, tiles),
                       n * (kv + 1) * KV_TOKEN_BYTES + n * 2 * HEADS * HEAD_DIM * 2, peak, bw)
    return t


def quantiles(xs):
    xs = sorted(xs)
    q = lambda p: xs[int(p * (len(xs) - 1))]
    return f"median {q(0.5):.3f}, p10 {q(0.1):.3f}, p90 {q(0.9):.3f} ({len(xs)} rows)"


def study(tp1_dir, gpu):
    peak, bw = GPUS[gpu]
    with open(f"{tp1_dir}/attention.csv", newline="") as f:
        rows = [tuple(int(float(r[k])) if k != "time_us" else float(r[k])
                      for k in ("prefill_chunk", "kv_prefill", "n_decode", "kv_decode", "time_us"))
                for r in csv.DictReader(f)]
    prefill_alone = {(pc, kp): t for pc, kp, n, kv, t in rows if n == 0}
    implied = []
    for pc, kp, n, kv, t in rows:
        if pc == 0 or n < 16 or (pc, kp) not in prefill_alone:
            continue
        decode_part = t - prefill_alone[(pc, kp)]
        if decode_part >= 100:
            implied.append(decode_flops(n, kv, True, True) / decode_part / (peak * 1e6))
    out = {"gpu": gpu, "implied_tile_efficiency": statistics.median(implied),
           "implied_rows": len(implied)}
    print(f"{gpu} ({tp1_dir})")
    print(f"  implied tile efficiency: {quantiles(implied)}")
    for regime, keep in (("mixed", lambda pc, n: pc > 0 and n >= 16),
                         ("decode-only", lambda pc, n: pc == 0 and n >= 1)):
        for tiles in (False, True):
            ratios = [roofline_us(pc, kp, n, kv, peak, bw, tiles) / t
                      for pc, kp, n, kv, t in rows if keep(pc, n) and t >= 100]
            label = "with tiles" if tiles else "without   "
            print(f"  {regime:11s} roofline/measured {label}: {quantiles(ratios)}")
    return out


def main(argv):
    if len(argv) < 2 or len(argv) % 2:
        sys.exit(__doc__)
    pairs = list(zip(argv[0::2], argv[1::2]))
    fit = study(*pairs[0])
    print(f"fitted on {fit['gpu']}: tile efficiency {fit['implied_tile_efficiency']:.3f} "
          f"(a-priori attn_eff {ATTN_EFF})")
    for d, g in pairs[1:]:
        held = study(d, g)
        print(f"held-out {g}: implied tile efficiency {held['implied_tile_efficiency']:.3f} "
              f"against {fit['implied_tile_efficiency']:.3f} fitted on {fit['gpu']}")


if __name__ == "__main__":
    main(sys.argv[1:])
