#!/usr/bin/env python3
"""Fits the roofline's per-GPU efficiencies from NVIDIA aiconfigurator's public vLLM operator
tables (never from a run being validated) and writes crates/perf/data/roofline-fit.json.

usage: tools/fit-roofline/fit.py OUT.json SYSTEM_DIR [SYSTEM_DIR ...]
  SYSTEM_DIR: OUT/aiconfigurator/<system>/vllm/<version> as tools/fetch-operator-data.sh lays it
  out (gemm_perf.txt, context_attention_perf.txt). Standard library only.

Fitted, per GPU (named physical quantities of crates/perf/src/latency/roofline.rs):
  gemm_efficiency      median over large bf16 GEMMs (m >= 2048, n, k >= 4096) of achieved
                       FLOP/s / the GPU table's dense BF16 peak;
  memory_efficiency    median over weight-streaming bf16 GEMMs (m <= 16, n*k >= 2^24) of
                       (weights + activations bytes) / latency / the datasheet bandwidth;
  kernel_us            median latency of the smallest bf16 GEMMs (m <= 16, n*k <= 2^18), us:
                       the fixed time of one kernel under CUDA graphs;
  attention_efficiency_measured
                       median over full-attention bf16 prefills of >= 4096 tokens (32/8 heads
                       of 128) of causal FLOP/s / the BF16 peak; reported, not applied.
Residuals: the roofline time max(FLOPs/(peak*ge), bytes/(bw*me)) + kernel_us of every bf16 GEMM
row against its measurement. Leave-one-out: for each model shape set below, the fit without the
rows of that model's projections, and the error on them.
"""
import csv
import json
import math
import os
import statistics
import sys

# Peaks and bandwidths of crates/perf/src/gpu.rs (datasheet figures, dense BF16 TFLOP/s, GB/s);
# a test checks the written file against the GPU table.
GPUS = {
    "h100_sxm": ("h100-sxm", 989.4, 3350.0),
    "h200_sxm": ("h200", 989.4, 4800.0),
    "b200_sxm": ("b200", 2250.0, 7700.0),
    "l40s": ("l40s", 362.05, 864.0),
    "rtx_pro_6000_server": ("rtx-pro-6000", 503.8, 1597.0),
    "a100_sxm": ("a100-80gb", 312.0, 2039.0),
}

# (name, hidden, q heads, kv heads, head dim, intermediate): the per-layer GEMMs at TP 1.
MODELS = [
    ("meta-llama/Llama-3.1-8B", 4096, 32, 8, 128, 14336),
    ("meta-llama/Llama-2-7b-hf", 4096, 32, 32, 128, 11008),
    ("mistralai/Mistral-Nemo-Base-2407", 5120, 32, 8, 128, 14336),
    ("Qwen/Qwen3-14B", 5120, 40, 8, 128, 17408),
    ("meta-llama/Llama-3.1-70B", 8192, 64, 8, 128, 28672),
]


def model_shapes(h, q, kv, d, i):
    return {((q + 2 * kv) * d, h), (h, q * d), (2 * i, h), (h, i)}


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def fit_gemm(rows, peak_tflops, bw_gbs):
    comp, mem, tiny = [], [], []
    for r in rows:
        m, n, k, t = r["m"], r["n"], r["k"], r["t_ms"]
        if m >= 2048 and n >= 4096 and k >= 4096:
            comp.append(2 * m * n * k / (t * 1e-3) / (peak_tflops * 1e12))
        if m <= 16 and n * k >= 1 << 24:
            mem.append(2 * (n * k + m * (n + k)) / (t * 1e-3) / (bw_gbs * 1e9))
        if m <= 16 and n * k <= 1 << 18:
            tiny.append(t * 1e3)
    return {
        "gemm_efficiency": median(comp),
        "memory_efficiency": median(mem),
        "kernel_us": median(tiny),
        "rows": {"compute": len(comp), "memory": len(mem), "kernel": len(tiny)},
    }


def roofline_ms(r, fit, peak_tflops, bw_gbs):
    m, n, k = r["m"], r["n"], r["k"]
    compute = 2 * m * n * k / (peak_tflops * 1e12 * fit["gemm_efficiency"])
    memory = 2 * (n * k + m * (n + k)) / (bw_gbs * 1e9 * fit["memory_efficiency"])
    return max(compute, memory) * 1e3 + fit["kernel_us"] / 1e3


