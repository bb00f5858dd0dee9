#!/usr/bin/env python3
"""Markdown table of one inference-perf run for docs/fidelity.md.

    tools/fidelity/inference-perf-table.py RUN.json

RUN.json is the `llm-emu validate --client-result RUN_DIR --json RUN.json` output of an
inference-perf run folder (tools/fidelity/fetch-inference-sim-runs.sh). One row per figure both
sides have, one column group per load stage: real (ms; requests/s for the last row), emulated,
error = (emulated − real) / real in %; then the successful and failed (client timeout) request
counts. Worst |error| of the means closes the table.
"""
import json
import sys

ROWS = [("ttft", "TTFT"), ("tpot", "TPOT"), ("itl", "ITL"), ("e2el", "E2E")]
STATS = ["mean", "median", "p90", "p99"]


def main(path):
    d = json.load(open(path))
    stages = d["stages"]
    head = "| client-side |" + "".join(
        f" stage {s['stage']} ({s['rate']:g} req/s) real | emulated | error |" for s in stages
    )
    print(head)
    print("|---|" + "---:|---:|---:|" * len(stages))
    keys = [(f"{m}_{st}", f"{name} {st}") for m, name in ROWS for st in STATS]
    keys.append(("requests_per_s", "requests/s"))
    for k, label in keys:
        if not any(f"{k}_real" in s for s in stages):
            continue
        cells = []
        for s in stages:
            if f"{k}_real" not in s:
                cells.append(" – | – | – |")
                continue
            fmt = "{:.3f}" if k == "requests_per_s" else "{:.2f}"
            cells.append(
                f" {fmt.format(s[k + '_real'])} | {fmt.format(s[k + '_sim'])} | "
                f"{s[k + '_err_pct']:+.1f} % |"
            )
        print(f"| {label} |" + "".join(cells))
    # Request counts: successful, and failed at the client's timeout (inference-perf's
    # `failures.count`; the replay's requests given up on at aiohttp's deadline).
    for real_k, sim_k, label in [("completed_real", "completed", "successful"),
                                 ("failed_real", "timed_out", "failed (client timeout)")]:
        if not any(real_k in s for s in stages):
            continue
        cells = []
        for s in stages:
            if real_k not in s:
                cells.append(" – | – | – |")
                continue
            a, b = s[real_k], s[sim_k]
            err = f"{(b - a) / a * 100:+.1f} %" if a else "–"
            cells.append(f" {a:,} | {b:,} | {err} |")
        print(f"| {label} |" + "".join(cells))
    for s in stages:
        worst = max(
            (abs(s[f"{m}_mean_err_pct"]), m) for m, _ in ROWS if f"{m}_mean_err_pct" in s
        )
        print(f"\nStage {s['stage']}: worst mean error {worst[0]:.1f} % ({worst[1].upper()}).", end="")
    print()


if __name__ == "__main__":
    main(sys.argv[1])
