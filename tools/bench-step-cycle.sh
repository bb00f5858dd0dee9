#!/usr/bin/env bash
# Cost of the step-cycle latency model in `llm-emu simulate` (release build, one core): builds a
# pack from a linear-latency run's steps (`profile-pack`), then times the same synthetic workload
# with the linear model, the 2-D pack and the context-keyed pack. Prints wall time, steps/s and
# peak RSS of each, and the pack sizes.
# usage: tools/bench-step-cycle.sh [num_requests=200000]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200000}
cargo build --release -q -p llm-emu
BIN=target/release/llm-emu
OUT=$(mktemp -d)
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
LIN=linear:base_us=6000,per_token_us=25,per_req_us=40,per_ctx_us=0.02
COMMON=(--quiet --synthetic "$N" --request-rate 40)
"$BIN" simulate "${COMMON[@]}" --latency "$LIN" --steps-out "$OUT/steps.jsonl" --output-json /dev/null
"$BIN" profile-pack "$OUT/steps.jsonl" -o "$OUT/pack2d.json" --tt-bucket-width 1 --conc-bucket-width 5
"$BIN" profile-pack "$OUT/steps.jsonl" -o "$OUT/packctx.json" --tt-bucket-width 16 \
  --conc-bucket-width 5 --ctx-bucket-width 8192
ls -l "$OUT"/pack*.json | awk '{print $NF ": " $5 " bytes"}'
one() {
  local name=$1; shift
  /usr/bin/time -f '%e %M' -o "$OUT/time" taskset -c 0 "$BIN" simulate "${COMMON[@]}" \
    --output-json "$OUT/s.json" "$@"
  read -r wall rss_kb < "$OUT/time"
  python3 - "$name" "$wall" "$rss_kb" "$OUT/s.json" <<'PY'
import json, sys
name, wall, rss_kb, path = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
s = json.load(open(path))
print(f"{name}: {s['num_steps']} steps, wall {wall:.2f} s, "
      f"{s['num_steps'] / max(wall, 1e-9):,.0f} steps/s, peak RSS {rss_kb / 1024:.0f} MiB, "
      f"mean TPOT {s['mean_tpot_ms']:.3f} ms, mean TTFT {s['mean_ttft_ms']:.1f} ms")
PY
}
one "linear" --latency "$LIN"
one "step-cycle 2-D" --profile "$OUT/pack2d.json"
one "step-cycle ctx" --profile "$OUT/packctx.json"
rm -rf "$OUT"
