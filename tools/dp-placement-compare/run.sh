#!/usr/bin/env bash
# DP placement, vLLM 0.19 against llm-emu: starts the vLLM reference server and `llm-emu serve`,
# both `--data-parallel-size 2 --api-server-count K` on the dense Qwen3-8B shape with 20 ms
# steps, sends both the same phases (compare.py: header, sequential, burst, spaced) and prints
# where each request went, with the DP coordinator's republications marked and the placements
# vLLM's rule predicts beside. The reference logs at DEBUG with millisecond Unix times, so the
# counts its API server received from the coordinator (`Received counts: …`) are in
# OUTDIR/vllm.log.
#
#   tools/dp-placement-compare/run.sh OUTDIR            # env: API_SERVERS (1), LLM_EMU
#
# Needs ../shared/tools/vllm-reference/setup.sh run once and a build of llm-emu
# (LLM_EMU, default target/release/llm-emu).
set -euo pipefail
cd "$(dirname "$0")/../.."
D=${1:?usage: $0 OUTDIR}
mkdir -p "$D"
K=${API_SERVERS:-1}
REF=${VLLM_REF_HOME:-$HOME/.cache/vllm-reference}
EMU=${LLM_EMU:-target/release/llm-emu}
pids=()
stop() { for p in "${pids[@]}"; do kill -INT -- "-$p" 2>/dev/null || true; done
         sleep 3; for p in "${pids[@]}"; do kill -KILL -- "-$p" 2>/dev/null || true; done; }
trap stop EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

# vLLM's log with the Unix time to the millisecond (%(created)), so that the coordinator's
# republications can be placed among the requests.
echo '{"version": 1, "disable_existing_loggers": false,
 "formatters": {"ms": {"format": "%(levelname)s %(created).3f [%(filename)s:%(lineno)d] %(message)s"}},
 "handlers": {"h": {"class": "logging.StreamHandler", "formatter": "ms", "level": "DEBUG",
                    "stream": "ext://sys.stdout"}},
 "loggers": {"vllm": {"handlers": ["h"], "level": "DEBUG", "propagate": false}}}' > "$D/logging.json"
# uvicorn's access log likewise: which API server ended which request, and when.
echo '{"version": 1, "disable_existing_loggers": false,
 "formatters": {"a": {"format": "INFO %(created).3f [access] %(message)s"}},
 "handlers": {"h": {"class": "logging.StreamHandler", "formatter": "a", "stream": "ext://sys.stdout"}},
 "loggers": {"uvicorn.access": {"handlers": ["h"], "level": "INFO", "propagate": false},
             "uvicorn.error": {"handlers": ["h"], "level": "INFO", "propagate": false}}}' > "$D/uvicorn-log.json"
# The DP coordinator must report its addresses within vLLM's hard-coded 30 s; fork keeps its
# start short on a small loaded machine.
PORT=$port EMU_BASE_US=20000 EMU_PER_TOKEN_US=0 VLLM_LOGGING_LEVEL=DEBUG \
  VLLM_LOGGING_CONFIG_PATH="$D/logging.json" VLLM_WORKER_MULTIPROC_METHOD=fork \
  setsid ../shared/tools/vllm-reference/run_ref.sh --data-parallel-size 2 \
  --api-server-count "$K" --log-config-file "$D/uvicorn-log.json" > "$D/vllm.log" 2>&1 &
pids+=("$!")
for _ in $(seq 300); do curl -sf "127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 1; done
curl -sf "127.0.0.1:$port/health" >/dev/null || { echo "reference did not start; see $D/vllm.log" >&2; exit 1; }

# llm-emu's coordinator publishes at its engine clock's start and every 5 s after; the clock
# starts just before the `listening` line, which is timed here to ~20 ms.
setsid "$EMU" serve Qwen/Qwen3-8B --tokenizer "$REF/model/qwen3-8b" --host 127.0.0.1 --port 0 \
  --data-parallel-size 2 --api-server-count "$K" --latency linear:base_us=20000,per_token_us=0 \
  --num-gpu-blocks-override 20000 --max-num-seqs 256 --max-num-batched-tokens 8192 \
  --max-model-len 40960 > "$D/llm-emu.out" 2> "$D/llm-emu.log" &
pids+=("$!")
for _ in $(seq 500); do grep -q listening "$D/llm-emu.out" 2>/dev/null && break; sleep 0.02; done
epoch=$(date +%s.%N)
addr=$(sed -n 's#.*listening on http://##p' "$D/llm-emu.out" | head -1)
uptime
python3 tools/dp-placement-compare/compare.py --a "http://127.0.0.1:$port" --a-model Qwen/Qwen3-8B \
  --a-publications "$D/vllm.log" --b "http://$addr" --b-model Qwen/Qwen3-8B \
  --b-publications "epoch:$epoch" --api-servers "$K" --json "$D/placements.json"
uptime
grep "Received counts" "$D/vllm.log" | sed 's/.*Received counts/Received counts/' | sort | uniq -c || true