def errors(rows, fit, peak, bw):
    e = [abs(roofline_ms(r, fit, peak, bw) / r["t_ms"] - 1) for r in rows]
    e.sort()
    if not e:
        return {}
    return {
        "rows": len(e),
        "median_abs_rel": round(e[len(e) // 2], 4),
        "p90_abs_rel": round(e[int(len(e) * 0.9)], 4),
    }


def fit_attention(path, peak_tflops):
    effs = []
    for r in read(path):
        if r.get("kv_cache_dtype") != "bfloat16" or r.get("window_size", "0") not in ("0", ""):
            continue
        if (r["num_heads"], r["num_key_value_heads"], r["head_dim"]) != ("32", "8", "128"):
            continue
        b, s, t = int(r["batch_size"]), int(r["isl"]), float(r["latency"])
        if s < 4096:
            continue
        flops = 4 * b * 32 * 128 * s * (s + 1) / 2
        effs.append(flops / (t * 1e-3) / (peak_tflops * 1e12))
    return median(effs), len(effs)


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    out_path, dirs = sys.argv[1], sys.argv[2:]
    result = {
        "_provenance": {
            "source": "NVIDIA aiconfigurator operator tables (github.com/ai-dynamo/aiconfigurator, "
            "Apache-2.0), aic-core/src/aiconfigurator_core/systems/data/<system>/{gemm,attention}/vllm/<version>",
            "script": "tools/fit-roofline/fit.py",
            "method": __doc__.split("Fitted, per GPU")[1].strip(),
        },
        "gpus": {},
    }
    for d in dirs:
        parts = os.path.normpath(d).split(os.sep)
        system, version = parts[-3], parts[-1]
        if system not in GPUS:
            print(f"skip {d}: no GPU table entry for {system}", file=sys.stderr)
            continue
        gpu, peak, bw = GPUS[system]
        rows = [
            {"m": int(r["m"]), "n": int(r["n"]), "k": int(r["k"]), "t_ms": float(r["latency"])}
            for r in read(os.path.join(d, "gemm_perf.txt"))
            if r["gemm_dtype"] == "bfloat16" and float(r["latency"]) > 0
        ]
        fit = fit_gemm(rows, peak, bw)
        attn, attn_rows = fit_attention(os.path.join(d, "context_attention_perf.txt"), peak)
        loo = {}
        for name, *dims in MODELS:
            shapes = model_shapes(*dims)
            held = [r for r in rows if (r["n"], r["k"]) in shapes]
            if not held:
                continue
            rest = [r for r in rows if (r["n"], r["k"]) not in shapes]
            f = fit_gemm(rest, peak, bw)
            loo[name] = {
                "held_out_shapes": sorted(shapes & {(r["n"], r["k"]) for r in held}),
                "gemm_efficiency": round(f["gemm_efficiency"], 4),
                "memory_efficiency": round(f["memory_efficiency"], 4),
                "error_on_held_out": errors(held, f, peak, bw),
            }
        entry = {
            "system": system,
            "vllm_version": version,
            "device": read(os.path.join(d, "gemm_perf.txt"))[0]["device"],
            "bf16_tflops": peak,
            "mem_bandwidth_gbs": bw,
            "gemm_efficiency": round(fit["gemm_efficiency"], 4),
            "memory_efficiency": round(min(fit["memory_efficiency"], 1.0), 4),
            "kernel_us": round(fit["kernel_us"], 3),
            "fit_rows": fit["rows"],
            "gemm_residuals": errors(rows, fit, peak, bw),
            "leave_one_model_out": loo,
        }
        if not math.isnan(attn):
            # Reported, not applied: the tables' prefill kernels differ by system (FA3, FlashInfer,
            # TRT-LLM) and some collections hold rows above the BF16 peak's reach.
            entry["attention_efficiency_measured"] = round(attn, 4)
            entry["fit_rows"]["attention"] = attn_rows
        result["gpus"][gpu] = entry
        print(f"{gpu}: gemm {entry['gemm_efficiency']} mem {entry['memory_efficiency']} "
              f"kernel {entry['kernel_us']} us attn {entry.get('attention_efficiency_measured')} "
              f"residuals {entry['gemm_residuals']}")
    with open(out_path, "w") as f:
        json.dump(result, f, indent=1, sort_keys=False)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
