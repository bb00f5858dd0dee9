#!/usr/bin/env bash
# Fetches the public operator measurements llm-emu reads with `--profile DIR` and lays them out
# as it expects. Nothing here is vendored into the repository: the databases are tens to hundreds
# of MB.
#
#   tools/fetch-operator-data.sh OUT [SYSTEM] [VLLM_VERSION]
#
# - Vidur (github.com/microsoft/vidur, MIT): OUT/vidur/ is a sparse checkout of
#   data/profiling/. Use `--profile OUT/vidur/data/profiling/compute/h100/meta-llama/Llama-2-7b-hf`
#   (A100, H100, A40; Llama-2-7B/70B, CodeLlama-34B, Llama-3-8B/70B, InternLM-20B, Qwen-72B,
#   phi-2), with `--latency vidur:dir=...,all_reduce=OUT/vidur/data/profiling/network/h100_dgx/all_reduce.csv`
#   under tensor parallelism.
# - aiconfigurator (github.com/ai-dynamo/aiconfigurator, Apache-2.0): the GEMM, attention and
#   vLLM custom all-reduce tables of SYSTEM (default h100_sxm; also h200_sxm, b200_sxm, a100_sxm,
#   l40s, rtx_pro_6000_server, ...) for vLLM VLLM_VERSION (default 0.19.0), converted from the
#   repository's Parquet to the collector's CSV text (`*_perf.txt`) in
#   OUT/aiconfigurator/SYSTEM/vllm/VLLM_VERSION/: use that directory as `--profile`.
#   The conversion needs python3 with pyarrow (a venv is made under OUT when it is missing).
set -euo pipefail

out=${1:?usage: $0 OUT [SYSTEM] [VLLM_VERSION]}
system=${2:-h100_sxm}
version=${3:-0.19.0}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"

# Vidur: data/profiling only.
if [ ! -d "$out/vidur/.git" ]; then
  git clone --depth 1 --filter=blob:none --sparse https://github.com/microsoft/vidur "$out/vidur"
fi
git -C "$out/vidur" sparse-checkout set data/profiling
git -C "$out/vidur" checkout
cp "$out/vidur/LICENSE" "$out/vidur/data/profiling/LICENSE-vidur" 2>/dev/null || true

# aiconfigurator: one system's vLLM tables.
aic="$out/aiconfigurator-src"
if [ ! -d "$aic/.git" ]; then
  git clone --depth 1 --filter=blob:none --sparse https://github.com/ai-dynamo/aiconfigurator "$aic"
fi
base=aic-core/src/aiconfigurator_core/systems/data/$system
git -C "$aic" sparse-checkout set \
  "$base/gemm/vllm/$version" "$base/attention/vllm/$version" "$base/comm/vllm/$version"
git -C "$aic" checkout

py=python3
if ! "$py" -c 'import pyarrow' 2>/dev/null; then
  "$py" -m venv "$out/.venv"
  "$out/.venv/bin/pip" install -q pyarrow
  py="$out/.venv/bin/python"
fi
dest="$out/aiconfigurator/$system/vllm/$version"
tables=()
for t in gemm/vllm/$version/gemm_perf \
         attention/vllm/$version/context_attention_perf \
         attention/vllm/$version/generation_attention_perf \
         comm/vllm/$version/custom_allreduce_perf; do
  f="$aic/$base/$t.parquet"
  if [ -f "$f" ]; then tables+=("$f"); else echo "note: $system has no $t.parquet for vLLM $version" >&2; fi
done
if [ ${#tables[@]} -eq 0 ]; then
  echo "no vLLM $version tables for $system (see $aic/$base)" >&2
  exit 1
fi
"$py" "$here/aiconfigurator-parquet-to-txt.py" "$dest" "${tables[@]}"
cp "$aic/LICENSE" "$dest/LICENSE-aiconfigurator"
echo "vidur:          $out/vidur/data/profiling/compute/<gpu>/<org>/<model>"
echo "aiconfigurator: $dest"
