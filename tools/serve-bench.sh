#!/usr/bin/env bash
# Load benchmark of `llm-emu serve` on loopback: one server process, one closed-loop streaming
# client (crates/serve/examples/load.rs). Prints the client's throughput, the engine thread's
# step lateness (/debug/engine) and the server's peak resident memory.
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
./target/release/examples/load "$ADDR" "$CONC" "$DUR" "$PLEN" "$MAXT"
echo "engine: $(curl -s "http://$ADDR/debug/engine")"
grep -E 'VmHWM|VmRSS' /proc/$PID/status | tr -s ' ' | tr '\n' ' '; echo
echo "server CPU: $(ps -o times= -p $PID) s of $(ps -o etimes= -p $PID) s wall"
kill -TERM $PID; wait $PID 2>/dev/null || true
