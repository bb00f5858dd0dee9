#!/usr/bin/env bash
# Runs `vllm bench serve` (vLLM 0.19.0) and `llm-emu bench` with the same arguments against the
# same vLLM reference server (../shared/tools/vllm-reference, GPU replaced by a sleep), one after
# the other, then compares the two result files key by key and metric by metric.
#
#   tools/bench-vs-vllm.sh OUTDIR [bench args...]
#   e.g. tools/bench-vs-vllm.sh /tmp/cmp --dataset-name sharegpt --dataset-path SHAREGPT.json \
#        --num-prompts 200 --request-rate 20
#
# Env: PORT (8118), EMU_BASE_US (8000) for the server; LLM_EMU (target/release/llm-emu).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: $0 OUTDIR [bench args...]}
shift
mkdir -p "$OUT"
PORT=${PORT:-8118}
REF=${VLLM_REF_HOME:-$HOME/.cache/vllm-reference}
LLM_EMU=${LLM_EMU:-target/release/llm-emu}
TOK=$REF/model/qwen3-8b
[[ -x $LLM_EMU ]] || { echo "build $LLM_EMU first: cargo build --release -p llm-emu" >&2; exit 1; }

EMU_BASE_US=${EMU_BASE_US:-8000} PORT=$PORT ../shared/tools/vllm-reference/run_ref.sh \
  > "$OUT/server.log" 2>&1 &
spid=$!
trap 'kill $spid 2>/dev/null || true; wait $spid 2>/dev/null || true' EXIT
for _ in $(seq 120); do
  curl -sf "127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
  sleep 1
done
curl -sf "127.0.0.1:$PORT/health" >/dev/null || { echo "server did not start; see $OUT/server.log" >&2; exit 1; }

common=(--base-url "http://127.0.0.1:$PORT" --model Qwen/Qwen3-8B --tokenizer "$TOK"
        --save-result --save-detailed --result-dir "$OUT" --disable-tqdm
        --percentile-metrics ttft,tpot,itl,e2el --metric-percentiles 50,90,99 "$@")
HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$REF/venv/bin/vllm" bench serve "${common[@]}" \
  --result-filename vllm.json > "$OUT/vllm.txt" 2>&1
"$LLM_EMU" bench "${common[@]}" --result-filename llm-emu.json > "$OUT/llm-emu.txt" 2>&1

"$REF/venv/bin/python" - "$OUT/vllm.json" "$OUT/llm-emu.json" <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
print("keys only in vllm:", sorted(set(a) - set(b)))
print("keys only in llm-emu:", sorted(set(b) - set(a)))
print("same key order:", [k for k in a if k in b] == [k for k in b if k in a])
for k in ("num_prompts", "completed", "failed", "total_input_tokens", "total_output_tokens"):
    print(f"{k}: vllm {a[k]} llm-emu {b[k]}")
print("same input_lens:", a["input_lens"] == b["input_lens"])
print("same output_lens:", a["output_lens"] == b["output_lens"])
sa = [t - a["start_times"][0] for t in a["start_times"]]
sb = [t - b["start_times"][0] for t in b["start_times"]]
print("max |send time difference| (ms):", round(max(abs(x - y) for x, y in zip(sa, sb)) * 1e3, 2))
EOF
"$LLM_EMU" compare "$OUT/vllm.json" "$OUT/llm-emu.json"
