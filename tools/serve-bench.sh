#!/usr/bin/env bash
# Load benchmark of `llm-emu serve` on loopback: one server process, one closed-loop streaming
# client (crates/serve/examples/load.rs). Prints the client's throughput, the engine thread's
# step lateness (/debug/engine) and the server's peak resident memory; then replays the same
# closed loop (the requests the client completed, every client starting at once) in virtual time
# with `llm-emu simulate --max-concurrency CONCURRENCY` and the same engine flags, where the
# server costs nothing: the emulated GPU's own throughput for this load, the most a server that
# keeps the emulated step times can stream (CEILING=0 skips it).
#
# Usage: tools/serve-bench.sh [CONCURRENCY] [DURATION_S] [PROMPT_LEN] [MAX_TOKENS] [-- SERVE_FLAGS...]
# Defaults: 2000 clients, 20 s, 128-token prompts, 256 output tokens, and
# --max-num-seqs 2048 so that every client is running at once.
set -euo pipefail
cd "$(dirname "$0")/.."
CONC=${1:-2000}; DUR=${2:-20}; PLEN=${3:-128}; MAXT=${4:-256}
shift $(( $# < 4 ? $# : 4 )) || true
[[ "${1:-}" == "--" ]] && shift
EXTRA=("$@")
[[ ${#EXTRA[@]} -eq 0 ]] && EXTRA=(--max-num-seqs 2048)

cargo build --release -q -p llm-emu --bin llm-emu
cargo build --release -q -p llm-emu-serve --example load
OUT=$(mktemp -d)
./target/release/llm-emu serve --host 127.0.0.1 --port 0 "${EXTRA[@]}" >"$OUT/stdout" 2>"$OUT/stderr" &
PID=$!
trap 'kill $PID 2>/dev/null || true; rm -rf "$OUT"' EXIT
for _ in $(seq 100); do grep -q listening "$OUT/stdout" 2>/dev/null && break; sleep 0.1; done
ADDR=$(sed -n 's#.*listening on http://##p' "$OUT/stdout")
echo "server pid $PID on $ADDR; $(head -1 "$OUT/stderr")"
ulimit -n 65536 2>/dev/null || true
./target/release/examples/load "$ADDR" "$CONC" "$DUR" "$PLEN" "$MAXT" "$OUT/workload.jsonl" | tee "$OUT/load.json"
echo "engine: $(curl -s "http://$ADDR/debug/engine")"
grep -E 'VmHWM|VmRSS' /proc/$PID/status | tr -s ' ' | tr '\n' ' '; echo
echo "server CPU: $(ps -o times= -p $PID) s of $(ps -o etimes= -p $PID) s wall"
kill -TERM $PID; wait $PID 2>/dev/null || true
if [[ "${CEILING:-1}" != 0 ]]; then
  # The flags `simulate` also has (the engine's); the HTTP server's own, with their values, are
  # left out.
  KNOWN=" $(./target/release/llm-emu simulate --help | grep -oE '^ +(-[a-z], )?--[a-z0-9-]+' | sed 's/.*--/--/' | tr '\n' ' ') "
  SIM=(); keep=1
  for a in "${EXTRA[@]}"; do
    if [[ "$a" == --* ]]; then
      name=${a%%=*}
      if [[ "$KNOWN" == *" $name "* ]]; then keep=1; SIM+=("$a"); else keep=0; fi
    elif (( keep )); then
      SIM+=("$a")
    fi
  done
  ./target/release/llm-emu simulate --quiet --workload "$OUT/workload.jsonl" \
    --max-concurrency "$CONC" "${SIM[@]}" --output-json "$OUT/ceiling.json"
  python3 - "$OUT/load.json" "$OUT/ceiling.json" <<'PY'
import json, sys
load, sim = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
print(f"virtual-time replay of the same {sim['completed']} requests (no server cost): "
      f"{sim['output_throughput']:,.0f} tokens/s in {sim['duration']:.2f} s, mean TTFT "
      f"{sim['mean_ttft_ms']:.1f} ms; served / virtual-time = "
      f"{load['tokens_per_s'] / sim['output_throughput']:.3f}")
PY
fi
