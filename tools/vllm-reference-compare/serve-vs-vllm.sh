#!/usr/bin/env bash
# `llm-emu serve` against the vLLM reference server: the same workload, replayed by the same
# client (replay.py) against each server in turn, with the same step latency (10 ms + 20 µs per
# scheduled token) and engine settings; then per-request TTFT/TPOT/E2E side by side.
#
#   tools/vllm-reference-compare/serve-vs-vllm.sh OUTDIR
#   env: N (300) RATE (6 req/s) SEED (11) BLOCKS (20000 KV blocks) MML (40960 max_model_len)
#
# Needs ../shared/tools/vllm-reference/setup.sh run once, and a release build of llm-emu.
set -euo pipefail
cd "$(dirname "$0")/../.."
D=${1:?usage: $0 OUTDIR}
mkdir -p "$D"
REF=${VLLM_REF_HOME:-$HOME/.cache/vllm-reference}
PY=$REF/venv/bin/python
TOK=$REF/model/qwen3-8b
BLOCKS=${BLOCKS:-20000}; MML=${MML:-40960}
python3 tools/vllm-reference-compare/make_workload.py "${N:-300}" "${RATE:-6}" "${SEED:-11}" "$D/w.jsonl"

EMU_BASE_US=10000 EMU_PER_TOKEN_US=20 PORT=8100 NUM_GPU_BLOCKS=$BLOCKS MAX_MODEL_LEN=$MML \
  ../shared/tools/vllm-reference/run_ref.sh > "$D/vllm.log" 2>&1 &
rpid=$!
trap 'kill $rpid 2>/dev/null || true; kill ${epid:-} 2>/dev/null || true' EXIT
for _ in $(seq 120); do curl -sf 127.0.0.1:8100/health >/dev/null 2>&1 && break; sleep 1; done
"$PY" tools/vllm-reference-compare/replay.py --workload "$D/w.jsonl" --out "$D/vllm.jsonl" \
  --url http://127.0.0.1:8100 --model Qwen/Qwen3-8B
curl -s 127.0.0.1:8100/metrics | grep '^vllm:num_preemptions_total' > "$D/vllm-preemptions.txt" || true
kill $rpid; wait $rpid 2>/dev/null || true

target/release/llm-emu serve Qwen/Qwen3-8B --tokenizer "$TOK" --host 127.0.0.1 --port 0 \
  --latency linear:base_us=10000,per_token_us=20 --num-gpu-blocks-override "$BLOCKS" \
  --max-num-seqs 256 --max-num-batched-tokens 8192 --max-model-len "$MML" \
  > "$D/llm-emu.out" 2> "$D/llm-emu.log" &
epid=$!
for _ in $(seq 100); do grep -q listening "$D/llm-emu.out" 2>/dev/null && break; sleep 0.1; done
addr=$(sed -n 's#.*listening on http://##p' "$D/llm-emu.out")
"$PY" tools/vllm-reference-compare/replay.py --workload "$D/w.jsonl" --out "$D/llm-emu.jsonl" \
  --url "http://$addr" --model Qwen/Qwen3-8B
curl -s "http://$addr/metrics" | grep '^vllm:num_preemptions_total' > "$D/llm-emu-preemptions.txt" || true
curl -s "http://$addr/debug/engine" > "$D/llm-emu-debug.json"

python3 tools/vllm-reference-compare/compare.py timings --replay "$D/vllm.jsonl" \
  --sim "$D/llm-emu.jsonl" --json "$D/compare.json"
echo "preemptions: vLLM $(awk '{print $2}' "$D/vllm-preemptions.txt"), llm-emu $(awk '{print $2}' "$D/llm-emu-preemptions.txt")"
