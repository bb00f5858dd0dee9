#!/usr/bin/env python3
"""Compare per-request timings of the vLLM reference server (replay.py output) with
`llm-emu simulate --requests-out` on the same workload.

  compare.py actual-workload --workload W.jsonl --replay R.jsonl --out W_actual.jsonl
      rewrites the workload with each request's actual send time as its arrival, so that the
      simulation sees exactly the arrivals the server saw;
  compare.py timings --replay R.jsonl --sim S.jsonl [--json OUT]
      S is `simulate --requests-out` (times from each request's arrival) or a replay.py output
      against `llm-emu serve` (times from each request's send);
      TTFT = first token - sent, TPOT = (last - first)/(n - 1), E2E = last - sent, per request;
      prints mean/median/p90/p99 of both and the signed error of llm-emu in percent, plus the
      mean absolute per-request difference in ms.
"""
import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tools/: quantile.py
from quantile import q as pct  # noqa: E402


def load(path):
    rows = [json.loads(l) for l in open(path) if l.strip()]
    return [r for r in rows if "request_id" in r]


def metrics(first, last, start, n):
    ttft = first - start
    e2e = last - start
    tpot = (last - first) / (n - 1) if n > 1 else None
    return ttft, tpot, e2e


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    a1 = sub.add_parser("actual-workload")
    a1.add_argument("--workload", required=True)
    a1.add_argument("--replay", required=True)
    a1.add_argument("--out", required=True)
    a2 = sub.add_parser("timings")
    a2.add_argument("--replay", required=True)
    a2.add_argument("--sim", required=True)
    a2.add_argument("--json")
    a = ap.parse_args()
    rep = {r["request_id"]: r for r in load(a.replay)}
    if a.cmd == "actual-workload":
        rows = [json.loads(l) for l in open(a.workload) if l.strip()]
        for r in rows:
            r["arrival_s"] = round(rep[r["request_id"]]["sent_s"], 9)
        rows.sort(key=lambda r: r["arrival_s"])
        with open(a.out, "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        return
    sim = {r["request_id"]: r for r in load(a.sim)}
    real = {"ttft": [], "tpot": [], "e2e": []}
    emu = {"ttft": [], "tpot": [], "e2e": []}
    absdiff = {"ttft": [], "tpot": [], "e2e": []}
    for rid, r in rep.items():
        s = sim.get(rid)
        if r["error"] or s is None or s.get("error") or s.get("first_token_s") is None:
            continue
        mr = metrics(r["first_token_s"], r["last_token_s"], r["sent_s"], r["output_len"])
        s_start = s["sent_s"] if "sent_s" in s else s["arrival_s"]
        ms = metrics(s["first_token_s"], s["last_token_s"], s_start, s["output_len"])
        for name, x, y in zip(("ttft", "tpot", "e2e"), mr, ms):
            if x is None or y is None:
                continue
            real[name].append(x * 1e3)
            emu[name].append(y * 1e3)
            absdiff[name].append(abs(x - y) * 1e3)
    out = {"requests_compared": len(real["e2e"])}
    print(f"{len(real['e2e'])} requests compared (ms; error = (llm-emu - vLLM)/vLLM)")
    print(f"{'metric':<14}{'vLLM':>10}{'llm-emu':>10}{'err %':>9}")
    for name in ("ttft", "tpot", "e2e"):
        for stat, fn in (("mean", statistics.mean), ("median", lambda x: pct(x, 50)),
                         ("p90", lambda x: pct(x, 90)), ("p99", lambda x: pct(x, 99))):
            x, y = fn(real[name]), fn(emu[name])
            err = (y - x) / x * 100 if x else float("nan")
            out[f"{name}_{stat}_real"], out[f"{name}_{stat}_sim"], out[f"{name}_{stat}_err_pct"] = x, y, err
            print(f"{name + ' ' + stat:<14}{x:>10.2f}{y:>10.2f}{err:>+9.2f}")
        out[f"{name}_mean_abs_diff_ms"] = statistics.mean(absdiff[name])
        print(f"{name + ' |diff|':<14}{statistics.mean(absdiff[name]):>10.3f} ms mean per request")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
