#!/usr/bin/env bash
# Speed and memory of `llm-emu simulate` (release build, one core): the 300-request real-run case,
# 1,000,000 ShareGPT-like synthetic requests at a sustainable and at an overloading rate, and, when
# TRACE names a workload file, that trace with 128 sequences, 2,048 tokens per step, 35,000 KV
# blocks and a fixed 10 ms step (the shape of the side-by-side comparison with Dynamo's mocker).
# Each case runs RUNS times; printed: min/median/max of wall time and of user CPU time (the
# machine is shared, so user CPU is the steadier figure), peak RSS (max), steps, requests.
# usage: [TRACE=trace.jsonl] [RUNS=3] tools/bench-simulate.sh [num_requests=1000000]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
RUNS=${RUNS:-3}
cargo build --release -q -p llm-emu
BIN=target/release/llm-emu
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
one() {
  local name=$1; shift
  : > "$OUT/times"
  for _ in $(seq "$RUNS"); do
    /usr/bin/time -f '%e %U %M' -a -o "$OUT/times" taskset -c 0 "$BIN" simulate --quiet --output-json "$OUT/s.json" "$@"
  done
  python3 - "$name" "$OUT/times" "$OUT/s.json" <<'PY'
import json, statistics, sys
name, times, path = sys.argv[1:]
rows = [tuple(map(float, l.split())) for l in open(times) if l.strip()]
wall, user, rss = zip(*rows)
s = json.load(open(path))
n = s["completed"] + s["failed"]
span = lambda xs: f"{min(xs):.2f}/{statistics.median(xs):.2f}/{max(xs):.2f}"
print(f"{name}: {n} requests, {s['num_steps']} steps, wall {span(wall)} s, user {span(user)} s "
      f"(min/median/max of {len(rows)}), {n / statistics.median(wall):,.0f} requests/s, "
      f"peak RSS {max(rss) / 1024:.0f} MiB, simulated {s['duration']:.0f} s")
PY
}
W=../shared/data/real-runs/rtxpro6000-llama-3.1-8b/workload.jsonl
if [ -f "$W" ]; then
  one "real-run 300" --workload "$W" --max-num-seqs 128 --max-num-batched-tokens 2048
fi
if [ -n "${TRACE:-}" ]; then
  one "trace $(basename "$TRACE")" --workload "$TRACE" --max-num-seqs 128 \
    --max-num-batched-tokens 2048 --num-gpu-blocks-override 35000 --latency linear:base_us=10000
fi
one "synthetic $N at 40 req/s" --synthetic "$N" --request-rate 40
one "synthetic $N at 100 req/s (overloaded)" --synthetic "$N" --request-rate 100
