#!/usr/bin/env python3
"""Plots emulated against real per-request latency from `llm-emu validate --requests` files.

  plot.py OUT.png TITLE LABEL=pairs.jsonl [LABEL=pairs.jsonl ...]

One panel per metric (TTFT, TPOT, E2E latency): each request is a point at (real, emulated);
the diagonal is a perfect emulator. Needs matplotlib.
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

METRICS = [("ttft", "TTFT (ms)"), ("tpot", "TPOT (ms)"), ("e2el", "E2E latency (ms)")]


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    out, title, series = sys.argv[1], sys.argv[2], sys.argv[3:]
    fig, axes = plt.subplots(1, 3, figsize=(15, 5))
    for spec in series:
        label, path = spec.split("=", 1)
        rows = [json.loads(line) for line in open(path) if line.strip()]
        for ax, (m, _) in zip(axes, METRICS):
            pts = [(r[f"{m}_ms_real"], r[f"{m}_ms_sim"]) for r in rows
                   if r.get(f"{m}_ms_real") is not None and r.get(f"{m}_ms_sim") is not None]
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=9, alpha=0.6, label=label)
    for ax, (_, name) in zip(axes, METRICS):
        lo, hi = ax.get_xlim()
        lo2, hi2 = ax.get_ylim()
        lo, hi = min(lo, lo2), max(hi, hi2)
        ax.plot([lo, hi], [lo, hi], color="black", linewidth=0.8, label="emulated = real")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel(f"real {name}")
        ax.set_ylabel(f"emulated {name}")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper left", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
