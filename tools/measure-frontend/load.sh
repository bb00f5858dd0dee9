#!/usr/bin/env bash
# The front end under load: client-side TTFT / TPOT / ITL at several numbers of concurrent
# streams (load.py, closed loop) against the vLLM reference server, then against
# `llm-emu serve --frontend-latency vllm` and `--frontend-latency none`, all with the same step
# latency and engine settings; prints a table per concurrency, with the reference's realised
# step spacing (its step trace) beside.
#
#   tools/measure-frontend/load.sh OUTDIR
#   env: CONC (1,16,64,256) REPS (2 requests per stream) PROMPT (128) OUT_TOKENS (32)
#        BASE_US (20000 µs per step) LLM_EMU (target/release/llm-emu)
#
# Needs ../shared/tools/vllm-reference/setup.sh run once and a release build of llm-emu.
set -euo pipefail
cd "$(dirname "$0")/../.."
D=${1:?usage: $0 OUTDIR}
mkdir -p "$D"
REF=${VLLM_REF_HOME:-$HOME/.cache/vllm-reference}
PY=$REF/venv/bin/python
TOK=$REF/model/qwen3-8b
EMU=${LLM_EMU:-target/release/llm-emu}
BASE_US=${BASE_US:-20000}
ARGS=(--conc "${CONC:-1,16,64,256}" --reps "${REPS:-2}" --prompt "${PROMPT:-128}"
      --max-tokens "${OUT_TOKENS:-32}" --json "$D/load.jsonl")
rm -f "$D/load.jsonl"
pids=()
stop() { for p in "${pids[@]}"; do kill -INT -- "-$p" 2>/dev/null || true; done
         sleep 3; for p in "${pids[@]}"; do kill -KILL -- "-$p" 2>/dev/null || true; done; }
trap stop EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

port=$(free_port)
PORT=$port EMU_BASE_US=$BASE_US EMU_PER_TOKEN_US=0 EMU_TRACE="$D/steps.jsonl" \
  setsid ../shared/tools/vllm-reference/run_ref.sh > "$D/vllm.log" 2>&1 &
rpid=$!; pids+=("$rpid")
for _ in $(seq 300); do curl -sf "127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 1; done
uptime
"$PY" tools/measure-frontend/load.py --url "http://127.0.0.1:$port" --label vllm "${ARGS[@]}"
kill -INT -- "-$rpid"; wait "$rpid" 2>/dev/null || true

for fe in vllm none; do
  setsid "$EMU" serve Qwen/Qwen3-8B --tokenizer "$TOK" --host 127.0.0.1 --port 0 \
    --latency "linear:base_us=$BASE_US,per_token_us=0" --num-gpu-blocks-override 20000 \
    --max-num-seqs 256 --max-num-batched-tokens 8192 --max-model-len 40960 \
    --frontend-latency "$fe" > "$D/llm-emu-$fe.out" 2> "$D/llm-emu-$fe.log" &
  epid=$!; pids+=("$epid")
  for _ in $(seq 100); do grep -q listening "$D/llm-emu-$fe.out" 2>/dev/null && break; sleep 0.1; done
  addr=$(sed -n 's#.*listening on http://##p' "$D/llm-emu-$fe.out")
  uptime
  "$PY" tools/measure-frontend/load.py --url "http://$addr" --label "llm-emu-$fe" "${ARGS[@]}"
  kill -INT -- "-$epid"; wait "$epid" 2>/dev/null || true
done

python3 - "$D" <<'EOF'
import json, sys, statistics
d = sys.argv[1]
rows = [json.loads(l) for l in open(f"{d}/load.jsonl")]
steps = [json.loads(l) for l in open(f"{d}/steps.jsonl") if l.strip()]
print("| streams | server | TTFT mean / median / p90 (ms) | TPOT mean (ms) | ITL mean / p90 (ms) | tokens/chunk | load avg | ref. step interval (ms) |")
print("|---|---|---|---|---|---|---|---|")
for r in sorted(rows, key=lambda r: (r["conc"], r["label"])):
    gap = ""
    if r["label"] == "vllm":
        t0, t1 = r["window"]
        st = sorted(s["start"] for s in steps if t0 <= s["start"] <= t1)
        if len(st) > 1:
            gap = f'{statistics.fmean(b - a for a, b in zip(st, st[1:])) * 1e3:.2f}'
    t, tp, i = r["ttft_ms"], r["tpot_ms"], r["itl_ms"]
    print(f'| {r["conc"]} | {r["label"]} | {t["mean"]} / {t["median"]} / {t["p90"]} | {tp["mean"]} | '
          f'{i["mean"]} / {i["p90"]} | {r["tokens_per_chunk"]} | {r["loadavg_before_after"][0]}–{r["loadavg_before_after"][1]} | {gap} |')
EOF
