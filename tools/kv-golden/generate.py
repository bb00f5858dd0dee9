#!/usr/bin/env python3
"""Record golden KV-cache sizing from vLLM 0.19.0's own code.

For every model of llm-emu's built-in table (``crates/perf/data/models/builtin.json``) and a few
tensor-parallel degrees, builds the per-layer KV cache specs the way vLLM's attention layers declare
them (``FullAttentionSpec`` / ``SlidingWindowSpec`` / ``MLAAttentionSpec``, with
``ModelConfig.get_num_kv_heads``'s rule for KV heads per rank and ``get_head_size``'s for MLA), then
lets vLLM's ``kv_cache_utils`` group the layers (``get_kv_cache_groups``), size the pool for a given
amount of available memory (``get_kv_cache_config_from_groups``) and compute the memory one request
of ``max_model_len`` needs (``max_memory_usage_bytes``). Writes
``crates/perf/tests/data/kv_sizing.json``; ``crates/perf/tests/kv_golden.rs`` checks llm-emu's
``sizing`` against it.

Usage: ~/.cache/vllm-reference/venv/bin/python tools/kv-golden/generate.py
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")

import torch  # noqa: E402
from transformers import AutoConfig  # noqa: E402
from vllm.transformers_utils.config import is_interleaved  # noqa: E402
from vllm.v1.core import kv_cache_utils as kcu  # noqa: E402
from vllm.v1.kv_cache_interface import (  # noqa: E402
    FullAttentionSpec,
    MLAAttentionSpec,
    SlidingWindowSpec,
)

ROOT = Path(__file__).resolve().parents[2]
BLOCK = 16
# Available KV memory per rank for the pool size, bytes (an arbitrary, non-round figure).
AVAILABLE = 37 * (1 << 30) + 123_456_789
MAX_NUM_BATCHED_TOKENS = 2048


def specs(cfg: dict, tp: int) -> dict:
    layers = cfg["num_hidden_layers"]
    out = {}
    if "kv_lora_rank" in cfg:
        # ModelConfig.get_num_kv_heads → 1 for MLA; get_head_size → kv_lora_rank + rope dim.
        head = cfg["kv_lora_rank"] + cfg["qk_rope_head_dim"]
        for i in range(layers):
            out[f"layers.{i}"] = MLAAttentionSpec(
                block_size=BLOCK, num_kv_heads=1, head_size=head, dtype=torch.bfloat16
            )
        return out
    kv = cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    kv_per_rank = max(1, kv // tp)
    head = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    for i, window in enumerate(windows(cfg)):
        if window:
            spec = SlidingWindowSpec(
                block_size=BLOCK,
                num_kv_heads=kv_per_rank,
                head_size=head,
                dtype=torch.bfloat16,
                sliding_window=window,
            )
        else:
            spec = FullAttentionSpec(
                block_size=BLOCK, num_kv_heads=kv_per_rank, head_size=head, dtype=torch.bfloat16
            )
        out[f"layers.{i}"] = spec
    return out


# vLLM 0.19 model implementations that pass no per-layer window to `Attention` (they do not
# read `layer_types`): their layers all take `CacheConfig.sliding_window`.
NO_PER_LAYER_WINDOW = {"qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "mixtral", "phimoe"}


def windows(cfg: dict) -> list:
    """Each layer's sliding window as vLLM 0.19 builds the model: transformers' config class
    holds the window and the layer types (its defaults included); `create_engine_config` puts
    the window in `CacheConfig.sliding_window` unless `is_interleaved`; `Attention.__init__`
    takes a layer's own window (from `layer_types`, where the model reads them) or else that."""
    hf = AutoConfig.for_model(**cfg)
    window = getattr(hf, "sliding_window", None) or None
    cache_window = None if is_interleaved(hf) else window
    types = getattr(hf, "layer_types", None)
    if cfg["model_type"] in NO_PER_LAYER_WINDOW:
        types = None
    return [
        window if types and types[i] == "sliding_attention" else cache_window
        for i in range(cfg["num_hidden_layers"])
    ]


def vllm_config(max_model_len: int) -> SimpleNamespace:
    return SimpleNamespace(
        model_config=SimpleNamespace(max_model_len=max_model_len),
        cache_config=SimpleNamespace(num_gpu_blocks_override=None),
        parallel_config=SimpleNamespace(
            decode_context_parallel_size=1, prefill_context_parallel_size=1
        ),
        scheduler_config=SimpleNamespace(
            max_num_batched_tokens=MAX_NUM_BATCHED_TOKENS,
            disable_hybrid_kv_cache_manager=False,
        ),
    )


def main() -> None:
    table = json.loads((ROOT / "crates/perf/data/models/builtin.json").read_text())
    cases = []
    for name, cfg in table["models"].items():
        if "text_config" in cfg or cfg.get("attention_chunk_size"):
            # Multimodal wrappers and chunked local attention: not covered here.
            print(f"skipped {name}", file=sys.stderr)
            continue
        for tp in (1, 2, 8, 16):
            heads = cfg["num_attention_heads"]
            if heads % tp:
                continue
            max_len = cfg["max_position_embeddings"]
            vc = vllm_config(max_len)
            spec = specs(cfg, tp)
            groups = kcu.get_kv_cache_groups(vc, dict(spec))
            kcfg = kcu.get_kv_cache_config_from_groups(vc, groups, AVAILABLE)
            page = {s.page_size_bytes for s in spec.values()}
            assert len(page) == 1, name
            cases.append(
                {
                    "model": name,
                    "tp": tp,
                    "page_bytes": page.pop(),
                    "num_groups": len(groups),
                    "group_size": max(len(g.layer_names) for g in groups),
                    "num_blocks": kcfg.num_blocks,
                    "max_model_len": max_len,
                    "needed_bytes": kcu.max_memory_usage_bytes(vc, spec.values()),
                }
            )
    out = {
        "_comment": "vLLM 0.19.0 KV-cache sizing for llm-emu's built-in models; generated by "
        "tools/kv-golden/generate.py",
        "vllm_version": __import__("vllm").__version__,
        "block_size": BLOCK,
        "available_bytes": AVAILABLE,
        "max_num_batched_tokens": MAX_NUM_BATCHED_TOKENS,
        "cases": cases,
    }
    dest = ROOT / "crates/perf/tests/data/kv_sizing.json"
    dest.write_text(json.dumps(out, indent=1) + "\n")
    print(f"{len(cases)} cases → {dest}", file=sys.stderr)


if __name__ == "__main__":
    main()
