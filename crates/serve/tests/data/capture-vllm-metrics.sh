#!/usr/bin/env bash
# Captures vllm-0.19-metrics.txt: the vLLM 0.19.0 reference server (../shared/tools/vllm-reference,
# real vLLM with the executor replaced by a sleep) started with its defaults, a few completions and
# chat requests sent (one with n=2, one streamed), then its /metrics saved as served.
# Usage: crates/serve/tests/data/capture-vllm-metrics.sh [OUT]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/vllm-0.19-metrics.txt}
ref=${VLLM_REFERENCE:-$here/../../../../../shared/tools/vllm-reference}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
PORT=$port EMU_BASE_US=5000 "$ref/run_ref.sh" >"${TMPDIR:-/tmp}/vllm-ref-capture.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 240); do
  curl -sf "127.0.0.1:$port/health" >/dev/null && break
  sleep 1
done
url="127.0.0.1:$port"
ct='Content-Type: application/json'
curl -sf "$url/v1/completions" -H "$ct" -d '{"model":"Qwen/Qwen3-8B","prompt":"Hello there","max_tokens":5}' >/dev/null
curl -sf "$url/v1/completions" -H "$ct" -d '{"model":"Qwen/Qwen3-8B","prompt":"Hello there","max_tokens":4,"n":2}' >/dev/null
curl -sf "$url/v1/chat/completions" -H "$ct" -d '{"model":"Qwen/Qwen3-8B","messages":[{"role":"user","content":"Hi"}],"max_tokens":3,"stream":true}' >/dev/null
curl -sf "$url/v1/completions" -H "$ct" -d '{"model":"Qwen/Qwen3-8B","prompt":"Hello there","max_tokens":1}' >/dev/null
sleep 1
curl -sf "$url/metrics" >"$out"
echo "saved $(wc -l <"$out") lines to $out"
