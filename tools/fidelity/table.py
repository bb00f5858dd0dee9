#!/usr/bin/env python3
"""Markdown table of one real run for docs/fidelity.md.

    tools/fidelity/table.py PROFILE.json ROOFLINE.json [PEER_SUMMARY.txt]

PROFILE.json and ROOFLINE.json are `llm-emu validate --json` outputs of the same run (with the
run's operator profile, and with `--latency roofline`); PEER_SUMMARY.txt is LLMServingSim's
`validation/summary.txt` of that run (its "Diff%" column is the peer's error). Errors are
(emulated − real) / real in %; the status column checks the targets of docs/fidelity.md:
with a profile every mean within 2 % and every median/p90/p99 within 5 %; profile-free every
mean within 5 %.
"""
import json
import re
import sys

ROWS = [("ttft", "TTFT"), ("tpot", "TPOT"), ("e2el", "E2E")]
STATS = ["mean", "median", "p90", "p99"]
PEER_NAMES = {"ttft": "TTFT", "tpot": "TPOT", "e2el": "Latency"}


def peer_errors(path):
    """{(metric, stat): error %} from an LLMServingSim summary.txt."""
    out = {}
    if not path:
        return out
    for line in open(path):
        m = re.match(r"(TTFT|TPOT|Latency) (Mean|Median|P90|P95|P99)\s+\S+\s+\S+\s+([+-]?[\d.]+)%", line)
        if m:
            metric = {v: k for k, v in PEER_NAMES.items()}[m.group(1)]
            out[(metric, m.group(2).lower())] = float(m.group(3))
    return out


def fmt(e):
    return "" if e is None else f"{e:+.2f}%".replace("-", "−")


def main():
    prof = json.load(open(sys.argv[1]))
    roof = json.load(open(sys.argv[2]))
    peer = peer_errors(sys.argv[3] if len(sys.argv) > 3 else None)
    print("| metric | real | profile | roofline (profile-free) | peer (LLMServingSim) |")
    print("|---|---:|---:|---:|---:|")
    worst = {"profile_mean": 0.0, "profile_pct": 0.0, "roofline_mean": 0.0}
    for key, label in ROWS:
        for stat in STATS:
            real = prof[f"{key}_{stat}_real"]
            p = prof[f"{key}_{stat}_err_pct"]
            r = roof[f"{key}_{stat}_err_pct"]
            kind = "mean" if stat == "mean" else "pct"
            worst[f"profile_{kind}"] = max(worst[f"profile_{kind}"], abs(p))
            if stat == "mean":
                worst["roofline_mean"] = max(worst["roofline_mean"], abs(r))
            print(f"| {label} {stat} (ms) | {real:.2f} | {fmt(p)} | {fmt(r)} | {fmt(peer.get((key, stat)))} |")
    real = prof["output_throughput_real"]
    p = prof["output_throughput_err_pct"]
    r = roof["output_throughput_err_pct"]
    worst["profile_mean"] = max(worst["profile_mean"], abs(p))
    worst["roofline_mean"] = max(worst["roofline_mean"], abs(r))
    print(f"| output throughput (tok/s) | {real:.1f} | {fmt(p)} | {fmt(r)} | |")
    ok = lambda w, bound: ("met" if w <= bound else "not met") + f" (worst {w:.2f}%)"
    print()
    print(f"- profiled, means within 2 %: {ok(worst['profile_mean'], 2.0)}")
    print(f"- profiled, median/p90/p99 within 5 %: {ok(worst['profile_pct'], 5.0)}")
    print(f"- profile-free, means within 5 %: {ok(worst['roofline_mean'], 5.0)}")


if __name__ == "__main__":
    main()
